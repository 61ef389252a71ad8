/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "chat-i18n-private.h"
#include "chat-inbox-private.h"

/* A context no loop runs: it holds the input sources of a share of the connections, and the
 * poll source iterates it only when one of them is readable. */
typedef struct {
	GMainContext *context;
	gboolean dirty; /* listed in the poll source's dirty shards */
} Shard;

struct _ChatInbox {
	GInputStream parent_instance;
	GInputStream *base; /* the stolen connection's buffered input, owned */
	GSource *poll;	    /* owned ref on the ChatPollSource */
	Shard *shard;	    /* (unowned): owned by the poll source */
	GSource *source;    /* (nullable) (unowned): libsoup's current input source */
	int fd;		    /* registered in the epoll set while >= 0 */
	gboolean readable;  /* an edge arrived and was not consumed yet */
	gsize read_budget;  /* bytes this dispatch may still read (G_MAXSIZE outside one) */
	gboolean paused;    /* reads nothing until resumed (chat_inbox_set_paused()) */
	gboolean parking;   /* the next source created goes to the shard */
	gboolean pushed;    /* the shard is pushed as thread-default until park_end */
	/* (nullable): what a dispatch read ahead and libsoup did not take (rare: it reads until
	 * EAGAIN), served first */
	guint8 *spill;
	gsize spill_len;
	gsize spill_pos;
};

typedef struct {
	GSource source;
	int epfd;
	gpointer tag;
	Shard *shards;
	guint n_shards;
	guint next_shard;
	GPtrArray *dirty;   /* (element-type Shard) (unowned): to iterate */
	GPtrArray *running; /* (element-type Shard) (unowned): being iterated */
	/* Read-ahead for the connection being dispatched (ahead_owner): libsoup 3.2 reads
	 * 1 KiB at a time, and one recv() per KiB (each one a window update for the peer) was
	 * 13 % of the daemon's time when publishers kept it busy. One buffer for all: only
	 * one connection is read at a time. */
	ChatInbox *ahead_owner; /* (nullable) (unowned) */
	guint8 *ahead;		/* READ_BUDGET bytes */
	gsize ahead_len;
	gsize ahead_pos;
} ChatPollSource;

#define MAX_EVENTS 256

/* Bytes one connection may read per dispatch of its source (sixteen of libsoup 3.2's 1 KiB
 * reads, at most about 780 of the smallest frames). libsoup reads until EAGAIN, which a client
 * writing as fast as it can never lets happen: past the budget the inbox reports
 * G_IO_ERROR_WOULD_BLOCK and stays marked readable, so its next source is ready at once and
 * the rest is read in the next main-loop iteration, after everyone else had their turn. See
 * docs/performance.md, "Read fairness". */
#define READ_BUDGET (16 * 1024)

static void
shard_mark_dirty (ChatPollSource *ps, Shard *shard)
{
	if (!shard->dirty) {
		shard->dirty = TRUE;
		g_ptr_array_add (ps->dirty, shard);
	}
}

static gboolean
poll_source_prepare (GSource *source, int *timeout)
{
	*timeout = -1;
	return ((ChatPollSource *) source)->dirty->len > 0;
}

static gboolean
poll_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
	ChatPollSource *ps = (ChatPollSource *) source;
	struct epoll_event events[MAX_EVENTS];
	GPtrArray *running;
	int n;

	do {
		n = epoll_wait (ps->epfd, events, MAX_EVENTS, 0);
		for (int i = 0; i < n; i++) {
			ChatInbox *inbox = events[i].data.ptr;

			inbox->readable = TRUE;
			if (inbox->source != NULL && !inbox->paused) {
				g_source_set_ready_time (inbox->source, 0);
				shard_mark_dirty (ps, inbox->shard);
			}
		}
	} while (n == MAX_EVENTS);

	/* Run the readable connections' sources now, shard by shard: each iteration walks only
	 * its shard. A shard dirtied meanwhile runs in the next main-loop iteration. */
	running = ps->dirty;
	ps->dirty = ps->running;
	ps->running = running;
	for (guint i = 0; i < running->len; i++) {
		Shard *shard = g_ptr_array_index (running, i);

		shard->dirty = FALSE;
		g_main_context_iteration (shard->context, FALSE);
	}
	g_ptr_array_set_size (running, 0);
	return G_SOURCE_CONTINUE;
}

static void
poll_source_finalize (GSource *source)
{
	ChatPollSource *ps = (ChatPollSource *) source;

	close (ps->epfd);
	for (guint i = 0; i < ps->n_shards; i++)
		g_main_context_unref (ps->shards[i].context);
	g_free (ps->shards);
	g_ptr_array_unref (ps->dirty);
	g_ptr_array_unref (ps->running);
	g_free (ps->ahead);
}

static GSourceFuncs poll_source_funcs = {
    .prepare = poll_source_prepare,
    .dispatch = poll_source_dispatch,
    .finalize = poll_source_finalize,
};

/* Each shard costs a descriptor (its context's wakeup): take at most 1/128 of the budget. */
static guint
choose_n_shards (void)
{
	struct rlimit limit;

	if (getrlimit (RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
		return 128;
	return CLAMP (limit.rlim_cur / 128, 1, 128);
}

GSource *
chat_poll_source_new (GError **error)
{
	int epfd = epoll_create1 (EPOLL_CLOEXEC);
	GSource *source;
	ChatPollSource *ps;

	if (epfd < 0) {
		int saved = errno;

		g_set_error (error,
			     G_IO_ERROR,
			     g_io_error_from_errno (saved),
			     "epoll_create1: %s",
			     g_strerror (saved));
		return NULL;
	}
	source = g_source_new (&poll_source_funcs, sizeof (ChatPollSource));
	ps = (ChatPollSource *) source;
	ps->epfd = epfd;
	ps->tag = g_source_add_unix_fd (source, epfd, G_IO_IN);
	ps->n_shards = choose_n_shards ();
	ps->shards = g_new0 (Shard, ps->n_shards);
	for (guint i = 0; i < ps->n_shards; i++)
		ps->shards[i].context = g_main_context_new ();
	ps->dirty = g_ptr_array_new ();
	ps->running = g_ptr_array_new ();
	ps->ahead = g_malloc (READ_BUDGET);
	g_source_set_priority (source, G_PRIORITY_DEFAULT);
	g_source_set_static_name (source, "chathub poll");
	return source;
}

typedef struct {
	GSource source;
	ChatInbox *inbox; /* (nullable) (unowned) */
} InboxSource;

static void
inbox_end_read_ahead (ChatInbox *self);

static gboolean
inbox_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
	g_autoptr (ChatInbox) inbox = NULL;
	gboolean again;

	if (((InboxSource *) source)->inbox == NULL || callback == NULL)
		return G_SOURCE_REMOVE;
	/* the callback may drop libsoup's last reference */
	inbox = g_object_ref (((InboxSource *) source)->inbox);
	/* libsoup reads until EAGAIN or the budget, so the next edge brings the next wakeup (or
	 * the budget left the inbox readable) */
	inbox->readable = FALSE;
	inbox->read_budget = READ_BUDGET;
	/* ... and then re-creates its source: that one goes to the shard */
	chat_inbox_park_begin (inbox);
	again = ((GPollableSourceFunc) (void (*) (void)) callback) (G_OBJECT (inbox), user_data);
	chat_inbox_park_end (inbox);
	inbox->read_budget = G_MAXSIZE;
	inbox_end_read_ahead (inbox);
	/* libsoup destroys its source after each read; another caller's stays */
	if (again)
		g_source_set_ready_time (source, -1);
	return again;
}

static void
inbox_source_finalize (GSource *source)
{
	InboxSource *is = (InboxSource *) source;

	if (is->inbox != NULL && is->inbox->source == source)
		is->inbox->source = NULL;
}

/* No prepare or check: GLib unlocks and relocks its context around every call of those, for
 * every source in the shard. A ready time is all these sources need. */
static GSourceFuncs inbox_source_funcs = {
    .dispatch = inbox_source_dispatch,
    .finalize = inbox_source_finalize,
};

static void
chat_inbox_pollable_iface_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ChatInbox,
			       chat_inbox,
			       G_TYPE_INPUT_STREAM,
			       G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
						      chat_inbox_pollable_iface_init))

static gssize
inbox_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
	ChatInbox *self = CHAT_INBOX (stream);
	ChatPollSource *ps = (ChatPollSource *) self->poll;
	gssize n;

	if (self->spill != NULL && !self->paused) {
		n = MIN (count, self->spill_len - self->spill_pos);
		memcpy (buffer, self->spill + self->spill_pos, n);
		self->spill_pos += n;
		if (self->spill_pos == self->spill_len)
			g_clear_pointer (&self->spill, g_free);
		return n;
	}
	if (ps->ahead_owner == self && !self->paused) {
		n = MIN (count, ps->ahead_len - ps->ahead_pos);
		memcpy (buffer, ps->ahead + ps->ahead_pos, n);
		ps->ahead_pos += n;
		if (ps->ahead_pos == ps->ahead_len)
			ps->ahead_owner = NULL;
		return n;
	}
	if (self->read_budget == 0 || self->paused) {
		/* the edge was not consumed: the source libsoup creates next is ready at once */
		self->readable = TRUE;
		g_set_error_literal (error,
				     G_IO_ERROR,
				     G_IO_ERROR_WOULD_BLOCK,
				     "read budget of this iteration spent");
		return -1;
	}
	if (self->read_budget == G_MAXSIZE || ps->ahead_owner != NULL || count >= READ_BUDGET) {
		/* outside a dispatch (libsoup's own reads at the start and the close), or inside
		 * another connection's: no read-ahead */
		n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (self->base),
							      buffer,
							      MIN (count, self->read_budget),
							      NULL,
							      error);
		if (n > 0 && self->read_budget != G_MAXSIZE)
			self->read_budget -= n;
		return n;
	}
	n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (self->base),
						      ps->ahead,
						      MIN (READ_BUDGET, self->read_budget),
						      NULL,
						      error);
	if (n <= 0)
		return n;
	self->read_budget -= n;
	ps->ahead_owner = self;
	ps->ahead_len = n;
	ps->ahead_pos = 0;
	return inbox_read_nonblocking (stream, buffer, count, error);
}

/* After a dispatch: what libsoup did not take of the read-ahead (it stopped before EAGAIN:
 * the connection is closing, or it was paused) is kept for its next read, which comes at
 * once. */
static void
inbox_end_read_ahead (ChatInbox *self)
{
	ChatPollSource *ps = (ChatPollSource *) self->poll;

	if (ps->ahead_owner != self)
		return;
	ps->ahead_owner = NULL;
	g_assert (self->spill == NULL);
	self->spill_len = ps->ahead_len - ps->ahead_pos;
	self->spill_pos = 0;
	self->spill = g_memdup2 (ps->ahead + ps->ahead_pos, self->spill_len);
	self->readable = TRUE;
	if (self->source != NULL && !self->paused) {
		g_source_set_ready_time (self->source, 0);
		shard_mark_dirty (ps, self->shard);
	}
}

static gssize
inbox_read_fn (GInputStream *stream,
	       void *buffer,
	       gsize count,
	       GCancellable *cancellable,
	       GError **error)
{
	return inbox_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream), buffer, count, error);
}

static gboolean
inbox_is_readable (GPollableInputStream *stream)
{
	ChatInbox *self = CHAT_INBOX (stream);

	return self->readable || self->spill != NULL ||
	       ((ChatPollSource *) self->poll)->ahead_owner == self ||
	       g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (self->base));
}

/* Reading still works, through the main context: only the cost of many connections changes. */
static void
warn_unexpected_source (void)
{
	static gboolean warned;

	if (!warned) {
		warned = TRUE;
		g_warning (_ ("libsoup created a connection’s input source where chathub did not "
			      "expect it; it works, but costs more with many connections"));
	}
}

static GSource *
inbox_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
	ChatInbox *self = CHAT_INBOX (stream);
	GSource *source = g_source_new (&inbox_source_funcs, sizeof (InboxSource));

	((InboxSource *) source)->inbox = self;
	if (self->source != NULL)
		((InboxSource *) self->source)->inbox = NULL;
	self->source = source;
	if (!self->parking || self->pushed) {
		/* libsoup 3.2 to 3.6 create one source per read, at its end, and one with the
		 * connection; this one stays in the thread-default context (or shares the shard
		 * with the one before it) */
		warn_unexpected_source ();
	} else {
		/* libsoup attaches the source to the thread-default context right after this
		 * returns; park_end() pops it */
		g_main_context_push_thread_default (self->shard->context);
		self->pushed = TRUE;
	}
	if (self->readable && !self->paused) {
		g_source_set_ready_time (source, 0);
		shard_mark_dirty ((ChatPollSource *) self->poll, self->shard);
	}
	return source;
}

void
chat_inbox_set_paused (ChatInbox *self, gboolean paused)
{
	if (self->paused == paused)
		return;
	self->paused = paused;
	/* what arrived meanwhile is read in the next iteration */
	if (!paused && self->readable && self->source != NULL) {
		g_source_set_ready_time (self->source, 0);
		shard_mark_dirty ((ChatPollSource *) self->poll, self->shard);
	}
}

void
chat_inbox_park_begin (ChatInbox *self)
{
	self->parking = TRUE;
}

void
chat_inbox_park_end (ChatInbox *self)
{
	self->parking = FALSE;
	if (self->pushed) {
		g_main_context_pop_thread_default (self->shard->context);
		self->pushed = FALSE;
		if (self->source != NULL &&
		    g_source_get_context (self->source) != self->shard->context)
			warn_unexpected_source ();
	}
}

static gboolean
inbox_close_fn (GInputStream *stream, GCancellable *cancellable, GError **error)
{
	/* the socket is closed by the outbox, once the output drained */
	return TRUE;
}

void
chat_inbox_detach (ChatInbox *self)
{
	if (self->fd >= 0) {
		epoll_ctl (((ChatPollSource *) self->poll)->epfd, EPOLL_CTL_DEL, self->fd, NULL);
		self->fd = -1;
	}
}

static void
chat_inbox_finalize (GObject *object)
{
	ChatInbox *self = CHAT_INBOX (object);

	chat_inbox_detach (self);
	if (((ChatPollSource *) self->poll)->ahead_owner == self)
		((ChatPollSource *) self->poll)->ahead_owner = NULL;
	g_free (self->spill);
	if (self->source != NULL)
		((InboxSource *) self->source)->inbox = NULL;
	g_clear_object (&self->base);
	g_clear_pointer (&self->poll, g_source_unref);
	G_OBJECT_CLASS (chat_inbox_parent_class)->finalize (object);
}

static void
chat_inbox_class_init (ChatInboxClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);
	GInputStreamClass *stream_class = G_INPUT_STREAM_CLASS (klass);

	object_class->finalize = chat_inbox_finalize;
	stream_class->read_fn = inbox_read_fn;
	stream_class->close_fn = inbox_close_fn;
}

static void
chat_inbox_pollable_iface_init (GPollableInputStreamInterface *iface)
{
	iface->is_readable = inbox_is_readable;
	iface->create_source = inbox_create_source;
	iface->read_nonblocking = inbox_read_nonblocking;
}

static void
chat_inbox_init (ChatInbox *self)
{
	self->fd = -1;
	self->read_budget = G_MAXSIZE;
}

ChatInbox *
chat_inbox_new (GInputStream *base, int fd, GSource *poll_source)
{
	ChatInbox *self = g_object_new (CHAT_TYPE_INBOX, NULL);
	ChatPollSource *ps = (ChatPollSource *) poll_source;
	struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = self};

	self->base = g_object_ref (base);
	self->poll = g_source_ref (poll_source);
	self->shard = &ps->shards[ps->next_shard++ % ps->n_shards];
	/* bytes may wait in libsoup's buffer from the handshake; the kernel's are reported by
	 * epoll_ctl() itself */
	self->readable = g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (base));
	if (epoll_ctl (ps->epfd, EPOLL_CTL_ADD, fd, &event) == 0)
		self->fd = fd;
	else
		g_warning (_ ("Cannot watch a connection (epoll_ctl): %s"), g_strerror (errno));
	return self;
}
