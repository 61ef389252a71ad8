/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The read side of a connection: the input is what a client sends after the upgrade, bytes
 * as they come off the wire (WebSocket frames, masked or not, fragmented, control frames,
 * garbage). They arrive on a socketpair under a connection built as chat-server.c's
 * on_upgraded() builds it: ChatOutbox and its ChatInbox, libsoup's SoupWebsocketConnection
 * with chathub's limit extension, a ChatClient registered with a ChatHub. The hub handles
 * what libsoup delivers (joins, messages, history, presence, ...); a second client, a member
 * of room 1, receives what is relayed to it. The harness then sends EOF and runs the main
 * context until the connection closed and the hub is done with it, and frees everything:
 * a leak, a descriptor left open or a warning (libsoup's or ours) shows per input. An input
 * after which libsoup waits for its 5 s close timeout takes those 5 s.
 */

#include <errno.h>
#include <fcntl.h>
#include <libsoup/soup.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat-client-private.h"
#include "chat-flush-source-private.h"
#include "chat-hub-private.h"
#include "chat-inbox-private.h"
#include "chat-limit-extension-private.h"
#include "chat-outbox-private.h"
#include "chat-outbox-stream-private.h"
#include "fuzz-common.h"

/* small enough that the fuzzer reaches the 1009 close ("message too big") */
#define MAX_MESSAGE_SIZE 2048
#define OUTBOX_SIZE (64 * 1024)
/* How long a connection may take to close after EOF: libsoup waits up to 5 s for the peer's
 * close frame when it sent one and then stopped reading (a protocol error after the server
 * closed for the rate limit, say), and the outbox gives a closing connection 5 s to drain.
 * A bound, so that a connection that never closes is reported (as a failed check) rather
 * than hang. */
#define CLOSE_DEADLINE_US (30 * G_USEC_PER_SEC)
/* iterations of an idle main context, at the end: a bound for the same reason */
#define MAX_ITERATIONS 100000

static GSource *flush_source;
static GSource *poll_source;
static GUri *uri;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
	g_autoptr (GError) error = NULL;

	fuzz_setup_log ();
	/* the sources chat-server.c keeps for all its connections, on the main context */
	flush_source = chat_flush_source_new ();
	g_source_attach (flush_source, NULL);
	poll_source = chat_poll_source_new (&error);
	fuzz_check (poll_source != NULL, "the epoll set");
	g_source_attach (poll_source, NULL);
	uri = g_uri_parse ("ws://127.0.0.1/ws", G_URI_FLAGS_NONE, NULL);
	return 0;
}

typedef struct {
	int peer;   /* the client's end: the harness writes and reads it */
	int server; /* the server's end, which the outbox closes */
	SoupWebsocketConnection *conn;
	ChatClient *client;
	gboolean peer_eof;
	gsize received; /* bytes the peer read */
} Connection;

/* A connection as on_upgraded() makes it, registered with @hub. */
static void
connection_open (Connection *connection, ChatHub *hub, guint64 user_id)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (GSocket) socket = NULL;
	g_autoptr (GIOStream) base = NULL;
	g_autoptr (ChatOutbox) outbox = NULL;
	g_autoptr (GIOStream) io = NULL;
	GList *extensions;
	ChatInbox *inbox;
	int fds[2];

	fuzz_check (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0,
		    "socketpair");
	connection->peer = fds[1];
	connection->server = fds[0];
	connection->peer_eof = FALSE;
	socket = g_socket_new_from_fd (fds[0], &error);
	fuzz_check (socket != NULL, "a GSocket");
	base = G_IO_STREAM (g_socket_connection_factory_create_connection (socket));
	outbox = chat_outbox_new (base, socket, FALSE, flush_source, poll_source);
	io = chat_outbox_stream_new (outbox);
	extensions = g_list_append (NULL, chat_limit_extension_new (MAX_MESSAGE_SIZE));
	inbox = CHAT_INBOX (g_io_stream_get_input_stream (io));
	chat_inbox_park_begin (inbox);
	connection->conn = soup_websocket_connection_new (io,
							  uri,
							  SOUP_WEBSOCKET_CONNECTION_SERVER,
							  NULL,
							  NULL,
							  extensions);
	chat_inbox_park_end (inbox);
	soup_websocket_connection_set_max_incoming_payload_size (connection->conn, 128 * 1024);
	connection->client =
	    chat_client_new (connection->conn, outbox, user_id, NULL, "fuzz", OUTBOX_SIZE);
	chat_client_set_limits (connection->client, 100, 200, 1000);
	chat_hub_register_client (hub, connection->client);
}

/* Reads and drops what the server sent. */
static void
connection_drain (Connection *connection)
{
	guint8 buffer[16384];

	while (!connection->peer_eof) {
		gssize n = recv (connection->peer, buffer, sizeof buffer, 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			connection->peer_eof = TRUE;
		if (n <= 0)
			break;
		connection->received += n;
	}
}

static gboolean
connection_closed (Connection *connection)
{
	return soup_websocket_connection_get_state (connection->conn) ==
		   SOUP_WEBSOCKET_STATE_CLOSED &&
	       chat_client_get_n_steps (connection->client) == 0;
}

static void
connection_free (Connection *connection)
{
	g_clear_object (&connection->client);
	g_clear_object (&connection->conn);
	/* nothing opened a descriptor since, so the number cannot have been reused */
	fuzz_check (fcntl (connection->server, F_GETFD) == -1 && errno == EBADF,
		    "the server's end of the connection is closed");
	close (connection->peer);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	g_autoptr (ChatHub) hub = chat_hub_new ();
	g_autoptr (GError) error = NULL;
	Connection client = {0}, member = {0};
	gsize written = 0;
	guint iterations = 0;
	gint64 deadline = g_get_monotonic_time () + CLOSE_DEADLINE_US;

	connection_open (&member, hub, 2);
	fuzz_check (chat_hub_join_room (hub, member.client, 1, &error), "the member joins room 1");
	connection_open (&client, hub, 1);
	if (size == 0)
		shutdown (client.peer, SHUT_WR);

	/* the client's bytes, then its EOF; the hub works meanwhile */
	while (written < size || !connection_closed (&client)) {
		if (written < size) {
			gssize n = send (client.peer, data + written, size - written, MSG_NOSIGNAL);

			if (n > 0)
				written += n;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				written = size; /* the server closed its end */
			if (written == size)
				shutdown (client.peer, SHUT_WR);
		}
		/* nothing to do: a timer is pending (libsoup's close timeout), or the peers
		 * must read first */
		if (!g_main_context_iteration (NULL, FALSE))
			g_usleep (500);
		iterations++;
		connection_drain (&client);
		connection_drain (&member);
		fuzz_check (g_get_monotonic_time () < deadline, "the connection closes after EOF");
	}

	/* the member leaves too (its EOF answers the close frame), and whatever is left to run
	 * runs */
	chat_client_close (member.client, 1000, NULL);
	shutdown (member.peer, SHUT_WR);
	deadline = g_get_monotonic_time () + CLOSE_DEADLINE_US;
	while (!connection_closed (&member)) {
		if (!g_main_context_iteration (NULL, FALSE))
			g_usleep (500);
		iterations++;
		connection_drain (&member);
		fuzz_check (g_get_monotonic_time () < deadline, "the member's connection closes");
	}
	for (guint idle = 0; g_main_context_iteration (NULL, FALSE); idle++)
		fuzz_check (idle < MAX_ITERATIONS, "the main context settles");
	fuzz_check (chat_hub_get_n_clients (hub) == 0, "both clients left the hub");
	if (fuzz_verbose ())
		fprintf (stderr,
			 "closed with %u; %" G_GUINT64_FORMAT
			 " relayed; client got %" G_GSIZE_FORMAT " bytes, member %" G_GSIZE_FORMAT
			 "; %u iterations\n",
			 chat_client_get_close_code (client.client),
			 chat_hub_get_messages_relayed (hub),
			 client.received,
			 member.received,
			 iterations);
	connection_free (&client);
	connection_free (&member);
	return 0;
}
