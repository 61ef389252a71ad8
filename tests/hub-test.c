/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatHub and ChatServer in one process: a real server on a loopback port and real libsoup
 * WebSocket clients, driving the public API and its signals.
 */

#include <glib/gstdio.h>
#include <libsoup/soup.h>
#include <string.h>
#include <sys/resource.h>

#include "chat-client-private.h"
#include "chat-hub-private.h"
#include "chat-sqlite-store-private.h"
#include "chat-test-utils.h"

typedef struct {
	SoupWebsocketConnection *conn;
	GPtrArray *received; /* ChatMessage* */
	GPtrArray *texts; /* char*, the frames as received, for fields ChatMessage keeps private */
	gboolean failed;
	gboolean closed;
	gushort close_code;
	char *close_data;
} TestClient;

typedef struct {
	ChatHub *hub;
	ChatStore *store; /* (nullable): the SQLite store of the hub, if it has one */
	char *dir;	  /* (nullable): the SQLite store's directory */
	ChatTokenVerifier *verifier;
	ChatServer *server;
	SoupSession *session;
	char *uri;
	GPtrArray *registered;	 /* ChatClient* */
	GPtrArray *unregistered; /* ChatClient* */
	GArray *unregistered_codes;
	GPtrArray *broadcasts; /* ChatMessage* */
	guint n_handled;       /* client messages the server read */
	GMainContext *context; /* (nullable): pushed as thread-default for the whole test */
} Fixture;

static void
on_client_message (ChatClient *client, ChatMessage *message, Fixture *fixture)
{
	fixture->n_handled++;
}

static void
on_registered (ChatHub *hub, ChatClient *client, Fixture *fixture)
{
	g_ptr_array_add (fixture->registered, g_object_ref (client));
	g_signal_connect (client, "message-received", G_CALLBACK (on_client_message), fixture);
}

static void
on_unregistered (ChatHub *hub, ChatClient *client, guint code, Fixture *fixture)
{
	g_ptr_array_add (fixture->unregistered, g_object_ref (client));
	g_array_append_val (fixture->unregistered_codes, code);
}

static void
on_broadcast (ChatHub *hub, ChatMessage *message, Fixture *fixture)
{
	g_ptr_array_add (fixture->broadcasts, g_object_ref (message));
}

/* store-failed and store-recovered are expected where a test makes the store fail */
static guint n_store_failed;
static guint n_store_recovered;

static GLogWriterOutput
test_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
	for (gsize i = 0; i < n_fields; i++) {
		if (g_strcmp0 (fields[i].key, "CHATHUB_EVENT") != 0)
			continue;
		if (g_strcmp0 (fields[i].value, "store-failed") == 0) {
			n_store_failed++;
			return G_LOG_WRITER_HANDLED;
		}
		if (g_strcmp0 (fields[i].value, "store-recovered") == 0) {
			n_store_recovered++;
			return G_LOG_WRITER_HANDLED;
		}
	}
	return g_log_writer_default (level, fields, n_fields, data);
}

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));
	g_autoptr (GError) error = NULL;

	if (fixture->hub == NULL)
		fixture->hub = chat_hub_new ();
	fixture->verifier = chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, key, &error);
	g_assert_no_error (error);
	fixture->server = chat_server_new (fixture->hub, fixture->verifier);
	g_assert_true (chat_server_listen (fixture->server, "127.0.0.1", 0, &error));
	g_assert_no_error (error);
	g_assert_cmpuint (chat_server_get_port (fixture->server), >, 0);
	fixture->uri = chat_server_get_uri (fixture->server);
	fixture->session = soup_session_new ();
	fixture->registered = g_ptr_array_new_with_free_func (g_object_unref);
	fixture->unregistered = g_ptr_array_new_with_free_func (g_object_unref);
	fixture->unregistered_codes = g_array_new (FALSE, FALSE, sizeof (guint));
	fixture->broadcasts = g_ptr_array_new_with_free_func (g_object_unref);
	g_signal_connect (fixture->hub, "client-registered", G_CALLBACK (on_registered), fixture);
	g_signal_connect (fixture->hub,
			  "client-unregistered",
			  G_CALLBACK (on_unregistered),
			  fixture);
	g_signal_connect (fixture->hub, "broadcast", G_CALLBACK (on_broadcast), fixture);
}

/* The hub keeps room messages in a real SQLite file. */
static void
fixture_setup_sqlite (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GError) error = NULL;
	g_autofree char *path = NULL;

	fixture->dir = g_dir_make_tmp ("hub-test-XXXXXX", &error);
	g_assert_no_error (error);
	path = g_build_filename (fixture->dir, "chathub.db", NULL);
	fixture->store = CHAT_STORE (chat_sqlite_store_new (path, CHAT_STORE_SYNC_NORMAL, &error));
	g_assert_no_error (error);
	fixture->hub = g_object_new (CHAT_TYPE_HUB, "store", fixture->store, NULL);
	fixture_setup (fixture, data);
}

/* Everything made under a new thread-default context, which only the test iterates. */
static void
fixture_setup_own_context (Fixture *fixture, gconstpointer data)
{
	fixture->context = g_main_context_new ();
	g_main_context_push_thread_default (fixture->context);
	fixture_setup (fixture, data);
}

/* A memory store that keeps ten messages per room. */
static void
fixture_setup_small_history (Fixture *fixture, gconstpointer data)
{
	g_autoptr (ChatStore) store =
	    g_object_new (CHAT_TYPE_MEMORY_STORE, "history-size", 10, NULL);

	fixture->hub = g_object_new (CHAT_TYPE_HUB, "store", store, NULL);
	fixture_setup (fixture, data);
}

static gboolean
hub_is_empty (gpointer data)
{
	return chat_hub_get_n_clients (((Fixture *) data)->hub) == 0;
}

static gboolean
holds_last_ref (gpointer object)
{
	return g_atomic_int_get (&G_OBJECT (object)->ref_count) == 1;
}

static void
fixture_teardown (Fixture *fixture, gconstpointer data)
{
	chat_hub_close_all (fixture->hub, CHAT_CLOSE_CODE_GOING_AWAY, "test over");
	chat_test_wait_until (hub_is_empty, fixture, 10000);
	g_signal_handlers_disconnect_by_data (fixture->hub, fixture);
	g_clear_object (&fixture->session);
	g_clear_object (&fixture->server);
	g_clear_object (&fixture->verifier);
	/* a step still waiting for the store holds the hub until the store answers: slow under
	 * valgrind, so wait for the answers rather than race them */
	chat_test_wait_until (holds_last_ref, fixture->hub, 10000);
	g_assert_finalize_object (g_steal_pointer (&fixture->hub));
	if (fixture->store != NULL) {
		chat_test_wait_until (holds_last_ref, fixture->store, 10000);
		g_assert_finalize_object (g_steal_pointer (&fixture->store));
	}
	if (fixture->dir != NULL) {
		const char *names[] = {"chathub.db", "chathub.db-wal", "chathub.db-shm"};

		for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
			g_autofree char *path = g_build_filename (fixture->dir, names[i], NULL);

			g_remove (path);
		}
		g_assert_cmpint (g_rmdir (fixture->dir), ==, 0);
		g_clear_pointer (&fixture->dir, g_free);
	}
	g_free (fixture->uri);
	g_ptr_array_unref (fixture->registered);
	g_ptr_array_unref (fixture->unregistered);
	g_array_unref (fixture->unregistered_codes);
	g_ptr_array_unref (fixture->broadcasts);
	/* let deferred closes finish before the next test */
	while (g_main_context_iteration (g_main_context_get_thread_default (), FALSE))
		;
	if (fixture->context != NULL) {
		g_main_context_pop_thread_default (fixture->context);
		g_clear_pointer (&fixture->context, g_main_context_unref);
	}
}

/* ---- a small WebSocket client --------------------------------------------------------- */

static void
client_on_message (SoupWebsocketConnection *conn, gint type, GBytes *bytes, TestClient *client)
{
	g_autoptr (GError) error = NULL;
	gsize size;
	const char *text = g_bytes_get_data (bytes, &size);
	ChatMessage *message = chat_message_new_from_json (text, size, &error);

	g_assert_no_error (error);
	g_ptr_array_add (client->received, message);
	g_ptr_array_add (client->texts, g_strndup (text, size));
}

static void
client_on_closed (SoupWebsocketConnection *conn, TestClient *client)
{
	client->closed = TRUE;
	client->close_code = soup_websocket_connection_get_close_code (conn);
	client->close_data = g_strdup (soup_websocket_connection_get_close_data (conn));
}

static void
client_on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
	TestClient *client = user_data;
	g_autoptr (GError) error = NULL;

	client->conn =
	    soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
	if (client->conn == NULL) {
		client->failed = TRUE;
		return;
	}
	g_signal_connect (client->conn, "message", G_CALLBACK (client_on_message), client);
	g_signal_connect (client->conn, "closed", G_CALLBACK (client_on_closed), client);
}

static gboolean
client_settled (gpointer data)
{
	TestClient *client = data;

	return client->conn != NULL || client->failed;
}

static TestClient *
client_connect_with_token (Fixture *fixture, const char *token)
{
	TestClient *client = g_new0 (TestClient, 1);
	g_autoptr (SoupMessage) msg = soup_message_new ("GET", fixture->uri);
	g_autofree char *authorization = g_strdup_printf ("Bearer %s", token);

	client->received = g_ptr_array_new_with_free_func (g_object_unref);
	client->texts = g_ptr_array_new_with_free_func (g_free);
	soup_message_headers_replace (soup_message_get_request_headers (msg),
				      "Authorization",
				      authorization);
	soup_session_websocket_connect_async (fixture->session,
					      msg,
					      NULL,
					      NULL,
					      G_PRIORITY_DEFAULT,
					      NULL,
					      client_on_connected,
					      client);
	chat_test_wait_until (client_settled, client, 5000);
	return client;
}

typedef struct {
	Fixture *fixture;
	guint count;
} RegisteredCount;

static gboolean
registered_at_least (gpointer data)
{
	RegisteredCount *wait = data;

	return wait->fixture->registered->len >= wait->count;
}

static TestClient *
client_connect (Fixture *fixture, guint64 user_id)
{
	g_autofree char *token = chat_test_token_for_user (user_id);
	RegisteredCount wait = {fixture, fixture->registered->len + 1};
	TestClient *client = client_connect_with_token (fixture, token);

	g_assert_false (client->failed);
	chat_test_wait_until (registered_at_least, &wait, 5000);
	return client;
}

static gboolean
client_is_closed (gpointer data)
{
	return ((TestClient *) data)->closed;
}

static void
client_free (TestClient *client)
{
	if (client->conn != NULL) {
		if (soup_websocket_connection_get_state (client->conn) == SOUP_WEBSOCKET_STATE_OPEN)
			soup_websocket_connection_close (client->conn, 1000, NULL);
		if (soup_websocket_connection_get_state (client->conn) !=
		    SOUP_WEBSOCKET_STATE_CLOSED)
			chat_test_wait_until (client_is_closed, client, 10000);
		g_signal_handlers_disconnect_by_data (client->conn, client);
		g_object_unref (client->conn);
	}
	g_ptr_array_unref (client->received);
	g_ptr_array_unref (client->texts);
	g_free (client->close_data);
	g_free (client);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TestClient, client_free)

typedef struct {
	TestClient *client;
	guint count;
} ReceivedCount;

static gboolean
received_at_least (gpointer data)
{
	ReceivedCount *wait = data;

	return wait->client->received->len >= wait->count;
}

static ChatMessage *
client_wait_message (TestClient *client, guint index)
{
	ReceivedCount wait = {client, index + 1};

	chat_test_wait_until (received_at_least, &wait, 5000);
	return client->received->pdata[index];
}

static void
client_send (TestClient *client, const char *json)
{
	soup_websocket_connection_send_text (client->conn, json);
}

/* Sends a ping and waits for its pong: everything sent before has been handled. */
static void
client_sync (TestClient *client)
{
	guint before = client->received->len;

	client_send (client, "{\"type\":\"ping\"}");
	for (guint i = before;; i++) {
		if (chat_message_get_message_type (client_wait_message (client, i)) ==
		    CHAT_MESSAGE_TYPE_PONG) {
			g_ptr_array_remove_index (client->received, i);
			g_ptr_array_remove_index (client->texts, i);
			return;
		}
	}
}

/* ---- tests ---------------------------------------------------------------------------- */

static void
test_hub_register_signals (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) alice = client_connect (fixture, 11);
	g_autoptr (TestClient) bob = client_connect (fixture, 22);
	ChatClient *first;
	g_autoptr (GPtrArray) clients = NULL;
	g_autoptr (GPtrArray) bobs = NULL;
	RegisteredCount wait;

	g_assert_cmpuint (fixture->registered->len, ==, 2);
	first = fixture->registered->pdata[0];
	g_assert_cmpuint (chat_client_get_user_id (first), ==, 11);
	g_assert_cmpuint (chat_client_get_user_id (fixture->registered->pdata[1]), ==, 22);
	g_assert_cmpstr (chat_client_get_remote_address (first), ==, "127.0.0.1");
	g_assert_cmpint (chat_client_get_connected_since (first), >, 1700000000);
	g_assert_true (chat_client_is_open (first));
	g_assert_true (chat_hub_lookup_client (fixture->hub, chat_client_get_id (first)) == first);
	g_assert_cmpstr (chat_client_get_id (first),
			 !=,
			 chat_client_get_id (fixture->registered->pdata[1]));
	g_assert_cmpuint (chat_hub_get_n_clients (fixture->hub), ==, 2);
	clients = chat_hub_list_clients (fixture->hub);
	g_assert_cmpuint (clients->len, ==, 2);
	bobs = chat_hub_list_user_clients (fixture->hub, 22);
	g_assert_cmpuint (bobs->len, ==, 1);

	/* a client closing normally unregisters with its code */
	soup_websocket_connection_close (alice->conn, 1000, "bye");
	chat_test_wait_until (client_is_closed, alice, 5000);
	wait.fixture = fixture;
	(void) wait;
	while (fixture->unregistered->len < 1)
		g_main_context_iteration (NULL, TRUE);
	g_assert_true (fixture->unregistered->pdata[0] == first);
	g_assert_cmpuint (g_array_index (fixture->unregistered_codes, guint, 0), ==, 1000);
	g_assert_false (chat_client_is_open (first));
	g_assert_null (chat_hub_lookup_client (fixture->hub, chat_client_get_id (first)));
	g_assert_cmpuint (chat_hub_get_n_clients (fixture->hub), ==, 1);
}

static void
test_hub_send_to_all (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) alice = client_connect (fixture, 1);
	g_autoptr (TestClient) bob = client_connect (fixture, 2);
	g_autoptr (ChatMessage) first = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (ChatMessage) second = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (ChatMessage) ping = chat_message_new (CHAT_MESSAGE_TYPE_PING);
	g_autoptr (GError) error = NULL;
	ChatMessage *got;

	chat_message_set_content (first, "from the service");
	g_assert_cmpuint (chat_hub_send_to_all (fixture->hub, first, &error), ==, 2);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_id (first), >, 0);
	g_assert_cmpint (chat_message_get_timestamp (first), >, 0);

	for (guint i = 0; i < 2; i++) {
		got = client_wait_message (i == 0 ? alice : bob, 0);
		g_assert_cmpstr (chat_message_get_content (got), ==, "from the service");
		g_assert_cmpuint (chat_message_get_from (got), ==, 0);
		g_assert_cmpuint (chat_message_get_id (got), ==, chat_message_get_id (first));
	}
	/* relayed once its id is kept, as a copy the caller cannot change meanwhile */
	g_assert_cmpuint (fixture->broadcasts->len, ==, 1);
	g_assert_cmpuint (chat_message_get_id (fixture->broadcasts->pdata[0]),
			  ==,
			  chat_message_get_id (first));

	/* a client's broadcast: the hub signal fires, ids keep increasing, from is the sender */
	client_send (alice, "{\"type\":\"message\",\"content\":\"hi all\",\"from\":999}");
	got = client_wait_message (bob, 1);
	g_assert_cmpuint (chat_message_get_from (got), ==, 1);
	g_assert_cmpuint (chat_message_get_id (got), >, chat_message_get_id (first));
	g_assert_cmpuint (fixture->broadcasts->len, ==, 2);

	chat_message_set_data (second, NULL);
	g_assert_cmpuint (chat_hub_send_to_all (fixture->hub, second, &error), ==, 0);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_MESSAGE);
	g_clear_error (&error);
	g_assert_cmpuint (chat_hub_send_to_all (fixture->hub, ping, &error), ==, 0);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_MESSAGE);
	g_assert_cmpuint (chat_hub_get_messages_relayed (fixture->hub), ==, 2);
}

static void
on_room_event (ChatHub *hub, ChatClient *client, guint64 room_id, GArray *events)
{
	g_array_append_val (events, room_id);
}

static void
test_hub_rooms_api (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) alice = client_connect (fixture, 1);
	g_autoptr (TestClient) bob = client_connect (fixture, 2);
	g_autoptr (TestClient) carol = client_connect (fixture, 3);
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (GArray) joined = g_array_new (FALSE, FALSE, sizeof (guint64));
	g_autoptr (GArray) left = g_array_new (FALSE, FALSE, sizeof (guint64));
	g_autoptr (GPtrArray) members = NULL;
	g_autoptr (GError) error = NULL;
	g_autofree guint64 *rooms = NULL;
	g_autofree guint64 *client_rooms = NULL;
	ChatClient *carol_client = fixture->registered->pdata[2];
	gsize n = 0;

	g_signal_connect (fixture->hub, "room-joined", G_CALLBACK (on_room_event), joined);
	g_signal_connect (fixture->hub, "room-left", G_CALLBACK (on_room_event), left);
	client_send (alice, "{\"type\":\"join\",\"room_id\":5}");
	client_send (bob, "{\"type\":\"join\",\"room_id\":5}");
	client_sync (alice);
	client_sync (bob);
	g_assert_cmpuint (joined->len, ==, 2);
	g_assert_cmpuint (chat_hub_get_n_rooms (fixture->hub), ==, 1);
	rooms = chat_hub_list_rooms (fixture->hub, &n);
	g_assert_cmpuint (n, ==, 1);
	g_assert_cmpuint (rooms[0], ==, 5);
	members = chat_hub_list_room_members (fixture->hub, 5);
	g_assert_cmpuint (members->len, ==, 2);
	g_assert_cmpuint (chat_hub_get_n_room_members (fixture->hub, 5), ==, 2);
	g_assert_cmpuint (chat_hub_get_n_room_members (fixture->hub, 77), ==, 0);

	/* the service joins carol: she gets the ack, the others the event */
	g_assert_true (chat_hub_join_room (fixture->hub, carol_client, 5, &error));
	g_assert_no_error (error);
	g_assert_true (chat_client_is_member (carol_client, 5));
	client_rooms = chat_client_get_rooms (carol_client, &n);
	g_assert_cmpuint (n, ==, 1);
	g_assert_cmpint (chat_message_get_message_type (client_wait_message (carol, 0)),
			 ==,
			 CHAT_MESSAGE_TYPE_JOIN);

	chat_message_set_content (message, "room only");
	g_assert_cmpuint (chat_hub_send_to_room (fixture->hub, 5, message, &error), ==, 3);
	g_assert_no_error (error);
	g_assert_cmpstr (chat_message_get_content (client_wait_message (carol, 1)),
			 ==,
			 "room only");
	g_assert_cmpuint (chat_message_get_room_id (client_wait_message (carol, 1)), ==, 5);
	g_assert_cmpuint (fixture->broadcasts->len, ==, 0);

	/* an empty room is not an error, room 0 is */
	g_assert_cmpuint (chat_hub_send_to_room (fixture->hub, 6, message, &error), ==, 0);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_hub_send_to_room (fixture->hub, 0, message, &error), ==, 0);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);

	g_assert_true (chat_hub_leave_room (fixture->hub, carol_client, 5, &error));
	g_assert_false (chat_hub_leave_room (fixture->hub, carol_client, 5, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_NOT_MEMBER);
	g_assert_cmpuint (left->len, ==, 1);

	/* disconnecting leaves every room */
	soup_websocket_connection_close (alice->conn, 1000, NULL);
	chat_test_wait_until (client_is_closed, alice, 5000);
	while (left->len < 2)
		g_main_context_iteration (NULL, TRUE);
	g_clear_pointer (&members, g_ptr_array_unref);
	members = chat_hub_list_room_members (fixture->hub, 5);
	g_assert_cmpuint (members->len, ==, 1);
	g_signal_handlers_disconnect_by_data (fixture->hub, joined);
	g_signal_handlers_disconnect_by_data (fixture->hub, left);
}

static void
test_hub_send_to_user (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) phone = client_connect (fixture, 8);
	g_autoptr (TestClient) laptop = client_connect (fixture, 8);
	g_autoptr (TestClient) other = client_connect (fixture, 9);
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (JsonNode) payload = json_from_string ("{\"n\":1}", NULL);
	g_autoptr (GError) error = NULL;

	chat_message_set_data (message, payload);
	g_assert_cmpuint (chat_hub_send_to_user (fixture->hub, 8, message, &error), ==, 2);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_to (client_wait_message (phone, 0)), ==, 8);
	g_assert_cmpuint (chat_message_get_to (client_wait_message (laptop, 0)), ==, 8);
	client_sync (other);
	g_assert_cmpuint (other->received->len, ==, 0);

	g_assert_cmpuint (chat_hub_send_to_user (fixture->hub, 404, message, &error), ==, 0);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_USER_OFFLINE);
}

/* chat_hub_close_client(): the close waits for what the hub was asked to relay before it */
static void
test_hub_disconnect_in_order (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) alice = client_connect (fixture, 1);
	g_autoptr (ChatMessage) last = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (GError) error = NULL;
	ChatClient *client = fixture->registered->pdata[0];

	chat_message_set_content (last, "last words");
	g_assert_cmpuint (chat_hub_send_to_all (fixture->hub, last, &error), ==, 1);
	g_assert_no_error (error);
	chat_hub_close_client (fixture->hub, client, CHAT_CLOSE_CODE_POLICY_VIOLATION, "bye");
	chat_test_wait_until (client_is_closed, alice, 5000);
	g_assert_cmpuint (alice->received->len, ==, 1);
	g_assert_cmpstr (chat_message_get_content (alice->received->pdata[0]), ==, "last words");
	g_assert_cmpuint (alice->close_code, ==, CHAT_CLOSE_CODE_POLICY_VIOLATION);
	g_assert_cmpstr (alice->close_data, ==, "bye");
}

static gboolean
unregistered_one_more (gpointer data)
{
	Fixture *fixture = data;

	return fixture->unregistered->len > 0;
}

/* A direct message written to a connection counts as delivered (the hub checks on a timer of
 * its own context): the user's next connection does not get it again as an offline one. */
static void
test_hub_delivered_once (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) phone = client_connect (fixture, 8);
	g_autoptr (TestClient) laptop = NULL;
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (GError) error = NULL;
	gint64 until;

	chat_message_set_content (message, "once");
	g_assert_cmpuint (chat_hub_send_to_user (fixture->hub, 8, message, &error), ==, 1);
	g_assert_no_error (error);
	g_assert_cmpstr (chat_message_get_content (client_wait_message (phone, 0)), ==, "once");
	/* a few of the hub's delivery checks */
	until = g_get_monotonic_time () + 300 * G_TIME_SPAN_MILLISECOND;
	while (g_get_monotonic_time () < until)
		g_main_context_iteration (g_main_context_get_thread_default (), FALSE);
	g_clear_pointer (&phone, client_free);
	chat_test_wait_until (unregistered_one_more, fixture, 5000);

	laptop = client_connect (fixture, 8);
	client_sync (laptop);
	g_assert_cmpuint (laptop->received->len, ==, 0);
}

/* chat_hub_send() routes by the message's own address, with a client's rule for it. */
static void
test_hub_send (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) user = client_connect (fixture, 8);
	g_autoptr (TestClient) other = client_connect (fixture, 9);
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (GError) error = NULL;

	chat_message_set_content (message, "hi");
	chat_message_set_to (message, 8);
	chat_message_set_room_id (message, 4);
	g_assert_cmpuint (chat_hub_send (fixture->hub, message, &error), ==, 0);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_MESSAGE);
	g_clear_error (&error);

	chat_message_set_room_id (message, 0);
	g_assert_cmpuint (chat_hub_send (fixture->hub, message, &error), ==, 1);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_to (client_wait_message (user, 0)), ==, 8);
	/* stored first, in the user's stream */
	g_assert_cmpuint (chat_message_get_offset (user->received->pdata[0]), ==, 1);

	chat_message_set_to (message, 0);
	g_assert_cmpuint (chat_hub_send (fixture->hub, message, &error), ==, 2);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_to (client_wait_message (user, 1)), ==, 0);
	g_assert_cmpuint (chat_message_get_to (client_wait_message (other, 0)), ==, 0);
	client_sync (other);
	g_assert_cmpuint (other->received->len, ==, 1);
}

static void
assert_error (ChatMessage *message, const char *code)
{
	g_assert_cmpint (chat_message_get_message_type (message), ==, CHAT_MESSAGE_TYPE_ERROR);
	g_assert_cmpstr (chat_message_get_code (message), ==, code);
}

/* A burst of three, then refusals; more refusals than the burst close the connection. */
static void
test_hub_rate_limit (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) sender = NULL;
	g_autoptr (TestClient) reader = NULL;

	/* one token a second: the messages below arrive together, so none comes back between */
	g_object_set (fixture->server, "messages-per-second", 1, "message-burst", 3, NULL);
	sender = client_connect (fixture, 1);
	reader = client_connect (fixture, 2);
	for (guint i = 0; i < 10; i++)
		client_sync (sender); /* JSON pings are not counted */
	for (guint i = 0; i < 4; i++)
		client_send (sender, "{\"type\":\"message\",\"content\":\"hi\"}");
	client_sync (sender);
	g_assert_cmpuint (sender->received->len, ==, 4);
	for (guint i = 0; i < 3; i++)
		g_assert_cmpstr (chat_message_get_content (sender->received->pdata[i]), ==, "hi");
	assert_error (sender->received->pdata[3], "rate_limited");
	client_sync (reader);
	g_assert_cmpuint (reader->received->len, ==, 3);

	/* three more refusals: four in all, over the burst */
	for (guint i = 0; i < 3; i++)
		client_send (sender, "{\"type\":\"message\",\"content\":\"more\"}");
	chat_test_wait_until (client_is_closed, sender, 5000);
	g_assert_cmpuint (sender->close_code, ==, CHAT_CLOSE_CODE_POLICY_VIOLATION);
	g_assert_cmpstr (sender->close_data, ==, "rate limit");
	g_assert_cmpuint (sender->received->len, ==, 6);
	assert_error (sender->received->pdata[5], "rate_limited");
	client_sync (reader);
	g_assert_cmpuint (reader->received->len, ==, 3);
}

static void
test_hub_room_limit (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) alice = NULL;
	g_autoptr (GError) error = NULL;
	ChatClient *client;

	g_object_set (fixture->server, "max-rooms", 2, NULL);
	alice = client_connect (fixture, 1);
	client = fixture->registered->pdata[0];
	client_send (alice, "{\"type\":\"join\",\"room_id\":1}");
	client_send (alice, "{\"type\":\"join\",\"room_id\":2}");
	client_send (alice, "{\"type\":\"join\",\"room_id\":3}");
	client_send (alice, "{\"type\":\"join\",\"room_id\":1}"); /* again: an ack */
	client_sync (alice);
	g_assert_cmpuint (alice->received->len, ==, 4);
	assert_error (alice->received->pdata[2], "limit_exceeded");
	g_assert_cmpint (chat_message_get_message_type (alice->received->pdata[3]),
			 ==,
			 CHAT_MESSAGE_TYPE_JOIN);
	g_assert_false (chat_client_is_member (client, 3));

	/* the service is held to the same limit */
	g_assert_false (chat_hub_join_room (fixture->hub, client, 3, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_LIMIT_EXCEEDED);
	g_clear_error (&error);
	g_assert_true (chat_hub_join_room (fixture->hub, client, 2, &error));
	g_assert_true (chat_hub_leave_room (fixture->hub, client, 1, &error));
	g_assert_true (chat_hub_join_room (fixture->hub, client, 3, &error));
	g_assert_no_error (error);
	g_assert_true (chat_client_is_member (client, 3));
	g_assert_cmpuint (chat_hub_get_n_rooms (fixture->hub), ==, 2);
}

#define MANY_ROOMS 200

static gboolean
hub_has_one_client (gpointer data)
{
	return chat_hub_get_n_clients (((Fixture *) data)->hub) == 1;
}

/* Checks every room's members against what the test expects. */
static void
assert_membership (Fixture *fixture, ChatClient **clients, gboolean (*member)[MANY_ROOMS + 1])
{
	guint n_rooms = 0;

	for (guint c = 0; c < 2; c++) {
		g_autofree guint64 *rooms = NULL;
		gsize n = 0, expected = 0;

		rooms = chat_client_get_rooms (clients[c], &n);
		for (guint64 r = 1; r <= MANY_ROOMS; r++) {
			g_assert_cmpint (chat_client_is_member (clients[c], r), ==, member[c][r]);
			expected += member[c][r];
		}
		g_assert_cmpuint (n, ==, expected);
		for (gsize i = 0; i < n; i++)
			g_assert_true (member[c][rooms[i]]);
	}
	for (guint64 r = 1; r <= MANY_ROOMS; r++) {
		g_autoptr (GPtrArray) members = chat_hub_list_room_members (fixture->hub, r);
		guint expected = member[0][r] + member[1][r];

		g_assert_cmpuint (members->len, ==, expected);
		for (guint c = 0; c < 2; c++) {
			g_assert_cmpint (g_ptr_array_find (members, clients[c], NULL),
					 ==,
					 member[c][r]);
		}
		n_rooms += expected > 0;
	}
	g_assert_cmpuint (chat_hub_get_n_rooms (fixture->hub), ==, n_rooms);
}

/* Enough rooms for the client's room index, joined and left in orders that move entries in
 * the client's array and in the rooms' member arrays. */
static void
test_hub_many_rooms (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	g_autoptr (GArray) left = g_array_new (FALSE, FALSE, sizeof (guint64));
	ChatClient *clients[2] = {fixture->registered->pdata[0], fixture->registered->pdata[1]};
	gboolean member[2][MANY_ROOMS + 1] = {{FALSE}};
	GError *error = NULL;
	gsize n;

	for (guint64 r = 1; r <= MANY_ROOMS; r++) {
		for (guint c = 0; c < 2; c++) {
			g_assert_true (chat_hub_join_room (fixture->hub, clients[c], r, &error));
			member[c][r] = TRUE;
		}
	}
	assert_membership (fixture, clients, member);
	/* a leaves every other room: b moves to a's slot in each */
	for (guint64 r = 1; r <= MANY_ROOMS; r += 2) {
		g_assert_true (chat_hub_leave_room (fixture->hub, clients[0], r, &error));
		member[0][r] = FALSE;
	}
	/* b leaves in a scattered order, from the middle of its array */
	for (guint i = 0; i < MANY_ROOMS; i += 3) {
		guint64 r = (guint64) i * 37 % MANY_ROOMS + 1;

		g_assert_true (chat_hub_leave_room (fixture->hub, clients[1], r, &error));
		member[1][r] = FALSE;
	}
	assert_membership (fixture, clients, member);
	/* a leaves all but a few, then joins some again */
	for (guint64 r = 2; r <= MANY_ROOMS - 10; r += 2) {
		g_assert_true (chat_hub_leave_room (fixture->hub, clients[0], r, &error));
		member[0][r] = FALSE;
	}
	assert_membership (fixture, clients, member);
	for (guint64 r = 1; r <= MANY_ROOMS; r += 5) {
		g_assert_true (chat_hub_join_room (fixture->hub, clients[0], r, &error));
		member[0][r] = TRUE;
	}
	assert_membership (fixture, clients, member);
	g_assert_no_error (error);

	/* b disconnects: it leaves each of its rooms once, and only those */
	g_signal_connect (fixture->hub, "room-left", G_CALLBACK (on_room_event), left);
	soup_websocket_connection_close (b->conn, 1000, NULL);
	chat_test_wait_until (client_is_closed, b, 5000);
	chat_test_wait_until (hub_has_one_client, fixture, 5000);
	g_signal_handlers_disconnect_by_data (fixture->hub, left);
	for (guint64 r = 1; r <= MANY_ROOMS; r++) {
		gboolean seen = FALSE;

		for (guint i = 0; i < left->len; i++)
			seen += g_array_index (left, guint64, i) == r;
		g_assert_cmpint (seen, ==, member[1][r]);
		member[1][r] = FALSE;
	}
	g_assert_null (chat_client_get_rooms (clients[1], &n));
	g_assert_cmpuint (n, ==, 0);
	assert_membership (fixture, clients, member);

	/* a leaves everything (its index goes) and joins past the threshold again */
	for (guint64 r = 1; r <= MANY_ROOMS; r++) {
		if (member[0][r])
			g_assert_true (chat_hub_leave_room (fixture->hub, clients[0], r, &error));
		member[0][r] = FALSE;
	}
	g_assert_null (chat_client_get_rooms (clients[0], &n));
	for (guint64 r = MANY_ROOMS; r > MANY_ROOMS - 40; r--) {
		g_assert_true (chat_hub_join_room (fixture->hub, clients[0], r, &error));
		member[0][r] = TRUE;
	}
	g_assert_no_error (error);
	assert_membership (fixture, clients, member);
}

static void
close_on_banned_word (ChatClient *client, ChatMessage *message, guint *seen)
{
	(*seen)++;
	if (g_strcmp0 (chat_message_get_content (message), "spam") == 0)
		chat_client_close (client, CHAT_CLOSE_CODE_POLICY_VIOLATION, "banned word");
}

static void
test_hub_message_received (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) spammer = client_connect (fixture, 1);
	g_autoptr (TestClient) reader = client_connect (fixture, 2);
	ChatClient *client = fixture->registered->pdata[0];
	guint seen = 0;

	g_signal_connect (client, "message-received", G_CALLBACK (close_on_banned_word), &seen);
	client_send (spammer, "{\"type\":\"message\",\"content\":\"fine\"}");
	client_send (spammer, "{\"type\":\"message\",\"content\":\"spam\"}");
	chat_test_wait_until (client_is_closed, spammer, 5000);
	g_assert_cmpuint (seen, ==, 2);
	g_assert_cmpuint (spammer->close_code, ==, 1008);
	g_assert_cmpstr (spammer->close_data, ==, "banned word");

	/* the reader got the first message only: the second was never routed */
	client_sync (reader);
	g_assert_cmpuint (reader->received->len, ==, 1);
	g_assert_cmpstr (chat_message_get_content (reader->received->pdata[0]), ==, "fine");
}

/* Many messages through the coalescing outbox, mixed with pings: complete and in order. */
static void
test_hub_ordering_under_flood (Fixture *fixture, gconstpointer data)
{
	const guint n_messages = 3000;
	g_autoptr (TestClient) publisher = NULL;
	g_autoptr (TestClient) a = NULL;
	g_autoptr (TestClient) b = NULL;
	TestClient *readers[2];

	/* far over any sensible rate limit */
	g_object_set (fixture->server, "messages-per-second", 0, NULL);
	publisher = client_connect (fixture, 1);
	readers[0] = a = client_connect (fixture, 2);
	readers[1] = b = client_connect (fixture, 3);

	client_send (publisher, "{\"type\":\"join\",\"room_id\":1}");
	client_send (a, "{\"type\":\"join\",\"room_id\":1}");
	client_send (b, "{\"type\":\"join\",\"room_id\":1}");
	client_sync (publisher);
	client_sync (a);
	client_sync (b);
	g_ptr_array_set_size (a->received, 0);
	g_ptr_array_set_size (b->received, 0);
	g_ptr_array_set_size (a->texts, 0);
	g_ptr_array_set_size (b->texts, 0);
	for (guint i = 0; i < n_messages; i++) {
		g_autofree char *json = g_strdup_printf (
		    "{\"type\":\"message\",\"room_id\":1,\"content\":\"%u %s\"}",
		    i,
		    i % 7 == 0 ? "a somewhat longer payload to vary the frame sizes a bit" : "x");

		client_send (publisher, json);
		if (i % 100 == 0)
			client_send (publisher, "{\"type\":\"ping\"}");
	}
	for (guint r = 0; r < G_N_ELEMENTS (readers); r++) {
		guint64 last_id = 0;

		client_wait_message (readers[r], n_messages - 1);
		for (guint i = 0; i < n_messages; i++) {
			ChatMessage *got = readers[r]->received->pdata[i];
			g_autofree char *prefix = g_strdup_printf ("%u ", i);

			g_assert_true (g_str_has_prefix (chat_message_get_content (got), prefix));
			g_assert_cmpuint (chat_message_get_id (got), >, last_id);
			last_id = chat_message_get_id (got);
		}
	}
}

static void
test_hub_close_all (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);

	g_assert_cmpuint (chat_hub_close_all (fixture->hub, CHAT_CLOSE_CODE_GOING_AWAY, "bye"),
			  ==,
			  2);
	chat_test_wait_until (client_is_closed, a, 5000);
	chat_test_wait_until (client_is_closed, b, 5000);
	g_assert_cmpuint (a->close_code, ==, 1001);
	g_assert_cmpuint (b->close_code, ==, 1001);
	chat_test_wait_until (hub_is_empty, fixture, 5000);
	g_assert_cmpuint (g_array_index (fixture->unregistered_codes, guint, 0), ==, 1001);
}

typedef struct {
	Fixture *fixture;
	guint64 room_id;
	guint n;
} RoomWait;

static gboolean
room_has_members (gpointer data)
{
	RoomWait *wait = data;

	return chat_hub_get_n_room_members (wait->fixture->hub, wait->room_id) == wait->n;
}

/* chat_hub_close_all() closes a batch now and the rest batch by batch, one per main loop
 * iteration; every client gets its 1001 and none a leave of another member (they all go). */
static void
test_hub_close_all_batches (Fixture *fixture, gconstpointer data)
{
	enum { N = 40 };
	TestClient *clients[N];
	RoomWait wait = {fixture, 9, N};
	g_autoptr (GPtrArray) registered = NULL;
	guint open = 0;

	for (guint i = 0; i < N; i++) {
		clients[i] = client_connect (fixture, 1 + i);
		client_send (clients[i], "{\"type\":\"join\",\"room_id\":9}");
	}
	chat_test_wait_until (room_has_members, &wait, 5000);
	for (guint i = 0; i < N; i++)
		client_sync (clients[i]);

	chat_hub_set_close_batch (fixture->hub, 3);
	registered = chat_hub_list_clients (fixture->hub);
	g_assert_cmpuint (chat_hub_close_all (fixture->hub, CHAT_CLOSE_CODE_GOING_AWAY, "bye"),
			  ==,
			  N);
	/* one batch at once, the others later */
	for (guint i = 0; i < registered->len; i++)
		open += chat_client_is_open (registered->pdata[i]);
	g_assert_cmpuint (open, ==, N - 3);

	for (guint i = 0; i < N; i++) {
		chat_test_wait_until (client_is_closed, clients[i], 5000);
		g_assert_cmpuint (clients[i]->close_code, ==, 1001);
		g_assert_cmpstr (clients[i]->close_data, ==, "bye");
		for (guint m = 0; m < clients[i]->received->len; m++)
			g_assert_cmpint (
			    chat_message_get_message_type (clients[i]->received->pdata[m]),
			    !=,
			    CHAT_MESSAGE_TYPE_LEAVE);
	}
	chat_test_wait_until (hub_is_empty, fixture, 5000);
	for (guint i = 0; i < N; i++)
		client_free (clients[i]);
}

static void
test_server_statistics (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) good = client_connect (fixture, 1);
	g_autoptr (TestClient) bad = client_connect_with_token (fixture, "not-a-token");
	g_autoptr (GVariant) stats = NULL;
	guint64 value = 0;

	g_assert_true (bad->failed);
	client_send (good, "{\"type\":\"message\",\"content\":\"x\"}");
	client_wait_message (good, 0);
	stats = g_variant_ref_sink (chat_server_get_statistics (fixture->server));
	g_assert_true (g_variant_lookup (stats, "connections-accepted", "t", &value));
	g_assert_cmpuint (value, ==, 1);
	g_assert_true (g_variant_lookup (stats, "refused-token", "t", &value));
	g_assert_cmpuint (value, ==, 1);
	g_assert_true (g_variant_lookup (stats, "messages-relayed", "t", &value));
	g_assert_cmpuint (value, ==, 1);
	g_assert_true (g_variant_lookup (stats, "bytes-sent", "t", &value));
	g_assert_cmpuint (value, >, 20);
	g_assert_cmpuint (chat_server_get_n_connections (fixture->server), ==, 1);
}

/* Whether a source of the server side of @client's connection is attached to the main
 * context: libsoup's input source has the connection as its user data. */
static gboolean
has_source_in_main_context (ChatClient *client)
{
	return g_main_context_find_source_by_user_data (NULL,
							chat_client_get_connection (client)) !=
	       NULL;
}

/* The main loop walks every source attached to it on every iteration: the connections' input
 * sources live in shard contexts instead, both as created with the connection and as
 * re-created by libsoup after each read, and reading through them still works. */
static void
test_server_input_sources_parked (Fixture *fixture, gconstpointer data)
{
	TestClient *clients[12];

	for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
		clients[i] = client_connect (fixture, i + 1);
	for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
		g_assert_false (has_source_in_main_context (fixture->registered->pdata[i]));
	for (guint round = 0; round < 3; round++) {
		for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
			client_send (clients[i], "{\"type\":\"join\",\"room_id\":7}");
		for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
			client_sync (clients[i]);
		for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
			g_assert_false (has_source_in_main_context (fixture->registered->pdata[i]));
	}
	/* every connection was read through its parked source */
	g_assert_cmpuint (chat_hub_get_n_room_members (fixture->hub, 7),
			  ==,
			  G_N_ELEMENTS (clients));
	for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
		client_free (clients[i]);
}

static gboolean
peer_closed (gpointer data)
{
	GSocket *socket = data;
	g_autoptr (GError) error = NULL;
	char byte;

	/* the server sends nothing before the request: only EOF (0) or a reset end this */
	return g_socket_receive (socket, &byte, 1, NULL, &error) >= 0 ||
	       !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
}

/* A server made under another thread-default context runs entirely there, timers included:
 * here the handshake deadline, which closes a connection that never sends its request. */
static void
test_server_own_context (void)
{
	g_autoptr (GMainContext) context = g_main_context_new ();
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatHub) hub = NULL;
	g_autoptr (ChatTokenVerifier) verifier = NULL;
	g_autoptr (ChatServer) server = NULL;
	g_autoptr (GSocketClient) socket_client = g_socket_client_new ();
	g_autoptr (GSocketConnection) connection = NULL;
	GSocket *socket;

	g_main_context_push_thread_default (context);
	hub = chat_hub_new ();
	verifier = chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, key, &error);
	g_assert_no_error (error);
	server = chat_server_new (hub, verifier);
	g_object_set (server, "handshake-timeout", 1, NULL);
	g_assert_true (chat_server_listen (server, "127.0.0.1", 0, &error));
	g_assert_no_error (error);
	connection = g_socket_client_connect_to_host (socket_client,
						      "127.0.0.1",
						      chat_server_get_port (server),
						      NULL,
						      &error);
	g_assert_no_error (error);
	socket = g_socket_connection_get_socket (connection);
	g_socket_set_blocking (socket, FALSE);
	chat_test_wait_until (peer_closed, socket, 5000);

	g_clear_object (&server);
	while (g_main_context_iteration (context, FALSE))
		;
	g_main_context_pop_thread_default (context);
}

static guint64
statistic (ChatServer *server, const char *key)
{
	g_autoptr (GVariant) stats = g_variant_ref_sink (chat_server_get_statistics (server));
	guint64 value = 0;

	g_assert_true (g_variant_lookup (stats, key, "t", &value));
	return value;
}

typedef struct {
	Fixture *fixture;
	guint count;
} UnregisteredCount;

static gboolean
unregistered_at_least (gpointer data)
{
	UnregisteredCount *wait = data;

	return wait->fixture->unregistered->len >= wait->count;
}

/* A peer that completes the upgrade and never reads: the server's statistics count it as a
 * slow consumer as soon as it is closed for that, while it drains, and after it is gone. */
static void
test_server_slow_consumer_closes (Fixture *fixture, gconstpointer data)
{
	g_autofree char *token = chat_test_token_for_user (5);
	g_autofree char *request =
	    g_strdup_printf ("GET /ws?access_token=%s HTTP/1.1\r\n"
			     "Host: 127.0.0.1\r\n"
			     "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n"
			     "\r\n",
			     token);
	g_autoptr (GSocketClient) socket_client = g_socket_client_new ();
	g_autoptr (GSocketConnection) connection = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autofree char *content = g_strnfill (16 * 1024, 'x');
	RegisteredCount registered = {fixture, 1};
	UnregisteredCount unregistered = {fixture, 1};
	ChatClient *client;
	guint sent = 0;

	g_object_set (fixture->server, "outbox-size", 64 * 1024, NULL);
	connection = g_socket_client_connect_to_host (socket_client,
						      "127.0.0.1",
						      chat_server_get_port (fixture->server),
						      NULL,
						      &error);
	g_assert_no_error (error);
	g_assert_true (
	    g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (connection)),
				       request,
				       strlen (request),
				       NULL,
				       NULL,
				       &error));
	g_assert_no_error (error);
	chat_test_wait_until (registered_at_least, &registered, 5000);
	client = fixture->registered->pdata[0];
	g_assert_cmpuint (statistic (fixture->server, "slow-consumer-closes"), ==, 0);

	/* the kernel's buffers take some first; nothing is read, so the outbox fills up */
	chat_message_set_content (message, content);
	while (chat_client_send (client, message)) {
		g_assert_cmpuint (++sent, <, 100000);
	}
	g_assert_false (chat_client_is_open (client));
	g_assert_cmpuint (statistic (fixture->server, "slow-consumer-closes"), ==, 1);
	g_assert_cmpuint (statistic (fixture->server, "idle-closes"), ==, 0);

	/* the peer goes away: the client is let go, and still counted */
	g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
	chat_test_wait_until (unregistered_at_least, &unregistered, 10000);
	chat_test_wait_until (hub_is_empty, fixture, 10000);
	g_assert_cmpuint (statistic (fixture->server, "slow-consumer-closes"), ==, 1);
}

/* A client that sends nothing for idle-timeout is closed with 1001 and counted. */
static void
test_server_idle_closes (Fixture *fixture, gconstpointer data)
{
	TestClient *idle;

	g_object_set (fixture->server, "idle-timeout", 1, NULL);
	idle = client_connect (fixture, 8);
	g_assert_cmpuint (statistic (fixture->server, "idle-closes"), ==, 0);
	chat_test_wait_until (client_is_closed, idle, 10000);
	g_assert_cmpuint (idle->close_code, ==, CHAT_CLOSE_CODE_GOING_AWAY);
	g_assert_cmpuint (statistic (fixture->server, "idle-closes"), ==, 1);
	g_assert_cmpuint (statistic (fixture->server, "slow-consumer-closes"), ==, 0);
	client_free (idle);
}

/* A token for @user_id expiring at @exp (0: no exp), with @rooms_json as its rooms claim. */
static char *
make_token (guint64 user_id, gint64 exp, const char *rooms_json)
{
	g_autoptr (GString) claims = g_string_new (NULL);

	g_string_printf (claims, "{\"user_id\":%" G_GUINT64_FORMAT, user_id);
	if (exp != 0)
		g_string_append_printf (claims, ",\"exp\":%" G_GINT64_FORMAT, exp);
	if (rooms_json != NULL)
		g_string_append_printf (claims, ",\"rooms\":%s", rooms_json);
	g_string_append_c (claims, '}');
	return chat_test_make_token (G_CHECKSUM_SHA256,
				     "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
				     claims->str,
				     CHAT_TEST_SECRET);
}

static TestClient *
client_connect_as (Fixture *fixture, guint64 user_id, gint64 exp, const char *rooms_json)
{
	g_autofree char *token = make_token (user_id, exp, rooms_json);
	RegisteredCount wait = {fixture, fixture->registered->len + 1};
	TestClient *client = client_connect_with_token (fixture, token);

	g_assert_false (client->failed);
	chat_test_wait_until (registered_at_least, &wait, 5000);
	return client;
}

static void
client_refresh (TestClient *client, const char *token)
{
	g_autofree char *json = g_strdup_printf ("{\"type\":\"refresh\",\"token\":\"%s\"}", token);

	client_send (client, json);
}

/* chat_hub_list_room_users() and the presence answer: distinct users, ascending. */
static void
test_hub_presence (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) high = client_connect (fixture, 9);
	g_autoptr (TestClient) low = client_connect (fixture, 4);
	g_autoptr (TestClient) low2 = client_connect (fixture, 4);
	g_autofree guint64 *users = NULL;
	ChatMessage *answer;
	gsize n = 99;

	g_assert_null (chat_hub_list_room_users (fixture->hub, 3, &n));
	g_assert_cmpuint (n, ==, 0);
	for (guint i = 0; i < fixture->registered->len; i++)
		g_assert_true (
		    chat_hub_join_room (fixture->hub, fixture->registered->pdata[i], 3, NULL));
	users = chat_hub_list_room_users (fixture->hub, 3, &n);
	g_assert_cmpuint (n, ==, 2);
	g_assert_cmpuint (users[0], ==, 4);
	g_assert_cmpuint (users[1], ==, 9);

	client_sync (low2);
	g_ptr_array_set_size (low2->received, 0);
	client_send (low2, "{\"type\":\"presence\",\"room_id\":3}");
	client_send (low2, "{\"type\":\"presence\",\"room_id\":4}");
	answer = client_wait_message (low2, 0);
	g_assert_cmpint (chat_message_get_message_type (answer), ==, CHAT_MESSAGE_TYPE_PRESENCE);
	g_assert_cmpuint (chat_message_get_room_id (answer), ==, 3);
	answer = client_wait_message (low2, 1);
	g_assert_cmpint (chat_message_get_message_type (answer), ==, CHAT_MESSAGE_TYPE_ERROR);
	g_assert_cmpstr (chat_message_get_code (answer), ==, "not_member");
}

/* A refresh moves the deadline and narrows the rooms; a refused one changes nothing. */
static void
test_hub_refresh (Fixture *fixture, gconstpointer data)
{
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;
	g_autoptr (TestClient) client = client_connect_as (fixture, 6, now + 100, "[1,2]");
	ChatClient *server_side = fixture->registered->pdata[0];
	gint64 leeway = chat_token_verifier_get_leeway (fixture->verifier);
	g_autofree char *other_user = make_token (7, now + 200, NULL);
	g_autofree char *narrower = make_token (6, now + 300, "[2]");
	g_autofree char *no_exp = make_token (6, 0, NULL);
	ChatMessage *answer;

	g_assert_cmpint (chat_client_get_token_deadline (server_side),
			 ==,
			 (now + 100 + leeway) * G_USEC_PER_SEC);
	g_assert_true (chat_hub_join_room (fixture->hub, server_side, 1, NULL));
	g_assert_true (chat_hub_join_room (fixture->hub, server_side, 2, NULL));
	client_sync (client);
	g_ptr_array_set_size (client->received, 0);

	client_refresh (client, other_user);
	answer = client_wait_message (client, 0);
	g_assert_cmpstr (chat_message_get_code (answer), ==, "invalid_token");
	g_assert_cmpint (chat_client_get_token_deadline (server_side),
			 ==,
			 (now + 100 + leeway) * G_USEC_PER_SEC);

	client_refresh (client, narrower);
	answer = client_wait_message (client, 1);
	g_assert_cmpint (chat_message_get_message_type (answer), ==, CHAT_MESSAGE_TYPE_REFRESH);
	answer = client_wait_message (client, 2);
	g_assert_cmpint (chat_message_get_message_type (answer), ==, CHAT_MESSAGE_TYPE_LEAVE);
	g_assert_cmpuint (chat_message_get_room_id (answer), ==, 1);
	g_assert_cmpint (chat_client_get_token_deadline (server_side),
			 ==,
			 (now + 300 + leeway) * G_USEC_PER_SEC);
	g_assert_false (chat_client_is_member (server_side, 1));
	g_assert_true (chat_client_is_member (server_side, 2));
	g_assert_false (chat_client_may_join (server_side, 1));

	client_refresh (client, no_exp);
	g_assert_cmpint (chat_message_get_message_type (client_wait_message (client, 3)),
			 ==,
			 CHAT_MESSAGE_TYPE_REFRESH);
	g_assert_cmpint (chat_client_get_token_deadline (server_side), ==, 0);
	g_assert_true (chat_client_may_join (server_side, 1));
}

/* A token's exp (plus a leeway of 0) passing closes the client with 4001. */
static void
test_server_token_expiry (Fixture *fixture, gconstpointer data)
{
	TestClient *client;

	chat_token_verifier_set_leeway (fixture->verifier, 0);
	client = client_connect_as (fixture, 5, g_get_real_time () / G_USEC_PER_SEC + 1, NULL);
	chat_test_wait_until (client_is_closed, client, 10000);
	g_assert_cmpuint (client->close_code, ==, CHAT_CLOSE_CODE_TOKEN_EXPIRED);
	g_assert_cmpstr (client->close_data, ==, "token expired");
	client_free (client);
}

static gboolean
set_flag (gpointer user_data)
{
	*(gboolean *) user_data = TRUE;
	return G_SOURCE_REMOVE;
}

static gboolean
flag_is_set (gpointer user_data)
{
	return *(gboolean *) user_data;
}

/* A server created without its hub or verifier (as Chat.Server() in a script) refuses to
 * listen with an error instead of crashing on the first client, and its heartbeat, statistics
 * and getters cope without them. */
/* ChatServer:trusted-proxies leaves out a network whose prefix length is not a decimal number
 * up to 128, with a warning: GLib 2.74 took "/4294967296", "/-32" and "/800" for /0, every
 * address (found by tests/fuzz/fuzz-config.c). */
static void
test_server_trusted_proxies_prefix (void)
{
	const char *const refused[] =
	    {"0.0.0.0/4294967296", "0.0.0.0/-32", "::/-1", "10.0.0.0/+8", "0.0.0.0/800", "::/129"};
	const char *const accepted[] = {"10.0.0.0/8", "::1", "fd00::/008", "::1/128", NULL};
	g_autoptr (ChatServer) server = g_object_new (CHAT_TYPE_SERVER, NULL);
	g_auto (GStrv) kept = NULL;

	for (guint i = 0; i < G_N_ELEMENTS (refused); i++) {
		const char *proxies[] = {refused[i], NULL};
		g_autofree char *pattern =
		    g_strdup_printf ("*Ignoring the trusted proxy*%s*", refused[i]);

		g_test_expect_message ("Chat", G_LOG_LEVEL_WARNING, pattern);
		g_object_set (server, "trusted-proxies", proxies, NULL);
		g_test_assert_expected_messages ();
	}
	/* the accepted ones, without a warning (one would fail the test) */
	g_object_set (server, "trusted-proxies", accepted, NULL);
	g_object_get (server, "trusted-proxies", &kept, NULL);
	g_assert_true (g_strv_equal ((const char *const *) kept, accepted));
}

static void
test_server_required_properties (void)
{
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatHub) hub = chat_hub_new ();
	g_autoptr (ChatTokenVerifier) verifier =
	    chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, key, NULL);
	g_autoptr (ChatServer) bare = NULL;
	g_autoptr (ChatServer) no_verifier = NULL;
	g_autoptr (ChatServer) no_hub = NULL;
	g_autoptr (ChatServer) complete = NULL;
	g_autoptr (GVariant) stats = NULL;
	gboolean ticked = FALSE;

	/* idle-timeout 1: the heartbeat would tick every 250 ms */
	bare = g_object_new (CHAT_TYPE_SERVER, "idle-timeout", 1, NULL);
	g_assert_null (chat_server_get_hub (bare));
	g_assert_null (chat_server_get_verifier (bare));
	g_assert_false (chat_server_listen (bare, "127.0.0.1", 0, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_assert_nonnull (strstr (error->message, "hub"));
	g_clear_error (&error);
	g_assert_cmpuint (chat_server_get_port (bare), ==, 0);
	g_assert_null (chat_server_get_uri (bare));
	stats = g_variant_ref_sink (chat_server_get_statistics (bare));
	g_assert_nonnull (stats);
	g_timeout_add (600, set_flag, &ticked);
	chat_test_wait_until (flag_is_set, &ticked, 5000);

	no_verifier = g_object_new (CHAT_TYPE_SERVER, "hub", hub, NULL);
	g_assert_false (chat_server_listen (no_verifier, "127.0.0.1", 0, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_assert_nonnull (strstr (error->message, "verifier"));
	g_clear_error (&error);

	no_hub = g_object_new (CHAT_TYPE_SERVER, "verifier", verifier, NULL);
	g_assert_false (chat_server_listen (no_hub, "127.0.0.1", 0, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_assert_nonnull (strstr (error->message, "hub"));
	g_clear_error (&error);

	/* both given as properties: listens, and stops listening */
	complete = g_object_new (CHAT_TYPE_SERVER, "hub", hub, "verifier", verifier, NULL);
	g_assert_true (chat_server_listen (complete, "127.0.0.1", 0, &error));
	g_assert_no_error (error);
	g_assert_cmpuint (chat_server_get_port (complete), !=, 0);
	chat_server_stop_listening (complete);
	g_assert_cmpuint (chat_server_get_port (complete), ==, 0);
}

/* ---- storage: offsets, recovery, history, a failing store -------------------------------- */

static JsonNode *
client_json (TestClient *client, guint index)
{
	g_autoptr (GError) error = NULL;
	JsonNode *node;

	client_wait_message (client, index);
	node = json_from_string (client->texts->pdata[index], &error);
	g_assert_no_error (error);
	return node;
}

static JsonObject *
node_object (JsonNode *node)
{
	return json_node_get_object (node);
}

/* Index of the first message of @type at @start or after, waiting for it. */
static guint
client_wait_type (TestClient *client, guint start, ChatMessageType type)
{
	for (guint i = start;; i++) {
		if (chat_message_get_message_type (client_wait_message (client, i)) == type)
			return i;
	}
}

/* Index of the room message with @offset, waiting for it. */
static guint
client_wait_offset (TestClient *client, guint64 offset)
{
	for (guint i = 0;; i++) {
		if (chat_message_get_offset (client_wait_message (client, i)) == offset)
			return i;
	}
}

/* Sends a join, with @since and @epoch when @epoch is not NULL; returns the ack's index. */
static guint
client_join (TestClient *client, guint64 room_id, guint64 since, const char *epoch)
{
	guint start = client->received->len;
	g_autofree char *json = NULL;

	if (epoch != NULL)
		json = g_strdup_printf ("{\"type\":\"join\",\"room_id\":%" G_GUINT64_FORMAT
					",\"since\":%" G_GUINT64_FORMAT ",\"epoch\":\"%s\"}",
					room_id,
					since,
					epoch);
	else
		json = g_strdup_printf ("{\"type\":\"join\",\"room_id\":%" G_GUINT64_FORMAT "}",
					room_id);
	client_send (client, json);
	return client_wait_type (client, start, CHAT_MESSAGE_TYPE_JOIN);
}

static void
client_leave (TestClient *client, guint64 room_id)
{
	guint start = client->received->len;
	g_autofree char *json =
	    g_strdup_printf ("{\"type\":\"leave\",\"room_id\":%" G_GUINT64_FORMAT "}", room_id);

	client_send (client, json);
	client_wait_type (client, start, CHAT_MESSAGE_TYPE_LEAVE);
}

static void
send_room_messages (TestClient *client, guint64 room_id, const char *tag, guint n)
{
	for (guint i = 0; i < n; i++) {
		g_autofree char *json =
		    g_strdup_printf ("{\"type\":\"message\",\"room_id\":%" G_GUINT64_FORMAT
				     ",\"content\":\"%s %u\"}",
				     room_id,
				     tag,
				     i);

		client_send (client, json);
	}
}

/* Drops the TCP connection without a close frame, as a phone losing its network would. */
static void
client_abort (Fixture *fixture, TestClient *client)
{
	guint n = chat_hub_get_n_clients (fixture->hub);

	g_io_stream_close (soup_websocket_connection_get_io_stream (client->conn), NULL, NULL);
	while (chat_hub_get_n_clients (fixture->hub) >= n)
		g_main_context_iteration (NULL, TRUE);
}

typedef struct {
	Fixture *fixture;
	guint count;
} HandledCount;

static gboolean
handled_at_least (gpointer data)
{
	HandledCount *wait = data;

	return wait->fixture->n_handled >= wait->count;
}

/* Waits until the server has read @n client messages more than @before (read, not answered:
 * answers may be waiting for the store). */
static void
wait_handled (Fixture *fixture, guint before, guint n)
{
	HandledCount wait = {fixture, before + n};

	chat_test_wait_until (handled_at_least, &wait, 10000);
}

/* Asserts that @client got, from @index on, the room messages with offsets @first..@last,
 * in order, with increasing ids. */
static void
assert_offsets (TestClient *client, guint index, guint64 first, guint64 last)
{
	guint64 last_id = 0;

	client_wait_message (client, index + (guint) (last - first));
	for (guint64 offset = first; offset <= last; offset++, index++) {
		ChatMessage *got = client->received->pdata[index];

		g_assert_cmpint (chat_message_get_message_type (got),
				 ==,
				 CHAT_MESSAGE_TYPE_MESSAGE);
		g_assert_cmpuint (chat_message_get_offset (got), ==, offset);
		g_assert_cmpuint (chat_message_get_id (got), >, last_id);
		last_id = chat_message_get_id (got);
	}
}

/* Sends a ping and asserts that @client has exactly @n messages before its pong: a ping is
 * answered in order, after everything asked before it, so nothing else was on its way. */
static void
assert_received_exactly (TestClient *client, guint n)
{
	guint pong;

	client_send (client, "{\"type\":\"ping\"}");
	pong = client_wait_type (client, 0, CHAT_MESSAGE_TYPE_PONG);
	g_assert_cmpuint (pong, ==, n);
	g_ptr_array_remove_index (client->received, pong);
	g_ptr_array_remove_index (client->texts, pong);
}

static void
test_store_offsets_and_ack (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	g_autoptr (JsonNode) ack = NULL;
	g_autoptr (JsonNode) b_ack = NULL;
	g_autoptr (JsonNode) event = NULL;
	g_autoptr (JsonNode) rejoin = NULL;
	g_autoptr (GList) members = NULL;
	const char *epoch;
	guint i;

	i = client_join (a, 3, 0, NULL);
	ack = client_json (a, i);
	g_assert_cmpint (json_object_get_int_member (node_object (ack), "offset"), ==, 0);
	epoch = json_object_get_string_member (node_object (ack), "epoch");
	g_assert_nonnull (epoch);
	g_assert_cmpuint (strlen (epoch), >, 0);
	g_assert_false (json_object_has_member (node_object (ack), "recovered"));

	send_room_messages (a, 3, "m", 3);
	assert_offsets (a, i + 1, 1, 3);

	/* the joiner is told where the room is; the others get the join event as before */
	i = client_join (b, 3, 0, NULL);
	b_ack = client_json (b, i);
	g_assert_cmpint (json_object_get_int_member (node_object (b_ack), "offset"), ==, 3);
	g_assert_cmpstr (json_object_get_string_member (node_object (b_ack), "epoch"), ==, epoch);
	event = client_json (a, client_wait_type (a, 4, CHAT_MESSAGE_TYPE_JOIN));
	members = json_object_get_members (node_object (event));
	g_assert_cmpuint (g_list_length (members), ==, 4); /* type, from, room_id, timestamp */

	/* joining again with the latest offset: recovered, nothing to replay, then live */
	i = client_join (b, 3, 3, epoch);
	rejoin = client_json (b, i);
	g_assert_true (json_object_get_boolean_member (node_object (rejoin), "recovered"));
	g_assert_cmpint (json_object_get_int_member (node_object (rejoin), "offset"), ==, 3);
	send_room_messages (a, 3, "live", 1);
	assert_offsets (b, i + 1, 4, 4);
	assert_received_exactly (b, i + 2);
}

/* A member drops its TCP connection, others send 200 messages, it comes back with since and
 * epoch: exactly those 200, in order, then live ones, none twice; then the same while others
 * keep sending during the recovery. */
static void
test_store_recovery (Fixture *fixture, gconstpointer data)
{
	ChatSqliteStore *sqlite =
	    fixture->store != NULL ? CHAT_SQLITE_STORE (fixture->store) : NULL;
	g_autoptr (TestClient) a = NULL;
	g_autoptr (TestClient) b = NULL;
	g_autoptr (TestClient) again = NULL;
	g_autoptr (TestClient) third = NULL;
	g_autoptr (JsonNode) ack = NULL;
	g_autoptr (JsonNode) ack2 = NULL;
	g_autoptr (JsonNode) ack3 = NULL;
	g_autofree char *epoch = NULL;
	g_autofree char *join = NULL;
	TestClient *c;
	guint i, handled;
	guint64 top;

	g_object_set (fixture->server, "messages-per-second", 0, NULL);
	a = client_connect (fixture, 1);
	b = client_connect (fixture, 2);
	c = client_connect (fixture, 3);
	client_join (a, 9, 0, NULL);
	client_join (b, 9, 0, NULL);
	i = client_join (c, 9, 0, NULL);
	ack = client_json (c, i);
	epoch = g_strdup (json_object_get_string_member (node_object (ack), "epoch"));
	send_room_messages (a, 9, "seen", 5);
	assert_offsets (c, i + 1, 1, 5);

	/* c's network goes; 200 messages are sent meanwhile */
	client_abort (fixture, c);
	client_free (c);
	send_room_messages (b, 9, "missed", 200);
	client_wait_offset (a, 205);

	/* back: exactly those 200, in order, then live ones, none twice */
	again = client_connect (fixture, 3);
	i = client_join (again, 9, 5, epoch);
	ack2 = client_json (again, i);
	g_assert_true (json_object_get_boolean_member (node_object (ack2), "recovered"));
	g_assert_cmpint (json_object_get_int_member (node_object (ack2), "offset"), ==, 205);
	assert_offsets (again, i + 1, 6, 205);
	g_assert_cmpstr (chat_message_get_content (again->received->pdata[i + 1]), ==, "missed 0");
	send_room_messages (a, 9, "live", 3);
	assert_offsets (again, i + 201, 206, 208);
	assert_received_exactly (again, i + 204);

	/* again, while the others keep sending during the recovery: with the SQLite store
	 * held, the read is queued between appends that are not stored yet */
	client_abort (fixture, again);
	send_room_messages (b, 9, "missed again", 100);
	client_wait_offset (a, 308);
	third = client_connect (fixture, 3);
	if (sqlite != NULL)
		chat_sqlite_store_pause (sqlite, TRUE);
	handled = fixture->n_handled;
	send_room_messages (b, 9, "before the read", 50);
	wait_handled (fixture, handled, 50);
	join = g_strdup_printf ("{\"type\":\"join\",\"room_id\":9,\"since\":208,\"epoch\":\"%s\"}",
				epoch);
	client_send (third, join);
	wait_handled (fixture, handled, 51);
	send_room_messages (b, 9, "after the read", 50);
	wait_handled (fixture, handled, 101);
	if (sqlite != NULL) {
		/* nothing is relayed before it is stored */
		g_assert_cmpuint (third->received->len, ==, 0);
		chat_sqlite_store_pause (sqlite, FALSE);
	}
	client_wait_offset (a, 408);
	ack3 = client_json (third, 0);
	g_assert_cmpint (chat_message_get_message_type (third->received->pdata[0]),
			 ==,
			 CHAT_MESSAGE_TYPE_JOIN);
	g_assert_true (json_object_get_boolean_member (node_object (ack3), "recovered"));
	top = (guint64) json_object_get_int_member (node_object (ack3), "offset");
	/* the 100 missed and the 50 before the read are in it; the 50 after it are live */
	if (sqlite != NULL)
		g_assert_cmpuint (top, ==, 358);
	g_assert_cmpuint (top, >=, 308);
	assert_offsets (third, 1, 209, 408);
	assert_received_exactly (third, 201);

	/* a member that joins again with since stops getting live messages until its read is
	 * in, or what is stored meanwhile would come twice */
	if (sqlite == NULL)
		return;
	i = a->received->len;
	chat_sqlite_store_pause (sqlite, TRUE);
	handled = fixture->n_handled;
	send_room_messages (b, 9, "in flight", 10);
	wait_handled (fixture, handled, 10);
	g_clear_pointer (&join, g_free);
	join = g_strdup_printf ("{\"type\":\"join\",\"room_id\":9,\"since\":408,\"epoch\":\"%s\"}",
				epoch);
	client_send (a, join);
	wait_handled (fixture, handled, 11);
	send_room_messages (b, 9, "after", 10);
	wait_handled (fixture, handled, 21);
	chat_sqlite_store_pause (sqlite, FALSE);
	handled = i;
	i = client_wait_type (a, i, CHAT_MESSAGE_TYPE_JOIN);
	assert_offsets (a, i + 1, 409, 428);
	assert_received_exactly (a, i + 21);
	/* and none of them came live before the ack */
	g_assert_cmpuint (i, ==, handled);
}

/* Joins that cannot recover: told so at once, and nothing is replayed. */
static void
test_store_not_recovered (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) c = client_connect (fixture, 3);
	g_autoptr (JsonNode) ack = NULL;
	g_autofree char *epoch = NULL;
	const struct {
		guint64 since;
		const char *epoch; /* NULL: the room's */
		gboolean recovered;
		guint64 offset; /* the ack's */
	} cases[] = {
	    {30, NULL, TRUE, 35},  /* within the ten kept: 31..35 follow */
	    {35, NULL, FALSE, 50}, /* 36..40 are no longer kept */
	    {50, "not-the-epoch", FALSE, 51},
	    {1000, NULL, FALSE, 52}, /* beyond the room's latest offset */
	};
	guint64 sent = 30;
	guint i;

	i = client_join (c, 4, 0, NULL);
	ack = client_json (c, i);
	epoch = g_strdup (json_object_get_string_member (node_object (ack), "epoch"));
	client_join (a, 4, 0, NULL);
	send_room_messages (a, 4, "m", 30);
	client_wait_offset (c, 30);

	for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
		g_autoptr (JsonNode) rejoin = NULL;
		guint64 more = cases[k].offset - sent;

		client_leave (c, 4);
		send_room_messages (a, 4, "gone", (guint) more);
		sent += more;
		client_wait_offset (a, sent);
		i = client_join (c, 4, cases[k].since, cases[k].epoch ? cases[k].epoch : epoch);
		rejoin = client_json (c, i);
		g_assert_cmpint (json_object_get_boolean_member (node_object (rejoin), "recovered"),
				 ==,
				 cases[k].recovered);
		g_assert_cmpint (json_object_get_int_member (node_object (rejoin), "offset"),
				 ==,
				 sent);
		if (cases[k].recovered)
			assert_offsets (c, i + 1, cases[k].since + 1, sent);
		/* what follows is live */
		send_room_messages (a, 4, "live", 1);
		sent++;
		assert_offsets (c, i + 1 + (cases[k].recovered ? 5 : 0), sent, sent);
		assert_received_exactly (c, c->received->len);
	}
	/* `since` without an epoch cannot be checked */
	client_send (c, "{\"type\":\"join\",\"room_id\":4,\"since\":3}");
	i = client_wait_type (c, c->received->len, CHAT_MESSAGE_TYPE_JOIN);
	{
		g_autoptr (JsonNode) rejoin = client_json (c, i);

		g_assert_false (json_object_get_boolean_member (node_object (rejoin), "recovered"));
	}
	assert_received_exactly (c, i + 1);
}

static void
on_history_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
	GAsyncResult **out = user_data;

	*out = g_object_ref (result);
}

static gboolean
result_arrived (gpointer data)
{
	return *(GAsyncResult **) data != NULL;
}

static GPtrArray *
read_history (ChatHub *hub, guint64 room_id, guint64 before, guint limit, char **epoch)
{
	g_autoptr (GAsyncResult) result = NULL;
	g_autoptr (GError) error = NULL;
	GPtrArray *messages;

	chat_hub_read_history_async (hub, room_id, before, limit, NULL, on_history_read, &result);
	chat_test_wait_until (result_arrived, &result, 10000);
	messages = chat_hub_read_history_finish (hub, result, epoch, &error);
	g_assert_no_error (error);
	return messages;
}

/* Sends a history request and checks its answer holds the frames as @client got them. */
static void
assert_history (TestClient *client, const char *request, const char *epoch, guint first, guint n)
{
	guint start = client->received->len, i;
	g_autoptr (JsonNode) answer = NULL;
	JsonArray *messages;

	client_send (client, request);
	i = client_wait_type (client, start, CHAT_MESSAGE_TYPE_HISTORY);
	answer = client_json (client, i);
	g_assert_cmpint (json_object_get_int_member (node_object (answer), "room_id"), ==, 6);
	g_assert_cmpstr (json_object_get_string_member (node_object (answer), "epoch"), ==, epoch);
	messages = json_object_get_array_member (node_object (answer), "messages");
	g_assert_cmpuint (json_array_get_length (messages), ==, n);
	for (guint k = 0; k < n; k++) {
		g_autofree char *stored =
		    json_to_string (json_array_get_element (messages, k), FALSE);
		guint index = client_wait_offset (client, first + k);

		/* the frame exactly as it was relayed */
		g_assert_cmpstr (stored, ==, client->texts->pdata[index]);
	}
	g_assert_true (strstr (client->texts->pdata[i], "\"messages\":[") != NULL);
}

static void
assert_refused (TestClient *client, const char *request, const char *code)
{
	guint start = client->received->len, i;

	client_send (client, request);
	i = client_wait_type (client, start, CHAT_MESSAGE_TYPE_ERROR);
	assert_error (client->received->pdata[i], code);
}

static void
test_store_history (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = NULL;
	g_autoptr (TestClient) b = NULL;
	g_autoptr (JsonNode) ack = NULL;
	g_autoptr (GPtrArray) messages = NULL;
	g_autoptr (GPtrArray) none = NULL;
	g_autofree char *api_epoch = NULL;
	g_autofree char *empty_epoch = NULL;
	const char *epoch;

	g_object_set (fixture->server, "messages-per-second", 0, NULL);
	a = client_connect (fixture, 1);
	b = client_connect (fixture, 2);
	ack = client_json (a, client_join (a, 6, 0, NULL));
	epoch = json_object_get_string_member (node_object (ack), "epoch");
	send_room_messages (a, 6, "h", 120);
	client_wait_offset (a, 120);

	assert_history (a, "{\"type\":\"history\",\"room_id\":6}", epoch, 71, 50);
	assert_history (a,
			"{\"type\":\"history\",\"room_id\":6,\"before\":21,\"limit\":5}",
			epoch,
			16,
			5);
	assert_history (a, "{\"type\":\"history\",\"room_id\":6,\"limit\":1000}", epoch, 21, 100);
	assert_history (a, "{\"type\":\"history\",\"room_id\":6,\"before\":1}", epoch, 1, 0);
	assert_history (a,
			"{\"type\":\"history\",\"room_id\":6,\"before\":3,\"limit\":9}",
			epoch,
			1,
			2);

	assert_refused (b, "{\"type\":\"history\",\"room_id\":6}", "not_member");
	assert_refused (a, "{\"type\":\"history\"}", "invalid_message");
	assert_refused (a, "{\"type\":\"history\",\"room_id\":6,\"limit\":0}", "invalid_message");
	assert_refused (a, "{\"type\":\"history\",\"room_id\":6,\"limit\":-1}", "invalid_message");
	assert_refused (a, "{\"type\":\"history\",\"room_id\":6,\"limit\":1.5}", "invalid_message");
	assert_refused (a, "{\"type\":\"history\",\"room_id\":6,\"before\":0}", "invalid_message");
	assert_refused (a,
			"{\"type\":\"history\",\"room_id\":6,\"before\":\"x\"}",
			"invalid_message");

	/* the same through the API, for scripts and the D-Bus service */
	messages = read_history (fixture->hub, 6, 0, 3, &api_epoch);
	g_assert_cmpstr (api_epoch, ==, epoch);
	g_assert_cmpuint (messages->len, ==, 3);
	for (guint k = 0; k < 3; k++) {
		ChatMessage *message = messages->pdata[k];
		g_autofree char *content = g_strdup_printf ("h %u", 117 + k);
		guint index = client_wait_offset (a, 118 + k);

		g_assert_cmpuint (chat_message_get_offset (message), ==, 118 + k);
		g_assert_cmpuint (chat_message_get_from (message), ==, 1);
		g_assert_cmpuint (chat_message_get_room_id (message), ==, 6);
		g_assert_cmpstr (chat_message_get_content (message), ==, content);
		g_assert_cmpuint (chat_message_get_id (message),
				  ==,
				  chat_message_get_id (a->received->pdata[index]));
	}
	g_clear_pointer (&messages, g_ptr_array_unref);
	messages = read_history (fixture->hub, 6, 0, 0, NULL);
	g_assert_cmpuint (messages->len, ==, 50);
	none = read_history (fixture->hub, 77, 0, 0, &empty_epoch);
	g_assert_cmpuint (none->len, ==, 0);
	g_assert_nonnull (empty_epoch);
}

/* A full disk: the sender is told, nothing is relayed, and once there is room again the
 * next message goes through with the next offset. */
static void
test_store_unavailable (Fixture *fixture, gconstpointer data)
{
	ChatSqliteStore *sqlite = CHAT_SQLITE_STORE (fixture->store);
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	g_autofree char *big = g_strnfill (20000, 'x');
	g_autofree char *json =
	    g_strdup_printf ("{\"type\":\"message\",\"room_id\":3,\"content\":\"%s\"}", big);
	guint i, b_seen;

	n_store_failed = n_store_recovered = 0;
	client_join (a, 3, 0, NULL);
	client_join (b, 3, 0, NULL);
	send_room_messages (a, 3, "one", 1);
	client_wait_offset (b, 1);
	b_seen = b->received->len;

	g_assert_cmpint (chat_sqlite_store_query (sqlite, "PRAGMA max_page_count = 1"), >, 1);
	i = a->received->len;
	for (guint k = 0; k < 3; k++)
		client_send (a, json);
	for (guint k = 0; k < 3; k++) {
		i = client_wait_type (a, i, CHAT_MESSAGE_TYPE_ERROR);
		assert_error (a->received->pdata[i], "unavailable");
		i++;
	}
	/* and a still works for everything else */
	assert_received_exactly (a, i);
	g_assert_cmpuint (n_store_failed, ==, 1);

	chat_sqlite_store_query (sqlite, "PRAGMA max_page_count = 1073741823");
	send_room_messages (a, 3, "two", 1);
	/* b got nothing of the three: the next it gets is offset 2 */
	assert_offsets (b, b_seen, 2, 2);
	assert_received_exactly (b, b_seen + 1);
	g_assert_cmpstr (chat_message_get_content (b->received->pdata[b_seen]), ==, "two 0");
	g_assert_cmpuint (n_store_recovered, ==, 1);
}

/* Direct messages being stored while a connection syncs or registers: each reaches it
 * once, in its stream's order, after the sync answer; a failing store relays none. */
static void
test_store_direct_in_flight (Fixture *fixture, gconstpointer data)
{
	ChatSqliteStore *sqlite = CHAT_SQLITE_STORE (fixture->store);
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	g_autoptr (TestClient) c = NULL;
	g_autoptr (JsonNode) ack = NULL;
	g_autofree char *sync = NULL;
	g_autofree char *big = g_strnfill (20000, 'x');
	g_autofree char *json =
	    g_strdup_printf ("{\"type\":\"message\",\"to\":2,\"content\":\"%s\"}", big);
	guint i, handled;

	client_send (b, "{\"type\":\"sync\"}");
	ack = client_json (b, client_wait_type (b, 0, CHAT_MESSAGE_TYPE_SYNC));
	g_assert_cmpint (json_object_get_int_member (node_object (ack), "offset"), ==, 0);
	sync = g_strdup_printf ("{\"type\":\"sync\",\"since\":0,\"epoch\":\"%s\"}",
				json_object_get_string_member (node_object (ack), "epoch"));
	g_ptr_array_set_size (b->received, 0);
	g_ptr_array_set_size (b->texts, 0);

	/* a sync asked while a DM to b is being stored: the answer, then the DM once */
	chat_sqlite_store_pause (sqlite, TRUE);
	handled = fixture->n_handled;
	client_send (a, "{\"type\":\"message\",\"to\":2,\"content\":\"in flight\"}");
	wait_handled (fixture, handled, 1);
	client_send (b, sync);
	wait_handled (fixture, handled, 2);
	/* a connection of user 3 registers while a DM to it is being stored */
	client_send (a, "{\"type\":\"message\",\"to\":3,\"content\":\"early\"}");
	wait_handled (fixture, handled, 3);
	c = client_connect (fixture, 3);
	client_send (a, "{\"type\":\"message\",\"to\":3,\"content\":\"late\"}");
	wait_handled (fixture, handled, 4);
	chat_sqlite_store_pause (sqlite, FALSE);

	g_assert_cmpint (chat_message_get_message_type (client_wait_message (b, 0)),
			 ==,
			 CHAT_MESSAGE_TYPE_SYNC);
	assert_offsets (b, 1, 1, 1);
	assert_received_exactly (b, 2);
	assert_offsets (c, 0, 1, 2);
	g_assert_cmpstr (chat_message_get_content (c->received->pdata[0]), ==, "early");
	assert_received_exactly (c, 2);

	/* a full disk: the sender is told, the recipient gets nothing */
	g_assert_cmpint (chat_sqlite_store_query (sqlite, "PRAGMA max_page_count = 1"), >, 1);
	i = a->received->len;
	client_send (a, json);
	i = client_wait_type (a, i, CHAT_MESSAGE_TYPE_ERROR);
	assert_error (a->received->pdata[i], "unavailable");
	assert_received_exactly (a, i + 1);
	assert_received_exactly (b, 2);
	chat_sqlite_store_query (sqlite, "PRAGMA max_page_count = 1073741823");
}

/* Hub-wide messages are not stored, and do not overtake a room or direct message that is. */
static void
test_store_ordering (Fixture *fixture, gconstpointer data)
{
	ChatSqliteStore *sqlite = CHAT_SQLITE_STORE (fixture->store);
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	guint handled, start, a_start;
	const char *expected[] = {"room", "direct", "everyone"};

	client_join (a, 5, 0, NULL);
	client_join (b, 5, 0, NULL);
	client_wait_type (a, 1, CHAT_MESSAGE_TYPE_JOIN); /* b's join event */
	start = b->received->len;
	a_start = a->received->len;
	chat_sqlite_store_pause (sqlite, TRUE);
	handled = fixture->n_handled;
	client_send (a, "{\"type\":\"message\",\"room_id\":5,\"content\":\"room\"}");
	client_send (a, "{\"type\":\"message\",\"to\":2,\"content\":\"direct\"}");
	client_send (a, "{\"type\":\"message\",\"content\":\"everyone\"}");
	/* a ping is a barrier: its pong waits for the three too */
	client_send (a, "{\"type\":\"ping\"}");
	wait_handled (fixture, handled, 4);
	g_assert_cmpuint (b->received->len, ==, start);
	g_assert_cmpuint (a->received->len, ==, a_start);
	chat_sqlite_store_pause (sqlite, FALSE);
	client_wait_message (a, a_start + 3);
	for (guint k = 0; k < 3; k++)
		g_assert_cmpstr (chat_message_get_content (a->received->pdata[a_start + k]),
				 ==,
				 expected[k]);
	g_assert_cmpint (chat_message_get_message_type (a->received->pdata[a_start + 3]),
			 ==,
			 CHAT_MESSAGE_TYPE_PONG);
	client_wait_message (b, start + 2);
	for (guint k = 0; k < 3; k++) {
		ChatMessage *got = b->received->pdata[start + k];

		g_assert_cmpstr (chat_message_get_content (got), ==, expected[k]);
		if (k > 0)
			g_assert_cmpuint (chat_message_get_id (got),
					  >,
					  chat_message_get_id (b->received->pdata[start + k - 1]));
	}
	g_assert_cmpuint (chat_message_get_offset (b->received->pdata[start]), ==, 1);
	/* the direct message is stored too, first in b's own stream */
	g_assert_cmpuint (chat_message_get_offset (b->received->pdata[start + 1]), ==, 1);
	g_assert_cmpuint (chat_message_get_offset (b->received->pdata[start + 2]), ==, 0);
}

/* Joins and leaves take their turn behind messages still being stored: a leaver gets what was
 * sent before its leave, a joiner nothing sent before its join, and everyone sees the events
 * in that order. */
static void
test_store_membership_order (Fixture *fixture, gconstpointer data)
{
	ChatSqliteStore *sqlite = CHAT_SQLITE_STORE (fixture->store);
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (TestClient) b = client_connect (fixture, 2);
	g_autoptr (TestClient) c = client_connect (fixture, 3);
	guint a_start, b_start, handled;

	client_join (a, 8, 0, NULL);
	client_join (b, 8, 0, NULL);
	client_wait_type (a, 1, CHAT_MESSAGE_TYPE_JOIN);
	a_start = a->received->len;
	b_start = b->received->len;
	chat_sqlite_store_pause (sqlite, TRUE);
	handled = fixture->n_handled;
	client_send (a, "{\"type\":\"message\",\"room_id\":8,\"content\":\"before\"}");
	wait_handled (fixture, handled, 1);
	client_send (b, "{\"type\":\"leave\",\"room_id\":8}");
	wait_handled (fixture, handled, 2);
	client_send (c, "{\"type\":\"join\",\"room_id\":8}");
	wait_handled (fixture, handled, 3);
	/* c may send to the room at once, b no longer */
	client_send (c, "{\"type\":\"message\",\"room_id\":8,\"content\":\"after\"}");
	client_send (b, "{\"type\":\"message\",\"room_id\":8,\"content\":\"late\"}");
	wait_handled (fixture, handled, 5);
	g_assert_cmpuint (a->received->len, ==, a_start);
	g_assert_cmpuint (c->received->len, ==, 0);
	chat_sqlite_store_pause (sqlite, FALSE);

	/* a: the message, b's leave, c's join, c's message */
	client_wait_message (a, a_start + 3);
	g_assert_cmpstr (chat_message_get_content (a->received->pdata[a_start]), ==, "before");
	g_assert_cmpint (chat_message_get_message_type (a->received->pdata[a_start + 1]),
			 ==,
			 CHAT_MESSAGE_TYPE_LEAVE);
	g_assert_cmpuint (chat_message_get_from (a->received->pdata[a_start + 1]), ==, 2);
	g_assert_cmpint (chat_message_get_message_type (a->received->pdata[a_start + 2]),
			 ==,
			 CHAT_MESSAGE_TYPE_JOIN);
	g_assert_cmpuint (chat_message_get_from (a->received->pdata[a_start + 2]), ==, 3);
	g_assert_cmpstr (chat_message_get_content (a->received->pdata[a_start + 3]), ==, "after");
	assert_received_exactly (a, a_start + 4);
	/* b: the message sent before its leave, its ack, then not_member */
	client_wait_message (b, b_start + 2);
	g_assert_cmpstr (chat_message_get_content (b->received->pdata[b_start]), ==, "before");
	g_assert_cmpint (chat_message_get_message_type (b->received->pdata[b_start + 1]),
			 ==,
			 CHAT_MESSAGE_TYPE_LEAVE);
	assert_error (b->received->pdata[b_start + 2], "not_member");
	assert_received_exactly (b, b_start + 3);
	/* c: its ack, then only what came after it */
	client_wait_message (c, 1);
	g_assert_cmpint (chat_message_get_message_type (c->received->pdata[0]),
			 ==,
			 CHAT_MESSAGE_TYPE_JOIN);
	g_assert_cmpstr (chat_message_get_content (c->received->pdata[1]), ==, "after");
	g_assert_cmpuint (chat_message_get_offset (c->received->pdata[1]), ==, 2);
	assert_received_exactly (c, 2);
}

/* Ids go on from the store's last one: a hub on the same file never reuses one. */
static void
test_store_ids_continue (Fixture *fixture, gconstpointer data)
{
	g_autoptr (TestClient) a = client_connect (fixture, 1);
	g_autoptr (ChatHub) next = NULL;
	guint64 last;
	guint i;

	client_join (a, 2, 0, NULL);
	send_room_messages (a, 2, "m", 3);
	i = client_wait_offset (a, 3);
	last = chat_message_get_id (a->received->pdata[i]);
	next = g_object_new (CHAT_TYPE_HUB, "store", fixture->store, NULL);
	g_assert_true (chat_hub_get_n_clients (next) == 0);
	{
		g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
		g_autoptr (GError) error = NULL;

		chat_message_set_content (message, "after");
		chat_hub_send_to_all (next, message, &error);
		g_assert_no_error (error);
		g_assert_cmpuint (chat_message_get_id (message), ==, last + 1);
	}
}

int
main (int argc, char **argv)
{
	struct rlimit limit;

	g_test_init (&argc, &argv, NULL);
	g_log_set_writer_func (test_log_writer, NULL, NULL);
	/* a server makes one shard context per 128 descriptors allowed: with 512, four, so the
	 * tests' connections share them */
	if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_max >= 512) {
		limit.rlim_cur = 512;
		g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &limit), ==, 0);
	}

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
	ADD ("/chat/hub/register-signals", test_hub_register_signals);
	ADD ("/chat/hub/send-to-all", test_hub_send_to_all);
	ADD ("/chat/hub/rooms-api", test_hub_rooms_api);
	ADD ("/chat/hub/send-to-user", test_hub_send_to_user);
	ADD ("/chat/hub/send", test_hub_send);
	ADD ("/chat/hub/message-received", test_hub_message_received);
	ADD ("/chat/hub/ordering-under-flood", test_hub_ordering_under_flood);
	ADD ("/chat/hub/close-all", test_hub_close_all);
	ADD ("/chat/hub/close-all-batches", test_hub_close_all_batches);
	ADD ("/chat/hub/rate-limit", test_hub_rate_limit);
	ADD ("/chat/hub/room-limit", test_hub_room_limit);
	ADD ("/chat/hub/many-rooms", test_hub_many_rooms);
	ADD ("/chat/hub/presence", test_hub_presence);
	ADD ("/chat/hub/refresh", test_hub_refresh);
	ADD ("/chat/server/statistics", test_server_statistics);
	ADD ("/chat/server/slow-consumer-closes", test_server_slow_consumer_closes);
	ADD ("/chat/server/idle-closes", test_server_idle_closes);
	ADD ("/chat/server/token-expiry", test_server_token_expiry);
	ADD ("/chat/server/input-sources-parked", test_server_input_sources_parked);
#undef ADD
#define ADD_WITH(path, setup, func) g_test_add (path, Fixture, NULL, setup, func, fixture_teardown)
	ADD_WITH ("/chat/hub/store/offsets-and-ack", fixture_setup, test_store_offsets_and_ack);
	ADD_WITH ("/chat/hub/store/recovery", fixture_setup, test_store_recovery);
	ADD_WITH ("/chat/hub/delivered-once", fixture_setup, test_hub_delivered_once);
	ADD_WITH ("/chat/hub/disconnect-in-order", fixture_setup, test_hub_disconnect_in_order);
	ADD_WITH ("/chat/hub/delivered-once-own-context",
		  fixture_setup_own_context,
		  test_hub_delivered_once);
	ADD_WITH ("/chat/hub/store/recovery-sqlite", fixture_setup_sqlite, test_store_recovery);
	ADD_WITH ("/chat/hub/store/not-recovered",
		  fixture_setup_small_history,
		  test_store_not_recovered);
	ADD_WITH ("/chat/hub/store/history", fixture_setup, test_store_history);
	ADD_WITH ("/chat/hub/store/history-sqlite", fixture_setup_sqlite, test_store_history);
	ADD_WITH ("/chat/hub/store/unavailable", fixture_setup_sqlite, test_store_unavailable);
	ADD_WITH ("/chat/hub/store/ordering", fixture_setup_sqlite, test_store_ordering);
	ADD_WITH ("/chat/hub/store/direct-in-flight",
		  fixture_setup_sqlite,
		  test_store_direct_in_flight);
	ADD_WITH ("/chat/hub/store/membership-order",
		  fixture_setup_sqlite,
		  test_store_membership_order);
	ADD_WITH ("/chat/hub/store/ids-continue", fixture_setup_sqlite, test_store_ids_continue);
#undef ADD_WITH
	g_test_add_func ("/chat/server/own-context", test_server_own_context);
	g_test_add_func ("/chat/server/required-properties", test_server_required_properties);
	g_test_add_func ("/chat/server/trusted-proxies-prefix", test_server_trusted_proxies_prefix);
	return g_test_run ();
}
