#!/usr/bin/python3
"""The Grafana dashboard (data/chathub-grafana.json) against a real chathubd's /metrics:

* it is a dashboard Grafana imports: JSON, a title and uid, panels with a unique id, a grid
  position and at least one PromQL target each, the Prometheus data source as a variable;
* every metric its expressions name is one the daemon exports (histograms through their
  _bucket series), read with python3-prometheus-client's parser after some traffic, so that a
  metric renamed in chat-server.c breaks this test rather than a panel in production;
* it shows what deployment.md promises: connections, deliveries/s, p99 outbox wait, closes by
  reason, refusals and main-loop lag.
"""

import json
import os
import re
import sys
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

DASHBOARD = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "data", "chathub-grafana.json")


def exported_series(text):
    """Every sample name /metrics exports (histograms: name_bucket, name_sum, name_count)."""
    names = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            names.add(s.name)
    return names


class DashboardTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dash = json.load(f)
        cls.exprs = [t["expr"] for p in cls.dash["panels"] for t in p["targets"]]

    def test_shape(self):
        d = self.dash
        self.assertEqual(d["uid"], "chathub")
        self.assertTrue(d["title"])
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in d["panels"]:
            self.assertTrue(p["title"], p)
            self.assertTrue({"x", "y", "w", "h"} <= set(p["gridPos"]), p)
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", t)
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        self.assertIn("chathub_", variables["instance"]["definition"])

    def test_promised_panels(self):
        titles = " / ".join(p["title"].lower() for p in self.dash["panels"])
        for what in ("connections", "deliveries per second", "p99 outbox", "closes", "refusals", "lag"):
            self.assertIn(what, titles)

    def test_metrics_exist(self):
        names = set()
        for e in self.exprs:
            names |= set(re.findall(r"\bchathub_[a-z0-9_]+", e))
        names.add(self.dash["templating"]["list"][1]["definition"].split("(")[1].split(",")[0])
        self.assertGreater(len(names), 10, names)
        config = {"metrics": {"enabled": "true"}}
        with h.Daemon(config=config) as d:
            # some traffic, so that every family has its samples
            ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
            room = h.next_room_id()
            ws.send_json({"type": "join", "room_id": room})
            self.assertEqual(ws.recv_json()["type"], "join")
            ws.send_json({"type": "message", "room_id": room, "content": "hi"})
            self.assertEqual(ws.recv_json()["type"], "message")
            ws.close(1000)
            r = h.http_request(d.port, path="/metrics")
            r.close()
            self.assertEqual(r.status, 200, r.body)
            series = exported_series(r.body.decode("utf-8"))
        missing = sorted(n for n in names if n not in series)
        self.assertEqual(missing, [], "the dashboard names metrics chathubd does not export")


if __name__ == "__main__":
    unittest.main(verbosity=2)
