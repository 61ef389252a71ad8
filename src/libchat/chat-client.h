/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <glib-object.h>

#include "chat-message.h"
#include "chat-version.h"

G_BEGIN_DECLS

/**
 * ChatCloseCode:
 * @CHAT_CLOSE_CODE_NORMAL: 1000, a normal close
 * @CHAT_CLOSE_CODE_GOING_AWAY: 1001, the server shuts down or the client was idle too long
 * @CHAT_CLOSE_CODE_UNSUPPORTED_DATA: 1003, the client sent a binary frame
 * @CHAT_CLOSE_CODE_NO_STATUS: 1005, the peer closed without a code
 * @CHAT_CLOSE_CODE_ABNORMAL: 1006, the connection was lost without a close frame
 * @CHAT_CLOSE_CODE_POLICY_VIOLATION: 1008, a slow consumer, or closed by an operator
 * @CHAT_CLOSE_CODE_TOO_BIG: 1009, a message over the size limit
 * @CHAT_CLOSE_CODE_TOKEN_EXPIRED: 4001, the connection's token expired (its `exp` plus the
 *   verifier's leeway passed) and no `refresh` replaced it
 *
 * WebSocket close codes chathub uses (RFC 6455, section 7.4.1; 4001 is chathub's own, in the
 * range for private use).
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_CLOSE_CODE_NORMAL = 1000,
	CHAT_CLOSE_CODE_GOING_AWAY = 1001,
	CHAT_CLOSE_CODE_UNSUPPORTED_DATA = 1003,
	CHAT_CLOSE_CODE_NO_STATUS = 1005,
	CHAT_CLOSE_CODE_ABNORMAL = 1006,
	CHAT_CLOSE_CODE_POLICY_VIOLATION = 1008,
	CHAT_CLOSE_CODE_TOO_BIG = 1009,
	CHAT_CLOSE_CODE_TOKEN_EXPIRED = 4001,
} ChatCloseCode;

CHAT_AVAILABLE_IN_ALL
GType
chat_close_code_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_CLOSE_CODE (chat_close_code_get_type ())

#define CHAT_TYPE_CLIENT (chat_client_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatClient, chat_client, CHAT, CLIENT, GObject)

CHAT_AVAILABLE_IN_ALL
const char *
chat_client_get_id (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
guint64
chat_client_get_user_id (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
gint64
chat_client_get_connected_since (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
const char *
chat_client_get_remote_address (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_client_get_rooms (ChatClient *self, gsize *n_rooms);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_client_is_member (ChatClient *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_client_may_join (ChatClient *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_client_is_open (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
gsize
chat_client_get_pending_bytes (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
guint64
chat_client_get_bytes_sent (ChatClient *self);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_client_send (ChatClient *self, ChatMessage *message);
CHAT_AVAILABLE_IN_ALL
void
chat_client_close (ChatClient *self, guint16 code, const char *reason);

G_END_DECLS
