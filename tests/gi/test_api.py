#!/usr/bin/python3
"""The Chat-1.0 API from Python: properties, signals and their arguments, errors as GLib.Error,
against real WebSocket clients."""

import json
import os
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chathub_gi import (SECRET, Chat, GLib, GObject, HubTestCase, Json,  # noqa: E402
                        WsClient, make_token, spin, wait_until)
from gi.repository import Gio  # noqa: E402  (Chat-1.0 has required Gio-2.0)


class TestNamespace(unittest.TestCase):
    def test_version_constants(self):
        self.assertEqual(Chat.MAJOR_VERSION, 1)
        self.assertEqual(Chat.VERSION_STRING,
                         f"{Chat.MAJOR_VERSION}.{Chat.MINOR_VERSION}.{Chat.MICRO_VERSION}")

    def test_enums(self):
        self.assertEqual(int(Chat.CloseCode.POLICY_VIOLATION), 1008)
        self.assertEqual(int(Chat.CloseCode.TOO_BIG), 1009)
        self.assertEqual(Chat.message_type_to_string(Chat.MessageType.LEAVE), "leave")
        self.assertEqual(Chat.error_get_wire_code(Chat.Error.NOT_MEMBER), "not_member")
        self.assertEqual(Chat.error_get_wire_code(Chat.Error.USER_OFFLINE), "user_offline")
        self.assertEqual(Chat.error_get_wire_code(Chat.Error.UNAVAILABLE), "unavailable")
        self.assertEqual(Chat.message_type_to_string(Chat.MessageType.HISTORY), "history")
        self.assertEqual(Chat.token_algorithm_to_string(Chat.TokenAlgorithm.ES256), "ES256")
        # the boolean is (skip): a plain value, not an (ok, value) tuple
        self.assertEqual(Chat.token_algorithm_from_string("HS384"), Chat.TokenAlgorithm.HS384)
        self.assertEqual(Chat.TokenAlgorithm.from_string("ES256"), Chat.TokenAlgorithm.ES256)

    def test_private_api_is_not_exposed(self):
        for name in ("Outbox", "LimitExtension", "client_new", "outbox_new", "json_validate",
                     "message_parse", "hub_handle_client_message"):
            self.assertFalse(hasattr(Chat, name), name)
        self.assertFalse(hasattr(Chat.Client, "new"))
        self.assertFalse(hasattr(Chat.Client, "push_frame"))
        # only the server creates clients, so only the library registers them
        self.assertFalse(hasattr(Chat.Hub, "register_client"))
        self.assertFalse(hasattr(Chat.Hub, "unregister_client"))


class TestErrors(unittest.TestCase):
    def assertChatError(self, context, code):
        HubTestCase.assertChatError(self, context, code)

    def test_algorithm_from_string(self):
        with self.assertRaises(GLib.Error) as context:
            Chat.token_algorithm_from_string("none")
        self.assertChatError(context, Chat.Error.INVALID_ARGUMENT)

    def test_empty_key(self):
        with self.assertRaises(GLib.Error) as context:
            Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(b""))
        self.assertChatError(context, Chat.Error.INVALID_ARGUMENT)

    def test_not_a_public_key(self):
        with self.assertRaises(GLib.Error) as context:
            Chat.TokenVerifier.new(Chat.TokenAlgorithm.RS256, GLib.Bytes.new(b"not a PEM key"))
        self.assertChatError(context, Chat.Error.INVALID_ARGUMENT)

    def test_message_from_json(self):
        cases = [
            ("[]", Chat.Error.INVALID_MESSAGE),
            ("", Chat.Error.INVALID_JSON),
            ("{not json", Chat.Error.INVALID_JSON),
            ('{"type":"message","room_id":"3"}', Chat.Error.INVALID_MESSAGE),
            ('{"type":"shout"}', Chat.Error.UNKNOWN_TYPE),
        ]
        for text, code in cases:
            with self.subTest(text=text), self.assertRaises(GLib.Error) as context:
                Chat.Message.new_from_json(text, -1)
            self.assertChatError(context, code)

    def test_message_with_u0000(self):
        # a binding's string ends at the first NUL, so get_content() could only hand out "a":
        # such a content (or code) is refused, never cut; data keeps its escape
        for field in ("content", "code"):
            text = '{"type":"message","%s":"a\\u0000b","data":1}' % field
            with self.subTest(field=field), self.assertRaises(GLib.Error) as context:
                Chat.Message.new_from_json(text, -1)
            self.assertChatError(context, Chat.Error.INVALID_MESSAGE)
            self.assertIn(field, context.exception.message)
        message = Chat.Message.new_from_json(
            '{"type":"message","content":"a\\\\u0000b","data":"a\\u0000b"}', -1)
        self.assertEqual(message.get_content(), "a\\u0000b")
        self.assertIn(',"data":"a\\u0000b",', message.to_json())

    def test_data_json(self):
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        with self.assertRaises(GLib.Error) as context:
            message.set_data_json("{'single': 'quotes'}", -1)
        self.assertChatError(context, Chat.Error.INVALID_JSON)

    def test_bad_tokens(self):
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        for token in ("", "abc", make_token(5, secret=b"another secret"),
                      make_token(5, iss="someone")):
            verifier.set_issuer("chathub-tests")
            with self.subTest(token=token), self.assertRaises(GLib.Error) as context:
                verifier.verify(token)
            self.assertChatError(context, Chat.Error.INVALID_TOKEN)


class TestObjects(unittest.TestCase):
    def test_message_properties(self):
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        notified = []
        message.connect("notify", lambda obj, pspec: notified.append(pspec.name))
        message.props.room_id = 3
        message.props.content = "hello"
        message.props.content = "hello"  # unchanged: no notify
        message.set_to(0)  # unchanged
        message.props.code = "not_member"
        data = Json.from_string('{"level":"info","n":[1,2]}')
        message.props.data = data
        self.assertEqual(notified, ["room-id", "content", "code", "data"])
        self.assertEqual(message.props.type, Chat.MessageType.MESSAGE)
        self.assertEqual(message.get_message_type(), Chat.MessageType.MESSAGE)
        self.assertEqual(message.get_room_id(), 3)
        self.assertEqual(message.get_content(), "hello")
        self.assertEqual(Json.to_string(message.props.data, False), '{"level":"info","n":[1,2]}')
        # a plain string, no (text, length) pair to unpack
        text = message.to_json()
        self.assertIsInstance(text, str)
        self.assertEqual(json.loads(text), {"type": "message", "from": 0, "room_id": 3,
                                            "code": "not_member", "content": "hello",
                                            "data": {"level": "info", "n": [1, 2]},
                                            "timestamp": 0})
        self.assertIn('"room_id":3', text)
        self.assertIn('"content":"hello"', text)

    def test_message_from_json(self):
        message = Chat.Message.new_from_json(
            '{"type":"message","to":7,"content":"hi \\u00e9","data":{"x":0.10},"id":99}', -1)
        self.assertEqual(message.props.type, Chat.MessageType.MESSAGE)
        self.assertEqual(message.props.to, 7)
        self.assertEqual(message.props.content, "hi \u00e9")
        self.assertEqual(message.get_data().get_object().get_member("x").get_double(), 0.1)
        self.assertIn('"data":{"x":0.10}', message.to_json())  # relayed byte for byte
        # only the variant that says so gives a (text, length) pair
        text, length = message.to_json_with_length()
        self.assertEqual(text, message.to_json())
        self.assertEqual(length, len(text.encode()))

    def test_message_construct_property(self):
        message = Chat.Message(type=Chat.MessageType.JOIN, room_id=4)
        self.assertEqual(message.get_message_type(), Chat.MessageType.JOIN)
        self.assertEqual(message.props.room_id, 4)

    def test_verifier(self):
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        self.assertEqual(verifier.props.algorithm, Chat.TokenAlgorithm.HS256)
        self.assertIsNone(verifier.props.issuer)
        self.assertEqual(verifier.props.leeway, 30)
        notified = []
        verifier.connect("notify::leeway", lambda obj, pspec: notified.append(obj.props.leeway))
        verifier.set_leeway(5)
        verifier.set_leeway(5)
        self.assertEqual(notified, [5])
        verifier.props.audience = "chat"
        self.assertEqual(verifier.get_audience(), "chat")
        user_id, rooms = verifier.verify(make_token(42, [3, 5], aud="chat"))  # no "ok"
        self.assertEqual(user_id, 42)
        self.assertEqual(list(rooms), [3, 5])

    def test_verifier_key_rotation(self):
        # several keys with ids, and the set swapped at once
        hs256 = Chat.TokenAlgorithm.HS256
        other = GLib.Bytes.new(b"the-next-secret-0123456789-0123456789-0123456789")
        claims = Json.Object()
        claims.set_int_member("user_id", 7)
        token_b = Chat.token_sign_with_key_id(hs256, other, "b", claims)
        verifier = Chat.TokenVerifier()
        self.assertIs(verifier.add_key("a", hs256, GLib.Bytes.new(SECRET)), True)
        with self.assertRaises(GLib.Error) as context:
            verifier.verify(token_b)
        self.assertIn("unknown key id", context.exception.message)
        staging = Chat.TokenVerifier()
        staging.add_key("b", hs256, other)
        staging.add_key(None, hs256, GLib.Bytes.new(SECRET))
        notified = []
        verifier.connect("notify::n-keys", lambda obj, pspec: notified.append(obj.props.n_keys))
        verifier.replace_keys(staging)
        self.assertEqual(notified, [2])
        self.assertEqual(verifier.get_n_keys(), 2)
        self.assertTrue(verifier.has_key_id("b"))
        self.assertFalse(verifier.has_key_id("a"))
        self.assertEqual(verifier.verify(token_b)[0], 7)
        with self.assertRaises(GLib.Error) as context:
            verifier.add_key("b", hs256, other)
        HubTestCase.assertChatError(self, context, Chat.Error.INVALID_ARGUMENT)
        self.assertEqual(Chat.TOKEN_VERIFIER_MAX_KEYS, 8)

    def test_hub_empty(self):
        hub = Chat.Hub.new()
        self.assertEqual(hub.props.n_clients, 0)
        self.assertEqual(hub.props.n_rooms, 0)
        self.assertEqual(hub.list_clients(), [])
        self.assertEqual(hub.list_rooms(), [])
        self.assertEqual(hub.list_room_users(1), [])
        self.assertIsNone(hub.lookup_client("nobody"))
        self.assertEqual(hub.get_messages_relayed(), 0)

    def test_server_properties(self):
        hub = Chat.Hub.new()
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        server = Chat.Server(hub=hub, verifier=verifier, path="/chat", max_connections=10)
        self.assertIs(server.get_hub(), hub)
        self.assertIs(server.props.verifier, verifier)
        self.assertEqual(server.props.path, "/chat")
        self.assertEqual(server.props.max_connections, 10)
        self.assertEqual(server.props.max_message_size, 65536)
        self.assertEqual(server.props.outbox_size, 1024 * 1024)
        self.assertEqual(server.props.ping_interval, 54)
        self.assertEqual(server.props.idle_timeout, 60)
        self.assertEqual(server.get_port(), 0)
        self.assertIsNone(server.get_uri())
        self.assertTrue(server.listen(None, 0))
        try:
            port = server.get_port()
            self.assertGreater(port, 0)
            self.assertEqual(server.get_uri(), f"ws://127.0.0.1:{port}/chat")
            stats = server.get_statistics().unpack()
            for key in ("connections-accepted", "refused-token", "messages-relayed", "uptime"):
                self.assertIn(key, stats)
        finally:
            server.stop_listening()
        self.assertEqual(server.get_port(), 0)

    def test_stores(self):
        memory = Chat.MemoryStore.new()
        self.assertIsInstance(memory, Chat.Store)
        self.assertEqual(memory.props.history_size, Chat.STORE_DEFAULT_HISTORY_SIZE)
        self.assertEqual(memory.props.history_ttl, 7 * 24 * 3600)
        self.assertEqual(memory.props.dm_ttl, 30 * 24 * 3600)
        memory.props.history_size = 10
        self.assertEqual(memory.props.history_size, 10)
        self.assertEqual(Chat.MemoryStore(history_ttl=60).props.history_ttl, 60)
        stats = memory.get_statistics().unpack()
        for key in ("stored", "trimmed", "failed", "groups", "largest-group", "commit-time-us",
                    "retained"):
            self.assertEqual(stats[key], 0, key)

        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "chathub.db")
            store = Chat.SqliteStore.new(path, Chat.StoreSync.FULL)
            self.assertIsInstance(store, Chat.Store)
            self.assertEqual(store.get_path(), path)
            self.assertEqual(store.props.path, path)
            self.assertEqual(store.get_sync(), Chat.StoreSync.FULL)
            self.assertEqual(store.props.history_size, 1000)
            self.assertEqual(store.get_statistics().unpack()["stored"], 0)
            del store
            # a file that is not a store: a GLib.Error, and the file is left alone
            garbage = os.path.join(directory, "garbage.db")
            with open(garbage, "w") as f:
                f.write("not a database, not at all, no tables in here\n")
            with self.assertRaises(GLib.Error) as context:
                Chat.SqliteStore.new(garbage, Chat.StoreSync.NORMAL)
            self.assertTrue(context.exception.matches(Gio.io_error_quark(),
                                                      Gio.IOErrorEnum.INVALID_DATA))
            self.assertIn(garbage, context.exception.message)

    def test_listen_twice_on_one_port(self):
        hub = Chat.Hub.new()
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        first = Chat.Server.new(hub, verifier)
        second = Chat.Server.new(hub, verifier)
        first.listen("127.0.0.1", 0)
        try:
            with self.assertRaises(GLib.Error) as context:
                second.listen("127.0.0.1", first.get_port())
            self.assertEqual(context.exception.domain, "g-io-error-quark")
        finally:
            first.stop_listening()


class TestBindingTraps(HubTestCase):
    """Names and calls that trip bindings (docs/reference/overview.xml, "In Python and GJS")."""

    def test_server_disconnect_is_gobjects(self):
        # GObject's disconnect(), not a method of ours that stops the server
        notified = []
        handler = self.server.connect("notify::max-connections",
                                      lambda server, pspec: notified.append(server.props.max_connections))
        self.server.props.max_connections = 50
        self.server.disconnect(handler)
        self.server.props.max_connections = 60
        self.assertEqual(notified, [50])
        self.assertEqual(self.server.get_port(), self.port)  # still listening
        ws, client = self.connect(4)
        self.assertTrue(client.is_open())

    def test_hub_method_and_signal_names(self):
        self.assertFalse(hasattr(Chat.Hub, "broadcast"))  # the signal's name only
        ws, client = self.connect(6)
        seen = []
        self.hub.connect("broadcast", lambda hub, message: seen.append(message.props.content))
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "to all"
        self.assertEqual(self.hub.send_to_all(message), 1)
        self.assertEqual(ws.recv(type_="message")["content"], "to all")
        self.assertEqual(seen, ["to all"])

    def test_wire_code_of_a_caught_error(self):
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "anyone there?"
        with self.assertRaises(GLib.Error) as context:
            self.hub.send_to_user(99, message)
        error = context.exception
        self.assertEqual(Chat.error_get_wire_code_for_error(error), "user_offline")
        self.assertEqual(Chat.Error.get_wire_code_for_error(error), "user_offline")
        self.assertEqual(Chat.Error.get_wire_code(error.code), "user_offline")
        with self.assertRaises(TypeError):  # it takes a code, as documented
            Chat.Error.get_wire_code(error)
        with self.assertRaises(GLib.Error) as context:
            GLib.file_get_contents("/nonexistent/chathub")
        self.assertEqual(Chat.error_get_wire_code_for_error(context.exception), "failed")


class TestConstruction(unittest.TestCase):
    """Objects built with bare constructors, as a script may: a GError, never a crash."""

    def test_client_without_connection(self):
        # G_DEBUG=fatal-criticals: a critical from libsoup or GLib ends the process
        client = Chat.Client()
        self.assertFalse(client.is_open())
        self.assertEqual((client.get_pending_bytes(), client.get_bytes_sent()), (0, 0))
        self.assertEqual(client.get_rooms(), [])
        self.assertFalse(client.is_member(3))
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "nobody hears this"
        self.assertFalse(client.send(message))
        client.close(1000, "bye")
        self.assertFalse(client.is_open())

    def test_server_without_hub_or_verifier(self):
        # listen() refuses a server missing either; the first client used to crash it
        hub = Chat.Hub.new()
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(SECRET))
        for server in (Chat.Server(), Chat.Server(hub=hub), Chat.Server(verifier=verifier)):
            with self.subTest(hub=server.props.hub, verifier=server.props.verifier):
                with self.assertRaises(GLib.Error) as context:
                    server.listen("127.0.0.1", 0)
                self.assertIn(context.exception.domain, ("chat-error-quark", "g-io-error-quark"))
                self.assertEqual(server.get_port(), 0)

    def test_verifier_without_key(self):
        # made without chat_token_verifier_new(): it refuses every token, without a critical
        token = make_token(5)
        for verifier in (Chat.TokenVerifier(),
                         Chat.TokenVerifier(algorithm=Chat.TokenAlgorithm.RS256)):
            with self.subTest(algorithm=verifier.props.algorithm), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for presented in (token, "", None):
                    with self.assertRaises(GLib.Error) as context:
                        verifier.verify(presented)
                    HubTestCase.assertChatError(self, context, Chat.Error.INVALID_TOKEN)
                    self.assertIn("no key", context.exception.message)
                self.assertEqual([str(w.message) for w in caught], [])


class TestHub(HubTestCase):
    def test_client_registered(self):
        seen = []
        self.hub.connect("client-registered", lambda hub, client: seen.append((hub, client)))
        counts = []
        self.hub.connect("notify::n-clients", lambda hub, pspec: counts.append(hub.props.n_clients))
        before = int(time.time())
        ws, client = self.connect(42)
        self.assertEqual(len(seen), 1)
        self.assertIs(seen[0][0], self.hub)
        self.assertIs(seen[0][1], client)
        self.assertIsInstance(client, Chat.Client)
        self.assertEqual(counts, [1])

        self.assertTrue(client.props.id)
        self.assertEqual(client.get_id(), client.props.id)
        self.assertEqual(client.props.user_id, 42)
        self.assertLessEqual(before, client.props.connected_since)
        self.assertLessEqual(client.props.connected_since, int(time.time()))
        self.assertEqual(client.props.remote_address, "127.0.0.1")
        self.assertTrue(client.is_open())
        self.assertEqual(client.get_rooms(), [])
        self.assertTrue(client.may_join(12345))
        self.assertIs(self.hub.lookup_client(client.props.id), client)
        self.assertEqual(self.hub.list_clients(), [client])
        self.assertEqual(self.hub.list_user_clients(42), [client])
        self.assertEqual(self.hub.list_user_clients(43), [])
        self.assertEqual(self.server.get_n_connections(), 1)

    def test_rooms_claim(self):
        ws, client = self.connect(7, rooms=[1, 2])
        self.assertTrue(client.may_join(2))
        self.assertFalse(client.may_join(3))
        with self.assertRaises(GLib.Error) as context:
            self.hub.join_room(client, 3)
        self.assertChatError(context, Chat.Error.FORBIDDEN)
        with self.assertRaises(GLib.Error) as context:
            self.hub.leave_room(client, 1)
        self.assertChatError(context, Chat.Error.NOT_MEMBER)

        joined = []
        self.hub.connect("room-joined", lambda hub, c, room: joined.append((c, room)))
        self.assertTrue(self.hub.join_room(client, 2))
        self.assertEqual(joined, [(client, 2)])
        self.assertEqual(ws.recv(type_="join")["room_id"], 2)
        self.assertEqual(client.get_rooms(), [2])
        self.assertTrue(client.is_member(2))
        self.assertEqual(self.hub.list_rooms(), [2])
        self.assertEqual(self.hub.list_room_members(2), [client])
        self.assertEqual(self.hub.get_n_room_members(2), 1)

        left = []
        self.hub.connect("room-left", lambda hub, c, room: left.append((c, room)))
        self.assertTrue(self.hub.leave_room(client, 2))
        self.assertEqual(left, [(client, 2)])
        self.assertEqual(self.hub.props.n_rooms, 0)

    def test_list_room_users(self):
        # the higher id joins first; the lower one has two connections
        high_ws, high = self.connect(31)
        low_ws, low = self.connect(30)
        _, low2 = self.connect(30)
        for client in (high, low, low2):
            self.assertTrue(self.hub.join_room(client, 9))
        users = self.hub.list_room_users(9)
        self.assertEqual(users, [30, 31])
        self.assertIsInstance(users[0], int)
        self.assertEqual(self.hub.list_room_users(10), [])
        # what a member's presence request is answered with
        low_ws.send({"type": "presence", "room_id": 9})
        self.assertEqual(low_ws.recv(type_="presence")["users"], [30, 31])
        self.assertTrue(self.hub.leave_room(high, 9))
        self.assertEqual(self.hub.list_room_users(9), [30])

    def list_room_users(self, hub, room_id, cancellable=None):
        results = []
        hub.list_room_users_async(room_id, cancellable,
                                  lambda source, result: results.append(result))
        wait_until(lambda: results, what="the room's users")
        return hub.list_room_users_finish(results[0])

    def test_list_room_users_async(self):
        # one node: its own users, as the presence request answers
        high_ws, high = self.connect(31)
        low_ws, low = self.connect(30)
        _, low2 = self.connect(30)
        for client in (high, low, low2):
            self.assertTrue(self.hub.join_room(client, 9))
        users = self.list_room_users(self.hub, 9)
        self.assertEqual(users, [30, 31])
        self.assertIsInstance(users[0], int)
        low_ws.send({"type": "presence", "room_id": 9})
        self.assertEqual(low_ws.recv(type_="presence")["users"], users)
        self.assertEqual(self.list_room_users(self.hub, 10), [])
        self.assertTrue(self.hub.leave_room(high, 9))
        self.assertEqual(self.list_room_users(self.hub, 9), [30])
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        with self.assertRaises(GLib.Error) as context:
            self.list_room_users(self.hub, 9, cancellable)
        self.assertTrue(context.exception.matches(Gio.io_error_quark(),
                                                  Gio.IOErrorEnum.CANCELLED))

    def test_list_room_users_async_without_redis(self):
        # a node whose Redis cannot be reached: the error says so, at once
        with tempfile.TemporaryDirectory() as tmp:
            store = Chat.RedisStore.new(os.path.join(tmp, "no-redis.sock"), None)
            hub = Chat.Hub(store=store)
            with self.assertRaises(GLib.Error) as context:
                self.list_room_users(hub, 9)
            self.assertChatError(context, Chat.Error.UNAVAILABLE)
            self.assertIn("room 9", context.exception.message)
            del hub, store
            spin(0.1)

    def test_presence_and_refresh_types(self):
        self.assertEqual(Chat.message_type_to_string(Chat.MessageType.PRESENCE), "presence")
        self.assertEqual(Chat.message_type_to_string(Chat.MessageType.REFRESH), "refresh")
        self.assertEqual(int(Chat.CloseCode.TOKEN_EXPIRED), 4001)
        message = Chat.Message.new_from_json('{"type":"refresh","token":"a.b.c"}', -1)
        self.assertEqual(message.get_message_type(), Chat.MessageType.REFRESH)
        self.assertEqual(message.props.token, "a.b.c")
        self.assertEqual(message.get_token(), "a.b.c")

    def test_message_received(self):
        ws, client = self.connect(42)
        received = []
        client.connect("message-received", lambda c, message: received.append((c, message)))
        self.join(ws, 3)
        self.assertEqual(received[0][0], client)
        self.assertEqual(received[0][1].props.type, Chat.MessageType.JOIN)
        self.assertEqual(received[0][1].props.room_id, 3)

        ws.send({"type": "message", "room_id": 3, "content": "hello", "data": [1, "two"],
                 "from": 999})
        relayed = ws.recv(type_="message")
        self.assertEqual(len(received), 2)
        message = received[1][1]
        self.assertEqual(message.props.type, Chat.MessageType.MESSAGE)
        self.assertEqual(message.props.content, "hello")
        self.assertEqual(message.props.room_id, 3)
        self.assertEqual(Json.to_string(message.props.data, False), '[1,"two"]')
        # the hub stamps the same object after the handlers ran
        self.assertEqual(message.props.id, relayed["id"])
        self.assertEqual(message.get_from(), 42)
        self.assertEqual(message.get_property("from"), 42)
        self.assertEqual(relayed["from"], 42)
        self.assertEqual(relayed["data"], [1, "two"])

    def test_broadcast_signal(self):
        ws1, client1 = self.connect(1)
        ws2, client2 = self.connect(2)
        broadcasts = []
        self.hub.connect("broadcast", lambda hub, message: broadcasts.append(
            (message.get_id(), message.get_from(), message.props.content)))

        ws1.send({"type": "message", "content": "to everyone"})
        for ws in (ws1, ws2):
            frame = ws.recv(type_="message")
            self.assertEqual((frame["from"], frame["content"]), (1, "to everyone"))
        self.assertEqual(broadcasts, [(frame["id"], 1, "to everyone")])

        # and from the service
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "maintenance at 18:00"
        self.assertEqual(self.hub.send_to_all(message), 2)
        for ws in (ws1, ws2):
            frame = ws.recv(type_="message")
            self.assertEqual((frame["from"], frame["content"]), (0, "maintenance at 18:00"))
            self.assertEqual(frame["id"], message.props.id)
        self.assertEqual(len(broadcasts), 2)
        self.assertEqual(self.hub.get_messages_relayed(), 2)

    def read_history(self, hub, room_id, before, limit):
        results = []
        hub.read_history_async(room_id, before, limit, None,
                               lambda source, result: results.append(
                                   source.read_history_finish(result)))
        wait_until(lambda: results, what="history")
        messages, epoch = results[0]
        return messages, epoch

    def test_read_history(self):
        ws1, _ = self.connect(1)
        ws1.send({"type": "join", "room_id": 8})
        ack = ws1.recv(type_="join")
        for i in range(5):
            ws1.send({"type": "message", "room_id": 8, "content": f"h{i}"})
        frames = [ws1.recv(type_="message") for _ in range(5)]
        self.assertEqual([f["offset"] for f in frames], [1, 2, 3, 4, 5])

        messages, epoch = self.read_history(self.hub, 8, 0, 3)
        self.assertEqual(epoch, ack["epoch"])
        self.assertEqual([m.props.offset for m in messages], [3, 4, 5])
        self.assertEqual([m.props.content for m in messages], ["h2", "h3", "h4"])
        self.assertEqual([m.props.id for m in messages], [f["id"] for f in frames[2:]])
        self.assertEqual({m.props.room_id for m in messages}, {8})
        self.assertEqual({m.get_from() for m in messages}, {1})
        # the newest below an offset; 0 for the default limit
        messages, _ = self.read_history(self.hub, 8, 3, 0)
        self.assertEqual([m.props.content for m in messages], ["h0", "h1"])
        # a room nobody is in has a history too (empty here)
        messages, epoch = self.read_history(self.hub, 404, 0, 10)
        self.assertEqual((len(messages), bool(epoch)), (0, True))

    def test_hub_with_a_store(self):
        with tempfile.TemporaryDirectory() as tmp:
            store = Chat.SqliteStore.new(os.path.join(tmp, "chathub.db"), Chat.StoreSync.NORMAL)
            hub = Chat.Hub(store=store)
            self.assertIs(hub.props.store, store)
            message = Chat.Message.new(Chat.MessageType.MESSAGE)
            message.props.content = "kept"
            self.assertEqual(hub.send_to_room(3, message), 0)  # nobody is in it: still stored
            wait_until(lambda: self.read_history(hub, 3, 0, 0)[0], what="stored")
            messages, _ = self.read_history(hub, 3, 0, 0)
            self.assertEqual([(m.props.content, m.props.offset, m.props.id)
                              for m in messages], [("kept", 1, message.props.id)])
            # a new hub on the same store: ids go on
            del hub
            again = Chat.Hub(store=store)
            other = Chat.Message.new(Chat.MessageType.MESSAGE)
            other.props.content = "next"
            again.send_to_all(other)
            self.assertEqual(other.props.id, message.props.id + 1)
            del again, store
            spin(0.1)
        # a hub without a store makes a memory store of its own
        self.assertIsInstance(Chat.Hub.new().props.store, Chat.MemoryStore)

    def test_send_to_room_and_user(self):
        ws1, client1 = self.connect(1)
        ws2, client2 = self.connect(2)
        self.join(ws1, 5)

        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "room news"
        self.assertEqual(self.hub.send_to_room(5, message), 1)
        frame = ws1.recv(type_="message")
        self.assertEqual((frame["room_id"], frame["content"], frame["from"]), (5, "room news", 0))
        ws2.assert_nothing(type_="message")
        self.assertEqual(self.hub.send_to_room(6, message), 0)  # an empty room

        direct = Chat.Message.new(Chat.MessageType.MESSAGE)
        direct.set_data_json('{"level":"info"}', -1)
        self.assertEqual(self.hub.send_to_user(2, direct), 1)
        frame = ws2.recv(type_="message")
        self.assertEqual((frame["to"], frame["data"]), (2, {"level": "info"}))

        with self.assertRaises(GLib.Error) as context:
            self.hub.send_to_user(99, direct)
        self.assertChatError(context, Chat.Error.USER_OFFLINE)
        with self.assertRaises(GLib.Error) as context:
            self.hub.send_to_room(0, message)
        self.assertChatError(context, Chat.Error.INVALID_ARGUMENT)
        with self.assertRaises(GLib.Error) as context:
            self.hub.send_to_all(Chat.Message.new(Chat.MessageType.MESSAGE))  # no content
        self.assertChatError(context, Chat.Error.INVALID_MESSAGE)
        with self.assertRaises(GLib.Error) as context:
            self.hub.send_to_all(Chat.Message.new(Chat.MessageType.PING))
        self.assertChatError(context, Chat.Error.INVALID_MESSAGE)

    def test_close_client_after_a_broadcast(self):
        # Hub.close_client(): "say this, then disconnect", in that order
        ws, client = self.connect(4)
        last = Chat.Message.new(Chat.MessageType.MESSAGE)
        last.props.content = "last words"
        self.assertEqual(self.hub.send_to_all(last), 1)
        self.hub.close_client(client, 1008, "bye")
        frame = ws.recv(type_="message")
        self.assertEqual(frame["content"], "last words")
        self.assertEqual(ws.wait_closed(), (1008, "bye"))

    def test_send_routes_by_address(self):
        # Hub.send(): the message's own room_id / to choose where it goes, as for a client
        ws1, client1 = self.connect(1)
        ws2, client2 = self.connect(2)
        self.join(ws1, 8)

        room = Chat.Message.new(Chat.MessageType.MESSAGE)
        room.props.content = "to room 8"
        room.props.room_id = 8
        self.assertEqual(self.hub.send(room), 1)
        frame = ws1.recv(type_="message")
        self.assertEqual((frame["room_id"], frame["content"], frame["offset"]), (8, "to room 8", 1))
        ws2.assert_nothing(type_="message")

        direct = Chat.Message.new(Chat.MessageType.MESSAGE)
        direct.props.content = "to user 2"
        direct.props.to = 2
        self.assertEqual(self.hub.send(direct), 1)
        frame = ws2.recv(type_="message")
        self.assertEqual((frame["to"], frame["content"]), (2, "to user 2"))
        ws1.assert_nothing(type_="message")

        everyone = Chat.Message.new(Chat.MessageType.MESSAGE)
        everyone.props.content = "to all"
        self.assertEqual(self.hub.send(everyone), 2)
        for ws in (ws1, ws2):
            frame = ws.recv(type_="message")
            self.assertEqual(frame["content"], "to all")
            self.assertNotIn("offset", frame)
            self.assertEqual(frame["id"], everyone.props.id)
        self.assertLess(room.props.id, direct.props.id)
        self.assertLess(direct.props.id, everyone.props.id)

        both = Chat.Message.new(Chat.MessageType.MESSAGE)
        both.props.content = "nowhere"
        both.props.room_id = 8
        both.props.to = 2
        with self.assertRaises(GLib.Error) as context:
            self.hub.send(both)
        self.assertChatError(context, Chat.Error.INVALID_MESSAGE)

    def test_client_send(self):
        ws, client = self.connect(3)
        message = Chat.Message.new(Chat.MessageType.MESSAGE)
        message.props.content = "just you"
        message.set_property("from", 7)
        self.assertTrue(client.send(message))
        frame = ws.recv(type_="message")
        self.assertEqual((frame["content"], frame["from"]), ("just you", 7))
        self.assertNotIn("id", frame)  # sent as it is

    def test_wire_errors(self):
        ws, client = self.connect(3)
        ws.send({"type": "message", "room_id": 8, "content": "x"})
        self.assertEqual(ws.recv(type_="error")["code"], "not_member")
        ws.send("[]")
        self.assertEqual(ws.recv(type_="error")["code"], "invalid_message")
        self.assertTrue(client.is_open())

    def test_close_client(self):
        ws, client = self.connect(9)
        ws_other, other = self.connect(10)
        self.join(ws, 4)
        self.join(ws_other, 4)
        closed = []
        client.connect("closed", lambda c, code: closed.append((c, code)))
        unregistered = []
        self.hub.connect("client-unregistered",
                         lambda hub, c, code: unregistered.append((c, code)))
        client.close(Chat.CloseCode.POLICY_VIOLATION, "spam")
        self.assertFalse(client.is_open())
        self.assertEqual(ws.wait_closed(), (1008, "spam"))
        wait_until(lambda: unregistered, what="client-unregistered")
        self.assertEqual(closed, [(client, 1008)])
        self.assertEqual(unregistered, [(client, 1008)])
        self.assertEqual(self.hub.props.n_clients, 1)
        self.assertIsNone(self.hub.lookup_client(client.props.id))
        leave = ws_other.recv(type_="leave")
        self.assertEqual((leave["from"], leave["room_id"]), (9, 4))

    def test_close_in_message_received(self):
        ws_bad, bad = self.connect(66)
        ws_good, good = self.connect(67)

        def on_message(client, message):
            if "forbidden" in (message.props.content or ""):
                client.close(Chat.CloseCode.POLICY_VIOLATION, "banned word")

        bad.connect("message-received", on_message)
        ws_bad.send({"type": "message", "content": "a forbidden word"})
        self.assertEqual(ws_bad.wait_closed(), (1008, "banned word"))
        ws_good.assert_nothing(type_="message")  # never routed
        self.assertEqual(self.hub.get_messages_relayed(), 0)

    def test_peer_close_code(self):
        ws, client = self.connect(5)
        codes = []
        self.hub.connect("client-unregistered", lambda hub, c, code: codes.append(code))
        ws.close(1000)
        wait_until(lambda: codes, what="client-unregistered")
        self.assertEqual(codes, [1000])

    def test_close_all(self):
        ws1, _ = self.connect(1)
        ws2, _ = self.connect(2)
        self.assertEqual(self.hub.close_all(Chat.CloseCode.GOING_AWAY, "server shutting down"), 2)
        self.assertEqual(ws1.wait_closed(), (1001, "server shutting down"))
        self.assertEqual(ws2.wait_closed(), (1001, "server shutting down"))
        wait_until(lambda: self.hub.props.n_clients == 0, what="n-clients to reach 0")

    def test_refused_token(self):
        registered = []
        self.hub.connect("client-registered", lambda hub, client: registered.append(client))
        ws = WsClient(self.url, make_token(5, secret=b"wrong")).connect()
        self.assertEqual(ws.status, 401)
        ws = WsClient(self.url, None).connect()
        self.assertEqual(ws.status, 401)
        spin(0.1)
        self.assertEqual(registered, [])
        self.assertEqual(self.server.get_statistics().unpack()["refused-token"], 2)

    def test_main_loop(self):
        """The way a script runs: GLib.MainLoop, signals, quit from a handler."""
        loop = GLib.MainLoop()
        events = []

        def on_registered(hub, client):
            events.append("registered")
            client.connect("message-received", on_message)

        def on_message(client, message):
            events.append(message.props.content)
            reply = Chat.Message.new(Chat.MessageType.MESSAGE)
            reply.props.content = "pong " + message.props.content
            self.hub.send_to_user(client.props.user_id, reply)

        def on_unregistered(hub, client, code):
            events.append(("unregistered", code))
            loop.quit()

        self.hub.connect("client-registered", on_registered)
        self.hub.connect("client-unregistered", on_unregistered)

        token = make_token(11)

        def drive():
            # runs on the client's own thread: connect, talk, close
            import asyncio
            import json

            import websockets

            async def talk():
                async with websockets.connect(
                        self.url, extra_headers={"Authorization": f"Bearer {token}"}) as conn:
                    await conn.send(json.dumps({"type": "message", "content": "ping"}))
                    while True:
                        frame = json.loads(await conn.recv())
                        if frame.get("type") == "message" and frame.get("from") == 0:
                            events.append(frame["content"])
                            break
            asyncio.run(talk())

        import threading
        thread = threading.Thread(target=drive, daemon=True)
        GLib.timeout_add(10000, loop.quit)
        thread.start()
        loop.run()
        thread.join(5)
        self.assertEqual(events, ["registered", "ping", "pong ping", ("unregistered", 1000)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
