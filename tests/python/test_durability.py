#!/usr/bin/python3
"""What survives chathubd itself, through the real process, real sockets and a real SQLite file:

* a restart (SIGTERM, start again on the same file): ids and room offsets continue, the
  epoch stays, a member recovers across the restart exactly what it missed, and `history`
  reads the messages from both sides of it in order;
* SIGKILL in the middle of a burst from several publishers, restarted with the default
  sync=normal: every message a member received (its echo means "stored") is in `history`,
  in order, once, with no hole in the offsets;
* a memory store after a restart: the epoch is new, nothing is recovered or replayed.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

UNLIMITED = {"limits": {"messages-per-second": 0}}


def message_frames(room, tag, n):
    """n room messages "<tag> 0" … "<tag> n-1" as one write."""
    return b"".join(h.encode_frame(h.OP_TEXT, json.dumps(
        {"type": "message", "room_id": room, "content": "%s %d" % (tag, i)}).encode())
        for i in range(n))


class DurabilityBase(h.RoomStreamMixin, unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="chathub-durability-")
        self.addCleanup(tmp.cleanup)
        self.path = os.path.join(tmp.name, "chathub.db")

    def start(self, store=None):
        """A chathubd on self.path (or on the store given); one per start."""
        config = h.merge_config(UNLIMITED, {"store": store or {"path": self.path}})
        d = h.Daemon(config=config)
        self.addCleanup(d.cleanup)
        return d.start()

    def raw(self, daemon, user_id=None):
        uid = user_id if user_id is not None else h.next_user_id()
        ws = h.RawWS.connect(daemon.port, daemon.token(uid))
        ws.user_id = uid
        self.addCleanup(ws.abort, False)
        return ws

    def history(self, ws, room):
        """The room's whole history, paged back from the newest with before/limit."""
        pages, before = [], None
        while True:
            request = {"type": "history", "room_id": room, "limit": 100}
            if before is not None:
                request["before"] = before
            ws.send_json(request)
            answer = ws.recv_json(timeout=10)
            self.assertEqual(answer["type"], "history", answer)
            page = answer["messages"]
            if not page:
                return pages
            self.assertLessEqual(len(page), 100)
            pages = page + pages
            before = page[0]["offset"]

    def stop(self, daemon, *clients):
        """Closes the clients (so that SIGTERM need not wait for their close frames), then
        stops the daemon, which must exit cleanly."""
        for ws in clients:
            ws.close()
        self.assertEqual(daemon.stop(), 0, daemon.log_text())

    def assert_ids_increase(self, messages):
        ids = [m["id"] for m in messages]
        for earlier, later in zip(ids, ids[1:]):
            self.assertLess(earlier, later, ids)


class RestartTests(DurabilityBase):

    def test_restart_on_the_same_file(self):
        room = h.next_room_id()
        first = self.start()
        a, c = self.raw(first), self.raw(first)
        ack = self.join(a, room)
        self.assertEqual(ack["offset"], 0, ack)
        epoch = ack["epoch"]
        self.join(c, room)
        a.send_raw(message_frames(room, "seen", 3))
        seen = self.recv_messages(a, 3)
        self.assertEqual(self.recv_messages(c, 3), seen)
        c.abort()
        # c misses these two before the restart, and those after it
        a.send_raw(message_frames(room, "missed", 2))
        before = seen + self.recv_messages(a, 2)
        self.assertEqual([m["offset"] for m in before], [1, 2, 3, 4, 5])
        self.stop(first, a)

        second = self.start()
        a2 = self.raw(second, a.user_id)
        ack = self.join(a2, room)
        self.assertEqual((ack["offset"], ack["epoch"]), (5, epoch), ack)
        a2.send_raw(message_frames(room, "after", 3))
        after = self.recv_messages(a2, 3)
        # offsets continue where they were; ids above every id before the restart
        self.assertEqual([m["offset"] for m in after], [6, 7, 8])
        self.assertGreater(after[0]["id"], max(m["id"] for m in before))
        self.assert_ids_increase(before + after)

        c2 = self.raw(second, c.user_id)
        ack = self.join(c2, room, since=3, epoch=epoch)
        self.assertEqual((ack["recovered"], ack["offset"], ack["epoch"]), (True, 8, epoch), ack)
        # exactly what it missed, on both sides of the restart, as relayed, then live
        self.assertEqual(self.recv_messages(c2, 5), before[3:] + after)
        a2.send_raw(message_frames(room, "live", 1))
        live = self.recv_messages(c2, 1)
        self.assertEqual(live[0]["offset"], 9, live)
        self.assert_only_pong(c2)

        everything = before + after + live
        self.assertEqual(self.history(c2, room), everything)
        self.assert_ids_increase(everything)
        self.stop(second, a2, c2)


class KillTests(DurabilityBase):

    PUBLISHERS = 4
    WINDOW = 32          # messages each publisher keeps in flight
    KILL_AFTER = 1000    # echoes, all publishers together, before each SIGKILL
    ROUNDS = 6

    def publish(self, ws, room, state):
        """Sends "<uid> 0", "<uid> 1", … as fast as the daemon echoes them, until the daemon
        dies; every room message this member receives is kept in state["received"]."""
        sent = 0
        try:
            while True:
                if sent - state["echoed"] < self.WINDOW:
                    ws.send_json({"type": "message", "room_id": room,
                                  "content": "%d %d" % (ws.user_id, sent)})
                    sent += 1
                    continue
                m = ws.recv_json(timeout=10)
                if m["type"] in ("join", "leave"):
                    continue
                if m["type"] != "message":
                    state["unexpected"].append(m)
                    return
                state["received"].append(m)
                if m["from"] == ws.user_id:
                    state["echoed"] += 1
        except (h.ConnectionClosedRaw, ConnectionError):
            return      # the daemon was killed
        except BaseException as error:      # reported by the test's thread
            state["unexpected"].append(repr(error))

    def burst_and_kill(self, daemon, room):
        """Publishers send until KILL_AFTER echoes arrived, then SIGKILL; returns the room's
        epoch and [(publisher, state)]."""
        publishers = [self.raw(daemon) for _ in range(self.PUBLISHERS)]
        epoch = None
        for ws in publishers:
            epoch = self.join(ws, room)["epoch"]
        states = [{"received": [], "echoed": 0, "unexpected": []} for _ in publishers]
        threads = [threading.Thread(target=self.publish, args=(ws, room, state), daemon=True)
                   for ws, state in zip(publishers, states)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + h.scaled(30)
        while sum(s["echoed"] for s in states) < self.KILL_AFTER:
            self.assertLess(time.monotonic(), deadline, [s["unexpected"] for s in states])
            self.assertTrue(all(t.is_alive() for t in threads),
                            [s["unexpected"] for s in states])
            time.sleep(0.005)
        # mid-burst: the publishers never stop on their own, each has messages in flight
        daemon.send_signal(signal.SIGKILL)
        self.assertEqual(daemon.wait(10), -signal.SIGKILL)
        for thread in threads:
            thread.join(h.scaled(10))
            self.assertFalse(thread.is_alive())
        for state in states:
            self.assertEqual(state["unexpected"], [])
        return epoch, list(zip(publishers, states))

    def test_sigkill_mid_burst(self):
        # several kills on the same file, each restart going on from what the last one left:
        # where the kill lands in the store's work differs from round to round
        room = h.next_room_id()
        config = {"path": self.path, "sync": "normal", "history-size": 100000}
        epochs, publishers = set(), []
        for _ in range(self.ROUNDS):
            epoch, round_publishers = self.burst_and_kill(self.start(config), room)
            epochs.add(epoch)
            publishers += round_publishers

        second = self.start(config)
        reader = self.raw(second)
        ack = self.join(reader, room)
        epochs.add(ack["epoch"])
        self.assertEqual(len(epochs), 1, epochs)
        stored = self.history(reader, room)
        n = ack["offset"]
        # no hole, no duplicate, in order: offsets 1…N, ids increasing with them
        self.assertEqual([m["offset"] for m in stored], list(range(1, n + 1)))
        self.assert_ids_increase(stored)
        contents = [m["content"] for m in stored]
        self.assertEqual(len(set(contents)), len(contents))
        # every message a member received was stored before it was relayed: it is there,
        # the same frame. Messages sent but never echoed may or may not be there (the
        # daemon may have died before or after their commit); nothing requires either.
        by_offset = {m["offset"]: m for m in stored}
        received = 0
        for _, state in publishers:
            for m in state["received"]:
                self.assertEqual(by_offset.get(m["offset"]), m)
                received += 1
        self.assertGreaterEqual(n, self.ROUNDS * self.KILL_AFTER)
        self.assertGreater(received, 0)
        # a publisher's messages are stored in the order it sent them, with none skipped
        for ws, state in publishers:
            mine = [m["content"] for m in stored if m["from"] == ws.user_id]
            self.assertEqual(mine, ["%d %d" % (ws.user_id, i) for i in range(len(mine))])
            self.assertGreaterEqual(len(mine), state["echoed"])
        # and the room goes on from there
        reader.send_json({"type": "message", "room_id": room, "content": "after"})
        m = self.recv_messages(reader, 1)[0]
        self.assertEqual(m["offset"], n + 1, m)
        self.assertGreater(m["id"], stored[-1]["id"])
        self.stop(second, reader)


class HubWideIdTests(DurabilityBase):
    """Hub-wide messages are not stored, but their ids are never given again."""

    def hub_wide(self, ws, tag):
        ws.send_json({"type": "message", "content": tag})
        while True:
            m = ws.recv_json(timeout=10, answer_pings=True)
            if m.get("type") == "message" and m.get("content") == tag:
                self.assertNotIn("offset", m)
                return m

    def check_after_kill(self, store):
        room = h.next_room_id()
        first = self.start(store)
        a = self.raw(first)
        self.join(a, room)
        a.send_raw(message_frames(room, "stored", 1))
        stored = self.recv_messages(a, 1)[0]
        # hub-wide messages after the last stored one: the echo means their id is kept
        last = [self.hub_wide(a, "everyone %d" % i) for i in range(3)][-1]
        self.assertGreater(last["id"], stored["id"])
        first.send_signal(signal.SIGKILL)
        self.assertEqual(first.wait(10), -signal.SIGKILL)

        second = self.start(store)
        b = self.raw(second)
        self.join(b, room)
        again = self.hub_wide(b, "after the kill")
        self.assertGreater(again["id"], last["id"])
        b.send_raw(message_frames(room, "stored again", 1))
        self.assertGreater(self.recv_messages(b, 1)[0]["id"], again["id"])
        self.stop(second, b)

    def test_sqlite_keeps_hub_wide_ids(self):
        self.check_after_kill({"path": self.path})

    def test_memory_store_ids_go_on_across_a_restart(self):
        self.check_after_kill({"backend": "memory", "path": self.path})


class MemoryStoreTests(DurabilityBase):

    def test_memory_store_after_a_restart(self):
        # test_history.py's restart test starts on a new database file; this is the memory
        # store proper, whose history ends with the process. The path is set and the same
        # for both starts, so a daemon that used SQLite anyway would recover from it.
        room = h.next_room_id()
        store = {"backend": "memory", "path": self.path}
        first = self.start(store)
        a = self.raw(first)
        epoch = self.join(a, room)["epoch"]
        a.send_raw(message_frames(room, "m", 3))
        self.recv_messages(a, 3)
        a.abort()
        self.stop(first)

        second = self.start(store)
        again = self.raw(second, a.user_id)
        ack = self.join(again, room, since=3, epoch=epoch)
        self.assertNotEqual(ack["epoch"], epoch, ack)
        self.assertEqual((ack["recovered"], ack["offset"]), (False, 0), ack)
        self.assert_only_pong(again)
        self.assertEqual(self.history(again, room), [])
        self.stop(second, again)
        self.assertFalse(os.path.exists(self.path))


if __name__ == "__main__":
    h.main()
