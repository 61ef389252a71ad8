#!/usr/bin/python3
"""Chat.Connection from Python against the real chathubd: rooms, direct messages, history and
presence; a TCP drop (through a proxy here that can cut connections and refuse new ones), a
restart after SIGKILL on the same SQLite file and port, a memory store restarted (recovered:
false -> room-reloaded), the backoff's bounds and the token refresh. Each message must arrive
once and in order."""

import os
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

from chathub_gi import Chat, GLib, spin, wait_until  # noqa: E402
from gi.repository import Gio  # noqa: E402
import chathub_harness as h  # noqa: E402
from test_tls import make_certificate  # noqa: E402


class Proxy:
    """A TCP proxy in threads: passes bytes to the daemon, or (refusing) accepts and closes at
    once, recording when; cut() drops every connection through it (no close frame)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.refusing = False
        self.refused_at = []
        self.client_delay = 0.0  # seconds each chunk from a client waits before it goes on
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                self.refused_at.append(time.monotonic())
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b, delayed in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, delayed), daemon=True).start()

    def _pump(self, src, dst, delayed):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delayed and self.client_delay:
                    time.sleep(self.client_delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.cut()
        self._listener.close()


class Peer:
    """A Chat.Connection and what it saw."""

    def __init__(self, port, user_id, token):
        self.user_id = user_id
        self.conn = Chat.Connection.new(f"ws://127.0.0.1:{port}/ws", token)
        self.conn.props.backoff_min = 20
        self.conn.props.backoff_max = 200
        self.room = []       # contents of room messages, in order
        self.dms = []        # (from, to, content)
        self.reloads = []    # (room_id, [contents])
        self.recovered = []
        self.closes = []     # (code, reason, final)
        self.joined_self = 0
        self.expiring = 0
        self.errors = []
        self.new_token = None
        self.conn.connect("message", self._on_message)
        self.conn.connect("joined", self._on_joined)
        self.conn.connect("recovered", lambda c, room: self.recovered.append(room))
        self.conn.connect("room-reloaded", self._on_reloaded)
        self.conn.connect("closed", lambda c, code, reason, final: self.closes.append((code, reason, final)))
        self.conn.connect("error-received", lambda c, code, content: self.errors.append(code))
        self.conn.connect("token-expiring", self._on_expiring)

    def _on_message(self, conn, message):
        if message.get_room_id():
            assert message.get_offset() > 0
            self.room.append(message.get_content())
        else:
            self.dms.append((message.get_from(), message.get_to(), message.get_content()))

    def _on_joined(self, conn, room_id, user_id):
        if user_id == self.user_id:
            self.joined_self += 1

    def _on_reloaded(self, conn, room_id, epoch, messages):
        assert epoch
        self.reloads.append((room_id, [m.get_content() for m in messages]))

    def _on_expiring(self, conn):
        self.expiring += 1
        if self.new_token is not None:
            conn.set_token(self.new_token)

    def state(self):
        return self.conn.props.state

    def start(self, room=None):
        if room is not None:
            self.conn.join(room)
        assert self.conn.open()
        wait_until(lambda: self.state() == Chat.ConnectionState.CONNECTED, what="connected")
        if room is not None:
            wait_until(lambda: self.joined_self > 0, what="the join's acknowledgement")
        return self


def restart(daemon, signum):
    """Stops chathubd (the GLib loop keeps running, so clients answer its close) and starts it
    again on the same port and files."""
    daemon.send_signal(signum)
    wait_until(lambda: daemon.proc.poll() is not None, timeout=10, what="chathubd to exit")
    daemon._reader.join(h.scaled(2))
    daemon.proc.stderr.close()
    daemon.args = ["--port", str(daemon.port)]
    daemon.log.clear()
    daemon.start()


class ConnectionTestCase(unittest.TestCase):
    BACKEND = "sqlite"

    def setUp(self):
        self.daemon = h.Daemon(config={"auth": {"leeway": 0}, "store": {"backend": self.BACKEND}})
        self.daemon.start()
        self.peers = []
        self.proxy = None

    def tearDown(self):
        for peer in self.peers:
            peer.conn.close()
        if self.proxy:
            self.proxy.close()
        self.daemon.send_signal(signal.SIGTERM)
        wait_until(lambda: self.daemon.proc.poll() is not None, timeout=10, what="chathubd to exit")
        self.daemon.cleanup()

    def peer(self, user_id, port=None, lifetime=3600):
        token = self.daemon.token(user_id, iat=h.now(), exp=h.now() + lifetime)
        peer = Peer(port or self.daemon.port, user_id, token)
        self.peers.append(peer)
        return peer

    def wait_room(self, peer, expected):
        wait_until(lambda: len(peer.room) >= len(expected), timeout=10, what=f"room messages {expected}")
        self.assertEqual(peer.room, expected)


class TestConnection(ConnectionTestCase):
    def test_rooms_dms_history_presence(self):
        a = self.peer(11)
        with self.assertRaises(GLib.Error) as ctx:
            a.conn.send_to_room(5, "too early")
        self.assertTrue(ctx.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_CONNECTED))
        self.assertEqual(a.conn.props.user_id, 11)
        a.start(5)
        b = self.peer(12).start(5)
        self.assertEqual(a.conn.get_rooms(), [5])
        a.conn.send_to_room(5, "hello")
        self.wait_room(b, ["hello"])
        b.conn.send_to_room(5, "hi")
        self.wait_room(a, ["hello", "hi"])
        a.conn.send_to_user(12, "psst")
        wait_until(lambda: b.dms and a.dms, what="the DM and its echo")
        self.assertEqual(b.dms, [(11, 12, "psst")])
        self.assertEqual(a.dms, [(11, 12, "psst")])

        results = []
        a.conn.request_history_async(5, 0, 0, None,
                                     lambda c, res: results.append(c.request_history_finish(res)))
        wait_until(lambda: results, what="the history answer")
        self.assertEqual([m.get_content() for m in results[0]], ["hello", "hi"])
        self.assertEqual([m.get_offset() for m in results[0]], [1, 2])
        users = []
        a.conn.request_presence_async(5, None,
                                      lambda c, res: users.append(c.request_presence_finish(res)))
        wait_until(lambda: users, what="the presence answer")
        self.assertEqual(users[0], [11, 12])

        b.conn.leave(5)
        with self.assertRaises(GLib.Error) as ctx:
            b.conn.leave(5)
        self.assertTrue(ctx.exception.matches(Chat.error_quark(), Chat.Error.NOT_MEMBER))
        a.conn.close()
        self.assertEqual(a.state(), Chat.ConnectionState.DISCONNECTED)
        self.assertEqual(a.closes, [(1000, "", True)])

    def test_drop_and_recover(self):
        self.proxy = Proxy(self.daemon.port)
        a = self.peer(21).start(6)
        b = self.peer(22, port=self.proxy.port).start(6)
        a.conn.send_to_room(6, "m1")
        self.wait_room(b, ["m1"])
        self.proxy.refusing = True
        self.proxy.cut()
        wait_until(lambda: b.state() == Chat.ConnectionState.RECONNECTING, what="reconnecting")
        self.assertEqual(b.closes, [(1006, "", False)])
        for i in range(2, 7):
            a.conn.send_to_room(6, f"m{i}")
        a.conn.send_to_user(22, "while away")
        self.wait_room(a, [f"m{i}" for i in range(1, 7)])
        wait_until(lambda: len(self.proxy.refused_at) >= 3, what="refused attempts")
        self.proxy.refusing = False
        wait_until(lambda: b.state() == Chat.ConnectionState.CONNECTED, what="reconnected")
        self.wait_room(b, [f"m{i}" for i in range(1, 7)])
        a.conn.send_to_room(6, "m7")
        self.wait_room(b, [f"m{i}" for i in range(1, 8)])
        wait_until(lambda: b.dms, what="the DM sent while away")
        spin(0.2)
        self.assertEqual(b.dms, [(21, 22, "while away")])
        self.assertEqual(b.recovered, [6])
        self.assertEqual(b.reloads, [])

    def test_dms_in_order_across_a_drop(self):
        # the user's other device takes the DMs sent while b is away, so b gets them from its
        # sync's replay, not as offline ones; live DMs may reach b before the sync answer
        self.proxy = Proxy(self.daemon.port)
        desktop = self.peer(52).start()
        b = self.peer(52, port=self.proxy.port).start()
        sender = h.RawWS.connect(self.daemon.port, self.daemon.token(51))
        n = 150

        def send():
            for i in range(n):
                sender.send_json({"type": "message", "to": 52, "content": f"d{i}"})
                time.sleep(0.008)  # within the default rate limit

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        wait_until(lambda: len(b.dms) >= 30, what="the first DMs")
        # b's frames after the reconnect (its sync) reach the daemon late: live DMs come first
        self.proxy.client_delay = 0.1
        self.proxy.cut()
        wait_until(lambda: len(b.dms) >= n and len(desktop.dms) >= n, timeout=15,
                   what="every DM on both devices")
        thread.join(h.scaled(10))
        spin(0.2)
        self.assertEqual([content for _, _, content in b.dms], [f"d{i}" for i in range(n)])
        self.assertEqual([content for _, _, content in desktop.dms], [f"d{i}" for i in range(n)])
        self.assertEqual([final for _, _, final in b.closes], [False])
        sender.close()

    def test_restart_after_sigkill(self):
        a = self.peer(31).start(7)
        b = self.peer(32).start(7)
        a.conn.send_to_room(7, "before")
        self.wait_room(b, ["before"])
        restart(self.daemon, signal.SIGKILL)
        wait_until(lambda: a.state() == Chat.ConnectionState.CONNECTED and a.recovered,
                   timeout=10, what="a back")
        a.conn.send_to_room(7, "after")
        self.wait_room(a, ["before", "after"])
        self.wait_room(b, ["before", "after"])
        wait_until(lambda: b.recovered, what="b recovered")
        self.assertEqual(a.closes[0][0], 1006)
        self.assertFalse(any(final for _, _, final in a.closes + b.closes))

    def test_backoff_bounds(self):
        self.proxy = Proxy(self.daemon.port)
        b = self.peer(42, port=self.proxy.port)
        b.conn.props.backoff_min = 10
        b.conn.props.backoff_max = 150
        b.start()
        self.proxy.refusing = True
        self.proxy.cut()
        wait_until(lambda: len(self.proxy.refused_at) >= 12, timeout=10, what="12 attempts")
        gaps = [t1 - t0 for t0, t1 in zip(self.proxy.refused_at, self.proxy.refused_at[1:])]
        # the wait is at most 150 ms; accepting, closing and noticing cost the rest
        self.assertLessEqual(max(gaps), 0.150 + 0.150, gaps)
        self.assertEqual(b.state(), Chat.ConnectionState.RECONNECTING)
        self.proxy.refusing = False
        wait_until(lambda: b.state() == Chat.ConnectionState.CONNECTED, what="back")

    def test_refresh_and_final_4001(self):
        a = self.peer(51, lifetime=3)
        a.new_token = self.daemon.token(51, exp=h.now() + 3600)
        b = self.peer(52, lifetime=3)
        a.start(8)
        b.start(8)
        wait_until(lambda: b.closes, timeout=8, what="b's 4001")
        self.assertEqual(b.closes, [(4001, "token expired", True)])
        self.assertEqual(b.expiring, 1)
        spin(1.5)
        self.assertEqual(b.state(), Chat.ConnectionState.DISCONNECTED)
        self.assertEqual(a.state(), Chat.ConnectionState.CONNECTED)
        self.assertEqual((a.expiring, a.closes, a.errors), (1, [], []))
        self.assertEqual(a.conn.props.token, a.new_token)
        a.conn.send_to_room(8, "still here")
        self.wait_room(a, ["still here"])

    def test_refused_requests_finish(self):
        """A token for room 9 only: the join of 10 is refused and forgotten, and a history of
        10 asked meanwhile fails with the server's not_member (a Chat.Error), not never."""
        token = self.daemon.token(61, iat=h.now(), exp=h.now() + 3600, rooms=[9])
        a = Peer(self.daemon.port, 61, token)
        self.peers.append(a)
        a.start(9)
        a.conn.join(10)
        outcome = []

        def done(conn, result):
            try:
                outcome.append(conn.request_history_finish(result))
            except GLib.Error as error:
                outcome.append(error)
        a.conn.request_history_async(10, 0, 0, None, done)
        wait_until(lambda: outcome, timeout=5, what="the history's outcome")
        self.assertIsInstance(outcome[0], GLib.Error)
        self.assertTrue(outcome[0].matches(Chat.error_quark(), Chat.Error.NOT_MEMBER), outcome[0])
        self.assertEqual(a.errors, ["forbidden"])
        self.assertEqual(list(a.conn.get_rooms()), [9])

    def test_attempt_failed_says_why(self):
        """Nothing listens: attempt-failed hands Python a GLib.Error and the wait."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        a = self.peer(62, port=port)
        failures = []
        a.conn.connect("attempt-failed", lambda c, error, retry_ms: failures.append((error, retry_ms)))
        self.assertTrue(a.conn.open())
        wait_until(lambda: len(failures) >= 2, timeout=5, what="two failed attempts")
        error, retry_ms = failures[0]
        self.assertTrue(error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CONNECTION_REFUSED), error)
        self.assertLessEqual(retry_ms, 200)
        self.assertEqual(a.state(), Chat.ConnectionState.RECONNECTING)
        self.assertEqual(a.closes, [])


class TestReload(ConnectionTestCase):
    BACKEND = "memory"

    def test_recovered_false_reloads(self):
        self.proxy = Proxy(self.daemon.port)
        a = self.peer(61).start(9)
        b = self.peer(62, port=self.proxy.port).start(9)
        a.conn.send_to_room(9, "old")
        self.wait_room(b, ["old"])
        self.proxy.refusing = True
        restart(self.daemon, signal.SIGTERM)
        wait_until(lambda: a.reloads, timeout=10, what="a's reload")
        self.assertEqual(a.reloads, [(9, [])])
        a.conn.send_to_room(9, "new1")
        a.conn.send_to_room(9, "new2")
        self.wait_room(a, ["old", "new1", "new2"])
        self.proxy.refusing = False
        wait_until(lambda: b.reloads, timeout=10, what="b's reload")
        self.assertEqual(b.reloads, [(9, ["new1", "new2"])])
        a.conn.send_to_room(9, "new3")
        self.wait_room(b, ["old", "new3"])
        self.assertEqual(b.recovered, [])


class TestTlsDatabase(unittest.TestCase):
    """ChatConnection:tls-database against chathubd over wss with a self-signed certificate:
    refused with the system's authorities, reached with a GTlsFileDatabase of the
    certificate, and NULL again gives the system's."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-gi-tls-")
        self.cert, key = make_certificate(self.tmp.name, "server")
        self.daemon = h.Daemon(config={"server": {"tls-certificate": self.cert, "tls-key": key}})
        self.daemon.start()
        self.conns = []

    def tearDown(self):
        for conn in self.conns:
            conn.close()
        self.daemon.stop()
        self.daemon.cleanup()
        self.tmp.cleanup()

    def connection(self, user_id):
        conn = Chat.Connection.new("wss://127.0.0.1:%d/ws" % self.daemon.port,
                                   self.daemon.token(user_id))
        self.conns.append(conn)
        return conn

    def test_private_certificate(self):
        refused = self.connection(71)
        self.assertIsNone(refused.get_tls_database())
        failures = []
        refused.connect("attempt-failed", lambda c, error, delay: failures.append(error.message))
        self.assertTrue(refused.open())
        wait_until(lambda: failures, what="the certificate refused")
        self.assertNotEqual(refused.props.state, Chat.ConnectionState.CONNECTED)

        trusting = self.connection(72)
        database = Gio.TlsFileDatabase.new(self.cert)
        notified = []
        trusting.connect("notify::tls-database", lambda *args: notified.append(True))
        trusting.set_tls_database(database)
        self.assertEqual(trusting.props.tls_database, database)
        self.assertEqual(len(notified), 1)
        self.assertTrue(trusting.open())
        wait_until(lambda: trusting.props.state == Chat.ConnectionState.CONNECTED,
                   what="connected over wss")
        trusting.join(3)
        wait_until(lambda: 3 in trusting.get_rooms(), what="joined over wss")

        trusting.props.tls_database = None
        self.assertIsNone(trusting.get_tls_database())
        self.assertEqual(len(notified), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
