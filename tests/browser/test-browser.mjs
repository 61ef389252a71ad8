// chathub - real-time chat hub
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The browser chat page in a real browser: Debian's chromium, headless, driven by
// playwright-core (tests/browser/package.json, installed by tools/deps). Two browser contexts,
// users 1 and 2, chat in a room and by direct message on a chathubd this test starts (SQLite
// in a temporary directory, a free port, the page from the source tree); the daemon is
// restarted with SIGTERM and with SIGKILL mid-conversation, one user offline meanwhile, and
// both pages must end with exactly the messages sent, in order, each once. A message with
// <script> must show as text and run nothing. Screenshots go to the directory given as the
// first argument.
//
// Environment: CHATHUBD (the daemon), CHATHUB_WEBDIR (the page), CHROMIUM (default
// /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WAIT_MS = 15000;
const artifacts = path.resolve(process.argv[2] ?? 'browser-artifacts');
const chathubd = process.env.CHATHUBD;
const webdir = process.env.CHATHUB_WEBDIR;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

let failures = 0;
let step = 0;
function ok(condition, what, detail = '') {
	step++;
	if (condition) {
		console.log(`ok ${step} - ${what}`);
	} else {
		failures++;
		console.log(`not ok ${step} - ${what}`);
		if (detail)
			console.log(`  # ${String(detail).replace(/\n/g, '\n  # ')}`);
	}
}

function base64url(data) {
	return Buffer.from(data).toString('base64url');
}

function token(secret, userId, lifetime = 3600, claims = {}) {
	const now = Math.floor(Date.now() / 1000);
	const head = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
	const body = base64url(JSON.stringify({ user_id: userId, iat: now, exp: now + lifetime, ...claims }));
	const signature = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
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

// chathubd on a fixed port (a restart must come back where the pages reconnect)
class Daemon {
	constructor(dir, port) {
		this.secret = 'browser-test-secret-0123456789abcdef';
		this.log = '';
		fs.writeFileSync(path.join(dir, 'secret'), this.secret);
		this.config = path.join(dir, 'chathub.conf');
		fs.writeFileSync(this.config, [
			'[server]', 'address=127.0.0.1', `port=${port}`,
			// no leeway: a token that expires ends its connection at once (4001)
			'[auth]', `secret-file=${path.join(dir, 'secret')}`, 'leeway=0',
			'[store]', `path=${path.join(dir, 'chathub.db')}`, '',
		].join('\n'));
	}

	start() {
		const mark = this.log.length;
		this.child = spawn(chathubd, ['--config', this.config], {
			stdio: ['ignore', 'ignore', 'pipe'],
			env: { ...process.env, CHATHUB_WEBDIR: webdir },
		});
		this.child.stderr.setEncoding('utf8');
		this.child.stderr.on('data', (text) => { this.log += text; });
		this.exited = new Promise((resolve) => this.child.on('exit', resolve));
		return until(() => this.log.indexOf('listening on', mark) >= 0, 'chathubd listening');
	}

	async stop(signal) {
		this.child.kill(signal);
		await this.exited;
	}
}

async function until(condition, what, timeout = WAIT_MS) {
	const deadline = Date.now() + timeout;
	for (;;) {
		const value = await condition();
		if (value)
			return value;
		if (Date.now() > deadline)
			throw new Error(`timed out waiting for ${what}`);
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

// ---- the page, as a person uses it ----

const state = (page) => page.getAttribute('#status', 'data-state');

function waitState(page, wanted) {
	return page.waitForSelector(`#status[data-state="${wanted}"]`, { timeout: WAIT_MS });
}

async function select(page, key) {
	const button = page.locator(`#conversations button[data-key="${key}"]`);
	await button.waitFor({ timeout: WAIT_MS });
	await button.click();
	await page.waitForSelector(`#conversations button[data-key="${key}"][aria-current="true"]`,
		{ timeout: WAIT_MS });
}

async function say(page, text) {
	await page.fill('#message-input', text);
	await page.press('#message-input', 'Enter');
}

const shown = (page) => page.$$eval('#messages .message-text', (items) => items.map((p) => p.textContent));

// Waits until the conversation on screen shows exactly @expected; reports what it shows.
async function expectShown(page, key, expected, what) {
	let actual = [];
	try {
		await until(async () => {
			if (!(await page.$(`#conversations button[data-key="${key}"][aria-current="true"]`)))
				await select(page, key);
			actual = await shown(page);
			return JSON.stringify(actual) === JSON.stringify(expected);
		}, what);
	} catch {
		// reported below
	}
	ok(JSON.stringify(actual) === JSON.stringify(expected), what,
		`expected ${JSON.stringify(expected)}\n     got ${JSON.stringify(actual)}`);
}

async function main() {
	fs.mkdirSync(artifacts, { recursive: true });
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chathub-browser-'));
	const port = await freePort();
	const daemon = new Daemon(dir, port);
	const base = `http://127.0.0.1:${port}`;
	let browser;
	const pages = [];
	const problems = [];
	try {
		await daemon.start();
		browser = await chromium.launch({
			executablePath: chromiumPath,
			headless: true,
			// as root (a container), chromium refuses to start with its sandbox
			args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
		});
		const open = async (context, userId, name, tokenText = token(daemon.secret, userId)) => {
			const page = await context.newPage();
			page.on('pageerror', (error) => problems.push(`${name}: ${error.message}`));
			page.on('console', (message) => {
				// the browser's own line for each refused reconnection attempt is expected
				if (message.type() === 'error' && !message.text().startsWith('WebSocket connection to'))
					problems.push(`${name}: console: ${message.text()}`);
			});
			await page.goto(`${base}/#token=${tokenText}`);
			pages.push([name, page]);
			return page;
		};
		const context1 = await browser.newContext({ viewport: { width: 1100, height: 720 } });
		const context2 = await browser.newContext({ viewport: { width: 1100, height: 720 } });
		const p1 = await open(context1, 1, 'user1');
		let p2 = await open(context2, 2, 'user2');

		await waitState(p1, 'connected');
		await waitState(p2, 'connected');
		ok(true, 'both pages connect');
		ok(!p1.url().includes('token') && new URL(p1.url()).search === '',
			'the token leaves the address bar and never was in the query', p1.url());

		for (const page of [p1, p2]) {
			await page.fill('#join-room', '1');
			await page.press('#join-room', 'Enter');
		}
		await until(async () => (await p1.textContent('#presence')).includes('user 2'), 'presence');
		ok((await p1.textContent('#presence')) === 'In this room: you, user 2', 'presence shows both users',
			await p1.textContent('#presence'));

		const room = [];
		const dm = []; // between users 1 and 2
		const roomSay = async (page, text) => {
			await select(page, 'room:1');
			await say(page, text);
			room.push(text);
		};
		const dmSay = async (page, peer, text) => {
			await select(page, `user:${peer}`);
			await say(page, text);
			dm.push(text);
		};

		await roomSay(p1, 'hello from 1');
		await expectShown(p2, 'room:1', room, 'user 2 sees user 1\'s message');
		await roomSay(p2, 'hi from 2');
		await expectShown(p1, 'room:1', room, 'user 1 sees both, in order');

		// a direct message, and the answer
		await p1.fill('#dm-user', '2');
		await p1.press('#dm-user', 'Enter');
		await dmSay(p1, 2, 'psst, 2');
		await expectShown(p2, 'user:1', dm, 'user 2 gets the direct message');
		await dmSay(p2, 1, 'psst back');
		await expectShown(p1, 'user:2', dm, 'user 1 gets the answer');
		await select(p1, 'room:1');
		await select(p2, 'room:1');

		// SIGTERM: both pages lose the connection; user 1 writes while it is down (queued);
		// user 2 stays offline while user 1 talks on, so it has to recover what it missed
		await daemon.stop('SIGTERM');
		await waitState(p1, 'reconnecting');
		await waitState(p2, 'reconnecting');
		await context2.setOffline(true);
		await roomSay(p1, 'written while the server was down');
		await daemon.start();
		await waitState(p1, 'connected');
		await roomSay(p1, 'after the SIGTERM restart');
		await roomSay(p1, 'and another one');
		await dmSay(p1, 2, 'a direct message while you were away');
		await expectShown(p1, 'room:1', room, 'user 1: the queued message went out after the restart');
		ok((await state(p2)) !== 'connected', 'user 2 stayed away meanwhile', await state(p2));
		await context2.setOffline(false);
		await waitState(p2, 'connected');
		await expectShown(p2, 'room:1', room, 'user 2 recovers the room after SIGTERM: no gap, no duplicate');
		await expectShown(p2, 'user:1', dm, 'user 2 recovers the direct message');
		await roomSay(p2, 'back again');
		await expectShown(p1, 'room:1', room, 'user 1 sees the conversation go on');

		// SIGKILL: no close frame, no goodbye; user 1 offline while user 2 writes to the room
		// and to user 1
		await daemon.stop('SIGKILL');
		await waitState(p1, 'reconnecting');
		await waitState(p2, 'reconnecting');
		await context1.setOffline(true);
		await daemon.start();
		await waitState(p2, 'connected');
		await roomSay(p2, 'after the SIGKILL restart');
		await dmSay(p2, 1, 'did you see that?');
		await expectShown(p2, 'user:1', dm, 'user 2 sends after SIGKILL');
		await context1.setOffline(false);
		await waitState(p1, 'connected');
		await expectShown(p1, 'room:1', room, 'user 1 recovers the room after SIGKILL: no gap, no duplicate');
		await expectShown(p1, 'user:2', dm, 'user 1 recovers the direct messages after SIGKILL');

		// markup is text
		const markup = '<script>window.chathubInjected = 1</script><img src=x onerror="window.chathubInjected = 2"><b>bold?</b>';
		await select(p1, 'room:1');
		await select(p2, 'room:1');
		await roomSay(p1, markup);
		await expectShown(p2, 'room:1', room, 'a message with <script> shows as its text');
		for (const [name, page] of [['user 1', p1], ['user 2', p2]]) {
			ok((await page.evaluate(() => window.chathubInjected)) === undefined, `${name}: no script of the message ran`);
			ok((await page.$$('#messages script, #messages img, #messages b')).length === 0,
				`${name}: no element made of the message`);
		}
		await expectShown(p1, 'room:1', room, 'user 1 ends with every room message once, in order');
		await expectShown(p2, 'room:1', room, 'user 2 ends with every room message once, in order');
		for (const [name, page] of [['user 1', p1], ['user 2', p2]]) {
			await select(page, 'room:1');
			ok(await page.isHidden('#notice'), `${name}: the room was recovered, not reloaded`,
				await page.textContent('#notice'));
		}
		await expectShown(p1, 'user:2', dm, 'user 1 ends with every direct message once, in order');
		await expectShown(p2, 'user:1', dm, 'user 2 ends with every direct message once, in order');

		await select(p1, 'room:1');
		await select(p2, 'room:1');
		await p1.screenshot({ path: path.join(artifacts, 'user1-room.png') });
		await p2.screenshot({ path: path.join(artifacts, 'user2-room.png') });
		await select(p2, 'user:1');
		await p2.screenshot({ path: path.join(artifacts, 'user2-direct.png') });

		// offline direct messages arrive on the next sign-in
		await p2.close();
		await select(p1, 'user:2');
		await say(p1, 'for when you are back');
		await until(async () => (await shown(p1)).includes('for when you are back'), 'the echo');
		p2 = await open(context2, 2, 'user2-again');
		await waitState(p2, 'connected');
		await expectShown(p2, 'user:1', ['for when you are back'], 'a direct message sent while user 2 was signed out arrives at sign-in');

		// a phone
		const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
		const p3 = await open(phone, 1, 'user1-phone');
		await waitState(p3, 'connected');
		await p3.fill('#join-room', '1');
		await p3.press('#join-room', 'Enter');
		await expectShown(p3, 'room:1', room, 'the room\'s history loads at 360 px');
		const overflow = await p3.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
		ok(overflow <= 0, 'nothing is wider than 360 px', `${overflow} px too wide`);
		await p3.screenshot({ path: path.join(artifacts, 'user1-360px.png'), fullPage: true });

		// scrolling back: past the 50 messages a join shows, "Load older messages" pages back
		await select(p1, 'room:1');
		for (let i = 1; i <= 50; i++)
			await roomSay(p1, `filler ${i}`);
		await expectShown(p1, 'room:1', room, 'user 1 sends 50 more');
		await p2.fill('#join-room', '1');
		await p2.press('#join-room', 'Enter');
		await expectShown(p2, 'room:1', room.slice(-50), 'a join shows the newest 50 messages');
		await p2.click('#load-older');
		await expectShown(p2, 'room:1', room, 'Load older messages shows the rest, in order');
		ok(await p2.isHidden('#load-older'), 'at the first message, no more "Load older messages"');

		// a message sent just before leaving comes back after the leave: the room stays gone
		await select(p1, 'room:1');
		await p1.fill('#message-input', 'sent while leaving');
		await p1.evaluate(() => {
			document.getElementById('send-form').requestSubmit();
			document.getElementById('leave-room').click();
		});
		room.push('sent while leaving');
		await expectShown(p2, 'room:1', room, 'user 2 gets the message sent while leaving');
		await p1.waitForTimeout(500);
		ok(!(await p1.$('#conversations button[data-key="room:1"]')),
			'a message for a room already left does not bring it back');

		// a new user with no conversation: the hint in the middle of the empty pane
		const fresh = await browser.newContext({ viewport: { width: 1100, height: 720 } });
		const p4 = await open(fresh, 4, 'user4', token(daemon.secret, 4, 3600, { rooms: [1] }));
		await waitState(p4, 'connected');
		const hint = await p4.$eval('#empty', (element) => {
			const box = element.getBoundingClientRect();
			const pane = element.parentElement.getBoundingClientRect();
			const text = document.createRange();
			text.selectNodeContents(element);
			const line = text.getBoundingClientRect();
			return { middle: line.top + line.height / 2, paneMiddle: pane.top + pane.height / 2, box: box.height };
		});
		ok(Math.abs(hint.middle - hint.paneMiddle) < 80, 'the empty-state hint is in the middle of the pane',
			JSON.stringify(hint));
		await p4.screenshot({ path: path.join(artifacts, 'empty.png') });
		// a room the token does not allow: refused, gone from the list, and said so
		await p4.fill('#join-room', '2');
		await p4.press('#join-room', 'Enter');
		await until(async () => !(await p4.isHidden('#global-notice')), 'the refusal');
		ok((await p4.textContent('#global-notice')).startsWith('Room 2 was refused'), 'a refused room is reported',
			await p4.textContent('#global-notice'));
		ok(!(await p4.$('#conversations button[data-key="room:2"]')), 'a refused room leaves the list');

		// an unread badge: its digits in the middle of its pill
		await p4.fill('#join-room', '1');
		await p4.press('#join-room', 'Enter');
		await p4.fill('#dm-user', '1');
		await p4.press('#dm-user', 'Enter');
		await select(p2, 'room:1');
		await roomSay(p2, 'unread for user 4');
		const badge = await until(() => p4.$('#conversations button[data-key="room:1"] .unread'), 'the badge');
		const centre = await badge.evaluate((element) => {
			const pill = element.getBoundingClientRect();
			const text = document.createRange();
			text.selectNodeContents(element);
			const digits = text.getBoundingClientRect();
			return (digits.top + digits.height / 2) - (pill.top + pill.height / 2);
		});
		ok(Math.abs(centre) <= 1.5, 'the unread count sits in the middle of its badge', `${centre} px off`);
		await p4.screenshot({ path: path.join(artifacts, 'unread.png') });

		// a token about to expire: the notice shows whatever is open, then why it ended
		const short = await browser.newContext({ viewport: { width: 1100, height: 720 } });
		const p5 = await open(short, 5, 'user5', token(daemon.secret, 5, 4));
		await until(async () => !(await p5.isHidden('#global-notice')), 'the expiry notice');
		ok((await p5.textContent('#global-notice')).includes('expires soon'),
			'"token expires soon" shows without a conversation', await p5.textContent('#global-notice'));
		await waitState(p5, 'failed');
		ok((await p5.textContent('#status')) === 'Disconnected: token expired — sign in again',
			'a final close shows its reason', await p5.textContent('#status'));
		await p5.screenshot({ path: path.join(artifacts, 'token-expired.png') });

		// a token that is no token: refused at once, not "Reconnecting…" for ever
		const p6 = await open(short, 6, 'user6', 'not.a.token');
		await p6.waitForSelector('#sign-in-error:not([hidden])', { timeout: WAIT_MS });
		ok((await p6.textContent('#sign-in-error')).includes('not a chathub access token'),
			'a token with no user is refused at sign-in', await p6.textContent('#sign-in-error'));
		ok(await p6.isHidden('#chat-view'), 'and the chat is not shown');
		await p6.screenshot({ path: path.join(artifacts, 'bad-token.png') });

		ok(problems.length === 0, 'no page error, no console error (CSP included)', problems.join('\n'));
	} catch (error) {
		ok(false, 'the test ran to its end', error.stack);
		for (const [name, page] of pages) {
			if (!page.isClosed())
				await page.screenshot({ path: path.join(artifacts, `failure-${name}.png`) }).catch(() => {});
		}
		console.log(`# chathubd's log:\n# ${daemon.log.replace(/\n/g, '\n# ')}`);
	} finally {
		await browser?.close();
		if (daemon.child && daemon.child.exitCode === null && daemon.child.signalCode === null)
			await daemon.stop('SIGTERM');
		fs.rmSync(dir, { recursive: true, force: true });
	}
	console.log(`1..${step}`);
	console.log(`# screenshots in ${artifacts}`);
	process.exit(failures ? 1 : 0);
}

main();
