#!/usr/bin/python3
"""chathubd's /metrics ([metrics] enabled), through the real process, read with a real
Prometheus parser (python3-prometheus-client's text parser):

* off by default (404);
* the text format 0.0.4: its Content-Type, every family typed, parsed without error; GET and
  HEAD, other methods 405; no token, and not counted toward the upgrade rate;
* the figures follow what happened: connections opened and closed by close code (a code
  outside the known list is "other"), refused upgrades by reason, messages relayed, rooms,
  bytes sent, the store's stored messages; no label names a user or a room;
* messages received and relayed by kind (room, direct, hub), deliveries per receiver, bytes
  in and out, the token refusals by their kind, the hostile-client limits (rate-limited
  messages, the message-size, binary and rooms caps), the outbox histograms and the main
  loop's lag;
* [metrics] address/port: /metrics on a listener of its own, and then no longer on the
  WebSocket's; nothing else is served there;
* one log line per refused upgrade, with its reason and the peer's address, at most 10 a
  second and then one "suppressed" line.
"""

import os
import re
import socket
import sys
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

ENABLED = {"metrics": {"enabled": "true"}}
REASONS = ("bad_request", "header_too_large", "forbidden_origin", "too_many_requests",
           "token_missing", "token_malformed", "token_signature", "token_expired",
           "token_not_yet_valid", "token_rejected", "too_many_connections", "unavailable")


def scrape(port, method="GET"):
    r = h.http_request(port, method=method, path="/metrics")
    r.close()
    return r


def parse(text):
    """{sample name: {labels as a sorted tuple: value}} and {family name: type}."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples, types


class MetricsOffTests(unittest.TestCase):

    def test_off_by_default(self):
        with h.Daemon() as d:
            r = scrape(d.port)
            self.assertEqual(r.status, 404, r.body)
            self.assertEqual(r.json()["error"], "not_found")


class MetricsTests(unittest.TestCase):

    def setUp(self):
        # one upgrade per address and second: a scrape that counted would use it up
        self.daemon = h.Daemon(config=h.merge_config(
            ENABLED, {"limits": {"upgrades-per-second": 1, "upgrade-burst": 3}}))
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def read(self):
        r = scrape(self.daemon.port)
        self.assertEqual(r.status, 200, r.body)
        return parse(r.body.decode("utf-8"))

    def wait_for(self, name, labels, value, timeout=5.0):
        deadline = time.monotonic() + h.scaled(timeout)
        while True:
            samples, _ = self.read()
            got = samples.get(name, {}).get(labels)
            if got == value:
                return samples
            if time.monotonic() > deadline:
                self.fail("%s%r is %r, not %r" % (name, labels, got, value))
            time.sleep(0.05)

    def test_format(self):
        r = scrape(self.daemon.port)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        text = r.body.decode("utf-8")
        samples, types = parse(text)
        expected = {
            "chathub_connections": "gauge",
            "chathub_connections_opened": "counter",
            "chathub_connections_closed": "counter",
            "chathub_upgrades_refused": "counter",
            "chathub_messages_received": "counter",
            "chathub_messages_relayed": "counter",
            "chathub_deliveries": "counter",
            "chathub_bytes_received": "counter",
            "chathub_bytes_sent": "counter",
            "chathub_slow_consumer_closes": "counter",
            "chathub_idle_closes": "counter",
            "chathub_messages_rate_limited": "counter",
            "chathub_limits_hit": "counter",
            "chathub_rooms": "gauge",
            "chathub_outbox_write_bytes": "histogram",
            "chathub_outbox_waiting_bytes": "histogram",
            "chathub_main_loop_lag_seconds": "histogram",
            "chathub_log_lines_suppressed": "counter",
            "chathub_store_messages_stored": "counter",
            "chathub_store_messages_failed": "counter",
            "chathub_store_messages_trimmed": "counter",
            "chathub_store_messages_retained": "gauge",
            "chathub_store_groups": "counter",
            "chathub_store_largest_group_messages": "gauge",
            "chathub_store_commit_seconds": "counter",
            "chathub_uptime_seconds": "gauge",
        }
        self.assertEqual(types, expected)
        # every sample has its # HELP and # TYPE, and only the bounded labels
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{")[0].split(" ")[0]
            if types.get(re.sub(r"_(bucket|sum|count)$", "", name)) == "histogram":
                name = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertIn("# TYPE %s " % name, text)
        for name, by_labels in samples.items():
            for labels in by_labels:
                self.assertTrue(set(k for k, _ in labels) <= {"code", "reason", "kind", "limit",
                                                              "le"}, (name, labels))
        self.assertEqual(
            set(samples["chathub_connections_closed_total"]),
            {(("code", c),) for c in ("1000", "1001", "1002", "1003", "1005", "1006", "1007",
                                      "1008", "1009", "1011", "4001", "4002", "other")})
        self.assertEqual(
            set(samples["chathub_upgrades_refused_total"]),
            {(("reason", r),) for r in REASONS})
        for name in ("chathub_messages_received_total", "chathub_messages_relayed_total"):
            self.assertEqual(set(samples[name]),
                             {(("kind", k),) for k in ("room", "direct", "hub")})
        self.assertEqual(set(samples["chathub_limits_hit_total"]),
                         {(("limit", k),) for k in ("message_size", "binary", "rooms",
                                                    "message_rate")})
        self.assertEqual(samples["chathub_connections"][()], 0)

    def test_head_and_methods(self):
        get = scrape(self.daemon.port)
        r = scrape(self.daemon.port, "HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("Content-Type"), get.header("Content-Type"))
        r = scrape(self.daemon.port, "POST")
        self.assertEqual(r.status, 405, r.body)
        self.assertEqual(r.header("Allow"), "GET, HEAD")

    def test_not_subject_to_the_upgrade_rate(self):
        for _ in range(10):
            self.assertEqual(scrape(self.daemon.port).status, 200)
        samples, _ = self.read()
        self.assertEqual(samples["chathub_upgrades_refused_total"][(("reason", "too_many_requests"),)],
                         0)

    def test_counts(self):
        d = self.daemon
        port = d.port
        # refusals: a plain GET of the endpoint, a bad token
        r = h.http_request(port, path="/ws")
        r.close()
        self.assertEqual(r.status, 400)
        r = h.http_request(port, path=h.ws_path("not-a-token"), headers=h.upgrade_headers())
        r.close()
        self.assertEqual(r.status, 401)

        room = h.next_room_id()
        a = h.RawWS.connect(port, d.token(h.next_user_id()))
        b = h.RawWS.connect(port, d.token(h.next_user_id()))
        for ws in (a, b):
            ws.send_json({"type": "join", "room_id": room})
            self.assertEqual(ws.recv_json()["type"], "join")
        a.recv_json()   # b's join event
        for i in range(3):
            a.send_json({"type": "message", "room_id": room, "content": "m%d" % i})
        for i in range(3):
            for ws in (a, b):
                frame = ws.recv_json()
                self.assertEqual((frame["type"], frame["content"]), ("message", "m%d" % i))

        samples, _ = self.read()
        self.assertEqual(samples["chathub_connections"][()], 2)
        self.assertEqual(samples["chathub_connections_opened_total"][()], 2)
        self.assertEqual(samples["chathub_rooms"][()], 1)
        self.assertEqual(samples["chathub_messages_relayed_total"][(("kind", "room"),)], 3)
        self.assertEqual(samples["chathub_store_messages_stored_total"][()], 3)
        self.assertGreater(samples["chathub_bytes_sent_total"][()], 0)
        refused = samples["chathub_upgrades_refused_total"]
        self.assertEqual(refused[(("reason", "bad_request"),)], 1)
        self.assertEqual(refused[(("reason", "token_malformed"),)], 1)
        self.assertEqual(refused[(("reason", "unavailable"),)], 0)

        a.close(1000)
        samples = self.wait_for("chathub_connections_closed_total", (("code", "1000"),), 1)
        self.assertEqual(samples["chathub_connections"][()], 1)
        # a code of the client's own choosing counts as "other"
        b.close(4321)
        samples = self.wait_for("chathub_connections_closed_total", (("code", "other"),), 1)
        self.assertEqual(samples["chathub_connections"][()], 0)
        self.assertEqual(samples["chathub_rooms"][()], 0)
        self.assertEqual(samples["chathub_connections_closed_total"][(("code", "1000"),)], 1)


def counter(samples, name, **labels):
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def histogram_count(samples, name):
    return samples[name + "_count"][()]


class MetricsDaemon:
    """A daemon with /metrics on, and reading helpers."""

    def start_daemon(self, config=None):
        self.daemon = h.Daemon(config=h.merge_config(ENABLED, config or {}))
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        return self.daemon

    def read(self, port=None):
        r = scrape(port or self.daemon.port)
        self.assertEqual(r.status, 200, r.body)
        return parse(r.body.decode("utf-8"))[0]

    def wait_until(self, check, timeout=5.0):
        deadline = time.monotonic() + h.scaled(timeout)
        while True:
            samples = self.read()
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                self.fail("metrics never matched; last:\n%s" % samples)
            time.sleep(0.05)

    def joined(self, port, users, room):
        clients = []
        for user in users:
            ws = h.RawWS.connect(port, self.daemon.token(user))
            ws.send_json({"type": "join", "room_id": room})
            self.assertEqual(ws.recv_json()["type"], "join")    # its ack
            for other in clients:                               # the others' event
                self.assertEqual(other.recv_json()["from"], user)
            clients.append(ws)
        return clients


class TrafficMetricsTests(MetricsDaemon, unittest.TestCase):

    def test_kinds_deliveries_and_bytes(self):
        d = self.start_daemon()
        room = h.next_room_id()
        users = [h.next_user_id() for _ in range(3)]
        a, b, c = self.joined(d.port, users, room)
        before = self.read()

        sent = [
            {"type": "message", "room_id": room, "content": "to the room"},
            {"type": "message", "to": users[1], "content": "to b"},
            {"type": "message", "content": "to everyone"},
        ]
        texts = [json_text(m) for m in sent]
        a.send_text(texts[0])
        for ws in (a, b, c):
            self.assertEqual(ws.recv_json()["content"], "to the room")
        a.send_text(texts[1])
        for ws in (a, b):   # the recipient, and the sender's echo
            self.assertEqual(ws.recv_json()["content"], "to b")
        a.send_text(texts[2])
        for ws in (a, b, c):
            self.assertEqual(ws.recv_json()["content"], "to everyone")
        after = self.read()

        def delta(name, **labels):
            return counter(after, name, **labels) - counter(before, name, **labels)

        for kind in ("room", "direct", "hub"):
            self.assertEqual(delta("chathub_messages_received_total", kind=kind), 1, kind)
            self.assertEqual(delta("chathub_messages_relayed_total", kind=kind), 1, kind)
        # 3 room members, the recipient and the sender's echo, 3 connections on the hub
        self.assertEqual(delta("chathub_deliveries_total"), 3 + 2 + 3)
        self.assertEqual(delta("chathub_bytes_received_total"),
                         sum(len(t.encode("utf-8")) for t in texts))
        self.assertGreater(delta("chathub_bytes_sent_total"), 0)
        # every byte sent went through one write the histogram saw
        self.assertEqual(after["chathub_outbox_write_bytes_sum"][()],
                         after["chathub_bytes_sent_total"][()])
        self.assertGreater(histogram_count(after, "chathub_outbox_write_bytes"),
                           histogram_count(before, "chathub_outbox_write_bytes"))
        self.assertGreater(histogram_count(after, "chathub_outbox_waiting_bytes"),
                           histogram_count(before, "chathub_outbox_waiting_bytes"))
        buckets = after["chathub_outbox_write_bytes_bucket"]
        self.assertEqual(buckets[(("le", "+Inf"),)],
                         histogram_count(after, "chathub_outbox_write_bytes"))
        for ws in (a, b, c):
            ws.close()

    def test_loop_lag_is_measured(self):
        self.start_daemon()
        samples = self.wait_until(
            lambda s: histogram_count(s, "chathub_main_loop_lag_seconds") >= 5)
        self.assertEqual(samples["chathub_main_loop_lag_seconds_bucket"][(("le", "+Inf"),)],
                         histogram_count(samples, "chathub_main_loop_lag_seconds"))
        self.assertIn((("le", "0.001"),), samples["chathub_main_loop_lag_seconds_bucket"])

    def test_token_refusals_by_kind(self):
        d = self.start_daemon()
        tokens = {
            "token_missing": None,
            "token_malformed": "not-a-token",
            "token_expired": d.token(h.next_user_id(), exp=h.now() - 3600),
            "token_signature": h.hs_token({"user_id": 5, "exp": h.now() + 60}, "x" * 40),
        }
        for reason, token in tokens.items():
            with self.assertRaises(h.HandshakeRefused) as refused:
                h.RawWS.connect(d.port, token)
            refused.exception.response.close()
            self.assertEqual(refused.exception.response.status, 401)
            samples = self.read()
            self.assertEqual(counter(samples, "chathub_upgrades_refused_total", reason=reason),
                             1, reason)
        self.assertEqual(counter(samples, "chathub_upgrades_refused_total",
                                 reason="token_rejected"), 0)

    def test_too_many_requests_and_connections(self):
        d = self.start_daemon({"limits": {"upgrades-per-second": 1, "upgrade-burst": 2,
                                          "max-connections-per-user": 1}})
        user = h.next_user_id()
        ws = h.RawWS.connect(d.port, d.token(user))
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(d.port, d.token(user))
        self.assertEqual(refused.exception.response.status, 429)
        refused.exception.response.close()
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(d.port, d.token(h.next_user_id()))
        self.assertEqual(refused.exception.response.status, 429)
        refused.exception.response.close()
        samples = self.read()
        self.assertEqual(counter(samples, "chathub_upgrades_refused_total",
                                 reason="too_many_connections"), 1)
        self.assertEqual(counter(samples, "chathub_upgrades_refused_total",
                                 reason="too_many_requests"), 1)
        ws.close()

    def test_rate_limited_messages(self):
        d = self.start_daemon({"limits": {"messages-per-second": 1, "message-burst": 2}})
        room = h.next_room_id()
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        ws.send_json({"type": "join", "room_id": room})   # takes one of the two
        self.assertEqual(ws.recv_json()["type"], "join")
        for i in range(4):
            ws.send_json({"type": "message", "room_id": room, "content": "m%d" % i})
        # the 1st goes through, 2 are refused rate_limited, the 3rd refusal closes (1008)
        frames = []
        self.assertEqual(ws.expect_close(collect=frames)[0], 1008)
        samples = self.wait_until(lambda s: counter(s, "chathub_connections_closed_total",
                                                    code="1008") == 1)
        self.assertEqual(samples["chathub_messages_rate_limited_total"][()], 3)
        self.assertEqual(counter(samples, "chathub_limits_hit_total", limit="message_rate"), 1)
        self.assertEqual(counter(samples, "chathub_messages_received_total", kind="room"), 1)

    def test_caps_hit(self):
        d = self.start_daemon({"limits": {"max-message-size": 1024, "max-rooms": 1}})
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        ws.send_json({"type": "join", "room_id": h.next_room_id()})
        self.assertEqual(ws.recv_json()["type"], "join")
        ws.send_json({"type": "join", "room_id": h.next_room_id()})
        self.assertEqual(ws.recv_json()["code"], "limit_exceeded")
        ws.send_text(json_text({"type": "message", "content": "x" * 2000}))
        self.assertEqual(ws.expect_close()[0], 1009)
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        ws.send_binary(b"\x00\x01")
        self.assertEqual(ws.expect_close()[0], 1003)
        samples = self.wait_until(
            lambda s: counter(s, "chathub_limits_hit_total", limit="binary") == 1)
        self.assertEqual(counter(samples, "chathub_limits_hit_total", limit="rooms"), 1)
        self.assertEqual(counter(samples, "chathub_limits_hit_total", limit="message_size"), 1)
        self.assertEqual(counter(samples, "chathub_limits_hit_total", limit="message_rate"), 0)


class MetricsListenerTests(MetricsDaemon, unittest.TestCase):

    def test_own_listener(self):
        port = h.free_port()
        d = self.start_daemon({"metrics": {"address": "127.0.0.1", "port": port}})
        self.assertTrue(d.wait_for_log(r"Metrics on http://127\.0\.0\.1:%d/metrics" % port),
                        d.log_text())
        # not on the WebSocket's listener any more
        r = scrape(d.port)
        self.assertEqual(r.status, 404, r.body)
        samples = self.read(port)
        self.assertEqual(samples["chathub_connections"][()], 0)
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        self.assertEqual(self.read(port)["chathub_connections_opened_total"][()], 1)
        ws.close()
        # /metrics only
        for path in ("/", "/healthz", "/readyz", "/ws", "/metrics/"):
            r = h.http_request(port, path=path)
            r.close()
            self.assertEqual(r.status, 404, path)
        r = h.http_request(port, method="POST", path="/metrics")
        r.close()
        self.assertEqual(r.status, 405)
        # and the health checks stay on the WebSocket's
        r = h.http_request(d.port, path="/healthz")
        r.close()
        self.assertEqual(r.status, 200)

    def test_port_needs_enabled(self):
        rc, log = h.run_daemon_expect_exit(
            config={"metrics": {"port": h.free_port()}})
        self.assertNotEqual(rc, 0)
        self.assertIn("[metrics] port", log)

    def test_port_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            rc, log = h.run_daemon_expect_exit(
                config={"metrics": {"enabled": "true", "port": taken.getsockname()[1]}})
        self.assertNotEqual(rc, 0)
        self.assertIn("Cannot listen for metrics", log)


REFUSAL_RE = re.compile(r"Refused a connection from (\S+)(?: \(via (\S+)\))?: .* \((\w+), HTTP (\d+)\)$")
SUPPRESSED_RE = re.compile(r"Suppressed (\d+) more refused-upgrade lines?")


class RefusalLogTests(MetricsDaemon, unittest.TestCase):

    def refusals(self):
        return [REFUSAL_RE.search(l).groups() for l in self.daemon.log
                if REFUSAL_RE.search(l)]

    def test_one_line_per_refusal(self):
        d = self.start_daemon({"limits": {"max-connections-per-user": 1}})
        r = h.http_request(d.port, path="/ws")
        r.close()
        self.assertTrue(d.wait_for_log(r"Refused a connection from 127\.0\.0\.1: .* "
                                       r"\(bad_request, HTTP 400\)$"), d.log_text())
        with self.assertRaises(h.HandshakeRefused):
            h.RawWS.connect(d.port, d.token(h.next_user_id(), exp=h.now() - 3600))
        line = d.wait_for_log(r"token_expired")
        self.assertRegex(line, r"Refused a connection from 127\.0\.0\.1: The token has "
                               r"expired \(token_expired, HTTP 401\)$")
        user = h.next_user_id()
        ws = h.RawWS.connect(d.port, d.token(user))
        with self.assertRaises(h.HandshakeRefused):
            h.RawWS.connect(d.port, d.token(user))
        line = d.wait_for_log(r"too_many_connections")
        self.assertRegex(line, r"from 127\.0\.0\.1: user %d already has 1 connections "
                               r"\(too_many_connections, HTTP 429\)$" % user)
        ws.close()
        # a request head over 32 KiB, answered by the listener
        r = h.http_request(d.port, path="/ws", headers=[("X-Big", "a" * 40000)])
        r.close()
        self.assertEqual(r.status, 431)
        self.assertTrue(d.wait_for_log(r"from 127\.0\.0\.1: .* \(header_too_large, HTTP 431\)$"))
        self.assertEqual([g[2] for g in self.refusals()],
                         ["bad_request", "token_expired", "too_many_connections",
                          "header_too_large"])

    def test_flood_is_summarized(self):
        d = self.start_daemon()
        n = 30
        for _ in range(n):
            r = h.http_request(d.port, path="/ws", headers=h.upgrade_headers(token="bad"))
            r.close()
            self.assertEqual(r.status, 401)
        line = d.wait_for_log(SUPPRESSED_RE.pattern)
        self.assertIsNotNone(line, d.log_text())
        time.sleep(h.scaled(1.2))   # a second summary, if the flood straddled two seconds
        logged = len(self.refusals())
        suppressed = sum(int(SUPPRESSED_RE.search(l).group(1)) for l in d.log
                         if SUPPRESSED_RE.search(l))
        self.assertLess(logged, n)
        self.assertEqual(logged + suppressed, n)
        samples = self.read()
        self.assertEqual(samples["chathub_log_lines_suppressed_total"][()], suppressed)
        self.assertEqual(counter(samples, "chathub_upgrades_refused_total",
                                 reason="token_malformed"), n)


def json_text(obj):
    import json
    return json.dumps(obj, separators=(",", ":"))


if __name__ == "__main__":
    h.main()
