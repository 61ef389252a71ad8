#!/usr/bin/python3
"""Read fairness through the real daemon: a client writing as fast as its socket takes
frames must not delay anyone else. libsoup reads a connection until EAGAIN, which a
flooder never lets happen; the inbox's read budget ends each read early instead."""

import asyncio
import multiprocessing
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

FLOOD_SECONDS = 5.0
# The bound the issue names: a JSON ping sent while the flooder runs gets its pong within this.
PONG_BOUND = 0.100
PING_EVERY = 0.050
ROOM_SIZE = 100


def flood(port, token, room, seconds, result):
    """In a child process (its own interpreter lock): join `room`, then write room messages
    as fast as the socket takes them for `seconds`, while a thread reads and discards the
    echoes so that the flooder is never a slow consumer. Puts (messages written, bytes read,
    closed early) into `result`."""
    import threading

    ws = h.RawWS.connect(port, token)
    ws.send_json({"type": "join", "room_id": room})
    ws.recv_json()
    frame = h.encode_frame(h.OP_TEXT, b'{"type":"message","room_id":%d,"content":"flood"}' % room)
    batch = frame * 512
    read = [0]
    eof = [False]

    def reader():
        ws.sock.settimeout(None)
        while True:
            try:
                chunk = ws.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                eof[0] = True
                return
            read[0] += len(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    deadline = time.monotonic() + seconds
    ws.sock.settimeout(None)
    try:
        while time.monotonic() < deadline:
            ws.sock.sendall(batch)
            sent += 512
    except OSError:
        pass
    early = eof[0]
    try:
        ws.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(5)
    ws.abort(reset=False)
    result.put((sent, read[0], early))


def room_traffic(daemon, room, window, ready, go, result):
    """In a child process: ROOM_SIZE members and a publisher in `room`; once `go` is set, the
    publisher sends a message every 20 ms for `window` seconds and every member must receive
    each of them. Puts (published, [received per member]) or an error text into `result`.
    Kept out of the measuring process, whose event loop then serves only the pinger."""

    async def run():
        publisher = await h.ws_connect(daemon, h.next_user_id(), max_queue=None)
        await h.send_json(publisher, {"type": "join", "room_id": room})
        await h.recv_json(publisher)
        members = []
        for _ in range(ROOM_SIZE):
            ws = await h.ws_connect(daemon, h.next_user_id(), max_queue=None)
            await h.send_json(ws, {"type": "join", "room_id": room})
            members.append(ws)
        received = [[] for _ in members]

        async def receive(ws, got):
            # join events of later members come first; then the messages
            while True:
                msg = await h.recv_json(ws, timeout=10)
                if msg.get("type") == "message":
                    got.append(msg["content"])
                    if got[-1] == "last":
                        return

        readers = [asyncio.create_task(receive(ws, got)) for ws, got in zip(members, received)]
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait, h.scaled(30))
        published = []
        end = time.monotonic() + window
        while time.monotonic() < end:
            published.append("m%d" % len(published))
            await h.send_json(publisher, {"type": "message", "room_id": room,
                                          "content": published[-1]})
            await asyncio.sleep(0.02)
        published.append("last")
        await h.send_json(publisher, {"type": "message", "room_id": room, "content": "last"})
        try:
            await asyncio.wait_for(asyncio.gather(*readers), h.scaled(20))
        except asyncio.TimeoutError:
            pass
        for ws in [publisher] + members:
            ws.transport.abort()
        return published, received

    try:
        result.put(asyncio.run(run()))
    except Exception as e:  # noqa: BLE001 - reported to the test process
        result.put("room traffic failed: %r" % (e,))


class FloodTests(h.DaemonTestMixin, unittest.TestCase):
    # The rate limit would cut the flooder off; this tests the read side on its own.
    DAEMON_CONFIG = {"limits": {"messages-per-second": "0", "max-connections-per-user": "0",
                                "upgrades-per-second": "0"}}

    def test_flooder_does_not_delay_others(self):
        d = self.daemon
        ctx = multiprocessing.get_context("fork")
        ready, go = ctx.Event(), ctx.Event()
        room_result, flood_result = ctx.Queue(), ctx.Queue()
        window = FLOOD_SECONDS - 1.5
        room = ctx.Process(target=room_traffic,
                           args=(d, h.next_room_id(), window, ready, go, room_result))
        room.start()
        self.assertTrue(ready.wait(h.scaled(30)), "the room's members did not connect")
        flooder = ctx.Process(target=flood, args=(d.port, d.token(h.next_user_id()),
                                                  h.next_room_id(), FLOOD_SECONDS, flood_result))
        flooder.start()
        # let the flood reach full speed
        time.sleep(0.5)
        go.set()
        latencies = asyncio.run(self.ping_for(window))

        t_done = time.monotonic()
        traffic = room_result.get(timeout=h.scaled(60))
        sent, read, early = flood_result.get(timeout=h.scaled(30))
        room.join(h.scaled(5))
        flooder.join(h.scaled(5))
        self.assertNotIsInstance(traffic, str, traffic)
        published, received = traffic
        sys.stderr.write("flooder: %d messages written, %d bytes read back; pongs: %d, worst "
                         "%.1f ms; %d messages to %d members (%.1f s after the window)\n"
                         % (sent, read, len(latencies), max(latencies) * 1000, len(published),
                            len(received), time.monotonic() - t_done))

        # the flood really ran at full speed for the whole window, and was read meanwhile
        self.assertFalse(early, "the daemon closed the flooder during the flood")
        self.assertGreater(sent, 20000, "the flooder wrote only %d messages" % sent)
        self.assertGreater(read, 20000 * 40, "the daemon echoed only %d bytes to the flooder"
                           % read)
        self.assertGreater(len(latencies), 20)
        worst = max(latencies)
        self.assertLess(worst, PONG_BOUND,
                        "a pong took %.1f ms during the flood (all: %s)"
                        % (worst * 1000, sorted(round(x * 1000, 1) for x in latencies)[-5:]))
        for got in received:
            self.assertEqual(got, published, "a room member missed messages during the flood")

    async def ping_for(self, window):
        """A JSON ping every PING_EVERY for `window` seconds; returns the round trips."""
        pinger = await h.ws_connect(self.daemon, h.next_user_id())
        latencies = []
        end = time.monotonic() + window
        while time.monotonic() < end:
            t0 = time.monotonic()
            await h.send_json(pinger, {"type": "ping"})
            msg = await h.recv_json(pinger, timeout=10)
            latencies.append(time.monotonic() - t0)
            self.assertEqual(msg["type"], "pong", msg)
            await asyncio.sleep(PING_EVERY)
        await h.close_all(pinger)
        return latencies


if __name__ == "__main__":
    h.main()
