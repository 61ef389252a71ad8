#!/usr/bin/python3
"""io.github.chathub.Hub1 on a private dbus-daemon (never the machine's bus): activation,
every method, property and signal with real WebSocket clients, access control on a bus
that enforces chathub's system policy, chathubctl end to end, and the data/ files.

  CHATHUBD, CHATHUBCTL   the built binaries (tests/meson.build sets them)
  G_TEST_BUILDDIR        tests/ in the build directory (for the configured data files)
"""

import sys

# "--caller ADDRESS CALLS_JSON": make D-Bus calls and print their outcome as JSON. The
# access-control tests run this as an unprivileged user when they run as root, so it
# comes before anything that user may not be able to import or write.
if __name__ == "__main__" and sys.argv[1:2] == ["--caller"]:
    import json

    import gi

    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib

    connection = Gio.DBusConnection.new_for_address_sync(
        sys.argv[2], Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
    outcomes = []
    for destination, path, interface, method, signature, args in json.loads(sys.argv[3]):
        params = GLib.Variant(signature, tuple(args)) if signature else None
        try:
            reply = connection.call_sync(destination, path, interface, method, params, None,
                                         Gio.DBusCallFlags.NONE, 10000, None)
            outcomes.append({"ok": True, "reply": reply.unpack() if reply else None})
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e)
            Gio.DBusError.strip_remote_error(e)
            outcomes.append({"ok": False, "error": name, "message": e.message})
    print(json.dumps(outcomes))
    sys.exit(0)

import grp  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402

import gi  # noqa: E402

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "python"))
import chathub_harness as h  # noqa: E402

NAME = "io.github.chathub.Hub1"
PATH = "/io/github/chathub/Hub1"
IFACE = "io.github.chathub.Hub1"
ERR = "io.github.chathub.Hub1.Error."
SECRET = "dbus-test-secret-0123456789abcdef"
NOBODY = 65534
CALL_TIMEOUT_MS = 10000


def built(env_name, *fallback):
    path = os.environ.get(env_name) or os.path.join(TOP, "_build", *fallback)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s not built: %s" % (env_name, path))
    return path


CHATHUBD = built("CHATHUBD", "src", "daemon", "chathubd")
CHATHUBCTL = built("CHATHUBCTL", "src", "ctl", "chathubctl")
BUILD_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(CHATHUBD)))
DBUS_DAEMON = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
if not os.access(DBUS_DAEMON, os.X_OK):
    raise SystemExit("test_dbus: dbus-daemon is not installed (Debian: apt install dbus-daemon)")


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + h.scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def token(user_id):
    return h.hs_token({"user_id": user_id, "exp": int(time.time()) + 3600}, SECRET)


def remote_error(error):
    return Gio.DBusError.get_remote_error(error) if isinstance(error, GLib.Error) else None


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------
# A private bus
# ---------------------------------------------------------------------------

class PrivateBus:
    """dbus-daemon --config-file on a socket in a temporary directory.

    role "session": a session-type bus whose service directory the test fills;
    role "system": deny-by-default like the system bus, with data/dbus's policy included.
    Activated services inherit `env`; their output lands in `log_path`."""

    def __init__(self, role="session", env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-dbus-")
        os.chmod(self.tmp.name, 0o755)      # an unprivileged caller must reach the socket
        self.dir = self.tmp.name
        self.socket = os.path.join(self.dir, "bus")
        self.address = "unix:path=" + self.socket
        self.servicedir = os.path.join(self.dir, "services")
        os.mkdir(self.servicedir)
        self.config_path = os.path.join(self.dir, "bus.conf")
        self.log_path = os.path.join(self.dir, "bus.log")
        template = "session-bus.conf.in" if role == "session" else "system-bus.conf.in"
        with open(os.path.join(HERE, template)) as f:
            text = f.read()
        text = (text.replace("@SOCKET@", self.socket)
                .replace("@SERVICEDIR@", self.servicedir)
                .replace("@START_TIMEOUT_MS@", str(int(h.scaled(10000))))
                .replace("@POLICY@", os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.conf"))
                .replace("@DAEMON_USER@", pwd.getpwuid(os.getuid()).pw_name))
        with open(self.config_path, "w") as f:
            f.write(text)
        self.env = dict(os.environ)
        for k in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "DBUS_STARTER_ADDRESS",
                  "DBUS_STARTER_BUS_TYPE", "CHATHUB_JWT_SECRET"):
            self.env.pop(k, None)
        self.env["LC_ALL"] = "C.UTF-8"
        self.env.setdefault("G_DEBUG", "fatal-criticals")
        self.env.update(env or {})
        self.proc = None
        self._connection = None

    def start(self):
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([DBUS_DAEMON, "--config-file=" + self.config_path,
                                          "--nofork", "--nopidfile", "--nosyslog"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self.env, cwd=self.dir)
        finally:
            log.close()
        if not wait_until(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, 10):
            raise AssertionError("dbus-daemon did not create its socket")
        if self.proc.poll() is not None:
            raise AssertionError("dbus-daemon refused its configuration:\n" + self.log())
        return self

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def connect(self):
        return Gio.DBusConnection.new_for_address_sync(
            self.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
            | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    @property
    def connection(self):
        if self._connection is None:
            self._connection = self.connect()
        return self._connection

    def bus_call(self, method, args=None, signature=None):
        params = GLib.Variant(signature, args) if signature else None
        return self.connection.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                         "org.freedesktop.DBus", method, params, None,
                                         Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None).unpack()

    def has_owner(self, name=NAME):
        return self.bus_call("NameHasOwner", (name,), "(s)")[0]

    def owner_pid(self, name=NAME):
        return self.bus_call("GetConnectionUnixProcessID", (name,), "(s)")[0]

    def stop(self):
        if self._connection is not None:
            try:
                self._connection.close_sync(None)
            except GLib.Error:
                pass
            self._connection = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(h.scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        self.tmp.cleanup()


class Hub:
    """Calls on io.github.chathub.Hub1 through one connection."""

    def __init__(self, connection):
        self.connection = connection

    def call(self, method, args=None, signature=None, interface=IFACE):
        params = GLib.Variant(signature, args) if signature else None
        reply = self.connection.call_sync(NAME, PATH, interface, method, params, None,
                                          Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
        return reply.unpack() if reply is not None else None

    def error_of(self, method, args=None, signature=None, interface=IFACE):
        try:
            self.call(method, args, signature, interface)
        except GLib.Error as e:
            return remote_error(e), e.message
        return None, None

    def prop(self, name):
        return self.call("Get", (IFACE, name), "(ss)", "org.freedesktop.DBus.Properties")[0]

    def all_props(self):
        return self.call("GetAll", (IFACE,), "(s)", "org.freedesktop.DBus.Properties")[0]

    def post(self, content, **options):
        """Broadcast(): (the message id, how many connections it was queued to)."""
        opts = {}
        for key, value in options.items():
            opts[key] = value if isinstance(value, GLib.Variant) else (
                GLib.Variant("s", value) if isinstance(value, str) else GLib.Variant("t", value))
        return tuple(self.call("Broadcast", (content, opts), "(sa{sv})"))

    def broadcast(self, content, **options):
        return self.post(content, **options)[0]


class SignalRecorder:
    """Records every signal from PATH on its own connection and main loop (in a thread)."""

    def __init__(self, bus):
        self.bus = bus
        self.events = []
        self.cond = threading.Condition()
        self.ready = threading.Event()
        self.error = None
        self.loop = None
        self.context = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(h.scaled(10)) or self.error is not None:
            raise AssertionError("signal recorder did not start: %r" % (self.error,))

    def _run(self):
        try:
            self.context = GLib.MainContext.new()
            self.context.push_thread_default()
            connection = self.bus.connect()
            connection.signal_subscribe(None, None, None, PATH, None,
                                        Gio.DBusSignalFlags.NONE, self._on_signal)
            # a round trip: the match rule is in place once the answer is back
            connection.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "GetId", None, None,
                                 Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
            self.connection = connection
            self.loop = GLib.MainLoop.new(self.context, False)
        except Exception as e:    # reported by the constructor
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run()
        connection.close_sync(None)

    def _on_signal(self, connection, sender, path, interface, name, params):
        with self.cond:
            self.events.append((name, params.unpack()))
            self.cond.notify_all()

    def mark(self):
        """A position in the record, for wait_for(start=)."""
        with self.cond:
            return len(self.events)

    def wait_for(self, predicate, timeout=5.0, start=0):
        """The first recorded (name, args) from position start that predicate accepts."""
        deadline = time.monotonic() + h.scaled(timeout)
        with self.cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def names(self):
        with self.cond:
            return [e[0] for e in self.events]

    def client_count_changes(self):
        with self.cond:
            return [e[1][1]["ClientCount"] for e in self.events
                    if e[0] == "PropertiesChanged" and "ClientCount" in e[1][1]]

    def stop(self):
        if self.loop is not None:
            self.context.invoke_full(GLib.PRIORITY_DEFAULT, self.loop.quit)
        self.thread.join(h.scaled(5))


# ---------------------------------------------------------------------------
# chathubd on a bus
# ---------------------------------------------------------------------------

def write_config(directory, extra=None, port=0):
    secret_path = os.path.join(directory, "secret")
    with open(secret_path, "w") as f:
        f.write(SECRET + "\n")
    groups = {"server": {"address": "127.0.0.1", "port": port},
              "auth": {"algorithm": "HS256", "secret-file": secret_path},
              "store": {"path": os.path.join(directory, "chathub.db")}}
    for group, keys in (extra or {}).items():
        groups.setdefault(group, {}).update(keys)
    path = os.path.join(directory, "chathub.conf")
    with open(path, "w") as f:
        f.write(h.render_keyfile(groups))
    return path


class BusDaemon(h.Daemon):
    """chathubd started by the test with --session or --system on a private bus."""

    def __init__(self, bus, bus_option="--session", config=None, extra_args=()):
        env = {"DBUS_SESSION_BUS_ADDRESS": bus.address if bus_option == "--session" else None,
               "DBUS_SYSTEM_BUS_ADDRESS": bus.address if bus_option == "--system" else None,
               "CHATHUBD_WRAPPER": None}
        args = ([bus_option] if bus_option else []) + list(extra_args)
        super().__init__(config=config, secret=SECRET, env=env, args=args)
        self.bus = bus

    def wait_owned(self, timeout=5.0):
        return wait_until(lambda: self.bus.has_owner(), timeout)


def ws_connect(port, user_id):
    ws = h.RawWS.connect(port, token(user_id))
    ws.user_id = user_id
    return ws


def assert_nothing_queued(test, ws):
    """A JSON ping's answer is the very next frame: nothing else was waiting."""
    ws.send_text('{"type":"ping"}')
    test.assertEqual(ws.recv_json()["type"], "pong")


def assert_snake_case_keys(test, value):
    """Every object key in chathubctl's JSON output is snake_case."""
    if isinstance(value, dict):
        for key, member in value.items():
            test.assertRegex(key, r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
            assert_snake_case_keys(test, member)
    elif isinstance(value, list):
        for member in value:
            assert_snake_case_keys(test, member)


def run_ctl(*args, bus=None, system=False, timeout=20, user=None):
    env = dict(os.environ)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    env["LC_ALL"] = "C.UTF-8"
    if bus is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS" if system else "DBUS_SESSION_BUS_ADDRESS"] = bus.address
    kw = {}
    if user is not None:
        kw = {"user": user, "group": user, "extra_groups": []}
    return subprocess.run([CHATHUBCTL] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=h.scaled(timeout), text=True, **kw)


# ---------------------------------------------------------------------------
# Activation
# ---------------------------------------------------------------------------

class ActivationTests(unittest.TestCase):
    """The real session activation file (data/dbus/*.service.in, @libexecdir@ pointing at
    the build) in the private bus's service directory; chathubd finds its configuration in
    $XDG_CONFIG_HOME/chathub/chathub.conf, as a desktop session service does."""

    def setUp(self):
        self.home = tempfile.TemporaryDirectory(prefix="chathub-xdg-")
        self.addCleanup(self.home.cleanup)
        confdir = os.path.join(self.home.name, "chathub")
        os.mkdir(confdir)
        write_config(confdir)
        self.bus = PrivateBus("session", env={"XDG_CONFIG_HOME": self.home.name})
        with open(os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.service.in")) as f:
            template = f.read()
        text = template.replace("@libexecdir@", os.path.dirname(CHATHUBD))
        text = text.replace("@sysconfdir@", "/nonexistent")
        self.assertNotIn("@", text.split("[D-BUS Service]")[1])
        with open(os.path.join(self.bus.servicedir, NAME + ".service"), "w") as f:
            f.write(text)
        self.bus.start()
        self.addCleanup(self.bus.cleanup)
        self.addCleanup(self.kill_activated)
        self.activated = []

    def kill_activated(self):
        for pid in self.activated:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def activate(self):
        hub = Hub(self.bus.connection)
        self.assertEqual(hub.call("ListClients"), ([],))
        self.assertTrue(self.bus.has_owner(), "the call did not leave the name owned")
        pid = self.bus.owner_pid()
        self.activated.append(pid)
        return hub, pid

    def test_activation_websocket_and_sigterm(self):
        self.assertFalse(self.bus.has_owner())
        self.assertIn(NAME, self.bus.bus_call("ListActivatableNames")[0])

        hub, pid = self.activate()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().split(b"\0")
        self.assertEqual(os.path.realpath(cmdline[0].decode()), os.path.realpath(CHATHUBD))
        self.assertIn(b"--session", cmdline)

        uri = hub.prop("ListenUri")
        m = re.fullmatch(r"ws://127\.0\.0\.1:(\d+)/ws", uri)
        self.assertIsNotNone(m, uri)
        ws = ws_connect(int(m.group(1)), 501)
        ws.send_text('{"type":"ping"}')
        self.assertEqual(ws.recv_json()["type"], "pong")
        self.assertTrue(wait_until(lambda: hub.prop("ClientCount") == 1))

        os.kill(pid, signal.SIGTERM)
        code, reason = ws.expect_close(timeout=5)
        self.assertEqual((code, reason), (1001, "server shutting down"))
        ws.abort()
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 8), "chathubd did not exit")
        self.assertFalse(self.bus.has_owner())
        log = self.bus.log()
        self.assertIn("Owning the name %s" % NAME, log)
        self.assertIn("chathubd stopped", log)
        self.assertNotIn("CRITICAL", log)

        # the next call starts a new instance
        hub, pid2 = self.activate()
        self.assertNotEqual(pid, pid2)
        os.kill(pid2, signal.SIGTERM)
        self.assertTrue(wait_until(lambda: not pid_alive(pid2), 8))

    def test_ctl_activates(self):
        result = run_ctl("--json", "status", bus=self.bus)
        self.assertEqual(result.returncode, 0, result.stderr)
        status = json.loads(result.stdout)
        self.activated.append(self.bus.owner_pid())
        self.assertEqual(status["bus"], "session")
        self.assertRegex(status["listen_uri"], r"^ws://127\.0\.0\.1:\d+/ws$")
        self.assertEqual(status["client_count"], 0)
        os.kill(self.activated[-1], signal.SIGTERM)
        self.assertTrue(wait_until(lambda: not pid_alive(self.activated[-1]), 8))

    def test_activation_failure_is_reported(self):
        # a configuration chathubd refuses: the bus reports the failed start
        with open(os.path.join(self.home.name, "chathub", "chathub.conf"), "w") as f:
            f.write("[server]\nport=99999\n")
        result = run_ctl("status", bus=self.bus)
        self.assertEqual(result.returncode, 3, result.stdout + result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("failed to start", result.stderr)


# ---------------------------------------------------------------------------
# The interface, with real WebSocket clients
# ---------------------------------------------------------------------------

class BusDaemonTestCase(unittest.TestCase):
    ROLE = "session"
    BUS_OPTION = "--session"
    DAEMON_CONFIG = None

    def setUp(self):
        # the previous test's clients were dropped; let the hub see them go
        self.assertTrue(wait_until(lambda: self.hub.prop("ClientCount") == 0, 10),
                        "clients of an earlier test are still registered")

    @classmethod
    def setUpClass(cls):
        cls.bus = PrivateBus(cls.ROLE).start()
        try:
            cls.daemon = BusDaemon(cls.bus, cls.BUS_OPTION, config=cls.DAEMON_CONFIG)
            cls.daemon.start()
            if not cls.daemon.wait_owned():
                raise AssertionError("chathubd did not own %s:\n%s\n%s"
                                     % (NAME, cls.daemon.log_text(), cls.bus.log()))
            cls.hub = Hub(cls.bus.connection)
            cls.recorder = SignalRecorder(cls.bus)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        recorder = getattr(cls, "recorder", None)
        if recorder is not None:
            recorder.stop()
        daemon = getattr(cls, "daemon", None)
        rc = None
        if daemon is not None:
            alive = daemon.alive()
            rc = daemon.stop()
            log = daemon.log_text()
            daemon.cleanup()
        cls.bus.cleanup()
        if daemon is not None:
            if not alive or rc != 0:
                raise AssertionError("chathubd died or did not exit cleanly (status %r):\n%s"
                                     % (rc, log[-4000:]))
            if "CRITICAL" in log or "WARNING" in log:
                raise AssertionError("chathubd logged a warning:\n%s" % log[-4000:])

    def connect(self, user_id):
        ws = ws_connect(self.daemon.port, user_id)
        self.addCleanup(ws.abort)
        return ws

    def join(self, ws, room):
        ws.send_text(json.dumps({"type": "join", "room_id": room}))
        event = ws.recv_json()
        self.assertEqual((event["type"], event["room_id"]), ("join", room))

    def client_id_of(self, user_id, known=()):
        """The client id the hub gave the newest connection of user_id."""
        def find():
            for client_id, uid, _, _ in self.hub.call("ListClients")[0]:
                if uid == user_id and client_id not in known:
                    return client_id
            return None
        client_id = wait_until(find)
        self.assertIsNotNone(client_id, "user %d is not listed" % user_id)
        return client_id


class InterfaceTests(BusDaemonTestCase):

    def test_introspection(self):
        xml = self.hub.call("Introspect", interface="org.freedesktop.DBus.Introspectable")[0]
        node = Gio.DBusNodeInfo.new_for_xml(xml)
        iface = node.lookup_interface(IFACE)
        self.assertIsNotNone(iface)
        methods = {m.name: ("".join(a.signature for a in m.in_args),
                            "".join(a.signature for a in m.out_args)) for m in iface.methods}
        self.assertEqual(methods, {
            "ListClients": ("", "a(stxat)"), "ListRooms": ("", "a(tu)"),
            "RoomMembers": ("t", "at"), "Presence": ("t", "at"), "History": ("ttu", "sas"),
            "Broadcast": ("sa{sv}", "tu"),
            "Disconnect": ("ss", ""), "DisconnectUser": ("ts", "u"), "Reload": ("", "u"),
            "GetStatistics": ("", "a{sv}"), "ListNodes": ("", "a(sa{sv})")})
        signals = {s.name: "".join(a.signature for a in s.args) for s in iface.signals}
        self.assertEqual(signals, {"ClientRegistered": "st", "ClientUnregistered": "stq",
                                   "MessageBroadcast": "tts"})
        props = {p.name: (p.signature, p.flags) for p in iface.properties}
        self.assertEqual(props, {n: (s, Gio.DBusPropertyInfoFlags.READABLE) for n, s in
                                 [("Version", "s"), ("ListenUri", "s"), ("ClientCount", "u"),
                                  ("RoomCount", "u"), ("ClusterNodeCount", "u"),
                                  ("ClusterClientCount", "u"), ("ClusterRoomCount", "u")]})

    def test_properties(self):
        version = subprocess.run([CHATHUBD, "--version"], stdout=subprocess.PIPE, text=True,
                                 timeout=10).stdout.split()[-1]
        props = self.hub.all_props()
        self.assertEqual(props["Version"], version)
        self.assertEqual(props["ListenUri"], "ws://127.0.0.1:%d/ws" % self.daemon.port)
        self.assertIsInstance(props["ClientCount"], int)
        self.assertIsInstance(props["RoomCount"], int)
        # without [cluster] the hub is this node alone
        self.assertEqual(props["ClusterNodeCount"], 1)
        self.assertEqual(props["ClusterClientCount"], props["ClientCount"])
        self.assertEqual(props["ClusterRoomCount"], props["RoomCount"])
        (name, fields), = self.hub.call("ListNodes")[0]
        self.assertEqual((fields["local"], fields["pid"], fields["version"]),
                         (True, self.daemon.proc.pid, version))
        name, message = self.hub.error_of("Set", (IFACE, "ClientCount", GLib.Variant("u", 7)),
                                          "(ssv)", "org.freedesktop.DBus.Properties")
        self.assertIsNotNone(name, "a read-only property was set")

    def test_client_signals_and_count(self):
        user = 1001
        before = self.hub.prop("ClientCount")
        mark = self.recorder.mark()
        ws = self.connect(user)
        registered = self.recorder.wait_for(lambda e: e[0] == "ClientRegistered" and e[1][1] == user)
        self.assertIsNotNone(registered, self.recorder.names())
        client_id = registered[1][0]
        self.assertTrue(self.recorder.wait_for(
            lambda e: e[0] == "PropertiesChanged" and e[1][0] == IFACE
            and e[1][1].get("ClientCount") == before + 1, start=mark),
            (before, self.recorder.events[-8:]))
        self.assertEqual(self.hub.prop("ClientCount"), before + 1)

        clients = {c[0]: c for c in self.hub.call("ListClients")[0]}
        self.assertIn(client_id, clients)
        _, uid, since, rooms = clients[client_id]
        self.assertEqual((uid, rooms), (user, []))
        self.assertLessEqual(abs(since - time.time()), 5)

        mark = self.recorder.mark()
        ws.close(1000)
        unregistered = self.recorder.wait_for(
            lambda e: e[0] == "ClientUnregistered" and e[1][0] == client_id, start=mark)
        self.assertIsNotNone(unregistered, self.recorder.names())
        self.assertEqual(unregistered[1], (client_id, user, 1000))
        self.assertTrue(self.recorder.wait_for(
            lambda e: e[0] == "PropertiesChanged" and e[1][1].get("ClientCount") == before,
            start=mark))
        self.assertNotIn(client_id, [c[0] for c in self.hub.call("ListClients")[0]])

    def test_rooms_and_members(self):
        room, other_room = 7001, 7002
        a1, a2, b = self.connect(1101), self.connect(1101), self.connect(1102)
        rooms_before = self.hub.prop("RoomCount")
        mark = self.recorder.mark()
        for ws in (a1, a2, b):
            self.join(ws, room)
        # the later joins reached the earlier members; drop them
        for ws in (a1, a2):
            while ws.recv_json()["from"] != 1102:
                pass
        self.join(a1, other_room)
        self.assertTrue(self.recorder.wait_for(
            lambda e: e[0] == "PropertiesChanged"
            and e[1][1].get("RoomCount") == rooms_before + 2, start=mark))
        rooms = dict(self.hub.call("ListRooms")[0])
        self.assertEqual((rooms[room], rooms[other_room]), (3, 1))
        self.assertEqual(self.hub.call("RoomMembers", (room,), "(t)"), ([1101, 1102],))
        self.assertEqual(self.hub.call("RoomMembers", (other_room,), "(t)"), ([1101],))
        self.assertEqual(self.hub.call("RoomMembers", (987654,), "(t)"), ([],))
        clients = {c[0]: c for c in self.hub.call("ListClients")[0]}
        listed = [c for c in clients.values() if c[1] == 1101 and other_room in c[3]]
        self.assertEqual(len(listed), 1)
        self.assertEqual(sorted(listed[0][3]), [room, other_room])
        self.assertEqual(self.hub.error_of("RoomMembers", (0,), "(t)")[0], ERR + "InvalidArgument")

    def test_presence(self):
        room = 7003
        # the higher id joins first; the lower one has two connections
        high, low1, low2 = self.connect(1112), self.connect(1111), self.connect(1111)
        for ws in (high, low1, low2):
            self.join(ws, room)
        # the later joins reached the earlier members; drop them
        for ws, joins in ((high, 2), (low1, 1)):
            for _ in range(joins):
                self.assertEqual(ws.recv_json()["type"], "join")
        self.assertEqual(self.hub.call("Presence", (room,), "(t)"), ([1111, 1112],))
        # what a member's presence request is answered with
        low2.send_text(json.dumps({"type": "presence", "room_id": room}))
        self.assertEqual(low2.recv_json()["users"], [1111, 1112])
        self.assertEqual(self.hub.call("Presence", (987655,), "(t)"), ([],))
        self.assertEqual(self.hub.error_of("Presence", (0,), "(t)")[0], ERR + "InvalidArgument")
        high.close(1000)
        self.assertEqual(wait_until(lambda: self.hub.call("Presence", (room,), "(t)")[0] == [1111]
                                    or None), True)

    def send_to_room(self, sender, others, room, contents):
        """Sends each of contents to room from sender; returns the relayed frames (the
        sender's echoes), after every other member received each."""
        relayed = []
        for content in contents:
            sender.send_text(json.dumps({"type": "message", "room_id": room, "content": content}))
            echo = sender.recv_json()
            self.assertEqual((echo["type"], echo["content"]), ("message", content), echo)
            for ws in others:
                self.assertEqual(ws.recv_json(), echo)
            relayed.append(echo)
        return relayed

    def history(self, room, before=0, limit=0):
        epoch, texts = self.hub.call("History", (room, before, limit), "(ttu)")
        self.assertIsInstance(epoch, str)
        return epoch, [json.loads(text) for text in texts]

    def test_history(self):
        room = 7201
        a, b = self.connect(1401), self.connect(1402)
        self.join(a, room)
        self.join(b, room)
        self.assertEqual(a.recv_json()["type"], "join")  # b's join reached a
        sent = self.send_to_room(a, [b], room, ["one", "two"])
        sent += self.send_to_room(b, [a], room, ["three", "four", "five"])
        offsets = [m["offset"] for m in sent]
        self.assertEqual(offsets, list(range(offsets[0], offsets[0] + 5)))

        # exactly the relayed frames, oldest first, with their offsets
        epoch, messages = self.history(room)
        self.assertTrue(epoch)
        self.assertEqual(messages, sent)
        self.assertEqual([m["from"] for m in messages], [1401, 1401, 1402, 1402, 1402])
        # what a member's history request is answered with
        a.send_text(json.dumps({"type": "history", "room_id": room, "limit": 50}))
        answer = a.recv_json()
        self.assertEqual((answer["type"], answer["epoch"], answer["messages"]),
                         ("history", epoch, messages))

        # paging back: the newest below before, at most limit, still oldest first
        self.assertEqual(self.history(room, 0, 2), (epoch, sent[3:]))
        self.assertEqual(self.history(room, offsets[3], 2), (epoch, sent[1:3]))
        self.assertEqual(self.history(room, offsets[1], 2), (epoch, sent[:1]))
        self.assertEqual(self.history(room, offsets[0], 0), (epoch, []))
        self.assertEqual(self.history(room, offsets[4] + 100, 3), (epoch, sent[2:]))

        # whether anyone is in the room does not matter
        a.close(1000)
        b.close(1000)
        self.assertTrue(wait_until(lambda: self.hub.call("Presence", (room,), "(t)") == ([],)))
        self.assertEqual(self.history(room), (epoch, sent))

        # a room nobody wrote to is empty, not an error; room 0 is
        self.assertEqual(self.history(987658)[1], [])
        self.assertEqual(self.hub.error_of("History", (0, 0, 0), "(ttu)")[0],
                         ERR + "InvalidArgument")

    def test_history_limits(self):
        room = 7202
        ws = self.connect(1411)
        self.join(ws, room)
        sent = self.send_to_room(ws, [], room, ["m%d" % i for i in range(101)])
        # limit 0 is the wire's default of 50, and no answer holds more than 100
        self.assertEqual(self.history(room, 0, 0)[1], sent[-50:])
        self.assertEqual(self.history(room, 0, 1000)[1], sent[-100:])
        self.assertEqual(self.history(room, 0, 100)[1], sent[-100:])
        self.assertEqual(self.history(room, sent[1]["offset"], 0)[1], sent[:1])

    def test_broadcast_to_everyone(self):
        x, y = self.connect(1201), self.connect(1202)
        for ws in (x, y):
            assert_nothing_queued(self, ws)
        message_id, recipients = self.hub.post("hello everyone")
        self.assertEqual(recipients, 2)
        for ws in (x, y):
            text = ws.recv_text()
            self.assertEqual([k for k, _, _ in h.top_level_members(text)],
                             ["type", "id", "from", "content", "timestamp"])
            msg = json.loads(text)
            self.assertEqual((msg["type"], msg["id"], msg["from"], msg["content"]),
                             ("message", message_id, 0, "hello everyone"))
            self.assertLessEqual(abs(msg["timestamp"] - time.time()), 5)
        signal_ = self.recorder.wait_for(lambda e: e[0] == "MessageBroadcast" and e[1][0] == message_id)
        self.assertEqual(signal_[1], (message_id, 0, "hello everyone"))

        # a client's message to everyone is signalled with its sender
        x.send_text(json.dumps({"type": "message", "content": "from x"}))
        relayed = x.recv_json()
        self.assertEqual(y.recv_json()["id"], relayed["id"])
        signal_ = self.recorder.wait_for(lambda e: e[0] == "MessageBroadcast" and e[1][0] == relayed["id"])
        self.assertEqual(signal_[1], (relayed["id"], 1201, "from x"))

    def test_broadcast_to_room(self):
        room = 7101
        member, outsider = self.connect(1301), self.connect(1302)
        self.join(member, room)
        message_id, recipients = self.hub.post("room only", room_id=room)
        self.assertEqual(recipients, 1)
        msg = member.recv_json()
        self.assertEqual((msg["type"], msg["id"], msg["from"], msg["room_id"], msg["content"]),
                         ("message", message_id, 0, room, "room only"))
        self.assertNotIn("to", msg)
        assert_nothing_queued(self, outsider)
        # ids keep increasing, and room messages are not hub-wide broadcasts
        later = self.hub.broadcast("everyone again")
        self.assertGreater(later, message_id)
        self.assertTrue(self.recorder.wait_for(lambda e: e[0] == "MessageBroadcast" and e[1][0] == later))
        self.assertIsNone(self.recorder.wait_for(
            lambda e: e[0] == "MessageBroadcast" and e[1][0] == message_id, timeout=0.1))
        # an empty room is fine: nobody receives it, and the caller learns so
        nobody, recipients = self.hub.post("nobody", room_id=987655)
        self.assertGreater(nobody, later)
        self.assertEqual(recipients, 0)

    def test_broadcast_to_user(self):
        user = 1401
        d1, d2, other = self.connect(user), self.connect(user), self.connect(1402)
        message_id, recipients = self.hub.post("just you", to=user)
        self.assertEqual(recipients, 2)
        for ws in (d1, d2):
            msg = ws.recv_json()
            self.assertEqual((msg["id"], msg["from"], msg["to"], msg["content"]),
                             (message_id, 0, user, "just you"))
        assert_nothing_queued(self, other)

    def test_broadcast_data_verbatim(self):
        ws = self.connect(1501)
        data = '{"n": 12345678901234567890, "f": 0.10, "s": "caf\\u00e9", "a": [1,2]}'
        message_id = self.hub.broadcast("", to=1501, data=data)
        text = ws.recv_text()
        self.assertEqual(h.raw_member(text, "data"), data)
        msg = json.loads(text)
        self.assertEqual(msg["id"], message_id)
        self.assertNotIn("content", msg)
        message_id = self.hub.broadcast("with both", to=1501, data="null")
        msg = ws.recv_json()
        self.assertEqual((msg["id"], msg["content"]), (message_id, "with both"))
        self.assertNotIn("data", msg)

    def test_broadcast_errors(self):
        ws = self.connect(1601)
        cases = [
            (("x", {"room_id": GLib.Variant("t", 1), "to": GLib.Variant("t", 1601)}), "InvalidMessage"),
            (("x", {"room_id": GLib.Variant("t", 0)}), "InvalidMessage"),
            (("x", {"to": GLib.Variant("t", 0)}), "InvalidMessage"),
            (("", {}), "InvalidMessage"),
            (("x", {"data": GLib.Variant("s", "{not json")}), "InvalidJson"),
            (("x", {"data": GLib.Variant("s", '1,"to":5')}), "InvalidJson"),
            (("x", {"data": GLib.Variant("s", "")}), "InvalidJson"),
            (("x", {"to": GLib.Variant("t", 1699)}), "UserOffline"),
            (("x", {"room": GLib.Variant("t", 1)}), "InvalidArgument"),
            (("x", {"room_id": GLib.Variant("u", 1)}), "InvalidArgument"),
            (("x" * 70000, {}), "InvalidMessage"),
        ]
        for args, expected in cases:
            with self.subTest(args=str(args)[:80]):
                name, message = self.hub.error_of("Broadcast", args, "(sa{sv})")
                self.assertEqual(name, ERR + expected, message)
                self.assertTrue(message)
        # the WebSocket path's rule in its words, whichever side checks it; and the user named
        # by "to" got nothing from any of the refused calls
        name, message = self.hub.error_of("Broadcast", cases[0][0], "(sa{sv})")
        self.assertTrue(message.endswith(": A message cannot have both “to” and “room_id”"),
                        message)
        assert_nothing_queued(self, ws)

    def test_disconnect(self):
        ws = self.connect(1701)
        bystander = self.connect(1702)
        client_id = self.client_id_of(1701)
        self.assertEqual(self.hub.call("Disconnect", (client_id, "kicked by the test"), "(ss)"), ())
        self.assertEqual(ws.expect_close(timeout=5), (1008, "kicked by the test"))
        event = self.recorder.wait_for(lambda e: e[0] == "ClientUnregistered" and e[1][0] == client_id)
        self.assertEqual(event[1], (client_id, 1701, 1008))
        assert_nothing_queued(self, bystander)

        ws = self.connect(1701)
        client_id = self.client_id_of(1701)
        self.hub.call("Disconnect", (client_id, ""), "(ss)")
        self.assertEqual(ws.expect_close(timeout=5), (1008, "disconnected by operator"))

        self.assertEqual(self.hub.error_of("Disconnect", ("no-such-client", "x"), "(ss)")[0],
                         ERR + "NotFound")
        other_id = self.client_id_of(1702)
        self.assertEqual(self.hub.error_of("Disconnect", (other_id, "r" * 124), "(ss)")[0],
                         ERR + "InvalidArgument")
        assert_nothing_queued(self, bystander)

    def test_disconnect_user(self):
        d1, d2, other = self.connect(1801), self.connect(1801), self.connect(1802)
        self.assertEqual(self.hub.call("DisconnectUser", (1801, "account closed"), "(ts)"), (2,))
        for ws in (d1, d2):
            self.assertEqual(ws.expect_close(timeout=5), (1008, "account closed"))
        assert_nothing_queued(self, other)
        self.assertEqual(self.hub.call("DisconnectUser", (1899, "x"), "(ts)"), (0,))
        self.assertEqual(self.hub.error_of("DisconnectUser", (0, "x"), "(ts)")[0],
                         ERR + "InvalidArgument")

    def test_statistics(self):
        before = self.hub.call("GetStatistics")[0]
        for key in ("connections-accepted", "refused-bad-request", "refused-token",
                    "refused-busy", "messages-relayed", "bytes-sent", "slow-consumer-closes",
                    "idle-closes", "uptime", "connections", "refused-rate",
                    "refused-user-limit", "refused-header-too-large",
                    # the message store's figures (chat_store_get_statistics())
                    "store-stored", "store-trimmed", "store-failed", "store-groups",
                    "store-largest-group", "store-commit-time-us", "store-retained"):
            self.assertIn(key, before)
            self.assertIsInstance(before[key], int)
        ws = self.connect(1901)
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(self.daemon.port, "not-a-token")
        refused.exception.response.close()
        self.hub.broadcast("count me", to=1901)
        ws.recv_json()
        after = self.hub.call("GetStatistics")[0]
        self.assertGreaterEqual(after["connections-accepted"], before["connections-accepted"] + 1)
        self.assertEqual(after["refused-token"], before["refused-token"] + 1)
        self.assertGreaterEqual(after["messages-relayed"], before["messages-relayed"] + 1)
        self.assertGreater(after["bytes-sent"], before["bytes-sent"])
        # the D-Bus value and the typed reply agree
        raw = self.bus.connection.call_sync(NAME, PATH, IFACE, "GetStatistics", None,
                                            GLib.VariantType.new("(a{sv})"),
                                            Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
        self.assertEqual(raw.get_child_value(0).lookup_value("uptime", None).get_type_string(), "t")


class GateStatisticsTests(BusDaemonTestCase):
    """The gate's refusals are counted: per-user cap, per-address rate, oversized heads."""
    DAEMON_CONFIG = {"limits": {"max-connections-per-user": 1, "upgrades-per-second": 1,
                                "upgrade-burst": 2}}

    def refused_status(self, head):
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5) as sock:
            sock.sendall(head)
            return int(sock.recv(4096).split(b" ", 2)[1])

    def test_refusals_counted(self):
        before = self.hub.call("GetStatistics")[0]
        self.connect(2101)
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(self.daemon.port, token(2101))      # the user's second
        refused.exception.response.close()
        self.assertEqual(refused.exception.response.status, 429)
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(self.daemon.port, token(2102))      # the address's third
        refused.exception.response.close()
        self.assertEqual(refused.exception.response.status, 429)
        self.assertEqual(self.refused_status(b"GET /ws HTTP/1.1\r\nX: " + b"a" * 40000
                                             + b"\r\n\r\n"), 431)
        after = self.hub.call("GetStatistics")[0]
        for key in ("refused-user-limit", "refused-rate", "refused-header-too-large"):
            self.assertEqual(after[key], before[key] + 1, key)


class MessageSignalsOffTests(BusDaemonTestCase):
    DAEMON_CONFIG = {"dbus": {"message-signals": "false"}}

    def test_no_message_broadcast_signal(self):
        ws = self.connect(2001)
        message_id = self.hub.broadcast("quiet")
        self.assertEqual(ws.recv_json()["id"], message_id)
        # a later signal proves the recorder is up to date
        self.connect(2002)
        self.assertTrue(self.recorder.wait_for(lambda e: e[0] == "ClientRegistered" and e[1][1] == 2002))
        self.assertNotIn("MessageBroadcast", self.recorder.names())


# ---------------------------------------------------------------------------
# chathubctl end to end
# ---------------------------------------------------------------------------

class CtlTests(BusDaemonTestCase):

    def ctl(self, *args, expect=0):
        result = run_ctl(*args, bus=self.bus)
        self.assertEqual(result.returncode, expect,
                         "chathubctl %s: %s%s" % (" ".join(args), result.stdout, result.stderr))
        if expect != 0:
            lines = result.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, result.stderr)
            self.assertTrue(lines[0].startswith("chathubctl: "), lines[0])
        return result

    def ctl_json(self, *args):
        value = json.loads(self.ctl("--json", *args).stdout)
        assert_snake_case_keys(self, value)
        return value

    def test_status(self):
        status = self.ctl_json("status")
        self.assertEqual(status["listen_uri"], "ws://127.0.0.1:%d/ws" % self.daemon.port)
        self.assertEqual(status["version"], self.hub.prop("Version"))
        self.assertEqual(status["client_count"], self.hub.prop("ClientCount"))
        # GetStatistics says "messages-relayed"; --json keys are snake_case throughout
        self.assertIn("messages_relayed", status["statistics"])
        self.assertIn("connections_accepted", status["statistics"])
        human = self.ctl("status").stdout
        self.assertIn("ws://127.0.0.1:%d/ws" % self.daemon.port, human)
        # an upgrade from a page of another site counts as a forbidden origin in the
        # "Refused:" line, next to the other reasons
        before = self.ctl_json("status")["statistics"]["refused_forbidden_origin"]
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Origin: http://evil.example\r\n\r\n")
            self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 403"))
        refused = re.search(r"(?m)^Refused:\s+(.*)$", self.ctl("status").stdout).group(1)
        self.assertRegex(refused, r"\d+ bad request, \d+ bad token, %d forbidden origin, "
                         r"\d+ over limits, \d+ server full" % (before + 1))
        # the option may also follow the command
        self.assertEqual(json.loads(self.ctl("status", "--json").stdout)["bus"], "session")

    def test_ready(self):
        # the address comes from the service's ListenUri over the bus, as in the unit's
        # ExecStartPost
        self.assertEqual(json.loads(self.ctl("ready", "--wait", "5").stdout),
                         {"status": "ready", "checks": {"listener": "ok", "store": "ok"}})
        self.ctl("ready", "a", "b", expect=2)
        self.ctl("ready", "--wait", "-1", expect=2)

    def test_clients_rooms_members(self):
        room = 8001
        ws = self.connect(2101)
        self.join(ws, room)
        client_id = self.client_id_of(2101)
        clients = self.ctl_json("clients")
        mine = [c for c in clients if c["client_id"] == client_id]
        self.assertEqual(len(mine), 1, clients)
        self.assertEqual((mine[0]["user_id"], mine[0]["rooms"]), (2101, [room]))
        self.assertIsInstance(mine[0]["connected_since"], int)
        self.assertIn({"room_id": room, "connections": 1}, self.ctl_json("rooms"))
        self.assertEqual(self.ctl_json("members", str(room)), {"room_id": room, "user_ids": [2101]})
        human = self.ctl("clients").stdout
        self.assertRegex(human, r"CLIENT\s+USER\s+CONNECTED SINCE\s+ROOMS")
        self.assertRegex(human, r"%s\s+2101\s+\S+ \S+\s+%d" % (client_id, room))
        self.assertRegex(self.ctl("rooms").stdout, r"(?m)^%d\s+1$" % room)
        self.assertRegex(self.ctl("members", str(room)).stdout, r"(?m)^2101$")
        self.assertIn("Nobody", self.ctl("members", "987656").stdout)

    def test_presence_command(self):
        room = 8002
        for ws in (self.connect(2112), self.connect(2111), self.connect(2111)):
            self.join(ws, room)
        self.assertEqual(self.ctl_json("presence", str(room)),
                         {"room_id": room, "user_ids": [2111, 2112]})
        self.assertRegex(self.ctl("presence", str(room)).stdout, r"\AUSER\s*\n2111\s*\n2112\s*\n\Z")
        self.assertEqual(self.ctl_json("presence", "987657"), {"room_id": 987657, "user_ids": []})
        self.assertIn("Nobody", self.ctl("presence", "987657").stdout)

    def test_history_command(self):
        room = 8003
        ws = self.connect(2121)
        self.join(ws, room)
        sent = []
        for content in ("first", "second", "third"):
            ws.send_text(json.dumps({"type": "message", "room_id": room, "content": content}))
            sent.append(ws.recv_json())
        epoch = self.hub.call("History", (room, 0, 0), "(ttu)")[0]
        self.assertEqual(self.ctl_json("history", str(room)),
                         {"room_id": room, "epoch": epoch, "messages": sent})
        self.assertEqual(json.loads(self.ctl("history", str(room), "--json", "--limit", "2",
                                             "--before", str(sent[2]["offset"])).stdout),
                         {"room_id": room, "epoch": epoch, "messages": sent[:2]})
        self.assertEqual(self.ctl_json("history", str(room), "-l", "1")["messages"], sent[2:])

        lines = self.ctl("history", str(room)).stdout.splitlines()
        self.assertRegex(lines[0], r"^OFFSET\s+ID\s+FROM\s+TIME\s+CONTENT$")
        self.assertEqual(len(lines), 4, lines)
        for line, m in zip(lines[1:], sent):
            self.assertRegex(line, r"^%d\s+%d\s+2121\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+%s$"
                             % (m["offset"], m["id"], m["content"]))
        page = self.ctl("history", str(room), "--before", str(sent[1]["offset"])).stdout
        self.assertEqual(len(page.splitlines()), 2, page)
        self.assertRegex(page, r"(?m)^%d\s.*\sfirst$" % sent[0]["offset"])

        self.assertEqual(self.ctl_json("history", "987659"),
                         {"room_id": 987659,
                          "epoch": self.hub.call("History", (987659, 0, 0), "(ttu)")[0],
                          "messages": []})
        self.assertIn("No message", self.ctl("history", "987659").stdout)
        self.ctl("history", "0", expect=2)
        self.ctl("history", str(room), "--limit", "many", expect=2)
        self.ctl("history", expect=2)

    def test_broadcast(self):
        room = 8101
        member, user = self.connect(2201), self.connect(2202)
        self.join(member, room)
        sent = self.ctl_json("broadcast", "--room", str(room), "to the room")
        msg = member.recv_json()
        self.assertEqual((msg["id"], msg["from"], msg["room_id"], msg["content"]),
                         (sent["id"], 0, room, "to the room"))
        self.assertEqual(sent["recipients"], 1)
        sent = self.ctl_json("broadcast", "--to", "2202", "--data", '{"k": [1, 2]}', "")
        text = user.recv_text()
        self.assertEqual(json.loads(text)["id"], sent["id"])
        self.assertEqual(h.raw_member(text, "data"), '{"k": [1, 2]}')
        self.assertEqual(sent["recipients"], 1)
        out = self.ctl("broadcast", "everyone").stdout
        m = re.fullmatch(r"Sent message (\d+) to 2 connections\.\n", out)
        self.assertIsNotNone(m, out)
        for ws in (member, user):
            self.assertEqual(ws.recv_json()["id"], int(m.group(1)))
        # an empty room: still a message id and status 0, but the text says nobody got it
        self.assertEqual(self.ctl_json("broadcast", "--room", "98765", "anyone?")["recipients"], 0)
        out = self.ctl("broadcast", "--room", "98765", "anyone?").stdout
        self.assertRegex(out, r"^Message \d+ reached nobody: room 98765 has no members\.\n$")
        self.assertNotIn("Sent", out)

    def test_token_from_environment(self):
        # chathubctl token reads CHATHUB_JWT_SECRET as chathubd does: the daemon accepts it
        env = dict(os.environ, CHATHUB_JWT_SECRET=SECRET, LC_ALL="C.UTF-8")

        def mint(env, *extra):
            return subprocess.run([CHATHUBCTL, "token", "--user-id", "2501"] + list(extra),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  text=True, timeout=h.scaled(20))
        result = mint(env)
        self.assertEqual(result.returncode, 0, result.stderr)
        ws = h.RawWS.connect(self.daemon.port, result.stdout.strip())
        assert_nothing_queued(self, ws)
        ws.close(1000)
        # a secret file given on the command line wins over the variable
        tmp = tempfile.TemporaryDirectory(prefix="chathub-token-")
        self.addCleanup(tmp.cleanup)
        other = os.path.join(tmp.name, "other-secret")
        with open(other, "w") as f:
            f.write("some-other-secret-0123456789abcdef\n")
        result = mint(env, "--secret-file", other)
        self.assertEqual(result.returncode, 0, result.stderr)
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(self.daemon.port, result.stdout.strip())
        refused.exception.response.sock.close()
        self.assertEqual(refused.exception.response.status, 401)
        # neither: a usage error that names the variable
        env.pop("CHATHUB_JWT_SECRET")
        result = mint(env)
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn("CHATHUB_JWT_SECRET", result.stderr)

    def test_token_key_files(self):
        # chathubctl reads a secret file as chathubd does (src/common/chc-key.c): one line end
        # is not part of the secret, a file of nothing else is an error, as is a missing one
        env = dict(os.environ, LC_ALL="C.UTF-8")
        env.pop("CHATHUB_JWT_SECRET", None)
        tmp = tempfile.TemporaryDirectory(prefix="chathub-token-")
        self.addCleanup(tmp.cleanup)

        def mint(option, contents):
            path = os.path.join(tmp.name, "key")
            if contents is None:
                path = os.path.join(tmp.name, "no-such-key")
            else:
                with open(path, "w", newline="") as f:
                    f.write(contents)
            return path, subprocess.run([CHATHUBCTL, "token", "--user-id", "2601", option, path],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                        text=True, timeout=h.scaled(20))
        for ending in ("", "\n", "\r\n"):
            with self.subTest(ending=ending):
                _, result = mint("--secret-file", SECRET + ending)
                self.assertEqual(result.returncode, 0, result.stderr)
                ws = h.RawWS.connect(self.daemon.port, result.stdout.strip())
                assert_nothing_queued(self, ws)
                ws.close(1000)
        for option, contents in (("--secret-file", ""), ("--secret-file", "\n"),
                                 ("--secret-file", "\r\n"), ("--key-file", "")):
            with self.subTest(option=option, contents=contents):
                path, result = mint(option, contents)
                self.assertEqual((result.returncode, result.stdout), (2, ""))
                self.assertEqual(result.stderr, "chathubctl: %s is empty\n" % path)
        path, result = mint("--secret-file", None)
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertIn(path, result.stderr)

    def test_disconnect(self):
        ws = self.connect(2301)
        client_id = self.client_id_of(2301)
        self.assertEqual(self.ctl_json("disconnect", "--reason", "bye", client_id),
                         {"client_id": client_id})
        self.assertEqual(ws.expect_close(timeout=5), (1008, "bye"))
        d1, d2 = self.connect(2302), self.connect(2302)
        self.assertEqual(self.ctl_json("disconnect-user", "2302"), {"user_id": 2302, "count": 2})
        for ws in (d1, d2):
            self.assertEqual(ws.expect_close(timeout=5), (1008, "disconnected by operator"))
        self.assertIn("0", self.ctl("disconnect-user", "2302").stdout)

    def test_errors(self):
        self.assertIn("no-such", self.ctl("disconnect", "no-such", expect=1).stderr)
        self.ctl("broadcast", "--to", "2499", "nobody home", expect=1)
        self.ctl("broadcast", "--data", "{bad", "x", expect=1)
        self.ctl("members", "0", expect=2)
        self.ctl("members", "seven", expect=2)
        self.ctl("members", expect=2)
        self.ctl("members", "1", "2", expect=2)
        self.ctl("presence", "0", expect=2)
        self.ctl("presence", expect=2)
        self.ctl("broadcast", "--room", "1", "--to", "2", "x", expect=2)
        self.ctl("disconnect-user", "-5", expect=2)
        self.ctl("frobnicate", expect=2)
        self.ctl("--session", "--system", "status", expect=2)
        self.ctl("status", "--bogus", expect=2)
        help_ = self.ctl("--help").stdout
        for command in ("status", "clients", "rooms", "members", "presence", "broadcast", "disconnect",
                        "disconnect-user", "monitor", "token"):
            self.assertIn(command, help_)
        self.assertIn("--version", help_)
        self.assertRegex(self.ctl("--version").stdout, r"^chathubctl \d+\.\d+\.\d+\n$")

    def test_monitor(self):
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus.address, LC_ALL="C.UTF-8")
        proc = subprocess.Popen([CHATHUBCTL, "monitor", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []

        def read():
            for line in proc.stdout:
                lines.append(line)
        threading.Thread(target=read, daemon=True).start()

        def event(name, **fields):
            def match():
                for line in list(lines):
                    e = json.loads(line)
                    if e["event"] == name and all(e.get(k) == v for k, v in fields.items()):
                        return e
                return None
            found = wait_until(match)
            self.assertIsNotNone(found, "no %s %r in %r" % (name, fields, lines))
            return found

        event("monitoring", bus="session")
        ws = self.connect(2401)
        registered = event("client-registered", user_id=2401)
        changed = event("properties-changed")
        # the D-Bus property names become snake_case keys, like every --json key
        self.assertIn("client_count", changed["properties"])
        sent = self.hub.broadcast("monitored")
        event("message-broadcast", id=sent, **{"from": 0}, content="monitored")
        ws.close(1000)
        event("client-unregistered", client_id=registered["client_id"], user_id=2401,
              close_code=1000)
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(h.scaled(5)), 0, proc.stderr.read())

    def test_service_unavailable(self):
        # a bus without chathub: a clear line and status 3
        empty = PrivateBus("session").start()
        self.addCleanup(empty.cleanup)
        result = run_ctl("status", bus=empty)
        self.assertEqual(result.returncode, 3)
        self.assertIn("not running", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1)
        result = run_ctl("monitor", bus=empty)
        self.assertEqual(result.returncode, 3)
        # no bus at all
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/bus")
        result = subprocess.run([CHATHUBCTL, "clients"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=h.scaled(20))
        self.assertEqual(result.returncode, 3)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)


# ---------------------------------------------------------------------------
# The daemon's life on the bus
# ---------------------------------------------------------------------------

class LifecycleTests(unittest.TestCase):

    def setUp(self):
        self.bus = PrivateBus("session").start()
        self.addCleanup(self.bus.cleanup)

    def daemon(self, bus_option="--session", config=None, extra_args=()):
        d = BusDaemon(self.bus, bus_option, config=config, extra_args=extra_args)
        self.addCleanup(d.cleanup)
        return d

    def test_no_bus_by_default(self):
        d = self.daemon(bus_option=None).start()
        self.assertFalse(wait_until(lambda: self.bus.has_owner(), 1))
        self.assertEqual(d.stop(), 0)

    def test_bus_options_exclusive(self):
        d = self.daemon(extra_args=["--system"])
        with self.assertRaises(h.DaemonError):
            d.start()
        self.assertEqual(d.wait(5), 2)

    def test_no_bus_to_connect_to(self):
        d = self.daemon()
        d.env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/nonexistent/bus"
        d.proc = subprocess.Popen(d.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=d.env, text=True)
        _, err = d.proc.communicate(timeout=h.scaled(10))
        self.assertEqual(d.proc.returncode, 1)
        self.assertIn("cannot connect to the session bus", err)

    def test_name_owned_only_after_listening(self):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        self.addCleanup(blocker.close)
        recorder = SignalRecorder(self.bus)
        self.addCleanup(recorder.stop)
        port = blocker.getsockname()[1]
        # the port is taken: chathubd fails before it ever asks for the name
        d = self.daemon()
        d.proc = subprocess.Popen([CHATHUBD, "--config", d.config_path, "--port", str(port),
                                   "--session"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=d.env,
                                  text=True)
        _, err = d.proc.communicate(timeout=h.scaled(10))
        self.assertEqual(d.proc.returncode, 1, err)
        self.assertFalse(self.bus.has_owner())
        # whereas a good start: the name shows up once the log says it listens
        d2 = self.daemon().start()
        self.assertTrue(d2.wait_owned())
        self.assertTrue(d2.wait_for_log("Owning the name"))
        listening = [i for i, l in enumerate(d2.log) if "listening on" in l]
        owning = [i for i, l in enumerate(d2.log) if "Owning the name" in l]
        self.assertLess(listening[0], owning[0])
        self.assertEqual(d2.stop(), 0)

    def test_second_instance_gives_up(self):
        first = self.daemon().start()
        self.assertTrue(first.wait_owned())
        pid = self.bus.owner_pid()
        second = self.daemon()
        second.start()      # it listens, then cannot have the name
        self.assertEqual(second.wait(10), 1, second.log_text())
        self.assertIn("cannot own the name %s" % NAME, second.log_text())
        # one clear line, and no GLib-GIO-WARNING about releasing a name it never had
        self.assertNotRegex(second.log_text(), r"WARNING|CRITICAL|GLib")
        self.assertEqual(self.bus.owner_pid(), pid)
        self.assertEqual(first.stop(), 0)

    def test_name_lost_stops_cleanly(self):
        d = self.daemon().start()
        self.assertTrue(d.wait_owned())
        ws = ws_connect(d.port, 3001)
        self.addCleanup(ws.abort)
        assert_nothing_queued(self, ws)
        self.bus.stop()     # the bus goes away: the name with it
        self.assertEqual(ws.expect_close(timeout=5), (1001, "server shutting down"))
        ws.abort()
        self.assertEqual(d.wait(10), 0, d.log_text())
        self.assertIn("Lost the name %s" % NAME, d.log_text())
        self.assertNotIn("CRITICAL", d.log_text())

    def test_exit_on_idle(self):
        d = self.daemon(config={"dbus": {"exit-on-idle": 2}}).start()
        self.assertTrue(d.wait_owned())
        hub = Hub(self.bus.connection)
        # a client keeps it alive
        ws = ws_connect(d.port, 3101)
        self.addCleanup(ws.abort)
        time.sleep(h.scaled(3))
        self.assertTrue(d.alive())
        ws.close(1000)
        # so do D-Bus calls
        for _ in range(6):
            time.sleep(0.5)
            hub.call("ListRooms")
        self.assertTrue(d.alive())
        started = time.monotonic()
        self.assertEqual(d.wait(8), 0, d.log_text())
        self.assertGreaterEqual(time.monotonic() - started, 1.5)
        self.assertIn("No client and no D-Bus call for 2 seconds", d.log_text())
        self.assertFalse(self.bus.has_owner())

    def test_bad_dbus_configuration(self):
        for config, key in [({"dbus": {"exit-on-idle": "soon"}}, "exit-on-idle"),
                            ({"dbus": {"message-signals": "maybe"}}, "message-signals")]:
            with self.subTest(key=key):
                status, log = h.run_daemon_expect_exit(config=config, secret=SECRET)
                self.assertEqual(status, 1, log)
                self.assertIn("[dbus] " + key, log)


# ---------------------------------------------------------------------------
# Access control on a bus that enforces the system policy
# ---------------------------------------------------------------------------

def caller_identity():
    """(uid for subprocess.run's user=, or None; uid the daemon sees; its groups)."""
    if os.getuid() == 0:
        return NOBODY, NOBODY
    return None, os.getuid()


def groups_of(uid):
    pw = pwd.getpwuid(uid)
    return set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def call_as_caller(bus, calls, user):
    """Runs calls [(destination, path, interface, method, signature, args)] as `user`."""
    kw = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/"}
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--caller", bus.address,
                             json.dumps(calls)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, cwd="/",
                            timeout=h.scaled(30), **kw)
    if result.returncode != 0:
        raise AssertionError("caller failed: %s" % result.stderr)
    return json.loads(result.stdout)


def hub_call(method, signature="", args=()):
    return [NAME, PATH, IFACE, method, signature, list(args)]


class AccessControlTests(unittest.TestCase):
    """chathubd --system on a private bus with chathub's own policy. The caller is the test
    user, or nobody when the tests run as root (root may do everything)."""

    def setUp(self):
        self.user, self.caller_uid = caller_identity()
        try:
            caller_groups = groups_of(self.caller_uid)
        except KeyError:
            self.skipTest("the caller uid %d has no passwd entry" % self.caller_uid)
        outside = [g for g in grp.getgrall() if g.gr_gid not in caller_groups]
        if not outside:
            self.skipTest("no group exists that the caller is not in")
        self.outside_group = outside[0].gr_name
        self.inside_group = grp.getgrgid(pwd.getpwuid(self.caller_uid).pw_gid).gr_name
        self.bus = PrivateBus("system").start()
        self.addCleanup(self.bus.cleanup)

    def start_daemon(self, admin_group):
        d = BusDaemon(self.bus, "--system", config={"dbus": {"admin-group": admin_group}})
        self.addCleanup(d.cleanup)
        d.start()
        self.assertTrue(d.wait_owned(), d.log_text() + self.bus.log())
        return d

    def test_outside_the_admin_group(self):
        d = self.start_daemon(self.outside_group)
        ws = ws_connect(d.port, 4001)
        self.addCleanup(ws.abort)
        client_id = wait_until(lambda: Hub(self.bus.connection).call("ListClients")[0])[0][0]
        outcomes = call_as_caller(self.bus, [
            hub_call("ListClients"), hub_call("ListRooms"), hub_call("RoomMembers", "(t)", [1]),
            hub_call("GetStatistics"),
            [NAME, PATH, "org.freedesktop.DBus.Properties", "GetAll", "(s)", [IFACE]],
            hub_call("Broadcast", "(sa{sv})", ["nope", {}]),
            hub_call("Disconnect", "(ss)", [client_id, "nope"]),
            hub_call("DisconnectUser", "(ts)", [4001, "nope"]),
            # the policy lets nothing else through to the service
            [NAME, PATH, "org.example.Other", "Frob", "", []],
            ["org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
             "RequestName", "(su)", [NAME, 0]],
            hub_call("Presence", "(t)", [1]),
            hub_call("History", "(ttu)", [1, 0, 0]),
            hub_call("Reload"),
        ], self.user)
        # read-only, like RoomMembers
        self.assertTrue(outcomes[10]["ok"], outcomes[10])
        self.assertTrue(outcomes[11]["ok"], outcomes[11])
        self.assertEqual(outcomes[11]["reply"][1], [])
        for outcome in outcomes[:5]:
            self.assertTrue(outcome["ok"], outcome)
        self.assertEqual(outcomes[0]["reply"][0][0][1], 4001)
        for outcome in outcomes[5:8] + outcomes[12:13]:
            self.assertEqual(outcome.get("error"), ERR + "PermissionDenied", outcome)
            self.assertIn(self.outside_group, outcome["message"])
        self.assertEqual(outcomes[8].get("error"), "org.freedesktop.DBus.Error.AccessDenied",
                         outcomes[8])
        if self.user is not None:
            # only chathub (and root, and here the daemon's user) may own the name
            self.assertEqual(outcomes[9].get("error"), "org.freedesktop.DBus.Error.AccessDenied",
                             outcomes[9])
        # nothing happened to the client, and the refusals were logged
        assert_nothing_queued(self, ws)
        self.assertTrue(d.wait_for_log(r"Refused Broadcast from :\S+ \(uid %d\)" % self.caller_uid))
        self.assertTrue(d.wait_for_log(r"Refused DisconnectUser from"))
        self.assertTrue(d.wait_for_log(r"Refused Reload from"))
        self.assertIsNone(d.wait_for_log(r"Configuration reloaded", timeout=0))
        # chathubctl says so in one line, with its own exit status
        result = run_ctl("--system", "broadcast", "nope", bus=self.bus, system=True,
                         user=self.user)
        self.assertEqual(result.returncode, 4, result.stdout + result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("permission denied", result.stderr)
        result = run_ctl("--system", "--json", "status", bus=self.bus, system=True,
                         user=self.user)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["bus"], "system")
        if os.getuid() == 0:
            # root is always an administrator
            self.assertGreater(Hub(self.bus.connection).broadcast("from root"), 0)
            self.assertEqual(ws.recv_json()["content"], "from root")
        self.assertEqual(d.stop(), 0)

    def test_inside_the_admin_group(self):
        d = self.start_daemon(self.inside_group)
        ws = ws_connect(d.port, 4101)
        self.addCleanup(ws.abort)
        wait_until(lambda: Hub(self.bus.connection).call("ListClients")[0])
        outcomes = call_as_caller(self.bus, [
            hub_call("Broadcast", "(sa{sv})", ["admins may", {}]),
            hub_call("DisconnectUser", "(ts)", [4101, "admin says bye"]),
            hub_call("Reload"),
        ], self.user)
        self.assertTrue(outcomes[0]["ok"], outcomes[0])
        msg = ws.recv_json()
        self.assertEqual((msg["id"], msg["from"], msg["content"]),
                         (outcomes[0]["reply"][0], 0, "admins may"))
        self.assertEqual(outcomes[1], {"ok": True, "reply": [1]})
        self.assertEqual(outcomes[2], {"ok": True, "reply": [1]})
        self.assertTrue(d.wait_for_log(r"Reload requested over D-Bus by uid %d" % self.caller_uid))
        self.assertEqual(ws.expect_close(timeout=5), (1008, "admin says bye"))
        self.assertEqual(d.stop(), 0)


# ---------------------------------------------------------------------------
# Reload(): key rotation without dropping anyone
# ---------------------------------------------------------------------------

class ReloadTests(unittest.TestCase):
    """Reload() and chathubctl reload on a session bus, where the service's own user (the
    test) is the administrator; AccessControlTests refuse it to others on the system bus."""

    def setUp(self):
        self.bus = PrivateBus("session").start()
        self.addCleanup(self.bus.cleanup)
        self.daemon = BusDaemon(self.bus, "--session")
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        self.assertTrue(self.daemon.wait_owned(), self.daemon.log_text() + self.bus.log())
        self.hub = Hub(self.bus.connection)

    def mint(self, secret_path, user_id, *extra):
        env = dict(os.environ, LC_ALL="C.UTF-8")
        env.pop("CHATHUB_JWT_SECRET", None)
        result = subprocess.run([CHATHUBCTL, "token", "--user-id", str(user_id), "--secret-file",
                                 secret_path] + list(extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True,
                                timeout=h.scaled(20))
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.strip()

    def test_reload(self):
        ws = ws_connect(self.daemon.port, 4201)
        self.addCleanup(ws.abort)
        key_b = os.path.join(self.daemon.tmp.name, "secret-b")
        with open(key_b, "w") as f:
            f.write("the-next-key-0123456789-0123456789-0123456789\n")
        token_b = self.mint(key_b, 4202, "--key-id", "b")
        header = json.loads(h.b64url_decode(token_b.split(".")[0]))
        self.assertEqual(header["kid"], "b")
        with self.assertRaises(h.HandshakeRefused) as refused:
            h.RawWS.connect(self.daemon.port, token_b)
        refused.exception.response.sock.close()

        with open(self.daemon.config_path, "a") as f:
            f.write("[key:b]\nsecret-file=%s\n" % key_b)
        self.assertEqual(self.hub.call("Reload"), (2,))
        self.assertTrue(self.daemon.wait_for_log(
            r"Configuration reloaded from .*: 2 token keys valid: \[auth\] secret-file "
            r"\(HS256\), b \(HS256\)"))
        h.RawWS.connect(self.daemon.port, token_b).close(1000)
        # chathubctl says how many keys are valid
        result = run_ctl("reload", bus=self.bus)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, "Reloaded; 2 token keys are valid.\n", ""))
        result = run_ctl("--json", "reload", bus=self.bus)
        self.assertEqual(json.loads(result.stdout), {"keys": 2})

        # a bad file: the error says why, and nothing changes
        missing = os.path.join(self.daemon.tmp.name, "no-such-key")
        with open(self.daemon.config_path, "a") as f:
            f.write("[key:c]\nsecret-file=%s\n" % missing)
        name, message = self.hub.error_of("Reload")
        self.assertEqual(name, ERR + "Failed")
        self.assertIn("[key:c] secret-file: ", message)
        self.assertIn(missing, message)
        result = run_ctl("reload", bus=self.bus)
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertRegex(result.stderr, r"^chathubctl: .*\[key:c\] secret-file: .*no-such-key")
        self.assertTrue(self.daemon.wait_for_log(
            r"Reload failed; the running configuration stays: .*\[key:c\] secret-file"))
        h.RawWS.connect(self.daemon.port, token_b).close(1000)
        # the first client never noticed
        assert_nothing_queued(self, ws)
        self.assertEqual(self.daemon.stop(), 0)

    UNITS = ("systemd/chathub.service.in", "systemd/chathub-user.service.in")

    def unit_command(self, template, key):
        """The one KEY= command line of a data/ unit template."""
        with open(os.path.join(TOP, "data", template)) as f:
            lines = [l[len(key) + 1:] for l in f.read().splitlines() if l.startswith(key + "=")]
        self.assertEqual(len(lines), 1, template)
        return lines[0]

    def test_units_exec_start_post(self):
        # what systemd runs once the bus name is owned: chathubctl ready, on the unit's bus
        for template in self.UNITS:
            program, *args = self.unit_command(template, "ExecStartPost").split()
            self.assertEqual(program, "@bindir@/chathubctl", template)
            result = run_ctl(*args, bus=self.bus, system="--system" in args)
            self.assertEqual(result.returncode, 0, result)
            self.assertEqual(json.loads(result.stdout)["status"], "ready")

    def test_units_exec_reload(self):
        # what "systemctl reload chathub" runs, with $MAINPID the daemon's pid
        for template in self.UNITS:
            command = self.unit_command(template, "ExecReload").replace(
                "$MAINPID", str(self.daemon.proc.pid)).split()
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, timeout=h.scaled(20))
            self.assertEqual(result.returncode, 0, result.stdout)
        self.assertTrue(wait_until(lambda: self.daemon.log_text().count(
            "Configuration reloaded from") == 2), self.daemon.log_text())
        self.assertTrue(self.daemon.alive())
        self.assertEqual(self.daemon.stop(), 0)


# ---------------------------------------------------------------------------
# data/
# ---------------------------------------------------------------------------

def read_keyfile(path):
    kf = GLib.KeyFile.new()
    kf.load_from_file(path, GLib.KeyFileFlags.NONE)
    return kf


def substituted(template, directory, name=None):
    """data/ template with @libexecdir@ and @bindir@ at the built chathubd and chathubctl,
    written into directory."""
    with open(os.path.join(TOP, "data", template)) as f:
        text = f.read()
    text = (text.replace("@libexecdir@", os.path.dirname(CHATHUBD))
            .replace("@bindir@", os.path.dirname(CHATHUBCTL))
            .replace("@sysconfdir@", os.path.join(TOP, "data", "no-such-etc"))
            .replace("@dbus_interfaces_dir@", os.path.join(TOP, "data", "dbus")))
    path = os.path.join(directory, name or os.path.basename(template).replace(".in", ""))
    with open(path, "w") as f:
        f.write(text)
    return path, text


class DataFileTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chathub-data-")
        self.addCleanup(self.tmp.cleanup)

    def test_interface_xml_by_codegen(self):
        codegen = shutil.which("gdbus-codegen")
        if codegen is None:
            self.skipTest("gdbus-codegen is not installed")
        xml = os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.xml")
        result = subprocess.run([codegen, "--interface-prefix", "io.github.chathub.",
                                 "--c-namespace", "Chd", "--generate-c-code",
                                 os.path.join(self.tmp.name, "hub1"),
                                 "--generate-docbook", os.path.join(self.tmp.name, "doc"), xml],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertNotIn("Warning", result.stdout)
        with open(os.path.join(self.tmp.name, "doc-io.github.chathub.Hub1.xml")) as f:
            doc = f.read()
        for member in ("ListClients", "Broadcast", "ClientUnregistered", "ClientCount"):
            self.assertIn(member, doc)
        with open(xml) as f:
            info = Gio.DBusNodeInfo.new_for_xml(f.read())
        self.assertEqual([i.name for i in info.interfaces], [IFACE])

    def test_activation_files(self):
        session = read_keyfile(os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.service.in"))
        self.assertEqual(session.get_string("D-BUS Service", "Name"), NAME)
        self.assertEqual(session.get_string("D-BUS Service", "Exec"), "@libexecdir@/chathubd --session")
        system = read_keyfile(os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.system.service.in"))
        self.assertEqual(system.get_string("D-BUS Service", "Name"), NAME)
        self.assertTrue(system.get_string("D-BUS Service", "Exec").startswith("@libexecdir@/chathubd --system"))
        self.assertEqual(system.get_string("D-BUS Service", "User"), "chathub")
        self.assertEqual(system.get_string("D-BUS Service", "SystemdService"), "chathub.service")
        # what meson configured for installation names the installed daemon
        builddata = os.path.join(BUILD_ROOT, "data")
        for name, option in [("io.github.chathub.Hub1.service", "--session"),
                             ("io.github.chathub.Hub1.system.service", "--system")]:
            path = os.path.join(builddata, name)
            if not os.path.exists(path):
                self.skipTest("no configured %s in %s" % (name, builddata))
            exec_ = read_keyfile(path).get_string("D-BUS Service", "Exec")
            self.assertRegex(exec_, r"^/\S+/chathubd %s" % option)
            self.assertNotIn("@", exec_)

    def test_policy_loads(self):
        # the system-role bus includes the policy; dbus-daemon refuses a bad one
        bus = PrivateBus("system").start()
        self.addCleanup(bus.cleanup)
        self.assertTrue(bus.bus_call("GetId")[0])
        # and a broken one is refused, so the check above means something
        broken = os.path.join(self.tmp.name, "broken.conf")
        with open(broken, "w") as f:
            f.write("<busconfig><policy context='default'><allow sned_destination='x'/>"
                    "</policy></busconfig>")
        bad = PrivateBus("system")
        self.addCleanup(bad.cleanup)
        with open(bad.config_path) as f:
            text = f.read()
        with open(bad.config_path, "w") as f:
            f.write(text.replace(os.path.join(TOP, "data", "dbus", "io.github.chathub.Hub1.conf"),
                                 broken))
        with self.assertRaises(AssertionError):
            bad.start()

    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed: the units were not verified")
        system_unit, text = substituted("systemd/chathub.service.in", self.tmp.name)
        self.assertIn("Type=dbus", text)
        self.assertIn("BusName=%s" % NAME, text)
        # a real interface's address can be bound only once the network is configured:
        # ordered after network-online.target, and pulling it in (After= alone does not)
        self.assertIn("Wants=network-online.target", text.splitlines())
        after = [w for l in text.splitlines() if l.startswith("After=") for w in l[6:].split()]
        self.assertIn("network-online.target", after)
        self.assertNotIn("network.target", after)
        # every sandboxing setting carries a comment saying why
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"(Protect|Private|Restrict|NoNewPrivileges|StateDirectory|"
                        r"CapabilityBoundingSet|LockPersonality|MemoryDeny|SystemCall|UMask)", line):
                j = i - 1
                while j >= 0 and re.match(r"^[A-Z]\w+=", lines[j]):
                    j -= 1
                self.assertTrue(lines[j].startswith("#"), "no comment above %r" % line)
        user_unit, _ = substituted("systemd/chathub-user.service.in", self.tmp.name,
                                   "chathub-session.service")
        runtime = os.path.join(self.tmp.name, "runtime")
        os.mkdir(runtime, 0o700)
        for unit, extra in [(system_unit, []), (user_unit, ["--user"])]:
            with self.subTest(unit=os.path.basename(unit)):
                # systemd-analyze warns about unknown keys and bad values but still exits 0
                result = subprocess.run([analyze, "verify", "--man=no"] + extra + [unit],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, timeout=60,
                                        env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning",
                                                 XDG_RUNTIME_DIR=runtime))
                problems = [l for l in result.stdout.splitlines()
                            if os.path.basename(unit) in l or "chathub" in l]
                self.assertEqual(problems, [], result.stdout)
                self.assertEqual(result.returncode, 0, result.stdout)

    def test_sysusers(self):
        sysusers = shutil.which("systemd-sysusers")
        if sysusers is None:
            self.skipTest("systemd-sysusers is not installed: the sysusers.d file was not checked")
        if os.getuid() != 0:
            self.skipTest("systemd-sysusers --root needs root: the sysusers.d file was not checked")
        root = os.path.join(self.tmp.name, "root")
        os.makedirs(os.path.join(root, "etc"))
        conf = os.path.join(TOP, "data", "systemd", "chathub-sysusers.conf")
        result = subprocess.run([sysusers, "--root", root, conf], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout)
        with open(os.path.join(root, "etc", "passwd")) as f:
            entry = [l for l in f.read().splitlines() if l.startswith("chathub:")]
        self.assertEqual(len(entry), 1)
        self.assertEqual(entry[0].split(":")[5], "/var/lib/chathub")
        with open(os.path.join(root, "etc", "group")) as f:
            self.assertTrue(any(l.startswith("chathub:") for l in f))

    def test_admin_group_is_never_the_service_group(self):
        # the chathub group can read the token secret: no shipped file may suggest it as
        # [dbus] admin-group (the sysusers.d comment once did)
        files = [os.path.join(TOP, "README.md"), os.path.join(TOP, "docs", "deployment.md")]
        for folder in ("data", "man"):
            for root, _, names in os.walk(os.path.join(TOP, folder)):
                files += [os.path.join(root, n) for n in names]
        checked = 0
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            checked += "admin-group" in text
            self.assertNotRegex(text, r"admin-group\s*=\s*chathub(?![\w-])",
                                "%s suggests admin-group=chathub" % os.path.relpath(path, TOP))
        self.assertGreaterEqual(checked, 3)

    def test_example_config_is_accepted(self):
        # the shipped example with its secret pointed somewhere real
        with open(os.path.join(TOP, "data", "chathub.conf")) as f:
            text = f.read()
        secret = os.path.join(self.tmp.name, "secret")
        with open(secret, "w") as f:
            f.write(SECRET)
        text = text.replace("secret-file=/etc/chathub/secret", "secret-file=" + secret)
        self.assertIn("admin-group=chathub", text)
        conf = os.path.join(self.tmp.name, "chathub.conf")
        with open(conf, "w") as f:
            f.write(text)
        # its [store] path is the default: a state directory of the test's own
        proc = subprocess.Popen([CHATHUBD, "--config", conf, "--port", "0", "--no-dbus"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, STATE_DIRECTORY=self.tmp.name))
        line = proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=h.scaled(10))
        self.assertIn("listening on", line, rest)
        self.assertEqual(proc.returncode, 0, rest)
        # where systemd's StateDirectory= puts it
        self.assertTrue(os.path.isfile(os.path.join(self.tmp.name, "chathub.db")), rest)

    def test_install_layout(self):
        meson = shutil.which("meson")
        if meson is None or not os.path.isdir(os.path.join(BUILD_ROOT, "meson-info")):
            self.skipTest("meson or its build directory is not available")
        installed = json.loads(subprocess.run([meson, "introspect", "--installed", BUILD_ROOT],
                                              stdout=subprocess.PIPE, text=True, timeout=60,
                                              check=True).stdout)
        options = {o["name"]: o["value"] for o in json.loads(subprocess.run(
            [meson, "introspect", "--buildoptions", BUILD_ROOT], stdout=subprocess.PIPE,
            text=True, timeout=60, check=True).stdout)}
        prefix = options["prefix"]
        datadir = os.path.join(prefix, options["datadir"])

        def pc(package, variable, define, fallback):
            if subprocess.run(["pkg-config", "--exists", package]).returncode != 0:
                return fallback
            theirs = subprocess.run(["pkg-config", "--variable=prefix", package],
                                    stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
            value = datadir if define == "datadir" else prefix
            defines = [] if theirs == prefix else ["--define-variable=%s=%s" % (define, value)]
            return subprocess.run(["pkg-config"] + defines + ["--variable=" + variable, package],
                                  stdout=subprocess.PIPE, text=True, check=True).stdout.strip()

        def dest(name):
            found = [v for k, v in installed.items() if k.endswith(os.sep + name)]
            self.assertEqual(len(found), 1, "%s installed %d times" % (name, len(found)))
            return found[0]

        def expect(name, option, package, variable, fallback, filename):
            define = {"dbus-1": "datadir", "systemdsystemunitdir": "rootprefix"}.get(
                package if package == "dbus-1" else variable, "prefix")
            wanted = options[option] or pc(package, variable, define, fallback)
            self.assertEqual(dest(name), os.path.join(wanted, filename))

        expect("io.github.chathub.Hub1.xml", "dbus_interfaces_dir", "dbus-1", "interfaces_dir",
               os.path.join(datadir, "dbus-1", "interfaces"), "io.github.chathub.Hub1.xml")
        expect("io.github.chathub.Hub1.service", "dbus_session_services_dir", "dbus-1",
               "session_bus_services_dir", os.path.join(datadir, "dbus-1", "services"),
               "io.github.chathub.Hub1.service")
        expect("io.github.chathub.Hub1.system.service", "dbus_system_services_dir", "dbus-1",
               "system_bus_services_dir", os.path.join(datadir, "dbus-1", "system-services"),
               "io.github.chathub.Hub1.service")
        self.assertEqual(dest("io.github.chathub.Hub1.conf"),
                         os.path.join(options["dbus_sys_dir"] or os.path.join(datadir, "dbus-1", "system.d"),
                                      "io.github.chathub.Hub1.conf"))
        if options["systemd_system_unit_dir"] != "no":
            expect("chathub.service", "systemd_system_unit_dir", "systemd", "systemdsystemunitdir",
                   os.path.join(prefix, "lib", "systemd", "system"), "chathub.service")
        if options["systemd_user_unit_dir"] != "no":
            expect("chathub-user.service", "systemd_user_unit_dir", "systemd", "systemduserunitdir",
                   os.path.join(prefix, "lib", "systemd", "user"), "chathub.service")
        if options["sysusers_dir"] != "no":
            expect("chathub-sysusers.conf", "sysusers_dir", "systemd", "sysusersdir",
                   os.path.join(prefix, "lib", "sysusers.d"), "chathub.conf")
        self.assertTrue(dest("chathub.conf").endswith(os.path.join("chathub", "chathub.conf")))
        self.assertEqual(dest("chathubd"), os.path.join(prefix, options["libexecdir"], "chathubd"))
        # the bash completions, where bash-completion loads them on demand by command name
        completions = pc("bash-completion", "completionsdir", "prefix",
                         os.path.join(datadir, "bash-completion", "completions"))
        self.assertEqual(dest("chathubd-completion"), os.path.join(completions, "chathubd"))
        self.assertEqual(dest(os.path.join("completions", "chathubctl")),
                         os.path.join(completions, "chathubctl"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
