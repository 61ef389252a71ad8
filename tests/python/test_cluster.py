#!/usr/bin/python3
"""Several chathubd nodes on one real redis-server behave as one hub: room messages, direct
messages between users whose devices are on different nodes, hub-wide messages, history and
recovery across nodes; every receiver sees each message once, with
ids strictly increasing. Also: a node killed with SIGKILL (its clients recover on another)."""

import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

UNLIMITED = {"limits": {"messages-per-second": "0"}}


def frames(tag, n, room=None, to=None):
    out = b""
    for i in range(n):
        msg = {"type": "message", "content": "%s %d" % (tag, i)}
        if room is not None:
            msg["room_id"] = room
        if to is not None:
            msg["to"] = to
        out += h.encode_frame(h.OP_TEXT, json.dumps(msg).encode())
    return out


class ClusterBase(h.RoomStreamMixin, unittest.TestCase):
    N_NODES = 3
    APPENDONLY = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = h.RedisServer(appendonly=cls.APPENDONLY).start()
        prefix = "cluster%d" % os.getpid()
        cls.nodes = []
        try:
            for i in range(cls.N_NODES):
                config = h.merge_config(UNLIMITED, h.cluster_config(cls.redis, prefix, "n%d" % i))
                cls.nodes.append(h.Daemon(config=config).start())
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes:
            node.stop()
            node.cleanup()
        cls.redis.cleanup()
        super().tearDownClass()

    def raw(self, node, user_id=None):
        uid = user_id if user_id is not None else h.next_user_id()
        ws = h.RawWS.connect(node.port, node.token(uid))
        ws.user_id = uid
        self.addCleanup(ws.abort, False)
        return ws

    def assert_ids_increase(self, messages):
        ids = [m["id"] for m in messages]
        self.assertEqual(ids, sorted(set(ids)), "ids not strictly increasing or repeated")


class RoomTests(ClusterBase):

    def test_room_messages_from_every_node(self):
        room = h.next_room_id()
        members = [self.raw(node) for node in self.nodes for _ in range(2)]
        for ws in members:
            self.join(ws, room)
        # everyone publishes at once, from every node
        threads = [threading.Thread(target=ws.send_raw, args=(frames("m%d" % i, 30, room=room),))
                   for i, ws in enumerate(members)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(h.scaled(10))
        total = 30 * len(members)
        seen = None
        for ws in members:
            got = self.recv_messages(ws, total, timeout=20)
            # each once, ids and offsets increasing, the same order on every node
            self.assert_ids_increase(got)
            self.assertEqual([m["offset"] for m in got], list(range(got[0]["offset"],
                                                                    got[0]["offset"] + total)))
            order = [m["id"] for m in got]
            self.assertEqual(order, seen or order)
            seen = order
            self.assert_only_pong(ws)

    def test_history_and_recovery_across_nodes(self):
        room = h.next_room_id()
        a, c = self.raw(self.nodes[0]), self.raw(self.nodes[1])
        ack = self.join(a, room)
        self.join(c, room)
        a.send_raw(frames("seen", 5, room=room))
        last = self.recv_messages(c, 5)[-1]["offset"]
        self.recv_messages(a, 5)
        c.abort()
        a.send_raw(frames("missed", 50, room=room))
        missed = self.recv_messages(a, 50)
        # c comes back on the third node, which has never seen the room
        again = self.raw(self.nodes[2], c.user_id)
        sender = threading.Thread(target=a.send_raw, args=(frames("during", 100, room=room),))
        sender.start()
        recovered = self.join(again, room, since=last, epoch=ack["epoch"])
        sender.join(h.scaled(10))
        self.assertTrue(recovered["recovered"], recovered)
        got = self.recv_messages(again, 150, timeout=20)
        self.assertEqual(got[:50], missed)
        self.assertEqual([m["offset"] for m in got], list(range(last + 1, last + 151)))
        self.assert_ids_increase(got)
        self.assert_only_pong(again)
        # history from a node that relayed none of it
        d = self.raw(self.nodes[2])
        self.join(d, room)
        d.send_json({"type": "history", "room_id": room, "limit": 10})
        answer = d.recv_json()
        self.assertEqual(answer["type"], "history", answer)
        self.assertEqual(answer["messages"], got[-10:])


class DirectAndHubWideTests(ClusterBase):

    def test_direct_messages_between_nodes(self):
        a_id, b_id = h.next_user_id(), h.next_user_id()
        a0, a1 = self.raw(self.nodes[0], a_id), self.raw(self.nodes[2], a_id)
        b1, b2 = self.raw(self.nodes[1], b_id), self.raw(self.nodes[2], b_id)
        # a connection's node receives its user's messages once the answer to its first
        # request came (the first connection of a user on a node waits for the watch)
        for ws in (a0, a1, b1, b2):
            self.assert_only_pong(ws)
        a0.send_raw(frames("dm", 20, to=b_id))
        for ws in (a0, a1, b1, b2):
            got = self.recv_messages(ws, 20)
            self.assertEqual([m["content"] for m in got], ["dm %d" % i for i in range(20)])
            self.assert_ids_increase(got)
            self.assert_only_pong(ws)
        # offline on every node: delivered once to the next connection, wherever it is. The
        # node that wrote a DM records the user's watermark in Redis within 50 ms; a
        # connection elsewhere before that may get it again (docs/architecture.md)
        for ws in (b1, b2):
            ws.close()
        key = "cluster%d:u:%d:m" % (os.getpid(), b_id)
        self.wait_watermark(key, 20)
        a1.send_raw(frames("later", 3, to=b_id))
        self.recv_messages(a1, 3)
        b = self.raw(self.nodes[0], b_id)
        b.send_json({"type": "ping"})
        self.assertEqual([m["content"] for m in self.recv_messages(b, 3)],
                         ["later %d" % i for i in range(3)])
        self.assertEqual(b.recv_json()["type"], "pong")
        b.close()
        self.wait_watermark(key, 23)
        self.assert_only_pong(self.raw(self.nodes[1], b_id))

    def wait_watermark(self, key, offset):
        deadline = time.monotonic() + h.scaled(5)
        while self.redis.command("HGET", key, "d") != str(offset):
            self.assertLess(time.monotonic(), deadline, "watermark never reached %d" % offset)
            time.sleep(0.01)

    def test_hub_wide_messages_reach_every_node(self):
        clients = [self.raw(node) for node in self.nodes]
        for ws in clients:
            self.assert_only_pong(ws)
        clients[1].send_raw(frames("all", 10))
        for ws in clients:
            got = self.recv_messages(ws, 10)
            self.assertEqual([m["content"] for m in got], ["all %d" % i for i in range(10)])
            self.assertNotIn("offset", got[0])
            self.assert_ids_increase(got)
            self.assert_only_pong(ws)


class TwoNodeTests(ClusterBase):
    N_NODES = 2

    def test_ids_increase_for_every_receiver(self):
        room = h.next_room_id()
        a, b = self.raw(self.nodes[0]), self.raw(self.nodes[1])
        self.join(a, room)
        self.join(b, room)
        # a room, a DM and hub-wide messages interleaved from both nodes
        ta = threading.Thread(target=a.send_raw,
                              args=(frames("r", 50, room=room) + frames("d", 50, to=b.user_id),))
        tb = threading.Thread(target=b.send_raw, args=(frames("x", 50),))
        ta.start(), tb.start()
        ta.join(h.scaled(10)), tb.join(h.scaled(10))
        got = self.recv_messages(b, 150, timeout=20)
        self.assert_ids_increase(got)
        self.assertEqual(len({m["content"] for m in got}), 150)


class NodeFailureTests(ClusterBase):
    N_NODES = 2

    def test_node_killed_clients_recover_on_another(self):
        room = h.next_room_id()
        a = self.raw(self.nodes[0])
        ack = self.join(a, room)
        doomed = h.Daemon(config=h.merge_config(UNLIMITED, h.cluster_config(
            self.redis, "cluster%d" % os.getpid(), "doomed")))
        doomed.start()
        self.addCleanup(doomed.cleanup)
        c = self.raw(doomed)
        self.join(c, room)
        a.send_raw(frames("before", 3, room=room))
        last = self.recv_messages(c, 3)[-1]["offset"]
        doomed.kill()  # SIGKILL
        a.send_raw(frames("after", 5, room=room))
        self.recv_messages(a, 8)
        again = self.raw(self.nodes[1], c.user_id)
        recovered = self.join(again, room, since=last, epoch=ack["epoch"])
        self.assertTrue(recovered["recovered"], recovered)
        self.assertEqual([m["content"] for m in self.recv_messages(again, 5)],
                         ["after %d" % i for i in range(5)])


if __name__ == "__main__":
    h.main()
