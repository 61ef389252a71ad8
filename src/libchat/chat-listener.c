/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "chat-i18n-private.h"
#include "chat-listener-private.h"
#include "chat-source-private.h"

/* ChatListener: the server's own listening socket, and every accepted connection until its
 * request head is in and libsoup takes it. libsoup 3.2's listener accepts one connection per
 * wakeup with a backlog of 10 and leaks each accepted GSocket, and libsoup answers neither a
 * silent connection nor a head over 64 KiB; this listener accepts in batches, pauses at the
 * descriptor limit, shuts down connections that do not upgrade in time and answers an
 * oversized head with 431 itself. The HTTP gate and the upgrade are ChatServer's. */

#define LISTEN_BACKLOG 4096
/* connections accepted per wakeup at most, so a storm cannot starve established clients */
#define ACCEPT_BATCH 256
/* at the open-file limit, stop accepting for this long instead of spinning on a readable
 * listener; the kernel backlog holds the newcomers meanwhile */
#define ACCEPT_PAUSE_MS 250
/* how long a descriptor shortage keeps the listener reported as not accepting (/readyz) */
#define FD_SHORTAGE_MEMORY (5 * G_USEC_PER_SEC)
/* the largest request head (request line and headers) served; libsoup 3.2 gives up at 64 KiB
 * without answering and resets the connection, so this must stay below that */
#define MAX_REQUEST_HEAD (32 * 1024)
/* after a 431, how long and how much of the rest of the request is read and dropped, so that
 * closing does not reset the connection before the client has read the answer */
#define LINGER_US (2 * G_USEC_PER_SEC)
#define LINGER_BYTES (4 * 1024 * 1024)

/* Where an accepted connection's GSocket is kept, so the outbox can find it again after
 * libsoup stole the connection (soup_server_message_get_socket() is NULL for streams given
 * to soup_server_accept_iostream()). */
static GQuark socket_quark;
/* Set on an accepted connection's GSocket once its upgrade completed. */
static GQuark upgraded_quark;
/* Set, beside socket_quark, on the input stream of a connection served over TLS. */
static GQuark tls_quark;

/* An accepted connection that must complete its upgrade before the deadline. */
typedef struct {
	GSocket *socket;
	gint64 deadline; /* monotonic µs */
} Handshake;

/* An accepted connection whose request head is still arriving (MAX_REQUEST_HEAD), or one
 * answered 431 whose request is being read and dropped before closing. */
typedef struct {
	ChatListener *listener; /* unowned: the listener destroys its sources before it goes */
	GSocket *socket;
	GSocketConnection *connection;
	GSource *source;
	GSocketAddress *remote;
	gsize scanned;	 /* bytes of the head already searched for its end */
	gsize drained;	 /* lingering: bytes dropped */
	gboolean linger; /* answered 431, dropping the rest */
} RequestHead;

/* A connection whose TLS handshake runs (on a GLib worker thread, glib-networking's way). */
typedef struct {
	ChatListener *listener; /* (nullable) (unowned): cleared when the listener goes */
	GTlsConnection *tls;
	GSocketConnection *connection; /* the TCP connection under it */
	GSocket *socket;
	GSocketAddress *remote;
	GCancellable *cancellable; /* cancelled when the listener goes */
} TlsHandshake;

struct _ChatListener {
	GObject parent_instance;

	GMainContext *context; /* the server's: every source goes here */
	ChatListenerServeFunc serve_func;
	ChatListenerCountFunc count_func;
	ChatListenerRefusedFunc refused_func; /* (nullable) */
	gpointer user_data;
	GSocket *socket; /* (nullable): listening */
	GSource *accept_source;
	GSource *accept_pause;
	gint64 last_fd_warning;	 /* monotonic µs */
	gint64 last_fd_shortage; /* monotonic µs; 0: never */
	GQueue handshakes;	 /* Handshake*, oldest first */
	GSource *handshake_sweep;
	guint handshake_timeout;   /* seconds; 0: none */
	GHashTable *request_heads; /* RequestHead* -> itself, owned */
	char *peek_buffer;	   /* MAX_REQUEST_HEAD bytes, for every request head */
	guint64 refused_head_too_large;
	GTlsCertificate *tls_certificate; /* (nullable): serve TLS with it */
	GHashTable *tls_handshakes;	  /* TlsHandshake* -> itself, unowned: running */
};

G_DEFINE_FINAL_TYPE (ChatListener, chat_listener, G_TYPE_OBJECT)

static void
handshake_free (Handshake *handshake)
{
	g_object_unref (handshake->socket);
	g_free (handshake);
}

static GSource *
add_timeout (ChatListener *self, guint interval_ms, GSourceFunc func, const char *name)
{
	return chat_timeout_source_attach (self->context, interval_ms, func, self, name);
}

static void
start_accepting (ChatListener *self);

static gboolean
on_accept_pause_over (gpointer user_data)
{
	ChatListener *self = CHAT_LISTENER (user_data);

	g_clear_pointer (&self->accept_pause, g_source_unref);
	start_accepting (self);
	return G_SOURCE_REMOVE;
}

/* Out of file descriptors: the listener stays readable, so polling it would spin. */
static void
pause_accepting (ChatListener *self)
{
	gint64 now = g_get_monotonic_time ();

	self->last_fd_shortage = now;
	if (now - self->last_fd_warning > 10 * G_USEC_PER_SEC) {
		self->last_fd_warning = now;
		g_warning (_ ("Out of file descriptors with %u connections; new connections wait "
			      "(raise the open-file limit or lower max-connections)"),
			   self->count_func (self->user_data));
	}
	chat_clear_source (&self->accept_source);
	if (self->accept_pause == NULL)
		self->accept_pause = add_timeout (self,
						  ACCEPT_PAUSE_MS,
						  on_accept_pause_over,
						  "chathub accept pause");
}

/* Connections that have not finished their upgrade in time are shut down; libsoup 3.2 would
 * otherwise keep a silent one (and its descriptor) forever. */
static gboolean
on_handshake_sweep (gpointer user_data)
{
	ChatListener *self = CHAT_LISTENER (user_data);
	gint64 now = g_get_monotonic_time ();
	Handshake *head;

	while ((head = g_queue_peek_head (&self->handshakes)) != NULL && head->deadline <= now) {
		g_queue_pop_head (&self->handshakes);
		if (g_object_get_qdata (G_OBJECT (head->socket), upgraded_quark) == NULL &&
		    !g_socket_is_closed (head->socket)) {
			g_debug ("closing a connection that did not upgrade within %u s",
				 self->handshake_timeout);
			/* libsoup then reads EOF and lets the connection go */
			g_socket_shutdown (head->socket, TRUE, TRUE, NULL);
		}
		handshake_free (head);
	}
	return G_SOURCE_CONTINUE;
}

static void
request_head_free (RequestHead *head)
{
	chat_clear_source (&head->source);
	/* not handed to libsoup: closing the connection closes the socket */
	if (head->connection != NULL)
		g_io_stream_close (G_IO_STREAM (head->connection), NULL, NULL);
	g_clear_object (&head->connection);
	g_clear_object (&head->remote);
	g_object_unref (head->socket);
	g_free (head);
}

typedef enum { HEAD_WAIT, HEAD_COMPLETE, HEAD_TOO_LARGE, HEAD_GONE } HeadState;

/* TLS: waits for the client's first record (its ClientHello) before the handshake starts, so
 * that a connection which sends nothing never holds one of the worker threads glib-networking
 * runs handshakes on. Anything that is not a TLS handshake record (a plain ws:// or http://
 * request to the TLS port) is closed at once. */
static HeadState
peek_client_hello (RequestHead *head, gssize n)
{
	const guint8 *data = (const guint8 *) head->listener->peek_buffer;
	gsize record;

	if (data[0] != 0x16) {
		g_debug ("closing a connection to the TLS port that does not speak TLS");
		return HEAD_GONE;
	}
	/* readable without anything new (the low-water mark): the peer stopped sending */
	if ((gsize) n <= head->scanned)
		return HEAD_GONE;
	if (n >= 5) {
		record = 5 + ((gsize) data[3] << 8 | data[4]);
		if ((gsize) n >= record || n >= MAX_REQUEST_HEAD)
			return HEAD_COMPLETE;
	}
	head->scanned = n;
	return HEAD_WAIT;
}

/* Looks at what arrived of the request head, without taking it from the socket: libsoup
 * reads it again once it is complete. */
static HeadState
peek_request_head (ChatListener *self, RequestHead *head)
{
	gssize n = recv (g_socket_get_fd (head->socket),
			 self->peek_buffer,
			 MAX_REQUEST_HEAD,
			 MSG_PEEK | MSG_DONTWAIT);
	gsize from;

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? HEAD_WAIT
										 : HEAD_GONE;
	if (n == 0)
		return HEAD_GONE;
	if (self->tls_certificate != NULL)
		return peek_client_hello (head, n);
	/* readable without anything new (the low-water mark below): the peer stopped sending;
	 * libsoup reads the partial head and answers it */
	if ((gsize) n <= head->scanned)
		return HEAD_COMPLETE;
	/* an empty line ends the head; libsoup takes a bare LF as well as CRLF */
	from = head->scanned >= 3 ? head->scanned - 3 : 0;
	if (memmem (self->peek_buffer + from, n - from, "\n\r\n", 3) != NULL ||
	    memmem (self->peek_buffer + from, n - from, "\n\n", 2) != NULL)
		return HEAD_COMPLETE;
	head->scanned = n;
	return n >= MAX_REQUEST_HEAD ? HEAD_TOO_LARGE : HEAD_WAIT;
}

/* Peeking leaves the bytes queued, so the socket would stay readable: wake up only when more
 * than @n bytes are there (or the peer closed). */
static void
set_receive_low_water (GSocket *socket, gsize n)
{
	int lowat = (int) n + 1;

	if (setsockopt (g_socket_get_fd (socket), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) <
	    0)
		g_debug ("cannot set SO_RCVLOWAT: %s", g_strerror (errno));
}

static void
tls_handshake_free (TlsHandshake *handshake)
{
	g_object_unref (handshake->tls);
	g_object_unref (handshake->connection);
	g_object_unref (handshake->socket);
	g_object_unref (handshake->remote);
	g_object_unref (handshake->cancellable);
	g_free (handshake);
}

static void
on_tls_handshake_done (GObject *object, GAsyncResult *result, gpointer user_data)
{
	TlsHandshake *handshake = user_data;
	ChatListener *self = handshake->listener;
	g_autoptr (GError) error = NULL;
	g_autoptr (GSocketAddress) local = NULL;

	if (self != NULL)
		g_hash_table_remove (self->tls_handshakes, handshake);
	if (g_tls_connection_handshake_finish (handshake->tls, result, &error))
		local = g_socket_get_local_address (handshake->socket, NULL);
	else
		g_debug ("TLS handshake failed: %s", error->message);
	if (local == NULL || self == NULL) {
		/* the TCP connection, not the TLS one: nothing more is sent to this peer */
		g_io_stream_close (G_IO_STREAM (handshake->connection), NULL, NULL);
	} else {
		self->serve_func (G_IO_STREAM (handshake->tls),
				  local,
				  handshake->remote,
				  self->user_data);
	}
	tls_handshake_free (handshake);
}

/* Wraps an accepted connection in TLS; libsoup gets it once the handshake is done, as
 * libsoup's own listener does it (soup_server_connection_accepted()): libsoup does not
 * handshake the streams given to soup_server_accept_iostream(). glib-networking runs the
 * handshake on a worker thread; the handshake sweep bounds it (shutting the socket down
 * ends it), and its result comes back to the listener's context. */
static void
start_tls (ChatListener *self,
	   GSocket *socket,
	   GSocketConnection *connection,
	   GSocketAddress *remote)
{
	static const char *const protocols[] = {"http/1.1", NULL};
	g_autoptr (GError) error = NULL;
	GIOStream *tls;
	TlsHandshake *handshake;

	/* As libsoup's listener does it, with "database" NULL: the default one (the system's
	 * trust store, for checking client certificates, which chathub does not ask for) would
	 * be parsed into a trust list of about 3.7 MB for every connection. A peer that closes
	 * without close_notify is no error: WebSocket has its own close. */
	tls =
	    g_initable_new (g_tls_backend_get_server_connection_type (g_tls_backend_get_default ()),
			    NULL,
			    &error,
			    "base-io-stream",
			    connection,
			    "certificate",
			    self->tls_certificate,
			    "database",
			    NULL,
			    "require-close-notify",
			    FALSE,
			    "advertised-protocols",
			    protocols,
			    NULL);
	if (tls == NULL) {
		g_debug ("cannot start TLS: %s", error->message);
		g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
		return;
	}
	/* found again after the upgrade by chat_listener_claim_socket() */
	g_object_set_qdata (G_OBJECT (g_io_stream_get_input_stream (tls)), socket_quark, socket);
	g_object_set_qdata (G_OBJECT (g_io_stream_get_input_stream (tls)),
			    tls_quark,
			    GINT_TO_POINTER (TRUE));
	handshake = g_new0 (TlsHandshake, 1);
	handshake->listener = self;
	handshake->tls = G_TLS_CONNECTION (tls);
	handshake->connection = g_object_ref (connection);
	handshake->socket = g_object_ref (socket);
	handshake->remote = g_object_ref (remote);
	handshake->cancellable = g_cancellable_new ();
	g_hash_table_add (self->tls_handshakes, handshake);
	/* GTask completes in the thread-default context of the caller */
	g_main_context_push_thread_default (self->context);
	g_tls_connection_handshake_async (handshake->tls,
					  G_PRIORITY_DEFAULT,
					  handshake->cancellable,
					  on_tls_handshake_done,
					  handshake);
	g_main_context_pop_thread_default (self->context);
}

static void
serve_request (ChatListener *self, RequestHead *head)
{
	g_autoptr (GSocketConnection) connection = g_steal_pointer (&head->connection);
	/* at accept time: once shut down (handshake-timeout), the socket has no peer */
	g_autoptr (GSocketAddress) local = g_socket_get_local_address (head->socket, NULL);
	g_autoptr (GSocketAddress) remote = g_steal_pointer (&head->remote);

	if (local == NULL || remote == NULL) {
		g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
		return;
	}
	if (self->tls_certificate != NULL) {
		start_tls (self, head->socket, connection, remote);
		return;
	}
	self->serve_func (G_IO_STREAM (connection), local, remote, self->user_data);
}

/* libsoup 3.2 neither answers a head over its 64 KiB nor reads the rest, so the client sees
 * a reset; chathub answers 431 itself (plain TCP only: over TLS the head cannot be peeked
 * at, peek_client_hello() never gets here and libsoup's limit applies), then stops sending and
 * reads what still comes, for a while, so that the close does not reset the connection before the
 * answer is read. */
static void
answer_head_too_large (ChatListener *self, RequestHead *head)
{
	/* what the gate's set_json_response() would write */
	static const char body[] = "{\"error\":\"request_header_too_large\","
				   "\"error_description\":\"The request line and headers must fit "
				   "in 32768 bytes\"}";
	g_autofree char *response =
	    g_strdup_printf ("HTTP/1.1 431 Request Header Fields Too Large\r\n"
			     "Server: chathub/" PACKAGE_VERSION "\r\n"
			     "Connection: close\r\n"
			     "Content-Type: application/json\r\n"
			     "Content-Length: %zu\r\n"
			     "\r\n"
			     "%s",
			     strlen (body),
			     body);

	self->refused_head_too_large++;
	g_debug ("refused a request head of more than %d bytes", MAX_REQUEST_HEAD);
	if (self->refused_func != NULL && head->remote != NULL)
		self->refused_func (head->remote, self->user_data);
	/* a fresh socket's send buffer takes it whole */
	if (send (g_socket_get_fd (head->socket),
		  response,
		  strlen (response),
		  MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return;
	g_socket_shutdown (head->socket, FALSE, TRUE, NULL);
	head->linger = TRUE;
}

/* Reads and drops what the refused client still sends; FALSE when it is time to close. */
static gboolean
drain_request (ChatListener *self, RequestHead *head)
{
	while (head->drained < LINGER_BYTES) {
		gssize n = recv (g_socket_get_fd (head->socket),
				 self->peek_buffer,
				 MAX_REQUEST_HEAD,
				 MSG_DONTWAIT);

		if (n > 0)
			head->drained += n;
		else
			return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
	}
	return FALSE;
}

/* Moves an accepted connection on; FALSE when there is nothing left to wait for. */
static gboolean
request_head_advance (ChatListener *self, RequestHead *head)
{
	HeadState state;

	if (head->linger)
		return drain_request (self, head);
	state = peek_request_head (self, head);
	if (state == HEAD_WAIT) {
		set_receive_low_water (head->socket, head->scanned);
		return TRUE;
	}
	if (head->scanned > 0)
		set_receive_low_water (head->socket, 0);
	switch (state) {
	case HEAD_COMPLETE:
		serve_request (self, head);
		return FALSE;
	case HEAD_TOO_LARGE:
		answer_head_too_large (self, head);
		return head->linger && drain_request (self, head);
	case HEAD_WAIT:
	case HEAD_GONE:
	default:
		return FALSE;
	}
}

static gboolean
on_request_head_ready (GSocket *socket, GIOCondition condition, gpointer user_data)
{
	RequestHead *head = user_data;
	ChatListener *self = head->listener;
	gboolean linger = head->linger;

	if ((head->linger && g_get_monotonic_time () >= g_source_get_ready_time (head->source)) ||
	    !request_head_advance (self, head)) {
		g_hash_table_remove (self->request_heads, head);
		return G_SOURCE_REMOVE;
	}
	if (head->linger && !linger)
		g_source_set_ready_time (head->source, g_get_monotonic_time () + LINGER_US);
	return G_SOURCE_CONTINUE;
}

/* Hands an accepted connection to libsoup once its request head is in, whole and not too
 * large; most heads are there already when the connection is accepted. */
static void
start_request (ChatListener *self, GSocket *socket, GSocketConnection *connection)
{
	RequestHead *head = g_new0 (RequestHead, 1);

	head->listener = self;
	head->socket = g_object_ref (socket);
	head->connection = g_object_ref (connection);
	head->remote = g_socket_get_remote_address (socket, NULL);
	if (!request_head_advance (self, head)) {
		request_head_free (head);
		return;
	}
	head->source = g_socket_create_source (socket, G_IO_IN, NULL);
	g_source_set_callback (head->source, G_SOURCE_FUNC (on_request_head_ready), head, NULL);
	g_source_set_static_name (head->source, "chathub request head");
	if (head->linger)
		g_source_set_ready_time (head->source, g_get_monotonic_time () + LINGER_US);
	g_source_attach (head->source, self->context);
	g_hash_table_add (self->request_heads, head);
}

/* libsoup 3.2's own listener accepts one connection per wakeup, with a backlog of 10, and
 * leaks the GSocket of every connection it accepts; chathub accepts itself, in batches. */
static gboolean
on_incoming (GSocket *listener, GIOCondition condition, gpointer user_data)
{
	ChatListener *self = CHAT_LISTENER (user_data);

	for (guint i = 0; i < ACCEPT_BATCH; i++) {
		g_autoptr (GError) error = NULL;
		g_autoptr (GSocket) socket = g_socket_accept (listener, NULL, &error);
		g_autoptr (GSocketConnection) connection = NULL;

		if (socket == NULL) {
			if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES)) {
				pause_accepting (self);
				return G_SOURCE_REMOVE;
			}
			if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
				g_debug ("accept failed: %s", error->message);
			break;
		}
		g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, TRUE, NULL);
		connection = g_socket_connection_factory_create_connection (socket);
		g_object_set_qdata (
		    G_OBJECT (g_io_stream_get_input_stream (G_IO_STREAM (connection))),
		    socket_quark,
		    socket);
		start_request (self, socket, connection);
		/* also the deadline of a head that is still arriving */
		if (self->handshake_timeout > 0) {
			Handshake *handshake = g_new (Handshake, 1);

			handshake->socket = g_object_ref (socket);
			handshake->deadline = g_get_monotonic_time () +
					      (gint64) self->handshake_timeout * G_USEC_PER_SEC;
			g_queue_push_tail (&self->handshakes, handshake);
		}
	}
	return G_SOURCE_CONTINUE;
}

static void
start_accepting (ChatListener *self)
{
	if (self->accept_source != NULL || self->socket == NULL)
		return;
	self->accept_source = g_socket_create_source (self->socket, G_IO_IN, NULL);
	g_source_set_callback (self->accept_source, G_SOURCE_FUNC (on_incoming), self, NULL);
	g_source_set_static_name (self->accept_source, "chathub accept");
	g_source_attach (self->accept_source, self->context);
}

/* The GSocket of a connection a listener accepted, found through libsoup's filter streams
 * once it stole the connection after the upgrade; the handshake sweep leaves it alone from
 * now on. @tls tells whether @stolen speaks TLS over it. (transfer full) (nullable) */
GSocket *
chat_listener_claim_socket (GIOStream *stolen, gboolean *tls)
{
	GInputStream *input = g_io_stream_get_input_stream (stolen);

	/* libsoup wraps our GSocketConnection's input in a filter stream */
	while (input != NULL) {
		GSocket *socket = g_object_get_qdata (G_OBJECT (input), socket_quark);

		if (socket != NULL) {
			g_object_set_qdata (G_OBJECT (socket),
					    upgraded_quark,
					    GINT_TO_POINTER (TRUE));
			*tls = g_object_get_qdata (G_OBJECT (input), tls_quark) != NULL;
			return g_object_ref (socket);
		}
		if (!G_IS_FILTER_INPUT_STREAM (input))
			break;
		input = g_filter_input_stream_get_base_stream (G_FILTER_INPUT_STREAM (input));
	}
	return NULL;
}

static void
chat_listener_dispose (GObject *object)
{
	ChatListener *self = CHAT_LISTENER (object);
	GHashTableIter iter;
	gpointer key;

	chat_listener_stop (self);
	chat_clear_source (&self->handshake_sweep);
	while (!g_queue_is_empty (&self->handshakes))
		handshake_free (g_queue_pop_head (&self->handshakes));
	g_hash_table_remove_all (self->request_heads);
	g_hash_table_iter_init (&iter, self->tls_handshakes);
	while (g_hash_table_iter_next (&iter, &key, NULL)) {
		TlsHandshake *handshake = key;

		/* its callback still comes, and then only closes the connection */
		handshake->listener = NULL;
		g_cancellable_cancel (handshake->cancellable);
		g_hash_table_iter_remove (&iter);
	}
	G_OBJECT_CLASS (chat_listener_parent_class)->dispose (object);
}

static void
chat_listener_finalize (GObject *object)
{
	ChatListener *self = CHAT_LISTENER (object);

	g_hash_table_unref (self->request_heads);
	g_hash_table_unref (self->tls_handshakes);
	g_clear_object (&self->tls_certificate);
	g_free (self->peek_buffer);
	g_main_context_unref (self->context);
	G_OBJECT_CLASS (chat_listener_parent_class)->finalize (object);
}

static void
chat_listener_class_init (ChatListenerClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();
	socket_quark = g_quark_from_static_string ("chat-listener-socket");
	upgraded_quark = g_quark_from_static_string ("chat-listener-upgraded");
	tls_quark = g_quark_from_static_string ("chat-listener-tls");

	object_class->dispose = chat_listener_dispose;
	object_class->finalize = chat_listener_finalize;
}

static void
chat_listener_init (ChatListener *self)
{
	self->request_heads =
	    g_hash_table_new_full (NULL, NULL, (GDestroyNotify) request_head_free, NULL);
	self->peek_buffer = g_malloc (MAX_REQUEST_HEAD);
	self->tls_handshakes = g_hash_table_new (NULL, NULL);
}

/* Connections whose head is complete go to @serve_func; @count_func tells how many the
 * owner holds, for the warning when descriptors run out. */
ChatListener *
chat_listener_new (GMainContext *context,
		   ChatListenerServeFunc serve_func,
		   ChatListenerCountFunc count_func,
		   gpointer user_data)
{
	ChatListener *self = g_object_new (CHAT_TYPE_LISTENER, NULL);

	self->context = g_main_context_ref (context);
	self->serve_func = serve_func;
	self->count_func = count_func;
	self->user_data = user_data;
	return self;
}

/* Binds and listens on @address with a deep backlog, so connection storms are not refused. */
/* Several processes on one address, the kernel spreading new connections over them.
 * g_socket_bind() clears SO_REUSEPORT on stream sockets, so bind() is called here. */
static gboolean
bind_reusing_port (GSocket *socket, GSocketAddress *address, GError **error)
{
	struct sockaddr_storage native;
	gssize size = g_socket_address_get_native_size (address);
	int fd = g_socket_get_fd (socket);
	int one = 1;

	if (size < 0 || !g_socket_address_to_native (address, &native, sizeof native, error))
		return FALSE;
	if (setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind (fd, (struct sockaddr *) &native, (socklen_t) size) < 0) {
		int saved_errno = errno;

		g_set_error (error,
			     G_IO_ERROR,
			     g_io_error_from_errno (saved_errno),
			     _ ("Error binding to the address with SO_REUSEPORT: %s"),
			     g_strerror (saved_errno));
		return FALSE;
	}
	return TRUE;
}

gboolean
chat_listener_listen (ChatListener *self,
		      GSocketAddress *address,
		      gboolean reuse_port,
		      GError **error)
{
	g_autoptr (GSocket) socket = NULL;

	g_return_val_if_fail (self->socket == NULL, FALSE);

	socket = g_socket_new (g_socket_address_get_family (address),
			       G_SOCKET_TYPE_STREAM,
			       G_SOCKET_PROTOCOL_TCP,
			       error);
	if (socket == NULL)
		return FALSE;
	g_socket_set_listen_backlog (socket, LISTEN_BACKLOG);
	g_socket_set_blocking (socket, FALSE);
	if (reuse_port) {
		if (!bind_reusing_port (socket, address, error) || !g_socket_listen (socket, error))
			return FALSE;
	} else if (!g_socket_bind (socket, address, TRUE, error) ||
		   !g_socket_listen (socket, error)) {
		return FALSE;
	}
	self->socket = g_steal_pointer (&socket);
	start_accepting (self);
	if (self->handshake_sweep == NULL)
		self->handshake_sweep =
		    add_timeout (self, 1000, on_handshake_sweep, "chathub handshake sweep");
	return TRUE;
}

/* Closes the listening socket. Connections already accepted go on: their heads are still
 * handed over and the handshake sweep still watches them. */
void
chat_listener_stop (ChatListener *self)
{
	chat_clear_source (&self->accept_source);
	chat_clear_source (&self->accept_pause);
	if (self->socket != NULL) {
		g_socket_close (self->socket, NULL);
		g_clear_object (&self->socket);
	}
}

gboolean
chat_listener_is_listening (ChatListener *self)
{
	return self->socket != NULL;
}

/* Listening, and not short of descriptors now nor within FD_SHORTAGE_MEMORY: a probe is
 * only accepted once the pause is over, so "paused now" alone would never be seen. */
gboolean
chat_listener_is_accepting (ChatListener *self)
{
	return self->socket != NULL && self->accept_pause == NULL &&
	       (self->last_fd_shortage == 0 ||
		g_get_monotonic_time () - self->last_fd_shortage > FD_SHORTAGE_MEMORY);
}

/* The port listened on, 0 if not listening. */
guint16
chat_listener_get_port (ChatListener *self)
{
	g_autoptr (GSocketAddress) bound = NULL;

	if (self->socket == NULL)
		return 0;
	bound = g_socket_get_local_address (self->socket, NULL);
	if (bound == NULL || !G_IS_INET_SOCKET_ADDRESS (bound))
		return 0;
	return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

/* Connections accepted from now on speak TLS with @certificate (which holds its private key);
 * %NULL: plain TCP. */
void
chat_listener_set_tls_certificate (ChatListener *self, GTlsCertificate *certificate)
{
	g_set_object (&self->tls_certificate, certificate);
}

/* Seconds a connection accepted from now on has to complete its upgrade; 0: no limit. */
void
chat_listener_set_handshake_timeout (ChatListener *self, guint seconds)
{
	self->handshake_timeout = seconds;
}

/* Request heads answered 431 (over MAX_REQUEST_HEAD). */
guint64
chat_listener_get_refused_head_too_large (ChatListener *self)
{
	return self->refused_head_too_large;
}

void
chat_listener_set_refused_func (ChatListener *self, ChatListenerRefusedFunc refused_func)
{
	self->refused_func = refused_func;
}
