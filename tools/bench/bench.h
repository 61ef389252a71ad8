/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What every part of chathub-bench shares: the options, the resolved target, and small helpers.
 */

#pragma once

#include <glib.h>

#include <math.h> /* isfinite, NAN: macros only, no libm */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define MAX_LOOPS 32 /* receiving loops; the publishers and the flooder have one more each */
#define MAX_FRAME (64u * 1024 * 1024) /* larger server frames are a protocol error here */
#define MAX_OUTBUF (64u * 1024 * 1024)
#define RBUF_SIZE (256u * 1024)
#define HS_BUF_MAX 16384
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The command line (chathub-bench.c holds the table and the defaults). */
typedef struct {
	char *host;
	int port;
	char *path;
	char *url;
	char *secret_file;
	int uid_base;
	gboolean token_in_query;
	gboolean tls; /* wss: TLS (GnuTLS) under every connection */
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
	gboolean flooder;
	gboolean own_room;
	int messages;
	int flood_max;
	double timeout;
	gboolean json;
	gboolean quiet;
	gboolean version;
} BenchOptions;

extern BenchOptions opt;

/* the resolved target (chathub-bench.c) */
extern struct sockaddr_storage target;
extern socklen_t target_len;
extern char host_header[80];
extern GBytes *secret;
extern double *rates; /* fanout: the rates of the steps */
extern int nrates;

extern const char B64_STD[];
extern const char B64_URL[];

void
note (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
void
die (const char *fmt, ...) G_GNUC_PRINTF (1, 2) G_GNUC_NORETURN;
size_t
b64 (char *out, const uint8_t *in, size_t n, const char *alphabet, bool pad);

static inline int64_t
mono_ns (void)
{
	struct timespec ts;

	clock_gettime (CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static inline int64_t
s_to_ns (double s)
{
	return (int64_t) (s * 1e9);
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
