#!/usr/bin/python3
"""[server] allowed-origins, through the real daemon:

* a browser upgrade (one with Origin) from an origin that is not allowed gets 403
  {"error":"forbidden_origin"} before its token is checked (a bad token gets 403, not 401) and
  before the per-user connection cap (not 429); counted and logged;
* requests without Origin (programs) are allowed whatever the list;
* unset: same-origin only, the Origin's host:port must be the Host requested;
* a list: exactly those origins (case does not matter), the server's own not implied;
* `*`: every origin;
* the configuration refuses what is not an origin.
"""

import os
import sys
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402


def refused_origin_count(port):
    r = h.http_request(port, path="/metrics")
    r.close()
    for family in text_string_to_metric_families(r.body.decode("utf-8")):
        for s in family.samples:
            if s.name == "chathub_upgrades_refused_total" and \
                    s.labels["reason"] == "forbidden_origin":
                return s.value
    raise AssertionError("no forbidden_origin sample")


class OriginTestCase(unittest.TestCase):
    config = {}

    def setUp(self):
        self.daemon = h.Daemon(config=h.merge_config({"metrics": {"enabled": "true"}},
                                                     self.config))
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def upgrade(self, origin, token=None, user=None):
        """The status of an upgrade with this Origin (None: no header)."""
        if token is None:
            token = self.daemon.token(user or h.next_user_id())
        extra = [("Origin", origin)] if origin is not None else []
        try:
            ws = h.RawWS.connect(self.daemon.port, token, extra_headers=extra)
        except h.HandshakeRefused as refused:
            refused.response.close()
            self.last = refused.response
            return refused.response.status
        ws.close()
        return 101

    def own_origin(self):
        return "http://127.0.0.1:%d" % self.daemon.port


class SameOriginTests(OriginTestCase):

    def test_own_origin_and_no_origin(self):
        self.assertEqual(self.upgrade(self.own_origin()), 101)
        self.assertEqual(self.upgrade(None), 101)
        self.assertEqual(refused_origin_count(self.daemon.port), 0)

    def test_other_origins(self):
        port = self.daemon.port
        for origin in ("http://evil.example", "http://127.0.0.1:%d" % (port + 1),
                       "http://127.0.0.1", "http://127.0.0.1:%d/" % port, "null",
                       "http://evil.example/http://127.0.0.1:%d" % port):
            self.assertEqual(self.upgrade(origin), 403, origin)
            self.assertEqual(self.last.json()["error"], "forbidden_origin")
            self.assertIn("error_description", self.last.json())
        self.assertEqual(refused_origin_count(port), 6)
        line = self.daemon.wait_for_log(r"forbidden_origin")
        self.assertRegex(line, r"Refused a connection from 127\.0\.0\.1: .*http://evil\.example"
                               r".* \(forbidden_origin, HTTP 403\)$")

    def test_before_the_token(self):
        self.assertEqual(self.upgrade("http://evil.example", token="not-a-token"), 403)
        self.assertEqual(self.upgrade(self.own_origin(), token="not-a-token"), 401)
        self.assertEqual(self.upgrade(None, token="not-a-token"), 401)


class CapTests(OriginTestCase):
    config = {"limits": {"max-connections-per-user": 1}}

    def test_before_the_connection_cap(self):
        user = h.next_user_id()
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(user))
        self.assertEqual(self.upgrade("http://evil.example", user=user), 403)
        self.assertEqual(self.upgrade(None, user=user), 429)
        ws.close()


class ListTests(OriginTestCase):
    config = {"server": {"allowed-origins": "https://chat.example.org, "
                                            "http://localhost:8080"}}

    def test_listed_only(self):
        self.assertEqual(self.upgrade("https://chat.example.org"), 101)
        self.assertEqual(self.upgrade("HTTPS://Chat.Example.Org"), 101)
        self.assertEqual(self.upgrade("http://localhost:8080"), 101)
        self.assertEqual(self.upgrade(None), 101)
        # the list replaces same-origin
        self.assertEqual(self.upgrade(self.own_origin()), 403)
        self.assertEqual(self.upgrade("http://chat.example.org"), 403)
        self.assertEqual(self.upgrade("https://chat.example.org:8443"), 403)
        self.assertEqual(self.upgrade("https://evil.chat.example.org"), 403)


class StarTests(OriginTestCase):
    config = {"server": {"allowed-origins": "*"}}

    def test_every_origin(self):
        for origin in ("https://chat.example.org", "http://evil.example", "null",
                       self.own_origin()):
            self.assertEqual(self.upgrade(origin), 101, origin)


class ConfigTests(unittest.TestCase):

    def test_refused_values(self):
        for value in ("chat.example.org", "https://chat.example.org/", "https://", "://x"):
            rc, log = h.run_daemon_expect_exit(config={"server": {"allowed-origins": value}})
            self.assertNotEqual(rc, 0, value)
            self.assertIn("[server] allowed-origins", log)


if __name__ == "__main__":
    h.main()
