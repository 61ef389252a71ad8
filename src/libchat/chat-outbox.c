/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chat-flush-source-private.h"
#include "chat-inbox-private.h"
#include "chat-outbox-private.h"
#include "chat-source-private.h"

/* How long a closing connection may take to drain its queue before the socket is closed. */
#define DRAIN_TIMEOUT_MS 2000
/* iovecs per sendmsg(); the kernel allows 1024 */
#define MAX_IOV 256
/* With TLS, frames are copied into chunks of at most a TLS record's plaintext (RFC 8446
 * §5.1): each chunk is one gnutls_record_send(), one record and one system call. */
#define TLS_CHUNK (16 * 1024)

struct _ChatOutbox {
	GOutputStream parent_instance;

	GIOStream *base; /* the stolen HTTP connection, owned; closing it closes the fd */
	GSocket *socket; /* owned */
	int fd;		 /* -1 once the socket is closed: never write to a reused fd */
	/* TLS: (nullable) the GTlsConnection's output, which every byte goes through */
	GPollableOutputStream *tls;
	guint8 *chunk;	  /* TLS: bytes taken from the ring, handed to the TLS stream */
	gsize chunk_size; /* bytes in chunk */
	gsize chunk_sent; /* of which written */
	GSource *flush;	  /* owned ref on the shared ChatFlushSource */
	ChatInbox *inbox; /* owned: the read side handed to libsoup */
	GBytes **ring;	  /* queued frames, oldest at ring[head] */
	guint ring_size;  /* capacity, a power of two */
	guint head;
	guint count;
	guint peak;	   /* the most frames queued since the ring was last empty */
	guint n_urgent;	   /* frames at the front a new control frame goes after: control
			    * frames in their order, and a partly written head */
	gsize head_offset; /* bytes of ring[head] already written */
	gsize pending;	   /* bytes queued and not yet written */
	guint64 bytes_sent;
	GSource *writable;     /* one-shot G_IO_OUT source after a short write */
	GSource *deadline;     /* bounds the drain of a closing connection */
	GTask *close_task;     /* libsoup's close_async, completed once drained */
	gboolean in_dirty;     /* listed in the flush source */
	gboolean close_queued; /* libsoup queued a close frame: nothing may follow it */
	gboolean closing;      /* libsoup asked to close the stream */
	gboolean dead;	       /* socket failed or closed */
};

static void
chat_outbox_pollable_iface_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ChatOutbox,
			       chat_outbox,
			       G_TYPE_OUTPUT_STREAM,
			       G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
						      chat_outbox_pollable_iface_init))

static void
outbox_flush (ChatOutbox *self);
static void
outbox_finish_close (ChatOutbox *self);

static void
outbox_mark_dirty (ChatOutbox *self)
{
	if (self->in_dirty || self->writable != NULL || self->dead)
		return;
	if (g_source_is_destroyed (self->flush)) {
		/* no main loop will flush for us any more (server gone): write now */
		outbox_flush (self);
		return;
	}
	self->in_dirty = TRUE;
	chat_flush_source_add (self->flush, self);
}

void
chat_outbox_flush_listed (ChatOutbox *self)
{
	self->in_dirty = FALSE;
	if (self->writable == NULL)
		outbox_flush (self);
}

/* ---- the queue ------------------------------------------------------------------------ */

static void
ring_push (ChatOutbox *self, GBytes *frame)
{
	if (self->count == self->ring_size) {
		guint new_size = MAX (self->ring_size * 2, 8);
		GBytes **ring = g_new (GBytes *, new_size);

		for (guint i = 0; i < self->count; i++)
			ring[i] = self->ring[(self->head + i) & (self->ring_size - 1)];
		g_free (self->ring);
		self->ring = ring;
		self->ring_size = new_size;
		self->head = 0;
	}
	self->ring[(self->head + self->count) & (self->ring_size - 1)] = frame;
	self->count++;
	self->peak = MAX (self->peak, self->count);
	self->pending += g_bytes_get_size (frame);
}

/* Puts a control frame (ping, pong) at the first frame boundary instead of behind a backlog
 * of data, as libsoup does with its urgent frames: a ping stuck behind megabytes of queued
 * messages would say nothing about the peer's liveness. */
static void
ring_push_urgent (ChatOutbox *self, GBytes *frame)
{
	guint mask;
	guint at;

	ring_push (self, frame); /* grows the ring if needed; undone just below */
	/* after a partly written head and after the control frames queued before this one */
	at = MAX (self->n_urgent, self->head_offset > 0 ? 1 : 0);
	self->n_urgent = at + 1;
	if (at + 1 == self->count)
		return;
	self->count--;
	mask = self->ring_size - 1;
	self->head = (self->head - 1) & mask;
	for (guint i = 0; i < at; i++)
		self->ring[(self->head + i) & mask] = self->ring[(self->head + i + 1) & mask];
	self->ring[(self->head + at) & mask] = frame;
	self->count++;
}

static GBytes *
ring_pop (ChatOutbox *self)
{
	GBytes *frame = self->ring[self->head];

	self->head = (self->head + 1) & (self->ring_size - 1);
	self->count--;
	if (self->n_urgent > 0)
		self->n_urgent--;
	return frame;
}

static void
ring_clear (ChatOutbox *self)
{
	while (self->count > 0)
		g_bytes_unref (ring_pop (self));
	self->head_offset = 0;
	self->pending = 0;
	g_clear_pointer (&self->chunk, g_free);
	self->chunk_size = self->chunk_sent = 0;
	/* an idle connection keeps no queue memory */
	g_clear_pointer (&self->ring, g_free);
	self->ring_size = 0;
	self->head = 0;
}

guint
chat_outbox_get_ring_size (ChatOutbox *self)
{
	return self->ring_size;
}

gboolean
chat_outbox_can_send (ChatOutbox *self)
{
	return !self->dead && !self->closing && !self->close_queued;
}

gboolean
chat_outbox_push (ChatOutbox *self, GBytes *frame)
{
	if (!chat_outbox_can_send (self))
		return FALSE;
	ring_push (self, g_bytes_ref (frame));
	outbox_mark_dirty (self);
	return TRUE;
}

/* Queues a control frame (ping, pong) ahead of the data not yet started. */
gboolean
chat_outbox_push_urgent (ChatOutbox *self, GBytes *frame)
{
	if (!chat_outbox_can_send (self))
		return FALSE;
	ring_push_urgent (self, g_bytes_ref (frame));
	outbox_mark_dirty (self);
	return TRUE;
}

/* Writes what the socket takes now, instead of waiting for the end of the iteration. */
void
chat_outbox_flush_now (ChatOutbox *self)
{
	if (self->writable == NULL && !self->dead && self->pending > 0)
		outbox_flush (self);
}

gsize
chat_outbox_get_pending (ChatOutbox *self)
{
	return self->pending;
}

guint64
chat_outbox_get_bytes_sent (ChatOutbox *self)
{
	return self->bytes_sent;
}

/* Drops every frame not yet started, keeping a partly written head so the byte stream stays
 * frame-aligned; a close frame queued next then reaches the peer right after it. */
void
chat_outbox_drop_unstarted (ChatOutbox *self)
{
	guint keep = self->head_offset > 0 ? 1 : 0;

	while (self->count > keep) {
		guint last = (self->head + self->count - 1) & (self->ring_size - 1);

		self->pending -= g_bytes_get_size (self->ring[last]);
		g_bytes_unref (self->ring[last]);
		self->count--;
	}
	self->n_urgent = MIN (self->n_urgent, self->count);
}

static gboolean
on_writable (GSocket *socket, GIOCondition condition, gpointer user_data)
{
	g_autoptr (ChatOutbox) self = g_object_ref (CHAT_OUTBOX (user_data));

	g_clear_pointer (&self->writable, g_source_unref);
	outbox_flush (self);
	return G_SOURCE_REMOVE;
}

static gboolean
on_tls_writable (GObject *stream, gpointer user_data)
{
	return on_writable (NULL, G_IO_OUT, user_data);
}

static void
outbox_wait_writable (ChatOutbox *self)
{
	if (self->writable != NULL)
		return;
	if (self->tls != NULL) {
		/* GnuTLS may be waiting for the socket in either direction */
		self->writable = g_pollable_output_stream_create_source (self->tls, NULL);
		g_source_set_callback (self->writable, G_SOURCE_FUNC (on_tls_writable), self, NULL);
	} else {
		self->writable = g_socket_create_source (self->socket, G_IO_OUT, NULL);
		g_source_set_callback (self->writable, G_SOURCE_FUNC (on_writable), self, NULL);
	}
	g_source_attach (self->writable, g_source_get_context (self->flush));
}

static void
outbox_fail (ChatOutbox *self)
{
	/* the peer is gone: libsoup sees EOF or a reset on its read side and closes */
	self->dead = TRUE;
	ring_clear (self);
}

/* Moves frames from the ring into the next chunk, up to TLS_CHUNK bytes; a frame that does
 * not fit whole is split (head_offset), as a short write would split it. */
static void
chunk_fill (ChatOutbox *self)
{
	gsize size = MIN (self->pending, TLS_CHUNK);

	g_free (self->chunk);
	self->chunk = g_malloc (size);
	self->chunk_size = 0;
	self->chunk_sent = 0;
	while (self->chunk_size < size && self->count > 0) {
		gsize frame_size;
		const guint8 *data = g_bytes_get_data (self->ring[self->head], &frame_size);
		gsize take = MIN (frame_size - self->head_offset, size - self->chunk_size);

		memcpy (self->chunk + self->chunk_size, data + self->head_offset, take);
		self->chunk_size += take;
		self->head_offset += take;
		if (self->head_offset == frame_size) {
			self->head_offset = 0;
			g_bytes_unref (ring_pop (self));
		}
	}
}

/* The TLS path. A GPollableOutputStream's writev over a GTlsConnection writes each vector
 * with its own gnutls_record_send() (glib-networking 2.74 has no writev of its own): one TLS
 * record and one system call per frame. So the frames are first copied into one chunk of up
 * to 16 KiB, which GnuTLS sends as one record. After G_IO_ERROR_WOULD_BLOCK GnuTLS has
 * already encrypted the record and wants the very same data again: the chunk is kept until
 * it is written, and frames queued meanwhile (pings included) go into the next one. */
static void
outbox_flush_tls (ChatOutbox *self)
{
	while (!self->dead) {
		g_autoptr (GError) error = NULL;
		gssize written;

		if (self->chunk_sent == self->chunk_size) {
			if (self->count == 0)
				break;
			chunk_fill (self);
		}
		written =
		    g_pollable_output_stream_write_nonblocking (self->tls,
								self->chunk + self->chunk_sent,
								self->chunk_size - self->chunk_sent,
								NULL,
								&error);
		if (written < 0) {
			if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
				outbox_wait_writable (self);
				return;
			}
			g_debug ("outbox: TLS write to fd %d failed: %s", self->fd, error->message);
			outbox_fail (self);
			break;
		}
		self->chunk_sent += written;
		self->bytes_sent += written;
		self->pending -= written;
	}
	/* an idle connection keeps no chunk, and no ring beyond a small one */
	if (self->chunk_sent == self->chunk_size)
		g_clear_pointer (&self->chunk, g_free);
	if (self->count == 0 && self->chunk == NULL && self->ring_size > 64)
		ring_clear (self);
	if (self->closing && (self->pending == 0 || self->dead))
		outbox_finish_close (self);
}

static void
outbox_flush (ChatOutbox *self)
{
	struct iovec iov[MAX_IOV];
	ChatFlushStatistics *statistics = chat_flush_source_get_statistics (self->flush);

	if (self->count > 0 && !self->dead)
		chat_histogram_observe (&statistics->waiting_bytes, self->pending);

	if (self->tls != NULL) {
		outbox_flush_tls (self);
		return;
	}

	while (self->count > 0 && !self->dead) {
		struct msghdr msg = {0};
		gsize total = 0;
		gssize written;
		gboolean short_write;
		guint n = MIN (self->count, MAX_IOV);

		for (guint i = 0; i < n; i++) {
			gsize size;
			const guint8 *data =
			    g_bytes_get_data (self->ring[(self->head + i) & (self->ring_size - 1)],
					      &size);

			if (i == 0) {
				data += self->head_offset;
				size -= self->head_offset;
			}
			iov[i].iov_base = (void *) data;
			iov[i].iov_len = size;
			total += size;
		}
		msg.msg_iov = iov;
		msg.msg_iovlen = n;
		written = sendmsg (self->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				outbox_wait_writable (self);
				return;
			}
			g_debug ("outbox: write to fd %d failed: %s", self->fd, g_strerror (errno));
			outbox_fail (self);
			break;
		}
		chat_histogram_observe (&statistics->write_bytes, (guint64) written);
		self->bytes_sent += written;
		self->pending -= written;
		short_write = (gsize) written < total;
		while (written > 0) {
			gsize left = g_bytes_get_size (self->ring[self->head]) - self->head_offset;

			if ((gsize) written < left) {
				self->head_offset += written;
				break;
			}
			written -= left;
			self->head_offset = 0;
			g_bytes_unref (ring_pop (self));
		}
		if (short_write) {
			/* the kernel buffer is full */
			outbox_wait_writable (self);
			return;
		}
	}
	/* give back the memory of a burst once a burst finds the ring oversized; small rings
	 * stay, and so does the ring of a connection that keeps getting bursts of its size (a
	 * busy room), which would otherwise grow it again in every iteration */
	if (self->count == 0) {
		if (self->ring_size > 64 && self->peak <= self->ring_size / 2)
			ring_clear (self);
		self->peak = 0;
	}
	if (self->closing && (self->count == 0 || self->dead))
		outbox_finish_close (self);
}

/* ---- closing -------------------------------------------------------------------------- */

static void
outbox_finish_close (ChatOutbox *self)
{
	g_autoptr (GTask) task = g_steal_pointer (&self->close_task);

	if (self->inbox != NULL)
		chat_inbox_detach (self->inbox);
	if (self->fd >= 0) {
		char scratch[4096];
		int budget = 64;

		/* Unread input makes close() send a reset, which can destroy the close frame we
		 * just sent before the peer reads it: stop writing, then drain what is there.
		 * With TLS too: what is dropped is ciphertext, and no close_notify is sent (GnuTLS
		 * would write it blocking); closing the TLS stream below then fails fast. */
		shutdown (self->fd, SHUT_WR);
		while (budget-- > 0 && recv (self->fd, scratch, sizeof scratch, MSG_DONTWAIT) > 0)
			;
		g_io_stream_close (self->base, NULL, NULL);
		self->fd = -1;
	}
	self->dead = TRUE;
	self->closing = TRUE;
	ring_clear (self);
	chat_clear_source (&self->writable);
	chat_clear_source (&self->deadline);
	if (task != NULL)
		g_task_return_boolean (task, TRUE);
}

static gboolean
on_drain_deadline (gpointer user_data)
{
	g_autoptr (ChatOutbox) self = g_object_ref (CHAT_OUTBOX (user_data));

	g_clear_pointer (&self->deadline, g_source_unref);
	g_debug ("outbox: peer did not take the rest of its queue in time");
	outbox_finish_close (self);
	return G_SOURCE_REMOVE;
}

void
chat_outbox_close_async (ChatOutbox *self, GTask *task)
{
	self->closing = TRUE;
	self->close_task = task;
	if (self->dead || self->pending == 0) {
		outbox_finish_close (self);
		return;
	}
	self->deadline = g_timeout_source_new (DRAIN_TIMEOUT_MS);
	g_source_set_callback (self->deadline, on_drain_deadline, self, NULL);
	g_source_attach (self->deadline, g_source_get_context (self->flush));
	if (self->writable == NULL)
		outbox_flush (self);
}

/* ---- GOutputStream / GPollableOutputStream: libsoup's own frames ---------------------- */

static gssize
outbox_write_nonblocking (GPollableOutputStream *stream,
			  const void *buffer,
			  gsize count,
			  GError **error)
{
	ChatOutbox *self = CHAT_OUTBOX (stream);

	if (self->dead || self->closing) {
		g_set_error_literal (error,
				     G_IO_ERROR,
				     G_IO_ERROR_BROKEN_PIPE,
				     "connection closed");
		return -1;
	}
	if (count == 0)
		return 0;
	/* libsoup writes one whole frame per call as long as we always take all of it */
	switch (((const guint8 *) buffer)[0] & 0x0f) {
	case 0x8: /* close: after everything queued, and nothing after it */
		self->close_queued = TRUE;
		ring_push (self, g_bytes_new (buffer, count));
		break;
	case 0x9: /* ping */
	case 0xa: /* pong */
		ring_push_urgent (self, g_bytes_new (buffer, count));
		break;
	default:
		ring_push (self, g_bytes_new (buffer, count));
	}
	outbox_mark_dirty (self);
	return (gssize) count;
}

static gssize
outbox_write_fn (GOutputStream *stream,
		 const void *buffer,
		 gsize count,
		 GCancellable *cancellable,
		 GError **error)
{
	return outbox_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (stream), buffer, count, error);
}

static gboolean
outbox_is_writable (GPollableOutputStream *stream)
{
	return TRUE;
}

static GSource *
outbox_create_source (GPollableOutputStream *stream, GCancellable *cancellable)
{
	/* never needed (writes always complete), but it must be a valid, ready source */
	g_autoptr (GSource) ready = g_idle_source_new ();

	return g_pollable_source_new_full (stream, ready, cancellable);
}

void
chat_outbox_close_now (ChatOutbox *self)
{
	self->closing = TRUE;
	outbox_finish_close (self);
}

ChatInbox *
chat_outbox_get_inbox (ChatOutbox *self)
{
	return self->inbox;
}

static gboolean
outbox_close_fn (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
	ChatOutbox *self = CHAT_OUTBOX (stream);

	if (self->fd >= 0 || self->close_task != NULL)
		outbox_finish_close (self);
	return TRUE;
}

static void
chat_outbox_dispose (GObject *object)
{
	ChatOutbox *self = CHAT_OUTBOX (object);

	chat_clear_source (&self->writable);
	chat_clear_source (&self->deadline);
	G_OBJECT_CLASS (chat_outbox_parent_class)->dispose (object);
}

static void
chat_outbox_finalize (GObject *object)
{
	ChatOutbox *self = CHAT_OUTBOX (object);

	ring_clear (self);
	if (self->inbox != NULL)
		chat_inbox_detach (self->inbox);
	g_clear_object (&self->inbox);
	g_clear_object (&self->base);
	g_clear_object (&self->socket);
	g_clear_pointer (&self->flush, g_source_unref);
	G_OBJECT_CLASS (chat_outbox_parent_class)->finalize (object);
}

static void
chat_outbox_class_init (ChatOutboxClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);
	GOutputStreamClass *stream_class = G_OUTPUT_STREAM_CLASS (klass);

	object_class->dispose = chat_outbox_dispose;
	object_class->finalize = chat_outbox_finalize;
	stream_class->write_fn = outbox_write_fn;
	stream_class->close_fn = outbox_close_fn;
}

static void
chat_outbox_pollable_iface_init (GPollableOutputStreamInterface *iface)
{
	iface->is_writable = outbox_is_writable;
	iface->create_source = outbox_create_source;
	iface->write_nonblocking = outbox_write_nonblocking;
}

static void
chat_outbox_init (ChatOutbox *self)
{
	self->fd = -1;
}

ChatOutbox *
chat_outbox_new (GIOStream *base,
		 GSocket *socket,
		 gboolean tls,
		 GSource *flush_source,
		 GSource *poll_source)
{
	ChatOutbox *self = g_object_new (CHAT_TYPE_OUTBOX, NULL);

	self->base = g_object_ref (base);
	self->socket = g_object_ref (socket);
	/* libsoup's stream over a GTlsConnection hands out the TLS connection's own output */
	if (tls)
		self->tls = G_POLLABLE_OUTPUT_STREAM (g_io_stream_get_output_stream (base));
	self->fd = g_socket_get_fd (socket);
	self->flush = g_source_ref (flush_source);
	self->inbox = chat_inbox_new (g_io_stream_get_input_stream (base), self->fd, poll_source);
	return self;
}
