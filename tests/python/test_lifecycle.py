#!/usr/bin/python3
"""Daemon lifecycle through the real process: heartbeat and idle timeout, SIGTERM and
SIGINT shutdown (1001 to every client, exit 0), configuration errors, command-line
options."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

STAY = 5.0          # seconds a live client stays, > idle-timeout (2)


class IdleTimeoutTests(h.DaemonTestMixin, unittest.TestCase):
    """idle-timeout=2, ping-interval=1. All scenarios run at the same time in
    setUpClass (to keep the suite short); each test checks one of them."""

    DAEMON_CONFIG = {"limits": {"idle-timeout": 2, "ping-interval": 1}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.results = {}
        scenarios = {
            "silent": cls.scenario_silent,
            "pong_only": cls.scenario_pong_only,
            "data_only": cls.scenario_data_only,
            "websockets": cls.scenario_websockets,
            "answers_then_stops": cls.scenario_answers_then_stops,
        }
        threads = []
        for name, fn in scenarios.items():
            t = threading.Thread(target=cls.run_scenario, args=(name, fn), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(h.scaled(25))

    @classmethod
    def run_scenario(cls, name, fn):
        try:
            cls.results[name] = ("ok", fn())
        except BaseException as e:       # reported by the test
            cls.results[name] = ("error", repr(e))

    def result(self, name):
        self.assertIn(name, self.results, "scenario %s did not finish" % name)
        status, value = self.results[name]
        if status != "ok":
            self.fail("scenario %s failed: %s" % (name, value))
        return value

    # -- scenarios (run in threads) -------------------------------------------
    @classmethod
    def connect(cls):
        return h.RawWS.connect(cls.daemon.port, cls.daemon.token(h.next_user_id()))

    @classmethod
    def scenario_silent(cls):
        """Reads, never answers a ping, never sends: must be closed with 1001."""
        ws = cls.connect()
        t0 = time.monotonic()
        try:
            code, reason = ws.expect_close(timeout=10, answer_pings=False, reply=True)
            elapsed = time.monotonic() - t0
            eof = ws.wait_eof(7)
            return {"code": code, "reason": reason, "elapsed": elapsed, "pings": ws.pings,
                    "eof": eof}
        except h.ConnectionClosedRaw as e:
            return {"code": None, "reason": "dropped without close frame: %s" % e,
                    "elapsed": time.monotonic() - t0, "pings": ws.pings, "eof": True}
        finally:
            ws.abort(reset=False)

    @classmethod
    def scenario_answers_then_stops(cls):
        """Answers pings for 3 s, then goes silent: closed with 1001 about 2 s later."""
        ws = cls.connect()
        try:
            ws.answer_pings_for(3.0)
            t_stop = time.monotonic()
            code, reason = ws.expect_close(timeout=10, answer_pings=False)
            return {"code": code, "reason": reason, "after_stop": time.monotonic() - t_stop}
        finally:
            ws.abort(reset=False)

    @classmethod
    def scenario_pong_only(cls):
        """Answers every ping with a pong, sends no data: must stay connected."""
        ws = cls.connect()
        try:
            ws.answer_pings_for(STAY)
            ws.send_json({"type": "ping"})
            pong = ws.recv_json(answer_pings=True)
            return {"pong": pong, "pings": ws.pings}
        finally:
            ws.close()

    @classmethod
    def scenario_data_only(cls):
        """Never answers pings but sends a JSON ping every 0.5 s: stays connected."""
        ws = cls.connect()
        try:
            t0 = time.monotonic()
            pongs = 0
            while time.monotonic() - t0 < STAY:
                ws.send_json({"type": "ping"})
                msg = ws.recv_json(answer_pings=False)
                pongs += msg.get("type") == "pong"
                time.sleep(0.5)
            return {"pongs": pongs, "pings": ws.pings}
        finally:
            ws.close()

    @classmethod
    def scenario_websockets(cls):
        async def run():
            ws = await h.ws_connect(cls.daemon, h.next_user_id(), ping_interval=None)
            try:
                await asyncio.sleep(STAY)
                open_after = ws.open
                await h.send_json(ws, {"type": "ping"})
                pong = await h.recv_json(ws)
                return {"open": open_after, "pong": pong}
            finally:
                await ws.close()
        return asyncio.run(run())

    # -- tests ------------------------------------------------------------------
    def test_silent_client_closed_1001(self):
        r = self.result("silent")
        self.assertEqual(r["code"], 1001, r)
        self.assertEqual(r["reason"], "idle timeout", r)
        self.assertGreaterEqual(r["elapsed"], 1.5, "closed before idle-timeout=2: %r" % r)
        self.assertLessEqual(r["elapsed"], h.scaled(6), "idle close too late: %r" % r)
        self.assertTrue(r["eof"], "TCP not closed after the idle close")

    def test_server_sends_pings(self):
        r = self.result("silent")
        self.assertGreaterEqual(r["pings"], 1, "no WebSocket ping within the idle period: %r" % r)

    def test_client_that_stops_answering_closed_1001(self):
        r = self.result("answers_then_stops")
        self.assertEqual(r["code"], 1001, r)
        self.assertLessEqual(r["after_stop"], h.scaled(5), r)

    def test_pongs_keep_connection_alive(self):
        r = self.result("pong_only")
        self.assertEqual(r["pong"].get("type"), "pong", r)
        self.assertGreaterEqual(r["pings"], 3, "expected a ping about every second: %r" % r)

    def test_data_frames_keep_connection_alive(self):
        r = self.result("data_only")
        self.assertGreaterEqual(r["pongs"], 5, r)

    def test_websockets_client_stays_connected(self):
        r = self.result("websockets")
        self.assertTrue(r["open"], r)
        self.assertEqual(r["pong"].get("type"), "pong", r)


class ShutdownTests(unittest.IsolatedAsyncioTestCase):

    async def asyncSetUp(self):
        self.daemon = h.Daemon()
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)

    async def raw(self, room=None):
        uid = h.next_user_id()
        ws = await asyncio.to_thread(h.RawWS.connect, self.daemon.port, self.daemon.token(uid))
        self.addCleanup(ws.abort, False)
        if room is not None:
            ws.send_json({"type": "join", "room_id": room})
            ack = await asyncio.to_thread(ws.recv_json)
            self.assertEqual(ack.get("type"), "join")
        return ws

    async def ws(self, room=None):
        # max_queue=None: the library keeps reading (and sees the close frame) even
        # when the test does not consume the messages
        ws = await h.ws_connect(self.daemon, h.next_user_id(), max_queue=None)
        self.addAsyncCleanup(h.close_all, ws)
        if room is not None:
            await h.send_json(ws, {"type": "join", "room_id": room})
            while (await h.recv_json(ws)).get("type") != "join":
                pass
        return ws

    async def shutdown_and_check(self, signum):
        room = h.next_room_id()
        raws = [await self.raw(), await self.raw(room), await self.raw(room)]
        wss = [await self.ws(), await self.ws(room)]
        t0 = time.monotonic()
        self.daemon.send_signal(signum)
        raw_results = await asyncio.gather(*[asyncio.to_thread(r.expect_close, 6.0, True) for r in raws],
                                           return_exceptions=True)
        for i, res in enumerate(raw_results):
            if isinstance(res, BaseException):
                self.fail("raw client %d: no close frame: %r" % (i, res))
            self.assertEqual(res, (1001, "server shutting down"), "raw client %d" % i)
        for i, ws in enumerate(wss):
            try:
                await asyncio.wait_for(ws.wait_closed(), h.scaled(6))
            except asyncio.TimeoutError:
                self.fail("websockets client %d not closed" % i)
            self.assertEqual((ws.close_code, ws.close_reason), (1001, "server shutting down"),
                             "websockets client %d" % i)
        rc = await asyncio.to_thread(self.daemon.wait, 8)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status after signal %d; log:\n%s" % (signum, self.daemon.log_text()[-3000:]))
        self.assertLess(elapsed, h.scaled(6), "shutdown took %.1f s" % elapsed)

    async def test_sigterm_closes_every_client_1001_and_exits_0(self):
        await self.shutdown_and_check(signal.SIGTERM)

    async def test_sigint_closes_every_client_1001_and_exits_0(self):
        await self.shutdown_and_check(signal.SIGINT)

    async def test_sigterm_without_clients_exits_0_quickly(self):
        t0 = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(self.daemon.wait, 5)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, h.scaled(2))

    async def test_sigterm_with_unresponsive_client_exits_0(self):
        # this client never reads and never answers the close
        stuck = await self.raw(h.next_room_id())
        ok = await self.raw()
        t0 = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        res = await asyncio.to_thread(ok.expect_close, 6.0, True)
        self.assertEqual(res[0], 1001)
        rc = await asyncio.to_thread(self.daemon.wait, 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status; log:\n%s" % self.daemon.log_text()[-3000:])
        self.assertLess(elapsed, h.scaled(8), "bounded wait for unresponsive clients: %.1f s" % elapsed)
        # the close frame is waiting in the stuck client's socket
        code, reason = await asyncio.to_thread(stuck.expect_close, 3.0, False, False)
        self.assertEqual(code, 1001)

    def test_sigterm_with_1000_silent_clients_exits_within_5_s(self):
        # the bound SIGTERM promises (chathubd(8)): 5 s whatever the clients do. These
        # clients complete the upgrade, then never read and never answer the close.
        h.raise_nofile_limit(4096)
        silent = []
        self.addCleanup(lambda: [ws.abort(False) for ws in silent])
        for _ in range(1000):
            silent.append(h.RawWS.connect(self.daemon.port, self.daemon.token(h.next_user_id())))
        t0 = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.proc.wait(timeout=h.scaled(15))
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - t0
        rc = self.daemon.wait(1)
        self.assertEqual(rc, 0, "exit status; log:\n%s" % self.daemon.log_text()[-3000:])
        self.assertLess(elapsed, h.scaled(5.0), "SIGTERM to exit: %.2f s" % elapsed)

    async def test_sigterm_during_traffic(self):
        room = h.next_room_id()
        a = await self.ws(room)
        b = await self.ws(room)
        for i in range(200):
            await h.send_json(a, {"type": "message", "room_id": room, "content": "x%d" % i})
        self.daemon.send_signal(signal.SIGTERM)
        for ws in (a, b):
            try:
                await asyncio.wait_for(ws.wait_closed(), h.scaled(8))
            except asyncio.TimeoutError:
                self.fail("client not closed after SIGTERM")
            self.assertEqual(ws.close_code, 1001)
        rc = await asyncio.to_thread(self.daemon.wait, 8)
        self.assertEqual(rc, 0, self.daemon.log_text()[-3000:])


class CommandLineErrorTests(unittest.TestCase):
    """A bad command line: exit status 2 (chathubd(8), EXIT STATUS) and one line on stderr."""

    def check(self, args, needle):
        rc, err = h.run_daemon_expect_exit(args=args)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(rc, 2, "exit status; stderr:\n%s" % err)
        self.assertEqual(len(lines), 1, "expected one line on stderr, got:\n%s" % err)
        self.assertIn(needle, lines[0])

    def test_port_out_of_range(self):
        for port in ("70000", "-1"):
            with self.subTest(port=port):
                self.check(["--port=" + port], "--port")

    def test_unknown_option(self):
        self.check(["--no-such-option"], "--no-such-option")

    def test_two_buses(self):
        self.check(["--session", "--no-dbus"], "--no-dbus")


class ConfigErrorTests(unittest.TestCase):
    """Bad configuration: exit status 1 and one line on stderr naming the key."""

    def check(self, key, config=None, secret=h.DEFAULT_SECRET, env=None, args=()):
        rc, err = h.run_daemon_expect_exit(config=config, secret=secret, env=env, args=args)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertIsNotNone(rc, "daemon started listening despite the bad %s; stderr:\n%s" % (key, err))
        self.assertEqual(rc, 1, "exit status; stderr:\n%s" % err)
        self.assertEqual(len(lines), 1, "expected one line on stderr, got:\n%s" % err)
        self.assertTrue(lines[0].startswith("chathubd: bad configuration: "), lines[0])
        if key:
            self.assertIn(key, lines[0])
        self.assertFalse(re.search(r"ws://", err), err)
        return lines[0]

    def test_unknown_algorithm(self):
        self.check("algorithm", {"auth": {"algorithm": "HS999"}})

    def test_algorithm_none_refused(self):
        self.check("algorithm", {"auth": {"algorithm": "none"}})

    def test_missing_secret(self):
        self.check("secret", secret=None)

    def test_secret_file_unreadable(self):
        self.check("secret-file", {"auth": {"secret-file": "/nonexistent/chathub-secret"}}, secret=None)

    def test_empty_secret_file(self):
        self.check("secret", secret="")

    def test_rs256_without_public_key(self):
        self.check("public-key-file", {"auth": {"algorithm": "RS256"}}, secret=None)

    def test_rs256_public_key_missing_file(self):
        self.check("public-key-file", {"auth": {"algorithm": "RS256",
                                                "public-key-file": "/nonexistent/key.pem"}},
                   secret=None)

    def test_rs256_public_key_not_pem(self):
        d = h.Daemon()          # only for its temporary directory
        try:
            bad = os.path.join(d.tmp.name, "bad.pem")
            with open(bad, "w") as f:
                f.write("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
            self.check("public-key-file", {"auth": {"algorithm": "RS256", "public-key-file": bad}},
                       secret=None)
        finally:
            d.cleanup()

    def test_bad_numbers(self):
        cases = [
            ("limits", "max-message-size", "abc"),
            ("limits", "outbox-size", "lots"),
            ("limits", "ping-interval", "-5"),  # 0 is valid: no pings
            ("limits", "ping-interval", "90000"),
            ("limits", "idle-timeout", "-1"),
            ("limits", "idle-timeout", "2.5x"),
            ("server", "max-connections", "many"),
            ("auth", "leeway", "abc"),
        ]
        for group, key, value in cases:
            with self.subTest(key=key, value=value):
                self.check(key, {group: {key: value}})

    def test_unknown_key(self):
        # a typo would leave the default port in force: refused, naming the key and its group
        line = self.check("unknown key “prot” in group [server] (did you mean “port”?)",
                          {"server": {"prot": "9000"}})
        self.assertIn("chathubd.conf: ", line)

    def test_unknown_group(self):
        self.check("unknown group [limit] (did you mean [limits]?)", {"limit": {"max-rooms": 5}})

    def test_short_secret(self):
        # RFC 7518 §3.2: a key at least as long as the hash; 32 bytes do for HS256 only
        secret = "k" * 32
        for algorithm, needed in (("HS384", 48), ("HS512", 64)):
            with self.subTest(algorithm=algorithm):
                self.check("[auth] secret-file: the secret is 32 bytes long; %s needs at least %d"
                           % (algorithm, needed), {"auth": {"algorithm": algorithm}}, secret=secret)
        self.check("[auth] secret-file: the secret is 31 bytes long; HS256 needs at least 32",
                   secret=secret[1:])
        self.check("CHATHUB_JWT_SECRET: the secret is 31 bytes long; HS256 needs at least 32",
                   secret=None, env={"CHATHUB_JWT_SECRET": secret[1:]})

    def test_missing_config_file(self):
        d = h.Daemon()
        try:
            p = subprocess.run([h.daemon_path(), "--config", "/nonexistent/chathubd.conf", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.scaled(5),
                               env=d.env)
        finally:
            d.cleanup()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertTrue(p.stderr.strip())


class StdoutDaemon(h.Daemon):
    """A daemon whose stdout (where GLib writes debug messages) joins its stderr log."""

    def command(self):
        return ["/bin/sh", "-c", 'exec "$@" 1>&2', "sh"] + super().command()


class CommandLineTests(unittest.TestCase):

    def test_version(self):
        p = subprocess.run([h.daemon_path(), "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=h.scaled(5))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex((p.stdout + p.stderr).decode(), r"\d+\.\d+")

    def test_unknown_option(self):
        p = subprocess.run([h.daemon_path(), "--no-such-option"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=h.scaled(5))
        self.assertNotEqual(p.returncode, 0)

    def test_command_line_overrides_config(self):
        # config says an address we cannot bind and port 1; --address/--port win
        d = h.Daemon(config={"server": {"address": "192.0.2.1", "port": 1}},
                     args=["--address", "127.0.0.1"])
        try:
            d.start()
            ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
            ws.send_json({"type": "ping"})
            self.assertEqual(ws.recv_json().get("type"), "pong")
            ws.close()
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

    def test_verbose_without_libsoup_frame_lines(self):
        # --verbose logs chathub's debug messages, not libsoup's two lines per frame read
        # (at load they cost more than the rest of the daemon); G_MESSAGES_DEBUG asks for them
        for env, libsoup in (({"G_MESSAGES_DEBUG": None}, False),
                             ({"G_MESSAGES_DEBUG": "libsoup"}, True)):
            with self.subTest(G_MESSAGES_DEBUG=env["G_MESSAGES_DEBUG"]):
                d = StdoutDaemon(args=["--verbose"], env=env)
                try:
                    d.start()
                    ws = h.RawWS.connect(d.port, d.token(h.next_user_id()))
                    for _ in range(3):
                        ws.send_json({"type": "ping"})
                        self.assertEqual(ws.recv_json().get("type"), "pong")
                    ws.close()
                    self.assertEqual(d.stop(), 0)
                    log = d.log_text()
                    self.assertRegex(log, r"DEBUG.*client \w+ registered")
                    if libsoup:
                        self.assertRegex(log, r"libsoup-DEBUG.*received frame")
                    else:
                        self.assertNotIn("libsoup-DEBUG", log)
                finally:
                    d.cleanup()

    def test_announces_bound_port(self):
        d = h.Daemon()
        try:
            d.start()
            self.assertGreater(d.port, 0)
            line = d.wait_for_log(h.PORT_RE.pattern)
            self.assertIn("ws://127.0.0.1:%d/ws" % d.port, line)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    h.main()
