#!/usr/bin/python3
"""Several chathubd nodes on one real redis-server behave as one hub: room messages, direct
messages between users whose devices are on different nodes, hub-wide messages, history and
recovery across nodes; every receiver sees each message once, with
ids strictly increasing. Also: a node killed with SIGKILL (its clients recover on another);
Redis restarted mid-traffic, with and without persistence (nothing echoed is lost, what was
refused was answered `unavailable`, members whose node missed messages are closed with 4002
and recover); a node whose Redis is down keeps serving and answers every request."""

import json
import os
import signal
import socket
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
    CLUSTER = {}   # more [cluster] keys for every node

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = h.RedisServer(appendonly=cls.APPENDONLY).start()
        prefix = "cluster%d" % os.getpid()
        cls.nodes = []
        try:
            for i in range(cls.N_NODES):
                config = h.merge_config(UNLIMITED, h.cluster_config(cls.redis, prefix, "n%d" % i))
                config["cluster"].update(cls.CLUSTER)
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


class EventsAndPresenceTests(ClusterBase):

    def expect_event(self, ws, kind, user, room):
        m = ws.recv_json(timeout=10)
        self.assertEqual((m["type"], m.get("from"), m.get("room_id")), (kind, user, room), m)
        self.assertNotIn("offset", m)

    def test_join_and_leave_events_reach_every_node(self):
        room = h.next_room_id()
        a, b, c = (self.raw(node) for node in self.nodes)
        self.join(a, room)
        self.join(b, room)
        self.expect_event(a, "join", b.user_id, room)
        self.join(c, room)
        for ws in (a, b):
            self.expect_event(ws, "join", c.user_id, room)
        c.send_json({"type": "leave", "room_id": room})
        for ws in (a, b, c):
            self.expect_event(ws, "leave", c.user_id, room)
        b.close()  # a disconnect leaves every room
        self.expect_event(a, "leave", b.user_id, room)
        # each event once: nothing else came
        for ws in (a, c):
            self.assert_only_pong(ws)

    def presence(self, ws, room):
        ws.send_json({"type": "presence", "room_id": room})
        while True:
            m = ws.recv_json(timeout=10)
            if m["type"] not in ("join", "leave"):
                break
        self.assertEqual(m["type"], "presence", m)
        return m["users"]

    def test_presence_across_nodes(self):
        room = h.next_room_id()
        shared = h.next_user_id()
        # one user with a connection on two nodes counts once
        clients = [self.raw(self.nodes[0]), self.raw(self.nodes[1]),
                   self.raw(self.nodes[1], shared), self.raw(self.nodes[2], shared)]
        for ws in clients:
            self.join(ws, room)
        everyone = sorted({ws.user_id for ws in clients})
        for ws in clients:
            self.assertEqual(self.presence(ws, room), everyone)
        # the shared user's connection on one node leaves: still there through the other
        clients[3].send_json({"type": "leave", "room_id": room})
        self.assertEqual(self.presence(clients[0], room), everyone)
        clients[2].close()
        everyone.remove(shared)
        # its node takes it out when it has seen the close; the others ask Redis
        deadline = time.monotonic() + h.scaled(10)
        while self.presence(clients[0], room) != everyone:
            self.assertLess(time.monotonic(), deadline, "the user never left presence")
            time.sleep(0.02)
        self.assertEqual(self.presence(clients[1], room), everyone)


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

    def test_node_killed_its_users_leave_presence(self):
        room = h.next_room_id()
        ttl = 1
        a = self.raw(self.nodes[0])
        self.join(a, room)
        config = h.merge_config(UNLIMITED, h.cluster_config(
            self.redis, "cluster%d" % os.getpid(), "doomed-presence"))
        config["cluster"]["presence-ttl"] = str(ttl)
        doomed = h.Daemon(config=config).start()
        self.addCleanup(doomed.cleanup)
        c = self.raw(doomed)
        self.join(c, room)
        self.assertEqual(EventsAndPresenceTests.presence(self, a, room),
                         sorted([a.user_id, c.user_id]))
        # alive, it refreshes its entries: c stays past the TTL
        time.sleep(2 * ttl)
        self.assertEqual(EventsAndPresenceTests.presence(self, a, room),
                         sorted([a.user_id, c.user_id]))
        doomed.kill()  # SIGKILL: no leave, no refresh
        killed = time.monotonic()
        while EventsAndPresenceTests.presence(self, a, room) != [a.user_id]:
            # within the TTL (and the time a presence request takes)
            self.assertLess(time.monotonic() - killed, ttl + h.scaled(1), "still present")
            time.sleep(0.05)


class Sender(threading.Thread):
    """Sends "m <i>" to a room from one connection, one at a time, and sorts the answers:
    echoed (i -> the echo), refused (`unavailable`), unknown (in flight when a 4002 came,
    after which it reconnects to the same node and rejoins with `since`)."""

    def __init__(self, test, node, room):
        super().__init__(daemon=True)
        self.test, self.node, self.room = test, node, room
        self.ws = test.raw(node)
        self.user_id = self.ws.user_id
        ack = test.join(self.ws, room)
        self.epoch, self.offset = ack["epoch"], ack["offset"]
        self.echoed, self.refused, self.unknown = {}, [], []
        self.recovers = 0
        self.stopping = threading.Event()
        self.error = None
        self.lock = threading.Lock()

    def counts(self):
        with self.lock:
            return len(self.echoed), len(self.refused)

    def run(self):
        try:
            i = 0
            while not self.stopping.is_set():
                self.ws.send_json({"type": "message", "room_id": self.room,
                                   "content": "m %d" % i})
                self.answer(i)
                i += 1
                time.sleep(0.01)
        except Exception as e:  # reported by stop()
            self.error = e

    def answer(self, i):
        while True:
            try:
                m = self.ws.recv_json(timeout=10)
            except h.CloseReceived as c:
                self.test.assertEqual(c.code, 4002, c.reason)
                with self.lock:
                    self.unknown.append(i)
                    self.recovers += 1
                self.ws.abort()
                self.ws = self.test.raw(self.node, self.user_id)
                ack = self.test.join(self.ws, self.room, since=self.offset, epoch=self.epoch)
                self.test.assertTrue(ack["recovered"], ack)
                return
            if m["type"] == "error":
                self.test.assertEqual(m["code"], "unavailable", m)
                with self.lock:
                    self.refused.append(i)
                return
            if m["type"] == "message":
                self.offset = m["offset"]
                if m["content"] == "m %d" % i:
                    with self.lock:
                        self.echoed[i] = m
                    return

    def stop(self):
        self.stopping.set()
        self.join(h.scaled(20))
        if self.error is not None:
            raise self.error


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + h.scaled(timeout)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def wait_ready(test, node):
    """Until the node reaches Redis again: a `sync` is answered (not `unavailable`)."""
    deadline = time.monotonic() + h.scaled(20)
    while True:
        ws = h.RawWS.connect(node.port, node.token(h.next_user_id()))
        try:
            ws.send_json({"type": "sync"})
            if ws.recv_json(timeout=10)["type"] == "sync":
                return
        finally:
            ws.abort()
        test.assertLess(time.monotonic(), deadline, "the node never reached Redis again")
        time.sleep(0.1)


class RedisRestartTests(ClusterBase):
    N_NODES = 2
    APPENDONLY = True
    CLUSTER = {"redis-timeout": "1"}

    def setUp(self):
        if self.redis.proc.poll() is not None:
            self.redis.start()
        for node in self.nodes:
            wait_ready(self, node)

    def whole_history(self, ws, room):
        """Every stored message of the room, oldest first (history pages of 100)."""
        out, before = [], None
        while True:
            request = {"type": "history", "room_id": room, "limit": 100}
            if before is not None:
                request["before"] = before
            ws.send_json(request)
            answer = ws.recv_json(timeout=10)
            while answer["type"] in ("join", "leave"):
                answer = ws.recv_json(timeout=10)
            self.assertEqual(answer["type"], "history", answer)
            if not answer["messages"]:
                return out
            out = answer["messages"] + out
            before = answer["messages"][0]["offset"]

    def test_redis_restarted_mid_traffic(self):
        room = h.next_room_id()
        sender = Sender(self, self.nodes[0], room)
        b = self.raw(self.nodes[1])
        first = self.join(b, room)["offset"] + 1
        sender.start()
        self.addCleanup(sender.stopping.set)
        wait_for(lambda: sender.counts()[0] >= 5, "echoes before the restart")
        # the second node sleeps through the restart: whatever the first publishes once
        # Redis is back, it misses, and it finds out by comparing when it is watched again
        self.nodes[1].send_signal(signal.SIGSTOP)
        self.addCleanup(self.nodes[1].send_signal, signal.SIGCONT)
        self.redis.restart()
        wait_for(lambda: sender.counts()[1] >= 1, "a message refused while Redis was down")
        refused = sender.counts()[1]
        echoed = sender.counts()[0]
        wait_for(lambda: sender.counts()[0] >= echoed + 5, "echoes once Redis is back")
        self.nodes[1].send_signal(signal.SIGCONT)
        seen = []
        code, reason = b.expect_close(timeout=10, collect=seen)
        self.assertEqual((code, reason), (4002, "recover"))
        seen = [json.loads(p) for _, p in seen]
        seen = [m for m in seen if m["type"] == "message"]
        last = seen[-1]["offset"] if seen else first - 1
        again = self.raw(self.nodes[1], b.user_id)
        ack = self.join(again, room, since=last, epoch=sender.epoch)
        self.assertTrue(ack["recovered"], ack)
        self.assertEqual(ack["epoch"], sender.epoch)
        sender.stop()
        top = max(m["offset"] for m in sender.echoed.values())
        seen += self.recv_messages(again, top - last, timeout=10)
        history = [m for m in self.whole_history(again, room) if m["offset"] >= first]
        # the receiver got every stored message once, in order, across the 4002
        self.assertEqual(seen, history[:len(seen)])
        self.assertEqual([m["offset"] for m in history], list(range(first, first + len(history))))
        # nothing echoed is lost, and every message was answered
        stored = {m["content"] for m in history}
        for i, echo in sender.echoed.items():
            self.assertIn(echo, history)
        self.assertGreaterEqual(len(sender.refused), refused)
        self.assertEqual(len(sender.echoed) + len(sender.refused) + len(sender.unknown),
                         len(set(sender.echoed) | set(sender.refused) | set(sender.unknown)))
        # a refused message is not stored, unless Redis stopped while it ran (its answer
        # lost, docs/protocol.md 3.3): then the sender's node missed it, and the sender was
        # told to recover it
        if any("m %d" % i in stored for i in sender.refused):
            self.assertGreater(sender.recovers, 0)
        self.assert_only_pong(again)

    def test_new_connection_while_redis_down(self):
        room = h.next_room_id()
        other = h.next_user_id()
        self.redis.stop()
        # the node keeps serving: the connection is accepted, and every request that needs
        # Redis is answered within the timeout instead of waiting for Redis
        ws = self.raw(self.nodes[0])
        ws.send_json({"type": "message", "to": other, "content": "dm"})
        ws.send_json({"type": "join", "room_id": room})
        ws.send_json({"type": "message", "room_id": room, "content": "in the room"})
        ws.send_json({"type": "sync"})
        ws.send_json({"type": "ping"})
        answers = [ws.recv_json(timeout=5) for _ in range(5)]
        # the room message: refused as a member, or `not_member` if the failed join was
        # already undone when it was read
        self.assertIn(answers[2].get("code"), ("unavailable", "not_member"), answers)
        del answers[2]
        self.assertEqual([(m["type"], m.get("code")) for m in answers],
                         [("error", "unavailable"), ("error", "unavailable"),
                          ("error", "unavailable"), ("pong", None)], answers)
        # Redis back: the connection, which got no offline delivery, is told to reconnect
        self.redis.start()
        self.assertEqual(ws.expect_close(timeout=10), (4002, "recover"))
        again = self.raw(self.nodes[0], ws.user_id)
        self.join(again, room)
        again.send_json({"type": "message", "room_id": room, "content": "now"})
        self.assertEqual(self.recv_messages(again, 1)[0]["content"], "now")


class RedisStoppedTests(ClusterBase):
    N_NODES = 1
    CLUSTER = {"redis-timeout": "1"}

    def test_redis_that_stops_answering(self):
        room = h.next_room_id()
        a = self.raw(self.nodes[0])
        self.join(a, room)
        a.send_raw(frames("before", 1, room=room))
        self.recv_messages(a, 1)
        # connected, but nothing answers: every request still gets its answer, in order,
        # within the timeout (the message may be stored once Redis runs again: docs)
        self.redis.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.redis.proc.send_signal, signal.SIGCONT)
        a.send_raw(frames("stopped", 1, room=room))
        a.send_json({"type": "presence", "room_id": room})
        a.send_json({"type": "ping"})
        answers = [a.recv_json(timeout=10) for _ in range(3)]
        self.assertEqual([(m["type"], m.get("code")) for m in answers],
                         [("error", "unavailable"), ("error", "unavailable"), ("pong", None)],
                         answers)
        self.redis.proc.send_signal(signal.SIGCONT)
        wait_ready(self, self.nodes[0])
        b = self.raw(self.nodes[0])
        self.join(b, room)
        b.send_raw(frames("again", 1, room=room))
        self.assertEqual(self.recv_messages(b, 1)[0]["content"], "again 0")


class RedisRestartWithoutPersistenceTests(ClusterBase):
    N_NODES = 2
    CLUSTER = {"redis-timeout": "1"}

    def test_new_epochs_nothing_recovered(self):
        room = h.next_room_id()
        a, b = self.raw(self.nodes[0]), self.raw(self.nodes[1])
        ack = self.join(a, room)
        self.join(b, room)
        a.send_raw(frames("before", 3, room=room))
        last = self.recv_messages(b, 3)[-1]["offset"]
        self.recv_messages(a, 3)
        self.redis.restart()
        # every node finds a new epoch for the room: all its members recover
        for ws in (a, b):
            self.assertEqual(ws.expect_close(timeout=10), (4002, "recover"))
        for node in self.nodes:
            again = self.raw(node)
            rejoin = self.join(again, room, since=last, epoch=ack["epoch"])
            self.assertFalse(rejoin["recovered"], rejoin)
            self.assertNotEqual(rejoin["epoch"], ack["epoch"])


class SilencingProxy:
    """A TCP proxy to Redis that can make the publish/subscribe connections going through
    it silent: open, but nothing from Redis reaches the node any more."""

    def __init__(self, redis):
        self.redis = redis
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs = []     # [client socket, redis socket, {"subscriber", "silent"}]
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.redis.port))
            state = {"subscriber": False, "silent": False}
            with self.lock:
                self.pairs.append((client, upstream, state))
            threading.Thread(target=self.pump, args=(client, upstream, state, True),
                             daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, state, False),
                             daemon=True).start()

    def pump(self, source, sink, state, to_redis):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if to_redis and b"SUBSCRIBE" in data:
                    state["subscriber"] = True
                if not to_redis and state["silent"]:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def subscribers(self):
        with self.lock:
            return sum(1 for _, _, state in self.pairs if state["subscriber"])

    def silence_subscribers(self):
        with self.lock:
            silenced = [state for _, _, state in self.pairs if state["subscriber"]]
        for state in silenced:
            state["silent"] = True
        return len(silenced)

    def close(self):
        self.listener.close()
        with self.lock:
            for client, upstream, _ in self.pairs:
                client.close()
                upstream.close()


class SilentPubSubTests(ClusterBase):
    N_NODES = 1

    def test_probe_finds_a_silent_subscription(self):
        proxy = SilencingProxy(self.redis)
        self.addCleanup(proxy.close)
        config = h.merge_config(UNLIMITED, h.cluster_config(
            self.redis, "cluster%d" % os.getpid(), "behind-proxy"))
        config["cluster"].update({"redis-address": proxy.address, "redis-timeout": "1"})
        node = h.Daemon(config=config).start()
        self.addCleanup(node.cleanup)
        room = h.next_room_id()
        a, b = self.raw(self.nodes[0]), self.raw(node)
        ack = self.join(a, room)
        self.join(b, room)
        a.send_raw(frames("heard", 3, room=room))
        last = self.recv_messages(b, 3)[-1]["offset"]
        self.recv_messages(a, 3)
        # the connection stays open and delivers nothing: only the probe can tell (the
        # store's subscription and the node list's: chathubd's ChdCluster has its own,
        # which may subscribe a little later)
        deadline = time.monotonic() + h.scaled(10)
        while proxy.subscribers() < 2:
            self.assertLess(time.monotonic(), deadline, "both subscriptions")
            time.sleep(0.01)
        self.assertEqual(proxy.silence_subscribers(), 2)
        a.send_raw(frames("unheard", 5, room=room))
        self.recv_messages(a, 5)
        self.assertEqual(b.expect_close(timeout=10), (4002, "recover"))
        again = self.raw(node, b.user_id)
        rejoin = self.join(again, room, since=last, epoch=ack["epoch"])
        self.assertTrue(rejoin["recovered"], rejoin)
        self.assertEqual([m["content"] for m in self.recv_messages(again, 5)],
                         ["unheard %d" % i for i in range(5)])
        # nothing more (the closed connection's leave event may come)
        again.send_json({"type": "ping"})
        while (m := again.recv_json())["type"] != "pong":
            self.assertEqual((m["type"], m["from"]), ("leave", b.user_id), m)


if __name__ == "__main__":
    h.main()
