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


class FloodTests(h.DaemonTestMixin, h.RecvMixin, unittest.TestCase):
    # The rate limit would cut the flooder off; this tests the read side on its own.
    DAEMON_CONFIG = {"limits": {"messages-per-second": "0", "max-connections-per-user": "0",
                                "upgrades-per-second": "0"}}

    def test_flooder_does_not_delay_others(self):
        asyncio.run(self._flooder_does_not_delay_others())

    async def _flooder_does_not_delay_others(self):
        d = self.daemon
        flood_room = h.next_room_id()
        room = h.next_room_id()
        pinger = await h.ws_connect(d, h.next_user_id())
        pinger.user_id = None
        publisher = await h.ws_connect(d, h.next_user_id())
        publisher.user_id = None
        await h.send_json(publisher, {"type": "join", "room_id": room})
        self.assertEqual((await self.recv(publisher))["type"], "join")
        members = []
        for _ in range(ROOM_SIZE):
            uid = h.next_user_id()
            ws = await h.ws_connect(d, uid)
            ws.user_id = uid
            await h.send_json(ws, {"type": "join", "room_id": room})
            members.append(ws)
        for ws in members:
            ack = await self.recv(ws)
            self.assertEqual((ack["type"], ack["room_id"]), ("join", room), ack)
        # each member also sees the joins that came after its own
        for i, ws in enumerate(members):
            for _ in range(ROOM_SIZE - 1 - i):
                ev = await self.recv(ws)
                self.assertEqual(ev["type"], "join", ev)

        ctx = multiprocessing.get_context("fork")
        result = ctx.Queue()
        child = ctx.Process(target=flood, args=(d.port, d.token(h.next_user_id()), flood_room,
                                                FLOOD_SECONDS, result))
        child.start()
        # let the flood reach full speed
        await asyncio.sleep(0.5)

        latencies = []
        published = []

        async def ping_loop():
            end = time.monotonic() + FLOOD_SECONDS - 1.5
            while time.monotonic() < end:
                t0 = time.monotonic()
                await h.send_json(pinger, {"type": "ping"})
                msg = await h.recv_json(pinger, timeout=10)
                latencies.append(time.monotonic() - t0)
                self.assertEqual(msg["type"], "pong", msg)
                await asyncio.sleep(PING_EVERY)

        async def publish_loop():
            end = time.monotonic() + FLOOD_SECONDS - 1.5
            n = 0
            while time.monotonic() < end:
                n += 1
                await h.send_json(publisher, {"type": "message", "room_id": room,
                                              "content": "m%d" % n})
                published.append("m%d" % n)
                await asyncio.sleep(0.02)

        async def receive_all(ws, got):
            while len(got) < len(published) or not done.is_set():
                try:
                    msg = await h.recv_json(ws, timeout=10)
                except asyncio.TimeoutError:
                    return
                if msg.get("type") == "message":
                    got.append(msg["content"])

        done = asyncio.Event()
        received = [[] for _ in members]
        receivers = [asyncio.create_task(receive_all(ws, got))
                     for ws, got in zip(members, received)]
        await asyncio.gather(ping_loop(), publish_loop())
        done.set()
        # the flood is still running here: what the members lack must still arrive
        await asyncio.wait_for(asyncio.gather(*receivers), h.scaled(20))

        t_done = time.monotonic()
        sent, read, early = result.get(timeout=h.scaled(30))
        child.join(h.scaled(5))
        sys.stderr.write("flooder: %d messages written, %d bytes read back; pongs: %d, worst "
                         "%.1f ms; %d messages to %d members (%.1f s after the window)\n"
                         % (sent, read, len(latencies), max(latencies) * 1000, len(published),
                            len(members), time.monotonic() - t_done))

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
        await h.close_all(pinger, publisher, *members)


if __name__ == "__main__":
    h.main()
