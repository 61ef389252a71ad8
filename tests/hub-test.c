/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatHub and ChatServer in one process: a real server on a loopback port and real libsoup
 * WebSocket clients, driving the public API and its signals.
 */

#include <libsoup/soup.h>
#include <string.h>
#include <sys/resource.h>

#include "chat-client-private.h"
#include "chat-test-utils.h"

typedef struct {
	SoupWebsocketConnection *conn;
	GPtrArray *received; /* ChatMessage* */
	gboolean failed;
	gboolean closed;
	gushort close_code;
	char *close_data;
} TestClient;

typedef struct {
	ChatHub *hub;
	ChatTokenVerifier *verifier;
	ChatServer *server;
	SoupSession *session;
	char *uri;
	GPtrArray *registered;	 /* ChatClient* */
	GPtrArray *unregistered; /* ChatClient* */
	GArray *unregistered_codes;
	GPtrArray *broadcasts; /* ChatMessage* */
} Fixture;

static void
on_registered (ChatHub *hub, ChatClient *client, Fixture *fixture)
{
	g_ptr_array_add (fixture->registered, g_object_ref (client));
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

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));
	g_autoptr (GError) error = NULL;

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

static gboolean
hub_is_empty (gpointer data)
{
	return chat_hub_get_n_clients (((Fixture *) data)->hub) == 0;
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
	g_assert_finalize_object (g_steal_pointer (&fixture->hub));
	g_free (fixture->uri);
	g_ptr_array_unref (fixture->registered);
	g_ptr_array_unref (fixture->unregistered);
	g_array_unref (fixture->unregistered_codes);
	g_ptr_array_unref (fixture->broadcasts);
	/* let deferred closes finish before the next test */
	while (g_main_context_iteration (NULL, FALSE))
		;
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
	g_assert_cmpuint (fixture->broadcasts->len, ==, 1);
	g_assert_true (fixture->broadcasts->pdata[0] == first);

	for (guint i = 0; i < 2; i++) {
		got = client_wait_message (i == 0 ? alice : bob, 0);
		g_assert_cmpstr (chat_message_get_content (got), ==, "from the service");
		g_assert_cmpuint (chat_message_get_from (got), ==, 0);
		g_assert_cmpuint (chat_message_get_id (got), ==, chat_message_get_id (first));
	}

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

int
main (int argc, char **argv)
{
	struct rlimit limit;

	g_test_init (&argc, &argv, NULL);
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
	ADD ("/chat/hub/message-received", test_hub_message_received);
	ADD ("/chat/hub/ordering-under-flood", test_hub_ordering_under_flood);
	ADD ("/chat/hub/close-all", test_hub_close_all);
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
	g_test_add_func ("/chat/server/own-context", test_server_own_context);
	g_test_add_func ("/chat/server/required-properties", test_server_required_properties);
	return g_test_run ();
}
