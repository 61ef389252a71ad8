// chathub - real-time chat hub
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// data/web/chathub-client.js under Node.js against a real chathubd (each case starts its own,
// on a free port): refused requests finish, a refused join is forgotten, a refused reload lets
// live messages through, a refused refresh is no new token, a token valid for longer than
// setTimeout's range does not flood getToken, a final close sets the state before `close`,
// the `online` listener is removed on close, an attempt that never opens is given up, and a
// missing WebSocket is refused at once.
//
// Node.js 22 has a WebSocket; Node.js 20 needs --experimental-websocket (tests/meson.build
// passes it). Environment: CHATHUBD.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { ChatClient } = await import(path.join(here, '..', '..', 'data', 'web', 'chathub-client.js'));
const WAIT_MS = 15000;
const SECRET = 'client-test-secret-0123456789abcdef';

let failures = 0;
let step = 0;
function ok(condition, what, detail = '') {
	step++;
	console.log(`${condition ? 'ok' : 'not ok'} ${step} - ${what}`);
	if (!condition) {
		failures++;
		if (detail)
			console.log(`  # ${String(detail).replace(/\n/g, '\n  # ')}`);
	}
}

function token(claims, lifetime = 3600) {
	const now = Math.floor(Date.now() / 1000);
	const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
	const head = b64({ alg: 'HS256', typ: 'JWT' });
	const body = b64({ iat: now, exp: now + lifetime, ...claims });
	const signature = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
	return `${head}.${body}.${signature}`;
}

function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.on('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
	});
}

async function until(condition, what, timeout = WAIT_MS) {
	const deadline = Date.now() + timeout;
	for (;;) {
		const value = await condition();
		if (value)
			return value;
		if (Date.now() > deadline)
			throw new Error(`timed out waiting for ${what}`);
		await new Promise((resolve) => setTimeout(resolve, 20));
	}
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Daemon {
	constructor(dir, port, { backend = 'sqlite', limits = [] } = {}) {
		this.dir = dir;
		this.port = port;
		this.log = '';
		fs.writeFileSync(path.join(dir, 'secret'), SECRET);
		this.config = path.join(dir, 'chathub.conf');
		fs.writeFileSync(this.config, [
			'[server]', 'address=127.0.0.1', `port=${port}`, 'web=false',
			'[auth]', `secret-file=${path.join(dir, 'secret')}`, 'leeway=0',
			'[limits]', 'upgrades-per-second=0', ...limits,
			'[store]', `backend=${backend}`, `path=${path.join(dir, 'chathub.db')}`, '',
		].join('\n'));
		this.url = `ws://127.0.0.1:${port}/ws`;
	}

	static async create(options) {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chathub-client-'));
		const daemon = new Daemon(dir, await freePort(), options);
		await daemon.start();
		return daemon;
	}

	start() {
		const mark = this.log.length;
		this.child = spawn(process.env.CHATHUBD, ['--config', this.config],
			{ stdio: ['ignore', 'ignore', 'pipe'] });
		this.child.stderr.setEncoding('utf8');
		this.child.stderr.on('data', (text) => { this.log += text; });
		this.exited = new Promise((resolve) => this.child.on('exit', resolve));
		return until(() => this.log.indexOf('listening on', mark) >= 0, 'chathubd listening');
	}

	async stop(signal = 'SIGTERM') {
		if (this.child.exitCode === null && this.child.signalCode === null) {
			this.child.kill(signal);
			await this.exited;
		}
	}

	async destroy() {
		await this.stop();
		fs.rmSync(this.dir, { recursive: true, force: true });
	}
}

// A TCP proxy in front of the daemon that can stop listening (refused connections): the
// client then sees quick failures while the daemon restarts behind it.
async function proxy(target) {
	const sockets = new Set();
	const p = { sockets };
	p.server = net.createServer((socket) => {
		const upstream = net.connect(target, '127.0.0.1');
		for (const [a, b] of [[socket, upstream], [upstream, socket]]) {
			sockets.add(a);
			a.on('error', () => b.destroy());
			a.on('close', () => { sockets.delete(a); b.destroy(); });
			a.pipe(b);
		}
	});
	await new Promise((resolve) => p.server.listen(0, '127.0.0.1', resolve));
	const port = p.server.address().port;
	p.url = `ws://127.0.0.1:${port}/ws`;
	p.refuse = () => new Promise((resolve) => {
		p.server.close(resolve);
		for (const socket of sockets)
			socket.destroy();
	});
	p.accept = () => new Promise((resolve) => p.server.listen(port, '127.0.0.1', resolve));
	p.close = () => p.refuse();
	return p;
}

// A client and what it reported.
function client(options) {
	const c = new ChatClient({ backoffMin: 20, backoffMax: 200, ...options });
	c.log = { errors: [], closes: [], states: [], messages: [] };
	c.addEventListener('error', (e) => c.log.errors.push(e.detail.code));
	c.addEventListener('close', (e) => c.log.closes.push({ ...e.detail, state: c.state }));
	c.addEventListener('state', (e) => c.log.states.push(e.detail.state));
	c.addEventListener('message', (e) => c.log.messages.push(e.detail.content));
	return c;
}

async function joined(c, roomId) {
	let acked = false;
	const listener = (e) => { if (e.detail.ack && e.detail.roomId === roomId) acked = true; };
	c.addEventListener('join', listener);
	c.join(roomId);
	await until(() => acked, `the join of ${roomId}`);
	c.removeEventListener('join', listener);
}

const outcome = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

const cases = {
	// a token for room 1 only, and a rate limit of 4 frames at once (1 more a second)
	async 'refused requests finish; a refused join is forgotten'() {
		const daemon = await Daemon.create({ limits: ['messages-per-second=1', 'message-burst=4'] });
		const c = client({ url: daemon.url, token: token({ user_id: 1, rooms: [1] }) });
		try {
			c.connect();
			await joined(c, 1); // join, sync: 2 frames
			c.join(3); // 3: forbidden
			const history = outcome(c.history(1)); // 4: answered
			const presence = outcome(c.presence(1)); // 5: rate_limited
			const [h, p] = await Promise.race([Promise.all([history, presence]), sleep(5000).then(() => [])]);
			ok(h && Array.isArray(h.value), 'the history within the limit is answered', JSON.stringify(h));
			ok(p?.error?.code === 'rate_limited', 'the refused presence rejects with the server\'s code',
				p?.error?.message ?? 'never settled');
			ok(JSON.stringify(c.log.errors) === '["forbidden"]',
				'the refused join is an error event, the refused request is not', JSON.stringify(c.log.errors));
			ok(JSON.stringify(c.rooms) === '[1]', 'the refused room is no longer joined', JSON.stringify(c.rooms));
		} finally {
			c.close();
			await daemon.destroy();
		}
	},

	// a memory store restarted: both rooms are reloaded, and the rate limit (3 frames: two
	// rejoins and the sync) refuses at least the second reload's history
	async 'a refused reload does not hold live messages'() {
		const daemon = await Daemon.create({
			backend: 'memory', limits: ['messages-per-second=1', 'message-burst=3'],
		});
		const way = await proxy(daemon.port);
		const b = client({ url: way.url, token: token({ user_id: 2 }) });
		const a = client({ url: daemon.url, token: token({ user_id: 1 }) });
		try {
			b.connect();
			await joined(b, 30);
			await joined(b, 31);
			await way.refuse();
			await until(() => b.state === 'reconnecting', 'reconnecting');
			await daemon.stop();
			await daemon.start();
			await way.accept();
			await until(() => b.log.errors.includes('rate_limited'), 'the refused reload');
			a.connect();
			await joined(a, 31);
			a.sendToRoom(31, 'live');
			await until(() => b.log.messages.includes('live'), 'the live message').catch(() => {});
			ok(b.log.messages.includes('live'), 'the live message after a refused reload arrives',
				JSON.stringify(b.log.messages));
		} finally {
			a.close();
			b.close();
			await way.close();
			await daemon.destroy();
		}
	},

	// the token lives 3 s; the new one getToken gives has a bad signature: refused
	async 'a refused refresh is no new token'() {
		const daemon = await Daemon.create();
		const forged = () => `${token({ user_id: 1 }).slice(0, -4)}AAAA`;
		const c = client({ url: daemon.url, token: token({ user_id: 1 }, 3), getToken: forged });
		try {
			c.connect();
			await until(() => c.log.errors.includes('invalid_token'), 'the refused refresh');
			await until(() => c.state === 'disconnected', 'the end', 10000).catch(() => {});
			await sleep(300);
			ok(JSON.stringify(c.log.closes.map((close) => [close.code, close.final, close.state])) ===
				'[[4001,true,"disconnected"]]', '4001 is final at once, after the state changed',
				JSON.stringify(c.log.closes));
		} finally {
			c.close();
			await daemon.destroy();
		}
	},

	// 80 % of 60 days is beyond setTimeout's 2^31 - 1 ms (24.8 days)
	async 'a token valid for 60 days does not flood getToken'() {
		const daemon = await Daemon.create();
		let calls = 0;
		const long = () => token({ user_id: 1 }, 60 * 86400);
		const c = client({ url: daemon.url, token: long(), getToken: () => { calls++; return long(); } });
		try {
			c.connect();
			await until(() => c.state === 'connected', 'connected');
			await sleep(1000);
			ok(calls === 0, 'getToken is not called 48 days early', `${calls} calls`);
			ok(c.log.errors.length === 0, 'no error', JSON.stringify(c.log.errors));
		} finally {
			c.close();
			await daemon.destroy();
		}
	},

	async 'a final close: state first, then close; the online listener goes'() {
		const daemon = await Daemon.create();
		const listeners = new Set();
		globalThis.addEventListener = (type, listener) => type === 'online' && listeners.add(listener);
		globalThis.removeEventListener = (type, listener) => type === 'online' && listeners.delete(listener);
		try {
			const c = client({ url: daemon.url, token: token({ user_id: 1 }) });
			ok(listeners.size === 0, 'a client not connected listens to nothing');
			c.connect();
			await until(() => c.state === 'connected', 'connected');
			ok(listeners.size === 1, 'a connected client listens for `online`');
			c.close();
			ok(c.log.closes.length === 1 && c.log.closes[0].final && c.log.closes[0].state === 'disconnected',
				'`close` comes after the state is disconnected', JSON.stringify(c.log.closes));
			ok(listeners.size === 0, 'close() removes the `online` listener', `${listeners.size} left`);
			// a final close by the server does the same
			const d = client({ url: daemon.url, token: token({ user_id: 2 }) });
			d.connect();
			await until(() => d.state === 'connected', 'connected');
			await daemon.stop('SIGTERM'); // 1001: not final
			await until(() => d.state === 'reconnecting', 'reconnecting');
			ok(listeners.size === 1, 'a reconnecting client still listens');
			d.close();
			ok(listeners.size === 0, 'and stops on close()');
		} finally {
			delete globalThis.addEventListener;
			delete globalThis.removeEventListener;
			await daemon.destroy();
		}
	},

	async 'an attempt that never opens is given up after connectTimeout'() {
		// accepts the TCP connection and never answers the upgrade
		const sockets = [];
		const silent = net.createServer((socket) => sockets.push(socket));
		await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
		const c = client({ url: `ws://127.0.0.1:${silent.address().port}/ws`,
			token: token({ user_id: 7 }), connectTimeout: 300 });
		try {
			c.connect();
			await until(() => c.log.closes.length >= 2, 'two attempts given up', 10000);
			ok(c.log.closes.every((e) => e.code === 1006 && e.reason === 'no answer' && !e.final),
				'each one a non-final 1006 "no answer"', JSON.stringify(c.log.closes));
			ok(c.state === 'reconnecting' || c.state === 'connecting',
				'and it keeps trying', c.state);
		} finally {
			c.close();
			for (const socket of sockets)
				socket.destroy();
			silent.close();
		}
	},

	async 'without a WebSocket the constructor says what to do'() {
		const saved = globalThis.WebSocket;
		delete globalThis.WebSocket;
		try {
			let error = null;
			try {
				new ChatClient({ url: 'ws://127.0.0.1:1/ws', token: token({ user_id: 1 }) });
			} catch (e) {
				error = e;
			}
			ok(error instanceof TypeError && /--experimental-websocket/.test(error.message),
				'a TypeError that names --experimental-websocket', String(error));
		} finally {
			globalThis.WebSocket = saved;
		}
	},
};

for (const [name, run] of Object.entries(cases)) {
	console.log(`# ${name}`);
	try {
		let timer;
		await Promise.race([run(), new Promise((resolve, reject) => {
			timer = setTimeout(() => reject(new Error('the case did not end within 60 s')), 60000);
		})]).finally(() => clearTimeout(timer));
	} catch (error) {
		ok(false, `${name}: ran to its end`, error.stack);
	}
}
console.log(`1..${step}`);
process.exit(failures ? 1 : 0);
