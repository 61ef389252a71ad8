/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-client-private.h"
#include "chat-hub.h"

G_BEGIN_DECLS

/* only #ChatServer creates clients, so only the library registers them */
void
chat_hub_register_client (ChatHub *self, ChatClient *client);
void
chat_hub_unregister_client (ChatHub *self, ChatClient *client);
void
chat_hub_handle_client_message (ChatHub *self, ChatClient *client, ChatMessage *message);
GPtrArray *
chat_hub_get_clients_unowned (ChatHub *self);
/* Answers keep the order of the requests: relays wait for the store, and whatever a client
 * is sent or told after them waits its turn too (now if nothing is pending). */
void
chat_hub_push_in_order (ChatHub *self, ChatClient *client, GBytes *frame);
void
chat_hub_close_in_order (ChatHub *self, ChatClient *client, guint16 code, const char *reason);

G_END_DECLS
