/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>

#include <string.h>

#include "chat-client-private.h"
#include "chat-frame-private.h"
#include "chat-hub-private.h"
#include "chat-i18n-private.h"
#include "chat-limit-extension-private.h"
#include "chat-message-private.h"

/**
 * SECTION:chat-client
 * @title: ChatClient
 * @short_description: one WebSocket connection
 *
 * A #ChatClient is one authenticated WebSocket connection: a unique id, the user id its token
 * carried, the rooms it joined and its outbox, the bounded queue of bytes waiting for the
 * socket. Clients are created by #ChatServer and registered with a #ChatHub, which routes
 * their messages; a client is unregistered when #ChatClient::closed fires.
 *
 * A client made any other way (`Chat.Client()` in a script) has no connection: it is never
 * open, chat_client_send() refuses, chat_client_close() does nothing and its counters are 0.
 */

/**
 * ChatClient:
 *
 * One WebSocket connection. All its fields are private.
 *
 * Since: 1.0
 */

/* The client's state; the hub keeps its routing back-indexes here (hub, hub_slot, the rooms'
 * slots) through the accessors in chat-client-private.h. */
struct _ChatClient {
	GObject parent_instance;

	char id[24];
	guint64 user_id;
	gint64 connected_since; /* unix seconds */
	char *remote_address;
	SoupWebsocketConnection *conn; /* owned until the client is finalized */
	ChatOutbox *outbox;	       /* owned */
	GArray *allowed_rooms;	       /* (nullable): the token's rooms claim */
	ChatTokenVerifier *verifier;   /* (nullable) (owned): checks a `refresh` */
	gint64 token_deadline;	       /* real time, µs: exp + leeway; 0: none */
	gsize outbox_size;	       /* the most bytes that may wait in the outbox */
	gint64 last_rx;		       /* monotonic, µs: last data frame or pong */
	gint64 last_ping;	       /* monotonic, µs */
	guint16 close_code;
	gboolean closed;
	gboolean slow_consumer; /* closed by chat_client_push_frame() for it */
	gboolean input_done;	/* a close is queued behind the hub's pending relays */
	guint n_steps;		/* requests of this client the hub has not finished */
	gboolean input_held;	/* chat_client_hold_input(): reads nothing until released */

	/* The rate limit, a token bucket kept as one timestamp (GCRA): each message moves
	 * rate_tat on by rate_interval; a message is refused while rate_tat is more than
	 * rate_tolerance ahead of now. rate_interval 0: no limit. */
	gint64 rate_interval;  /* µs per message */
	gint64 rate_tolerance; /* µs: (burst - 1) messages */
	gint64 rate_tat;       /* monotonic µs */
	gint64 refused_since;  /* monotonic µs: start of the current window of refusals */
	guint rate;	       /* messages per second, for the error text */
	guint rate_burst;
	guint n_refused; /* in the current window */
	guint max_rooms; /* 0: no limit */

	ChatClientRoom *rooms; /* (nullable) */
	guint n_rooms;
	guint rooms_capacity;
	/* (nullable): room id -> ChatClientRoomIndex, built once a client has many rooms, so
	 * finding a room stays O(1); the few rooms of most clients are found by a short scan */
	GHashTable *room_index;

	ChatHub *hub; /* (nullable) (unowned): set while registered */
	ChatClientClosedFunc closed_func;
	gpointer closed_data;
	guint hub_slot;
};

G_DEFINE_FINAL_TYPE (ChatClient, chat_client, G_TYPE_OBJECT)

/* Requests of one client the hub may hold (being stored, say) before the client's reading
 * pauses, and the level at which it resumes: however fast a client sends, what it has waiting
 * in the hub's ordered pipeline is bounded, and everyone else's requests queue behind at most
 * that many of its own. */
#define MAX_STEPS 256
#define RESUME_STEPS (MAX_STEPS / 4)

G_DEFINE_ENUM_TYPE (ChatCloseCode,
		    chat_close_code,
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_NORMAL, "normal"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_GOING_AWAY, "going-away"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_UNSUPPORTED_DATA, "unsupported-data"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_NO_STATUS, "no-status"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_ABNORMAL, "abnormal"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_POLICY_VIOLATION, "policy-violation"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_TOO_BIG, "too-big"),
		    G_DEFINE_ENUM_VALUE (CHAT_CLOSE_CODE_TOKEN_EXPIRED, "token-expired"))

enum { PROP_0, PROP_ID, PROP_USER_ID, PROP_CONNECTED_SINCE, PROP_REMOTE_ADDRESS, N_PROPS };
static GParamSpec *props[N_PROPS];

enum { SIGNAL_MESSAGE_RECEIVED, SIGNAL_CLOSED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
chat_client_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatClient *self = CHAT_CLIENT (object);

	switch (prop_id) {
	case PROP_ID:
		g_value_set_string (value, self->id);
		break;
	case PROP_USER_ID:
		g_value_set_uint64 (value, self->user_id);
		break;
	case PROP_CONNECTED_SINCE:
		g_value_set_int64 (value, self->connected_since);
		break;
	case PROP_REMOTE_ADDRESS:
		g_value_set_string (value, self->remote_address);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
disconnect_connection (ChatClient *self)
{
	if (self->conn == NULL)
		return;
	/* our four handlers; no ids kept (32 bytes per connection) */
	g_signal_handlers_disconnect_by_data (self->conn, self);
}

static void
chat_client_dispose (GObject *object)
{
	ChatClient *self = CHAT_CLIENT (object);

	disconnect_connection (self);
	/* a client dropped while still open (e.g. by a script) must not leave a socket behind */
	if (self->conn != NULL &&
	    soup_websocket_connection_get_state (self->conn) == SOUP_WEBSOCKET_STATE_OPEN)
		soup_websocket_connection_close (self->conn, CHAT_CLOSE_CODE_GOING_AWAY, NULL);
	g_clear_object (&self->conn);
	G_OBJECT_CLASS (chat_client_parent_class)->dispose (object);
}

static void
chat_client_finalize (GObject *object)
{
	ChatClient *self = CHAT_CLIENT (object);

	g_clear_object (&self->outbox);
	g_clear_pointer (&self->allowed_rooms, g_array_unref);
	g_clear_object (&self->verifier);
	chat_client_clear_rooms (self);
	g_free (self->remote_address);
	G_OBJECT_CLASS (chat_client_parent_class)->finalize (object);
}

static void
chat_client_class_init (ChatClientClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();

	object_class->get_property = chat_client_get_property;
	object_class->dispose = chat_client_dispose;
	object_class->finalize = chat_client_finalize;

	/**
	 * ChatClient:id:
	 *
	 * The unique id of this connection.
	 *
	 * Since: 1.0
	 */
	props[PROP_ID] = g_param_spec_string ("id",
					      NULL,
					      "The unique id of this connection",
					      NULL,
					      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatClient:user-id:
	 *
	 * The user id from the client's token. One user may have several connections.
	 *
	 * Since: 1.0
	 */
	props[PROP_USER_ID] = g_param_spec_uint64 ("user-id",
						   NULL,
						   "The user id from the client's token",
						   0,
						   G_MAXUINT64,
						   0,
						   G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatClient:connected-since:
	 *
	 * When the connection was upgraded, in Unix seconds.
	 *
	 * Since: 1.0
	 */
	props[PROP_CONNECTED_SINCE] =
	    g_param_spec_int64 ("connected-since",
				NULL,
				"When the connection was upgraded, in Unix seconds",
				0,
				G_MAXINT64,
				0,
				G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatClient:remote-address:
	 *
	 * The peer's IP address, or %NULL if unknown.
	 *
	 * Since: 1.0
	 */
	props[PROP_REMOTE_ADDRESS] =
	    g_param_spec_string ("remote-address",
				 NULL,
				 "The peer's IP address, if known",
				 NULL,
				 G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties (object_class, N_PROPS, props);

	/**
	 * ChatClient::message-received:
	 * @self: the #ChatClient
	 * @message: the parsed message
	 *
	 * Emitted for every valid message the client sends, before the hub routes it. A handler
	 * may close the client (chat_client_close()); the message is then not routed.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_MESSAGE_RECEIVED] = g_signal_new ("message-received",
							 G_TYPE_FROM_CLASS (klass),
							 G_SIGNAL_RUN_LAST,
							 0,
							 NULL,
							 NULL,
							 NULL,
							 G_TYPE_NONE,
							 1,
							 CHAT_TYPE_MESSAGE);
	/**
	 * ChatClient::closed:
	 * @self: the #ChatClient
	 * @code: the close code: the one chathub sent, else the peer's, else 1006
	 *
	 * Emitted once, when the connection is gone and its socket closed.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_CLOSED] = g_signal_new ("closed",
					       G_TYPE_FROM_CLASS (klass),
					       G_SIGNAL_RUN_LAST,
					       0,
					       NULL,
					       NULL,
					       NULL,
					       G_TYPE_NONE,
					       1,
					       G_TYPE_UINT);
}

static void
chat_client_init (ChatClient *self)
{
}

static gboolean
client_is_open (ChatClient *self)
{
	/* no connection: made without the server, by a binding's bare constructor */
	return !self->closed && self->conn != NULL &&
	       soup_websocket_connection_get_state (self->conn) == SOUP_WEBSOCKET_STATE_OPEN &&
	       chat_outbox_can_send (self->outbox);
}

static void
client_close (ChatClient *self, guint16 code, const char *reason)
{
	if (!client_is_open (self))
		return;
	if (self->close_code == 0)
		self->close_code = code;
	soup_websocket_connection_close (self->conn, code, reason);
}

/* Refused messages are counted over windows of this length, from the first refusal. */
#define RATE_WINDOW (10 * G_USEC_PER_SEC)

/* Takes a token from the bucket, if there is one. */
static gboolean
rate_admit (ChatClient *self, gint64 now)
{
	gint64 tat;

	if (self->rate_interval == 0)
		return TRUE;
	tat = MAX (self->rate_tat, now);
	if (tat - now > self->rate_tolerance)
		return FALSE;
	self->rate_tat = tat + self->rate_interval;
	return TRUE;
}

/* A message over the rate: an error for the first few, then the connection is closed, so a
 * client that ignores the errors cannot keep the loop busy answering them. */
static void
answer_over_rate (ChatClient *self, gint64 now)
{
	g_autofree char *text = NULL;

	if (self->n_refused == 0 || now - self->refused_since > RATE_WINDOW) {
		self->refused_since = now;
		self->n_refused = 0;
	}
	if (self->hub != NULL)
		chat_hub_get_counters (self->hub)->rate_limited++;
	if (++self->n_refused > self->rate_burst) {
		if (self->hub != NULL)
			chat_hub_get_counters (self->hub)->rate_limit_closes++;
		g_message (_ ("Closing client %s (user %" PRIu64 "): over the rate limit"),
			   self->id,
			   self->user_id);
		/* after the relays and answers of what it sent before; nothing more is read */
		self->input_done = TRUE;
		if (self->hub != NULL)
			chat_hub_close_in_order (self->hub,
						 self,
						 CHAT_CLOSE_CODE_POLICY_VIOLATION,
						 "rate limit");
		else
			client_close (self, CHAT_CLOSE_CODE_POLICY_VIOLATION, "rate limit");
		return;
	}
	text = g_strdup_printf ("Too many messages: at most %u per second, in bursts of %u",
				self->rate,
				self->rate_burst);
	chat_client_send_error (self, CHAT_ERROR_RATE_LIMITED, text);
}

static void
on_ws_message (SoupWebsocketConnection *conn, gint type, GBytes *bytes, ChatClient *self)
{
	g_autoptr (ChatMessage) message = NULL;
	g_autoptr (GError) error = NULL;
	gsize size;
	const char *text;

	/* libsoup 3.2 still delivers messages after it sent a close */
	if (!client_is_open (self) || self->input_done)
		return;
	/* the one clock read per message, shared by idle detection and the rate limit */
	self->last_rx = g_get_monotonic_time ();
	if (self->hub != NULL)
		chat_hub_get_counters (self->hub)->bytes_received += g_bytes_get_size (bytes);
	if (type != SOUP_WEBSOCKET_DATA_TEXT) {
		if (self->hub != NULL)
			chat_hub_get_counters (self->hub)->binary_closes++;
		client_close (self,
			      CHAT_CLOSE_CODE_UNSUPPORTED_DATA,
			      "binary frames are not supported");
		return;
	}
	text = g_bytes_get_data (bytes, &size);
	message = chat_message_parse (text, size, FALSE, &error);
	/* JSON pings are liveness checks and cost one small answer: never limited. Invalid
	 * messages count, or garbage would be a way around the limit. */
	if ((message == NULL ||
	     chat_message_get_message_type (message) != CHAT_MESSAGE_TYPE_PING) &&
	    !rate_admit (self, self->last_rx)) {
		answer_over_rate (self, self->last_rx);
		return;
	}
	if (message == NULL) {
		chat_client_send_error (self, error->code, error->message);
		return;
	}

	g_object_ref (self);
	g_signal_emit (self, signals[SIGNAL_MESSAGE_RECEIVED], 0, message);
	if (self->hub != NULL && client_is_open (self))
		chat_hub_handle_client_message (self->hub, self, message);
	g_object_unref (self);
}

/* SoupWebsocketConnection::message (gint type, GBytes *message) to on_ws_message() */
static void
marshal_ws_message (GClosure *closure,
		    GValue *return_value,
		    guint n_param_values,
		    const GValue *param_values,
		    gpointer invocation_hint,
		    gpointer marshal_data)
{
	g_assert (n_param_values == 3);
	on_ws_message (g_value_get_object (&param_values[0]),
		       g_value_get_int (&param_values[1]),
		       g_value_get_boxed (&param_values[2]),
		       closure->data);
}

static void
on_ws_pong (SoupWebsocketConnection *conn, GBytes *message, ChatClient *self)
{
	/* libsoup 3.2 passes a GByteArray as GBytes here: use it as an event only */
	self->last_rx = g_get_monotonic_time ();
}

static void
on_ws_error (SoupWebsocketConnection *conn, GError *error, ChatClient *self)
{
	g_debug ("client %s: %s", self->id, error->message);
	if (self->close_code == 0 && error->domain == SOUP_WEBSOCKET_ERROR)
		self->close_code = (guint16) error->code;
	/* the message limits of chat-limit-extension.c (and libsoup's own frame cap) */
	if (self->hub != NULL &&
	    g_error_matches (error, SOUP_WEBSOCKET_ERROR, SOUP_WEBSOCKET_CLOSE_TOO_BIG))
		chat_hub_get_counters (self->hub)->message_size_closes++;
	else if (self->hub != NULL && g_error_matches (error,
						       SOUP_WEBSOCKET_ERROR,
						       SOUP_WEBSOCKET_CLOSE_UNSUPPORTED_DATA))
		chat_hub_get_counters (self->hub)->binary_closes++;
	/* A frame over libsoup's hard per-frame cap makes it drop the connection without a close
	 * frame; send the 1009 ourselves so the peer learns why. */
	if (g_error_matches (error, SOUP_WEBSOCKET_ERROR, SOUP_WEBSOCKET_CLOSE_TOO_BIG) &&
	    !chat_limit_extension_has_refused (conn) && chat_outbox_can_send (self->outbox)) {
		/* close code 1009, big-endian, and the reason */
		static const char payload[] = "\x03\xf1message too big";
		g_autoptr (GBytes) frame = chat_frame_new (0x8, payload, sizeof payload - 1);

		chat_outbox_push (self->outbox, frame);
	}
}

static void
on_ws_closed (SoupWebsocketConnection *conn, ChatClient *self)
{
	guint16 code = self->close_code;

	if (code == 0)
		code = soup_websocket_connection_get_close_code (conn);
	if (code == 0)
		code = CHAT_CLOSE_CODE_ABNORMAL;
	self->close_code = code;
	self->closed = TRUE;
	disconnect_connection (self);
	g_debug ("client %s closed (%u)", self->id, code);

	g_object_ref (self);
	g_signal_emit (self, signals[SIGNAL_CLOSED], 0, (guint) code);
	if (self->hub != NULL)
		chat_hub_unregister_client (self->hub, self);
	if (self->closed_func != NULL)
		self->closed_func (self, self->closed_data);
	g_object_unref (self);
}

ChatClient *
chat_client_new (SoupWebsocketConnection *conn,
		 ChatOutbox *outbox,
		 guint64 user_id,
		 GArray *allowed_rooms,
		 const char *remote_address,
		 gsize outbox_size)
{
	static guint64 counter = 0;
	ChatClient *self = g_object_new (CHAT_TYPE_CLIENT, NULL);
	GClosure *closure;

	/* unique per process, unguessable across restarts */
	g_snprintf (self->id,
		    sizeof self->id,
		    "%08x%06" G_GINT64_MODIFIER "x",
		    g_random_int (),
		    ++counter);
	self->user_id = user_id;
	self->connected_since = g_get_real_time () / G_USEC_PER_SEC;
	self->remote_address = g_strdup (remote_address);
	self->conn = g_object_ref (conn);
	self->outbox = g_object_ref (outbox);
	self->allowed_rooms = allowed_rooms != NULL ? g_array_ref (allowed_rooms) : NULL;
	self->outbox_size = outbox_size;
	self->last_rx = self->last_ping = g_get_monotonic_time ();

	/* with a marshaller of its own: libsoup's signal has the generic one (libffi) */
	closure = g_cclosure_new (G_CALLBACK (on_ws_message), self, NULL);
	g_closure_set_marshal (closure, marshal_ws_message);
	g_signal_connect_closure (conn, "message", closure, FALSE);
	g_signal_connect (conn, "pong", G_CALLBACK (on_ws_pong), self);
	g_signal_connect (conn, "error", G_CALLBACK (on_ws_error), self);
	g_signal_connect (conn, "closed", G_CALLBACK (on_ws_closed), self);
	return self;
}

/* Limits from the server, for this connection. A rate of 0 or a burst of 0 means no rate
 * limit; max_rooms 0, no room limit. */
void
chat_client_set_limits (ChatClient *self,
			guint messages_per_second,
			guint message_burst,
			guint max_rooms)
{
	if (messages_per_second == 0 || message_burst == 0) {
		self->rate_interval = 0;
	} else {
		self->rate_interval = MAX (1, G_USEC_PER_SEC / messages_per_second);
		self->rate_tolerance = (gint64) (message_burst - 1) * self->rate_interval;
	}
	self->rate = messages_per_second;
	self->rate_burst = message_burst;
	self->max_rooms = max_rooms;
}

/* Queues a prebuilt frame. Over its outbox size the client is a slow consumer: what it has not
 * started to receive is dropped and it is closed with 1008; nobody else waits for it. */
gboolean
chat_client_push_frame (ChatClient *self, GBytes *frame)
{
	gsize size = g_bytes_get_size (frame);

	if (!client_is_open (self))
		return FALSE;
	/* A burst read in one go can queue more than the outbox size before the end-of-iteration
	 * flush: first give the kernel what it takes, and judge only what stays queued. */
	if (chat_outbox_get_pending (self->outbox) + size > self->outbox_size)
		chat_outbox_flush_now (self->outbox);
	if (chat_outbox_get_pending (self->outbox) + size > self->outbox_size) {
		g_message (_ ("Closing client %s (user %" PRIu64 "): slow consumer, "
			      "%zu bytes pending"),
			   self->id,
			   self->user_id,
			   chat_outbox_get_pending (self->outbox));
		self->slow_consumer = TRUE;
		chat_outbox_drop_unstarted (self->outbox);
		client_close (self, CHAT_CLOSE_CODE_POLICY_VIOLATION, "slow consumer");
		return FALSE;
	}
	return chat_outbox_push (self->outbox, frame);
}

void
chat_client_send_error (ChatClient *self, ChatError code, const char *text)
{
	g_autoptr (ChatMessage) error = chat_message_new (CHAT_MESSAGE_TYPE_ERROR);
	g_autoptr (GBytes) frame = NULL;

	chat_message_set_code (error, chat_error_get_wire_code (code));
	chat_message_set_content (error, text);
	chat_message_stamp (error, 0, 0);
	frame = chat_message_to_frame (error);
	/* in the order of the requests: after the echoes of messages still being stored */
	if (self->hub != NULL)
		chat_hub_push_in_order (self->hub, self, frame);
	else
		chat_client_push_frame (self, frame);
}

/* Pings the client or closes it if idle or its token expired; TRUE when it closed it for
 * idleness, so that the server, which reports the idle closes, counts them. @now is monotonic,
 * @real_now the real time (a token's exp is a date), both in µs. */
gboolean
chat_client_heartbeat (ChatClient *self,
		       gint64 now,
		       gint64 real_now,
		       gint64 ping_interval,
		       gint64 idle_timeout)
{
	if (!client_is_open (self))
		return FALSE;
	if (self->token_deadline != 0 && real_now >= self->token_deadline) {
		g_message (_ ("Closing client %s (user %" PRIu64 "): its token expired"),
			   self->id,
			   self->user_id);
		client_close (self, CHAT_CLOSE_CODE_TOKEN_EXPIRED, "token expired");
		return FALSE;
	}
	if (idle_timeout > 0 && now - self->last_rx > idle_timeout) {
		g_message (_ ("Closing client %s (user %" PRIu64 "): idle timeout"),
			   self->id,
			   self->user_id);
		client_close (self, CHAT_CLOSE_CODE_GOING_AWAY, "idle timeout");
		return TRUE;
	}
	if (ping_interval > 0 && now - self->last_ping >= ping_interval) {
		/* our own pings, from one timer for all clients instead of a source per client */
		/* one frame, shared by every client like any other */
		static gsize frame = 0;

		if (g_once_init_enter (&frame))
			g_once_init_leave (&frame, (gsize) chat_frame_new (0x9, NULL, 0));
		self->last_ping = now;
		chat_outbox_push_urgent (self->outbox, (GBytes *) frame);
	}
	return FALSE;
}

void
chat_client_set_token (ChatClient *self, ChatTokenVerifier *verifier, gint64 deadline)
{
	g_set_object (&self->verifier, verifier);
	self->token_deadline = deadline;
}

ChatTokenVerifier *
chat_client_get_verifier (ChatClient *self)
{
	return self->verifier;
}

gint64
chat_client_get_token_deadline (ChatClient *self)
{
	return self->token_deadline;
}

/* A `refresh` was accepted: its rooms claim (NULL: none, every room) and deadline replace the
 * old token's. Leaving the rooms no longer allowed is the hub's part. */
void
chat_client_refresh_token (ChatClient *self, GArray *allowed_rooms, gint64 deadline)
{
	g_clear_pointer (&self->allowed_rooms, g_array_unref);
	self->allowed_rooms = allowed_rooms != NULL ? g_array_ref (allowed_rooms) : NULL;
	self->token_deadline = deadline;
}

/* Whether the client was closed because it did not read (chat_client_push_frame()). */
gboolean
chat_client_is_slow_consumer (ChatClient *self)
{
	return self->slow_consumer;
}

/* The close code once the connection is closed, 0 before. */
guint16
chat_client_get_close_code (ChatClient *self)
{
	return self->closed ? self->close_code : 0;
}

void
chat_client_set_closed_func (ChatClient *self, ChatClientClosedFunc func, gpointer user_data)
{
	self->closed_func = func;
	self->closed_data = user_data;
}

/* Forgets the closed hook if it was set with @user_data (its owner is going away). */
void
chat_client_clear_closed_func (ChatClient *self, gpointer user_data)
{
	if (self->closed_data == user_data)
		chat_client_set_closed_func (self, NULL, NULL);
}

/* The server side of the WebSocket connection (transfer none). */
SoupWebsocketConnection *
chat_client_get_connection (ChatClient *self)
{
	return self->conn;
}

ChatHub *
chat_client_get_hub (ChatClient *self)
{
	return self->hub;
}

/* Registers (@hub non-NULL, at @slot of its client array) or unregisters the client. */
void
chat_client_set_hub (ChatClient *self, ChatHub *hub, guint slot)
{
	self->hub = hub;
	self->hub_slot = slot;
}

guint
chat_client_get_hub_slot (ChatClient *self)
{
	return self->hub_slot;
}

void
chat_client_set_hub_slot (ChatClient *self, guint slot)
{
	self->hub_slot = slot;
}

guint
chat_client_get_max_rooms (ChatClient *self)
{
	return self->max_rooms;
}

guint
chat_client_get_n_rooms (ChatClient *self)
{
	return self->n_rooms;
}

/* The room at @position (below chat_client_get_n_rooms()); a removal moves the last one. */
ChatClientRoom *
chat_client_get_room (ChatClient *self, guint position)
{
	g_assert (position < self->n_rooms);
	return &self->rooms[position];
}

/* Past this many rooms a client gets a hash index: a scan of up to 16 entries (four cache
 * lines) is as fast as hashing, and costs no allocation for the many clients with few rooms. */
#define ROOM_INDEX_MIN 16

/* An entry of the room index; the room id comes first, as g_int64_hash() reads it. */
typedef struct {
	guint64 room_id;
	guint position; /* in client->rooms */
} ChatClientRoomIndex;

static void
room_index_add (ChatClient *self, guint position)
{
	ChatClientRoomIndex *entry = g_new (ChatClientRoomIndex, 1);

	entry->room_id = self->rooms[position].room_id;
	entry->position = position;
	g_hash_table_add (self->room_index, entry);
}

static guint
room_position (ChatClient *self, guint64 room_id)
{
	if (self->room_index != NULL) {
		ChatClientRoomIndex *entry = g_hash_table_lookup (self->room_index, &room_id);

		return entry != NULL ? entry->position : G_MAXUINT;
	}
	for (guint i = 0; i < self->n_rooms; i++) {
		if (self->rooms[i].room_id == room_id)
			return i;
	}
	return G_MAXUINT;
}

ChatClientRoom *
chat_client_find_room (ChatClient *self, guint64 room_id)
{
	guint position = room_position (self, room_id);

	return position != G_MAXUINT ? &self->rooms[position] : NULL;
}

void
chat_client_add_room (ChatClient *self, guint64 room_id, guint slot)
{
	if (self->n_rooms == self->rooms_capacity) {
		self->rooms_capacity = MAX (4, self->rooms_capacity * 2);
		self->rooms = g_renew (ChatClientRoom, self->rooms, self->rooms_capacity);
	}
	self->rooms[self->n_rooms].room_id = room_id;
	self->rooms[self->n_rooms].slot = slot;
	self->n_rooms++;
	if (self->room_index != NULL) {
		room_index_add (self, self->n_rooms - 1);
	} else if (self->n_rooms > ROOM_INDEX_MIN) {
		/* the key is inside the value, so one pointer per entry */
		self->room_index =
		    g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, g_free);
		for (guint i = 0; i < self->n_rooms; i++)
			room_index_add (self, i);
	}
}

void
chat_client_remove_room (ChatClient *self, guint64 room_id)
{
	guint position = room_position (self, room_id);
	guint last = self->n_rooms - 1;

	if (position == G_MAXUINT)
		return;
	if (self->room_index != NULL)
		g_hash_table_remove (self->room_index, &room_id);
	if (position != last) {
		self->rooms[position] = self->rooms[last];
		if (self->room_index != NULL) {
			ChatClientRoomIndex *moved =
			    g_hash_table_lookup (self->room_index, &self->rooms[position].room_id);

			moved->position = position;
		}
	}
	self->n_rooms = last;
	/* a client that left its thousands of rooms should not keep their memory */
	if (self->n_rooms == 0)
		chat_client_clear_rooms (self);
}

/* Forgets every room at once, without leaving them (the hub is gone or the client is). */
void
chat_client_clear_rooms (ChatClient *self)
{
	g_clear_pointer (&self->room_index, g_hash_table_unref);
	g_clear_pointer (&self->rooms, g_free);
	self->n_rooms = self->rooms_capacity = 0;
}

/* Whether joining @room_id would take this client over its room limit. */
gboolean
chat_client_room_limit_reached (ChatClient *self, guint64 room_id)
{
	return self->max_rooms != 0 && self->n_rooms >= self->max_rooms &&
	       room_position (self, room_id) == G_MAXUINT;
}

/**
 * chat_client_get_id:
 * @self: a #ChatClient
 *
 * Gets the unique id of this connection.
 *
 * Returns: the id
 *
 * Since: 1.0
 */
const char *
chat_client_get_id (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), NULL);
	return self->id;
}

/**
 * chat_client_get_user_id:
 * @self: a #ChatClient
 *
 * Gets the user id from the client's token.
 *
 * Returns: the user id, greater than 0
 *
 * Since: 1.0
 */
guint64
chat_client_get_user_id (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), 0);
	return self->user_id;
}

/**
 * chat_client_get_connected_since:
 * @self: a #ChatClient
 *
 * Gets when the client connected.
 *
 * Returns: Unix seconds
 *
 * Since: 1.0
 */
gint64
chat_client_get_connected_since (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), 0);
	return self->connected_since;
}

/**
 * chat_client_get_remote_address:
 * @self: a #ChatClient
 *
 * Gets the peer's address.
 *
 * Returns: (nullable): the IP address, or %NULL if unknown
 *
 * Since: 1.0
 */
const char *
chat_client_get_remote_address (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), NULL);
	return self->remote_address;
}

/**
 * chat_client_get_rooms:
 * @self: a #ChatClient
 * @n_rooms: (out): return location for the number of rooms
 *
 * Gets the rooms this connection joined, in no particular order.
 *
 * Returns: (array length=n_rooms) (transfer full) (nullable): the room ids
 *
 * Since: 1.0
 */
guint64 *
chat_client_get_rooms (ChatClient *self, gsize *n_rooms)
{
	guint64 *rooms;

	g_return_val_if_fail (CHAT_IS_CLIENT (self), NULL);
	g_return_val_if_fail (n_rooms != NULL, NULL);

	*n_rooms = self->n_rooms;
	if (self->n_rooms == 0)
		return NULL;
	rooms = g_new (guint64, self->n_rooms);
	for (guint i = 0; i < self->n_rooms; i++)
		rooms[i] = self->rooms[i].room_id;
	return rooms;
}

/**
 * chat_client_is_member:
 * @self: a #ChatClient
 * @room_id: a room id
 *
 * Checks whether this connection joined @room_id.
 *
 * Returns: %TRUE if it is a member
 *
 * Since: 1.0
 */
gboolean
chat_client_is_member (ChatClient *self, guint64 room_id)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), FALSE);
	return chat_client_find_room (self, room_id) != NULL;
}

/**
 * chat_client_may_join:
 * @self: a #ChatClient
 * @room_id: a room id
 *
 * Checks the `rooms` claim of the client's token: without one every room is allowed.
 *
 * Returns: %TRUE if the client may join @room_id
 *
 * Since: 1.0
 */
gboolean
chat_client_may_join (ChatClient *self, guint64 room_id)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), FALSE);

	if (self->allowed_rooms == NULL)
		return TRUE;
	for (guint i = 0; i < self->allowed_rooms->len; i++) {
		if (g_array_index (self->allowed_rooms, guint64, i) == room_id)
			return TRUE;
	}
	return FALSE;
}

/**
 * chat_client_is_open:
 * @self: a #ChatClient
 *
 * Checks whether messages can still be sent to this client: it is connected and no close
 * has been started.
 *
 * Returns: %TRUE if open
 *
 * Since: 1.0
 */
gboolean
chat_client_is_open (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), FALSE);
	return client_is_open (self);
}

/**
 * chat_client_get_pending_bytes:
 * @self: a #ChatClient
 *
 * Gets how many bytes wait in this client's outbox, not yet taken by the kernel.
 *
 * Returns: bytes
 *
 * Since: 1.0
 */
gsize
chat_client_get_pending_bytes (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), 0);
	return self->outbox != NULL ? chat_outbox_get_pending (self->outbox) : 0;
}

/**
 * chat_client_get_bytes_sent:
 * @self: a #ChatClient
 *
 * Gets how many bytes were written to this client's socket.
 *
 * Returns: bytes
 *
 * Since: 1.0
 */
guint64
chat_client_get_bytes_sent (ChatClient *self)
{
	g_return_val_if_fail (CHAT_IS_CLIENT (self), 0);
	return self->outbox != NULL ? chat_outbox_get_bytes_sent (self->outbox) : 0;
}

/**
 * chat_client_send:
 * @self: a #ChatClient
 * @message: the message, sent as it is (no id or timestamp is assigned)
 *
 * Queues @message for this one connection. To relay a message the way the hub does (with an
 * id and a timestamp) use chat_hub_send_to_all() and friends.
 *
 * Returns: %TRUE if queued; %FALSE if the client is closing or over its outbox size
 *
 * Since: 1.0
 */
gboolean
chat_client_send (ChatClient *self, ChatMessage *message)
{
	g_autoptr (GBytes) frame = NULL;

	g_return_val_if_fail (CHAT_IS_CLIENT (self), FALSE);
	g_return_val_if_fail (CHAT_IS_MESSAGE (message), FALSE);

	frame = chat_message_to_frame (message);
	return chat_client_push_frame (self, frame);
}

/**
 * chat_client_close:
 * @self: a #ChatClient
 * @code: a WebSocket close code, such as %CHAT_CLOSE_CODE_POLICY_VIOLATION
 * @reason: (nullable): a short English reason for the peer (at most 123 bytes are sent)
 *
 * Starts closing the connection. #ChatClient::closed follows once the peer answered or a
 * few seconds passed. Does nothing if the client is already closing.
 *
 * Since: 1.0
 */
void
chat_client_close (ChatClient *self, guint16 code, const char *reason)
{
	g_return_if_fail (CHAT_IS_CLIENT (self));
	g_return_if_fail ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
			  (code >= 3000 && code <= 4999));

	client_close (self, code, reason);
}

void
chat_client_step_added (ChatClient *self)
{
	if (++self->n_steps == MAX_STEPS && self->outbox != NULL)
		chat_inbox_set_paused (chat_outbox_get_inbox (self->outbox), TRUE);
}

void
chat_client_step_done (ChatClient *self)
{
	g_assert (self->n_steps > 0);
	if (--self->n_steps == RESUME_STEPS && self->outbox != NULL && !self->input_held)
		chat_inbox_set_paused (chat_outbox_get_inbox (self->outbox), FALSE);
}

void
chat_client_hold_input (ChatClient *self, gboolean hold)
{
	self->input_held = hold;
	if (self->outbox != NULL)
		chat_inbox_set_paused (chat_outbox_get_inbox (self->outbox),
				       hold || self->n_steps >= MAX_STEPS);
}

guint
chat_client_get_n_steps (ChatClient *self)
{
	return self->n_steps;
}
