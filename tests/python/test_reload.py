#!/usr/bin/python3
"""Key rotation through the real daemon: SIGHUP re-reads chathub.conf's keys ([auth] and
[key:ID] groups) and limits while clients stay connected. A token's kid picks its key; a
token without kid is tried with each key; a removed key's new tokens get 401 while the
connections it admitted stay up; a bad file keeps the running keys and logs why; a limit
change applies to connections opened after the reload."""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

SECRET_A = h.DEFAULT_SECRET
SECRET_B = "the-second-key-of-the-rotation-0123456789-0123456789-0123456789"


def text_frames(texts):
    return b"".join(h.encode_frame(h.OP_TEXT, t) for t in texts)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + h.scaled(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def recv_message(ws):
    """The next message, past the join and leave events of the others."""
    while True:
        frame = ws.recv_json()
        if frame["type"] not in ("join", "leave"):
            return frame


class ReloadTests(unittest.TestCase):
    def setUp(self):
        self.daemon = h.Daemon()          # [auth] secret-file: key A, without id
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        self.b_path = os.path.join(self.daemon.tmp.name, "secret-b")
        with open(self.b_path, "w", encoding="utf-8") as f:
            f.write(SECRET_B + "\n")
        self.reloads = 0

    def tearDown(self):
        alive = self.daemon.alive()
        self.assertEqual(self.daemon.stop(), 0, self.daemon.log_text()[-3000:])
        self.assertTrue(alive)

    # -- helpers -------------------------------------------------------------
    def token(self, secret, user_id, kid=None):
        header = {"kid": kid} if kid is not None else None
        return h.hs_token({"user_id": user_id, "exp": h.now() + 3600}, secret, header=header)

    def connect(self, token, room):
        ws = h.RawWS.connect(self.daemon.port, token)
        self.addCleanup(ws.abort, False)
        ws.send_json({"type": "join", "room_id": room})
        self.assertEqual(ws.recv_json()["type"], "join")
        return ws

    def assert_refused(self, token, description=None):
        r = h.http_request(self.daemon.port, "GET", "/ws", h.upgrade_headers(token=token))
        try:
            self.assertEqual(r.status, 401, r.body)
            if description is not None:
                self.assertEqual(r.json().get("error_description"), description)
        finally:
            r.close()

    def write_config(self, auth_secret=True, keys=(), limits=None, raw=None):
        """chathub.conf as the harness wrote it, with [auth]'s secret-file or not, [key:ID]
        groups {id: path} and [limits] overrides."""
        config = h.merge_config(self.daemon.config, {"limits": limits or {}})
        if not auth_secret:
            config["auth"]["secret-file"] = None
        for key_id, path in keys:
            config["key:" + key_id] = {"secret-file": path}
        with open(self.daemon.config_path, "w", encoding="utf-8") as f:
            f.write(raw if raw is not None else h.render_keyfile(config))

    def reload(self, expect):
        """SIGHUP, then the nth log line of a reload (success or failure) must match."""
        self.reloads += 1
        self.daemon.send_signal(signal.SIGHUP)
        pattern = r"Configuration reloaded from |Reload failed; "
        lines = []

        def enough():
            lines[:] = [line for line in self.daemon.log_text().splitlines()
                        if re.search(pattern, line)]
            return len(lines) >= self.reloads

        self.assertTrue(wait_until(enough), self.daemon.log_text())
        self.assertRegex(lines[self.reloads - 1], expect)

    def exchange(self, one, other, room, text):
        one.send_json({"type": "message", "room_id": room, "content": text + " 1"})
        self.assertEqual(recv_message(other)["content"], text + " 1")
        self.assertEqual(recv_message(one)["content"], text + " 1")
        other.send_json({"type": "message", "room_id": room, "content": text + " 2"})
        self.assertEqual(recv_message(one)["content"], text + " 2")
        self.assertEqual(recv_message(other)["content"], text + " 2")

    # -- the rotation --------------------------------------------------------
    def test_rotation_keeps_clients(self):
        room = h.next_room_id()
        a_path = self.daemon.secret_path
        client1 = self.connect(self.token(SECRET_A, 501), room)
        # B is not a key yet
        self.assert_refused(self.token(SECRET_B, 502, kid="b"))

        # 1. A and B, both with ids
        self.write_config(auth_secret=False, keys=[("a", a_path), ("b", self.b_path)])
        self.reload(r"2 token keys valid: a \(HS256\), b \(HS256\)$")
        client2 = self.connect(self.token(SECRET_B, 502, kid="b"), room)
        self.exchange(client1, client2, room, "both keys")
        # without kid, each key is tried
        client3 = self.connect(self.token(SECRET_B, 503), room)
        client3.abort()
        self.connect(self.token(SECRET_A, 504, kid="a"), room).abort()
        # a kid picks its key, and only it
        self.assert_refused(self.token(SECRET_B, 505, kid="a"), "The token signature is invalid")
        self.assert_refused(self.token(SECRET_B, 506, kid="c"),
                            "The token names an unknown key id")

        # 2. only B: A's new tokens are refused, A's client stays
        self.write_config(auth_secret=False, keys=[("b", self.b_path)])
        self.reload(r"1 token key valid: b \(HS256\)$")
        self.assert_refused(self.token(SECRET_A, 507), "The token signature is invalid")
        self.assert_refused(self.token(SECRET_A, 508, kid="a"),
                            "The token names an unknown key id")
        self.exchange(client1, client2, room, "after the old key went")
        self.connect(self.token(SECRET_B, 509), room).abort()
        self.assertIsNone(self.daemon.wait_for_log(r"need a restart", timeout=0))

        # 3. bad files: nothing changes, and the log says why
        short = os.path.join(self.daemon.tmp.name, "short")
        with open(short, "w") as f:
            f.write("too short")
        unreadable = os.path.join(self.daemon.tmp.name, "no-such-secret")
        bad = [
            ("[auth\nsecret-file=x\n", r"Reload failed; the running configuration stays: "
             r"bad configuration: .*chathubd\.conf: "),
            (None, r"unknown key “secret-fil” in group \[key:c\] \(did you mean “secret-file”\?\)"),
            (None, r"\[key:short\] secret-file: the secret is 9 bytes long; HS256 needs at least 32"),
            (None, r"\[key:gone\] secret-file: .*no-such-secret"),
        ]
        for i, (raw, expect) in enumerate(bad):
            if i == 1:
                self.write_config(auth_secret=False, keys=[("b", self.b_path)])
                with open(self.daemon.config_path, "a") as f:
                    f.write("[key:c]\nsecret-fil=%s\n" % a_path)
            elif i == 2:
                self.write_config(auth_secret=True, keys=[("b", self.b_path), ("short", short)])
            elif i == 3:
                self.write_config(auth_secret=True, keys=[("gone", unreadable)])
            else:
                self.write_config(raw=raw)
            self.reload(expect)
            # B still valid, A still refused
            self.connect(self.token(SECRET_B, 510 + i, kid="b"), room).abort()
            self.assert_refused(self.token(SECRET_A, 520 + i))
        self.exchange(client1, client2, room, "after the bad files")

    def test_limits_apply_after_reload(self):
        room = h.next_room_id()
        frames = text_frames('{"type":"message","room_id":%d,"content":"%d"}' % (room, i)
                             for i in range(3))
        before = self.connect(self.token(SECRET_A, 601), room)
        before.send_raw(frames)
        self.assertEqual([recv_message(before)["type"] for _ in range(3)], ["message"] * 3)

        # one message a second, in bursts of 2 (the join was the first)
        self.write_config(limits={"messages-per-second": 1, "message-burst": 2})
        self.reload(r"1 token key valid: \[auth\] secret-file \(HS256\)$")
        after = self.connect(self.token(SECRET_A, 602), room)
        after.send_raw(frames)
        got = [recv_message(after) for _ in range(3)]
        self.assertEqual([m["type"] for m in got], ["message", "error", "error"], got)
        self.assertEqual(got[1]["code"], "rate_limited")
        self.assertIn("at most 1 per second, in bursts of 2", got[1]["content"])
        # and the connection that was open before: the operator lowering a limit during a
        # flood means the clients already there (at most a burst of 2 goes through)
        before.send_raw(frames)
        got = []
        while len(got) < 3:     # its own messages and errors, past what `after` sent
            frame = recv_message(before)
            if frame.get("from", 601) == 601:
                got.append(frame)
        self.assertEqual(got[0]["type"], "message", got)
        self.assertEqual(got[2]["type"], "error", got)
        self.assertEqual(got[2]["code"], "rate_limited", got)

    def test_origins_apply_after_reload(self):
        origin = {"Origin": "https://chat.example.org"}
        token = self.token(SECRET_A, 651)

        def status():
            r = h.http_request(self.daemon.port, "GET", "/ws", h.upgrade_headers(token=token, extra=origin))
            r.close()
            return r.status

        self.assertEqual(status(), 403)     # same-origin only by default
        self.write_config()
        with open(self.daemon.config_path) as f:
            config = f.read().replace("[server]\n", "[server]\nallowed-origins=https://chat.example.org\n")
        with open(self.daemon.config_path, "w") as f:
            f.write(config)
        self.reload(r"1 token key valid")
        self.assertEqual(status(), 101)
        self.assertFalse(re.search(r"need a restart", self.daemon.log_text()), self.daemon.log_text())

    def test_restart_only_settings_are_named(self):
        room = h.next_room_id()
        client = self.connect(self.token(SECRET_A, 701), room)
        self.write_config()
        with open(self.daemon.config_path, "a") as f:
            f.write("[dbus]\nexit-on-idle=30\n")
        with open(self.daemon.config_path) as f:
            config = f.read().replace("[server]\n", "[server]\npath=/chat\n")
        with open(self.daemon.config_path, "w") as f:
            f.write(config)
        self.reload(r"1 token key valid")
        self.assertTrue(self.daemon.wait_for_log(
            r"Changed settings that need a restart, ignored until then: \[server\] path, "
            r"\[dbus\] exit-on-idle$"))
        # still served where it was, and the client is still there
        self.connect(self.token(SECRET_A, 702), room).abort()
        client.send_json({"type": "message", "room_id": room, "content": "still"})
        self.assertEqual(recv_message(client)["content"], "still")


if __name__ == "__main__":
    unittest.main(verbosity=2)
