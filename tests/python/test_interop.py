#!/usr/bin/python3
"""Interoperability with Python's `websockets` client (10.4 on Debian 12): a full
session, many concurrent clients, WebSocket-level ping, refusals and close codes as
the library reports them."""

import asyncio
import os
import sys
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402


class InteropTests(h.RecvMixin, h.DaemonTestMixin, unittest.IsolatedAsyncioTestCase):

    async def connect(self, uid, query=False, **kw):
        ws = await h.ws_connect(self.daemon, uid, query=query, **kw)
        ws.user_id = uid
        self.addAsyncCleanup(h.close_all, ws)
        return ws

    async def test_full_session(self):
        alice_id, bob_id = h.next_user_id(), h.next_user_id()
        alice = await self.connect(alice_id)                  # Authorization header
        alice2 = await self.connect(alice_id, query=True)     # ?access_token=
        bob = await self.connect(bob_id, query=True)

        # no permessage-deflate, although the library offers it
        for ws in (alice, alice2, bob):
            self.assertEqual(ws.extensions, [])
            self.assertIsNone(ws.response_headers.get("Sec-WebSocket-Extensions"))

        # WebSocket-level ping, answered by the server
        pong_waiter = await alice.ping(b"interop")
        await asyncio.wait_for(pong_waiter, h.scaled(3))

        # JSON ping
        await h.send_json(alice, {"type": "ping"})
        self.assertEqual((await self.recv(alice))["type"], "pong")

        # rooms
        room = h.next_room_id()
        await h.send_json(alice, {"type": "join", "room_id": room})
        ack = await self.recv(alice)
        self.assertEqual((ack["type"], ack["room_id"], ack["from"]), ("join", room, alice_id))
        await h.send_json(bob, {"type": "join", "room_id": room})
        for ws in (bob, alice):
            ev = await self.recv(ws)
            self.assertEqual((ev["type"], ev["room_id"], ev["from"]), ("join", room, bob_id))
        await h.send_json(bob, {"type": "message", "room_id": room, "content": "hi room"})
        for ws in (alice, bob):
            m = await self.recv(ws)
            self.assertEqual((m["type"], m["room_id"], m["from"], m["content"]),
                             ("message", room, bob_id, "hi room"))

        # broadcast
        await h.send_json(alice2, {"type": "message", "content": "hi all \U0001F30D"})
        for ws in (alice, alice2, bob):
            m = await self.recv(ws)
            self.assertEqual((m["type"], m["from"], m["content"]),
                             ("message", alice_id, "hi all \U0001F30D"))

        # direct message: both of alice's connections and bob
        await h.send_json(bob, {"type": "message", "to": alice_id, "content": "dm",
                                "data": {"k": [1, 2.5, None]}})
        for ws in (bob, alice, alice2):
            m = await self.recv(ws)
            self.assertEqual((m["to"], m["from"], m["content"], m["data"]),
                             (alice_id, bob_id, "dm", {"k": [1, 2.5, None]}))

        # an error keeps the session open
        await alice.send("{oops")
        err = await self.recv(alice)
        self.assertEqual((err["type"], err["code"]), ("error", "invalid_json"))

        # leave
        await h.send_json(alice, {"type": "leave", "room_id": room})
        for ws in (alice, bob):
            ev = await self.recv(ws)
            self.assertEqual((ev["type"], ev["room_id"], ev["from"]), ("leave", room, alice_id))

        # normal close: the server echoes 1000
        await alice.close(1000, "bye")
        self.assertEqual(alice.close_code, 1000)
        await h.assert_only_pong(bob)
        await h.assert_only_pong(alice2)
        await alice2.close()
        self.assertEqual(alice2.close_code, 1000)

    async def test_many_clients_same_order(self):
        n, per = 40, 5
        room = h.next_room_id()
        clients = []
        for _ in range(n):
            ws = await self.connect(h.next_user_id(), max_queue=None)
            await h.send_json(ws, {"type": "join", "room_id": room})
            while True:
                m = await self.recv(ws)
                if m["type"] == "join" and m["from"] == ws.user_id:
                    break
            clients.append(ws)

        async def sender(ws):
            for i in range(per):
                await h.send_json(ws, {"type": "message", "room_id": room,
                                       "content": "%d/%d" % (ws.user_id, i)})

        async def collect(ws):
            got = []
            while len(got) < n * per:
                m = await h.recv_json(ws, timeout=15)
                if m["type"] == "message":
                    got.append((m["id"], m["from"], m["content"]))
            return got

        collectors = [asyncio.create_task(collect(ws)) for ws in clients]
        await asyncio.gather(*[sender(ws) for ws in clients])
        results = await asyncio.wait_for(asyncio.gather(*collectors), h.scaled(30))
        first = results[0]
        ids = [x[0] for x in first]
        self.assertEqual(ids, sorted(set(ids)), "ids not strictly increasing")
        for r in results[1:]:
            self.assertEqual(r, first, "clients saw different messages or orders")
        for ws in clients:
            mine = [c for _, f, c in first if f == ws.user_id]
            self.assertEqual(mine, ["%d/%d" % (ws.user_id, i) for i in range(per)])

    async def test_refused_token_status(self):
        for query in (False, True):
            with self.subTest(query=query):
                with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                    await h.ws_connect(self.daemon, token=h.hs_token({"user_id": 1}, "wrong"),
                                       query=query)
                self.assertEqual(cm.exception.status_code, 401)
                hdrs = getattr(cm.exception, "headers", None)
                if hdrs is not None:
                    self.assertIn('error="invalid_token"', hdrs.get("WWW-Authenticate", ""))

    async def test_binary_message_closes_1003(self):
        ws = await self.connect(h.next_user_id())
        await ws.send(b"\x00\x01binary")
        with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
            await asyncio.wait_for(ws.recv(), h.scaled(5))
        self.assertIsNotNone(cm.exception.rcvd, "no close frame received")
        self.assertEqual(cm.exception.rcvd.code, 1003)

    async def test_large_message_under_limit(self):
        ws = await self.connect(h.next_user_id())
        content = "\u00e9" * 30000              # 60,000 bytes of UTF-8
        await h.send_json(ws, {"type": "message", "content": content})
        m = await self.recv(ws, timeout=5)
        self.assertEqual(m["content"], content)


if __name__ == "__main__":
    h.main()
