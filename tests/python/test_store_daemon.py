#!/usr/bin/python3
"""chathubd and its message store ([store] in chathub.conf), through the real process and a
real SQLite file:

* where the database lives by default ($STATE_DIRECTORY, $XDG_STATE_HOME), its directory
  created private (0700); backend=memory writes no file;
* a file it cannot use (corrupt, written by a newer chathub, unreadable) stops it with exit
  status 1 and one line naming the file, and the file is left as it was;
* a restart on the same file (SIGTERM, start again) finds the schema intact, and more
  SIGTERMs while the store closes do not change the exit status;
* the store's figures at --verbose;
* a full disk for real: a small tmpfs filled up while the daemon runs; chathubd keeps
  serving, logs the failure once and the recovery once the space is back. The messages that
  reach the store there come from the hub's store wiring (ChatHub:store).
"""

import os
import re
import signal
import sqlite3
import stat
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

FAILED = r"The message store failed"
RECOVERED = r"The message store recovered"


def ping(test, ws):
    """A JSON ping is answered: the daemon serves."""
    ws.send_json({"type": "ping"})
    while True:
        frame = ws.recv_json(answer_pings=True)
        if frame.get("type") == "pong":
            return
        test.assertNotEqual(frame.get("type"), "close", frame)


def start_expecting_exit(test, config, env=None):
    """Runs chathubd on @config, which must refuse to start; returns its one stderr line."""
    rc, err = h.run_daemon_expect_exit(config=config, env=env)
    lines = [line for line in err.splitlines() if line.strip()]
    test.assertIsNotNone(rc, "chathubd started listening; stderr:\n%s" % err)
    test.assertEqual(rc, 1, "exit status; stderr:\n%s" % err)
    test.assertEqual(len(lines), 1, "expected one line on stderr, got:\n%s" % err)
    test.assertTrue(lines[0].startswith("chathubd: "), lines[0])
    test.assertNotIn("ws://", err)
    return lines[0]


def schema_of(path):
    """The database's schema version and tables, read with Python's own sqlite3."""
    with sqlite3.connect("file:%s?mode=ro" % path, uri=True) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema "
                                                 "WHERE type = 'table'")}
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
    return version, tables, check


class StoreFileTests(unittest.TestCase):
    """Where the database is, and what happens to files it cannot use."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-store-")
        self.addCleanup(self.tmp.cleanup)
        self.path = os.path.join(self.tmp.name, "chathub.db")

    def run_daemon(self, config=None, env=None, args=()):
        d = h.Daemon(config=h.merge_config({"store": {"path": self.path}}, config), env=env,
                     args=args)
        self.addCleanup(d.cleanup)
        return d.start()

    def test_default_path_xdg_state_home(self):
        state = os.path.join(self.tmp.name, "state")
        d = self.run_daemon({"store": {"path": None}},
                            env={"XDG_STATE_HOME": state, "STATE_DIRECTORY": None})
        path = os.path.join(state, "chathub", "chathub.db")
        self.assertTrue(d.wait_for_log(re.escape("Messages are stored in %s (sync=normal)"
                                                 % path)), d.log_text())
        self.assertEqual(d.stop(), 0, d.log_text())
        self.assertTrue(os.path.isfile(path))
        # the directories it made are private: messages are
        for directory in (state, os.path.dirname(path)):
            self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700, directory)

    def test_default_path_state_directory(self):
        # systemd's StateDirectory= wins over the user's
        state = os.path.join(self.tmp.name, "lib")
        os.mkdir(state, 0o750)
        d = self.run_daemon({"store": {"path": None, "sync": "full"}},
                            env={"XDG_STATE_HOME": os.path.join(self.tmp.name, "xdg"),
                                 "STATE_DIRECTORY": state})
        path = os.path.join(state, "chathub.db")
        self.assertTrue(d.wait_for_log(re.escape("Messages are stored in %s (sync=full)" % path)),
                        d.log_text())
        self.assertEqual(d.stop(), 0, d.log_text())
        self.assertTrue(os.path.isfile(path))
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "xdg")))
        # an existing directory keeps its mode: it is systemd's (or the admin's)
        self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o750)

    def test_memory_backend_writes_no_file(self):
        d = self.run_daemon({"store": {"backend": "memory"}})
        self.assertTrue(d.wait_for_log("Messages are kept in memory only"), d.log_text())
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        ping(self, ws)
        ws.close()
        self.assertEqual(d.stop(), 0, d.log_text())
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_corrupt_file(self):
        garbage = bytes(range(256)) * 64
        with open(self.path, "wb") as f:
            f.write(garbage)
        line = start_expecting_exit(self, {"store": {"path": self.path}})
        self.assertIn(self.path, line)
        self.assertIn("is not a chathub message store, or it is damaged", line)
        # never recreated
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), garbage)

    def test_newer_schema(self):
        self.run_daemon().stop()
        with sqlite3.connect(self.path) as db:
            db.execute("PRAGMA user_version = 1000")
        line = start_expecting_exit(self, {"store": {"path": self.path}})
        self.assertIn(self.path, line)
        self.assertIn("written by a newer chathub (schema version 1000", line)
        self.assertEqual(schema_of(self.path)[0], 1000)

    def test_unreadable(self):
        # root reads every file: a directory where the file should be cannot be opened
        os.mkdir(self.path)
        line = start_expecting_exit(self, {"store": {"path": self.path}})
        self.assertIn("Cannot open the message store “%s”" % self.path, line)
        self.assertTrue(os.path.isdir(self.path))
        self.assertEqual(os.listdir(self.path), [])

    def test_directory_cannot_be_made(self):
        blocker = os.path.join(self.tmp.name, "file")
        open(blocker, "w").close()
        line = start_expecting_exit(self, {"store": {"path": os.path.join(blocker, "x.db")}})
        self.assertIn("Cannot create the directory “%s” for the message store" % blocker, line)

    def test_restart_on_the_same_file(self):
        first = self.run_daemon()
        ws = h.RawWS.connect(first.port, first.token(h.next_user_id()))
        ping(self, ws)
        ws.close()
        self.assertEqual(first.stop(), 0, first.log_text())
        version, tables, check = schema_of(self.path)
        self.assertEqual(version, 1)
        self.assertTrue({"meta", "streams", "messages"} <= tables, tables)
        self.assertEqual(check, "ok")

        second = self.run_daemon()
        ws = h.RawWS.connect(second.port, second.token(h.next_user_id()))
        ping(self, ws)
        ws.close()
        self.assertEqual(second.stop(), 0, second.log_text())
        self.assertEqual(schema_of(self.path), (version, tables, "ok"))

    def test_sigterm_again_while_closing(self):
        # systemd sends one SIGTERM, an impatient operator several: one that arrives while
        # the store is being closed must not kill chathubd and turn its status into 143
        for _ in range(5):
            d = self.run_daemon()
            while d.proc.poll() is None:
                try:
                    d.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0002)
            self.assertEqual(d.wait(10), 0, d.log_text())

    def test_statistics_at_verbose(self):
        # the figures under GetStatistics' names
        figures = (r"Message store, final figures: store-stored=\d+ store-trimmed=\d+ "
                   r"store-failed=\d+ store-groups=\d+ store-largest-group=\d+ "
                   r"store-commit-time-us=\d+ store-retained=\d+$")
        quiet = self.run_daemon()
        self.assertEqual(quiet.stop(), 0)
        self.assertNotRegex(quiet.log_text(), r"Message store\b")
        verbose = self.run_daemon(args=["--verbose"])
        self.assertEqual(verbose.stop(), 0)
        self.assertRegex(verbose.log_text(), re.compile(figures, re.M))


class FullDiskTests(h.FullDiskMixin, unittest.TestCase):
    """The database on a 4 MiB tmpfs that a filler file fills up after chathubd started."""

    def test_full_disk(self):
        d = self.daemon
        room = h.next_room_id()
        ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
        ws.send_json({"type": "join", "room_id": room})
        self.assertEqual(ws.recv_json()["type"], "join")
        self.assertEqual(self.send(ws, room, "before")["type"], "message")

        self.fill()
        for i in range(3):
            frame = self.send(ws, room, "full %d" % i)
            self.assertEqual((frame["type"], frame.get("code")), ("error", "unavailable"), frame)
            ping(self, ws)
        self.assertTrue(d.alive())
        self.assertTrue(d.wait_for_log(FAILED), d.log_text())
        # once per failure streak, not once per message
        self.assertEqual(len(re.findall(FAILED, d.log_text())), 1, d.log_text())
        self.assertNotRegex(d.log_text(), RECOVERED)

        self.remove_filler()
        frame = self.send(ws, room, "after")
        self.assertEqual(frame["type"], "message", frame)
        self.assertTrue(d.wait_for_log(RECOVERED), d.log_text())
        self.assertEqual(len(re.findall(RECOVERED, d.log_text())), 1, d.log_text())
        ping(self, ws)
        ws.close()
        self.assertEqual(d.stop(), 0, d.log_text())


if __name__ == "__main__":
    h.main()
