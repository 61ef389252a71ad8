#!/usr/bin/python3
"""chathubd's /metrics ([metrics] enabled), through the real process, read with a real
Prometheus parser (python3-prometheus-client's text parser):

* off by default (404);
* the text format 0.0.4: its Content-Type, every family typed, parsed without error; GET and
  HEAD, other methods 405; no token, and not counted toward the upgrade rate;
* the figures follow what happened: connections opened and closed by close code (a code
  outside the known list is "other"), refused upgrades by reason, messages relayed, rooms,
  bytes sent, the store's stored messages; no label names a user or a room.
"""

import os
import sys
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

ENABLED = {"metrics": {"enabled": "true"}}


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
            "chathub_messages_relayed": "counter",
            "chathub_bytes_sent": "counter",
            "chathub_slow_consumer_closes": "counter",
            "chathub_idle_closes": "counter",
            "chathub_rooms": "gauge",
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
            self.assertIn("# TYPE %s " % name, text)
        for name, by_labels in samples.items():
            for labels in by_labels:
                self.assertTrue(set(k for k, _ in labels) <= {"code", "reason"}, (name, labels))
        self.assertEqual(
            set(samples["chathub_connections_closed_total"]),
            {(("code", c),) for c in ("1000", "1001", "1002", "1003", "1005", "1006", "1007",
                                      "1008", "1009", "1011", "4001", "4002", "other")})
        self.assertEqual(
            set(samples["chathub_upgrades_refused_total"]),
            {(("reason", r),) for r in ("bad_request", "header_too_large", "rate", "token",
                                        "user_limit", "busy")})
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
        self.assertEqual(samples["chathub_upgrades_refused_total"][(("reason", "rate"),)], 0)

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
        self.assertEqual(samples["chathub_messages_relayed_total"][()], 3)
        self.assertEqual(samples["chathub_store_messages_stored_total"][()], 3)
        self.assertGreater(samples["chathub_bytes_sent_total"][()], 0)
        refused = samples["chathub_upgrades_refused_total"]
        self.assertEqual(refused[(("reason", "bad_request"),)], 1)
        self.assertEqual(refused[(("reason", "token"),)], 1)
        self.assertEqual(refused[(("reason", "busy"),)], 0)

        a.close(1000)
        samples = self.wait_for("chathub_connections_closed_total", (("code", "1000"),), 1)
        self.assertEqual(samples["chathub_connections"][()], 1)
        # a code of the client's own choosing counts as "other"
        b.close(4321)
        samples = self.wait_for("chathub_connections_closed_total", (("code", "other"),), 1)
        self.assertEqual(samples["chathub_connections"][()], 0)
        self.assertEqual(samples["chathub_rooms"][()], 0)
        self.assertEqual(samples["chathub_connections_closed_total"][(("code", "1000"),)], 1)


if __name__ == "__main__":
    h.main()
