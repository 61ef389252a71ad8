// The Chat-1.0 API from GJS: properties, signals and their arguments, errors as GLib.Error
// with the Chat domain and code, against real WebSocket clients (tests/gi/wsclient.py, which
// uses python3-websockets). Prints TAP.
//
//   GI_TYPELIB_PATH=_build/src/libchat LD_LIBRARY_PATH=_build/src/libchat gjs -m api-test.js

import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Gio from 'gi://Gio';
import Json from 'gi://Json';
import Chat from 'gi://Chat?version=1.0';
import {AssertionError, assert, assertEqual, runTests, sleep, test, waitUntil} from './tap.js';

const HERE = GLib.path_get_dirname(GLib.filename_from_uri(import.meta.url)[0]);
const WSCLIENT = GLib.build_filenamev([HERE, 'wsclient.py']);
const PYTHON = '/usr/bin/python3';
const SECRET = 'chathub-gjs-test-secret-0123456789abcdef';

function assertThrowsChatError(fn, code, what) {
    try {
        fn();
    } catch (e) {
        assert(e instanceof GLib.Error, `${what}: not a GLib.Error: ${e}`);
        assert(e.matches(Chat.Error, code), `${what}: expected Chat.Error ${code}, got ${e.domain}/${e.code}`);
        assertEqual(e.domain, Chat.error_quark(), `${what}: domain`);
        assertEqual(e.code, code, `${what}: code`);
        assert(e.message.length > 0, `${what}: a message`);
        return e;
    }
    throw new AssertionError(`${what}: nothing was thrown`);
}

// Resolves when predicate() returns something truthy; checks after every main-loop wakeup.
// ---- helpers -------------------------------------------------------------------------------

function makeToken(userId, rooms = null) {
    const claims = new Json.Object();
    claims.set_int_member('user_id', userId);
    claims.set_int_member('exp', Math.floor(Date.now() / 1000) + 3600);
    if (rooms !== null) {
        const array = new Json.Array();
        for (const room of rooms)
            array.add_int_element(room);
        claims.set_array_member('rooms', array);
    }
    return Chat.token_sign(Chat.TokenAlgorithm.HS256, new GLib.Bytes(SECRET), claims);
}

// A real WebSocket client in a child process, as a queue of events.
class WsClient {
    constructor(url, token) {
        const argv = [PYTHON, WSCLIENT, url];
        if (token)
            argv.push(token);
        this._proc = Gio.Subprocess.new(argv,
            Gio.SubprocessFlags.STDIN_PIPE | Gio.SubprocessFlags.STDOUT_PIPE);
        this._stdin = this._proc.get_stdin_pipe();
        this._stdout = new Gio.DataInputStream({base_stream: this._proc.get_stdout_pipe()});
        this.events = [];
        this.eof = false;
        this._readLine();
    }

    _readLine() {
        this._stdout.read_line_async(GLib.PRIORITY_DEFAULT, null, (stream, result) => {
            const [line] = stream.read_line_finish_utf8(result);
            if (line === null) {
                this.eof = true;
                return;
            }
            this.events.push(JSON.parse(line));
            this._readLine();
        });
    }

    // Takes the first event that matches, waiting for it.
    async take(match, what) {
        const index = () => this.events.findIndex(match);
        await waitUntil(() => index() >= 0 || this.eof, what);
        const i = index();
        if (i < 0)
            throw new AssertionError(`the client exited before ${what}: ${JSON.stringify(this.events)}`);
        return this.events.splice(i, 1)[0];
    }

    async open() {
        const event = await this.take(e => e.event === 'open' || e.event === 'refused', 'the handshake');
        return event;
    }

    frame(type, what) {
        return this.take(e => e.event === 'frame' && (!type || e.frame.type === type),
            what ?? `a ${type} frame`).then(e => e.frame);
    }

    closed() {
        return this.take(e => e.event === 'closed', 'the close');
    }

    frames(type) {
        return this.events.filter(e => e.event === 'frame' && e.frame.type === type).map(e => e.frame);
    }

    _command(command) {
        this._stdin.write_all(new TextEncoder().encode(`${JSON.stringify(command)}\n`), null);
    }

    send(value) {
        this._command({send: typeof value === 'string' ? value : JSON.stringify(value)});
    }

    async close(code = 1000) {
        if (!this.eof) {
            try {
                this._command({close: code});
            } catch (e) {
                // the child already went away
            }
        }
        await waitUntil(() => this.eof, 'the client to exit');
        this._proc.wait(null);
    }
}

// A hub, a verifier and a server on 127.0.0.1, port 0.
class Fixture {
    constructor() {
        this.hub = Chat.Hub.new();
        this.verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, new GLib.Bytes(SECRET));
        this.server = Chat.Server.new(this.hub, this.verifier);
        this.server.ping_interval = 0;
        assert(this.server.listen('127.0.0.1', 0), 'listen');
        this.port = this.server.get_port();
        this.url = this.server.get_uri();
        this.clients = [];
    }

    // Connects a real client; returns it with its ChatClient.
    async connect(userId, rooms = null) {
        const registered = [];
        const id = this.hub.connect('client-registered', (hub, client) => registered.push(client));
        const ws = new WsClient(this.url, makeToken(userId, rooms));
        this.clients.push(ws);
        assertEqual((await ws.open()).event, 'open', 'handshake');
        await waitUntil(() => registered.length > 0, 'client-registered');
        this.hub.disconnect(id);
        return [ws, registered[0]];
    }

    async join(ws, roomId) {
        ws.send({type: 'join', room_id: roomId});
        const event = await ws.frame('join');
        assertEqual(event.room_id, roomId, 'joined room');
    }

    async teardown() {
        for (const ws of this.clients)
            await ws.close();
        this.hub.close_all(Chat.CloseCode.GOING_AWAY, 'test over');
        await waitUntil(() => this.hub.get_n_clients() === 0, 'every client to unregister');
        this.server.stop_listening();
    }
}

function withFixture(fn) {
    return async () => {
        const fixture = new Fixture();
        try {
            await fn(fixture);
        } finally {
            await fixture.teardown();
        }
    };
}

// ---- the tests -------------------------------------------------------------------------

test('namespace: version, enums, functions', () => {
    assertEqual(Chat.MAJOR_VERSION, 1, 'major version');
    assertEqual(Chat.CloseCode.POLICY_VIOLATION, 1008, 'close code');
    assertEqual(Chat.message_type_to_string(Chat.MessageType.JOIN), 'join', 'type name');
    assertEqual(Chat.error_get_wire_code(Chat.Error.USER_OFFLINE), 'user_offline', 'wire code');
    // GJS 1.74 does not honour (skip) on a return value: the boolean Python drops is here
    assertEqual(Chat.token_algorithm_from_string('ES256'), [true, Chat.TokenAlgorithm.ES256], 'algorithm');
    assert(Chat.Outbox === undefined && Chat.client_new === undefined, 'private API stays out');
});

test('errors are GLib.Error with the Chat domain and code', () => {
    assertThrowsChatError(() => Chat.Message.new_from_json('[]', -1),
        Chat.Error.INVALID_MESSAGE, 'new_from_json("[]")');
    assertThrowsChatError(() => Chat.Message.new_from_json('{', -1),
        Chat.Error.INVALID_JSON, 'new_from_json("{")');
    assertThrowsChatError(() => Chat.Message.new_from_json('{"type":"shout"}', -1),
        Chat.Error.UNKNOWN_TYPE, 'an unknown type');
    assertThrowsChatError(() => Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, new GLib.Bytes('')),
        Chat.Error.INVALID_ARGUMENT, 'an empty key');
    assertThrowsChatError(() => Chat.token_algorithm_from_string('none'),
        Chat.Error.INVALID_ARGUMENT, 'algorithm none');
    const verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, new GLib.Bytes('other'));
    assertThrowsChatError(() => verifier.verify(makeToken(3)), Chat.Error.INVALID_TOKEN, 'a bad signature');
    const hub = Chat.Hub.new();
    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    message.content = 'hello';
    assertThrowsChatError(() => hub.send_to_user(99, message), Chat.Error.USER_OFFLINE, 'an offline user');
    assertThrowsChatError(() => hub.send_to_room(0, message), Chat.Error.INVALID_ARGUMENT, 'room 0');
});

test('message properties, notify and JSON', () => {
    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    const notified = [];
    message.connect('notify', (object, pspec) => notified.push(pspec.get_name()));
    message.room_id = 3;
    message.content = 'hi';
    message.content = 'hi';
    message.set_data_json('{"a":[1,2]}', -1);
    assertEqual(notified, ['room-id', 'content', 'data'], 'notifications');
    assertEqual(message.type, Chat.MessageType.MESSAGE, 'type');
    assertEqual(message.roomId, 3, 'roomId');
    assertEqual(Json.to_string(message.data, false), '{"a":[1,2]}', 'data');
    // a plain string, not a [text, length] array
    const text = message.to_json();
    assertEqual(typeof text, 'string', 'to_json returns a string');
    assertEqual(JSON.parse(text), {type: 'message', from: 0, room_id: 3, content: 'hi', data: {a: [1, 2]}, timestamp: 0}, 'to_json');
    // only the variant that says so gives a [text, length] pair
    assertEqual(message.to_json_with_length(), [text, text.length], 'to_json_with_length');
    const parsed = Chat.Message.new_from_json('{"type":"message","to":7,"content":"x"}', -1);
    assertEqual([parsed.type, parsed.to, parsed.content], [Chat.MessageType.MESSAGE, 7, 'x'], 'parsed');
    const built = new Chat.Message({type: Chat.MessageType.LEAVE, room_id: 2});
    assertEqual([built.get_message_type(), built.room_id], [Chat.MessageType.LEAVE, 2], 'construct properties');
});

test('server and verifier properties; port 0', () => {
    const hub = Chat.Hub.new();
    const verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, new GLib.Bytes(SECRET));
    assertEqual([verifier.algorithm, verifier.leeway, verifier.issuer], [Chat.TokenAlgorithm.HS256, 30, null], 'verifier');
    verifier.issuer = 'me';
    assertEqual(verifier.get_issuer(), 'me', 'issuer');
    const server = new Chat.Server({hub, verifier, path: '/chat', max_connections: 3});
    assert(server.hub === hub && server.get_verifier() === verifier, 'hub and verifier');
    assertEqual([server.path, server.maxConnections, server.max_message_size, server.outbox_size,
        server.ping_interval, server.idle_timeout], ['/chat', 3, 65536, 1048576, 54, 60], 'limits');
    assertEqual(server.get_port(), 0, 'port before listen');
    server.listen(null, 0);
    const port = server.get_port();
    assert(port > 0, 'a port was bound');
    assertEqual(server.get_uri(), `ws://127.0.0.1:${port}/chat`, 'uri');
    const stats = server.get_statistics().deepUnpack();
    assert('connections-accepted' in stats && 'uptime' in stats, 'statistics');
    server.stop_listening();
    assertEqual(server.get_port(), 0, 'port after disconnect');
});

test('client-registered, client properties, message-received, room-joined', withFixture(async f => {
    const registered = [];
    f.hub.connect('client-registered', (hub, client) => registered.push([hub, client]));
    const nClients = [];
    f.hub.connect('notify::n-clients', hub => nClients.push(hub.n_clients));
    const [ws, client] = await f.connect(42);
    assertEqual(registered.length, 1, 'one client-registered');
    assert(registered[0][0] === f.hub && registered[0][1] === client, 'signal arguments');
    assert(client instanceof Chat.Client, 'a Chat.Client');
    assertEqual(nClients, [1], 'notify::n-clients');
    assert(client.id.length > 0 && client.get_id() === client.id, 'id');
    assertEqual([client.user_id, client.userId, client.remote_address], [42, 42, '127.0.0.1'], 'client properties');
    assert(Math.abs(client.connected_since - Date.now() / 1000) < 60, 'connected-since');
    assert(client.is_open(), 'open');
    assert(f.hub.lookup_client(client.id) === client, 'lookup');
    assertEqual(f.hub.list_clients().length, 1, 'list_clients');

    const received = [];
    client.connect('message-received', (c, message) => received.push([c, message]));
    const joined = [];
    f.hub.connect('room-joined', (hub, c, roomId) => joined.push([c, roomId]));
    await f.join(ws, 5);
    assertEqual(received.length, 1, 'message-received for the join');
    assert(received[0][0] === client, 'message-received client');
    assertEqual([received[0][1].type, received[0][1].room_id], [Chat.MessageType.JOIN, 5], 'the join message');
    assertEqual(joined.length, 1, 'room-joined');
    assert(joined[0][0] === client, 'room-joined client');
    assertEqual(joined[0][1], 5, 'room-joined room');
    assertEqual(client.get_rooms(), [5], 'get_rooms');
    assertEqual(f.hub.list_rooms(), [5], 'list_rooms');

    ws.send({type: 'message', room_id: 5, content: 'hello', from: 7});
    const frame = await ws.frame('message');
    assertEqual([frame.from, frame.room_id, frame.content], [42, 5, 'hello'], 'relayed');
    const message = received[1][1];
    assertEqual([message.content, message.get_from(), message.id], ['hello', 42, frame.id], 'message-received message');
}));

test('list_room_users: distinct users in a room, ascending, as presence answers', withFixture(async f => {
    // the higher id joins first; the lower one has two connections
    const [, high] = await f.connect(31);
    const [lowWs, low] = await f.connect(30);
    const [, low2] = await f.connect(30);
    for (const client of [high, low, low2])
        assert(f.hub.join_room(client, 9), 'join_room');
    assertEqual(f.hub.list_room_users(9), [30, 31], 'list_room_users');
    assertEqual(typeof f.hub.list_room_users(9)[0], 'number', 'numbers');
    assertEqual(f.hub.list_room_users(10), [], 'an empty room');
    lowWs.send({type: 'presence', room_id: 9});
    assertEqual((await lowWs.frame('presence')).users, [30, 31], 'the presence answer');
    assert(f.hub.leave_room(high, 9), 'leave_room');
    assertEqual(f.hub.list_room_users(9), [30], 'after a leave');
    // the async one: the same users on one node, an array of numbers
    const listed = await new Promise((resolve, reject) => {
        f.hub.list_room_users_async(9, null, (source, result) => {
            try {
                resolve(source.list_room_users_finish(result));
            } catch (e) {
                reject(e);
            }
        });
    });
    assertEqual(listed, [30], 'list_room_users_async');
    assertEqual(Chat.MessageType.REFRESH > Chat.MessageType.ERROR, true, 'refresh type');
    assertEqual(Chat.CloseCode.TOKEN_EXPIRED, 4001, 'close code 4001');
    const refresh = Chat.Message.new_from_json('{"type":"refresh","token":"a.b.c"}', -1);
    assertEqual([refresh.token, refresh.get_token()], ['a.b.c', 'a.b.c'], 'token');
}));

test('broadcast signal; send to everyone, a room and a user', withFixture(async f => {
    const [ws1] = await f.connect(1);
    const [ws2] = await f.connect(2);
    await f.join(ws1, 9);
    const broadcasts = [];
    f.hub.connect('broadcast', (hub, message) => broadcasts.push([message.id, message.get_from(), message.content]));

    ws2.send({type: 'message', content: 'to all'});
    const a = await ws1.frame('message');
    const b = await ws2.frame('message');
    assertEqual([a.content, b.content, a.from], ['to all', 'to all', 2], 'relayed to everyone');
    assertEqual(broadcasts, [[a.id, 2, 'to all']], 'broadcast signal');

    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    message.content = 'from the service';
    assertEqual(f.hub.send_to_all(message), 2, 'send_to_all count');
    assertEqual((await ws1.frame('message')).from, 0, 'service sender');
    await ws2.frame('message');
    assertEqual(broadcasts.length, 2, 'broadcast signal for the service');

    const roomMessage = Chat.Message.new(Chat.MessageType.MESSAGE);
    roomMessage.content = 'room 9 only';
    assertEqual(f.hub.send_to_room(9, roomMessage), 1, 'send_to_room count');
    assertEqual((await ws1.frame('message')).room_id, 9, 'room message');

    const direct = Chat.Message.new(Chat.MessageType.MESSAGE);
    direct.content = 'just you';
    assertEqual(f.hub.send_to_user(2, direct), 1, 'send_to_user count');
    const d = await ws2.frame('message');
    assertEqual([d.to, d.content], [2, 'just you'], 'direct message');
    await sleep(200);
    assertEqual(ws2.frames('message').length, 0, 'user 2 got nothing from room 9');
    assertThrowsChatError(() => f.hub.send_to_user(3, direct), Chat.Error.USER_OFFLINE, 'offline');
}));

function readHistory(hub, roomId, before, limit) {
    return new Promise((resolve, reject) => {
        hub.read_history_async(roomId, before, limit, null, (source, result) => {
            try {
                resolve(source.read_history_finish(result));
            } catch (e) {
                reject(e);
            }
        });
    });
}

test('room messages are stored: offsets, the join ack, read_history', withFixture(async f => {
    const [ws] = await f.connect(1);
    ws.send({type: 'join', room_id: 12});
    const ack = await ws.frame('join');
    assertEqual(ack.offset, 0, 'ack offset of an empty room');
    assert(typeof ack.epoch === 'string' && ack.epoch.length > 0, 'ack epoch');
    for (let i = 0; i < 4; i++)
        ws.send({type: 'message', room_id: 12, content: `h${i}`});
    const frames = [];
    for (let i = 0; i < 4; i++)
        frames.push(await ws.frame('message'));
    assertEqual(frames.map(m => m.offset), [1, 2, 3, 4], 'offsets');

    const [messages, epoch] = await readHistory(f.hub, 12, 4, 2);
    assertEqual(epoch, ack.epoch, 'epoch');
    assertEqual(messages.map(m => [m.offset, m.content, m.id]),
        [[2, 'h1', frames[1].id], [3, 'h2', frames[2].id]], 'history before 4, limit 2');
    const [all] = await readHistory(f.hub, 12, 0, 0);
    assertEqual(all.length, 4, 'the default limit');
    assert(f.hub.store instanceof Chat.MemoryStore, 'a memory store by default');
    assertEqual(Chat.error_get_wire_code(Chat.Error.UNAVAILABLE), 'unavailable', 'wire code');
}));

test('close a client: closed and client-unregistered with the code', withFixture(async f => {
    const [ws, client] = await f.connect(5);
    const [other] = await f.connect(6);
    await f.join(ws, 1);
    await f.join(other, 1);
    const closed = [];
    client.connect('closed', (c, code) => closed.push([c, code]));
    const unregistered = [];
    f.hub.connect('client-unregistered', (hub, c, code) => unregistered.push([c, code]));
    const left = [];
    f.hub.connect('room-left', (hub, c, roomId) => left.push([c, roomId]));

    client.close(Chat.CloseCode.POLICY_VIOLATION, 'spam');
    assert(!client.is_open(), 'closing');
    const event = await ws.closed();
    assertEqual([event.code, event.reason], [1008, 'spam'], 'the close the peer saw');
    await waitUntil(() => unregistered.length > 0, 'client-unregistered');
    assert(closed.length === 1 && closed[0][0] === client, 'closed signal');
    assertEqual(closed[0][1], 1008, 'closed code');
    assert(unregistered[0][0] === client, 'client-unregistered client');
    assertEqual(unregistered[0][1], 1008, 'client-unregistered code');
    assert(left.length === 1 && left[0][0] === client && left[0][1] === 1, 'room-left');
    const leave = await other.frame('leave');
    assertEqual([leave.from, leave.room_id], [5, 1], 'leave event');
    assertEqual(f.hub.n_clients, 1, 'n-clients');
}));

test('a handler of message-received may close the client; the message is not routed', withFixture(async f => {
    const [bad, badClient] = await f.connect(7);
    const [good] = await f.connect(8);
    badClient.connect('message-received', (client, message) => {
        if ((message.content ?? '').includes('forbidden'))
            client.close(Chat.CloseCode.POLICY_VIOLATION, 'banned word');
    });
    bad.send({type: 'message', content: 'a forbidden word'});
    const event = await bad.closed();
    assertEqual([event.code, event.reason], [1008, 'banned word'], 'the close');
    await sleep(200);
    assertEqual(good.frames('message').length, 0, 'nothing relayed');
    assertEqual(f.hub.get_messages_relayed(), 0, 'messages-relayed');
}));

// ---- binding traps (docs/reference/overview.xml, "In Python and GJS") ----------------------

// GObject's disconnect(): when libchathub had chat_server_disconnect(), GJS called that, which
// stopped the server and left the handler connected
test('server.disconnect(id) is GObject\'s: the handler goes, the server keeps listening', withFixture(async f => {
    const seen = [];
    const id = f.server.connect('notify::max-connections', server => seen.push(server.max_connections));
    f.server.max_connections = 50;
    f.server.disconnect(id);
    f.server.max_connections = 60;
    assertEqual(seen, [50], 'notifications before the disconnect only');
    assertEqual(f.server.get_port(), f.port, 'still listening');
    const [, client] = await f.connect(4);
    assert(client.is_open(), 'a client connects after the disconnect');
}));

test('the hub: send_to_all() the method, broadcast the signal; register_client is private', withFixture(async f => {
    assertEqual(typeof f.hub.broadcast, 'undefined', 'no broadcast method');
    assertEqual(typeof f.hub.register_client, 'undefined', 'no register_client');
    assertEqual(typeof f.hub.unregister_client, 'undefined', 'no unregister_client');
    const [ws] = await f.connect(6);
    const seen = [];
    f.hub.connect('broadcast', (hub, message) => seen.push(message.content));
    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    message.content = 'to all';
    assertEqual(f.hub.send_to_all(message), 1, 'send_to_all count');
    assertEqual((await ws.frame('message')).content, 'to all', 'delivered');
    assertEqual(seen, ['to all'], 'the broadcast signal');
}));

test('close_client(): after what was sent to all before it', withFixture(async f => {
    assertEqual(typeof f.hub.disconnect, 'function', "GObject's disconnect() is not hidden");
    const [ws, client] = await f.connect(7);
    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    message.content = 'last words';
    assertEqual(f.hub.send_to_all(message), 1, 'send_to_all count');
    f.hub.close_client(client, Chat.CloseCode.POLICY_VIOLATION, 'bye');
    assertEqual((await ws.frame('message')).content, 'last words', 'the message first');
    const event = await ws.closed();
    assertEqual([event.code, event.reason], [1008, 'bye'], 'then the close');
}));

test('the wire code of a caught GLib.Error', () => {
    const hub = Chat.Hub.new();
    const message = Chat.Message.new(Chat.MessageType.MESSAGE);
    message.content = 'anyone there?';
    const e = assertThrowsChatError(() => hub.send_to_user(99, message), Chat.Error.USER_OFFLINE, 'offline');
    assertEqual(Chat.error_get_wire_code_for_error(e), 'user_offline', 'error_get_wire_code_for_error(e)');
    assertEqual(Chat.Error.get_wire_code_for_error(e), 'user_offline', 'Error.get_wire_code_for_error(e)');
    assertEqual(Chat.Error.get_wire_code(e.code), 'user_offline', 'Error.get_wire_code(e.code)');
    let other = null;
    try {
        GLib.file_get_contents('/nonexistent/chathub');
    } catch (error) {
        other = error;
    }
    assert(other instanceof GLib.Error, 'a GLib file error');
    assertEqual(Chat.error_get_wire_code_for_error(other), 'failed', 'another domain');
});

// needs the branch structure (ChatServer checks its construct properties): until then
// listen() succeeds and the first authenticated client crashes the process
test('Chat.Server() without hub or verifier: listen() throws a GLib.Error', () => {
    const hub = Chat.Hub.new();
    const verifier = Chat.TokenVerifier.new(Chat.TokenAlgorithm.HS256, new GLib.Bytes(SECRET));
    for (const server of [new Chat.Server(), new Chat.Server({hub}), new Chat.Server({verifier})]) {
        let error = null;
        try {
            server.listen('127.0.0.1', 0);
        } catch (e) {
            error = e;
        }
        const what = `hub ${server.hub !== null}, verifier ${server.verifier !== null}`;
        assert(error instanceof GLib.Error, `${what}: listen() threw no GLib.Error`);
        assert(error.domain === Chat.error_quark() || error.domain === Gio.io_error_quark(),
            `${what}: domain ${error.domain}`);
        assertEqual(server.get_port(), 0, `${what}: not listening`);
    }
});

test('a verifier with several keys: kid picks one, replace_keys() swaps them all', () => {
    const hs256 = Chat.TokenAlgorithm.HS256;
    const next = new GLib.Bytes('the-next-secret-0123456789-0123456789-0123456789');
    const claims = new Json.Object();
    claims.set_int_member('user_id', 8);
    const tokenB = Chat.token_sign_with_key_id(hs256, next, 'b', claims);
    const verifier = new Chat.TokenVerifier();
    assertEqual(verifier.add_key('a', hs256, new GLib.Bytes(SECRET)), true, 'add_key()');
    const e = assertThrowsChatError(() => verifier.verify(tokenB), Chat.Error.INVALID_TOKEN, 'kid b');
    assert(e.message.includes('unknown key id'), `the reason: ${e.message}`);
    const staging = new Chat.TokenVerifier();
    staging.add_key('b', hs256, next);
    staging.add_key(null, hs256, new GLib.Bytes(SECRET));
    const notified = [];
    verifier.connect('notify::n-keys', () => notified.push(verifier.n_keys));
    verifier.replace_keys(staging);
    assertEqual(notified, [2], 'notify::n-keys');
    assert(verifier.has_key_id('b') && !verifier.has_key_id('a'), 'the ids after the swap');
    const [ok, userId] = verifier.verify(tokenB);
    assertEqual([ok, userId], [true, 8], 'verify() with key b');
    assertThrowsChatError(() => verifier.add_key('b', hs256, next), Chat.Error.INVALID_ARGUMENT,
        'a second key b');
    assertEqual(Chat.TOKEN_VERIFIER_MAX_KEYS, 8, 'TOKEN_VERIFIER_MAX_KEYS');
});

// a critical would abort the test (G_DEBUG=fatal-criticals)
test('a verifier without a key refuses every token', () => {
    const token = makeToken(5);
    for (const verifier of [new Chat.TokenVerifier(), new Chat.TokenVerifier({algorithm: Chat.TokenAlgorithm.RS256})]) {
        for (const presented of [token, '', null]) {
            const e = assertThrowsChatError(() => verifier.verify(presented), Chat.Error.INVALID_TOKEN,
                `algorithm ${verifier.algorithm}, token ${JSON.stringify(presented)}`);
            assert(e.message.includes('no key'), `the reason: ${e.message}`);
        }
    }
});

test('a refused token never registers a client', withFixture(async f => {
    let registered = 0;
    f.hub.connect('client-registered', () => registered++);
    const ws = new WsClient(f.url, 'not.a.token');
    f.clients.push(ws);
    const event = await ws.open();
    assertEqual([event.event, event.status], ['refused', 401], 'refused');
    assertEqual(registered, 0, 'no client-registered');
}));

runTests();
