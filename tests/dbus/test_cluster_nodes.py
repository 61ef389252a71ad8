#!/usr/bin/python3
"""Several chathubd nodes on one real redis-server, each on a private dbus-daemon of its own
(issue 13): the node announcements (ListNodes(), the Cluster* properties, `chathubctl nodes`
and `status`), a SIGKILLed node dropped within three periods, a clean stop at once; and
`[server] reuse-port`: refused without [cluster], several nodes on one port, clients landing
on different nodes and talking to each other.

  CHATHUBD, CHATHUBCTL      the built binaries (tests/meson.build sets them)
  CHAT_TEST_REDIS_SERVER    redis-server
"""

import json
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import chathub_harness as h  # noqa: E402
import test_dbus as d  # noqa: E402

PERIOD = 1  # [cluster] announce-interval in most tests: seconds


def node_config(redis, prefix, name, period=PERIOD, reuse_port=False):
    config = h.cluster_config(redis, prefix=prefix, node=name)
    config["cluster"]["announce-interval"] = period
    if reuse_port:
        config["server"] = {"reuse-port": "true"}
    return config


class Node:
    """A chathubd node on a private session bus of its own."""

    def __init__(self, test, redis, prefix, name, period=PERIOD, reuse_port=False, port=None):
        self.name = name
        self.bus = d.PrivateBus("session").start()
        test.addCleanup(self.bus.cleanup)
        args = ["--port", str(port)] if port is not None else []
        self.daemon = d.BusDaemon(self.bus, "--session",
                                  config=node_config(redis, prefix, name, period, reuse_port),
                                  extra_args=args)
        test.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        test.assertTrue(self.daemon.wait_owned(), self.daemon.log_text())
        self.hub = d.Hub(self.bus.connection)

    def prop(self, name):
        return self.hub.prop(name)

    def nodes(self):
        return self.hub.call("ListNodes")[0]

    def names(self):
        return [name for name, _ in self.nodes()]

    def counts(self):
        return (self.prop("ClusterNodeCount"), self.prop("ClusterClientCount"),
                self.prop("ClusterRoomCount"))


class ClusterTestCase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.redis = h.RedisServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.redis.cleanup()

    def setUp(self):
        self.prefix = "nodes%d-%s" % (os.getpid(), self.id().rsplit(".", 1)[-1])

    def node(self, name, **kw):
        return Node(self, self.redis, self.prefix, name, **kw)

    def connect(self, port, user_id, rooms=()):
        ws = d.ws_connect(port, user_id)
        self.addCleanup(ws.abort)
        for room in rooms:
            ws.send_text(json.dumps({"type": "join", "room_id": room}))
            while True:
                event = ws.recv_json()
                if event["type"] == "join" and event.get("from") == user_id:
                    break
        return ws


class NodeListTests(ClusterTestCase):

    def test_node_list_counts_and_sigkill(self):
        nodes = [self.node(name) for name in ("n1", "n2", "n3")]
        # n1: 2 connections in rooms 10 and 11; n2: 3, in 10 and 12 and none; n3: 1 in 13:
        # 6 connections, 4 rooms hub-wide (room 10 counts once), 5 summed per node
        layout = {0: [(1, [10]), (2, [11])], 1: [(3, [10]), (4, [12]), (5, [])],
                  2: [(6, [13])]}
        for i, clients in layout.items():
            for user, rooms in clients:
                self.connect(nodes[i].daemon.port, user, rooms)

        for node in nodes:
            self.assertTrue(d.wait_until(lambda: node.counts() == (3, 6, 4), 10),
                            "%s: %r, %r" % (node.name, node.counts(), node.nodes()))
        expected = {"n1": (2, 2), "n2": (3, 2), "n3": (1, 1)}
        for node in nodes:
            listed = node.nodes()
            # this node first, then the others by name
            self.assertEqual(listed[0][0], node.name)
            self.assertEqual([n for n, _ in listed[1:]],
                             sorted(set(expected) - {node.name}))
            for name, fields in listed:
                self.assertEqual(fields["local"], name == node.name)
                self.assertEqual((fields["connections"], fields["rooms"]), expected[name],
                                 "%s as seen by %s" % (name, node.name))
                owner = nodes[int(name[1]) - 1]
                self.assertEqual(fields["pid"], owner.daemon.proc.pid)
                self.assertEqual(fields["version"], node.prop("Version"))
                self.assertEqual(fields["host"], os.uname().nodename)
                self.assertLessEqual(fields["started"], fields["last-seen"])
            self.assertEqual(sum(f["connections"] for _, f in listed),
                             node.prop("ClusterClientCount"))
            self.assertEqual(listed[0][1]["connections"], node.prop("ClientCount"))

        # chathubctl on n2's bus
        ctl = d.run_ctl("--json", "nodes", bus=nodes[1].bus)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        listed = json.loads(ctl.stdout)
        d.assert_snake_case_keys(self, listed)
        self.assertEqual([n["name"] for n in listed], ["n2", "n1", "n3"])
        self.assertEqual([n["connections"] for n in listed], [3, 2, 1])
        self.assertEqual([n["local"] for n in listed], [True, False, False])
        self.assertIn("messages_relayed", listed[0])
        self.assertIn("last_seen", listed[0])
        human = d.run_ctl("nodes", bus=nodes[1].bus).stdout
        self.assertRegex(human, r"(?m)^n2 \*\s+\S+\s+%d\s+3\s+2\s" % nodes[1].daemon.proc.pid)
        self.assertRegex(human, r"(?m)^n3\s+\S+\s+%d\s+1\s+1\s" % nodes[2].daemon.proc.pid)
        status = json.loads(d.run_ctl("--json", "status", bus=nodes[1].bus).stdout)
        self.assertEqual((status["cluster_node_count"], status["cluster_client_count"],
                          status["cluster_room_count"]), (3, 6, 4))
        self.assertEqual((status["client_count"], status["room_count"]), (3, 2))
        self.assertIn("3 nodes, 6 clients, 4 rooms",
                      d.run_ctl("status", bus=nodes[1].bus).stdout)

        # a node killed without a word is dropped within three of its periods (and the
        # sweep's second)
        killed_at = time.monotonic()
        nodes[2].daemon.kill()
        for node in nodes[:2]:
            self.assertTrue(d.wait_until(lambda: node.counts() == (2, 5, 3), 10),
                            "%s: %r" % (node.name, node.nodes()))
        elapsed = time.monotonic() - killed_at
        self.assertLessEqual(elapsed, h.scaled(3 * PERIOD + 1.5),
                             "n3 was dropped only after %.1f s" % elapsed)
        self.assertNotIn("n3", nodes[0].names())
        self.assertNotIn("n3", nodes[1].names())
        self.assertIsNotNone(nodes[0].daemon.wait_for_log(r"Node n3 .*dropped", 1))

    def test_clean_stop_leaves_at_once(self):
        # a long period: only the goodbye can drop the node this soon
        first = self.node("a", period=30)
        second = self.node("b", period=30)
        self.assertTrue(d.wait_until(lambda: first.names() == ["a", "b"], 10), first.names())
        stopped_at = time.monotonic()
        self.assertEqual(second.daemon.stop(), 0)
        self.assertTrue(d.wait_until(lambda: first.names() == ["a"], 10), first.names())
        self.assertLess(time.monotonic() - stopped_at, h.scaled(5))
        self.assertEqual(first.prop("ClusterNodeCount"), 1)

    def test_node_heard_again_after_redis_restart(self):
        first = self.node("r1")
        second = self.node("r2")
        self.assertTrue(d.wait_until(lambda: first.prop("ClusterNodeCount") == 2, 10))
        self.redis.restart()
        # both reconnect, resubscribe and announce again
        self.assertTrue(d.wait_until(lambda: first.names() == ["r1", "r2"]
                                     and second.names() == ["r2", "r1"], 15),
                        (first.names(), second.names()))


class PresenceTests(ClusterTestCase):
    """D-Bus Presence and `chathubctl presence` list the users on every node; RoomMembers
    this node's. A class of its own: it stops its redis-server."""

    def presence(self, node, room):
        return list(node.hub.call("Presence", (room,), "(t)")[0])

    def members(self, node, room):
        return list(node.hub.call("RoomMembers", (room,), "(t)")[0])

    def test_presence_lists_every_node(self):
        n1, n2 = self.node("q1"), self.node("q2")
        room = 20
        # user 2 has a connection on each node; 4 is on n2 but not in the room, 5 is in
        # another room on n1
        self.connect(n1.daemon.port, 1, [room])
        self.connect(n1.daemon.port, 2, [room])
        self.connect(n1.daemon.port, 5, [21])
        self.connect(n2.daemon.port, 2, [room])
        third = self.connect(n2.daemon.port, 3, [room])
        self.connect(n2.daemon.port, 4)

        for node in (n1, n2):
            self.assertTrue(d.wait_until(lambda: self.presence(node, room) == [1, 2, 3], 10),
                            "%s: %r" % (node.name, self.presence(node, room)))
        self.assertEqual(self.members(n1, room), [1, 2])
        self.assertEqual(sorted(self.members(n2, room)), [2, 3])
        self.assertEqual(self.presence(n2, 21), [5])
        self.assertEqual(self.presence(n1, 404), [])

        ctl = d.run_ctl("--json", "presence", str(room), bus=n1.bus)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        self.assertEqual(json.loads(ctl.stdout), {"room_id": room, "user_ids": [1, 2, 3]})
        human = d.run_ctl("presence", str(room), bus=n2.bus)
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertEqual(human.stdout.split(), ["USER", "1", "2", "3"])

        # a user who leaves the other node leaves the list
        third.abort()
        self.assertTrue(d.wait_until(lambda: self.presence(n1, room) == [1, 2], 10),
                        self.presence(n1, room))

        # Redis gone: Unavailable, never this node's users alone; RoomMembers still answers
        self.redis.stop()
        self.assertTrue(d.wait_until(
            lambda: n1.hub.error_of("Presence", (room,), "(t)")[0] is not None, 10))
        name, message = n1.hub.error_of("Presence", (room,), "(t)")
        self.assertEqual(name, "io.github.chathub.Hub1.Error.Unavailable", message)
        self.assertIn("room %d" % room, message)
        ctl = d.run_ctl("presence", str(room), bus=n1.bus)
        self.assertEqual(ctl.returncode, 1, ctl.stdout)
        self.assertIn("room %d" % room, ctl.stderr)
        self.assertEqual(self.members(n1, room), [1, 2])


class ReusePortTests(ClusterTestCase):

    def test_refused_without_cluster(self):
        status, log = h.run_daemon_expect_exit(config={"server": {"reuse-port": "true"}})
        self.assertEqual(status, 1, log)
        self.assertIn("[server] reuse-port: only for the nodes of one hub, with [cluster] "
                      "backend=redis", log)

    def test_needed_for_a_second_node_on_the_port(self):
        port = h.free_port()
        self.node("p1", port=port)
        status, log = h.run_daemon_expect_exit(
            config=node_config(self.redis, self.prefix, "p2"), args=["--port", str(port)])
        self.assertEqual(status, 1, log)
        self.assertIn("Cannot listen", log)

    def test_nodes_share_a_port(self):
        port = h.free_port()
        nodes = [self.node("s%d" % i, reuse_port=True, port=port) for i in range(3)]
        for node in nodes:
            self.assertEqual(node.daemon.port, port)
        # connect until every node has got one: the kernel picks, by a hash of the addresses
        landed = {}
        user = 100
        while len(landed) < len(nodes):
            self.assertLess(user, 300, "the kernel sent 200 connections to %r only" % landed)
            before = [n.prop("ClientCount") for n in nodes]
            ws = self.connect(port, user)
            self.assertTrue(d.wait_until(
                lambda: sum(n.prop("ClientCount") for n in nodes) == sum(before) + 1))
            after = [n.prop("ClientCount") for n in nodes]
            which = [i for i in range(len(nodes)) if after[i] > before[i]][0]
            if which in landed:
                ws.abort()
                self.assertTrue(d.wait_until(
                    lambda: nodes[which].prop("ClientCount") == before[which]))
            else:
                landed[which] = ws
            user += 1
        room = 4242
        members = [landed[i] for i in range(len(nodes))]
        for ws in members:
            ws.send_text(json.dumps({"type": "join", "room_id": room}))
            while True:
                event = ws.recv_json()
                if event["type"] == "join" and event.get("from") == ws.user_id:
                    break
        # each member hears every message, whichever node its sender is on
        for ws in members:
            ws.send_text(json.dumps({"type": "message", "room_id": room,
                                     "content": "from %d" % ws.user_id}))
        for ws in members:
            got = set()
            deadline = time.monotonic() + h.scaled(10)
            while len(got) < len(members) and time.monotonic() < deadline:
                event = ws.recv_json(timeout=h.scaled(5))
                if event["type"] == "message":
                    got.add(event["from"])
            self.assertEqual(got, {m.user_id for m in members})


if __name__ == "__main__":
    h.raise_nofile_limit()
    unittest.main(verbosity=2)
