/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <glib-object.h>

#include "chat-client.h"
#include "chat-message.h"
#include "chat-version.h"

G_BEGIN_DECLS

#define CHAT_TYPE_HUB (chat_hub_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatHub, chat_hub, CHAT, HUB, GObject)

CHAT_AVAILABLE_IN_ALL
ChatHub *
chat_hub_new (void);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_get_n_clients (ChatHub *self);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_get_n_rooms (ChatHub *self);
CHAT_AVAILABLE_IN_ALL
GPtrArray *
chat_hub_list_clients (ChatHub *self);
CHAT_AVAILABLE_IN_ALL
ChatClient *
chat_hub_lookup_client (ChatHub *self, const char *client_id);
CHAT_AVAILABLE_IN_ALL
GPtrArray *
chat_hub_list_user_clients (ChatHub *self, guint64 user_id);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_hub_list_rooms (ChatHub *self, gsize *n_rooms);
CHAT_AVAILABLE_IN_ALL
GPtrArray *
chat_hub_list_room_members (ChatHub *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_get_n_room_members (ChatHub *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_hub_list_room_users (ChatHub *self, guint64 room_id, gsize *n_users);
CHAT_AVAILABLE_IN_ALL
void
chat_hub_list_room_users_async (ChatHub *self,
				guint64 room_id,
				GCancellable *cancellable,
				GAsyncReadyCallback callback,
				gpointer user_data);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_hub_list_room_users_finish (ChatHub *self,
				 GAsyncResult *result,
				 gsize *n_users,
				 GError **error);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_hub_join_room (ChatHub *self, ChatClient *client, guint64 room_id, GError **error);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_hub_leave_room (ChatHub *self, ChatClient *client, guint64 room_id, GError **error);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_send_to_all (ChatHub *self, ChatMessage *message, GError **error);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_send_to_room (ChatHub *self, guint64 room_id, ChatMessage *message, GError **error);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_send_to_user (ChatHub *self, guint64 user_id, ChatMessage *message, GError **error);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_send (ChatHub *self, ChatMessage *message, GError **error);
CHAT_AVAILABLE_IN_ALL
void
chat_hub_close_client (ChatHub *self, ChatClient *client, guint16 code, const char *reason);
CHAT_AVAILABLE_IN_ALL
guint
chat_hub_close_all (ChatHub *self, guint16 code, const char *reason);
CHAT_AVAILABLE_IN_ALL
guint64
chat_hub_get_messages_relayed (ChatHub *self);
CHAT_AVAILABLE_IN_ALL
void
chat_hub_read_history_async (ChatHub *self,
			     guint64 room_id,
			     guint64 before,
			     guint limit,
			     GCancellable *cancellable,
			     GAsyncReadyCallback callback,
			     gpointer user_data);
CHAT_AVAILABLE_IN_ALL
GPtrArray *
chat_hub_read_history_finish (ChatHub *self, GAsyncResult *result, char **epoch, GError **error);

G_END_DECLS
