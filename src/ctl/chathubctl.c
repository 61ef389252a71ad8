/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <chathub.h>
#include <glib-unix.h>
#include <glib/gi18n.h>
#include <libsoup/soup.h>
#include <inttypes.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chathubctl-chat.h"
#include "chc-bus.h"
#include "chc-key.h"

static int
usage_error (GOptionContext *context, const char *message)
{
	g_printerr ("chathubctl: %s\n", message);
	return 2;
}

static gboolean
parse_rooms (const char *text, JsonArray *rooms, GError **error)
{
	g_auto (GStrv) parts = g_strsplit (text, ",", -1);

	for (guint i = 0; parts[i] != NULL; i++) {
		guint64 room;

		g_strstrip (parts[i]);
		if (*parts[i] == '\0')
			continue;
		if (!g_ascii_string_to_unsigned (parts[i], 10, 1, G_MAXINT64, &room, error)) {
			g_prefix_error (error, _ ("--rooms: "));
			return FALSE;
		}
		json_array_add_int_element (rooms, (gint64) room);
	}
	return TRUE;
}

/* ---- token --------------------------------------------------------------------------- */

static char *token_secret_file;
static char *token_key_file;
static char *token_algorithm;
static char *token_rooms;
static char *token_issuer;
static char *token_audience;
static char *token_key_id;
static gint64 token_user_id;
static gint64 token_ttl = 3600;

static const GOptionEntry token_entries[] = {
    {"secret-file",
     's',
     0,
     G_OPTION_ARG_FILENAME,
     &token_secret_file,
     N_ ("Sign with the shared secret in FILE (HS256, HS384, HS512)"),
     N_ ("FILE")},
    {"key-file",
     'k',
     0,
     G_OPTION_ARG_FILENAME,
     &token_key_file,
     N_ ("Sign with the PEM private key in FILE (RS256, ES256)"),
     N_ ("FILE")},
    {"algorithm",
     0,
     0,
     G_OPTION_ARG_STRING,
     &token_algorithm,
     N_ ("Signature algorithm (default HS256)"),
     N_ ("ALG")},
    {"user-id",
     'u',
     0,
     G_OPTION_ARG_INT64,
     &token_user_id,
     N_ ("The user id (required)"),
     N_ ("N")},
    {"ttl",
     't',
     0,
     G_OPTION_ARG_INT64,
     &token_ttl,
     N_ ("Seconds until the token expires; 0 for no expiry (default 3600)"),
     N_ ("S")},
    {"rooms",
     'r',
     0,
     G_OPTION_ARG_STRING,
     &token_rooms,
     N_ ("Limit the token to these rooms, e.g. 1,2,3"),
     N_ ("LIST")},
    {"issuer", 0, 0, G_OPTION_ARG_STRING, &token_issuer, N_ ("Set the iss claim"), N_ ("ISS")},
    {"audience", 0, 0, G_OPTION_ARG_STRING, &token_audience, N_ ("Set the aud claim"), N_ ("AUD")},
    {"key-id",
     0,
     0,
     G_OPTION_ARG_STRING,
     &token_key_id,
     N_ ("Name the signing key in the kid header ([key:ID] in chathub.conf)"),
     N_ ("ID")},
    {NULL}};

/* The signing key: the file given, else the secret in CHATHUB_JWT_SECRET as chathubd reads
 * it (so that both sides of a development setup need only the variable). */
static GBytes *
read_signing_key (GError **error)
{
	GBytes *key;

	if (token_secret_file != NULL)
		return chc_key_read_secret_file (token_secret_file, error);
	if (token_key_file != NULL)
		return chc_key_read_pem_file (token_key_file, error);
	key = chc_key_secret_from_environment ();
	if (key == NULL)
		g_set_error_literal (error,
				     G_OPTION_ERROR,
				     G_OPTION_ERROR_FAILED,
				     _ ("give --secret-file or --key-file, or set "
					"CHATHUB_JWT_SECRET"));
	return key;
}

static int
command_token (int argc, char **argv)
{
	g_autoptr (GOptionContext) context = g_option_context_new (_ ("- print a signed token"));
	g_autoptr (GError) error = NULL;
	g_autofree char *token = NULL;
	g_autoptr (JsonObject) claims = json_object_new ();
	g_autoptr (GBytes) key = NULL;
	ChatTokenAlgorithm algorithm = CHAT_TOKEN_ALGORITHM_HS256;

	/* --help then reads "chathubctl token [OPTION…]" like the other commands */
	g_set_prgname ("chathubctl token");
	g_option_context_add_main_entries (context, token_entries, GETTEXT_PACKAGE);
	g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
	if (!g_option_context_parse (context, &argc, &argv, &error))
		return usage_error (context, error->message);
	if (token_user_id <= 0)
		return usage_error (context, _ ("--user-id must be a number greater than 0"));
	if (token_ttl < 0)
		return usage_error (context, _ ("--ttl must not be negative"));
	if (token_algorithm != NULL &&
	    !chat_token_algorithm_from_string (token_algorithm, &algorithm, &error))
		return usage_error (context, error->message);
	if (token_secret_file != NULL && token_key_file != NULL)
		return usage_error (context, _ ("give only one of --secret-file and --key-file"));
	key = read_signing_key (&error);
	if (key == NULL)
		return usage_error (context, error->message);

	json_object_set_int_member (claims, "user_id", token_user_id);
	json_object_set_int_member (claims, "iat", g_get_real_time () / G_USEC_PER_SEC);
	if (token_ttl > 0)
		json_object_set_int_member (claims,
					    "exp",
					    g_get_real_time () / G_USEC_PER_SEC + token_ttl);
	if (token_issuer != NULL)
		json_object_set_string_member (claims, "iss", token_issuer);
	if (token_audience != NULL)
		json_object_set_string_member (claims, "aud", token_audience);
	if (token_rooms != NULL) {
		JsonArray *array = json_array_new ();

		json_object_set_array_member (claims, "rooms", array);
		if (!parse_rooms (token_rooms, array, &error))
			return usage_error (context, error->message);
	}
	token = chat_token_sign_with_key_id (algorithm, key, token_key_id, claims, &error);
	if (token == NULL) {
		g_printerr ("chathubctl: %s\n", error->message);
		return 1;
	}
	g_print ("%s\n", token);
	return 0;
}

/* ---- the D-Bus client ----------------------------------------------------------------- */

/* Exit statuses, for scripts: */
#define EXIT_FAILED 1	   /* the service refused: not found, invalid, ... */
#define EXIT_USAGE 2	   /* a bad command line */
#define EXIT_UNAVAILABLE 3 /* no bus, or no service on it */
#define EXIT_DENIED 4	   /* permission denied */

static gboolean opt_session = FALSE;
static gboolean opt_system = FALSE;
static gboolean opt_json = FALSE;

static const GOptionEntry common_entries[] = {
    {"session",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt_session,
     N_ ("Talk to the service on the session bus (the default)"),
     NULL},
    {"system",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt_system,
     N_ ("Talk to the service on the system bus"),
     NULL},
    {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, N_ ("Print JSON for scripts"), NULL},
    {NULL}};

static GBusType
bus_type (void)
{
	return opt_system ? G_BUS_TYPE_SYSTEM : G_BUS_TYPE_SESSION;
}

static const char *
describe_bus (void)
{
	return chc_bus_describe (bus_type ());
}

/* Prints the one line an error deserves and picks the exit status. */
static int
report_error (GError *error)
{
	g_autofree char *remote = g_dbus_error_get_remote_error (error);

	g_dbus_error_strip_remote_error (error);
	if (g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
	    g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
	    (remote != NULL && g_str_has_prefix (remote, "org.freedesktop.systemd1."))) {
		g_printerr (_ ("chathubctl: the chathub service is not running on %s and cannot be "
			       "started\n"),
			    describe_bus ());
		return EXIT_UNAVAILABLE;
	}
	if (remote != NULL && g_str_has_prefix (remote, "org.freedesktop.DBus.Error.Spawn.")) {
		g_printerr (_ ("chathubctl: the chathub service on %s failed to start: %s\n"),
			    describe_bus (),
			    error->message);
		return EXIT_UNAVAILABLE;
	}
	if (g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
	    g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_TIMEOUT) ||
	    g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_TIMED_OUT) ||
	    g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
		g_printerr (_ ("chathubctl: the chathub service on %s did not answer: %s\n"),
			    describe_bus (),
			    error->message);
		return EXIT_UNAVAILABLE;
	}
	if (g_error_matches (error, CHAT_ERROR, CHAT_ERROR_PERMISSION_DENIED) ||
	    g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED) ||
	    g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED)) {
		g_printerr (_ ("chathubctl: permission denied: %s\n"), error->message);
		return EXIT_DENIED;
	}
	g_printerr ("chathubctl: %s\n", error->message);
	return EXIT_FAILED;
}

static GDBusConnection *
connect_bus (int *status)
{
	g_autoptr (GError) error = NULL;
	GDBusConnection *connection;

	/* maps io.github.chathub.Hub1.Error.* back to CHAT_ERROR */
	(void) CHAT_ERROR;
	connection = g_bus_get_sync (bus_type (), NULL, &error);
	if (connection == NULL) {
		g_printerr (_ ("chathubctl: cannot connect to %s: %s\n"),
			    describe_bus (),
			    error->message);
		*status = EXIT_UNAVAILABLE;
	}
	return connection;
}

/* Calls a method of the hub's object; on failure says why and sets *status. The bus starts
 * the service if it is activatable. */
static GVariant *
call_object (GDBusConnection *connection,
	     const char *interface,
	     const char *method,
	     GVariant *parameters,
	     const char *reply_type,
	     int *status)
{
	g_autoptr (GError) error = NULL;
	GVariant *reply =
	    g_dbus_connection_call_sync (connection,
					 CHC_BUS_NAME,
					 CHC_BUS_PATH,
					 interface,
					 method,
					 parameters,
					 reply_type != NULL ? G_VARIANT_TYPE (reply_type) : NULL,
					 G_DBUS_CALL_FLAGS_NONE,
					 -1,
					 NULL,
					 &error);

	if (reply == NULL)
		*status = report_error (error);
	return reply;
}

static GVariant *
call_hub (GDBusConnection *connection,
	  const char *method,
	  GVariant *parameters,
	  const char *reply_type,
	  int *status)
{
	return call_object (connection, CHC_BUS_INTERFACE, method, parameters, reply_type, status);
}

/* Connects to the bus and calls one method of the hub (@parameters may be floating). */
static GVariant *
ask_hub (const char *method, GVariant *parameters, const char *reply_type, int *status)
{
	g_autoptr (GDBusConnection) connection = connect_bus (status);

	if (connection == NULL) {
		if (parameters != NULL)
			g_variant_unref (g_variant_ref_sink (parameters));
		return NULL;
	}
	return call_hub (connection, method, parameters, reply_type, status);
}

/* Parses the common options and the command's own; a command takes exactly n_args words. */
static gboolean
parse_command_line (GOptionContext *context,
		    const GOptionEntry *entries,
		    int *argc,
		    char ***argv,
		    int n_args,
		    int *status)
{
	g_autoptr (GError) error = NULL;
	g_autofree char *name = g_strdup_printf ("chathubctl %s", (*argv)[0]);

	/* --help then reads "chathubctl broadcast [OPTION…] TEXT" */
	g_set_prgname (name);
	if (entries != NULL)
		g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
	g_option_context_add_main_entries (context, common_entries, GETTEXT_PACKAGE);
	g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
	if (!g_option_context_parse (context, argc, argv, &error)) {
		*status = usage_error (context, error->message);
		return FALSE;
	}
	if (opt_session && opt_system) {
		*status = usage_error (context, _ ("give only one of --session and --system"));
		return FALSE;
	}
	/* n_args -1: any number, which the command checks */
	if (n_args >= 0 && *argc - 1 != n_args) {
		g_autofree char *text = NULL;

		if (*argc - 1 < n_args)
			text = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
							     "“%s” needs %d argument; see --help",
							     "“%s” needs %d arguments; see --help",
							     n_args),
						(*argv)[0],
						n_args);
		else
			text =
			    g_strdup_printf (_ ("unexpected argument “%s”"), (*argv)[n_args + 1]);
		*status = usage_error (context, text);
		return FALSE;
	}
	return TRUE;
}

static gboolean
parse_id (const char *what, const char *text, guint64 *out, int *status)
{
	g_autoptr (GError) error = NULL;

	if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXUINT64, out, &error)) {
		g_printerr (_ ("chathubctl: %s must be a number greater than 0, not “%s”\n"),
			    what,
			    text);
		*status = EXIT_USAGE;
		return FALSE;
	}
	return TRUE;
}

/* Every --json key is snake_case, whatever the D-Bus name it comes from: "ClientCount" and
 * "messages-relayed" become "client_count" and "messages_relayed". */
static char *
json_key (const char *name)
{
	GString *key = g_string_new (NULL);

	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '-') {
			g_string_append_c (key, '_');
		} else if (g_ascii_isupper (*p)) {
			if (p != name && p[-1] != '-')
				g_string_append_c (key, '_');
			g_string_append_c (key, g_ascii_tolower (*p));
		} else {
			g_string_append_c (key, *p);
		}
	}
	return g_string_free (key, FALSE);
}

/* An a{sv} as a JSON object with json_key() keys. */
static JsonObject *
json_object_from_vardict (GVariant *dict)
{
	JsonObject *object = json_object_new ();
	GVariantIter iter;
	const char *name;
	GVariant *value;

	g_variant_iter_init (&iter, dict);
	while (g_variant_iter_loop (&iter, "{&sv}", &name, &value)) {
		g_autofree char *key = json_key (name);

		json_object_set_member (object, key, json_gvariant_serialize (value));
	}
	return object;
}

static void
print_json (JsonNode *node, gboolean pretty)
{
	g_autoptr (JsonGenerator) generator = json_generator_new ();
	g_autofree char *text = NULL;

	json_generator_set_pretty (generator, pretty);
	json_generator_set_root (generator, node);
	text = json_generator_to_data (generator, NULL);
	g_print ("%s\n", text);
	fflush (stdout);
}

static void
print_json_object (JsonObject *object, gboolean pretty)
{
	g_autoptr (JsonNode) root = json_node_init_object (json_node_alloc (), object);

	print_json (root, pretty);
}

static void
print_json_array (JsonArray *array)
{
	g_autoptr (JsonNode) root = json_node_init_array (json_node_alloc (), array);

	print_json (root, TRUE);
}

/* "Label:  value" lines whose values line up, whatever the translation's length. */
static void
print_fields (const char *const *labels, const char *const *values, guint n)
{
	glong width = 0;

	for (guint i = 0; i < n; i++)
		width = MAX (width, g_utf8_strlen (labels[i], -1));
	for (guint i = 0; i < n; i++) {
		glong pad = width - g_utf8_strlen (labels[i], -1);

		g_print ("%s%*s  %s\n", labels[i], (int) pad, "", values[i]);
	}
}

/* A table with a header line; every cell is a string, columns are as wide as they need. */
static void
print_table (const char *const *header, guint n_columns, GPtrArray *rows)
{
	g_autofree glong *widths = g_new0 (glong, n_columns);

	for (guint c = 0; c < n_columns; c++)
		widths[c] = g_utf8_strlen (header[c], -1);
	for (guint r = 0; r < rows->len; r++) {
		char **row = rows->pdata[r];

		for (guint c = 0; c < n_columns; c++)
			widths[c] = MAX (widths[c], g_utf8_strlen (row[c], -1));
	}
	for (guint r = 0; r <= rows->len; r++) {
		const char *const *row = r == 0 ? header : rows->pdata[r - 1];
		g_autoptr (GString) line = g_string_new (NULL);

		for (guint c = 0; c < n_columns; c++) {
			g_string_append (line, row[c]);
			if (c + 1 < n_columns) {
				glong pad = widths[c] - g_utf8_strlen (row[c], -1) + 2;

				for (glong i = 0; i < pad; i++)
					g_string_append_c (line, ' ');
			}
		}
		g_print ("%s\n", line->str);
	}
}

static char *
format_time (gint64 unix_seconds)
{
	g_autoptr (GDateTime) time = g_date_time_new_from_unix_local (unix_seconds);

	return time != NULL ? g_date_time_format (time, "%Y-%m-%d %H:%M:%S")
			    : g_strdup_printf ("%" G_GINT64_FORMAT, unix_seconds);
}

static char *
format_rooms (GVariant *rooms)
{
	gsize n = 0;
	const guint64 *ids = g_variant_get_fixed_array (rooms, &n, sizeof (guint64));
	g_autoptr (GString) text = g_string_new (NULL);

	for (gsize i = 0; i < n; i++)
		g_string_append_printf (text, "%s%" PRIu64, i > 0 ? "," : "", ids[i]);
	return g_string_free (g_steal_pointer (&text), FALSE);
}

static char *
format_duration (guint64 seconds)
{
	if (seconds < 60)
		return g_strdup_printf (_ ("%" PRIu64 " s"), seconds);
	if (seconds < 3600)
		return g_strdup_printf (_ ("%" PRIu64 " min %02" PRIu64 " s"),
					seconds / 60,
					seconds % 60);
	if (seconds < 86400)
		return g_strdup_printf (_ ("%" PRIu64 " h %02" PRIu64 " min"),
					seconds / 3600,
					seconds % 3600 / 60);
	return g_strdup_printf (_ ("%" PRIu64 " d %02" PRIu64 " h"),
				seconds / 86400,
				seconds % 86400 / 3600);
}

static guint64
lookup_counter (GVariant *dict, const char *key)
{
	g_autoptr (GVariant) value = g_variant_lookup_value (dict, key, NULL);

	if (value == NULL)
		return 0;
	if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64))
		return g_variant_get_uint64 (value);
	if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32))
		return g_variant_get_uint32 (value);
	return 0;
}

static const char *
lookup_string (GVariant *dict, const char *key)
{
	const char *value = NULL;

	if (!g_variant_lookup (dict, key, "&s", &value))
		return "";
	return value;
}

static int
command_status (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- show the service's version, address, counters"));
	g_autoptr (GDBusConnection) connection = NULL;
	g_autoptr (GVariant) properties = NULL;
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) statistics = NULL;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	connection = connect_bus (&status);
	if (connection == NULL)
		return status;
	reply = call_object (connection,
			     "org.freedesktop.DBus.Properties",
			     "GetAll",
			     g_variant_new ("(s)", CHC_BUS_INTERFACE),
			     "(a{sv})",
			     &status);
	if (reply == NULL)
		return status;
	properties = g_variant_get_child_value (reply, 0);
	g_clear_pointer (&reply, g_variant_unref);
	reply = call_hub (connection, "GetStatistics", NULL, "(a{sv})", &status);
	if (reply == NULL)
		return status;
	statistics = g_variant_get_child_value (reply, 0);

	if (opt_json) {
		g_autoptr (JsonBuilder) builder = json_builder_new ();
		g_autoptr (JsonObject) counters = json_object_from_vardict (statistics);
		g_autoptr (JsonNode) root = NULL;

		json_builder_begin_object (builder);
		json_builder_set_member_name (builder, "bus");
		json_builder_add_string_value (builder, opt_system ? "system" : "session");
		json_builder_set_member_name (builder, "version");
		json_builder_add_string_value (builder, lookup_string (properties, "Version"));
		json_builder_set_member_name (builder, "listen_uri");
		json_builder_add_string_value (builder, lookup_string (properties, "ListenUri"));
		json_builder_set_member_name (builder, "client_count");
		json_builder_add_int_value (builder, lookup_counter (properties, "ClientCount"));
		json_builder_set_member_name (builder, "room_count");
		json_builder_add_int_value (builder, lookup_counter (properties, "RoomCount"));
		json_builder_set_member_name (builder, "cluster_node_count");
		json_builder_add_int_value (builder,
					    lookup_counter (properties, "ClusterNodeCount"));
		json_builder_set_member_name (builder, "cluster_client_count");
		json_builder_add_int_value (builder,
					    lookup_counter (properties, "ClusterClientCount"));
		json_builder_set_member_name (builder, "cluster_room_count");
		json_builder_add_int_value (builder,
					    lookup_counter (properties, "ClusterRoomCount"));
		json_builder_set_member_name (builder, "statistics");
		json_builder_add_value (builder,
					json_node_init_object (json_node_alloc (), counters));
		json_builder_end_object (builder);
		root = json_builder_get_root (builder);
		print_json (root, TRUE);
		return 0;
	} else {
		g_autofree char *clients =
		    g_strdup_printf ("%" PRIu64, lookup_counter (properties, "ClientCount"));
		g_autofree char *rooms =
		    g_strdup_printf ("%" PRIu64, lookup_counter (properties, "RoomCount"));
		/* TRANSLATORS: the hub's figures over all its nodes, e.g. "3 nodes, 57000
		 * clients, 1200 rooms" */
		g_autofree char *hub = g_strdup_printf (
		    _ ("%" PRIu64 " nodes, %" PRIu64 " clients, %" PRIu64 " rooms"),
		    lookup_counter (properties, "ClusterNodeCount"),
		    lookup_counter (properties, "ClusterClientCount"),
		    lookup_counter (properties, "ClusterRoomCount"));
		g_autofree char *uptime = format_duration (lookup_counter (statistics, "uptime"));
		g_autofree char *accepted =
		    g_strdup_printf ("%" PRIu64,
				     lookup_counter (statistics, "connections-accepted"));
		/* a head too large is a bad request; upgrades over the rate and users over their
		 * connection cap are both the limits of [limits] */
		g_autofree char *refused = g_strdup_printf (
		    _ ("%" PRIu64 " bad request, %" PRIu64 " bad token, %" PRIu64
		       " forbidden origin, %" PRIu64 " over limits, %" PRIu64 " server full"),
		    lookup_counter (statistics, "refused-bad-request") +
			lookup_counter (statistics, "refused-header-too-large"),
		    lookup_counter (statistics, "refused-token"),
		    lookup_counter (statistics, "refused-forbidden-origin"),
		    lookup_counter (statistics, "refused-rate") +
			lookup_counter (statistics, "refused-user-limit"),
		    lookup_counter (statistics, "refused-busy"));
		g_autofree char *relayed =
		    g_strdup_printf ("%" PRIu64, lookup_counter (statistics, "messages-relayed"));
		g_autofree char *sent =
		    g_strdup_printf ("%" PRIu64, lookup_counter (statistics, "bytes-sent"));
		g_autofree char *closes =
		    g_strdup_printf (_ ("%" PRIu64 " slow consumers, %" PRIu64 " idle"),
				     lookup_counter (statistics, "slow-consumer-closes"),
				     lookup_counter (statistics, "idle-closes"));
		const char *labels[] = {
		    _ ("Service:"),
		    _ ("Version:"),
		    _ ("Listening on:"),
		    _ ("Clients:"),
		    _ ("Rooms:"),
		    _ ("Whole hub:"),
		    _ ("Uptime:"),
		    _ ("Accepted:"),
		    _ ("Refused:"),
		    _ ("Messages relayed:"),
		    _ ("Bytes sent:"),
		    _ ("Closed:"),
		};
		const char *values[] = {
		    describe_bus (),
		    lookup_string (properties, "Version"),
		    lookup_string (properties, "ListenUri"),
		    clients,
		    rooms,
		    hub,
		    uptime,
		    accepted,
		    refused,
		    relayed,
		    sent,
		    closes,
		};

		print_fields (labels, values, G_N_ELEMENTS (labels));
	}
	return 0;
}

static int
command_nodes (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- list the nodes of the hub and what each holds"));
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) nodes = NULL;
	g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
	g_autoptr (JsonArray) array = json_array_new ();
	GVariantIter iter;
	const char *name;
	GVariant *fields;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	reply = ask_hub ("ListNodes", NULL, "(a(sa{sv}))", &status);
	if (reply == NULL)
		return status;
	nodes = g_variant_get_child_value (reply, 0);
	g_variant_iter_init (&iter, nodes);
	while (g_variant_iter_loop (&iter, "(&s@a{sv})", &name, &fields)) {
		JsonObject *object = json_object_from_vardict (fields);
		char **row = g_new0 (char *, 9);
		gboolean local = FALSE;
		gint64 started = 0;

		json_object_set_string_member (object, "name", name);
		json_array_add_object_element (array, object);
		g_variant_lookup (fields, "local", "b", &local);
		g_variant_lookup (fields, "started", "x", &started);
		row[0] = g_strconcat (name, local ? " *" : "", NULL);
		row[1] = g_strdup (lookup_string (fields, "host"));
		row[2] = g_strdup_printf ("%" PRIu64, lookup_counter (fields, "pid"));
		row[3] = g_strdup_printf ("%" PRIu64, lookup_counter (fields, "connections"));
		row[4] = g_strdup_printf ("%" PRIu64, lookup_counter (fields, "rooms"));
		row[5] = g_strdup_printf ("%" PRIu64, lookup_counter (fields, "messages-relayed"));
		row[6] = format_time (started);
		row[7] = g_strdup (lookup_string (fields, "version"));
		g_ptr_array_add (rows, row);
	}
	if (opt_json) {
		print_json_array (array);
	} else {
		const char *header[] = {_ ("NODE"),
					_ ("HOST"),
					_ ("PID"),
					_ ("CLIENTS"),
					_ ("ROOMS"),
					_ ("RELAYED"),
					_ ("STARTED"),
					_ ("VERSION")};

		print_table (header, G_N_ELEMENTS (header), rows);
		/* TRANSLATORS: under the table of nodes */
		g_print ("%s\n", _ ("* the node that answered"));
	}
	return 0;
}

static int
command_clients (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- list the connected clients"));
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) clients = NULL;
	g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
	g_autoptr (JsonArray) array = json_array_new ();
	GVariantIter iter;
	const char *client_id;
	guint64 user_id;
	gint64 since;
	GVariant *rooms;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	reply = ask_hub ("ListClients", NULL, "(a(stxat))", &status);
	if (reply == NULL)
		return status;
	clients = g_variant_get_child_value (reply, 0);
	g_variant_iter_init (&iter, clients);
	while (g_variant_iter_loop (&iter, "(&stx@at)", &client_id, &user_id, &since, &rooms)) {
		JsonObject *object = json_object_new ();
		JsonArray *room_array = json_array_new ();
		gsize n = 0;
		const guint64 *ids = g_variant_get_fixed_array (rooms, &n, sizeof (guint64));
		char **row = g_new0 (char *, 5);

		for (gsize i = 0; i < n; i++)
			json_array_add_int_element (room_array, (gint64) ids[i]);
		json_object_set_string_member (object, "client_id", client_id);
		json_object_set_int_member (object, "user_id", (gint64) user_id);
		json_object_set_int_member (object, "connected_since", since);
		json_object_set_array_member (object, "rooms", room_array);
		json_array_add_object_element (array, object);

		row[0] = g_strdup (client_id);
		row[1] = g_strdup_printf ("%" PRIu64, user_id);
		row[2] = format_time (since);
		row[3] = format_rooms (rooms);
		g_ptr_array_add (rows, row);
	}
	if (opt_json) {
		print_json_array (array);
	} else if (rows->len == 0) {
		g_print ("%s\n", _ ("No client is connected."));
	} else {
		const char *header[] = {_ ("CLIENT"),
					_ ("USER"),
					_ ("CONNECTED SINCE"),
					_ ("ROOMS")};

		print_table (header, G_N_ELEMENTS (header), rows);
	}
	return 0;
}

static int
compare_room_rows (gconstpointer a, gconstpointer b)
{
	const char *const *x = *(const char *const *const *) a;
	const char *const *y = *(const char *const *const *) b;
	guint64 i = g_ascii_strtoull (x[0], NULL, 10), j = g_ascii_strtoull (y[0], NULL, 10);

	return i < j ? -1 : i > j;
}

static int
command_rooms (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- list the rooms and how many connections joined each"));
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) rooms = NULL;
	g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
	GVariantIter iter;
	guint64 room_id;
	guint32 members;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	reply = ask_hub ("ListRooms", NULL, "(a(tu))", &status);
	if (reply == NULL)
		return status;
	rooms = g_variant_get_child_value (reply, 0);
	g_variant_iter_init (&iter, rooms);
	while (g_variant_iter_next (&iter, "(tu)", &room_id, &members)) {
		char **row = g_new0 (char *, 3);

		row[0] = g_strdup_printf ("%" PRIu64, room_id);
		row[1] = g_strdup_printf ("%u", members);
		g_ptr_array_add (rows, row);
	}
	g_ptr_array_sort (rows, compare_room_rows);
	if (opt_json) {
		g_autoptr (JsonArray) array = json_array_new ();

		for (guint i = 0; i < rows->len; i++) {
			char **row = rows->pdata[i];
			JsonObject *object = json_object_new ();

			json_object_set_int_member (object,
						    "room_id",
						    (gint64) g_ascii_strtoull (row[0], NULL, 10));
			json_object_set_int_member (object,
						    "connections",
						    (gint64) g_ascii_strtoull (row[1], NULL, 10));
			json_array_add_object_element (array, object);
		}
		print_json_array (array);
	} else if (rows->len == 0) {
		g_print ("%s\n", _ ("No room has members."));
	} else {
		const char *header[] = {_ ("ROOM"), _ ("CONNECTIONS")};

		print_table (header, G_N_ELEMENTS (header), rows);
	}
	return 0;
}

/* members and presence: the users of a room, from @method */
static int
print_room_users (const char *method, guint64 room_id)
{
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) users = NULL;
	const guint64 *ids;
	gsize n = 0;
	int status = 0;

	reply = ask_hub (method, g_variant_new ("(t)", room_id), "(at)", &status);
	if (reply == NULL)
		return status;
	users = g_variant_get_child_value (reply, 0);
	ids = g_variant_get_fixed_array (users, &n, sizeof (guint64));
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();
		JsonArray *array = json_array_new ();

		for (gsize i = 0; i < n; i++)
			json_array_add_int_element (array, (gint64) ids[i]);
		json_object_set_int_member (object, "room_id", (gint64) room_id);
		json_object_set_array_member (object, "user_ids", array);
		print_json_object (object, TRUE);
	} else if (n == 0) {
		g_print (_ ("Nobody is in room %" PRIu64 ".\n"), room_id);
	} else {
		g_autoptr (GPtrArray) rows = NULL;
		const char *header[] = {_ ("USER")};

		rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

		for (gsize i = 0; i < n; i++) {
			char **row = g_new0 (char *, 2);

			row[0] = g_strdup_printf ("%" PRIu64, ids[i]);
			g_ptr_array_add (rows, row);
		}
		print_table (header, G_N_ELEMENTS (header), rows);
	}
	return 0;
}

/* `members` and `presence`: one ROOM argument, a list of user ids from @method */
static int
room_users_command (int argc, char **argv, const char *summary, const char *method)
{
	g_autoptr (GOptionContext) context = g_option_context_new (summary);
	guint64 room_id = 0;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 1, &status) ||
	    !parse_id (_ ("ROOM"), argv[1], &room_id, &status))
		return status;
	return print_room_users (method, room_id);
}

static int
command_members (int argc, char **argv)
{
	return room_users_command (argc,
				   argv,
				   _ ("ROOM - list the users in a room"),
				   "RoomMembers");
}

static int
command_presence (int argc, char **argv)
{
	return room_users_command (argc,
				   argv,
				   _ ("ROOM - list the users connected in a room, ascending"),
				   "Presence");
}

static char *history_before;
static char *history_limit;

static const GOptionEntry history_entries[] = {
    {"before",
     'b',
     0,
     G_OPTION_ARG_STRING,
     &history_before,
     N_ ("Only messages with an offset below N (default: from the newest)"),
     N_ ("N")},
    {"limit",
     'l',
     0,
     G_OPTION_ARG_STRING,
     &history_limit,
     N_ ("At most L messages (default 50, at most 100)"),
     N_ ("L")},
    {NULL}};

static gboolean
parse_count (const char *what, const char *text, guint64 max, guint64 *out, int *status)
{
	if (text == NULL)
		return TRUE;
	if (!g_ascii_string_to_unsigned (text, 10, 0, max, out, NULL)) {
		g_printerr (_ ("chathubctl: %s must be a number from 0 to %" PRIu64 ", not “%s”\n"),
			    what,
			    max,
			    text);
		*status = EXIT_USAGE;
		return FALSE;
	}
	return TRUE;
}

/* One table cell of a stored frame: its text, or its data when it has none, on one line. */
static char *
history_content (JsonObject *frame)
{
	g_autofree char *text = NULL;

	if (json_object_has_member (frame, "content"))
		text = g_strdup (json_object_get_string_member_with_default (frame, "content", ""));
	else if (json_object_has_member (frame, "data"))
		text = json_to_string (json_object_get_member (frame, "data"), FALSE);
	else
		text = g_strdup ("");
	/* a newline in a message would break the table's rows */
	for (char *p = text; *p != '\0'; p++) {
		if ((guchar) *p < 0x20)
			*p = ' ';
	}
	return g_steal_pointer (&text);
}

static char *
history_number (JsonObject *frame, const char *member)
{
	return g_strdup_printf ("%" G_GINT64_FORMAT,
				json_object_get_int_member_with_default (frame, member, 0));
}

static int
command_history (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("ROOM - list a room's stored messages, oldest first"));
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GVariant) texts = NULL;
	g_autoptr (JsonArray) frames = json_array_new ();
	const char *epoch = NULL;
	guint64 room_id = 0, before = 0, limit = 0;
	int status = 0;

	if (!parse_command_line (context, history_entries, &argc, &argv, 1, &status) ||
	    !parse_id (_ ("ROOM"), argv[1], &room_id, &status) ||
	    !parse_count ("--before", history_before, G_MAXUINT64, &before, &status) ||
	    !parse_count ("--limit", history_limit, G_MAXUINT32, &limit, &status))
		return status;
	reply = ask_hub ("History",
			 g_variant_new ("(ttu)", room_id, before, (guint32) limit),
			 "(sas)",
			 &status);
	if (reply == NULL)
		return status;
	g_variant_get (reply, "(&s@as)", &epoch, &texts);
	for (gsize i = 0; i < g_variant_n_children (texts); i++) {
		g_autoptr (GError) error = NULL;
		const char *text = NULL;
		g_autoptr (JsonNode) node = NULL;

		g_variant_get_child (texts, i, "&s", &text);
		node = json_from_string (text, &error);
		if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)) {
			g_printerr (_ ("chathubctl: the service sent a message that is not a JSON "
				       "object: %s\n"),
				    error != NULL ? error->message : text);
			return EXIT_FAILED;
		}
		json_array_add_element (frames, g_steal_pointer (&node));
	}
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();

		json_object_set_int_member (object, "room_id", (gint64) room_id);
		json_object_set_string_member (object, "epoch", epoch);
		json_object_set_array_member (object, "messages", json_array_ref (frames));
		print_json_object (object, TRUE);
	} else if (json_array_get_length (frames) == 0) {
		g_print (_ ("No message is stored in room %" PRIu64 ".\n"), room_id);
	} else {
		g_autoptr (GPtrArray) rows =
		    g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
		const char *header[] = {_ ("OFFSET"),
					_ ("ID"),
					_ ("FROM"),
					_ ("TIME"),
					_ ("CONTENT")};

		for (guint i = 0; i < json_array_get_length (frames); i++) {
			JsonObject *frame = json_array_get_object_element (frames, i);
			char **row = g_new0 (char *, 6);

			row[0] = history_number (frame, "offset");
			row[1] = history_number (frame, "id");
			row[2] = history_number (frame, "from");
			row[3] = format_time (
			    json_object_get_int_member_with_default (frame, "timestamp", 0));
			row[4] = history_content (frame);
			g_ptr_array_add (rows, row);
		}
		print_table (header, G_N_ELEMENTS (header), rows);
	}
	return 0;
}

static char *broadcast_room;
static char *broadcast_to;
static char *broadcast_data;

static const GOptionEntry broadcast_entries[] = {
    {"room",
     'r',
     0,
     G_OPTION_ARG_STRING,
     &broadcast_room,
     N_ ("Only to the members of this room"),
     N_ ("ROOM")},
    {"to",
     't',
     0,
     G_OPTION_ARG_STRING,
     &broadcast_to,
     N_ ("Only to the connections of this user"),
     N_ ("USER")},
    {"data",
     'd',
     0,
     G_OPTION_ARG_STRING,
     &broadcast_data,
     N_ ("Attach this JSON value as the message's data"),
     N_ ("JSON")},
    {NULL}};

static int
command_broadcast (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("TEXT - post a message from the service"));
	g_autoptr (GVariant) reply = NULL;
	GVariantBuilder options;
	guint64 id = 0, room_id = 0, user_id = 0;
	guint32 recipients = 0;
	int status = 0;

	if (!parse_command_line (context, broadcast_entries, &argc, &argv, 1, &status))
		return status;
	if (broadcast_room != NULL && broadcast_to != NULL)
		return usage_error (context, _ ("give at most one of --room and --to"));
	if ((broadcast_room != NULL && !parse_id ("--room", broadcast_room, &room_id, &status)) ||
	    (broadcast_to != NULL && !parse_id ("--to", broadcast_to, &user_id, &status)))
		return status;

	g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
	if (broadcast_room != NULL)
		g_variant_builder_add (&options, "{sv}", "room_id", g_variant_new_uint64 (room_id));
	if (broadcast_to != NULL)
		g_variant_builder_add (&options, "{sv}", "to", g_variant_new_uint64 (user_id));
	if (broadcast_data != NULL)
		g_variant_builder_add (&options,
				       "{sv}",
				       "data",
				       g_variant_new_string (broadcast_data));

	reply =
	    ask_hub ("Broadcast", g_variant_new ("(sa{sv})", argv[1], &options), "(tu)", &status);
	if (reply == NULL)
		return status;
	g_variant_get (reply, "(tu)", &id, &recipients);
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();

		json_object_set_int_member (object, "id", (gint64) id);
		json_object_set_int_member (object, "recipients", recipients);
		print_json_object (object, TRUE);
	} else if (recipients > 0) {
		g_print (g_dngettext (GETTEXT_PACKAGE,
				      "Sent message %" PRIu64 " to %u connection.\n",
				      "Sent message %" PRIu64 " to %u connections.\n",
				      recipients),
			 id,
			 recipients);
	} else if (broadcast_room != NULL) {
		/* not an error (a room may empty at any time), but nobody will read it */
		g_print (_ ("Message %" PRIu64 " reached nobody: room %" PRIu64 " has no "
			    "members.\n"),
			 id,
			 room_id);
	} else {
		g_print (_ ("Message %" PRIu64 " reached nobody: no client is connected.\n"), id);
	}
	return 0;
}

static char *disconnect_reason;

static const GOptionEntry disconnect_entries[] = {{"reason",
						   0,
						   0,
						   G_OPTION_ARG_STRING,
						   &disconnect_reason,
						   N_ ("The reason the client is told, in English"),
						   N_ ("TEXT")},
						  {NULL}};

static const GOptionEntry disconnect_user_entries[] = {
    {"reason",
     0,
     0,
     G_OPTION_ARG_STRING,
     &disconnect_reason,
     N_ ("The reason the clients are told, in English"),
     N_ ("TEXT")},
    {NULL}};

static int
command_disconnect (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("CLIENT_ID - close one connection (code 1008)"));
	g_autoptr (GVariant) reply = NULL;
	int status = 0;

	if (!parse_command_line (context, disconnect_entries, &argc, &argv, 1, &status))
		return status;
	reply = ask_hub (
	    "Disconnect",
	    g_variant_new ("(ss)", argv[1], disconnect_reason != NULL ? disconnect_reason : ""),
	    "()",
	    &status);
	if (reply == NULL)
		return status;
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();

		json_object_set_string_member (object, "client_id", argv[1]);
		print_json_object (object, TRUE);
	} else {
		g_print (_ ("Disconnected client %s.\n"), argv[1]);
	}
	return 0;
}

static int
command_disconnect_user (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("USER - close every connection of a user (code 1008)"));
	g_autoptr (GVariant) reply = NULL;
	guint64 user_id = 0;
	guint32 count = 0;
	int status = 0;

	if (!parse_command_line (context, disconnect_user_entries, &argc, &argv, 1, &status) ||
	    !parse_id (_ ("USER"), argv[1], &user_id, &status))
		return status;
	reply = ask_hub (
	    "DisconnectUser",
	    g_variant_new ("(ts)", user_id, disconnect_reason != NULL ? disconnect_reason : ""),
	    "(u)",
	    &status);
	if (reply == NULL)
		return status;
	g_variant_get (reply, "(u)", &count);
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();

		json_object_set_int_member (object, "user_id", (gint64) user_id);
		json_object_set_int_member (object, "count", count);
		print_json_object (object, TRUE);
	} else {
		g_print (g_dngettext (GETTEXT_PACKAGE,
				      "Closed %u connection of user %" PRIu64 ".\n",
				      "Closed %u connections of user %" PRIu64 ".\n",
				      count),
			 count,
			 user_id);
	}
	return 0;
}

static int
command_reload (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- read the configuration file again: token keys and limits"));
	g_autoptr (GVariant) reply = NULL;
	guint32 keys = 0;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	reply = ask_hub ("Reload", NULL, "(u)", &status);
	if (reply == NULL)
		return status;
	g_variant_get (reply, "(u)", &keys);
	if (opt_json) {
		g_autoptr (JsonObject) object = json_object_new ();

		json_object_set_int_member (object, "keys", keys);
		print_json_object (object, TRUE);
	} else {
		g_print (g_dngettext (GETTEXT_PACKAGE,
				      "Reloaded; %u token key is valid.\n",
				      "Reloaded; %u token keys are valid.\n",
				      keys),
			 keys);
	}
	return 0;
}

/* ---- monitor -------------------------------------------------------------------------- */

typedef struct {
	GMainLoop *loop;
	gboolean service_seen;
} Monitor;

/* One event: a JSON line, or a time-stamped sentence. */
static void
print_event (JsonObject *event, const char *text)
{
	if (opt_json) {
		print_json_object (event, FALSE);
	} else {
		g_autoptr (GDateTime) now = g_date_time_new_now_local ();
		g_autofree char *time = g_date_time_format (now, "%H:%M:%S");

		g_print ("%s  %s\n", time, text);
		fflush (stdout);
	}
}

static JsonObject *
event_new (const char *name)
{
	JsonObject *event = json_object_new ();

	json_object_set_string_member (event, "event", name);
	return event;
}

static void
on_properties_changed (GVariant *parameters)
{
	g_autoptr (GVariant) changed = NULL;
	g_autoptr (JsonObject) event = event_new ("properties-changed");
	JsonObject *properties = json_object_new ();
	g_autoptr (GString) text = g_string_new (NULL);
	const char *interface;
	GVariantIter iter;
	const char *name;
	GVariant *value;

	g_variant_get (parameters, "(&s@a{sv}@as)", &interface, &changed, NULL);
	if (g_strcmp0 (interface, CHC_BUS_INTERFACE) != 0) {
		json_object_unref (properties);
		return;
	}
	g_variant_iter_init (&iter, changed);
	while (g_variant_iter_loop (&iter, "{&sv}", &name, &value)) {
		g_autofree char *printed = g_variant_print (value, FALSE);
		g_autofree char *key = json_key (name);

		json_object_set_member (properties, key, json_gvariant_serialize (value));
		g_string_append_printf (text,
					"%s%s = %s",
					text->len > 0 ? ", " : "",
					name,
					printed);
	}
	json_object_set_object_member (event, "properties", properties);
	print_event (event, text->str);
}

static void
on_hub_signal (GDBusConnection *connection,
	       const char *sender,
	       const char *path,
	       const char *interface,
	       const char *signal,
	       GVariant *parameters,
	       gpointer user_data)
{
	g_autoptr (JsonObject) event = NULL;
	g_autofree char *text = NULL;
	const char *client_id, *content;
	guint64 user_id, id, from;
	guint16 code;

	if (g_strcmp0 (interface, "org.freedesktop.DBus.Properties") == 0 &&
	    g_strcmp0 (signal, "PropertiesChanged") == 0 &&
	    g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)"))) {
		on_properties_changed (parameters);
		return;
	}
	if (g_strcmp0 (interface, CHC_BUS_INTERFACE) != 0)
		return;
	if (g_strcmp0 (signal, "ClientRegistered") == 0 &&
	    g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(st)"))) {
		g_variant_get (parameters, "(&st)", &client_id, &user_id);
		event = event_new ("client-registered");
		json_object_set_string_member (event, "client_id", client_id);
		json_object_set_int_member (event, "user_id", (gint64) user_id);
		text = g_strdup_printf (_ ("Client %s of user %" PRIu64 " connected"),
					client_id,
					user_id);
	} else if (g_strcmp0 (signal, "ClientUnregistered") == 0 &&
		   g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(stq)"))) {
		g_variant_get (parameters, "(&stq)", &client_id, &user_id, &code);
		event = event_new ("client-unregistered");
		json_object_set_string_member (event, "client_id", client_id);
		json_object_set_int_member (event, "user_id", (gint64) user_id);
		json_object_set_int_member (event, "close_code", code);
		text = g_strdup_printf (_ ("Client %s of user %" PRIu64 " left (close "
					   "code %u)"),
					client_id,
					user_id,
					code);
	} else if (g_strcmp0 (signal, "MessageBroadcast") == 0 &&
		   g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(tts)"))) {
		g_variant_get (parameters, "(tt&s)", &id, &from, &content);
		event = event_new ("message-broadcast");
		json_object_set_int_member (event, "id", (gint64) id);
		json_object_set_int_member (event, "from", (gint64) from);
		json_object_set_string_member (event, "content", content);
		text = from == 0 ? g_strdup_printf (_ ("Message %" PRIu64 " from the service "
						       "to everyone: %s"),
						    id,
						    content)
				 : g_strdup_printf (_ ("Message %" PRIu64 " from user "
						       "%" PRIu64 " to everyone: %s"),
						    id,
						    from,
						    content);
	} else {
		return;
	}
	print_event (event, text);
}

static void
on_service_appeared (GDBusConnection *connection,
		     const char *name,
		     const char *owner,
		     gpointer user_data)
{
	Monitor *monitor = user_data;
	g_autoptr (JsonObject) event = NULL;

	/* the first appearance is the service we just reached */
	if (!monitor->service_seen) {
		monitor->service_seen = TRUE;
		return;
	}
	event = event_new ("service-started");
	print_event (event, _ ("The service started"));
}

static void
on_service_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
	Monitor *monitor = user_data;
	g_autoptr (JsonObject) event = NULL;

	monitor->service_seen = TRUE;
	event = event_new ("service-stopped");
	print_event (event, _ ("The service stopped"));
}

static gboolean
on_quit_signal (gpointer user_data)
{
	Monitor *monitor = user_data;

	g_main_loop_quit (monitor->loop);
	return G_SOURCE_CONTINUE;
}

static int
command_monitor (int argc, char **argv)
{
	g_autoptr (GOptionContext) context =
	    g_option_context_new (_ ("- print the service's events until interrupted"));
	g_autoptr (GDBusConnection) connection = NULL;
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (JsonObject) ready = NULL;
	g_autofree char *text = NULL;
	Monitor monitor = {NULL, FALSE};
	guint subscription, watch, sigint, sigterm;
	int status = 0;

	if (!parse_command_line (context, NULL, &argc, &argv, 0, &status))
		return status;
	connection = connect_bus (&status);
	if (connection == NULL)
		return status;
	/* subscribe first: whatever happens after the ping's answer is seen */
	subscription = g_dbus_connection_signal_subscribe (connection,
							   CHC_BUS_NAME,
							   NULL,
							   NULL,
							   CHC_BUS_PATH,
							   NULL,
							   G_DBUS_SIGNAL_FLAGS_NONE,
							   on_hub_signal,
							   &monitor,
							   NULL);
	reply = call_object (connection, "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, &status);
	if (reply == NULL) {
		g_dbus_connection_signal_unsubscribe (connection, subscription);
		return status;
	}
	monitor.loop = g_main_loop_new (NULL, FALSE);
	watch = g_bus_watch_name_on_connection (connection,
						CHC_BUS_NAME,
						G_BUS_NAME_WATCHER_FLAGS_NONE,
						on_service_appeared,
						on_service_vanished,
						&monitor,
						NULL);
	sigint = g_unix_signal_add (SIGINT, on_quit_signal, &monitor);
	sigterm = g_unix_signal_add (SIGTERM, on_quit_signal, &monitor);

	ready = event_new ("monitoring");
	json_object_set_string_member (ready, "bus", opt_system ? "system" : "session");
	text = g_strdup_printf (_ ("Monitoring %s on %s; press Ctrl+C to stop"),
				CHC_BUS_NAME,
				describe_bus ());
	print_event (ready, text);

	g_main_loop_run (monitor.loop);

	g_source_remove (sigint);
	g_source_remove (sigterm);
	g_bus_unwatch_name (watch);
	g_dbus_connection_signal_unsubscribe (connection, subscription);
	g_main_loop_unref (monitor.loop);
	return 0;
}

static int ready_wait = 0;

static const GOptionEntry ready_entries[] = {
    {"wait",
     'w',
     0,
     G_OPTION_ARG_INT,
     &ready_wait,
     N_ ("Ask again until ready, for up to this many seconds (default 0: once)"),
     N_ ("SECONDS")},
    {NULL}};

/* The service's own certificate: the address came from the service itself (over the local
 * bus) or from the command line, and a readiness probe sends nothing secret. */
static gboolean
on_accept_certificate (SoupMessage *message,
		       GTlsCertificate *certificate,
		       GTlsCertificateFlags errors,
		       gpointer user_data)
{
	return TRUE;
}

/* ws://HOST:PORT/PATH (the service's ListenUri) or an http(s) URL -> its /readyz */
static char *
readyz_uri (const char *address, GError **error)
{
	g_autoptr (GUri) uri = g_uri_parse (address, G_URI_FLAGS_NONE, error);
	const char *scheme;

	if (uri == NULL)
		return NULL;
	scheme = g_uri_get_scheme (uri);
	if (g_strcmp0 (scheme, "ws") == 0 || g_strcmp0 (scheme, "http") == 0)
		scheme = "http";
	else
		scheme = "https";
	return g_uri_join (G_URI_FLAGS_NONE,
			   scheme,
			   NULL,
			   g_uri_get_host (uri),
			   g_uri_get_port (uri),
			   "/readyz",
			   NULL,
			   NULL);
}

/* GET /readyz until it answers 200 or --wait is over; prints its JSON body. For systemd's
 * ExecStartPost: the unit is ready once the bus name is owned, which is before a store or
 * Redis may be reachable. */
static int
command_ready (int argc, char **argv)
{
	g_autoptr (GOptionContext) context = g_option_context_new (
	    _ ("[URL] - check that the service takes new clients: its /readyz answers 200"));
	g_autoptr (SoupSession) session = NULL;
	g_autoptr (GError) error = NULL;
	g_autofree char *address = NULL;
	g_autofree char *uri = NULL;
	gint64 deadline;
	int status = 0;

	if (!parse_command_line (context, ready_entries, &argc, &argv, -1, &status))
		return status;
	if (argc > 2)
		return usage_error (context, _ ("give at most one URL"));
	if (ready_wait < 0)
		return usage_error (context, _ ("--wait takes a number of seconds"));
	if (argc == 2) {
		address = g_strdup (argv[1]);
	} else {
		g_autoptr (GDBusConnection) connection = connect_bus (&status);
		g_autoptr (GVariant) reply = NULL;
		g_autoptr (GVariant) value = NULL;

		if (connection == NULL)
			return status;
		reply = call_object (connection,
				     "org.freedesktop.DBus.Properties",
				     "Get",
				     g_variant_new ("(ss)", CHC_BUS_INTERFACE, "ListenUri"),
				     "(v)",
				     &status);
		if (reply == NULL)
			return status;
		g_variant_get (reply, "(v)", &value);
		address = g_variant_dup_string (value, NULL);
	}
	uri = readyz_uri (address, &error);
	if (uri == NULL) {
		g_printerr ("chathubctl: %s\n", error->message);
		return EXIT_USAGE;
	}
	session = soup_session_new_with_options ("timeout", 5, NULL);
	deadline = g_get_monotonic_time () + (gint64) ready_wait * G_USEC_PER_SEC;
	for (;;) {
		g_autoptr (SoupMessage) message = soup_message_new ("GET", uri);
		g_autoptr (GBytes) body = NULL;

		g_clear_error (&error);
		g_signal_connect (message,
				  "accept-certificate",
				  G_CALLBACK (on_accept_certificate),
				  NULL);
		body = soup_session_send_and_read (session, message, NULL, &error);
		if (body != NULL && soup_message_get_status (message) == SOUP_STATUS_OK) {
			g_print ("%.*s\n",
				 (int) g_bytes_get_size (body),
				 (const char *) g_bytes_get_data (body, NULL));
			return 0;
		}
		if (g_get_monotonic_time () >= deadline) {
			if (body != NULL)
				g_print ("%.*s\n",
					 (int) g_bytes_get_size (body),
					 (const char *) g_bytes_get_data (body, NULL));
			else
				g_printerr ("chathubctl: %s: %s\n", uri, error->message);
			return EXIT_FAILED;
		}
		g_usleep (G_USEC_PER_SEC / 4);
	}
}

/* ---- main ----------------------------------------------------------------------------- */

typedef struct {
	const char *name;
	int (*run) (int argc, char **argv);
	const char *synopsis;
	const char *summary;
} Command;

/* TRANSLATORS: in the synopses, translate only the uppercase placeholders (ROOM, USER, TEXT,
 * JSON, CLIENT_ID, N); command names and options stay as they are. */
static const Command commands[] = {
    {"status", command_status, "status", N_ ("version, address, counts and counters")},
    {"nodes", command_nodes, "nodes", N_ ("the nodes of the hub, their clients and rooms")},
    {"clients", command_clients, "clients", N_ ("the connected clients")},
    {"rooms", command_rooms, "rooms", N_ ("the rooms and their connections")},
    {"members", command_members, N_ ("members ROOM"), N_ ("the users in a room")},
    {"presence",
     command_presence,
     N_ ("presence ROOM"),
     N_ ("the users connected in a room, ascending")},
    {"history",
     command_history,
     N_ ("history ROOM [--before N] [--limit L]"),
     N_ ("a room's stored messages, oldest first")},
    {"broadcast",
     command_broadcast,
     N_ ("broadcast [--room N | --to USER] [--data JSON] TEXT"),
     N_ ("post a message from the service (from 0)")},
    {"disconnect",
     command_disconnect,
     N_ ("disconnect [--reason TEXT] CLIENT_ID"),
     N_ ("close one connection with 1008")},
    {"disconnect-user",
     command_disconnect_user,
     N_ ("disconnect-user [--reason TEXT] USER"),
     N_ ("close every connection of a user with 1008")},
    {"reload",
     command_reload,
     "reload",
     N_ ("read the configuration again: token keys, limits (as SIGHUP)")},
    {"ready",
     command_ready,
     N_ ("ready [--wait SECONDS] [URL]"),
     N_ ("whether the service takes new clients (its /readyz), for probes")},
    {"monitor", command_monitor, "monitor", N_ ("print events as they happen, until interrupted")},
    {"chat",
     chathubctl_command_chat,
     N_ ("chat --uri URL (--token JWT | --secret-file FILE --user-id N)"),
     N_ ("chat in a terminal over WebSocket, reconnecting by itself")},
    {"token",
     command_token,
     N_ ("token --user-id N ..."),
     N_ ("print a signed token (for development and tests)")},
};

static void
print_usage (void)
{
	g_print ("%s\n\n",
		 _ ("Usage: chathubctl [--session | --system] [--json] COMMAND [OPTIONS]"));
	g_print ("%s\n", _ ("Commands:"));
	for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
		g_print ("  %s\n      %s\n", _ (commands[i].synopsis), _ (commands[i].summary));
	g_print ("\n%s\n%s\n%s\n%s\n",
		 _ ("--session and --system choose the bus of the service (the session bus by "
		    "default); --json prints JSON."),
		 _ ("--help prints this text, --version the version of chathubctl."),
		 _ ("Exit status: 0 success, 1 refused by the service, 2 bad usage, 3 service not "
		    "available, 4 permission denied."),
		 _ ("Run “chathubctl COMMAND --help” for the options of a command."));
}

int
main (int argc, char **argv)
{
	int first = 1;

	setlocale (LC_ALL, "");
	bindtextdomain (GETTEXT_PACKAGE,
			g_getenv ("CHATHUB_LOCALEDIR") != NULL ? g_getenv ("CHATHUB_LOCALEDIR")
							       : LOCALEDIR);
	bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
	textdomain (GETTEXT_PACKAGE);
	g_set_prgname ("chathubctl");

	/* the common options may also come before the command */
	for (; first < argc && argv[first][0] == '-'; first++) {
		if (strcmp (argv[first], "--session") == 0) {
			opt_session = TRUE;
		} else if (strcmp (argv[first], "--system") == 0) {
			opt_system = TRUE;
		} else if (strcmp (argv[first], "--json") == 0 || strcmp (argv[first], "-j") == 0) {
			opt_json = TRUE;
		} else if (strcmp (argv[first], "--help") == 0 || strcmp (argv[first], "-h") == 0) {
			print_usage ();
			return 0;
		} else if (strcmp (argv[first], "--version") == 0) {
			g_print ("chathubctl %s\n", PACKAGE_VERSION);
			return 0;
		} else {
			g_printerr (_ ("chathubctl: unknown option “%s”\n"), argv[first]);
			return EXIT_USAGE;
		}
	}
	if (first >= argc) {
		print_usage ();
		return EXIT_USAGE;
	}
	for (guint i = 0; i < G_N_ELEMENTS (commands); i++) {
		if (strcmp (argv[first], commands[i].name) == 0)
			return commands[i].run (argc - first, argv + first);
	}
	g_printerr (_ ("chathubctl: unknown command “%s”\n"), argv[first]);
	return EXIT_USAGE;
}
