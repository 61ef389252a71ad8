/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* WebSocket frames from the server: unmasked, so one buffer serves every recipient. */

GBytes *
chat_frame_new (guint8 opcode, const void *payload, gsize length);
/* A buffer to serialize a text message into, with room for the header in front of it. */
GString *
chat_frame_builder_new (void);
/* Takes @builder; the frame shares its memory (no copy). */
GBytes *
chat_frame_builder_finish (GString *builder);
/* The size of the header of a frame made by this file. */
gsize
chat_frame_header_size_of (GBytes *frame);
/* The payload of a frame made by this file, sharing its memory. */
GBytes *
chat_frame_get_payload (GBytes *frame);

G_END_DECLS
