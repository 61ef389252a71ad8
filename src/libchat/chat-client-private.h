/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <libsoup/soup.h>

#include "chat-client.h"
#include "chat-error.h"
#include "chat-outbox-private.h"
#include "chat-token-verifier.h"

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

ChatClient *
chat_client_new (SoupWebsocketConnection *conn,
		 ChatOutbox *outbox,
		 guint64 user_id,
		 GArray *allowed_rooms,
		 const char *remote_address,
		 gsize outbox_size);
void
chat_client_set_limits (ChatClient *self,
			guint messages_per_second,
			guint message_burst,
			guint max_rooms);
gboolean
chat_client_push_frame (ChatClient *self, GBytes *frame);
void
chat_client_send_error (ChatClient *self, ChatError code, const char *text);
gboolean
chat_client_heartbeat (ChatClient *self,
		       gint64 now,
		       gint64 real_now,
		       gint64 ping_interval,
		       gint64 idle_timeout);
/* The token: the verifier that accepted it (and checks a `refresh`), and its deadline (real
 * time in µs, exp plus leeway; 0: none), after which the heartbeat closes the client (4001). */
void
chat_client_set_token (ChatClient *self, ChatTokenVerifier *verifier, gint64 deadline);
ChatTokenVerifier *
chat_client_get_verifier (ChatClient *self);
/* The hub holds a request of this client (a step of its pipeline), or finished one; past a
 * bound the client's reading pauses until the hub caught up. */
void
chat_client_step_added (ChatClient *self);
void
chat_client_step_done (ChatClient *self);
guint
chat_client_get_n_steps (ChatClient *self);
/* Stops reading the client's input (what arrives waits in the kernel) until released;
 * chat_hub_close_all() holds every client's while it asks them to close. */
void
chat_client_hold_input (ChatClient *self, gboolean hold);
gint64
chat_client_get_token_deadline (ChatClient *self);
void
chat_client_refresh_token (ChatClient *self, GArray *allowed_rooms, gint64 deadline);
gboolean
chat_client_is_slow_consumer (ChatClient *self);
guint16
chat_client_get_close_code (ChatClient *self);
void
chat_client_set_closed_func (ChatClient *self, ChatClientClosedFunc func, gpointer user_data);
void
chat_client_clear_closed_func (ChatClient *self, gpointer user_data);
SoupWebsocketConnection *
chat_client_get_connection (ChatClient *self);

/* The hub's state in the client: where the client sits in the hub's client array, and its
 * rooms with their slots in the rooms' member arrays. Only the hub calls these. */
ChatHub *
chat_client_get_hub (ChatClient *self);
void
chat_client_set_hub (ChatClient *self, ChatHub *hub, guint slot);
guint
chat_client_get_hub_slot (ChatClient *self);
void
chat_client_set_hub_slot (ChatClient *self, guint slot);
guint
chat_client_get_max_rooms (ChatClient *self);
guint
chat_client_get_n_rooms (ChatClient *self);
ChatClientRoom *
chat_client_get_room (ChatClient *self, guint position);
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
