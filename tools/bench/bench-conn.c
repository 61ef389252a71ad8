/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-loop.h"
#include "bench-token.h"
#include "bench.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static void
send_joins (Loop *l, Conn *c);
static size_t
ws_parse (Loop *l, Conn *c, uint8_t *p, size_t len, int64_t now);

/* ---- TLS (--tls) ---------------------------------------------------------------------------- */

/* The bench talks to loopback only (chathub-bench.c refuses other targets) and measures the
 * server, not certificate checking: the client trusts any certificate (no verification
 * function, no trust store). Never copy this into a client that talks to a real network. */
static gnutls_certificate_credentials_t tls_credentials;

void
bench_tls_init (void)
{
	if (gnutls_certificate_allocate_credentials (&tls_credentials) < 0) {
		fprintf (stderr, "chathub-bench: cannot allocate TLS credentials\n");
		exit (1);
	}
}

/* The I/O under the WebSocket: the socket itself, or GnuTLS on it. Both answer like send()
 * and recv(): a count, 0 for EOF, or -1 with errno (EAGAIN when it would block). After
 * GNUTLS_E_AGAIN, gnutls_record_send() has already encrypted the record and must be called
 * again with the same data first; conn_send() keeps what was refused at the head of obuf, so
 * conn_flush() does exactly that. */
static ssize_t
io_send (Conn *c, const uint8_t *data, size_t len)
{
	ssize_t n;

	if (c->tls == NULL)
		return send (c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	n = gnutls_record_send (c->tls, data, len);
	if (n >= 0)
		return n;
	errno = n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? EAGAIN : EPIPE;
	return -1;
}

/* Reads as many records as GnuTLS has or the socket gives, up to len. */
static ssize_t
io_recv (Conn *c, uint8_t *buf, size_t len)
{
	size_t got = 0;

	if (c->tls == NULL)
		return recv (c->fd, buf, len, 0);
	while (got < len) {
		ssize_t n = gnutls_record_recv (c->tls, buf + got, len - got);

		if (n > 0) {
			got += (size_t) n;
			continue;
		}
		if (got > 0)
			break; /* what came so far; the error or EOF comes again on the next call */
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			return 0;
		errno = n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? EAGAIN : ECONNRESET;
		return -1;
	}
	return (ssize_t) got;
}

/* Plaintext GnuTLS holds already: epoll (level-triggered on the socket) does not see it. */
static bool
io_pending (Conn *c)
{
	return c->tls != NULL && gnutls_record_check_pending (c->tls) > 0;
}

/* ---- connection state and sending ---------------------------------------------------------- */

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

void
conn_release (Loop *l, Conn *c, int state)
{
	infl_remove (l, c);
	if (c->tls != NULL) {
		gnutls_deinit (c->tls);
		c->tls = NULL;
	}
	c->tls_handshaking = 0;
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
void
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
		ssize_t n = io_send (c, data, len);

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
		ssize_t n = io_send (c, c->obuf + c->ooff, c->olen);

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
void
send_close_now (Loop *l, Conn *c, const uint8_t *payload, size_t len)
{
	size_t n = frame_build (l, 0x8, payload, len);

	if (c->fd >= 0 && c->olen == 0 && io_send (c, l->wbuf, n) < 0) {
		/* ignored */
	}
}

/* ---- handshake ----------------------------------------------------------------------------- */

static void
send_handshake (Loop *l, Conn *c)
{
	char token[TOKEN_MAX], req[1200];
	uint8_t nonce[16];
	uint64_t r1 = xorshift (&l->rng), r2 = xorshift (&l->rng);
	int n;

	memcpy (nonce, &r1, 8);
	memcpy (nonce + 8, &r2, 8);
	b64 (c->key, nonce, 16, B64_STD, true);
	token_mint (l->hmac, c->uid, token);
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

/* Drives the non-blocking TLS handshake; the WebSocket handshake follows it. */
static void
tls_step (Loop *l, Conn *c)
{
	int r = gnutls_handshake (c->tls);

	if (r == GNUTLS_E_SUCCESS) {
		c->tls_handshaking = 0;
		send_handshake (l, c);
	} else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		ep_set (l,
			c,
			gnutls_record_get_direction (c->tls) ? EPOLLOUT : EPOLLIN,
			EPOLL_CTL_MOD);
	} else if (gnutls_error_is_fatal (r)) {
		char what[160];

		snprintf (what, sizeof what, "TLS handshake: %s", gnutls_strerror (r));
		conn_fail (l, c, S_FAIL_OTHER, what);
	}
}

/* The TCP connection is up: the WebSocket handshake, or first TLS's. */
static void
conn_connected (Loop *l, Conn *c)
{
	if (!opt.tls) {
		send_handshake (l, c);
		return;
	}
	/* GnuTLS's default order offers AES-256-GCM first and the server takes the client's
	 * first choice; browsers (Chrome, Firefox) offer AES-128-GCM first, so the bench does */
	if (gnutls_init (&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 ||
	    gnutls_priority_set_direct (
		c->tls,
		"NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305",
		NULL) < 0 ||
	    gnutls_credentials_set (c->tls, GNUTLS_CRD_CERTIFICATE, tls_credentials) < 0) {
		conn_fail (l, c, S_FAIL_OTHER, "cannot set up a TLS session");
		return;
	}
	gnutls_transport_set_int (c->tls, c->fd);
	conn_set_state (c, CS_HANDSHAKE);
	c->tls_handshaking = 1;
	tls_step (l, c);
}

void
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
		conn_connected (l, c);
	} else if (errno == EINPROGRESS) {
		conn_set_state (c, CS_CONNECTING);
		ep_set (l, c, EPOLLOUT, EPOLL_CTL_ADD);
	} else {
		conn_fail_errno (l, c, errno, "connect");
	}
}

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

/* Reads what the server sent so far into c->ibuf; false if there is nothing more to do now. */
static bool
handshake_recv (Loop *l, Conn *c, bool *eof)
{
	ssize_t n;

	if (c->icap == 0) {
		c->icap = 2048;
		c->ibuf = g_malloc (c->icap);
	}
	if (c->ilen == c->icap) {
		if (c->icap >= HS_BUF_MAX) {
			conn_fail (l, c, S_FAIL_OTHER, "response headers too long");
			return false;
		}
		c->icap *= 2;
		c->ibuf = g_realloc (c->ibuf, c->icap);
	}
	n = io_recv (c, c->ibuf + c->ilen, c->icap - c->ilen);
	if (n == 0) {
		*eof = true;
	} else if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			conn_fail_errno (l, c, errno, "handshake read");
		return false;
	} else {
		c->ilen += (uint32_t) n;
	}
	return true;
}

/* A response other than 101 fails the connection, once its body (which says why) is in. */
static void
handshake_refused (Loop *l, Conn *c, const uint8_t *end, size_t head, int status, bool eof)
{
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
}

/* Checks the complete response head [ibuf, end): true for a 101 with the right accept key. */
static bool
handshake_check (Loop *l, Conn *c, const uint8_t *end, size_t head, bool eof)
{
	int status = 0;
	char want[32];
	const char *accept;

	if (c->ilen < 12 || memcmp (c->ibuf, "HTTP/1.", 7) != 0 ||
	    sscanf ((const char *) c->ibuf + 9, "%3d", &status) != 1) {
		conn_fail (l, c, S_FAIL_OTHER, "malformed handshake response");
		return false;
	}
	if (status != 101) {
		handshake_refused (l, c, end, head, status, eof);
		return false;
	}
	if (eof) {
		conn_fail (l, c, S_FAIL_EOF, "closed right after the 101");
		return false;
	}
	expected_accept (c->key, want);
	accept = header_value (c->ibuf, end, "sec-websocket-accept:");
	if (accept == NULL || strncmp (accept, want, strlen (want)) != 0) {
		conn_fail (l, c, S_FAIL_OTHER, "missing or wrong Sec-WebSocket-Accept");
		return false;
	}
	return true;
}

/* The connection is up: count it, join, and parse the frames that came with the response. */
static void
handshake_done (Loop *l, Conn *c, size_t head, int64_t now)
{
	size_t rest;

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
conn_handshake_read (Loop *l, Conn *c, int64_t now)
{
	uint8_t *end;
	bool eof = false;
	size_t head;

	if (!handshake_recv (l, c, &eof))
		return;
	end = memmem (c->ibuf, c->ilen, "\r\n\r\n", 4);
	if (end == NULL) {
		if (eof)
			conn_fail (l, c, S_FAIL_EOF, "closed before the handshake response");
		return;
	}
	head = (size_t) (end - c->ibuf) + 4;
	if (handshake_check (l, c, end, head, eof))
		handshake_done (l, c, head, now);
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
	} else if (c->room > 0 && c->dropped && l->cmd.epoch[0] != '\0') {
		/* recover: back after a drop, with what it saw last */
		char rejoin[160];

		n = snprintf (rejoin,
			      sizeof rejoin,
			      "{\"type\":\"join\",\"room_id\":%u,\"since\":%" PRIu64
			      ",\"epoch\":\"%s\"}",
			      c->room,
			      c->offset,
			      l->cmd.epoch);
		send_frame (l, c, 1, rejoin, (size_t) n);
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

/* recover: a join ack gives the room's offset and epoch; a rejoin's says whether it recovered */
static void
note_join_ack (Loop *l, Conn *c, const char *p, const char *end)
{
	const char *e = json_value (p, end, "epoch", 5), *r = json_value (p, end, "recovered", 9);

	/* a rejoin's offset is where its recovery ends: the frames up to it follow */
	if (c->dropped)
		st_add (l, r != NULL && *r == 't' ? S_RECOVERED : S_NOT_RECOVERED, 1);
	else
		c->offset = (uint64_t) json_int (json_value (p, end, "offset", 6), end);
	if (e != NULL && *e == '"' && !atomic_load_explicit (&l->has_epoch, memory_order_relaxed)) {
		const char *q = memchr (e + 1, '"', (size_t) (end - e - 1));

		if (q != NULL && (size_t) (q - e - 1) < sizeof l->epoch) {
			memcpy (l->epoch, e + 1, (size_t) (q - e - 1));
			l->epoch[q - e - 1] = '\0';
			atomic_store_explicit (&l->has_epoch, 1, memory_order_release);
		}
	}
}

/* recover: every room message must carry the next offset; a rejoined connection counts the
 * ones it missed until it has them all */
static void
track_offset (Loop *l, Conn *c, int64_t offset, int64_t now)
{
	if (offset <= 0)
		return;
	if ((uint64_t) offset <= c->offset) {
		st_add (l, S_DUPS, 1);
		return;
	}
	if ((uint64_t) offset > c->offset + 1)
		st_add (l, S_GAPS, 1);
	c->offset = (uint64_t) offset;
	if (!c->dropped || l->cmd.recover_want == 0)
		return;
	st_add (l, S_RECOVER_MSGS, 1);
	if (++c->recover_got == l->cmd.recover_want) {
		st_add (l, S_RECOVER_DONE, 1);
		st_max (l, S_LAST_RECOVER_NS, (uint64_t) now);
	}
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
		const char *d;
		int64_t t = 0;

		if (l->npubs > 0)
			st_add (l, S_PUB_ECHOES, 1);
		if (l->cmd.track_offsets)
			track_offset (l, c, json_int (json_value (q, end, "offset", 6), end), now);
		d = json_value (q, end, "data", 4);

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
			if (l->cmd.track_offsets)
				note_join_ack (l, c, q, end);
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
		if (tl == 5 && memcmp (v, "leave", 5) == 0)
			st_add (l, S_LEAVES, 1);
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
			if (op == 0x1 && c->flooder && n >= 17 &&
			    memcmp (p, "{\"type\":\"message\"", 17) == 0)
				st_add (l, S_FLOOD_ECHOES, 1); /* not parsed: the flooder's own */
			else if (op == 0x1)
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
	n = io_recv (c, c->ibuf + c->ilen, need - c->ilen);
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
	n = io_recv (c, l->rbuf + have, l->rcap - have);
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

void
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
		conn_connected (l, c);
		break;
	}
	case CS_HANDSHAKE:
		if (c->tls_handshaking) {
			tls_step (l, c);
			break;
		}
		if (ev & EPOLLOUT)
			conn_flush (l, c);
		if (conn_state (c) == CS_HANDSHAKE && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			conn_handshake_read (l, c, now);
		while (conn_state (c) == CS_HANDSHAKE && io_pending (c))
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
	while (conn_state (c) == CS_OPEN && io_pending (c))
		conn_read (l, c);
}

/* ---- publishing ------------------------------------------------------------------------------ */

void
publish_one (Loop *l, Conn *c)
{
	uint8_t mask[4];
	uint64_t r = xorshift (&l->rng);
	uint8_t *p, *start;
	uint32_t room = 0;
	size_t h, len;
	int64_t t;

	if (opt.rooms > 0) {
		/* --own-room: its own room only; else each room in turn */
		room = opt.own_room
			   ? c->room
			   : 1 + (uint32_t) ((c->seq * (uint64_t) opt.publishers + c->idx) %
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

/* ---- flooding ------------------------------------------------------------------------------ */

#define FLOOD_BATCH 65536 /* bytes of frames per write */

/* Builds the flooder's batch: identical masked frames {"type":"message","room_id":R,
 * "content":"xxx…"} to its own room R, without data.t (they are not deliveries). */
void
flood_prepare (Loop *l)
{
	g_autoptr (GString) payload = g_string_new (NULL);
	uint64_t r = xorshift (&l->rng);
	uint8_t mask[4];
	size_t frame;

	memcpy (mask, &r, 4);
	g_string_append_printf (payload,
				"{\"type\":\"message\",\"room_id\":%d,\"content\":\"",
				opt.rooms + 1);
	for (int i = 0; i < opt.size; i++)
		g_string_append_c (payload, 'x');
	g_string_append (payload, "\"}");
	wbuf_reserve (l, payload->len + 14);
	frame = frame_header (l->wbuf, 0x1, payload->len, mask);
	memcpy (l->wbuf + frame, payload->str, payload->len);
	mask_bytes (l->wbuf + frame, payload->len, mask);
	frame += payload->len;
	l->flood_frames = MAX (FLOOD_BATCH / frame, 1u);
	l->flood_len = l->flood_frames * frame;
	l->flood_buf = g_malloc (l->flood_len);
	for (size_t i = 0; i < l->flood_frames; i++)
		memcpy (l->flood_buf + i * frame, l->wbuf, frame);
}

/* Writes the batch again and again while the socket takes all of it; stops when it blocks
 * (conn_send keeps the rest, in order with anything else such as a pong, and EPOLLOUT brings
 * the loop back), at end, at the step's count, or after 16 batches so that the loop reads. */
void
flood_push (Loop *l, Conn *c, int64_t end)
{
	size_t frame = l->flood_len / l->flood_frames;

	for (int k = 0; k < 16 && conn_state (c) == CS_OPEN && c->olen == 0 &&
			l->flood_sent < l->cmd.flood_max;
	     k++) {
		uint64_t frames =
		    MIN ((uint64_t) l->flood_frames, l->cmd.flood_max - l->flood_sent);

		if (!conn_send (l, c, l->flood_buf, (size_t) frames * frame))
			return;
		l->flood_sent += frames;
		st_add (l, S_FLOOD_SENT, frames);
		if (mono_ns () >= end)
			return;
	}
}
