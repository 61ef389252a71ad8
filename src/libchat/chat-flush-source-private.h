/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-histogram-private.h"
#include "chat-outbox-private.h"

G_BEGIN_DECLS

/* One source per GMainContext that writes every outbox with queued frames once per main-loop
 * iteration (see docs/architecture.md, step 9). */
GSource *
chat_flush_source_new (void);
/* Destroys @source; the outboxes still listed write what they can at once. */
void
chat_flush_source_destroy (GSource *source);
/* Lists @outbox (a reference is held) for the next dispatch, which calls
 * chat_outbox_flush_listed() on it. */
void
chat_flush_source_add (GSource *source, ChatOutbox *outbox);
/* The write path's figures for /metrics: bytes per sendmsg() and the bytes an outbox held
 * when its flush began. */
typedef struct {
	ChatHistogram write_bytes;
	ChatHistogram waiting_bytes;
} ChatFlushStatistics;

ChatFlushStatistics *
chat_flush_source_get_statistics (GSource *source);

G_END_DECLS
