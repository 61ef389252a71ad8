/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "chat-error.h"
#include "chat-hub-private.h"
#include "chat-frame-private.h"
#include "chat-i18n-private.h"
#include "chat-memory-store.h"
#include "chat-message-private.h"
#include "chat-source-private.h"
#include "chat-store-private.h"
#include "chat-token-verifier-private.h"

/**
 * SECTION:chat-hub
 * @title: ChatHub
 * @short_description: the set of clients and rooms, and the one place messages are routed
 *
 * A #ChatHub owns the registered clients and the rooms they joined, and routes every message:
 * to everyone, to the members of a room, or to every connection of a user. It is the only
 * place that assigns message ids (strictly increasing) and timestamps, and the only place
 * that decides who receives what, so the message store (#ChatHub:store) and, later, a pub/sub
 * bridge between several nodes hook in at one point.
 *
 * Each relayed message is serialized and framed once; every recipient's outbox then takes a
 * reference to the same bytes.
 *
 * Room messages are kept in the hub's #ChatHub:store and relayed only once it stored them,
 * each with its `offset` in the room's stream; every message, stored or not, is relayed in
 * the order the hub received it. A client that joins a room again with the last offset it
 * saw gets what it missed (see `docs/protocol.md`), and chat_hub_read_history_async() reads
 * a room's history.
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
	/* joined, but their turn in the hub's pipeline has not come, or they are recovering
	 * what they missed: room traffic passes them by until then, so nothing comes early or
	 * twice; ChatClientRoom.slot is the index | SLOT_PENDING */
	GPtrArray *pending;
	/* left, but their turn has not come: they still get what was sent before they left.
	 * Unowned: their STEP_LEAVE holds a reference. */
	GPtrArray *leaving;
	gboolean ready; /* with a broker: the store receives the room's publications */
	/* with a broker: the watch failed or was lost; what waits for it fails until it is
	 * ready again */
	gboolean unavailable;
} ChatRoom;

#define SLOT_PENDING 0x80000000u
/* how often direct messages handed to a connection are checked for having gone out */
#define DELIVERY_CHECK_MS 50

/* What the hub does, in the order it was asked for. A room message is relayed once stored,
 * so whatever comes after it (other messages, answers, joins and leaves) waits its turn. */
typedef enum {
	STEP_STORE,	/* a message being appended (a hub-wide one: its id only) */
	STEP_JOIN,	/* a join: the member gets room traffic from here on */
	STEP_RECOVER,	/* a join with `since`: the missed messages being read */
	STEP_LEAVE,	/* a leave or a disconnect: the others are told */
	STEP_FRAME,	/* an answer to one client */
	STEP_CLOSE,	/* a close decided after what is before it */
	STEP_HISTORY,	/* a `history` request being read */
	STEP_OFFLINE,	/* a new connection's undelivered direct messages being read */
	STEP_SYNC,	/* a `sync` request: the user's stream being read, or just its position */
	STEP_PUBLISHED, /* with a broker: a message a node published, to relay here */
	STEP_PRESENCE, /* with a broker: a `presence` request, the users on every node being read */
} StepKind;

/* with a broker (several nodes): members that may have missed messages reconnect and
 * recover (docs/protocol.md, section 4) */
#define CLOSE_CODE_RECOVER 4002

typedef struct {
	ChatHub *hub; /* owned: completions may come after the last user's unref */
	StepKind kind;
	gboolean done;
	ChatMessage *message; /* (nullable) owned: the message (a direct message: the recipient's
			       * copy, with the offset in the recipient's stream) */
	ChatMessage *sender_copy; /* (nullable) owned: STEP_STORE of a direct message between two
				   * users: the copy in the sender's stream */
	ChatClient *client;	  /* (nullable) owned: the sender, joiner, leaver or asker */
	guint64 sender_user;
	guint64 room_id;
	guint64 since;	      /* STEP_RECOVER, STEP_SYNC, STEP_OFFLINE: read after this offset */
	gboolean read;	      /* STEP_SYNC: the stream is being read */
	gint recovered;	      /* STEP_JOIN, STEP_SYNC: what its ack says, -1 for nothing */
	gboolean announce;    /* STEP_JOIN, STEP_RECOVER: tell the others too */
	gboolean left;	      /* STEP_JOIN, STEP_RECOVER: the joiner left meanwhile */
	gboolean cancelled;   /* STEP_JOIN, STEP_RECOVER: it joined again meanwhile */
	gboolean ack;	      /* STEP_LEAVE: the leaver gets its event too */
	gboolean in_leaving;  /* STEP_LEAVE: the leaver sits in ChatRoom.leaving */
	guint16 code;	      /* STEP_CLOSE */
	char *reason;	      /* STEP_CLOSE */
	GBytes *frame;	      /* STEP_FRAME; STEP_STORE: the stored frame, if the store made it */
	GBytes *sender_frame; /* STEP_STORE: the stored frame of @sender_copy, likewise */
	GError *error;
	GPtrArray *frames; /* GBytes, what a read found */
	/* with a broker: reads wait for their turn (and for the stream's watch) */
	gboolean deferred;	    /* the read starts at the step's turn */
	gboolean reading;	    /* it has started */
	char *epoch;		    /* STEP_RECOVER, STEP_SYNC: the client's */
	guint64 before;		    /* STEP_HISTORY: the request's */
	guint limit;		    /* STEP_HISTORY */
	ChatStreamKind stream_kind; /* STEP_PUBLISHED */
	guint64 stream_id;	    /* STEP_PUBLISHED; 0: hub-wide */
	guint64 offset;		    /* STEP_PUBLISHED */
	GArray *users;		    /* STEP_PRESENCE: guint64, the users on every node */
} HubStep;

typedef struct {
	guint64 id;
	GPtrArray *clients;   /* ChatClient*, unowned */
	gboolean ready;	      /* with a broker: as ChatRoom.ready */
	gboolean unavailable; /* as ChatRoom.unavailable */
	/* with a broker: connections whose offline delivery failed (owned): they reconnect
	 * (4002) once the user's stream is watched again */
	GPtrArray *stale;
} ChatUser;

struct _ChatHub {
	GObject parent_instance;

	GHashTable *clients_by_id; /* id -> ChatClient*, owned */
	GPtrArray *clients;	   /* ChatClient*, unowned; the client's hub slot is the index */
	GHashTable *users;	   /* &ChatUser.id -> ChatUser*, owned */
	GHashTable *rooms;	   /* &ChatRoom.id -> ChatRoom*, owned */
	guint64 last_message_id;
	ChatHubCounters counters;
	ChatStore *store;
	GQueue steps; /* HubStep*, in the order they were asked for */
	/* ChatClient* -> count of its STEP_OFFLINE/STEP_SYNC not yet run: live direct messages
	 * pass it by until then (they are in its read), so nothing comes early or twice */
	GHashTable *dm_pending;
	GPtrArray *deliveries; /* Delivery*: direct messages handed to a connection, not yet out */
	GMainContext *context; /* thread-default at construction: our timers go there */
	GSource *delivery_source;
	gboolean broker; /* the store is the broker between nodes: every relay comes from it */
	/* freed steps, for the next ones (step_alloc()), linked through their first word */
	gpointer spare_steps;
	guint n_spare_steps;
	/* chat_hub_close_all(): every client is on its way out, CLOSE_BATCH per iteration */
	gboolean closing_all;
	GPtrArray *to_close; /* ChatClient*, owned: those from close_next on are still to close */
	guint close_next;
	guint close_batch; /* CLOSE_BATCH but in tests */
	guint16 close_code;
	char *close_reason;
	GSource *close_source;
};

/* Clients chat_hub_close_all() closes per main loop iteration: each close builds and queues a
 * frame (about 20 us), so 19,000 at once would hold the loop for 0.4 s before the first frame
 * is written; in batches the loop writes them out as it goes, and reads the answers. */
#define CLOSE_BATCH 500

/* At saturation thousands of steps are made and freed in each iteration, a pattern glibc's
 * malloc serves slowly (5 % of the daemon's time): the hub keeps this many for reuse. */
#define SPARE_STEPS_MAX 1024

/* A direct message handed to a connection of its recipient: once the connection has written
 * @mark bytes while still open, the user's delivered watermark moves to @offset. */
typedef struct {
	ChatClient *client; /* owned */
	guint64 user_id;
	guint64 offset;
	guint64 mark;
} Delivery;

static void
delivery_free (Delivery *delivery)
{
	g_object_unref (delivery->client);
	g_free (delivery);
}

G_DEFINE_FINAL_TYPE (ChatHub, chat_hub, G_TYPE_OBJECT)

enum { PROP_0, PROP_N_CLIENTS, PROP_N_ROOMS, PROP_STORE, N_PROPS };
static GParamSpec *props[N_PROPS];

static const ChatStoreBroker hub_broker;
static void
release_steps (ChatHub *self);
static GPtrArray *
copy_clients (GPtrArray *clients);
static void
append_unblocked (ChatHub *self);

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
	g_ptr_array_unref (room->pending);
	g_ptr_array_unref (room->leaving);
	g_free (room);
}

static HubStep *
step_alloc (ChatHub *self)
{
	HubStep *step = self->spare_steps;

	if (step == NULL)
		return g_new0 (HubStep, 1);
	self->spare_steps = *(gpointer *) step;
	self->n_spare_steps--;
	memset (step, 0, sizeof *step);
	return step;
}

static void
step_free (HubStep *step)
{
	ChatHub *self = step->hub;

	g_clear_object (&step->message);
	g_clear_object (&step->sender_copy);
	if (step->client != NULL)
		chat_client_step_done (step->client);
	g_clear_object (&step->client);
	g_clear_error (&step->error);
	g_clear_pointer (&step->frames, g_ptr_array_unref);
	g_clear_pointer (&step->frame, g_bytes_unref);
	g_clear_pointer (&step->sender_frame, g_bytes_unref);
	g_clear_pointer (&step->users, g_array_unref);
	g_free (step->reason);
	g_free (step->epoch);
	if (self->n_spare_steps < SPARE_STEPS_MAX) {
		*(gpointer *) step = self->spare_steps;
		self->spare_steps = step;
		self->n_spare_steps++;
	} else {
		g_free (step);
	}
	/* the step's reference may be the hub's last */
	g_object_unref (self);
}

static void
user_free (ChatUser *user)
{
	g_ptr_array_unref (user->clients);
	g_clear_pointer (&user->stale, g_ptr_array_unref);
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
	case PROP_STORE:
		g_value_set_object (value, self->store);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_hub_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
	ChatHub *self = CHAT_HUB (object);

	switch (prop_id) {
	case PROP_STORE:
		self->store = g_value_dup_object (value);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_hub_constructed (GObject *object)
{
	ChatHub *self = CHAT_HUB (object);

	G_OBJECT_CLASS (chat_hub_parent_class)->constructed (object);
	/* a hub made without one still relays through a store, so it behaves the same */
	if (self->store == NULL)
		self->store = CHAT_STORE (chat_memory_store_new ());
	self->context = g_main_context_ref_thread_default ();
	/* ids go on from the last one stored, across restarts */
	self->last_message_id = chat_store_get_last_id (self->store);
	self->broker = chat_store_set_broker (self->store, &hub_broker, self);
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
	chat_clear_source (&self->close_source);
	g_clear_pointer (&self->to_close, g_ptr_array_unref);
	if (self->delivery_source != NULL) {
		g_source_destroy (self->delivery_source);
		g_clear_pointer (&self->delivery_source, g_source_unref);
	}
	if (self->deliveries != NULL)
		g_ptr_array_set_size (self->deliveries, 0);
	if (self->broker) {
		chat_store_set_broker (self->store, NULL, NULL);
		self->broker = FALSE;
	}
	G_OBJECT_CLASS (chat_hub_parent_class)->dispose (object);
}

static void
chat_hub_finalize (GObject *object)
{
	ChatHub *self = CHAT_HUB (object);

	g_ptr_array_unref (self->clients);
	g_hash_table_unref (self->users);
	g_hash_table_unref (self->rooms);
	g_hash_table_unref (self->dm_pending);
	g_ptr_array_unref (self->deliveries);
	/* every step holds a reference on the hub: none is left here */
	g_assert (g_queue_is_empty (&self->steps));
	while (self->spare_steps != NULL) {
		gpointer step = self->spare_steps;

		self->spare_steps = *(gpointer *) step;
		g_free (step);
	}
	g_clear_object (&self->store);
	g_free (self->close_reason);
	g_clear_pointer (&self->context, g_main_context_unref);
	G_OBJECT_CLASS (chat_hub_parent_class)->finalize (object);
}

static void
chat_hub_class_init (ChatHubClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();

	object_class->get_property = chat_hub_get_property;
	object_class->set_property = chat_hub_set_property;
	object_class->constructed = chat_hub_constructed;
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
	 * Where room messages are kept: the hub relays a room message only once the store
	 * has stored it, and reads history and missed messages from it. %NULL at construction
	 * gives the hub a #ChatMemoryStore of its own. The hub's message ids continue from the
	 * highest one the store holds.
	 *
	 * Since: 1.0
	 */
	props[PROP_STORE] = g_param_spec_object ("store",
						 NULL,
						 "Where room messages are kept",
						 CHAT_TYPE_STORE,
						 G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
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
	g_queue_init (&self->steps);
	self->dm_pending = g_hash_table_new (NULL, NULL);
	self->deliveries = g_ptr_array_new_with_free_func ((GDestroyNotify) delivery_free);
	self->close_batch = CLOSE_BATCH;
}

/**
 * chat_hub_new:
 *
 * Creates an empty hub that keeps room messages in a #ChatMemoryStore of its own. To keep
 * them in another store, create the hub with g_object_new() and #ChatHub:store.
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

/* Room traffic: the members, and those whose leave has not had its turn yet. */
static guint
push_to_room (ChatRoom *room, GBytes *frame)
{
	guint delivered = push_to_clients (room->members, frame);

	if (G_UNLIKELY (room->leaving->len > 0))
		delivered += push_to_clients (room->leaving, frame);
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

/* ---- direct messages ------------------------------------------------------------------ */

/* A direct message is delivered once the last byte of its frame was written to the socket
 * of one of its recipient's connections; one that closed before is given up on. */
static void
settle_deliveries (ChatHub *self)
{
	/* oldest first, so the watermark only moves up */
	for (guint i = 0; i < self->deliveries->len;) {
		Delivery *delivery = self->deliveries->pdata[i];

		if (chat_client_get_bytes_sent (delivery->client) >= delivery->mark) {
			if (chat_store_get_delivered (self->store, delivery->user_id) <
			    delivery->offset)
				chat_store_set_delivered (self->store,
							  delivery->user_id,
							  delivery->offset);
		} else if (chat_client_get_hub (delivery->client) == self &&
			   chat_client_is_open (delivery->client)) {
			i++;
			continue;
		}
		g_ptr_array_remove_index (self->deliveries, i);
	}
}

static gboolean
check_deliveries (gpointer user_data)
{
	ChatHub *self = user_data;

	settle_deliveries (self);
	if (self->deliveries->len > 0)
		return G_SOURCE_CONTINUE;
	g_clear_pointer (&self->delivery_source, g_source_unref);
	return G_SOURCE_REMOVE;
}

/* Pushes a direct message received by @user_id to @client and watches it go out. */
static gboolean
push_received (ChatHub *self, ChatClient *client, guint64 user_id, guint64 offset, GBytes *frame)
{
	Delivery *delivery;

	if (!chat_client_push_frame (client, frame))
		return FALSE;
	if (offset == 0)
		return TRUE;
	delivery = g_new0 (Delivery, 1);
	delivery->client = g_object_ref (client);
	delivery->user_id = user_id;
	delivery->offset = offset;
	delivery->mark =
	    chat_client_get_bytes_sent (client) + chat_client_get_pending_bytes (client);
	g_ptr_array_add (self->deliveries, delivery);
	/* the outbox is flushed at the end of this iteration; look after it */
	if (self->delivery_source == NULL)
		self->delivery_source = chat_timeout_source_attach (self->context,
								    DELIVERY_CHECK_MS,
								    check_deliveries,
								    self,
								    "chathub delivery check");
	return TRUE;
}

/* A user's live direct messages, except for its connections whose read has not had its turn. */
static guint
push_to_user (ChatHub *self, guint64 user_id, GBytes *frame, guint64 received_offset)
{
	ChatUser *user = lookup_user (self, user_id);
	guint delivered = 0;

	if (user == NULL)
		return 0;
	for (guint i = 0; i < user->clients->len; i++) {
		ChatClient *client = user->clients->pdata[i];

		if (g_hash_table_contains (self->dm_pending, client))
			continue;
		if (received_offset != 0
			? push_received (self, client, user_id, received_offset, frame)
			: chat_client_push_frame (client, frame))
			delivered++;
	}
	return delivered;
}

/* A stored direct message: the recipient's connections get its copy (offset in the
 * recipient's stream), the sender's other connections the sender's copy. */
static guint
route_direct (ChatHub *self,
	      ChatMessage *message,
	      GBytes *stored_frame,
	      ChatMessage *sender_copy,
	      GBytes *stored_echo,
	      guint64 sender_user)
{
	g_autoptr (GBytes) frame =
	    stored_frame != NULL ? g_bytes_ref (stored_frame) : chat_message_to_frame (message);
	guint64 to = chat_message_get_to (message);
	guint delivered;

	self->counters.relayed[CHAT_TRAFFIC_DIRECT]++;
	delivered = push_to_user (self, to, frame, chat_message_get_offset (message));
	if (sender_copy != NULL && sender_user != 0 && sender_user != to) {
		g_autoptr (GBytes) echo = stored_echo != NULL ? g_bytes_ref (stored_echo)
							      : chat_message_to_frame (sender_copy);

		delivered += push_to_user (self, sender_user, echo, 0);
	}
	self->counters.deliveries += delivered;
	return delivered;
}

static void
dm_pending_add (ChatHub *self, ChatClient *client)
{
	guint count = GPOINTER_TO_UINT (g_hash_table_lookup (self->dm_pending, client));

	g_hash_table_insert (self->dm_pending, client, GUINT_TO_POINTER (count + 1));
}

static void
dm_pending_remove (ChatHub *self, ChatClient *client)
{
	guint count = GPOINTER_TO_UINT (g_hash_table_lookup (self->dm_pending, client));

	if (count <= 1)
		g_hash_table_remove (self->dm_pending, client);
	else
		g_hash_table_insert (self->dm_pending, client, GUINT_TO_POINTER (count - 1));
}

/* With a broker, the store's top counts what it received; the publications still queued
 * for their turn are taken off. */
static guint64
published_position (ChatHub *self, ChatStreamKind kind, guint64 stream_id, guint64 top)
{
	for (GList *l = self->steps.head; l != NULL; l = l->next) {
		HubStep *step = l->data;

		if (step->kind == STEP_PUBLISHED && step->stream_kind == kind &&
		    step->stream_id == stream_id && step->offset != 0)
			return MIN (top, step->offset - 1);
	}
	return top;
}

/* A user's position in its stream, as room_position() for a room: direct messages committed
 * but still queued behind other steps are taken off. */
static guint64
user_position (ChatHub *self, guint64 user_id, const char **epoch)
{
	guint64 top = 0;

	chat_store_get_stream (self->store, CHAT_STREAM_KIND_USER, user_id, &top, NULL, epoch);
	if (self->broker)
		return published_position (self, CHAT_STREAM_KIND_USER, user_id, top);
	for (GList *l = self->steps.head; l != NULL; l = l->next) {
		HubStep *step = l->data;
		ChatMessage *copy = NULL;
		guint64 offset;

		if (step->kind != STEP_STORE || chat_message_get_to (step->message) == 0)
			continue;
		if (chat_message_get_to (step->message) == user_id)
			copy = step->message;
		else if (step->sender_copy != NULL && step->sender_user == user_id)
			copy = step->sender_copy;
		if (copy == NULL || (offset = chat_message_get_offset (copy)) == 0)
			continue;
		return MIN (top, offset - 1);
	}
	return top;
}

/* Routes a stamped `message` event to a room or everyone: as @stored_frame, the frame its
 * store made of it, if any. */
static guint
route_message (ChatHub *self, ChatMessage *message, GBytes *stored_frame)
{
	g_autoptr (GBytes) frame =
	    stored_frame != NULL ? g_bytes_ref (stored_frame) : chat_message_to_frame (message);
	guint64 room_id = chat_message_get_room_id (message);
	guint delivered = 0;

	if (room_id != 0) {
		ChatRoom *room = lookup_room (self, room_id);

		self->counters.relayed[CHAT_TRAFFIC_ROOM]++;
		if (room != NULL)
			delivered = push_to_room (room, frame);
	} else {
		self->counters.relayed[CHAT_TRAFFIC_HUB]++;
		delivered = push_to_clients (self->clients, frame);
		if (g_signal_has_handler_pending (self, signals[SIGNAL_BROADCAST], 0, FALSE))
			g_signal_emit (self, signals[SIGNAL_BROADCAST], 0, message);
	}
	self->counters.deliveries += delivered;
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

/* With a broker: the other nodes' members get the event too (this node pushes its own). */
static void
publish_room_event (ChatHub *self, ChatMessageType type, guint64 room_id, guint64 user_id)
{
	g_autoptr (ChatMessage) event = NULL;
	g_autoptr (GBytes) text = NULL;
	char *json;
	gsize length;

	if (!self->broker)
		return;
	event = chat_message_new (type);
	chat_message_set_room_id (event, room_id);
	chat_message_stamp (event, 0, user_id);
	json = chat_message_to_json_with_length (event, &length);
	text = g_bytes_new_take (json, length);
	chat_store_publish_event (self->store, CHAT_STREAM_KIND_ROOM, room_id, text);
}

/* With a broker: presence across nodes counts the users with a connection here. */
static void
set_present (ChatHub *self, guint64 room_id, ChatClient *client, gboolean present)
{
	if (self->broker)
		chat_store_presence_set (self->store,
					 room_id,
					 chat_client_get_user_id (client),
					 present);
}

/* ---- membership ----------------------------------------------------------------------- */

static GPtrArray *
room_array (ChatRoom *room, guint slot)
{
	return (slot & SLOT_PENDING) ? room->pending : room->members;
}

/* Takes @client out of the array @entry points into; the last one there takes its slot. */
static void
room_take (ChatRoom *room, ChatClientRoom *entry, ChatClient *client)
{
	GPtrArray *array = room_array (room, entry->slot);
	guint flag = entry->slot & SLOT_PENDING;
	guint slot = entry->slot & ~SLOT_PENDING;
	guint last = array->len - 1;

	g_assert (array->pdata[slot] == client);
	if (slot != last) {
		ChatClient *moved = array->pdata[last];

		array->pdata[slot] = moved;
		chat_client_find_room (moved, room->id)->slot = slot | flag;
	}
	g_ptr_array_set_size (array, last);
}

/* Returns the slot @client gets. */
static guint
room_put (ChatRoom *room, ChatClient *client, gboolean pending)
{
	GPtrArray *array = pending ? room->pending : room->members;
	guint slot = array->len | (pending ? SLOT_PENDING : 0);

	g_ptr_array_add (array, client);
	return slot;
}

static gboolean
entry_is_pending (ChatClientRoom *entry)
{
	return (entry->slot & SLOT_PENDING) != 0;
}

/* Moves a client between the members and those whose join has not had its turn. */
static void
room_set_pending (ChatRoom *room, ChatClient *client, ChatClientRoom *entry, gboolean pending)
{
	if (entry_is_pending (entry) == pending)
		return;
	room_take (room, entry, client);
	entry->slot = room_put (room, client, pending);
}

/* Returns the room, created if it was empty. */
static ChatRoom *
room_add (ChatHub *self, guint64 room_id, ChatClient *client, gboolean pending)
{
	ChatRoom *room = lookup_room (self, room_id);

	if (room == NULL) {
		room = g_new0 (ChatRoom, 1);
		room->id = room_id;
		room->members = g_ptr_array_new ();
		room->pending = g_ptr_array_new ();
		room->leaving = g_ptr_array_new ();
		room->ready =
		    !self->broker || chat_store_watch (self->store, CHAT_STREAM_KIND_ROOM, room_id);
		g_hash_table_insert (self->rooms, &room->id, room);
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_ROOMS]);
	}
	chat_client_add_room (client, room_id, room_put (room, client, pending));
	set_present (self, room_id, client, TRUE);
	return room;
}

/* Returns the room, or NULL if nobody is left in it. */
static ChatRoom *
room_drop_if_empty (ChatHub *self, ChatRoom *room)
{
	guint64 room_id = room->id;

	if (room->members->len > 0 || room->pending->len > 0 || room->leaving->len > 0)
		return room;
	/* nothing of it is relayed here any more */
	if (self->broker)
		chat_store_unwatch (self->store, CHAT_STREAM_KIND_ROOM, room_id);
	g_hash_table_remove (self->rooms, &room_id);
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_ROOMS]);
	return NULL;
}

/* Returns the room, or NULL if @client was its last member (or not one). */
static ChatRoom *
room_remove (ChatHub *self, guint64 room_id, ChatClient *client)
{
	ChatRoom *room = lookup_room (self, room_id);
	ChatClientRoom *entry = chat_client_find_room (client, room_id);

	if (room == NULL || entry == NULL)
		return NULL;
	room_take (room, entry, client);
	chat_client_remove_room (client, room_id);
	set_present (self, room_id, client, FALSE);
	return room_drop_if_empty (self, room);
}

/* The position a joiner is told: the offset of the last message of the room relayed before
 * its turn. The store's top may already count messages committed in the same group and
 * relayed right after, so those still queued are taken off. */
static guint64
room_position (ChatHub *self, guint64 room_id, const char **epoch)
{
	guint64 top = 0;

	chat_store_get_stream (self->store, CHAT_STREAM_KIND_ROOM, room_id, &top, NULL, epoch);
	if (self->broker)
		return published_position (self, CHAT_STREAM_KIND_ROOM, room_id, top);
	for (GList *l = self->steps.head; l != NULL; l = l->next) {
		HubStep *step = l->data;
		guint64 offset;

		if (step->kind != STEP_STORE || chat_message_get_room_id (step->message) != room_id)
			continue;
		offset = chat_message_get_offset (step->message);
		/* offsets are given in the order of the appends */
		if (offset != 0)
			return MIN (top, offset - 1);
	}
	return top;
}

/* The joiner's own `join` event: the room's position in its stream, and with `since`
 * whether what it missed follows. */
static void
send_join_ack (ChatHub *self, ChatClient *client, guint64 room_id, gint recovered)
{
	g_autoptr (ChatMessage) ack = chat_message_new (CHAT_MESSAGE_TYPE_JOIN);
	const char *epoch = NULL;
	guint64 position = room_position (self, room_id, &epoch);

	chat_message_set_room_id (ack, room_id);
	chat_message_stamp (ack, 0, chat_client_get_user_id (client));
	chat_message_set_position (ack, position, epoch);
	chat_message_set_recovered (ack, recovered);
	chat_client_send (client, ack);
}

static void
send_error_printf (ChatClient *client, ChatError code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);
static void
send_error_at_turn (ChatClient *client, ChatError code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);
static void
answer_presence (ChatHub *self, HubStep *step);
static guint64 *
room_user_ids (ChatRoom *room, gsize *n_users);
static void
on_read_done (GObject *source, GAsyncResult *result, gpointer user_data);
static HubStep *
step_new (ChatHub *self, StepKind kind, ChatClient *client, ChatMessage *message);

/* A join that has not had its turn: a later one of the same client replaces it (the others
 * are still told once), a leave turns its ack into a plain one. */
static void
mark_pending_joins (ChatHub *self, ChatClient *client, guint64 room_id, gboolean left)
{
	for (GList *l = self->steps.head; l != NULL; l = l->next) {
		HubStep *step = l->data;

		if ((step->kind != STEP_JOIN && step->kind != STEP_RECOVER) ||
		    step->client != client || step->room_id != room_id || step->left)
			continue;
		if (left)
			step->left = TRUE;
		else
			step->cancelled = TRUE;
	}
}

/* @request: (nullable): the client's `join`, with `since` and `epoch` if it recovers */
static void
join_room (ChatHub *self, ChatClient *client, guint64 room_id, ChatMessage *request)
{
	ChatClientRoom *entry = chat_client_find_room (client, room_id);
	gboolean busy = !g_queue_is_empty (&self->steps);
	gboolean with_since = FALSE, read = FALSE, announce = FALSE;
	gint recovered = -1;
	guint64 since = 0;
	ChatRoom *room;
	HubStep *step;

	if (request != NULL)
		with_since = chat_message_get_since (request, &since);
	if (with_since && self->broker) {
		/* decided at its turn, from what this node has relayed by then */
		read = TRUE;
	} else if (with_since) {
		guint64 top = 0, first = 0;
		const char *epoch = NULL;

		/* only committed offsets were ever relayed: a client knows none above top */
		chat_store_get_stream (self->store,
				       CHAT_STREAM_KIND_ROOM,
				       room_id,
				       &top,
				       &first,
				       &epoch);
		if (g_strcmp0 (chat_message_get_epoch (request), epoch) != 0 || since > top ||
		    since + 1 < first)
			recovered = FALSE;
		else if (since == top && !busy)
			recovered = TRUE;
		else
			read = TRUE;
	}
	mark_pending_joins (self, client, room_id, FALSE);

	if (entry == NULL) {
		room = lookup_room (self, room_id);
		if (!busy && !read && (!self->broker || (room != NULL && room->ready))) {
			g_autoptr (GBytes) event =
			    build_room_event (CHAT_MESSAGE_TYPE_JOIN,
					      room_id,
					      chat_client_get_user_id (client));

			if (room != NULL)
				push_to_room (room, event);
			publish_room_event (self,
					    CHAT_MESSAGE_TYPE_JOIN,
					    room_id,
					    chat_client_get_user_id (client));
			room_add (self, room_id, client, FALSE);
			g_signal_emit (self, signals[SIGNAL_ROOM_JOINED], 0, client, room_id);
			send_join_ack (self, client, room_id, recovered);
			return;
		}
		/* a member from now for its own requests, from its turn for room traffic */
		room_add (self, room_id, client, TRUE);
		announce = TRUE;
		g_signal_emit (self, signals[SIGNAL_ROOM_JOINED], 0, client, room_id);
	} else {
		/* joining again: the ack again, nothing new for the others */
		if (!busy && !read) {
			send_join_ack (self, client, room_id, recovered);
			return;
		}
		/* a member that recovers gets nothing live until its read is in: nothing twice */
		if (read)
			room_set_pending (lookup_room (self, room_id), client, entry, TRUE);
	}

	step = step_new (self, read ? STEP_RECOVER : STEP_JOIN, client, NULL);
	step->room_id = room_id;
	step->since = since;
	step->recovered = recovered;
	step->announce = announce;
	if (self->broker) {
		/* its turn waits for the room's publications to reach this node */
		step->deferred = TRUE;
		step->epoch = g_strdup (request != NULL ? chat_message_get_epoch (request) : NULL);
		release_steps (self);
		return;
	}
	if (!read) {
		step->done = TRUE;
		return;
	}
	/* The read sees every append made before it and completes in order with them: what
	 * is relayed before its turn is in it, what comes after is live. */
	chat_store_read_async (self->store,
			       CHAT_STREAM_KIND_ROOM,
			       room_id,
			       since,
			       0,
			       0,
			       FALSE,
			       NULL,
			       on_read_done,
			       step);
}

/* A join's turn (STEP_JOIN, STEP_RECOVER). */
static void
finish_join (ChatHub *self, HubStep *step)
{
	ChatClientRoom *entry = chat_client_find_room (step->client, step->room_id);
	ChatRoom *room = lookup_room (self, step->room_id);
	gint recovered = step->recovered;
	guint64 position;

	if (self->broker && step->error != NULL) {
		/* the room's stream could not be reached: not joined (nobody was told), the
		 * joiner may try again; a later join of its own answers for itself */
		if (step->cancelled)
			return;
		send_error_at_turn (step->client,
				    CHAT_ERROR_UNAVAILABLE,
				    "Room %" G_GUINT64_FORMAT " could not be joined now",
				    step->room_id);
		if (step->left || entry == NULL || room == NULL)
			return;
		room_take (room, entry, step->client);
		chat_client_remove_room (step->client, step->room_id);
		set_present (self, step->room_id, step->client, FALSE);
		room_drop_if_empty (self, room);
		g_signal_emit (self, signals[SIGNAL_ROOM_LEFT], 0, step->client, step->room_id);
		return;
	}
	if (step->announce && room != NULL) {
		g_autoptr (GBytes) event =
		    build_room_event (CHAT_MESSAGE_TYPE_JOIN,
				      step->room_id,
				      chat_client_get_user_id (step->client));

		push_to_room (room, event);
	}
	if (step->announce)
		publish_room_event (self,
				    CHAT_MESSAGE_TYPE_JOIN,
				    step->room_id,
				    chat_client_get_user_id (step->client));
	if (step->cancelled)
		return;
	if (step->left || entry == NULL || room == NULL) {
		/* it left before its turn: the ack it asked for, nothing else */
		send_join_ack (self,
			       step->client,
			       step->room_id,
			       step->kind == STEP_RECOVER ? FALSE : recovered);
		return;
	}
	if (step->kind == STEP_RECOVER) {
		position = room_position (self, step->room_id, NULL);
		/* offsets are contiguous: a read from since + 1 holds position - since of them */
		recovered = step->error == NULL && step->frames != NULL &&
			    step->since <= position && step->frames->len == position - step->since;
	}
	room_set_pending (room, step->client, entry, FALSE);
	send_join_ack (self, step->client, step->room_id, recovered);
	for (guint i = 0; recovered > 0 && i < step->frames->len; i++) {
		gsize size;
		const void *text = g_bytes_get_data (step->frames->pdata[i], &size);
		g_autoptr (GBytes) frame = chat_frame_new (0x1 /* text */, text, size);

		chat_client_push_frame (step->client, frame);
	}
}

static void
leave_room (ChatHub *self, ChatClient *client, guint64 room_id, gboolean ack)
{
	g_autoptr (GBytes) event = NULL;
	ChatClientRoom *entry = chat_client_find_room (client, room_id);
	ChatRoom *room;
	HubStep *step;

	if (!g_queue_is_empty (&self->steps) && entry != NULL) {
		/* in order: no longer a member for its own requests, still one for what was sent
		 * before (unless it is gone), and the others hear of it at its turn */
		gboolean was_pending = entry_is_pending (entry);

		room = lookup_room (self, room_id);
		mark_pending_joins (self, client, room_id, TRUE);
		room_take (room, entry, client);
		chat_client_remove_room (client, room_id);
		set_present (self, room_id, client, FALSE);
		step = step_new (self, STEP_LEAVE, client, NULL);
		step->room_id = room_id;
		step->ack = ack;
		step->done = TRUE;
		if (ack && !was_pending) {
			g_ptr_array_add (room->leaving, client);
			step->in_leaving = TRUE;
		}
		room_drop_if_empty (self, room);
		g_signal_emit (self, signals[SIGNAL_ROOM_LEFT], 0, client, room_id);
		return;
	}

	if (entry != NULL)
		publish_room_event (self,
				    CHAT_MESSAGE_TYPE_LEAVE,
				    room_id,
				    chat_client_get_user_id (client));
	room = room_remove (self, room_id, client);
	/* a client leaving many rooms of its own on disconnect builds no frame for them; nor
	 * does anyone while every client is closing: its members are all closing too, and
	 * walking a room of 19,000 for each of them to skip them all is 19,000² steps */
	if (self->closing_all)
		room = NULL;
	if (room != NULL || ack)
		event = build_room_event (CHAT_MESSAGE_TYPE_LEAVE,
					  room_id,
					  chat_client_get_user_id (client));
	if (room != NULL)
		push_to_room (room, event);
	if (ack)
		chat_client_push_frame (client, event);
	g_signal_emit (self, signals[SIGNAL_ROOM_LEFT], 0, client, room_id);
}

/* A leave's turn. */
static void
finish_leave (ChatHub *self, HubStep *step)
{
	ChatRoom *room = lookup_room (self, step->room_id);
	g_autoptr (GBytes) event = build_room_event (CHAT_MESSAGE_TYPE_LEAVE,
						     step->room_id,
						     chat_client_get_user_id (step->client));

	publish_room_event (self,
			    CHAT_MESSAGE_TYPE_LEAVE,
			    step->room_id,
			    chat_client_get_user_id (step->client));
	if (step->in_leaving) {
		g_assert (room != NULL);
		g_ptr_array_remove_fast (room->leaving, step->client);
		room = room_drop_if_empty (self, room);
	}
	if (room != NULL && !self->closing_all)
		push_to_room (room, event);
	if (step->ack)
		chat_client_push_frame (step->client, event);
}

/* ---- the ordered pipeline --------------------------------------------------------------- */

/* Queued at the tail; a step runs when it is done and every step before it has run. */
static HubStep *
step_new (ChatHub *self, StepKind kind, ChatClient *client, ChatMessage *message)
{
	HubStep *step = step_alloc (self);

	step->hub = g_object_ref (self);
	step->kind = kind;
	step->client = client != NULL ? g_object_ref (client) : NULL;
	if (client != NULL)
		chat_client_step_added (client);
	step->message = message != NULL ? g_object_ref (message) : NULL;
	step->recovered = -1;
	g_queue_push_tail (&self->steps, step);
	return step;
}

static gboolean
client_is_connected (ChatHub *self, ChatClient *client)
{
	return client != NULL && chat_client_get_hub (client) == self;
}

static void
answer_history (ChatHub *self, HubStep *step)
{
	g_autoptr (ChatMessage) answer = NULL;
	const char *epoch = NULL;

	if (!client_is_connected (self, step->client))
		return;
	if (step->error != NULL) {
		send_error_at_turn (step->client,
				    CHAT_ERROR_UNAVAILABLE,
				    "The history of room %" G_GUINT64_FORMAT " could not be read",
				    step->room_id);
		return;
	}
	chat_store_get_stream (self->store,
			       CHAT_STREAM_KIND_ROOM,
			       step->room_id,
			       NULL,
			       NULL,
			       &epoch);
	answer = chat_message_new (CHAT_MESSAGE_TYPE_HISTORY);
	chat_message_set_room_id (answer, step->room_id);
	chat_message_stamp (answer, 0, 0);
	chat_message_set_epoch (answer, epoch);
	chat_message_set_stored (answer, step->frames);
	chat_client_send (step->client, answer);
}

/* Pushes the frames of a user-stream read with offsets in (since, position]; with
 * @received_only, only those the user received. Returns how many there were in the range. */
static guint
push_user_frames (ChatHub *self, HubStep *step, guint64 position, gboolean received_only)
{
	guint64 user_id = chat_client_get_user_id (step->client);
	guint in_range = 0;

	for (guint i = 0; step->frames != NULL && i < step->frames->len; i++) {
		gsize size;
		const char *text = g_bytes_get_data (step->frames->pdata[i], &size);
		g_autoptr (ChatMessage) stored = chat_message_parse (text, size, FALSE, NULL);
		g_autoptr (GBytes) frame = NULL;
		guint64 offset;

		if (stored == NULL)
			continue;
		offset = chat_message_get_offset (stored);
		/* what was committed after this step's turn comes live */
		if (offset <= step->since || offset > position)
			continue;
		in_range++;
		if (received_only && chat_message_get_to (stored) != user_id)
			continue;
		frame = chat_frame_new (0x1 /* text */, text, size);
		if (chat_message_get_to (stored) == user_id)
			push_received (self, step->client, user_id, offset, frame);
		else
			chat_client_push_frame (step->client, frame);
	}
	return in_range;
}

/* With a broker: @client's offline delivery failed (Redis unreachable). It reconnects to
 * get it (4002), now if its user's stream is watched, else once it is again, so that the
 * new connection does not fail the same way. */
static void
recover_later (ChatHub *self, ChatClient *client)
{
	ChatUser *user = lookup_user (self, chat_client_get_user_id (client));

	if (user == NULL || user->ready) {
		chat_client_close (client, CLOSE_CODE_RECOVER, "recover");
		return;
	}
	if (user->stale == NULL)
		user->stale = g_ptr_array_new_with_free_func (g_object_unref);
	g_ptr_array_add (user->stale, g_object_ref (client));
}

/* A new connection's undelivered direct messages (STEP_OFFLINE), or a `sync` (STEP_SYNC). */
static void
finish_user_read (ChatHub *self, HubStep *step)
{
	g_autoptr (ChatMessage) ack = NULL;
	guint64 position;
	const char *epoch = NULL;
	gint recovered = step->recovered;

	if (step->kind == STEP_OFFLINE || step->read)
		dm_pending_remove (self, step->client);
	if (!client_is_connected (self, step->client))
		return;
	if (self->broker && step->error != NULL &&
	    !g_error_matches (step->error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT)) {
		/* Redis could not be reached */
		if (step->kind == STEP_SYNC)
			send_error_at_turn (step->client,
					    CHAT_ERROR_UNAVAILABLE,
					    "The direct messages could not be read now");
		else
			recover_later (self, step->client);
		return;
	}
	position = user_position (self, chat_client_get_user_id (step->client), &epoch);
	if (step->kind == STEP_OFFLINE) {
		/* on a failed read the watermark stays: the next connection gets them */
		if (step->error == NULL)
			push_user_frames (self, step, position, TRUE);
		return;
	}
	if (step->read) {
		/* offsets are contiguous: a full read holds position - since of them */
		recovered = step->error == NULL && step->since <= position;
		/* nothing is pushed unless all of it is there */
		if (recovered) {
			g_autoptr (GPtrArray) frames = g_steal_pointer (&step->frames);
			guint in_range = 0;

			for (guint i = 0; i < frames->len; i++) {
				gsize size;
				const char *text = g_bytes_get_data (frames->pdata[i], &size);
				g_autoptr (ChatMessage) stored =
				    chat_message_parse (text, size, FALSE, NULL);
				guint64 offset =
				    stored != NULL ? chat_message_get_offset (stored) : 0;

				if (offset > step->since && offset <= position)
					in_range++;
			}
			recovered = in_range == position - step->since;
			step->frames = g_steal_pointer (&frames);
		}
	}
	ack = chat_message_new (CHAT_MESSAGE_TYPE_SYNC);
	chat_message_stamp (ack, 0, 0);
	chat_message_set_position (ack, position, epoch);
	chat_message_set_recovered (ack, recovered);
	chat_client_send (step->client, ack);
	if (recovered > 0)
		push_user_frames (self, step, position, FALSE);
}

/* ---- several nodes: the store is the broker ------------------------------------------
 *
 * Every node relays what the broker publishes, in the order it was published, its own
 * messages included; a STEP_STORE only says whether the append worked. Reads wait for their
 * turn (deferred), so that they hold exactly what was relayed here before it. */

static void
relay_published (ChatHub *self, HubStep *step)
{
	gsize size;
	const char *text = g_bytes_get_data (step->frame, &size);
	g_autoptr (GBytes) frame = chat_frame_new (0x1 /* text */, text, size);
	ChatRoom *room;

	/* a room event from another node has no offset, and is no message */
	if (step->stream_kind != CHAT_STREAM_KIND_ROOM)
		self->counters.relayed[CHAT_TRAFFIC_DIRECT]++;
	else if (step->stream_id == 0)
		self->counters.relayed[CHAT_TRAFFIC_HUB]++;
	else if (step->offset != 0)
		self->counters.relayed[CHAT_TRAFFIC_ROOM]++;
	if (step->stream_kind == CHAT_STREAM_KIND_ROOM && step->stream_id == 0) {
		self->counters.deliveries += push_to_clients (self->clients, frame);
		if (g_signal_has_handler_pending (self, signals[SIGNAL_BROADCAST], 0, FALSE)) {
			g_autoptr (ChatMessage) message =
			    chat_message_parse (text, size, FALSE, NULL);

			if (message != NULL)
				g_signal_emit (self, signals[SIGNAL_BROADCAST], 0, message);
		}
	} else if (step->stream_kind == CHAT_STREAM_KIND_ROOM) {
		if ((room = lookup_room (self, step->stream_id)) != NULL)
			self->counters.deliveries += push_to_room (room, frame);
	} else {
		/* the recipient's copy is watched for delivery; the sender's is its echo */
		g_autoptr (ChatMessage) message = chat_message_parse (text, size, FALSE, NULL);
		gboolean received =
		    message != NULL && chat_message_get_to (message) == step->stream_id;

		self->counters.deliveries +=
		    push_to_user (self, step->stream_id, frame, received ? step->offset : 0);
	}
}

/* Starts a deferred step at its turn: FALSE while its stream is not watched yet. */
static gboolean
start_deferred (ChatHub *self, HubStep *step)
{
	guint64 user_id = step->client != NULL ? chat_client_get_user_id (step->client) : 0;
	ChatRoom *room = lookup_room (self, step->room_id);
	ChatUser *user = lookup_user (self, user_id);
	gboolean room_step =
	    step->kind == STEP_JOIN || step->kind == STEP_RECOVER || step->kind == STEP_HISTORY;
	const char *epoch = NULL;
	guint64 position;

	if ((room_step && room != NULL && !room->ready) ||
	    (!room_step && user != NULL && !user->ready)) {
		if (!(room_step ? room->unavailable : user->unavailable))
			return FALSE;
		/* Redis could not be reached within the timeout: fail now, not wait */
		g_set_error_literal (&step->error,
				     G_IO_ERROR,
				     G_IO_ERROR_NOT_CONNECTED,
				     "Redis is not reachable");
		step->done = TRUE;
		return TRUE;
	}
	switch (step->kind) {
	case STEP_JOIN:
		step->done = TRUE;
		return TRUE;
	case STEP_RECOVER:
		position = room_position (self, step->room_id, &epoch);
		/* nothing to read for those gone; else all of it, or not recovered */
		if (room == NULL || step->left || step->cancelled || step->since > position ||
		    g_strcmp0 (step->epoch, epoch) != 0) {
			step->done = TRUE;
			return TRUE;
		}
		chat_store_read_async (self->store,
				       CHAT_STREAM_KIND_ROOM,
				       step->room_id,
				       step->since,
				       position + 1,
				       0,
				       FALSE,
				       NULL,
				       on_read_done,
				       step);
		break;
	case STEP_HISTORY:
		position = room_position (self, step->room_id, NULL);
		chat_store_read_async (self->store,
				       CHAT_STREAM_KIND_ROOM,
				       step->room_id,
				       0,
				       step->before == 0 ? position + 1
							 : MIN (step->before, position + 1),
				       step->limit,
				       TRUE,
				       NULL,
				       on_read_done,
				       step);
		break;
	case STEP_OFFLINE:
		position = user_position (self, user_id, NULL);
		step->since = chat_store_get_delivered (self->store, user_id);
		if (user == NULL || position <= step->since) {
			step->done = TRUE;
			return TRUE;
		}
		chat_store_read_async (self->store,
				       CHAT_STREAM_KIND_USER,
				       user_id,
				       step->since,
				       position + 1,
				       0,
				       FALSE,
				       NULL,
				       on_read_done,
				       step);
		break;
	case STEP_SYNC:
		if (!step->read) {
			/* a plain sync: the position, now that it is known */
			step->done = TRUE;
			return TRUE;
		}
		position = user_position (self, user_id, &epoch);
		if (user == NULL || step->since > position || g_strcmp0 (step->epoch, epoch) != 0) {
			/* not recovered: finish_user_read() sees a failed read */
			g_set_error_literal (&step->error,
					     G_IO_ERROR,
					     G_IO_ERROR_INVALID_ARGUMENT,
					     "not recoverable");
			step->done = TRUE;
			return TRUE;
		}
		chat_store_read_async (self->store,
				       CHAT_STREAM_KIND_USER,
				       user_id,
				       step->since,
				       position + 1,
				       0,
				       FALSE,
				       NULL,
				       on_read_done,
				       step);
		break;
	default:
		g_assert_not_reached ();
	}
	step->reading = TRUE;
	return TRUE;
}

static void
run_step (ChatHub *self, HubStep *step)
{
	switch (step->kind) {
	case STEP_STORE:
		if (step->error != NULL) {
			/* nothing unstored is relayed: the sender knows, and may send it again */
			if (client_is_connected (self, step->client))
				send_error_at_turn (
				    step->client,
				    CHAT_ERROR_UNAVAILABLE,
				    "The message could not be stored, so it was not relayed");
			break;
		}
		/* with a broker, what was published comes back as STEP_PUBLISHED */
		if (self->broker)
			break;
		if (chat_message_get_to (step->message) != 0)
			route_direct (self,
				      step->message,
				      step->frame,
				      step->sender_copy,
				      step->sender_frame,
				      step->sender_user);
		else
			route_message (self, step->message, step->frame);
		break;
	case STEP_PUBLISHED:
		relay_published (self, step);
		break;
	case STEP_PRESENCE:
		answer_presence (self, step);
		break;
	case STEP_JOIN:
	case STEP_RECOVER:
		finish_join (self, step);
		break;
	case STEP_LEAVE:
		finish_leave (self, step);
		break;
	case STEP_FRAME:
		chat_client_push_frame (step->client, step->frame);
		break;
	case STEP_CLOSE:
		chat_client_close (step->client, step->code, step->reason);
		break;
	case STEP_HISTORY:
		answer_history (self, step);
		break;
	case STEP_OFFLINE:
	case STEP_SYNC:
		finish_user_read (self, step);
		break;
	default:
		g_assert_not_reached ();
	}
}

static void
release_steps (ChatHub *self)
{
	HubStep *step;

	while ((step = g_queue_peek_head (&self->steps)) != NULL) {
		if (!step->done && step->deferred && step->kind != STEP_STORE && !step->reading &&
		    !start_deferred (self, step))
			break;
		if (!step->done)
			break;
		g_queue_pop_head (&self->steps);
		run_step (self, step);
		step_free (step);
	}
}

static void
step_completed (HubStep *step)
{
	/* the step's reference may be the hub's last */
	g_autoptr (ChatHub) self = g_object_ref (step->hub);

	step->done = TRUE;
	release_steps (self);
}

static void
hub_published (gpointer data, ChatStreamKind kind, guint64 stream_id, guint64 offset, GBytes *text)
{
	ChatHub *self = data;
	HubStep *step = step_alloc (self);
	GList *l;

	step->hub = g_object_ref (self);
	step->kind = STEP_PUBLISHED;
	step->done = TRUE;
	step->recovered = -1;
	step->stream_kind = kind;
	step->stream_id = stream_id;
	step->offset = offset;
	step->frame = g_bytes_ref (text);
	/* Ahead of our own messages not yet known published: the broker published them after
	 * this one, since what it publishes reaches us in order, our acknowledgements too. */
	for (l = self->steps.head; l != NULL; l = l->next) {
		HubStep *other = l->data;

		if (other->kind == STEP_STORE && !other->done)
			break;
	}
	if (l == NULL)
		g_queue_push_tail (&self->steps, step);
	else
		g_queue_insert_before (&self->steps, l, step);
	release_steps (self);
}

/* A watched stream became ready (@ready) or could not be reached: its room or user on this
 * node says so; FALSE when this node has neither. A user's connections whose offline read
 * failed recover now that its stream is back. */
static gboolean
set_stream_ready (ChatHub *self, ChatStreamKind kind, guint64 stream_id, gboolean ready)
{
	ChatRoom *room;
	ChatUser *user;

	if (kind == CHAT_STREAM_KIND_ROOM && (room = lookup_room (self, stream_id)) != NULL) {
		room->ready = ready;
		room->unavailable = !ready;
		return TRUE;
	}
	if (kind == CHAT_STREAM_KIND_USER && (user = lookup_user (self, stream_id)) != NULL) {
		user->ready = ready;
		user->unavailable = !ready;
		if (ready) {
			g_autoptr (GPtrArray) stale = g_steal_pointer (&user->stale);

			for (guint i = 0; stale != NULL && i < stale->len; i++)
				if (client_is_connected (self, stale->pdata[i]))
					chat_client_close (stale->pdata[i],
							   CLOSE_CODE_RECOVER,
							   "recover");
		}
		return TRUE;
	}
	return FALSE;
}

static void
hub_watched (gpointer data, ChatStreamKind kind, guint64 stream_id)
{
	ChatHub *self = data;

	set_stream_ready (self, kind, stream_id, TRUE);
	append_unblocked (self);
	release_steps (self);
}

/* Redis could not be reached for the stream within the store's timeout: what waits for it
 * fails now (messages are answered `unavailable`), and so does what asks for it until it is
 * watched again. */
static void
hub_unavailable (gpointer data, ChatStreamKind kind, guint64 stream_id)
{
	ChatHub *self = data;

	if (!set_stream_ready (self, kind, stream_id, FALSE))
		return;
	append_unblocked (self);
	release_steps (self);
}

/* Messages of the stream may not have reached this node: its connections there reconnect
 * and recover what they missed, with `since`, from any node. */
static void
hub_gap (gpointer data, ChatStreamKind kind, guint64 stream_id)
{
	ChatHub *self = data;
	g_autoptr (GPtrArray) clients = NULL;
	ChatRoom *room;
	ChatUser *user;

	if (kind == CHAT_STREAM_KIND_ROOM && (room = lookup_room (self, stream_id)) != NULL) {
		room->ready = FALSE;
		clients = copy_clients (room->members);
		for (guint i = 0; i < room->pending->len; i++)
			g_ptr_array_add (clients, g_object_ref (room->pending->pdata[i]));
	} else if (kind == CHAT_STREAM_KIND_USER &&
		   (user = lookup_user (self, stream_id)) != NULL) {
		user->ready = FALSE;
		clients = copy_clients (user->clients);
	}
	for (guint i = 0; clients != NULL && i < clients->len; i++)
		chat_client_close (clients->pdata[i], CLOSE_CODE_RECOVER, "recover");
}

static const ChatStoreBroker hub_broker = {hub_published, hub_watched, hub_gap, hub_unavailable};

static void
on_append_done (gpointer user_data, GBytes *const *frames, const GError *error)
{
	HubStep *step = user_data;

	if (error != NULL) {
		step->error = g_error_copy (error);
	} else if (frames != NULL) {
		/* the entries as append_step() and submit_message() made them */
		if (frames[0] != NULL)
			step->frame = g_bytes_ref (frames[0]);
		if (step->sender_copy != NULL && frames[1] != NULL)
			step->sender_frame = g_bytes_ref (frames[1]);
	}
	step_completed (step);
}

static void
on_read_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
	HubStep *step = user_data;

	step->frames = chat_store_read_finish (CHAT_STORE (source), result, &step->error);
	step_completed (step);
}

/* A copy that gets its own offset: the frame relayed later is made from it. */
static ChatMessage *
copy_message (ChatMessage *message)
{
	g_autofree char *json = NULL;
	ChatMessage *copy;
	gsize length;

	json = chat_message_to_json_with_length (message, &length);
	copy = chat_message_parse (json, length, FALSE, NULL);
	g_assert (copy != NULL);
	return copy;
}

/* Relays a stamped message in the order messages were stamped, once the store has it (a
 * hub-wide message: once the store has its id). A direct message between two
 * users is stored in both users' streams, each copy with its own offset. */
static void
append_step (ChatHub *self, HubStep *step)
{
	ChatMessage *message = step->message;
	guint64 room_id = chat_message_get_room_id (message);
	guint64 to = chat_message_get_to (message);
	ChatStoreEntry entries[2];
	guint n_entries = 1;

	if (room_id == 0 && to == 0) {
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_ROOM, 0, message};
	} else if (room_id != 0) {
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_ROOM, room_id, message};
	} else {
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_USER, to, message};
		if (step->sender_copy != NULL) {
			entries[1] = (ChatStoreEntry){CHAT_STREAM_KIND_USER,
						      step->sender_user,
						      step->sender_copy};
			n_entries = 2;
		}
	}
	step->deferred = FALSE;
	chat_store_append (self->store, entries, n_entries, on_append_done, step);
}

typedef enum { APPEND_GO, APPEND_WAIT, APPEND_REFUSED } AppendState;

static AppendState
stream_append_state (gboolean known, gboolean ready, gboolean unavailable)
{
	if (!known || ready)
		return APPEND_GO;
	return unavailable ? APPEND_REFUSED : APPEND_WAIT;
}

/* With a broker: a message to a stream this node is starting to watch waits until it does,
 * or this node would miss it (the sender its echo); one whose watch failed is refused. */
static AppendState
append_state (ChatHub *self, HubStep *step)
{
	guint64 room_id = chat_message_get_room_id (step->message);
	guint64 to = chat_message_get_to (step->message);
	ChatRoom *room;
	ChatUser *user;
	AppendState state, sender;

	if (!self->broker)
		return APPEND_GO;
	if (room_id != 0) {
		room = lookup_room (self, room_id);
		return stream_append_state (room != NULL,
					    room != NULL && room->ready,
					    room != NULL && room->unavailable);
	}
	if (to == 0)
		return APPEND_GO;
	user = lookup_user (self, to);
	state = stream_append_state (user != NULL,
				     user != NULL && user->ready,
				     user != NULL && user->unavailable);
	if (step->sender_copy == NULL)
		return state;
	user = lookup_user (self, step->sender_user);
	sender = stream_append_state (user != NULL,
				      user != NULL && user->ready,
				      user != NULL && user->unavailable);
	return MAX (state, sender);
}

static void
refuse_append (HubStep *step)
{
	step->deferred = FALSE;
	g_set_error_literal (&step->error,
			     G_IO_ERROR,
			     G_IO_ERROR_NOT_CONNECTED,
			     "Redis is not reachable");
	step->done = TRUE;
}

/* With a broker: the messages that waited for a watch, in the order they were sent; those
 * whose watch failed are refused. */
static void
append_unblocked (ChatHub *self)
{
	for (GList *l = self->steps.head; l != NULL; l = l->next) {
		HubStep *step = l->data;

		if (step->kind != STEP_STORE || !step->deferred)
			continue;
		switch (append_state (self, step)) {
		case APPEND_GO:
			append_step (self, step);
			break;
		case APPEND_REFUSED:
			refuse_append (step);
			break;
		case APPEND_WAIT:
			break;
		}
	}
}

static void
submit_message (ChatHub *self, ChatMessage *message, ChatClient *sender, guint64 sender_user)
{
	guint64 room_id = chat_message_get_room_id (message);
	guint64 to = chat_message_get_to (message);
	ChatStoreEntry entries[2];
	guint n_entries = 1;
	HubStep *step;

	step = step_new (self, STEP_STORE, sender, message);
	step->sender_user = sender_user;
	if (self->broker) {
		if (room_id == 0 && to != 0 && sender_user != 0 && sender_user != to)
			step->sender_copy = copy_message (message);
		switch (append_state (self, step)) {
		case APPEND_GO:
			append_step (self, step);
			break;
		case APPEND_WAIT:
			step->deferred = TRUE;
			break;
		case APPEND_REFUSED:
			refuse_append (step);
			release_steps (self);
			break;
		}
		return;
	}
	if (room_id == 0 && to == 0) {
		/* hub-wide: not kept, but relayed only once its id is, so no id is given twice */
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_ROOM, 0, message};
	} else if (room_id != 0) {
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_ROOM, room_id, message};
	} else {
		entries[0] = (ChatStoreEntry){CHAT_STREAM_KIND_USER, to, message};
		if (sender_user != 0 && sender_user != to) {
			step->sender_copy = copy_message (message);
			entries[1] =
			    (ChatStoreEntry){CHAT_STREAM_KIND_USER, sender_user, step->sender_copy};
			n_entries = 2;
		}
	}
	chat_store_append (self->store, entries, n_entries, on_append_done, step);
}

/* Answers keep the order of the requests: @frame goes to @client once everything @client
 * asked for before has been done. Other clients' pending requests do not hold it up. */
void
chat_hub_push_in_order (ChatHub *self, ChatClient *client, GBytes *frame)
{
	HubStep *step;

	if (chat_client_get_n_steps (client) == 0) {
		chat_client_push_frame (client, frame);
		return;
	}
	step = step_new (self, STEP_FRAME, client, NULL);
	step->frame = g_bytes_ref (frame);
	step->done = TRUE;
}

/* Closes @client once what it was sent before is out (a rate-limit close, say). */
void
chat_hub_close_in_order (ChatHub *self, ChatClient *client, guint16 code, const char *reason)
{
	HubStep *step;

	if (chat_client_get_n_steps (client) == 0) {
		chat_client_close (client, code, reason);
		return;
	}
	step = step_new (self, STEP_CLOSE, client, NULL);
	step->code = code;
	step->reason = g_strdup (reason);
	step->done = TRUE;
}

/* ---- client messages ------------------------------------------------------------------ */

/* An answer to @client, stamped with the time, after the answers to what it sent before. */
static void
answer_in_order (ChatHub *self, ChatClient *client, ChatMessage *answer)
{
	g_autoptr (GBytes) frame = NULL;

	chat_message_stamp (answer, 0, 0);
	frame = chat_message_to_frame (answer);
	chat_hub_push_in_order (self, client, frame);
}

static void
send_pong (ChatHub *self, ChatClient *client)
{
	g_autoptr (ChatMessage) pong = chat_message_new (CHAT_MESSAGE_TYPE_PONG);

	/* a ping is a barrier: its pong says everything sent before it was handled */
	answer_in_order (self, client, pong);
}

/* Wire errors are English and machine-readable; the code is what clients act on. */
static void
send_error_printf (ChatClient *client, ChatError code, const char *format, ...)
{
	g_autofree char *text = NULL;
	va_list args;

	va_start (args, format);
	text = g_strdup_vprintf (format, args);
	va_end (args);
	chat_client_send_error (client, code, text);
}

/* An error answering a step at its turn: in order already, so not queued behind the
 * client's later requests as chat_client_send_error() would. */
static void
send_error_at_turn (ChatClient *client, ChatError code, const char *format, ...)
{
	g_autoptr (ChatMessage) error = chat_message_new (CHAT_MESSAGE_TYPE_ERROR);
	g_autofree char *text = NULL;
	va_list args;

	va_start (args, format);
	text = g_strdup_vprintf (format, args);
	va_end (args);
	chat_message_set_code (error, chat_error_get_wire_code (code));
	chat_message_set_content (error, text);
	chat_message_stamp (error, 0, 0);
	chat_client_send (client, error);
}

/* What a message must satisfy whoever sends it, a client or the service: English for the
 * wire (@translate FALSE), translated for the API. */
static gboolean
check_addressing (ChatMessage *message, gboolean translate, GError **error)
{
	if (chat_message_get_room_id (message) != 0 && chat_message_get_to (message) != 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     translate
					 ? _ ("A message cannot have both “to” and “room_id”")
					 : "A message cannot have both \"to\" and \"room_id\"");
		return FALSE;
	}
	return TRUE;
}

/* A client's direct message to a user with no connection is stored for later; the service
 * is told the user is offline (@online_only). */
static gboolean
check_sendable (ChatHub *self,
		ChatMessage *message,
		guint64 to,
		gboolean translate,
		gboolean online_only,
		GError **error)
{
	if (chat_message_get_content (message) == NULL && !chat_message_has_data (message)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     translate ? _ ("A message needs content or data")
					       : "A message needs \"content\" or \"data\"");
		return FALSE;
	}
	if (online_only && to != 0 && lookup_user (self, to) == NULL) {
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

	self->counters.received[room_id != 0 ? CHAT_TRAFFIC_ROOM
				: to != 0    ? CHAT_TRAFFIC_DIRECT
					     : CHAT_TRAFFIC_HUB]++;
	if (!check_addressing (message, FALSE, &error) ||
	    !check_sendable (self, message, to, FALSE, FALSE, &error)) {
		chat_client_send_error (client, error->code, error->message);
		return;
	}
	if (room_id != 0 && chat_client_find_room (client, room_id) == NULL) {
		send_error_printf (client,
				   CHAT_ERROR_NOT_MEMBER,
				   "You have not joined room %" G_GUINT64_FORMAT,
				   room_id);
		return;
	}
	stamp_message (self, message, chat_client_get_user_id (client));
	submit_message (self, message, client, chat_client_get_user_id (client));
}

#define HISTORY_DEFAULT_LIMIT 50
#define HISTORY_MAX_LIMIT 100

static guint
history_limit (guint64 limit)
{
	if (limit == 0)
		return HISTORY_DEFAULT_LIMIT;
	return (guint) MIN (limit, HISTORY_MAX_LIMIT);
}

static void
handle_history (ChatHub *self, ChatClient *client, ChatMessage *request)
{
	guint64 room_id = chat_message_get_room_id (request);
	HubStep *step;

	if (room_id == 0) {
		send_error_printf (client,
				   CHAT_ERROR_INVALID_MESSAGE,
				   "Field \"room_id\" is required");
		return;
	}
	if (chat_client_find_room (client, room_id) == NULL) {
		send_error_printf (client,
				   CHAT_ERROR_NOT_MEMBER,
				   "You have not joined room %" G_GUINT64_FORMAT,
				   room_id);
		return;
	}
	/* answered in order: it holds every message of the room the client was sent before */
	step = step_new (self, STEP_HISTORY, client, NULL);
	step->room_id = room_id;
	if (self->broker) {
		step->deferred = TRUE;
		step->before = chat_message_get_before (request);
		step->limit = history_limit (chat_message_get_limit (request));
		release_steps (self);
		return;
	}
	chat_store_read_async (self->store,
			       CHAT_STREAM_KIND_ROOM,
			       room_id,
			       0,
			       chat_message_get_before (request),
			       history_limit (chat_message_get_limit (request)),
			       TRUE,
			       NULL,
			       on_read_done,
			       step);
}

/* ---- presence and token refresh -------------------------------------------------------- */

static int
compare_user_ids (gconstpointer a, gconstpointer b);
static void
add_local_users (ChatHub *self, guint64 room_id, GArray *users);

static void
on_presence_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
	HubStep *step = user_data;

	step->users = chat_store_presence_finish (CHAT_STORE (source), result, &step->error);
	step_completed (step);
}

/* With a broker: the users in Redis, with this node's own (whose entries may not be written
 * yet), each once, ascending. */
static void
answer_presence (ChatHub *self, HubStep *step)
{
	g_autoptr (ChatMessage) answer = NULL;
	g_autoptr (GArray) users = NULL;

	if (!client_is_connected (self, step->client))
		return;
	if (step->error != NULL) {
		send_error_at_turn (step->client,
				    CHAT_ERROR_UNAVAILABLE,
				    "The presence of room %" G_GUINT64_FORMAT " could not be read",
				    step->room_id);
		return;
	}
	users = g_steal_pointer (&step->users);
	add_local_users (self, step->room_id, users);
	answer = chat_message_new (CHAT_MESSAGE_TYPE_PRESENCE);
	chat_message_set_room_id (answer, step->room_id);
	chat_message_set_users (answer, (const guint64 *) users->data, users->len);
	chat_message_stamp (answer, 0, 0);
	chat_client_send (step->client, answer);
}

static gint
compare_user_ids (gconstpointer a, gconstpointer b)
{
	guint64 x = *(const guint64 *) a, y = *(const guint64 *) b;

	return x < y ? -1 : x > y;
}

/* The distinct users of @room's connections, ascending: one walk over the members and a sort,
 * on request only (no bookkeeping on joins or messages). */
static guint64 *
room_user_ids (ChatRoom *room, gsize *n_users)
{
	guint64 *users;
	gsize n = 0;

	*n_users = 0;
	if (room == NULL || room->members->len == 0)
		return NULL;
	users = g_new (guint64, room->members->len);
	for (guint i = 0; i < room->members->len; i++)
		users[i] = chat_client_get_user_id (room->members->pdata[i]);
	qsort (users, room->members->len, sizeof (guint64), compare_user_ids);
	for (guint i = 0; i < room->members->len; i++) {
		if (n == 0 || users[n - 1] != users[i])
			users[n++] = users[i];
	}
	*n_users = n;
	return users;
}

/* Adds the users of @room_id's connections on this node to @users (the other nodes' from the
 * store), then leaves each once, ascending. */
static void
add_local_users (ChatHub *self, guint64 room_id, GArray *users)
{
	g_autofree guint64 *local = NULL;
	gsize n_local = 0;
	guint kept = 0;

	local = room_user_ids (lookup_room (self, room_id), &n_local);
	g_array_append_vals (users, local, n_local);
	g_array_sort (users, compare_user_ids);
	for (guint i = 0; i < users->len; i++)
		if (kept == 0 ||
		    g_array_index (users, guint64, i) != g_array_index (users, guint64, kept - 1))
			g_array_index (users, guint64, kept++) = g_array_index (users, guint64, i);
	g_array_set_size (users, kept);
}

static void
handle_presence (ChatHub *self, ChatClient *client, guint64 room_id)
{
	g_autoptr (ChatMessage) answer = NULL;
	g_autofree guint64 *users = NULL;
	gsize n_users = 0;
	HubStep *step;

	if (room_id == 0) {
		send_error_printf (client,
				   CHAT_ERROR_INVALID_MESSAGE,
				   "Field \"room_id\" is required");
		return;
	}
	if (chat_client_find_room (client, room_id) == NULL) {
		send_error_printf (client,
				   CHAT_ERROR_NOT_MEMBER,
				   "You have not joined room %" G_GUINT64_FORMAT,
				   room_id);
		return;
	}
	if (self->broker) {
		/* every node's users, in Redis; answered in order */
		step = step_new (self, STEP_PRESENCE, client, NULL);
		step->room_id = room_id;
		chat_store_presence_async (self->store, room_id, on_presence_done, step);
		return;
	}
	users = room_user_ids (lookup_room (self, room_id), &n_users);
	answer = chat_message_new (CHAT_MESSAGE_TYPE_PRESENCE);
	chat_message_set_room_id (answer, room_id);
	chat_message_set_users (answer, users, n_users);
	answer_in_order (self, client, answer);
}

/* A new token for the connection: checked like the upgrade's, for the same user; the deadline
 * and the rooms claim are replaced, and the rooms the new claim leaves out are left. */
static void
handle_refresh (ChatHub *self, ChatClient *client, ChatMessage *message)
{
	ChatTokenVerifier *verifier = chat_client_get_verifier (client);
	g_autoptr (ChatMessage) answer = NULL;
	g_autoptr (GArray) rooms = NULL;
	g_autoptr (GError) error = NULL;
	const char *reason = NULL;
	gint64 deadline = 0;
	guint64 user_id = 0;

	if (chat_message_get_token (message) == NULL) {
		send_error_printf (client,
				   CHAT_ERROR_INVALID_MESSAGE,
				   "Field \"token\" is required");
		return;
	}
	if (verifier == NULL) {
		send_error_printf (client,
				   CHAT_ERROR_INVALID_TOKEN,
				   "This connection cannot refresh its token");
		return;
	}
	if (!chat_token_verifier_check_full (verifier,
					     chat_message_get_token (message),
					     &user_id,
					     &rooms,
					     &deadline,
					     &reason,
					     &error)) {
		g_message (_ ("Refused a token refresh of client %s (user %" PRIu64 "): %s"),
			   chat_client_get_id (client),
			   chat_client_get_user_id (client),
			   error->message);
		chat_client_send_error (client, CHAT_ERROR_INVALID_TOKEN, reason);
		return;
	}
	if (user_id != chat_client_get_user_id (client)) {
		g_message (_ ("Refused a token refresh of client %s (user %" PRIu64
			      "): the token is for user %" PRIu64),
			   chat_client_get_id (client),
			   chat_client_get_user_id (client),
			   user_id);
		send_error_printf (client,
				   CHAT_ERROR_INVALID_TOKEN,
				   "The token is for another user");
		return;
	}
	chat_client_refresh_token (client, rooms, deadline);
	answer = chat_message_new (CHAT_MESSAGE_TYPE_REFRESH);
	answer_in_order (self, client, answer);
	/* backwards: leaving moves the last room into the freed position */
	for (guint i = chat_client_get_n_rooms (client); i > 0; i--) {
		guint64 room_id = chat_client_get_room (client, i - 1)->room_id;

		if (!chat_client_may_join (client, room_id))
			leave_room (self, client, room_id, TRUE);
	}
}

/* `sync`: the user's stream from `since`, as a recovering join for a room. */
static void
handle_sync (ChatHub *self, ChatClient *client, ChatMessage *request)
{
	guint64 user_id = chat_client_get_user_id (client);
	guint64 since = 0, top = 0, first = 0;
	const char *epoch = NULL;
	HubStep *step = step_new (self, STEP_SYNC, client, NULL);

	gboolean with_since = chat_message_get_since (request, &since);

	if (self->broker) {
		/* at its turn, once the user's stream is watched: its position is known then */
		step->deferred = TRUE;
		if (with_since) {
			step->since = since;
			step->read = TRUE;
			step->epoch = g_strdup (chat_message_get_epoch (request));
			dm_pending_add (self, client);
		}
		release_steps (self);
		return;
	}
	if (with_since) {
		step->since = since;
		chat_store_get_stream (self->store,
				       CHAT_STREAM_KIND_USER,
				       user_id,
				       &top,
				       &first,
				       &epoch);
		if (g_strcmp0 (chat_message_get_epoch (request), epoch) != 0 || since > top ||
		    since + 1 < first) {
			step->recovered = FALSE;
		} else {
			/* nothing live until the read is in: nothing twice */
			step->read = TRUE;
			dm_pending_add (self, client);
			chat_store_read_async (self->store,
					       CHAT_STREAM_KIND_USER,
					       user_id,
					       since,
					       0,
					       0,
					       FALSE,
					       NULL,
					       on_read_done,
					       step);
			return;
		}
	}
	step->done = TRUE;
	release_steps (self);
}

void
chat_hub_handle_client_message (ChatHub *self, ChatClient *client, ChatMessage *message)
{
	guint64 room_id = chat_message_get_room_id (message);

	switch (chat_message_get_message_type (message)) {
	case CHAT_MESSAGE_TYPE_PING:
		send_pong (self, client);
		break;
	case CHAT_MESSAGE_TYPE_PONG:
		break; /* liveness only */
	case CHAT_MESSAGE_TYPE_MESSAGE:
		handle_chat_message (self, client, message);
		break;
	case CHAT_MESSAGE_TYPE_JOIN:
		if (room_id == 0)
			send_error_printf (client,
					   CHAT_ERROR_INVALID_MESSAGE,
					   "Field \"room_id\" is required");
		else if (!chat_client_may_join (client, room_id))
			send_error_printf (client,
					   CHAT_ERROR_FORBIDDEN,
					   "Your token does not allow room %" G_GUINT64_FORMAT,
					   room_id);
		else if (chat_client_room_limit_reached (client, room_id)) {
			self->counters.room_limit_refusals++;
			send_error_printf (client,
					   CHAT_ERROR_LIMIT_EXCEEDED,
					   "You cannot join more than %u rooms",
					   chat_client_get_max_rooms (client));
		} else {
			join_room (self, client, room_id, message);
		}
		break;
	case CHAT_MESSAGE_TYPE_LEAVE:
		if (room_id == 0)
			send_error_printf (client,
					   CHAT_ERROR_INVALID_MESSAGE,
					   "Field \"room_id\" is required");
		else if (chat_client_find_room (client, room_id) == NULL)
			send_error_printf (client,
					   CHAT_ERROR_NOT_MEMBER,
					   "You have not joined room %" G_GUINT64_FORMAT,
					   room_id);
		else
			leave_room (self, client, room_id, TRUE);
		break;
	case CHAT_MESSAGE_TYPE_PRESENCE:
		handle_presence (self, client, room_id);
		break;
	case CHAT_MESSAGE_TYPE_REFRESH:
		handle_refresh (self, client, message);
		break;
	case CHAT_MESSAGE_TYPE_HISTORY:
		handle_history (self, client, message);
		break;
	case CHAT_MESSAGE_TYPE_SYNC:
		handle_sync (self, client, message);
		break;
	case CHAT_MESSAGE_TYPE_ERROR:
	default:
		send_error_printf (
		    client,
		    CHAT_ERROR_INVALID_MESSAGE,
		    "Clients cannot send messages of type \"%s\"",
		    chat_message_type_to_string (chat_message_get_message_type (message)));
		break;
	}
}

ChatHubCounters *
chat_hub_get_counters (ChatHub *self)
{
	return &self->counters;
}

GPtrArray *
chat_hub_get_clients_unowned (ChatHub *self)
{
	return self->clients;
}

/* ---- registration --------------------------------------------------------------------- */

/* A new connection first gets its user's direct messages that reached no connection (after
 * the delivered watermark), before anything else for it. */
static void
deliver_offline (ChatHub *self, ChatClient *client)
{
	guint64 user_id = chat_client_get_user_id (client);
	guint64 delivered, top = 0;
	HubStep *step;

	/* what went out to a connection that just closed counts already */
	settle_deliveries (self);
	if (self->broker) {
		/* the watermark and the stream are known once the user's watch is ready */
		step = step_new (self, STEP_OFFLINE, client, NULL);
		step->deferred = TRUE;
		dm_pending_add (self, client);
		release_steps (self);
		return;
	}
	delivered = chat_store_get_delivered (self->store, user_id);
	chat_store_get_stream (self->store, CHAT_STREAM_KIND_USER, user_id, &top, NULL, NULL);
	if (top <= delivered)
		return;
	step = step_new (self, STEP_OFFLINE, client, NULL);
	step->since = delivered;
	dm_pending_add (self, client);
	chat_store_read_async (self->store,
			       CHAT_STREAM_KIND_USER,
			       user_id,
			       delivered,
			       0,
			       0,
			       FALSE,
			       NULL,
			       on_read_done,
			       step);
}

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
		user->ready = !self->broker ||
			      chat_store_watch (self->store, CHAT_STREAM_KIND_USER, user->id);
		g_hash_table_insert (self->users, &user->id, user);
	}
	g_ptr_array_add (user->clients, client);
	deliver_offline (self, client);

	g_signal_emit (self, signals[SIGNAL_CLIENT_REGISTERED], 0, client);
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_CLIENTS]);
	/* chat_hub_close_all() closes everyone, latecomers included */
	if (self->closing_all)
		chat_client_close (client, self->close_code, self->close_reason);
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
		if (user->clients->len == 0) {
			if (self->broker)
				chat_store_unwatch (self->store, CHAT_STREAM_KIND_USER, user_id);
			g_hash_table_remove (self->users, &user_id);
		}
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
	if (self->closing_all && self->clients->len == 0 && self->close_source == NULL)
		self->closing_all = FALSE;
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
	return self->counters.relayed[CHAT_TRAFFIC_ROOM] +
	       self->counters.relayed[CHAT_TRAFFIC_DIRECT] +
	       self->counters.relayed[CHAT_TRAFFIC_HUB];
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
	GPtrArray *members;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	room = lookup_room (self, room_id);
	members = copy_clients (room != NULL ? room->members : NULL);
	/* those whose join has not had its turn are members too */
	for (guint i = 0; room != NULL && i < room->pending->len; i++)
		g_ptr_array_add (members, g_object_ref (room->pending->pdata[i]));
	return members;
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
	return room != NULL ? room->members->len + room->pending->len : 0;
}

/**
 * chat_hub_list_room_users:
 * @self: a #ChatHub
 * @room_id: a room id
 * @n_users: (out): return location for the number of users
 *
 * Lists the users with at least one connection to this node in @room_id, each once, in
 * ascending order. It walks the room's members once (and sorts their user ids), so it costs
 * nothing until it is called.
 *
 * This node's connections only: with a #ChatRedisStore, the users connected to the other
 * nodes of the hub are missing. chat_hub_list_room_users_async() lists them all, as a
 * member's `presence` request is answered.
 *
 * Returns: (array length=n_users) (transfer full) (nullable): the user ids, or %NULL for a
 *   room nobody joined here
 *
 * Since: 1.0
 */
guint64 *
chat_hub_list_room_users (ChatHub *self, guint64 room_id, gsize *n_users)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	g_return_val_if_fail (n_users != NULL, NULL);

	return room_user_ids (lookup_room (self, room_id), n_users);
}

static void
on_room_users_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (GTask) task = user_data;
	ChatHub *self = g_task_get_source_object (task);
	guint64 room_id = *(guint64 *) g_task_get_task_data (task);
	g_autoptr (GError) error = NULL;
	g_autoptr (GArray) users = chat_store_presence_finish (CHAT_STORE (source), result, &error);

	if (users == NULL) {
		/* hiredis's and the watchdog's errors say why; the code says what to do */
		g_task_return_new_error (task,
					 CHAT_ERROR,
					 CHAT_ERROR_UNAVAILABLE,
					 _ ("The presence of room %" PRIu64 " cannot be read: %s"),
					 room_id,
					 error->message);
		return;
	}
	add_local_users (self, room_id, users);
	g_task_return_pointer (task, g_steal_pointer (&users), (GDestroyNotify) g_array_unref);
}

/**
 * chat_hub_list_room_users_async:
 * @self: a #ChatHub
 * @room_id: the room, greater than 0
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the users are listed
 * @user_data: data for @callback
 *
 * Lists the users with at least one connection in @room_id on any node of the hub, as a
 * member's `presence` request is answered (see `docs/protocol.md`). With a #ChatRedisStore
 * it reads the room's presence in Redis, which every node keeps up to date for its own
 * connections (#ChatRedisStore:presence-ttl says how long a node that stopped stays
 * listed), and adds this node's users; with any other store, it lists this node's users, as
 * chat_hub_list_room_users() does. Finish with chat_hub_list_room_users_finish().
 *
 * Since: 1.0
 */
void
chat_hub_list_room_users_async (ChatHub *self,
				guint64 room_id,
				GCancellable *cancellable,
				GAsyncReadyCallback callback,
				gpointer user_data)
{
	g_autoptr (GTask) task = NULL;
	g_autoptr (GArray) users = NULL;
	g_autofree guint64 *local = NULL;
	gsize n_local = 0;

	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (room_id > 0);
	g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

	task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (task, chat_hub_list_room_users_async);
	g_task_set_task_data (task, g_memdup2 (&room_id, sizeof room_id), g_free);
	if (self->broker) {
		chat_store_presence_async (self->store,
					   room_id,
					   on_room_users_read,
					   g_steal_pointer (&task));
		return;
	}
	/* one node: its own users are all there is (the callback still runs from the loop) */
	local = room_user_ids (lookup_room (self, room_id), &n_local);
	users = g_array_sized_new (FALSE, FALSE, sizeof (guint64), n_local);
	g_array_append_vals (users, local, n_local);
	g_task_return_pointer (task, g_steal_pointer (&users), (GDestroyNotify) g_array_unref);
}

/**
 * chat_hub_list_room_users_finish:
 * @self: a #ChatHub
 * @result: the #GAsyncResult given to the callback
 * @n_users: (out): return location for the number of users
 * @error: return location for a #GError
 *
 * Finishes chat_hub_list_room_users_async().
 *
 * Returns: (array length=n_users) (transfer full) (nullable): the user ids, each once,
 *   ascending, possibly none (never %NULL then); %NULL with %CHAT_ERROR_UNAVAILABLE if
 *   Redis could not be read within #ChatRedisStore:timeout, or %G_IO_ERROR_CANCELLED
 *
 * Since: 1.0
 */
guint64 *
chat_hub_list_room_users_finish (ChatHub *self,
				 GAsyncResult *result,
				 gsize *n_users,
				 GError **error)
{
	g_autoptr (GArray) users = NULL;
	guint64 *ids;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	g_return_val_if_fail (g_task_is_valid (result, self), NULL);
	g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
				  chat_hub_list_room_users_async,
			      NULL);
	g_return_val_if_fail (n_users != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	*n_users = 0;
	users = g_task_propagate_pointer (G_TASK (result), error);
	if (users == NULL)
		return NULL;
	*n_users = users->len;
	/* never NULL without an error, even for no users (an empty GArray's data may be) */
	ids = g_new0 (guint64, MAX (users->len, 1));
	if (users->len > 0)
		memcpy (ids, users->data, users->len * sizeof (guint64));
	return ids;
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
	join_room (self, client, room_id, NULL);
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
	if (!check_sendable (self, message, to, TRUE, TRUE, error))
		return 0;
	g_autoptr (ChatMessage) copy = NULL;
	ChatRoom *room;
	ChatUser *user;

	chat_message_set_room_id (message, room_id);
	chat_message_set_to (message, to);
	stamp_message (self, message, chat_message_get_from (message));
	/* relayed later: from a copy, which the caller cannot change meanwhile */
	copy = copy_message (message);
	submit_message (self, copy, NULL, 0);
	/* those it will be relayed to, as things stand */
	if (room_id != 0)
		return (room = lookup_room (self, room_id)) != NULL ? room->members->len : 0;
	if (to != 0)
		return (user = lookup_user (self, to)) != NULL ? user->clients->len : 0;
	return self->clients->len;
}

/**
 * chat_hub_send_to_all:
 * @self: a #ChatHub
 * @message: a `message` with content or data; its `to` and `room_id` are cleared
 * @error: return location for a #GError
 *
 * Relays @message to every connection on the hub, as the service: @message gets the next id
 * and the current timestamp, and keeps its #ChatMessage:from (0 means the service itself).
 * It is not kept in any history, but it is relayed only once the store has recorded its id
 * (so that no id is given twice across a restart): later, on the hub's main context, as a
 * copy, and #ChatHub::broadcast is emitted then with that copy.
 *
 * Returns: the number of connections it is queued for, as things stand; 0 with @error set
 *   on failure (%CHAT_ERROR_INVALID_MESSAGE)
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
 * Like a client's room message, it is stored in #ChatHub:store first and relayed, with its
 * offset, once stored: on a later main-loop iteration, and not at all if the store fails
 * (the store logs it). @message itself gets its id and timestamp, not the offset.
 *
 * Returns: the number of members it is relayed to once stored (0 for an empty room); 0
 *   with @error set on failure
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
 * chat_hub_send_to_all()). Like a client's direct message it is stored first, in the user's
 * stream (see chat_hub_send_to_room()), and relayed with its offset once stored; a
 * connection of the user that registers later gets it if none of the user's connections did.
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
 * chat_hub_send:
 * @self: a #ChatHub
 * @message: a `message` with content or data, addressed by its own #ChatMessage:room-id or
 *   #ChatMessage:to (neither: every connection)
 * @error: return location for a #GError
 *
 * Relays @message as the service, wherever it says it goes: like chat_hub_send_to_room()
 * for a room, chat_hub_send_to_user() for a user, chat_hub_send_to_all() otherwise. A
 * message with both a room and a user is refused, as a client's is.
 *
 * Returns: the number of connections it was queued for, as those functions count them; 0
 *   with @error set on failure (%CHAT_ERROR_INVALID_MESSAGE, %CHAT_ERROR_USER_OFFLINE)
 *
 * Since: 1.0
 */
guint
chat_hub_send (ChatHub *self, ChatMessage *message, GError **error)
{
	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	g_return_val_if_fail (CHAT_IS_MESSAGE (message), 0);
	g_return_val_if_fail (error == NULL || *error == NULL, 0);

	if (!check_addressing (message, TRUE, error))
		return 0;
	return relay_from_service (self,
				   message,
				   chat_message_get_room_id (message),
				   chat_message_get_to (message),
				   error);
}

/* ---- history -------------------------------------------------------------------------- */

static void
on_history_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (GTask) task = user_data;
	g_autoptr (GError) error = NULL;
	g_autoptr (GPtrArray) frames = chat_store_read_finish (CHAT_STORE (source), result, &error);
	g_autoptr (GPtrArray) messages = NULL;

	if (frames == NULL) {
		g_task_return_error (task, g_steal_pointer (&error));
		return;
	}
	messages = g_ptr_array_new_full (frames->len, g_object_unref);
	for (guint i = 0; i < frames->len; i++) {
		gsize size;
		const char *text = g_bytes_get_data (frames->pdata[i], &size);
		ChatMessage *message = chat_message_parse (text, size, TRUE, &error);

		/* the store gives back what the hub wrote */
		if (message == NULL) {
			g_prefix_error (&error, _ ("A stored message cannot be read: "));
			g_task_return_error (task, g_steal_pointer (&error));
			return;
		}
		g_ptr_array_add (messages, message);
	}
	g_task_return_pointer (task,
			       g_steal_pointer (&messages),
			       (GDestroyNotify) g_ptr_array_unref);
}

/**
 * chat_hub_read_history_async:
 * @self: a #ChatHub
 * @room_id: the room, greater than 0
 * @before: read messages with offsets below this one; 0 for the newest
 * @limit: at most this many messages: 0 for 50, and more than 100 counts as 100, as for a
 *   client's `history` request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the messages are read
 * @user_data: data for @callback
 *
 * Reads the newest @limit messages of @room_id stored in #ChatHub:store below offset
 * @before, as a member's `history` request does (see `docs/protocol.md`). Whether anyone is
 * in the room does not matter. Finish with chat_hub_read_history_finish().
 *
 * Since: 1.0
 */
void
chat_hub_read_history_async (ChatHub *self,
			     guint64 room_id,
			     guint64 before,
			     guint limit,
			     GCancellable *cancellable,
			     GAsyncReadyCallback callback,
			     gpointer user_data)
{
	g_autoptr (GTask) task = NULL;
	const char *epoch = NULL;

	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (room_id > 0);
	g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

	task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (task, chat_hub_read_history_async);
	chat_store_get_stream (self->store, CHAT_STREAM_KIND_ROOM, room_id, NULL, NULL, &epoch);
	g_task_set_task_data (task, g_strdup (epoch), g_free);
	chat_store_read_async (self->store,
			       CHAT_STREAM_KIND_ROOM,
			       room_id,
			       0,
			       before,
			       history_limit (limit),
			       TRUE,
			       cancellable,
			       on_history_read,
			       g_steal_pointer (&task));
}

/**
 * chat_hub_read_history_finish:
 * @self: a #ChatHub
 * @result: the #GAsyncResult given to the callback
 * @epoch: (out) (optional) (transfer full): return location for the room's epoch: the
 *   offsets of two reads are comparable only when their epochs are equal
 * @error: return location for a #GError
 *
 * Finishes chat_hub_read_history_async().
 *
 * Returns: (transfer container) (element-type ChatMessage): the messages, oldest first,
 *   each with its #ChatMessage:offset, id, sender and timestamp as it was relayed; %NULL
 *   with @error set if the store could not read them. The array holds a reference on each
 *   message (its free function unrefs them), as chat_hub_list_clients()'s does: in C,
 *   g_ptr_array_unref() frees it all
 *
 * Since: 1.0
 */
GPtrArray *
chat_hub_read_history_finish (ChatHub *self, GAsyncResult *result, char **epoch, GError **error)
{
	GPtrArray *messages;

	g_return_val_if_fail (CHAT_IS_HUB (self), NULL);
	g_return_val_if_fail (g_task_is_valid (result, self), NULL);
	g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
				  chat_hub_read_history_async,
			      NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	messages = g_task_propagate_pointer (G_TASK (result), error);
	if (messages != NULL && epoch != NULL)
		*epoch = g_strdup (g_task_get_task_data (G_TASK (result)));
	return messages;
}

/**
 * chat_hub_close_client:
 * @self: a #ChatHub
 * @client: a #ChatClient registered with @self
 * @code: a WebSocket close code, such as %CHAT_CLOSE_CODE_POLICY_VIOLATION
 * @reason: (nullable): a short English reason for the peer (at most 123 bytes are sent)
 *
 * Closes @client as chat_client_close() does, but only after everything the hub was asked
 * to relay before this call: a message just given to chat_hub_send_to_all() (which is
 * relayed once the store has its id) reaches @client before its close. For an operator's
 * "say this, then disconnect".
 *
 * Since: 1.0
 */
void
chat_hub_close_client (ChatHub *self, ChatClient *client, guint16 code, const char *reason)
{
	HubStep *step;

	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (CHAT_IS_CLIENT (client));
	g_return_if_fail (chat_client_get_hub (client) == self);

	if (g_queue_is_empty (&self->steps)) {
		chat_client_close (client, code, reason);
		return;
	}
	step = step_new (self, STEP_CLOSE, client, NULL);
	step->code = code;
	step->reason = g_strdup (reason);
	step->done = TRUE;
}

/* Reads the input chat_hub_close_all() held again, and forgets its list. */
static void
release_to_close (ChatHub *self)
{
	for (guint i = 0; self->to_close != NULL && i < self->to_close->len; i++)
		chat_client_hold_input (self->to_close->pdata[i], FALSE);
	g_clear_pointer (&self->to_close, g_ptr_array_unref);
}

/* Closes the next CLOSE_BATCH clients of chat_hub_close_all()'s list. */
static gboolean
close_batch (gpointer user_data)
{
	ChatHub *self = user_data;
	guint end = MIN (self->close_next + self->close_batch, self->to_close->len);

	for (; self->close_next < end; self->close_next++) {
		ChatClient *client = self->to_close->pdata[self->close_next];

		/* one that closed meanwhile is gone from the hub already */
		if (chat_client_get_hub (client) == self)
			chat_client_close (client, self->close_code, self->close_reason);
	}
	if (self->close_next < self->to_close->len)
		return G_SOURCE_CONTINUE;
	release_to_close (self);
	/* called directly by chat_hub_close_all() too: not only by returning */
	chat_clear_source (&self->close_source);
	if (self->clients->len == 0)
		self->closing_all = FALSE;
	return G_SOURCE_REMOVE;
}

void
chat_hub_set_close_batch (ChatHub *self, guint n_clients)
{
	g_return_if_fail (CHAT_IS_HUB (self));
	g_return_if_fail (n_clients > 0);
	self->close_batch = n_clients;
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
 * The first 500 are asked to close at once, the others 500 per main loop iteration (so that
 * the loop writes the close frames out as it goes rather than queueing thousands first); a
 * client that registers meanwhile is closed as well. The clients' input is read again once
 * the last batch is asked. Until every client is gone, the clients that leave send no
 * `leave` events to the others: they are all closing.
 *
 * Returns: the number of clients asked to close
 *
 * Since: 1.0
 */
guint
chat_hub_close_all (ChatHub *self, guint16 code, const char *reason)
{
	guint n;

	g_return_val_if_fail (CHAT_IS_HUB (self), 0);
	g_return_val_if_fail ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
				  (code >= 3000 && code <= 4999),
			      0);

	/* a second call restarts with its code: those asked already keep the first */
	chat_clear_source (&self->close_source);
	release_to_close (self);
	self->close_code = code;
	g_free (self->close_reason);
	self->close_reason = g_strdup (reason);
	n = self->clients->len;
	if (n == 0)
		return 0;
	self->closing_all = TRUE;
	self->to_close = copy_clients (self->clients);
	self->close_next = 0;
	/* the answers are read once every close frame is on its way: reading those of the first
	 * batches between the next ones would hold the last frames back */
	if (n > self->close_batch)
		for (guint i = 0; i < n; i++)
			chat_client_hold_input (self->to_close->pdata[i], TRUE);
	self->close_source = g_idle_source_new ();
	g_source_set_priority (self->close_source, G_PRIORITY_DEFAULT);
	g_source_set_callback (self->close_source, close_batch, self, NULL);
	g_source_set_static_name (self->close_source, "chathub close all");
	g_source_attach (self->close_source, self->context);
	close_batch (self);
	return n;
}
