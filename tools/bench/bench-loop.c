/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-loop.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

Conn *conns;
Loop *loops[MAX_LOOPS + 2];
int nloops;
Loop *pub_loop;
Loop *flood_loop;
Command G;
int64_t deadline;
bool aborted;

static void
mirror (Loop *l)
{
	for (int k = 0; k < S_COUNT; k++)
		atomic_store_explicit (&l->m[k], l->s[k], memory_order_relaxed);
}

void
set_first_err (Loop *l, const char *fmt, ...)
{
	va_list ap;

	if (atomic_load_explicit (&l->has_first_err, memory_order_relaxed))
		return;
	va_start (ap, fmt);
	vsnprintf (l->first_err, sizeof l->first_err, fmt, ap);
	va_end (ap);
	atomic_store_explicit (&l->has_first_err, 1, memory_order_release);
}

/* ---- opening and publishing ---------------------------------------------------------------- */

static void
open_due (Loop *l, int64_t now)
{
	const Cmd *cmd = &l->cmd;

	while (l->next_open < l->nconns) {
		Conn *c = l->conns[l->next_open];
		int64_t due;

		if (c->idx >= cmd->open_hi)
			break;
		if (c->idx < cmd->open_lo) { /* not to be opened */
			l->next_open++;
			continue;
		}
		if (l->ninfl >= cmd->infl_cap[l->id])
			break;
		due = cmd->open_t0;
		if (cmd->open_rate > 0)
			due += (int64_t) ((double) (c->idx - cmd->open_lo) * 1e9 / cmd->open_rate);
		if (due > now) {
			if (due < l->wake)
				l->wake = due;
			break;
		}
		l->next_open++;
		conn_start (l, c, now);
	}
}

/* Sends what is due: a fixed schedule; when more than 100 ms behind (the server pushes back or the
 * publisher was starved), skip ahead instead of bursting, as the Go loadgen does. */
static void
publish_due (Loop *l, int64_t now)
{
	bool busy = false;

	if (!l->pub_active)
		return;
	for (uint32_t k = 0; k < l->npubs; k++) {
		Conn *c = l->pubs[k];

		while (conn_state (c) == CS_OPEN && now < l->cmd.pub_end && l->pub_left > 0) {
			if (c->next_send > now) {
				if (c->next_send < l->wake)
					l->wake = c->next_send;
				busy = true;
				break;
			}
			if (c->olen > 0) { /* blocked: wait for EPOLLOUT */
				busy = true;
				break;
			}
			if (now - c->next_send > 100 * NS_PER_MS)
				c->next_send = now;
			publish_one (l, c);
			if (l->cmd.pub_count > 0)
				l->pub_left--;
			c->next_send += l->pub_interval;
			now = mono_ns ();
		}
	}
	if (!busy || now >= l->cmd.pub_end) {
		l->pub_active = false;
		mirror (l);
		atomic_store_explicit (&l->pub_done, l->cmd.pub_gen, memory_order_release);
	} else if (l->cmd.pub_end < l->wake) {
		l->wake = l->cmd.pub_end;
	}
}

/* Floods from flood_start to flood_end: as fast as the socket takes it, so the server's reading
 * paces it; a blocked flooder waits for EPOLLOUT (conn_flush), then goes on here. */
static void
flood_due (Loop *l, int64_t now)
{
	Conn *c = l->flooder;

	if (!l->flood_active)
		return;
	if (now < l->cmd.flood_start) {
		if (l->cmd.flood_start < l->wake)
			l->wake = l->cmd.flood_start;
		return;
	}
	if (conn_state (c) == CS_OPEN && now < l->cmd.flood_end &&
	    l->flood_sent < l->cmd.flood_max) {
		flood_push (l, c, l->cmd.flood_end);
		if (conn_state (c) == CS_OPEN && mono_ns () < l->cmd.flood_end &&
		    l->flood_sent < l->cmd.flood_max) {
			/* blocked: EPOLLOUT wakes the loop; else it comes back at once */
			l->wake = c->olen > 0 ? MIN (l->wake, l->cmd.flood_end) : now;
			return;
		}
	}
	l->flood_active = false;
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* recover: closes the connections from drop_lo on as a lost network does, without a close
 * frame (unread data makes it a reset), and readies them to be opened again */
static void
loop_drop (Loop *l)
{
	for (uint32_t i = 0; i < l->nconns; i++) {
		Conn *c = l->conns[i];

		if (c->idx < l->cmd.drop_lo || c->fd < 0)
			continue;
		conn_release (l, c, CS_NEW);
		c->dropped = 1;
		c->joins_got = 0;
		c->recover_got = 0;
		c->frag_op = 0;
	}
	l->next_open = 0;
}

static void
loop_apply (Loop *l)
{
	unsigned e = atomic_load_explicit (&G.epoch, memory_order_acquire);
	Cmd prev;

	if (e == l->seen_epoch)
		return;
	prev = l->cmd;
	l->cmd = G.cmd;
	if (l->cmd.rec_step >= 0 && l->cmd.rec_step != prev.rec_step)
		memset (&l->lat, 0, sizeof l->lat);
	if (l->cmd.hs_record && !prev.hs_record) {
		memset (&l->hs, 0, sizeof l->hs);
		memset (&l->join, 0, sizeof l->join);
	}
	if (l->cmd.pub_gen != prev.pub_gen && l->npubs > 0 && l->cmd.pub_rate_each > 0) {
		l->pub_interval = (int64_t) (1e9 / l->cmd.pub_rate_each);
		for (uint32_t k = 0; k < l->npubs; k++)
			l->pubs[k]->next_send =
			    l->cmd.pub_start + l->pub_interval * (int64_t) k / (int64_t) l->npubs;
		/* with a count (one publisher: recover), exactly that many */
		l->pub_left = l->cmd.pub_count > 0 ? l->cmd.pub_count : UINT64_MAX;
		l->pub_active = true;
	}
	if (l->cmd.drop_gen != prev.drop_gen)
		loop_drop (l);
	if (l->cmd.flood_gen != prev.flood_gen && l->flooder) {
		l->flood_sent = 0;
		l->flood_active = true;
	}
	l->seen_epoch = e;
	mirror (l);
	atomic_store_explicit (&l->ack, e, memory_order_release);
}

static void
loop_quit (Loop *l)
{
	static const uint8_t bye[2] = {0x03, 0xe8}; /* 1000 */

	for (uint32_t i = 0; i < l->nconns; i++) {
		Conn *c = l->conns[i];

		if (c->fd < 0)
			continue;
		if (conn_state (c) == CS_OPEN)
			send_close_now (l, c, bye, 2);
		conn_release (l, c, conn_state (c) == CS_OPEN ? CS_CLOSED : CS_FAILED);
	}
}

static gpointer
loop_main (gpointer data)
{
	Loop *l = data;
	struct epoll_event evs[512];

	for (;;) {
		int64_t now = mono_ns (), wait;
		struct timespec ts;
		int n;

		loop_apply (l);
		if (l->cmd.quit) {
			loop_quit (l);
			mirror (l);
			return NULL;
		}
		l->wake = now + 100 * NS_PER_MS;
		open_due (l, now);
		publish_due (l, mono_ns ());
		flood_due (l, mono_ns ());
		if (now >= l->next_scan) { /* handshake timeouts */
			int64_t limit = (int64_t) (opt.connect_timeout * 1e9);

			for (uint32_t i = 0; i < l->ninfl;) {
				Conn *c = l->infl[i];

				if (now - c->t_start > limit)
					conn_fail (l,
						   c,
						   S_FAIL_TIMEOUT,
						   "no handshake response in time");
				else
					i++;
			}
			l->next_scan = now + 100 * NS_PER_MS;
		}
		mirror (l);
		now = mono_ns ();
		wait = l->wake - now;
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / NS_PER_S;
		ts.tv_nsec = wait % NS_PER_S;
		n = epoll_pwait2 (l->epfd, evs, G_N_ELEMENTS (evs), &ts, NULL);
		if (n < 0 && errno != EINTR) {
			set_first_err (l, "epoll_pwait2: %s", g_strerror (errno));
			g_usleep (10000);
			continue;
		}
		now = mono_ns ();
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t v;

				if (read (l->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
					set_first_err (l, "eventfd: %s", g_strerror (errno));
				continue;
			}
			conn_event (l, evs[i].data.ptr, evs[i].events, now);
		}
	}
}

static Loop *
loop_new (int id, uint32_t capacity)
{
	Loop *l = g_new0 (Loop, 1);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

	l->id = id;
	l->epfd = epoll_create1 (EPOLL_CLOEXEC);
	l->evfd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->evfd < 0 || epoll_ctl (l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
		die ("epoll/eventfd: %s", g_strerror (errno));
	l->conns = g_new0 (Conn *, MAX (capacity, 1));
	l->infl = g_new0 (Conn *, MAX (capacity, 1));
	l->rcap = RBUF_SIZE;
	l->rbuf = g_malloc (l->rcap);
	l->wcap = 65536;
	l->wbuf = g_malloc (l->wcap);
	l->rng = g_random_int () | (uint64_t) g_random_int () << 32 | 1;
	l->hmac = g_hmac_new (G_CHECKSUM_SHA256,
			      g_bytes_get_data (secret, NULL),
			      g_bytes_get_size (secret));
	l->cmd.rec_step = -1;
	return l;
}

/* ---- orchestration helpers ----------------------------------------------------------------- */

/* Publishes G.cmd to every loop and waits until each has applied it. */
bool
post (void)
{
	unsigned e = atomic_fetch_add_explicit (&G.epoch, 1, memory_order_acq_rel) + 1;
	int64_t limit = MAX (deadline, mono_ns ()) + 5 * NS_PER_S;

	for (int i = 0; i < nloops; i++) {
		uint64_t one = 1;

		if (write (loops[i]->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
			die ("eventfd: %s", g_strerror (errno));
	}
	for (int i = 0; i < nloops; i++)
		while (atomic_load_explicit (&loops[i]->ack, memory_order_acquire) != e) {
			if (mono_ns () > limit) {
				fprintf (stderr,
					 "chathub-bench: event loop %d does not answer\n",
					 i);
				return false;
			}
			g_usleep (200);
		}
	return true;
}

uint64_t
total (int k)
{
	uint64_t v = 0;

	for (int i = 0; i < nloops; i++) {
		uint64_t x = atomic_load_explicit (&loops[i]->m[k], memory_order_relaxed);

		if (stat_is_max (k))
			v = MAX (v, x);
		else
			v += x;
	}
	return v;
}

void
snap (Snap *s)
{
	for (int k = 0; k < S_COUNT; k++)
		s->v[k] = total (k);
}

/* Sleeps until t or the deadline; returns false (and marks the run aborted) at the deadline. */
bool
sleep_until (int64_t t)
{
	for (;;) {
		int64_t now = mono_ns ();

		if (now >= deadline) {
			aborted = true;
			return false;
		}
		if (now >= t)
			return true;
		g_usleep ((gulong) (MIN (MIN (t, deadline) - now, 20 * NS_PER_MS) / 1000));
	}
}

/* Budget for opening n connections at rate/s, as the Go loadgen allows: 15 s + twice the ramp. */
double
connect_budget (uint32_t n, double rate)
{
	return 15 + (rate > 0 ? 2.0 * n / rate : n / 1000.0);
}

/* Opens the connections [lo, hi) from t0 at rate/s with at most inflight handshakes at a time. */
void
cmd_open (uint32_t lo, uint32_t hi, int64_t t0, double rate, int inflight)
{
	uint32_t share[MAX_LOOPS + 2] = {0};

	/* each loop's share of the range gets that share of the handshakes in flight */
	for (int k = 0; k < nloops; k++)
		for (uint32_t j = 0; j < loops[k]->nconns; j++)
			if (loops[k]->conns[j]->idx >= lo && loops[k]->conns[j]->idx < hi)
				share[k]++;
	G.cmd.open_lo = lo;
	G.cmd.open_hi = hi;
	G.cmd.open_t0 = t0;
	G.cmd.open_rate = rate;
	for (int k = 0; k < nloops; k++) {
		uint64_t cap =
		    hi > lo ? ((uint64_t) inflight * share[k] + (hi - lo) - 1) / (hi - lo) : 1;

		G.cmd.infl_cap[k] = (uint32_t) MAX (cap, 1u);
	}
}

/* Waits until `want` more attempts than base finished, or until limit. Returns false on timeout. */
bool
wait_done (uint64_t base, uint64_t want, int64_t limit)
{
	int64_t last_note = mono_ns ();

	while (total (S_DONE) - base < want) {
		int64_t now = mono_ns ();

		if (now >= limit || now >= deadline) {
			if (now >= deadline)
				aborted = true;
			return false;
		}
		if (now - last_note >= 2 * NS_PER_S) {
			note ("  ... %" PRIu64 "/%" PRIu64 " attempts done",
			      total (S_DONE) - base,
			      want);
			last_note = now;
		}
		g_usleep (2000);
	}
	return true;
}

/* ---- setup --------------------------------------------------------------------------------- */

/* Creates the connection table and hands connections to loops: publishers (the first
 * `publishers`) to their own loop in fan-out mode, the rest round-robin over --threads loops. */
void
setup_conns (uint32_t total_n, uint32_t pubs, uint32_t flooders)
{
	int recv_loops = opt.threads;

	conns = g_new0 (Conn, total_n);
	nloops = 0;
	if (pubs > 0) {
		pub_loop = loop_new (nloops, pubs);
		loops[nloops++] = pub_loop;
		pub_loop->pubs = g_new0 (Conn *, pubs);
		pub_loop->sent_room = g_new0 (uint64_t, (size_t) opt.rooms + 1);
		{
			GString *tail = g_string_new ("\"content\":\"");

			for (int i = 0; i < opt.size; i++)
				g_string_append_c (tail, 'x');
			g_string_append (tail, "\",\"data\":{\"t\":");
			pub_loop->msg_tail_len = tail->len;
			pub_loop->msg_tail = g_string_free (tail, FALSE);
		}
	}
	for (int i = 0; i < recv_loops; i++) {
		loops[nloops] = loop_new (nloops, total_n / (uint32_t) recv_loops + 1);
		nloops++;
	}
	flood_loop = NULL;
	if (flooders > 0) { /* a loop of its own: flooding must not delay receiving or publishing */
		flood_loop = loop_new (nloops, flooders);
		loops[nloops++] = flood_loop;
		flood_prepare (flood_loop);
	}
	for (uint32_t i = 0; i < total_n; i++) {
		Conn *c = &conns[i];
		Loop *l;

		c->fd = -1;
		c->idx = i;
		c->uid = (uint64_t) opt.uid_base + i;
		if (i < pubs) {
			l = pub_loop;
			l->pubs[l->npubs++] = c;
		} else if (i >= total_n - flooders) {
			l = flood_loop;
			l->flooder = c;
			c->flooder = 1;
		} else {
			l = loops[(pubs > 0 ? 1 : 0) + (int) ((i - pubs) % (uint32_t) recv_loops)];
		}
		l->conns[l->nconns++] = c;
	}
}

void
start_loops (void)
{
	for (int i = 0; i < nloops; i++) {
		char name[32];

		snprintf (name, sizeof name, "bench-loop-%d", i);
		loops[i]->thread = g_thread_new (name, loop_main, loops[i]);
	}
}

void
stop_loops (void)
{
	G.cmd.quit = true;
	if (!post ()) {
		fprintf (stderr, "chathub-bench: event loops did not stop; exiting\n");
		fflush (NULL);
		_exit (2);
	}
	for (int i = 0; i < nloops; i++)
		g_thread_join (loops[i]->thread);
}

/* Sets which rooms connection c joins when up. */
void
plan_joins (Conn *c, bool join, bool publisher)
{
	c->joining = join && opt.rooms > 0;
	if (!c->joining)
		return;
	if (publisher && !opt.own_room) {
		c->all_rooms = 1;
		c->joins_needed = (uint32_t) opt.rooms;
	} else {
		c->room = 1 + c->idx % (uint32_t) opt.rooms;
		c->joins_needed = 1;
	}
}

/* The room epoch of the first join ack any loop saw, or NULL. */
const char *
first_epoch (void)
{
	for (int i = 0; i < nloops; i++)
		if (atomic_load_explicit (&loops[i]->has_epoch, memory_order_acquire))
			return loops[i]->epoch;
	return NULL;
}

/* The flooder joins a room of its own, past the receivers' rooms: it is that room's only
 * member, so its messages reach no one but itself. */
void
plan_flooder (Conn *c)
{
	c->joining = 1;
	c->room = (uint32_t) opt.rooms + 1;
	c->joins_needed = 1;
}

/* Fan-out settle, as the Go loadgen does it: wait for every live connection's own join echo
 * (then 200 ms more for the others' join relays to land), or, if no echo at all comes within
 * --settle, assume a server that does not echo joins; at most --settle-max. */
void
settle_joins (uint64_t joined_base, uint64_t live)
{
	int64_t ts = mono_ns ();

	for (;;) {
		uint64_t j;
		int64_t el;

		if (!sleep_until (mono_ns () + 10 * NS_PER_MS))
			return;
		j = total (S_JOINED) - joined_base;
		el = mono_ns () - ts;
		if (opt.rooms > 0 && j >= live) {
			sleep_until (mono_ns () + 200 * NS_PER_MS);
			return;
		}
		if ((el >= s_to_ns (opt.settle) && (j == 0 || opt.rooms == 0)) ||
		    el >= s_to_ns (opt.settle_max))
			return;
	}
}
