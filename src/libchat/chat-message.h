/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <json-glib/json-glib.h>

#include "chat-version.h"

G_BEGIN_DECLS

/**
 * ChatMessageType:
 * @CHAT_MESSAGE_TYPE_PING: `ping`: the client asks for a `pong`
 * @CHAT_MESSAGE_TYPE_PONG: `pong`: the answer to a `ping`
 * @CHAT_MESSAGE_TYPE_MESSAGE: `message`: a chat message to everyone, a room or a user
 * @CHAT_MESSAGE_TYPE_JOIN: `join`: join a room, or the event that someone joined
 * @CHAT_MESSAGE_TYPE_LEAVE: `leave`: leave a room, or the event that someone left
 * @CHAT_MESSAGE_TYPE_ERROR: `error`: a request was refused; see the `code`
 * @CHAT_MESSAGE_TYPE_PRESENCE: `presence`: ask who is connected in a room, or the answer
 *   (its `users`)
 * @CHAT_MESSAGE_TYPE_REFRESH: `refresh`: replace the connection's token (its `token`), or the
 *   answer that it was accepted
 * @CHAT_MESSAGE_TYPE_HISTORY: `history`: a member asks for a room's stored messages, or the
 *   answer that carries them (protocol 1.1)
 * @CHAT_MESSAGE_TYPE_SYNC: `sync`: a client recovers its user's direct messages since an
 *   offset, or the answer that says where its stream stands (protocol 1.1)
 *
 * The `type` of a protocol message.
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_MESSAGE_TYPE_PING,
	CHAT_MESSAGE_TYPE_PONG,
	CHAT_MESSAGE_TYPE_MESSAGE,
	CHAT_MESSAGE_TYPE_JOIN,
	CHAT_MESSAGE_TYPE_LEAVE,
	CHAT_MESSAGE_TYPE_ERROR,
	CHAT_MESSAGE_TYPE_PRESENCE,
	CHAT_MESSAGE_TYPE_REFRESH,
	CHAT_MESSAGE_TYPE_HISTORY,
	CHAT_MESSAGE_TYPE_SYNC,
} ChatMessageType;

CHAT_AVAILABLE_IN_ALL
GType
chat_message_type_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_MESSAGE_TYPE (chat_message_type_get_type ())

CHAT_AVAILABLE_IN_ALL
const char *
chat_message_type_to_string (ChatMessageType type);

#define CHAT_TYPE_MESSAGE (chat_message_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatMessage, chat_message, CHAT, MESSAGE, GObject)

CHAT_AVAILABLE_IN_ALL
ChatMessage *
chat_message_new (ChatMessageType type);
CHAT_AVAILABLE_IN_ALL
ChatMessage *
chat_message_new_from_json (const char *text, gssize length, GError **error);
CHAT_AVAILABLE_IN_ALL
char *
chat_message_to_json (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
char *
chat_message_to_json_with_length (ChatMessage *self, gsize *length);

CHAT_AVAILABLE_IN_ALL
ChatMessageType
chat_message_get_message_type (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
guint64
chat_message_get_id (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_id (ChatMessage *self, guint64 id);
CHAT_AVAILABLE_IN_ALL
guint64
chat_message_get_offset (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_offset (ChatMessage *self, guint64 offset);
CHAT_AVAILABLE_IN_ALL
guint64
chat_message_get_from (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_from (ChatMessage *self, guint64 from);
CHAT_AVAILABLE_IN_ALL
guint64
chat_message_get_to (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_to (ChatMessage *self, guint64 to);
CHAT_AVAILABLE_IN_ALL
guint64
chat_message_get_room_id (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_room_id (ChatMessage *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
const char *
chat_message_get_content (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_content (ChatMessage *self, const char *content);
CHAT_AVAILABLE_IN_ALL
JsonNode *
chat_message_get_data (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_data (ChatMessage *self, JsonNode *data);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_message_set_data_json (ChatMessage *self, const char *json, gssize length, GError **error);
CHAT_AVAILABLE_IN_ALL
gint64
chat_message_get_timestamp (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_timestamp (ChatMessage *self, gint64 timestamp);
CHAT_AVAILABLE_IN_ALL
const char *
chat_message_get_code (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_code (ChatMessage *self, const char *code);
CHAT_AVAILABLE_IN_ALL
const char *
chat_message_get_token (ChatMessage *self);
CHAT_AVAILABLE_IN_ALL
void
chat_message_set_token (ChatMessage *self, const char *token);

G_END_DECLS
