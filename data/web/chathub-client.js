// chathub - real-time chat hub
// SPDX-License-Identifier: LGPL-2.1-or-later
/**
 * chathub-client.js: a chathub client for the browser (a plain ES module, no dependencies).
 *
 *   import { ChatClient } from './chathub-client.js';
 *   const client = new ChatClient({ url: 'wss://chat.example.com/ws', token });
 *   client.addEventListener('message', (e) => show(e.detail));
 *   client.addEventListener('reload', (e) => e.detail.dms || replaceRoom(e.detail));
 *   client.join(3);
 *   client.connect();
 *   client.sendToRoom(3, 'hello');
 *
 * It speaks chathub's protocol v1.1 (docs/protocol.md) and keeps a conversation going through
 * dropped connections and server restarts, by the rules every chathub client follows
 * (docs/clients.md):
 *
 * - States (`client.state`, event `state`): `disconnected` -> `connecting` -> `connected`,
 *   and `reconnecting` after a close that is not final.
 * - Final closes (no reconnect; `close` with `final: true`, state `disconnected`): close(),
 *   1000, 1003, 1009, 1008 with any reason but `slow consumer`, 4001 `token expired` unless
 *   setToken() gave a new token meanwhile (then it reconnects at once with it). Every other
 *   close reconnects: a network error or 1006, 1001, 1008 `slow consumer`, 1011, 1012, 1013,
 *   4002. Browsers hide the HTTP status of a refused upgrade (it looks like 1006), so a refused
 *   handshake is retried too, except when the token's `exp` has passed: then the client asks
 *   for a new one (getToken / `tokenexpiring`) and, without one, stops.
 * - Backoff with full jitter: the n-th consecutive failed attempt waits a random time in
 *   [0, min(backoffMax, backoffMin * 2^n)] ms (defaults 500 and 30000); the count restarts
 *   once a connection has stayed up for 10 s.
 * - Recovery: it remembers each joined room's epoch and last delivered offset, and its user's
 *   direct-message stream position; on every (re)connect it rejoins each room with
 *   `since`/`epoch` and sends `sync`. Duplicates (room messages at or below the room's offset,
 *   direct messages whose id was delivered) are dropped, so each message reaches `message`
 *   once and in order. When the server cannot recover a room (`recovered: false`) the client
 *   fetches its newest 50 messages and fires `reload` {roomId, epoch, messages}: replace that
 *   room's view. For direct messages it fires `reload` {dms: true}.
 * - Token expiry: at 80 % of the token's lifetime (or 30 s before `exp`, if earlier) it fires
 *   `tokenexpiring` and calls the `getToken` option if given; setToken() sends `refresh` while
 *   connected, and the newest token is the one used on reconnect.
 *   In a browser, the `online` event (the network is back) ends a backoff wait at once.
 * - Errors: an error frame has no request id, but the server answers a connection's frames in
 *   order (protocol §3.2), so the client remembers what it sent until answered and takes an
 *   error as the answer to the oldest frame not yet answered. history()/presence() reject with
 *   it (an Error with `code`, no `error` event); a join refused with `forbidden` or
 *   `limit_exceeded` is forgotten (gone from `rooms`, not joined again) before the `error`
 *   event; a refused reload lets the room's live messages go on without it; a refused refresh
 *   (`invalid_token`) is no new token (a 4001 that follows is final).
 * - A final close sets the state `disconnected` first, then fires `close` {final: true}.
 * - connect() adds a listener for the `online` event to globalThis (if it has
 *   addEventListener); every final close, close() included, removes it.
 * - Messages sent while not connected (after connect()) wait, at most 100, and go out right
 *   after the rejoins on the next connection. A message sent just before a connection drops
 *   may be lost: its echo (the server's "stored") is the proof of delivery.
 *
 * - An attempt that has not opened within connectTimeout ms (default 15000) is given up and
 *   counts as a failed one (a `close` {code: 1006, reason: 'no answer', final: false}).
 *
 * new ChatClient({url, token, getToken?, backoffMin?, backoffMax?, connectTimeout?, WebSocket?})
 *   url: the ws: or wss: URL of the endpoint (the token is added as `access_token`);
 *   getToken: optional async () => new token; WebSocket: an implementation outside browsers
 *   (Node.js 22 has one built in, Node.js 20 with --experimental-websocket; without one the
 *   constructor throws a TypeError).
 * Properties: state, userId (from the token), rooms (array of joined room ids).
 * Methods: connect(), close(), join(roomId), leave(roomId), sendToRoom(roomId, text),
 *   sendToUser(userId, text), history(roomId, {before, limit}) -> Promise<message[]>,
 *   presence(roomId) -> Promise<userId[]>, setToken(token).
 * Events (CustomEvent, data in `detail`):
 *   state {state}; message (the frame: id, offset, from, to | room_id, content, data,
 *   timestamp); join {roomId, userId, ack, offset, epoch, recovered} (ack: this connection's
 *   own acknowledgement); leave {roomId, userId}; error {code, content}; close {code, reason,
 *   final}; reload {roomId, epoch, messages} | {dms: true}; recovered {roomId} | {dms: true};
 *   tokenexpiring {}.
 */

const RESET_AFTER_MS = 10000;
const RELOAD_LIMIT = 50;
const MAX_QUEUED = 100;
const REMEMBERED_DM_IDS = 500;
// setTimeout() takes at most 2^31 - 1 ms (24.8 days); a longer delay fires at once
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Reads a JWT's claims without verifying it (the server does that). */
export function decodeToken(token) {
	try {
		const part = String(token).split('.')[1];
		const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
		const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
		return JSON.parse(new TextDecoder().decode(bytes));
	} catch {
		return {};
	}
}

function userIdOf(claims) {
	const id = Number(claims.user_id ?? claims.sub);
	return Number.isSafeInteger(id) && id > 0 ? id : null;
}

export class ChatClient extends EventTarget {
	#url;
	#token;
	#userId;
	#tokenInUse = null; // the token of the open connection (or of its last accepted refresh)
	#tokenChanged = false; // setToken() since #tokenInUse was set
	#getToken;
	#backoffMin;
	#backoffMax;
	#WebSocket;
	#ws = null;
	#state = 'disconnected';
	#attempt = 0;
	#openedAt = 0;
	#retryTimer = null;
	#expiryTimer = null;
	#connectTimeout;
	#connectTimer = null;
	// room id -> {epoch, offset, acked, reloading, buffer}; only rooms the application joined
	#rooms = new Map();
	#dm = { epoch: null, offset: 0, pending: null };
	#dmIds = new Set();
	#queue = [];
	// the frames sent on this connection and not yet answered, in the order sent:
	// {kind, target, toUser, token?, resolve?, reject?}; see #receiveError
	#sent = [];
	#refusedToken = null; // the last token the server refused as a refresh
	#onOnline = null;

	constructor({ url, token, getToken, backoffMin = 500, backoffMax = 30000, connectTimeout = 15000,
		WebSocket } = {}) {
		super();
		if (!url)
			throw new TypeError('ChatClient: url is required');
		this.#url = url;
		this.#token = token ?? null;
		this.#userId = userIdOf(decodeToken(this.#token));
		this.#getToken = getToken ?? null;
		this.#backoffMin = backoffMin;
		this.#backoffMax = backoffMax;
		this.#connectTimeout = connectTimeout;
		this.#WebSocket = WebSocket ?? globalThis.WebSocket;
		if (typeof this.#WebSocket !== 'function')
			throw new TypeError('ChatClient: no WebSocket implementation: pass the WebSocket ' +
				'option (Node.js 20 has one with --experimental-websocket, 22 and later by default)');
	}

	get state() {
		return this.#state;
	}

	get userId() {
		return this.#userId;
	}

	get rooms() {
		return [...this.#rooms.keys()];
	}

	connect() {
		if (this.#state !== 'disconnected')
			return;
		// a browser that comes back online: no reason to sit out the rest of the backoff.
		// Added here and removed by every final close, so a closed client is not kept alive.
		if (!this.#onOnline && globalThis.addEventListener) {
			this.#onOnline = () => {
				if (this.#state === 'reconnecting' && this.#retryTimer !== null) {
					clearTimeout(this.#retryTimer);
					this.#open();
				}
			};
			globalThis.addEventListener('online', this.#onOnline);
		}
		this.#attempt = 0;
		this.#setState('connecting');
		this.#open();
	}

	close() {
		clearTimeout(this.#retryTimer);
		clearTimeout(this.#expiryTimer);
		clearTimeout(this.#connectTimer);
		this.#retryTimer = this.#expiryTimer = this.#connectTimer = null;
		const ws = this.#ws;
		this.#ws = null;
		this.#queue = [];
		if (ws) {
			ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
			ws.close(1000);
		}
		this.#failPending('closed');
		if (this.#state !== 'disconnected')
			this.#finalClose(1000, '');
	}

	join(roomId) {
		roomId = Number(roomId);
		if (this.#rooms.has(roomId))
			return;
		this.#rooms.set(roomId, { epoch: null, offset: 0, acked: false, reloading: false, buffer: null });
		this.#sendNow({ type: 'join', room_id: roomId });
	}

	leave(roomId) {
		roomId = Number(roomId);
		if (!this.#rooms.delete(roomId))
			return;
		this.#sendNow({ type: 'leave', room_id: roomId });
	}

	sendToRoom(roomId, text) {
		this.#sendOrQueue({ type: 'message', room_id: Number(roomId), content: String(text) });
	}

	sendToUser(userId, text) {
		this.#sendOrQueue({ type: 'message', to: Number(userId), content: String(text) });
	}

	/** The room's stored messages before offset `before` (default: the newest), oldest first. */
	history(roomId, { before, limit } = {}) {
		roomId = Number(roomId);
		const frame = { type: 'history', room_id: roomId };
		if (before !== undefined)
			frame.before = before;
		if (limit !== undefined)
			frame.limit = limit;
		return this.#request(roomId, frame).then((answer) => answer.messages);
	}

	/** The users with a connection in the room, ascending. */
	presence(roomId) {
		roomId = Number(roomId);
		return this.#request(roomId, { type: 'presence', room_id: roomId }).then(
			(answer) => answer.users);
	}

	setToken(token) {
		this.#token = token;
		this.#userId = userIdOf(decodeToken(token));
		this.#tokenChanged = true;
		if (this.#state === 'connected')
			this.#send({ type: 'refresh', token }).token = token;
	}

	// ---- connection ----

	#setState(state) {
		if (this.#state === state)
			return;
		this.#state = state;
		this.#emit('state', { state });
	}

	#emit(type, detail) {
		this.dispatchEvent(new CustomEvent(type, { detail }));
	}

	// The end: state `disconnected` first, then `close`, so that what a `close` handler shows
	// (why) is not overwritten by what a `state` handler shows.
	#finalClose(code, reason) {
		if (this.#onOnline) {
			globalThis.removeEventListener?.('online', this.#onOnline);
			this.#onOnline = null;
		}
		this.#setState('disconnected');
		this.#emit('close', { code, reason, final: true });
	}

	#open() {
		this.#retryTimer = null;
		const claims = decodeToken(this.#token);
		// an expired token will not work again: the server would refuse it with 401, which a
		// browser cannot see, so ask for a new one instead of retrying forever
		if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
			this.#needToken();
			return;
		}
		const url = new URL(this.#url);
		url.searchParams.set('access_token', this.#token ?? '');
		const ws = new this.#WebSocket(url.href);
		const usedToken = this.#token;
		let opened = false;
		this.#ws = ws;
		// an attempt that neither opens nor fails (a server that accepts the TCP connection and
		// never answers; Node.js 20 then fires nothing at all) counts as a failed one
		this.#connectTimer = setTimeout(() => {
			this.#connectTimer = null;
			if (this.#ws !== ws || opened)
				return;
			ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
			try {
				ws.close();
			} catch {
				// closing a socket still connecting may throw in some implementations
			}
			this.#closed(1006, 'no answer', false);
		}, this.#connectTimeout);
		ws.onopen = () => {
			clearTimeout(this.#connectTimer);
			this.#connectTimer = null;
			opened = true;
			this.#openedAt = Date.now();
			this.#tokenInUse = usedToken;
			this.#tokenChanged = this.#token !== usedToken;
			this.#setState('connected');
			this.#recover();
			this.#scheduleExpiry();
		};
		ws.onmessage = (event) => this.#receive(event.data);
		ws.onclose = (event) => this.#closed(event.code, event.reason, opened);
		// a browser fires close right after error; Node.js 20's WebSocket fires only error when
		// it cannot connect, so a close that does not follow is made up here
		ws.onerror = () => setTimeout(() => {
			if (this.#ws === ws) {
				ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
				this.#closed(1006, '', opened);
			}
		}, 0);
	}

	// What to do when a token expired before connecting: the application's new token, or stop.
	#needToken() {
		this.#emit('tokenexpiring', {});
		const stop = () => this.#finalClose(4001, 'token expired');
		if (!this.#getToken) {
			stop();
			return;
		}
		Promise.resolve(this.#getToken()).then((token) => {
			if (this.#state === 'disconnected')
				return;
			if (!token) {
				stop();
				return;
			}
			this.#token = token;
			this.#userId = userIdOf(decodeToken(token));
			this.#open();
		}, stop);
	}

	#closed(code, reason, opened) {
		this.#ws = null;
		clearTimeout(this.#connectTimer);
		this.#connectTimer = null;
		clearTimeout(this.#expiryTimer);
		this.#expiryTimer = null;
		this.#failPending('connection closed');
		for (const room of this.#rooms.values())
			room.buffer = null;
		this.#dm.pending = null;
		// a token the server refused as a refresh is no new one
		const tokenWaiting = this.#tokenChanged && this.#token !== this.#tokenInUse &&
			this.#token !== this.#refusedToken;
		let final = code === 1000 || code === 1003 || code === 1009 ||
			(code === 1008 && reason !== 'slow consumer') || (code === 4001 && !tokenWaiting);
		if (this.#openedAt && Date.now() - this.#openedAt >= RESET_AFTER_MS)
			this.#attempt = 0;
		this.#openedAt = 0;
		if (final) {
			this.#queue = [];
			this.#finalClose(code, reason);
			return;
		}
		this.#emit('close', { code, reason, final });
		this.#setState('reconnecting');
		if (code === 4001) {
			this.#open(); // a new token is waiting: at once, attempt count unchanged
			return;
		}
		const ceiling = Math.min(this.#backoffMax, this.#backoffMin * 2 ** this.#attempt);
		this.#attempt++;
		this.#retryTimer = setTimeout(() => this.#open(), Math.random() * ceiling);
	}

	// On every connection: rejoin with since/epoch, sync, then what was queued.
	#recover() {
		for (const [roomId, room] of this.#rooms) {
			room.acked = false;
			if (room.epoch !== null && !room.reloading)
				this.#send({ type: 'join', room_id: roomId, since: room.offset, epoch: room.epoch });
			else
				this.#send({ type: 'join', room_id: roomId });
		}
		if (this.#dm.epoch !== null) {
			this.#dm.pending = []; // offline deliveries wait for the sync's answer
			this.#send({ type: 'sync', since: this.#dm.offset, epoch: this.#dm.epoch });
		} else {
			this.#send({ type: 'sync' });
		}
		const queue = this.#queue;
		this.#queue = [];
		for (const frame of queue)
			this.#send(frame);
	}

	// Sends a frame and remembers it until its answer comes; returns what is remembered.
	#send(frame) {
		this.#ws.send(JSON.stringify(frame));
		const entry = {
			kind: frame.type, target: frame.room_id ?? frame.to ?? 0, toUser: frame.to !== undefined,
		};
		this.#sent.push(entry);
		return entry;
	}

	#sendNow(frame) {
		if (this.#state === 'connected')
			this.#send(frame);
	}

	#sendOrQueue(frame) {
		if (this.#state === 'connected')
			this.#send(frame);
		else if (this.#state === 'disconnected')
			throw new Error('ChatClient: not connected');
		else if (this.#queue.length < MAX_QUEUED)
			this.#queue.push(frame);
		else
			throw new Error('ChatClient: too many messages waiting for the connection');
	}

	// A history or presence: resolved with the answer, rejected with an Error whose `code` is
	// the server's (`not_member`, `rate_limited`, …) or, on a close, `closed`.
	#request(roomId, frame) {
		if (this.#state !== 'connected')
			return Promise.reject(new Error('ChatClient: not connected'));
		const room = this.#rooms.get(roomId);
		if (!room || !room.acked)
			return Promise.reject(new Error(`ChatClient: room ${roomId} is not joined`));
		return new Promise((resolve, reject) => {
			Object.assign(this.#send(frame), { resolve, reject });
		});
	}

	#failPending(why) {
		const sent = this.#sent;
		this.#sent = [];
		for (const entry of sent)
			entry.reject?.(Object.assign(new Error(`ChatClient: ${why}`), { code: 'closed' }));
	}

	// An answer that can only be to a frame of `kind` for `target` (an acknowledgement, a
	// history, presence, sync or refresh answer): the server answers in the order of the frames
	// (protocol §3.2), so every frame sent before that one was answered too.
	#takeAnswered(kind, target) {
		const index = this.#sent.findIndex((entry) => entry.kind === kind && entry.target === target);
		if (index < 0)
			return null;
		const earlier = this.#sent.splice(0, index + 1);
		const entry = earlier.pop();
		for (const unanswered of earlier)
			unanswered.reject?.(Object.assign(new Error('ChatClient: no answer'), { code: 'failed' }));
		return entry;
	}

	// A message or leave from this user: the answer to the oldest frame if it is the same
	// (another device of the user may send the same, so nothing older is assumed answered).
	#takeEcho(kind, target, toUser) {
		const entry = this.#sent[0];
		if (entry && entry.kind === kind && entry.target === target && entry.toUser === toUser)
			this.#sent.shift();
	}

	// ---- receiving ----

	#receive(text) {
		let frame;
		try {
			frame = JSON.parse(text);
		} catch {
			return;
		}
		const mine = frame.from !== undefined && frame.from === this.userId;
		switch (frame.type) {
		case 'message':
			if (mine)
				this.#takeEcho('message', frame.room_id ?? frame.to ?? 0, frame.to !== undefined);
			if (frame.room_id !== undefined)
				this.#roomMessage(frame);
			else if (frame.to !== undefined)
				this.#directMessage(frame);
			else
				this.#emit('message', frame);
			break;
		case 'join':
			this.#joinFrame(frame);
			break;
		case 'leave':
			if (mine)
				this.#takeEcho('leave', frame.room_id, false);
			this.#emit('leave', { roomId: frame.room_id, userId: frame.from });
			break;
		case 'history': {
			const request = this.#takeAnswered('history', frame.room_id);
			const room = this.#rooms.get(frame.room_id);
			if (room && room.epoch === null)
				room.epoch = frame.epoch;
			request?.resolve?.(frame);
			break;
		}
		case 'presence':
			this.#takeAnswered('presence', frame.room_id)?.resolve?.(frame);
			break;
		case 'sync':
			this.#takeAnswered('sync', 0);
			this.#syncAnswer(frame);
			break;
		case 'refresh': {
			const refresh = this.#takeAnswered('refresh', 0);
			if (refresh)
				this.#tokenInUse = refresh.token;
			this.#tokenChanged = this.#token !== this.#tokenInUse;
			this.#scheduleExpiry();
			break;
		}
		case 'error':
			this.#receiveError(frame);
			break;
		}
	}

	// An error has no request id: it answers the oldest frame not yet answered (protocol
	// §3.2). A history or presence promise is rejected with it (no `error` event); a join
	// refused with `forbidden` or `limit_exceeded` is forgotten (not in `rooms`, not joined again)
	// before the `error` event; a refused reload lets the room's held messages go on.
	#receiveError(frame) {
		const entry = this.#sent.shift();
		if (entry?.reject) {
			entry.reject(Object.assign(new Error(`ChatClient: ${frame.code}: ${frame.content ?? ''}`),
				{ code: frame.code, content: frame.content }));
			return;
		}
		switch (entry?.kind) {
		case 'join':
			if (frame.code === 'forbidden' || frame.code === 'limit_exceeded')
				this.#rooms.delete(entry.target);
			break;
		case 'history': // the connection's own reload
			this.#abandonReload(entry.target);
			break;
		case 'sync': {
			const waiting = this.#dm.pending ?? [];
			this.#dm.pending = null;
			for (const message of waiting)
				this.#directMessage(message);
			break;
		}
		case 'refresh':
			this.#refusedToken = entry.token; // the old token and its deadline stand
			break;
		}
		this.#emit('error', { code: frame.code, content: frame.content });
	}

	#roomMessage(frame) {
		const room = this.#rooms.get(frame.room_id);
		if (room) {
			if (room.buffer) {
				room.buffer.push(frame); // waits for the reload's history
				return;
			}
			if (typeof frame.offset === 'number') {
				if (frame.offset <= room.offset)
					return;
				room.offset = frame.offset;
			}
		}
		this.#emit('message', frame);
	}

	#directMessage(frame) {
		if (this.#dm.pending) {
			this.#dm.pending.push(frame);
			return;
		}
		if (this.#dmIds.has(frame.id))
			return;
		this.#dmIds.add(frame.id);
		if (this.#dmIds.size > REMEMBERED_DM_IDS)
			this.#dmIds.delete(this.#dmIds.values().next().value);
		if (typeof frame.offset === 'number' && frame.offset > this.#dm.offset)
			this.#dm.offset = frame.offset;
		this.#emit('message', frame);
	}

	#syncAnswer(frame) {
		const waiting = this.#dm.pending ?? [];
		this.#dm.pending = null;
		this.#dm.epoch = frame.epoch;
		if (frame.recovered === true) {
			// the replay that follows holds every offline delivery too, in stream order
			this.#emit('recovered', { dms: true });
			return;
		}
		this.#dm.offset = frame.offset;
		if (frame.recovered === false)
			this.#emit('reload', { dms: true });
		for (const message of waiting)
			this.#directMessage(message);
	}

	#joinFrame(frame) {
		const room = this.#rooms.get(frame.room_id);
		const ack = frame.epoch !== undefined;
		if (ack)
			this.#takeAnswered('join', frame.room_id);
		if (ack && room) {
			room.acked = true;
			const reload = room.reloading || frame.recovered === false ||
				(room.epoch !== null && frame.recovered === undefined);
			room.epoch = frame.epoch;
			if (frame.recovered === true) {
				this.#emit('join', this.#joinDetail(frame, ack));
				this.#emit('recovered', { roomId: frame.room_id });
				return;
			}
			room.offset = frame.offset;
			if (reload)
				this.#reload(frame.room_id, room);
		}
		this.#emit('join', this.#joinDetail(frame, ack));
	}

	#joinDetail(frame, ack) {
		return {
			roomId: frame.room_id, userId: frame.from, ack, offset: frame.offset,
			epoch: frame.epoch, recovered: frame.recovered,
		};
	}

	// The room could not be recovered: its newest messages replace the application's view,
	// and live ones wait until then.
	#reload(roomId, room) {
		room.reloading = true;
		room.buffer = [];
		new Promise((resolve, reject) => {
			// no `reject` here: a refused reload is #abandonReload, a close rejects nothing
			Object.assign(this.#send({ type: 'history', room_id: roomId, limit: RELOAD_LIMIT }),
				{ resolve, reload: true });
		}).then((answer) => {
			if (this.#rooms.get(roomId) !== room)
				return;
			const buffer = room.buffer ?? [];
			room.reloading = false;
			room.buffer = null;
			const last = answer.messages.at(-1);
			if (last && last.offset > room.offset)
				room.offset = last.offset;
			this.#emit('reload', { roomId, epoch: answer.epoch, messages: answer.messages });
			for (const message of buffer)
				this.#roomMessage(message);
		}); // closed first: the next connection reloads again (room.reloading)
	}

	// The reload's history was refused: the live messages held for it go on without it.
	#abandonReload(roomId) {
		const room = this.#rooms.get(roomId);
		if (!room || !room.buffer)
			return;
		const buffer = room.buffer;
		room.reloading = false;
		room.buffer = null;
		for (const message of buffer)
			this.#roomMessage(message);
	}

	// ---- token expiry ----

	#scheduleExpiry() {
		clearTimeout(this.#expiryTimer);
		this.#expiryTimer = null;
		const claims = decodeToken(this.#tokenInUse);
		if (typeof claims.exp !== 'number')
			return;
		const now = Date.now();
		const exp = claims.exp * 1000;
		const start = typeof claims.iat === 'number' ? claims.iat * 1000 : now;
		const at = Math.min(start + 0.8 * (exp - start), exp - 30000);
		const expiring = () => {
			this.#expiryTimer = null;
			this.#emit('tokenexpiring', {});
			if (this.#getToken) {
				Promise.resolve(this.#getToken()).then((token) => {
					if (token)
						this.setToken(token);
				}, () => {});
			}
		};
		// a deadline beyond setTimeout's range is approached in steps
		const arm = () => {
			const delay = at - Date.now();
			this.#expiryTimer = delay > MAX_TIMEOUT_MS ? setTimeout(arm, MAX_TIMEOUT_MS) :
				setTimeout(expiring, Math.max(0, delay));
		};
		arm();
	}
}
