/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-scenarios.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench-loop.h"
#include "bench-report.h"
#include "bench.h"

/* ---- idle ---------------------------------------------------------------------------------- */

typedef struct {
	uint32_t n;
	double rate;
	Snap a, b, c2; /* before connecting, when up, after holding */
	CpuUse u;      /* while connecting */
	long rss0, rss_with, rss_end;
	uint64_t up, live;
	double connect_s;
	Hist *hs;
} Idle;

/* Opens the connections (joining with --join) until every attempt finished or the budget ran
 * out. */
static void
idle_open (Idle *r)
{
	CpuMark m0, m1;
	int64_t t0;

	setup_conns (r->n, 0, 0);
	for (uint32_t i = 0; i < r->n; i++)
		plan_joins (&conns[i], opt.join, false);
	start_loops ();
	snap (&r->a);
	r->rss0 = proc_rss_kib (opt.pid);
	cpu_mark (&m0);
	note ("idle: opening %u connections at %g/s to %s://%s%s",
	      r->n,
	      r->rate,
	      opt.tls ? "wss" : "ws",
	      host_header,
	      opt.path);
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (0, r->n, t0, r->rate, opt.inflight);
	G.cmd.hs_record = true;
	post ();
	wait_done (r->a.v[S_DONE], r->n, t0 + s_to_ns (connect_budget (r->n, r->rate)));
	if (opt.join)
		settle_joins (r->a.v[S_JOINED], total (S_UP) - r->a.v[S_UP]);
	G.cmd.hs_record = false;
	post ();
	cpu_mark (&m1);
	snap (&r->b);
	r->u = cpu_use (&m0, &m1);
	r->up = diff (&r->a, &r->b, S_UP);
	if (r->up > 0 && r->b.v[S_LAST_UP_NS] >= (uint64_t) t0)
		r->connect_s = (double) ((int64_t) r->b.v[S_LAST_UP_NS] - t0) / 1e9;
}

/* Holds the connections for --duration; the server's RSS with them is read 2 s after they are
 * up (as run-compare.sh), or at the end if sooner. */
static void
idle_hold (Idle *r)
{
	int64_t up_at = mono_ns (), hold_end = up_at + s_to_ns (opt.duration);

	note ("idle: %" PRIu64 "/%u up; holding them for %g s", r->up, r->n, opt.duration);
	sleep_until (MIN (up_at + 2 * NS_PER_S, hold_end));
	r->rss_with = proc_rss_kib (opt.pid);
	sleep_until (hold_end);
	r->rss_end = proc_rss_kib (opt.pid);
	snap (&r->c2);
	r->live = 0;
	for (uint32_t i = 0; i < r->n; i++)
		r->live += conn_state (&conns[i]) == CS_OPEN;
}

static void
idle_print_table (const Idle *r)
{
	g_autofree char *fails = failures_text (&r->a, &r->b);
	g_autofree char *closes = closes_text (&r->b, &r->c2);

	fprintf (table_out,
		 "\n| connections | up | failed | connect s | handshake p50/p99/max ms | open at "
		 "end | lost | closes | RSS before KiB | RSS with KiB | KiB/conn | server CPU s "
		 "(connect) |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u | %" PRIu64 " | %s | %s | %.1f/%.1f/%.1f | %" PRIu64 " | %" PRIu64
		 " | %s | ",
		 r->n,
		 r->up,
		 fails,
		 num (r->connect_s, 2),
		 ms (hist_quantile (r->hs, 0.5)),
		 ms (hist_quantile (r->hs, 0.99)),
		 ms ((double) r->hs->max),
		 r->live,
		 diff (&r->b, &r->c2, S_LOST),
		 closes);
	if (opt.pid > 0 && r->rss0 >= 0 && r->rss_with >= 0)
		fprintf (table_out,
			 "%ld | %ld | %.2f | %.2f |\n",
			 r->rss0,
			 r->rss_with,
			 r->up ? (double) (r->rss_with - r->rss0) / (double) r->up : 0.0,
			 r->u.server_s);
	else
		fprintf (table_out, "- | - | - | - |\n");
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());
}

static void
idle_print_json (const Idle *r)
{
	GString *j = j_begin ("idle");

	j_common (j);
	j_int (j, "n", r->n);
	j_num (j, "rate", r->rate);
	j_int (j, "connected", (int64_t) r->up);
	j_num (j, "connect_seconds", r->connect_s);
	j_failures (j, &r->a, &r->b);
	j_num (j, "handshake_p50_ms", ms (hist_quantile (r->hs, 0.5)));
	j_num (j, "handshake_p99_ms", ms (hist_quantile (r->hs, 0.99)));
	j_num (j, "handshake_max_ms", ms ((double) r->hs->max));
	if (opt.join)
		j_int (j, "join_echoes", (int64_t) diff (&r->a, &r->b, S_JOINED));
	j_num (j, "duration_s", opt.duration);
	j_int (j, "open_at_end", (int64_t) r->live);
	j_int (j, "conns_lost", (int64_t) diff (&r->b, &r->c2, S_LOST));
	/* what others sent while the connections were held (a hub-wide message, say) */
	j_int (j, "messages_without_t", (int64_t) diff (&r->b, &r->c2, S_NO_T));
	j_closes (j, &r->b, &r->c2);
	if (opt.pid > 0) {
		j_int (j, "rss_before_kib", r->rss0);
		j_int (j, "rss_with_kib", r->rss_with);
		j_int (j, "rss_end_kib", r->rss_end);
		if (r->up > 0 && r->rss0 >= 0 && r->rss_with >= 0)
			j_num (j,
			       "kib_per_conn",
			       (double) (r->rss_with - r->rss0) / (double) r->up);
		else
			j_null (j, "kib_per_conn");
	}
	j_cpu (j, &r->u);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	j_emit (j);
}

/**
 * run_idle:
 *
 * Opens --connections at --rate/s and holds them for --duration; with --pid, the server's RSS
 * per connection.
 *
 * Returns: 0 when at least one connection came up, else 1
 */
int
run_idle (void)
{
	Idle r = {.n = (uint32_t) opt.n, .rate = opt.rate, .rss_with = -1, .connect_s = NAN};

	idle_open (&r);
	idle_hold (&r);
	r.hs = merged_hist (G_STRUCT_OFFSET (Loop, hs));
	idle_print_table (&r);
	idle_print_json (&r);
	g_free (r.hs);
	return r.up > 0 ? 0 : 1;
}

/* ---- fan-out ------------------------------------------------------------------------------- */

typedef struct {
	uint32_t n, pubs;
	uint32_t flooders; /* 1 with --flooder: conns[n], in a room of its own */
	Snap a, b;	   /* before connecting, when settled */
	uint64_t up;	   /* of the n */
	bool flooder_up;
	double connect_s;
	uint64_t *members;	    /* receivers per room when the step began (publishers apart) */
	uint64_t *sent_room_before; /* the publisher loop's per-room count when the step began */
} Fanout;

typedef struct {
	int step; /* from 0 */
	double rate;
	bool flood; /* the flooder floods while the publishers publish */
	uint64_t flood_sent, flood_echoes;
	Snap s0, s1; /* when the step began, when its drain ended */
	CpuUse u;    /* from the first send to the end of the drain */
	int64_t start, end;
	uint64_t live, pubs_live, sent, sent_target, expected, delivered, errors, late;
	double window, ratio, dps, quiet_s;
	Hist *h;
} FanoutStep;

/* Opens the connections, waits for their join echoes and prints the table's head. */
static void
fanout_connect (Fanout *f)
{
	uint32_t n_all = f->n + f->flooders;
	int64_t t0;

	setup_conns (f->n + f->flooders, f->pubs, f->flooders);
	for (uint32_t i = 0; i < f->n; i++)
		plan_joins (&conns[i], true, i < f->pubs);
	if (f->flooders > 0)
		plan_flooder (&conns[f->n]);
	start_loops ();
	snap (&f->a);
	note ("fanout: opening %u connections at %g/s to %s://%s%s (%d room%s, %u publisher%s)",
	      f->n,
	      opt.ramp,
	      opt.tls ? "wss" : "ws",
	      host_header,
	      opt.path,
	      opt.rooms,
	      opt.rooms == 1 ? "" : "s",
	      f->pubs,
	      f->pubs == 1 ? "" : "s");
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (0, n_all, t0, opt.ramp, opt.inflight);
	G.cmd.hs_record = true;
	post ();
	wait_done (f->a.v[S_DONE], n_all, t0 + s_to_ns (connect_budget (n_all, opt.ramp)));
	f->up = total (S_UP) - f->a.v[S_UP];
	if (f->up > 0)
		f->connect_s = (double) ((int64_t) total (S_LAST_UP_NS) - t0) / 1e9;
	settle_joins (f->a.v[S_JOINED], f->up);
	f->flooder_up = f->flooders > 0 && conn_state (&conns[f->n]) == CS_OPEN;
	f->up -= f->flooder_up;
	G.cmd.hs_record = false;
	post ();
	snap (&f->b);
	note ("fanout: %" PRIu64 "/%u up in %s s, %" PRIu64 " join echoes",
	      f->up,
	      f->n,
	      num (f->connect_s, 2),
	      diff (&f->a, &f->b, S_JOINED));
	if (first_error ())
		note ("first error: %s", first_error ());
}

static void
fanout_print_head (const Fanout *f)
{
	fprintf (table_out,
		 "\nfanout: %u connections (%" PRIu64 " up in %s s, %" PRIu64 " failed, %" PRIu64
		 " join echoes), %d room%s, %u publisher%s, %d-byte content, %g s per step\n\n",
		 f->n,
		 f->up,
		 num (f->connect_s, 2),
		 dial_errors (&f->a, &f->b),
		 diff (&f->a, &f->b, S_JOINED),
		 opt.rooms,
		 opt.rooms == 1 ? "" : "s",
		 f->pubs,
		 f->pubs == 1 ? "" : "s",
		 opt.size,
		 opt.duration);
	if (f->flooders > 0)
		fprintf (table_out,
			 "and one flooder (%s), in room %d of its own: every rate runs without it, "
			 "then with it flooding %d-byte messages as fast as the server reads them "
			 "(at most %d per step), reading and discarding its echoes\n\n",
			 f->flooder_up ? "up" : "NOT up",
			 opt.rooms + 1,
			 opt.size,
			 opt.flood_max);
	fprintf (
	    table_out,
	    "| rate/s | sent/target | receivers | expected | delivered | ratio | deliveries/s | "
	    "p50 ms | p90 ms | p99 ms | max ms | errors | closes | srv CPU %% | bench CPU %% |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fflush (table_out);
}

/* The receivers: the connections open now, by room (publishers are in every room, or with
 * --own-room in theirs). False, with
 * a line in the table, when no publisher is connected. */
static bool
fanout_count_receivers (Fanout *f, FanoutStep *s)
{
	memset (f->members, 0, sizeof (uint64_t) * ((size_t) opt.rooms + 1));
	for (uint32_t i = 0; i < f->n; i++) {
		if (conn_state (&conns[i]) != CS_OPEN)
			continue;
		s->live++;
		if (i < f->pubs)
			s->pubs_live++;
		/* with --own-room a publisher is a member of its room only */
		if (opt.rooms > 0 && (i >= f->pubs || opt.own_room))
			f->members[conns[i].room]++;
	}
	if (s->pubs_live > 0)
		return true;
	fprintf (table_out,
		 "stopped before %g msg/s: no publisher is connected (%" PRIu64
		 " of %u connections open)\n",
		 s->rate,
		 s->live,
		 f->n);
	return false;
}

/* Publishes for --duration on the schedule and waits until the publisher loop is done; the
 * expected deliveries are every message times the members of its room. */
static bool
fanout_publish (Fanout *f, FanoutStep *s, CpuMark *m0)
{
	memcpy (f->sent_room_before,
		pub_loop->sent_room,
		sizeof (uint64_t) * ((size_t) opt.rooms + 1));
	snap (&s->s0);
	s->start = mono_ns () + 20 * NS_PER_MS;
	s->end = s->start + s_to_ns (opt.duration);
	G.cmd.rec_step = s->step;
	G.cmd.rec_start = s->start;
	G.cmd.pub_gen++;
	G.cmd.pub_start = s->start;
	G.cmd.pub_end = s->end;
	G.cmd.pub_rate_each = s->rate / (double) f->pubs;
	if (s->flood) {
		G.cmd.flood_gen++;
		G.cmd.flood_start = s->start;
		G.cmd.flood_end = s->end;
		G.cmd.flood_max = (uint64_t) opt.flood_max;
	}
	if (!post ())
		return false;
	note ("fanout: step %d: %g msg/s for %g s%s",
	      s->step + 1,
	      s->rate,
	      opt.duration,
	      s->flood ? ", with the flooder" : "");
	sleep_until (s->start);
	cpu_mark (m0);
	sleep_until (s->end);
	while (atomic_load_explicit (&pub_loop->pub_done, memory_order_acquire) != G.cmd.pub_gen &&
	       sleep_until (mono_ns () + 5 * NS_PER_MS))
		;
	s->sent = total (S_SENT) - s->s0.v[S_SENT];
	if (opt.rooms > 0) {
		for (int r = 1; r <= opt.rooms; r++)
			s->expected += (pub_loop->sent_room[r] - f->sent_room_before[r]) *
				       (f->members[r] + (opt.own_room ? 0 : s->pubs_live));
	} else {
		s->expected = s->sent * s->live;
	}
	return true;
}

/* Drains until everything arrived, deliveries stall for --stall, or --drain passes. */
static void
fanout_drain (FanoutStep *s)
{
	int64_t ds = mono_ns (), last_change = ds;
	uint64_t last = UINT64_MAX;

	while (mono_ns () - ds < s_to_ns (opt.drain)) {
		uint64_t d = total (S_DELIVERED) - s->s0.v[S_DELIVERED];

		if (d >= s->expected)
			break;
		if (d != last) {
			last = d;
			last_change = mono_ns ();
		} else if (mono_ns () - last_change >= s_to_ns (opt.stall)) {
			break;
		}
		if (!sleep_until (mono_ns () + 20 * NS_PER_MS))
			break;
	}
}

/* Stops recording and takes the step's figures. */
static void
fanout_measure (FanoutStep *s, const CpuMark *m0)
{
	CpuMark m1;
	int64_t window_end;

	cpu_mark (&m1);
	G.cmd.rec_step = -1;
	post ();
	snap (&s->s1);
	window_end = mono_ns ();
	if (s->s1.v[S_LAST_RECV_NS] >= (uint64_t) s->start &&
	    (int64_t) s->s1.v[S_LAST_RECV_NS] < window_end)
		window_end = (int64_t) s->s1.v[S_LAST_RECV_NS];
	s->h = merged_hist (G_STRUCT_OFFSET (Loop, lat));
	s->delivered = diff (&s->s0, &s->s1, S_DELIVERED);
	s->window = (double) (window_end - s->start) / 1e9;
	s->ratio = s->expected ? (double) s->delivered / (double) s->expected : 0;
	s->dps = s->window > 0 ? (double) s->delivered / s->window : 0;
	s->sent_target = (uint64_t) (s->rate * opt.duration);
	s->u = cpu_use (m0, &m1);
	s->flood_sent = diff (&s->s0, &s->s1, S_FLOOD_SENT);
	s->flood_echoes = diff (&s->s0, &s->s1, S_FLOOD_ECHOES);
}

/* Waits until the server stops delivering this step's messages (a saturated server keeps
 * sending its backlog), so that the next step starts on a quiet connection set; what arrives now
 * is late: counted as not delivered. */
static void
fanout_wait_quiet (FanoutStep *s)
{
	int64_t qs = mono_ns (), lc = qs;
	uint64_t prev = total (S_LATE);

	while (mono_ns () - qs < s_to_ns (opt.quiet_max) &&
	       sleep_until (mono_ns () + 50 * NS_PER_MS)) {
		uint64_t cur = total (S_LATE);

		if (cur != prev) {
			prev = cur;
			lc = mono_ns ();
		} else if (mono_ns () - lc >= s_to_ns (opt.stall)) {
			break;
		}
	}
	s->late = total (S_LATE) - s->s1.v[S_LATE];
	s->quiet_s = (double) (lc - qs) / 1e9;
	s->errors = dial_errors (&s->s0, &s->s1) + diff (&s->s0, &s->s1, S_LOST) +
		    diff (&s->s0, &s->s1, S_SERVER_CLOSES) + diff (&s->s0, &s->s1, S_WRITE_ERRORS) +
		    diff (&s->s0, &s->s1, S_ERROR_FRAMES) + diff (&s->s0, &s->s1, S_BAD_FRAMES);
}

static void
fanout_print_row (const FanoutStep *s)
{
	g_autofree char *closes = closes_text (&s->s0, &s->s1);

	fprintf (table_out,
		 "| %g%s | %" PRIu64 "/%" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
		 " | %.3f | %.0f | %.1f | %.1f | %.1f | %.1f | %" PRIu64 " | %s | ",
		 s->rate,
		 s->flood ? " + flooder" : "",
		 s->sent,
		 s->sent_target,
		 s->live,
		 s->expected,
		 s->delivered,
		 (double) (int64_t) (s->ratio * 1000) / 1000,
		 s->dps,
		 ms (hist_quantile (s->h, 0.5)),
		 ms (hist_quantile (s->h, 0.9)),
		 ms (hist_quantile (s->h, 0.99)),
		 ms ((double) s->h->max),
		 s->errors,
		 closes);
	if (opt.pid > 0)
		fprintf (table_out, "%.0f | %.0f |\n", s->u.server, s->u.bench);
	else
		fprintf (table_out, "- | %.0f |\n", s->u.bench);
	if (s->late || diff (&s->s0, &s->s1, S_STALE))
		fprintf (table_out,
			 "|   -> %" PRIu64 " more deliveries arrived within %.1f s after "
			 "the drain (not counted); %" PRIu64
			 " left over from an earlier step arrived during this one |\n",
			 s->late,
			 s->quiet_s,
			 diff (&s->s0, &s->s1, S_STALE));
	if (s->flood)
		fprintf (table_out,
			 "|   -> the flooder queued %" PRIu64
			 " messages in %g s (%.0f/s) and read %" PRIu64 " echoes |\n",
			 s->flood_sent,
			 opt.duration,
			 opt.duration > 0 ? (double) s->flood_sent / opt.duration : 0,
			 s->flood_echoes);
	fflush (table_out);
}

/* The step's delivery figures: counts, ratio and latency. */
static void
fanout_json_delivery (GString *j, const FanoutStep *s)
{
	j_int (j, "sent_target", (int64_t) s->sent_target);
	j_int (j, "sent", (int64_t) s->sent);
	j_int (j, "receivers", (int64_t) s->live);
	j_int (j, "expected", (int64_t) s->expected);
	j_int (j, "delivered", (int64_t) s->delivered);
	j_num (j, "delivery_ratio", (double) (int64_t) (s->ratio * 10000) / 10000);
	j_num (j, "window_s", s->window);
	j_num (j, "deliveries_per_sec", (double) (int64_t) s->dps);
	j_num (j, "p50_ms", ms (hist_quantile (s->h, 0.5)));
	j_num (j, "p90_ms", ms (hist_quantile (s->h, 0.9)));
	j_num (j, "p99_ms", ms (hist_quantile (s->h, 0.99)));
	j_num (j, "max_ms", ms ((double) s->h->max));
	j_num (j, "mean_ms", s->h->n ? ms ((double) s->h->sum / (double) s->h->n) : 0);
}

/* What went wrong during the step, and what came outside it. */
static void
fanout_json_trouble (GString *j, const FanoutStep *s)
{
	const Snap *s0 = &s->s0, *s1 = &s->s1;

	j_int (j, "errors", (int64_t) s->errors);
	j_int (j, "dial_errors", (int64_t) dial_errors (s0, s1));
	j_int (j, "conns_lost", (int64_t) diff (s0, s1, S_LOST));
	j_int (j, "server_closes", (int64_t) diff (s0, s1, S_SERVER_CLOSES));
	j_closes (j, s0, s1);
	j_int (j, "write_errors", (int64_t) diff (s0, s1, S_WRITE_ERRORS));
	j_int (j, "error_frames", (int64_t) diff (s0, s1, S_ERROR_FRAMES));
	j_int (j, "bad_frames", (int64_t) diff (s0, s1, S_BAD_FRAMES));
	j_int (j, "other_frames", (int64_t) diff (s0, s1, S_OTHER_FRAMES));
	j_int (j, "messages_without_t", (int64_t) diff (s0, s1, S_NO_T));
	j_int (j, "stale", (int64_t) diff (s0, s1, S_STALE));
	j_int (j, "late_after_drain", (int64_t) s->late);
	j_num (j, "late_for_s", s->quiet_s);
	j_int (j, "server_pings", (int64_t) diff (s0, s1, S_PINGS));
}

static void
fanout_print_json (const Fanout *f, const FanoutStep *s)
{
	GString *j = j_begin ("fanout");

	j_common (j);
	j_int (j, "step", s->step + 1);
	j_int (j, "n", f->n);
	j_int (j, "connected", (int64_t) f->up);
	j_num (j, "connect_seconds", f->connect_s);
	j_int (j, "join_echoes", (int64_t) diff (&f->a, &f->b, S_JOINED));
	j_int (j, "rooms", opt.rooms);
	j_int (j, "publishers", f->pubs);
	j_num (j, "rate", s->rate);
	j_num (j, "duration_s", opt.duration);
	j_int (j, "size", opt.size);
	if (opt.flooder) {
		j_bool (j, "flooder", s->flood);
		j_int (j, "flood_sent", (int64_t) s->flood_sent);
		j_num (j, "flood_per_sec", opt.duration > 0 ? s->flood_sent / opt.duration : 0);
		j_int (j, "flood_echoes", (int64_t) s->flood_echoes);
		j_bool (j, "flooder_open", conn_state (&conns[f->n]) == CS_OPEN);
	}
	fanout_json_delivery (j, s);
	fanout_json_trouble (j, s);
	if (opt.pid > 0)
		j_int (j, "server_rss_kib", proc_rss_kib (opt.pid));
	j_cpu (j, &s->u);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	if (first_error_frame ())
		j_str (j, "first_error_frame", first_error_frame ());
	j_emit (j);
}

typedef enum { STEP_DONE, STEP_NO_PUBLISHER, STEP_STUCK } StepResult;

/* One step of the sweep: publish at rate, drain, wait for quiet, report. */
static StepResult
fanout_step (Fanout *f, int step, double rate, bool flood)
{
	FanoutStep s = {.step = step, .rate = rate, .flood = flood};
	CpuMark m0;

	if (!fanout_count_receivers (f, &s))
		return STEP_NO_PUBLISHER;
	if (!fanout_publish (f, &s, &m0))
		return STEP_STUCK;
	fanout_drain (&s);
	fanout_measure (&s, &m0);
	fanout_wait_quiet (&s);
	fanout_print_row (&s);
	fanout_print_json (f, &s);
	g_free (s.h);
	return STEP_DONE;
}

/**
 * run_fanout:
 *
 * Opens --connections, the first --publishers of them publishing into every one of --rooms
 * rooms, and runs one step per rate of --rates (or --rate) on the same connections; with
 * --flooder, one more connection and two steps per rate, the second with it flooding.
 *
 * Returns: 0 when every step ran, 1 when one stopped because no publisher was connected
 */
int
run_fanout (void)
{
	Fanout f = {
	    .n = (uint32_t) opt.n,
	    .pubs = (uint32_t) opt.publishers,
	    .flooders = opt.flooder ? 1 : 0,
	    .connect_s = NAN,
	};
	int nsteps = nrates * (opt.flooder ? 2 : 1);
	bool failed = false;

	fanout_connect (&f);
	fanout_print_head (&f);
	f.members = g_new0 (uint64_t, (size_t) opt.rooms + 1);
	f.sent_room_before = g_new0 (uint64_t, (size_t) opt.rooms + 1);
	/* with --flooder, each rate without the flooder and then with it, on the same connections
	 */
	for (int step = 0; step < nsteps && !aborted; step++) {
		StepResult r = opt.flooder ? fanout_step (&f, step, rates[step / 2], step % 2 == 1)
					   : fanout_step (&f, step, rates[step], false);

		if (r == STEP_NO_PUBLISHER)
			failed = true;
		if (r != STEP_DONE)
			break;
		if (step + 1 < nsteps)
			sleep_until (mono_ns () + s_to_ns (opt.pause));
	}
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());
	if (first_error_frame ())
		fprintf (table_out, "first error frame: %s\n", first_error_frame ());
	g_free (f.members);
	g_free (f.sent_room_before);
	return failed ? 1 : 0;
}

/* ---- storm --------------------------------------------------------------------------------- */

typedef struct {
	uint32_t n, hold;
	double rate;
	char how[40];  /* "at 2000/s", "at once" */
	Snap a, b, c2; /* before the idle ones, before the storm, after it */
	CpuUse u;      /* during the storm */
	long rss0, rss1;
	uint64_t hold_up, up, joined;
	double all_up_s, all_done_s, joined_s;
	bool no_echo;
	Hist *hs, *hj;
} Storm;

/* Opens the --hold idle connections first, if any. */
static void
storm_hold (Storm *r)
{
	int64_t t0;

	setup_conns (r->hold + r->n, 0, 0);
	for (uint32_t i = r->hold; i < r->hold + r->n; i++)
		plan_joins (&conns[i], opt.join, false);
	start_loops ();
	snap (&r->a);
	if (r->hold == 0)
		return;
	note ("storm: opening %u idle connections at %g/s first", r->hold, opt.hold_rate);
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (0, r->hold, t0, opt.hold_rate, 256);
	post ();
	wait_done (r->a.v[S_DONE], r->hold, t0 + s_to_ns (connect_budget (r->hold, opt.hold_rate)));
	r->hold_up = total (S_UP) - r->a.v[S_UP];
	note ("storm: %" PRIu64 "/%u idle connections up", r->hold_up, r->hold);
	sleep_until (mono_ns () + s_to_ns (opt.settle));
}

/* With --join: waits until every connection that came up has its join ack, or none comes within
 * --settle (a server that does not echo joins), or --join-timeout from the storm's start. */
static void
storm_wait_joins (Storm *r, int64_t t0)
{
	int64_t ts = mono_ns (), limit = t0 + s_to_ns (opt.join_timeout);

	for (;;) {
		r->joined = total (S_JOINED) - r->b.v[S_JOINED];
		if (r->joined >= r->up)
			break;
		if (r->joined == 0 && mono_ns () - ts >= s_to_ns (opt.settle)) {
			r->no_echo = true;
			break;
		}
		if (mono_ns () >= limit || !sleep_until (mono_ns () + 2 * NS_PER_MS))
			break;
	}
	if (r->joined > 0)
		r->joined_s = (double) ((int64_t) total (S_LAST_JOIN_NS) - t0) / 1e9;
}

/* The storm itself: n connections at --rate/s (0: all at once). */
static void
storm_open (Storm *r)
{
	CpuMark m0, m1;
	int64_t t0;

	snap (&r->b);
	r->rss0 = proc_rss_kib (opt.pid);
	cpu_mark (&m0);
	if (r->rate > 0)
		snprintf (r->how, sizeof r->how, "at %g/s", r->rate);
	else
		snprintf (r->how, sizeof r->how, "at once");
	note ("storm: opening %u connections %s", r->n, r->how);
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (r->hold,
		  r->hold + r->n,
		  t0,
		  r->rate,
		  opt.inflight > 0 ? opt.inflight : (int) r->n);
	G.cmd.hs_record = true;
	post ();
	wait_done (r->b.v[S_DONE], r->n, t0 + s_to_ns (connect_budget (r->n, r->rate)));
	r->all_done_s = (double) (mono_ns () - t0) / 1e9;
	r->up = total (S_UP) - r->b.v[S_UP];
	if (r->up > 0 && total (S_LAST_UP_NS) >= (uint64_t) t0)
		r->all_up_s = (double) ((int64_t) total (S_LAST_UP_NS) - t0) / 1e9;
	if (opt.join && opt.rooms > 0 && r->up > 0)
		storm_wait_joins (r, t0);
	cpu_mark (&m1);
	G.cmd.hs_record = false;
	post ();
	snap (&r->c2);
	r->rss1 = proc_rss_kib (opt.pid);
	r->u = cpu_use (&m0, &m1);
}

static void
storm_print_table (const Storm *r)
{
	g_autofree char *fails = failures_text (&r->b, &r->c2);
	g_autofree char *closes = closes_text (&r->b, &r->c2);

	fprintf (table_out,
		 "\n| storm | hold (up) | up | failed | all up s | all done s | handshake "
		 "p50/p99/max ms | joined | all joined s | join p99 ms | lost | closes | server "
		 "CPU s | RSS before/after KiB |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u %s | %u (%" PRIu64 ") | %" PRIu64 " | %s | %s | %s | %.1f/%.1f/%.1f | ",
		 r->n,
		 r->how,
		 r->hold,
		 r->hold_up,
		 r->up,
		 fails,
		 num (r->all_up_s, 2),
		 num (r->all_done_s, 2),
		 ms (hist_quantile (r->hs, 0.5)),
		 ms (hist_quantile (r->hs, 0.99)),
		 ms ((double) r->hs->max));
	if (!opt.join)
		fprintf (table_out, "- | - | - | ");
	else if (r->no_echo)
		fprintf (table_out, "no echo | - | - | ");
	else
		fprintf (table_out,
			 "%" PRIu64 " | %s | %.1f | ",
			 r->joined,
			 num (r->joined_s, 2),
			 ms (hist_quantile (r->hj, 0.99)));
	fprintf (table_out, "%" PRIu64 " | %s | ", diff (&r->b, &r->c2, S_LOST), closes);
	if (opt.pid > 0)
		fprintf (table_out, "%.2f | %ld/%ld |\n", r->u.server_s, r->rss0, r->rss1);
	else
		fprintf (table_out, "- | - |\n");
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());
}

static void
storm_print_json (const Storm *r)
{
	GString *j = j_begin ("storm");

	j_common (j);
	j_int (j, "n", r->n);
	j_num (j, "rate", r->rate);
	j_int (j, "hold", r->hold);
	j_int (j, "hold_connected", (int64_t) r->hold_up);
	j_int (j, "hold_failed", (int64_t) dial_errors (&r->a, &r->b));
	j_int (j, "connected", (int64_t) r->up);
	j_failures (j, &r->b, &r->c2);
	j_num (j, "all_up_s", r->all_up_s);
	j_num (j, "all_done_s", r->all_done_s);
	j_num (j, "handshake_p50_ms", ms (hist_quantile (r->hs, 0.5)));
	j_num (j, "handshake_p99_ms", ms (hist_quantile (r->hs, 0.99)));
	j_num (j, "handshake_max_ms", ms ((double) r->hs->max));
	if (opt.join) {
		j_bool (j, "join_echo", !r->no_echo);
		j_int (j, "joined", (int64_t) r->joined);
		j_num (j, "all_joined_s", r->joined_s);
		j_num (j, "join_after_up_p50_ms", ms (hist_quantile (r->hj, 0.5)));
		j_num (j, "join_after_up_p99_ms", ms (hist_quantile (r->hj, 0.99)));
		j_num (j, "join_after_up_max_ms", ms ((double) r->hj->max));
	}
	j_int (j, "conns_lost", (int64_t) diff (&r->b, &r->c2, S_LOST));
	j_closes (j, &r->b, &r->c2);
	if (opt.pid > 0) {
		j_int (j, "rss_before_kib", r->rss0);
		j_int (j, "rss_after_kib", r->rss1);
	}
	j_cpu (j, &r->u);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	j_emit (j);
}

/**
 * run_storm:
 *
 * Opens --connections at --rate/s (0: all at once), optionally after --hold idle ones and with
 * --join, and reports the time until all are up (and joined).
 *
 * Returns: 0 when at least one connection came up, else 1
 */
int
run_storm (void)
{
	Storm r = {
	    .n = (uint32_t) opt.n,
	    .hold = (uint32_t) MAX (opt.hold, 0),
	    .rate = opt.rate,
	    .all_up_s = NAN,
	    .all_done_s = NAN,
	    .joined_s = NAN,
	};

	storm_hold (&r);
	storm_open (&r);
	r.hs = merged_hist (G_STRUCT_OFFSET (Loop, hs));
	r.hj = merged_hist (G_STRUCT_OFFSET (Loop, join));
	storm_print_table (&r);
	storm_print_json (&r);
	g_free (r.hs);
	g_free (r.hj);
	return r.up > 0 ? 0 : 1;
}

/* ---- recover ------------------------------------------------------------------------------- */

#define RECOVER_PUB_RATE 1000.0 /* msg/s the publisher sends the missed messages at */

typedef struct {
	uint32_t n;
	char how[40];
	char epoch[64];
	Snap a, b, c, d, e; /* before joining, joined, before publishing, before rejoining, end */
	CpuUse uj, ur;	    /* during the plain joins, during the rejoins */
	uint64_t up, joined, sent, echoes, reup, rejoined, recovered, not_recovered, complete;
	double join_s, rejoin_s, recover_s;
	Hist *hj, *hr; /* join ack after the 101: plain, rejoin */
} Recover;

/* The number of the server's open file descriptors, or -1 without --pid. */
static long
proc_fd_count (int pid)
{
	g_autofree char *path = g_strdup_printf ("/proc/%d/fd", pid);
	g_autoptr (GDir) dir = pid > 0 ? g_dir_open (path, 0, NULL) : NULL;
	long n = 0;

	if (dir == NULL)
		return -1;
	while (g_dir_read_name (dir) != NULL)
		n++;
	return n;
}

/* Opens [1, n] from now, waits for the attempts and then for count(done_stat) to reach the
 * connections up (or join_timeout); returns the start time. */
static int64_t
recover_open (Recover *r, const Snap *base, int done_stat, uint64_t *up, uint64_t *done)
{
	int64_t t0 = mono_ns () + 5 * NS_PER_MS, limit = t0 + s_to_ns (opt.join_timeout);

	cmd_open (1, r->n + 1, t0, opt.rate, opt.inflight);
	G.cmd.hs_record = true;
	post ();
	wait_done (base->v[S_DONE], r->n, t0 + s_to_ns (connect_budget (r->n, opt.rate)));
	*up = total (S_UP) - base->v[S_UP];
	/* a rejoin that did not recover gets nothing more: it is done too */
	while ((*done = total (done_stat) - base->v[done_stat]) +
		       (done_stat == S_RECOVER_DONE
			    ? total (S_NOT_RECOVERED) - base->v[S_NOT_RECOVERED]
			    : 0) <
		   *up &&
	       mono_ns () < limit && sleep_until (mono_ns () + 2 * NS_PER_MS))
		;
	return t0;
}

/* The publisher joins first; then the n members join without recovery: the yardstick. */
static bool
recover_join (Recover *r)
{
	CpuMark m0, m1;
	int64_t t0, limit;
	const char *epoch;

	setup_conns (r->n + 1, 1, 0);
	plan_joins (&conns[0], true, true);
	for (uint32_t i = 1; i <= r->n; i++)
		plan_joins (&conns[i], true, false);
	G.cmd.track_offsets = true;
	start_loops ();
	snap (&r->a);
	cmd_open (0, 1, mono_ns (), 0, 1);
	post ();
	limit = mono_ns () + s_to_ns (connect_budget (1, 0));
	while (total (S_JOINED) == r->a.v[S_JOINED] && mono_ns () < limit &&
	       sleep_until (mono_ns () + 2 * NS_PER_MS))
		;
	if (total (S_JOINED) == r->a.v[S_JOINED]) {
		fprintf (table_out, "recover: the publisher got no join ack\n");
		return false;
	}
	snap (&r->a);
	cpu_mark (&m0);
	note ("recover: %u members join room 1 %s (no recovery)", r->n, r->how);
	t0 = recover_open (r, &r->a, S_JOINED, &r->up, &r->joined);
	cpu_mark (&m1);
	G.cmd.hs_record = false;
	post ();
	snap (&r->b);
	r->uj = cpu_use (&m0, &m1);
	r->hj = merged_hist (G_STRUCT_OFFSET (Loop, join));
	if (r->joined > 0)
		r->join_s = (double) ((int64_t) r->b.v[S_LAST_JOIN_NS] - t0) / 1e9;
	epoch = first_epoch ();
	if (epoch == NULL) {
		fprintf (table_out, "recover: the join acks carry no epoch (protocol 1.1)\n");
		return false;
	}
	g_strlcpy (r->epoch, epoch, sizeof r->epoch);
	note ("recover: %" PRIu64 "/%u joined in %s s; epoch %s",
	      r->joined,
	      r->n,
	      num (r->join_s, 2),
	      r->epoch);
	return r->joined > 0;
}

/* Every member drops; once the server closed them, the publisher sends --messages. */
static void
recover_drop_and_publish (Recover *r)
{
	long fds = proc_fd_count (opt.pid);
	int64_t limit = mono_ns () + 5 * NS_PER_S;

	G.cmd.open_lo = G.cmd.open_hi = 0;
	G.cmd.drop_lo = 1;
	G.cmd.drop_gen++;
	post ();
	note ("recover: %u members dropped", r->n);
	/* with --pid: until the server has let go of them; else a second */
	if (fds < 0)
		sleep_until (mono_ns () + NS_PER_S);
	while (fds >= 0 && proc_fd_count (opt.pid) > fds - (long) r->up + 10 &&
	       mono_ns () < limit && sleep_until (mono_ns () + 10 * NS_PER_MS))
		;
	snap (&r->c);
	G.cmd.pub_gen++;
	G.cmd.pub_start = mono_ns () + 5 * NS_PER_MS;
	G.cmd.pub_end = G.cmd.pub_start + 30 * NS_PER_S;
	G.cmd.pub_rate_each = RECOVER_PUB_RATE;
	G.cmd.pub_count = (uint64_t) opt.messages;
	post ();
	/* the publisher's own copies come back once they are stored */
	limit = mono_ns () + 30 * NS_PER_S;
	while (total (S_PUB_ECHOES) - r->c.v[S_PUB_ECHOES] < (uint64_t) opt.messages &&
	       mono_ns () < limit && sleep_until (mono_ns () + 5 * NS_PER_MS))
		;
	r->sent = total (S_SENT) - r->c.v[S_SENT];
	r->echoes = total (S_PUB_ECHOES) - r->c.v[S_PUB_ECHOES];
	note ("recover: %" PRIu64 " sent, %" PRIu64 " stored and echoed", r->sent, r->echoes);
}

/* The members come back with since and epoch; the time until the last has all it missed. */
static void
recover_rejoin (Recover *r)
{
	CpuMark m0, m1;
	int64_t t0;

	snap (&r->d);
	g_strlcpy (G.cmd.epoch, r->epoch, sizeof G.cmd.epoch);
	G.cmd.recover_want = (uint32_t) r->echoes;
	cpu_mark (&m0);
	note ("recover: %u members rejoin %s with since and epoch", r->n, r->how);
	t0 = recover_open (r, &r->d, S_RECOVER_DONE, &r->reup, &r->complete);
	cpu_mark (&m1);
	G.cmd.hs_record = false;
	post ();
	r->ur = cpu_use (&m0, &m1);
	r->hr = merged_hist (G_STRUCT_OFFSET (Loop, join));
	/* duplicates would come after the last missed message */
	sleep_until (mono_ns () + s_to_ns (opt.stall));
	snap (&r->e);
	r->rejoined = diff (&r->d, &r->e, S_JOINED);
	r->recovered = diff (&r->d, &r->e, S_RECOVERED);
	r->not_recovered = diff (&r->d, &r->e, S_NOT_RECOVERED);
	r->complete = diff (&r->d, &r->e, S_RECOVER_DONE);
	if (r->rejoined > 0)
		r->rejoin_s = (double) ((int64_t) r->e.v[S_LAST_JOIN_NS] - t0) / 1e9;
	if (r->complete > 0)
		r->recover_s = (double) ((int64_t) r->e.v[S_LAST_RECOVER_NS] - t0) / 1e9;
}

static void
recover_print_table (const Recover *r)
{
	g_autofree char *closes = closes_text (&r->a, &r->e);

	fprintf (table_out,
		 "\nrecover: %u members of room 1 join %s, drop, %" PRIu64
		 " messages are sent (%" PRIu64 " stored), they rejoin %s with since and epoch\n\n",
		 r->n,
		 r->how,
		 r->sent,
		 r->echoes,
		 r->how);
	fprintf (table_out,
		 "| members | joined | all joined s | rejoined | recovered true/false | got all "
		 "| missed received/expected | dups | gaps | all recovered s | recovered/joined "
		 "| errors | closes | srv CPU s join/rejoin |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u | %" PRIu64 " | %s | %" PRIu64 " | %" PRIu64 "/%" PRIu64 " | %" PRIu64
		 " | %" PRIu64 "/%" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %s | %sx | %" PRIu64
		 " | %s | ",
		 r->n,
		 r->joined,
		 num (r->join_s, 2),
		 r->rejoined,
		 r->recovered,
		 r->not_recovered,
		 r->complete,
		 diff (&r->d, &r->e, S_RECOVER_MSGS),
		 r->reup * r->echoes,
		 diff (&r->a, &r->e, S_DUPS),
		 diff (&r->a, &r->e, S_GAPS),
		 num (r->recover_s, 2),
		 num (r->recover_s / r->join_s, 2),
		 diff (&r->a, &r->e, S_ERROR_FRAMES) + dial_errors (&r->a, &r->e),
		 closes);
	if (opt.pid > 0)
		fprintf (table_out, "%.2f/%.2f |\n", r->uj.server_s, r->ur.server_s);
	else
		fprintf (table_out, "- |\n");
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());
	if (first_error_frame ())
		fprintf (table_out, "first error frame: %s\n", first_error_frame ());
}

static void
recover_print_json (const Recover *r)
{
	GString *j = j_begin ("recover");

	j_common (j);
	j_int (j, "n", r->n);
	j_num (j, "rate", opt.rate);
	j_int (j, "messages", opt.messages);
	j_int (j, "connected", (int64_t) r->up);
	j_int (j, "joined", (int64_t) r->joined);
	j_num (j, "all_joined_s", r->join_s);
	j_num (j, "join_after_up_p99_ms", ms (hist_quantile (r->hj, 0.99)));
	j_int (j, "sent", (int64_t) r->sent);
	j_int (j, "stored", (int64_t) r->echoes);
	j_int (j, "reconnected", (int64_t) r->reup);
	j_int (j, "rejoined", (int64_t) r->rejoined);
	j_num (j, "all_rejoined_s", r->rejoin_s);
	j_num (j, "rejoin_after_up_p99_ms", ms (hist_quantile (r->hr, 0.99)));
	j_int (j, "recovered", (int64_t) r->recovered);
	j_int (j, "not_recovered", (int64_t) r->not_recovered);
	j_int (j, "complete", (int64_t) r->complete);
	j_int (j, "missed_received", (int64_t) diff (&r->d, &r->e, S_RECOVER_MSGS));
	j_int (j, "missed_expected", (int64_t) (r->reup * r->echoes));
	j_int (j, "duplicates", (int64_t) diff (&r->a, &r->e, S_DUPS));
	j_int (j, "gaps", (int64_t) diff (&r->a, &r->e, S_GAPS));
	j_num (j, "all_recovered_s", r->recover_s);
	j_num (j, "recover_vs_join", r->recover_s / r->join_s);
	j_int (j, "error_frames", (int64_t) diff (&r->a, &r->e, S_ERROR_FRAMES));
	j_int (j, "dial_errors", (int64_t) dial_errors (&r->a, &r->e));
	j_int (j, "conns_lost", (int64_t) diff (&r->a, &r->e, S_LOST));
	j_closes (j, &r->a, &r->e);
	if (opt.pid > 0) {
		j_num (j, "server_cpu_join_s", r->uj.server_s);
		j_num (j, "server_cpu_rejoin_s", r->ur.server_s);
	}
	/* the rejoin's window: the one the target is about */
	j_cpu (j, &r->ur);
	j_num (j, "machine_other_join_pct", r->uj.other);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	if (first_error_frame ())
		j_str (j, "first_error_frame", first_error_frame ());
	j_emit (j);
}

/**
 * run_recover:
 *
 * One publisher and --connections members of room 1: the members join (the yardstick), all
 * drop without a close frame, the publisher sends --messages, and the members rejoin with since
 * and epoch; reports whether each recovered every missed message exactly once, and the time
 * until the last one had them against the time the plain joins took.
 *
 * Returns: 0 when the members joined and rejoined, else 1
 */
int
run_recover (void)
{
	Recover r = {.n = (uint32_t) opt.n, .join_s = NAN, .rejoin_s = NAN, .recover_s = NAN};
	bool ok;

	if (opt.rate > 0)
		snprintf (r.how, sizeof r.how, "at %g/s", opt.rate);
	else
		snprintf (r.how, sizeof r.how, "at once");
	ok = recover_join (&r);
	if (ok) {
		recover_drop_and_publish (&r);
		recover_rejoin (&r);
		recover_print_table (&r);
		recover_print_json (&r);
	}
	g_free (r.hj);
	g_free (r.hr);
	return ok && r.rejoined > 0 ? 0 : 1;
}

/* ---- shutdown ------------------------------------------------------------------------------ */

typedef struct {
	Idle idle;
	Snap at_signal, at_exit, end;
	double exit_s;	     /* SIGTERM to the server's exit; NAN if it did not exit */
	double last_close_s; /* SIGTERM to the last close frame received */
	uint64_t open_at_end;
} Shutdown;

/* A descriptor that becomes readable when @pid exits (a zombie counts), or -1. */
static int
pid_watch (int pid)
{
#ifdef SYS_pidfd_open
	return (int) syscall (SYS_pidfd_open, pid, 0);
#else
	return -1;
#endif
}

static bool
pid_exited (int pidfd, int pid)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	if (pidfd >= 0)
		return poll (&p, 1, 0) == 1;
	return kill (pid, 0) != 0;
}

/* Sends SIGTERM and watches the close frames arrive until every connection ended, or 2 s after
 * the server's exit, or 10 s. */
static void
shutdown_watch (Shutdown *r)
{
	int pidfd = pid_watch (opt.pid);
	int64_t t0, exited_at = 0, limit, last_change;
	uint64_t closes, seen = UINT64_MAX;

	snap (&r->at_signal);
	note ("shutdown: %" PRIu64 " connections up; SIGTERM to %d", r->idle.up, opt.pid);
	t0 = mono_ns ();
	last_change = t0;
	limit = t0 + 10 * NS_PER_S;
	if (kill (opt.pid, SIGTERM) != 0)
		die ("cannot signal %d: %s", opt.pid, g_strerror (errno));
	while (mono_ns () < limit && !aborted) {
		uint64_t open = 0;

		if (exited_at == 0 && pid_exited (pidfd, opt.pid)) {
			exited_at = mono_ns ();
			snap (&r->at_exit);
			limit = MIN (limit, exited_at + 2 * NS_PER_S);
		}
		closes = total (S_SERVER_CLOSES);
		if (closes != seen) {
			seen = closes;
			last_change = mono_ns ();
		}
		for (uint32_t i = 0; i < r->idle.n; i++)
			open += conn_state (&conns[i]) == CS_OPEN;
		r->open_at_end = open;
		if (open == 0 && exited_at != 0)
			break;
		sleep_until (mono_ns () + 2 * NS_PER_MS);
	}
	snap (&r->end);
	if (exited_at == 0)
		snap (&r->at_exit);
	r->exit_s = exited_at != 0 ? (double) (exited_at - t0) / 1e9 : NAN;
	r->last_close_s = seen > r->at_signal.v[S_SERVER_CLOSES] && seen != UINT64_MAX
			      ? (double) (last_change - t0) / 1e9
			      : NAN;
	if (pidfd >= 0)
		close (pidfd);
}

static void
shutdown_report (const Shutdown *r)
{
	uint64_t going_away = diff (&r->at_signal, &r->end, S_CLOSE_FIRST + 1);
	uint64_t before_exit = diff (&r->at_signal, &r->at_exit, S_CLOSE_FIRST + 1);
	uint64_t lost = diff (&r->at_signal, &r->end, S_LOST);
	g_autofree char *closes = closes_text (&r->at_signal, &r->end);
	GString *j;

	fprintf (table_out,
		 "\n| connections | up | SIGTERM to exit s | got 1001 | of them before the exit "
		 "| last close frame s | lost (no close frame) | still open | closes |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u | %" PRIu64 " | %s | %" PRIu64 " | %" PRIu64 " | %s | %" PRIu64 " | %" PRIu64
		 " | %s |\n",
		 r->idle.n,
		 r->idle.up,
		 num (r->exit_s, 2),
		 going_away,
		 before_exit,
		 num (r->last_close_s, 2),
		 lost,
		 r->open_at_end,
		 closes);
	j = j_begin ("shutdown");
	j_common (j);
	j_int (j, "n", r->idle.n);
	j_int (j, "connected", (int64_t) r->idle.up);
	j_failures (j, &r->idle.a, &r->idle.b);
	j_num (j, "exit_seconds", r->exit_s);
	j_int (j, "got_1001", (int64_t) going_away);
	j_int (j, "got_1001_before_exit", (int64_t) before_exit);
	j_num (j, "last_close_seconds", r->last_close_s);
	j_int (j, "conns_lost", (int64_t) lost);
	j_int (j, "open_at_end", (int64_t) r->open_at_end);
	/* what came after the signal besides close frames: join and leave events, pongs... */
	j_int (j, "other_frames", (int64_t) diff (&r->at_signal, &r->end, S_OTHER_FRAMES));
	j_int (j, "leave_events", (int64_t) diff (&r->at_signal, &r->end, S_LEAVES));
	j_closes (j, &r->at_signal, &r->end);
	j_int (j, "rss_with_kib", r->idle.rss_with);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	j_emit (j);
}

/**
 * run_shutdown:
 *
 * Opens --connections as idle does, holds them for --duration, then sends SIGTERM to --pid and
 * counts the connections that get their 1001 close frame, and the time until the server exits.
 *
 * Returns: 0 when at least one connection came up, else 1
 */
int
run_shutdown (void)
{
	Shutdown r = {.idle = {.n = (uint32_t) opt.n, .rate = opt.rate, .rss_with = -1}};

	r.idle.connect_s = NAN;
	idle_open (&r.idle);
	idle_hold (&r.idle);
	if (r.idle.up > 0)
		shutdown_watch (&r);
	else
		r.at_signal = r.at_exit = r.end = r.idle.c2;
	shutdown_report (&r);
	return r.idle.up > 0 ? 0 : 1;
}
