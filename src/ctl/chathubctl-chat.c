/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * "chathubctl chat": an interactive terminal client on ChatConnection. Lines typed are read
 * from stdin on the main loop (a GUnixInputStream, never a blocking read), so messages,
 * reconnects and recovery are printed as they happen, one line each.
 */

#include "config.h"

#include <inttypes.h>

#include <chathub.h>
#include <gio/gunixinputstream.h>
#include <glib/gi18n.h>
#include <stdio.h>
#include <string.h>

#include "chathubctl-chat.h"
#include "chc-key.h"

#define HISTORY_LIMIT 20
#define MINTED_TTL_S 3600

static char *chat_uri;
static char *chat_token;
static char *chat_secret_file;
static gint64 chat_user_id;
static char *chat_ca_file;

static const GOptionEntry chat_entries[] = {
    {"uri",
     0,
     0,
     G_OPTION_ARG_STRING,
     &chat_uri,
     N_ ("The WebSocket URL of the service, e.g. ws://127.0.0.1:8080/ws (required)"),
     N_ ("URL")},
    {"token", 0, 0, G_OPTION_ARG_STRING, &chat_token, N_ ("Sign in with this token"), N_ ("JWT")},
    {"secret-file",
     's',
     0,
     G_OPTION_ARG_FILENAME,
     &chat_secret_file,
     N_ ("Sign in with tokens made from the shared secret in FILE (HS256)"),
     N_ ("FILE")},
    {"user-id",
     'u',
     0,
     G_OPTION_ARG_INT64,
     &chat_user_id,
     N_ ("The user id for the tokens made with --secret-file"),
     N_ ("N")},
    {"ca-file",
     0,
     0,
     G_OPTION_ARG_FILENAME,
     &chat_ca_file,
     N_ ("Trust the certificates in the PEM FILE for a wss:// server, instead of the system's "
	 "(a private authority, or the server's own self-signed certificate)"),
     N_ ("FILE")},
    {NULL}};

typedef struct {
	GMainLoop *loop;
	ChatConnection *conn;
	GDataInputStream *input;
	GCancellable *cancellable;
	GBytes *key;  /* (nullable): the secret the tokens are made with */
	guint64 room; /* the current room; 0: none */
	gboolean was_connected;
	guint failures;	    /* failed attempts since the last connection */
	char *last_failure; /* (nullable): the reason of the last one printed */
	gboolean hinted_ca_file;
	int status;
} Terminal;

/* One line on stdout, at once: the terminal (or a test reading it) sees it as it happens. */
G_GNUC_PRINTF (1, 2)
static void
say (const char *format, ...)
{
	va_list args;
	g_autofree char *line = NULL;

	va_start (args, format);
	line = g_strdup_vprintf (format, args);
	va_end (args);
	fputs (line, stdout);
	fputc ('\n', stdout);
	fflush (stdout);
}

/* Text from others never reaches the terminal as control characters (escape sequences). */
static char *
printable (const char *text)
{
	GString *out = g_string_new (NULL);

	for (const char *p = text != NULL ? text : ""; *p != '\0'; p = g_utf8_next_char (p)) {
		gunichar c = g_utf8_get_char (p);

		if (g_unichar_iscntrl (c))
			g_string_append_c (out, '?');
		else
			g_string_append_unichar (out, c);
	}
	return g_string_free (out, FALSE);
}

static char *
make_token (Terminal *chat, GError **error)
{
	g_autoptr (JsonObject) claims = json_object_new ();
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;

	json_object_set_int_member (claims, "user_id", chat_user_id);
	json_object_set_int_member (claims, "iat", now);
	json_object_set_int_member (claims, "exp", now + MINTED_TTL_S);
	return chat_token_sign (CHAT_TOKEN_ALGORITHM_HS256, chat->key, claims, error);
}

static void
print_message (ChatMessage *message)
{
	g_autoptr (GDateTime) time =
	    g_date_time_new_from_unix_local (chat_message_get_timestamp (message));
	g_autofree char *clock = g_date_time_format (time, "%H:%M:%S");
	g_autofree char *content = printable (chat_message_get_content (message));
	g_autofree char *place = NULL;

	if (chat_message_get_room_id (message) != 0)
		place = g_strdup_printf ("#%" G_GUINT64_FORMAT, chat_message_get_room_id (message));
	else if (chat_message_get_to (message) != 0)
		place = g_strdup_printf (_ ("DM→%" PRIu64), chat_message_get_to (message));
	else
		place = g_strdup (_ ("all"));
	say ("%s %s <%" G_GUINT64_FORMAT "> %s",
	     clock,
	     place,
	     chat_message_get_from (message),
	     content);
}

static void
on_message (ChatConnection *conn, ChatMessage *message, Terminal *chat)
{
	print_message (message);
}

static void
on_joined (ChatConnection *conn, guint64 room_id, guint64 user_id, Terminal *chat)
{
	say (_ ("* %" PRIu64 " joined #%" PRIu64), user_id, room_id);
}

static void
on_left (ChatConnection *conn, guint64 room_id, guint64 user_id, Terminal *chat)
{
	say (_ ("* %" PRIu64 " left #%" PRIu64), user_id, room_id);
}

/* The current room is the last one joined and still kept (a refused join is forgotten). */
static void
update_current_room (Terminal *chat)
{
	gsize n_rooms;
	g_autofree guint64 *rooms = chat_connection_get_rooms (chat->conn, &n_rooms);

	for (gsize i = 0; i < n_rooms; i++) {
		if (rooms[i] == chat->room)
			return;
	}
	chat->room = n_rooms > 0 ? rooms[n_rooms - 1] : 0;
}

static void
on_error_received (ChatConnection *conn, const char *code, const char *content, Terminal *chat)
{
	g_autofree char *text = printable (content);

	say ("! %s: %s", code, text);
	update_current_room (chat);
}

/* Every failed attempt would flood the terminal while the service is down: the first, every
 * tenth and any with a new reason are shown. */
static void
on_attempt_failed (ChatConnection *conn, GError *error, guint retry_ms, Terminal *chat)
{
	g_autofree char *text = printable (error->message);

	chat->failures++;
	if (chat->failures % 10 != 1 && g_strcmp0 (text, chat->last_failure) == 0)
		return;
	say (g_dngettext (GETTEXT_PACKAGE,
			  "* could not connect (%u attempt): %s; retrying in %.1f s",
			  "* could not connect (%u attempts): %s; retrying in %.1f s",
			  chat->failures),
	     chat->failures,
	     text,
	     retry_ms / 1000.0);
	g_free (chat->last_failure);
	chat->last_failure = g_steal_pointer (&text);
	/* GLib says the same for an unknown authority and a certificate for another host */
	if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE) &&
	    !chat->hinted_ca_file) {
		chat->hinted_ca_file = TRUE;
		say (_ ("* the service's certificate is not trusted: signed by an authority this "
			"system does not know, or not made for this host name (--ca-file trusts a "
			"certificate file)"));
	}
}

static void
on_recovered (ChatConnection *conn, guint64 room_id, Terminal *chat)
{
	say (_ ("* #%" PRIu64 ": recovered, nothing missed"), room_id);
}

static void
on_room_reloaded (ChatConnection *conn,
		  guint64 room_id,
		  const char *epoch,
		  GPtrArray *messages,
		  Terminal *chat)
{
	say (g_dngettext (GETTEXT_PACKAGE,
			  "* #%" PRIu64 ": history was lost; reloaded %u recent message",
			  "* #%" PRIu64 ": history was lost; reloaded %u recent messages",
			  messages->len),
	     room_id,
	     messages->len);
	for (guint i = 0; i < messages->len; i++)
		print_message (messages->pdata[i]);
}

static void
on_dms_reloaded (ChatConnection *conn, const char *epoch, Terminal *chat)
{
	say (_ ("* direct messages: the service lost their history; some may be missing"));
}

static void
on_line (GObject *source, GAsyncResult *result, gpointer user_data);

static void
on_state (ChatConnection *conn, GParamSpec *pspec, Terminal *chat)
{
	if (chat_connection_get_state (conn) != CHAT_CONNECTION_STATE_CONNECTED)
		return;
	chat->failures = 0;
	g_clear_pointer (&chat->last_failure, g_free);
	if (chat->was_connected)
		say (_ ("* reconnected"));
	else
		say (_ ("* connected to %s as user %" PRIu64),
		     chat_connection_get_uri (conn),
		     chat_connection_get_user_id (conn));
	/* Input is read from the first connection on: lines piped in or typed before it wait
	 * for it (a message sent before would only fail with "not open"). */
	if (!chat->was_connected)
		g_data_input_stream_read_line_async (chat->input,
						     G_PRIORITY_DEFAULT,
						     chat->cancellable,
						     on_line,
						     chat);
	chat->was_connected = TRUE;
}

static void
on_closed (ChatConnection *conn, guint code, const char *reason, gboolean final, Terminal *chat)
{
	g_autofree char *text = printable (reason);

	/* "1006", "1001 server shutting down" */
	g_autofree char *why =
	    *text != '\0' ? g_strdup_printf ("%u %s", code, text) : g_strdup_printf ("%u", code);

	if (!final) {
		say (_ ("* connection lost (%s); reconnecting"), why);
		return;
	}
	if (g_main_loop_is_running (chat->loop)) {
		if (code != 1000)
			say (_ ("* disconnected (%s)"), why);
		chat->status = code == 1000 ? 0 : 1;
		g_main_loop_quit (chat->loop);
	}
}

static void
on_token_expiring (ChatConnection *conn, Terminal *chat)
{
	g_autoptr (GError) error = NULL;
	g_autofree char *token = NULL;

	if (chat->key == NULL) {
		say (_ ("* the token expires soon; restart with a new one"));
		return;
	}
	token = make_token (chat, &error);
	if (token == NULL) {
		say ("! %s", error->message);
		return;
	}
	chat_connection_set_token (conn, token);
}

/* Reads the number @text of a command, or says what is wrong with it. */
static gboolean
parse_id (const char *command, const char *what, const char *text, guint64 *id)
{
	if (text == NULL || *text == '\0') {
		/* TRANSLATORS: "/join needs a room number"; the second %s is "room number" or
		 * "user number" */
		say (_ ("! %s needs a %s"), command, what);
		return FALSE;
	}
	if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXINT64, id, NULL)) {
		g_autofree char *shown = printable (text);

		say (_ ("! %s: “%s” is not a %s (1 to %" PRIi64 ")"),
		     command,
		     shown,
		     what,
		     (gint64) G_MAXINT64);
		return FALSE;
	}
	return TRUE;
}

static void
on_history (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (GPtrArray) messages =
	    chat_connection_request_history_finish (CHAT_CONNECTION (source), result, &error);

	if (messages == NULL) {
		say ("! %s", error->message);
		return;
	}
	if (messages->len == 0)
		say (_ ("* no stored messages"));
	for (guint i = 0; i < messages->len; i++)
		print_message (messages->pdata[i]);
}

static void
on_presence (GObject *source, GAsyncResult *result, gpointer user_data)
{
	guint64 room = GPOINTER_TO_SIZE (user_data);
	g_autoptr (GError) error = NULL;
	g_autoptr (GString) list = g_string_new (NULL);
	gsize n_users = 0;
	g_autofree guint64 *users =
	    chat_connection_request_presence_finish (CHAT_CONNECTION (source),
						     result,
						     &n_users,
						     &error);

	if (users == NULL) {
		say ("! %s", error->message);
		return;
	}
	for (gsize i = 0; i < n_users; i++)
		g_string_append_printf (list, "%s%" G_GUINT64_FORMAT, i > 0 ? " " : "", users[i]);
	say (_ ("* in #%" PRIu64 ": %s"), room, list->str);
}

static void
print_help (void)
{
	say ("%s", _ ("Commands: /join ROOM, /leave ROOM, /msg USER TEXT, /history, /who, /quit;"));
	say ("%s", _ ("any other line goes to the current room (the last one joined)."));
}

static void
handle_line (Terminal *chat, char *line)
{
	g_autoptr (GError) error = NULL;
	g_auto (GStrv) words = NULL;
	guint64 id;

	g_strstrip (line);
	if (*line == '\0')
		return;
	if (line[0] != '/') {
		if (chat->room == 0)
			say ("! %s", _ ("join a room first: /join ROOM"));
		else if (!chat_connection_send_to_room (chat->conn, chat->room, line, &error))
			say (_ ("! not sent: %s"), error->message);
		return;
	}
	words = g_strsplit_set (line, " \t", 3);
	if (g_str_equal (words[0], "/quit")) {
		chat->status = 0;
		g_main_loop_quit (chat->loop);
	} else if (g_str_equal (words[0], "/join")) {
		if (!parse_id ("/join", _ ("room number"), words[1], &id))
			return;
		chat_connection_join (chat->conn, id);
		chat->room = id;
	} else if (g_str_equal (words[0], "/leave")) {
		if (!parse_id ("/leave", _ ("room number"), words[1], &id))
			return;
		if (!chat_connection_leave (chat->conn, id, &error))
			say ("! %s", error->message);
		else
			update_current_room (chat);
	} else if (g_str_equal (words[0], "/msg")) {
		if (!parse_id ("/msg", _ ("user number"), words[1], &id))
			return;
		if (words[2] == NULL || *g_strstrip (words[2]) == '\0')
			say (_ ("! /msg %" PRIu64 ": no text to send (/msg USER TEXT)"), id);
		else if (!chat_connection_send_to_user (chat->conn, id, words[2], &error))
			say (_ ("! not sent: %s"), error->message);
	} else if ((g_str_equal (words[0], "/history") || g_str_equal (words[0], "/who")) &&
		   chat->room == 0) {
		say ("! %s", _ ("join a room first: /join ROOM"));
	} else if (g_str_equal (words[0], "/history")) {
		chat_connection_request_history_async (chat->conn,
						       chat->room,
						       0,
						       HISTORY_LIMIT,
						       NULL,
						       on_history,
						       chat);
	} else if (g_str_equal (words[0], "/who")) {
		chat_connection_request_presence_async (chat->conn,
							chat->room,
							NULL,
							on_presence,
							GSIZE_TO_POINTER (chat->room));
	} else {
		g_autofree char *shown = printable (words[0]);

		say (_ ("! unknown command %s"), shown);
		print_help ();
	}
}

static void
on_line (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Terminal *chat = user_data;
	g_autoptr (GError) error = NULL;
	g_autofree char *line =
	    g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source),
						       result,
						       NULL,
						       &error);

	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
		return;
	if (g_error_matches (error, G_CONVERT_ERROR, G_CONVERT_ERROR_ILLEGAL_SEQUENCE)) {
		/* the line was read and dropped: one bad line does not end the chat */
		say ("! %s", _ ("not UTF-8, not sent"));
	} else if (line == NULL) {
		/* end of input (or unreadable input): leave like /quit */
		if (error != NULL)
			say ("! %s", error->message);
		chat->status = 0;
		g_main_loop_quit (chat->loop);
		return;
	} else {
		handle_line (chat, line);
	}
	if (g_main_loop_is_running (chat->loop))
		g_data_input_stream_read_line_async (chat->input,
						     G_PRIORITY_DEFAULT,
						     chat->cancellable,
						     on_line,
						     chat);
}

int
chathubctl_command_chat (int argc, char **argv)
{
	g_autoptr (GOptionContext) context = g_option_context_new (_ ("- chat in a terminal"));
	g_autoptr (GError) error = NULL;
	g_autoptr (GInputStream) stdin_stream = NULL;
	g_autofree char *token = NULL;
	g_autoptr (GTlsDatabase) database = NULL;
	Terminal chat = {NULL};

	g_set_prgname ("chathubctl chat");
	g_option_context_add_main_entries (context, chat_entries, GETTEXT_PACKAGE);
	g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
	g_option_context_set_description (
	    context,
	    _ ("Commands: /join ROOM, /leave ROOM, /msg USER TEXT, /history, /who, /quit; any "
	       "other line goes to the current room."));
	if (!g_option_context_parse (context, &argc, &argv, &error)) {
		g_printerr ("chathubctl: %s\n", error->message);
		return 2;
	}
	if (chat_uri == NULL) {
		g_printerr ("chathubctl: %s\n", _ ("--uri is required"));
		return 2;
	}
	if ((chat_token != NULL) == (chat_secret_file != NULL)) {
		g_printerr ("chathubctl: %s\n", _ ("give either --token or --secret-file"));
		return 2;
	}
	if (chat_secret_file != NULL) {
		if (chat_user_id <= 0) {
			g_printerr ("chathubctl: %s\n",
				    _ ("--user-id must be a number greater than 0"));
			return 2;
		}
		chat.key = chc_key_read_secret_file (chat_secret_file, &error);
		if (chat.key == NULL || (token = make_token (&chat, &error)) == NULL) {
			g_printerr ("chathubctl: %s\n", error->message);
			g_clear_pointer (&chat.key, g_bytes_unref);
			return 2;
		}
	} else {
		token = g_strdup (chat_token);
	}
	if (chat_ca_file != NULL) {
		/* GLib's file database wants an absolute path (a relative one gives an empty
		 * database and a warning), and says only "Error while reading file" for one it
		 * cannot read: reading it first says why */
		g_autofree char *path = g_canonicalize_filename (chat_ca_file, NULL);
		g_autofree char *pem = NULL;

		if (!g_file_get_contents (path, &pem, NULL, &error) ||
		    (database = g_tls_file_database_new (path, &error)) == NULL) {
			g_printerr ("chathubctl: %s\n", error->message);
			g_clear_pointer (&chat.key, g_bytes_unref);
			return 2;
		}
	}

	chat.loop = g_main_loop_new (NULL, FALSE);
	chat.cancellable = g_cancellable_new ();
	chat.conn = chat_connection_new (chat_uri, token);
	if (database != NULL)
		chat_connection_set_tls_database (chat.conn, database);
	g_signal_connect (chat.conn, "message", G_CALLBACK (on_message), &chat);
	g_signal_connect (chat.conn, "joined", G_CALLBACK (on_joined), &chat);
	g_signal_connect (chat.conn, "left", G_CALLBACK (on_left), &chat);
	g_signal_connect (chat.conn, "error-received", G_CALLBACK (on_error_received), &chat);
	g_signal_connect (chat.conn, "recovered", G_CALLBACK (on_recovered), &chat);
	g_signal_connect (chat.conn, "room-reloaded", G_CALLBACK (on_room_reloaded), &chat);
	g_signal_connect (chat.conn, "dms-reloaded", G_CALLBACK (on_dms_reloaded), &chat);
	g_signal_connect (chat.conn, "notify::state", G_CALLBACK (on_state), &chat);
	g_signal_connect (chat.conn, "closed", G_CALLBACK (on_closed), &chat);
	g_signal_connect (chat.conn, "token-expiring", G_CALLBACK (on_token_expiring), &chat);
	g_signal_connect (chat.conn, "attempt-failed", G_CALLBACK (on_attempt_failed), &chat);
	if (!chat_connection_open (chat.conn, &error)) {
		g_printerr ("chathubctl: %s\n", error->message);
		chat.status = 2;
	} else {
		/* read from the first connection on (on_state()) */
		stdin_stream = g_unix_input_stream_new (0, FALSE);
		chat.input = g_data_input_stream_new (stdin_stream);
		g_main_loop_run (chat.loop);
		g_cancellable_cancel (chat.cancellable);
		g_signal_handlers_disconnect_by_data (chat.conn, &chat);
		chat_connection_close (chat.conn);
	}
	g_clear_object (&chat.input);
	g_clear_object (&chat.conn);
	g_clear_object (&chat.cancellable);
	g_clear_pointer (&chat.key, g_bytes_unref);
	g_free (chat.last_failure);
	g_main_loop_unref (chat.loop);
	return chat.status;
}
