#!/usr/bin/python3
"""Presence and token refresh (protocol v1.1) through the real daemon.

presence: the distinct users connected in a room, ascending, for members only.
refresh: a new token for the same user moves the connection's deadline and replaces its
rooms claim; a refused one changes nothing; a connection whose token's exp (plus the
leeway, 0 here) passes is closed with 4001 "token expired" by the once-a-second heartbeat.
"""

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

# the heartbeat ticks at least once a second; what the tests wait beyond a deadline
CLOSE_SLACK = 2.5


class Base(h.RecvMixin, h.DaemonTestMixin, unittest.IsolatedAsyncioTestCase):
    DAEMON_CONFIG = {"auth": {"leeway": 0}}

    def token(self, user_id, **claims):
        claims.setdefault("exp", h.now() + 3600)
        return self.daemon.token(user_id, **claims)

    async def client(self, user_id=None, token=None, **claims):
        if user_id is None:
            user_id = h.next_user_id()
        if token is None:
            token = self.token(user_id, **claims)
        ws = await h.ws_connect(self.daemon, token=token)
        ws.user_id = user_id
        self.addAsyncCleanup(h.close_all, ws)
        return ws

    def assert_timestamp(self, msg):
        ts = msg.get("timestamp")
        self.assertIsInstance(ts, int, msg)
        self.assertLessEqual(abs(ts - time.time()), 5, msg)

    async def expect(self, ws, kind, room=None, user_id=None):
        msg = await self.recv(ws)
        self.assertEqual(msg.get("type"), kind, msg)
        if room is not None:
            self.assertEqual(msg.get("room_id"), room, msg)
        if user_id is not None:
            self.assertEqual(msg.get("from"), user_id, msg)
        self.assert_timestamp(msg)
        return msg

    async def expect_error(self, ws, code):
        msg = await self.expect(ws, "error")
        self.assertEqual(msg.get("code"), code, msg)
        self.assertTrue(msg.get("content", "").strip(), msg)
        return msg

    async def join(self, ws, room, *others):
        await h.send_json(ws, {"type": "join", "room_id": room})
        await self.expect(ws, "join", room, ws.user_id)
        for o in others:
            await self.expect(o, "join", room, ws.user_id)

    async def presence(self, ws, room):
        await h.send_json(ws, {"type": "presence", "room_id": room})
        msg = await self.expect(ws, "presence", room)
        self.assertEqual(set(msg), {"type", "room_id", "users", "timestamp"}, msg)
        return msg["users"]

    async def refresh(self, ws, token):
        await h.send_json(ws, {"type": "refresh", "token": token})
        msg = await self.expect(ws, "refresh")
        self.assertEqual(set(msg), {"type", "timestamp"}, msg)

    async def still_open(self, *conns):
        for ws in conns:
            try:
                await h.assert_only_pong(ws)
            except AssertionError as e:
                self.fail("user %s: %s" % (ws.user_id, e))

    async def expect_expiry_close(self, ws, within):
        try:
            await asyncio.wait_for(ws.wait_closed(), h.scaled(within))
        except asyncio.TimeoutError:
            self.fail("user %s's connection not closed within %.1f s" % (ws.user_id, within))
        self.assertEqual((ws.close_code, ws.close_reason), (4001, "token expired"))


class PresenceTests(Base):

    async def test_distinct_users_ascending(self):
        room = h.next_room_id()
        low, high = h.next_user_id(), h.next_user_id()
        # the higher id joins first, and the lower one has two connections
        b = await self.client(high)
        a1 = await self.client(low)
        a2 = await self.client(low)
        outsider = await self.client()      # connected, but not in the room
        await self.join(b, room)
        await self.join(a1, room, b)
        await self.join(a2, room, b, a1)
        for ws in (a1, a2, b):
            self.assertEqual(await self.presence(ws, room), [low, high])
        # one of two connections leaves: the user is still there
        await h.send_json(a2, {"type": "leave", "room_id": room})
        await self.expect(a2, "leave", room, low)
        for ws in (a1, b):
            await self.expect(ws, "leave", room, low)
        self.assertEqual(await self.presence(b, room), [low, high])
        await h.send_json(a1, {"type": "leave", "room_id": room})
        for ws in (a1, b):
            await self.expect(ws, "leave", room, low)
        self.assertEqual(await self.presence(b, room), [high])
        # only the asker got answers
        await self.still_open(outsider)

    async def test_not_member(self):
        room = h.next_room_id()
        member = await self.client()
        other = await self.client()
        await self.join(member, room)
        await h.send_json(other, {"type": "presence", "room_id": room})
        await self.expect_error(other, "not_member")
        # a connection of the same user that did not join is not a member either
        twin = await self.client(member.user_id)
        await h.send_json(twin, {"type": "presence", "room_id": room})
        await self.expect_error(twin, "not_member")
        await h.send_json(member, {"type": "presence"})
        await self.expect_error(member, "invalid_message")
        await self.still_open(member, other, twin)


class RefreshTests(Base):

    async def test_refresh_moves_the_deadline(self):
        user = h.next_user_id()
        ws = await self.client(user, exp=h.now() + 2)
        await self.refresh(ws, self.token(user, exp=h.now() + 3600))
        await asyncio.sleep(3)
        await self.still_open(ws)

    async def test_refresh_without_exp_removes_the_deadline(self):
        user = h.next_user_id()
        ws = await self.client(user, exp=h.now() + 2)
        await self.refresh(ws, h.hs_token({"user_id": user}, self.daemon.secret))
        await asyncio.sleep(3)
        await self.still_open(ws)

    async def test_refused_refreshes_change_nothing(self):
        user = h.next_user_id()
        allowed, other = h.next_room_id(), h.next_room_id()
        deadline = h.now() + 3
        ws = await self.client(user, exp=deadline, rooms=[allowed])
        refused = {
            "another user": self.token(h.next_user_id()),
            "expired": self.token(user, exp=h.now() - 10),
            "bad signature": h.hs_token({"user_id": user, "exp": h.now() + 3600},
                                        self.daemon.secret + "x"),
            "malformed": "not.a-token",
            "empty": "",
        }
        for name, token in refused.items():
            with self.subTest(name):
                await h.send_json(ws, {"type": "refresh", "token": token})
                await self.expect_error(ws, "invalid_token")
        for frame in ({"type": "refresh"}, {"type": "refresh", "token": 5},
                      {"type": "refresh", "token": "a\u0000b"}):
            await h.send_json(ws, frame)
            await self.expect_error(ws, "invalid_message")
        await self.still_open(ws)
        # the rooms claim did not change (the refused tokens have none, which allows all)
        await h.send_json(ws, {"type": "join", "room_id": other})
        await self.expect_error(ws, "forbidden")
        await self.join(ws, allowed)
        # the original deadline still holds
        await self.expect_expiry_close(ws, deadline - time.time() + CLOSE_SLACK)

    async def test_closed_with_4001_when_not_refreshed(self):
        room = h.next_room_id()
        ws = await self.client(exp=h.now() + 1)
        member = await self.client()
        await self.join(ws, room)
        await self.join(member, room, ws)
        await self.expect_expiry_close(ws, 1 + CLOSE_SLACK)
        # the usual leave event for the rest of the room
        await self.expect(member, "leave", room, ws.user_id)
        await self.still_open(member)

    async def test_narrowed_rooms_claim_leaves_rooms(self):
        keep, drop, new = h.next_room_id(), h.next_room_id(), h.next_room_id()
        user = h.next_user_id()
        ws = await self.client(user, rooms=[keep, drop])
        member = await self.client()
        for room in (keep, drop):
            await self.join(ws, room)
            await self.join(member, room, ws)
        await self.refresh(ws, self.token(user, rooms=[keep, new]))
        # the room no longer allowed is left, with the usual events
        await self.expect(ws, "leave", drop, user)
        await self.expect(member, "leave", drop, user)
        await self.still_open(ws, member)
        self.assertEqual(await self.presence(member, drop), [member.user_id])
        self.assertEqual(await self.presence(member, keep), sorted([user, member.user_id]))
        # the new claim applies from now on
        await h.send_json(ws, {"type": "join", "room_id": drop})
        await self.expect_error(ws, "forbidden")
        await self.join(ws, new)
        await h.send_json(ws, {"type": "message", "room_id": drop, "content": "x"})
        await self.expect_error(ws, "not_member")
        # a token without a rooms claim allows every room again
        await self.refresh(ws, self.token(user))
        await self.join(ws, drop, member)
        await self.still_open(ws, member)


class RefreshRateTests(Base):
    DAEMON_CONFIG = {"auth": {"leeway": 0},
                     "limits": {"messages-per-second": 1, "message-burst": 2}}

    async def test_refresh_counts_toward_the_rate_limit(self):
        user = h.next_user_id()
        ws = await self.client(user)
        for _ in range(3):
            await h.send_json(ws, {"type": "refresh", "token": self.token(user)})
        await self.expect(ws, "refresh")
        await self.expect(ws, "refresh")
        await self.expect_error(ws, "rate_limited")


if __name__ == "__main__":
    h.main()
