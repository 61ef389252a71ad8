#!/usr/bin/python3
"""Runs docs/examples/ the way a user would, against real WebSocket clients: the Python bot
(chat-bot.py, PyGObject) and the GJS moderator (moderator.js).

Each example is started on port 0 with the secret in CHATHUB_JWT_SECRET; the test reads the
URI it prints, connects clients with python3-websockets and tokens signed here with hmac (as
an identity provider would), checks the answers or the close, then stops it with SIGTERM.

Environment: GI_TYPELIB_PATH and LD_LIBRARY_PATH (the build tree), GJS (the gjs program).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "examples")
SECRET = "chathub-examples-secret-0123456789abcdef"
TIME_SCALE = float(os.environ.get("CHATHUB_TEST_TIME_SCALE", "1") or "1")
URI_RE = re.compile(r"ws://[0-9.]+:[0-9]+/ws")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(user_id, **claims):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"user_id": user_id, "exp": int(time.time()) + 600,
                                 **claims}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class Example:
    """An example program running on port 0."""

    def __init__(self, argv):
        env = dict(os.environ, CHATHUB_JWT_SECRET=SECRET)
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.uri = None
        self.status = None

    async def start(self):
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + 20 * TIME_SCALE
        while self.uri is None:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline),
                                          max(0.1, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"{self.proc.args} exited with {self.proc.wait()}")
            self.lines.append(line)
            match = URI_RE.search(line)
            if match:
                self.uri = match.group(0)
        return self

    async def stop(self):
        """SIGTERM: the example closes its clients and exits 0."""
        if self.status is not None:
            return self.status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        status = await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), 10 * TIME_SCALE)
        rest = await loop.run_in_executor(None, self.proc.stdout.read)
        self.lines.extend(rest.splitlines(keepends=True))
        self.proc.stdout.close()
        self.status = status
        return status

    async def connect(self, user_id):
        return await websockets.connect(self.uri, ping_interval=None, open_timeout=10 * TIME_SCALE,
                                        extra_headers={"Authorization": f"Bearer {make_token(user_id)}"})


async def recv(ws, type_="message", timeout=5.0):
    """The next frame of type_, skipping the others."""
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame.get("type") == type_:
            return frame


async def join(ws, room_id):
    await ws.send(json.dumps({"type": "join", "room_id": room_id}))
    while True:
        event = await recv(ws, "join")
        if event["room_id"] == room_id:
            return event


async def assert_nothing(ws, type_="message", seconds=0.3):
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), seconds))
            if frame.get("type") == type_:
                raise AssertionError(f"unexpected frame {frame}")
    except asyncio.TimeoutError:
        pass


class TestChatBot(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.bot = await Example(["/usr/bin/python3", os.path.join(EXAMPLES, "chat-bot.py"),
                                  "--port", "0"]).start()

    async def asyncTearDown(self):
        self.assertEqual(await self.bot.stop(), 0, "".join(self.bot.lines))

    async def ask(self, ws, room_id, command):
        """Sends a command to a room; returns the bot's answer (after the command's echo)."""
        await ws.send(json.dumps({"type": "message", "room_id": room_id, "content": command}))
        echo = await recv(ws)
        self.assertEqual(echo["content"], command)
        answer = await recv(ws)
        self.assertEqual((answer["from"], answer["room_id"]), (0, room_id))
        self.assertGreater(answer["id"], echo["id"])
        return answer["content"]

    async def test_who_and_rooms(self):
        alice = await self.bot.connect(1)
        bob = await self.bot.connect(2)
        bob_phone = await self.bot.connect(2)
        carol = await self.bot.connect(3)
        try:
            for ws in (alice, bob, bob_phone):
                await join(ws, 7)
            await join(alice, 9)
            await join(carol, 12)

            self.assertEqual(await self.ask(alice, 7, "/who"),
                             "In room 7: user 1, user 2 (2 users, 3 connections)")
            # everyone in the room reads the answer, after the question
            for ws in (bob, bob_phone):
                self.assertEqual((await recv(ws))["content"], "/who")
                self.assertTrue((await recv(ws))["content"].startswith("In room 7:"))
            await assert_nothing(carol)

            self.assertEqual(await self.ask(carol, 12, "/rooms"),
                             "Rooms: 7 (3 members), 9 (1 member), 12 (1 member)")
            self.assertEqual(await self.ask(alice, 9, "/who"),
                             "In room 9: user 1 (1 user, 1 connection)")
            self.assertIn("/who", await self.ask(alice, 9, "/help"))
            self.assertEqual(await self.ask(alice, 9, "/dance"), "Unknown command /dance; try /help")

            # chat that is not a command gets no answer
            await alice.send(json.dumps({"type": "message", "room_id": 9, "content": "hello"}))
            self.assertEqual((await recv(alice))["content"], "hello")
            await assert_nothing(alice)
        finally:
            for ws in (alice, bob, bob_phone, carol):
                await ws.close()

    async def test_shutdown_closes_clients(self):
        ws = await self.bot.connect(4)
        await join(ws, 1)
        self.bot.proc.send_signal(signal.SIGTERM)
        await ws.wait_closed()
        self.assertEqual((ws.close_code, ws.close_reason), (1001, "server shutting down"))


@unittest.skipUnless(shutil.which(os.environ.get("GJS", "gjs")), "gjs is not installed")
class TestModerator(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        gjs = os.environ.get("GJS", "gjs")
        self.moderator = await Example([gjs, "-m", os.path.join(EXAMPLES, "moderator.js"),
                                        "--port", "0", "--ban", "spam", "--ban", "c++"]).start()

    async def asyncTearDown(self):
        self.assertEqual(await self.moderator.stop(), 0, "".join(self.moderator.lines))

    async def test_banned_word_closes_the_sender(self):
        good = await self.moderator.connect(1)
        bad = await self.moderator.connect(2)
        other = await self.moderator.connect(3)
        try:
            await join(good, 5)
            await join(bad, 5)
            await recv(good, "join")  # user 2 joined

            await good.send(json.dumps({"type": "message", "room_id": 5, "content": "hi all"}))
            self.assertEqual((await recv(bad))["content"], "hi all")
            self.assertEqual((await recv(good))["content"], "hi all")

            await bad.send(json.dumps({"type": "message", "room_id": 5,
                                       "content": "Buy cheap SPAM, now!"}))
            await bad.wait_closed()
            self.assertEqual((bad.close_code, bad.close_reason), (1008, "banned word"))

            notice = await recv(good)
            self.assertEqual((notice["from"], notice["content"]),
                             (0, "User 2 was disconnected by the moderator"))
            leave = await recv(good, "leave")
            self.assertEqual(leave["from"], 2)
            await assert_nothing(good)  # the banned message itself was never relayed

            # whole words only, and words with symbols
            await other.send(json.dumps({"type": "message", "content": "spammer? no"}))
            self.assertEqual((await recv(other))["content"], "spammer? no")
            await other.send(json.dumps({"type": "message", "content": "I like C++"}))
            await other.wait_closed()
            self.assertEqual(other.close_code, 1008)
            self.assertIsNone(good.close_code)
        finally:
            for ws in (good, bad, other):
                await ws.close()
        self.assertEqual(await self.moderator.stop(), 0)
        self.assertTrue(any("user 2" in line and "banned word" in line
                            for line in self.moderator.lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
