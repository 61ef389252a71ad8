/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-outbox-private.h"

G_BEGIN_DECLS

/* The GIOStream libsoup gets for a connection: the ChatInbox to read, the ChatOutbox to
 * write. GSimpleIOStream would close on a worker thread and never close the socket; this one
 * closes on the main thread, after the outbox drained. */
#define CHAT_TYPE_OUTBOX_STREAM (chat_outbox_stream_get_type ())
G_DECLARE_FINAL_TYPE (ChatOutboxStream, chat_outbox_stream, CHAT, OUTBOX_STREAM, GIOStream)

GIOStream *
chat_outbox_stream_new (ChatOutbox *outbox);

G_END_DECLS
