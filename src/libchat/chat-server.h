/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <gio/gio.h>

#include "chat-hub.h"
#include "chat-token-verifier.h"
#include "chat-version.h"

G_BEGIN_DECLS

#define CHAT_TYPE_SERVER (chat_server_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatServer, chat_server, CHAT, SERVER, GObject)

CHAT_AVAILABLE_IN_ALL
ChatServer *
chat_server_new (ChatHub *hub, ChatTokenVerifier *verifier);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_server_listen (ChatServer *self, const char *address, guint16 port, GError **error);
CHAT_AVAILABLE_IN_ALL
void
chat_server_stop_listening (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_server_listen_metrics (ChatServer *self, const char *address, guint16 port, GError **error);
CHAT_AVAILABLE_IN_ALL
guint16
chat_server_get_metrics_port (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
guint16
chat_server_get_port (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
char *
chat_server_get_uri (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
ChatHub *
chat_server_get_hub (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
ChatTokenVerifier *
chat_server_get_verifier (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
guint
chat_server_get_n_connections (ChatServer *self);
CHAT_AVAILABLE_IN_ALL
GVariant *
chat_server_get_statistics (ChatServer *self);

G_END_DECLS
