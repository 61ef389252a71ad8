/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatOutbox, the write queue under libsoup (chat-outbox.c), on one end of a socketpair whose
 * send buffer is small: partial writes that keep the byte stream frame-aligned, dropping what
 * was not started, urgent and close frames, and the slow-consumer outbox size of
 * chat_client_push_frame(). The test reads the other end itself and compares every byte.
 */

#include <errno.h>
#include <libsoup/soup.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat-client-private.h"
#include "chat-flush-source-private.h"
#include "chat-frame-private.h"
#include "chat-inbox-private.h"
#include "chat-outbox-private.h"
#include "chat-outbox-stream-private.h"
#include "chat-test-utils.h"

/* The kernel takes a few KiB at most (it doubles this and enforces a minimum), so a frame of
 * BIG_FRAME bytes is always written in part. */
#define SEND_BUFFER 4096
#define BIG_FRAME (64 * 1024)
#define WAIT_MS 10000

typedef struct {
	GMainContext *context;
	int peer; /* the other end: the test reads it */
	GSocket *socket;
	GIOStream *base;
	GSource *flush;
	GSource *poll;
	ChatOutbox *outbox;
	GByteArray *expected; /* the frames in the order the peer must get them */
	GByteArray *received;
	gboolean peer_eof;
	/* only for the outbox-size tests */
	GIOStream *io;
	SoupWebsocketConnection *conn;
	ChatClient *client;
} Fixture;

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GError) error = NULL;
	int fds[2];
	int size = SEND_BUFFER;

	fixture->context = g_main_context_new ();
	g_main_context_push_thread_default (fixture->context);
	g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
	g_assert_no_errno (setsockopt (fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size));
	fixture->peer = fds[1];
	fixture->socket = g_socket_new_from_fd (fds[0], &error);
	g_assert_no_error (error);
	fixture->base =
	    G_IO_STREAM (g_socket_connection_factory_create_connection (fixture->socket));
	fixture->flush = chat_flush_source_new ();
	g_source_attach (fixture->flush, fixture->context);
	fixture->poll = chat_poll_source_new (&error);
	g_assert_no_error (error);
	g_source_attach (fixture->poll, fixture->context);
	fixture->outbox =
	    chat_outbox_new (fixture->base, fixture->socket, FALSE, fixture->flush, fixture->poll);
	fixture->expected = g_byte_array_new ();
	fixture->received = g_byte_array_new ();
}

static gboolean
read_peer (gpointer user_data)
{
	Fixture *fixture = user_data;
	guint8 buffer[65536];

	for (;;) {
		gssize n = recv (fixture->peer, buffer, sizeof buffer, MSG_DONTWAIT);

		if (n > 0) {
			g_byte_array_append (fixture->received, buffer, (guint) n);
			continue;
		}
		if (n == 0)
			fixture->peer_eof = TRUE;
		else
			g_assert_true (errno == EAGAIN || errno == EWOULDBLOCK);
		return FALSE;
	}
}

static gboolean
received_all (gpointer user_data)
{
	Fixture *fixture = user_data;

	read_peer (fixture);
	return fixture->received->len >= fixture->expected->len;
}

static gboolean
connection_closed (gpointer user_data)
{
	Fixture *fixture = user_data;

	read_peer (fixture);
	return soup_websocket_connection_get_state (fixture->conn) == SOUP_WEBSOCKET_STATE_CLOSED;
}

/* Reads the peer (the main context flushes meanwhile) until every expected byte arrived, and
 * compares: one byte lost, doubled or out of order at a partial write shows here. */
static void
assert_peer_gets_expected (Fixture *fixture)
{
	chat_test_wait_until (received_all, fixture, WAIT_MS);
	g_assert_cmpmem (fixture->received->data,
			 fixture->received->len,
			 fixture->expected->data,
			 fixture->expected->len);
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, 0);
}

static void
fixture_teardown (Fixture *fixture, gconstpointer data)
{
	if (fixture->conn != NULL) {
		/* the peer closes (a masked close frame, code 1000): libsoup answers if it has not
		 * closed yet, then closes the stream once the outbox drained */
		static const guint8 close_frame[] =
		    {0x88, 0x82, 0x01, 0x02, 0x03, 0x04, 0x03 ^ 0x01, 0xe8 ^ 0x02};

		g_assert_cmpint (
		    send (fixture->peer, close_frame, sizeof close_frame, MSG_NOSIGNAL),
		    ==,
		    sizeof close_frame);
		chat_test_wait_until (connection_closed, fixture, WAIT_MS);
	}
	/* the flush source's dirty list and the outbox hold each other: empty the list first */
	while (g_main_context_iteration (fixture->context, FALSE))
		;
	g_clear_object (&fixture->client);
	g_clear_object (&fixture->conn);
	g_clear_object (&fixture->io);
	g_clear_object (&fixture->outbox);
	g_clear_object (&fixture->base);
	g_clear_object (&fixture->socket);
	g_source_destroy (fixture->flush);
	g_clear_pointer (&fixture->flush, g_source_unref);
	g_source_destroy (fixture->poll);
	g_clear_pointer (&fixture->poll, g_source_unref);
	if (fixture->peer >= 0)
		close (fixture->peer);
	g_byte_array_unref (fixture->expected);
	g_byte_array_unref (fixture->received);
	/* let sources destroyed above release what they hold */
	while (g_main_context_iteration (fixture->context, FALSE))
		;
	g_main_context_pop_thread_default (fixture->context);
	g_main_context_unref (fixture->context);
}

/* A text frame with a payload of @size bytes that differs from every other @tag's. */
static GBytes *
make_frame (guint tag, gsize size)
{
	g_autofree guint8 *payload = g_malloc (MAX (size, 1));

	for (gsize i = 0; i < size; i++)
		payload[i] = (guint8) ((tag * 31 + i) % 251);
	return chat_frame_new (0x1, payload, size);
}

static void
expect (Fixture *fixture, GBytes *frame)
{
	gsize size = 0;
	const guint8 *data = g_bytes_get_data (frame, &size);

	g_byte_array_append (fixture->expected, data, (guint) size);
}

static gsize
push (Fixture *fixture, GBytes *frame)
{
	g_assert_true (chat_outbox_push (fixture->outbox, frame));
	return g_bytes_get_size (frame);
}

/* Queues a frame the kernel cannot take whole and writes what it takes: the head of the
 * queue is then partly written and the outbox waits for the socket to be writable. */
static GBytes *
push_partly_written (Fixture *fixture)
{
	GBytes *big = make_frame (1000, BIG_FRAME);
	guint64 sent;

	push (fixture, big);
	chat_outbox_flush_now (fixture->outbox);
	sent = chat_outbox_get_bytes_sent (fixture->outbox);
	g_assert_cmpuint (sent, >, 0);
	g_assert_cmpuint (sent, <, g_bytes_get_size (big));
	return big;
}

static void
test_outbox_push_flush (Fixture *fixture, gconstpointer data)
{
	gsize total = 0;

	for (guint i = 0; i < 3; i++) {
		g_autoptr (GBytes) frame = make_frame (i, 100 * i);

		total += push (fixture, frame);
		expect (fixture, frame);
	}
	/* queued, not written: the flush source writes at the end of the iteration */
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, total);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, 0);
	g_assert_true (chat_outbox_can_send (fixture->outbox));
	assert_peer_gets_expected (fixture);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, total);
}

static void
test_outbox_partial_write (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = make_frame (1000, BIG_FRAME);
	gsize total = push (fixture, big);
	guint64 sent;

	expect (fixture, big);
	for (guint i = 1; i <= 20; i++) {
		g_autoptr (GBytes) frame = make_frame (i, i * 150);

		total += push (fixture, frame);
		expect (fixture, frame);
	}
	chat_outbox_flush_now (fixture->outbox);

	/* a short write: what the kernel took is exactly what left the queue */
	sent = chat_outbox_get_bytes_sent (fixture->outbox);
	g_assert_cmpuint (sent, >, 0);
	g_assert_cmpuint (sent, <, g_bytes_get_size (big));
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, total - sent);
	read_peer (fixture);
	g_assert_cmpuint (fixture->received->len, ==, sent);
	g_assert_cmpmem (fixture->received->data, sent, fixture->expected->data, sent);

	/* waiting for the socket: no second attempt until it is writable */
	chat_outbox_flush_now (fixture->outbox);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, sent);

	/* the peer reads: the rest follows, in order, from the byte where it stopped */
	assert_peer_gets_expected (fixture);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, total);
}

/* More frames than one sendmsg() takes (256 iovecs) and than a small ring holds. */
static void
test_outbox_many_frames (Fixture *fixture, gconstpointer data)
{
	gsize total = 0;

	for (guint i = 0; i < 1000; i++) {
		g_autoptr (GBytes) frame = make_frame (i, i % 7 == 0 ? 3000 : i % 40);

		total += push (fixture, frame);
		expect (fixture, frame);
	}
	assert_peer_gets_expected (fixture);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, total);
}

/* A connection that gets a burst in every iteration keeps the ring the first one grew, instead
 * of growing it again each time; a burst that uses at most half of it gives it back. */
static void
test_outbox_ring_kept_for_bursts (Fixture *fixture, gconstpointer data)
{
	for (guint round = 0; round < 2; round++) {
		for (guint i = 0; i < 200; i++) {
			g_autoptr (GBytes) frame = make_frame (i, 10);

			push (fixture, frame);
			expect (fixture, frame);
		}
		assert_peer_gets_expected (fixture);
		g_assert_cmpuint (chat_outbox_get_ring_size (fixture->outbox), ==, 256);
	}
	for (guint i = 0; i < 100; i++) {
		g_autoptr (GBytes) frame = make_frame (i, 10);

		push (fixture, frame);
		expect (fixture, frame);
	}
	assert_peer_gets_expected (fixture);
	g_assert_cmpuint (chat_outbox_get_ring_size (fixture->outbox), ==, 0);
}

/* A slow consumer's queue is cut at a frame boundary: the partly written head stays whole. */
static void
test_outbox_drop_unstarted_keeps_partial (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = push_partly_written (fixture);
	g_autoptr (GBytes) after = make_frame (3, 500);
	guint64 sent = chat_outbox_get_bytes_sent (fixture->outbox);

	expect (fixture, big);
	for (guint i = 1; i <= 2; i++) {
		g_autoptr (GBytes) frame = make_frame (i, 700);

		push (fixture, frame);
	}
	chat_outbox_drop_unstarted (fixture->outbox);
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox),
			  ==,
			  g_bytes_get_size (big) - sent);

	/* what comes next (a close frame, in real life) follows the whole head frame */
	push (fixture, after);
	expect (fixture, after);
	assert_peer_gets_expected (fixture);
}

static void
test_outbox_drop_unstarted_all (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) first = make_frame (1, 300);
	g_autoptr (GBytes) last = make_frame (9, 10);

	/* written whole: nothing is partly written afterwards */
	push (fixture, first);
	expect (fixture, first);
	chat_outbox_flush_now (fixture->outbox);
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, 0);

	for (guint i = 2; i <= 4; i++) {
		g_autoptr (GBytes) frame = make_frame (i, 200);

		push (fixture, frame);
	}
	chat_outbox_drop_unstarted (fixture->outbox);
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, 0);
	push (fixture, last);
	expect (fixture, last);
	assert_peer_gets_expected (fixture);
}

/* A ping goes ahead of queued data, but never into the middle of a partly written frame. */
static void
test_outbox_urgent_after_partial (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = push_partly_written (fixture);
	g_autoptr (GBytes) ping = chat_frame_new (0x9, NULL, 0);
	g_autoptr (GBytes) first = make_frame (1, 100);
	g_autoptr (GBytes) second = make_frame (2, 100);

	push (fixture, first);
	push (fixture, second);
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, ping));
	expect (fixture, big);
	expect (fixture, ping);
	expect (fixture, first);
	expect (fixture, second);
	assert_peer_gets_expected (fixture);
}

static void
test_outbox_urgent_first (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) ping = chat_frame_new (0x9, NULL, 0);
	g_autoptr (GBytes) first = make_frame (1, 100);
	g_autoptr (GBytes) second = make_frame (2, 100);

	push (fixture, first);
	push (fixture, second);
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, ping));
	expect (fixture, ping);
	expect (fixture, first);
	expect (fixture, second);
	assert_peer_gets_expected (fixture);
}

/* Control frames keep their own order: two pongs to two pings leave as they came, both ahead
 * of the data, after a partly written head. */
static void
test_outbox_urgent_in_order (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = push_partly_written (fixture);
	g_autoptr (GBytes) pong1 = chat_frame_new (0xa, "1", 1);
	g_autoptr (GBytes) pong2 = chat_frame_new (0xa, "2", 1);
	g_autoptr (GBytes) pong3 = chat_frame_new (0xa, "3", 1);
	g_autoptr (GBytes) first = make_frame (1, 100);
	g_autoptr (GBytes) second = make_frame (2, 100);

	push (fixture, first);
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, pong1));
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, pong2));
	push (fixture, second);
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, pong3));
	expect (fixture, big);
	expect (fixture, pong1);
	expect (fixture, pong2);
	expect (fixture, pong3);
	expect (fixture, first);
	expect (fixture, second);
	assert_peer_gets_expected (fixture);
}

/* A flush source destroyed with outboxes still listed writes them and lets them go: the two
 * hold references on each other. */
static void
test_outbox_flush_source_destroyed (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) frame = make_frame (1, 100);
	GWeakRef weak;

	g_weak_ref_init (&weak, fixture->outbox);
	push (fixture, frame);
	expect (fixture, frame);
	chat_flush_source_destroy (fixture->flush);
	g_clear_object (&fixture->outbox);
	g_assert_null (g_weak_ref_get (&weak));
	g_weak_ref_clear (&weak);
	chat_test_wait_until (received_all, fixture, WAIT_MS);
	g_assert_cmpmem (fixture->received->data,
			 fixture->received->len,
			 fixture->expected->data,
			 fixture->expected->len);
}

/* The same with a ring that wrapped around and must grow to take the urgent frame. */
static void
test_outbox_urgent_wrapped (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) ping = chat_frame_new (0x9, NULL, 0);
	g_autoptr (GBytes) big = make_frame (1000, BIG_FRAME);
	GBytes *later[7];

	/* six small frames leave with the start of the big one: the ring's head moves on */
	for (guint i = 1; i <= 6; i++) {
		g_autoptr (GBytes) frame = make_frame (i, 10);

		push (fixture, frame);
		expect (fixture, frame);
	}
	push (fixture, big);
	expect (fixture, big);
	chat_outbox_flush_now (fixture->outbox);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), >, 6 * 12);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), <, 6 * 12 + BIG_FRAME);

	/* seven more fill the ring of eight across its end */
	for (guint i = 0; i < G_N_ELEMENTS (later); i++) {
		later[i] = make_frame (10 + i, 50);
		push (fixture, later[i]);
	}
	g_assert_true (chat_outbox_push_urgent (fixture->outbox, ping));
	expect (fixture, ping);
	for (guint i = 0; i < G_N_ELEMENTS (later); i++) {
		expect (fixture, later[i]);
		g_bytes_unref (later[i]);
	}
	assert_peer_gets_expected (fixture);
}

/* libsoup's own frames come through the GOutputStream: a pong goes ahead like a ping, a close
 * frame goes last and nothing may follow it. */
static void
test_outbox_stream_frames (Fixture *fixture, gconstpointer data)
{
	static const guint8 pong[] = {0x8a, 0x02, 'h', 'i'};
	static const guint8 close_frame[] = {0x88, 0x02, 0x03, 0xe8};
	GOutputStream *stream = G_OUTPUT_STREAM (fixture->outbox);
	g_autoptr (GBytes) first = make_frame (1, 100);
	g_autoptr (GBytes) second = make_frame (2, 100);
	g_autoptr (GBytes) refused = make_frame (3, 100);
	g_autoptr (GError) error = NULL;
	gsize pending;

	push (fixture, first);
	push (fixture, second);
	g_assert_cmpint (
	    g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (stream),
							pong,
							sizeof pong,
							NULL,
							&error),
	    ==,
	    sizeof pong);
	g_assert_no_error (error);
	g_assert_cmpint (
	    g_output_stream_write (stream, close_frame, sizeof close_frame, NULL, &error),
	    ==,
	    sizeof close_frame);
	g_assert_no_error (error);

	pending = chat_outbox_get_pending (fixture->outbox);
	g_assert_false (chat_outbox_can_send (fixture->outbox));
	g_assert_false (chat_outbox_push (fixture->outbox, refused));
	g_assert_false (chat_outbox_push_urgent (fixture->outbox, refused));
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, pending);

	g_byte_array_append (fixture->expected, pong, sizeof pong);
	expect (fixture, first);
	expect (fixture, second);
	g_byte_array_append (fixture->expected, close_frame, sizeof close_frame);
	assert_peer_gets_expected (fixture);
}

/* Closing the stream (as libsoup does after its close frame) drains the queue first, then
 * closes the socket: the peer reads everything, then EOF. */
static void
on_closed (GObject *source, GAsyncResult *result, gpointer user_data)
{
	gboolean *done = user_data;
	g_autoptr (GError) error = NULL;

	g_assert_true (g_io_stream_close_finish (G_IO_STREAM (source), result, &error));
	g_assert_no_error (error);
	*done = TRUE;
}

static gboolean
is_true (gpointer user_data)
{
	return *(gboolean *) user_data;
}

static gboolean
peer_at_eof (gpointer user_data)
{
	Fixture *fixture = user_data;

	read_peer (fixture);
	return fixture->peer_eof;
}

static void
test_outbox_close_drains (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = push_partly_written (fixture);
	g_autoptr (GBytes) last = make_frame (2, 1000);
	g_autoptr (GIOStream) io = chat_outbox_stream_new (fixture->outbox);
	gboolean done = FALSE;

	push (fixture, last);
	expect (fixture, big);
	expect (fixture, last);
	g_io_stream_close_async (io, G_PRIORITY_DEFAULT, NULL, on_closed, &done);
	g_assert_false (chat_outbox_can_send (fixture->outbox));
	chat_test_wait_until (peer_at_eof, fixture, WAIT_MS);
	g_assert_cmpmem (fixture->received->data,
			 fixture->received->len,
			 fixture->expected->data,
			 fixture->expected->len);
	chat_test_wait_until (is_true, &done, WAIT_MS);
}

/* A peer that went away: the write fails, the queue is dropped, nothing more is taken. */
static void
test_outbox_peer_gone (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) frame = make_frame (1, 100);
	g_autoptr (GError) error = NULL;
	static const guint8 pong[] = {0x8a, 0x00};

	close (fixture->peer);
	fixture->peer = -1;
	push (fixture, frame);
	push (fixture, frame);
	chat_outbox_flush_now (fixture->outbox);
	g_assert_false (chat_outbox_can_send (fixture->outbox));
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox), ==, 0);
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox), ==, 0);
	g_assert_false (chat_outbox_push (fixture->outbox, frame));
	g_assert_cmpint (g_output_stream_write (G_OUTPUT_STREAM (fixture->outbox),
						pong,
						sizeof pong,
						NULL,
						&error),
			 ==,
			 -1);
	g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
}

/* ---- the outbox size (chat_client_push_frame()) ---------------------------------------- */

/* A ChatClient on the outbox, as chat-server.c's on_upgraded() builds it. */
static void
make_client (Fixture *fixture, gsize outbox_size)
{
	g_autoptr (GUri) uri = g_uri_parse ("ws://127.0.0.1/ws", G_URI_FLAGS_NONE, NULL);

	ChatInbox *inbox;

	fixture->io = chat_outbox_stream_new (fixture->outbox);
	/* libsoup's input source goes to the inbox's shard, which the poll source runs */
	inbox = CHAT_INBOX (g_io_stream_get_input_stream (fixture->io));
	chat_inbox_park_begin (inbox);
	fixture->conn = soup_websocket_connection_new (fixture->io,
						       uri,
						       SOUP_WEBSOCKET_CONNECTION_SERVER,
						       NULL,
						       NULL,
						       NULL);
	chat_inbox_park_end (inbox);
	fixture->client =
	    chat_client_new (fixture->conn, fixture->outbox, 7, NULL, "test", outbox_size);
	g_assert_true (chat_client_is_open (fixture->client));
}

/* Fills the socket and queues one unstarted frame; returns what is pending then. Nothing
 * more can be written until the peer reads, so the outbox-size checks below see exactly this. */
static gsize
fill_for_outbox_size (Fixture *fixture, GBytes **big, GBytes **queued)
{
	*big = push_partly_written (fixture);
	*queued = make_frame (1, 400);
	push (fixture, *queued);
	return chat_outbox_get_pending (fixture->outbox);
}

static void
test_outbox_size_exact (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) big = NULL;
	g_autoptr (GBytes) queued = NULL;
	g_autoptr (GBytes) frame = make_frame (2, 300);
	g_autoptr (GBytes) one_more = chat_frame_new (0x1, "x", 1);
	gsize pending = fill_for_outbox_size (fixture, &big, &queued);

	/* pending + frame == outbox size: still within it */
	make_client (fixture, pending + g_bytes_get_size (frame));
	g_assert_true (chat_client_push_frame (fixture->client, frame));
	g_assert_true (chat_client_is_open (fixture->client));
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox),
			  ==,
			  pending + g_bytes_get_size (frame));
	expect (fixture, big);
	expect (fixture, queued);
	expect (fixture, frame);
	assert_peer_gets_expected (fixture);

	/* the peer read everything: the outbox has room again */
	g_assert_true (chat_client_push_frame (fixture->client, one_more));
	expect (fixture, one_more);
	assert_peer_gets_expected (fixture);
	g_assert_true (chat_client_is_open (fixture->client));
}

static void
test_outbox_size_one_over (Fixture *fixture, gconstpointer data)
{
	/* close code 1008 and the reason, after the rest of the partly written frame */
	static const guint8 close_frame[] = {0x88,
					     0x0f,
					     0x03,
					     0xf0,
					     's',
					     'l',
					     'o',
					     'w',
					     ' ',
					     'c',
					     'o',
					     'n',
					     's',
					     'u',
					     'm',
					     'e',
					     'r'};
	g_autoptr (GBytes) big = NULL;
	g_autoptr (GBytes) queued = NULL;
	g_autoptr (GBytes) frame = make_frame (2, 300);
	gsize pending = fill_for_outbox_size (fixture, &big, &queued);
	guint64 sent = chat_outbox_get_bytes_sent (fixture->outbox);

	/* pending + frame == outbox size + 1: a slow consumer */
	make_client (fixture, pending + g_bytes_get_size (frame) - 1);
	g_assert_false (chat_client_push_frame (fixture->client, frame));
	g_assert_false (chat_client_is_open (fixture->client));
	g_assert_false (chat_outbox_can_send (fixture->outbox));
	g_assert_cmpuint (chat_outbox_get_pending (fixture->outbox),
			  ==,
			  g_bytes_get_size (big) - sent + sizeof close_frame);
	expect (fixture, big);
	g_byte_array_append (fixture->expected, close_frame, sizeof close_frame);
	assert_peer_gets_expected (fixture);
}

/* Over the outbox size only because nothing was written yet: the kernel takes the queue first,
 * and only what it refuses would count. */
static void
test_outbox_size_flush_first (Fixture *fixture, gconstpointer data)
{
	g_autoptr (GBytes) queued = make_frame (1, 400);
	g_autoptr (GBytes) frame = make_frame (2, 300);

	push (fixture, queued);
	make_client (fixture, g_bytes_get_size (frame));
	g_assert_true (chat_client_push_frame (fixture->client, frame));
	g_assert_true (chat_client_is_open (fixture->client));
	g_assert_cmpuint (chat_outbox_get_bytes_sent (fixture->outbox),
			  ==,
			  g_bytes_get_size (queued));
	expect (fixture, queued);
	expect (fixture, frame);
	assert_peer_gets_expected (fixture);
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
	ADD ("/chat/outbox/push-flush", test_outbox_push_flush);
	ADD ("/chat/outbox/partial-write", test_outbox_partial_write);
	ADD ("/chat/outbox/many-frames", test_outbox_many_frames);
	ADD ("/chat/outbox/ring-kept-for-bursts", test_outbox_ring_kept_for_bursts);
	ADD ("/chat/outbox/drop-unstarted/keeps-partial", test_outbox_drop_unstarted_keeps_partial);
	ADD ("/chat/outbox/drop-unstarted/all", test_outbox_drop_unstarted_all);
	ADD ("/chat/outbox/urgent/after-partial", test_outbox_urgent_after_partial);
	ADD ("/chat/outbox/urgent/first", test_outbox_urgent_first);
	ADD ("/chat/outbox/urgent/in-order", test_outbox_urgent_in_order);
	ADD ("/chat/outbox/flush-source-destroyed", test_outbox_flush_source_destroyed);
	ADD ("/chat/outbox/urgent/wrapped", test_outbox_urgent_wrapped);
	ADD ("/chat/outbox/stream-frames", test_outbox_stream_frames);
	ADD ("/chat/outbox/close-drains", test_outbox_close_drains);
	ADD ("/chat/outbox/peer-gone", test_outbox_peer_gone);
	ADD ("/chat/outbox/size/exact", test_outbox_size_exact);
	ADD ("/chat/outbox/size/one-over", test_outbox_size_one_over);
	ADD ("/chat/outbox/size/flush-first", test_outbox_size_flush_first);
#undef ADD
	return g_test_run ();
}
