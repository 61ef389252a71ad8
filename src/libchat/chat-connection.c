/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>

#include <libsoup/soup.h>
#include <string.h>

#include "chat-connection.h"
#include "chat-error.h"
#include "chat-i18n-private.h"
#include "chat-message-private.h"
#include "chat-version.h"

/**
 * SECTION:chat-connection
 * @title: ChatConnection
 * @short_description: a client that stays connected and never loses a message
 *
 * A #ChatConnection is the client side of the chathub protocol (`docs/protocol.md`), on
 * libsoup: it connects to a server's `/ws` with a token, joins rooms, sends and receives room
 * and direct messages, and keeps doing so through dropped connections and restarted servers.
 *
 * **Reconnecting.** A close that is not final (a network error or a dropped TCP connection,
 * 1001, 1008 `slow consumer`, 1011, 1012, 1013, 4002, a refused connection, HTTP 429 or 503 on
 * the handshake) makes the connection wait and try again, in the state
 * %CHAT_CONNECTION_STATE_RECONNECTING. The n-th consecutive failed attempt (n = 0, 1, 2, …)
 * waits a uniformly random delay between 0 and min(#ChatConnection:backoff-max,
 * #ChatConnection:backoff-min × 2ⁿ) ("full jitter"; 500 ms and 30 s by default, at least the
 * `Retry-After` of a 429 or 503); the count starts again once a connection stayed open for
 * 10 seconds. Final closes end in %CHAT_CONNECTION_STATE_DISCONNECTED: chat_connection_close(),
 * 1000, 1003, 1009, 1008 for any other reason (a rate limit, an operator), 4001 `token
 * expired` (unless a new token was given since the one in use, then it reconnects at once),
 * and a handshake refused with HTTP 400, 401, 403 or 404 (a 401 after a new token was given is
 * tried again). #ChatConnection::closed says which, with its @final argument.
 *
 * **Recovery.** The connection remembers, for every room joined with chat_connection_join(),
 * the room's epoch and the offset of the last message it delivered, and the same for the
 * user's direct messages. On every reconnect it joins each room again with `since` and
 * `epoch` and sends `sync` for the direct messages, so the server replays what was missed.
 * A room message at or below the last offset delivered, and a direct message whose id was
 * already delivered, are dropped: #ChatConnection::message reports each message once and in
 * order, and none is skipped when the server could recover. When it could not (`recovered:
 * false`, say after a server with the memory store restarted), the connection fetches the
 * room's newest 50 messages and emits #ChatConnection::room-reloaded with them: the
 * application replaces its view of the room. Live messages continue after that, without a
 * gap or a double. For direct messages, #ChatConnection::dms-reloaded says the same.
 *
 * **Tokens.** If the token has an `exp` claim, the connection emits
 * #ChatConnection::token-expiring at 80 % of its lifetime (from `iat`, else from when it was
 * first used), or 30 seconds before `exp` if that is earlier. The handler, then or later,
 * calls chat_connection_set_token(); while connected the new token is sent as a `refresh`. A
 * refused refresh is reported by #ChatConnection::error-received (`invalid_token`) and the
 * old token's deadline stands; a refused token does not count as a new one (a 4001 that
 * follows is final). The newest token is always the one used to reconnect.
 *
 * **Errors.** An error frame carries no request id, but the server answers a connection's
 * frames in the order they were sent (`docs/protocol.md`, §3.2): the connection takes an error
 * as the answer to its oldest frame not yet answered. A history or presence request fails with
 * it (a #ChatError such as %CHAT_ERROR_NOT_MEMBER or %CHAT_ERROR_RATE_LIMITED; it is not also
 * emitted as #ChatConnection::error-received). A join refused with `forbidden` or
 * `limit_exceeded` is forgotten: the room is no longer in chat_connection_get_rooms() and is
 * not joined again on reconnects, and then #ChatConnection::error-received reports it. If the
 * history of a reload is refused, the room's live messages go on without the reload. Every
 * other error is reported by #ChatConnection::error-received. The echo of a message is told
 * from a message another device of the same user sends to the same place only by its order, so
 * in that race an error may be taken for the answer to the next frame.
 *
 * **Failed attempts.** #ChatConnection::attempt-failed reports every failed attempt to
 * connect that is tried again (a refused TCP connection, an unknown host, HTTP 503, a TLS
 * certificate that is not trusted: see #ChatConnection:tls-database, …), with the reason,
 * so that an application can show why it is reconnecting.
 *
 * Everything happens on the thread-default #GMainContext of the thread that created the
 * connection: its signals are emitted there and it must only be used from that thread.
 *
 * A small client in C:
 * |[<!-- language="C" -->
 * #include <chathub.h>
 *
 * static void
 * on_message (ChatConnection *conn, ChatMessage *message, gpointer user_data)
 * {
 *   g_print ("%" G_GUINT64_FORMAT ": %s\n",
 *            chat_message_get_from (message),
 *            chat_message_get_content (message));
 * }
 *
 * static void
 * on_state (ChatConnection *conn, GParamSpec *pspec, gpointer user_data)
 * {
 *   g_autoptr (GError) error = NULL;
 *
 *   if (chat_connection_get_state (conn) == CHAT_CONNECTION_STATE_CONNECTED &&
 *       !chat_connection_send_to_room (conn, 3, "hello", &error))
 *     g_printerr ("%s\n", error->message);
 * }
 *
 * int
 * main (int argc, char **argv)
 * {
 *   g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
 *   g_autoptr (ChatConnection) conn = NULL;
 *   g_autoptr (GError) error = NULL;
 *
 *   if (argc != 2)
 *     return 2;
 *   // the token, e.g. from "chathubctl token --user-id 1"
 *   conn = chat_connection_new ("ws://127.0.0.1:8080/ws", argv[1]);
 *   g_signal_connect (conn, "message", G_CALLBACK (on_message), NULL);
 *   g_signal_connect (conn, "notify::state", G_CALLBACK (on_state), NULL);
 *   chat_connection_join (conn, 3);
 *   if (!chat_connection_open (conn, &error)) {
 *     g_printerr ("%s\n", error->message);
 *     return 1;
 *   }
 *   g_main_loop_run (loop);
 *   return 0;
 * }
 * ]|
 *
 * The same from Python (`python3 chat.py TOKEN`):
 * |[<!-- language="Python" -->
 * import sys
 * import gi
 * gi.require_version("Chat", "1.0")
 * from gi.repository import Chat, GLib
 *
 * conn = Chat.Connection.new("ws://127.0.0.1:8080/ws", sys.argv[1])
 * conn.connect("message", lambda c, m: print(m.get_from(), m.get_content()))
 * conn.connect("attempt-failed", lambda c, error, ms: print("retrying:", error.message))
 * conn.join(3)
 * conn.open()
 * GLib.MainLoop().run()
 * ]|
 *
 * chat_connection_open() and chat_connection_close() are not called `connect` and
 * `disconnect`, which would hide the signal methods of GObject in Python and GJS.
 */

/**
 * ChatConnection:
 *
 * A client connection to a chathub server that reconnects and recovers by itself. All its
 * fields are private.
 *
 * Since: 1.0
 */

#define BACKOFF_MIN_DEFAULT 500
#define BACKOFF_MAX_DEFAULT 30000
/* a connection open this long resets the backoff: a server that accepts and drops at once is
 * not hammered */
#define STABLE_AFTER_MS 10000
/* a history answer holds up to 100 stored frames of up to 64 KiB each */
#define MAX_INCOMING_PAYLOAD (16 * 1024 * 1024)
/* direct messages remembered by id, to drop one that comes both offline and in a sync */
#define DM_IDS_KEPT 512
#define RELOAD_LIMIT 50
#define TOKEN_LEAD_S 30

typedef struct {
	guint64 room_id;       /* the key of ChatConnection.rooms */
	guint64 offset;	       /* the last offset delivered (or the ack's, after a plain join) */
	char *epoch;	       /* (nullable): never acknowledged */
	gboolean announced;    /* ::joined emitted for our own acknowledgement */
	gboolean needs_reload; /* lost the connection while reloading: reload on the next ack */
	gboolean reloading;    /* history requested after recovered: false */
	GPtrArray *held;       /* ChatMessage: live messages that came while reloading */
} Room;

/* What the server owes an answer to: every frame the connection sent, in the order sent. The
 * server answers a connection's frames in that order (protocol §3.2) and an error frame has no
 * request id, so an error answers the oldest frame not yet answered. */
typedef enum {
	PENDING_JOIN,
	PENDING_LEAVE,
	PENDING_MESSAGE, /* a room message (target: the room) or a direct one (to_user) */
	PENDING_HISTORY,
	PENDING_PRESENCE,
	PENDING_SYNC,
	PENDING_REFRESH,
} PendingKind;

typedef struct {
	PendingKind kind;
	guint64 target; /* the room, or the addressee of a direct message */
	gboolean to_user;
	GTask *task;	/* (nullable): a history or presence the application asked for; a history
			 * without one is the connection's own reload */
	guint64 serial; /* a refresh's token_serial */
	char *token;	/* (nullable): a refresh's token */
} Pending;

struct _ChatConnection {
	GObject parent_instance;

	GMainContext *context;
	SoupSession *session;
	GTlsDatabase *tls_database; /* (nullable): the system's when NULL */
	char *uri;
	char *token;
	guint64 user_id;
	guint64 token_serial;	/* bumped by every new token */
	guint64 serial_in_use;	/* the open connection's token, or its last accepted refresh */
	guint64 serial_attempt; /* the token of the attempt under way */
	guint64 serial_refused; /* the last token whose refresh the server refused */
	ChatConnectionState state;
	guint backoff_min;
	guint backoff_max;
	guint attempt; /* consecutive failed attempts */

	GCancellable *cancellable; /* of the attempt under way */
	SoupMessage *handshake;
	SoupWebsocketConnection *ws;
	GSource *retry_source;
	GSource *stable_source;
	GSource *expiry_source;

	GArray *room_order; /* guint64: the rooms joined, in the order joined */
	GHashTable *rooms;  /* &Room.room_id -> Room, owned */
	guint64 dm_offset;
	char *dm_epoch;	    /* (nullable): no sync answer yet */
	GHashTable *dm_ids; /* guint64* (in dm_id_order) -> itself */
	/* (nullable) ChatMessage: direct messages that came before the sync answer; live ones
	 * may overtake the replay there, and the replay has them in order anyway */
	GPtrArray *dm_held;
	gboolean dm_syncing; /* a sync was sent, its answer has not come */
	GQueue dm_id_order;  /* guint64*, owned */
	GQueue pending;	     /* Pending: the frames sent on this socket, not yet answered */
};

G_DEFINE_FINAL_TYPE (ChatConnection, chat_connection, G_TYPE_OBJECT)

G_DEFINE_ENUM_TYPE (ChatConnectionState,
		    chat_connection_state,
		    G_DEFINE_ENUM_VALUE (CHAT_CONNECTION_STATE_DISCONNECTED, "disconnected"),
		    G_DEFINE_ENUM_VALUE (CHAT_CONNECTION_STATE_CONNECTING, "connecting"),
		    G_DEFINE_ENUM_VALUE (CHAT_CONNECTION_STATE_CONNECTED, "connected"),
		    G_DEFINE_ENUM_VALUE (CHAT_CONNECTION_STATE_RECONNECTING, "reconnecting"))

enum {
	PROP_0,
	PROP_URI,
	PROP_TOKEN,
	PROP_STATE,
	PROP_USER_ID,
	PROP_BACKOFF_MIN,
	PROP_BACKOFF_MAX,
	PROP_TLS_DATABASE,
	N_PROPS
};
static GParamSpec *props[N_PROPS];

enum {
	SIGNAL_MESSAGE,
	SIGNAL_JOINED,
	SIGNAL_LEFT,
	SIGNAL_ERROR_RECEIVED,
	SIGNAL_CLOSED,
	SIGNAL_ROOM_RELOADED,
	SIGNAL_DMS_RELOADED,
	SIGNAL_RECOVERED,
	SIGNAL_TOKEN_EXPIRING,
	SIGNAL_ATTEMPT_FAILED,
	N_SIGNALS
};
static guint signals[N_SIGNALS];

static void
start_attempt (ChatConnection *self);

/* ---- small helpers ------------------------------------------------------------------- */

static void
room_free (gpointer data)
{
	Room *room = data;

	g_free (room->epoch);
	g_clear_pointer (&room->held, g_ptr_array_unref);
	g_free (room);
}

static void
pending_free (Pending *pending)
{
	g_clear_object (&pending->task);
	g_free (pending->token);
	g_free (pending);
}

static GSource *
add_timeout (ChatConnection *self, guint interval_ms, GSourceFunc func, const char *name)
{
	GSource *source = g_timeout_source_new (interval_ms);

	g_source_set_callback (source, func, self, NULL);
	g_source_set_static_name (source, name);
	g_source_attach (source, self->context);
	return source;
}

static void
clear_source (GSource **source)
{
	if (*source != NULL) {
		g_source_destroy (*source);
		g_clear_pointer (source, g_source_unref);
	}
}

static void
set_state (ChatConnection *self, ChatConnectionState state)
{
	if (self->state == state)
		return;
	self->state = state;
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STATE]);
}

/* The payload of a compact JWT, decoded without any check: only its claims are read. */
static JsonObject *
token_claims (const char *token)
{
	g_auto (GStrv) parts = NULL;
	g_autoptr (JsonParser) parser = json_parser_new_immutable ();
	g_autofree guchar *payload = NULL;
	g_autoptr (GString) b64 = NULL;
	JsonNode *root;
	gsize length;

	if (token == NULL)
		return NULL;
	parts = g_strsplit (token, ".", 4);
	if (g_strv_length (parts) != 3)
		return NULL;
	b64 = g_string_new (parts[1]);
	g_strdelimit (b64->str, "-", '+');
	g_strdelimit (b64->str, "_", '/');
	while (b64->len % 4 != 0)
		g_string_append_c (b64, '=');
	payload = g_base64_decode (b64->str, &length);
	if (payload == NULL || length == 0 ||
	    !json_parser_load_from_data (parser, (const char *) payload, (gssize) length, NULL))
		return NULL;
	root = json_parser_get_root (parser);
	if (!JSON_NODE_HOLDS_OBJECT (root))
		return NULL;
	return json_object_ref (json_node_get_object (root));
}

static gboolean
claim_int (JsonObject *claims, const char *name, gint64 *value)
{
	JsonNode *node = json_object_get_member (claims, name);

	if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
		return FALSE;
	if (json_node_get_value_type (node) == G_TYPE_INT64) {
		*value = json_node_get_int (node);
		return TRUE;
	}
	if (json_node_get_value_type (node) == G_TYPE_DOUBLE) {
		*value = (gint64) json_node_get_double (node);
		return TRUE;
	}
	if (json_node_get_value_type (node) == G_TYPE_STRING && g_str_equal (name, "sub")) {
		guint64 number;

		if (!g_ascii_string_to_unsigned (json_node_get_string (node),
						 10,
						 1,
						 G_MAXINT64,
						 &number,
						 NULL))
			return FALSE;
		*value = (gint64) number;
		return TRUE;
	}
	return FALSE;
}

static guint64
token_user_id (const char *token)
{
	g_autoptr (JsonObject) claims = token_claims (token);
	gint64 user_id = 0;

	if (claims == NULL)
		return 0;
	if (!claim_int (claims, "user_id", &user_id))
		claim_int (claims, "sub", &user_id);
	return user_id > 0 ? (guint64) user_id : 0;
}

/* Sends @object, a frame of @kind, and remembers it until its answer comes. */
static Pending *
send_frame (ChatConnection *self, JsonObject *object, PendingKind kind, guint64 target)
{
	g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
	g_autofree char *text = NULL;
	Pending *pending = g_new0 (Pending, 1);

	json_node_set_object (node, object);
	text = json_to_string (node, FALSE);
	g_debug ("ChatConnection %p sends %s",
		 self,
		 json_object_has_member (object, "token") ? "a refresh" : text);
	soup_websocket_connection_send_text (self->ws, text);
	pending->kind = kind;
	pending->target = target;
	g_queue_push_tail (&self->pending, pending);
	return pending;
}

static gboolean
is_open (ChatConnection *self)
{
	return self->ws != NULL &&
	       soup_websocket_connection_get_state (self->ws) == SOUP_WEBSOCKET_STATE_OPEN;
}

/* ---- the token's deadline -------------------------------------------------------------- */

static gboolean
on_token_expiring (gpointer user_data)
{
	ChatConnection *self = user_data;

	g_clear_pointer (&self->expiry_source, g_source_unref);
	g_signal_emit (self, signals[SIGNAL_TOKEN_EXPIRING], 0);
	return G_SOURCE_REMOVE;
}

/* Arms ::token-expiring for @token, now in use. */
static void
arm_expiry (ChatConnection *self, const char *token)
{
	g_autoptr (JsonObject) claims = token_claims (token);
	gint64 now = g_get_real_time () / 1000;
	gint64 exp, iat, start, at;

	clear_source (&self->expiry_source);
	if (claims == NULL || !claim_int (claims, "exp", &exp))
		return;
	exp *= 1000;
	start = claim_int (claims, "iat", &iat) && iat * 1000 <= now ? iat * 1000 : now;
	at = start + (exp - start) * 4 / 5;
	if (exp - TOKEN_LEAD_S * 1000 < at)
		at = exp - TOKEN_LEAD_S * 1000;
	self->expiry_source = add_timeout (self,
					   (guint) CLAMP (at - now, 0, G_MAXINT),
					   on_token_expiring,
					   "chathub token expiring");
}

/* ---- answers ----------------------------------------------------------------------------- */

static void
fail_pending (ChatConnection *self)
{
	Pending *pending;

	while ((pending = g_queue_pop_head (&self->pending)) != NULL) {
		if (pending->task != NULL)
			g_task_return_new_error (
			    pending->task,
			    G_IO_ERROR,
			    G_IO_ERROR_CONNECTION_CLOSED,
			    _ ("The connection closed before the answer came"));
		pending_free (pending);
	}
}

/* An answer that can only be to a frame of @kind for @target (an acknowledgement, a history,
 * presence, sync or refresh answer) came: everything sent before that frame was answered too
 * (§3.2), even an echo that could not be told from another device's message. */
static Pending *
take_answered (ChatConnection *self, PendingKind kind, guint64 target)
{
	GList *l;

	for (l = self->pending.head; l != NULL; l = l->next) {
		Pending *pending = l->data;

		if (pending->kind == kind && pending->target == target)
			break;
	}
	if (l == NULL)
		return NULL;
	while (self->pending.head != l) {
		Pending *earlier = g_queue_pop_head (&self->pending);

		if (earlier->task != NULL)
			g_task_return_new_error (earlier->task,
						 CHAT_ERROR,
						 CHAT_ERROR_FAILED,
						 _ ("The server did not answer"));
		pending_free (earlier);
	}
	return g_queue_pop_head (&self->pending);
}

/* A message from this connection's user, or its leave: the answer to the oldest frame if that
 * frame is the same message or leave (another device of the user may send the same). */
static void
take_echo (ChatConnection *self, PendingKind kind, guint64 target, gboolean to_user)
{
	Pending *pending = g_queue_peek_head (&self->pending);

	if (pending != NULL && pending->kind == kind && pending->target == target &&
	    pending->to_user == to_user)
		pending_free (g_queue_pop_head (&self->pending));
}

static void
send_history_request (ChatConnection *self,
		      guint64 room_id,
		      guint64 before,
		      guint limit,
		      GTask *task)
{
	g_autoptr (JsonObject) frame = json_object_new ();
	Pending *pending;

	json_object_set_string_member (frame, "type", "history");
	json_object_set_int_member (frame, "room_id", (gint64) room_id);
	if (before > 0)
		json_object_set_int_member (frame, "before", (gint64) before);
	if (limit > 0)
		json_object_set_int_member (frame, "limit", limit);
	pending = send_frame (self, frame, PENDING_HISTORY, room_id);
	pending->task = task != NULL ? g_object_ref (task) : NULL;
}

/* ---- (re)connecting ----------------------------------------------------------------- */

static void
send_recovery (ChatConnection *self)
{
	g_autoptr (JsonObject) sync = json_object_new ();

	for (guint i = 0; i < self->room_order->len; i++) {
		guint64 room_id = g_array_index (self->room_order, guint64, i);
		Room *room = g_hash_table_lookup (self->rooms, &room_id);
		g_autoptr (JsonObject) join = json_object_new ();

		json_object_set_string_member (join, "type", "join");
		json_object_set_int_member (join, "room_id", (gint64) room_id);
		if (room->epoch != NULL) {
			json_object_set_int_member (join, "since", (gint64) room->offset);
			json_object_set_string_member (join, "epoch", room->epoch);
		}
		send_frame (self, join, PENDING_JOIN, room_id);
	}
	json_object_set_string_member (sync, "type", "sync");
	if (self->dm_epoch != NULL) {
		json_object_set_int_member (sync, "since", (gint64) self->dm_offset);
		json_object_set_string_member (sync, "epoch", self->dm_epoch);
	}
	send_frame (self, sync, PENDING_SYNC, 0);
	self->dm_syncing = TRUE;
}

static guint
backoff_delay (ChatConnection *self)
{
	guint64 cap = self->backoff_min;

	for (guint i = 0; i < self->attempt && cap < self->backoff_max; i++)
		cap *= 2;
	cap = MIN (cap, self->backoff_max);
	return (guint) g_random_int_range (0, (gint32) cap + 1);
}

static gboolean
on_retry (gpointer user_data)
{
	ChatConnection *self = user_data;

	g_clear_pointer (&self->retry_source, g_source_unref);
	start_attempt (self);
	return G_SOURCE_REMOVE;
}

/* Waits @delay_ms, then attempts again; a failed attempt counts (@count). */
static void
schedule_retry (ChatConnection *self, guint delay_ms, gboolean count)
{
	if (count)
		self->attempt++;
	set_state (self, CHAT_CONNECTION_STATE_RECONNECTING);
	clear_source (&self->retry_source);
	g_debug ("ChatConnection %p: next attempt in %u ms", self, delay_ms);
	self->retry_source = add_timeout (self, delay_ms, on_retry, "chathub reconnect");
}

static void
drop_socket (ChatConnection *self);

static void
go_disconnected (ChatConnection *self, guint code, const char *reason)
{
	clear_source (&self->retry_source);
	clear_source (&self->stable_source);
	clear_source (&self->expiry_source);
	set_state (self, CHAT_CONNECTION_STATE_DISCONNECTED);
	g_signal_emit (self, signals[SIGNAL_CLOSED], 0, code, reason, TRUE);
}

/* Whether a close ends the connection's work for good; *@at_once: reconnect without waiting
 * (a 4001 after the application gave a new token). */
static gboolean
close_is_final (ChatConnection *self, guint code, const char *reason, gboolean *at_once)
{
	*at_once = FALSE;
	switch (code) {
	case 1000:
	case 1003:
	case 1009:
		return TRUE;
	case 1008:
		return g_strcmp0 (reason, "slow consumer") != 0;
	case 4001:
		/* a token the server refused as a refresh does not count as a new one */
		*at_once = self->token_serial > self->serial_in_use &&
			   self->token_serial != self->serial_refused;
		return !*at_once;
	default:
		return FALSE;
	}
}

static void
on_ws_closed (SoupWebsocketConnection *ws, gpointer user_data)
{
	ChatConnection *self = user_data;
	const char *data = soup_websocket_connection_get_close_data (ws);
	g_autofree char *reason = g_strdup (data != NULL ? data : "");
	guint code = soup_websocket_connection_get_close_code (ws);
	gboolean at_once;

	g_object_ref (self);
	/* no close frame came: the connection was lost (1006, as browsers report it) */
	if (code == 0 || code == SOUP_WEBSOCKET_CLOSE_NO_STATUS)
		code = SOUP_WEBSOCKET_CLOSE_ABNORMAL;
	g_debug ("ChatConnection %p closed: %u %s", self, code, reason);
	drop_socket (self);
	if (close_is_final (self, code, reason, &at_once)) {
		go_disconnected (self, code, reason);
	} else {
		schedule_retry (self, at_once ? 0 : backoff_delay (self), !at_once);
		g_signal_emit (self, signals[SIGNAL_CLOSED], 0, code, reason, FALSE);
	}
	g_object_unref (self);
}

static void
on_ws_message (SoupWebsocketConnection *ws,
	       SoupWebsocketDataType type,
	       GBytes *message,
	       gpointer user_data);

static void
on_abandoned_closed (SoupWebsocketConnection *ws, gpointer user_data)
{
	g_object_unref (ws);
}

/* Forgets the socket (closing it if open) and what was asked on it. */
static void
drop_socket (ChatConnection *self)
{
	GHashTableIter iter;
	Room *room;

	clear_source (&self->stable_source);
	if (self->ws != NULL) {
		SoupWebsocketConnection *ws = g_steal_pointer (&self->ws);

		g_signal_handlers_disconnect_by_data (ws, self);
		if (soup_websocket_connection_get_state (ws) == SOUP_WEBSOCKET_STATE_CLOSED) {
			g_object_unref (ws);
		} else {
			/* libsoup finishes the closing handshake on its own; the reference goes
			 * with it */
			g_signal_connect (ws, "closed", G_CALLBACK (on_abandoned_closed), NULL);
			if (soup_websocket_connection_get_state (ws) == SOUP_WEBSOCKET_STATE_OPEN)
				soup_websocket_connection_close (ws,
								 SOUP_WEBSOCKET_CLOSE_NORMAL,
								 NULL);
		}
	}
	g_hash_table_iter_init (&iter, self->rooms);
	while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &room)) {
		if (room->reloading)
			room->needs_reload = TRUE;
		room->reloading = FALSE;
		g_clear_pointer (&room->held, g_ptr_array_unref);
	}
	/* not counted in dm_offset: the next sync asks for them again */
	self->dm_syncing = FALSE;
	g_clear_pointer (&self->dm_held, g_ptr_array_unref);
	fail_pending (self);
}

static gboolean
on_stable (gpointer user_data)
{
	ChatConnection *self = user_data;

	g_clear_pointer (&self->stable_source, g_source_unref);
	self->attempt = 0;
	return G_SOURCE_REMOVE;
}

static guint
retry_after_ms (SoupMessage *msg)
{
	const char *value =
	    soup_message_headers_get_one (soup_message_get_response_headers (msg), "Retry-After");
	guint64 seconds;

	if (value == NULL || !g_ascii_string_to_unsigned (value, 10, 0, 3600, &seconds, NULL))
		return 0;
	return (guint) seconds * 1000;
}

static void
handshake_failed (ChatConnection *self, SoupMessage *msg, GError *error)
{
	guint status = soup_message_get_status (msg);
	g_autoptr (GError) reported = NULL;
	guint delay;

	g_debug ("ChatConnection %p: attempt failed (HTTP %u): %s", self, status, error->message);
	switch (status) {
	case SOUP_STATUS_UNAUTHORIZED:
		if (self->token_serial > self->serial_attempt) {
			delay = 0;
			schedule_retry (self, delay, FALSE);
			break;
		}
		G_GNUC_FALLTHROUGH;
	case SOUP_STATUS_BAD_REQUEST:
	case SOUP_STATUS_FORBIDDEN:
	case SOUP_STATUS_NOT_FOUND:
		go_disconnected (self, status, soup_message_get_reason_phrase (msg));
		return;
	case 429:
	case SOUP_STATUS_SERVICE_UNAVAILABLE:
		delay = MAX (backoff_delay (self), retry_after_ms (msg));
		schedule_retry (self, delay, TRUE);
		break;
	default:
		delay = backoff_delay (self);
		schedule_retry (self, delay, TRUE);
	}
	/* libsoup's error for a refused handshake does not say what the server answered */
	if (status >= 300)
		reported = g_error_new (G_IO_ERROR,
					G_IO_ERROR_FAILED,
					_ ("The server answered HTTP %u %s"),
					status,
					soup_message_get_reason_phrase (msg));
	else
		reported = g_error_copy (error);
	g_signal_emit (self, signals[SIGNAL_ATTEMPT_FAILED], 0, reported, delay);
}

static void
on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (ChatConnection) self = user_data;
	g_autoptr (GError) error = NULL;
	g_autoptr (SoupMessage) msg = NULL;
	SoupWebsocketConnection *ws;

	ws = soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
	/* chat_connection_close() or dispose: nothing of this attempt is wanted */
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		g_clear_object (&ws);
		return;
	}
	msg = g_steal_pointer (&self->handshake);
	g_clear_object (&self->cancellable);
	if (ws == NULL) {
		handshake_failed (self, msg, error);
		return;
	}

	self->ws = ws;
	soup_websocket_connection_set_max_incoming_payload_size (ws, MAX_INCOMING_PAYLOAD);
	g_signal_connect (ws, "message", G_CALLBACK (on_ws_message), self);
	g_signal_connect (ws, "closed", G_CALLBACK (on_ws_closed), self);
	self->serial_in_use = self->serial_attempt;
	self->stable_source = add_timeout (self, STABLE_AFTER_MS, on_stable, "chathub stable");
	arm_expiry (self, self->token);
	send_recovery (self);
	set_state (self, CHAT_CONNECTION_STATE_CONNECTED);
}

static void
start_attempt (ChatConnection *self)
{
	g_autoptr (SoupMessage) msg = soup_message_new ("GET", self->uri);
	g_autofree char *authorization = g_strdup_printf ("Bearer %s", self->token);

	soup_message_headers_replace (soup_message_get_request_headers (msg),
				      "Authorization",
				      authorization);
	self->serial_attempt = self->token_serial;
	self->cancellable = g_cancellable_new ();
	self->handshake = g_object_ref (msg);
	g_main_context_push_thread_default (self->context);
	soup_session_websocket_connect_async (self->session,
					      msg,
					      NULL,
					      NULL,
					      G_PRIORITY_DEFAULT,
					      self->cancellable,
					      on_connected,
					      g_object_ref (self));
	g_main_context_pop_thread_default (self->context);
}

static void
stop_attempt (ChatConnection *self)
{
	if (self->cancellable != NULL)
		g_cancellable_cancel (self->cancellable);
	g_clear_object (&self->cancellable);
	g_clear_object (&self->handshake);
	clear_source (&self->retry_source);
	clear_source (&self->expiry_source);
}

/* ---- frames from the server ------------------------------------------------------------ */

static guint64
member_uint (JsonObject *object, const char *name)
{
	JsonNode *node = json_object_get_member (object, name);

	if (node == NULL || json_node_get_value_type (node) != G_TYPE_INT64)
		return 0;
	return (guint64) MAX (json_node_get_int (node), 0);
}

static const char *
member_string (JsonObject *object, const char *name)
{
	JsonNode *node = json_object_get_member (object, name);

	if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING)
		return NULL;
	return json_node_get_string (node);
}

/* -1: absent */
static int
member_bool (JsonObject *object, const char *name)
{
	JsonNode *node = json_object_get_member (object, name);

	if (node == NULL || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
		return -1;
	return json_node_get_boolean (node);
}

static gboolean
dm_seen (ChatConnection *self, guint64 id)
{
	guint64 *key;

	if (g_hash_table_contains (self->dm_ids, &id))
		return TRUE;
	key = g_memdup2 (&id, sizeof id);
	g_hash_table_add (self->dm_ids, key);
	g_queue_push_tail (&self->dm_id_order, key);
	if (self->dm_id_order.length > DM_IDS_KEPT) {
		guint64 *oldest = g_queue_pop_head (&self->dm_id_order);

		g_hash_table_remove (self->dm_ids, oldest);
		g_free (oldest);
	}
	return FALSE;
}

static void
deliver_direct_message (ChatConnection *self, ChatMessage *message)
{
	if (dm_seen (self, chat_message_get_id (message)))
		return;
	self->dm_offset = MAX (self->dm_offset, chat_message_get_offset (message));
	g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, message);
}

static void
deliver_room_message (ChatConnection *self, Room *room, ChatMessage *message)
{
	guint64 offset = chat_message_get_offset (message);

	if (room != NULL && offset > 0) {
		if (room->reloading) {
			if (room->held == NULL)
				room->held = g_ptr_array_new_with_free_func (g_object_unref);
			g_ptr_array_add (room->held, g_object_ref (message));
			return;
		}
		if (room->epoch != NULL && offset <= room->offset) {
			g_debug ("ChatConnection %p drops room %" G_GUINT64_FORMAT
				 " offset %" G_GUINT64_FORMAT " (a double)",
				 self,
				 room->room_id,
				 offset);
			return;
		}
		room->offset = offset;
	}
	g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, message);
}

static void
handle_message (ChatConnection *self, const char *text, gsize length)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_parse (text, length, FALSE, &error);
	guint64 room_id;

	if (message == NULL) {
		g_debug ("ChatConnection %p ignores a message: %s", self, error->message);
		return;
	}
	room_id = chat_message_get_room_id (message);
	if (self->user_id != 0 && chat_message_get_from (message) == self->user_id) {
		if (room_id != 0)
			take_echo (self, PENDING_MESSAGE, room_id, FALSE);
		else if (chat_message_get_to (message) != 0)
			take_echo (self, PENDING_MESSAGE, chat_message_get_to (message), TRUE);
	}
	if (room_id != 0) {
		deliver_room_message (self, g_hash_table_lookup (self->rooms, &room_id), message);
		return;
	}
	if (chat_message_get_to (message) != 0) {
		if (self->dm_syncing) {
			if (self->dm_held == NULL)
				self->dm_held = g_ptr_array_new_with_free_func (g_object_unref);
			g_ptr_array_add (self->dm_held, g_steal_pointer (&message));
			return;
		}
		deliver_direct_message (self, message);
		return;
	}
	g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, message);
}

/* The sync answer came: what was held before it is either in the replay that follows
 * (recovered), or it is all there is (a first sync, or history lost). */
static void
release_held_direct_messages (ChatConnection *self, gboolean replayed)
{
	g_autoptr (GPtrArray) held = g_steal_pointer (&self->dm_held);

	self->dm_syncing = FALSE;
	for (guint i = 0; !replayed && held != NULL && i < held->len; i++)
		deliver_direct_message (self, held->pdata[i]);
}

static void
handle_join (ChatConnection *self, JsonObject *frame)
{
	guint64 room_id = member_uint (frame, "room_id");
	guint64 from = member_uint (frame, "from");
	const char *epoch = member_string (frame, "epoch");
	int recovered = member_bool (frame, "recovered");
	Room *room;

	/* someone else joined */
	if (epoch == NULL) {
		g_signal_emit (self, signals[SIGNAL_JOINED], 0, room_id, from);
		return;
	}
	pending_free (take_answered (self, PENDING_JOIN, room_id));
	room = g_hash_table_lookup (self->rooms, &room_id);
	if (room == NULL)
		return; /* left since */
	if (room->epoch == NULL) {
		room->epoch = g_strdup (epoch);
		room->offset = member_uint (frame, "offset");
	} else if (recovered == TRUE && !room->needs_reload) {
		if (!room->announced) {
			room->announced = TRUE;
			g_signal_emit (self, signals[SIGNAL_JOINED], 0, room_id, from);
		}
		/* a handler may leave the room: nothing of it is touched after this */
		g_signal_emit (self, signals[SIGNAL_RECOVERED], 0, room_id);
		return;
	} else {
		/* what was missed is gone: the room is reloaded from its history */
		g_free (room->epoch);
		room->epoch = g_strdup (epoch);
		room->offset = member_uint (frame, "offset");
		room->needs_reload = FALSE;
		room->reloading = TRUE;
		send_history_request (self, room_id, 0, RELOAD_LIMIT, NULL);
	}
	if (!room->announced) {
		room->announced = TRUE;
		g_signal_emit (self, signals[SIGNAL_JOINED], 0, room_id, from);
	}
}

static GPtrArray *
parse_messages (ChatConnection *self, JsonObject *frame)
{
	GPtrArray *messages = g_ptr_array_new_with_free_func (g_object_unref);
	JsonNode *node = json_object_get_member (frame, "messages");
	g_autoptr (GList) elements = NULL;

	if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
		return messages;
	elements = json_array_get_elements (json_node_get_array (node));
	for (GList *l = elements; l != NULL; l = l->next) {
		g_autofree char *text = json_to_string (l->data, FALSE);
		g_autoptr (GError) error = NULL;
		ChatMessage *message = chat_message_parse (text, strlen (text), FALSE, &error);

		if (message == NULL)
			g_debug ("ChatConnection %p ignores a stored message: %s",
				 self,
				 error->message);
		else
			g_ptr_array_add (messages, message);
	}
	return messages;
}

static void
finish_reload (ChatConnection *self, Room *room, const char *epoch, GPtrArray *messages)
{
	g_autoptr (GPtrArray) held = g_steal_pointer (&room->held);
	guint64 room_id = room->room_id;

	room->reloading = FALSE;
	if (messages->len > 0)
		room->offset = MAX (room->offset,
				    chat_message_get_offset (messages->pdata[messages->len - 1]));
	g_signal_emit (self,
		       signals[SIGNAL_ROOM_RELOADED],
		       0,
		       room_id,
		       epoch != NULL ? epoch : room->epoch,
		       messages);
	/* live messages that came meanwhile, but not those the history already holds; a
	 * handler may have left the room meanwhile */
	for (guint i = 0; held != NULL && i < held->len; i++) {
		room = g_hash_table_lookup (self->rooms, &room_id);
		if (room == NULL)
			break;
		deliver_room_message (self, room, held->pdata[i]);
	}
}

static void
handle_history (ChatConnection *self, JsonObject *frame)
{
	guint64 room_id = member_uint (frame, "room_id");
	Pending *pending = take_answered (self, PENDING_HISTORY, room_id);
	g_autoptr (GPtrArray) messages = NULL;

	if (pending == NULL)
		return;
	messages = parse_messages (self, frame);
	if (pending->task != NULL) {
		if (!g_task_return_error_if_cancelled (pending->task))
			g_task_return_pointer (pending->task,
					       g_ptr_array_ref (messages),
					       (GDestroyNotify) g_ptr_array_unref);
	} else {
		Room *room = g_hash_table_lookup (self->rooms, &room_id);

		if (room != NULL && room->reloading)
			finish_reload (self, room, member_string (frame, "epoch"), messages);
	}
	pending_free (pending);
}

static void
handle_presence (ChatConnection *self, JsonObject *frame)
{
	Pending *pending = take_answered (self, PENDING_PRESENCE, member_uint (frame, "room_id"));
	JsonNode *node = json_object_get_member (frame, "users");
	g_autoptr (GArray) users = g_array_new (FALSE, FALSE, sizeof (guint64));

	if (pending == NULL)
		return;
	if (node != NULL && JSON_NODE_HOLDS_ARRAY (node)) {
		JsonArray *array = json_node_get_array (node);

		for (guint i = 0; i < json_array_get_length (array); i++) {
			guint64 user = (guint64) json_array_get_int_element (array, i);

			g_array_append_val (users, user);
		}
	}
	if (pending->task != NULL && !g_task_return_error_if_cancelled (pending->task))
		g_task_return_pointer (pending->task,
				       g_steal_pointer (&users),
				       (GDestroyNotify) g_array_unref);
	pending_free (pending);
}

static void
handle_sync (ChatConnection *self, JsonObject *frame)
{
	const char *epoch = member_string (frame, "epoch");
	guint64 offset = member_uint (frame, "offset");
	int recovered = member_bool (frame, "recovered");

	pending_free (take_answered (self, PENDING_SYNC, 0));
	if (epoch == NULL)
		return;
	if (recovered == TRUE) {
		release_held_direct_messages (self, TRUE); /* what was missed follows */
		return;
	}
	if (recovered == -1 && g_strcmp0 (self->dm_epoch, epoch) == 0) {
		self->dm_offset = MAX (self->dm_offset, offset);
		release_held_direct_messages (self, FALSE);
		return;
	}
	g_free (self->dm_epoch);
	self->dm_epoch = g_strdup (epoch);
	self->dm_offset = offset;
	if (recovered == FALSE)
		g_signal_emit (self, signals[SIGNAL_DMS_RELOADED], 0, epoch);
	release_held_direct_messages (self, FALSE);
}

static void
handle_refresh (ChatConnection *self)
{
	Pending *refresh = take_answered (self, PENDING_REFRESH, 0);

	if (refresh == NULL)
		return;
	self->serial_in_use = refresh->serial;
	arm_expiry (self, refresh->token);
	pending_free (refresh);
}

static ChatError
error_from_wire (const char *code)
{
	static const ChatError known[] = {CHAT_ERROR_INVALID_JSON,
					  CHAT_ERROR_INVALID_MESSAGE,
					  CHAT_ERROR_UNKNOWN_TYPE,
					  CHAT_ERROR_NOT_MEMBER,
					  CHAT_ERROR_FORBIDDEN,
					  CHAT_ERROR_USER_OFFLINE,
					  CHAT_ERROR_INVALID_TOKEN,
					  CHAT_ERROR_RATE_LIMITED,
					  CHAT_ERROR_LIMIT_EXCEEDED,
					  CHAT_ERROR_UNAVAILABLE};

	for (guint i = 0; i < G_N_ELEMENTS (known); i++) {
		if (g_strcmp0 (code, chat_error_get_wire_code (known[i])) == 0)
			return known[i];
	}
	return CHAT_ERROR_FAILED;
}

/* Forgets a room the server refused to let this connection join: it is not joined again on
 * reconnects. */
static void
forget_room (ChatConnection *self, guint64 room_id)
{
	if (!g_hash_table_remove (self->rooms, &room_id))
		return;
	for (guint i = 0; i < self->room_order->len; i++) {
		if (g_array_index (self->room_order, guint64, i) == room_id) {
			g_array_remove_index (self->room_order, i);
			break;
		}
	}
}

/* The reload's history was refused: the live messages held for it go on without a reload. */
static void
abandon_reload (ChatConnection *self, guint64 room_id)
{
	Room *room = g_hash_table_lookup (self->rooms, &room_id);
	g_autoptr (GPtrArray) held = NULL;

	if (room == NULL || !room->reloading)
		return;
	held = g_steal_pointer (&room->held);
	room->reloading = FALSE;
	for (guint i = 0; held != NULL && i < held->len; i++) {
		room = g_hash_table_lookup (self->rooms, &room_id);
		if (room == NULL)
			break;
		deliver_room_message (self, room, held->pdata[i]);
	}
}

/* An error answers the oldest frame not yet answered (§3.2: answers never overtake each
 * other). A history or presence the application asked for fails with it; everything else is
 * reported by ::error-received, after the connection acted on it. */
static void
handle_error (ChatConnection *self, JsonObject *frame)
{
	const char *code = member_string (frame, "code");
	const char *content = member_string (frame, "content");
	Pending *pending = g_queue_pop_head (&self->pending);

	if (code == NULL)
		code = "";
	if (pending != NULL && pending->task != NULL) {
		if (!g_task_return_error_if_cancelled (pending->task))
			g_task_return_new_error (pending->task,
						 CHAT_ERROR,
						 error_from_wire (code),
						 "%s: %s",
						 code,
						 content != NULL ? content : "");
		pending_free (pending);
		return;
	}
	if (pending != NULL) {
		switch (pending->kind) {
		case PENDING_JOIN:
			/* the token does not allow the room, or too many rooms: it will not work
			 * on the next connection either */
			if (g_str_equal (code, "forbidden") || g_str_equal (code, "limit_exceeded"))
				forget_room (self, pending->target);
			break;
		case PENDING_HISTORY:
			abandon_reload (self, pending->target);
			break;
		case PENDING_SYNC:
			release_held_direct_messages (self, FALSE);
			break;
		case PENDING_REFRESH:
			/* the token in use and its deadline stay */
			self->serial_refused = pending->serial;
			break;
		case PENDING_LEAVE:
		case PENDING_MESSAGE:
		case PENDING_PRESENCE:
		default:
			break;
		}
		pending_free (pending);
	}
	g_signal_emit (self, signals[SIGNAL_ERROR_RECEIVED], 0, code, content);
}

static void
on_ws_message (SoupWebsocketConnection *ws,
	       SoupWebsocketDataType type,
	       GBytes *message,
	       gpointer user_data)
{
	ChatConnection *self = user_data;
	g_autoptr (JsonParser) parser = json_parser_new_immutable ();
	g_autoptr (GError) error = NULL;
	gsize length;
	const char *text = g_bytes_get_data (message, &length);
	const char *frame_type;
	JsonObject *frame;
	JsonNode *root;

	if (type != SOUP_WEBSOCKET_DATA_TEXT)
		return;
	if (!json_parser_load_from_data (parser, text, (gssize) length, &error)) {
		g_debug ("ChatConnection %p ignores a frame: %s", self, error->message);
		return;
	}
	root = json_parser_get_root (parser);
	if (!JSON_NODE_HOLDS_OBJECT (root))
		return;
	frame = json_node_get_object (root);
	frame_type = member_string (frame, "type");
	if (frame_type == NULL)
		return;

	g_object_ref (self);
	if (g_str_equal (frame_type, "message"))
		handle_message (self, text, length);
	else if (g_str_equal (frame_type, "join"))
		handle_join (self, frame);
	else if (g_str_equal (frame_type, "leave")) {
		if (self->user_id != 0 && member_uint (frame, "from") == self->user_id)
			take_echo (self, PENDING_LEAVE, member_uint (frame, "room_id"), FALSE);
		g_signal_emit (self,
			       signals[SIGNAL_LEFT],
			       0,
			       member_uint (frame, "room_id"),
			       member_uint (frame, "from"));
	} else if (g_str_equal (frame_type, "history"))
		handle_history (self, frame);
	else if (g_str_equal (frame_type, "presence"))
		handle_presence (self, frame);
	else if (g_str_equal (frame_type, "sync"))
		handle_sync (self, frame);
	else if (g_str_equal (frame_type, "refresh"))
		handle_refresh (self);
	else if (g_str_equal (frame_type, "error"))
		handle_error (self, frame);
	g_object_unref (self);
}

/* ---- GObject ----------------------------------------------------------------------------- */

static void
chat_connection_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatConnection *self = CHAT_CONNECTION (object);

	switch (prop_id) {
	case PROP_URI:
		g_value_set_string (value, self->uri);
		break;
	case PROP_TOKEN:
		g_value_set_string (value, self->token);
		break;
	case PROP_STATE:
		g_value_set_enum (value, self->state);
		break;
	case PROP_USER_ID:
		g_value_set_uint64 (value, self->user_id);
		break;
	case PROP_BACKOFF_MIN:
		g_value_set_uint (value, self->backoff_min);
		break;
	case PROP_BACKOFF_MAX:
		g_value_set_uint (value, self->backoff_max);
		break;
	case PROP_TLS_DATABASE:
		g_value_set_object (value, self->tls_database);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_connection_set_property (GObject *object,
			      guint prop_id,
			      const GValue *value,
			      GParamSpec *pspec)
{
	ChatConnection *self = CHAT_CONNECTION (object);

	switch (prop_id) {
	case PROP_URI:
		self->uri = g_value_dup_string (value);
		break;
	case PROP_TOKEN:
		chat_connection_set_token (self, g_value_get_string (value));
		break;
	case PROP_BACKOFF_MIN:
		chat_connection_set_backoff_min (self, g_value_get_uint (value));
		break;
	case PROP_BACKOFF_MAX:
		chat_connection_set_backoff_max (self, g_value_get_uint (value));
		break;
	case PROP_TLS_DATABASE:
		chat_connection_set_tls_database (self, g_value_get_object (value));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_connection_dispose (GObject *object)
{
	ChatConnection *self = CHAT_CONNECTION (object);

	stop_attempt (self);
	drop_socket (self);
	G_OBJECT_CLASS (chat_connection_parent_class)->dispose (object);
}

static void
chat_connection_finalize (GObject *object)
{
	ChatConnection *self = CHAT_CONNECTION (object);

	g_clear_object (&self->session);
	g_clear_object (&self->tls_database);
	g_main_context_unref (self->context);
	g_free (self->uri);
	g_free (self->token);
	g_array_unref (self->room_order);
	g_hash_table_unref (self->rooms);
	g_free (self->dm_epoch);
	g_clear_pointer (&self->dm_held, g_ptr_array_unref);
	g_hash_table_unref (self->dm_ids);
	g_queue_clear_full (&self->dm_id_order, g_free);
	G_OBJECT_CLASS (chat_connection_parent_class)->finalize (object);
}

static void
chat_connection_class_init (ChatConnectionClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->get_property = chat_connection_get_property;
	object_class->set_property = chat_connection_set_property;
	object_class->dispose = chat_connection_dispose;
	object_class->finalize = chat_connection_finalize;

	/**
	 * ChatConnection:uri:
	 *
	 * The `ws://` or `wss://` URL of the server's WebSocket endpoint, e.g.
	 * `ws://127.0.0.1:8080/ws`.
	 *
	 * Since: 1.0
	 */
	props[PROP_URI] = g_param_spec_string ("uri",
					       "URI",
					       "The WebSocket URL of the server",
					       NULL,
					       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
						   G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:token:
	 *
	 * The JSON Web Token the connection authenticates with (sent as `Authorization:
	 * Bearer`). Setting it is chat_connection_set_token().
	 *
	 * Since: 1.0
	 */
	props[PROP_TOKEN] = g_param_spec_string ("token",
						 "Token",
						 "The JSON Web Token to authenticate with",
						 NULL,
						 G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						     G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:state:
	 *
	 * Where the connection stands; see #ChatConnectionState.
	 *
	 * Since: 1.0
	 */
	props[PROP_STATE] =
	    g_param_spec_enum ("state",
			       "State",
			       "Where the connection stands",
			       CHAT_TYPE_CONNECTION_STATE,
			       CHAT_CONNECTION_STATE_DISCONNECTED,
			       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:user-id:
	 *
	 * The user the token is for (its `user_id` or `sub` claim, read without checking the
	 * signature), or 0 if the token does not say.
	 *
	 * Since: 1.0
	 */
	props[PROP_USER_ID] = g_param_spec_uint64 ("user-id",
						   "User id",
						   "The user the token is for",
						   0,
						   G_MAXINT64,
						   0,
						   G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
						       G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:backoff-min:
	 *
	 * The longest wait, in milliseconds, before the first attempt to reconnect; each
	 * further consecutive failure doubles it, up to #ChatConnection:backoff-max.
	 *
	 * Since: 1.0
	 */
	props[PROP_BACKOFF_MIN] = g_param_spec_uint ("backoff-min",
						     "Backoff minimum",
						     "Milliseconds: the bound of the first wait",
						     1,
						     G_MAXINT32,
						     BACKOFF_MIN_DEFAULT,
						     G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							 G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:backoff-max:
	 *
	 * The bound, in milliseconds, of every wait before an attempt to reconnect.
	 *
	 * Since: 1.0
	 */
	props[PROP_BACKOFF_MAX] = g_param_spec_uint ("backoff-max",
						     "Backoff maximum",
						     "Milliseconds: the bound of every wait",
						     1,
						     G_MAXINT32,
						     BACKOFF_MAX_DEFAULT,
						     G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							 G_PARAM_STATIC_STRINGS);

	/**
	 * ChatConnection:tls-database:
	 *
	 * The certificate authorities a `wss://` server's certificate is checked against,
	 * for a server whose certificate a private authority signed (or a self-signed one:
	 * a #GTlsFileDatabase of its own file; g_tls_file_database_new() wants an absolute
	 * path). %NULL, the default, is the system's database. It applies from the next
	 * connection attempt. A certificate that is not trusted fails the attempt with
	 * %G_TLS_ERROR_BAD_CERTIFICATE (#ChatConnection::attempt-failed), and the
	 * connection tries again like after any other failed attempt.
	 *
	 * Since: 1.0
	 */
	props[PROP_TLS_DATABASE] = g_param_spec_object (
	    "tls-database",
	    "TLS database",
	    "The certificate authorities a wss:// server is checked against",
	    G_TYPE_TLS_DATABASE,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

	g_object_class_install_properties (object_class, N_PROPS, props);

	/**
	 * ChatConnection::message:
	 * @self: the connection
	 * @message: the message: its id, sender, room or addressee, content, data, timestamp
	 *   and offset are set
	 *
	 * A room message, a direct message (received, or the server's echo of one sent) or a
	 * message to everyone arrived. Each is emitted once and, per room and for the direct
	 * messages, in order, across reconnects.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_MESSAGE] = g_signal_new ("message",
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
	 * ChatConnection::joined:
	 * @self: the connection
	 * @room_id: the room
	 * @user_id: who joined
	 *
	 * Someone joined a room this connection is in, or the server acknowledged this
	 * connection's own chat_connection_join() (@user_id is then the connection's user; it is
	 * not emitted again when the room is joined again after a reconnect).
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_JOINED] = g_signal_new ("joined",
					       G_TYPE_FROM_CLASS (klass),
					       G_SIGNAL_RUN_LAST,
					       0,
					       NULL,
					       NULL,
					       NULL,
					       G_TYPE_NONE,
					       2,
					       G_TYPE_UINT64,
					       G_TYPE_UINT64);

	/**
	 * ChatConnection::left:
	 * @self: the connection
	 * @room_id: the room
	 * @user_id: who left
	 *
	 * Someone left a room this connection is in (a connection of theirs closed, or they
	 * left), or this connection's own chat_connection_leave() took effect.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_LEFT] = g_signal_new ("left",
					     G_TYPE_FROM_CLASS (klass),
					     G_SIGNAL_RUN_LAST,
					     0,
					     NULL,
					     NULL,
					     NULL,
					     G_TYPE_NONE,
					     2,
					     G_TYPE_UINT64,
					     G_TYPE_UINT64);

	/**
	 * ChatConnection::error-received:
	 * @self: the connection
	 * @code: the error's wire code, e.g. `not_member` or `invalid_token`
	 * @content: (nullable): the server's English explanation
	 *
	 * The server refused something this connection sent (`docs/protocol.md`, §3.3). The
	 * connection stays open.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_ERROR_RECEIVED] = g_signal_new ("error-received",
						       G_TYPE_FROM_CLASS (klass),
						       G_SIGNAL_RUN_LAST,
						       0,
						       NULL,
						       NULL,
						       NULL,
						       G_TYPE_NONE,
						       2,
						       G_TYPE_STRING,
						       G_TYPE_STRING);

	/**
	 * ChatConnection::closed:
	 * @self: the connection
	 * @code: the WebSocket close code (1006 when the connection was lost without one), or
	 *   the HTTP status of a refused handshake (400 to 599)
	 * @reason: the close reason, or the HTTP reason phrase; may be empty
	 * @final: %TRUE if the connection gave up (the state is now
	 *   %CHAT_CONNECTION_STATE_DISCONNECTED); %FALSE if it is reconnecting
	 *
	 * An open connection closed, or an attempt was refused for good. Other failed attempts
	 * are reported by #ChatConnection::attempt-failed.
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
					       3,
					       G_TYPE_UINT,
					       G_TYPE_STRING,
					       G_TYPE_BOOLEAN);

	/**
	 * ChatConnection::room-reloaded:
	 * @self: the connection
	 * @room_id: the room
	 * @epoch: the room's new epoch
	 * @messages: (element-type ChatMessage): the room's newest messages, oldest first
	 *
	 * The server could not replay what this connection missed in @room_id (its history
	 * was lost or trimmed), so the room was reloaded from its history: replace what you show
	 * of the room with @messages. Live messages continue after it with
	 * #ChatConnection::message, none of them in @messages.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_ROOM_RELOADED] = g_signal_new ("room-reloaded",
						      G_TYPE_FROM_CLASS (klass),
						      G_SIGNAL_RUN_LAST,
						      0,
						      NULL,
						      NULL,
						      NULL,
						      G_TYPE_NONE,
						      3,
						      G_TYPE_UINT64,
						      G_TYPE_STRING,
						      G_TYPE_PTR_ARRAY);

	/**
	 * ChatConnection::dms-reloaded:
	 * @self: the connection
	 * @epoch: the user's stream's new epoch
	 *
	 * The server could not replay the direct messages this connection missed (the user's
	 * stream has a new epoch). There is no history of direct messages to reload; those
	 * missed are lost.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_DMS_RELOADED] = g_signal_new ("dms-reloaded",
						     G_TYPE_FROM_CLASS (klass),
						     G_SIGNAL_RUN_LAST,
						     0,
						     NULL,
						     NULL,
						     NULL,
						     G_TYPE_NONE,
						     1,
						     G_TYPE_STRING);

	/**
	 * ChatConnection::recovered:
	 * @self: the connection
	 * @room_id: the room
	 *
	 * After a reconnect, the server acknowledged that it replays everything this connection
	 * missed in @room_id; those messages follow as #ChatConnection::message.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_RECOVERED] = g_signal_new ("recovered",
						  G_TYPE_FROM_CLASS (klass),
						  G_SIGNAL_RUN_LAST,
						  0,
						  NULL,
						  NULL,
						  NULL,
						  G_TYPE_NONE,
						  1,
						  G_TYPE_UINT64);

	/**
	 * ChatConnection::token-expiring:
	 * @self: the connection
	 *
	 * The token in use expires soon (at 80 % of its lifetime, or 30 seconds before its `exp`
	 * if that is earlier): call chat_connection_set_token() with a new one, now or later.
	 * Without one, the server closes the connection with 4001 once the token expired, and
	 * that close is final.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_TOKEN_EXPIRING] = g_signal_new ("token-expiring",
						       G_TYPE_FROM_CLASS (klass),
						       G_SIGNAL_RUN_LAST,
						       0,
						       NULL,
						       NULL,
						       NULL,
						       G_TYPE_NONE,
						       0);

	/**
	 * ChatConnection::attempt-failed:
	 * @self: the connection
	 * @error: why: a #GIOError such as %G_IO_ERROR_CONNECTION_REFUSED or
	 *   %G_IO_ERROR_HOST_NOT_FOUND, a TLS error, or %G_IO_ERROR_FAILED with the HTTP status
	 *   when the server refused the handshake with 429, 503 or another status that is
	 *   retried
	 * @retry_ms: the milliseconds until the next attempt
	 *
	 * An attempt to connect failed and the connection tries again after @retry_ms (the state
	 * is %CHAT_CONNECTION_STATE_RECONNECTING), so that an application can show why it is
	 * not connected. It is emitted for every failed attempt, the first one after
	 * chat_connection_open() included; an attempt refused for good is reported by
	 * #ChatConnection::closed instead.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_ATTEMPT_FAILED] = g_signal_new ("attempt-failed",
						       G_TYPE_FROM_CLASS (klass),
						       G_SIGNAL_RUN_LAST,
						       0,
						       NULL,
						       NULL,
						       NULL,
						       G_TYPE_NONE,
						       2,
						       G_TYPE_ERROR,
						       G_TYPE_UINT);
}

static void
chat_connection_init (ChatConnection *self)
{
	chat_i18n_init ();
	self->context = g_main_context_ref_thread_default ();
	self->session =
	    soup_session_new_with_options ("user-agent", "chathub/" CHAT_VERSION_STRING " ", NULL);
	self->backoff_min = BACKOFF_MIN_DEFAULT;
	self->backoff_max = BACKOFF_MAX_DEFAULT;
	self->room_order = g_array_new (FALSE, FALSE, sizeof (guint64));
	self->rooms = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, room_free);
	self->dm_ids = g_hash_table_new (g_int64_hash, g_int64_equal);
	g_queue_init (&self->pending);
	g_queue_init (&self->dm_id_order);
}

/* ---- public API ----------------------------------------------------------------------- */

/**
 * chat_connection_new:
 * @uri: the `ws://` or `wss://` URL of the server's `/ws`
 * @token: the JSON Web Token to authenticate with
 *
 * Creates a connection; nothing happens until chat_connection_open(). It belongs to the
 * thread-default #GMainContext of the calling thread.
 *
 * Returns: (transfer full): a new #ChatConnection
 *
 * Since: 1.0
 */
ChatConnection *
chat_connection_new (const char *uri, const char *token)
{
	g_return_val_if_fail (uri != NULL, NULL);
	g_return_val_if_fail (token != NULL, NULL);

	return g_object_new (CHAT_TYPE_CONNECTION, "uri", uri, "token", token, NULL);
}

/**
 * chat_connection_get_uri:
 * @self: a #ChatConnection
 *
 * Gets the URL the connection connects to.
 *
 * Returns: (nullable): the #ChatConnection:uri
 *
 * Since: 1.0
 */
const char *
chat_connection_get_uri (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	return self->uri;
}

/**
 * chat_connection_get_token:
 * @self: a #ChatConnection
 *
 * Gets the newest token given to the connection.
 *
 * Returns: (nullable): the newest token given, the one the next connection uses
 *
 * Since: 1.0
 */
const char *
chat_connection_get_token (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	return self->token;
}

/**
 * chat_connection_set_token:
 * @self: a #ChatConnection
 * @token: a new JSON Web Token for the same user
 *
 * Gives the connection a new token, typically from a #ChatConnection::token-expiring
 * handler. While connected it is sent to the server as a `refresh`: once accepted, the
 * connection lives until the new token's `exp`; if refused, #ChatConnection::error-received
 * reports `invalid_token` and the old token's deadline stands. Every later reconnect uses the
 * new token, and a 4001 close or an HTTP 401 that follows the new token is no longer final.
 *
 * Since: 1.0
 */
void
chat_connection_set_token (ChatConnection *self, const char *token)
{
	guint64 user_id;

	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (token != NULL);

	if (g_strcmp0 (self->token, token) == 0)
		return;
	g_free (self->token);
	self->token = g_strdup (token);
	self->token_serial++;
	user_id = token_user_id (token);
	if (user_id != self->user_id) {
		self->user_id = user_id;
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_USER_ID]);
	}
	if (is_open (self)) {
		g_autoptr (JsonObject) frame = json_object_new ();
		Pending *refresh;

		json_object_set_string_member (frame, "type", "refresh");
		json_object_set_string_member (frame, "token", token);
		refresh = send_frame (self, frame, PENDING_REFRESH, 0);
		refresh->serial = self->token_serial;
		refresh->token = g_strdup (token);
	}
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TOKEN]);
}

/**
 * chat_connection_get_state:
 * @self: a #ChatConnection
 *
 * Gets where the connection stands.
 *
 * Returns: the #ChatConnection:state
 *
 * Since: 1.0
 */
ChatConnectionState
chat_connection_get_state (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), CHAT_CONNECTION_STATE_DISCONNECTED);
	return self->state;
}

/**
 * chat_connection_get_user_id:
 * @self: a #ChatConnection
 *
 * Gets the user the token is for.
 *
 * Returns: the #ChatConnection:user-id, 0 if the token does not name one
 *
 * Since: 1.0
 */
guint64
chat_connection_get_user_id (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), 0);
	return self->user_id;
}

/**
 * chat_connection_get_backoff_min:
 * @self: a #ChatConnection
 *
 * Gets the bound of the first wait before reconnecting.
 *
 * Returns: the #ChatConnection:backoff-min, in milliseconds
 *
 * Since: 1.0
 */
guint
chat_connection_get_backoff_min (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), 0);
	return self->backoff_min;
}

/**
 * chat_connection_set_backoff_min:
 * @self: a #ChatConnection
 * @backoff_min: milliseconds, at least 1
 *
 * Sets the #ChatConnection:backoff-min.
 *
 * Since: 1.0
 */
void
chat_connection_set_backoff_min (ChatConnection *self, guint backoff_min)
{
	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (backoff_min >= 1 && backoff_min <= G_MAXINT32);

	if (self->backoff_min == backoff_min)
		return;
	self->backoff_min = backoff_min;
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BACKOFF_MIN]);
}

/**
 * chat_connection_get_backoff_max:
 * @self: a #ChatConnection
 *
 * Gets the bound of every wait before reconnecting.
 *
 * Returns: the #ChatConnection:backoff-max, in milliseconds
 *
 * Since: 1.0
 */
guint
chat_connection_get_backoff_max (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), 0);
	return self->backoff_max;
}

/**
 * chat_connection_set_backoff_max:
 * @self: a #ChatConnection
 * @backoff_max: milliseconds, at least 1
 *
 * Sets the #ChatConnection:backoff-max.
 *
 * Since: 1.0
 */
void
chat_connection_set_backoff_max (ChatConnection *self, guint backoff_max)
{
	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (backoff_max >= 1 && backoff_max <= G_MAXINT32);

	if (self->backoff_max == backoff_max)
		return;
	self->backoff_max = backoff_max;
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BACKOFF_MAX]);
}

/**
 * chat_connection_get_tls_database:
 * @self: a #ChatConnection
 *
 * Gets the #ChatConnection:tls-database.
 *
 * Returns: (transfer none) (nullable): the database set, or %NULL for the system's
 *
 * Since: 1.0
 */
GTlsDatabase *
chat_connection_get_tls_database (ChatConnection *self)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	return self->tls_database;
}

/**
 * chat_connection_set_tls_database:
 * @self: a #ChatConnection
 * @database: (nullable): the certificate authorities to trust, or %NULL for the system's
 *
 * Sets the #ChatConnection:tls-database. For a server whose certificate is in a PEM file
 * (its own, or its authority's), g_tls_file_database_new() makes one.
 *
 * Since: 1.0
 */
void
chat_connection_set_tls_database (ChatConnection *self, GTlsDatabase *database)
{
	GTlsDatabase *effective = database;

	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (database == NULL || G_IS_TLS_DATABASE (database));

	if (!g_set_object (&self->tls_database, database))
		return;
	/* libsoup fails every certificate with no database: NULL means the system's */
	if (effective == NULL)
		effective = g_tls_backend_get_default_database (g_tls_backend_get_default ());
	soup_session_set_tls_database (self->session, effective);
	if (effective != database)
		g_clear_object (&effective);
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TLS_DATABASE]);
}

/**
 * chat_connection_open:
 * @self: a #ChatConnection
 * @error: return location for a #GError
 *
 * Starts connecting (the state becomes %CHAT_CONNECTION_STATE_CONNECTING) and keeps the
 * connection up from then on, until chat_connection_close() or a final close. Nothing
 * happens if the connection is not %CHAT_CONNECTION_STATE_DISCONNECTED.
 *
 * Returns: %TRUE, or %FALSE with %CHAT_ERROR_INVALID_ARGUMENT if #ChatConnection:uri is not
 *   a `ws://` or `wss://` URL or there is no #ChatConnection:token
 *
 * Since: 1.0
 */
gboolean
chat_connection_open (ChatConnection *self, GError **error)
{
	g_autoptr (GUri) uri = NULL;

	g_return_val_if_fail (CHAT_IS_CONNECTION (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	if (self->uri != NULL)
		uri = g_uri_parse (self->uri, G_URI_FLAGS_ENCODED, NULL);
	if (uri == NULL || (g_strcmp0 (g_uri_get_scheme (uri), "ws") != 0 &&
			    g_strcmp0 (g_uri_get_scheme (uri), "wss") != 0)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("“%s” is not a ws:// or wss:// URL"),
			     self->uri != NULL ? self->uri : "");
		return FALSE;
	}
	if (self->token == NULL) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("The connection has no token"));
		return FALSE;
	}
	if (self->state != CHAT_CONNECTION_STATE_DISCONNECTED)
		return TRUE;
	self->attempt = 0;
	set_state (self, CHAT_CONNECTION_STATE_CONNECTING);
	start_attempt (self);
	return TRUE;
}

/**
 * chat_connection_close:
 * @self: a #ChatConnection
 *
 * Closes the connection (1000) or stops trying to reconnect: the state becomes
 * %CHAT_CONNECTION_STATE_DISCONNECTED and #ChatConnection::closed is emitted with code 1000,
 * final. Pending history and presence requests fail with %G_IO_ERROR_CONNECTION_CLOSED. The
 * rooms and the positions in them are kept: chat_connection_open() later recovers what was
 * sent meanwhile. Nothing happens if the connection is already disconnected.
 *
 * Since: 1.0
 */
void
chat_connection_close (ChatConnection *self)
{
	g_return_if_fail (CHAT_IS_CONNECTION (self));

	if (self->state == CHAT_CONNECTION_STATE_DISCONNECTED)
		return;
	g_object_ref (self);
	stop_attempt (self);
	drop_socket (self);
	go_disconnected (self, SOUP_WEBSOCKET_CLOSE_NORMAL, "");
	g_object_unref (self);
}

/**
 * chat_connection_join:
 * @self: a #ChatConnection
 * @room_id: the room, greater than 0
 *
 * Joins @room_id, now if connected and otherwise as soon as the connection is, and again
 * after every reconnect (recovering what was missed) until chat_connection_leave().
 * #ChatConnection::joined says when the server acknowledged it, #ChatConnection::error-received
 * if it refused; a room refused with `forbidden` (the token does not allow it) or
 * `limit_exceeded` is then no longer joined (see chat_connection_get_rooms()). Joining a room
 * already joined does nothing.
 *
 * Since: 1.0
 */
void
chat_connection_join (ChatConnection *self, guint64 room_id)
{
	g_autoptr (JsonObject) frame = NULL;
	Room *room;

	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (room_id > 0 && room_id <= G_MAXINT64);

	if (g_hash_table_contains (self->rooms, &room_id))
		return;
	room = g_new0 (Room, 1);
	room->room_id = room_id;
	g_hash_table_insert (self->rooms, &room->room_id, room);
	g_array_append_val (self->room_order, room_id);
	if (!is_open (self))
		return;
	frame = json_object_new ();
	json_object_set_string_member (frame, "type", "join");
	json_object_set_int_member (frame, "room_id", (gint64) room_id);
	send_frame (self, frame, PENDING_JOIN, room_id);
}

/**
 * chat_connection_leave:
 * @self: a #ChatConnection
 * @room_id: a room joined with chat_connection_join()
 * @error: return location for a #GError
 *
 * Leaves @room_id: it is no longer joined on reconnects, and if connected the server is told
 * (#ChatConnection::left follows).
 *
 * Returns: %TRUE, or %FALSE with %CHAT_ERROR_NOT_MEMBER if the room was not joined
 *
 * Since: 1.0
 */
gboolean
chat_connection_leave (ChatConnection *self, guint64 room_id, GError **error)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	if (!g_hash_table_remove (self->rooms, &room_id)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_NOT_MEMBER,
			     _ ("Room %" PRIu64 " was not joined"),
			     room_id);
		return FALSE;
	}
	for (guint i = 0; i < self->room_order->len; i++) {
		if (g_array_index (self->room_order, guint64, i) == room_id) {
			g_array_remove_index (self->room_order, i);
			break;
		}
	}
	if (is_open (self)) {
		g_autoptr (JsonObject) frame = json_object_new ();

		json_object_set_string_member (frame, "type", "leave");
		json_object_set_int_member (frame, "room_id", (gint64) room_id);
		send_frame (self, frame, PENDING_LEAVE, room_id);
	}
	return TRUE;
}

/**
 * chat_connection_get_rooms:
 * @self: a #ChatConnection
 * @n_rooms: (out): the number of rooms
 *
 * Lists the rooms the connection keeps joined.
 *
 * Returns: (array length=n_rooms) (transfer full): the rooms joined with
 *   chat_connection_join() and not left, in the order joined
 *
 * Since: 1.0
 */
guint64 *
chat_connection_get_rooms (ChatConnection *self, gsize *n_rooms)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	g_return_val_if_fail (n_rooms != NULL, NULL);

	*n_rooms = self->room_order->len;
	return g_memdup2 (self->room_order->data,
			  MAX (self->room_order->len, 1) * sizeof (guint64));
}

static gboolean
send_chat_message (ChatConnection *self,
		   const char *field,
		   guint64 address,
		   const char *content,
		   GError **error)
{
	g_autoptr (JsonObject) frame = NULL;

	if (!is_open (self)) {
		g_set_error_literal (error,
				     G_IO_ERROR,
				     G_IO_ERROR_NOT_CONNECTED,
				     _ ("The connection is not open"));
		return FALSE;
	}
	frame = json_object_new ();
	json_object_set_string_member (frame, "type", "message");
	json_object_set_int_member (frame, field, (gint64) address);
	json_object_set_string_member (frame, "content", content);
	send_frame (self, frame, PENDING_MESSAGE, address)->to_user = g_str_equal (field, "to");
	return TRUE;
}

/**
 * chat_connection_send_to_room:
 * @self: a #ChatConnection
 * @room_id: a room this connection joined
 * @content: the text
 * @error: return location for a #GError
 *
 * Sends @content to the members of @room_id. The server's echo, a #ChatConnection::message
 * with the message's id and offset, means it was stored; a refusal comes as
 * #ChatConnection::error-received. A message is not queued while the connection is down.
 *
 * Returns: %TRUE if it was sent, or %FALSE with %G_IO_ERROR_NOT_CONNECTED if the connection
 *   is not open
 *
 * Since: 1.0
 */
gboolean
chat_connection_send_to_room (ChatConnection *self,
			      guint64 room_id,
			      const char *content,
			      GError **error)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), FALSE);
	g_return_val_if_fail (room_id > 0 && room_id <= G_MAXINT64, FALSE);
	g_return_val_if_fail (content != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	return send_chat_message (self, "room_id", room_id, content, error);
}

/**
 * chat_connection_send_to_user:
 * @self: a #ChatConnection
 * @user_id: the addressee
 * @content: the text
 * @error: return location for a #GError
 *
 * Sends @content to every connection of @user_id (stored for later if it has none) and of
 * this connection's user. The echo comes as #ChatConnection::message.
 *
 * Returns: %TRUE if it was sent, or %FALSE with %G_IO_ERROR_NOT_CONNECTED if the connection
 *   is not open
 *
 * Since: 1.0
 */
gboolean
chat_connection_send_to_user (ChatConnection *self,
			      guint64 user_id,
			      const char *content,
			      GError **error)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), FALSE);
	g_return_val_if_fail (user_id > 0 && user_id <= G_MAXINT64, FALSE);
	g_return_val_if_fail (content != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	return send_chat_message (self, "to", user_id, content, error);
}

/* A request needs an open connection and, for a room, the room joined. */
static GTask *
start_request (ChatConnection *self,
	       guint64 room_id,
	       GCancellable *cancellable,
	       GAsyncReadyCallback callback,
	       gpointer user_data,
	       gpointer tag)
{
	g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);

	g_task_set_source_tag (task, tag);
	if (!is_open (self)) {
		g_task_return_new_error (task,
					 G_IO_ERROR,
					 G_IO_ERROR_NOT_CONNECTED,
					 _ ("The connection is not open"));
		return NULL;
	}
	if (!g_hash_table_contains (self->rooms, &room_id)) {
		g_task_return_new_error (task,
					 CHAT_ERROR,
					 CHAT_ERROR_NOT_MEMBER,
					 _ ("Room %" PRIu64 " was not joined"),
					 room_id);
		return NULL;
	}
	return g_steal_pointer (&task);
}

/**
 * chat_connection_request_history_async:
 * @self: a #ChatConnection
 * @room_id: a room joined with chat_connection_join()
 * @before: only messages with an offset below this one; 0 for the newest
 * @limit: at most this many messages (the server allows up to 100); 0 for 50
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Asks the server for stored messages of @room_id. To page back, pass the offset of the
 * first message of the previous answer as @before.
 *
 * Since: 1.0
 */
void
chat_connection_request_history_async (ChatConnection *self,
				       guint64 room_id,
				       guint64 before,
				       guint limit,
				       GCancellable *cancellable,
				       GAsyncReadyCallback callback,
				       gpointer user_data)
{
	g_autoptr (GTask) task = NULL;

	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (room_id > 0 && room_id <= G_MAXINT64);
	g_return_if_fail (before <= G_MAXINT64);
	g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

	task = start_request (self,
			      room_id,
			      cancellable,
			      callback,
			      user_data,
			      chat_connection_request_history_async);
	if (task != NULL)
		send_history_request (self, room_id, before, limit, task);
}

/**
 * chat_connection_request_history_finish:
 * @self: a #ChatConnection
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes chat_connection_request_history_async().
 *
 * Returns: (transfer container) (element-type ChatMessage): the messages, oldest first
 *   (empty: nothing older is kept), or %NULL with %G_IO_ERROR_NOT_CONNECTED,
 *   %G_IO_ERROR_CONNECTION_CLOSED (the connection closed before the answer),
 *   %CHAT_ERROR_NOT_MEMBER (the room was not joined, or the server refused its join) or
 *   another #ChatError the server answered with (such as %CHAT_ERROR_RATE_LIMITED)
 *
 * Since: 1.0
 */
GPtrArray *
chat_connection_request_history_finish (ChatConnection *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	g_return_val_if_fail (g_task_is_valid (result, self), NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * chat_connection_request_presence_async:
 * @self: a #ChatConnection
 * @room_id: a room joined with chat_connection_join()
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Asks the server which users have a connection in @room_id.
 *
 * Since: 1.0
 */
void
chat_connection_request_presence_async (ChatConnection *self,
					guint64 room_id,
					GCancellable *cancellable,
					GAsyncReadyCallback callback,
					gpointer user_data)
{
	g_autoptr (GTask) task = NULL;
	g_autoptr (JsonObject) frame = NULL;

	g_return_if_fail (CHAT_IS_CONNECTION (self));
	g_return_if_fail (room_id > 0 && room_id <= G_MAXINT64);
	g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

	task = start_request (self,
			      room_id,
			      cancellable,
			      callback,
			      user_data,
			      chat_connection_request_presence_async);
	if (task == NULL)
		return;
	frame = json_object_new ();
	json_object_set_string_member (frame, "type", "presence");
	json_object_set_int_member (frame, "room_id", (gint64) room_id);
	send_frame (self, frame, PENDING_PRESENCE, room_id)->task = g_steal_pointer (&task);
}

/**
 * chat_connection_request_presence_finish:
 * @self: a #ChatConnection
 * @result: the #GAsyncResult given to the callback
 * @n_users: (out): the number of users
 * @error: return location for a #GError
 *
 * Finishes chat_connection_request_presence_async().
 *
 * Returns: (array length=n_users) (transfer full) (nullable): the users with a connection in
 *   the room, ascending, or %NULL with an error as for
 *   chat_connection_request_history_finish()
 *
 * Since: 1.0
 */
guint64 *
chat_connection_request_presence_finish (ChatConnection *self,
					 GAsyncResult *result,
					 gsize *n_users,
					 GError **error)
{
	g_autoptr (GArray) users = NULL;

	g_return_val_if_fail (CHAT_IS_CONNECTION (self), NULL);
	g_return_val_if_fail (g_task_is_valid (result, self), NULL);
	g_return_val_if_fail (n_users != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	*n_users = 0;
	users = g_task_propagate_pointer (G_TASK (result), error);
	if (users == NULL)
		return NULL;
	*n_users = users->len;
	/* never NULL without an error, even for no users */
	return g_memdup2 (users->data, MAX (users->len, 1) * sizeof (guint64));
}
