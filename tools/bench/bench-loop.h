/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's event loops and the orchestrator's side of them.
 *
 * Threads: one orchestrator (the scenarios, which only sleep, poll counters and print), one event
 * loop per --threads for the receivers and, in fanout mode, one more event loop for the
 * publishers, so that the publishing schedule does not wait for receive work, and with
 * --flooder one more for the flooder, so that its writing delays neither. The orchestrator
 * talks to the loops through a command block and an epoch counter: it writes the block (G.cmd),
 * bumps the epoch, wakes the loops and waits until each has acknowledged the epoch (post()).
 * Counters are owned by their loop and mirrored into atomics once per loop iteration.
 */

#pragma once

#include <glib.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench-conn.h"
#include "bench-hist.h"
#include "bench.h"

enum {
	S_UP,		/* handshakes completed (101 + valid accept) */
	S_DONE,		/* connection attempts finished, either way */
	S_FAIL_REFUSED, /* ECONNREFUSED */
	S_FAIL_RESET,	/* ECONNRESET / EPIPE during connect or handshake */
	S_FAIL_EOF,	/* closed before the response was complete */
	S_FAIL_TIMEOUT, /* no 101 within --connect-timeout */
	S_FAIL_HTTP,	/* a response other than 101 */
	S_FAIL_HTTP_401,
	S_FAIL_HTTP_503,
	S_FAIL_OTHER,	 /* bad accept key, EADDRNOTAVAIL, EMFILE, ... */
	S_JOINED,	 /* connections that got their own join echo for every room they joined */
	S_LOST,		 /* open connections that ended without a close frame from the server */
	S_SERVER_CLOSES, /* close frames received */
	S_WRITE_ERRORS,
	S_ERROR_FRAMES, /* {"type":"error"} */
	S_BAD_FRAMES,	/* unparsable text or protocol errors */
	S_OTHER_FRAMES, /* everything else: others' join events, pongs, leave, ... */
	S_LEAVES,	/* of them, "leave" events */
	S_DELIVERED,	/* "message" frames with data.t of the current step */
	S_STALE,	/* "message" frames sent before the current step began */
	S_LATE,		/* "message" frames arriving between steps */
	S_NO_T,		/* "message" frames without a usable data.t */
	S_SENT,
	S_FLOOD_SENT,	 /* the flooder's messages, queued whole */
	S_FLOOD_ECHOES,	 /* text frames the flooder received (and discarded) */
	S_PINGS,	 /* server pings answered */
	S_PUB_ECHOES,	 /* "message" frames the publishers received (their own, relayed: stored) */
	S_RECOVERED,	 /* recover: rejoin acks with "recovered":true */
	S_NOT_RECOVERED, /* recover: rejoin acks with "recovered":false (or none) */
	S_RECOVER_DONE,	 /* recover: rejoined connections that got every missed message */
	S_RECOVER_MSGS,	 /* recover: missed messages received, each in order, once */
	S_DUPS,		 /* recover: room messages at or below the offset already seen */
	S_GAPS,		 /* recover: room messages past the next offset (one was skipped) */
	S_CLOSE_FIRST,	 /* close codes 1000..1015 */
	S_CLOSE_OTHER = S_CLOSE_FIRST + 16,
	S_LAST_UP_NS, /* maxima, not sums */
	S_LAST_JOIN_NS,
	S_LAST_RECV_NS,
	S_LAST_RECOVER_NS, /* recover: a connection's last missed message */
	S_COUNT
};

static inline bool
stat_is_max (int k)
{
	return k == S_LAST_UP_NS || k == S_LAST_JOIN_NS || k == S_LAST_RECV_NS ||
	       k == S_LAST_RECOVER_NS;
}

typedef struct {
	/* opening connections: global indexes [open_lo, open_hi) from open_t0 at open_rate/s */
	uint32_t open_lo, open_hi;
	int64_t open_t0;
	double open_rate;
	uint32_t infl_cap[MAX_LOOPS + 2];
	/* recording deliveries for a fan-out step */
	int rec_step; /* -1: not recording */
	int64_t rec_start;
	/* recording handshake and join times */
	bool hs_record;
	/* publishing (the publisher loop) */
	unsigned pub_gen;
	int64_t pub_start, pub_end;
	double pub_rate_each;
	uint64_t pub_count; /* per publisher; 0: as many as the schedule allows until pub_end */
	/* recover: closing connections [drop_lo, ...) without a close frame, and rejoining */
	unsigned drop_gen;
	uint32_t drop_lo;
	bool track_offsets;    /* follow the offsets of room messages (dups, gaps) */
	uint32_t recover_want; /* messages a dropped connection must get back after its rejoin */
	char epoch[64];	       /* joins of dropped connections carry since and this epoch */
	/* flooding (the flooder's loop): [flood_start, flood_end), at most flood_max messages */
	unsigned flood_gen;
	int64_t flood_start, flood_end;
	uint64_t flood_max;
	bool quit;
} Cmd;

struct Loop {
	int id;
	int epfd, evfd;
	GThread *thread;
	Conn **conns;
	uint32_t nconns, next_open;
	Conn **infl;
	uint32_t ninfl;
	Conn **pubs;
	uint32_t npubs;
	unsigned seen_epoch;
	_Atomic unsigned ack;
	Cmd cmd;
	uint64_t s[S_COUNT];
	_Atomic uint64_t m[S_COUNT];
	Hist lat, hs, join;
	bool pub_active;
	int64_t pub_interval;
	_Atomic unsigned pub_done; /* the pub_gen whose publishing finished */
	uint64_t pub_left;	   /* messages each publisher may still send in this pub_gen */
	uint64_t *sent_room;
	Conn *flooder; /* the flooder's loop: its one connection */
	bool flood_active;
	uint64_t flood_sent; /* in this flood */
	uint8_t *flood_buf;  /* identical masked frames, written again and again */
	size_t flood_len, flood_frames;
	uint8_t *rbuf;
	size_t rcap;
	uint8_t *wbuf;
	size_t wcap;
	char *msg_tail; /* "content":"xxx…","data":{"t": */
	size_t msg_tail_len;
	uint64_t rng;
	int64_t next_scan;
	int64_t wake;
	GHmac *hmac;
	char first_err[200];
	_Atomic int has_first_err;
	char first_errframe[120];
	_Atomic int has_errframe;
	char epoch[64]; /* the first room epoch a join ack carried */
	_Atomic int has_epoch;
};

/* the connections: [0, publishers) first, the flooder last; set up by setup_conns() */
extern Conn *conns;
extern Loop *loops[MAX_LOOPS + 2];
extern int nloops;
extern Loop *pub_loop;
extern Loop *flood_loop; /* NULL without --flooder */

/* the command block the orchestrator posts to every loop */
typedef struct {
	_Atomic unsigned epoch;
	Cmd cmd;
} Command;

extern Command G;

extern int64_t deadline; /* hard wall-clock end of the run (CLOCK_MONOTONIC ns) */
extern bool aborted;

static inline void
st_add (Loop *l, int k, uint64_t v)
{
	l->s[k] += v;
}

static inline void
st_max (Loop *l, int k, uint64_t v)
{
	if (v > l->s[k])
		l->s[k] = v;
}

void
set_first_err (Loop *l, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* the orchestrator's side */
typedef struct {
	uint64_t v[S_COUNT];
} Snap;

static inline uint64_t
diff (const Snap *a, const Snap *b, int k)
{
	return b->v[k] - a->v[k];
}

void
setup_conns (uint32_t total_n, uint32_t pubs, uint32_t flooders);
void
start_loops (void);
void
stop_loops (void);
void
plan_joins (Conn *c, bool join, bool publisher);
void
plan_flooder (Conn *c);
const char *
first_epoch (void);
bool
post (void);
uint64_t
total (int k);
void
snap (Snap *s);
bool
sleep_until (int64_t t);
double
connect_budget (uint32_t n, double rate);
void
cmd_open (uint32_t lo, uint32_t hi, int64_t t0, double rate, int inflight);
bool
wait_done (uint64_t base, uint64_t want, int64_t limit);
void
settle_joins (uint64_t joined_base, uint64_t live);
