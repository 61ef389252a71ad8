/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <chathub.h>
#include <glib/gi18n.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

static int
usage_error (GOptionContext *context, const char *message)
{
	g_printerr ("chathubctl: %s\n", message);
	return 2;
}

static gboolean
parse_rooms (const char *text, JsonArray *rooms, GError **error)
{
	g_auto(GStrv) parts = g_strsplit (text, ",", -1);

	for (guint i = 0; parts[i] != NULL; i++) {
		guint64 room;

		g_strstrip (parts[i]);
		if (*parts[i] == '\0')
			continue;
		if (!g_ascii_string_to_unsigned (parts[i], 10, 1, G_MAXINT64, &room, error)) {
			g_prefix_error (error, _("--rooms: "));
			return FALSE;
		}
		json_array_add_int_element (rooms, (gint64) room);
	}
	return TRUE;
}

static int
command_token (int argc, char **argv)
{
	g_autoptr(GOptionContext) context = g_option_context_new (_("- print a signed token"));
	g_autoptr(GError) error = NULL;
	g_autofree char *secret_file = NULL;
	g_autofree char *key_file = NULL;
	g_autofree char *algorithm_name = NULL;
	g_autofree char *rooms = NULL;
	g_autofree char *issuer = NULL;
	g_autofree char *audience = NULL;
	g_autofree char *contents = NULL;
	g_autofree char *token = NULL;
	g_autoptr(JsonObject) claims = json_object_new ();
	g_autoptr(GBytes) key = NULL;
	ChatTokenAlgorithm algorithm = CHAT_TOKEN_ALGORITHM_HS256;
	gint64 user_id = 0;
	gint64 ttl = 3600;
	gsize length = 0;
	const GOptionEntry entries[] = {
		{ "secret-file", 's', 0, G_OPTION_ARG_FILENAME, &secret_file,
		  N_("Sign with the shared secret in FILE (HS256, HS384, HS512)"), N_("FILE") },
		{ "key-file", 'k', 0, G_OPTION_ARG_FILENAME, &key_file,
		  N_("Sign with the PEM private key in FILE (RS256, ES256)"), N_("FILE") },
		{ "algorithm", 0, 0, G_OPTION_ARG_STRING, &algorithm_name,
		  N_("Signature algorithm (default HS256)"), N_("ALG") },
		{ "user-id", 'u', 0, G_OPTION_ARG_INT64, &user_id, N_("The user id (required)"),
		  N_("N") },
		{ "ttl", 't', 0, G_OPTION_ARG_INT64, &ttl,
		  N_("Seconds until the token expires; 0 for no expiry (default 3600)"), N_("S") },
		{ "rooms", 'r', 0, G_OPTION_ARG_STRING, &rooms,
		  N_("Limit the token to these rooms, e.g. 1,2,3"), N_("LIST") },
		{ "issuer", 0, 0, G_OPTION_ARG_STRING, &issuer, N_("Set the iss claim"), N_("ISS") },
		{ "audience", 0, 0, G_OPTION_ARG_STRING, &audience, N_("Set the aud claim"),
		  N_("AUD") },
		{ NULL }
	};

	g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
	g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
	if (!g_option_context_parse (context, &argc, &argv, &error))
		return usage_error (context, error->message);
	if (user_id <= 0)
		return usage_error (context, _("--user-id must be a number greater than 0"));
	if (ttl < 0)
		return usage_error (context, _("--ttl must not be negative"));
	if (algorithm_name != NULL &&
	    !chat_token_algorithm_from_string (algorithm_name, &algorithm, &error))
		return usage_error (context, error->message);
	if ((secret_file == NULL) == (key_file == NULL))
		return usage_error (context, _("give exactly one of --secret-file and --key-file"));
	if (!g_file_get_contents (secret_file != NULL ? secret_file : key_file, &contents, &length,
				  &error))
		return usage_error (context, error->message);
	if (secret_file != NULL && length > 0 && contents[length - 1] == '\n')
		length--;
	key = g_bytes_new (contents, length);

	json_object_set_int_member (claims, "user_id", user_id);
	json_object_set_int_member (claims, "iat", g_get_real_time () / G_USEC_PER_SEC);
	if (ttl > 0)
		json_object_set_int_member (claims, "exp", g_get_real_time () / G_USEC_PER_SEC + ttl);
	if (issuer != NULL)
		json_object_set_string_member (claims, "iss", issuer);
	if (audience != NULL)
		json_object_set_string_member (claims, "aud", audience);
	if (rooms != NULL) {
		JsonArray *array = json_array_new ();

		json_object_set_array_member (claims, "rooms", array);
		if (!parse_rooms (rooms, array, &error))
			return usage_error (context, error->message);
	}
	token = chat_token_sign (algorithm, key, claims, &error);
	if (token == NULL) {
		g_printerr ("chathubctl: %s\n", error->message);
		return 1;
	}
	g_print ("%s\n", token);
	return 0;
}

int
main (int argc, char **argv)
{
	setlocale (LC_ALL, "");
	bindtextdomain (GETTEXT_PACKAGE, g_getenv ("CHATHUB_LOCALEDIR") != NULL
						 ? g_getenv ("CHATHUB_LOCALEDIR")
						 : LOCALEDIR);
	bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
	textdomain (GETTEXT_PACKAGE);
	g_set_prgname ("chathubctl");

	if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
		g_print ("%s\n\n  %s\n\n%s\n",
			 _("Usage: chathubctl COMMAND [OPTIONS]"),
			 _("token    print a signed token (for development and tests)"),
			 _("Run “chathubctl COMMAND --help” for the options of a command."));
		return argc < 2 ? 2 : 0;
	}
	if (strcmp (argv[1], "token") == 0)
		return command_token (argc - 1, argv + 1);
	g_printerr (_("chathubctl: unknown command “%s”\n"), argv[1]);
	return 2;
}
