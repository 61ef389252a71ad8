#!/usr/bin/python3
"""Protocol 1.1 storage through the real daemon (its default store): offsets and epochs on
the wire, join with recovery after an abrupt TCP drop (also while others keep sending), joins
that cannot recover (wrong epoch, beyond the history kept, a restarted daemon's memory store),
and history paging with its limits and refusals."""

import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

HISTORY_SIZE = 1000  # the stores' default
UNLIMITED = {"limits": {"messages-per-second": "0"}}


def messages_frames(room, tag, n):
    return b"".join(h.encode_frame(h.OP_TEXT, json.dumps(
        {"type": "message", "room_id": room, "content": "%s %d" % (tag, i)}).encode())
        for i in range(n))


class HistoryBase(h.RoomStreamMixin, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = UNLIMITED

    def raw(self, user_id=None, daemon=None):
        daemon = daemon or self.daemon
        uid = user_id if user_id is not None else h.next_user_id()
        ws = h.RawWS.connect(daemon.port, daemon.token(uid))
        ws.user_id = uid
        self.addCleanup(ws.abort, False)
        return ws

    def assert_contiguous(self, messages, first, last):
        self.assertEqual([m["offset"] for m in messages], list(range(first, last + 1)))
        ids = [m["id"] for m in messages]
        self.assertEqual(ids, sorted(set(ids)))


class RecoveryTests(HistoryBase):

    def test_offsets_and_plain_join(self):
        room = h.next_room_id()
        a = self.raw()
        ack = self.join(a, room)
        self.assertEqual(ack["offset"], 0)
        a.send_raw(messages_frames(room, "m", 3))
        self.assert_contiguous(self.recv_messages(a, 3), 1, 3)
        b = self.raw()
        ack_b = self.join(b, room)
        self.assertEqual((ack_b["offset"], ack_b["epoch"]), (3, ack["epoch"]))
        # the others' join event is as in protocol 1.0
        event = a.recv_json()
        self.assertEqual(set(event), {"type", "from", "room_id", "timestamp"}, event)

    def test_recovery_after_abrupt_drop(self):
        room = h.next_room_id()
        a, b, c = self.raw(), self.raw(), self.raw()
        for ws in (a, b, c):
            self.join(ws, room)
        epoch = self.join(c, room)["epoch"]
        b.send_raw(messages_frames(room, "seen", 5))
        self.recv_messages(a, 5)
        seen = self.recv_messages(c, 5)
        last = seen[-1]["offset"]
        c.abort()
        b.send_raw(messages_frames(room, "missed", 200))
        missed = self.recv_messages(a, 200)
        self.assertEqual([m["content"] for m in missed], ["missed %d" % i for i in range(200)])

        again = self.raw(c.user_id)
        ack = self.join(again, room, since=last, epoch=epoch)
        self.assertTrue(ack["recovered"], ack)
        self.assertEqual(ack["offset"], last + 200)
        replayed = self.recv_messages(again, 200)
        self.assertEqual(replayed, missed)  # the frames as relayed, exactly
        b.send_raw(messages_frames(room, "live", 3))
        self.assert_contiguous(self.recv_messages(again, 3), last + 201, last + 203)
        self.assert_only_pong(again)

    def test_recovery_while_others_keep_sending(self):
        room = h.next_room_id()
        a, b, c = self.raw(), self.raw(), self.raw()
        for ws in (a, b, c):
            self.join(ws, room)
        ack = self.join(c, room)
        c.abort()
        b.send_raw(messages_frames(room, "missed", 100))
        self.recv_messages(a, 100)
        again = self.raw(c.user_id)
        # b keeps publishing while the recovery runs
        sender = threading.Thread(target=b.send_raw, args=(messages_frames(room, "during", 300),))
        sender.start()
        again.send_json({"type": "join", "room_id": room, "since": ack["offset"],
                         "epoch": ack["epoch"]})
        sender.join(h.scaled(10))
        first = again.recv_json()
        self.assertEqual((first["type"], first["from"], first["recovered"]),
                         ("join", again.user_id, True), first)
        # everything after since exactly once, in order: replayed, then live
        got = self.recv_messages(again, 400)
        self.assert_contiguous(got, ack["offset"] + 1, ack["offset"] + 400)
        self.assertLessEqual(first["offset"], ack["offset"] + 400)
        self.assertGreaterEqual(first["offset"], ack["offset"] + 100)
        self.assertEqual([m["content"] for m in got[100:]], ["during %d" % i for i in range(300)])
        self.assert_only_pong(again)


class NotRecoveredTests(HistoryBase):

    def assert_not_recovered(self, ws, room, since, epoch, offset):
        ack = self.join(ws, room, since=since, epoch=epoch)
        self.assertFalse(ack["recovered"], ack)
        self.assertEqual(ack["offset"], offset)
        # nothing is replayed: the next is live
        self.assert_only_pong(ws)

    def test_wrong_epoch_and_future_offset(self):
        room = h.next_room_id()
        a, c = self.raw(), self.raw()
        epoch = self.join(a, room)["epoch"]
        a.send_raw(messages_frames(room, "m", 5))
        self.recv_messages(a, 5)
        self.assert_not_recovered(c, room, 2, epoch + "x", 5)
        self.assert_not_recovered(c, room, 6, epoch, 5)
        # without an epoch, since cannot be checked
        self.assert_not_recovered(c, room, 2, None, 5)

    def test_since_older_than_history_size(self):
        room = h.next_room_id()
        a, c = self.raw(), self.raw()
        epoch = self.join(a, room)["epoch"]
        n = HISTORY_SIZE + 20
        a.send_raw(messages_frames(room, "m", n))
        self.recv_messages(a, n, timeout=30)
        self.assert_not_recovered(c, room, 5, epoch, n)
        # the oldest kept can still be recovered from
        ack = self.join(c, room, since=n - HISTORY_SIZE, epoch=epoch)
        self.assertTrue(ack["recovered"], ack)
        self.assert_contiguous(self.recv_messages(c, HISTORY_SIZE, timeout=30),
                               n - HISTORY_SIZE + 1, n)

    def test_database_replaced(self):
        # each Daemon gets a database of its own: the second is a replaced one, whose epoch
        # differs (the memory store after a restart: test_durability.py)
        room = h.next_room_id()
        daemon = h.Daemon(config=UNLIMITED)
        daemon.start()
        self.addCleanup(daemon.cleanup)
        a = self.raw(daemon=daemon)
        epoch = self.join(a, room)["epoch"]
        a.send_raw(messages_frames(room, "m", 3))
        self.recv_messages(a, 3)
        a.abort()
        self.assertEqual(daemon.stop(), 0)
        # the same configuration, but a new database file: what the old one held is gone
        restarted = h.Daemon(config=UNLIMITED)
        restarted.start()
        self.addCleanup(restarted.cleanup)
        again = self.raw(a.user_id, daemon=restarted)
        ack = self.join(again, room, since=3, epoch=epoch)
        self.assertNotEqual(ack["epoch"], epoch)
        self.assertFalse(ack["recovered"], ack)
        self.assertEqual(ack["offset"], 0)
        self.assert_only_pong(again)


class HistoryTests(HistoryBase):

    def history(self, ws, **fields):
        ws.send_json({"type": "history", **fields})
        answer = ws.recv_json()
        if answer["type"] == "history":
            self.assertEqual(set(answer), {"type", "room_id", "epoch", "messages", "timestamp"})
        return answer

    def test_paging(self):
        room = h.next_room_id()
        a = self.raw()
        epoch = self.join(a, room)["epoch"]
        a.send_raw(messages_frames(room, "h", 120))
        sent = self.recv_messages(a, 120)
        cases = [({}, 71, 120),                        # the newest 50
                 ({"before": 21, "limit": 5}, 16, 20),
                 ({"limit": 1000}, 21, 120),           # capped at 100
                 ({"before": 3, "limit": 9}, 1, 2),
                 ({"before": 1}, 1, 0)]
        for fields, first, last in cases:
            answer = self.history(a, room_id=room, **fields)
            self.assertEqual((answer["room_id"], answer["epoch"]), (room, epoch))
            # the stored frames as they were relayed, oldest first
            self.assertEqual(answer["messages"], sent[first - 1:last], fields)
        # paging back from the oldest one seen reaches the start
        pages, before = [], None
        while True:
            fields = {"limit": 45} if before is None else {"limit": 45, "before": before}
            page = self.history(a, room_id=room, **fields)["messages"]
            if not page:
                break
            pages = page + pages
            before = page[0]["offset"]
        self.assertEqual(pages, sent)

    def test_refusals(self):
        room = h.next_room_id()
        a, outsider = self.raw(), self.raw()
        self.join(a, room)
        answer = self.history(outsider, room_id=room)
        self.assertEqual((answer["type"], answer["code"]), ("error", "not_member"), answer)
        for fields in ({}, {"room_id": room, "limit": 0}, {"room_id": room, "limit": -1},
                       {"room_id": room, "limit": "10"}, {"room_id": room, "before": 0},
                       {"room_id": room, "before": 1.5}):
            answer = self.history(a, **fields)
            self.assertEqual((answer["type"], answer["code"]), ("error", "invalid_message"),
                             (fields, answer))
        self.assert_only_pong(a)


if __name__ == "__main__":
    h.main()
