/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <libsoup/soup.h>

#include "chat-client.h"
#include "chat-error.h"
#include "chat-outbox-private.h"

G_BEGIN_DECLS

typedef struct _ChatHub ChatHub;

/* Called once when the client's connection is gone, after the hub let it go. A plain function
 * pointer: a signal handler would cost every connection a closure. */
typedef void (*ChatClientClosedFunc) (ChatClient *client, gpointer user_data);

/* A room this client joined, and where the client sits in the hub's member array of that
 * room (so leaving is O(1) however big the room is). */
typedef struct {
	guint64 room_id;
	guint slot;
} ChatClientRoom;

/* The instance struct is shared with the hub, which keeps the routing indexes in it. */
struct _ChatClient {
	GObject parent_instance;

	char id[24];
	guint64 user_id;
	gint64 connected_since; /* unix seconds */
	char *remote_address;
	SoupWebsocketConnection *conn; /* owned until the client is finalized */
	ChatOutbox *outbox;	       /* owned */
	GArray *allowed_rooms;	       /* (nullable): the token's rooms claim */
	gsize outbox_budget;
	gint64 last_rx;	  /* monotonic, µs: last data frame or pong */
	gint64 last_ping; /* monotonic, µs */
	guint16 close_code;
	gboolean closed;

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

ChatClient *
chat_client_new (SoupWebsocketConnection *conn,
		 ChatOutbox *outbox,
		 guint64 user_id,
		 GArray *allowed_rooms,
		 const char *remote_address,
		 gsize outbox_budget);
void
chat_client_set_limits (ChatClient *self,
			guint messages_per_second,
			guint message_burst,
			guint max_rooms);
gboolean
chat_client_push_frame (ChatClient *self, GBytes *frame);
void
chat_client_send_error (ChatClient *self, ChatError code, const char *text);
void
chat_client_heartbeat (ChatClient *self, gint64 now, gint64 ping_interval, gint64 idle_timeout);
ChatClientRoom *
chat_client_find_room (ChatClient *self, guint64 room_id);
void
chat_client_add_room (ChatClient *self, guint64 room_id, guint slot);
void
chat_client_remove_room (ChatClient *self, guint64 room_id);
void
chat_client_clear_rooms (ChatClient *self);
gboolean
chat_client_room_limit_reached (ChatClient *self, guint64 room_id);

G_END_DECLS
