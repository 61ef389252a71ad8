#!/usr/bin/python3
"""``chathubctl chat`` driven through a pseudo-terminal against the real chathubd: it joins a
room, sends to it, shows another user's messages (control characters made harmless), sends a
direct message, answers /who and /history, and shows a restart of the daemon as one
"connection lost" line, one "reconnected" line and the room's recovery, with nothing doubled."""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

CTL = os.environ.get("CHATHUBCTL") or os.path.join(h.REPO_ROOT, "_build", "src", "ctl", "chathubctl")


class Terminal:
    """chathubctl chat on the slave side of a pty; the test reads and types on the master."""

    def __init__(self, args, cwd=None):
        self.master, slave = pty.openpty()
        env = dict(os.environ, LC_ALL="C.UTF-8")
        self.proc = subprocess.Popen([CTL, "chat"] + args, stdin=slave, stdout=slave,
                                     stderr=slave, env=env, close_fds=True, cwd=cwd)
        os.close(slave)
        self.text = ""
        self.seen = 0  # how far expect() has consumed

    def _read(self, timeout):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program exited
            return False
        self.text += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(data)

    def expect(self, regex, timeout=10.0):
        """Waits for a line matching regex after what was already consumed; returns the match."""
        pattern = re.compile(regex, re.M)
        deadline = time.monotonic() + h.scaled(timeout)
        while True:
            m = pattern.search(self.text, self.seen)
            if m:
                self.seen = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.2)) and self.proc.poll() is not None):
                raise AssertionError("no line matching %r; the terminal shows:\n%s" % (regex, self.text))

    def settle(self, seconds=0.3):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._read(0.05)

    def type(self, line):
        os.write(self.master, (line + "\n").encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


class TestCtlChat(unittest.TestCase):
    def setUp(self):
        self.daemon = h.Daemon()
        self.daemon.start()
        self.term = None

    def tearDown(self):
        if self.term:
            self.term.close()
        self.daemon.stop()
        self.daemon.cleanup()

    def other(self, user_id, room):
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(user_id))
        ws.send_json({"type": "join", "room_id": room})
        while ws.recv_json(timeout=h.scaled(5))["type"] != "join":
            pass
        return ws

    def restart(self, signum=signal.SIGTERM):
        self.daemon.stop(signum=signum)
        self.daemon._reader.join(h.scaled(2))
        self.daemon.proc.stderr.close()
        self.daemon.args = ["--port", str(self.daemon.port)]
        self.daemon.log.clear()
        self.daemon.start()

    def test_chat_through_a_pty(self):
        uri = self.daemon.ws_uri()
        term = self.term = Terminal(["--uri", uri, "--secret-file", self.daemon.secret_path,
                                     "--user-id", "1"])
        term.expect(r"^\* connected to %s as user 1$" % re.escape(uri))
        term.type("/join 5")
        term.expect(r"^\* 1 joined #5$")

        bob = self.other(2, 5)
        term.expect(r"^\* 2 joined #5$")
        bob.send_json({"type": "message", "room_id": 5, "content": "hello from 2"})
        term.expect(r"^\d\d:\d\d:\d\d #5 <2> hello from 2$")
        term.type("hi there")
        term.expect(r"^\d\d:\d\d:\d\d #5 <1> hi there$")
        frame = bob.recv_json(timeout=h.scaled(5))
        while frame["type"] != "message" or frame.get("from") != 1:
            frame = bob.recv_json(timeout=h.scaled(5))
        self.assertEqual((frame["room_id"], frame["content"]), (5, "hi there"))

        bob.send_json({"type": "message", "room_id": 5, "content": "\x1b[31mred"})
        term.expect(r"^\d\d:\d\d:\d\d #5 <2> \?\[31mred$")
        self.assertNotIn("\x1b", term.text)
        term.type("/msg 2 psst")
        term.expect(r"^\d\d:\d\d:\d\d DM→2 <1> psst$")
        term.type("/who")
        term.expect(r"^\* in #5: 1 2$")
        term.type("/history")
        term.expect(r"<2> hello from 2$")
        term.expect(r"<1> hi there$")
        term.expect(r"<2> \?\[31mred$")

        # a restart: the terminal says so in one line each, and recovers the room
        bob.close()
        self.restart()
        term.expect(r"^\* connection lost \(1001 server shutting down\); reconnecting$")
        term.expect(r"^\* reconnected$")
        term.expect(r"^\* #5: recovered, nothing missed$")
        carol = self.other(3, 5)
        carol.send_json({"type": "message", "room_id": 5, "content": "after the restart"})
        term.expect(r"^\d\d:\d\d:\d\d #5 <3> after the restart$")
        term.settle()
        self.assertEqual(term.text.count("after the restart"), 1, term.text)
        self.assertEqual(term.text.count("* reconnected"), 1, term.text)
        carol.close()

        term.type("/quit")
        self.assertEqual(term.proc.wait(timeout=h.scaled(5)), 0)

    def test_piped_lines_wait_for_the_connection(self):
        """Lines piped in all at once are read from the first connection on, so none is lost
        to a connection still being opened; the end of the input then leaves."""
        bob = self.other(2, 6)
        result = subprocess.run([CTL, "chat", "--uri", self.daemon.ws_uri(),
                                 "--token", self.daemon.token(1)],
                                input="/join 6\npiped hello\n/quit\n", capture_output=True,
                                text=True, timeout=h.scaled(20), env=dict(os.environ, LC_ALL="C.UTF-8"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNotIn("not sent", result.stdout)
        frame = bob.recv_json(timeout=h.scaled(5))
        while frame["type"] != "message":
            frame = bob.recv_json(timeout=h.scaled(5))
        self.assertEqual((frame["from"], frame["room_id"], frame["content"]), (1, 6, "piped hello"))
        bob.close()

    def test_usage_errors(self):
        for args in ([], ["--uri", "ws://127.0.0.1:1/ws"],
                     ["--uri", "ws://127.0.0.1:1/ws", "--token", "x", "--secret-file", "y"],
                     ["--uri", "ws://127.0.0.1:1/ws", "--secret-file", self.daemon.secret_path]):
            result = subprocess.run([CTL, "chat"] + args, capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=h.scaled(10))
            self.assertEqual(result.returncode, 2, (args, result.stderr))
            self.assertTrue(result.stderr.startswith("chathubctl: "), result.stderr)

    def test_bad_lines(self):
        """Each wrong line says what is wrong and the chat goes on; a line that is not UTF-8
        does not end it; a room the token does not allow is refused and forgotten."""
        term = self.term = Terminal(["--uri", self.daemon.ws_uri(),
                                     "--token", self.daemon.token(1, rooms=[5])])
        term.expect(r"^\* connected to ")
        os.write(term.master, b"caf\xe9 \xff\n")
        term.expect(r"^! not UTF-8, not sent$")
        for line, answer in (("/frob", r"^! unknown command /frob$"),
                             ("/msg 43", r"^! /msg 43: no text to send \(/msg USER TEXT\)$"),
                             ("/msg 43   ", r"^! /msg 43: no text to send \(/msg USER TEXT\)$"),
                             ("/msg abc hi", r"^! /msg: “abc” is not a user number \(1 to 9223372036854775807\)$"),
                             ("/msg", r"^! /msg needs a user number$"),
                             ("/join", r"^! /join needs a room number$"),
                             ("/join -1", r"^! /join: “-1” is not a room number \(1 to 9223372036854775807\)$"),
                             ("/join 9223372036854775808", r"^! /join: “9223372036854775808” is not a room number"),
                             ("/leave x", r"^! /leave: “x” is not a room number"),
                             ("/history", r"^! join a room first: /join ROOM$"),
                             ("/who", r"^! join a room first: /join ROOM$")):
            term.type(line)
            term.expect(answer)

        term.type("/join 5")
        term.expect(r"^\* 1 joined #5$")
        term.type("/join 6")
        term.expect(r"^! forbidden: ")
        # the refused room is not the current one: /who and plain lines go to #5
        term.type("/who")
        term.expect(r"^\* in #5: 1$")
        term.type("still here")
        term.expect(r"^\d\d:\d\d:\d\d #5 <1> still here$")
        # a connection lost without a close frame: no reason, and no stray space
        self.restart(signal.SIGKILL)
        term.expect(r"^\* connection lost \(1006\); reconnecting$")
        term.expect(r"^\* reconnected$")
        self.assertIsNone(term.proc.poll())
        term.type("/quit")
        self.assertEqual(term.proc.wait(timeout=h.scaled(5)), 0)

    def test_failed_attempts_are_shown(self):
        """Nothing listens on the port: the first failed attempt is shown, with its reason, and
        the same reason again only every tenth attempt."""
        term = self.term = Terminal(["--uri", "ws://127.0.0.1:1/ws", "--token", self.daemon.token(1)])
        term.expect(r"^\* could not connect \(1 attempt\): .*refused.*; retrying in \d+\.\d s$")
        # attempt 2 comes within backoff-min * 3 = 1.5 s, attempt 3 within 3.5 s
        term.settle(4)
        self.assertEqual(term.text.count("could not connect"), 1, term.text)
        self.assertIsNone(term.proc.poll())

    def test_refused_token_is_final(self):
        term = self.term = Terminal(["--uri", self.daemon.ws_uri(), "--token", "not.a.token"])
        term.expect(r"^\* disconnected \(401 Unauthorized\)$")
        self.assertEqual(term.proc.wait(timeout=h.scaled(5)), 1)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    unittest.main(verbosity=2)
