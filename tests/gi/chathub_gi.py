"""Shared helpers for the introspection tests (tests/gi/).

The library is used the way a script uses it: through the Chat-1.0 typelib and PyGObject, with
GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the build tree (tests/meson.build sets them).
The WebSocket clients are real ones (python3-websockets), each in a thread of its own with its
own asyncio loop, while the hub runs on the GLib main context of the main thread; the tests
wait with ``wait_until``, which iterates that context until a condition holds.

Environment:
  CHATHUB_TEST_TIME_SCALE   multiply every timeout (e.g. 5 under valgrind)
"""

import asyncio
import json
import os
import queue
import threading
import time
import unittest

import gi

gi.require_version("GLib", "2.0")
gi.require_version("GObject", "2.0")
gi.require_version("Json", "1.0")
gi.require_version("Chat", "1.0")
from gi.repository import Chat, GLib, GObject, Json  # noqa: E402

import websockets  # noqa: E402

__all__ = ["Chat", "GLib", "GObject", "Json", "SECRET", "make_token", "wait_until", "WsClient",
           "HubTestCase", "scaled"]

SECRET = b"chathub-gi-test-secret-0123456789abcdef"
TIME_SCALE = float(os.environ.get("CHATHUB_TEST_TIME_SCALE", "1") or "1")


def scaled(seconds):
    return seconds * TIME_SCALE


def make_token(user_id, rooms=None, secret=SECRET, **claims):
    """Signs an HS256 token with the library itself (chat_token_sign)."""
    obj = Json.Object()
    obj.set_int_member("user_id", user_id)
    obj.set_int_member("exp", int(time.time()) + 3600)
    if rooms is not None:
        array = Json.Array()
        for room in rooms:
            array.add_int_element(room)
        obj.set_array_member("rooms", array)
    for name, value in claims.items():
        obj.set_string_member(name, value)
    return Chat.token_sign(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(secret), obj)


def wait_until(predicate, timeout=5.0, what="condition"):
    """Iterates the default GLib main context until predicate() is true."""
    context = GLib.MainContext.default()
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if not context.iteration(False):
            time.sleep(0.002)


def spin(seconds):
    """Runs the main context for a while (to show that something does *not* happen)."""
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() > end, timeout=seconds + 5, what="spin")


class WsClient:
    """A real WebSocket client in a thread; frames received land in a queue as JSON values."""

    def __init__(self, url, token=None):
        self.url = url
        self.token = token
        self.inbox = queue.Queue()
        self.close_code = None
        self.close_reason = None
        self.status = None  # HTTP status of a refused handshake
        self.error = None
        self._opened = threading.Event()
        self._done = threading.Event()
        self._ws = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- the client thread --------------------------------------------------------------

    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
            self._loop.close()
        finally:
            self._done.set()

    async def _main(self):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            self._ws = await websockets.connect(self.url, extra_headers=headers,
                                                ping_interval=None, max_size=None,
                                                open_timeout=scaled(10))
        except websockets.InvalidStatusCode as e:
            self.status = e.status_code
            self._opened.set()
            return
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.error = e
            self._opened.set()
            return
        self._opened.set()
        try:
            async for text in self._ws:
                self.inbox.put(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        await self._ws.wait_closed()
        self.close_code = self._ws.close_code
        self.close_reason = self._ws.close_reason
        # a close() asked for by the test thread may still be finishing
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=scaled(5))

    # -- the test thread ----------------------------------------------------------------

    def connect(self):
        self._thread.start()
        wait_until(self._opened.is_set, timeout=10, what="the WebSocket handshake")
        if self.error is not None:
            raise self.error
        return self

    @property
    def is_open(self):
        return self._ws is not None and not self._done.is_set()

    def _call(self, coroutine, what):
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        wait_until(future.done, what=what)
        return future.result()

    def send(self, value):
        text = value if isinstance(value, str) else json.dumps(value)
        self._call(self._ws.send(text), "a frame to be sent")

    def close(self, code=1000):
        if self._thread.is_alive() and self._ws is not None:
            asyncio.run_coroutine_threadsafe(self._ws.close(code), self._loop)
            wait_until(self._done.is_set, what="the client's close")
        self._thread.join(scaled(5))

    def recv(self, timeout=5.0, type_=None):
        """Returns the next frame (of type_, skipping others)."""
        while True:
            wait_until(lambda: not self.inbox.empty(), timeout, f"a {type_ or 'frame'}")
            frame = self.inbox.get()
            if type_ is None or frame.get("type") == type_:
                return frame

    def wait_closed(self, timeout=5.0):
        wait_until(self._done.is_set, timeout, "the connection to close")
        return self.close_code, self.close_reason

    def assert_nothing(self, seconds=0.3, type_=None):
        spin(seconds)
        frames = []
        while not self.inbox.empty():
            frame = self.inbox.get()
            if type_ is None or frame.get("type") == type_:
                frames.append(frame)
        if frames:
            raise AssertionError(f"unexpected frames: {frames}")


class HubTestCase(unittest.TestCase):
    """A hub, a verifier and a server listening on 127.0.0.1, port 0."""

    def setUp(self):
        self.hub = Chat.Hub.new()
        self.verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        self.server = Chat.Server.new(self.hub, self.verifier)
        self.server.props.ping_interval = 0
        self.assertTrue(self.server.listen("127.0.0.1", 0))
        self.port = self.server.get_port()
        self.url = self.server.get_uri()
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        self.hub.close_all(Chat.CloseCode.GOING_AWAY, "test over")
        wait_until(lambda: self.hub.get_n_clients() == 0, what="every client to unregister")
        self.server.stop_listening()
        # let libsoup finish with the sockets before the next test
        spin(0.05)

    def connect(self, user_id, rooms=None):
        """Connects a real client; returns it and its ChatClient."""
        registered = []
        handler = self.hub.connect("client-registered", lambda hub, client: registered.append(client))
        try:
            ws = WsClient(self.url, make_token(user_id, rooms)).connect()
            self.clients.append(ws)
            self.assertIsNone(ws.status, "the handshake was refused")
            wait_until(lambda: registered, what="client-registered")
        finally:
            GObject.signal_handler_disconnect(self.hub, handler)
        return ws, registered[0]

    def join(self, ws, room_id):
        ws.send({"type": "join", "room_id": room_id})
        event = ws.recv(type_="join")
        self.assertEqual(event["room_id"], room_id)

    def assertChatError(self, context, code):
        """Checks a GLib.Error raised by the library: Chat domain and code."""
        error = context.exception
        self.assertIsInstance(error, GLib.Error)
        self.assertEqual(error.domain, "chat-error-quark")
        self.assertEqual(GLib.quark_from_string(error.domain), Chat.error_quark())
        self.assertEqual(error.code, int(code))
        self.assertTrue(error.matches(Chat.error_quark(), code))
        self.assertTrue(error.message)
