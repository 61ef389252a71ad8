#!/usr/bin/python3
"""chathubd's health checks, /healthz and /readyz on the WebSocket's own listener, through
the real process:

* /healthz answers 200 {"status":"ok"} while the main loop runs; /readyz 200 with its checks;
  both JSON, Cache-Control: no-store, GET and HEAD (no body), other methods 405;
* neither counts toward the per-address upgrade rate, nor needs a token;
* /readyz is 503 while the listener is short of file descriptors, and ready again after;
* /readyz is 503 while the SQLite store fails (a full tmpfs), and 200 once a group commit
  succeeds again.

Redis (the store's connections) is in test_health_redis.py.
"""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402


def probe(port, path, method="GET"):
    """One request to @path on a new connection; returns the HTTPResponse, closed."""
    r = h.http_request(port, method=method, path=path)
    r.close()
    return r


CTL = os.environ.get("CHATHUBCTL") or os.path.join(h.REPO_ROOT, "_build", "src", "ctl", "chathubctl")


def ctl_ready(port, *args):
    """`chathubctl ready` (what the systemd unit's ExecStartPost runs) against @port."""
    return subprocess.run([CTL, "ready", *args, "http://127.0.0.1:%d/ws" % port],
                          capture_output=True, text=True, timeout=h.scaled(30))


def wait_readiness(test, port, status, timeout=10.0):
    """Polls /readyz until it answers @status; returns that response."""
    deadline = time.monotonic() + h.scaled(timeout)
    while True:
        r = probe(port, "/readyz")
        if r.status == status:
            return r
        if time.monotonic() > deadline:
            test.fail("/readyz still answers %d %r, not %d" % (r.status, r.body, status))
        time.sleep(0.05)


class HealthTests(unittest.TestCase):
    """The answers of a healthy daemon, and what the checks do not cost."""

    # one upgrade per address at most: a probe that counted would use it up
    DAEMON_CONFIG = {"limits": {"upgrades-per-second": 1, "upgrade-burst": 1}}

    def setUp(self):
        self.daemon = h.Daemon(config=self.DAEMON_CONFIG)
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def check_common(self, r):
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("Connection"), "close")

    def test_healthz(self):
        r = probe(self.daemon.port, "/healthz")
        self.assertEqual(r.status, 200, r.body)
        self.check_common(r)
        self.assertEqual(r.json(), {"status": "ok"})

    def test_readyz(self):
        r = probe(self.daemon.port, "/readyz")
        self.assertEqual(r.status, 200, r.body)
        self.check_common(r)
        self.assertEqual(r.json(), {"status": "ready",
                                    "checks": {"listener": "ok", "store": "ok"}})

    def test_head(self):
        for path in ("/healthz", "/readyz"):
            with self.subTest(path=path):
                get = probe(self.daemon.port, path)
                r = probe(self.daemon.port, path, method="HEAD")
                self.assertEqual(r.status, 200)
                self.check_common(r)
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("Content-Length"), str(len(get.body)))

    def test_other_methods(self):
        for path in ("/healthz", "/readyz"):
            for method in ("POST", "PUT", "DELETE"):
                with self.subTest(path=path, method=method):
                    r = probe(self.daemon.port, path, method=method)
                    self.assertEqual(r.status, 405, r.body)
                    self.assertEqual(r.header("Allow"), "GET, HEAD")
                    self.assertEqual(r.json()["error"], "method_not_allowed")

    def test_not_subject_to_the_upgrade_rate(self):
        for _ in range(20):
            self.assertEqual(probe(self.daemon.port, "/readyz").status, 200)
            self.assertEqual(probe(self.daemon.port, "/healthz").status, 200)
        # the address's one upgrade is still there, and the next is refused
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(h.next_user_id()))
        ws.close()
        r = h.http_request(self.daemon.port, path=h.ws_path(self.daemon.token(1)),
                           headers=h.upgrade_headers())
        r.close()
        self.assertEqual(r.status, 429, r.body)
        self.assertEqual(r.json()["error"], "too_many_requests")
        # and an address over its rate is still probed
        self.assertEqual(probe(self.daemon.port, "/readyz").status, 200)

    def test_other_paths_still_404(self):
        for path in ("/healthz/", "/readyz?x=1x", "/health", "/ready", "/Healthz"):
            with self.subTest(path=path):
                r = probe(self.daemon.port, path)
                if path.startswith("/readyz?"):
                    # the query is not part of the path
                    self.assertEqual(r.status, 200, r.body)
                else:
                    self.assertEqual(r.status, 404, r.body)


class DescriptorTests(unittest.TestCase):
    """At the open-file limit the listener pauses; /readyz says so."""

    NOFILE = 64

    def setUp(self):
        self.daemon = h.Daemon(nofile=self.NOFILE)
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def test_out_of_descriptors(self):
        d = self.daemon
        self.assertEqual(probe(d.port, "/readyz").status, 200)
        # connections that never send a request head hold a descriptor each
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(self.NOFILE + 16):
            idle.append(socket.create_connection(("127.0.0.1", d.port)))
        self.assertTrue(d.wait_for_log(r"Out of file descriptors"), d.log_text())
        for s in idle:
            s.close()
        idle.clear()
        r = wait_readiness(self, d.port, 503)
        self.assertEqual(r.json(), {"status": "not ready",
                                    "checks": {"listener": "out of descriptors",
                                               "store": "ok"}})
        # liveness does not change: the process serves
        self.assertEqual(probe(d.port, "/healthz").status, 200)
        # chathubctl ready --wait asks until the listener has descriptors again
        result = ctl_ready(d.port, "--wait", "20")
        self.assertEqual(result.returncode, 0, result)
        self.assertEqual(json.loads(result.stdout)["checks"]["listener"], "ok")
        wait_readiness(self, d.port, 200)


class FullDiskTests(h.FullDiskMixin, unittest.TestCase):
    """The database on a 4 MiB tmpfs that a filler file fills up after chathubd started."""

    def test_failing_store(self):
        d = self.daemon
        room = h.next_room_id()
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        self.addCleanup(ws.close)
        ws.send_json({"type": "join", "room_id": room})
        self.assertEqual(ws.recv_json()["type"], "join")
        self.assertEqual(self.send(ws, room, "before")["type"], "message")
        self.assertEqual(probe(d.port, "/readyz").status, 200)

        self.fill()
        frame = self.send(ws, room, "full")
        self.assertEqual((frame["type"], frame.get("code")), ("error", "unavailable"), frame)
        r = probe(d.port, "/readyz")
        self.assertEqual(r.status, 503, r.body)
        self.assertEqual(r.json(), {"status": "not ready",
                                    "checks": {"listener": "ok", "store": "failing"}})
        self.assertEqual(probe(d.port, "/healthz").status, 200)
        # chathubctl ready: exit 1 with the body, also after --wait ran out
        for args in ((), ("--wait", "1")):
            result = ctl_ready(d.port, *args)
            self.assertEqual(result.returncode, 1, result)
            self.assertEqual(json.loads(result.stdout)["checks"]["store"], "failing")

        # ready again once a group commit succeeds
        self.remove_filler()
        self.assertEqual(self.send(ws, room, "after")["type"], "message")
        r = probe(d.port, "/readyz")
        self.assertEqual(r.status, 200, r.body)
        result = ctl_ready(d.port)
        self.assertEqual(result.returncode, 0, result)
        self.assertEqual(json.loads(result.stdout)["status"], "ready")
        self.assertEqual(r.json()["checks"]["store"], "ok")


if __name__ == "__main__":
    h.main()
