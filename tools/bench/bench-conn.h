/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's client connections: connecting, the WebSocket handshake, framing, sending and
 * receiving. Each connection belongs to one event loop (bench-loop.h) and only that loop's
 * thread touches it, except its state, which the orchestrator reads.
 */

#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

typedef struct Loop Loop;

enum { CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED, CS_FAILED };

typedef struct {
	int fd;
	_Atomic uint8_t state; /* written by the owning loop, read (relaxed) by the orchestrator */
	uint8_t want_out;
	uint8_t frag_op;
	uint8_t joining;
	uint8_t all_rooms;
	uint8_t in_flight;
	uint8_t flooder; /* floods its own room (fanout --flooder) and discards what it gets */
	uint8_t dropped; /* recover: closed by the bench; rejoins with since */
	uint8_t tls_handshaking; /* --tls: in CS_HANDSHAKE, the TLS handshake is not done yet */
	gnutls_session_t tls;	 /* --tls: (nullable) the connection's TLS session */
	uint32_t idx;
	uint32_t room; /* home room, 0 = none */
	uint32_t joins_needed, joins_got;
	uint32_t infl_pos;
	uint64_t uid;
	int64_t t_start, t_up;
	int64_t next_send;
	uint64_t seq;
	uint64_t offset;      /* recover: the room's latest offset this connection saw */
	uint32_t recover_got; /* recover: missed messages received since the rejoin */
	uint8_t *obuf;
	uint32_t ooff, olen, ocap;
	uint8_t
	    *ibuf; /* partial frame left from the last read; during the handshake, the response */
	uint32_t ilen, icap;
	uint8_t *fbuf; /* fragmented message being assembled */
	uint32_t flen, fcap;
	char key[28];
} Conn;

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

/* --tls: the shared client credentials; called once before any connection */
void
bench_tls_init (void);
void
conn_start (Loop *l, Conn *c, int64_t now);
void
conn_event (Loop *l, Conn *c, uint32_t ev, int64_t now);
void
conn_fail (Loop *l, Conn *c, int kind, const char *what);
void
conn_release (Loop *l, Conn *c, int state);
void
send_close_now (Loop *l, Conn *c, const uint8_t *payload, size_t len);
void
publish_one (Loop *l, Conn *c);
void
flood_prepare (Loop *l);
void
flood_push (Loop *l, Conn *c, int64_t end);
