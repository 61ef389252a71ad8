/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathubd's configuration parser (src/daemon/chd-config.c): the defaults, every numeric key's
 * range with the exact error naming it, the secret file and CHATHUB_JWT_SECRET, algorithms
 * and public keys, the [store] group and where the database lives by default; and under /chc/ the
 * key reader chathubd shares with chathubctl and chathub-bench (src/common/chc-key.c), and the bus
 * names generated from the interface XML.
 */

#include <glib/gstdio.h>
#include <stddef.h>
#include <string.h>

#include "chc-bus.h"
#include "chc-key.h"
#include "chd-config.h"

/* 32 bytes: the shortest HS256 secret */
#define PAD "0123456789abcdef0123456789abcdef"
/* 64 bytes: long enough for HS512 too */
#define ENV_SECRET "secret-from-the-environment-0123456789abcdef0123456789abcdef0123"

static char *tmpdir;

static char *
write_file (const char *name, const char *contents, gssize length)
{
	char *path = g_build_filename (tmpdir, name, NULL);
	g_autoptr (GError) error = NULL;

	g_file_set_contents (path, contents, length, &error);
	g_assert_no_error (error);
	return path;
}

/* Loads @text as chathub.conf; NULL (and @error set) if chd_config_load() refused it. */
static ChdConfig *
load_text (const char *text, GError **error)
{
	g_autofree char *path = write_file ("chathub.conf", text, -1);
	g_autoptr (ChdConfig) config = chd_config_new ();

	if (!chd_config_load (config, path, error))
		return NULL;
	return g_steal_pointer (&config);
}

static void
assert_load_error (const char *text, GQuark domain, int code, const char *message)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = load_text (text, &error);

	g_assert_null (config);
	g_assert_error (error, domain, code);
	g_assert_cmpstr (error->message, ==, message);
}

static void
assert_key (ChdConfig *config, const char *expected)
{
	g_assert_nonnull (config->key);
	g_assert_cmpmem (g_bytes_get_data (config->key, NULL),
			 g_bytes_get_size (config->key),
			 expected,
			 strlen (expected));
}

static void
assert_defaults (ChdConfig *config)
{
	g_assert_cmpstr (config->address, ==, "127.0.0.1");
	g_assert_cmpuint (config->port, ==, 8080);
	g_assert_cmpstr (config->path, ==, "/ws");
	g_assert_cmpuint (config->max_connections, ==, 0);
	g_assert_cmpint (config->algorithm, ==, CHAT_TOKEN_ALGORITHM_HS256);
	g_assert_null (config->issuer);
	g_assert_null (config->audience);
	g_assert_cmpuint (config->leeway, ==, 30);
	g_assert_cmpuint (config->max_message_size, ==, 65536);
	g_assert_cmpuint (config->outbox_size, ==, 1048576);
	g_assert_cmpuint (config->ping_interval, ==, 54);
	g_assert_cmpuint (config->idle_timeout, ==, 60);
	g_assert_cmpuint (config->handshake_timeout, ==, 10);
	g_assert_cmpuint (config->messages_per_second, ==, 100);
	g_assert_cmpuint (config->message_burst, ==, 200);
	g_assert_cmpuint (config->max_rooms, ==, 1000);
	g_assert_cmpint (config->bus_type, ==, G_BUS_TYPE_NONE);
	g_assert_null (config->admin_group);
	g_assert_true (config->message_signals);
	g_assert_cmpuint (config->exit_on_idle, ==, 0);
	g_assert_cmpint (config->store_backend, ==, CHD_STORE_BACKEND_SQLITE);
	g_assert_cmpint (config->store_sync, ==, CHAT_STORE_SYNC_NORMAL);
	g_assert_cmpuint (config->history_size, ==, 1000);
	g_assert_cmpuint (config->history_ttl, ==, 604800);
	g_assert_cmpuint (config->dm_ttl, ==, 2592000);
	/* main() clears STATE_DIRECTORY and XDG_STATE_HOME */
	g_assert_nonnull (config->store_path);
	g_assert_true (g_str_has_prefix (config->store_path, g_get_home_dir ()));
	g_assert_true (g_str_has_suffix (config->store_path, "/.local/state/chathub/chathub.db"));
}

static void
test_config_defaults (void)
{
	g_autoptr (ChdConfig) config = chd_config_new ();
	g_autoptr (ChdConfig) from_empty = NULL;
	g_autoptr (GError) error = NULL;

	/* no file at all: the defaults and the secret from the environment */
	g_assert_true (chd_config_load (config, NULL, &error));
	g_assert_no_error (error);
	assert_defaults (config);
	assert_key (config, ENV_SECRET);

	/* an empty file, or the groups without keys, change nothing */
	from_empty = load_text ("", &error);
	g_assert_no_error (error);
	assert_defaults (from_empty);
	g_clear_pointer (&from_empty, chd_config_free);
	from_empty = load_text ("[server]\n[auth]\n[limits]\n[dbus]\n[store]\n", &error);
	g_assert_no_error (error);
	assert_defaults (from_empty);
}

static void
test_config_values (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config =
	    load_text ("# a comment\n"
		       "[server]\n"
		       "address = \\s0.0.0.0\\t\n" /* escaped blanks are trimmed too */
		       "port=9000\n"
		       "path=/chat\n"
		       "max-connections=5000\n"
		       "[auth]\n"
		       "algorithm=HS512\n"
		       "issuer=https://auth.example\n"
		       "audience=chat\n"
		       "leeway= 5\n"
		       "[limits]\n"
		       "max-message-size=1024\n"
		       "outbox-size=4096\n"
		       "ping-interval=0\n"
		       "idle-timeout=120\n"
		       "handshake-timeout=3\n"
		       "[dbus]\n"
		       "admin-group=wheel\n"
		       "message-signals=false\n"
		       "exit-on-idle=600\n"
		       "[store]\n"
		       "backend=memory\n"
		       "path= /srv/chat/messages.db \n"
		       "sync=full\n"
		       "history-size=50\n"
		       "history-ttl=0\n"
		       "dm-ttl=86400\n",
		       &error);

	g_assert_no_error (error);
	g_assert_cmpstr (config->address, ==, "0.0.0.0");
	g_assert_cmpuint (config->port, ==, 9000);
	g_assert_cmpstr (config->path, ==, "/chat");
	g_assert_cmpuint (config->max_connections, ==, 5000);
	g_assert_cmpint (config->algorithm, ==, CHAT_TOKEN_ALGORITHM_HS512);
	g_assert_cmpstr (config->issuer, ==, "https://auth.example");
	g_assert_cmpstr (config->audience, ==, "chat");
	g_assert_cmpuint (config->leeway, ==, 5);
	g_assert_cmpuint (config->max_message_size, ==, 1024);
	g_assert_cmpuint (config->outbox_size, ==, 4096);
	g_assert_cmpuint (config->ping_interval, ==, 0);
	g_assert_cmpuint (config->idle_timeout, ==, 120);
	g_assert_cmpuint (config->handshake_timeout, ==, 3);
	g_assert_cmpstr (config->admin_group, ==, "wheel");
	g_assert_false (config->message_signals);
	g_assert_cmpuint (config->exit_on_idle, ==, 600);
	g_assert_cmpint (config->store_backend, ==, CHD_STORE_BACKEND_MEMORY);
	g_assert_cmpstr (config->store_path, ==, "/srv/chat/messages.db");
	g_assert_cmpint (config->store_sync, ==, CHAT_STORE_SYNC_FULL);
	g_assert_cmpuint (config->history_size, ==, 50);
	g_assert_cmpuint (config->history_ttl, ==, 0);
	g_assert_cmpuint (config->dm_ttl, ==, 86400);
	assert_key (config, ENV_SECRET);
}

typedef struct {
	const char *group;
	const char *key;
	guint min;
	guint max;
	gsize offset; /* of the guint in ChdConfig */
} RangeCase;

static const RangeCase range_cases[] = {
    {"server", "port", 0, 65535, G_STRUCT_OFFSET (ChdConfig, port)},
    {"server", "max-connections", 0, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, max_connections)},
    {"auth", "leeway", 0, 3600, G_STRUCT_OFFSET (ChdConfig, leeway)},
    {"limits",
     "max-message-size",
     1,
     64 * 1024 * 1024,
     G_STRUCT_OFFSET (ChdConfig, max_message_size)},
    {"limits", "outbox-size", 1024, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, outbox_size)},
    {"limits", "ping-interval", 0, 86400, G_STRUCT_OFFSET (ChdConfig, ping_interval)},
    {"limits", "idle-timeout", 0, 86400, G_STRUCT_OFFSET (ChdConfig, idle_timeout)},
    {"limits", "handshake-timeout", 0, 3600, G_STRUCT_OFFSET (ChdConfig, handshake_timeout)},
    {"limits", "messages-per-second", 0, 1000000, G_STRUCT_OFFSET (ChdConfig, messages_per_second)},
    {"limits", "message-burst", 0, 1000000, G_STRUCT_OFFSET (ChdConfig, message_burst)},
    {"limits", "max-rooms", 0, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, max_rooms)},
    {"dbus", "exit-on-idle", 0, 86400 * 365, G_STRUCT_OFFSET (ChdConfig, exit_on_idle)},
    {"store", "history-size", 1, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, history_size)},
    {"store", "history-ttl", 0, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, history_ttl)},
    {"store", "dm-ttl", 0, G_MAXINT, G_STRUCT_OFFSET (ChdConfig, dm_ttl)},
};

static void
assert_range_accepts (const RangeCase *c, guint value)
{
	g_autofree char *text = g_strdup_printf ("[%s]\n%s=%u\n", c->group, c->key, value);
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = load_text (text, &error);

	g_assert_no_error (error);
	g_assert_cmpuint (G_STRUCT_MEMBER (guint, config, c->offset), ==, value);
}

static void
assert_range_refuses (const RangeCase *c, const char *value)
{
	g_autofree char *text = g_strdup_printf ("[%s]\n%s=%s\n", c->group, c->key, value);
	g_autofree char *message =
	    g_strdup_printf ("[%s] %s: “%s” is not a whole number from %u to %u",
			     c->group,
			     c->key,
			     value,
			     c->min,
			     c->max);

	assert_load_error (text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, message);
}

static void
test_config_ranges (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (range_cases); i++) {
		const RangeCase *c = &range_cases[i];
		g_autofree char *above =
		    g_strdup_printf ("%" G_GUINT64_FORMAT, (guint64) c->max + 1);

		g_test_message ("[%s] %s", c->group, c->key);
		assert_range_accepts (c, c->min);
		assert_range_accepts (c, c->max);
		assert_range_refuses (c, above);
		if (c->min > 0) {
			g_autofree char *below = g_strdup_printf ("%u", c->min - 1);

			assert_range_refuses (c, below);
		}
		assert_range_refuses (c, "-1");
		assert_range_refuses (c, "12abc");
		assert_range_refuses (c, "0x10");
		assert_range_refuses (c, "1.5");
		assert_range_refuses (c, "");
		assert_range_refuses (c, "99999999999999999999999");
	}
}

static void
test_config_other_errors (void)
{
	assert_load_error ("[server]\npath=ws\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] path: must start with “/”");
	assert_load_error ("[server]\npath=\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] path: must start with “/”");
	assert_load_error ("[dbus]\nmessage-signals=yes\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[dbus] message-signals: “yes” is neither true nor false");
	assert_load_error ("[dbus]\nmessage-signals=1\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[dbus] message-signals: “1” is neither true nor false");
	assert_load_error ("[auth]\nalgorithm=none\n",
			   CHAT_ERROR,
			   CHAT_ERROR_INVALID_ARGUMENT,
			   "[auth] algorithm: Unsupported token algorithm “none” (expected HS256, "
			   "HS384, HS512, RS256 or ES256)");
	assert_load_error ("[auth]\nalgorithm=hs256\n",
			   CHAT_ERROR,
			   CHAT_ERROR_INVALID_ARGUMENT,
			   "[auth] algorithm: Unsupported token algorithm “hs256” (expected HS256, "
			   "HS384, HS512, RS256 or ES256)");
	assert_load_error ("[store]\nbackend=redis\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[store] backend: “redis” is not one of sqlite, memory");
	assert_load_error ("[store]\nbackend=SQLite\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[store] backend: “SQLite” is not one of sqlite, memory");
	assert_load_error ("[store]\nsync=off\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[store] sync: “off” is not one of normal, full");
	assert_load_error ("[store]\nsync=\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[store] sync: “” is not one of normal, full");
	assert_load_error ("[store]\npath=chathub.db\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[store] path: “chathub.db” is not an absolute file name");
}

/* [store] path unset: systemd's state directory, else the user's (XDG), else ~/.local/state */
static void
test_config_store_path (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;
	g_autofree char *home_default =
	    g_build_filename (g_get_home_dir (), ".local/state/chathub/chathub.db", NULL);

	g_setenv ("XDG_STATE_HOME", "/home/ann/.state", TRUE);
	config = load_text ("", &error);
	g_assert_no_error (error);
	g_assert_cmpstr (config->store_path, ==, "/home/ann/.state/chathub/chathub.db");
	g_clear_pointer (&config, chd_config_free);

	/* systemd's comes first; of several StateDirectory= entries, the first */
	g_setenv ("STATE_DIRECTORY", "/var/lib/chathub:/var/lib/other", TRUE);
	config = load_text ("", &error);
	g_assert_no_error (error);
	g_assert_cmpstr (config->store_path, ==, "/var/lib/chathub/chathub.db");
	g_clear_pointer (&config, chd_config_free);

	/* a path in the file wins over both */
	config = load_text ("[store]\npath=/srv/chathub.db\n", &error);
	g_assert_no_error (error);
	g_assert_cmpstr (config->store_path, ==, "/srv/chathub.db");
	g_clear_pointer (&config, chd_config_free);

	/* relative directories are ignored, as the XDG specification says */
	g_setenv ("STATE_DIRECTORY", "state", TRUE);
	g_setenv ("XDG_STATE_HOME", "relative", TRUE);
	config = load_text ("", &error);
	g_assert_no_error (error);
	g_assert_cmpstr (config->store_path, ==, home_default);

	g_unsetenv ("STATE_DIRECTORY");
	g_unsetenv ("XDG_STATE_HOME");
}

/* Not a key file, or no file: the error names the file. */
static void
assert_file_error (const char *path, GQuark domain, int code)
{
	g_autoptr (ChdConfig) config = chd_config_new ();
	g_autoptr (GError) error = NULL;
	g_autofree char *prefix = g_strdup_printf ("%s: ", path);

	g_assert_false (chd_config_load (config, path, &error));
	g_assert_error (error, domain, code);
	if (!g_str_has_prefix (error->message, prefix))
		g_error ("“%s” does not start with “%s”", error->message, prefix);
}

static void
test_config_bad_file (void)
{
	g_autofree char *missing = g_build_filename (tmpdir, "missing.conf", NULL);
	g_autofree char *broken = write_file ("chathub.conf", "[server\nport=1\n", -1);

	assert_file_error (broken, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
	g_clear_pointer (&broken, g_free);
	broken = write_file ("chathub.conf", "port=1\n", -1);
	assert_file_error (broken, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND);
	assert_file_error (missing, G_FILE_ERROR, G_FILE_ERROR_NOENT);
}

static void
test_config_secret_file (void)
{
	static const struct {
		const char *contents;
		gssize length;
		const char *secret;
	} cases[] = {
	    {PAD "file-secret", -1, PAD "file-secret"},
	    {PAD "file-secret\n", -1, PAD "file-secret"}, /* echo secret > file */
	    {PAD "file-secret\r\n", -1, PAD "file-secret"},
	    /* only one line end is not the secret */
	    {PAD "file-secret\n\n", -1, PAD "file-secret\n"},
	    {" spaced secret " PAD, -1, " spaced secret " PAD},
	    {"a\0b" PAD, 35, "a\0b" PAD},
	};

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autofree char *secret = write_file ("secret", cases[i].contents, cases[i].length);
		g_autofree char *text = g_strdup_printf ("[auth]\nsecret-file=%s\n", secret);
		g_autoptr (GError) error = NULL;
		g_autoptr (ChdConfig) config = load_text (text, &error);
		gsize expected_length =
		    cases[i].length < 0 ? strlen (cases[i].secret) : (gsize) cases[i].length;

		/* the file wins over CHATHUB_JWT_SECRET */
		g_assert_no_error (error);
		g_assert_cmpmem (g_bytes_get_data (config->key, NULL),
				 g_bytes_get_size (config->key),
				 cases[i].secret,
				 expected_length);
	}
}

static void
test_config_secret_file_errors (void)
{
	g_autofree char *missing = g_build_filename (tmpdir, "no-such-secret", NULL);
	g_autofree char *text = NULL;
	g_autofree char *message = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;

	for (guint i = 0; i < 3; i++) {
		static const char *const empty[] = {"", "\n", "\r\n"};
		g_autofree char *secret = write_file ("secret", empty[i], -1);

		g_clear_pointer (&text, g_free);
		g_clear_pointer (&message, g_free);
		text = g_strdup_printf ("[auth]\nsecret-file=%s\n", secret);
		message = g_strdup_printf ("[auth] secret-file: %s is empty", secret);
		assert_load_error (text, G_FILE_ERROR, G_FILE_ERROR_INVAL, message);
	}

	g_clear_pointer (&text, g_free);
	text = g_strdup_printf ("[auth]\nsecret-file=%s\n", missing);
	config = load_text (text, &error);
	g_assert_null (config);
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	g_assert_true (g_str_has_prefix (error->message, "[auth] secret-file: "));
	g_assert_nonnull (strstr (error->message, missing));
}

/* A name the loader never asks for is a typo or a key of another version: refused, naming it,
 * with the nearest known name when one is close. */
static void
test_config_unknown_keys (void)
{
	g_autofree char *path = g_build_filename (tmpdir, "chathub.conf", NULL);
	static const struct {
		const char *text;
		GKeyFileError code;
		const char *message; /* after "PATH: " */
	} cases[] = {
	    {"[server]\nprot=9000\n",
	     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
	     "unknown key “prot” in group [server] (did you mean “port”?)"},
	    {"[limits]\nmax-message-sise=10\n",
	     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
	     "unknown key “max-message-sise” in group [limits] (did you mean “max-message-size”?)"},
	    {"[auth]\nsecret=abc\n",
	     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
	     "unknown key “secret” in group [auth]"},
	    /* a key of another group is unknown in this one */
	    {"[server]\nleeway=5\n",
	     G_KEY_FILE_ERROR_KEY_NOT_FOUND,
	     "unknown key “leeway” in group [server]"},
	    {"[limit]\nmax-rooms=5\n",
	     G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
	     "unknown group [limit] (did you mean [limits]?)"},
	    {"[server]\nport=1\n[Server]\n",
	     G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
	     "unknown group [Server] (did you mean [server]?)"},
	    {"[websocket]\n", G_KEY_FILE_ERROR_GROUP_NOT_FOUND, "unknown group [websocket]"},
	};

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autofree char *message = g_strdup_printf ("%s: %s", path, cases[i].message);

		assert_load_error (cases[i].text, G_KEY_FILE_ERROR, cases[i].code, message);
	}
}

/* RFC 7518 §3.2: an HS* secret at least as long as the hash, from the file or the environment. */
static void
test_config_secret_length (void)
{
	static const struct {
		const char *algorithm;
		gsize needed;
	} cases[] = {{"HS256", 32}, {"HS384", 48}, {"HS512", 64}};

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autofree char *exact = g_strnfill (cases[i].needed, 'k');
		g_autofree char *file = NULL;
		g_autofree char *text = NULL;
		g_autofree char *message = NULL;
		g_autoptr (GError) error = NULL;
		g_autoptr (ChdConfig) config = NULL;

		/* exactly long enough */
		file = write_file ("secret", exact, -1);
		text = g_strdup_printf ("[auth]\nalgorithm=%s\nsecret-file=%s\n",
					cases[i].algorithm,
					file);
		config = load_text (text, &error);
		g_assert_no_error (error);
		assert_key (config, exact);
		g_clear_pointer (&config, chd_config_free);
		g_free (file);
		/* one byte short, and the line end does not make up for it */
		exact[cases[i].needed - 1] = '\n';
		file = write_file ("secret", exact, -1);
		g_free (text);
		text = g_strdup_printf ("[auth]\nalgorithm=%s\nsecret-file=%s\n",
					cases[i].algorithm,
					file);
		message = g_strdup_printf ("[auth] secret-file: the secret is %" G_GSIZE_FORMAT
					   " bytes long; %s needs at least %" G_GSIZE_FORMAT
					   " (RFC 7518, section 3.2)",
					   cases[i].needed - 1,
					   cases[i].algorithm,
					   cases[i].needed);
		assert_load_error (text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, message);
	}

	/* the environment's secret too; a 32-byte one does for HS256 only */
	g_setenv ("CHATHUB_JWT_SECRET", PAD, TRUE);
	{
		g_autoptr (GError) error = NULL;
		g_autoptr (ChdConfig) config = load_text ("[auth]\nalgorithm=HS256\n", &error);

		g_assert_no_error (error);
		assert_key (config, PAD);
	}
	assert_load_error (
	    "[auth]\nalgorithm=HS384\n",
	    G_KEY_FILE_ERROR,
	    G_KEY_FILE_ERROR_INVALID_VALUE,
	    "CHATHUB_JWT_SECRET: the secret is 32 bytes long; HS384 needs at least 48 "
	    "(RFC 7518, section 3.2)");
	g_setenv ("CHATHUB_JWT_SECRET", ENV_SECRET, TRUE);
}

/* Without a secret file, CHATHUB_JWT_SECRET; without both, an error naming both. */
static void
test_config_secret_environment (void)
{
	static const char *const message =
	    "[auth] secret-file: not set, and CHATHUB_JWT_SECRET is empty";
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;

	g_setenv ("CHATHUB_JWT_SECRET", "other secret " PAD "\n", TRUE);
	config = load_text ("", &error);
	g_assert_no_error (error);
	assert_key (config, "other secret " PAD "\n"); /* taken as it is */

	g_unsetenv ("CHATHUB_JWT_SECRET");
	assert_load_error ("", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, message);
	assert_load_error ("[auth]\nsecret-file=\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			   message);
	g_setenv ("CHATHUB_JWT_SECRET", "", TRUE);
	assert_load_error ("", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, message);
	g_setenv ("CHATHUB_JWT_SECRET", ENV_SECRET, TRUE);
	g_unsetenv ("STATE_DIRECTORY");
	g_unsetenv ("XDG_STATE_HOME");
}

static void
test_config_public_key (void)
{
	g_autofree char *pem_path =
	    g_test_build_filename (G_TEST_DIST, "data", "rsa-public.pem", NULL);
	g_autofree char *pem = NULL;
	g_autofree char *text = NULL;
	g_autofree char *missing = g_build_filename (tmpdir, "no-such-key.pem", NULL);
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;

	/* RS256 and ES256 need a public key, not a secret */
	assert_load_error ("[auth]\nalgorithm=RS256\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			   "[auth] public-key-file: required for algorithm RS256");
	assert_load_error ("[auth]\nalgorithm=ES256\nsecret-file=/nonexistent\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			   "[auth] public-key-file: required for algorithm ES256");

	/* the PEM file is taken whole, its final newline included */
	g_file_get_contents (pem_path, &pem, NULL, &error);
	g_assert_no_error (error);
	text = g_strdup_printf ("[auth]\nalgorithm=RS256\npublic-key-file=%s\n", pem_path);
	config = load_text (text, &error);
	g_assert_no_error (error);
	g_assert_cmpint (config->algorithm, ==, CHAT_TOKEN_ALGORITHM_RS256);
	assert_key (config, pem);

	g_clear_pointer (&text, g_free);
	g_clear_pointer (&config, chd_config_free);
	text = g_strdup_printf ("[auth]\nalgorithm=ES256\npublic-key-file=%s\n", missing);
	config = load_text (text, &error);
	g_assert_null (config);
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	g_assert_true (g_str_has_prefix (error->message, "[auth] public-key-file: "));
}

/* The readers chathubctl and chathub-bench use too: the same bytes and the same errors. */
static void
test_key_files (void)
{
	g_autofree char *missing = g_build_filename (tmpdir, "no-such-secret", NULL);
	g_autofree char *empty = write_file ("secret", "", -1);
	g_autofree char *empty_message = g_strdup_printf ("%s is empty", empty);
	g_autofree char *path = NULL;
	g_autoptr (GBytes) key = NULL;
	g_autoptr (GError) error = NULL;

	/* a secret loses one line end, a PEM file none */
	path = write_file ("secret", "line\r\n", -1);
	key = chc_key_read_secret_file (path, &error);
	g_assert_no_error (error);
	g_assert_cmpmem (g_bytes_get_data (key, NULL), g_bytes_get_size (key), "line", 4);
	g_clear_pointer (&key, g_bytes_unref);
	key = chc_key_read_pem_file (path, &error);
	g_assert_no_error (error);
	g_assert_cmpmem (g_bytes_get_data (key, NULL), g_bytes_get_size (key), "line\r\n", 6);
	g_clear_pointer (&key, g_bytes_unref);

	/* a secret of nothing but a line end is empty; a PEM file of one is not */
	g_clear_pointer (&path, g_free);
	path = write_file ("secret", "\n", -1);
	g_assert_null (chc_key_read_secret_file (path, &error));
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL);
	g_assert_cmpstr (error->message, ==, empty_message);
	g_clear_error (&error);
	key = chc_key_read_pem_file (path, &error);
	g_assert_no_error (error);
	g_assert_cmpuint (g_bytes_get_size (key), ==, 1);
	g_clear_pointer (&key, g_bytes_unref);

	/* an empty PEM file, or a file that is not there, says so */
	g_file_set_contents (empty, "", 0, &error);
	g_assert_no_error (error);
	g_assert_null (chc_key_read_pem_file (empty, &error));
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL);
	g_assert_cmpstr (error->message, ==, empty_message);
	g_clear_error (&error);
	g_assert_null (chc_key_read_secret_file (missing, &error));
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	g_assert_nonnull (strstr (error->message, missing));
}

static void
test_key_environment (void)
{
	g_autoptr (GBytes) key = NULL;

	g_setenv (CHC_KEY_SECRET_VARIABLE, " with a line end\n", TRUE);
	key = chc_key_secret_from_environment ();
	g_assert_nonnull (key);
	g_assert_cmpmem (g_bytes_get_data (key, NULL),
			 g_bytes_get_size (key),
			 " with a line end\n",
			 strlen (" with a line end\n"));
	g_setenv (CHC_KEY_SECRET_VARIABLE, "", TRUE);
	g_assert_null (chc_key_secret_from_environment ());
	g_unsetenv (CHC_KEY_SECRET_VARIABLE);
	g_assert_null (chc_key_secret_from_environment ());
	g_setenv (CHC_KEY_SECRET_VARIABLE, ENV_SECRET, TRUE);
}

/* chathubd and chathubctl meet at the names src/common/meson.build takes from the XML. */
static void
test_bus_names (void)
{
	g_autofree char *xml_path = g_test_build_filename (G_TEST_DIST,
							   "..",
							   "data",
							   "dbus",
							   "io.github.chathub.Hub1.xml",
							   NULL);
	g_autofree char *xml = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (GDBusNodeInfo) node = NULL;

	g_file_get_contents (xml_path, &xml, NULL, &error);
	g_assert_no_error (error);
	node = g_dbus_node_info_new_for_xml (xml, &error);
	g_assert_no_error (error);
	g_assert_cmpstr (node->path, ==, CHC_BUS_PATH);
	g_assert_nonnull (node->interfaces[0]);
	g_assert_null (node->interfaces[1]);
	g_assert_cmpstr (node->interfaces[0]->name, ==, CHC_BUS_INTERFACE);
	g_assert_cmpstr (CHC_BUS_NAME, ==, CHC_BUS_INTERFACE);
	g_assert_true (g_dbus_is_name (CHC_BUS_NAME) && !g_dbus_is_unique_name (CHC_BUS_NAME));
}

/* [metrics] enabled: off unless asked for (it exposes counts on the public port). */
static void
test_config_metrics (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = load_text ("", &error);

	g_assert_no_error (error);
	g_assert_false (config->metrics);
	g_clear_pointer (&config, chd_config_free);

	config = load_text ("[metrics]\nenabled=true\n", &error);
	g_assert_no_error (error);
	g_assert_true (config->metrics);

	assert_load_error ("[metrics]\nenabled=yes\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[metrics] enabled: “yes” is neither true nor false");

	/* a listener of its own: port, address defaulting to the loopback one */
	g_clear_pointer (&config, chd_config_free);
	config = load_text ("[metrics]\nenabled=true\nport=9180\n", &error);
	g_assert_no_error (error);
	g_assert_cmpuint (config->metrics_port, ==, 9180);
	g_assert_null (config->metrics_address);
	g_clear_pointer (&config, chd_config_free);
	config = load_text ("[metrics]\nenabled=true\naddress=::1\nport=9180\n", &error);
	g_assert_no_error (error);
	g_assert_cmpstr (config->metrics_address, ==, "::1");
	assert_load_error ("[metrics]\nport=9180\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[metrics] port: set, but metrics are not enabled (enabled=true)");
	assert_load_error ("[metrics]\nenabled=true\naddress=127.0.0.1\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[metrics] address: needs a port");
	assert_load_error ("[metrics]\nenabled=true\nport=0\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[metrics] port: “0” is not a whole number from 1 to 65535");
}

/* [server] allowed-origins and trusted-proxies: lists separated by spaces or commas. */
static void
test_config_origins_proxies (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = load_text ("", &error);
	const char *const origins[] = {"https://chat.example.org",
				       "http://localhost:8080",
				       "*",
				       NULL};
	const char *const proxies[] = {"127.0.0.1", "10.0.0.0/8", "fd00::/8", NULL};

	g_assert_no_error (error);
	g_assert_null (config->allowed_origins);
	g_assert_null (config->trusted_proxies);
	g_clear_pointer (&config, chd_config_free);

	config = load_text ("[server]\n"
			    "allowed-origins=https://chat.example.org, http://localhost:8080 *\n"
			    "trusted-proxies= 127.0.0.1,10.0.0.0/8\tfd00::/8 \n",
			    &error);
	g_assert_no_error (error);
	g_assert_true (g_strv_equal ((const char *const *) config->allowed_origins, origins));
	g_assert_true (g_strv_equal ((const char *const *) config->trusted_proxies, proxies));
	g_clear_pointer (&config, chd_config_free);

	/* empty: unset */
	config = load_text ("[server]\nallowed-origins=\ntrusted-proxies= , \n", &error);
	g_assert_no_error (error);
	g_assert_null (config->allowed_origins);
	g_assert_null (config->trusted_proxies);

	assert_load_error ("[server]\nallowed-origins=chat.example.org\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] allowed-origins: “chat.example.org” is not an origin such as "
			   "https://chat.example.org (no path) or *");
	assert_load_error ("[server]\nallowed-origins=https://chat.example.org/chat\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] allowed-origins: “https://chat.example.org/chat” is not an "
			   "origin such as https://chat.example.org (no path) or *");
	assert_load_error (
	    "[server]\ntrusted-proxies=10.0.0.0/8 proxy.example\n",
	    G_KEY_FILE_ERROR,
	    G_KEY_FILE_ERROR_INVALID_VALUE,
	    "[server] trusted-proxies: “proxy.example” is neither an IP address nor a "
	    "network such as 10.0.0.0/8");
	/* GLib 2.74 took these prefix lengths for 0: every address (fuzz-config found it) */
	assert_load_error (
	    "[server]\ntrusted-proxies=0.0.0.0/4294967296\n",
	    G_KEY_FILE_ERROR,
	    G_KEY_FILE_ERROR_INVALID_VALUE,
	    "[server] trusted-proxies: “0.0.0.0/4294967296” is neither an IP address nor a "
	    "network such as 10.0.0.0/8");
	assert_load_error ("[server]\ntrusted-proxies=::/-1\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] trusted-proxies: “::/-1” is neither an IP address nor a "
			   "network such as 10.0.0.0/8");
	assert_load_error ("[server]\ntrusted-proxies=0.0.0.0/800\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] trusted-proxies: “0.0.0.0/800” is neither an IP address nor a "
			   "network such as 10.0.0.0/8");
	assert_load_error ("[server]\ntrusted-proxies=::/129\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] trusted-proxies: “::/129” is neither an IP address nor a "
			   "network such as 10.0.0.0/8");
	assert_load_error ("[server]\ntrusted-proxies=10.0.0.0/+8\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] trusted-proxies: “10.0.0.0/+8” is neither an IP address nor a "
			   "network such as 10.0.0.0/8");
}

/* A string key GLib cannot unescape is an error: an invalid escape ("a\q") used to be taken as
 * it is, a backslash at the end of the line cut the value short. With both, GLib 2.74 warned
 * about setting its error twice (a GTest failure by itself): fuzz-config found that. */
static void
test_config_string_escapes (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config =
	    load_text ("[auth]\nissuer=a\\\\b\\sc\n[dbus]\nadmin-group=x\\\\\n", &error);

	/* escaped backslashes, at the end too, are fine */
	g_assert_no_error (error);
	g_assert_cmpstr (config->issuer, ==, "a\\b c");
	g_assert_cmpstr (config->admin_group, ==, "x\\");

	assert_load_error ("[auth]\nissuer=https://id.example\\q\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[auth] issuer: Key file contains key “issuer” which has a value that "
			   "cannot be interpreted.");
	assert_load_error ("[auth]\naudience=chat\\\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[auth] audience: Key file contains escape character at end of line");
	assert_load_error ("[server]\npath=/ws\\q\\\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] path: Key file contains escape character at end of line");
	assert_load_error ("[key:a]\nsecret-file=/etc/chathub/\\xsecret\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[key:a] secret-file: Key file contains key “secret-file” which has a "
			   "value that cannot be interpreted.");
}

/* [server] reuse-port and [cluster] announce-interval (issue 13): reuse-port only for the
 * nodes of one hub. */
static void
test_config_cluster_nodes (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = load_text ("", &error);

	g_assert_no_error (error);
	g_assert_false (config->reuse_port);
	g_assert_cmpuint (config->announce_interval, ==, 5);
	g_clear_pointer (&config, chd_config_free);

	config = load_text ("[server]\nreuse-port=true\n[cluster]\nbackend=redis\n"
			    "announce-interval=2\n",
			    &error);
	g_assert_no_error (error);
	g_assert_true (config->reuse_port);
	g_assert_cmpuint (config->announce_interval, ==, 2);

	assert_load_error ("[server]\nreuse-port=true\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] reuse-port: only for the nodes of one hub, with [cluster] "
			   "backend=redis");
	assert_load_error ("[server]\nreuse-port=true\n[cluster]\nbackend=none\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] reuse-port: only for the nodes of one hub, with [cluster] "
			   "backend=redis");
	assert_load_error ("[server]\nreuse-port=1\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[server] reuse-port: “1” is neither true nor false");
	assert_load_error ("[cluster]\nbackend=redis\nannounce-interval=0\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[cluster] announce-interval: “0” is not a whole number from 1 to 3600");
}

static ChdKey *
key_at (ChdConfig *config, guint i)
{
	g_assert_cmpuint (i, <, config->keys->len);
	return config->keys->pdata[i];
}

/* [key:ID] groups: keys with ids beside [auth]'s, each pinned to its algorithm, held to the
 * same strictness (unknown keys, secret lengths, unreadable files) and counted. */
static void
test_config_key_groups (void)
{
	g_autofree char *secret_b = write_file ("secret-b", PAD "-b", -1);
	g_autofree char *secret_c = write_file ("secret-c", PAD "-c", -1);
	g_autofree char *short_secret = write_file ("secret-short", "0123456789abcdef", -1);
	g_autofree char *secret_48 = write_file ("secret-48", PAD "0123456789abcdef", -1);
	g_autofree char *secret_c48 = write_file ("secret-c48", PAD "0123456789abcdeX", -1);
	g_autofree char *pem_path =
	    g_test_build_filename (G_TEST_DIST, "data", "rsa-public.pem", NULL);
	g_autofree char *missing = g_build_filename (tmpdir, "no-such-secret", NULL);
	g_autofree char *conf_path = g_build_filename (tmpdir, "chathub.conf", NULL);
	g_autofree char *text = NULL;
	g_autofree char *message = NULL;
	g_autoptr (GString) many = g_string_new ("");
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;

	/* CHATHUB_JWT_SECRET is [auth]'s key when the file names none; the groups follow it */
	text = g_strdup_printf ("[key:b]\nsecret-file=%s\n[key:2026-06.rsa]\nalgorithm=RS256\n"
				"public-key-file=%s\n",
				secret_b,
				pem_path);
	config = load_text (text, &error);
	g_assert_no_error (error);
	g_assert_cmpuint (config->keys->len, ==, 2);
	g_assert_null (config->key);
	g_assert_cmpstr (key_at (config, 0)->id, ==, "b");
	g_assert_cmpint (key_at (config, 0)->algorithm, ==, CHAT_TOKEN_ALGORITHM_HS256);
	g_assert_cmpstr (key_at (config, 0)->origin, ==, "[key:b] secret-file");
	g_assert_cmpstr (key_at (config, 1)->id, ==, "2026-06.rsa");
	g_assert_cmpint (key_at (config, 1)->algorithm, ==, CHAT_TOKEN_ALGORITHM_RS256);
	g_clear_pointer (&config, chd_config_free);
	g_clear_pointer (&text, g_free);

	/* [auth]'s key comes first, without id; the groups default to [auth]'s algorithm */
	text =
	    g_strdup_printf ("[auth]\nalgorithm=HS384\nsecret-file=%s\n[key:c]\nsecret-file=%s\n",
			     secret_48,
			     secret_c48);
	config = load_text (text, &error);
	g_assert_no_error (error);
	g_assert_cmpuint (config->keys->len, ==, 2);
	g_assert_null (key_at (config, 0)->id);
	g_assert_nonnull (config->key);
	g_assert_cmpstr (key_at (config, 0)->origin, ==, "[auth] secret-file");
	g_assert_cmpstr (key_at (config, 1)->id, ==, "c");
	g_assert_cmpint (key_at (config, 1)->algorithm, ==, CHAT_TOKEN_ALGORITHM_HS384);
	g_clear_pointer (&config, chd_config_free);
	g_clear_pointer (&text, g_free);

	/* without [key:ID], the single key as before */
	config = load_text ("", &error);
	g_assert_no_error (error);
	g_assert_cmpuint (config->keys->len, ==, 1);
	g_assert_cmpstr (key_at (config, 0)->origin, ==, "CHATHUB_JWT_SECRET");
	g_clear_pointer (&config, chd_config_free);

	/* strict: an unknown key in a [key:ID] group, with a hint */
	text = g_strdup_printf ("[key:b]\nsecret-fil=%s\n", secret_b);
	message = g_strdup_printf ("%s: unknown key “secret-fil” in group [key:b] (did you mean "
				   "“secret-file”?)",
				   conf_path);
	assert_load_error (text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, message);
	g_clear_pointer (&text, g_free);
	g_clear_pointer (&message, g_free);
	/* a key group without its prefix is an unknown group */
	message = g_strdup_printf ("%s: unknown group [keys]", conf_path);
	assert_load_error ("[keys]\nsecret-file=/x\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
			   message);
	g_clear_pointer (&message, g_free);
	assert_load_error ("[key:]\nsecret-file=/x\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[key:]: a key id is 1 to 128 printable ASCII characters without space");
	assert_load_error ("[key:a b]\nsecret-file=/x\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[key:a b]: a key id is 1 to 128 printable ASCII characters without "
			   "space");
	/* the key file the algorithm needs, and only that */
	assert_load_error ("[key:b]\nalgorithm=HS256\n",
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_KEY_NOT_FOUND,
			   "[key:b] secret-file: required for algorithm HS256");
	text = g_strdup_printf ("[key:b]\nalgorithm=ES256\nsecret-file=%s\n", secret_b);
	assert_load_error (text,
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[key:b] secret-file: not for algorithm ES256, which needs "
			   "public-key-file");
	g_clear_pointer (&text, g_free);
	assert_load_error (
	    "[key:b]\nalgorithm=HS257\nsecret-file=/x\n",
	    CHAT_ERROR,
	    CHAT_ERROR_INVALID_ARGUMENT,
	    "[key:b] algorithm: Unsupported token algorithm “HS257” (expected HS256, "
	    "HS384, HS512, RS256 or ES256)");
	/* HS secrets as long as the hash */
	text = g_strdup_printf ("[key:short]\nsecret-file=%s\n", short_secret);
	assert_load_error (text,
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "[key:short] secret-file: the secret is 16 bytes long; HS256 needs at "
			   "least 32 (RFC 7518, section 3.2)");
	g_clear_pointer (&text, g_free);
	/* an unreadable file, named */
	text = g_strdup_printf ("[key:gone]\nsecret-file=%s\n", missing);
	config = load_text (text, &error);
	g_assert_null (config);
	g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	g_assert_true (g_str_has_prefix (error->message, "[key:gone] secret-file: "));
	g_clear_error (&error);
	g_clear_pointer (&text, g_free);

	/* at most CHAT_TOKEN_VERIFIER_MAX_KEYS in all, [auth]'s included */
	g_string_append_printf (many, "[auth]\nsecret-file=%s\n", secret_c);
	for (guint i = 1; i < CHAT_TOKEN_VERIFIER_MAX_KEYS; i++)
		g_string_append_printf (many, "[key:k%u]\nsecret-file=%s\n", i, secret_b);
	config = load_text (many->str, &error);
	g_assert_no_error (error);
	g_assert_cmpuint (config->keys->len, ==, CHAT_TOKEN_VERIFIER_MAX_KEYS);
	g_clear_pointer (&config, chd_config_free);
	g_string_append_printf (many, "[key:one-more]\nsecret-file=%s\n", secret_b);
	assert_load_error (many->str,
			   G_KEY_FILE_ERROR,
			   G_KEY_FILE_ERROR_INVALID_VALUE,
			   "9 token keys: at most 8 may be valid at once ([auth] and the [key:…] "
			   "groups together)");
}

/* What a reload may change, and what it must leave for a restart. */
static void
test_config_reloadable (void)
{
	g_autofree char *secret_b = write_file ("secret-b", PAD "-b", -1);
	g_autofree char *text = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) running = load_text ("[server]\nport=9000\n", &error);
	g_autoptr (ChdConfig) loaded = NULL;
	g_autoptr (GPtrArray) changes = NULL;

	g_assert_no_error (error);
	text = g_strdup_printf ("[server]\nport=9001\npath=/chat\nmax-connections=7\n"
				"[store]\nbackend=memory\n[limits]\nmessages-per-second=3\n"
				"[auth]\nleeway=5\n[key:b]\nsecret-file=%s\n",
				secret_b);
	loaded = load_text (text, &error);
	g_assert_no_error (error);
	changes = chd_config_restart_changes (running, loaded);
	g_assert_cmpuint (changes->len, ==, 3);
	g_assert_cmpstr (changes->pdata[0], ==, "[server] port");
	g_assert_cmpstr (changes->pdata[1], ==, "[server] path");
	g_assert_cmpstr (changes->pdata[2], ==, "[store] backend");
	g_clear_pointer (&changes, g_ptr_array_unref);
	/* --port on the command line: the file's port is not a change */
	running->port_from_command_line = TRUE;
	changes = chd_config_restart_changes (running, loaded);
	g_assert_cmpuint (changes->len, ==, 2);

	chd_config_take_reloadable (running, loaded);
	g_assert_cmpuint (running->messages_per_second, ==, 3);
	g_assert_cmpuint (running->max_connections, ==, 7);
	g_assert_cmpuint (running->leeway, ==, 5);
	g_assert_cmpuint (running->keys->len, ==, 1);
	g_assert_cmpstr (key_at (running, 0)->id, ==, "b");
	/* and nothing else */
	g_assert_cmpuint (running->port, ==, 9000);
	g_assert_cmpstr (running->path, ==, "/ws");
	g_assert_cmpint (running->store_backend, ==, CHD_STORE_BACKEND_SQLITE);
}

int
main (int argc, char **argv)
{
	g_autoptr (GError) error = NULL;
	int status;

	g_test_init (&argc, &argv, NULL);
	g_setenv ("CHATHUB_JWT_SECRET", ENV_SECRET, TRUE);
	tmpdir = g_dir_make_tmp ("chathub-config-test-XXXXXX", &error);
	g_assert_no_error (error);

	g_test_add_func ("/chd/config/defaults", test_config_defaults);
	g_test_add_func ("/chd/config/values", test_config_values);
	g_test_add_func ("/chd/config/ranges", test_config_ranges);
	g_test_add_func ("/chd/config/other-errors", test_config_other_errors);
	g_test_add_func ("/chd/config/store-path", test_config_store_path);
	g_test_add_func ("/chd/config/bad-file", test_config_bad_file);
	g_test_add_func ("/chd/config/secret-file", test_config_secret_file);
	g_test_add_func ("/chd/config/secret-file-errors", test_config_secret_file_errors);
	g_test_add_func ("/chd/config/secret-environment", test_config_secret_environment);
	g_test_add_func ("/chd/config/secret-length", test_config_secret_length);
	g_test_add_func ("/chd/config/unknown-keys", test_config_unknown_keys);
	g_test_add_func ("/chd/config/public-key", test_config_public_key);
	g_test_add_func ("/chd/config/cluster-nodes", test_config_cluster_nodes);
	g_test_add_func ("/chd/config/metrics", test_config_metrics);
	g_test_add_func ("/chd/config/key-groups", test_config_key_groups);
	g_test_add_func ("/chd/config/reloadable", test_config_reloadable);
	g_test_add_func ("/chd/config/origins-proxies", test_config_origins_proxies);
	g_test_add_func ("/chd/config/string-escapes", test_config_string_escapes);
	g_test_add_func ("/chc/key/files", test_key_files);
	g_test_add_func ("/chc/key/environment", test_key_environment);
	g_test_add_func ("/chc/bus/names", test_bus_names);
	status = g_test_run ();

	{
		g_autoptr (GDir) dir = g_dir_open (tmpdir, 0, NULL);
		const char *name;

		while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *path = g_build_filename (tmpdir, name, NULL);

			g_unlink (path);
		}
	}
	g_assert_no_errno (g_rmdir (tmpdir));
	g_free (tmpdir);
	return status;
}
