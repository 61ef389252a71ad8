#!/usr/bin/python3
"""chathubd over TLS ([server] tls-certificate and tls-key), through the real process, with
certificates made for the test (openssl) that the clients trust:

* wss: two clients authenticate, join a room and exchange messages; /healthz, /readyz and
  the page over https; the daemon announces wss://;
* a burst of 2,000 messages reaches its receiver complete and in order, in far fewer TLS
  records than messages (the outbox writes many frames as one record, not one record per
  frame; a relay between the receiver and the daemon counts the records);
* a plain ws:// or http:// connection to the TLS port is closed, and the daemon goes on;
  silent, half-sent and stalled handshakes are closed by handshake-timeout;
* a certificate file holding the chain (leaf, then intermediate) is served whole;
* chathub-bench --tls (tools/bench's wss client) gets every delivery;
* a missing certificate or key, one that is not PEM or not readable, a key that is not the
  certificate's, or one of the two keys without the other: exit status 1 and a message that
  names the file.
"""

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402
from test_ctl_chat import CTL, Terminal  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def make_certificate(directory, name):
    """A self-signed P-256 certificate for 127.0.0.1 and its key: (cert path, key path)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def openssl(*args):
    subprocess.run([OPENSSL] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_chain(directory):
    """A root CA, an intermediate it signed and a leaf for 127.0.0.1 the intermediate signed:
    (root cert, chain file = leaf then intermediate, leaf key)."""
    def path(name):
        return os.path.join(directory, name)

    def extensions(name, text):
        with open(path(name), "w", encoding="utf-8") as f:
            f.write(text)
        return path(name)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", path("root.key"), "-out", path("root.crt"),
            "-days", "2", "-subj", "/CN=chathub test root",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    ca = extensions("ca.ext", "basicConstraints=critical,CA:TRUE\n"
                              "keyUsage=critical,keyCertSign\n")
    leaf = extensions("leaf.ext", "subjectAltName=IP:127.0.0.1\n")
    openssl("req", *ec, "-keyout", path("int.key"), "-out", path("int.csr"),
            "-subj", "/CN=chathub test intermediate")
    openssl("x509", "-req", "-in", path("int.csr"), "-CA", path("root.crt"),
            "-CAkey", path("root.key"), "-CAcreateserial", "-out", path("int.crt"),
            "-days", "2", "-extfile", ca)
    openssl("req", *ec, "-keyout", path("leaf.key"), "-out", path("leaf.csr"),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", path("leaf.csr"), "-CA", path("int.crt"),
            "-CAkey", path("int.key"), "-CAcreateserial", "-out", path("leaf.crt"),
            "-days", "2", "-extfile", leaf)
    with open(path("chain.crt"), "w", encoding="utf-8") as out:
        for name in ("leaf.crt", "int.crt"):
            with open(path(name), encoding="utf-8") as f:
                out.write(f.read())
    return path("root.crt"), path("chain.crt"), path("leaf.key")


class Certificates:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-tls-")
        self.cert, self.key = make_certificate(self.tmp.name, "server")
        self.other_cert, self.other_key = make_certificate(self.tmp.name, "other")

    def config(self, cert=None, key=None):
        return {"server": {"tls-certificate": cert or self.cert, "tls-key": key or self.key}}

    def client_context(self):
        context = ssl.create_default_context(cafile=self.cert)
        return context


class RecordCounter:
    """A TCP relay between a client and the daemon that counts the TLS records the daemon
    sends (their 5-byte headers are in the clear) without decrypting anything."""

    def __init__(self, port):
        self.port = port
        self.records = 0
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, client_reader, client_writer):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src, dst, count):
            pending = b""
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if count:
                        pending += data
                        while len(pending) >= 5:
                            size = 5 + int.from_bytes(pending[3:5], "big")
                            if len(pending) < size:
                                break
                            self.records += 1
                            pending = pending[size:]
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(client_reader, writer, False),
                             pipe(reader, client_writer, True))

    def close(self):
        self.server.close()


class TlsTests(h.RecvMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = Certificates()
        # a short handshake-timeout for the stalled-handshake test; the others finish fast
        cls.daemon = h.Daemon(config=h.merge_config(cls.certs.config(),
                                                    {"limits": {"handshake-timeout": 2}}))
        try:
            cls.daemon.start()
        except Exception:
            cls.daemon.cleanup()
            cls.certs.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        alive = cls.daemon.alive()
        rc = cls.daemon.stop()
        log = cls.daemon.log_text()
        cls.daemon.cleanup()
        cls.certs.tmp.cleanup()
        if not alive or rc != 0:
            raise AssertionError("daemon died or exited with %r; stderr tail:\n%s"
                                 % (rc, log[-4000:]))

    def uri(self, port=None, scheme="wss"):
        return "%s://127.0.0.1:%d/ws" % (scheme, port or self.daemon.port)

    async def connect(self, user_id, port=None):
        ws = await websockets.connect(self.uri(port), ssl=self.certs.client_context(),
                                      extra_headers=h.bearer(self.daemon.token(user_id)),
                                      max_size=None, open_timeout=h.scaled(5),
                                      close_timeout=h.scaled(2))
        ws.user_id = user_id
        return ws

    async def join(self, ws, room):
        await h.send_json(ws, {"type": "join", "room_id": room})
        while True:
            m = await self.recv(ws)
            if m["type"] == "join" and m.get("from") == ws.user_id:
                return m

    def https_get(self, path):
        conn = http.client.HTTPSConnection("127.0.0.1", self.daemon.port,
                                           context=self.certs.client_context(),
                                           timeout=h.scaled(5))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()
        finally:
            conn.close()

    def test_announces_wss(self):
        self.assertIsNotNone(self.daemon.wait_for_log(r"listening on wss://127\.0\.0\.1:%d/ws"
                                                      % self.daemon.port),
                             self.daemon.log_text())

    def test_room_messages_over_wss(self):
        async def run():
            a, b = h.next_user_id(), h.next_user_id()
            room = h.next_room_id()
            wa, wb = await self.connect(a), await self.connect(b)
            try:
                await self.join(wa, room)
                await self.join(wb, room)
                await h.send_json(wa, {"type": "message", "room_id": room, "content": "from a"})
                await h.send_json(wb, {"type": "message", "room_id": room, "content": "from b"})
                for ws in (wa, wb):
                    got = []
                    while len(got) < 2:
                        m = await self.recv(ws)
                        if m["type"] == "message":
                            got.append((m["from"], m["content"]))
                    self.assertEqual(sorted(got), sorted([(a, "from a"), (b, "from b")]))
            finally:
                await h.close_all(wa, wb)

        asyncio.run(run())

    def test_ctl_chat_with_ca_file(self):
        """chathubctl chat --ca-file trusts the service's own certificate and chats over wss
        (a path relative to the working directory too); without it the certificate is
        refused, said once with a hint; a file that is missing or holds no certificate is a
        usage error naming it."""
        uri = self.uri()
        user, room = h.next_user_id(), h.next_room_id()
        term = Terminal(["--uri", uri, "--token", self.daemon.token(user),
                         "--ca-file", os.path.basename(self.certs.cert)],
                        cwd=os.path.dirname(self.certs.cert))
        try:
            term.expect(r"^\* connected to %s as user %d$" % (re.escape(uri), user))
            term.type("/join %d" % room)
            term.expect(r"^\* %d joined #%d$" % (user, room))
            term.type("over wss")
            term.expect(r"^\d\d:\d\d:\d\d #%d <%d> over wss$" % (room, user))
        finally:
            term.close()
        term = Terminal(["--uri", uri, "--token", self.daemon.token(user)])
        try:
            term.expect(r"(?i)^\* could not connect \(1 attempt\): .*certificate.*$")
            term.expect(r"^\* the service's certificate is not trusted: .*--ca-file.*$")
            term.settle(2)  # attempts go on; the hint is not repeated
            self.assertEqual(term.text.count("is not trusted"), 1, term.text)
        finally:
            term.close()
        missing = os.path.join(self.certs.tmp.name, "missing.pem")
        for path, why in ((self.certs.key, ""), (missing, "No such file")):
            run = subprocess.run([CTL, "chat", "--uri", uri, "--token", self.daemon.token(user),
                                  "--ca-file", path], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=h.scaled(10),
                                 env=dict(os.environ, LC_ALL="C.UTF-8"))
            self.assertEqual(run.returncode, 2, run.stderr)
            self.assertIn(path, run.stderr)
            self.assertIn(why, run.stderr)

    def test_health_and_page_over_https(self):
        for path in ("/healthz", "/readyz"):
            status, content_type, body = self.https_get(path)
            self.assertEqual(status, 200, body)
            self.assertTrue(content_type.startswith("application/json"), content_type)
            self.assertIsInstance(json.loads(body), dict)
        status, content_type, body = self.https_get("/")
        self.assertEqual(status, 200, body[:200])
        self.assertTrue(content_type.startswith("text/html"), content_type)
        # chathubctl ready (the units' ExecStartPost) follows wss:// to https:// and takes the
        # service's self-signed certificate; a plain http:// probe of the TLS port fails
        ctl = os.environ.get("CHATHUBCTL") or os.path.join(h.REPO_ROOT, "_build", "src", "ctl",
                                                            "chathubctl")
        def ready(url):
            return subprocess.run([ctl, "ready", url % self.daemon.port], capture_output=True,
                                  text=True, timeout=h.scaled(30))
        result = ready("wss://127.0.0.1:%d/ws")
        self.assertEqual(result.returncode, 0, result)
        self.assertEqual(json.loads(result.stdout)["status"], "ready")
        self.assertEqual(ready("http://127.0.0.1:%d").returncode, 1)

    def test_burst_in_order_and_coalesced(self):
        n = 2000

        async def run():
            counter = RecordCounter(self.daemon.port)
            relay_port = await counter.start()
            a, b = h.next_user_id(), h.next_user_id()
            room = h.next_room_id()
            sender = await self.connect(a)
            receiver = await self.connect(b, port=relay_port)
            try:
                await self.join(sender, room)
                await self.join(receiver, room)
                before = counter.records
                # all at once: the daemon reads them in batches and relays each batch
                await asyncio.gather(*(h.send_json(sender, {"type": "message",
                                                            "room_id": room,
                                                            "content": "m%d" % i})
                                       for i in range(n)))
                got = []
                while len(got) < n:
                    m = await self.recv(receiver, timeout=20)
                    if m["type"] == "message":
                        got.append(m["content"])
                self.assertEqual(got, ["m%d" % i for i in range(n)])
                records = counter.records - before
                # one record per frame would be n or more
                self.assertLess(records, n // 4,
                                "%d messages came in %d TLS records" % (n, records))
            finally:
                await h.close_all(sender, receiver)
                counter.close()

        asyncio.run(run())

    def test_plain_connection_to_tls_port(self):
        async def run():
            with self.assertRaises((websockets.exceptions.InvalidMessage,
                                    websockets.exceptions.InvalidHandshake,
                                    ConnectionError, EOFError, OSError)):
                ws = await websockets.connect(self.uri(scheme="ws"),
                                              extra_headers=h.bearer(self.daemon.token(1)),
                                              open_timeout=h.scaled(5))
                await ws.close()
            # and the daemon serves wss as before
            ws = await self.connect(h.next_user_id())
            await h.assert_only_pong(ws)
            await ws.close()

        asyncio.run(run())
        # a plain HTTP request gets no answer: the connection is closed
        with socket.create_connection(("127.0.0.1", self.daemon.port),
                                      timeout=h.scaled(5)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            self.assertEqual(answer, b"")
        self.assertTrue(self.daemon.alive())


    def test_bench_over_wss(self):
        """chathub-bench --tls (the wss load generator of tools/bench) gets every delivery."""
        bench = os.environ.get("CHATHUB_BENCH")
        self.assertTrue(bench and os.access(bench, os.X_OK), "CHATHUB_BENCH is not set")
        out = subprocess.run([bench, "fanout", "--tls", "--secret-file", self.daemon.secret_path,
                              "--port", str(self.daemon.port), "-n", "50", "--rates", "200",
                              "--duration", "1", "--uid-base", "900000", "--json", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=h.scaled(120))
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        row = rows[-1]
        self.assertTrue(row["url"].startswith("wss://"), row)
        self.assertEqual(row["connected"], 50, row)
        self.assertEqual(row["delivered"], row["expected"], row)
        self.assertGreater(row["delivered"], 0, row)

    def client_hello(self):
        """The bytes of a real ClientHello (Python's ssl over memory buffers)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.certs.client_context().wrap_bio(incoming, outgoing,
                                                   server_hostname="127.0.0.1")
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        return outgoing.read()

    def test_stalled_handshakes_are_closed(self):
        """Silent, half a ClientHello, a whole one and then silence: each is closed by
        handshake-timeout (2 s here), and the daemon serves wss meanwhile and after."""
        hello = self.client_hello()
        socks = []
        for data in (b"", hello[:3], hello):
            sock = socket.create_connection(("127.0.0.1", self.daemon.port))
            if data:
                sock.sendall(data)
            socks.append(sock)

        async def serve_one():
            ws = await self.connect(h.next_user_id())
            await h.assert_only_pong(ws)
            await ws.close()

        asyncio.run(serve_one())
        try:
            for sock, what in zip(socks, ("silent", "partial ClientHello", "ClientHello")):
                self.assertTrue(h.wait_socket_closed(sock, timeout=15),
                                "a %s connection was not closed" % what)
        finally:
            for sock in socks:
                sock.close()
        asyncio.run(serve_one())


class TlsChainTests(unittest.TestCase):

    def test_chain_is_sent(self):
        """A certificate file with the intermediate after the leaf: a client that trusts only
        the root verifies the server, which it can only do if the intermediate is sent."""
        with tempfile.TemporaryDirectory(prefix="chathub-tls-chain-") as tmp:
            root, chain, key = make_chain(tmp)
            with h.Daemon(config={"server": {"tls-certificate": chain,
                                             "tls-key": key}}) as daemon:
                context = ssl.create_default_context(cafile=root)
                conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context,
                                                   timeout=h.scaled(5))
                try:
                    conn.request("GET", "/healthz")
                    response = conn.getresponse()
                    self.assertEqual(response.status, 200)
                    response.read()
                finally:
                    conn.close()


class TlsRenewalTests(h.RecvMixin, unittest.TestCase):
    """A renewed certificate (the same paths, new files) reloads with SIGHUP: connections
    accepted afterwards get the new one, the open ones stay; switching TLS off is a restart."""

    def test_renewed_certificate_reloads(self):
        certs = Certificates()
        self.addCleanup(certs.tmp.cleanup)
        live_cert = os.path.join(certs.tmp.name, "live.crt")
        live_key = os.path.join(certs.tmp.name, "live.key")
        shutil.copy(certs.cert, live_cert)
        shutil.copy(certs.key, live_key)
        old_context = ssl.create_default_context(cafile=certs.cert)
        new_context = ssl.create_default_context(cafile=certs.other_cert)

        def healthz(context):
            conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context,
                                               timeout=h.scaled(5))
            try:
                conn.request("GET", "/healthz")
                return conn.getresponse().status
            finally:
                conn.close()

        with h.Daemon(config=certs.config(live_cert, live_key)) as daemon:
            async def run():
                user = h.next_user_id()
                ws = await websockets.connect("wss://127.0.0.1:%d/ws" % daemon.port, ssl=old_context,
                                              extra_headers=h.bearer(daemon.token(user)),
                                              open_timeout=h.scaled(5), close_timeout=h.scaled(2))
                try:
                    self.assertEqual(healthz(old_context), 200)
                    with self.assertRaises(ssl.SSLError):
                        healthz(new_context)
                    shutil.copy(certs.other_cert, live_cert)
                    shutil.copy(certs.other_key, live_key)
                    daemon.send_signal(signal.SIGHUP)
                    self.assertIsNotNone(daemon.wait_for_log(r"Configuration reloaded from"),
                                         daemon.log_text())
                    self.assertEqual(healthz(new_context), 200)
                    with self.assertRaises(ssl.SSLError):
                        healthz(old_context)
                    # the connection made with the old certificate is still served
                    room = h.next_room_id()
                    await h.send_json(ws, {"type": "join", "room_id": room})
                    while (await self.recv(ws))["type"] != "join":
                        pass
                finally:
                    await h.close_all(ws)

            asyncio.run(run())
            self.assertNotRegex(daemon.log_text(), r"need a restart")

            # TLS switched off is a restart: logged, ignored, still TLS
            with open(daemon.config_path) as f:
                text = f.read()
            with open(daemon.config_path, "w") as f:
                f.write("\n".join(line for line in text.splitlines() if not line.startswith("tls-")) + "\n")
            daemon.send_signal(signal.SIGHUP)
            self.assertIsNotNone(daemon.wait_for_log(
                r"need a restart, ignored until then: \[server\] tls-certificate"), daemon.log_text())
            self.assertEqual(healthz(new_context), 200)


class TlsConfigurationTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = Certificates()

    @classmethod
    def tearDownClass(cls):
        cls.certs.tmp.cleanup()

    def refused(self, config, *names):
        rc, log = h.run_daemon_expect_exit(config=config)
        self.assertEqual(rc, 1, log)
        for name in names:
            self.assertIn(name, log)
        return log

    def test_missing_key_file(self):
        missing = os.path.join(self.certs.tmp.name, "no-such.key")
        self.refused(self.certs.config(key=missing), "tls-key", missing)

    def test_missing_certificate_file(self):
        missing = os.path.join(self.certs.tmp.name, "no-such.crt")
        self.refused(self.certs.config(cert=missing), "tls-certificate", missing)

    def test_unreadable_key(self):
        if os.geteuid() == 0:
            # root reads any file: a key that is not PEM stands in for it
            path = os.path.join(self.certs.tmp.name, "garbage.key")
            with open(path, "w", encoding="utf-8") as f:
                f.write("not a key\n")
        else:
            path = os.path.join(self.certs.tmp.name, "unreadable.key")
            shutil.copy(self.certs.key, path)
            os.chmod(path, 0)
        self.refused(self.certs.config(key=path), "tls-key", path)

    def test_certificate_that_is_not_pem(self):
        path = os.path.join(self.certs.tmp.name, "garbage.crt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("not a certificate\n")
        self.refused(self.certs.config(cert=path), "tls-certificate", path)

    def test_key_of_another_certificate(self):
        self.refused(self.certs.config(key=self.certs.other_key),
                     "tls-key", self.certs.other_key, self.certs.cert)

    def test_one_without_the_other(self):
        self.refused({"server": {"tls-certificate": self.certs.cert}}, "tls-key")
        self.refused({"server": {"tls-key": self.certs.key}}, "tls-certificate")


if __name__ == "__main__":
    h.main()
