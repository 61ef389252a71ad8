/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The WebSocket frames chathub builds itself (chat-outbox.c, chat_message_to_frame()): header
 * bytes at every length boundary of RFC 6455 section 5.2, the FIN and opcode bits, never a
 * mask, and the payload right behind the header.
 */

#include <string.h>

#include "chat-frame-private.h"
#include "chat-message-private.h"

typedef struct {
	gsize length;
	guint8 header[10];
	gsize header_length;
} FrameCase;

/* Text frames (FIN | opcode 1 = 0x81); the second byte never has the mask bit. */
static const FrameCase frame_cases[] = {
    {0, {0x81, 0x00}, 2},
    {1, {0x81, 0x01}, 2},
    {125, {0x81, 0x7d}, 2}, /* the largest 7-bit length */
    {126, {0x81, 0x7e, 0x00, 0x7e}, 4},
    {127, {0x81, 0x7e, 0x00, 0x7f}, 4},
    {256, {0x81, 0x7e, 0x01, 0x00}, 4},
    {65535, {0x81, 0x7e, 0xff, 0xff}, 4}, /* the largest 16-bit length */
    {65536, {0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}, 10},
    /* every byte of the 64-bit length different: catches a wrong byte order */
    {0x01020304, {0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04}, 10},
};

/* A payload in which a byte out of place shows. */
static guint8 *
make_payload (gsize length)
{
	guint8 *payload = g_malloc (MAX (length, 1));

	for (gsize i = 0; i < length; i++)
		payload[i] = (guint8) ((i * 7 + 3) % 251);
	return payload;
}

static void
assert_frame (GBytes *frame,
	      const guint8 *header,
	      gsize header_length,
	      const guint8 *payload,
	      gsize length)
{
	gsize size = 0;
	const guint8 *data = g_bytes_get_data (frame, &size);

	g_assert_cmpuint (size, ==, header_length + length);
	g_assert_cmpmem (data, header_length, header, header_length);
	g_assert_cmpint (data[1] & 0x80, ==, 0); /* server frames are never masked */
	g_assert_true (length == 0 || memcmp (data + header_length, payload, length) == 0);
}

static void
test_frame_lengths (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (frame_cases); i++) {
		const FrameCase *c = &frame_cases[i];
		g_autofree guint8 *payload = make_payload (c->length);
		g_autoptr (GBytes) frame = chat_frame_new (0x1, payload, c->length);

		g_test_message ("payload of %" G_GSIZE_FORMAT " bytes", c->length);
		assert_frame (frame, c->header, c->header_length, payload, c->length);
	}
}

/* The builder writes the header in front of a payload serialized in place: same bytes. */
static void
test_frame_builder (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (frame_cases); i++) {
		const FrameCase *c = &frame_cases[i];
		g_autofree guint8 *payload = make_payload (c->length);
		GString *builder = chat_frame_builder_new ();
		g_autoptr (GBytes) frame = NULL;
		g_autoptr (GBytes) reference = chat_frame_new (0x1, payload, c->length);

		g_string_append_len (builder, (const char *) payload, (gssize) c->length);
		frame = chat_frame_builder_finish (builder);
		assert_frame (frame, c->header, c->header_length, payload, c->length);
		g_assert_true (g_bytes_equal (frame, reference));
	}
}

static void
test_frame_opcodes (void)
{
	static const struct {
		guint8 opcode;
		guint8 first_byte;
	} cases[] = {
	    {0x1, 0x81}, /* text */
	    {0x2, 0x82}, /* binary */
	    {0x8, 0x88}, /* close */
	    {0x9, 0x89}, /* ping */
	    {0xa, 0x8a}, /* pong */
	};
	const guint8 close_payload[] = {0x03, 0xe8, 'b', 'y', 'e'};

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autoptr (GBytes) empty = chat_frame_new (cases[i].opcode, NULL, 0);
		g_autoptr (GBytes) frame =
		    chat_frame_new (cases[i].opcode, close_payload, sizeof close_payload);
		const guint8 empty_header[] = {cases[i].first_byte, 0x00};
		const guint8 header[] = {cases[i].first_byte, sizeof close_payload};

		assert_frame (empty, empty_header, 2, NULL, 0);
		assert_frame (frame, header, 2, close_payload, sizeof close_payload);
	}
}

/* A message of exactly @json_length bytes of JSON, by padding its content. */
static ChatMessage *
message_of_length (gsize json_length)
{
	ChatMessage *message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autofree char *content = NULL;
	gsize base;

	chat_message_stamp (message, 42, 7);
	chat_message_set_timestamp (message, 1700000000);
	chat_message_set_content (message, "");
	g_free (chat_message_to_json_with_length (message, &base));
	g_assert_cmpuint (json_length, >=, base);
	content = g_strnfill (json_length - base, 'x');
	chat_message_set_content (message, content);
	return message;
}

/* The hub frames a message once, through the builder: the payload is the message's JSON. */
static void
test_frame_message (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (frame_cases); i++) {
		const FrameCase *c = &frame_cases[i];
		g_autoptr (ChatMessage) message = NULL;
		g_autoptr (GBytes) frame = NULL;
		g_autofree char *json = NULL;
		gsize length = 0;

		if (c->length < 64 || c->length > 1024 * 1024)
			continue; /* below an empty message's size; the 16 MiB case says nothing new
				   */
		message = message_of_length (c->length);
		json = chat_message_to_json_with_length (message, &length);
		g_assert_cmpuint (length, ==, c->length);
		frame = chat_message_to_frame (message);
		assert_frame (frame, c->header, c->header_length, (const guint8 *) json, length);
	}
}

/* The frame a store keeps (chat_message_to_exact_frame()) is the hub's frame byte for byte, of
 * the exact size, and its payload (what a read gives) is the JSON text. */
static void
test_frame_exact_and_payload (void)
{
	g_autoptr (GString) scratch = g_string_new (NULL);

	for (gsize i = 0; i < G_N_ELEMENTS (frame_cases); i++) {
		const FrameCase *c = &frame_cases[i];
		g_autoptr (ChatMessage) message = NULL;
		g_autoptr (GBytes) frame = NULL;
		g_autoptr (GBytes) exact = NULL;
		g_autoptr (GBytes) payload = NULL;
		g_autofree char *json = NULL;
		gsize length = 0;

		if (c->length < 64 || c->length > 1024 * 1024)
			continue; /* as in test_frame_message() */
		message = message_of_length (c->length);
		json = chat_message_to_json_with_length (message, &length);
		frame = chat_message_to_frame (message);
		exact = chat_message_to_exact_frame (message, scratch);
		g_assert_true (g_bytes_equal (exact, frame));
		g_assert_cmpuint (chat_frame_header_size_of (exact), ==, c->header_length);
		payload = chat_frame_get_payload (exact);
		g_assert_cmpmem (g_bytes_get_data (payload, NULL),
				 g_bytes_get_size (payload),
				 json,
				 length);
	}
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

	g_test_add_func ("/chat/frame/lengths", test_frame_lengths);
	g_test_add_func ("/chat/frame/builder", test_frame_builder);
	g_test_add_func ("/chat/frame/opcodes", test_frame_opcodes);
	g_test_add_func ("/chat/frame/message", test_frame_message);
	g_test_add_func ("/chat/frame/exact-and-payload", test_frame_exact_and_payload);
	return g_test_run ();
}
