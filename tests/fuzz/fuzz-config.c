/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathubd's configuration parser (src/daemon/chd-config.c): the input is the text of
 * chathub.conf. The key and certificate files a configuration names are read as chathubd
 * reads them; the harness writes a few into FUZZ_KEYS (fixed, so that the corpus can name
 * them): HMAC secrets of several lengths, an empty file, RSA and EC public keys
 * (tests/data/) and a TLS certificate with its key and another key (tests/fuzz/data/). A
 * file that does not exist is fine: the parser says so.
 *
 * What chathubd relies on once the file loaded is checked: a path that starts with "/", at
 * least one and at most CHAT_TOKEN_VERIFIER_MAX_KEYS token keys, an absolute store path,
 * trusted proxies that are the networks they say; the keys go into a ChatTokenVerifier as
 * chathubd puts them; and a second load of the same text (a reload) gives the same settings:
 * no restart is asked for, and taking the reloadable ones works.
 */

#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chd-config.h"
#include "fuzz-common.h"

#define FUZZ_KEYS "/tmp/chathub-fuzz-keys"

static void
write_key (const char *name, const char *contents, gssize length)
{
	g_autofree char *path = g_build_filename (FUZZ_KEYS, name, NULL);
	g_autoptr (GError) error = NULL;

	if (!g_file_set_contents (path, contents, length, &error))
		fuzz_fail (__FILE__, __LINE__, error->message);
}

static void
copy_key (const char *name, const char *directory, const char *source)
{
	g_autofree char *path = g_build_filename (FUZZ_SOURCE_DIR, directory, source, NULL);
	g_autofree char *contents = NULL;
	g_autoptr (GError) error = NULL;
	gsize length;

	if (!g_file_get_contents (path, &contents, &length, &error))
		fuzz_fail (__FILE__, __LINE__, error->message);
	write_key (name, contents, (gssize) length);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
	fuzz_setup_log ();
	/* a configuration without keys would otherwise depend on the environment */
	g_unsetenv ("CHATHUB_JWT_SECRET");
	g_unsetenv ("STATE_DIRECTORY");
	if (g_mkdir_with_parents (FUZZ_KEYS, 0700) != 0)
		fuzz_fail (__FILE__, __LINE__, "cannot create " FUZZ_KEYS);
	write_key ("secret", "fuzz-secret-hs256-0123456789abcd\n", -1);
	write_key ("secret-48", "fuzz-secret-hs384-0123456789abcdef0123456789abcd", -1);
	write_key ("secret-64",
		   "fuzz-secret-hs512-0123456789abcdef0123456789abcdef0123456789abcd\r\n",
		   -1);
	write_key ("short", "short", -1);
	write_key ("empty", "", 0);
	write_key ("password", "redis-password\n", -1);
	copy_key ("rsa.pem", "data", "rsa-public.pem");
	copy_key ("ec.pem", "data", "ec-public.pem");
	copy_key ("ec-private.pem", "data", "ec-private.pem");
	copy_key ("tls.crt", "fuzz/data", "tls.crt");
	copy_key ("tls.key", "fuzz/data", "tls.key");
	copy_key ("tls-other.key", "fuzz/data", "tls-other.key");
	return 0;
}

/* Reading a device or a kernel file is no parser bug, and some never end (/dev/zero) or
 * block (/dev/stdin): the fuzzer stays away from them. */
static gboolean
names_special_files (const char *text)
{
	return strstr (text, "/dev") != NULL || strstr (text, "/proc") != NULL ||
	       strstr (text, "/sys") != NULL || strstr (text, "/run") != NULL;
}

static void
check_loaded (ChdConfig *config, const char *text, gsize size)
{
	g_autoptr (ChdConfig) again = chd_config_new ();
	g_autoptr (ChdConfig) running = chd_config_new ();
	g_autoptr (GPtrArray) changes = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatTokenVerifier) verifier = NULL;

	fuzz_check (config->path != NULL && config->path[0] == '/', "the path starts with /");
	fuzz_check (config->port <= 65535, "a port");
	fuzz_check (config->keys->len >= 1 && config->keys->len <= CHAT_TOKEN_VERIFIER_MAX_KEYS,
		    "1 to CHAT_TOKEN_VERIFIER_MAX_KEYS keys");
	fuzz_check (config->store_path != NULL && g_path_is_absolute (config->store_path),
		    "an absolute store path");
	fuzz_check (config->redis_address != NULL && config->key_prefix != NULL,
		    "the cluster's defaults");
	/* as chd-daemon.c builds its verifier, which refuses a key that is not one (a secret
	 * file named as an RS256 key): chathubd then stops with that error */
	verifier = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, "algorithm", config->algorithm, NULL);
	for (guint i = 0; i < config->keys->len && verifier != NULL; i++) {
		ChdKey *key = config->keys->pdata[i];

		fuzz_check (key->material != NULL && key->origin != NULL, "a key and its origin");
		if (!chat_token_verifier_add_key (verifier,
						  key->id,
						  key->algorithm,
						  key->material,
						  &error))
			g_clear_object (&verifier);
	}
	g_clear_error (&error);

	/* each trusted proxy is the network it says (GLib 2.74 took "/4294967296" for /0) */
	for (guint i = 0; config->trusted_proxies != NULL && config->trusted_proxies[i] != NULL;
	     i++) {
		const char *proxy = config->trusted_proxies[i];
		g_autoptr (GInetAddressMask) mask =
		    g_inet_address_mask_new_from_string (proxy, NULL);
		const char *slash = strchr (proxy, '/');

		fuzz_check (mask != NULL, "a trusted proxy is an address or a network");
		if (slash != NULL)
			fuzz_check (g_inet_address_mask_get_length (mask) ==
					strtoul (slash + 1, NULL, 10),
				    "a trusted network has the prefix length it says");
	}

	/* a reload of the same file */
	if (!chd_config_load_data (again, "fuzz.conf", text, size, &error)) {
		fprintf (stderr, "%s\n", error->message);
		fuzz_fail (__FILE__, __LINE__, "the same text loads again");
	}
	changes = chd_config_restart_changes (config, again);
	fuzz_check (changes->len == 0, "the same text asks for no restart");
	chd_config_take_reloadable (running, again);
	fuzz_check (running->keys->len == config->keys->len, "a reload takes the keys");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	g_autofree char *text = g_strndup ((const char *) data, size);
	g_autoptr (ChdConfig) config = chd_config_new ();
	g_autoptr (GError) error = NULL;

	if (names_special_files (text))
		return 0;
	if (chd_config_load_data (config, "fuzz.conf", (const char *) data, size, &error)) {
		if (fuzz_verbose ())
			fprintf (stderr, "loaded, %u keys\n", config->keys->len);
		fuzz_check (error == NULL, "no error on success");
		check_loaded (config, (const char *) data, size);
	} else {
		fuzz_check (error != NULL && error->message != NULL, "an error on failure");
		if (fuzz_verbose ())
			fprintf (stderr, "%s\n", error->message);
	}
	return 0;
}
