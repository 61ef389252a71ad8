/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-message.h"

G_BEGIN_DECLS

void
chat_message_append_json (ChatMessage *self, GString *out);
/* The message serialized once into a complete server-to-client text frame. */
GBytes *
chat_message_to_frame (ChatMessage *self);
void
chat_message_stamp (ChatMessage *self, guint64 id, guint64 from);
gboolean
chat_message_has_data (ChatMessage *self);
/* the `users` of a `presence` answer: serialized, never parsed from a client */
void
chat_message_set_users (ChatMessage *self, const guint64 *users, gsize n_users);
ChatMessage *
chat_message_parse (const char *text, gsize length, gboolean translate, GError **error);

G_END_DECLS
