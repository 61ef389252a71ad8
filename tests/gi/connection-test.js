// Chat.Connection from GJS against the real chathubd ($CHATHUBD): rooms and direct messages,
// recovery after a SIGKILL restart on the same SQLite file and port, room-reloaded after a
// memory store restarted, the backoff's bounds against a server that drops every attempt, and
// the token refresh. Each message must arrive once and in order. Prints TAP.
//
//   CHATHUBD=_build/src/daemon/chathubd GI_TYPELIB_PATH=_build/src/libchat \
//   LD_LIBRARY_PATH=_build/src/libchat gjs -m connection-test.js

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Json from 'gi://Json';
import Chat from 'gi://Chat?version=1.0';
import {AssertionError, assert, assertEqual, runTests, sleep, test, waitUntil} from './tap.js';

const SECRET = 'chathub-gjs-connection-secret-0123456789abcdef';

function now() {
    return Math.floor(Date.now() / 1000);
}

function makeToken(userId, lifetime = 3600) {
    const claims = new Json.Object();
    claims.set_int_member('user_id', userId);
    claims.set_int_member('iat', now());
    claims.set_int_member('exp', now() + lifetime);
    return Chat.token_sign(Chat.TokenAlgorithm.HS256, new GLib.Bytes(SECRET), claims);
}

// ---- chathubd ---------------------------------------------------------------------------

class Daemon {
    constructor(backend) {
        this.dir = GLib.dir_make_tmp('chathub-gjs-XXXXXX');
        this.config = GLib.build_filenamev([this.dir, 'chathubd.conf']);
        this.log = GLib.build_filenamev([this.dir, 'chathubd.log']);
        const secret = GLib.build_filenamev([this.dir, 'secret']);
        GLib.file_set_contents(secret, `${SECRET}\n`);
        GLib.file_set_contents(this.config, [
            '[server]', 'address=127.0.0.1',
            '[auth]', 'algorithm=HS256', `secret-file=${secret}`, 'leeway=0',
            '[limits]', 'upgrades-per-second=0', 'messages-per-second=0',
            '[store]', `backend=${backend}`, `path=${GLib.build_filenamev([this.dir, 'chathub.db'])}`,
        ].join('\n'));
        this.port = 0;
        this.proc = null;
    }

    async start() {
        const launcher = new Gio.SubprocessLauncher({flags: Gio.SubprocessFlags.STDOUT_SILENCE});
        launcher.set_stderr_file_path(this.log);
        this.proc = launcher.spawnv([GLib.getenv('CHATHUBD'), '--config', this.config,
            '--port', `${this.port}`]);
        this.exited = false;
        this.proc.wait_async(null, () => {
            this.exited = true;
        });
        const port = await waitUntil(() => {
            const [ok, bytes] = GLib.file_get_contents(this.log);
            const match = ok && new TextDecoder().decode(bytes).match(/ws:\/\/127\.0\.0\.1:(\d+)\/ws/);
            return match ? Number(match[1]) : 0;
        }, 'chathubd to listen');
        this.port = port;
        return this;
    }

    async stop(signum) {
        if (this.proc === null)
            return;
        this.proc.send_signal(signum);
        await waitUntil(() => this.exited, 'chathubd to exit');
        this.proc = null;
    }

    uri() {
        return `ws://127.0.0.1:${this.port}/ws`;
    }

    async cleanup() {
        await this.stop(15);
        for (const name of ['chathubd.conf', 'chathubd.log', 'secret', 'chathub.db',
            'chathub.db-wal', 'chathub.db-shm'])
            GLib.unlink(GLib.build_filenamev([this.dir, name]));
        GLib.rmdir(this.dir);
    }
}

// ---- a connection and what it saw -------------------------------------------------------

class Peer {
    constructor(uri, userId, lifetime = 3600) {
        this.userId = userId;
        this.conn = Chat.Connection.new(uri, makeToken(userId, lifetime));
        this.conn.backoff_min = 20;
        this.conn.backoff_max = 200;
        this.room = [];
        this.dms = [];
        this.reloads = [];
        this.recovered = [];
        this.closes = [];
        this.joinedSelf = 0;
        this.expiring = 0;
        this.newToken = null;
        this.conn.connect('message', (c, message) => {
            if (message.get_room_id() !== 0) {
                assert(message.get_offset() > 0, 'a room message has its offset');
                this.room.push(message.get_content());
            } else {
                this.dms.push([message.get_from(), message.get_to(), message.get_content()]);
            }
        });
        this.conn.connect('joined', (c, roomId, user) => {
            if (user === userId)
                this.joinedSelf++;
        });
        this.conn.connect('recovered', (c, roomId) => this.recovered.push(roomId));
        this.conn.connect('room-reloaded', (c, roomId, epoch, messages) => {
            assert(epoch.length > 0, 'an epoch');
            this.reloads.push([roomId, messages.map(m => m.get_content())]);
        });
        this.conn.connect('closed', (c, code, reason, final) => this.closes.push([code, reason, final]));
        this.conn.connect('token-expiring', c => {
            this.expiring++;
            if (this.newToken !== null)
                c.set_token(this.newToken);
        });
    }

    get connected() {
        return this.conn.state === Chat.ConnectionState.CONNECTED;
    }

    async start(room) {
        if (room)
            this.conn.join(room);
        assert(this.conn.open(), 'open');
        await waitUntil(() => this.connected, 'connected');
        if (room)
            await waitUntil(() => this.joinedSelf > 0, 'the join acknowledged');
        return this;
    }

    async waitRoom(expected) {
        await waitUntil(() => this.room.length >= expected.length, `room messages ${expected}`);
        assertEqual(this.room, expected, 'room messages');
    }
}

async function withDaemon(backend, fn) {
    const daemon = await new Daemon(backend).start();
    const peers = [];
    try {
        await fn(daemon, peers);
    } finally {
        for (const peer of peers)
            peer.conn.close();
        await daemon.cleanup();
    }
}

// ---- the tests ----------------------------------------------------------------------------

test('rooms and direct messages', () => withDaemon('sqlite', async (daemon, peers) => {
    const a = new Peer(daemon.uri(), 71);
    const b = new Peer(daemon.uri(), 72);
    peers.push(a, b);
    assertEqual(a.conn.state, Chat.ConnectionState.DISCONNECTED, 'initial state');
    assertEqual(a.conn.user_id, 71, 'user-id from the token');
    await a.start(3);
    await b.start(3);
    a.conn.send_to_room(3, 'hello');
    await b.waitRoom(['hello']);
    b.conn.send_to_room(3, 'hi');
    await a.waitRoom(['hello', 'hi']);
    a.conn.send_to_user(72, 'psst');
    await waitUntil(() => a.dms.length && b.dms.length, 'the DM and its echo');
    assertEqual(b.dms, [[71, 72, 'psst']], 'the DM');
    const history = await new Promise(resolve => a.conn.request_history_async(3, 0, 0, null,
        (c, res) => resolve(c.request_history_finish(res))));
    assertEqual(history.map(m => m.get_content()), ['hello', 'hi'], 'history');
    const users = await new Promise(resolve => a.conn.request_presence_async(3, null,
        (c, res) => resolve(c.request_presence_finish(res))));
    assertEqual(users, [71, 72], 'presence');
    a.conn.close();
    assertEqual(a.closes, [[1000, '', true]], 'the close');
}));

test('recovery after chathubd is killed and restarted', () => withDaemon('sqlite', async (daemon, peers) => {
    const a = new Peer(daemon.uri(), 81);
    const b = new Peer(daemon.uri(), 82);
    peers.push(a, b);
    await a.start(4);
    await b.start(4);
    a.conn.send_to_room(4, 'before');
    await b.waitRoom(['before']);
    await daemon.stop(9);
    await waitUntil(() => !a.connected && !b.connected, 'both to notice');
    await daemon.start();
    await waitUntil(() => a.connected && a.recovered.length, 'a back and recovered');
    a.conn.send_to_room(4, 'after');
    await a.waitRoom(['before', 'after']);
    await b.waitRoom(['before', 'after']);
    await waitUntil(() => b.recovered.length, 'b recovered');
    assertEqual([a.closes[0][0], a.closes[0][2]], [1006, false], 'a dropped connection');
    assertEqual(a.reloads.concat(b.reloads), [], 'no reload');
}));

test('room-reloaded after a memory store restarted', () => withDaemon('memory', async (daemon, peers) => {
    const a = new Peer(daemon.uri(), 91);
    const b = new Peer(daemon.uri(), 92);
    peers.push(a, b);
    await a.start(5);
    await b.start(5);
    a.conn.send_to_room(5, 'old');
    await b.waitRoom(['old']);
    await daemon.stop(15);
    await daemon.start();
    await waitUntil(() => a.reloads.length && b.reloads.length, 'both reloaded');
    assertEqual(a.reloads, [[5, []]], 'a reloaded an empty room');
    a.conn.send_to_room(5, 'new');
    await a.waitRoom(['old', 'new']);
    await b.waitRoom(['old', 'new']);
    assertEqual(a.recovered.concat(b.recovered), [], 'nothing recovered');
}));

test('backoff stays within its bounds', async () => {
    // a server that accepts and drops every connection: each attempt fails at once
    const service = new Gio.SocketService();
    const port = service.add_any_inet_port(null);
    const attempts = [];
    service.connect('incoming', (s, connection) => {
        attempts.push(GLib.get_monotonic_time());
        connection.close(null);
        return true;
    });
    service.start();
    const peer = new Peer(`ws://127.0.0.1:${port}/ws`, 99);
    peer.conn.backoff_min = 10;
    peer.conn.backoff_max = 150;
    try {
        assert(peer.conn.open(), 'open');
        await waitUntil(() => attempts.length >= 12, '12 attempts');
        const gaps = attempts.slice(1).map((t, i) => t - attempts[i]);
        // at most 150 ms of wait; accepting, closing and noticing cost the rest
        assert(Math.max(...gaps) <= 300000, `gaps within the bound: ${gaps}`);
        assertEqual(peer.conn.state, Chat.ConnectionState.RECONNECTING, 'still trying');
        assertEqual(peer.closes, [], 'failed attempts are not closes');
    } finally {
        peer.conn.close();
        service.stop();
        service.close();
    }
});

test('token refresh, and a final 4001 without one', () => withDaemon('sqlite', async (daemon, peers) => {
    const a = new Peer(daemon.uri(), 101, 3);
    const b = new Peer(daemon.uri(), 102, 3);
    peers.push(a, b);
    a.newToken = makeToken(101);
    await a.start(6);
    await b.start(6);
    await waitUntil(() => b.closes.length, 'b closed');
    assertEqual(b.closes, [[4001, 'token expired', true]], 'a final 4001');
    await sleep(1500);
    assertEqual(b.conn.state, Chat.ConnectionState.DISCONNECTED, 'b stays disconnected');
    assert(a.connected, 'a outlived its first token');
    assertEqual([a.expiring, a.closes], [1, []], 'a asked once, never closed');
    a.conn.send_to_room(6, 'still here');
    await a.waitRoom(['still here']);
}));

test('tls-database: the system\'s by default, set, read back, cleared', () => {
    const peer = new Peer('wss://127.0.0.1:1/ws', 98);
    assertEqual(peer.conn.tls_database, null, 'the system\'s by default');
    const database = Gio.TlsBackend.get_default().get_default_database();
    let notified = 0;
    peer.conn.connect('notify::tls-database', () => notified++);
    peer.conn.set_tls_database(database);
    assert(peer.conn.get_tls_database() === database, 'read back');
    peer.conn.tls_database = null;
    assertEqual(peer.conn.get_tls_database(), null, 'cleared');
    assertEqual(notified, 2, 'notified on each change');
});

runTests();
