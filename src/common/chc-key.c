/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#include "chc-key.h"

static GBytes *
read_key (const char *path, gboolean is_secret, GError **error)
{
	g_autofree char *contents = NULL;
	gsize length = 0;

	if (!g_file_get_contents (path, &contents, &length, error))
		return NULL;
	/* a secret file written with echo ends in a line end that is not part of the secret;
	 * a PEM file is taken whole */
	if (is_secret && length > 0 && contents[length - 1] == '\n')
		length--;
	if (is_secret && length > 0 && contents[length - 1] == '\r')
		length--;
	if (length == 0) {
		g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, _ ("%s is empty"), path);
		return NULL;
	}
	return g_bytes_new_take (g_steal_pointer (&contents), length);
}

/**
 * chc_key_read_secret_file:
 * @path: the file that holds an HS256, HS384 or HS512 secret
 * @error: return location for a #GError
 *
 * Reads the shared secret in @path. One line end at the end of the file ("\n" or "\r\n") is
 * not part of the secret; every other byte is, spaces and a second line end included.
 *
 * Returns: (transfer full): the secret; %NULL with @error set if the file cannot be read
 *   (a #G_FILE_ERROR from g_file_get_contents()) or holds nothing else
 *   (%G_FILE_ERROR_INVAL, "PATH is empty")
 */
GBytes *
chc_key_read_secret_file (const char *path, GError **error)
{
	g_return_val_if_fail (path != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	return read_key (path, TRUE, error);
}

/**
 * chc_key_read_pem_file:
 * @path: the file that holds a PEM key (RS256, ES256)
 * @error: return location for a #GError
 *
 * Reads the PEM key in @path whole, its final newline included.
 *
 * Returns: (transfer full): the key; %NULL with @error set as for
 *   chc_key_read_secret_file()
 */
GBytes *
chc_key_read_pem_file (const char *path, GError **error)
{
	g_return_val_if_fail (path != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	return read_key (path, FALSE, error);
}

/**
 * chc_key_secret_from_environment:
 *
 * The secret in %CHC_KEY_SECRET_VARIABLE, taken as it is (a line end in it is part of it):
 * the caller decides whether a secret file comes first and what to say when neither is there.
 *
 * Returns: (transfer full) (nullable): the secret; %NULL if the variable is unset or empty
 */
GBytes *
chc_key_secret_from_environment (void)
{
	const char *value = g_getenv (CHC_KEY_SECRET_VARIABLE);

	if (value == NULL || *value == '\0')
		return NULL;
	return g_bytes_new (value, strlen (value));
}
