/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatConnection against the real chathubd ($CHATHUBD): rooms, direct messages, history and
 * presence; a TCP drop (through a proxy in the test that can cut connections and refuse new
 * ones), daemon restarts (SIGTERM and SIGKILL, the same SQLite file and port), a memory
 * store restarted (recovered: false -> room-reloaded), the backoff's bounds and the token
 * refresh. Every message is checked to arrive once and in order.
 */

#include "config.h"

#include <glib/gstdio.h>
#include <signal.h>

#include "chat-test-utils.h"

/* ---- the daemon -------------------------------------------------------------------------- */

typedef struct {
	char *dir;
	char *config;
	char *log;
	guint16 port;
	GSubprocess *process;
} Daemon;

static void
daemon_write_config (Daemon *d, const char *backend, const char *limits)
{
	g_autofree char *secret = g_build_filename (d->dir, "secret", NULL);
	g_autofree char *db = g_build_filename (d->dir, "chathub.db", NULL);
	g_autofree char *text = NULL;
	g_autoptr (GError) error = NULL;

	g_assert_true (g_file_set_contents (secret, CHAT_TEST_SECRET "\n", -1, &error));
	text = g_strdup_printf ("[server]\naddress=127.0.0.1\n"
				"[auth]\nalgorithm=HS256\nsecret-file=%s\nleeway=0\n"
				"[limits]\nupgrades-per-second=0\n%s\n"
				"[store]\nbackend=%s\npath=%s\n",
				secret,
				limits,
				backend,
				db);
	g_assert_true (g_file_set_contents (d->config, text, -1, &error));
}

static gboolean
daemon_announced (gpointer user_data)
{
	Daemon *d = user_data;
	g_autofree char *text = NULL;
	const char *at;

	if (!g_file_get_contents (d->log, &text, NULL, NULL))
		return FALSE;
	at = strstr (text, "ws://127.0.0.1:");
	if (at == NULL)
		return FALSE;
	d->port = (guint16) g_ascii_strtoull (at + strlen ("ws://127.0.0.1:"), NULL, 10);
	return TRUE;
}

/* Starts chathubd on d->port (0: any free port, then remembered for restarts). */
static void
daemon_start (Daemon *d)
{
	g_autoptr (GSubprocessLauncher) launcher =
	    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
	g_autofree char *port = g_strdup_printf ("%u", d->port);
	g_autoptr (GError) error = NULL;
	const char *chathubd = g_getenv ("CHATHUBD");

	g_assert_nonnull (chathubd);
	g_unlink (d->log);
	g_subprocess_launcher_set_stderr_file_path (launcher, d->log);
	g_subprocess_launcher_set_cwd (launcher, d->dir);
	d->process = g_subprocess_launcher_spawn (launcher,
						  &error,
						  chathubd,
						  "--config",
						  d->config,
						  "--port",
						  port,
						  NULL);
	g_assert_no_error (error);
	chat_test_wait_until (daemon_announced, d, 10000);
}

static gboolean
daemon_exited (gpointer user_data)
{
	return *(gboolean *) user_data;
}

static void
on_daemon_waited (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
	*(gboolean *) user_data = TRUE;
}

/* The main loop keeps running meanwhile: the clients answer the daemon's close. */
static void
daemon_stop (Daemon *d, int signum)
{
	gboolean exited = FALSE;

	if (d->process == NULL)
		return;
	g_subprocess_send_signal (d->process, signum);
	g_subprocess_wait_async (d->process, NULL, on_daemon_waited, &exited);
	chat_test_wait_until (daemon_exited, &exited, 10000);
	g_clear_object (&d->process);
}

/* @limits: the [limits] lines for the messages */
static Daemon *
daemon_new_limited (const char *backend, const char *limits)
{
	Daemon *d = g_new0 (Daemon, 1);
	g_autoptr (GError) error = NULL;

	d->dir = g_dir_make_tmp ("chathub-connection-XXXXXX", &error);
	g_assert_no_error (error);
	d->config = g_build_filename (d->dir, "chathubd.conf", NULL);
	d->log = g_build_filename (d->dir, "chathubd.log", NULL);
	daemon_write_config (d, backend, limits);
	daemon_start (d);
	return d;
}

static Daemon *
daemon_new (const char *backend)
{
	return daemon_new_limited (backend, "messages-per-second=0");
}

static void
daemon_free (Daemon *d)
{
	const char *names[] = {"chathubd.conf",
			       "chathubd.log",
			       "secret",
			       "chathub.db",
			       "chathub.db-wal",
			       "chathub.db-shm"};

	daemon_stop (d, SIGTERM);
	for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
		g_autofree char *path = g_build_filename (d->dir, names[i], NULL);

		g_unlink (path);
	}
	g_rmdir (d->dir);
	g_free (d->dir);
	g_free (d->config);
	g_free (d->log);
	g_free (d);
}

static char *
daemon_uri (guint16 port)
{
	return g_strdup_printf ("ws://127.0.0.1:%u/ws", port);
}

/* ---- a TCP proxy that can drop its connections and refuse new ones ------------------------- */

typedef struct {
	GSocketService *service;
	guint16 port;
	guint16 target;
	gboolean refusing;  /* accept and close at once: a dropped attempt */
	GPtrArray *sockets; /* GSocketConnection, both sides of each spliced pair */
	GArray *refused_at; /* gint64, monotonic µs of each refused attempt */
} Proxy;

static void
on_spliced (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_io_stream_splice_finish (result, NULL);
}

static gboolean
on_proxy_incoming (GSocketService *service,
		   GSocketConnection *connection,
		   GObject *source_object,
		   gpointer user_data)
{
	Proxy *proxy = user_data;
	g_autoptr (GSocketClient) client = NULL;
	g_autoptr (GSocketConnection) upstream = NULL;

	if (proxy->refusing) {
		gint64 now = g_get_monotonic_time ();

		g_array_append_val (proxy->refused_at, now);
		g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
		return TRUE;
	}
	client = g_socket_client_new ();
	upstream = g_socket_client_connect_to_host (client, "127.0.0.1", proxy->target, NULL, NULL);
	if (upstream == NULL) {
		g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
		return TRUE;
	}
	g_ptr_array_add (proxy->sockets, g_object_ref (connection));
	g_ptr_array_add (proxy->sockets, g_object_ref (upstream));
	g_io_stream_splice_async (G_IO_STREAM (connection),
				  G_IO_STREAM (upstream),
				  G_IO_STREAM_SPLICE_CLOSE_STREAM1 |
				      G_IO_STREAM_SPLICE_CLOSE_STREAM2,
				  G_PRIORITY_DEFAULT,
				  NULL,
				  on_spliced,
				  NULL);
	return TRUE;
}

static Proxy *
proxy_new (guint16 target)
{
	Proxy *proxy = g_new0 (Proxy, 1);
	g_autoptr (GError) error = NULL;

	proxy->service = g_socket_service_new ();
	proxy->target = target;
	proxy->sockets = g_ptr_array_new_with_free_func (g_object_unref);
	proxy->refused_at = g_array_new (FALSE, FALSE, sizeof (gint64));
	{
		g_autoptr (GInetAddress) loopback =
		    g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
		g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
		g_autoptr (GSocketAddress) bound = NULL;

		g_assert_true (g_socket_listener_add_address (G_SOCKET_LISTENER (proxy->service),
							      address,
							      G_SOCKET_TYPE_STREAM,
							      G_SOCKET_PROTOCOL_TCP,
							      NULL,
							      &bound,
							      &error));
		g_assert_no_error (error);
		proxy->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
	}
	g_signal_connect (proxy->service, "incoming", G_CALLBACK (on_proxy_incoming), proxy);
	g_socket_service_start (proxy->service);
	return proxy;
}

/* Drops every connection through the proxy: the client sees its TCP connection end without a
 * close frame (1006). */
static void
proxy_cut (Proxy *proxy)
{
	for (guint i = 0; i < proxy->sockets->len; i++)
		g_socket_shutdown (g_socket_connection_get_socket (proxy->sockets->pdata[i]),
				   TRUE,
				   TRUE,
				   NULL);
	g_ptr_array_set_size (proxy->sockets, 0);
}

static void
proxy_free (Proxy *proxy)
{
	proxy_cut (proxy);
	g_socket_service_stop (proxy->service);
	g_socket_listener_close (G_SOCKET_LISTENER (proxy->service));
	g_object_unref (proxy->service);
	g_ptr_array_unref (proxy->sockets);
	g_array_unref (proxy->refused_at);
	g_free (proxy);
}

/* ---- a connection and what it saw ---------------------------------------------------------- */

typedef struct {
	ChatConnection *conn;
	guint64 user_id;
	GString *room_log;   /* "content," per room message, in order */
	GString *dm_log;     /* "content," per direct message received or echoed */
	GString *reload_log; /* "content," of the messages of each room-reloaded */
	guint joined_self;
	guint recovered;
	guint reloaded;
	guint closes;
	guint final_closes;
	guint last_code;
	guint token_expiring;
	guint errors;
	char *last_error; /* the code of the last error-received */
	guint attempt_failures;
	GError *attempt_error; /* of the last attempt-failed */
	char *new_token;       /* given on token-expiring, if set */
} Peer;

static void
on_message (ChatConnection *conn, ChatMessage *message, Peer *peer)
{
	g_assert_cmpuint (chat_message_get_id (message), >, 0);
	g_assert_cmpint (chat_message_get_timestamp (message), >, 0);
	if (chat_message_get_room_id (message) != 0) {
		g_assert_cmpuint (chat_message_get_offset (message), >, 0);
		g_string_append_printf (peer->room_log, "%s,", chat_message_get_content (message));
	} else {
		g_assert_cmpuint (chat_message_get_to (message), >, 0);
		g_string_append_printf (peer->dm_log,
					"%" G_GUINT64_FORMAT ">%" G_GUINT64_FORMAT ":%s,",
					chat_message_get_from (message),
					chat_message_get_to (message),
					chat_message_get_content (message));
	}
}

static void
on_joined (ChatConnection *conn, guint64 room_id, guint64 user_id, Peer *peer)
{
	if (user_id == peer->user_id)
		peer->joined_self++;
}

static void
on_recovered (ChatConnection *conn, guint64 room_id, Peer *peer)
{
	peer->recovered++;
}

static void
on_room_reloaded (ChatConnection *conn,
		  guint64 room_id,
		  const char *epoch,
		  GPtrArray *messages,
		  Peer *peer)
{
	g_assert_nonnull (epoch);
	peer->reloaded++;
	for (guint i = 0; i < messages->len; i++)
		g_string_append_printf (peer->reload_log,
					"%s,",
					chat_message_get_content (messages->pdata[i]));
}

static void
on_closed (ChatConnection *conn, guint code, const char *reason, gboolean final, Peer *peer)
{
	peer->closes++;
	peer->last_code = code;
	if (final)
		peer->final_closes++;
}

static void
on_error_received (ChatConnection *conn, const char *code, const char *content, Peer *peer)
{
	g_test_message ("error-received %s: %s", code, content);
	peer->errors++;
	g_free (peer->last_error);
	peer->last_error = g_strdup (code);
}

static void
on_attempt_failed (ChatConnection *conn, GError *error, guint retry_ms, Peer *peer)
{
	g_assert_cmpint (chat_connection_get_state (conn), ==, CHAT_CONNECTION_STATE_RECONNECTING);
	g_assert_cmpuint (retry_ms, <=, chat_connection_get_backoff_max (conn));
	peer->attempt_failures++;
	g_clear_error (&peer->attempt_error);
	peer->attempt_error = g_error_copy (error);
}

static void
on_token_expiring (ChatConnection *conn, Peer *peer)
{
	peer->token_expiring++;
	if (peer->new_token != NULL)
		chat_connection_set_token (conn, peer->new_token);
}

/* @extra: more claims ("\"rooms\":[1]"), or "" */
static char *
token_with (guint64 user_id, gint64 lifetime, const char *extra)
{
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;
	g_autofree char *claims =
	    g_strdup_printf ("{\"user_id\":%" G_GUINT64_FORMAT ",\"iat\":%" G_GINT64_FORMAT
			     ",\"exp\":%" G_GINT64_FORMAT "%s%s}",
			     user_id,
			     now,
			     now + lifetime,
			     *extra != '\0' ? "," : "",
			     extra);

	return chat_test_make_token (G_CHECKSUM_SHA256,
				     "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
				     claims,
				     CHAT_TEST_SECRET);
}

static char *
token_for (guint64 user_id, gint64 lifetime)
{
	return token_with (user_id, lifetime, "");
}

static Peer *
peer_new (guint16 port, guint64 user_id)
{
	Peer *peer = g_new0 (Peer, 1);
	g_autofree char *uri = daemon_uri (port);
	g_autofree char *token = token_for (user_id, 3600);

	peer->user_id = user_id;
	peer->conn = chat_connection_new (uri, token);
	/* small bounds, so that the tests do not wait for the defaults */
	g_object_set (peer->conn, "backoff-min", 20, "backoff-max", 200, NULL);
	peer->room_log = g_string_new (NULL);
	peer->dm_log = g_string_new (NULL);
	peer->reload_log = g_string_new (NULL);
	g_signal_connect (peer->conn, "message", G_CALLBACK (on_message), peer);
	g_signal_connect (peer->conn, "joined", G_CALLBACK (on_joined), peer);
	g_signal_connect (peer->conn, "recovered", G_CALLBACK (on_recovered), peer);
	g_signal_connect (peer->conn, "room-reloaded", G_CALLBACK (on_room_reloaded), peer);
	g_signal_connect (peer->conn, "closed", G_CALLBACK (on_closed), peer);
	g_signal_connect (peer->conn, "error-received", G_CALLBACK (on_error_received), peer);
	g_signal_connect (peer->conn, "token-expiring", G_CALLBACK (on_token_expiring), peer);
	g_signal_connect (peer->conn, "attempt-failed", G_CALLBACK (on_attempt_failed), peer);
	return peer;
}

static void
peer_free (Peer *peer)
{
	chat_connection_close (peer->conn);
	g_object_unref (peer->conn);
	g_string_free (peer->room_log, TRUE);
	g_string_free (peer->dm_log, TRUE);
	g_string_free (peer->reload_log, TRUE);
	g_free (peer->new_token);
	g_free (peer->last_error);
	g_clear_error (&peer->attempt_error);
	g_free (peer);
}

static gboolean
peer_connected (gpointer user_data)
{
	Peer *peer = user_data;

	return chat_connection_get_state (peer->conn) == CHAT_CONNECTION_STATE_CONNECTED;
}

static gboolean
peer_reconnecting (gpointer user_data)
{
	Peer *peer = user_data;

	return chat_connection_get_state (peer->conn) == CHAT_CONNECTION_STATE_RECONNECTING;
}

typedef struct {
	const guint *counter;
	guint at_least;
} CountWait;

static gboolean
count_reached (gpointer user_data)
{
	CountWait *wait = user_data;

	return *wait->counter >= wait->at_least;
}

/* Waits (within a deadline) until *@counter is at least @at_least. */
static void
wait_count (const guint *counter, guint at_least)
{
	CountWait wait = {counter, at_least};

	chat_test_wait_until (count_reached, &wait, 10000);
}

/* Opens and joins @room, and waits for the acknowledgement. */
static void
peer_start (Peer *peer, guint64 room)
{
	g_autoptr (GError) error = NULL;
	guint joined = peer->joined_self;

	if (room != 0)
		chat_connection_join (peer->conn, room);
	g_assert_true (chat_connection_open (peer->conn, &error));
	g_assert_no_error (error);
	chat_test_wait_until (peer_connected, peer, 5000);
	if (room != 0)
		wait_count (&peer->joined_self, joined + 1);
}

typedef struct {
	GString *log;
	const char *expected;
} LogWait;

static gboolean
log_long_enough (gpointer user_data)
{
	LogWait *wait = user_data;

	return wait->log->len >= strlen (wait->expected);
}

/* Waits until @log holds as much text as @expected, then compares: nothing missing, doubled
 * or out of order. */
static void
assert_log (GString *log, const char *expected)
{
	LogWait wait = {log, expected};

	chat_test_wait_until (log_long_enough, &wait, 10000);
	g_assert_cmpstr (log->str, ==, expected);
}

/* Lets the main loop run for @ms, to show that nothing more arrives. */
static void
spin (guint ms)
{
	gint64 end = g_get_monotonic_time () + ms * 1000;

	while (g_get_monotonic_time () < end) {
		if (!g_main_context_iteration (NULL, FALSE))
			g_usleep (1000);
	}
}

static void
send_room (Peer *peer, guint64 room, const char *content)
{
	g_autoptr (GError) error = NULL;

	g_assert_true (chat_connection_send_to_room (peer->conn, room, content, &error));
	g_assert_no_error (error);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static gboolean
pointer_set (gpointer user_data)
{
	return *(gpointer *) user_data != NULL;
}

static void
on_history (GObject *source, GAsyncResult *result, gpointer user_data)
{
	GPtrArray **out = user_data;
	g_autoptr (GError) error = NULL;

	*out = chat_connection_request_history_finish (CHAT_CONNECTION (source), result, &error);
	g_assert_no_error (error);
}

static void
on_presence (GObject *source, GAsyncResult *result, gpointer user_data)
{
	GArray **out = user_data;
	g_autoptr (GError) error = NULL;
	gsize n_users = 0;
	g_autofree guint64 *users =
	    chat_connection_request_presence_finish (CHAT_CONNECTION (source),
						     result,
						     &n_users,
						     &error);

	g_assert_no_error (error);
	*out = g_array_new (FALSE, FALSE, sizeof (guint64));
	g_array_append_vals (*out, users, (guint) n_users);
}

static void
test_connection_rooms_and_dms (void)
{
	Daemon *d = daemon_new ("sqlite");
	Peer *a = peer_new (d->port, 101);
	Peer *b = peer_new (d->port, 102);
	g_autoptr (GPtrArray) history = NULL;
	g_autoptr (GArray) users = NULL;
	g_autoptr (GError) error = NULL;
	gsize n_rooms;
	g_autofree guint64 *rooms = NULL;

	g_assert_cmpint (chat_connection_get_state (a->conn),
			 ==,
			 CHAT_CONNECTION_STATE_DISCONNECTED);
	g_assert_false (chat_connection_send_to_room (a->conn, 7, "too early", &error));
	g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED);
	g_clear_error (&error);
	g_assert_cmpuint (chat_connection_get_user_id (a->conn), ==, 101);

	peer_start (a, 7);
	peer_start (b, 7);
	rooms = chat_connection_get_rooms (a->conn, &n_rooms);
	g_assert_cmpuint (n_rooms, ==, 1);
	g_assert_cmpuint (rooms[0], ==, 7);

	send_room (a, 7, "one");
	assert_log (b->room_log, "one,");
	send_room (b, 7, "two");
	assert_log (a->room_log, "one,two,");
	assert_log (b->room_log, "one,two,");

	g_assert_true (chat_connection_send_to_user (a->conn, 102, "psst", &error));
	assert_log (b->dm_log, "101>102:psst,");
	assert_log (a->dm_log, "101>102:psst,");

	chat_connection_request_history_async (a->conn, 7, 0, 0, NULL, on_history, &history);
	chat_test_wait_until (pointer_set, &history, 5000);
	g_assert_cmpuint (history->len, ==, 2);
	g_assert_cmpstr (chat_message_get_content (history->pdata[0]), ==, "one");
	g_assert_cmpuint (chat_message_get_offset (history->pdata[1]), ==, 2);

	chat_connection_request_presence_async (a->conn, 7, NULL, on_presence, &users);
	chat_test_wait_until (pointer_set, &users, 5000);
	g_assert_cmpuint (users->len, ==, 2);
	g_assert_cmpuint (g_array_index (users, guint64, 0), ==, 101);
	g_assert_cmpuint (g_array_index (users, guint64, 1), ==, 102);

	g_assert_true (chat_connection_leave (b->conn, 7, &error));
	g_assert_false (chat_connection_leave (b->conn, 7, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_NOT_MEMBER);
	g_clear_error (&error);

	chat_connection_close (a->conn);
	g_assert_cmpint (chat_connection_get_state (a->conn),
			 ==,
			 CHAT_CONNECTION_STATE_DISCONNECTED);
	g_assert_cmpuint (a->final_closes, ==, 1);
	g_assert_cmpuint (a->last_code, ==, 1000);

	peer_free (a);
	peer_free (b);
	daemon_free (d);
}

/* The TCP connection drops (no close frame) and new attempts are dropped too for a while;
 * meanwhile the other user sends room messages and a direct message. */
static void
test_connection_drop (void)
{
	Daemon *d = daemon_new ("sqlite");
	Proxy *proxy = proxy_new (d->port);
	Peer *a = peer_new (d->port, 201);
	Peer *b = peer_new (proxy->port, 202);
	g_autoptr (GError) error = NULL;

	peer_start (a, 8);
	peer_start (b, 8);
	send_room (a, 8, "m1");
	assert_log (b->room_log, "m1,");

	proxy->refusing = TRUE;
	proxy_cut (proxy);
	chat_test_wait_until (peer_reconnecting, b, 5000);
	g_assert_cmpuint (b->last_code, ==, 1006);
	g_assert_cmpuint (b->final_closes, ==, 0);
	for (guint i = 2; i <= 6; i++) {
		g_autofree char *text = g_strdup_printf ("m%u", i);

		send_room (a, 8, text);
	}
	g_assert_true (chat_connection_send_to_user (a->conn, 202, "while away", &error));
	assert_log (a->room_log, "m1,m2,m3,m4,m5,m6,");
	/* a few attempts are refused before the way is open again */
	wait_count (&proxy->refused_at->len, 3);
	proxy->refusing = FALSE;

	chat_test_wait_until (peer_connected, b, 5000);
	assert_log (b->room_log, "m1,m2,m3,m4,m5,m6,");
	assert_log (b->dm_log, "201>202:while away,");
	send_room (a, 8, "m7");
	assert_log (b->room_log, "m1,m2,m3,m4,m5,m6,m7,");
	g_assert_cmpuint (b->recovered, ==, 1);
	g_assert_cmpuint (b->reloaded, ==, 0);
	g_assert_cmpuint (b->joined_self, ==, 1);
	spin (200);
	g_assert_cmpstr (b->dm_log->str, ==, "201>202:while away,");

	peer_free (a);
	peer_free (b);
	proxy_free (proxy);
	daemon_free (d);
}

/* chathubd stops (SIGTERM: 1001; SIGKILL: the connection just ends) and starts again on the
 * same SQLite file and port: both connections come back and recover, nothing doubled. */
static void
test_connection_restart (gconstpointer data)
{
	int signum = GPOINTER_TO_INT (data);
	Daemon *d = daemon_new ("sqlite");
	Peer *a = peer_new (d->port, 301);
	Peer *b = peer_new (d->port, 302);

	peer_start (a, 9);
	peer_start (b, 9);
	send_room (a, 9, "before");
	assert_log (b->room_log, "before,");

	daemon_stop (d, signum);
	chat_test_wait_until (peer_reconnecting, a, 5000);
	chat_test_wait_until (peer_reconnecting, b, 5000);
	g_assert_cmpuint (a->last_code, ==, signum == SIGTERM ? 1001 : 1006);
	daemon_start (d);

	chat_test_wait_until (peer_connected, a, 5000);
	wait_count (&a->recovered, 1);
	send_room (a, 9, "after");
	chat_test_wait_until (peer_connected, b, 5000);
	assert_log (a->room_log, "before,after,");
	assert_log (b->room_log, "before,after,");
	wait_count (&b->recovered, 1);
	g_assert_cmpuint (a->reloaded + b->reloaded, ==, 0);
	g_assert_cmpuint (a->final_closes + b->final_closes, ==, 0);

	peer_free (a);
	peer_free (b);
	daemon_free (d);
}

/* A memory store loses everything on a restart: the room has a new epoch, the join with
 * `since` answers recovered: false, and the connection reloads the room's history. */
static void
test_connection_reload (void)
{
	Daemon *d = daemon_new ("memory");
	Proxy *proxy = proxy_new (d->port);
	Peer *a = peer_new (d->port, 401);
	Peer *b = peer_new (proxy->port, 402);

	peer_start (a, 10);
	peer_start (b, 10);
	send_room (a, 10, "old");
	assert_log (b->room_log, "old,");

	proxy->refusing = TRUE;
	daemon_stop (d, SIGTERM);
	chat_test_wait_until (peer_reconnecting, b, 5000);
	daemon_start (d);
	/* a joins again with since as well, and reloads the empty room */
	chat_test_wait_until (peer_connected, a, 5000);
	wait_count (&a->reloaded, 1);
	g_assert_cmpstr (a->reload_log->str, ==, "");
	send_room (a, 10, "new1");
	send_room (a, 10, "new2");
	assert_log (a->room_log, "old,new1,new2,");

	proxy->refusing = FALSE;
	chat_test_wait_until (peer_connected, b, 5000);
	wait_count (&b->reloaded, 1);
	g_assert_cmpstr (b->reload_log->str, ==, "new1,new2,");
	send_room (a, 10, "new3");
	assert_log (b->room_log, "old,new3,");
	g_assert_cmpuint (b->recovered, ==, 0);
	g_assert_cmpuint (b->reloaded, ==, 1);

	peer_free (a);
	peer_free (b);
	proxy_free (proxy);
	daemon_free (d);
}

/* While the server is unreachable, attempt n waits at most min(max, min * 2^n): the gaps
 * between refused attempts stay within backoff-max. */
static void
test_connection_backoff (void)
{
	Daemon *d = daemon_new ("sqlite");
	Proxy *proxy = proxy_new (d->port);
	Peer *b = peer_new (proxy->port, 502);
	/* what a refused attempt costs besides its wait: accept, close, the client noticing */
	const gint64 slack_us = 150000;
	gint64 largest = 0;

	g_object_set (b->conn, "backoff-min", 10, "backoff-max", 150, NULL);
	peer_start (b, 0);
	proxy->refusing = TRUE;
	proxy_cut (proxy);
	wait_count (&proxy->refused_at->len, 12);
	g_assert_cmpint (chat_connection_get_state (b->conn),
			 ==,
			 CHAT_CONNECTION_STATE_RECONNECTING);
	for (guint i = 1; i < proxy->refused_at->len; i++) {
		gint64 gap = g_array_index (proxy->refused_at, gint64, i) -
			     g_array_index (proxy->refused_at, gint64, i - 1);

		largest = MAX (largest, gap);
	}
	g_test_message ("largest gap between attempts: %" G_GINT64_FORMAT " µs", largest);
	g_assert_cmpint (largest, <=, 150000 + slack_us);
	/* and it does give up waiting: the way open, it is back */
	proxy->refusing = FALSE;
	chat_test_wait_until (peer_connected, b, 5000);
	g_assert_cmpuint (b->final_closes, ==, 0);

	peer_free (b);
	proxy_free (proxy);
	daemon_free (d);
}

static gboolean
peer_closed_final (gpointer user_data)
{
	Peer *peer = user_data;

	return peer->final_closes > 0;
}

/* A token that expires soon: ::token-expiring asks for a new one, the refresh is accepted and
 * the connection outlives the first token; without a new token, 4001 is final. */
static void
test_connection_refresh (void)
{
	Daemon *d = daemon_new ("sqlite");
	g_autofree char *uri = daemon_uri (d->port);
	g_autofree char *short_a = token_for (601, 3);
	g_autofree char *short_b = token_for (602, 3);
	Peer *a = peer_new (d->port, 601);
	Peer *b = peer_new (d->port, 602);

	a->new_token = token_for (601, 3600);
	chat_connection_set_token (a->conn, short_a);
	chat_connection_set_token (b->conn, short_b);
	peer_start (a, 11);
	peer_start (b, 11);
	g_assert_cmpuint (a->token_expiring, <=, 1);
	/* b gets 4001 once its 3 s are over (leeway 0), a lives on */
	chat_test_wait_until (peer_closed_final, b, 8000);
	g_assert_cmpuint (b->last_code, ==, 4001);
	g_assert_cmpuint (b->token_expiring, ==, 1);
	g_assert_cmpint (chat_connection_get_state (b->conn),
			 ==,
			 CHAT_CONNECTION_STATE_DISCONNECTED);
	spin (1500);
	g_assert_cmpint (chat_connection_get_state (b->conn),
			 ==,
			 CHAT_CONNECTION_STATE_DISCONNECTED);
	g_assert_cmpint (chat_connection_get_state (a->conn), ==, CHAT_CONNECTION_STATE_CONNECTED);
	g_assert_cmpuint (a->token_expiring, ==, 1);
	g_assert_cmpuint (a->closes, ==, 0);
	g_assert_cmpuint (a->errors, ==, 0);
	g_assert_cmpstr (chat_connection_get_token (a->conn), ==, a->new_token);
	send_room (a, 11, "still here");
	assert_log (a->room_log, "still here,");

	peer_free (a);
	peer_free (b);
	daemon_free (d);
}

typedef struct {
	gboolean done;
	GError *error;
} Outcome;

static void
on_history_outcome (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Outcome *outcome = user_data;
	g_autoptr (GPtrArray) messages =
	    chat_connection_request_history_finish (CHAT_CONNECTION (source),
						    result,
						    &outcome->error);

	outcome->done = TRUE;
}

static void
on_presence_outcome (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Outcome *outcome = user_data;
	gsize n_users;
	g_autofree guint64 *users =
	    chat_connection_request_presence_finish (CHAT_CONNECTION (source),
						     result,
						     &n_users,
						     &outcome->error);

	outcome->done = TRUE;
}

static gboolean
outcome_done (gpointer user_data)
{
	return ((Outcome *) user_data)->done;
}

/* A token limited to room 20: the join of room 21 is refused (forbidden), and the history and
 * presence asked right after it fail with the server's not_member instead of waiting
 * forever; the room is forgotten, and requests for a joined room still work after that. */
static void
test_connection_refused (void)
{
	Daemon *d = daemon_new ("sqlite");
	g_autofree char *token = token_with (701, 3600, "\"rooms\":[20]");
	Peer *a = peer_new (d->port, 701);
	Outcome history = {FALSE, NULL};
	Outcome presence = {FALSE, NULL};
	g_autoptr (GPtrArray) messages = NULL;
	g_autofree guint64 *rooms = NULL;
	gsize n_rooms;

	chat_connection_set_token (a->conn, token);
	peer_start (a, 20);
	chat_connection_join (a->conn, 21);
	chat_connection_request_history_async (a->conn,
					       21,
					       0,
					       0,
					       NULL,
					       on_history_outcome,
					       &history);
	chat_connection_request_presence_async (a->conn, 21, NULL, on_presence_outcome, &presence);
	chat_test_wait_until (outcome_done, &history, 5000);
	chat_test_wait_until (outcome_done, &presence, 5000);
	g_assert_error (history.error, CHAT_ERROR, CHAT_ERROR_NOT_MEMBER);
	g_assert_error (presence.error, CHAT_ERROR, CHAT_ERROR_NOT_MEMBER);
	g_clear_error (&history.error);
	g_clear_error (&presence.error);
	/* the refused join is reported, the requests' errors are not reported twice */
	g_assert_cmpuint (a->errors, ==, 1);
	g_assert_cmpstr (a->last_error, ==, "forbidden");
	rooms = chat_connection_get_rooms (a->conn, &n_rooms);
	g_assert_cmpuint (n_rooms, ==, 1);
	g_assert_cmpuint (rooms[0], ==, 20);

	/* the answers that follow are matched to their own requests */
	send_room (a, 20, "fine");
	assert_log (a->room_log, "fine,");
	chat_connection_request_history_async (a->conn, 20, 0, 0, NULL, on_history, &messages);
	chat_test_wait_until (pointer_set, &messages, 5000);
	g_assert_cmpuint (messages->len, ==, 1);
	g_assert_cmpuint (a->errors, ==, 1);

	peer_free (a);
	daemon_free (d);
}

/* A reload whose history is refused (the rate limit: a burst of 3 frames, taken by the two
 * rejoins and the sync) does not hold the room's live messages forever. */
static void
test_connection_reload_refused (void)
{
	Daemon *d = daemon_new_limited ("memory", "messages-per-second=1\nmessage-burst=3");
	Peer *a = peer_new (d->port, 801);
	Peer *b = peer_new (d->port, 802);

	chat_connection_join (b->conn, 30);
	peer_start (b, 31);
	wait_count (&b->joined_self, 2);
	daemon_stop (d, SIGTERM);
	chat_test_wait_until (peer_reconnecting, b, 5000);
	daemon_start (d);
	chat_test_wait_until (peer_connected, b, 5000);
	/* at least the second reload's history is refused */
	wait_count (&b->errors, 1);
	g_assert_cmpstr (b->last_error, ==, "rate_limited");

	peer_start (a, 31);
	send_room (a, 31, "live");
	assert_log (b->room_log, "live,");

	peer_free (a);
	peer_free (b);
	daemon_free (d);
}

/* A refused refresh does not count as a new token: the 4001 that follows is final at once,
 * not an attempt with the refused token. */
static void
test_connection_refresh_refused (void)
{
	Daemon *d = daemon_new ("sqlite");
	g_autofree char *short_token = token_for (901, 3);
	Peer *a = peer_new (d->port, 901);

	a->new_token = token_for (901, -60); /* expired: refused */
	chat_connection_set_token (a->conn, short_token);
	peer_start (a, 0);
	wait_count (&a->errors, 1);
	g_assert_cmpstr (a->last_error, ==, "invalid_token");
	chat_test_wait_until (peer_closed_final, a, 8000);
	spin (300);
	g_assert_cmpuint (a->last_code, ==, 4001);
	g_assert_cmpuint (a->closes, ==, 1);
	g_assert_cmpint (chat_connection_get_state (a->conn),
			 ==,
			 CHAT_CONNECTION_STATE_DISCONNECTED);

	peer_free (a);
	daemon_free (d);
}

/* Nothing listens: every failed attempt is reported with its reason. */
static void
test_connection_attempt_failed (void)
{
	Peer *a = peer_new (1, 1001);
	g_autoptr (GError) error = NULL;

	g_assert_true (chat_connection_open (a->conn, &error));
	wait_count (&a->attempt_failures, 3);
	g_assert_error (a->attempt_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
	g_assert_cmpuint (a->closes, ==, 0);
	g_assert_cmpint (chat_connection_get_state (a->conn),
			 ==,
			 CHAT_CONNECTION_STATE_RECONNECTING);

	peer_free (a);
}

static void
count_notify (guint *count)
{
	(*count)++;
}

/* ChatConnection:tls-database: NULL (the system's) by default, set, read back, notified,
 * set to NULL again; nothing leaks (the valgrind setup runs this too). */
static void
test_connection_tls_database (void)
{
	g_autoptr (ChatConnection) conn = chat_connection_new ("wss://127.0.0.1:1/ws", "a.b.c");
	g_autoptr (GTlsDatabase) database =
	    g_tls_backend_get_default_database (g_tls_backend_get_default ());
	g_autoptr (GTlsDatabase) read = NULL;
	guint notified = 0;

	g_assert_nonnull (database);
	g_assert_null (chat_connection_get_tls_database (conn));
	g_signal_connect_swapped (conn,
				  "notify::tls-database",
				  G_CALLBACK (count_notify),
				  &notified);
	chat_connection_set_tls_database (conn, database);
	g_assert_true (chat_connection_get_tls_database (conn) == database);
	g_object_get (conn, "tls-database", &read, NULL);
	g_assert_true (read == database);
	/* the same again is no change */
	chat_connection_set_tls_database (conn, database);
	g_object_set (conn, "tls-database", NULL, NULL);
	g_assert_null (chat_connection_get_tls_database (conn));
	g_assert_cmpuint (notified, ==, 2);
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

	g_test_add_func ("/chat/connection/rooms-and-dms", test_connection_rooms_and_dms);
	g_test_add_func ("/chat/connection/drop", test_connection_drop);
	g_test_add_data_func ("/chat/connection/restart-sigterm",
			      GINT_TO_POINTER (SIGTERM),
			      test_connection_restart);
	g_test_add_data_func ("/chat/connection/restart-sigkill",
			      GINT_TO_POINTER (SIGKILL),
			      test_connection_restart);
	g_test_add_func ("/chat/connection/reload", test_connection_reload);
	g_test_add_func ("/chat/connection/backoff", test_connection_backoff);
	g_test_add_func ("/chat/connection/refresh", test_connection_refresh);
	g_test_add_func ("/chat/connection/refused", test_connection_refused);
	g_test_add_func ("/chat/connection/reload-refused", test_connection_reload_refused);
	g_test_add_func ("/chat/connection/refresh-refused", test_connection_refresh_refused);
	g_test_add_func ("/chat/connection/attempt-failed", test_connection_attempt_failed);
	g_test_add_func ("/chat/connection/tls-database", test_connection_tls_database);
	return g_test_run ();
}
