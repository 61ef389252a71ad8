#!/usr/bin/python3
"""Protocol 1.1 direct messages through the real daemon (its default store): stored in both
users' streams before they are relayed, delivered to a user who was offline once on its next
connection (and not again), and recovered with `sync` after an abrupt TCP drop."""

import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

UNLIMITED = {"limits": {"messages-per-second": "0"}}


def dm_frames(to, tag, n):
    return b"".join(h.encode_frame(h.OP_TEXT, json.dumps(
        {"type": "message", "to": to, "content": "%s %d" % (tag, i)}).encode())
        for i in range(n))


class DirectMessageBase(h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = UNLIMITED

    def raw(self, user_id=None):
        uid = user_id if user_id is not None else h.next_user_id()
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(uid))
        ws.user_id = uid
        self.addCleanup(ws.abort, False)
        return ws

    def recv_messages(self, ws, n, timeout=10.0):
        got = []
        while len(got) < n:
            m = ws.recv_json(timeout)
            self.assertEqual(m["type"], "message", m)
            got.append(m)
        return got

    def assert_only_pong(self, ws):
        """A ping is answered after everything asked before it: nothing else is on its way."""
        ws.send_json({"type": "ping"})
        m = ws.recv_json()
        self.assertEqual(m["type"], "pong", m)

    def sync(self, ws, since=None, epoch=None):
        request = {"type": "sync"}
        if since is not None:
            request["since"] = since
        if epoch is not None:
            request["epoch"] = epoch
        ws.send_json(request)
        ack = ws.recv_json()
        self.assertEqual(ack["type"], "sync", ack)
        self.assertIsInstance(ack["offset"], int, ack)
        self.assertIsInstance(ack["epoch"], str, ack)
        if since is None:
            self.assertNotIn("recovered", ack)
        else:
            self.assertIsInstance(ack["recovered"], bool, ack)
        return ack


class StoredTests(DirectMessageBase):
    def test_each_copy_has_its_own_streams_offset(self):
        a, b = self.raw(), self.raw()
        a_phone = self.raw(a.user_id)
        self.assertEqual(self.sync(b)["offset"], 0)
        b.send_raw(dm_frames(b.user_id, "note", 1))  # to itself: one entry
        self.assertEqual(self.recv_messages(b, 1)[0]["offset"], 1)
        a.send_raw(dm_frames(b.user_id, "hi", 3))
        got_b = self.recv_messages(b, 3)
        got_a = self.recv_messages(a, 3)
        self.assertEqual([m["offset"] for m in got_b], [2, 3, 4])
        self.assertEqual([m["offset"] for m in got_a], [1, 2, 3])
        # the sender's other connection gets the sender's copy
        self.assertEqual(self.recv_messages(a_phone, 3), got_a)
        for mine, theirs in zip(got_a, got_b):
            self.assertEqual({k: v for k, v in mine.items() if k != "offset"},
                             {k: v for k, v in theirs.items() if k != "offset"})
            self.assertEqual((mine["from"], mine["to"]), (a.user_id, b.user_id))
        self.assertEqual(self.sync(b)["offset"], 4)
        self.assertEqual(self.sync(a)["offset"], 3)
        for ws in (a, a_phone, b):
            self.assert_only_pong(ws)


class OfflineTests(DirectMessageBase):
    def test_sent_while_offline_delivered_once(self):
        a = self.raw()
        b_id = h.next_user_id()
        a.send_raw(dm_frames(b_id, "while away", 3))
        echoes = self.recv_messages(a, 3)  # stored: echoed, no user_offline
        self.assertEqual([m["to"] for m in echoes], [b_id] * 3)
        self.assert_only_pong(a)

        b = self.raw(b_id)
        # right after the upgrade, before the answer to anything b asks
        b.send_json({"type": "ping"})
        got = self.recv_messages(b, 3)
        self.assertEqual([m["content"] for m in got], ["while away %d" % i for i in range(3)])
        self.assertEqual([m["offset"] for m in got], [1, 2, 3])
        self.assertEqual([m["id"] for m in got], [m["id"] for m in echoes])
        self.assertEqual(b.recv_json()["type"], "pong")
        b.close()

        again = self.raw(b_id)
        self.assert_only_pong(again)
        # live ones are live, and are not delivered again either
        a.send_raw(dm_frames(b_id, "live", 1))
        self.assertEqual(self.recv_messages(again, 1)[0]["offset"], 4)
        again.abort()
        third = self.raw(b_id)
        self.assert_only_pong(third)

    def test_only_received_messages_are_delivered(self):
        b_id = h.next_user_id()
        b = self.raw(b_id)
        a_id = h.next_user_id()
        # sent by b while a is offline: b's own stream holds it, but b never gets it again
        b.send_raw(dm_frames(a_id, "to a", 1))
        self.recv_messages(b, 1)
        b.close()
        b = self.raw(b_id)
        self.assert_only_pong(b)
        a = self.raw(a_id)
        self.assertEqual(self.recv_messages(a, 1)[0]["content"], "to a 0")
        self.assert_only_pong(a)


class SyncTests(DirectMessageBase):
    def test_sync_after_abrupt_drop(self):
        a, c = self.raw(), self.raw()
        c_desktop = self.raw(c.user_id)  # online meanwhile: nothing is offline for c
        a.send_raw(dm_frames(c.user_id, "seen", 5))
        seen = self.recv_messages(c, 5)
        self.recv_messages(c_desktop, 5)
        last = seen[-1]["offset"]
        epoch = self.sync(c)["epoch"]
        c.abort()
        a.send_raw(dm_frames(c.user_id, "missed", 100))
        missed = self.recv_messages(c_desktop, 100)
        c_desktop.send_raw(dm_frames(a.user_id, "reply", 1))  # c's stream has sent ones too
        missed += self.recv_messages(c_desktop, 1)

        again = self.raw(c.user_id)
        ack = self.sync(again, since=last, epoch=epoch)
        self.assertTrue(ack["recovered"], ack)
        self.assertEqual(ack["offset"], last + 101)
        self.assertEqual(self.recv_messages(again, 101), missed)  # the frames as relayed
        a.send_raw(dm_frames(c.user_id, "live", 2))
        self.assertEqual([m["offset"] for m in self.recv_messages(again, 2)],
                         [last + 102, last + 103])
        self.assert_only_pong(again)

    def test_sync_while_others_keep_sending(self):
        a, c = self.raw(), self.raw()
        c_desktop = self.raw(c.user_id)
        ack = self.sync(c)
        c.abort()
        a.send_raw(dm_frames(c.user_id, "missed", 50))
        self.recv_messages(c_desktop, 50)
        again = self.raw(c.user_id)
        sender = threading.Thread(target=a.send_raw, args=(dm_frames(c.user_id, "during", 200),))
        sender.start()
        again.send_json({"type": "sync", "since": ack["offset"], "epoch": ack["epoch"]})
        sender.join(h.scaled(10))
        # a live DM the server read before the sync went out live before the answer (the
        # sender's socket and ours are read in no fixed order); those are in the replay too
        early = []
        while True:
            first = again.recv_json(timeout=10)
            if first["type"] != "message":
                break
            early.append(first)
        self.assertEqual((first["type"], first["recovered"]), ("sync", True), first)
        got = self.recv_messages(again, 250)
        # after the answer: the missed ones and those sent meanwhile, in order, each once
        self.assertEqual([m["offset"] for m in got],
                         list(range(ack["offset"] + 1, ack["offset"] + 251)))
        self.assertEqual([m["content"] for m in got[50:]], ["during %d" % i for i in range(200)])
        by_offset = {m["offset"]: m for m in got}
        for m in early:
            self.assertEqual(by_offset.get(m["offset"]), m)
        self.assert_only_pong(again)

    def test_not_recovered(self):
        a, c = self.raw(), self.raw()
        a.send_raw(dm_frames(c.user_id, "x", 2))
        self.recv_messages(c, 2)
        ack = self.sync(c)
        for since, epoch in ((0, "not-the-epoch"), (ack["offset"] + 5, ack["epoch"])):
            with self.subTest(since=since, epoch=epoch):
                got = self.sync(c, since=since, epoch=epoch)
                self.assertFalse(got["recovered"], got)
                self.assertEqual((got["offset"], got["epoch"]), (ack["offset"], ack["epoch"]))
                self.assert_only_pong(c)


if __name__ == "__main__":
    h.main()
