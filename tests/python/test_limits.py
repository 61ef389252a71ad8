#!/usr/bin/python3
"""Limits through the real daemon: binary frames (1003), message size (1009, single
frames and fragments), max-connections (503), the per-connection outbox (1008 for a
peer that stops reading), 1,000 concurrent connections in one room, the per-connection
rate limit (rate_limited, then 1008) and rooms per connection (limit_exceeded; 10,000
rooms on one connection without stalling anyone else)."""

import asyncio
import concurrent.futures
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

LIMIT = 65536


def setUpModule():
    h.raise_nofile_limit(8192)


def message_of_size(size, room=None):
    if room is None:
        return h.pad_message_to(size, lambda f: '{"type":"message","content":"%s"}' % f)
    return h.pad_message_to(size, lambda f: '{"type":"message","room_id":%d,"content":"%s"}'
                            % (room, f))


class RawMixin:
    def raw(self, user_id=None, **kw):
        uid = user_id if user_id is not None else h.next_user_id()
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(uid), **kw)
        ws.user_id = uid
        self.addCleanup(ws.abort, False)
        return ws

    def join(self, ws, room):
        ws.send_json({"type": "join", "room_id": room})
        ack = ws.recv_json()
        self.assertEqual((ack.get("type"), ack.get("room_id"), ack.get("from")),
                         ("join", room, ws.user_id), ack)

    def assert_close(self, ws, code, reason=None, timeout=5.0):
        try:
            got, why = ws.expect_close(timeout)
        except h.ConnectionClosedRaw as e:
            self.fail("expected a close frame with %d, the connection was dropped instead (%s)"
                      % (code, e))
        except TimeoutError:
            self.fail("expected a close frame with %d, nothing within %.0f s" % (code, timeout))
        self.assertEqual(got, code, "close code (reason %r)" % why)
        if reason is not None:
            self.assertEqual(why, reason)
        self.assertTrue(ws.wait_eof(7.0), "TCP connection not closed after the close handshake")
        return why

    def assert_only_pong(self, ws):
        ws.send_json({"type": "ping"})
        msg = ws.recv_json()
        self.assertEqual(msg.get("type"), "pong", "expected only a pong, got %r" % msg)


class FrameLimitTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"limits": {"max-message-size": LIMIT}}

    def test_binary_frame_closed_1003(self):
        ws = self.raw()
        ws.send_binary(b"\x00\x01\x02binary")
        self.assert_close(ws, 1003)

    def test_binary_fragment_start_closed_1003(self):
        ws = self.raw()
        ws.send_frame(h.OP_BINARY, b"\x00" * 100, fin=False)
        self.assert_close(ws, 1003)

    def test_binary_after_valid_messages_closed_1003_others_unaffected(self):
        ws = self.raw()
        other = self.raw()
        room = h.next_room_id()
        self.join(other, room)
        self.join(ws, room)
        self.assertEqual(other.recv_json().get("type"), "join")
        ws.send_json({"type": "message", "room_id": room, "content": "before"})
        self.assertEqual(ws.recv_json().get("content"), "before")
        self.assertEqual(other.recv_json().get("content"), "before")
        ws.send_binary(b"\xff")
        self.assert_close(ws, 1003)
        ev = other.recv_json(timeout=8)
        self.assertEqual((ev.get("type"), ev.get("room_id"), ev.get("from")),
                         ("leave", room, ws.user_id), ev)
        self.assert_only_pong(other)

    def test_oversize_single_frame_closed_1009(self):
        ws = self.raw()
        ws.send_text(message_of_size(100 * 1024))
        self.assert_close(ws, 1009)

    def test_one_byte_over_limit_closed_1009(self):
        ws = self.raw()
        ws.send_text(message_of_size(LIMIT + 1))
        self.assert_close(ws, 1009)

    def test_oversize_garbage_frame_closed_1009(self):
        # the size limit wins over JSON parsing
        ws = self.raw()
        ws.send_text("x" * (LIMIT + 1000))
        self.assert_close(ws, 1009)

    def test_exact_limit_accepted(self):
        ws = self.raw()
        text = message_of_size(LIMIT)
        self.assertEqual(len(text.encode()), LIMIT)
        ws.send_text(text)
        msg = ws.recv_json(timeout=5)
        self.assertEqual(msg.get("type"), "message", str(msg)[:200])
        self.assertEqual(msg.get("content"), json.loads(text)["content"])
        self.assert_only_pong(ws)

    def test_exact_limit_fragmented_accepted(self):
        ws = self.raw()
        data = message_of_size(LIMIT).encode()
        parts = [data[i:i + 20000] for i in range(0, len(data), 20000)]
        self.assertEqual(len(parts), 4)
        ws.send_fragmented(parts)
        msg = ws.recv_json(timeout=5)
        self.assertEqual(msg.get("content"), json.loads(data)["content"])
        self.assert_only_pong(ws)

    def test_fragmented_message_reassembled(self):
        ws = self.raw()
        text = json.dumps({"type": "message", "content": "frag\U0001F600mented"}, ensure_ascii=False)
        data = text.encode()
        # split inside the 4-byte UTF-8 sequence of the emoji on purpose
        cut = data.index("\U0001F600".encode()) + 2
        ws.send_fragmented([data[:5], data[5:cut], data[cut:]])
        self.assertEqual(ws.recv_json().get("content"), "frag\U0001F600mented")

    def test_fragments_with_interleaved_ping(self):
        ws = self.raw()
        data = b'{"type":"message","content":"with ping"}'
        ws.send_frame(h.OP_TEXT, data[:10], fin=False)
        ws.send_frame(h.OP_PING, b"hi")
        ws.send_frame(h.OP_CONT, data[10:], fin=True)
        f = ws.recv_frame()
        self.assertEqual((f.opcode, f.payload), (h.OP_PONG, b"hi"))
        self.assertEqual(ws.recv_json().get("content"), "with ping")

    def test_fragmented_over_limit_closed_1009(self):
        for final in (False, True):
            with self.subTest(last_fragment_fin=final):
                ws = self.raw()
                # 5 x 16 KiB = 80 KiB > 64 KiB; every fragment alone is small
                ws.send_fragmented([b"x" * 16384] * 5, final=final)
                self.assert_close(ws, 1009)

    def test_many_small_fragments_over_limit_closed_1009(self):
        ws = self.raw()
        ws.send_frame(h.OP_TEXT, b'{"type":"message","content":"', fin=False)
        for _ in range(70):
            ws.send_frame(h.OP_CONT, b"y" * 1024, fin=False)
        self.assert_close(ws, 1009)

    def test_limit_counts_per_message_not_per_connection(self):
        # many messages near the limit on one connection are fine
        ws = self.raw()
        text = message_of_size(LIMIT - 10)
        for _ in range(5):
            ws.send_text(text)
        for _ in range(5):
            self.assertEqual(ws.recv_json(timeout=5).get("type"), "message")
        self.assert_only_pong(ws)

    def test_oversize_sender_leaves_room(self):
        ws = self.raw()
        other = self.raw()
        room = h.next_room_id()
        self.join(other, room)
        self.join(ws, room)
        self.assertEqual(other.recv_json().get("type"), "join")
        ws.send_text(message_of_size(LIMIT + 5000, room))
        self.assert_close(ws, 1009)
        ev = other.recv_json(timeout=8)
        self.assertEqual((ev.get("type"), ev.get("from")), ("leave", ws.user_id), ev)
        self.assert_only_pong(other)

    def test_websockets_client_sees_1009(self):
        async def run():
            import websockets
            ws = await h.ws_connect(self.daemon, h.next_user_id())
            try:
                await ws.send("z" * (LIMIT * 2))
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                    await asyncio.wait_for(ws.recv(), h.scaled(5))
                self.assertEqual(cm.exception.rcvd.code if cm.exception.rcvd else None, 1009)
            finally:
                await ws.close()
        asyncio.run(run())


class SmallLimitTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"limits": {"max-message-size": 1024}}

    def test_configured_limit(self):
        ws = self.raw()
        ws.send_text(message_of_size(1024))
        self.assertEqual(ws.recv_json().get("type"), "message")
        ws.send_text(message_of_size(1025))
        self.assert_close(ws, 1009)


class MaxConnectionsTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"server": {"max-connections": 1}}

    def assert_503(self, resp):
        try:
            self.assertEqual(resp.status, 503, resp.body[:200])
            ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
            self.assertEqual(ctype, "application/json")
            body = resp.json()
            self.assertEqual(body.get("error"), "server_busy", body)
            self.assertIsInstance(body.get("error_description"), str, body)
            self.assertIn("close", (resp.header("Connection") or "").lower())
            self.assertTrue(resp.server_closed(3.0), "socket still open after 503")
        finally:
            resp.close()

    def upgrade(self, token):
        return h.http_request(self.daemon.port, "GET", "/ws", h.upgrade_headers(token=token))

    def wait_slot_free(self, token):
        deadline = time.monotonic() + h.scaled(5)
        while True:
            try:
                return h.RawWS.connect(self.daemon.port, token)
            except h.HandshakeRefused as e:
                e.response.close()
                self.assertEqual(e.response.status, 503)
                if time.monotonic() > deadline:
                    self.fail("slot not freed 5 s after the first client left")
                time.sleep(0.05)

    def test_second_upgrade_is_503(self):
        first = self.wait_slot_free(self.daemon.token(h.next_user_id()))
        try:
            self.assert_503(self.upgrade(self.daemon.token(h.next_user_id())))
            # the first connection is unaffected
            self.assert_only_pong(first)
        finally:
            first.close()

    def test_order_400_401_before_503(self):
        first = self.wait_slot_free(self.daemon.token(h.next_user_id()))
        try:
            r = h.http_request(self.daemon.port, "GET", "/ws", {})
            self.assertEqual(r.status, 400)
            r.close()
            r = self.upgrade("bad.token.here")
            self.assertEqual(r.status, 401)
            r.close()
        finally:
            first.close()

    def test_slot_freed_after_close(self):
        uid = h.next_user_id()
        first = self.wait_slot_free(self.daemon.token(uid))
        first.close()
        second = self.wait_slot_free(self.daemon.token(uid))
        second.abort(reset=True)            # an abrupt drop frees the slot too
        third = self.wait_slot_free(self.daemon.token(uid))
        self.assert_only_pong(third)
        third.close()

    def test_websockets_client_sees_503(self):
        first = self.wait_slot_free(self.daemon.token(h.next_user_id()))

        async def run():
            import websockets
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                await h.ws_connect(self.daemon, h.next_user_id())
            self.assertEqual(cm.exception.status_code, 503)
        try:
            asyncio.run(run())
        finally:
            first.close()


class ReaderClosed(Exception):
    pass


class SlowConsumerTests(RawMixin, unittest.TestCase):
    """outbox-size=65536. A raw client with a tiny SO_RCVBUF joins a room and never reads;
    a publisher sends far more than the kernel buffers plus the outbox can hold; a second
    client in the room reads everything."""

    def setUp(self):
        self.daemon = h.Daemon(config={"limits": {"outbox-size": 65536,
                                                  "max-message-size": LIMIT}})
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)

    def test_non_reading_client_closed_1008_paced_publisher(self):
        # the publisher keeps at most 4 x 8 KB in flight (it waits for its own echoes), so
        # no reading client ever has more than 32 KiB pending in the daemon
        self.run_scenario(n=800, size=8000, window=4)

    def test_non_reading_client_closed_1008_bursting_publisher(self):
        # the publisher keeps up to 10 x 30 KB in flight, bursts five times the outbox budget
        # that the daemon reads in one go: readers that keep up must not be taken for slow
        # consumers because of how many messages one read brought in. (An unpaced flood from
        # a single-threaded client that also reads can genuinely fall behind by more than the
        # kernel buffers plus the budget; closing it then is the configured policy.)
        self.run_scenario(n=400, size=30000, window=10)

    def run_scenario(self, n, size, window):
        self.N = n
        room = h.next_room_id()
        slow = self.raw(rcvbuf=4096)
        self.join(slow, room)
        try:
            received, reader_events, (frames, close, dropped) = asyncio.run(
                self.flood(room, slow, n, size, window))
        except ReaderClosed as e:
            self.fail(str(e))

        # the reading client got every message, in order, with increasing ids
        self.assertEqual([m["content"].split(":")[1] for m in received], [str(i) for i in range(n)])
        ids = [m["id"] for m in received]
        self.assertEqual(ids, sorted(set(ids)), "ids not strictly increasing")

        # what the non-reading client got once it started reading
        got_msgs = [m for m in (json.loads(p) for p in frames) if m.get("type") == "message"]
        self.assertLess(len(got_msgs), n,
                        "the non-reading client was never cut off (got all %d messages)" % n)
        # what it did get is an in-order prefix, frames intact
        self.assertEqual([m["content"].split(":")[1] for m in got_msgs],
                         [str(i) for i in range(len(got_msgs))])
        if close is not None:
            self.assertEqual(close[0], 1008, "close frame %r" % (close,))
            self.assertEqual(close[1], "slow consumer")
            self.assertTrue(slow.wait_eof(10), "connection not closed after the 1008 close")
        else:
            self.assertIsNotNone(dropped, "the non-reading client was neither closed nor dropped "
                                 "within 15 s (got %d messages)" % len(got_msgs))
            sys.stderr.write("[slow consumer dropped without a close frame: %s] " % dropped)
        # the room's other member learns that the slow client left
        self.assertIn(("leave", slow.user_id), reader_events, "no leave event for the slow consumer")

    def read_slow(self, slow):
        """Read the stalled client's socket until a close frame, EOF/reset or 15 s."""
        frames = []
        deadline = time.monotonic() + h.scaled(15)
        while time.monotonic() < deadline:
            try:
                f = slow.recv_frame(timeout=max(0.1, deadline - time.monotonic()) / h.TIME_SCALE)
            except h.ConnectionClosedRaw as e:
                return frames, None, str(e)
            except TimeoutError:
                break
            if f.opcode == h.OP_CLOSE:
                slow.send_close(f.close_code() or 1000)
                return frames, (f.close_code(), f.close_reason()), None
            if f.opcode == h.OP_TEXT:
                frames.append(f.payload)
        return frames, None, None

    async def flood(self, room, slow, n, size, window):
        import websockets
        reader_uid, pub_uid = h.next_user_id(), h.next_user_id()
        reader = await h.ws_connect(self.daemon, reader_uid, max_queue=None)
        pub = await h.ws_connect(self.daemon, pub_uid, max_queue=None)
        try:
            for ws, uid in ((reader, reader_uid), (pub, pub_uid)):
                await h.send_json(ws, {"type": "join", "room_id": room})
                while True:         # skip to our own ack
                    m = await h.recv_json(ws)
                    if m.get("type") == "join" and m.get("from") == uid:
                        break
            received = []
            events = []
            pub_received = []
            echo = asyncio.Condition()

            async def read_all(ws, name, sink, events_sink):
                try:
                    while len(sink) < n:
                        m = await h.recv_json(ws, timeout=20)
                        if m.get("type") == "message":
                            sink.append(m)
                            if sink is pub_received:
                                async with echo:
                                    echo.notify_all()
                        elif events_sink is not None:
                            events_sink.append((m.get("type"), m.get("from")))
                except websockets.exceptions.ConnectionClosed as e:
                    raise ReaderClosed("the %s, a client that reads everything, was closed by the "
                                       "daemon with %r after %d of %d messages"
                                       % (name, e.rcvd, len(sink), n))

            filler = "f" * size
            reader_task = asyncio.create_task(read_all(reader, "reading client", received, events))
            pub_task = asyncio.create_task(read_all(pub, "publisher", pub_received, None))
            try:
                for i in range(n):
                    if window is not None:
                        async with echo:
                            await asyncio.wait_for(
                                echo.wait_for(lambda: len(pub_received) > i - window or pub_task.done()),
                                h.scaled(20))
                    if pub_task.done() or reader_task.done():
                        break
                    await h.send_json(pub, {"type": "message", "room_id": room,
                                            "content": "m:%d:%s" % (i, filler)})
            except websockets.exceptions.ConnectionClosed:
                pass            # reported by the tasks
            await asyncio.wait_for(asyncio.gather(reader_task, pub_task), h.scaled(30))

            # now read the stalled client, and meanwhile wait for the leave event
            slow_task = asyncio.create_task(asyncio.to_thread(self.read_slow, slow))
            deadline = time.monotonic() + h.scaled(15)
            while ("leave", slow.user_id) not in events and time.monotonic() < deadline:
                try:
                    m = await h.recv_json(reader, timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                events.append((m.get("type"), m.get("from")))
            slow_result = await slow_task
            return received, events, slow_result
        finally:
            await h.close_all(reader, pub)


class ThousandConnectionsTest(unittest.TestCase):
    N = 1000

    def setUp(self):
        h.raise_nofile_limit(8192)
        self.daemon = h.Daemon()
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)
        self.conns = []
        self.addCleanup(self.close_conns)

    def close_conns(self):
        for ws in self.conns:
            ws.abort(reset=False)

    def test_thousand_connections_in_one_room_receive_broadcast(self):
        room = h.next_room_id()
        port = self.daemon.port
        base_uid = h.next_user_id()
        for _ in range(self.N):
            h.next_user_id()

        def open_one(i):
            uid = base_uid + i
            ws = h.RawWS.connect(port, self.daemon.token(uid), timeout=30)
            ws.user_id = uid
            ws.send_json({"type": "join", "room_id": room})
            ack = ws.recv_json(timeout=30)
            if (ack.get("type"), ack.get("room_id"), ack.get("from")) != ("join", room, uid):
                raise AssertionError("connection %d: first frame after join %r" % (i, ack))
            return ws

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            futures = [ex.submit(open_one, i) for i in range(self.N)]
            for f in futures:
                try:
                    self.conns.append(f.result())
                except Exception as e:
                    self.fail("opening connection failed after %d open: %r" % (len(self.conns), e))
        connect_s = time.monotonic() - t0
        self.assertEqual(len(self.conns), self.N)

        sender = self.conns[0]
        sender.send_json({"type": "message", "room_id": room, "content": "fan-out"})
        t1 = time.monotonic()
        deadline = t1 + h.scaled(60)
        ids = set()
        for i, ws in enumerate(self.conns):
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("connection %d of %d got no broadcast in time" % (i, self.N))
                f = ws.recv_frame(timeout=left)
                if f.opcode == h.OP_CLOSE:
                    self.fail("connection %d closed with %r %r" % (i, f.close_code(), f.close_reason()))
                if f.opcode != h.OP_TEXT or b'"message"' not in f.payload:
                    continue
                msg = json.loads(f.payload)
                if msg.get("type") != "message":
                    continue
                self.assertEqual((msg.get("from"), msg.get("room_id"), msg.get("content")),
                                 (sender.user_id, room, "fan-out"), msg)
                ids.add(msg.get("id"))
                break
        self.assertEqual(len(ids), 1, "one broadcast, one id: %r" % ids)
        sys.stderr.write("[%d connections: connect+join %.1f s, fan-out read %.1f s] "
                         % (self.N, connect_s, time.monotonic() - t1))
        self.assertTrue(self.daemon.alive())




class HandshakeTimeoutTests(unittest.TestCase):
    """handshake-timeout=1: a TCP connection that is not upgraded in time is closed, so silent
    peers cannot hold descriptors; an upgraded one is not affected."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = h.Daemon(config={"limits": {"handshake-timeout": 1}}).start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.cleanup()

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5)
        self.addCleanup(sock.close)
        return sock

    def test_silent_connection_closed(self):
        sock = self.connect()
        start = time.monotonic()
        self.assertTrue(h.wait_socket_closed(sock, timeout=5), "silent connection still open")
        self.assertGreater(time.monotonic() - start, 0.5, "closed before the timeout")

    def test_partial_request_closed(self):
        sock = self.connect()
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        self.assertTrue(h.wait_socket_closed(sock, timeout=5), "half a request kept open")

    def test_upgraded_connection_stays(self):
        ws = h.RawWS.connect(self.daemon.port, token=self.daemon.token(h.next_user_id()))
        self.addCleanup(ws.close)
        time.sleep(h.scaled(2.5))
        ws.send_json({"type": "ping"})
        self.assertEqual(ws.recv_json(timeout=3)["type"], "pong")


class FileLimitTests(unittest.TestCase):
    """At the open-file limit the daemon neither spins nor drops anyone: newcomers wait in the
    backlog and are served once descriptors are free again."""

    def test_out_of_descriptors(self):
        daemon = h.Daemon(nofile=40).start()
        self.addCleanup(daemon.cleanup)
        held = []
        self.addCleanup(lambda: [ws.close() for ws in held])
        # fill the descriptor table with upgraded clients
        for _ in range(60):
            try:
                held.append(h.RawWS.connect(daemon.port, token=daemon.token(h.next_user_id()),
                                            timeout=1))
            except (socket.timeout, TimeoutError, OSError):
                break
        self.assertGreater(len(held), 5)
        self.assertLess(len(held), 40, "the open-file limit did not apply")
        # one more waits in the kernel backlog
        waiting = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        self.addCleanup(waiting.close)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        request = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (key, daemon.token(h.next_user_id())))
        waiting.sendall(request.encode())
        # the daemon must not spin meanwhile
        def cpu_seconds():
            with open("/proc/%d/stat" % daemon.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before = cpu_seconds()
        time.sleep(2)
        self.assertLess(cpu_seconds() - before, 0.5, "chathubd spins at the open-file limit")
        daemon.wait_for_log(r"Out of file descriptors", timeout=3)
        # free some descriptors: the waiting client is upgraded
        for ws in held[:5]:
            ws.close()
        del held[:5]
        waiting.settimeout(h.scaled(5))
        head = waiting.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head[:100])


class PartialWriteTests(RawMixin, unittest.TestCase):
    """A reader that is slow but keeps reading (4 KiB receive buffer, 1 KiB reads): the daemon
    meets short writes and EAGAIN all the time, and WebSocket pings (every second) are queued
    between partly written frames. Every frame must arrive whole and in order."""

    N = 1600
    SIZE = 8000

    def setUp(self):
        self.daemon = h.Daemon(config={"limits": {"outbox-size": 64 * 1024 * 1024,
                                                  "ping-interval": 1, "idle-timeout": 30}})
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)

    def test_slow_reader_gets_everything_intact(self):
        import threading
        room = h.next_room_id()
        slow = self.raw(rcvbuf=4096)
        self.join(slow, room)
        pub = self.raw()
        self.join(pub, room)
        stop = threading.Event()

        def drain_publisher():
            # the publisher is in the room too: keep reading its echoes
            while not stop.is_set():
                try:
                    pub.recv_message(timeout=0.2, answer_pings=True)
                except (TimeoutError, socket.timeout):
                    continue
                except Exception:
                    return
        drainer = threading.Thread(target=drain_publisher, daemon=True)
        drainer.start()
        filler = "p" * self.SIZE
        for i in range(self.N):
            pub.send_json({"type": "message", "room_id": room, "content": "%d:%s" % (i, filler)})

        got, pings, first_ping_at = [], 0, None
        deadline = time.monotonic() + h.scaled(60)
        slow.sock.settimeout(1)
        while len(got) < self.N and time.monotonic() < deadline:
            f = slow._parse_frame()
            if f is None:
                try:
                    data = slow.sock.recv(4096)
                except socket.timeout:
                    continue
                self.assertTrue(data, "connection closed after %d messages" % len(got))
                slow.buf.extend(data)
                time.sleep(0.001)
                continue
            if f.opcode == h.OP_PING:
                if pings == 0:
                    first_ping_at = len(got)
                pings += 1
                slow.send_frame(h.OP_PONG, f.payload)
            elif f.opcode == h.OP_TEXT:
                self.assertTrue(f.fin)
                m = json.loads(f.payload)
                if m.get("type") == "message":
                    got.append(m)
            else:
                self.fail("unexpected frame %r" % (f,))
        stop.set()
        drainer.join(5)
        self.assertEqual(len(got), self.N, "only %d of %d messages" % (len(got), self.N))
        for i, m in enumerate(got):
            index, _, body = m["content"].partition(":")
            self.assertEqual(int(index), i)
            self.assertEqual(len(body), self.SIZE)
        # pings go ahead of queued data (at a frame boundary), not behind megabytes of it
        self.assertGreaterEqual(pings, 1, "no ping arrived while the backlog drained")
        self.assertLess(first_ping_at, self.N - 50, "the ping waited behind the whole backlog")


# The daemon's defaults (chathub.conf(5)); the harness turns the rate limit off, these
# tests turn it back on by removing the key.
RATE, BURST, MAX_ROOMS = 100, 200, 1000
DEFAULT_RATE = {"limits": {"messages-per-second": None}}


def text_frames(texts):
    return b"".join(h.encode_frame(h.OP_TEXT, t) for t in texts)


class RateLimitTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = DEFAULT_RATE

    def test_flood_refused_then_closed_1008_others_unaffected(self):
        room = h.next_room_id()
        flooder, reader, bystander = self.raw(), self.raw(), self.raw()
        self.join(flooder, room)
        self.join(reader, room)
        # the join took a token: let the bucket fill again, so the burst below is whole
        time.sleep(5.0 / RATE)
        n = 10 * BURST
        flood = text_frames('{"type":"message","room_id":%d,"content":"%d"}' % (room, i)
                            for i in range(n))
        sender = threading.Thread(target=flooder.send_raw, args=(flood,))
        sender.start()
        # while the flood is read, everyone else is still served
        for _ in range(20):
            self.assert_only_pong(bystander)
        sender.join(h.scaled(10))
        frames = []
        try:
            code, reason = flooder.expect_close(collect=frames)
        except (h.ConnectionClosedRaw, TimeoutError) as e:
            self.fail("expected a close 1008 for the flooder: %s" % e)
        self.assertEqual((code, reason), (1008, "rate limit"))
        # (the reader's join event came first)
        got = [json.loads(payload) for _, payload in frames][1:]
        relayed = [m["content"] for m in got if m["type"] == "message"]
        errors = [m for m in got if m["type"] == "error"]
        self.assertEqual(len(relayed) + len(errors), len(got), got[:5])
        # a full bucket first, in order; the few refilled meanwhile may follow
        self.assertGreaterEqual(len(relayed), BURST)
        self.assertLess(len(relayed), n - BURST)
        self.assertEqual(relayed[:BURST], [str(i) for i in range(BURST)])
        # every refusal is answered until more than a burst of them: then the close
        self.assertEqual(len(errors), BURST)
        self.assertEqual({e["code"] for e in errors}, {"rate_limited"})
        self.assertIn("per second", errors[0]["content"])
        # the reader got exactly what was relayed, and is served as before
        # (the flooder's leave event may come before the pong: only messages count here)
        self.assertEqual([m["content"] for m in self.read_until_pong(reader)
                          if m["type"] == "message"], relayed)
        reader.send_json({"type": "message", "room_id": room, "content": "still here"})
        self.assertEqual(reader.recv_json()["content"], "still here")
        self.assert_only_pong(bystander)

    def read_until_pong(self, ws):
        ws.send_json({"type": "ping"})
        got = []
        while True:
            m = ws.recv_json()
            if m["type"] == "pong":
                return got
            got.append(m)

    def test_json_pings_not_limited(self):
        ws = self.raw()
        n = 3 * BURST
        ws.send_raw(text_frames(['{"type":"ping"}'] * n))
        for i in range(n):
            m = ws.recv_json()
            self.assertEqual(m["type"], "pong", "answer %d of %d: %r" % (i, n, m))
        self.assert_full_bucket(ws)

    def test_websocket_pings_not_limited(self):
        ws = self.raw()
        n = 3 * BURST
        ws.send_raw(b"".join(h.encode_frame(h.OP_PING, b"p") for _ in range(n)))
        ws.send_json({"type": "ping"})
        pongs = 0
        while True:
            f = ws.recv_frame()
            if f.opcode == h.OP_PONG:
                pongs += 1
                continue
            self.assertEqual(f.opcode, h.OP_TEXT, f)
            self.assertEqual(json.loads(f.payload)["type"], "pong")
            break
        self.assertEqual(pongs, n)
        self.assert_full_bucket(ws)

    def assert_full_bucket(self, ws):
        """The whole burst still goes through: nothing before took from the bucket."""
        room = h.next_room_id()
        self.join(ws, room)
        ws.send_raw(text_frames('{"type":"message","room_id":%d,"content":"%d"}' % (room, i)
                                for i in range(BURST - 1)))
        for i in range(BURST - 1):
            m = ws.recv_json()
            self.assertEqual((m["type"], m.get("content")), ("message", str(i)), m)
        self.assert_only_pong(ws)


class RateLimitConfigTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    """One token a second: frames sent together never see one come back in between, even
    under valgrind."""

    DAEMON_CONFIG = {"limits": {"messages-per-second": 1, "message-burst": 3}}

    def test_configured_burst(self):
        room = h.next_room_id()
        ws = self.raw()
        self.join(ws, room)     # the first of the three
        ws.send_raw(text_frames('{"type":"message","room_id":%d,"content":"%d"}' % (room, i)
                                for i in range(3)))
        got = [ws.recv_json() for _ in range(3)]
        self.assertEqual([m["type"] for m in got], ["message", "message", "error"], got)
        self.assertEqual(got[2]["code"], "rate_limited")
        self.assertIn("at most 1 per second, in bursts of 3", got[2]["content"])

    def test_invalid_messages_count(self):
        ws = self.raw()
        ws.send_raw(text_frames(["{not json"] * 4))
        codes = [ws.recv_json()["code"] for _ in range(4)]
        self.assertEqual(codes, ["invalid_json"] * 3 + ["rate_limited"])

    def test_invalid_values_refused(self):
        for key, value in (("messages-per-second", "fast"), ("messages-per-second", "1000001"),
                           ("message-burst", "-1"), ("max-rooms", "many")):
            status, log = h.run_daemon_expect_exit(config={"limits": {key: value}})
            self.assertNotIn(status, (None, 0), "%s=%s accepted" % (key, value))
            self.assertIn(key, log)


class RoomLimitTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    def test_default_room_cap(self):
        ws = self.raw()
        base = 5 * 10 ** 9
        ws.send_raw(text_frames('{"type":"join","room_id":%d}' % (base + i)
                                for i in range(MAX_ROOMS + 1)))
        got = [ws.recv_json() for _ in range(MAX_ROOMS + 1)]
        self.assertEqual([m["type"] for m in got[:MAX_ROOMS]], ["join"] * MAX_ROOMS)
        self.assertEqual((got[-1]["type"], got[-1]["code"]), ("error", "limit_exceeded"))
        self.assertIn("%d rooms" % MAX_ROOMS, got[-1]["content"])
        # joining a room again at the cap is the usual ack; leaving makes room for another
        self.join(ws, base)
        ws.send_json({"type": "leave", "room_id": base + 1})
        self.assertEqual(ws.recv_json()["type"], "leave")
        self.join(ws, base + MAX_ROOMS)
        ws.send_json({"type": "join", "room_id": base + MAX_ROOMS + 1})
        self.assertEqual(ws.recv_json()["code"], "limit_exceeded")
        # the cap is per connection
        other = self.raw(ws.user_id)
        self.join(other, base + MAX_ROOMS + 1)


class ManyRoomsTests(RawMixin, h.DaemonTestMixin, unittest.TestCase):
    """One connection in 30,000 rooms: its joins, leaves and disconnect never keep the daemon
    from answering someone else's ping within 100 ms (the bound issue 9 names). With a scan
    of the client's rooms per join and leave, 10,000 rooms stay under that bound (a 50 ms
    disconnect) and 20,000 barely; 30,000 are well over it."""

    N = 30000
    BATCH = 500
    DAEMON_CONFIG = {"limits": {"max-rooms": 40000}}

    def probe(self, prober, stop, latencies, failures):
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                prober.send_json({"type": "ping"})
                m = prober.recv_json()
                latencies.append(time.monotonic() - t0)
                if m["type"] != "pong":
                    failures.append(m)
                time.sleep(0.002)
        except Exception as e:      # reported by the main thread
            failures.append(e)

    def batch(self, ws, kind, rooms):
        ws.send_raw(text_frames('{"type":"%s","room_id":%d}' % (kind, r) for r in rooms))
        for r in rooms:
            m = ws.recv_json(timeout=10)
            self.assertEqual((m["type"], m.get("room_id")), (kind, r), m)

    def test_thirty_thousand_rooms_without_stalling_others(self):
        base = 7 * 10 ** 9
        rooms = list(range(base, base + self.N))
        shared = rooms[::300]
        joiner, watcher, prober = self.raw(), self.raw(), self.raw()
        for r in shared:
            self.join(watcher, r)
        stop, latencies, failures = threading.Event(), [], []
        thread = threading.Thread(target=self.probe, args=(prober, stop, latencies, failures))
        thread.start()
        try:
            for i in range(0, self.N, self.BATCH):
                self.batch(joiner, "join", rooms[i:i + self.BATCH])
            left = rooms[1::5]          # a fifth of them, from all over the array
            for i in range(0, len(left), self.BATCH):
                self.batch(joiner, "leave", left[i:i + self.BATCH])
            joiner.abort()              # and the other 24,000 at once
            events = [watcher.recv_json(timeout=10) for _ in range(2 * len(shared))]
            time.sleep(0.2)             # a few more probes after the disconnect
        finally:
            stop.set()
            thread.join(h.scaled(10))
        self.assertEqual(failures, [])
        self.assertEqual(sorted(m["room_id"] for m in events if m["type"] == "join"), shared)
        self.assertEqual(sorted(m["room_id"] for m in events if m["type"] == "leave"), shared)
        self.assertTrue(all(m.get("from") == joiner.user_id for m in events), events[:3])
        self.assertGreater(len(latencies), 10)
        if h.VERBOSE:
            print("[%d probes, slowest %.1f ms] " % (len(latencies), max(latencies) * 1000),
                  end="", file=sys.stderr)
        self.assertLess(max(latencies), h.scaled(0.1),
                        "a ping waited %.0f ms (%d probes, median %.1f ms)"
                        % (max(latencies) * 1000, len(latencies),
                           sorted(latencies)[len(latencies) // 2] * 1000))
        # the rooms it was alone in are gone; the shared ones have the watcher only
        self.assert_only_pong(watcher)
        fresh = self.raw()
        self.join(fresh, rooms[1])
        fresh.send_json({"type": "message", "room_id": shared[1], "content": "hi"})
        self.assertEqual(fresh.recv_json()["code"], "not_member")


if __name__ == "__main__":
    h.main()
