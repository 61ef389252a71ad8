/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>

#include "chat-error.h"
#include "chat-hub-private.h"
#include "chat-i18n-private.h"
#include "chat-message-private.h"
#include "chat-store.h" /* TEMPORARY: ChatHub:store */

/**
 * SECTION:chat-hub
 * @title: ChatHub
 * @short_description: the set of clients and rooms, and the one place messages are routed
 *
 * A #ChatHub owns the registered clients and the rooms they joined, and routes every message:
 * to everyone, to the members of a room, or to every connection of a user. It is the only
 * place that assigns message ids (strictly increasing) and timestamps, and the only place
 * that decides who receives what, so a pub/sub bridge between several nodes or a history
 * store can hook in at one point later.
 *
 * Each relayed message is serialized and framed once; every recipient's outbox then takes a
 * reference to the same bytes.
 *
 * A hub, its servers and its clients are not thread-safe: create them and call them on the
 * thread that runs their #GMainContext (the thread-default context when the server was
 * created), as with libsoup's objects.
 */

/**
 * ChatHub:
 *
 * The set of registered clients and rooms. All its fields are private.
 *
 * Since: 1.0
 */

typedef struct {
	guint64 id;
	GPtrArray *members; /* ChatClient*, unowned; ChatClientRoom.slot is the index */
} ChatRoom;

typedef struct {
	guint64 id;
	GPtrArray *clients; /* ChatClient*, unowned */
} ChatUser;

struct _ChatHub {
	GObject parent_instance;

	GHashTable *clients_by_id; /* id -> ChatClient*, owned */
	GPtrArray *clients;	   /* ChatClient*, unowned; the client's hub slot is the index */
	GHashTable *users;	   /* &ChatUser.id -> ChatUser*, owned */
	GHashTable *rooms;	   /* &ChatRoom.id -> ChatRoom*, owned */
	guint64 last_message_id;
	guint64 messages_relayed;
};

G_DEFINE_FINAL_TYPE (ChatHub, chat_hub, G_TYPE_OBJECT)

enum { PROP_0, PROP_N_CLIENTS, PROP_N_ROOMS, PROP_STORE, N_PROPS };
static GParamSpec *props[N_PROPS];

enum {
	SIGNAL_CLIENT_REGISTERED,
	SIGNAL_CLIENT_UNREGISTERED,
	SIGNAL_BROADCAST,
	SIGNAL_ROOM_JOINED,
	SIGNAL_ROOM_LEFT,
	N_SIGNALS
};
static guint signals[N_SIGNALS];

static void
room_free (ChatRoom *room)
{
	g_ptr_array_unref (room->members);
	g_free (room);
}

static void
user_free (ChatUser *user)
{
	g_ptr_array_unref (user->clients);
	g_free (user);
}

static void
chat_hub_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatHub *self = CHAT_HUB (object);

	switch (prop_id) {
	case PROP_N_CLIENTS:
		g_value_set_uint (value, self->clients->len);
		break;
	case PROP_N_ROOMS:
		g_value_set_uint (value, g_hash_table_size (self->rooms));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

/* TEMPORARY: accepts ChatHub:store and ignores it until the hub's store wiring is merged */
static void
chat_hub_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
	switch (prop_id) {
	case PROP_STORE:
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_hub_dispose (GObject *object)
{
	ChatHub *self = CHAT_HUB (object);
	GHashTableIter iter;
	gpointer value;

	/* clients outlive the hub only as plain objects: cut their way back to us */
	if (self->clients_by_id != NULL) {
		g_hash_table_iter_init (&iter, self->clients_by_id);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			ChatClient *client = value;

			chat_client_set_hub (client, NULL, 0);
			chat_client_clear_rooms (client);
		}
	}
	g_clear_pointer (&self->clients_by_id, g_hash_table_unref);
	G_OBJECT_CLASS (chat_hub_parent_class)->dispose (object);
}

static void
chat_hub_finalize (GObject *object)
{
	ChatHub *self = CHAT_HUB (object);

	g_ptr_array_unref (self->clients);
	g_hash_table_unref (self->users);
	g_hash_table_unref (self->rooms);
	G_OBJECT_CLASS (chat_hub_parent_class)->finalize (object);
}

static void
chat_hub_class_init (ChatHubClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();

	object_class->get_property = chat_hub_get_property;
	object_class->set_property = chat_hub_set_property;
	object_class->dispose = chat_hub_dispose;
	object_class->finalize = chat_hub_finalize;

	/**
	 * ChatHub:n-clients:
	 *
	 * The number of registered clients (connections).
	 *
	 * Since: 1.0
	 */
	props[PROP_N_CLIENTS] =
	    g_param_spec_uint ("n-clients",
			       NULL,
			       "The number of registered clients (connections)",
			       0,
			       G_MAXUINT,
			       0,
			       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatHub:n-rooms:
	 *
	 * The number of rooms with at least one member.
	 *
	 * Since: 1.0
	 */
	props[PROP_N_ROOMS] =
	    g_param_spec_uint ("n-rooms",
			       NULL,
			       "The number of rooms with at least one member",
			       0,
			       G_MAXUINT,
			       0,
			       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatHub:store:
	 *
	 * TEMPORARY: the message store, ignored until the hub's store wiring is merged.
	 *
	 * Since: 1.0
	 */
	props[PROP_STORE] = g_param_spec_object ("store",
						 NULL,
						 "The message store",
						 CHAT_TYPE_STORE,
						 G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY |
						     G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties (object_class, N_PROPS, props);

	/**
	 * ChatHub::client-registered:
	 * @self: the #ChatHub
	 * @client: the new client
	 *
	 * Emitted when a client joins the hub, i.e. a WebSocket connection was accepted.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_CLIENT_REGISTERED] = g_signal_new ("client-registered",
							  G_TYPE_FROM_CLASS (klass),
							  G_SIGNAL_RUN_LAST,
							  0,
							  NULL,
							  NULL,
							  NULL,
							  G_TYPE_NONE,
							  1,
							  CHAT_TYPE_CLIENT);
	/**
	 * ChatHub::client-unregistered:
	 * @self: the #ChatHub
	 * @client: the client that left
	 * @code: its close code (see #ChatClient::closed), or 0 when unregistered while open
	 *
	 * Emitted when a client left the hub, after it left all its rooms.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_CLIENT_UNREGISTERED] = g_signal_new ("client-unregistered",
							    G_TYPE_FROM_CLASS (klass),
							    G_SIGNAL_RUN_LAST,
							    0,
							    NULL,
							    NULL,
							    NULL,
							    G_TYPE_NONE,
							    2,
							    CHAT_TYPE_CLIENT,
							    G_TYPE_UINT);
	/**
	 * ChatHub::broadcast:
	 * @self: the #ChatHub
	 * @message: the message, with its id and timestamp
	 *
	 * Emitted for every message relayed to everyone on the hub (neither a room nor a user),
	 * whether a client sent it or the service with chat_hub_send_to_all().
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_BROADCAST] = g_signal_new ("broadcast",
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
	 * ChatHub::room-joined:
	 * @self: the #ChatHub
	 * @client: the client
	 * @room_id: the room
	 *
	 * Emitted when @client joined @room_id (not when it joins again).
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_ROOM_JOINED] = g_signal_new ("room-joined",
						    G_TYPE_FROM_CLASS (klass),
						    G_SIGNAL_RUN_LAST,
						    0,
						    NULL,
						    NULL,
						    NULL,
						    G_TYPE_NONE,
						    2,
						    CHAT_TYPE_CLIENT,
						    G_TYPE_UINT64);
	/**
	 * ChatHub::room-left:
	 * @self: the #ChatHub
	 * @client: the client
	 * @room_id: the room
	 *
	 * Emitted when @client left @room_id, including when it disconnected.
	 *
	 * Since: 1.0
	 */
	signals[SIGNAL_ROOM_LEFT] = g_signal_new ("room-left",
						  G_TYPE_FROM_CLASS (klass),
						  G_SIGNAL_RUN_LAST,
						  0,
						  NULL,
						  NULL,
						  NULL,
						  G_TYPE_NONE,
						  2,
						  CHAT_TYPE_CLIENT,
						  G_TYPE_UINT64);
}

static void
chat_hub_init (ChatHub *self)
{
	self->clients_by_id = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_object_unref);
	self->clients = g_ptr_array_new ();
	self->users =
	    g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, (GDestroyNotify) user_free);
	self->rooms =
	    g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, (GDestroyNotify) room_free);
}

/**
 * chat_hub_new:
 *
 * Creates an empty hub.
 *
 * Returns: (transfer full): a new #ChatHub
 *
 * Since: 1.0
 */
ChatHub *
chat_hub_new (void)
{
	return g_object_new (CHAT_TYPE_HUB, NULL);
}

/* ---- the routing core: ids, frames, recipients ---------------------------------------- */

/* The one place message ids come from. */
static void
stamp_message (ChatHub *self, ChatMessage *message, guint64 from)
{
	chat_message_stamp (message, ++self->last_message_id, from);
}

static guint
push_to_clients (GPtrArray *clients, GBytes *frame)
{
	guint delivered = 0;

	/* a push can close a slow consumer, which never changes membership synchronously */
	for (guint i = 0; i < clients->len; i++) {
		ChatClient *client = clients->pdata[i];

		if (chat_client_push_frame (client, frame))
			delivered++;
	}
	return delivered;
}

static ChatUser *
lookup_user (ChatHub *self, guint64 user_id)
{
	return g_hash_table_lookup (self->users, &user_id);
}

static ChatRoom *
lookup_room (ChatHub *self, guint64 room_id)
{
	return g_hash_table_lookup (self->rooms, &room_id);
}

/* Routes a stamped `message` event: the one place that decides who receives what. */
static guint
route_message (ChatHub *self, ChatMessage *message, guint64 sender_user)
{
	g_autoptr (GBytes) frame = chat_message_to_frame (message);
	guint64 room_id = chat_message_get_room_id (message);
	guint64 to = chat_message_get_to (message);
	guint delivered = 0;

	self->messages_relayed++;
	if (room_id != 0) {
		ChatRoom *room = lookup_room (self, room_id);

		if (room != NULL)
			delivered = push_to_clients (room->members, frame);
	} else if (to != 0) {
		ChatUser *user = lookup_user (self, to);

		if (user != NULL)
			delivered = push_to_clients (user->clients, frame);
		/* the sender's other devices stay in sync */
		if (sender_user != 0 && sender_user != to) {
			user = lookup_user (self, sender_user);
			if (user != NULL)
				delivered += push_to_clients (user->clients, frame);
		}
	} else {
		delivered = push_to_clients (self->clients, frame);
		if (g_signal_has_handler_pending (self, signals[SIGNAL_BROADCAST], 0, FALSE))
			g_signal_emit (self, signals[SIGNAL_BROADCAST], 0, message);
	}
	return delivered;
}

static GBytes *
build_room_event (ChatMessageType type, guint64 room_id, guint64 user_id)
{
	g_autoptr (ChatMessage) event = chat_message_new (type);

	chat_message_set_room_id (event, room_id);
	chat_message_stamp (event, 0, user_id);
	return chat_message_to_frame (event);
}

/* ---- membership ----------------------------------------------------------------------- */

/* Returns the room, created if it was empty. */
static ChatRoom *
room_add (ChatHub *self, guint64 room_id, ChatClient *client)
{
	ChatRoom *room = lookup_room (self, room_id);

	if (room == NULL) {
		room = g_new0 (ChatRoom, 1);
		room->id = room_id;
		room->members = g_ptr_array_new ();
		g_hash_table_insert (self->rooms, &room->id, room);
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_ROOMS]);
	}
	chat_client_add_room (client, room_id, room->members->len);
	g_ptr_array_add (room->members, client);
	return room;
}

/* Returns the room, or NULL if @client was its last member (or not one). */
static ChatRoom *
room_remove (ChatHub *self, guint64 room_id, ChatClient *client)
{
	ChatRoom *room = lookup_room (self, room_id);
	ChatClientRoom *entry = chat_client_find_room (client, room_id);
	guint slot, last;

	if (room == NULL || entry == NULL)
		return NULL;
	slot = entry->slot;
	last = room->members->len - 1;
	g_assert (room->members->pdata[slot] == client);
	if (slot != last) {
		ChatClient *moved = room->members->pdata[last];

		room->members->pdata[slot] = moved;
		chat_client_find_room (moved, room_id)->slot = slot;
	}
	g_ptr_array_set_size (room->members, last);
	chat_client_remove_room (client, room_id);
	if (room->members->len == 0) {
		g_hash_table_remove (self->rooms, &room_id);
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_ROOMS]);
		return NULL;
	}
	return room;
}

static void
join_room (ChatHub *self, ChatClient *client, guint64 room_id)
{
	g_autoptr (GBytes) event =
	    build_room_event (CHAT_MESSAGE_TYPE_JOIN, room_id, chat_client_get_user_id (client));

	if (chat_client_find_room (client, room_id) != NULL) {
		/* joining twice: the ack again, nothing new for the others */
		chat_client_push_frame (client, event);
		return;
	}
	push_to_clients (room_add (self, room_id, client)->members, event);
	g_signal_emit (self, signals[SIGNAL_ROOM_JOINED], 0, client, room_id);
}

static void
leave_room (ChatHub *self, ChatClient *client, guint64 room_id, gboolean ack)
{
	g_autoptr (GBytes) event = NULL;
	ChatRoom *room = room_remove (self, room_id, client);

	/* a client leaving many rooms of its own on disconnect builds no frame for them */
	if (room != NULL || ack)
		event = build_room_event (CHAT_MESSAGE_TYPE_LEAVE,
					  room_id,
					  chat_client_get_user_id (client));
	if (room != NULL)
		push_to_clients (room->members, event);
	if (ack)
		chat_client_push_frame (client, event);
	g_signal_emit (self, signals[SIGNAL_ROOM_LEFT], 0, client, room_id);
}

/* ---- client messages ------------------------------------------------------------------ */

static void
send_pong (ChatClient *client)
{
	g_autoptr (ChatMessage) pong = chat_message_new (CHAT_MESSAGE_TYPE_PONG);

	chat_message_stamp (pong, 0, 0);
	chat_client_send (client, pong);
}

/* Wire errors are English and machine-readable; the code is what clients act on. */
static void
refuse (ChatClient *client, ChatError code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
refuse (ChatClient *client, ChatError code, const char *format, ...)
{
	g_autofree char *text = NULL;
	va_list args;

	va_start (args, format);
	text = g_strdup_vprintf (format, args);
	va_end (args);
	chat_client_send_error (client, code, text);
}

/* What a message must satisfy whoever sends it, a client or the service: English for the
 * wire (@translate FALSE), translated for the API. */
static gboolean
check_sendable (ChatHub *self, ChatMessage *message, guint64 to, gboolean translate, GError **error)
{
	if (chat_message_get_content (message) == NULL && !chat_message_has_data (message)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     translate ? _ ("A message needs content or data")
					       : "A message needs \"content\" or \"data\"");
		return FALSE;
	}
	if (to != 0 && lookup_user (self, to) == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_USER_OFFLINE,
			     translate ? _ ("User %" PRIu64 " is not connected")
				       : "User %" PRIu64 " is not connected",
			     to);
		return FALSE;
	}
	return TRUE;
}

static void
handle_chat_message (ChatHub *self, ChatClient *client, ChatMessage *message)
{
	g_autoptr (GError) error = NULL;
	guint64 room_id = chat_message_get_room_id (message);
	guint64 to = chat_message_get_to (message);

	if (room_id != 0 && to != 0) {
		refuse (client,
			CHAT_ERROR_INVALID_MESSAGE,
			"A message cannot have both \"to\" and \"room_id\"");
		return;
	}
	if (!check_sendable (self, message, to, FALSE, &error)) {
		chat_client_send_error (client, error->code, error->message);
		return;
	}
	if (room_id != 0 && chat_client_find_room (client, room_id) == NULL) {
		refuse (client,
			CHAT_ERROR_NOT_MEMBER,
			"You have not joined room %" G_GUINT64_FORMAT,
			room_id);
		return;
	}
	stamp_message (self, message, chat_client_get_user_id (client));
	route_message (self, message, chat_client_get_user_id (client));
}

void
chat_hub_handle_client_message (ChatHub *self, ChatClient *client, ChatMessage *message)
{
	guint64 room_id = chat_message_get_room_id (message);

	switch (chat_message_get_message_type (message)) {
	case CHAT_MESSAGE_TYPE_PING:
		send_pong (client);
		break;
	case CHAT_MESSAGE_TYPE_PONG:
		break; /* liveness only */
	case CHAT_MESSAGE_TYPE_MESSAGE:
		handle_chat_message (self, client, message);
		break;
	case CHAT_MESSAGE_TYPE_JOIN:
		if (room_id == 0)
			refuse (client,
				CHAT_ERROR_INVALID_MESSAGE,
				"Field \"room_id\" is required");
		else if (!chat_client_may_join (client, room_id))
			refuse (client,
				CHAT_ERROR_FORBIDDEN,
				"Your token does not allow room %" G_GUINT64_FORMAT,
				room_id);
		else if (chat_client_room_limit_reached (client, room_id))
			refuse (client,
				CHAT_ERROR_LIMIT_EXCEEDED,
				"You cannot join more than %u rooms",
				chat_client_get_max_rooms (client));
		else
			join_room (self, client, room_id);
		break;
	case CHAT_MESSAGE_TYPE_LEAVE:
		if (room_id == 0)
			refuse (client,
				CHAT_ERROR_INVALID_MESSAGE,
				"Field \"room_id\" is required");
		else if (chat_client_find_room (client, room_id) == NULL)
			refuse (client,
				CHAT_ERROR_NOT_MEMBER,
				"You have not joined room %" G_GUINT64_FORMAT,
				room_id);
		else
			leave_room (self, client, room_id, TRUE);
		break;
	case CHAT_MESSAGE_TYPE_ERROR:
	default:
		refuse (client,
			CHAT_ERROR_INVALID_MESSAGE,
			"Clients cannot send messages of type \"error\"");
		break;
	}
}

GPtrArray *
chat_hub_get_clients_unowned (ChatHub *self)
{
	return self->clients;
}

/* ---- registration --------------------------------------------------------------------- */

/* Adds @client, a connection #ChatServer accepted, to the hub; it is unregistered
 * automatically when it closes. Private: only the server can create a client. */
void
chat_hub_register_client (ChatHub *self, ChatClient *client)
{
	ChatUser *user;

	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (CHAT_IS_CLIENT (client));
	g_return_if_fail (chat_client_get_hub (client) == NULL);

	chat_client_set_hub (client, self, self->clients->len);
	g_ptr_array_add (self->clients, client);
	g_hash_table_insert (self->clients_by_id,
			     (gpointer) chat_client_get_id (client),
			     g_object_ref (client));
	user = lookup_user (self, chat_client_get_user_id (client));
	if (user == NULL) {
		user = g_new0 (ChatUser, 1);
		user->id = chat_client_get_user_id (client);
		user->clients = g_ptr_array_new ();
		g_hash_table_insert (self->users, &user->id, user);
	}
	g_ptr_array_add (user->clients, client);

	g_signal_emit (self, signals[SIGNAL_CLIENT_REGISTERED], 0, client);
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_CLIENTS]);
}

/* Removes @client from the hub: it leaves all its rooms (their members get a `leave` event)
 * and receives nothing more; an open client is also closed with 1000. Private: outside code
 * ends a connection with chat_client_close(), which comes here once it has closed, rather
 * than leave an open connection that no hub routes to. */
void
chat_hub_unregister_client (ChatHub *self, ChatClient *client)
{
	g_autoptr (ChatClient) keep = NULL;
	ChatUser *user;
	guint64 user_id;
	guint slot, last, n_rooms;

	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (CHAT_IS_CLIENT (client));
	g_return_if_fail (chat_client_get_hub (client) == self);

	keep = g_object_ref (client);
	user_id = chat_client_get_user_id (client);
	while ((n_rooms = chat_client_get_n_rooms (client)) > 0)
		leave_room (self,
			    client,
			    chat_client_get_room (client, n_rooms - 1)->room_id,
			    FALSE);

	slot = chat_client_get_hub_slot (client);
	last = self->clients->len - 1;
	if (slot != last) {
		ChatClient *moved = self->clients->pdata[last];

		self->clients->pdata[slot] = moved;
		chat_client_set_hub_slot (moved, slot);
	}
	g_ptr_array_set_size (self->clients, last);
	user = lookup_user (self, user_id);
	if (user != NULL) {
		g_ptr_array_remove_fast (user->clients, client);
		if (user->clients->len == 0)
			g_hash_table_remove (self->users, &user_id);
	}
	chat_client_set_hub (client, NULL, 0);
	g_hash_table_remove (self->clients_by_id, chat_client_get_id (client));

	g_signal_emit (self,
		       signals[SIGNAL_CLIENT_UNREGISTERED],
		       0,
		       client,
		       (guint) chat_client_get_close_code (client));
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_CLIENTS]);
	/* does nothing if it is closed already */
	chat_client_close (client, CHAT_CLOSE_CODE_NORMAL, NULL);
}

/* ---- queries -------------------------------------------------------------------------- */

/**
 * chat_hub_get_n_clients:
 * @self: a #ChatHub
 *
 * Gets the number of registered clients.
 *
 * Returns: the number of connections
 *
 * Since: 1.0
 */
guint
chat_hub_get_n_clients (ChatHub *self)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	return self->clients->len;
}

/**
 * chat_hub_get_n_rooms:
 * @self: a #ChatHub
 *
 * Gets the number of rooms with at least one member.
 *
 * Returns: the number of rooms
 *
 * Since: 1.0
 */
guint
chat_hub_get_n_rooms (ChatHub *self)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	return g_hash_table_size (self->rooms);
}

/**
 * chat_hub_get_messages_relayed:
 * @self: a #ChatHub
 *
 * Gets how many `message` events the hub relayed since it was created.
 *
 * Returns: the count
 *
 * Since: 1.0
 */
guint64
chat_hub_get_messages_relayed (ChatHub *self)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	return self->messages_relayed;
}

static GPtrArray *
copy_clients (GPtrArray *clients)
{
	GPtrArray *copy = g_ptr_array_new_full (clients != NULL ? clients->len : 0, g_object_unref);

	for (guint i = 0; clients != NULL && i < clients->len; i++)
		g_ptr_array_add (copy, g_object_ref (clients->pdata[i]));
	return copy;
}

/**
 * chat_hub_list_clients:
 * @self: a #ChatHub
 *
 * Lists the registered clients.
 *
 * Returns: (transfer container) (element-type ChatClient): the clients
 *
 * Since: 1.0
 */
GPtrArray *
chat_hub_list_clients (ChatHub *self)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	return copy_clients (self->clients);
}

/**
 * chat_hub_lookup_client:
 * @self: a #ChatHub
 * @client_id: a client id
 *
 * Finds a registered client by its id.
 *
 * Returns: (transfer none) (nullable): the client, or %NULL
 *
 * Since: 1.0
 */
ChatClient *
chat_hub_lookup_client (ChatHub *self, const char *client_id)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	g_return_val_if_fail (client_id != NULL, NULL);
	return g_hash_table_lookup (self->clients_by_id, client_id);
}

/**
 * chat_hub_list_user_clients:
 * @self: a #ChatHub
 * @user_id: a user id
 *
 * Lists the connections of one user.
 *
 * Returns: (transfer container) (element-type ChatClient): the clients, possibly none
 *
 * Since: 1.0
 */
GPtrArray *
chat_hub_list_user_clients (ChatHub *self, guint64 user_id)
{
	ChatUser *user;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	user = lookup_user (self, user_id);
	return copy_clients (user != NULL ? user->clients : NULL);
}

/**
 * chat_hub_list_rooms:
 * @self: a #ChatHub
 * @n_rooms: (out): return location for the number of rooms
 *
 * Lists the rooms with at least one member, in no particular order.
 *
 * Returns: (array length=n_rooms) (transfer full) (nullable): the room ids
 *
 * Since: 1.0
 */
guint64 *
chat_hub_list_rooms (ChatHub *self, gsize *n_rooms)
{
	GHashTableIter iter;
	gpointer value;
	guint64 *rooms;
	gsize i = 0;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	g_return_val_if_fail (n_rooms != NULL, NULL);

	*n_rooms = g_hash_table_size (self->rooms);
	if (*n_rooms == 0)
		return NULL;
	rooms = g_new (guint64, *n_rooms);
	g_hash_table_iter_init (&iter, self->rooms);
	while (g_hash_table_iter_next (&iter, NULL, &value))
		rooms[i++] = ((ChatRoom *) value)->id;
	return rooms;
}

/**
 * chat_hub_list_room_members:
 * @self: a #ChatHub
 * @room_id: a room id
 *
 * Lists the connections that joined @room_id.
 *
 * Returns: (transfer container) (element-type ChatClient): the members, possibly none
 *
 * Since: 1.0
 */
GPtrArray *
chat_hub_list_room_members (ChatHub *self, guint64 room_id)
{
	ChatRoom *room;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	room = lookup_room (self, room_id);
	return copy_clients (room != NULL ? room->members : NULL);
}

/**
 * chat_hub_get_n_room_members:
 * @self: a #ChatHub
 * @room_id: a room id
 *
 * Counts the connections that joined @room_id, without copying the list.
 *
 * Returns: the number of members, 0 for an unknown room
 *
 * Since: 1.0
 */
guint
chat_hub_get_n_room_members (ChatHub *self, guint64 room_id)
{
	ChatRoom *room;

	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	room = lookup_room (self, room_id);
	return room != NULL ? room->members->len : 0;
}

/* ---- the public routing API ----------------------------------------------------------- */

/**
 * chat_hub_join_room:
 * @self: a #ChatHub
 * @client: a registered client
 * @room_id: the room, greater than 0
 * @error: return location for a #GError
 *
 * Makes @client join @room_id as if it had sent a `join`: the members, @client included,
 * get the `join` event.
 *
 * Returns: %TRUE on success; %FALSE with %CHAT_ERROR_FORBIDDEN if the client's token does
 *   not allow the room, or %CHAT_ERROR_LIMIT_EXCEEDED if the client is in as many rooms as
 *   #ChatServer:max-rooms allows
 *
 * Since: 1.0
 */
gboolean
chat_hub_join_room (ChatHub *self, ChatClient *client, guint64 room_id, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), FALSE);
	g_return_val_if_fail (CHAT_IS_CLIENT (client) && chat_client_get_hub (client) == self,
			      FALSE);
	g_return_val_if_fail (room_id > 0, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	if (!chat_client_may_join (client, room_id)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_FORBIDDEN,
			     _ ("Client %s may not join room %" PRIu64),
			     chat_client_get_id (client),
			     room_id);
		return FALSE;
	}
	if (chat_client_room_limit_reached (client, room_id)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_LIMIT_EXCEEDED,
			     _ ("Client %s is already in %u rooms, its limit"),
			     chat_client_get_id (client),
			     chat_client_get_n_rooms (client));
		return FALSE;
	}
	join_room (self, client, room_id);
	return TRUE;
}

/**
 * chat_hub_leave_room:
 * @self: a #ChatHub
 * @client: a registered client
 * @room_id: the room
 * @error: return location for a #GError
 *
 * Makes @client leave @room_id as if it had sent a `leave`.
 *
 * Returns: %TRUE on success; %FALSE with %CHAT_ERROR_NOT_MEMBER if it was not a member
 *
 * Since: 1.0
 */
gboolean
chat_hub_leave_room (ChatHub *self, ChatClient *client, guint64 room_id, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), FALSE);
	g_return_val_if_fail (CHAT_IS_CLIENT (client) && chat_client_get_hub (client) == self,
			      FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	if (chat_client_find_room (client, room_id) == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_NOT_MEMBER,
			     _ ("Client %s is not in room %" PRIu64),
			     chat_client_get_id (client),
			     room_id);
		return FALSE;
	}
	leave_room (self, client, room_id, TRUE);
	return TRUE;
}

/* The service's sends: check, address, stamp and route, like a client's message. */
static guint
relay_from_service (ChatHub *self,
		    ChatMessage *message,
		    guint64 room_id,
		    guint64 to,
		    GError **error)
{
	if (chat_message_get_message_type (message) != CHAT_MESSAGE_TYPE_MESSAGE) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     _ ("Only messages of type “message” can be sent"));
		return 0;
	}
	if (!check_sendable (self, message, to, TRUE, error))
		return 0;
	chat_message_set_room_id (message, room_id);
	chat_message_set_to (message, to);
	stamp_message (self, message, chat_message_get_from (message));
	return route_message (self, message, 0);
}

/**
 * chat_hub_send_to_all:
 * @self: a #ChatHub
 * @message: a `message` with content or data; its `to` and `room_id` are cleared
 * @error: return location for a #GError
 *
 * Relays @message to every connection on the hub, as the service: @message gets the next id
 * and the current timestamp, and keeps its #ChatMessage:from (0 means the service itself).
 * #ChatHub::broadcast is emitted.
 *
 * Returns: the number of connections it was queued for; 0 with @error set on failure
 *   (%CHAT_ERROR_INVALID_MESSAGE)
 *
 * Since: 1.0
 */
guint
chat_hub_send_to_all (ChatHub *self, ChatMessage *message, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	g_return_val_if_fail (CHAT_IS_MESSAGE (message), 0);
	g_return_val_if_fail (error == NULL || *error == NULL, 0);

	return relay_from_service (self, message, 0, 0, error);
}

/**
 * chat_hub_send_to_room:
 * @self: a #ChatHub
 * @room_id: the room, greater than 0
 * @message: a `message` with content or data
 * @error: return location for a #GError
 *
 * Relays @message to every member of @room_id, as the service (see chat_hub_send_to_all()).
 *
 * Returns: the number of connections it was queued for (0 for an empty room); 0 with @error
 *   set on failure
 *
 * Since: 1.0
 */
guint
chat_hub_send_to_room (ChatHub *self, guint64 room_id, ChatMessage *message, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	g_return_val_if_fail (CHAT_IS_MESSAGE (message), 0);
	g_return_val_if_fail (error == NULL || *error == NULL, 0);

	if (room_id == 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("Room ids start at 1"));
		return 0;
	}
	return relay_from_service (self, message, room_id, 0, error);
}

/**
 * chat_hub_send_to_user:
 * @self: a #ChatHub
 * @user_id: the user, greater than 0
 * @message: a `message` with content or data
 * @error: return location for a #GError
 *
 * Relays @message to every connection of @user_id, as the service (see
 * chat_hub_send_to_all()).
 *
 * Returns: the number of connections it was queued for; 0 with @error set on failure
 *   (%CHAT_ERROR_USER_OFFLINE if the user has no connection)
 *
 * Since: 1.0
 */
guint
chat_hub_send_to_user (ChatHub *self, guint64 user_id, ChatMessage *message, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	g_return_val_if_fail (CHAT_IS_MESSAGE (message), 0);
	g_return_val_if_fail (error == NULL || *error == NULL, 0);

	if (user_id == 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("User ids start at 1"));
		return 0;
	}
	return relay_from_service (self, message, 0, user_id, error);
}

/**
 * chat_hub_close_all:
 * @self: a #ChatHub
 * @code: the close code, e.g. %CHAT_CLOSE_CODE_GOING_AWAY on shutdown
 * @reason: (nullable): a short English reason
 *
 * Starts closing every client. They unregister as their connections finish closing; wait for
 * #ChatHub:n-clients to reach 0.
 *
 * Returns: the number of clients asked to close
 *
 * Since: 1.0
 */
guint
chat_hub_close_all (ChatHub *self, guint16 code, const char *reason)
{
	g_autoptr (GPtrArray) clients = NULL;

	g_return_val_if_fail (CHAT_IS_HUB (self), 0);

	clients = copy_clients (self->clients);
	for (guint i = 0; i < clients->len; i++)
		chat_client_close (clients->pdata[i], code, reason);
	return clients->len;
}
