/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The per-connection output queue chathub keeps under libsoup: hub frames (shared, refcounted,
 * built once per relay) and libsoup's own frames (pong, close) are queued whole and written with
 * one sendmsg() per connection per main-loop iteration. See docs/architecture.md. */

#define CHAT_TYPE_OUTBOX (chat_outbox_get_type ())
G_DECLARE_FINAL_TYPE (ChatOutbox, chat_outbox, CHAT, OUTBOX, GOutputStream)

/* One flush source per GMainContext serving many outboxes. */
GSource *
chat_flush_source_new (void);

ChatOutbox *
chat_outbox_new (GIOStream *base, GSocket *socket, GSource *flush_source, GSource *poll_source);
GIOStream *
chat_outbox_new_io_stream (ChatOutbox *self);
gboolean
chat_outbox_can_send (ChatOutbox *self);
gboolean
chat_outbox_push (ChatOutbox *self, GBytes *frame);
gboolean
chat_outbox_push_urgent (ChatOutbox *self, GBytes *frame);
gsize
chat_outbox_get_pending (ChatOutbox *self);
void
chat_outbox_flush_now (ChatOutbox *self);
guint64
chat_outbox_get_bytes_sent (ChatOutbox *self);
void
chat_outbox_drop_unstarted (ChatOutbox *self);

/* Frames: server-to-client frames are unmasked, so one buffer serves every recipient. */
GBytes *
chat_frame_new (guint8 opcode, const void *payload, gsize length);
GString *
chat_frame_builder_new (void);
GBytes *
chat_frame_builder_finish (GString *builder);

G_END_DECLS
