#!/usr/bin/python3
"""tools/soak through the real daemon, briefly: healthy clients get every message while
clean, reset, vanished and slow clients churn around them, the daemon's descriptors return to
their baseline, and the server closes the vanished ones (idle timeout, 1001) and the slow ones
(1008). Then the verdict's other side: a healthy client that drops one delivery fails the run.

A run of seconds cannot judge the RSS criterion (the daemon's caches are still growing), so it
is given a wide tolerance here; the 20-minute figures are in docs/performance.md."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

SOAK = os.path.join(h.REPO_ROOT, "tools", "soak", "soak")


def run_soak(seconds, *extra):
    with tempfile.TemporaryDirectory(prefix="chathub-soak-test-") as tmp:
        result = os.path.join(tmp, "result.json")
        out = subprocess.run([sys.executable, SOAK, "--minutes", str(seconds / 60),
                              "--interval", "3", "--warmup", "3", "--healthy", "60",
                              "--rooms", "6", "--rate", "60", "--churn-rate", "15",
                              "--mix", "clean=50,reset=25,vanish=15,slow=10",
                              "--idle-timeout", "4", "--vanish-hold", "12", "--slow-hold", "12",
                              "--slow-history-rate", "40", "--reconnect-every", "3",
                              "--rss-tolerance", "50", "--json", result, *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=h.scaled(30) + 2 * seconds)
        try:
            with open(result) as f:
                figures = json.load(f)
        except OSError:
            figures = None
    return out, figures


class SoakTests(unittest.TestCase):
    def test_healthy_clients_lose_nothing(self):
        out, r = run_soak(15)
        report = out.stdout[-3000:] + out.stderr[-3000:]
        self.assertIsNotNone(r, report)
        self.assertEqual(out.returncode, 0, report)
        self.assertEqual(r["verdict"], {"rss": True, "fds": True, "lost": True}, report)
        self.assertGreater(r["sent"], 0, report)
        self.assertEqual(r["delivered"], r["expected"], report)
        self.assertEqual(r["lost"] + r["gaps"] + r["duplicates"] + r["errors"], 0, report)
        self.assertGreater(r["reconnects"], 0, report)
        self.assertEqual(r["recovered"], r["reconnects"], report)
        self.assertLessEqual(r["fds_end"], r["fds_baseline"], report)
        # every kind of churn ran, and the server closed the ones that stopped listening
        for kind in ("clean", "reset", "vanish", "slow"):
            self.assertGreater(r["churn_started"][kind], 0, (kind, report))
        self.assertGreater(r["churn_done"]["clean"], 0, report)
        self.assertGreater(r["server_closes"]["1000"], 0, report)
        self.assertGreater(r["server_closes"]["1001"], 0, report)  # vanished: idle timeout
        self.assertGreater(r["server_closes"]["1006"], 0, report)  # resets
        self.assertGreater(r["server_closes"]["1008"], 0, report)  # slow consumers

    def test_a_lost_delivery_fails_the_run(self):
        out, r = run_soak(4, "--lose", "1", "--mix", "clean=1")
        report = out.stdout[-3000:] + out.stderr[-3000:]
        self.assertEqual(out.returncode, 1, report)
        self.assertIsNotNone(r, report)
        self.assertFalse(r["verdict"]["lost"], report)
        self.assertEqual(r["lost"], 1, report)
        self.assertIn("FAIL lost", out.stdout, report)


if __name__ == "__main__":
    unittest.main(verbosity=2)
