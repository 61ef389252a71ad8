// chathub - real-time chat hub
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The browser chat page chathubd serves at "/". All the protocol work (reconnecting,
// recovering rooms and direct messages without gaps or duplicates) is in chathub-client.js;
// this file only shows what it reports. Text from the network is only ever set with
// textContent, never parsed as HTML.

import { ChatClient, decodeToken } from './chathub-client.js';

const TOKEN_KEY = 'chathub-token';
const STATUS_TEXT = {
	disconnected: 'Signed out',
	connecting: 'Connecting…',
	connected: 'Connected',
	reconnecting: 'Reconnecting…',
};

const $ = (id) => document.getElementById(id);

let client = null;
let me = null;
let active = null; // key of the conversation shown
const conversations = new Map(); // 'room:3' | 'user:42' -> conversation

// A link like http://host:8080/#token=JWT signs in directly. The fragment never reaches the
// server or a Referer; it is moved to this tab's session storage and removed from the address
// bar, so the token is not left in the history or a bookmark.
function takeTokenFromUrl() {
	const params = new URLSearchParams(location.hash.slice(1));
	const token = params.get('token');
	if (token) {
		sessionStorage.setItem(TOKEN_KEY, token);
		history.replaceState(null, '', location.pathname + location.search);
	}
}

function webSocketUrl() {
	return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

function roomsKey() {
	return `chathub-rooms:${me}`;
}

function saveRooms() {
	sessionStorage.setItem(roomsKey(), JSON.stringify(client.rooms));
}

function conversation(kind, id) {
	const key = `${kind}:${id}`;
	let conv = conversations.get(key);
	if (!conv) {
		conv = {
			key, kind, id,
			title: kind === 'room' ? `Room ${id}`
				: kind === 'user' ? `User ${id}${id === me ? ' (you)' : ''}` : 'Announcements',
			messages: [], unread: 0, loaded: false, historyDone: false, notice: '',
		};
		conversations.set(key, conv);
		renderConversations();
	}
	return conv;
}

function setStatus(state, text) {
	const status = $('status');
	status.dataset.state = state;
	status.textContent = text ?? STATUS_TEXT[state] ?? state;
}

// A notice about the whole session (the token, a refused room), shown above every
// conversation, where it is seen whichever conversation is open (or none).
function showGlobalNotice(text) {
	$('global-notice').textContent = text;
	$('global-notice').hidden = !text;
}

function showNotice(conv, text) {
	conv.notice = text;
	if (conv.key === active) {
		$('notice').textContent = text;
		$('notice').hidden = !text;
	}
}

function senderName(userId) {
	return userId === me ? 'you' : `user ${userId}`;
}

function messageElement(message) {
	const item = document.createElement('li');
	item.className = message.from === me ? 'message mine' : 'message';
	item.dataset.id = message.id;
	if (message.offset !== undefined)
		item.dataset.offset = message.offset;

	const meta = document.createElement('div');
	meta.className = 'message-meta';
	const sender = document.createElement('span');
	sender.className = 'message-sender';
	sender.textContent = senderName(message.from);
	const time = document.createElement('time');
	const date = new Date(message.timestamp * 1000);
	time.dateTime = date.toISOString();
	time.title = date.toLocaleString();
	time.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
	meta.append(sender, time);

	const text = document.createElement('p');
	text.className = 'message-text';
	text.textContent = message.content ?? JSON.stringify(message.data);
	item.append(meta, text);
	return item;
}

function renderConversations() {
	const list = $('conversations');
	list.replaceChildren();
	for (const conv of conversations.values()) {
		const item = document.createElement('li');
		const button = document.createElement('button');
		button.type = 'button';
		button.dataset.key = conv.key;
		button.setAttribute('aria-current', String(conv.key === active));
		const name = document.createElement('span');
		name.textContent = conv.title;
		button.append(name);
		if (conv.unread > 0) {
			const badge = document.createElement('span');
			badge.className = 'unread';
			badge.textContent = conv.unread;
			badge.setAttribute('aria-label', `${conv.unread} unread`);
			button.append(badge);
		}
		button.addEventListener('click', () => select(conv.key));
		item.append(button);
		list.append(item);
	}
}

function updateLoadOlder(conv) {
	const first = conv.messages[0];
	$('load-older').hidden = conv.kind !== 'room' || conv.historyDone || !first || !(first.offset > 1);
}

function renderMessages() {
	const conv = conversations.get(active);
	const list = $('messages');
	list.replaceChildren(...(conv ? conv.messages.map(messageElement) : []));
	list.scrollTop = list.scrollHeight;
	$('empty').hidden = !!conv;
	list.hidden = !conv;
	$('send-form').hidden = !conv || conv.kind === 'all';
	$('conversation-title').textContent = conv ? conv.title : 'No conversation';
	$('leave-room').hidden = !conv || conv.kind !== 'room';
	$('notice').textContent = conv?.notice ?? '';
	$('notice').hidden = !conv?.notice;
	$('presence').hidden = !conv || conv.kind !== 'room';
	if (conv)
		updateLoadOlder(conv);
	else
		$('load-older').hidden = true;
}

function select(key) {
	active = key;
	const conv = conversations.get(key);
	if (conv)
		conv.unread = 0;
	renderConversations();
	renderMessages();
	if (conv?.kind === 'room')
		refreshPresence(conv.id);
	$('message-input').focus();
}

function append(conv, message) {
	conv.messages.push(message);
	if (conv.key !== active) {
		conv.unread++;
		renderConversations();
		return;
	}
	const list = $('messages');
	const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
	list.append(messageElement(message));
	if (atBottom || message.from === me)
		list.scrollTop = list.scrollHeight;
	updateLoadOlder(conv);
}

function prepend(conv, messages) {
	conv.messages.unshift(...messages);
	if (conv.key !== active)
		return;
	const list = $('messages');
	const fromBottom = list.scrollHeight - list.scrollTop;
	list.prepend(...messages.map(messageElement));
	list.scrollTop = list.scrollHeight - fromBottom;
	updateLoadOlder(conv);
}

async function refreshPresence(roomId) {
	if (active !== `room:${roomId}`)
		return;
	try {
		const users = await client.presence(roomId);
		if (active === `room:${roomId}`)
			$('presence').textContent = `In this room: ${users.map(senderName).join(', ')}`;
	} catch {
		// not connected or not joined yet: the next join event asks again
	}
}

async function loadOlder() {
	const conv = conversations.get(active);
	if (!conv || conv.kind !== 'room' || !conv.messages.length)
		return;
	try {
		const older = await client.history(conv.id, { before: conv.messages[0].offset, limit: 50 });
		if (older.length === 0)
			conv.historyDone = true;
		prepend(conv, older);
		updateLoadOlder(conv);
	} catch (error) {
		showNotice(conv, `Could not load older messages: ${error.message}`);
	}
}

function onMessage(message) {
	let conv;
	if (message.room_id !== undefined) {
		// one sent before a leave may still come after it: the room is gone from the list
		if (!client.rooms.includes(message.room_id))
			return;
		conv = conversation('room', message.room_id);
	}
	else if (message.to !== undefined)
		conv = conversation('user', message.from === me ? message.to : message.from);
	else
		conv = conversation('all', 0); // to everyone: the service's announcements
	append(conv, message);
}

async function onJoin({ roomId, ack, offset }) {
	const conv = conversation('room', roomId);
	if (ack && !conv.loaded) {
		// the room's past up to the acknowledgement; live messages come after it
		conv.loaded = true;
		if (offset > 0) {
			try {
				prepend(conv, await client.history(roomId, { before: offset + 1, limit: 50 }));
			} catch {
				conv.loaded = false;
			}
		}
	}
	refreshPresence(roomId);
}

// Why a connection ended for good, for the status badge.
function closeText({ code, reason }) {
	const why = reason || `code ${code}`;
	// an expired or refused token: only a new one helps
	return code === 4001 ? `Disconnected: ${why} — sign in again` : `Disconnected: ${why}`;
}

// The rooms the service refused (the token's rooms claim, too many rooms) are no longer
// joined: their conversations go, and the notice says which.
function dropRefusedRooms({ code, content }) {
	for (const conv of [...conversations.values()]) {
		if (conv.kind === 'room' && !client.rooms.includes(conv.id)) {
			conversations.delete(conv.key);
			if (active === conv.key)
				active = null;
			showGlobalNotice(`Room ${conv.id} was refused: ${content || code}`);
		}
	}
	saveRooms();
	renderConversations();
	renderMessages();
}

// The page cannot see why the service refuses a WebSocket handshake (a browser hides the 401 of
// a bad token), so a token that cannot be one is refused here, before connecting.
function tokenProblem(token) {
	const claims = decodeToken(token);
	const id = Number(claims.user_id ?? claims.sub);
	if (!Number.isSafeInteger(id) || id < 1)
		return 'This is not a chathub access token (it names no user): check that it was copied whole.';
	if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now())
		return 'This access token has expired: ask for a new one.';
	return null;
}

function showSignIn(problem) {
	$('sign-in-view').hidden = false;
	$('chat-view').hidden = true;
	$('sign-in-error').textContent = problem ?? '';
	$('sign-in-error').hidden = !problem;
	$('token-input').focus();
}

function start(token) {
	const problem = tokenProblem(token);
	if (problem) {
		sessionStorage.removeItem(TOKEN_KEY);
		showSignIn(problem);
		return;
	}
	client = new ChatClient({ url: webSocketUrl(), token });
	me = client.userId;
	$('sign-in-view').hidden = true;
	$('chat-view').hidden = false;
	$('sign-out').hidden = false;
	$('whoami').hidden = false;
	$('whoami').textContent = me ? `Signed in as user ${me}` : 'Signed in';

	client.addEventListener('state', (e) => setStatus(e.detail.state));
	// a final close comes after the state `disconnected`: its reason stays on the badge
	client.addEventListener('close', (e) => {
		if (!e.detail.final)
			return;
		setStatus('failed', closeText(e.detail));
		if (e.detail.code === 4001)
			showGlobalNotice('Your access token has expired: sign out, then sign in with a new one.');
	});
	client.addEventListener('message', (e) => onMessage(e.detail));
	client.addEventListener('join', (e) => onJoin(e.detail));
	client.addEventListener('leave', (e) => refreshPresence(e.detail.roomId));
	client.addEventListener('reload', (e) => {
		if (e.detail.dms) {
			for (const conv of conversations.values()) {
				if (conv.kind === 'user')
					showNotice(conv, 'Some direct messages may be missing: the server lost them.');
			}
			return;
		}
		const conv = conversation('room', e.detail.roomId);
		conv.messages = e.detail.messages;
		conv.historyDone = false;
		if (conv.key === active)
			renderMessages();
		showNotice(conv, 'The server could not replay what you missed: showing the latest messages.');
	});
	client.addEventListener('error', (e) => {
		if (e.detail.code === 'forbidden' || e.detail.code === 'limit_exceeded') {
			dropRefusedRooms(e.detail);
			return;
		}
		const conv = conversations.get(active);
		if (conv)
			showNotice(conv, `${e.detail.code}: ${e.detail.content ?? ''}`);
		else
			showGlobalNotice(`${e.detail.code}: ${e.detail.content ?? ''}`);
	});
	client.addEventListener('tokenexpiring', () => {
		showGlobalNotice('Your access token expires soon: sign in again with a new one.');
	});

	let rooms = [];
	try {
		rooms = JSON.parse(sessionStorage.getItem(roomsKey()) ?? '[]');
	} catch {
		// a damaged list: start without rooms
	}
	for (const roomId of rooms) {
		conversation('room', roomId);
		client.join(roomId);
	}
	if (rooms.length)
		select(`room:${rooms[0]}`);
	client.connect();
}

function signOut() {
	client?.close();
	client = null;
	sessionStorage.removeItem(TOKEN_KEY);
	location.reload();
}

function setUp() {
	$('sign-in-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const token = $('token-input').value.trim();
		if (!token)
			return;
		const problem = tokenProblem(token);
		if (problem) {
			showSignIn(problem);
			return;
		}
		sessionStorage.setItem(TOKEN_KEY, token);
		start(token);
	});
	$('sign-out').addEventListener('click', signOut);
	$('join-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const roomId = Number($('join-room').value);
		if (!Number.isSafeInteger(roomId) || roomId < 1)
			return;
		conversation('room', roomId);
		client.join(roomId);
		saveRooms();
		$('join-room').value = '';
		select(`room:${roomId}`);
	});
	$('dm-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const userId = Number($('dm-user').value);
		if (!Number.isSafeInteger(userId) || userId < 1)
			return;
		conversation('user', userId);
		$('dm-user').value = '';
		select(`user:${userId}`);
	});
	$('leave-room').addEventListener('click', () => {
		const conv = conversations.get(active);
		if (!conv || conv.kind !== 'room')
			return;
		client.leave(conv.id);
		saveRooms();
		conversations.delete(conv.key);
		active = null;
		renderConversations();
		renderMessages();
	});
	$('load-older').addEventListener('click', loadOlder);
	$('send-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const conv = conversations.get(active);
		const input = $('message-input');
		const text = input.value;
		if (!conv || !text.trim())
			return;
		try {
			if (conv.kind === 'room')
				client.sendToRoom(conv.id, text);
			else
				client.sendToUser(conv.id, text);
			input.value = '';
		} catch (error) {
			showNotice(conv, error.message);
		}
	});

	takeTokenFromUrl();
	const token = sessionStorage.getItem(TOKEN_KEY);
	if (token)
		start(token);
	else
		$('token-input').focus();
}

setUp();
