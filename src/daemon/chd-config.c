/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib/gi18n.h>
#include <gnutls/gnutls.h>

#include "chc-key.h"
#include "chat-network-private.h"
#include "chd-config.h"

/* The group of one more token key: [key:ID] */
#define KEY_GROUP_PREFIX "key:"

static void
chd_key_free (ChdKey *key)
{
	g_free (key->id);
	g_clear_pointer (&key->material, g_bytes_unref);
	g_free (key->origin);
	g_free (key);
}

ChdConfig *
chd_config_new (void)
{
	ChdConfig *config = g_new0 (ChdConfig, 1);

	config->address = g_strdup ("127.0.0.1");
	config->port = 8080;
	config->path = g_strdup ("/ws");
	config->web = TRUE;
	config->algorithm = CHAT_TOKEN_ALGORITHM_HS256;
	config->keys = g_ptr_array_new_with_free_func ((GDestroyNotify) chd_key_free);
	config->leeway = 30;
	config->max_message_size = 65536;
	config->outbox_size = 1048576;
	config->ping_interval = 54;
	config->idle_timeout = 60;
	config->handshake_timeout = 10;
	config->max_connections_per_user = 32;
	config->upgrades_per_second = 20;
	config->upgrade_burst = 100;
	config->messages_per_second = 100;
	config->message_burst = 200;
	config->max_rooms = 1000;
	config->bus_type = G_BUS_TYPE_NONE;
	config->message_signals = TRUE;
	config->store_backend = CHD_STORE_BACKEND_SQLITE;
	config->store_sync = CHAT_STORE_SYNC_NORMAL;
	config->redis_address = g_strdup ("127.0.0.1:6379");
	config->key_prefix = g_strdup (CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX);
	config->announce_interval = 5;
	config->redis_timeout = CHAT_REDIS_STORE_DEFAULT_TIMEOUT_MS / 1000;
	config->presence_ttl = CHAT_REDIS_STORE_DEFAULT_PRESENCE_TTL;
	config->history_size = CHAT_STORE_DEFAULT_HISTORY_SIZE;
	config->history_ttl = CHAT_STORE_DEFAULT_HISTORY_TTL;
	config->dm_ttl = CHAT_STORE_DEFAULT_DM_TTL;
	return config;
}

void
chd_config_free (ChdConfig *config)
{
	g_free (config->file);
	g_free (config->address);
	g_free (config->path);
	g_clear_pointer (&config->key, g_bytes_unref);
	g_ptr_array_unref (config->keys);
	g_free (config->issuer);
	g_free (config->audience);
	g_free (config->admin_group);
	g_free (config->store_path);
	g_free (config->redis_address);
	if (config->redis_password != NULL)
		explicit_bzero (config->redis_password, strlen (config->redis_password));
	g_free (config->redis_password);
	g_free (config->node_name);
	g_free (config->key_prefix);
	g_free (config->metrics_address);
	g_strfreev (config->allowed_origins);
	g_strfreev (config->trusted_proxies);
	g_clear_object (&config->tls_certificate);
	g_free (config);
}

/* The file being loaded and every (group, key) the loader asked for: what the loader reads is
 * the table of known keys, so the two cannot drift apart. */
typedef struct {
	GKeyFile *file;
	GHashTable *known; /* group name (owned) -> set of key names */
} Reader;

/* Every read goes through here: records @key in @group as known, then gets its raw value. */
static char *
get_value (Reader *reader, const char *group, const char *key)
{
	GHashTable *keys = g_hash_table_lookup (reader->known, group);

	if (keys == NULL) {
		keys = g_hash_table_new (g_str_hash, g_str_equal);
		g_hash_table_insert (reader->known, g_strdup (group), keys);
	}
	/* the key names are string literals */
	g_hash_table_add (keys, (gpointer) key);
	return g_key_file_get_value (reader->file, group, key, NULL);
}

/* Reads an unsigned integer key if present; says which key is wrong otherwise. */
static gboolean
read_uint (Reader *file,
	   const char *group,
	   const char *key,
	   guint min,
	   guint max,
	   guint *out,
	   GError **error)
{
	g_autofree char *text = get_value (file, group, key);
	guint64 value;
	g_autoptr (GError) local = NULL;

	if (text == NULL)
		return TRUE;
	g_strstrip (text);
	if (!g_ascii_string_to_unsigned (text, 10, min, max, &value, &local)) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[%s] %s: “%s” is not a whole number from %u to %u"),
			     group,
			     key,
			     text,
			     min,
			     max);
		return FALSE;
	}
	*out = (guint) value;
	return TRUE;
}

static gboolean
read_boolean (Reader *file, const char *group, const char *key, gboolean *out, GError **error)
{
	g_autofree char *text = get_value (file, group, key);

	if (text == NULL)
		return TRUE;
	g_strstrip (text);
	if (g_strcmp0 (text, "true") == 0) {
		*out = TRUE;
	} else if (g_strcmp0 (text, "false") == 0) {
		*out = FALSE;
	} else {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[%s] %s: “%s” is neither true nor false"),
			     group,
			     key,
			     text);
		return FALSE;
	}
	return TRUE;
}

/* Whether @raw ends in a backslash that escapes nothing. */
static gboolean
ends_in_escape (const char *raw)
{
	gsize length = strlen (raw), backslashes = 0;

	while (backslashes < length && raw[length - 1 - backslashes] == '\\')
		backslashes++;
	return backslashes % 2 == 1;
}

/* Reads a string key if present, with its escapes (\s, \t, ...). A value GLib cannot unescape
 * is an error: an invalid escape ("a\q") was taken as it is, and a backslash at the end of the
 * line cut the value there without a word. fuzz-config found the second: with an invalid
 * escape before it, GLib 2.74's g_key_file_get_string() sets its error twice (a warning, and
 * a GError leaked), so such a value never reaches it. */
static gboolean
read_string (Reader *file, const char *group, const char *key, char **out, GError **error)
{
	g_autofree char *raw = get_value (file, group, key);
	g_autofree char *value = NULL;
	g_autoptr (GError) local = NULL;

	if (raw == NULL)
		return TRUE;
	if (ends_in_escape (raw)) {
		/* GLib's own message, translated in its own text domain */
		g_set_error_literal (
		    error,
		    G_KEY_FILE_ERROR,
		    G_KEY_FILE_ERROR_INVALID_VALUE,
		    g_dgettext ("glib20", "Key file contains escape character at end of line"));
		g_prefix_error (error, _ ("[%s] %s: "), group, key);
		return FALSE;
	}
	value = g_key_file_get_string (file->file, group, key, &local);
	if (local != NULL) {
		g_propagate_prefixed_error (error,
					    g_steal_pointer (&local),
					    _ ("[%s] %s: "),
					    group,
					    key);
		return FALSE;
	}
	g_strstrip (value);
	g_free (*out);
	*out = *value != '\0' ? g_steal_pointer (&value) : NULL;
	return TRUE;
}

/* A list key: items separated by commas or white space; NULL when absent or empty. */
static char **
read_list (Reader *file, const char *group, const char *key)
{
	g_autofree char *text = get_value (file, group, key);
	g_auto (GStrv) items = NULL;
	GPtrArray *list;

	if (text == NULL)
		return NULL;
	g_strdelimit (text, ", \t", ' ');
	items = g_strsplit (text, " ", -1);
	list = g_ptr_array_new ();
	for (guint i = 0; items[i] != NULL; i++) {
		if (items[i][0] != '\0')
			g_ptr_array_add (list, g_strdup (items[i]));
	}
	if (list->len == 0) {
		g_ptr_array_free (list, TRUE);
		return NULL;
	}
	g_ptr_array_add (list, NULL);
	return (char **) g_ptr_array_free (list, FALSE);
}

/* [server] allowed-origins: `*` or origins, scheme://host[:port] without a path. */
static gboolean
read_origins (Reader *file, ChdConfig *config, GError **error)
{
	g_auto (GStrv) origins = read_list (file, "server", "allowed-origins");

	for (guint i = 0; origins != NULL && origins[i] != NULL; i++) {
		const char *authority = strstr (origins[i], "://");

		if (strcmp (origins[i], "*") == 0)
			continue;
		if (authority == NULL || authority == origins[i] || authority[3] == '\0' ||
		    strchr (authority + 3, '/') != NULL) {
			g_set_error (error,
				     G_KEY_FILE_ERROR,
				     G_KEY_FILE_ERROR_INVALID_VALUE,
				     _ ("[server] allowed-origins: “%s” is not an origin such as "
					"https://chat.example.org (no path) or *"),
				     origins[i]);
			return FALSE;
		}
	}
	g_strfreev (config->allowed_origins);
	config->allowed_origins = g_steal_pointer (&origins);
	return TRUE;
}

/* [server] trusted-proxies: addresses or networks (CIDR), IPv4 or IPv6. */
static gboolean
read_proxies (Reader *file, ChdConfig *config, GError **error)
{
	g_auto (GStrv) proxies = read_list (file, "server", "trusted-proxies");

	for (guint i = 0; proxies != NULL && proxies[i] != NULL; i++) {
		g_autoptr (GInetAddressMask) mask =
		    chat_network_prefix_is_valid (proxies[i])
			? g_inet_address_mask_new_from_string (proxies[i], NULL)
			: NULL;

		if (mask == NULL) {
			g_set_error (
			    error,
			    G_KEY_FILE_ERROR,
			    G_KEY_FILE_ERROR_INVALID_VALUE,
			    _ ("[server] trusted-proxies: “%s” is neither an IP address nor "
			       "a network such as 10.0.0.0/8"),
			    proxies[i]);
			return FALSE;
		}
	}
	g_strfreev (config->trusted_proxies);
	config->trusted_proxies = g_steal_pointer (&proxies);
	return TRUE;
}

/* [metrics]: with address or port, /metrics has a listener of its own. */
static gboolean
read_metrics (Reader *file, ChdConfig *config, GError **error)
{
	if (!read_boolean (file, "metrics", "enabled", &config->metrics, error))
		return FALSE;
	if (!read_string (file, "metrics", "address", &config->metrics_address, error) ||
	    !read_uint (file, "metrics", "port", 1, 65535, &config->metrics_port, error))
		return FALSE;
	if (config->metrics_address != NULL && config->metrics_port == 0) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[metrics] address: needs a port"));
		return FALSE;
	}
	if (config->metrics_port != 0 && !config->metrics) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[metrics] port: set, but metrics are not enabled (enabled=true)"));
		return FALSE;
	}
	return TRUE;
}

/* The key in @path (a secret or a PEM file), with the key's name before any error. */
static GBytes *
read_key_file (const char *group,
	       const char *key,
	       const char *path,
	       gboolean is_secret,
	       GError **error)
{
	GBytes *bytes = is_secret ? chc_key_read_secret_file (path, error)
				  : chc_key_read_pem_file (path, error);

	if (bytes == NULL)
		g_prefix_error (error, _ ("[%s] %s: "), group, key);
	return bytes;
}

/* Reads a key whose value is one of @names (NULL-terminated); *@out becomes its index. */
static gboolean
read_choice (Reader *file,
	     const char *group,
	     const char *key,
	     const char *const *names,
	     guint *out,
	     GError **error)
{
	g_autofree char *text = get_value (file, group, key);
	g_autofree char *choices = NULL;

	if (text == NULL)
		return TRUE;
	g_strstrip (text);
	for (guint i = 0; names[i] != NULL; i++) {
		if (g_strcmp0 (text, names[i]) == 0) {
			*out = i;
			return TRUE;
		}
	}
	choices = g_strjoinv (", ", (char **) names);
	g_set_error (error,
		     G_KEY_FILE_ERROR,
		     G_KEY_FILE_ERROR_INVALID_VALUE,
		     _ ("[%s] %s: “%s” is not one of %s"),
		     group,
		     key,
		     text,
		     choices);
	return FALSE;
}

/* Levenshtein distance, for "did you mean": names here are short. */
static guint
edit_distance (const char *a, const char *b)
{
	gsize m = strlen (a), n = strlen (b);
	g_autofree guint *row = g_new (guint, n + 1);

	for (gsize j = 0; j <= n; j++)
		row[j] = j;
	for (gsize i = 1; i <= m; i++) {
		guint diagonal = row[0];

		row[0] = i;
		for (gsize j = 1; j <= n; j++) {
			guint above = row[j];
			guint best = MIN (row[j] + 1, row[j - 1] + 1);

			row[j] = MIN (best, diagonal + (a[i - 1] != b[j - 1]));
			diagonal = above;
		}
	}
	return row[n];
}

/* The candidate nearest to @name if it is at most 2 edits away, else NULL; ties go to the first
 * in sort order, so the hint does not depend on hashing. */
static const char *
suggest (GHashTable *candidates, const char *name)
{
	GHashTableIter iter;
	gpointer candidate;
	const char *best = NULL;
	guint best_distance = 3;

	g_hash_table_iter_init (&iter, candidates);
	while (g_hash_table_iter_next (&iter, &candidate, NULL)) {
		guint distance = edit_distance (name, candidate);

		if (distance < best_distance ||
		    (distance == best_distance && best != NULL && strcmp (candidate, best) < 0)) {
			best_distance = distance;
			best = candidate;
		}
	}
	return best;
}

/* A typo in a name (prot=, [limit]) would otherwise leave the default in force unnoticed. */
static gboolean
check_unknown_keys (Reader *file, const char *path, GError **error)
{
	g_auto (GStrv) groups = g_key_file_get_groups (file->file, NULL);

	for (guint i = 0; groups[i] != NULL; i++) {
		g_auto (GStrv) keys = g_key_file_get_keys (file->file, groups[i], NULL, NULL);
		GHashTable *known_keys = g_hash_table_lookup (file->known, groups[i]);
		const char *hint;

		if (known_keys == NULL) {
			hint = suggest (file->known, groups[i]);
			if (hint != NULL)
				g_set_error (error,
					     G_KEY_FILE_ERROR,
					     G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
					     _ ("%s: unknown group [%s] (did you mean [%s]?)"),
					     path,
					     groups[i],
					     hint);
			else
				g_set_error (error,
					     G_KEY_FILE_ERROR,
					     G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
					     _ ("%s: unknown group [%s]"),
					     path,
					     groups[i]);
			return FALSE;
		}
		for (guint j = 0; keys != NULL && keys[j] != NULL; j++) {
			if (g_hash_table_contains (known_keys, keys[j]))
				continue;
			hint = suggest (known_keys, keys[j]);
			if (hint != NULL)
				g_set_error (error,
					     G_KEY_FILE_ERROR,
					     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
					     _ ("%s: unknown key “%s” in group [%s] (did you mean "
						"“%s”?)"),
					     path,
					     keys[j],
					     groups[i],
					     hint);
			else
				g_set_error (error,
					     G_KEY_FILE_ERROR,
					     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
					     _ ("%s: unknown key “%s” in group [%s]"),
					     path,
					     keys[j],
					     groups[i]);
			return FALSE;
		}
	}
	return TRUE;
}

/* RFC 7518 §3.2: an HMAC key must be at least as long as the hash's output. The secret's
 * bytes count as they are (a base64 text is not decoded). */
static gboolean
check_secret_length (ChatTokenAlgorithm algorithm,
		     GBytes *secret,
		     const char *where,
		     GError **error)
{
	gsize needed = algorithm == CHAT_TOKEN_ALGORITHM_HS512	 ? 64
		       : algorithm == CHAT_TOKEN_ALGORITHM_HS384 ? 48
								 : 32;
	gsize length = g_bytes_get_size (secret);

	if (length >= needed)
		return TRUE;
	g_set_error (error,
		     G_KEY_FILE_ERROR,
		     G_KEY_FILE_ERROR_INVALID_VALUE,
		     g_dngettext (GETTEXT_PACKAGE,
				  "%s: the secret is %u byte long; %s needs at least %u "
				  "(RFC 7518, section 3.2)",
				  "%s: the secret is %u bytes long; %s needs at least %u "
				  "(RFC 7518, section 3.2)",
				  length),
		     where,
		     (guint) length,
		     chat_token_algorithm_to_string (algorithm),
		     (guint) needed);
	return FALSE;
}

/**
 * chd_config_default_store_path:
 *
 * Where the message store lives when [store] path is not set: the state directory systemd
 * gives the service (StateDirectory=, the first of $STATE_DIRECTORY), else the user's
 * ($XDG_STATE_HOME, or ~/.local/state, as the XDG base directory specification says).
 *
 * Returns: (transfer full): an absolute file name
 */
char *
chd_config_default_store_path (void)
{
	const char *state_directory = g_getenv ("STATE_DIRECTORY");
	const char *state_home = g_getenv ("XDG_STATE_HOME");

	if (state_directory != NULL && g_path_is_absolute (state_directory)) {
		/* several StateDirectory= entries come colon-separated */
		g_auto (GStrv) directories = g_strsplit (state_directory, ":", 2);

		return g_build_filename (directories[0], "chathub.db", NULL);
	}
	/* the specification says to ignore a relative one */
	if (state_home != NULL && g_path_is_absolute (state_home))
		return g_build_filename (state_home, "chathub", "chathub.db", NULL);
	return g_build_filename (g_get_home_dir (),
				 ".local",
				 "state",
				 "chathub",
				 "chathub.db",
				 NULL);
}

static gboolean
load_store (ChdConfig *config, Reader *file, GError **error)
{
	static const char *const backends[] = {"sqlite", "memory", NULL};
	static const char *const syncs[] = {"normal", "full", NULL};
	guint backend = config->store_backend;
	guint sync = config->store_sync;

	if (!read_choice (file, "store", "backend", backends, &backend, error) ||
	    !read_choice (file, "store", "sync", syncs, &sync, error) ||
	    !read_uint (file, "store", "history-size", 1, G_MAXINT, &config->history_size, error) ||
	    !read_uint (file, "store", "history-ttl", 0, G_MAXINT, &config->history_ttl, error) ||
	    !read_uint (file, "store", "dm-ttl", 0, G_MAXINT, &config->dm_ttl, error))
		return FALSE;
	config->store_backend = backend;
	config->store_sync = sync;

	if (!read_string (file, "store", "path", &config->store_path, error))
		return FALSE;
	if (config->store_path == NULL) {
		config->store_path = chd_config_default_store_path ();
	} else if (!g_path_is_absolute (config->store_path)) {
		/* relative to what? systemd starts services in / */
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[store] path: “%s” is not an absolute file name"),
			     config->store_path);
		return FALSE;
	}
	return TRUE;
}

/* [cluster]: present only when the administrator runs several nodes. */
static gboolean
load_cluster (ChdConfig *config, Reader *file, GError **error)
{
	static const char *const backends[] = {"none", "redis", NULL};
	guint backend = config->cluster_backend;
	g_autofree char *password_file = NULL;

	if (!read_choice (file, "cluster", "backend", backends, &backend, error))
		return FALSE;
	config->cluster_backend = backend;
	if (!read_string (file, "cluster", "redis-address", &config->redis_address, error) ||
	    !read_string (file, "cluster", "node-name", &config->node_name, error) ||
	    !read_string (file, "cluster", "key-prefix", &config->key_prefix, error) ||
	    !read_string (file, "cluster", "redis-password-file", &password_file, error))
		return FALSE;
	if (!read_uint (file, "cluster", "redis-timeout", 1, 3600, &config->redis_timeout, error))
		return FALSE;
	if (!read_uint (file, "cluster", "presence-ttl", 1, 86400, &config->presence_ttl, error))
		return FALSE;
	if (config->redis_address == NULL)
		config->redis_address = g_strdup ("127.0.0.1:6379");
	if (config->key_prefix == NULL)
		config->key_prefix = g_strdup (CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX);
	if (config->node_name != NULL && strpbrk (config->node_name, " \t\n") != NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[cluster] node-name: “%s” has white space"),
			     config->node_name);
		return FALSE;
	}
	if (password_file != NULL) {
		g_autoptr (GBytes) secret =
		    read_key_file ("cluster", "redis-password-file", password_file, TRUE, error);
		gsize length;
		const char *data;

		if (secret == NULL)
			return FALSE;
		data = g_bytes_get_data (secret, &length);
		g_free (config->redis_password);
		config->redis_password = g_strndup (data, length);
	}
	return TRUE;
}

static void
add_key (ChdConfig *config,
	 const char *id,
	 ChatTokenAlgorithm algorithm,
	 GBytes *material,
	 const char *origin)
{
	ChdKey *key = g_new0 (ChdKey, 1);

	key->id = g_strdup (id);
	key->algorithm = algorithm;
	key->material = g_bytes_ref (material);
	key->origin = g_strdup (origin);
	g_ptr_array_add (config->keys, key);
}

static gboolean
algorithm_is_public_key (ChatTokenAlgorithm algorithm)
{
	return algorithm == CHAT_TOKEN_ALGORITHM_RS256 || algorithm == CHAT_TOKEN_ALGORITHM_ES256;
}

/* The key ids a token's kid can name, and a log line or a group name can show as they are. */
static gboolean
key_id_is_valid (const char *id)
{
	gsize length = strlen (id);

	if (length == 0 || length > 128)
		return FALSE;
	for (gsize i = 0; i < length; i++) {
		if (id[i] <= 0x20 || id[i] >= 0x7f)
			return FALSE;
	}
	return TRUE;
}

/* Finds the [key:ID] groups (in file order) and asks for their keys, so that the check for
 * unknown keys covers them; their files are read later, by load_key_group(). */
static gboolean
read_key_groups (ChdConfig *config, Reader *file, GPtrArray *groups, GError **error)
{
	g_auto (GStrv) names = g_key_file_get_groups (file->file, NULL);

	for (guint i = 0; names[i] != NULL; i++) {
		const char *id = names[i] + strlen (KEY_GROUP_PREFIX);

		if (!g_str_has_prefix (names[i], KEY_GROUP_PREFIX))
			continue;
		if (!key_id_is_valid (id)) {
			g_set_error (error,
				     G_KEY_FILE_ERROR,
				     G_KEY_FILE_ERROR_INVALID_VALUE,
				     _ ("[%s]: a key id is 1 to 128 printable ASCII characters "
					"without space"),
				     names[i]);
			return FALSE;
		}
		g_free (get_value (file, names[i], "algorithm"));
		g_free (get_value (file, names[i], "secret-file"));
		g_free (get_value (file, names[i], "public-key-file"));
		g_ptr_array_add (groups, g_strdup (names[i]));
	}
	return TRUE;
}

/* [auth]'s own key: secret-file or public-key-file, else CHATHUB_JWT_SECRET; optional when
 * [key:ID] groups give keys (@others). */
static gboolean
load_auth_key (ChdConfig *config,
	       const char *secret_file,
	       const char *public_key_file,
	       gboolean others,
	       GError **error)
{
	const char *origin;

	g_clear_pointer (&config->key, g_bytes_unref);
	g_ptr_array_set_size (config->keys, 0);
	if (algorithm_is_public_key (config->algorithm)) {
		if (public_key_file == NULL) {
			if (others)
				return TRUE;
			g_set_error (error,
				     G_KEY_FILE_ERROR,
				     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
				     _ ("[auth] public-key-file: required for algorithm %s"),
				     chat_token_algorithm_to_string (config->algorithm));
			return FALSE;
		}
		config->key =
		    read_key_file ("auth", "public-key-file", public_key_file, FALSE, error);
		if (config->key == NULL)
			return FALSE;
		add_key (config, NULL, config->algorithm, config->key, "[auth] public-key-file");
		return TRUE;
	}

	if (secret_file != NULL) {
		config->key = read_key_file ("auth", "secret-file", secret_file, TRUE, error);
		origin = "[auth] secret-file";
	} else if (others) {
		/* the environment's secret only stands in for a file that names no key at all */
		return TRUE;
	} else if ((config->key = chc_key_secret_from_environment ()) == NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			     _ ("[auth] secret-file: not set, and CHATHUB_JWT_SECRET is empty"));
	} else {
		origin = CHC_KEY_SECRET_VARIABLE;
	}
	if (config->key == NULL)
		return FALSE;
	if (!check_secret_length (config->algorithm, config->key, origin, error)) {
		g_clear_pointer (&config->key, g_bytes_unref);
		return FALSE;
	}
	add_key (config, NULL, config->algorithm, config->key, origin);
	return TRUE;
}

/* One [key:ID] group: algorithm= (default [auth]'s) and exactly the key file it needs. */
static gboolean
load_key_group (ChdConfig *config, Reader *file, const char *group, GError **error)
{
	const char *id = group + strlen (KEY_GROUP_PREFIX);
	ChatTokenAlgorithm algorithm = config->algorithm;
	g_autofree char *name = NULL;
	g_autofree char *secret_file = NULL;
	g_autofree char *public_key_file = NULL;
	g_autofree char *origin = NULL;
	g_autoptr (GBytes) material = NULL;
	const char *needed, *other;
	gboolean public_key;

	if (!read_string (file, group, "algorithm", &name, error))
		return FALSE;
	if (name != NULL && !chat_token_algorithm_from_string (name, &algorithm, error)) {
		g_prefix_error (error, "[%s] algorithm: ", group);
		return FALSE;
	}
	if (!read_string (file, group, "secret-file", &secret_file, error) ||
	    !read_string (file, group, "public-key-file", &public_key_file, error))
		return FALSE;
	public_key = algorithm_is_public_key (algorithm);
	needed = public_key ? "public-key-file" : "secret-file";
	other = public_key ? "secret-file" : "public-key-file";
	if ((public_key ? secret_file : public_key_file) != NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[%s] %s: not for algorithm %s, which needs %s"),
			     group,
			     other,
			     chat_token_algorithm_to_string (algorithm),
			     needed);
		return FALSE;
	}
	if ((public_key ? public_key_file : secret_file) == NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			     _ ("[%s] %s: required for algorithm %s"),
			     group,
			     needed,
			     chat_token_algorithm_to_string (algorithm));
		return FALSE;
	}
	material = read_key_file (group,
				  needed,
				  public_key ? public_key_file : secret_file,
				  !public_key,
				  error);
	if (material == NULL)
		return FALSE;
	origin = g_strdup_printf ("[%s] %s", group, needed);
	if (!public_key && !check_secret_length (algorithm, material, origin, error))
		return FALSE;
	add_key (config, id, algorithm, material, origin);
	return TRUE;
}

/* [server] tls-certificate and tls-key: both or neither; each error names its file. GLib
 * parses them but does not check that they belong together (a mismatch would only fail
 * every handshake later), so GnuTLS, the backend under glib-networking, checks that too. */
static gboolean
load_tls (ChdConfig *config, const char *cert_path, const char *key_path, GError **error)
{
	g_autofree char *cert_pem = NULL;
	g_autofree char *key_pem = NULL;
	g_autoptr (GTlsCertificate) chain = NULL;
	g_autoptr (GError) local = NULL;
	gnutls_certificate_credentials_t credentials;
	int status;

	g_clear_object (&config->tls_certificate);
	if (cert_path == NULL && key_path == NULL)
		return TRUE;
	if (cert_path == NULL || key_path == NULL) {
		/* TRANSLATORS: the key names are not translated */
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			     _ ("[server] %s: required with %s"),
			     cert_path == NULL ? "tls-certificate" : "tls-key",
			     cert_path == NULL ? "tls-key" : "tls-certificate");
		return FALSE;
	}
	if (!g_file_get_contents (cert_path, &cert_pem, NULL, error)) {
		g_prefix_error (error, "[server] tls-certificate: ");
		return FALSE;
	}
	if (!g_file_get_contents (key_path, &key_pem, NULL, error)) {
		g_prefix_error (error, "[server] tls-key: ");
		return FALSE;
	}
	chain = g_tls_certificate_new_from_pem (cert_pem, -1, &local);
	if (chain == NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[server] tls-certificate: %s: %s"),
			     cert_path,
			     local->message);
		return FALSE;
	}
	config->tls_certificate = g_tls_certificate_new_from_files (cert_path, key_path, &local);
	if (config->tls_certificate == NULL) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[server] tls-key: %s: %s"),
			     key_path,
			     local->message);
		return FALSE;
	}
	if (gnutls_certificate_allocate_credentials (&credentials) < 0)
		return TRUE;
	status = gnutls_certificate_set_x509_key_file2 (credentials,
							cert_path,
							key_path,
							GNUTLS_X509_FMT_PEM,
							NULL,
							0);
	gnutls_certificate_free_credentials (credentials);
	if (status < 0) {
		g_clear_object (&config->tls_certificate);
		if (status == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
			g_set_error (
			    error,
			    G_KEY_FILE_ERROR,
			    G_KEY_FILE_ERROR_INVALID_VALUE,
			    _ ("[server] tls-key: %s is not the key of the certificate in %s"),
			    key_path,
			    cert_path);
		else
			g_set_error (error,
				     G_KEY_FILE_ERROR,
				     G_KEY_FILE_ERROR_INVALID_VALUE,
				     _ ("[server] tls-key: %s or %s: %s"),
				     key_path,
				     cert_path,
				     gnutls_strerror (status));
		return FALSE;
	}
	return TRUE;
}

/* Reads the settings from @key_file, which was loaded from @path (nullable: no file). */
static gboolean
load_key_file (ChdConfig *config, GKeyFile *key_file, const char *path, GError **error)
{
	g_autoptr (GHashTable) known = g_hash_table_new_full (g_str_hash,
							      g_str_equal,
							      g_free,
							      (GDestroyNotify) g_hash_table_unref);
	g_autoptr (GPtrArray) key_groups = g_ptr_array_new_with_free_func (g_free);
	Reader reader = {key_file, known};
	Reader *file = &reader;
	g_autofree char *algorithm = NULL;
	g_autofree char *secret_file = NULL;
	g_autofree char *public_key_file = NULL;
	g_autofree char *tls_certificate = NULL;
	g_autofree char *tls_key = NULL;
	guint port = config->port;

	if (!read_string (file, "server", "address", &config->address, error))
		return FALSE;
	if (config->address == NULL)
		config->address = g_strdup ("127.0.0.1");
	if (!read_uint (file, "server", "port", 0, 65535, &port, error))
		return FALSE;
	config->port = port;
	if (!read_string (file, "server", "path", &config->path, error))
		return FALSE;
	if (config->path == NULL || config->path[0] != '/') {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("[server] path: must start with “/”"));
		return FALSE;
	}
	if (!read_uint (file,
			"server",
			"max-connections",
			0,
			G_MAXINT,
			&config->max_connections,
			error))
		return FALSE;
	if (!read_boolean (file, "server", "web", &config->web, error))
		return FALSE;
	if (!read_boolean (file, "server", "reuse-port", &config->reuse_port, error))
		return FALSE;
	if (!read_string (file, "server", "tls-certificate", &tls_certificate, error) ||
	    !read_string (file, "server", "tls-key", &tls_key, error))
		return FALSE;
	if (!read_origins (file, config, error) || !read_proxies (file, config, error) ||
	    !read_metrics (file, config, error))
		return FALSE;

	if (!read_string (file, "auth", "algorithm", &algorithm, error))
		return FALSE;
	if (algorithm != NULL &&
	    !chat_token_algorithm_from_string (algorithm, &config->algorithm, error)) {
		g_prefix_error (error, "[auth] algorithm: ");
		return FALSE;
	}
	if (!read_string (file, "auth", "secret-file", &secret_file, error) ||
	    !read_string (file, "auth", "public-key-file", &public_key_file, error))
		return FALSE;
	if (!read_key_groups (config, file, key_groups, error))
		return FALSE;
	if (!read_string (file, "auth", "issuer", &config->issuer, error) ||
	    !read_string (file, "auth", "audience", &config->audience, error))
		return FALSE;
	if (!read_uint (file, "auth", "leeway", 0, 3600, &config->leeway, error))
		return FALSE;

	if (!read_uint (file,
			"limits",
			"max-message-size",
			1,
			64 * 1024 * 1024,
			&config->max_message_size,
			error) ||
	    !read_uint (file,
			"limits",
			"outbox-size",
			1024,
			G_MAXINT,
			&config->outbox_size,
			error) ||
	    !read_uint (file, "limits", "ping-interval", 0, 86400, &config->ping_interval, error) ||
	    !read_uint (file, "limits", "idle-timeout", 0, 86400, &config->idle_timeout, error) ||
	    !read_uint (file,
			"limits",
			"handshake-timeout",
			0,
			3600,
			&config->handshake_timeout,
			error) ||
	    !read_uint (file,
			"limits",
			"max-connections-per-user",
			0,
			G_MAXINT,
			&config->max_connections_per_user,
			error) ||
	    !read_uint (file,
			"limits",
			"upgrades-per-second",
			0,
			1000000,
			&config->upgrades_per_second,
			error) ||
	    !read_uint (file,
			"limits",
			"upgrade-burst",
			1,
			1000000,
			&config->upgrade_burst,
			error) ||
	    !read_uint (file,
			"limits",
			"messages-per-second",
			0,
			1000000,
			&config->messages_per_second,
			error) ||
	    !read_uint (file,
			"limits",
			"message-burst",
			0,
			1000000,
			&config->message_burst,
			error) ||
	    !read_uint (file, "limits", "max-rooms", 0, G_MAXINT, &config->max_rooms, error))
		return FALSE;

	if (!read_string (file, "dbus", "admin-group", &config->admin_group, error))
		return FALSE;
	if (!read_boolean (file, "dbus", "message-signals", &config->message_signals, error) ||
	    !read_uint (file, "dbus", "exit-on-idle", 0, 86400 * 365, &config->exit_on_idle, error))
		return FALSE;

	if (!load_store (config, file, error) || !load_cluster (config, file, error))
		return FALSE;
	if (!read_uint (file,
			"cluster",
			"announce-interval",
			1,
			3600,
			&config->announce_interval,
			error))
		return FALSE;
	/* every key has been asked for by now */
	if (!check_unknown_keys (file, path, error))
		return FALSE;
	if (!load_tls (config, tls_certificate, tls_key, error))
		return FALSE;
	/* two hubs of their own on one port would each get a share of the users */
	if (config->reuse_port && config->cluster_backend != CHD_CLUSTER_BACKEND_REDIS) {
		g_set_error (
		    error,
		    G_KEY_FILE_ERROR,
		    G_KEY_FILE_ERROR_INVALID_VALUE,
		    _ ("[server] reuse-port: only for the nodes of one hub, with [cluster] "
		       "backend=redis"));
		return FALSE;
	}

	if (!load_auth_key (config, secret_file, public_key_file, key_groups->len > 0, error))
		return FALSE;
	for (guint i = 0; i < key_groups->len; i++) {
		if (!load_key_group (config, file, key_groups->pdata[i], error))
			return FALSE;
	}
	if (config->keys->len > CHAT_TOKEN_VERIFIER_MAX_KEYS) {
		g_set_error (error,
			     G_KEY_FILE_ERROR,
			     G_KEY_FILE_ERROR_INVALID_VALUE,
			     _ ("%u token keys: at most %u may be valid at once ([auth] and the "
				"[key:…] groups together)"),
			     config->keys->len,
			     (guint) CHAT_TOKEN_VERIFIER_MAX_KEYS);
		return FALSE;
	}
	g_free (config->file);
	config->file = g_strdup (path);
	return TRUE;
}

gboolean
chd_config_load (ChdConfig *config, const char *path, GError **error)
{
	g_autoptr (GKeyFile) key_file = g_key_file_new ();

	if (path != NULL && !g_key_file_load_from_file (key_file, path, G_KEY_FILE_NONE, error)) {
		g_prefix_error (error, "%s: ", path);
		return FALSE;
	}
	return load_key_file (config, key_file, path, error);
}

/**
 * chd_config_load_data:
 * @config: the configuration to fill in
 * @name: what errors call the text (a file name)
 * @data: the text of a configuration file
 * @length: its length in bytes
 * @error: return location for a #GError
 *
 * chd_config_load() with the file's text at hand (tests/fuzz/fuzz-config.c). Files named in
 * it (keys, certificates) are read as chd_config_load() reads them; @config's file stays
 * unset, since there is none to read again on reload.
 *
 * Returns: %TRUE on success
 */
gboolean
chd_config_load_data (ChdConfig *config,
		      const char *name,
		      const char *data,
		      gsize length,
		      GError **error)
{
	g_autoptr (GKeyFile) key_file = g_key_file_new ();

	if (!g_key_file_load_from_data (key_file, data, length, G_KEY_FILE_NONE, error)) {
		g_prefix_error (error, "%s: ", name);
		return FALSE;
	}
	if (!load_key_file (config, key_file, name, error))
		return FALSE;
	g_clear_pointer (&config->file, g_free);
	return TRUE;
}

/* The settings a running chathubd cannot change: the listener, the bus, the store and the
 * cluster are set up once. */
#define RESTART_STRING(group, key, field)                   \
	if (g_strcmp0 (running->field, loaded->field) != 0) \
	g_ptr_array_add (changes, g_strdup ("[" group "] " key))
#define RESTART_VALUE(group, key, field)     \
	if (running->field != loaded->field) \
	g_ptr_array_add (changes, g_strdup ("[" group "] " key))

/**
 * chd_config_restart_changes:
 * @running: the configuration in force
 * @loaded: the configuration file as read again
 *
 * Lists the settings that differ between @running and @loaded but take a restart to change;
 * a reload ignores them. Those the command line set (--address, --port) do not count.
 *
 * Returns: (transfer full) (element-type utf8): their names, such as "[server] port"
 */
GPtrArray *
chd_config_restart_changes (const ChdConfig *running, const ChdConfig *loaded)
{
	GPtrArray *changes = g_ptr_array_new_with_free_func (g_free);

	if (!running->address_from_command_line)
		RESTART_STRING ("server", "address", address);
	if (!running->port_from_command_line)
		RESTART_VALUE ("server", "port", port);
	RESTART_STRING ("server", "path", path);
	/* a renewed certificate reloads; TLS switched on or off changes the scheme: a restart */
	if ((running->tls_certificate == NULL) != (loaded->tls_certificate == NULL))
		g_ptr_array_add (changes, g_strdup ("[server] tls-certificate"));
	RESTART_VALUE ("server", "web", web);
	RESTART_VALUE ("server", "reuse-port", reuse_port);
	RESTART_VALUE ("metrics", "enabled", metrics);
	RESTART_STRING ("metrics", "address", metrics_address);
	RESTART_VALUE ("metrics", "port", metrics_port);
	RESTART_STRING ("dbus", "admin-group", admin_group);
	RESTART_VALUE ("dbus", "message-signals", message_signals);
	RESTART_VALUE ("dbus", "exit-on-idle", exit_on_idle);
	RESTART_VALUE ("store", "backend", store_backend);
	RESTART_STRING ("store", "path", store_path);
	RESTART_VALUE ("store", "sync", store_sync);
	RESTART_VALUE ("store", "history-size", history_size);
	RESTART_VALUE ("store", "history-ttl", history_ttl);
	RESTART_VALUE ("store", "dm-ttl", dm_ttl);
	RESTART_VALUE ("cluster", "backend", cluster_backend);
	RESTART_STRING ("cluster", "redis-address", redis_address);
	RESTART_STRING ("cluster", "redis-password-file", redis_password);
	RESTART_STRING ("cluster", "node-name", node_name);
	RESTART_STRING ("cluster", "key-prefix", key_prefix);
	RESTART_VALUE ("cluster", "redis-timeout", redis_timeout);
	RESTART_VALUE ("cluster", "presence-ttl", presence_ttl);
	RESTART_VALUE ("cluster", "announce-interval", announce_interval);
	return changes;
}

#undef RESTART_STRING
#undef RESTART_VALUE

#define TAKE(field) running->field = loaded->field
#define TAKE_POINTER(field, free_func)                             \
	G_STMT_START                                               \
	{                                                          \
		g_clear_pointer (&running->field, free_func);      \
		running->field = g_steal_pointer (&loaded->field); \
	}                                                          \
	G_STMT_END

/**
 * chd_config_take_reloadable:
 * @running: the configuration in force
 * @loaded: the configuration file as read again
 *
 * Moves what a reload changes from @loaded into @running: [auth] (the keys, issuer, audience
 * and leeway) and [limits], and [server] max-connections, allowed-origins and trusted-proxies,
 * and a renewed TLS certificate (not TLS switched on or off). The rest of @running stays.
 */
void
chd_config_take_reloadable (ChdConfig *running, ChdConfig *loaded)
{
	TAKE (algorithm);
	TAKE_POINTER (key, g_bytes_unref);
	TAKE_POINTER (keys, g_ptr_array_unref);
	loaded->keys = g_ptr_array_new_with_free_func ((GDestroyNotify) chd_key_free);
	TAKE_POINTER (issuer, g_free);
	TAKE_POINTER (audience, g_free);
	TAKE (leeway);
	TAKE (max_connections);
	TAKE (max_message_size);
	TAKE (outbox_size);
	TAKE (ping_interval);
	TAKE (idle_timeout);
	TAKE (handshake_timeout);
	TAKE (max_connections_per_user);
	TAKE (upgrades_per_second);
	TAKE (upgrade_burst);
	TAKE (messages_per_second);
	TAKE (message_burst);
	TAKE (max_rooms);
	TAKE_POINTER (allowed_origins, g_strfreev);
	TAKE_POINTER (trusted_proxies, g_strfreev);
	if (running->tls_certificate != NULL && loaded->tls_certificate != NULL)
		TAKE_POINTER (tls_certificate, g_object_unref);
}

#undef TAKE
#undef TAKE_POINTER
