/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "chat-inbox-private.h"

G_BEGIN_DECLS

/* The per-connection output queue chathub keeps under libsoup: hub frames (shared, refcounted,
 * built once per relay) and libsoup's own frames (pong, close) are queued whole and written with
 * one sendmsg() per connection per main-loop iteration (with TLS: one TLS record of up to 16 KiB
 * per chunk of frames). See docs/architecture.md. */

#define CHAT_TYPE_OUTBOX (chat_outbox_get_type ())
G_DECLARE_FINAL_TYPE (ChatOutbox, chat_outbox, CHAT, OUTBOX, GOutputStream)

/* @tls: @base is libsoup's stream over a GTlsConnection; every byte is then written through
 * that connection's output stream instead of the socket */
ChatOutbox *
chat_outbox_new (GIOStream *base,
		 GSocket *socket,
		 gboolean tls,
		 GSource *flush_source,
		 GSource *poll_source);
ChatInbox *
chat_outbox_get_inbox (ChatOutbox *self);
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
/* tests: the ring's capacity in frames (0: none allocated) */
guint
chat_outbox_get_ring_size (ChatOutbox *self);

/* For the flush source: writes what is queued, unless waiting for the socket to drain. */
void
chat_outbox_flush_listed (ChatOutbox *self);
/* For ChatOutboxStream: libsoup's close, completed (@task) once the queue drained or after
 * a deadline; and an immediate close. */
void
chat_outbox_close_async (ChatOutbox *self, GTask *task);
void
chat_outbox_close_now (ChatOutbox *self);

G_END_DECLS
