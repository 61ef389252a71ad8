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
/* The same, serialized in @scratch (kept by the caller from one message to the next) and
 * copied into a frame of the exact size: for frames that are kept (a store's). */
GBytes *
chat_message_to_exact_frame (ChatMessage *self, GString *scratch);
void
chat_message_stamp (ChatMessage *self, guint64 id, guint64 from);
gboolean
chat_message_has_data (ChatMessage *self);
/* the `users` of a `presence` answer: serialized, never parsed from a client */
void
chat_message_set_users (ChatMessage *self, const guint64 *users, gsize n_users);
ChatMessage *
chat_message_parse (const char *text, gsize length, gboolean translate, GError **error);

/* Protocol 1.1 fields the hub reads from requests and writes on answers; not in the GIR,
 * since only the hub builds and reads them. */
gboolean
chat_message_get_since (ChatMessage *self, guint64 *since);
guint64
chat_message_get_before (ChatMessage *self);
guint64
chat_message_get_limit (ChatMessage *self);
const char *
chat_message_get_epoch (ChatMessage *self);
void
chat_message_set_epoch (ChatMessage *self, const char *epoch);
/* a stream's position on an answer (a join's ack): `offset` is written even when 0 */
void
chat_message_set_position (ChatMessage *self, guint64 offset, const char *epoch);
/* -1 leaves `recovered` out; 0 or 1 writes false or true */
void
chat_message_set_recovered (ChatMessage *self, gint recovered);
/* (element-type GBytes): a history answer's `messages`, each written as stored */
void
chat_message_set_stored (ChatMessage *self, GPtrArray *frames);

G_END_DECLS
