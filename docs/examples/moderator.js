// chathub example: a hub with a moderator, in GJS.
//
//   CHATHUB_JWT_SECRET=secret gjs -m moderator.js --port 8080 --ban spam --ban scam
//
// Every message a client sends is looked at before the hub routes it. One that contains a
// banned word (whole word, any case) is not relayed: its sender is disconnected with close
// code 1008 "banned word", and when it was sent to a room, the room is told so.
//
// It needs GJS and the Chat-1.0 typelib; for an uninstalled build:
//   GI_TYPELIB_PATH=_build/src/libchat LD_LIBRARY_PATH=_build/src/libchat gjs -m moderator.js
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import Chat from 'gi://Chat?version=1.0';
import System from 'system';

function usage(status) {
    print('Usage: gjs -m moderator.js [--address ADDR] [--port PORT] [--secret-file FILE] [--ban WORD]...');
    print('The HS256 secret is read from --secret-file, else from $CHATHUB_JWT_SECRET.');
    System.exit(status);
}

function parseArguments(argv) {
    const options = {address: '127.0.0.1', port: 8080, secretFile: null, banned: []};
    for (let i = 0; i < argv.length; i++) {
        const value = () => {
            if (i + 1 >= argv.length)
                usage(2);
            return argv[++i];
        };
        switch (argv[i]) {
        case '--address': options.address = value(); break;
        case '--port': options.port = Number.parseInt(value(), 10); break;
        case '--secret-file': options.secretFile = value(); break;
        case '--ban': options.banned.push(value()); break;
        case '--help': usage(0); break;
        default: usage(2);
        }
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)
        usage(2);
    if (options.banned.length === 0)
        options.banned = ['spam', 'scam'];
    return options;
}

function readSecret(options) {
    if (options.secretFile) {
        const [, contents] = GLib.file_get_contents(options.secretFile);
        let text = new TextDecoder().decode(contents);
        text = text.replace(/[\r\n]+$/, '');
        return text;
    }
    const secret = GLib.getenv('CHATHUB_JWT_SECRET');
    if (!secret) {
        printerr('moderator: give --secret-file or set CHATHUB_JWT_SECRET');
        System.exit(1);
    }
    return secret;
}

// One pattern for all the banned words: whole words, any case.
function bannedPattern(words) {
    const escaped = words.map(w => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    return new RegExp(`(^|[^\\p{L}\\p{N}])(${escaped.join('|')})($|[^\\p{L}\\p{N}])`, 'iu');
}

class Moderator {
    constructor(hub, banned) {
        this._hub = hub;
        this._pattern = bannedPattern(banned);
        hub.connect('client-registered', (_hub, client) => {
            client.connect('message-received', this._onMessageReceived.bind(this));
        });
    }

    _onMessageReceived(client, message) {
        if (message.type !== Chat.MessageType.MESSAGE || !this._pattern.test(message.content ?? ''))
            return;
        print(`moderator: disconnecting client ${client.id} (user ${client.user_id}): banned word`);
        // closing the client from this handler also keeps the hub from routing the message
        client.close(Chat.CloseCode.POLICY_VIOLATION, 'banned word');
        const roomId = message.room_id;
        if (roomId !== 0) {
            const notice = Chat.Message.new(Chat.MessageType.MESSAGE);
            notice.content = `User ${client.user_id} was disconnected by the moderator`;
            try {
                this._hub.send_to_room(roomId, notice);
            } catch (e) {
                printerr(`moderator: cannot tell room ${roomId}: ${e.message}`);
            }
        }
    }
}

const options = parseArguments(ARGV);
const hub = Chat.Hub.new();
let server;
try {
    const verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256,
        new GLib.Bytes(readSecret(options)));
    server = Chat.Server.new(hub, verifier);
    server.listen(options.address, options.port);
} catch (e) {
    printerr(`moderator: ${e.message}`);
    System.exit(1);
}
new Moderator(hub, options.banned);

const loop = new GLib.MainLoop(null, false);
let stopping = false;
function stop() {
    // close every client with 1001 and quit once they are gone (5 s at most)
    if (stopping)
        return GLib.SOURCE_CONTINUE;
    stopping = true;
    server.stop_listening();
    if (hub.close_all(Chat.CloseCode.GOING_AWAY, 'server shutting down') === 0)
        loop.quit();
    hub.connect('notify::n-clients', () => {
        if (hub.n_clients === 0)
            loop.quit();
    });
    GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 5, () => {
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    return GLib.SOURCE_CONTINUE;
}
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2 /* SIGINT */, stop);
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15 /* SIGTERM */, stop);

print(`moderator: listening on ${server.get_uri()}, banned words: ${options.banned.join(', ')}`);
loop.run();
