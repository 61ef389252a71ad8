/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "chat-error.h"
#include "chat-i18n-private.h"
#include "chat-web-root-private.h"

/* bounds on what a misconfigured directory can make the server hold in memory */
#define MAX_FILES 64
#define MAX_FILE_SIZE (4 * 1024 * 1024)

/* Scripts only from the server's own files, never inline; connections only to the server
 * (over ws: or wss: too: 'self' alone does not cover WebSocket schemes in every browser);
 * the page may not be framed, and plugins and forms go nowhere. */
#define CONTENT_SECURITY_POLICY                                                                 \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "       \
	"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'none'; " \
	"frame-ancestors 'none'"

struct _ChatWebRoot {
	GHashTable *files; /* file name -> WebFile*, owned */
};

typedef struct {
	GBytes *contents;
	const char *content_type; /* static */
} WebFile;

static const struct {
	const char *extension;
	const char *content_type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/vnd.microsoft.icon"},
    {".txt", "text/plain; charset=utf-8"},
};

static void
web_file_free (gpointer data)
{
	WebFile *file = data;

	g_bytes_unref (file->contents);
	g_free (file);
}

static const char *
content_type_for (const char *name)
{
	for (gsize i = 0; i < G_N_ELEMENTS (content_types); i++) {
		if (g_str_has_suffix (name, content_types[i].extension))
			return content_types[i].content_type;
	}
	return NULL;
}

/* Letters, digits, '.', '-' and '_', not starting with a dot: nothing a URL would have to
 * escape, and no hidden files (an editor's backup, .htaccess). */
static gboolean
is_plain_name (const char *name)
{
	if (name[0] == '\0' || name[0] == '.')
		return FALSE;
	for (const char *p = name; *p != '\0'; p++) {
		if (!g_ascii_isalnum (*p) && *p != '.' && *p != '-' && *p != '_')
			return FALSE;
	}
	return TRUE;
}

ChatWebRoot *
chat_web_root_load (const char *directory, GError **error)
{
	g_autoptr (ChatWebRoot) root = g_new0 (ChatWebRoot, 1);
	g_autoptr (GDir) dir = NULL;
	const char *name;

	root->files = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, web_file_free);
	dir = g_dir_open (directory, 0, error);
	if (dir == NULL)
		return NULL;
	while ((name = g_dir_read_name (dir)) != NULL) {
		g_autofree char *file_name = g_build_filename (directory, name, NULL);
		const char *content_type = content_type_for (name);
		g_autofree char *contents = NULL;
		gsize length;
		WebFile *file;

		if (!is_plain_name (name) || content_type == NULL ||
		    !g_file_test (file_name, G_FILE_TEST_IS_REGULAR)) {
			g_debug ("web root: not serving %s", file_name);
			continue;
		}
		if (g_hash_table_size (root->files) == MAX_FILES) {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("%s has more than %u files to serve"),
				     directory,
				     MAX_FILES);
			return NULL;
		}
		if (!g_file_get_contents (file_name, &contents, &length, error))
			return NULL;
		if (length > MAX_FILE_SIZE) {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("%s is larger than %u bytes"),
				     file_name,
				     MAX_FILE_SIZE);
			return NULL;
		}
		file = g_new0 (WebFile, 1);
		file->contents = g_bytes_new_take (g_steal_pointer (&contents), length);
		file->content_type = content_type;
		g_hash_table_insert (root->files, g_strdup (name), file);
	}
	if (!g_hash_table_contains (root->files, "index.html")) {
		g_set_error (error,
			     G_IO_ERROR,
			     G_IO_ERROR_NOT_FOUND,
			     _ ("%s has no index.html"),
			     directory);
		return NULL;
	}
	return g_steal_pointer (&root);
}

void
chat_web_root_free (ChatWebRoot *root)
{
	if (root == NULL)
		return;
	g_hash_table_unref (root->files);
	g_free (root);
}

gboolean
chat_web_root_serve (ChatWebRoot *root, SoupServerMessage *msg, const char *path)
{
	static const char method_not_allowed[] =
	    "{\"error\":\"method_not_allowed\",\"error_description\":\"Only GET and HEAD are "
	    "allowed here\"}";
	SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
	const char *method = soup_server_message_get_method (msg);
	WebFile *file;

	g_return_val_if_fail (root != NULL, FALSE);

	/* only names directly under "/": the table has no other keys, but say so plainly */
	if (path == NULL || path[0] != '/' || strchr (path + 1, '/') != NULL)
		return FALSE;
	file = g_hash_table_lookup (root->files, path[1] == '\0' ? "index.html" : path + 1);
	if (file == NULL)
		return FALSE;

	if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
		soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL);
		soup_message_headers_replace (headers, "Allow", "GET, HEAD");
		soup_server_message_set_response (msg,
						  "application/json",
						  SOUP_MEMORY_STATIC,
						  method_not_allowed,
						  strlen (method_not_allowed));
		return TRUE;
	}
	soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
	/* the page changes with every upgrade of chathub, so the browser always asks again */
	soup_message_headers_replace (headers, "Cache-Control", "no-cache");
	soup_message_headers_replace (headers, "X-Content-Type-Options", "nosniff");
	soup_message_headers_replace (headers, "Content-Security-Policy", CONTENT_SECURITY_POLICY);
	/* the page's URL may hold a token in its fragment: never tell other sites about it */
	soup_message_headers_replace (headers, "Referrer-Policy", "no-referrer");
	soup_message_headers_replace (headers, "Content-Type", file->content_type);
	soup_message_body_append_bytes (soup_server_message_get_response_body (msg),
					file->contents);
	return TRUE;
}
