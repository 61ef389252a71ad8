"""Shared helpers for the chathub end-to-end tests.

Everything here talks to the real daemon over real sockets:

* ``Daemon``: writes a temporary GKeyFile config (and secret file), starts
  ``chathubd --config CONF --port 0``, finds the bound port in its stderr,
  keeps draining stderr into ``Daemon.log`` and stops it with SIGTERM.
* JWT minting in pure Python (HS256/384/512 with hmac) and with the
  ``openssl`` command line (RS256, ES256), including hostile tokens.
* ``RawWS``: a WebSocket client over a plain socket (handshake, masked
  frames, fragmentation, binary frames, close frames, or not reading at all).
* ``http_request``: one raw HTTP/1.1 request, to inspect non-101 answers.
* small helpers around the ``websockets`` library (10.4 on Debian 12).

Environment:
  CHATHUBD                  path of the daemon (default _build/src/daemon/chathubd)
  CHATHUBD_WRAPPER          command prefix, e.g. "valgrind --error-exitcode=99 -q"
  CHATHUB_TEST_TIME_SCALE   multiply every timeout (e.g. 5 under valgrind)
  CHATHUB_TEST_VERBOSE=1    echo the daemon's stderr as it arrives
  CHAT_TEST_REDIS_SERVER    path of redis-server, for ``RedisServer``
  CHATHUB_TEST_CLUSTER=redis  every ``Daemon`` is a node on one shared ``RedisServer``
                            (a key prefix per Daemon: a new Daemon is a new database)
"""

import asyncio
import base64
import errno
import hashlib
import hmac
import json
import os
import re
import resource
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIME_SCALE = float(os.environ.get("CHATHUB_TEST_TIME_SCALE", "1") or "1")
VERBOSE = os.environ.get("CHATHUB_TEST_VERBOSE", "") not in ("", "0")

PORT_RE = re.compile(r"wss?://[0-9.]+:([0-9]+)/ws")
# 73 bytes: long enough for HS512 (RFC 7518 §3.2), with a non-ASCII byte
DEFAULT_SECRET = "chathub-test-secret-\u00e9-0123456789abcdef-0123456789abcdef-0123456789abcdef"

# WebSocket opcodes
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def scaled(seconds):
    return seconds * TIME_SCALE


def daemon_path():
    path = os.environ.get("CHATHUBD") or os.path.join(REPO_ROOT, "_build", "src", "daemon", "chathubd")
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def raise_nofile_limit(wanted=8192):
    """Raise RLIMIT_NOFILE (soft) for this process and the daemons it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def now():
    return int(time.time())


# ---------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------

def render_keyfile(groups):
    """groups: {group: {key: value}}; a value of None leaves the key out."""
    out = []
    for group, keys in groups.items():
        out.append("[%s]" % group)
        for key, value in keys.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out.append("%s=%s" % (key, value))
        out.append("")
    return "\n".join(out)


def merge_config(base, override):
    merged = {g: dict(k) for g, k in base.items()}
    for group, keys in (override or {}).items():
        merged.setdefault(group, {}).update(keys)
    return merged


# ---------------------------------------------------------------------------
# A real redis-server
# ---------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FullDiskMixin:
    """For a unittest.TestCase: a chathubd (self.daemon) whose database is on a SIZE tmpfs,
    which fill() fills up after the start and remove_filler() frees again. Mounting needs
    root or CAP_SYS_ADMIN; without it the test fails and says so."""

    SIZE = 4 * 1024 * 1024

    def setUp(self):
        self.mount = tempfile.mkdtemp(prefix="chathub-tmpfs-")
        self.addCleanup(os.rmdir, self.mount)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % self.SIZE,
                                 "chathub-test", self.mount],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            self.fail("this test needs to mount a small tmpfs (as root, or with CAP_SYS_ADMIN) "
                      "to fill a real file system; mount said: %s" % result.stdout.strip())
        self.addCleanup(subprocess.run, ["umount", "--lazy", self.mount], check=True)
        self.filler = os.path.join(self.mount, "filler")
        self.addCleanup(self.remove_filler)
        self.daemon = Daemon(config={"store": {"path": os.path.join(self.mount, "chathub.db")}})
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def fill(self):
        """Writes the filler until not one byte more fits."""
        with open(self.filler, "wb", buffering=0) as f:
            for chunk in (1 << 16, 1 << 12, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError as error:
                    self.assertEqual(error.errno, errno.ENOSPC, error)
        self.assertEqual(os.statvfs(self.mount).f_bavail, 0)

    def remove_filler(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def send(self, ws, room, text):
        """Sends a room message; returns the frame about it: its echo or an error."""
        ws.send_json({"type": "message", "room_id": room, "content": text})
        while True:
            frame = ws.recv_json(timeout=10, answer_pings=True)
            if frame.get("type") == "error" or (frame.get("type") == "message"
                                                 and frame.get("content") == text):
                return frame


class RedisServer:
    """redis-server on 127.0.0.1, a free port and a temporary directory.

    appendonly: keep an append-only file with appendfsync always (survives a restart).
    """

    def __init__(self, appendonly=False):
        self.path = os.environ.get("CHAT_TEST_REDIS_SERVER") or "redis-server"
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-redis-")
        self.appendonly = appendonly
        self.port = free_port()
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        args = [self.path, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.tmp.name, "--save", "", "--logfile", "",
                "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            except RuntimeError as e:  # LOADING: an append-only file is read back
                if not str(e).startswith("LOADING"):
                    raise
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise DaemonError("redis-server did not start on port %d" % self.port)
            time.sleep(0.02)

    def stop(self, kill=False):
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(scaled(10))

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop(kill=True)
        self.tmp.cleanup()

    def command(self, *args):
        """One command over RESP; the reply decoded (bulk strings as str)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=scaled(5)) as sock:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            sock.sendall(out)
            reader = sock.makefile("rb")
            return _resp_read(reader)


def _resp_read(reader):
    line = reader.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(reader) for _ in range(n)]
    raise OSError("bad RESP reply %r" % line)


_SHARED_REDIS = None
_PREFIXES = iter(range(1, 1 << 30))


def shared_redis():
    """One redis-server for the whole test process (CHATHUB_TEST_CLUSTER=redis)."""
    global _SHARED_REDIS
    if _SHARED_REDIS is None:
        import atexit
        _SHARED_REDIS = RedisServer().start()
        atexit.register(_SHARED_REDIS.cleanup)
    return _SHARED_REDIS


def cluster_config(redis, prefix=None, node=None):
    """The [cluster] group of a node on `redis`."""
    group = {"backend": "redis", "redis-address": redis.address,
             "key-prefix": prefix or "test%d-%d" % (os.getpid(), next(_PREFIXES))}
    if node is not None:
        group["node-name"] = node
    return {"cluster": group}


# ---------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------

class DaemonError(Exception):
    pass


class Daemon:
    """One chathubd process on 127.0.0.1 and a free port.

    config: {group: {key: value}} merged over the defaults; value None removes a key.
    secret: HMAC secret written to a secret file (None: no secret-file key).
    env: extra environment variables (value None removes one).
    """

    def __init__(self, config=None, secret=DEFAULT_SECRET, secret_file_text=None, env=None,
                 args=(), verbose=False, port_timeout=10.0, nofile=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-test-")
        self.secret = secret
        base = {
            "server": {"address": "127.0.0.1"},
            "auth": {"algorithm": "HS256"},
            # the suites open connections from 127.0.0.1 far faster than the default
            # upgrades-per-second allows, and most tests send as fast as they can from one
            # connection; tests of either rate limit set their own (None restores a default)
            "limits": {"upgrades-per-second": 0, "messages-per-second": 0},
            # each daemon its own database, never the user's state directory
            "store": {"path": os.path.join(self.tmp.name, "chathub.db")},
        }
        if os.environ.get("CHATHUB_TEST_CLUSTER") == "redis":
            # a node of a hub of its own on the shared redis-server
            base.update(cluster_config(shared_redis()))
        if secret is not None or secret_file_text is not None:
            self.secret_path = os.path.join(self.tmp.name, "secret")
            text = secret_file_text if secret_file_text is not None else secret + "\n"
            with open(self.secret_path, "w", encoding="utf-8") as f:
                f.write(text)
            base["auth"]["secret-file"] = self.secret_path
        else:
            self.secret_path = None
        self.config = merge_config(base, config)
        self.config_path = os.path.join(self.tmp.name, "chathubd.conf")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(render_keyfile(self.config))
        self.env = dict(os.environ)
        self.env.setdefault("G_DEBUG", "fatal-criticals")
        self.env["LC_ALL"] = "C.UTF-8"
        self.env.pop("CHATHUB_JWT_SECRET", None)
        for k, v in (env or {}).items():
            if v is None:
                self.env.pop(k, None)
            else:
                self.env[k] = v
        self.args = list(args)
        if verbose:
            self.args.append("--verbose")
        self.port_timeout = port_timeout
        self.nofile = nofile     # hard open-file limit for the daemon, or None
        self.proc = None
        self.port = None
        self.log = []            # stderr lines (str, without newline)
        self._cond = threading.Condition()
        self._reader = None
        self.returncode = None

    # -- lifecycle ---------------------------------------------------------
    def command(self):
        wrapper = shlex.split(os.environ.get("CHATHUBD_WRAPPER", ""))
        return wrapper + [daemon_path(), "--config", self.config_path, "--port", "0"] + self.args

    def start(self):
        path = daemon_path()
        if not os.access(path, os.X_OK):
            raise DaemonError("daemon binary not found or not executable: %s (set CHATHUBD)" % path)
        preexec = None
        if self.nofile is not None:
            import resource
            n = self.nofile
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # noqa: E731
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env, cwd=self.tmp.name, preexec_fn=preexec)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + scaled(self.port_timeout)
        with self._cond:
            while True:
                for line in self.log:
                    m = PORT_RE.search(line)
                    if m:
                        self.port = int(m.group(1))
                        return self
                if self.proc.poll() is not None and not self._reader.is_alive():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        rc = self.proc.poll()
        self.kill()
        raise DaemonError("daemon did not announce ws://ADDR:PORT/ws (exit status %r); stderr:\n%s"
                          % (rc, "\n".join(self.log)))

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if VERBOSE:
                sys.stderr.write("[chathubd %d] %s\n" % (self.proc.pid, line))
            with self._cond:
                self.log.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            return None
        if self._reader:
            self._reader.join(scaled(2))
        return self.returncode

    def stop(self, timeout=10.0, signum=signal.SIGTERM):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                return None
        self.returncode = self.proc.returncode
        if self._reader:
            self._reader.join(scaled(2))
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if self.proc is not None:
            if self._reader is not None:
                self._reader.join(scaled(2))
            try:
                self.proc.stderr.close()
            except (OSError, ValueError):
                pass
        try:
            self.tmp.cleanup()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()

    # -- inspection --------------------------------------------------------
    def log_text(self):
        with self._cond:
            return "\n".join(self.log)

    def wait_for_log(self, regex, timeout=5.0):
        pat = re.compile(regex)
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                for line in self.log:
                    if pat.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    # -- addresses and tokens ---------------------------------------------
    def ws_uri(self, token=None, path="/ws"):
        uri = "ws://127.0.0.1:%d%s" % (self.port, path)
        if token is not None:
            uri += "?access_token=" + urllib.parse.quote(token, safe="")
        return uri

    def token(self, user_id=None, **claims):
        """An HS* token for this daemon's secret and algorithm."""
        alg = self.config["auth"].get("algorithm", "HS256")
        if user_id is not None:
            claims.setdefault("user_id", user_id)
        claims.setdefault("exp", now() + 3600)
        return hs_token(claims, self.secret, alg=alg)


def run_daemon_expect_exit(config=None, secret=DEFAULT_SECRET, env=None, args=(), timeout=5.0,
                           **kw):
    """Start a daemon that is expected to refuse to start.

    Returns (exit status, stderr text). If it comes up listening instead, it is stopped
    and (None, stderr text) is returned.
    """
    d = Daemon(config=config, secret=secret, env=env, args=args, port_timeout=timeout, **kw)
    try:
        try:
            d.start()
        except DaemonError:
            d.wait(2)
            return d.proc.returncode if d.proc else None, d.log_text()
        d.stop()
        return None, d.log_text()
    finally:
        d.cleanup()


# ---------------------------------------------------------------------------
# JWT
# ---------------------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def _segment(obj):
    if isinstance(obj, (bytes, str)):
        return b64url(obj)          # raw JSON text (or garbage) as given
    return b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def hmac_sign(signing_input, key, alg="HS256"):
    if isinstance(key, str):
        key = key.encode("utf-8")
    return hmac.new(key, signing_input.encode("ascii"), _HASHES[alg]).digest()


def jws(header, claims, signer):
    """Build a compact JWS. header/claims: dict, or str/bytes used verbatim as the
    segment's JSON text. signer(signing_input: str) -> signature bytes (or None for an
    empty signature)."""
    signing_input = _segment(header) + "." + _segment(claims)
    sig = signer(signing_input) if signer else None
    return signing_input + "." + (b64url(sig) if sig else "")


def hs_token(claims, secret, alg="HS256", header=None, sign_alg=None):
    """HS* token; header overrides/extends {"alg": alg, "typ": "JWT"}; sign_alg lets the
    header name one algorithm while the MAC uses another."""
    h = {"alg": alg, "typ": "JWT"}
    if header:
        h.update(header)
    return jws(h, claims, lambda si: hmac_sign(si, secret, sign_alg or alg))


def none_token(claims, alg_name="none"):
    return jws({"alg": alg_name, "typ": "JWT"}, claims, None)


class KeyPairs:
    """RSA and EC P-256 key pairs generated with the openssl command line."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-keys-")
        d = self.tmp.name
        self.rsa_priv = os.path.join(d, "rsa.pem")
        self.rsa_pub = os.path.join(d, "rsa.pub.pem")
        self.rsa2_priv = os.path.join(d, "rsa2.pem")
        self.ec_priv = os.path.join(d, "ec.pem")
        self.ec_pub = os.path.join(d, "ec.pub.pem")
        self.ec2_priv = os.path.join(d, "ec2.pem")
        for path in (self.rsa_priv, self.rsa2_priv):
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
        for path in (self.ec_priv, self.ec2_priv):
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        _openssl("pkey", "-in", self.rsa_priv, "-pubout", "-out", self.rsa_pub)
        _openssl("pkey", "-in", self.ec_priv, "-pubout", "-out", self.ec_pub)

    def cleanup(self):
        self.tmp.cleanup()


_SHARED_KEYS = None


def shared_keys():
    """One KeyPairs per process, removed at exit."""
    global _SHARED_KEYS
    if _SHARED_KEYS is None:
        import atexit
        _SHARED_KEYS = KeyPairs()
        atexit.register(_SHARED_KEYS.cleanup)
    return _SHARED_KEYS


def _openssl(*args, input=None):
    p = subprocess.run(("openssl",) + args, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


def openssl_sign_sha256(data, private_key_path):
    if isinstance(data, str):
        data = data.encode("ascii")
    return _openssl("dgst", "-sha256", "-sign", private_key_path, input=data)


def openssl_verify_sha256(data, signature_der, public_key_path):
    if isinstance(data, str):
        data = data.encode("ascii")
    with tempfile.NamedTemporaryFile() as sigf:
        sigf.write(signature_der)
        sigf.flush()
        p = subprocess.run(["openssl", "dgst", "-sha256", "-verify", public_key_path,
                            "-signature", sigf.name], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
    return p.returncode == 0


def _der_read(buf, pos, expected_tag):
    tag = buf[pos]
    if tag != expected_tag:
        raise ValueError("DER: tag %#x, expected %#x" % (tag, expected_tag))
    pos += 1
    length = buf[pos]
    pos += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return buf[pos:pos + length], pos + length


def ecdsa_der_to_raw(der, size=32):
    """DER ECDSA-Sig-Value (SEQUENCE {INTEGER r, INTEGER s}) -> r||s, each `size` bytes."""
    seq, _ = _der_read(der, 0, 0x30)
    r, pos = _der_read(seq, 0, 0x02)
    s, _ = _der_read(seq, pos, 0x02)
    r = int.from_bytes(r, "big")
    s = int.from_bytes(s, "big")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_raw_to_der(raw):
    half = len(raw) // 2

    def der_int(b):
        b = b.lstrip(b"\0") or b"\0"
        if b[0] & 0x80:
            b = b"\0" + b
        return bytes([0x02, len(b)]) + b

    body = der_int(raw[:half]) + der_int(raw[half:])
    return bytes([0x30, len(body)]) + body


def rs256_token(claims, private_key_path, header=None):
    h = {"alg": "RS256", "typ": "JWT"}
    if header:
        h.update(header)
    return jws(h, claims, lambda si: openssl_sign_sha256(si, private_key_path))


def es256_token(claims, private_key_path, header=None):
    h = {"alg": "ES256", "typ": "JWT"}
    if header:
        h.update(header)
    return jws(h, claims, lambda si: ecdsa_der_to_raw(openssl_sign_sha256(si, private_key_path)))


# ---------------------------------------------------------------------------
# Raw HTTP and WebSocket
# ---------------------------------------------------------------------------

class HTTPResponse:
    def __init__(self, status, reason, headers, body, sock, leftover=b""):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value) in order
        self.body = body
        self.sock = sock
        self.leftover = leftover

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def server_closed(self, timeout=3.0):
        """True if the server closes the connection (EOF or reset) within timeout."""
        return wait_socket_closed(self.sock, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_socket_closed(sock, timeout=3.0):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                return True
            raise
        if not data:
            return True


def _read_http_head(sock, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading the HTTP response head (got %r)" % buf[:200])
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the HTTP response head (got %r)" % buf[:200])
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, reason, headers, rest


def _read_exact(sock, buf, n, deadline):
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading %d bytes" % n)
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def _read_body(sock, status, headers, rest, deadline, method="GET"):
    hdr = {k.lower(): v for k, v in headers}
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        return b"", rest
    if hdr.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        buf = rest
        while True:
            while b"\r\n" not in buf:
                buf = _read_exact(sock, buf, len(buf) + 1, deadline)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            buf = _read_exact(sock, buf, size + 2, deadline)
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return body, buf
    if "content-length" in hdr:
        n = int(hdr["content-length"])
        buf = _read_exact(sock, rest, n, deadline)
        return buf[:n], buf[n:]
    # read until close
    body = rest
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading a body delimited by close")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return body, b""
        body += chunk


def http_request(port, method="GET", path="/ws", headers=None, body=b"", timeout=5.0,
                 host="127.0.0.1"):
    """Send one HTTP/1.1 request on a new connection (kept open: keep-alive unless the
    caller says otherwise) and return an HTTPResponse whose socket is still open."""
    sock = socket.create_connection((host, port), timeout=scaled(timeout))
    hdrs = [("Host", "%s:%d" % (host, port))]
    hdrs += list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if body:
        hdrs.append(("Content-Length", str(len(body))))
    req = "%s %s HTTP/1.1\r\n" % (method, path)
    req += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    sock.sendall(req.encode("iso-8859-1") + body)
    deadline = time.monotonic() + scaled(timeout)
    status, reason, rh, rest = _read_http_head(sock, deadline)
    data, leftover = _read_body(sock, status, rh, rest, deadline, method)
    return HTTPResponse(status, reason, rh, data, sock, leftover)


def upgrade_headers(key=None, token=None, extra=None):
    h = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", key or base64.b64encode(os.urandom(16)).decode()),
         ("Sec-WebSocket-Version", "13")]
    if token is not None:
        h.append(("Authorization", "Bearer " + token))
    h += list((extra or {}).items()) if isinstance(extra, dict) else list(extra or [])
    return h


def ws_path(token=None, path="/ws"):
    if token is None:
        return path
    return path + "?access_token=" + urllib.parse.quote(token, safe="")


class HandshakeRefused(Exception):
    def __init__(self, response):
        super().__init__("WebSocket upgrade refused: HTTP %d %s %r"
                         % (response.status, response.reason, response.body[:300]))
        self.response = response


class Frame:
    __slots__ = ("fin", "opcode", "payload", "rsv")

    def __init__(self, fin, opcode, payload, rsv=0):
        self.fin, self.opcode, self.payload, self.rsv = fin, opcode, payload, rsv

    def close_code(self):
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    def close_reason(self):
        return self.payload[2:].decode("utf-8", "replace")

    def __repr__(self):
        p = self.payload if len(self.payload) < 80 else self.payload[:80] + b"..."
        return "Frame(fin=%s, opcode=%#x, len=%d, %r)" % (self.fin, self.opcode, len(self.payload), p)


class ConnectionClosedRaw(Exception):
    """The peer closed the TCP connection (EOF or reset) without a close frame in between."""


class CloseReceived(Exception):
    def __init__(self, code, reason):
        super().__init__("close frame received: %r %r" % (code, reason))
        self.code = code
        self.reason = reason


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor_mask(payload, key)


def _xor_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class RawWS:
    """A WebSocket client on a plain blocking socket."""

    def __init__(self, sock, leftover=b"", response=None):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.response = response
        self.pings = 0                  # pings seen by recv_* helpers
        self.eof = False

    @classmethod
    def connect(cls, port, token=None, query_token=None, path="/ws", extra_headers=None,
                rcvbuf=None, timeout=5.0, host="127.0.0.1", early_data=b""):
        """Open a socket and upgrade. token -> Authorization header; query_token ->
        ?access_token=; early_data is sent in the same write as the request (frames a client
        pipelines behind its upgrade). Raises HandshakeRefused on a non-101 answer."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(scaled(timeout))
        sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = [("Host", "%s:%d" % (host, port))] + upgrade_headers(key, token, extra_headers)
        req = "GET %s HTTP/1.1\r\n" % ws_path(query_token, path)
        req += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
        sock.sendall(req.encode("iso-8859-1") + early_data)
        deadline = time.monotonic() + scaled(timeout)
        status, reason, rh, rest = _read_http_head(sock, deadline)
        if status != 101:
            body, left = _read_body(sock, status, rh, rest, deadline)
            raise HandshakeRefused(HTTPResponse(status, reason, rh, body, sock, left))
        resp = HTTPResponse(status, reason, rh, b"", sock)
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if resp.header("Sec-WebSocket-Accept") != accept:
            sock.close()
            raise AssertionError("bad Sec-WebSocket-Accept %r" % resp.header("Sec-WebSocket-Accept"))
        return cls(sock, rest, resp)

    # -- sending ------------------------------------------------------------
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.sock.sendall(encode_frame(opcode, payload, fin, mask, rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, ensure_ascii=False))

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_fragmented(self, parts, opcode=OP_TEXT, final=True):
        """Send parts as one fragmented message (first frame opcode, then continuations).
        final=False leaves the message unfinished (last frame without FIN)."""
        for i, part in enumerate(parts):
            op = opcode if i == 0 else OP_CONT
            fin = final and i == len(parts) - 1
            self.send_frame(op, part, fin=fin)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    def send_close(self, code=1000, reason=""):
        payload = struct.pack("!H", code) + reason.encode("utf-8") if code is not None else b""
        try:
            self.send_frame(OP_CLOSE, payload)
        except OSError:
            pass

    # -- receiving ------------------------------------------------------------
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for a frame")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 18)
        except socket.timeout:
            raise TimeoutError("timed out waiting for a frame")
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise ConnectionClosedRaw("connection reset: %s" % e)
        if not chunk:
            self.eof = True
            raise ConnectionClosedRaw("EOF")
        self.buf += chunk

    def recv_frame(self, timeout=3.0):
        deadline = time.monotonic() + scaled(timeout)
        while True:
            f = self._parse_frame()
            if f is not None:
                return f
            self._fill(deadline)

    def _parse_frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        masked = b1 & 0x80
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        if masked:
            payload = _xor_mask(payload, key)
        del buf[:pos + n]
        if masked:
            raise AssertionError("server sent a masked frame")
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, (b0 >> 4) & 0x7)

    def recv_message(self, timeout=3.0, answer_pings=False):
        """Next data message as (opcode, payload bytes), reassembling fragments.
        Pings are counted (and answered if answer_pings); a close frame raises CloseReceived."""
        deadline = time.monotonic() + scaled(timeout)
        parts = []
        first_op = None
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()) / TIME_SCALE)
            if f.opcode == OP_PING:
                self.pings += 1
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                raise CloseReceived(f.close_code(), f.close_reason())
            if first_op is None:
                first_op = f.opcode
            parts.append(f.payload)
            if f.fin:
                return first_op, b"".join(parts)

    def answer_pings_for(self, seconds):
        """Reads for `seconds` (real time), answering pings and dropping data messages."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                self.recv_message(timeout=0.2, answer_pings=True)
            except TimeoutError:
                pass

    def recv_text(self, timeout=3.0, answer_pings=False):
        op, payload = self.recv_message(timeout, answer_pings)
        if op != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %#x" % op)
        return payload.decode("utf-8")

    def recv_json(self, timeout=3.0, answer_pings=False):
        return json.loads(self.recv_text(timeout, answer_pings))

    def expect_close(self, timeout=5.0, answer_pings=False, reply=True, collect=None):
        """Read until a close frame; returns (code, reason). Data messages in between are
        appended to `collect` (a list) if given. Raises ConnectionClosedRaw on EOF/reset
        without a close frame, TimeoutError if nothing closes."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            try:
                op, payload = self.recv_message(max(0.0, deadline - time.monotonic()) / TIME_SCALE,
                                                answer_pings)
            except CloseReceived as c:
                if reply:
                    self.send_close(c.code if c.code is not None else 1000)
                return c.code, c.reason
            if collect is not None:
                collect.append((op, payload))

    def wait_eof(self, timeout=5.0):
        """Discard incoming bytes until the server closes the TCP connection."""
        return wait_socket_closed(self.sock, timeout)

    def close(self, code=1000, timeout=2.0):
        """Polite close: send close, wait for the server's close frame (best effort)."""
        try:
            self.send_close(code)
            deadline = time.monotonic() + scaled(timeout)
            while time.monotonic() < deadline:
                try:
                    f = self.recv_frame(max(0.0, deadline - time.monotonic()) / TIME_SCALE)
                except (TimeoutError, ConnectionClosedRaw, OSError):
                    break
                if f.opcode == OP_CLOSE:
                    break
        finally:
            self.abort(reset=False)

    def abort(self, reset=True):
        """Drop the TCP connection without a close frame (RST if reset)."""
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode("utf-8")


# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------

_WS = " \t\r\n"


def top_level_members(text):
    """[(key, value_start, value_end)] of a JSON object text, in order, without
    re-serializing: text[value_start:value_end] is the exact value text."""
    dec = json.JSONDecoder()
    i = 0
    n = len(text)

    def skip(i):
        while i < n and text[i] in _WS:
            i += 1
        return i

    i = skip(i)
    if i >= n or text[i] != "{":
        raise ValueError("not a JSON object: %r" % text[:80])
    i = skip(i + 1)
    out = []
    if i < n and text[i] == "}":
        return out
    while True:
        key, i = dec.raw_decode(text, i)
        i = skip(i)
        if text[i] != ":":
            raise ValueError("expected ':' at %d" % i)
        i = skip(i + 1)
        _, end = dec.raw_decode(text, i)
        out.append((key, i, end))
        i = skip(end)
        if text[i] == ",":
            i = skip(i + 1)
            continue
        if text[i] == "}":
            return out
        raise ValueError("expected ',' or '}' at %d" % i)


def raw_member(text, key):
    for k, s, e in top_level_members(text):
        if k == key:
            return text[s:e]
    return None


def pad_message_to(size, builder):
    """Return text with len(text.encode()) == size, where builder(filler) -> JSON text."""
    base = len(builder("").encode("utf-8"))
    if base > size:
        raise ValueError("base message already %d bytes" % base)
    text = builder("x" * (size - base))
    assert len(text.encode("utf-8")) == size
    return text


# ---------------------------------------------------------------------------
# websockets-library helpers
# ---------------------------------------------------------------------------

def bearer(token):
    return {"Authorization": "Bearer " + token}


async def ws_connect(daemon, user_id=None, token=None, query=False, **kw):
    """A websockets client authenticated as user_id (or with the given token)."""
    import websockets
    if token is None:
        token = daemon.token(user_id)
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", scaled(5))
    kw.setdefault("close_timeout", scaled(2))
    if query:
        return await websockets.connect(daemon.ws_uri(token), **kw)
    return await websockets.connect(daemon.ws_uri(), extra_headers=bearer(token), **kw)


async def recv_text(ws, timeout=3.0):
    raw = await asyncio.wait_for(ws.recv(), scaled(timeout))
    if not isinstance(raw, str):
        raise AssertionError("expected a text message, got %r" % (raw[:80],))
    return raw


async def recv_json(ws, timeout=3.0):
    return json.loads(await recv_text(ws, timeout))


class RecvMixin:
    """recv() for test cases with websockets clients (ws.user_id set): the next message as
    JSON, its text kept in self.last_text; a timeout or a frame that is not JSON fails the
    test with the user's id."""

    async def recv(self, ws, timeout=3.0):
        try:
            text = await recv_text(ws, timeout)
        except asyncio.TimeoutError:
            self.fail("no frame within %.1f s on user %s's connection" % (timeout, ws.user_id))
        self.last_text = text
        try:
            return json.loads(text)
        except ValueError as e:
            self.fail("the daemon sent a frame that is not JSON (%s): %r" % (e, text[:300]))


async def send_json(ws, obj):
    await ws.send(json.dumps(obj, ensure_ascii=False))


async def drain_until_pong(ws, timeout=3.0):
    """Send a JSON ping and read up to its pong; returns the raw texts that came before
    the pong (empty when nothing else was queued for this connection)."""
    await send_json(ws, {"type": "ping"})
    others = []
    while True:
        text = await recv_text(ws, timeout)
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("type") == "pong":
            return others
        others.append(text)


async def assert_only_pong(ws, timeout=3.0):
    """Send a JSON ping; the very next frame must be the pong. Proves that nothing else
    was queued for this connection before the ping was handled."""
    others = await drain_until_pong(ws, timeout)
    if others:
        raise AssertionError("expected only a pong, first got %r" % (others[:3],))


async def close_all(*conns):
    for ws in conns:
        try:
            await asyncio.wait_for(ws.close(), scaled(3))
        except Exception:
            pass


class RoomStreamMixin:
    """Protocol 1.1 helpers for unittest cases with RawWS clients (ws.user_id set)."""

    def join(self, ws, room, since=None, epoch=None):
        """Joins `room` (recovering after `since` in `epoch` when given); returns the
        connection's own acknowledgement, whose 1.1 fields are checked."""
        request = {"type": "join", "room_id": room}
        if since is not None:
            request["since"] = since
        if epoch is not None:
            request["epoch"] = epoch
        ws.send_json(request)
        while True:
            ack = ws.recv_json(timeout=10)
            if ack["type"] == "join" and ack.get("from") == ws.user_id:
                break
        self.assertEqual(ack["room_id"], room, ack)
        self.assertIsInstance(ack["offset"], int, ack)
        self.assertIsInstance(ack["epoch"], str, ack)
        if since is None:
            self.assertNotIn("recovered", ack)
        else:
            self.assertIsInstance(ack["recovered"], bool, ack)
        return ack

    def recv_messages(self, ws, n, timeout=10.0):
        """The next n room messages (join and leave events of others are skipped)."""
        got = []
        while len(got) < n:
            m = ws.recv_json(timeout)
            if m["type"] in ("join", "leave"):
                continue
            self.assertEqual(m["type"], "message", m)
            got.append(m)
        return got

    def assert_only_pong(self, ws):
        """A ping is answered after everything asked before it: nothing else is on its way."""
        ws.send_json({"type": "ping"})
        m = ws.recv_json()
        self.assertEqual(m["type"], "pong", m)


class DaemonTestMixin:
    """Per-class daemon for unittest classes: set DAEMON_CONFIG / DAEMON_KW."""

    DAEMON_CONFIG = None
    DAEMON_KW = {}
    EXPECT_CLEAN_EXIT = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = Daemon(config=cls.DAEMON_CONFIG, **cls.DAEMON_KW)
        try:
            cls.daemon.start()
        except Exception:
            cls.daemon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        d = cls.daemon
        alive = d.alive()
        rc = d.stop()
        log = d.log_text()
        d.cleanup()
        super().tearDownClass()
        if cls.EXPECT_CLEAN_EXIT:
            if not alive:
                raise AssertionError("daemon died during the tests (status %r); stderr tail:\n%s"
                                     % (d.returncode, log[-4000:]))
            if rc != 0:
                raise AssertionError("daemon exit status after SIGTERM: %r (expected 0); stderr tail:\n%s"
                                     % (rc, log[-4000:]))


def main():
    unittest.main(verbosity=2)


_UID = iter(range(10000, 1 << 30))
_ROOM = iter(range(100, 1 << 30))


def next_user_id():
    """A user id not used by any other test in this process."""
    return next(_UID)


def next_room_id():
    return next(_ROOM)
