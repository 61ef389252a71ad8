#!/usr/bin/python3
"""Protocol v1 through the real daemon: ping, broadcast, rooms, direct messages,
error codes, UTF-8 and byte-exact `data` relay.

"Nothing else arrived" is proven with assert_only_pong(): a JSON ping whose pong must
be the very next frame on that connection.
"""

import asyncio
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

ERROR_CODES = {"invalid_json", "invalid_message", "unknown_type", "not_member", "forbidden",
               "user_offline"}


class ProtocolBase(h.RecvMixin, h.DaemonTestMixin, unittest.IsolatedAsyncioTestCase):

    async def client(self, user_id=None, token=None, **claims):
        """A websockets client as user_id (new unique id if None); closed at cleanup."""
        if user_id is None:
            user_id = h.next_user_id()
        if token is None:
            claims.setdefault("exp", h.now() + 3600)
            token = self.daemon.token(user_id, **claims)
        ws = await h.ws_connect(self.daemon, token=token)
        ws.user_id = user_id
        self.addAsyncCleanup(h.close_all, ws)
        return ws

    async def expect_error(self, ws, code):
        msg = await self.recv(ws)
        self.assertEqual(msg.get("type"), "error", msg)
        self.assertEqual(msg.get("code"), code, msg)
        self.assertIsInstance(msg.get("content"), str, msg)
        self.assertTrue(msg["content"].strip(), "empty error content: %r" % msg)
        self.assert_timestamp(msg)
        return msg

    def assert_timestamp(self, msg):
        ts = msg.get("timestamp")
        self.assertIsInstance(ts, int, "timestamp in %r" % msg)
        self.assertNotIsInstance(ts, bool)
        self.assertLessEqual(abs(ts - time.time()), 5, "timestamp %r not now" % ts)

    def assert_relayed(self, msg, sender, content=None, to=None, room_id=None):
        self.assertEqual(msg.get("type"), "message", msg)
        self.assertIsInstance(msg.get("id"), int, msg)
        self.assertEqual(msg.get("from"), sender.user_id, msg)
        if content is not None:
            self.assertEqual(msg.get("content"), content, msg)
        if to is None:
            self.assertNotIn("to", msg)
        else:
            self.assertEqual(msg.get("to"), to, msg)
        if room_id is None:
            self.assertNotIn("room_id", msg)
        else:
            self.assertEqual(msg.get("room_id"), room_id, msg)
        self.assert_timestamp(msg)

    async def only_pong(self, *conns):
        for ws in conns:
            try:
                await h.assert_only_pong(ws)
            except AssertionError as e:
                self.fail("user %s: %s" % (ws.user_id, e))

    async def join(self, ws, room, *others):
        """ws joins room: checks the ack, and the join event on each of others."""
        await h.send_json(ws, {"type": "join", "room_id": room})
        ack = await self.recv(ws)
        self.assert_join_ack(ack, room, ws.user_id)
        for o in others:
            ev = await self.recv(o)
            self.assert_membership_event(ev, "join", room, ws.user_id)
        return ack

    def assert_membership_event(self, msg, kind, room, user_id, extra=()):
        self.assertEqual(msg.get("type"), kind, msg)
        self.assertEqual(msg.get("room_id"), room, msg)
        self.assertEqual(msg.get("from"), user_id, msg)
        self.assert_timestamp(msg)
        self.assertEqual(set(msg), {"type", "room_id", "from", "timestamp", *extra}, msg)

    def assert_join_ack(self, msg, room, user_id):
        """The joiner's own join event (v1.1): the room's offset and epoch as well."""
        self.assert_membership_event(msg, "join", room, user_id, extra=("offset", "epoch"))
        self.assertIsInstance(msg["offset"], int, msg)
        self.assertGreaterEqual(msg["offset"], 0, msg)
        self.assertIsInstance(msg["epoch"], str, msg)
        self.assertTrue(msg["epoch"], msg)


class PingBroadcastTests(ProtocolBase):

    async def test_ping_pong(self):
        a = await self.client()
        await h.send_json(a, {"type": "ping"})
        msg = await self.recv(a)
        self.assertEqual(msg.get("type"), "pong", msg)
        self.assert_timestamp(msg)
        self.assertEqual(list(msg), ["type", "timestamp"], msg)

    async def test_ping_answered_only_to_sender(self):
        a = await self.client()
        b = await self.client()
        await h.send_json(a, {"type": "ping"})
        self.assertEqual((await self.recv(a)).get("type"), "pong")
        await self.only_pong(b)

    async def test_ping_with_extra_fields(self):
        a = await self.client()
        await h.send_json(a, {"type": "ping", "content": "hello", "timestamp": 5})
        msg = await self.recv(a)
        self.assertEqual(msg.get("type"), "pong", msg)
        self.assert_timestamp(msg)

    async def test_broadcast_reaches_everyone_including_sender(self):
        a = await self.client()
        b = await self.client()
        b2 = await self.client(b.user_id)           # second connection of user b
        c = await self.client()
        room = h.next_room_id()
        await self.join(c, room)                    # room members get broadcasts too
        await h.send_json(a, {"type": "message", "content": "hello all"})
        ids = set()
        for ws in (a, b, b2, c):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a, "hello all")
            ids.add(msg["id"])
        self.assertEqual(len(ids), 1, "one message must carry one id: %r" % ids)
        await self.only_pong(a, b, b2, c)

    async def test_message_ids_strictly_increasing(self):
        a = await self.client()
        b = await self.client()
        c = await self.client()
        for i in range(10):
            await h.send_json(a, {"type": "message", "content": "a%d" % i})
            await h.send_json(b, {"type": "message", "content": "b%d" % i})
        seen = {}
        for ws in (a, b, c):
            ids = []
            contents = []
            for _ in range(20):
                msg = await self.recv(ws)
                self.assertEqual(msg.get("type"), "message", msg)
                ids.append(msg["id"])
                contents.append(msg["content"])
                if msg["content"] in seen:
                    self.assertEqual(seen[msg["content"]], msg["id"],
                                     "same message, different ids on two connections")
                seen[msg["content"]] = msg["id"]
            self.assertEqual(ids, sorted(set(ids)), "ids not strictly increasing: %r" % ids)
            self.assertEqual([x for x in contents if x[0] == "a"], ["a%d" % i for i in range(10)])
            self.assertEqual([x for x in contents if x[0] == "b"], ["b%d" % i for i in range(10)])
        # ids keep increasing in later messages too
        await h.send_json(c, {"type": "message", "content": "later"})
        later = await self.recv(c)
        self.assertGreater(later["id"], max(seen.values()))

    async def test_from_spoofing_replaced(self):
        a = await self.client()
        b = await self.client()
        await h.send_json(a, {"type": "message", "content": "spoof", "from": 999999999,
                              "id": 987654321, "timestamp": 1})
        for ws in (a, b):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a, "spoof")
            self.assertNotEqual(msg["id"], 987654321)

    async def test_from_spoofing_replaced_in_room_and_direct(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await h.send_json(a, {"type": "message", "room_id": room, "content": "r", "from": b.user_id})
        for ws in (a, b):
            self.assert_relayed(await self.recv(ws), a, "r", room_id=room)
        await h.send_json(a, {"type": "message", "to": b.user_id, "content": "d", "from": b.user_id})
        for ws in (a, b):
            self.assert_relayed(await self.recv(ws), a, "d", to=b.user_id)

    async def test_relayed_wire_format_key_order(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await h.send_json(a, {"content": "c", "data": {"k": 1}, "room_id": room, "type": "message"})
        text = await h.recv_text(a)
        keys = [k for k, _, _ in h.top_level_members(text)]
        self.assertEqual(keys, ["type", "id", "offset", "from", "room_id", "content", "data", "timestamp"], text)
        await h.send_json(a, {"content": "c", "to": b.user_id, "type": "message"})
        text = await h.recv_text(a)
        keys = [k for k, _, _ in h.top_level_members(text)]
        self.assertEqual(keys, ["type", "id", "offset", "from", "to", "content", "timestamp"], text)
        await h.send_json(a, {"data": [1], "type": "message"})
        text = await h.recv_text(a)
        keys = [k for k, _, _ in h.top_level_members(text)]
        self.assertEqual(keys, ["type", "id", "from", "data", "timestamp"], text)

    async def test_null_optional_fields_are_absent(self):
        a = await self.client()
        b = await self.client()
        await h.send_json(a, {"type": "message", "content": "n", "to": None, "room_id": None,
                              "data": None, "from": None, "id": None, "timestamp": None})
        for ws in (a, b):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a, "n")
            self.assertNotIn("data", msg)

    async def test_data_only_message(self):
        a = await self.client()
        await h.send_json(a, {"type": "message", "data": {"only": "data"}})
        msg = await self.recv(a)
        self.assert_relayed(msg, a)
        self.assertNotIn("content", msg)
        self.assertEqual(msg.get("data"), {"only": "data"})

    async def test_empty_content_relayed(self):
        a = await self.client()
        await h.send_json(a, {"type": "message", "content": ""})
        msg = await self.recv(a)
        self.assert_relayed(msg, a, "")

    async def test_client_pong_is_ignored(self):
        a = await self.client()
        await h.send_json(a, {"type": "pong", "timestamp": 5})
        await self.only_pong(a)


class PipelinedFramesTests(ProtocolBase):

    async def test_frames_sent_with_the_upgrade_request(self):
        """Frames pipelined behind the upgrade request, in the same write, sit in libsoup's
        buffer when the connection is handed over: no new readiness event comes for them,
        and they must still be read (and answered in order)."""
        uid, room = h.next_user_id(), h.next_room_id()
        early = (h.encode_frame(h.OP_TEXT, json.dumps({"type": "ping"}).encode())
                 + h.encode_frame(h.OP_TEXT,
                                  json.dumps({"type": "join", "room_id": room}).encode()))
        ws = await asyncio.to_thread(h.RawWS.connect, self.daemon.port,
                                     self.daemon.token(uid), early_data=early)
        try:
            pong = await asyncio.to_thread(ws.recv_json, 3.0, True)
            self.assertEqual(pong.get("type"), "pong", pong)
            ack = await asyncio.to_thread(ws.recv_json, 3.0, True)
            self.assert_join_ack(ack, room, uid)
        finally:
            ws.close()


class RoomTests(ProtocolBase):

    async def test_join_ack_and_event_to_members(self):
        a = await self.client()
        b = await self.client()
        c = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await self.only_pong(a, b, c)       # c is not in the room: no event

    async def test_room_message_reaches_members_including_sender(self):
        a = await self.client()
        b = await self.client()
        b2 = await self.client(b.user_id)
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await h.send_json(b, {"type": "message", "room_id": room, "content": "in room"})
        for ws in (a, b):
            self.assert_relayed(await self.recv(ws), b, "in room", room_id=room)
        # b2 is the same user but did not join: membership is per connection
        await self.only_pong(a, b, b2)

    async def test_room_isolation(self):
        a = await self.client()
        b = await self.client()
        c = await self.client()
        r1, r2 = h.next_room_id(), h.next_room_id()
        await self.join(a, r1)
        await self.join(b, r2)
        await h.send_json(a, {"type": "message", "room_id": r1, "content": "one"})
        self.assert_relayed(await self.recv(a), a, "one", room_id=r1)
        await self.only_pong(b, c)
        await h.send_json(b, {"type": "message", "room_id": r2, "content": "two"})
        self.assert_relayed(await self.recv(b), b, "two", room_id=r2)
        await self.only_pong(a, c)

    async def test_message_to_room_not_joined_is_not_member(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(b, room)
        await h.send_json(a, {"type": "message", "room_id": room, "content": "let me in"})
        await self.expect_error(a, "not_member")
        await self.only_pong(a, b)

    async def test_double_join_is_idempotent(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await self.join(b, room)            # ack again ...
        await self.only_pong(a)             # ... and no second event to a
        await h.send_json(a, {"type": "message", "room_id": room, "content": "once"})
        for ws in (a, b):
            self.assert_relayed(await self.recv(ws), a, "once", room_id=room)
        await self.only_pong(a, b)          # b got it once, not twice

    async def test_leave(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await h.send_json(b, {"type": "leave", "room_id": room})
        self.assert_membership_event(await self.recv(b), "leave", room, b.user_id)
        self.assert_membership_event(await self.recv(a), "leave", room, b.user_id)
        await h.send_json(a, {"type": "message", "room_id": room, "content": "after"})
        self.assert_relayed(await self.recv(a), a, "after", room_id=room)
        await self.only_pong(b)
        await h.send_json(b, {"type": "message", "room_id": room, "content": "x"})
        await self.expect_error(b, "not_member")
        # leaving again: not a member any more
        await h.send_json(b, {"type": "leave", "room_id": room})
        await self.expect_error(b, "not_member")
        await self.only_pong(a)

    async def test_leave_room_not_joined_is_not_member(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(b, room)
        await h.send_json(a, {"type": "leave", "room_id": room})
        await self.expect_error(a, "not_member")
        await self.only_pong(a, b)

    async def test_rejoin_after_leave(self):
        a = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await h.send_json(a, {"type": "leave", "room_id": room})
        self.assert_membership_event(await self.recv(a), "leave", room, a.user_id)
        await self.join(a, room)
        await h.send_json(a, {"type": "message", "room_id": room, "content": "back"})
        self.assert_relayed(await self.recv(a), a, "back", room_id=room)

    async def test_rooms_claim_forbids_other_rooms(self):
        r1, r2, r3 = h.next_room_id(), h.next_room_id(), h.next_room_id()
        a = await self.client(rooms=[r1, r2])
        b = await self.client()
        await self.join(b, r3)
        await self.join(a, r1)
        await self.join(a, r2)
        await h.send_json(a, {"type": "join", "room_id": r3})
        await self.expect_error(a, "forbidden")
        await self.only_pong(b)             # no join event for a refused join
        await h.send_json(a, {"type": "message", "room_id": r3, "content": "x"})
        await self.expect_error(a, "not_member")
        await self.only_pong(a, b)

    async def test_empty_rooms_claim_forbids_all(self):
        a = await self.client(rooms=[])
        room = h.next_room_id()
        for r in (room, 1):
            await h.send_json(a, {"type": "join", "room_id": r})
            await self.expect_error(a, "forbidden")
        # everything else still works
        await h.send_json(a, {"type": "message", "content": "still here"})
        self.assert_relayed(await self.recv(a), a, "still here")

    async def test_members_get_leave_when_member_closes(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await b.close()
        self.assert_membership_event(await self.recv(a), "leave", room, b.user_id)
        await self.only_pong(a)

    async def test_members_get_leave_when_member_drops_tcp(self):
        a = await self.client()
        uid = h.next_user_id()
        raw = await asyncio.to_thread(h.RawWS.connect, self.daemon.port, self.daemon.token(uid))
        room = h.next_room_id()
        await self.join(a, room)
        raw.send_json({"type": "join", "room_id": room})
        ack = await asyncio.to_thread(raw.recv_json)
        self.assert_join_ack(ack, room, uid)
        self.assert_membership_event(await self.recv(a), "join", room, uid)
        raw.abort(reset=True)
        self.assert_membership_event(await self.recv(a, timeout=8), "leave", room, uid)

    async def test_leave_events_for_every_room_on_close(self):
        a = await self.client()
        b = await self.client()
        r1, r2 = h.next_room_id(), h.next_room_id()
        for r in (r1, r2):
            await self.join(a, r)
            await self.join(b, r, a)
        await b.close()
        got = set()
        for _ in range(2):
            ev = await self.recv(a)
            self.assertEqual(ev.get("type"), "leave", ev)
            self.assertEqual(ev.get("from"), b.user_id, ev)
            got.add(ev.get("room_id"))
        self.assertEqual(got, {r1, r2})
        await self.only_pong(a)


class DirectMessageTests(ProtocolBase):

    async def test_direct_reaches_all_connections_of_both_users_once(self):
        a1 = await self.client()
        a2 = await self.client(a1.user_id)
        b1 = await self.client()
        b2 = await self.client(b1.user_id)
        c = await self.client()
        await h.send_json(a1, {"type": "message", "to": b1.user_id, "content": "psst"})
        ids = set()
        for ws in (a1, a2, b1, b2):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a1, "psst", to=b1.user_id)
            ids.add(msg["id"])
        self.assertEqual(len(ids), 1)
        await self.only_pong(a1, a2, b1, b2, c)

    async def test_direct_to_self_once_per_connection(self):
        a1 = await self.client()
        a2 = await self.client(a1.user_id)
        await h.send_json(a1, {"type": "message", "to": a1.user_id, "content": "note to self"})
        for ws in (a1, a2):
            self.assert_relayed(await self.recv(ws), a1, "note to self", to=a1.user_id)
        await self.only_pong(a1, a2)

    async def test_direct_with_data(self):
        a = await self.client()
        b = await self.client()
        await h.send_json(a, {"type": "message", "to": b.user_id, "data": {"x": [1, 2]}})
        for ws in (a, b):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a, to=b.user_id)
            self.assertEqual(msg.get("data"), {"x": [1, 2]})

    async def test_dm_to_offline_user_is_stored_and_echoed(self):
        # protocol 1.1: no user_offline; the DM waits for the user (tests/python/test_dms.py)
        a1 = await self.client()
        a2 = await self.client(a1.user_id)
        nobody = h.next_user_id()
        await h.send_json(a1, {"type": "message", "to": nobody, "content": "hello?"})
        for ws in (a1, a2):
            self.assert_relayed(await self.recv(ws), a1, "hello?", to=nobody)
        await self.only_pong(a1, a2)

    async def test_to_and_room_id_is_invalid_message(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await self.join(b, room, a)
        await h.send_json(a, {"type": "message", "to": b.user_id, "room_id": room, "content": "x"})
        await self.expect_error(a, "invalid_message")
        await self.only_pong(a, b)


BAD_FRAMES = [
    # (label, frame text, expected code)
    ("empty frame", "", "invalid_json"),
    ("garbage", "garbage", "invalid_json"),
    ("unterminated object", '{"type":"message","content":"x"', "invalid_json"),
    ("bare brace", "{", "invalid_json"),
    ("trailing garbage", '{"type":"ping"} x', "invalid_json"),
    ("single quotes", "{'type':'ping'}", "invalid_json"),
    ("comment before object", '/* c */ {"type":"ping"}', "invalid_json"),
    ("comment after object", '{"type":"ping"} /* c */', "invalid_json"),
    ("two objects", '{"type":"ping"}{"type":"ping"}', "invalid_json"),
    ("invalid string escape", '{"type":"message","content":"\\x41"}', "invalid_json"),
    ("raw control character in string", '{"type":"message","content":"a\tb"}', "invalid_json"),
    ("lone surrogate escape", '{"type":"message","content":"\\ud800"}', "invalid_json"),
    ("JSON array", "[1,2,3]", "invalid_message"),
    ("array of a ping", '[{"type":"ping"}]', "invalid_message"),
    ("JSON string", '"ping"', "invalid_message"),
    ("JSON number", "42", "invalid_message"),
    ("JSON null", "null", "invalid_message"),
    ("JSON true", "true", "invalid_message"),
    ("empty object", "{}", "invalid_message"),
    ("missing type", '{"content":"x"}', "invalid_message"),
    ("type number", '{"type":5}', "invalid_message"),
    ("type null", '{"type":null}', "invalid_message"),
    ("type array", '{"type":["ping"]}', "invalid_message"),
    ("type object", '{"type":{"name":"ping"}}', "invalid_message"),
    ("type bool", '{"type":true}', "invalid_message"),
    ("join without room_id", '{"type":"join"}', "invalid_message"),
    ("join room_id 0", '{"type":"join","room_id":0}', "invalid_message"),
    ("join room_id negative", '{"type":"join","room_id":-1}', "invalid_message"),
    ("join room_id string", '{"type":"join","room_id":"3"}', "invalid_message"),
    ("join room_id fraction", '{"type":"join","room_id":1.5}', "invalid_message"),
    ("join room_id object", '{"type":"join","room_id":{}}', "invalid_message"),
    ("leave without room_id", '{"type":"leave"}', "invalid_message"),
    ("leave room_id 0", '{"type":"leave","room_id":0}', "invalid_message"),
    ("message room_id 0", '{"type":"message","room_id":0,"content":"x"}', "invalid_message"),
    ("message without content or data", '{"type":"message"}', "invalid_message"),
    ("content number", '{"type":"message","content":5}', "invalid_message"),
    ("content object", '{"type":"message","content":{"a":1}}', "invalid_message"),
    ("content array", '{"type":"message","content":["a"]}', "invalid_message"),
    ("content bool", '{"type":"message","content":false}', "invalid_message"),
    ("to negative", '{"type":"message","to":-3,"content":"x"}', "invalid_message"),
    ("to zero", '{"type":"message","to":0,"content":"x"}', "invalid_message"),
    ("to string", '{"type":"message","to":"7","content":"x"}', "invalid_message"),
    ("to fraction", '{"type":"message","to":2.5,"content":"x"}', "invalid_message"),
    ("from string", '{"type":"message","content":"x","from":"me"}', "invalid_message"),
    ("id string", '{"type":"message","content":"x","id":"x"}', "invalid_message"),
    ("timestamp string", '{"type":"message","content":"x","timestamp":"now"}', "invalid_message"),
    ("client sends type error", '{"type":"error","code":"x","content":"y"}', "invalid_message"),
    ("unknown type", '{"type":"dance"}', "unknown_type"),
    ("unknown type, case", '{"type":"PING"}', "unknown_type"),
    ("unknown type with fields", '{"type":"subscribe","room_id":3}', "unknown_type"),
    # json-glib cuts strings at U+0000: no field may arrive shortened
    ("type with U+0000", '{"type":"ping\\u0000x"}', "unknown_type"),
    ("message type with U+0000", '{"type":"message\\u0000junk","content":"x"}', "unknown_type"),
    ("content with U+0000", '{"type":"message","content":"a\\u0000b"}', "invalid_message"),
    ("content U+0000 alone", '{"type":"message","content":"\\u0000"}', "invalid_message"),
    ("code with U+0000", '{"type":"message","content":"x","code":"a\\u0000b"}', "invalid_message"),
    ("member name with U+0000", '{"type":"message","content\\u0000x":"hi"}', "invalid_message"),
    ("data nested 65 levels", '{"type":"message","data":' + "[" * 65 + "]" * 65 + '}', "invalid_json"),
]


class ErrorTests(ProtocolBase):

    async def test_error_codes(self):
        bystander = await self.client()
        offender = await self.client()
        same_user = await self.client(offender.user_id)
        dropped = []
        for label, text, code in BAD_FRAMES:
            if offender.closed:
                # keep the remaining cases independent of an earlier failure
                dropped.append((label, offender.close_code))
                offender = await self.client(same_user.user_id)
            with self.subTest(case=label, frame=text):
                await offender.send(text)
                reply = await h.recv_text(offender)
                try:
                    msg = json.loads(reply)
                except ValueError:
                    self.fail("reply is not JSON: %r" % reply[:200])
                # resynchronise before checking, so one failure does not spill into the next case
                extra = await h.drain_until_pong(offender)
                self.assertEqual((msg.get("type"), msg.get("code")), ("error", code),
                                 "reply %r" % reply[:200])
                self.assertIsInstance(msg.get("content"), str, msg)
                self.assertTrue(msg["content"].strip(), msg)
                self.assert_timestamp(msg)
                self.assertEqual(extra, [], "more than one reply to one bad frame")
        self.assertEqual(dropped, [], "connection closed after a bad frame (case before, close code)")
        self.assertFalse(offender.closed, "connection closed after an error frame")
        # errors go only to the offender: not to its user's other connection, not to others
        for ws in (same_user, bystander):
            got = await h.drain_until_pong(ws)
            errors = [t for t in got if '"error"' in t]
            self.assertEqual(errors, [], "user %s received another connection's errors" % ws.user_id)

    async def test_error_frame_format(self):
        a = await self.client()
        await a.send("nope")
        text = await h.recv_text(a)
        keys = [k for k, _, _ in h.top_level_members(text)]
        self.assertEqual(keys, ["type", "code", "content", "timestamp"], text)

    async def test_connection_stays_open_after_errors(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        limited = await self.client(rooms=[])
        await a.send("")
        await self.expect_error(a, "invalid_json")
        await a.send("[]")
        await self.expect_error(a, "invalid_message")
        await a.send('{"type":"fly"}')
        await self.expect_error(a, "unknown_type")
        await h.send_json(a, {"type": "message", "room_id": room, "content": "x"})
        await self.expect_error(a, "not_member")
        await h.send_json(limited, {"type": "join", "room_id": room})
        await self.expect_error(limited, "forbidden")
        # still fully working
        await h.send_json(a, {"type": "message", "content": "alive"})
        for ws in (a, b, limited):
            self.assert_relayed(await self.recv(ws), a, "alive")
        await self.join(a, room)
        await self.only_pong(a, b, limited)

    async def test_error_codes_are_known(self):
        a = await self.client()
        await a.send("{")
        msg = await self.recv(a)
        self.assertIn(msg.get("code"), ERROR_CODES)


NON_BMP = "emoji \U0001F600\U0001F389 CJK \u6f22\u5b57\u30c6\u30b9\u30c8 \U00020BB7 clef \U0001D11E " \
          "e\u0301 \u00e9 RTL \u05e9\u05dc\u05d5\u05dd zwj \U0001F468\u200D\U0001F469\u200D\U0001F467 " \
          "escapes \" \\ / \n \t \u2028 \u007f"


class Utf8AndDataTests(ProtocolBase):

    async def test_non_bmp_utf8_round_trip(self):
        a = await self.client()
        b = await self.client()
        await h.send_json(a, {"type": "message", "content": NON_BMP})
        for ws in (a, b):
            msg = await self.recv(ws)
            self.assertEqual(msg.get("content"), NON_BMP)

    async def test_escaped_surrogate_pairs_decode_to_same_text(self):
        a = await self.client()
        text = json.dumps({"type": "message", "content": NON_BMP}, ensure_ascii=True)
        self.assertIn("\\ud83d\\ude00", text)
        await a.send(text)
        msg = await self.recv(a)
        self.assertEqual(msg.get("content"), NON_BMP)

    async def test_non_bmp_in_room_and_direct(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        await h.send_json(a, {"type": "message", "room_id": room, "content": NON_BMP})
        self.assertEqual((await self.recv(a)).get("content"), NON_BMP)
        await h.send_json(a, {"type": "message", "to": b.user_id, "content": NON_BMP})
        self.assertEqual((await self.recv(b)).get("content"), NON_BMP)

    async def test_raw_client_utf8_bytes_exact(self):
        # the received frame must be valid UTF-8 and decode to the same characters
        uid = h.next_user_id()
        raw = await asyncio.to_thread(h.RawWS.connect, self.daemon.port, self.daemon.token(uid))
        try:
            raw.send_text(json.dumps({"type": "message", "content": NON_BMP}, ensure_ascii=False))
            op, payload = await asyncio.to_thread(raw.recv_message)
            self.assertEqual(op, h.OP_TEXT)
            msg = json.loads(payload.decode("utf-8", "strict"))
            self.assertEqual(msg["content"], NON_BMP)
        finally:
            raw.close()

    DATA_CASES = [
        ("U+0000 escapes", '{"k\\u0000":"a\\u0000b","\\u0000":"\\u0000"}'),
        ("nested 64 levels", "[" * 64 + "1" + "]" * 64),
        ("nested object", '{"nested":{"a":[1,2,{"b":null}],"t":true,"f":false},"arr":[[],{}],"s":""}'),
        ("whitespace kept", '{ "a" : [ 1 ,2 , 3 ] ,\n\t"b" :{ } }'),
        ("array", '[1,"two",3.0,[4],{"five":5},null,true]'),
        ("small fraction", "0.1"),
        ("uint64 overflow", "12345678901234567890"),
        ("huge exponent", "1e400"),
        ("negative zero", "-0.0"),
        ("exponent forms", "[1E-7,2e+10,-3.25e-300]"),
        ("long integer", "-9223372036854775809"),
        ("unicode escapes", '"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\u2028\\uFFFF"'),
        ("NUL escape", '"a\\u0000b"'),
        ("raw non-BMP", '"\U0001F600 \u6f22\u5b57"'),
        ("mixed numbers object", '{"big":12345678901234567890,"small":0.1,"huge":1e400,'
                                 '"esc":"\\u2028\\u0041","deep":[[[[[[{"x":[0.10]}]]]]]]}'),
        ("string", '"plain"'),
        ("false", "false"),
        ("zero", "0"),
        ("empty object", "{}"),
        ("empty array", "[]"),
    ]

    async def test_data_relayed_byte_for_byte(self):
        a = await self.client()
        b = await self.client()
        for label, data in self.DATA_CASES:
            with self.subTest(case=label, data=data):
                frame = '{"type":"message","content":"d","data":' + data + '}'
                await a.send(frame)
                for ws in (a, b):
                    msg = await self.recv(ws)
                    if msg.get("type") == "error":
                        self.fail("daemon refused data %s: %r" % (data, msg))
                    text = self.last_text
                    self.assertEqual(h.raw_member(text, "data"), data,
                                     "data not relayed byte for byte; frame was %r" % text)

    # Not JSON (RFC 8259), so never relayed: `data` is relayed as the sender's bytes,
    # and anything accepted here would reach every recipient as an unparsable frame.
    NON_JSON_DATA = [
        ("hex number", "0x10"),
        ("leading zero", "01"),
        ("leading dot", ".5"),
        ("trailing dot", "1."),
        ("plus sign", "+1"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("single-quoted string", "'sq'"),
        ("single-quoted key", "{'k':1}"),
        ("comment", "/*c*/1"),
        ("raw tab in string", '"a\tb"'),
        ("trailing comma", "[1,]"),
        ("unquoted key", "{k:1}"),
        ("invalid escape", '"\\x41"'),
    ]

    async def test_non_json_data_refused_not_relayed(self):
        a = await self.client()
        b = await self.client()
        for label, data in self.NON_JSON_DATA:
            with self.subTest(case=label, data=data):
                await a.send('{"type":"message","content":"d","data":' + data + '}')
                reply = await h.recv_text(a)
                extra = await h.drain_until_pong(a)
                relayed = await h.drain_until_pong(b)
                self.assertFalse(relayed, "relayed to another client: %r" % relayed)
                self.assertIn('"invalid_json"', reply, "reply %r" % reply)
                self.assertEqual(extra, [])

    async def test_u0000_never_cuts_a_string(self):
        a = await self.client()
        b = await self.client()
        for frame, code, mention in [
                ('{"type":"ping\\u0000x"}', "unknown_type", "ping\\u0000x"),
                ('{"type":"message\\u0000junk","content":"x"}', "unknown_type", "message\\u0000junk"),
                ('{"type":"message","content":"a\\u0000b"}', "invalid_message", "content"),
                ('{"type":"message","code":"a\\u0000b","content":"x"}', "invalid_message", "code"),
                ('{"type\\u0000":"ping"}', "invalid_message", "U+0000")]:
            with self.subTest(frame=frame):
                await a.send(frame)
                msg = await self.recv(a)
                extra = await h.drain_until_pong(a)
                relayed = await h.drain_until_pong(b)
                self.assertEqual((msg.get("type"), msg.get("code")), ("error", code), msg)
                self.assertIn(mention, msg.get("content", ""), msg)
                self.assertEqual((extra, relayed), ([], []), "frame answered or relayed too")
        # an escaped backslash before u0000 is no NUL: relayed as sent
        await a.send('{"type":"message","content":"a\\\\u0000b"}')
        for ws in (a, b):
            msg = await self.recv(ws)
            self.assert_relayed(msg, a, "a\\u0000b")
            self.assertEqual(h.raw_member(self.last_text, "content"), '"a\\\\u0000b"')

    async def test_data_relayed_byte_for_byte_room_and_direct(self):
        a = await self.client()
        b = await self.client()
        room = h.next_room_id()
        await self.join(a, room)
        data = '{"x" : [0.1, 12345678901234567890, "\\ud83d\\ude00"], "y":{}}'
        await a.send('{"type":"message","room_id":%d,"data":%s}' % (room, data))
        await self.recv(a)
        self.assertEqual(h.raw_member(self.last_text, "data"), data)
        await a.send('{"data":%s,"type":"message","to":%d}' % (data, b.user_id))
        for ws in (a, b):
            await self.recv(ws)
            self.assertEqual(h.raw_member(self.last_text, "data"), data)


if __name__ == "__main__":
    h.main()
