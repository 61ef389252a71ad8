/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench: a load generator for chathub and for any server that speaks its protocol
 * (docs/protocol.md), in the spirit of redis-benchmark.
 *
 *   chathub-bench idle   --secret-file S -n 5000 --rate 2500 --duration 5 --pid PID
 *   chathub-bench fanout --secret-file S -n 1000 --rooms 1 --publishers 1 --rates 500,1000,2000
 *   chathub-bench storm  --secret-file S -n 1000 --rate 0 --hold 15000 --join
 *
 * It uses plain non-blocking sockets and epoll, never libsoup, so that it is not the bottleneck
 * it measures. The method follows the Go load generator the peers were measured with
 * (../shared/bench/loadgen): every connection has its own HS256 token, joins its room and waits
 * for its own join echo; publishers send on a fixed schedule and skip ahead rather than burst
 * when more than 100 ms behind; latency is the receive time minus the send time carried in
 * data.t; after sending it drains until everything arrived, deliveries stall, or a drain limit.
 *
 * Threads: one orchestrator (this file's run_* functions, which only sleeps, polls counters and
 * prints), one event loop per --threads for the receivers and, in fanout mode, one more event
 * loop for the publishers, so that the publishing schedule does not wait for receive work. The
 * orchestrator talks to the loops through a command block and an epoch counter: it writes the
 * block, bumps the epoch, wakes the loops and waits until each has acknowledged the epoch.
 * Counters are owned by their loop and mirrored into atomics once per loop iteration.
 *
 * Loopback only: the host must be in 127.0.0.0/8 or ::1. Every run is bounded by a wall-clock
 * deadline (the phases' budgets, capped by --timeout) and a SIGALRM backstop.
 */

#include "config.h"

#include <glib.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isfinite, NAN: macros only, no libm */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define MAX_LOOPS 32
#define MAX_FRAME (64u * 1024 * 1024) /* larger server frames are a protocol error here */
#define MAX_OUTBUF (64u * 1024 * 1024)
#define RBUF_SIZE (256u * 1024)
#define HS_BUF_MAX 16384
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- options ------------------------------------------------------------------------------- */

static struct {
	char *host;
	int port;
	char *path;
	char *url;
	char *secret_file;
	int uid_base;
	gboolean token_in_query;
	int n;
	double rate;
	char *rates;
	double ramp;
	double duration;
	int size;
	int rooms;
	int publishers;
	gboolean join;
	int hold;
	double hold_rate;
	int inflight;
	double connect_timeout;
	int threads;
	int source_ips;
	double settle;
	double settle_max;
	double drain;
	double stall;
	double pause;
	double join_timeout;
	double quiet_max;
	int pid;
	double timeout;
	gboolean json;
	gboolean quiet;
	gboolean version;
} opt = {
    .port = 8080,
    .uid_base = 1,
    .n = 1000,
    .rate = -1,
    .ramp = 2000,
    .duration = 5,
    .size = 64,
    .rooms = 1,
    .publishers = 1,
    .hold_rate = 2000,
    .inflight = -1,
    .connect_timeout = 10,
    .threads = 1,
    .source_ips = 1,
    .settle = 1,
    .settle_max = 5,
    .drain = 5,
    .stall = 1,
    .pause = 1,
    .join_timeout = 20,
    .quiet_max = 10,
    .timeout = 120,
};

typedef enum { MODE_IDLE, MODE_FANOUT, MODE_STORM } Mode;
static Mode mode;

/* resolved target */
static struct sockaddr_storage target;
static socklen_t target_len;
static char host_header[80];
static GBytes *secret;
static double *rates;
static int nrates;

/* ---- small helpers ------------------------------------------------------------------------- */

static inline int64_t
mono_ns (void)
{
	struct timespec ts;

	clock_gettime (CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void
note (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
note (const char *fmt, ...)
{
	va_list ap;

	if (opt.quiet)
		return;
	va_start (ap, fmt);
	fputs ("chathub-bench: ", stderr);
	vfprintf (stderr, fmt, ap);
	fputc ('\n', stderr);
	va_end (ap);
}

static void
die (const char *fmt, ...) G_GNUC_PRINTF (1, 2) G_GNUC_NORETURN;

static void
die (const char *fmt, ...)
{
	va_list ap;

	va_start (ap, fmt);
	fputs ("chathub-bench: ", stderr);
	vfprintf (stderr, fmt, ap);
	fputc ('\n', stderr);
	va_end (ap);
	exit (1);
}

static inline uint64_t
xorshift (uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Base64 with the given alphabet; pads with '=' when pad. Returns the length written. */
static size_t
b64 (char *out, const uint8_t *in, size_t n, const char *alphabet, bool pad)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t) in[i] << 16;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static const char B64_STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64_URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Appends the decimal digits of v; returns the new end. */
static inline char *
put_u64 (char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* ---- latency histogram (log-linear, <= 3 % bucket error) ----------------------------------- */

#define H_SUB_BITS 5
#define H_SUB (1 << H_SUB_BITS)
#define H_LINEAR (2 * H_SUB)
#define H_BUCKETS (H_LINEAR + (64 - H_SUB_BITS - 1) * H_SUB)

typedef struct {
	uint64_t n, max, sum;
	uint64_t b[H_BUCKETS];
} Hist;

static inline unsigned
hist_index (uint64_t v)
{
	int e;

	if (v < H_LINEAR)
		return (unsigned) v;
	e = 63 - __builtin_clzll (v);
	return H_LINEAR + (unsigned) (e - H_SUB_BITS - 1) * H_SUB +
	       (unsigned) ((v >> (e - H_SUB_BITS)) & (H_SUB - 1));
}

static inline void
hist_add (Hist *h, uint64_t v)
{
	h->b[hist_index (v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

static void
hist_merge (Hist *into, const Hist *from)
{
	for (unsigned i = 0; i < H_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
}

/* The value at quantile q (0..1): the middle of the bucket it falls in, at most the maximum. */
static double
hist_quantile (const Hist *h, double q)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	want = (uint64_t) (q * (double) h->n);
	if ((double) want < q * (double) h->n || want < 1)
		want++;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		double lo, width, mid;

		seen += h->b[i];
		if (seen < want)
			continue;
		if (i < H_LINEAR) {
			lo = i;
			width = 1;
		} else {
			unsigned k = i - H_LINEAR, e = k / H_SUB + H_SUB_BITS + 1, sub = k % H_SUB;
			width = (double) (1ULL << (e - H_SUB_BITS));
			lo = (double) (H_SUB + sub) * width;
		}
		mid = i < H_LINEAR ? lo : lo + width / 2;
		return mid < (double) h->max ? mid : (double) h->max;
	}
	return (double) h->max;
}

/* ---- counters ------------------------------------------------------------------------------ */

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
	S_DELIVERED,	/* "message" frames with data.t of the current step */
	S_STALE,	/* "message" frames sent before the current step began */
	S_LATE,		/* "message" frames arriving between steps */
	S_NO_T,		/* "message" frames without a usable data.t */
	S_SENT,
	S_PINGS,       /* server pings answered */
	S_CLOSE_FIRST, /* close codes 1000..1015 */
	S_CLOSE_OTHER = S_CLOSE_FIRST + 16,
	S_LAST_UP_NS, /* maxima, not sums */
	S_LAST_JOIN_NS,
	S_LAST_RECV_NS,
	S_COUNT
};

static inline bool
stat_is_max (int k)
{
	return k == S_LAST_UP_NS || k == S_LAST_JOIN_NS || k == S_LAST_RECV_NS;
}

/* ---- connections and loops ----------------------------------------------------------------- */

enum { CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED, CS_FAILED };

typedef struct Loop Loop;

typedef struct {
	int fd;
	_Atomic uint8_t state; /* written by the owning loop, read (relaxed) by the orchestrator */
	uint8_t want_out;
	uint8_t frag_op;
	uint8_t joining;
	uint8_t all_rooms;
	uint8_t in_flight;
	uint32_t idx;
	uint32_t room; /* home room, 0 = none */
	uint32_t joins_needed, joins_got;
	uint32_t infl_pos;
	uint64_t uid;
	int64_t t_start, t_up;
	int64_t next_send;
	uint64_t seq;
	uint8_t *obuf;
	uint32_t ooff, olen, ocap;
	uint8_t
	    *ibuf; /* partial frame left from the last read; during the handshake, the response */
	uint32_t ilen, icap;
	uint8_t *fbuf; /* fragmented message being assembled */
	uint32_t flen, fcap;
	char key[28];
} Conn;

typedef struct {
	/* opening connections: global indexes [open_lo, open_hi) from open_t0 at open_rate/s */
	uint32_t open_lo, open_hi;
	int64_t open_t0;
	double open_rate;
	uint32_t infl_cap[MAX_LOOPS + 1];
	/* recording deliveries for a fan-out step */
	int rec_step; /* -1: not recording */
	int64_t rec_start;
	/* recording handshake and join times */
	bool hs_record;
	/* publishing (the publisher loop) */
	unsigned pub_gen;
	int64_t pub_start, pub_end;
	double pub_rate_each;
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
	uint64_t *sent_room;
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
};

static Conn *conns;
static uint32_t nconns_total;
static Loop *loops[MAX_LOOPS + 1];
static int nloops;
static Loop *pub_loop;

static struct {
	_Atomic unsigned epoch;
	Cmd cmd;
} G;

static int64_t deadline; /* hard wall-clock end of the run (CLOCK_MONOTONIC ns) */
static bool aborted;
static char jwt_header[64]; /* base64url of {"alg":"HS256","typ":"JWT"} */

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

static void
mirror (Loop *l)
{
	for (int k = 0; k < S_COUNT; k++)
		atomic_store_explicit (&l->m[k], l->s[k], memory_order_relaxed);
}

static void
set_first_err (Loop *l, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
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

static inline void
conn_set_state (Conn *c, int s)
{
	atomic_store_explicit (&c->state, (uint8_t) s, memory_order_relaxed);
}

static inline int
conn_state (Conn *c)
{
	return atomic_load_explicit (&c->state, memory_order_relaxed);
}

static void
ep_set (Loop *l, Conn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (epoll_ctl (l->epfd, op, c->fd, &ev) < 0 && op != EPOLL_CTL_DEL)
		set_first_err (l, "epoll_ctl: %s", g_strerror (errno));
}

static void
infl_remove (Loop *l, Conn *c)
{
	if (!c->in_flight)
		return;
	l->infl[c->infl_pos] = l->infl[--l->ninfl];
	l->infl[c->infl_pos]->infl_pos = c->infl_pos;
	c->in_flight = 0;
}

static void
conn_release (Loop *l, Conn *c, int state)
{
	infl_remove (l, c);
	if (c->fd >= 0)
		close (c->fd); /* also removes it from the epoll set */
	c->fd = -1;
	g_clear_pointer (&c->obuf, g_free);
	g_clear_pointer (&c->ibuf, g_free);
	g_clear_pointer (&c->fbuf, g_free);
	c->ooff = c->olen = c->ocap = c->ilen = c->icap = c->flen = c->fcap = 0;
	conn_set_state (c, state);
}

/* A connection attempt failed (before it was up). */
static void
conn_fail (Loop *l, Conn *c, int kind, const char *what)
{
	st_add (l, kind, 1);
	st_add (l, S_DONE, 1);
	set_first_err (l, "connection %u (user %" PRIu64 "): %s", c->idx, c->uid, what);
	conn_release (l, c, CS_FAILED);
}

static void
conn_fail_errno (Loop *l, Conn *c, int err, const char *during)
{
	char what[160];
	int kind;

	switch (err) {
	case ECONNREFUSED:
		kind = S_FAIL_REFUSED;
		break;
	case ECONNRESET:
	case EPIPE:
		kind = S_FAIL_RESET;
		break;
	case ETIMEDOUT:
		kind = S_FAIL_TIMEOUT;
		break;
	default:
		kind = S_FAIL_OTHER;
		break;
	}
	snprintf (what, sizeof what, "%s: %s", during, g_strerror (err));
	conn_fail (l, c, kind, what);
}

/* An open connection ended without a close frame (EOF, reset, write error). */
static void
conn_lost (Loop *l, Conn *c, const char *what)
{
	if (!l->cmd.quit) {
		st_add (l, S_LOST, 1);
		set_first_err (l,
			       "connection %u (user %" PRIu64 ") lost: %s",
			       c->idx,
			       c->uid,
			       what);
	}
	conn_release (l, c, CS_CLOSED);
}

/* Queues or writes bytes in order. Returns false if the connection is gone. */
static bool
conn_send (Loop *l, Conn *c, const uint8_t *data, size_t len)
{
	if (c->fd < 0)
		return false;
	if (c->olen == 0) {
		ssize_t n = send (c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == (ssize_t) len)
			return true;
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				int err = errno;

				st_add (l, S_WRITE_ERRORS, 1);
				if (conn_state (c) == CS_OPEN)
					conn_lost (l, c, g_strerror (err));
				else
					conn_fail_errno (l, c, err, "write");
				return false;
			}
			n = 0;
		}
		data += n;
		len -= (size_t) n;
	}
	if ((size_t) c->olen + len > MAX_OUTBUF) {
		st_add (l, S_WRITE_ERRORS, 1);
		if (conn_state (c) == CS_OPEN)
			conn_lost (l, c, "output buffer overflow (the server does not read)");
		else
			conn_fail (l, c, S_FAIL_OTHER, "output buffer overflow");
		return false;
	}
	if (c->ooff + c->olen + len > c->ocap) {
		if (c->ooff > 0) {
			memmove (c->obuf, c->obuf + c->ooff, c->olen);
			c->ooff = 0;
		}
		if (c->olen + len > c->ocap) {
			uint32_t cap = c->ocap ? c->ocap : 1024;

			while (cap < c->olen + len)
				cap *= 2;
			c->obuf = g_realloc (c->obuf, cap);
			c->ocap = cap;
		}
	}
	memcpy (c->obuf + c->ooff + c->olen, data, len);
	c->olen += (uint32_t) len;
	if (!c->want_out) {
		c->want_out = 1;
		ep_set (l, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
	}
	return true;
}

static void
conn_flush (Loop *l, Conn *c)
{
	while (c->olen > 0) {
		ssize_t n = send (c->fd, c->obuf + c->ooff, c->olen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int err = errno;

			if (err == EAGAIN || err == EWOULDBLOCK)
				return;
			st_add (l, S_WRITE_ERRORS, 1);
			if (conn_state (c) == CS_OPEN)
				conn_lost (l, c, g_strerror (err));
			else
				conn_fail_errno (l, c, err, "write");
			return;
		}
		c->ooff += (uint32_t) n;
		c->olen -= (uint32_t) n;
	}
	c->ooff = 0;
	if (c->want_out) {
		c->want_out = 0;
		ep_set (l, c, EPOLLIN, EPOLL_CTL_MOD);
	}
}

/* Makes room for len bytes in the loop's frame buffer. */
static void
wbuf_reserve (Loop *l, size_t len)
{
	if (len > l->wcap) {
		l->wcap = len + 4096;
		l->wbuf = g_realloc (l->wbuf, l->wcap);
	}
}

/* Writes a masked client frame header for a payload of len bytes at dst; returns its size. */
static size_t
frame_header (uint8_t *dst, int opcode, size_t len, const uint8_t mask[4])
{
	size_t h = 0;

	dst[h++] = (uint8_t) (0x80 | opcode);
	if (len < 126) {
		dst[h++] = (uint8_t) (0x80 | len);
	} else if (len < 65536) {
		dst[h++] = 0x80 | 126;
		dst[h++] = (uint8_t) (len >> 8);
		dst[h++] = (uint8_t) len;
	} else {
		dst[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			dst[h++] = (uint8_t) ((uint64_t) len >> (8 * i));
	}
	memcpy (dst + h, mask, 4);
	return h + 4;
}

static void
mask_bytes (uint8_t *p, size_t n, const uint8_t mask[4])
{
	uint64_t m8;
	size_t i = 0;

	memcpy (&m8, mask, 4);
	memcpy ((uint8_t *) &m8 + 4, mask, 4);
	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy (&w, p + i, 8);
		w ^= m8;
		memcpy (p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= mask[i & 3];
}

/* Builds one masked frame with the given payload in the loop's frame buffer; returns its size. */
static size_t
frame_build (Loop *l, int opcode, const void *payload, size_t len)
{
	uint8_t mask[4];
	uint64_t r = xorshift (&l->rng);
	size_t h;

	memcpy (mask, &r, 4);
	wbuf_reserve (l, len + 14);
	h = frame_header (l->wbuf, opcode, len, mask);
	memcpy (l->wbuf + h, payload, len);
	mask_bytes (l->wbuf + h, len, mask);
	return h + len;
}

static bool
send_frame (Loop *l, Conn *c, int opcode, const void *payload, size_t len)
{
	return conn_send (l, c, l->wbuf, frame_build (l, opcode, payload, len));
}

/* A close frame on the way out: best effort, errors do not count (the connection ends anyway). */
static void
send_close_now (Loop *l, Conn *c, const uint8_t *payload, size_t len)
{
	size_t n = frame_build (l, 0x8, payload, len);

	if (c->fd >= 0 && c->olen == 0 &&
	    send (c->fd, l->wbuf, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* ignored */
	}
}

/* ---- handshake ----------------------------------------------------------------------------- */

/* An HS256 JWT {"user_id": uid, "exp": now + 3600} into out (NUL-terminated); returns its length.
 */
static size_t
mint_token (Loop *l, uint64_t uid, char *out)
{
	char payload[96];
	int plen = snprintf (payload,
			     sizeof payload,
			     "{\"user_id\":%" PRIu64 ",\"exp\":%" PRId64 "}",
			     uid,
			     (int64_t) time (NULL) + 3600);
	size_t o = strlen (jwt_header);
	GHmac *h = g_hmac_copy (l->hmac);
	guint8 digest[32];
	gsize dlen = sizeof digest;

	memcpy (out, jwt_header, o);
	out[o++] = '.';
	o += b64 (out + o, (const uint8_t *) payload, (size_t) plen, B64_URL, false);
	g_hmac_update (h, (const guchar *) out, (gssize) o);
	g_hmac_get_digest (h, digest, &dlen);
	g_hmac_unref (h);
	out[o++] = '.';
	o += b64 (out + o, digest, dlen, B64_URL, false);
	return o;
}

static void
send_handshake (Loop *l, Conn *c)
{
	char token[400], req[1200];
	uint8_t nonce[16];
	uint64_t r1 = xorshift (&l->rng), r2 = xorshift (&l->rng);
	int n;

	memcpy (nonce, &r1, 8);
	memcpy (nonce + 8, &r2, 8);
	b64 (c->key, nonce, 16, B64_STD, true);
	mint_token (l, c->uid, token);
	if (opt.token_in_query)
		n = snprintf (
		    req,
		    sizeof req,
		    "GET %s%caccess_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n",
		    opt.path,
		    strchr (opt.path, '?') ? '&' : '?',
		    token,
		    host_header,
		    c->key);
	else
		n = snprintf (req,
			      sizeof req,
			      "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			      "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
			      opt.path,
			      host_header,
			      c->key,
			      token);
	conn_set_state (c, CS_HANDSHAKE);
	ep_set (l, c, EPOLLIN, EPOLL_CTL_MOD);
	c->want_out = 0;
	conn_send (l, c, (const uint8_t *) req, (size_t) n);
}

static void
conn_start (Loop *l, Conn *c, int64_t now)
{
	int fd = socket (target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	c->t_start = now;
	if (fd < 0) {
		conn_fail_errno (l, c, errno, "socket");
		return;
	}
	c->fd = fd;
	setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (opt.source_ips > 1 && target.ss_family == AF_INET) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr = htonl (0x7f000001u + c->idx % (uint32_t) opt.source_ips);
		setsockopt (fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind (fd, (struct sockaddr *) &src, sizeof src) < 0) {
			conn_fail_errno (l, c, errno, "bind");
			return;
		}
	}
	c->infl_pos = l->ninfl;
	l->infl[l->ninfl++] = c;
	c->in_flight = 1;
	if (connect (fd, (struct sockaddr *) &target, target_len) == 0) {
		ep_set (l, c, EPOLLIN, EPOLL_CTL_ADD);
		send_handshake (l, c);
	} else if (errno == EINPROGRESS) {
		conn_set_state (c, CS_CONNECTING);
		ep_set (l, c, EPOLLOUT, EPOLL_CTL_ADD);
	} else {
		conn_fail_errno (l, c, errno, "connect");
	}
}

static void
send_joins (Loop *l, Conn *c);
static size_t
ws_parse (Loop *l, Conn *c, uint8_t *p, size_t len, int64_t now);

/* The Sec-WebSocket-Accept the server must send for key. */
static void
expected_accept (const char *key, char out[32])
{
	GChecksum *cs = g_checksum_new (G_CHECKSUM_SHA1);
	guint8 digest[20];
	gsize dlen = sizeof digest;

	g_checksum_update (cs, (const guchar *) key, -1);
	g_checksum_update (cs, (const guchar *) WS_GUID, -1);
	g_checksum_get_digest (cs, digest, &dlen);
	g_checksum_free (cs);
	b64 (out, digest, dlen, B64_STD, true);
}

/* The value of header name (lower case, with the colon) in the response head [buf, end), or NULL.
 */
static const char *
header_value (const uint8_t *buf, const uint8_t *end, const char *name)
{
	size_t nlen = strlen (name);

	for (const uint8_t *line = memmem (buf, (size_t) (end - buf), "\r\n", 2);
	     line && line + 2 < end;
	     line = memmem (line + 2, (size_t) (end - line), "\r\n", 2)) {
		const char *h = (const char *) line + 2;

		if (g_ascii_strncasecmp (h, name, nlen) == 0) {
			const char *v = h + nlen;

			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
	}
	return NULL;
}

static void
conn_handshake_read (Loop *l, Conn *c, int64_t now)
{
	uint8_t *end;
	ssize_t n;
	int status = 0;
	char want[32];
	const char *accept;
	bool eof = false;
	size_t head, rest;

	if (c->icap == 0) {
		c->icap = 2048;
		c->ibuf = g_malloc (c->icap);
	}
	if (c->ilen == c->icap) {
		if (c->icap >= HS_BUF_MAX) {
			conn_fail (l, c, S_FAIL_OTHER, "response headers too long");
			return;
		}
		c->icap *= 2;
		c->ibuf = g_realloc (c->ibuf, c->icap);
	}
	n = recv (c->fd, c->ibuf + c->ilen, c->icap - c->ilen, 0);
	if (n == 0) {
		eof = true;
	} else if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			conn_fail_errno (l, c, errno, "handshake read");
		return;
	} else {
		c->ilen += (uint32_t) n;
	}
	end = memmem (c->ibuf, c->ilen, "\r\n\r\n", 4);
	if (end == NULL) {
		if (eof)
			conn_fail (l, c, S_FAIL_EOF, "closed before the handshake response");
		return;
	}
	head = (size_t) (end - c->ibuf) + 4;
	if (c->ilen < 12 || memcmp (c->ibuf, "HTTP/1.", 7) != 0 ||
	    sscanf ((const char *) c->ibuf + 9, "%3d", &status) != 1) {
		conn_fail (l, c, S_FAIL_OTHER, "malformed handshake response");
		return;
	}
	if (status != 101) {
		char what[200];
		const char *body = (const char *) c->ibuf + head,
			   *clen = header_value (c->ibuf, end, "content-length:");
		int blen = (int) MIN (c->ilen - head, 120u);

		/* wait (within the buffer) for the body: it says why */
		if (!eof && clen && (size_t) atoi (clen) > c->ilen - head && c->ilen - head < 120)
			return;
		snprintf (what, sizeof what, "HTTP %d %.*s", status, blen, body);
		conn_fail (l,
			   c,
			   status == 401   ? S_FAIL_HTTP_401
			   : status == 503 ? S_FAIL_HTTP_503
					   : S_FAIL_HTTP,
			   what);
		return;
	}
	if (eof) {
		conn_fail (l, c, S_FAIL_EOF, "closed right after the 101");
		return;
	}
	expected_accept (c->key, want);
	accept = header_value (c->ibuf, end, "sec-websocket-accept:");
	if (accept == NULL || strncmp (accept, want, strlen (want)) != 0) {
		conn_fail (l, c, S_FAIL_OTHER, "missing or wrong Sec-WebSocket-Accept");
		return;
	}
	infl_remove (l, c);
	conn_set_state (c, CS_OPEN);
	c->t_up = now;
	st_add (l, S_UP, 1);
	st_add (l, S_DONE, 1);
	st_max (l, S_LAST_UP_NS, (uint64_t) now);
	if (l->cmd.hs_record)
		hist_add (&l->hs, (uint64_t) (now - c->t_start) / 1000);
	/* frames that came with the response stay in ibuf as a partial read */
	rest = c->ilen - head;
	memmove (c->ibuf, c->ibuf + head, rest);
	c->ilen = (uint32_t) rest;
	if (c->joining)
		send_joins (l, c);
	if (rest > 0 && conn_state (c) == CS_OPEN) {
		size_t used;

		memcpy (l->rbuf, c->ibuf, rest);
		used = ws_parse (l, c, l->rbuf, rest, now);
		if (conn_state (c) == CS_OPEN) {
			memmove (c->ibuf, l->rbuf + used, rest - used);
			c->ilen = (uint32_t) (rest - used);
		}
	}
	if (c->ilen == 0 && c->ibuf) {
		g_clear_pointer (&c->ibuf, g_free);
		c->icap = 0;
	}
}

static void
send_joins (Loop *l, Conn *c)
{
	char buf[64];
	int n;

	if (c->all_rooms) {
		for (int r = 1; r <= opt.rooms && conn_state (c) == CS_OPEN; r++) {
			n = snprintf (buf, sizeof buf, "{\"type\":\"join\",\"room_id\":%d}", r);
			send_frame (l, c, 1, buf, (size_t) n);
		}
	} else if (c->room > 0) {
		n = snprintf (buf, sizeof buf, "{\"type\":\"join\",\"room_id\":%u}", c->room);
		send_frame (l, c, 1, buf, (size_t) n);
	}
}

/* ---- receiving ----------------------------------------------------------------------------- */

/* Where the value of "key" starts (after the colon and blanks), or NULL. */
static const char *
json_value (const char *p, const char *end, const char *key, size_t klen)
{
	while (p < end) {
		const char *q = memchr (p, '"', (size_t) (end - p));

		if (q == NULL || (size_t) (end - q) < klen + 2)
			return NULL;
		if (memcmp (q + 1, key, klen) == 0 && q[klen + 1] == '"') {
			const char *v = q + klen + 2;

			while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
				v++;
			if (v < end && *v == ':') {
				v++;
				while (v < end &&
				       (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
					v++;
				return v;
			}
			p = q + klen + 2;
		} else {
			p = q + 1;
		}
	}
	return NULL;
}

/* An integer, or a float such as 1.7e18 (a server that re-encodes numbers as doubles); 0 if none.
 */
static int64_t
json_int (const char *v, const char *end)
{
	int64_t x = 0;
	const char *p = v;
	bool neg = false;

	if (v == NULL || v >= end)
		return 0;
	if (*p == '-') {
		neg = true;
		p++;
	}
	while (p < end && *p >= '0' && *p <= '9') {
		x = x * 10 + (*p - '0');
		p++;
	}
	if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
		char tmp[40];
		size_t n = MIN ((size_t) (end - v), sizeof tmp - 1);

		memcpy (tmp, v, n);
		tmp[n] = '\0';
		return (int64_t) g_ascii_strtod (tmp, NULL);
	}
	return neg ? -x : x;
}

static void
on_line (Loop *l, Conn *c, const char *s, size_t n, int64_t now)
{
	const char *end = s + n, *v, *q;
	size_t tl;

	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	if (s == end)
		return;
	v = json_value (s, end, "type", 4);
	if (v == NULL || *v != '"' || (q = memchr (v + 1, '"', (size_t) (end - v - 1))) == NULL) {
		st_add (l, S_BAD_FRAMES, 1);
		return;
	}
	v++;
	tl = (size_t) (q - v);
	if (tl == 7 && memcmp (v, "message", 7) == 0) {
		const char *d = json_value (q, end, "data", 4);
		int64_t t = 0;

		if (d != NULL && *d == '{')
			t = json_int (json_value (d, end, "t", 1), end);
		if (t <= 0) {
			st_add (l, S_NO_T, 1);
			return;
		}
		if (l->cmd.rec_step < 0) {
			st_add (l, S_LATE, 1);
		} else if (t < l->cmd.rec_start) {
			st_add (l, S_STALE, 1);
		} else {
			hist_add (&l->lat, now > t ? (uint64_t) (now - t) / 1000 : 0);
			l->s[S_DELIVERED]++;
			l->s[S_LAST_RECV_NS] = (uint64_t) now;
		}
	} else if (tl == 4 && memcmp (v, "join", 4) == 0) {
		if (c->joins_got < c->joins_needed &&
		    (uint64_t) json_int (json_value (q, end, "from", 4), end) == c->uid) {
			if (++c->joins_got == c->joins_needed) {
				st_add (l, S_JOINED, 1);
				st_max (l, S_LAST_JOIN_NS, (uint64_t) now);
				if (l->cmd.hs_record)
					hist_add (&l->join, (uint64_t) (now - c->t_up) / 1000);
			}
		} else {
			st_add (l, S_OTHER_FRAMES, 1);
		}
	} else if (tl == 5 && memcmp (v, "error", 5) == 0) {
		st_add (l, S_ERROR_FRAMES, 1);
		if (!atomic_load_explicit (&l->has_errframe, memory_order_relaxed)) {
			snprintf (l->first_errframe,
				  sizeof l->first_errframe,
				  "%.*s",
				  (int) MIN (n, 110u),
				  s);
			atomic_store_explicit (&l->has_errframe, 1, memory_order_release);
		}
	} else {
		st_add (l, S_OTHER_FRAMES, 1);
	}
}

/* One text message: one JSON object, or several joined by '\n' (gorilla-style batching). */
static void
on_text (Loop *l, Conn *c, const uint8_t *p, size_t n, int64_t now)
{
	const char *s = (const char *) p, *end = s + n;

	while (s < end) {
		const char *nl = memchr (s, '\n', (size_t) (end - s));
		const char *e = nl ? nl : end;

		on_line (l, c, s, (size_t) (e - s), now);
		s = nl ? nl + 1 : end;
	}
}

static void
frag_append (Conn *c, const uint8_t *p, size_t n)
{
	if (c->flen + n > c->fcap) {
		uint32_t cap = c->fcap ? c->fcap : 4096;

		while (cap < c->flen + n)
			cap *= 2;
		c->fbuf = g_realloc (c->fbuf, cap);
		c->fcap = cap;
	}
	memcpy (c->fbuf + c->flen, p, n);
	c->flen += (uint32_t) n;
}

static void
on_frame (Loop *l, Conn *c, bool fin, int op, uint8_t *p, size_t n, int64_t now)
{
	switch (op) {
	case 0x1:
	case 0x2:
		if (c->frag_op) {
			st_add (l, S_BAD_FRAMES, 1); /* a new message inside a fragmented one */
			c->frag_op = 0;
			c->flen = 0;
		}
		if (fin) {
			if (op == 0x1)
				on_text (l, c, p, n, now);
			else
				st_add (l, S_OTHER_FRAMES, 1);
		} else {
			c->frag_op = (uint8_t) op;
			frag_append (c, p, n);
		}
		break;
	case 0x0:
		if (!c->frag_op) {
			st_add (l, S_BAD_FRAMES, 1);
			break;
		}
		frag_append (c, p, n);
		if (fin) {
			if (c->frag_op == 0x1)
				on_text (l, c, c->fbuf, c->flen, now);
			else
				st_add (l, S_OTHER_FRAMES, 1);
			c->frag_op = 0;
			c->flen = 0;
			if (c->fcap > 65536) {
				g_clear_pointer (&c->fbuf, g_free);
				c->fcap = 0;
			}
		}
		break;
	case 0x8: {
		unsigned code = n >= 2 ? (unsigned) p[0] << 8 | p[1] : 1005;
		uint8_t reply[2] = {(uint8_t) (code >> 8), (uint8_t) code};

		st_add (l, S_SERVER_CLOSES, 1);
		st_add (l,
			code >= 1000 && code <= 1015 ? S_CLOSE_FIRST + (int) (code - 1000)
						     : S_CLOSE_OTHER,
			1);
		if (!l->cmd.quit)
			set_first_err (l,
				       "connection %u (user %" PRIu64
				       ") closed by the server: %u %.*s",
				       c->idx,
				       c->uid,
				       code,
				       (int) (n > 2 ? MIN (n - 2, 100u) : 0),
				       n > 2 ? (const char *) p + 2 : "");
		send_close_now (l, c, reply, code == 1005 ? 0 : 2);
		conn_release (l, c, CS_CLOSED);
		break;
	}
	case 0x9:
		st_add (l, S_PINGS, 1);
		send_frame (l, c, 0xA, p, n);
		break;
	case 0xA:
		break;
	default:
		st_add (l, S_BAD_FRAMES, 1);
		break;
	}
}

/* Parses whole frames in p[0..len); returns the bytes consumed (the rest is a partial frame). */
static size_t
ws_parse (Loop *l, Conn *c, uint8_t *p, size_t len, int64_t now)
{
	size_t off = 0;

	while (len - off >= 2) {
		uint8_t b0 = p[off], b1 = p[off + 1];
		uint64_t plen = b1 & 0x7f;
		size_t hdr = 2;

		if (plen == 126) {
			if (len - off < 4)
				break;
			plen = (uint64_t) p[off + 2] << 8 | p[off + 3];
			hdr = 4;
		} else if (plen == 127) {
			if (len - off < 10)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | p[off + 2 + i];
			hdr = 10;
		}
		if (b1 & 0x80)
			hdr += 4;
		if (plen > MAX_FRAME || (b0 & 0x70) != 0) {
			st_add (l, S_BAD_FRAMES, 1);
			conn_lost (l,
				   c,
				   plen > MAX_FRAME ? "frame too large" : "reserved bits set");
			return len;
		}
		if (len - off < hdr + plen)
			break;
		if (b1 & 0x80) { /* servers must not mask; unmask anyway, count it */
			st_add (l, S_BAD_FRAMES, 1);
			mask_bytes (p + off + hdr, plen, p + off + hdr - 4);
		}
		on_frame (l, c, (b0 & 0x80) != 0, b0 & 0x0f, p + off + hdr, plen, now);
		off += hdr + plen;
		if (conn_state (c) != CS_OPEN)
			return len;
	}
	return off;
}

/* The total size of the frame starting at p (header included), or 0 if its header is incomplete. */
static uint64_t
frame_total (const uint8_t *p, size_t len)
{
	uint64_t plen;
	size_t hdr = 2;

	if (len < 2)
		return 0;
	plen = p[1] & 0x7f;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = (uint64_t) p[2] << 8 | p[3];
		hdr = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | p[2 + i];
		hdr = 10;
	}
	if (p[1] & 0x80)
		hdr += 4;
	return hdr + plen;
}

/* A large frame arriving in pieces is read straight into the connection's buffer up to its end,
 * so the bytes already there are not copied again on every read. */
static bool
conn_read_large (Loop *l, Conn *c)
{
	uint64_t need = frame_total (c->ibuf, c->ilen);
	ssize_t n;
	size_t used;

	if (need < 65536 || need > MAX_FRAME + 14 || need <= c->ilen)
		return false;
	if (c->icap < need) {
		c->icap = (uint32_t) need;
		c->ibuf = g_realloc (c->ibuf, c->icap);
	}
	n = recv (c->fd, c->ibuf + c->ilen, need - c->ilen, 0);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		conn_lost (l,
			   c,
			   n == 0 ? "closed by the server without a close frame"
				  : g_strerror (errno));
		return true;
	}
	c->ilen += (uint32_t) n;
	if (c->ilen < need)
		return true;
	used = ws_parse (l, c, c->ibuf, c->ilen, mono_ns ());
	if (conn_state (c) == CS_OPEN) {
		memmove (c->ibuf, c->ibuf + used, c->ilen - used);
		c->ilen -= (uint32_t) used;
	}
	return true;
}

static void
conn_read (Loop *l, Conn *c)
{
	size_t have = c->ilen, used, left;
	ssize_t n;
	int64_t now;

	if (have > 0 && conn_read_large (l, c))
		return;
	if (have + 65536 > l->rcap) { /* a large partial frame: make room to complete it */
		l->rcap = MAX (l->rcap * 2, have + 65536);
		l->rbuf = g_realloc (l->rbuf, l->rcap);
	}
	if (have)
		memcpy (l->rbuf, c->ibuf, have);
	n = recv (c->fd, l->rbuf + have, l->rcap - have, 0);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_lost (l,
			   c,
			   n == 0 ? "closed by the server without a close frame"
				  : g_strerror (errno));
		return;
	}
	now = mono_ns ();
	used = ws_parse (l, c, l->rbuf, have + (size_t) n, now);
	if (conn_state (c) != CS_OPEN)
		return;
	left = have + (size_t) n - used;
	if (left > c->icap) {
		c->icap = (uint32_t) MAX (left, 256u);
		g_free (c->ibuf);
		c->ibuf = g_malloc (c->icap);
	}
	if (left)
		memcpy (c->ibuf, l->rbuf + used, left);
	c->ilen = (uint32_t) left;
}

static void
conn_event (Loop *l, Conn *c, uint32_t ev, int64_t now)
{
	switch (conn_state (c)) {
	case CS_CONNECTING: {
		int err = 0;
		socklen_t elen = sizeof err;

		if (getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err != 0) {
			conn_fail_errno (l, c, err, "connect");
			return;
		}
		send_handshake (l, c);
		break;
	}
	case CS_HANDSHAKE:
		if (ev & EPOLLOUT)
			conn_flush (l, c);
		if (conn_state (c) == CS_HANDSHAKE && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			conn_handshake_read (l, c, now);
		break;
	case CS_OPEN:
		if (ev & EPOLLOUT)
			conn_flush (l, c);
		if (conn_state (c) == CS_OPEN && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			conn_read (l, c);
		break;
	default:
		break;
	}
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

static void
publish_one (Loop *l, Conn *c)
{
	uint8_t mask[4];
	uint64_t r = xorshift (&l->rng);
	uint8_t *p, *start;
	uint32_t room = 0;
	size_t h, len;
	int64_t t;

	if (opt.rooms > 0) {
		room = 1 + (uint32_t) ((c->seq * (uint64_t) opt.publishers + c->idx) %
				       (uint64_t) opt.rooms);
		l->sent_room[room]++;
	}
	c->seq++;
	memcpy (mask, &r, 4);
	wbuf_reserve (l, l->msg_tail_len + 128);
	start = p = l->wbuf + 14; /* room for the largest header in front */
	memcpy (p, "{\"type\":\"message\",", 18);
	p += 18;
	if (room) {
		memcpy (p, "\"room_id\":", 10);
		p = (uint8_t *) put_u64 ((char *) p + 10, room);
		*p++ = ',';
	}
	memcpy (p, l->msg_tail, l->msg_tail_len);
	p += l->msg_tail_len;
	t = mono_ns ();
	p = (uint8_t *) put_u64 ((char *) p, (uint64_t) t);
	*p++ = '}';
	*p++ = '}';
	len = (size_t) (p - start);
	{
		uint8_t hdr[14];

		h = frame_header (hdr, 0x1, len, mask);
		memcpy (start - h, hdr, h);
	}
	mask_bytes (start, len, mask);
	if (conn_send (l, c, start - h, h + len))
		st_add (l, S_SENT, 1);
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

		while (conn_state (c) == CS_OPEN && now < l->cmd.pub_end) {
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

/* ---- the loop ------------------------------------------------------------------------------ */

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
		l->pub_active = true;
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
static bool
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

static uint64_t
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

typedef struct {
	uint64_t v[S_COUNT];
} Snap;

static void
snap (Snap *s)
{
	for (int k = 0; k < S_COUNT; k++)
		s->v[k] = total (k);
}

static inline uint64_t
diff (const Snap *a, const Snap *b, int k)
{
	return b->v[k] - a->v[k];
}

/* Sleeps until t or the deadline; returns false (and marks the run aborted) at the deadline. */
static bool
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

static int64_t
s_to_ns (double s)
{
	return (int64_t) (s * 1e9);
}

/* Budget for opening n connections at rate/s, as the Go loadgen allows: 15 s + twice the ramp. */
static double
connect_budget (uint32_t n, double rate)
{
	return 15 + (rate > 0 ? 2.0 * n / rate : n / 1000.0);
}

/* Opens the connections [lo, hi) from t0 at rate/s with at most inflight handshakes at a time. */
static void
cmd_open (uint32_t lo, uint32_t hi, int64_t t0, double rate, int inflight)
{
	uint32_t share[MAX_LOOPS + 1] = {0};

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
static bool
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

/* ---- /proc readings ------------------------------------------------------------------------ */

static long
proc_rss_kib (int pid)
{
	char path[64], *text = NULL, *p;
	long v = -1;

	if (pid <= 0)
		return -1;
	snprintf (path, sizeof path, "/proc/%d/status", pid);
	if (!g_file_get_contents (path, &text, NULL, NULL))
		return -1;
	if ((p = strstr (text, "\nVmRSS:")) != NULL)
		v = strtol (p + 7, NULL, 10);
	g_free (text);
	return v;
}

/* utime + stime of pid in seconds, -1 if unreadable. */
static double
proc_cpu_s (int pid)
{
	char path[64], *text = NULL, *p;
	double v = -1;
	unsigned long ut, st;

	if (pid <= 0)
		return -1;
	snprintf (path, sizeof path, "/proc/%d/stat", pid);
	if (!g_file_get_contents (path, &text, NULL, NULL))
		return -1;
	p = strrchr (text, ')');
	if (p &&
	    sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
		v = (double) (ut + st) / (double) sysconf (_SC_CLK_TCK);
	g_free (text);
	return v;
}

static double
self_cpu_s (void)
{
	struct rusage ru;

	getrusage (RUSAGE_SELF, &ru);
	return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The machine's aggregate CPU ticks: user nice system idle iowait irq softirq steal. */
typedef struct {
	double t[8];
	int64_t at;
} MachTicks;

static void
mach_ticks (MachTicks *m)
{
	char *text = NULL;

	memset (m, 0, sizeof *m);
	m->at = mono_ns ();
	if (!g_file_get_contents ("/proc/stat", &text, NULL, NULL))
		return;
	sscanf (text,
		"cpu %lf %lf %lf %lf %lf %lf %lf %lf",
		&m->t[0],
		&m->t[1],
		&m->t[2],
		&m->t[3],
		&m->t[4],
		&m->t[5],
		&m->t[6],
		&m->t[7]);
	g_free (text);
}

/* CPU use over a window, each in % of one core. */
typedef struct {
	double server, bench, softirq, idle, other, server_s, bench_s;
} CpuUse;

typedef struct {
	double srv, self;
	MachTicks mach;
} CpuMark;

static void
cpu_mark (CpuMark *m)
{
	m->srv = proc_cpu_s (opt.pid);
	m->self = self_cpu_s ();
	mach_ticks (&m->mach);
}

static CpuUse
cpu_use (const CpuMark *a, const CpuMark *b)
{
	CpuUse u = {0};
	double el = (double) (b->mach.at - a->mach.at) / 1e9, hz = (double) sysconf (_SC_CLK_TCK),
	       d[8], busy;

	if (el <= 0)
		return u;
	for (int i = 0; i < 8; i++)
		d[i] = (b->mach.t[i] - a->mach.t[i]) / hz / el * 100;
	busy = d[0] + d[1] + d[2] + d[5] + d[6];
	u.server_s = a->srv >= 0 && b->srv >= 0 ? b->srv - a->srv : -1;
	u.server = u.server_s >= 0 ? u.server_s / el * 100 : -1;
	u.bench_s = b->self - a->self;
	u.bench = u.bench_s / el * 100;
	u.softirq = d[6];
	u.idle = d[3] + d[4];
	u.other = MAX (0, busy - MAX (u.server, 0) - u.bench);
	return u;
}

/* ---- output -------------------------------------------------------------------------------- */

static FILE *table_out; /* stdout, or stderr with --json */

static void
j_key (GString *s, const char *k)
{
	if (s->len > 1)
		g_string_append_c (s, ',');
	g_string_append_printf (s, "\"%s\":", k);
}

static void
j_int (GString *s, const char *k, int64_t v)
{
	j_key (s, k);
	g_string_append_printf (s, "%" PRId64, v);
}

static void
j_num (GString *s, const char *k, double v)
{
	j_key (s, k);
	if (isfinite (v))
		g_string_append_printf (s, "%.3f", v);
	else
		g_string_append (s, "null");
}

static void
j_null (GString *s, const char *k)
{
	j_key (s, k);
	g_string_append (s, "null");
}

static void
j_bool (GString *s, const char *k, bool v)
{
	j_key (s, k);
	g_string_append (s, v ? "true" : "false");
}

static void
j_str (GString *s, const char *k, const char *v)
{
	j_key (s, k);
	g_string_append_c (s, '"');
	for (const unsigned char *p = (const unsigned char *) v; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf (s, "\\%c", *p);
		else if (*p < 0x20)
			g_string_append_printf (s, "\\u%04x", *p);
		else
			g_string_append_c (s, (char) *p);
	}
	g_string_append_c (s, '"');
}

static void
j_emit (GString *s)
{
	g_string_append (s, "}\n");
	if (opt.json) {
		fputs (s->str, stdout);
		fflush (stdout);
	}
	g_string_free (s, TRUE);
}

static GString *
j_begin (const char *step_mode)
{
	GString *s = g_string_new ("{");

	j_str (s, "mode", step_mode);
	return s;
}

static const char *
first_error (void)
{
	for (int i = 0; i < nloops; i++)
		if (atomic_load_explicit (&loops[i]->has_first_err, memory_order_acquire))
			return loops[i]->first_err;
	return NULL;
}

static const char *
first_error_frame (void)
{
	for (int i = 0; i < nloops; i++)
		if (atomic_load_explicit (&loops[i]->has_errframe, memory_order_acquire))
			return loops[i]->first_errframe;
	return NULL;
}

/* "1008×3 1000×1" for the close frames counted between a and b; "-" if none. */
static char *
closes_text (const Snap *a, const Snap *b)
{
	GString *s = g_string_new (NULL);

	for (int i = 0; i <= 16; i++) {
		uint64_t v = diff (a, b, S_CLOSE_FIRST + i);

		if (v == 0)
			continue;
		if (s->len)
			g_string_append_c (s, ' ');
		if (i < 16)
			g_string_append_printf (s, "%d×%" PRIu64, 1000 + i, v);
		else
			g_string_append_printf (s, "other×%" PRIu64, v);
	}
	if (s->len == 0)
		g_string_append_c (s, '-');
	return g_string_free (s, FALSE);
}

static void
j_closes (GString *s, const Snap *a, const Snap *b)
{
	j_key (s, "closes");
	g_string_append_c (s, '{');
	for (int i = 0, first = 1; i <= 16; i++) {
		uint64_t v = diff (a, b, S_CLOSE_FIRST + i);

		if (v == 0)
			continue;
		if (i < 16)
			g_string_append_printf (s,
						"%s\"%d\":%" PRIu64,
						first ? "" : ",",
						1000 + i,
						v);
		else
			g_string_append_printf (s, "%s\"other\":%" PRIu64, first ? "" : ",", v);
		first = 0;
	}
	g_string_append_c (s, '}');
}

static uint64_t
dial_errors (const Snap *a, const Snap *b)
{
	uint64_t v = 0;

	for (int k = S_FAIL_REFUSED; k <= S_FAIL_OTHER; k++)
		v += diff (a, b, k);
	return v;
}

static void
j_failures (GString *s, const Snap *a, const Snap *b)
{
	j_int (s, "failed", (int64_t) dial_errors (a, b));
	j_int (s, "refused", (int64_t) diff (a, b, S_FAIL_REFUSED));
	j_int (s, "reset", (int64_t) diff (a, b, S_FAIL_RESET));
	j_int (s, "eof", (int64_t) diff (a, b, S_FAIL_EOF));
	j_int (s, "timeout", (int64_t) diff (a, b, S_FAIL_TIMEOUT));
	j_int (s, "http_401", (int64_t) diff (a, b, S_FAIL_HTTP_401));
	j_int (s, "http_503", (int64_t) diff (a, b, S_FAIL_HTTP_503));
	j_int (s, "http_other", (int64_t) diff (a, b, S_FAIL_HTTP));
	j_int (s, "other_failures", (int64_t) diff (a, b, S_FAIL_OTHER));
}

static char *
failures_text (const Snap *a, const Snap *b)
{
	static const struct {
		int k;
		const char *name;
	} kinds[] = {
	    {S_FAIL_REFUSED, "refused"},
	    {S_FAIL_RESET, "reset"},
	    {S_FAIL_EOF, "eof"},
	    {S_FAIL_TIMEOUT, "timeout"},
	    {S_FAIL_HTTP_401, "401"},
	    {S_FAIL_HTTP_503, "503"},
	    {S_FAIL_HTTP, "http"},
	    {S_FAIL_OTHER, "other"},
	};
	GString *s = g_string_new (NULL);

	bool first = true;

	g_string_append_printf (s, "%" PRIu64, dial_errors (a, b));
	for (size_t i = 0; i < G_N_ELEMENTS (kinds); i++) {
		uint64_t v = diff (a, b, kinds[i].k);

		if (v) {
			g_string_append_printf (s,
						"%s%s×%" PRIu64,
						first ? " (" : ", ",
						kinds[i].name,
						v);
			first = false;
		}
	}
	if (!first)
		g_string_append_c (s, ')');
	return g_string_free (s, FALSE);
}

static void
j_common (GString *s)
{
	char url[200];

	snprintf (url, sizeof url, "ws://%s%s", host_header, opt.path);
	j_str (s, "url", url);
	if (opt.pid > 0)
		j_int (s, "server_pid", opt.pid);
	j_bool (s, "aborted", aborted);
}

static void
j_cpu (GString *s, const CpuUse *u)
{
	if (opt.pid > 0) {
		j_num (s, "server_cpu_s", u->server_s);
		j_num (s, "server_cpu_pct", u->server);
	}
	j_num (s, "bench_cpu_s", u->bench_s);
	j_num (s, "bench_cpu_pct", u->bench);
	j_num (s, "machine_softirq_pct", u->softirq);
	j_num (s, "machine_idle_pct", u->idle);
	j_num (s, "machine_other_pct", u->other);
}

static Hist *
merged_hist (size_t offset)
{
	Hist *h = g_new0 (Hist, 1);

	for (int i = 0; i < nloops; i++)
		hist_merge (h, (const Hist *) ((const char *) loops[i] + offset));
	return h;
}

/* printf-ready text for v with prec decimals, "-" when v is not a number (a ring of buffers) */
static const char *
num (double v, int prec)
{
	static char ring[16][32];
	static unsigned next;
	char *b = ring[next++ % G_N_ELEMENTS (ring)];

	if (!isfinite (v))
		return "-";
	snprintf (b, sizeof ring[0], "%.*f", prec, v);
	return b;
}

static double
ms (double us)
{
	return us / 1000.0;
}

/* ---- setup --------------------------------------------------------------------------------- */

/* Creates the connection table and hands connections to loops: publishers (the first
 * `publishers`) to their own loop in fan-out mode, the rest round-robin over --threads loops. */
static void
setup_conns (uint32_t total_n, uint32_t pubs)
{
	int recv_loops = opt.threads;

	nconns_total = total_n;
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
	for (uint32_t i = 0; i < total_n; i++) {
		Conn *c = &conns[i];
		Loop *l;

		c->fd = -1;
		c->idx = i;
		c->uid = (uint64_t) opt.uid_base + i;
		if (i < pubs) {
			l = pub_loop;
			l->pubs[l->npubs++] = c;
		} else {
			l = loops[(pubs > 0 ? 1 : 0) + (int) ((i - pubs) % (uint32_t) recv_loops)];
		}
		l->conns[l->nconns++] = c;
	}
}

static void
start_loops (void)
{
	for (int i = 0; i < nloops; i++) {
		char name[32];

		snprintf (name, sizeof name, "bench-loop-%d", i);
		loops[i]->thread = g_thread_new (name, loop_main, loops[i]);
	}
}

static void
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
static void
plan_joins (Conn *c, bool join, bool publisher)
{
	c->joining = join && opt.rooms > 0;
	if (!c->joining)
		return;
	if (publisher) {
		c->all_rooms = 1;
		c->joins_needed = (uint32_t) opt.rooms;
	} else {
		c->room = 1 + c->idx % (uint32_t) opt.rooms;
		c->joins_needed = 1;
	}
}

/* Fan-out settle, as the Go loadgen does it: wait for every live connection's own join echo
 * (then 200 ms more for the others' join relays to land), or, if no echo at all comes within
 * --settle, assume a server that does not echo joins; at most --settle-max. */
static void
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

/* ---- idle ---------------------------------------------------------------------------------- */

static int
run_idle (void)
{
	uint32_t n = (uint32_t) opt.n;
	double rate = opt.rate;
	Snap a, b, c2;
	CpuMark m0, m1;
	CpuUse u;
	long rss0, rss_with = -1, rss_end;
	int64_t t0, up_at, hold_end;
	uint64_t up, live;
	double connect_s = NAN;
	GString *j;
	Hist *hs;
	char *fails, *closes;

	setup_conns (n, 0);
	for (uint32_t i = 0; i < n; i++)
		plan_joins (&conns[i], opt.join, false);
	start_loops ();
	snap (&a);
	rss0 = proc_rss_kib (opt.pid);
	cpu_mark (&m0);
	note ("idle: opening %u connections at %g/s to ws://%s%s", n, rate, host_header, opt.path);
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (0, n, t0, rate, opt.inflight);
	G.cmd.hs_record = true;
	post ();
	wait_done (a.v[S_DONE], n, t0 + s_to_ns (connect_budget (n, rate)));
	if (opt.join)
		settle_joins (a.v[S_JOINED], total (S_UP) - a.v[S_UP]);
	G.cmd.hs_record = false;
	post ();
	cpu_mark (&m1);
	snap (&b);
	up = diff (&a, &b, S_UP);
	if (up > 0 && b.v[S_LAST_UP_NS] >= (uint64_t) t0)
		connect_s = (double) ((int64_t) b.v[S_LAST_UP_NS] - t0) / 1e9;
	up_at = mono_ns ();
	hold_end = up_at + s_to_ns (opt.duration);
	note ("idle: %" PRIu64 "/%u up; holding them for %g s", up, n, opt.duration);
	/* RSS with the connections: 2 s after they are up (as run-compare.sh), or at the end if
	 * sooner */
	sleep_until (MIN (up_at + 2 * NS_PER_S, hold_end));
	rss_with = proc_rss_kib (opt.pid);
	sleep_until (hold_end);
	rss_end = proc_rss_kib (opt.pid);
	snap (&c2);
	live = 0;
	for (uint32_t i = 0; i < n; i++)
		live += conn_state (&conns[i]) == CS_OPEN;
	u = cpu_use (&m0, &m1);
	hs = merged_hist (G_STRUCT_OFFSET (Loop, hs));
	fails = failures_text (&a, &b);
	closes = closes_text (&b, &c2);

	fprintf (table_out,
		 "\n| connections | up | failed | connect s | handshake p50/p99/max ms | open at "
		 "end | lost | closes | RSS before KiB | RSS with KiB | KiB/conn | server CPU s "
		 "(connect) |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u | %" PRIu64 " | %s | %s | %.1f/%.1f/%.1f | %" PRIu64 " | %" PRIu64
		 " | %s | ",
		 n,
		 up,
		 fails,
		 num (connect_s, 2),
		 ms (hist_quantile (hs, 0.5)),
		 ms (hist_quantile (hs, 0.99)),
		 ms ((double) hs->max),
		 live,
		 diff (&b, &c2, S_LOST),
		 closes);
	if (opt.pid > 0 && rss0 >= 0 && rss_with >= 0)
		fprintf (table_out,
			 "%ld | %ld | %.2f | %.2f |\n",
			 rss0,
			 rss_with,
			 up ? (double) (rss_with - rss0) / (double) up : 0.0,
			 u.server_s);
	else
		fprintf (table_out, "- | - | - | - |\n");
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());

	j = j_begin ("idle");
	j_common (j);
	j_int (j, "n", n);
	j_num (j, "rate", rate);
	j_int (j, "connected", (int64_t) up);
	j_num (j, "connect_seconds", connect_s);
	j_failures (j, &a, &b);
	j_num (j, "handshake_p50_ms", ms (hist_quantile (hs, 0.5)));
	j_num (j, "handshake_p99_ms", ms (hist_quantile (hs, 0.99)));
	j_num (j, "handshake_max_ms", ms ((double) hs->max));
	if (opt.join)
		j_int (j, "join_echoes", (int64_t) diff (&a, &b, S_JOINED));
	j_num (j, "duration_s", opt.duration);
	j_int (j, "open_at_end", (int64_t) live);
	j_int (j, "conns_lost", (int64_t) diff (&b, &c2, S_LOST));
	j_closes (j, &b, &c2);
	if (opt.pid > 0) {
		j_int (j, "rss_before_kib", rss0);
		j_int (j, "rss_with_kib", rss_with);
		j_int (j, "rss_end_kib", rss_end);
		if (up > 0 && rss0 >= 0 && rss_with >= 0)
			j_num (j, "kib_per_conn", (double) (rss_with - rss0) / (double) up);
		else
			j_null (j, "kib_per_conn");
	}
	j_cpu (j, &u);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	j_emit (j);
	g_free (hs);
	g_free (fails);
	g_free (closes);
	return up > 0 ? 0 : 1;
}

/* ---- fan-out ------------------------------------------------------------------------------- */

static int
run_fanout (void)
{
	uint32_t n = (uint32_t) opt.n, pubs = (uint32_t) opt.publishers;
	Snap a, b;
	int64_t t0;
	uint64_t up, live = 0;
	double connect_s = NAN;
	uint64_t *members;
	uint64_t *sent_room_before;
	bool failed = false;

	setup_conns (n, pubs);
	for (uint32_t i = 0; i < n; i++)
		plan_joins (&conns[i], true, i < pubs);
	start_loops ();
	snap (&a);
	note ("fanout: opening %u connections at %g/s to ws://%s%s (%d room%s, %u publisher%s)",
	      n,
	      opt.ramp,
	      host_header,
	      opt.path,
	      opt.rooms,
	      opt.rooms == 1 ? "" : "s",
	      pubs,
	      pubs == 1 ? "" : "s");
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (0, n, t0, opt.ramp, opt.inflight);
	G.cmd.hs_record = true;
	post ();
	wait_done (a.v[S_DONE], n, t0 + s_to_ns (connect_budget (n, opt.ramp)));
	up = total (S_UP) - a.v[S_UP];
	if (up > 0)
		connect_s = (double) ((int64_t) total (S_LAST_UP_NS) - t0) / 1e9;
	settle_joins (a.v[S_JOINED], up);
	G.cmd.hs_record = false;
	post ();
	snap (&b);
	note ("fanout: %" PRIu64 "/%u up in %s s, %" PRIu64 " join echoes",
	      up,
	      n,
	      num (connect_s, 2),
	      diff (&a, &b, S_JOINED));
	if (first_error ())
		note ("first error: %s", first_error ());

	fprintf (table_out,
		 "\nfanout: %u connections (%" PRIu64 " up in %s s, %" PRIu64 " failed, %" PRIu64
		 " join echoes), %d room%s, %u publisher%s, %d-byte content, %g s per step\n\n",
		 n,
		 up,
		 num (connect_s, 2),
		 dial_errors (&a, &b),
		 diff (&a, &b, S_JOINED),
		 opt.rooms,
		 opt.rooms == 1 ? "" : "s",
		 pubs,
		 pubs == 1 ? "" : "s",
		 opt.size,
		 opt.duration);
	fprintf (
	    table_out,
	    "| rate/s | sent/target | receivers | expected | delivered | ratio | deliveries/s | "
	    "p50 ms | p90 ms | p99 ms | max ms | errors | closes | srv CPU %% | bench CPU %% |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fflush (table_out);

	members = g_new0 (uint64_t, (size_t) opt.rooms + 1);
	sent_room_before = g_new0 (uint64_t, (size_t) opt.rooms + 1);
	for (int step = 0; step < nrates && !aborted; step++) {
		double rate = rates[step];
		Snap s0, s1;
		CpuMark m0, m1;
		CpuUse u;
		int64_t start, end, ds, last_change, window_end;
		uint64_t sent, expected = 0, delivered, last = UINT64_MAX, pubs_live = 0,
			       sent_target;
		uint64_t errors, late;
		double window, ratio, dps, quiet_s;
		Hist *h;
		GString *j;
		char *closes;

		/* receivers: the connections open now, by room (publishers are in every room) */
		live = 0;
		memset (members, 0, sizeof (uint64_t) * ((size_t) opt.rooms + 1));
		for (uint32_t i = 0; i < n; i++) {
			if (conn_state (&conns[i]) != CS_OPEN)
				continue;
			live++;
			if (i < pubs)
				pubs_live++;
			else if (opt.rooms > 0)
				members[conns[i].room]++;
		}
		if (pubs_live == 0) {
			fprintf (table_out,
				 "stopped before %g msg/s: no publisher is connected (%" PRIu64
				 " of %u connections open)\n",
				 rate,
				 live,
				 n);
			failed = true;
			break;
		}
		memcpy (sent_room_before,
			pub_loop->sent_room,
			sizeof (uint64_t) * ((size_t) opt.rooms + 1));
		snap (&s0);
		start = mono_ns () + 20 * NS_PER_MS;
		end = start + s_to_ns (opt.duration);
		G.cmd.rec_step = step;
		G.cmd.rec_start = start;
		G.cmd.pub_gen++;
		G.cmd.pub_start = start;
		G.cmd.pub_end = end;
		G.cmd.pub_rate_each = rate / (double) pubs;
		if (!post ())
			break;
		note ("fanout: step %d: %g msg/s for %g s", step + 1, rate, opt.duration);
		sleep_until (start);
		cpu_mark (&m0);
		sleep_until (end);
		while (atomic_load_explicit (&pub_loop->pub_done, memory_order_acquire) !=
			   G.cmd.pub_gen &&
		       sleep_until (mono_ns () + 5 * NS_PER_MS))
			;
		sent = total (S_SENT) - s0.v[S_SENT];
		if (opt.rooms > 0) {
			for (int r = 1; r <= opt.rooms; r++)
				expected += (pub_loop->sent_room[r] - sent_room_before[r]) *
					    (members[r] + pubs_live);
		} else {
			expected = sent * live;
		}
		/* drain: until everything arrived, deliveries stall for --stall, or --drain passes
		 */
		ds = last_change = mono_ns ();
		while (mono_ns () - ds < s_to_ns (opt.drain)) {
			uint64_t d = total (S_DELIVERED) - s0.v[S_DELIVERED];

			if (d >= expected)
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
		cpu_mark (&m1);
		G.cmd.rec_step = -1;
		post ();
		snap (&s1);
		window_end = mono_ns ();
		if (s1.v[S_LAST_RECV_NS] >= (uint64_t) start &&
		    (int64_t) s1.v[S_LAST_RECV_NS] < window_end)
			window_end = (int64_t) s1.v[S_LAST_RECV_NS];
		h = merged_hist (G_STRUCT_OFFSET (Loop, lat));
		delivered = diff (&s0, &s1, S_DELIVERED);
		window = (double) (window_end - start) / 1e9;
		ratio = expected ? (double) delivered / (double) expected : 0;
		dps = window > 0 ? (double) delivered / window : 0;
		sent_target = (uint64_t) (rate * opt.duration);
		/* Wait until the server stops delivering this step's messages (a saturated server
		 * keeps sending its backlog), so that the next step starts on a quiet connection
		 * set; what arrives now is late: counted as not delivered. */
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
			late = total (S_LATE) - s1.v[S_LATE];
			quiet_s = (double) (lc - qs) / 1e9;
		}
		errors = dial_errors (&s0, &s1) + diff (&s0, &s1, S_LOST) +
			 diff (&s0, &s1, S_SERVER_CLOSES) + diff (&s0, &s1, S_WRITE_ERRORS) +
			 diff (&s0, &s1, S_ERROR_FRAMES) + diff (&s0, &s1, S_BAD_FRAMES);
		u = cpu_use (&m0, &m1);
		closes = closes_text (&s0, &s1);

		fprintf (table_out,
			 "| %g | %" PRIu64 "/%" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
			 " | %.3f | %.0f | %.1f | %.1f | %.1f | %.1f | %" PRIu64 " | %s | ",
			 rate,
			 sent,
			 sent_target,
			 live,
			 expected,
			 delivered,
			 (double) (int64_t) (ratio * 1000) / 1000,
			 dps,
			 ms (hist_quantile (h, 0.5)),
			 ms (hist_quantile (h, 0.9)),
			 ms (hist_quantile (h, 0.99)),
			 ms ((double) h->max),
			 errors,
			 closes);
		if (opt.pid > 0)
			fprintf (table_out, "%.0f | %.0f |\n", u.server, u.bench);
		else
			fprintf (table_out, "- | %.0f |\n", u.bench);
		if (late || diff (&s0, &s1, S_STALE))
			fprintf (table_out,
				 "|   -> %" PRIu64 " more deliveries arrived within %.1f s after "
				 "the drain (not counted); %" PRIu64
				 " left over from an earlier step arrived during this one |\n",
				 late,
				 quiet_s,
				 diff (&s0, &s1, S_STALE));
		fflush (table_out);

		j = j_begin ("fanout");
		j_common (j);
		j_int (j, "step", step + 1);
		j_int (j, "n", n);
		j_int (j, "connected", (int64_t) up);
		j_num (j, "connect_seconds", connect_s);
		j_int (j, "join_echoes", (int64_t) diff (&a, &b, S_JOINED));
		j_int (j, "rooms", opt.rooms);
		j_int (j, "publishers", pubs);
		j_num (j, "rate", rate);
		j_num (j, "duration_s", opt.duration);
		j_int (j, "size", opt.size);
		j_int (j, "sent_target", (int64_t) sent_target);
		j_int (j, "sent", (int64_t) sent);
		j_int (j, "receivers", (int64_t) live);
		j_int (j, "expected", (int64_t) expected);
		j_int (j, "delivered", (int64_t) delivered);
		j_num (j, "delivery_ratio", (double) (int64_t) (ratio * 10000) / 10000);
		j_num (j, "window_s", window);
		j_num (j, "deliveries_per_sec", (double) (int64_t) dps);
		j_num (j, "p50_ms", ms (hist_quantile (h, 0.5)));
		j_num (j, "p90_ms", ms (hist_quantile (h, 0.9)));
		j_num (j, "p99_ms", ms (hist_quantile (h, 0.99)));
		j_num (j, "max_ms", ms ((double) h->max));
		j_num (j, "mean_ms", h->n ? ms ((double) h->sum / (double) h->n) : 0);
		j_int (j, "errors", (int64_t) errors);
		j_int (j, "dial_errors", (int64_t) dial_errors (&s0, &s1));
		j_int (j, "conns_lost", (int64_t) diff (&s0, &s1, S_LOST));
		j_int (j, "server_closes", (int64_t) diff (&s0, &s1, S_SERVER_CLOSES));
		j_closes (j, &s0, &s1);
		j_int (j, "write_errors", (int64_t) diff (&s0, &s1, S_WRITE_ERRORS));
		j_int (j, "error_frames", (int64_t) diff (&s0, &s1, S_ERROR_FRAMES));
		j_int (j, "bad_frames", (int64_t) diff (&s0, &s1, S_BAD_FRAMES));
		j_int (j, "other_frames", (int64_t) diff (&s0, &s1, S_OTHER_FRAMES));
		j_int (j, "messages_without_t", (int64_t) diff (&s0, &s1, S_NO_T));
		j_int (j, "stale", (int64_t) diff (&s0, &s1, S_STALE));
		j_int (j, "late_after_drain", (int64_t) late);
		j_num (j, "late_for_s", quiet_s);
		j_int (j, "server_pings", (int64_t) diff (&s0, &s1, S_PINGS));
		if (opt.pid > 0)
			j_int (j, "server_rss_kib", proc_rss_kib (opt.pid));
		j_cpu (j, &u);
		if (first_error ())
			j_str (j, "first_error", first_error ());
		if (first_error_frame ())
			j_str (j, "first_error_frame", first_error_frame ());
		j_emit (j);
		g_free (h);
		g_free (closes);
		if (step + 1 < nrates)
			sleep_until (mono_ns () + s_to_ns (opt.pause));
	}
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());
	if (first_error_frame ())
		fprintf (table_out, "first error frame: %s\n", first_error_frame ());
	g_free (members);
	g_free (sent_room_before);
	return failed ? 1 : 0;
}

/* ---- storm --------------------------------------------------------------------------------- */

static int
run_storm (void)
{
	uint32_t n = (uint32_t) opt.n, hold = (uint32_t) MAX (opt.hold, 0);
	double rate = opt.rate;
	Snap a, b, c2;
	CpuMark m0, m1;
	CpuUse u;
	int64_t t0;
	uint64_t hold_up = 0, up, joined = 0;
	double all_up_s = NAN, all_done_s = NAN, joined_s = NAN;
	bool no_echo = false;
	long rss0, rss1;
	Hist *hs, *hj;
	GString *j;
	char *fails, *closes;
	char how[40];

	setup_conns (hold + n, 0);
	for (uint32_t i = hold; i < hold + n; i++)
		plan_joins (&conns[i], opt.join, false);
	start_loops ();
	snap (&a);
	if (hold > 0) {
		note ("storm: opening %u idle connections at %g/s first", hold, opt.hold_rate);
		t0 = mono_ns () + 5 * NS_PER_MS;
		cmd_open (0, hold, t0, opt.hold_rate, 256);
		post ();
		wait_done (a.v[S_DONE], hold, t0 + s_to_ns (connect_budget (hold, opt.hold_rate)));
		hold_up = total (S_UP) - a.v[S_UP];
		note ("storm: %" PRIu64 "/%u idle connections up", hold_up, hold);
		sleep_until (mono_ns () + s_to_ns (opt.settle));
	}
	snap (&b);
	rss0 = proc_rss_kib (opt.pid);
	cpu_mark (&m0);
	if (rate > 0)
		snprintf (how, sizeof how, "at %g/s", rate);
	else
		snprintf (how, sizeof how, "at once");
	note ("storm: opening %u connections %s", n, how);
	t0 = mono_ns () + 5 * NS_PER_MS;
	cmd_open (hold, hold + n, t0, rate, opt.inflight > 0 ? opt.inflight : (int) n);
	G.cmd.hs_record = true;
	post ();
	wait_done (b.v[S_DONE], n, t0 + s_to_ns (connect_budget (n, rate)));
	all_done_s = (double) (mono_ns () - t0) / 1e9;
	up = total (S_UP) - b.v[S_UP];
	if (up > 0 && total (S_LAST_UP_NS) >= (uint64_t) t0)
		all_up_s = (double) ((int64_t) total (S_LAST_UP_NS) - t0) / 1e9;
	if (opt.join && opt.rooms > 0 && up > 0) {
		int64_t ts = mono_ns (), limit = t0 + s_to_ns (opt.join_timeout);

		for (;;) {
			joined = total (S_JOINED) - b.v[S_JOINED];
			if (joined >= up)
				break;
			if (joined == 0 && mono_ns () - ts >= s_to_ns (opt.settle)) {
				no_echo = true;
				break;
			}
			if (mono_ns () >= limit || !sleep_until (mono_ns () + 2 * NS_PER_MS))
				break;
		}
		if (joined > 0)
			joined_s = (double) ((int64_t) total (S_LAST_JOIN_NS) - t0) / 1e9;
	}
	cpu_mark (&m1);
	G.cmd.hs_record = false;
	post ();
	snap (&c2);
	rss1 = proc_rss_kib (opt.pid);
	u = cpu_use (&m0, &m1);
	hs = merged_hist (G_STRUCT_OFFSET (Loop, hs));
	hj = merged_hist (G_STRUCT_OFFSET (Loop, join));
	fails = failures_text (&b, &c2);
	closes = closes_text (&b, &c2);

	fprintf (table_out,
		 "\n| storm | hold (up) | up | failed | all up s | all done s | handshake "
		 "p50/p99/max ms | joined | all joined s | join p99 ms | lost | closes | server "
		 "CPU s | RSS before/after KiB |\n");
	fprintf (table_out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf (table_out,
		 "| %u %s | %u (%" PRIu64 ") | %" PRIu64 " | %s | %s | %s | %.1f/%.1f/%.1f | ",
		 n,
		 how,
		 hold,
		 hold_up,
		 up,
		 fails,
		 num (all_up_s, 2),
		 num (all_done_s, 2),
		 ms (hist_quantile (hs, 0.5)),
		 ms (hist_quantile (hs, 0.99)),
		 ms ((double) hs->max));
	if (!opt.join)
		fprintf (table_out, "- | - | - | ");
	else if (no_echo)
		fprintf (table_out, "no echo | - | - | ");
	else
		fprintf (table_out,
			 "%" PRIu64 " | %s | %.1f | ",
			 joined,
			 num (joined_s, 2),
			 ms (hist_quantile (hj, 0.99)));
	fprintf (table_out, "%" PRIu64 " | %s | ", diff (&b, &c2, S_LOST), closes);
	if (opt.pid > 0)
		fprintf (table_out, "%.2f | %ld/%ld |\n", u.server_s, rss0, rss1);
	else
		fprintf (table_out, "- | - |\n");
	if (first_error ())
		fprintf (table_out, "first error: %s\n", first_error ());

	j = j_begin ("storm");
	j_common (j);
	j_int (j, "n", n);
	j_num (j, "rate", rate);
	j_int (j, "hold", hold);
	j_int (j, "hold_connected", (int64_t) hold_up);
	j_int (j, "hold_failed", (int64_t) dial_errors (&a, &b));
	j_int (j, "connected", (int64_t) up);
	j_failures (j, &b, &c2);
	j_num (j, "all_up_s", all_up_s);
	j_num (j, "all_done_s", all_done_s);
	j_num (j, "handshake_p50_ms", ms (hist_quantile (hs, 0.5)));
	j_num (j, "handshake_p99_ms", ms (hist_quantile (hs, 0.99)));
	j_num (j, "handshake_max_ms", ms ((double) hs->max));
	if (opt.join) {
		j_bool (j, "join_echo", !no_echo);
		j_int (j, "joined", (int64_t) joined);
		j_num (j, "all_joined_s", joined_s);
		j_num (j, "join_after_up_p50_ms", ms (hist_quantile (hj, 0.5)));
		j_num (j, "join_after_up_p99_ms", ms (hist_quantile (hj, 0.99)));
		j_num (j, "join_after_up_max_ms", ms ((double) hj->max));
	}
	j_int (j, "conns_lost", (int64_t) diff (&b, &c2, S_LOST));
	j_closes (j, &b, &c2);
	if (opt.pid > 0) {
		j_int (j, "rss_before_kib", rss0);
		j_int (j, "rss_after_kib", rss1);
	}
	j_cpu (j, &u);
	if (first_error ())
		j_str (j, "first_error", first_error ());
	j_emit (j);
	g_free (hs);
	g_free (hj);
	g_free (fails);
	g_free (closes);
	return up > 0 ? 0 : 1;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void
on_alarm (int sig)
{
	static const char msg[] = "chathub-bench: hard deadline passed; exiting\n";

	(void) sig;
	if (write (STDERR_FILENO, msg, sizeof msg - 1) < 0) {
		/* nothing left to do */
	}
	_exit (2);
}

/* Resolves the target and refuses anything that is not loopback. */
static void
resolve_target (void)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *) &target;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *) &target;
	const char *host = opt.host;

	if (opt.url) {
		/* ws://HOST:PORT/PATH, where HOST is an address or localhost */
		const char *p = opt.url, *h, *e, *slash;
		char *hostpart;

		if (g_str_has_prefix (p, "ws://"))
			p += 5;
		else if (strstr (p, "://"))
			die ("--url: only ws:// URLs (loopback) are supported");
		slash = strchr (p, '/');
		e = slash ? slash : p + strlen (p);
		hostpart = g_strndup (p, (gsize) (e - p));
		if (hostpart[0] == '[') {
			char *rb = strchr (hostpart, ']');

			if (!rb)
				die ("--url: bad IPv6 host");
			*rb = '\0';
			h = hostpart + 1;
			if (rb[1] == ':')
				opt.port = atoi (rb + 2);
		} else {
			char *colon = strrchr (hostpart, ':');

			if (colon) {
				*colon = '\0';
				opt.port = atoi (colon + 1);
			}
			h = hostpart;
		}
		host = g_strdup (h);
		g_free (hostpart);
		if (slash) {
			g_free (opt.path);
			opt.path = g_strdup (slash);
		}
	}
	if (host == NULL || g_strcmp0 (host, "localhost") == 0)
		host = "127.0.0.1";
	if (opt.port <= 0 || opt.port > 65535)
		die ("bad port %d", opt.port);
	memset (&target, 0, sizeof target);
	if (inet_pton (AF_INET, host, &v4->sin_addr) == 1) {
		if ((ntohl (v4->sin_addr.s_addr) >> 24) != 127)
			die ("refusing %s: only loopback (127.0.0.0/8, ::1) is allowed", host);
		v4->sin_family = AF_INET;
		v4->sin_port = htons ((uint16_t) opt.port);
		target_len = sizeof *v4;
		snprintf (host_header, sizeof host_header, "%s:%d", host, opt.port);
	} else if (inet_pton (AF_INET6, host, &v6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK (&v6->sin6_addr))
			die ("refusing %s: only loopback (127.0.0.0/8, ::1) is allowed", host);
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons ((uint16_t) opt.port);
		target_len = sizeof *v6;
		snprintf (host_header, sizeof host_header, "[%s]:%d", host, opt.port);
	} else {
		die ("refusing host %s: give a loopback address (127.0.0.0/8, ::1) or localhost",
		     host);
	}
	if (opt.path == NULL)
		opt.path = g_strdup ("/ws");
	if (opt.path[0] != '/')
		die ("--path must start with /");
}

static void
read_secret (void)
{
	char *text = NULL;
	gsize len = 0;
	GError *error = NULL;

	if (opt.secret_file == NULL)
		die ("--secret-file is required (the server's HS256 secret; a trailing newline is "
		     "ignored)");
	if (!g_file_get_contents (opt.secret_file, &text, &len, &error))
		die ("%s", error->message);
	if (len > 0 && text[len - 1] == '\n')
		len--;
	if (len > 0 && text[len - 1] == '\r')
		len--;
	if (len == 0)
		die ("%s is empty", opt.secret_file);
	secret = g_bytes_new_take (text, len);
}

static void
parse_rates (void)
{
	char **parts;

	if (opt.rates == NULL) {
		rates = g_new (double, 1);
		rates[0] = opt.rate > 0 ? opt.rate : 1000;
		nrates = 1;
		return;
	}
	parts = g_strsplit (opt.rates, ",", -1);
	rates = g_new0 (double, g_strv_length (parts) + 1);
	for (char **p = parts; *p; p++) {
		char *end;
		double v = g_ascii_strtod (g_strstrip (*p), &end);

		if (**p == '\0')
			continue;
		if (*end != '\0' || !(v > 0))
			die ("--rates: “%s” is not a positive number", *p);
		rates[nrates++] = v;
	}
	g_strfreev (parts);
	if (nrates == 0)
		die ("--rates is empty");
}

static void
raise_nofile (uint64_t need)
{
	struct rlimit rl;

	if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit (RLIMIT_NOFILE, &rl);
	}
	if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    need + 32 > rl.rlim_cur)
		die ("%" PRIu64 " connections need more file descriptors than the limit of %lu "
		     "(raise the hard limit, e.g. ulimit -Hn)",
		     need,
		     (unsigned long) rl.rlim_cur);
}

int
main (int argc, char **argv)
{
	GOptionEntry target_entries[] = {
	    {"host",
	     0,
	     0,
	     G_OPTION_ARG_STRING,
	     &opt.host,
	     "Server address, loopback only (default 127.0.0.1)",
	     "ADDR"},
	    {"port", 'p', 0, G_OPTION_ARG_INT, &opt.port, "Server port (default 8080)", "PORT"},
	    {"path", 0, 0, G_OPTION_ARG_STRING, &opt.path, "WebSocket path (default /ws)", "PATH"},
	    {"url",
	     0,
	     0,
	     G_OPTION_ARG_STRING,
	     &opt.url,
	     "ws://HOST:PORT/PATH instead of the three above",
	     "URL"},
	    {"secret-file",
	     's',
	     0,
	     G_OPTION_ARG_FILENAME,
	     &opt.secret_file,
	     "HS256 secret to sign tokens with (trailing newline stripped)",
	     "FILE"},
	    {"uid-base",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.uid_base,
	     "user_id of the first connection (default 1)",
	     "N"},
	    {"token-in-query",
	     0,
	     0,
	     G_OPTION_ARG_NONE,
	     &opt.token_in_query,
	     "Send the token as ?access_token= instead of Authorization: Bearer",
	     NULL},
	    {"pid",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.pid,
	     "Server pid: report its RSS and CPU time",
	     "PID"},
	    {NULL}};
	GOptionEntry load_entries[] = {
	    {"connections",
	     'n',
	     0,
	     G_OPTION_ARG_INT,
	     &opt.n,
	     "Connections (default 1000); fanout: receivers, publishers included",
	     "N"},
	    {"rate",
	     'r',
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.rate,
	     "idle/storm: connections opened per second (default 2000; storm 0 = all at once); "
	     "fanout: messages per second in total (default 1000)",
	     "R"},
	    {"rates",
	     0,
	     0,
	     G_OPTION_ARG_STRING,
	     &opt.rates,
	     "fanout: a sweep of message rates, e.g. 500,1000,2000, one step each on the same "
	     "connections",
	     "LIST"},
	    {"ramp",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.ramp,
	     "fanout: connections opened per second (default 2000)",
	     "R"},
	    {"duration",
	     'd',
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.duration,
	     "fanout: seconds of publishing per step; idle: seconds to hold (default 5)",
	     "S"},
	    {"size",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.size,
	     "fanout: bytes of content per message (default 64)",
	     "BYTES"},
	    {"rooms",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.rooms,
	     "Rooms the receivers are spread over (default 1; 0 = no rooms, messages to the whole "
	     "hub)",
	     "R"},
	    {"publishers",
	     'P',
	     0,
	     G_OPTION_ARG_INT,
	     &opt.publishers,
	     "fanout: publishing connections, the first ones; they join every room (default 1)",
	     "P"},
	    {"join",
	     0,
	     0,
	     G_OPTION_ARG_NONE,
	     &opt.join,
	     "idle/storm: join a room after connecting (storm: measure until every join ack "
	     "arrived)",
	     NULL},
	    {"hold",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.hold,
	     "storm: idle connections opened before the storm",
	     "N"},
	    {"hold-rate",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.hold_rate,
	     "storm: rate for the --hold connections (default 2000)",
	     "R"},
	    {NULL}};
	GOptionEntry tune_entries[] = {
	    {"inflight",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.inflight,
	     "Handshakes in flight at most (default 256; storm: all)",
	     "N"},
	    {"connect-timeout",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.connect_timeout,
	     "Seconds a connection may take until its 101 (default 10)",
	     "S"},
	    {"threads",
	     't',
	     0,
	     G_OPTION_ARG_INT,
	     &opt.threads,
	     "Receiving event-loop threads (default 1; fanout adds one for the publishers)",
	     "T"},
	    {"source-ips",
	     0,
	     0,
	     G_OPTION_ARG_INT,
	     &opt.source_ips,
	     "Spread connections over 127.0.0.1..K as source addresses (default 1)",
	     "K"},
	    {"settle",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.settle,
	     "Seconds without any join echo after which the server is taken not to echo joins "
	     "(default 1)",
	     "S"},
	    {"settle-max",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.settle_max,
	     "fanout: at most this long waiting for join echoes (default 5)",
	     "S"},
	    {"join-timeout",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.join_timeout,
	     "storm: at most this long from the storm's start waiting for join acks (default 20)",
	     "S"},
	    {"quiet-max",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.quiet_max,
	     "fanout: after the drain, wait up to this long until deliveries stop for --stall, so "
	     "a step does not run into the previous one's backlog (default 10)",
	     "S"},
	    {"drain",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.drain,
	     "fanout: at most this long waiting for deliveries after a step (default 5)",
	     "S"},
	    {"stall",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.stall,
	     "fanout: end the drain when nothing arrived for this long (default 1)",
	     "S"},
	    {"pause",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.pause,
	     "fanout: pause between steps (default 1)",
	     "S"},
	    {"timeout",
	     0,
	     0,
	     G_OPTION_ARG_DOUBLE,
	     &opt.timeout,
	     "Absolute limit of the whole run in seconds (default 120)",
	     "S"},
	    {"json",
	     0,
	     0,
	     G_OPTION_ARG_NONE,
	     &opt.json,
	     "One JSON object per step on stdout (the table goes to stderr)",
	     NULL},
	    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt.quiet, "No progress messages", NULL},
	    {"version", 0, 0, G_OPTION_ARG_NONE, &opt.version, "Print the version and exit", NULL},
	    {NULL}};
	GOptionContext *ctx = g_option_context_new ("idle|fanout|storm");
	GOptionGroup *group;
	GError *error = NULL;
	double budget;
	uint64_t need;
	int status;

	g_option_context_set_summary (
	    ctx,
	    "Load generator for chathub (and servers speaking its protocol), loopback only.\n\n"
	    "  idle    open N connections at --rate/s and hold them for --duration; with --pid, "
	    "the\n"
	    "          server's RSS per connection\n"
	    "  fanout  N connections join --rooms rooms and wait for their join echo; --publishers "
	    "send\n"
	    "          --rate (or each of --rates) messages/s in total for --duration; reports "
	    "delivered\n"
	    "          ratio, deliveries/s and latency percentiles\n"
	    "  storm   open N connections at --rate/s (0: all at once), optionally after --hold "
	    "idle ones\n"
	    "          and with --join; reports the time until all are up (and joined)");
	g_option_context_add_main_entries (ctx, target_entries, NULL);
	group = g_option_group_new ("load", "Load options:", "Show load options", NULL, NULL);
	g_option_group_add_entries (group, load_entries);
	g_option_context_add_group (ctx, group);
	group = g_option_group_new ("tuning",
				    "Tuning and output options:",
				    "Show tuning and output options",
				    NULL,
				    NULL);
	g_option_group_add_entries (group, tune_entries);
	g_option_context_add_group (ctx, group);
	if (!g_option_context_parse (ctx, &argc, &argv, &error))
		die ("%s (see --help-all)", error->message);
	g_option_context_free (ctx);
	if (opt.version) {
		printf ("chathub-bench %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc != 2)
		die ("give one mode: idle, fanout or storm (see --help-all)");
	if (strcmp (argv[1], "idle") == 0)
		mode = MODE_IDLE;
	else if (strcmp (argv[1], "fanout") == 0)
		mode = MODE_FANOUT;
	else if (strcmp (argv[1], "storm") == 0)
		mode = MODE_STORM;
	else
		die ("unknown mode “%s”: idle, fanout or storm", argv[1]);

	if (opt.n < 1 || opt.n > 1000000)
		die ("--connections must be 1..1000000");
	if (opt.threads < 1 || opt.threads > MAX_LOOPS)
		die ("--threads must be 1..%d", MAX_LOOPS);
	if (opt.rooms < 0 || opt.rooms > 1000000 || opt.size < 0 || opt.size > 16 * 1024 * 1024)
		die ("--rooms or --size out of range");
	if (opt.uid_base < 1 || opt.source_ips < 1 || opt.source_ips > 254 || opt.hold < 0)
		die ("--uid-base, --source-ips or --hold out of range");
	if (opt.duration < 0 || opt.timeout <= 0 || opt.connect_timeout <= 0)
		die ("--duration, --timeout and --connect-timeout must be positive");
	if (mode == MODE_FANOUT) {
		if (opt.publishers < 1 || opt.publishers > opt.n)
			die ("fanout needs 1 <= --publishers <= --connections");
		parse_rates ();
		if (opt.inflight <= 0)
			opt.inflight = 256;
	} else {
		if (opt.rates)
			die ("--rates is for fanout");
		if (opt.rate < 0)
			opt.rate = 2000;
		if (mode == MODE_IDLE && opt.rate == 0)
			opt.rate = 0; /* all at once, within --inflight */
		if (mode == MODE_IDLE && opt.inflight <= 0)
			opt.inflight = 256;
	}
	resolve_target ();
	read_secret ();
	{
		char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

		b64 (jwt_header, (const uint8_t *) hdr, strlen (hdr), B64_URL, false);
	}
	need = (uint64_t) opt.n + (mode == MODE_STORM ? (uint64_t) opt.hold : 0);
	raise_nofile (need);
	signal (SIGPIPE, SIG_IGN);
	table_out = opt.json ? stderr : stdout;

	/* the hard deadline: every phase's budget, capped by --timeout */
	switch (mode) {
	case MODE_IDLE:
		budget = connect_budget ((uint32_t) opt.n, opt.rate) +
			 (opt.join ? opt.settle_max : 0) + opt.duration + 15;
		break;
	case MODE_FANOUT:
		budget = connect_budget ((uint32_t) opt.n, opt.ramp) + opt.settle_max + 15 +
			 nrates * (opt.duration + opt.drain + opt.quiet_max + opt.pause + 1);
		break;
	default:
		budget =
		    (opt.hold ? connect_budget ((uint32_t) opt.hold, opt.hold_rate) + opt.settle
			      : 0) +
		    connect_budget ((uint32_t) opt.n, opt.rate) +
		    (opt.join ? opt.join_timeout : 0) + 15;
		break;
	}
	if (budget > opt.timeout) {
		note ("the phases may need up to %.0f s; the run stops at --timeout %.0f s",
		      budget,
		      opt.timeout);
		budget = opt.timeout;
	}
	deadline = mono_ns () + s_to_ns (budget);
	signal (SIGALRM, on_alarm);
	alarm ((unsigned) budget + 16);

	switch (mode) {
	case MODE_IDLE:
		status = run_idle ();
		break;
	case MODE_FANOUT:
		status = run_fanout ();
		break;
	default:
		status = run_storm ();
		break;
	}
	stop_loops ();
	if (aborted)
		fprintf (stderr,
			 "chathub-bench: the run hit its deadline (--timeout or the phase budgets) "
			 "and was cut short\n");
	/* 0: measured; 1: nothing to measure (no connection, no publisher); 2: cut short by the
	 * deadline */
	return aborted ? 2 : status;
}
