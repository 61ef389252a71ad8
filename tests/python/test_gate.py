#!/usr/bin/python3
"""The HTTP gate against hostile clients, through the real daemon: the per-user connection
cap (429 too_many_connections), the per-address upgrade rate (429 too_many_requests, checked
before the token) and oversized request heads (431 instead of a reset)."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402


def raw_request(port, head, source=None, timeout=5.0):
    """Send a request head (bytes) and read the answer until the server closes. Returns
    (status, headers dict with lower-case names, body bytes). A reset raises."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(h.scaled(timeout))
        if source is not None:
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(head)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ")[1]), headers, body


def upgrade_head(port, token=None, extra=b""):
    req = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
    req += "".join("%s: %s\r\n" % kv for kv in h.upgrade_headers(token=token))
    return req.encode("iso-8859-1") + extra + b"\r\n"


class GateAssertions:
    def assert_json_refusal(self, status, headers, body, want_status, want_error):
        self.assertEqual(status, want_status, body[:300])
        self.assertEqual(headers.get("content-type", "").split(";")[0], "application/json")
        self.assertIn("close", headers.get("connection", "").lower())
        doc = json.loads(body.decode("utf-8"))
        self.assertEqual(doc.get("error"), want_error, doc)
        self.assertIsInstance(doc.get("error_description"), str, doc)
        self.assertEqual(sorted(doc), ["error", "error_description"])
        return doc

    def assert_retry_after(self, headers):
        value = headers.get("retry-after")
        self.assertIsNotNone(value, "no Retry-After: %r" % headers)
        self.assertTrue(value.isdigit() and int(value) >= 1, value)
        return int(value)


class PerUserCapTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    CAP = 3
    DAEMON_CONFIG = {"limits": {"max-connections-per-user": CAP}}

    def connect(self, uid):
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(uid))
        self.addCleanup(ws.abort, False)
        return ws

    def refused(self, uid):
        return raw_request(self.daemon.port, upgrade_head(self.daemon.port, self.daemon.token(uid)))

    def wait_admitted(self, uid):
        """The cap is released when the server has seen the close; poll for it."""
        deadline = time.monotonic() + h.scaled(5)
        while True:
            try:
                return self.connect(uid)
            except h.HandshakeRefused as e:
                e.response.close()
                self.assertEqual(e.response.status, 429)
                if time.monotonic() > deadline:
                    self.fail("no connection admitted 5 s after one of the user's closed")
                time.sleep(0.05)

    def test_one_over_the_cap_is_429_and_closing_one_lets_a_new_one_in(self):
        uid = h.next_user_id()
        held = [self.connect(uid) for _ in range(self.CAP)]
        status, headers, body = self.refused(uid)
        self.assert_json_refusal(status, headers, body, 429, "too_many_connections")
        self.assert_retry_after(headers)
        # the held connections are unaffected
        for ws in held:
            ws.send_json({"type": "ping"})
            self.assertEqual(ws.recv_json().get("type"), "pong")
        # another user is not limited by this one's connections
        other = self.connect(h.next_user_id())
        other.close()
        held.pop().close()
        self.wait_admitted(uid)
        status, headers, body = self.refused(uid)
        self.assert_json_refusal(status, headers, body, 429, "too_many_connections")

    def test_burst_of_upgrades_cannot_overshoot(self):
        """All requests are written before any answer is read: exactly the cap get a 101.
        (libsoup 3.2 writes a 101 in the same dispatch that accepts the request, so upgrades
        in flight are rarely seen here; the count includes them all the same.)"""
        uid = h.next_user_id()
        token = self.daemon.token(uid)
        socks = []
        for _ in range(self.CAP + 4):
            s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=h.scaled(5))
            self.addCleanup(s.close)
            socks.append(s)
        for s in socks:
            s.sendall(upgrade_head(self.daemon.port, token))
        statuses = []
        for s in socks:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "closed without an answer")
                head += chunk
            statuses.append(int(head.split(b" ", 2)[1]))
        self.assertEqual(statuses.count(101), self.CAP, statuses)
        self.assertEqual(statuses.count(429), 4, statuses)

    def test_order_token_before_user_cap(self):
        uid = h.next_user_id()
        for _ in range(self.CAP):
            self.connect(uid)
        status, _, body = raw_request(self.daemon.port,
                                      upgrade_head(self.daemon.port, "bad.token.here"))
        self.assertEqual(status, 401, body)


class UpgradeRateTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    RATE = 1
    BURST = 4
    DAEMON_CONFIG = {"limits": {"upgrades-per-second": RATE, "upgrade-burst": BURST}}

    def until_refused(self, source, token="bad.token.here"):
        """Upgrade requests from @source until one is refused for the rate: returns how many
        got through to the token check first, and the refusal."""
        for passed in range(50):
            status, headers, body = raw_request(self.daemon.port,
                                                upgrade_head(self.daemon.port, token),
                                                source=source)
            if status == 429:
                return passed, headers, body
            self.assertEqual(status, 401, body)
        self.fail("50 upgrades in a row were not limited")

    def test_burst_beyond_the_rate_is_429_then_allowed_after_retry_after(self):
        passed, headers, body = self.until_refused("127.0.0.1")
        # a bad token: the rate is checked before the token (429, not 401)
        self.assert_json_refusal(429, headers, body, 429, "too_many_requests")
        self.assertGreaterEqual(passed, self.BURST)
        retry = self.assert_retry_after(headers)
        time.sleep(retry)
        # a valid token gets through once the bucket has refilled
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(h.next_user_id()))
        ws.send_json({"type": "ping"})
        self.assertEqual(ws.recv_json().get("type"), "pong")
        ws.close()

    def test_other_address_not_limited(self):
        self.until_refused("127.0.0.2")
        status, _, body = raw_request(self.daemon.port, upgrade_head(self.daemon.port, "x.y.z"),
                                      source="127.0.0.3")
        self.assertEqual(status, 401, body)

    def test_plain_get_not_counted(self):
        """404 and 400 come first and do not use up the address's upgrades."""
        for _ in range(self.BURST * 3):
            status, _, _ = raw_request(self.daemon.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
                                       source="127.0.0.4")
            self.assertEqual(status, 400)
        passed, _, _ = self.until_refused("127.0.0.4")
        self.assertGreaterEqual(passed, self.BURST)


class RequestHeadTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    """The request line and headers may take 32 KiB; more is answered 431, not reset."""

    def big_head(self, size, token=None):
        return upgrade_head(self.daemon.port, token or self.daemon.token(h.next_user_id()),
                            extra=b"X-Padding: " + b"a" * size + b"\r\n")

    def head_of_length(self, length):
        token = self.daemon.token(h.next_user_id())
        head = self.big_head(length - len(self.big_head(0, token)), token)
        self.assertEqual(len(head), length)
        return head

    def test_200k_header_is_431_not_reset(self):
        status, headers, body = raw_request(self.daemon.port, self.big_head(200 * 1024))
        self.assert_json_refusal(status, headers, body, 431, "request_header_too_large")

    def test_1m_header_is_431(self):
        status, headers, body = raw_request(self.daemon.port, self.big_head(1024 * 1024))
        self.assert_json_refusal(status, headers, body, 431, "request_header_too_large")

    def test_just_over_the_limit_is_431(self):
        head = self.head_of_length(32 * 1024 + 1)
        status, headers, body = raw_request(self.daemon.port, head)
        self.assert_json_refusal(status, headers, body, 431, "request_header_too_large")

    def test_head_at_the_limit_is_served(self):
        head = self.head_of_length(32 * 1024)
        sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=h.scaled(5))
        self.addCleanup(sock.close)
        sock.sendall(head)
        self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 101 "))

    def test_head_in_pieces_is_served(self):
        head = self.big_head(20000)
        sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=h.scaled(5))
        self.addCleanup(sock.close)
        for i in range(0, len(head), 7000):
            sock.sendall(head[i:i + 7000])
            time.sleep(0.1)
        self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 101 "))

    def test_normal_requests_still_work(self):
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(h.next_user_id()))
        ws.send_json({"type": "ping"})
        self.assertEqual(ws.recv_json().get("type"), "pong")
        ws.close()
        status, _, _ = raw_request(self.daemon.port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    h.main()
