#!/usr/bin/python3
"""chathub-bench against a real chathubd, small: the benchmark works and, through the coalescing
write path, every message reaches every receiver (fan-out in one room and in many rooms, and
with a flooder beside it; a storm with joins, idle connections). Correctness only: speed is
never asserted here."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import chathub_harness as h  # noqa: E402

BENCH = os.environ.get("CHATHUB_BENCH", "_build/tools/bench/chathub-bench")


class BenchSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = h.Daemon().start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.cleanup()

    def bench(self, *args):
        command = [BENCH, "--secret-file", self.daemon.secret_path, "--port",
                   str(self.daemon.port), "--pid", str(self.daemon.proc.pid), "--json", "-q",
                   "--timeout", "60"] + list(args)
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=90)
        self.assertEqual(run.returncode, 0, run.stderr)
        steps = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        self.assertTrue(steps, run.stdout)
        return steps

    def assert_complete(self, step):
        self.assertEqual(step["sent"], step["sent_target"], step)
        self.assertEqual(step["delivered"], step["expected"], step)
        self.assertEqual(step["errors"], 0, step)
        self.assertEqual(step["server_closes"], 0, step)
        self.assertEqual(step["bad_frames"], 0, step)

    def test_fanout_one_room(self):
        steps = self.bench("fanout", "-n", "200", "--rates", "200,400", "--duration", "1",
                           "--size", "256")
        self.assertEqual(len(steps), 2)
        for step in steps:
            self.assertEqual(step["expected"], step["sent"] * 200)
            self.assert_complete(step)

    def test_fanout_many_rooms(self):
        (step,) = self.bench("fanout", "-n", "300", "--rooms", "30", "--publishers", "30",
                             "--rates", "300", "--duration", "1")
        self.assert_complete(step)

    def test_fanout_with_flooder(self):
        # every rate twice on the same connections: without the flooder, then with it flooding
        # its own room; bounded by --flood-max so that the server's backlog is, too
        steps = self.bench("fanout", "-n", "100", "--rates", "200,400", "--duration", "1",
                           "--flooder", "--flood-max", "20000", "--drain", "30", "--stall", "5")
        self.assertEqual([(s["rate"], s["flooder"]) for s in steps],
                         [(200, False), (200, True), (400, False), (400, True)])
        for step in steps:
            self.assertEqual(step["receivers"], 100, step)
            self.assertEqual(step["expected"], step["sent"] * 100, step)
            self.assert_complete(step)
            # the flood stays in the flooder's room: no receiver gets a message without data.t
            self.assertEqual(step["messages_without_t"], 0, step)
            self.assertTrue(step["flooder_open"], step)
            if step["flooder"]:
                self.assertGreater(step["flood_sent"], 0, step)
                self.assertLessEqual(step["flood_sent"], 20000, step)
                self.assertGreater(step["flood_echoes"], 0, step)
            else:
                self.assertEqual(step["flood_sent"], 0, step)

    def test_storm_with_joins(self):
        (step,) = self.bench("storm", "-n", "300", "--rate", "0", "--join")
        self.assertEqual(step["connected"], 300, step)
        self.assertEqual(step["failed"], 0, step)
        self.assertEqual(step["joined"], 300, step)

    def test_idle(self):
        (step,) = self.bench("idle", "-n", "300", "--rate", "0", "--duration", "1")
        self.assertEqual(step["connected"], 300, step)
        self.assertEqual(step["open_at_end"], 300, step)
        self.assertEqual(step["conns_lost"], 0, step)


if __name__ == "__main__":
    h.main()
