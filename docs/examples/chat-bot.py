#!/usr/bin/python3
# chathub example: a bot that embeds a hub and answers commands typed in a room.
#
#   CHATHUB_JWT_SECRET=secret /usr/bin/python3 chat-bot.py --port 8080
#
# Clients connect to the printed ws:// URI with a token signed with the secret (for instance
# from `chathubctl token`), join a room and type:
#   /who     who is in this room
#   /rooms   the rooms that have members, and how many
#   /help    the commands
# The bot answers in the room, as the service (from 0), right after the command.
#
# It needs PyGObject and the Chat-1.0 typelib; for an uninstalled build:
#   GI_TYPELIB_PATH=_build/src/libchat LD_LIBRARY_PATH=_build/src/libchat /usr/bin/python3 ...
# SPDX-License-Identifier: LGPL-2.1-or-later

import argparse
import os
import signal
import sys

import gi

gi.require_version("GLib", "2.0")
gi.require_version("Chat", "1.0")
from gi.repository import Chat, GLib  # noqa: E402


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Bot:
    def __init__(self, hub):
        self.hub = hub
        self.commands = {
            "/who": self.who,
            "/rooms": self.rooms,
            "/help": self.help,
        }
        hub.connect("client-registered", self.on_client_registered)

    def on_client_registered(self, hub, client):
        client.connect("message-received", self.on_message_received)

    def on_message_received(self, client, message):
        room_id = message.props.room_id
        text = (message.props.content or "").strip()
        if message.props.type != Chat.MessageType.MESSAGE or room_id == 0 or not text.startswith("/"):
            return
        command = text.split()[0]
        handler = self.commands.get(command, self.unknown)
        answer = handler(room_id, command)
        # The hub routes the command itself after this handler returns; answer once it did,
        # so that everyone in the room reads the question before the answer.
        GLib.idle_add(self.answer, room_id, answer)

    def answer(self, room_id, text):
        reply = Chat.Message.new(Chat.MessageType.MESSAGE)
        reply.props.content = text
        try:
            self.hub.send_to_room(room_id, reply)
        except GLib.Error as e:
            print(f"chat-bot: cannot answer in room {room_id}: {e.message}", file=sys.stderr)
        return GLib.SOURCE_REMOVE

    def who(self, room_id, command):
        members = self.hub.list_room_members(room_id)
        users = sorted({client.props.user_id for client in members})
        names = ", ".join(f"user {user}" for user in users)
        return (f"In room {room_id}: {names} "
                f"({plural(len(users), 'user')}, {plural(len(members), 'connection')})")

    def rooms(self, room_id, command):
        rooms = sorted(self.hub.list_rooms())
        listing = ", ".join(
            f"{room} ({plural(len(self.hub.list_room_members(room)), 'member')})" for room in rooms)
        return f"Rooms: {listing}"

    def help(self, room_id, command):
        return "Commands: " + ", ".join(self.commands)

    def unknown(self, room_id, command):
        return f"Unknown command {command}; try /help"


def read_secret(args):
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            return f.read().rstrip(b"\r\n")
    secret = os.environ.get("CHATHUB_JWT_SECRET", "")
    if not secret:
        sys.exit("chat-bot: give --secret-file or set CHATHUB_JWT_SECRET")
    return secret.encode()


def main():
    parser = argparse.ArgumentParser(description="A chathub bot that answers /who and /rooms.")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--secret-file", help="HS256 secret (else $CHATHUB_JWT_SECRET)")
    args = parser.parse_args()

    hub = Chat.Hub.new()
    try:
        verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, GLib.Bytes.new(read_secret(args)))
        server = Chat.Server.new(hub, verifier)
        server.listen(args.address, args.port)
    except GLib.Error as e:
        sys.exit(f"chat-bot: {e.message}")
    Bot(hub)

    loop = GLib.MainLoop()
    stopping = False

    def stop():
        # close every client with 1001, and quit once they are gone (5 s at most)
        nonlocal stopping
        if not stopping:
            stopping = True
            server.stop_listening()
            if hub.close_all(Chat.CloseCode.GOING_AWAY, "server shutting down") == 0:
                loop.quit()
            hub.connect("notify::n-clients", lambda hub, pspec: hub.props.n_clients or loop.quit())
            GLib.timeout_add_seconds(5, loop.quit)
        return GLib.SOURCE_CONTINUE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)

    print(f"chat-bot: listening on {server.get_uri()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
