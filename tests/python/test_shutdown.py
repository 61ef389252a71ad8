#!/usr/bin/python3
"""SIGTERM with many clients: every one gets its 1001 "server shutting down" close frame, none
a leave event on the way out, and the daemon exits 0. chathub-bench's shutdown mode opens the
connections, sends the signal and counts the close frames (no timings are asserted; the
19,000-client figures are in docs/performance.md)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

N = 1500  # three of chat_hub_close_all()'s batches of 500


class ShutdownTests(unittest.TestCase):
    def setUp(self):
        h.raise_nofile_limit(4 * N)
        self.bench = os.environ.get("CHATHUB_BENCH")
        self.assertTrue(self.bench and os.access(self.bench, os.X_OK), "CHATHUB_BENCH is not set")
        self.daemon = h.Daemon(config={"limits": {"max-connections-per-user": 0}},
                               nofile=4 * N).start()
        self.addCleanup(self.daemon.cleanup)

    def shutdown(self, *extra):
        out = subprocess.run([self.bench, "shutdown", "--secret-file", self.daemon.secret_path,
                              "--port", str(self.daemon.port), "-n", str(N), "--rate", "0",
                              "--duration", "1", "--pid", str(self.daemon.proc.pid),
                              "--json", "-q", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=h.scaled(120))
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        self.assertEqual(len(rows), 1, out.stdout)
        self.assertEqual(self.daemon.wait(10), 0, self.daemon.log_text()[-2000:])
        return rows[0]

    def assert_every_client_got_1001(self, row):
        self.assertEqual(row["connected"], N, row)
        self.assertEqual(row["got_1001"], N, row)
        self.assertEqual(row["conns_lost"], 0, row)
        self.assertEqual(row["open_at_end"], 0, row)
        self.assertEqual(row["leave_events"], 0, row)

    def test_idle_clients(self):
        """1,500 connections that joined nothing."""
        self.assert_every_client_got_1001(self.shutdown())

    def test_one_room(self):
        """1,500 members of one room: those closed in the first batches leave the room while
        the others are still open, yet nobody is sent their leave (they all go)."""
        self.assert_every_client_got_1001(self.shutdown("--join", "--rooms", "1"))

    def test_rooms_of_ten(self):
        self.assert_every_client_got_1001(self.shutdown("--join", "--rooms", str(N // 10)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
