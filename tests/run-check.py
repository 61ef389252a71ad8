#!/usr/bin/python3
"""Running from the build tree, as README.md tells: "meson devenv" and tools/run.

- "meson devenv -C BUILD" puts chathubd on PATH and sets CHATHUB_LOCALEDIR, so that
  chathubctl and chathubd speak German from the build's catalogs under LANGUAGE=de;
- "CHATHUB_PORT=0 tools/run" prints the address chathubd really listens on (not port 0),
  with tokens that it accepts, and chathubd's log is translated there too.

Usage: run-check.py SOURCE_ROOT BUILD_ROOT. The de_DE.UTF-8 locale comes from tools/deps.
"""

import gettext
import json
import os
import re
import signal
import subprocess
import sys
import threading
import unittest
import urllib.request

SRC, BUILD = (os.path.abspath(a) for a in sys.argv[1:3])
sys.path.insert(0, os.path.join(SRC, "tests", "python"))
import chathub_harness as h  # noqa: E402

GERMAN = dict(os.environ, LANGUAGE="de", LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8")
for name in ("CHATHUB_LOCALEDIR", "CHATHUB_PORT", "CHATHUB_BUILD_DIR", "MESON_DEVENV"):
    GERMAN.pop(name, None)
CATALOG = gettext.translation("chathub", localedir=os.path.join(BUILD, "po"), languages=["de"])


def german(msgid):
    text = CATALOG.gettext(msgid)
    assert text != msgid, "no German for %r in the build's catalog" % msgid
    return text


def pattern(msgid):
    """A regex for the German text of a printf format."""
    return ".*".join(re.escape(part) for part in re.split(r"%[a-z]", german(msgid)))


class DevenvTests(unittest.TestCase):

    def devenv(self, *argv):
        return subprocess.run(["meson", "devenv", "-C", BUILD] + list(argv), env=GERMAN,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=h.scaled(60))

    def test_ctl_speaks_german(self):
        result = self.devenv("chathubctl", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(german("Commands:"), result.stdout)

    def test_daemon_on_path_speaks_german(self):
        result = self.devenv("chathubd", "--port", "seven")
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("command not found", result.stderr)
        self.assertIsNone(re.search(r"[Ii]nvalid|cannot", result.stderr), result.stderr)
        self.assertNotEqual(result.stderr.strip(), "")
        # the same mistake under LANGUAGE=C, for contrast: the devenv's text was translated
        plain = subprocess.run([os.path.join(BUILD, "src", "daemon", "chathubd"), "--port",
                                "seven"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=h.scaled(60),
                               env=dict(os.environ, LANGUAGE="C", LC_ALL="C.UTF-8"))
        self.assertNotEqual(plain.stderr, result.stderr)


class ToolsRunTests(unittest.TestCase):

    def test_port_zero_prints_the_real_address(self):
        env = dict(GERMAN, CHATHUB_PORT="0", CHATHUB_BUILD_DIR=BUILD)
        proc = subprocess.Popen([os.path.join(SRC, "tools", "run")], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        errors = []
        reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
        reader.start()
        out = []
        url = None
        for line in proc.stdout:
            out.append(line)
            m = re.match(r"chathub is running on (ws://127\.0\.0\.1:(\d+)/ws) ", line)
            if m:
                url, port = m.group(1), int(m.group(2))
            if line.startswith("More tokens:"):
                break
        self.assertIsNotNone(url, "".join(out) + "".join(errors))
        self.assertNotEqual(port, 0)
        # the messages go to a database in the build directory, and it says which
        database = os.path.join(BUILD, "chathub.db")
        self.assertIn("Messages are stored in: %s " % database, "".join(out))
        self.assertTrue(os.path.isfile(database), database)
        # the printed command's token opens a WebSocket on that very address
        token = re.search(r'"%s\?access_token=([^"]+)"' % re.escape(url), "".join(out))
        self.assertIsNotNone(token, "".join(out))
        ws = h.RawWS.connect(port, token.group(1))
        ws.send_text('{"type":"ping"}')
        self.assertEqual(ws.recv_json()["type"], "pong")
        ws.close(1000)
        # the chat page, on the same address, from this source tree, signing in users 1 and 2
        pages = re.findall(r"^  (http://127\.0\.0\.1:%d/#token=(\S+))$" % port, "".join(out), re.M)
        claims = [json.loads(h.b64url_decode(t.split(".")[1])) for _, t in pages]
        self.assertEqual([c.get("user_id", c.get("sub")) for c in claims], [1, 2], "".join(out))
        with urllib.request.urlopen(pages[0][0], timeout=h.scaled(10)) as answer:
            self.assertEqual(answer.headers["Content-Type"], "text/html; charset=utf-8")
            with open(os.path.join(SRC, "data", "web", "index.html"), "rb") as index:
                self.assertEqual(answer.read(), index.read())
        os.killpg(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(h.scaled(20)), 0, "".join(errors))
        reader.join(h.scaled(5))
        log = "".join(errors)
        # chathubd's log, translated from the build's catalogs, names the same address
        self.assertRegex(log, pattern("chathubd %s listening on %s (tokens: %s)"))
        self.assertIn(url, log)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
