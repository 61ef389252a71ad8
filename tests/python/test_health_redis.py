#!/usr/bin/python3
"""/readyz of a chathubd node on Redis ([cluster] backend=redis), through the real process
and a real redis-server started by the test: ready with its "redis" check while the store's
connections are up, 503 while redis-server is stopped, ready again once it is back. /healthz
stays 200 throughout: the process serves.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402
from test_health import probe, wait_readiness  # noqa: E402


class RedisReadinessTests(unittest.TestCase):

    def setUp(self):
        self.redis = h.RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.daemon = h.Daemon(config=h.cluster_config(self.redis))
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def test_redis_stopped_and_back(self):
        d = self.daemon
        r = wait_readiness(self, d.port, 200)
        self.assertEqual(r.json(), {"status": "ready",
                                    "checks": {"listener": "ok", "store": "ok", "redis": "ok"}})

        self.redis.stop()
        r = wait_readiness(self, d.port, 503)
        self.assertEqual(r.json(), {"status": "not ready",
                                    "checks": {"listener": "ok", "store": "failing",
                                               "redis": "disconnected"}})
        self.assertEqual(r.header("Cache-Control"), "no-store")
        r = probe(d.port, "/healthz")
        self.assertEqual((r.status, r.json()), (200, {"status": "ok"}))

        # the same port: the node reconnects with its backoff (5 s at most)
        self.redis.start()
        r = wait_readiness(self, d.port, 200, timeout=20.0)
        self.assertEqual(r.json()["checks"], {"listener": "ok", "store": "ok", "redis": "ok"})
        self.assertEqual(d.stop(), 0, d.log_text())


if __name__ == "__main__":
    h.main()
