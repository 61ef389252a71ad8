/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "chat-frame-private.h"

/* the largest WebSocket header: 2 bytes + a 64-bit length */
#define FRAME_HEADER_MAX 10

static gsize
frame_header_size (gsize length)
{
	return length < 126 ? 2 : length <= G_MAXUINT16 ? 4 : 10;
}

static void
frame_write_header (guint8 *out, guint8 opcode, gsize length)
{
	out[0] = 0x80 | opcode;
	if (length < 126) {
		out[1] = (guint8) length;
	} else if (length <= G_MAXUINT16) {
		out[1] = 126;
		out[2] = (guint8) (length >> 8);
		out[3] = (guint8) length;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (guint8) ((guint64) length >> (56 - 8 * i));
	}
}

GBytes *
chat_frame_new (guint8 opcode, const void *payload, gsize length)
{
	gsize header = frame_header_size (length);
	guint8 *data = g_malloc (header + length);

	frame_write_header (data, opcode, length);
	if (length > 0)
		memcpy (data + header, payload, length);
	return g_bytes_new_take (data, header + length);
}

/* The builder reserves room for the largest header in front of the payload, so a serialized
 * message becomes a frame without another copy. */
GString *
chat_frame_builder_new (void)
{
	GString *builder = g_string_sized_new (256);

	g_string_set_size (builder, FRAME_HEADER_MAX);
	return builder;
}

GBytes *
chat_frame_builder_finish (GString *builder)
{
	gsize length = builder->len - FRAME_HEADER_MAX;
	gsize header = frame_header_size (length);
	gsize offset = FRAME_HEADER_MAX - header;
	char *data;

	frame_write_header ((guint8 *) builder->str + offset, 0x1, length);
	data = g_string_free (builder, FALSE);
	return g_bytes_new_with_free_func (data + offset, header + length, g_free, data);
}

gsize
chat_frame_header_size_of (GBytes *frame)
{
	const guint8 *data = g_bytes_get_data (frame, NULL);
	guint8 length = data[1] & 0x7f;

	return length < 126 ? 2 : length == 126 ? 4 : 10;
}

GBytes *
chat_frame_get_payload (GBytes *frame)
{
	gsize header = chat_frame_header_size_of (frame);

	return g_bytes_new_from_bytes (frame, header, g_bytes_get_size (frame) - header);
}
