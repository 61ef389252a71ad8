#!/usr/bin/python3
"""The real programs speak the operator's language, from the build tree's catalogs.

* chathubctl --help and chathubctl token --help print Chinese (LANGUAGE=zh_CN with the
  zh_CN.UTF-8 locale, and LANGUAGE=zh_CN over C.UTF-8) and German (de_DE.UTF-8).
* A real chathubd started under zh_CN.UTF-8 logs its listening line in Chinese; a client that
  presents a token with a bad signature is refused with an English 401 body (wire data) and
  a Chinese log line that carries the translated reason; an error frame on a WebSocket stays
  English; the shutdown line is Chinese. The same daemon under de_DE.UTF-8 logs German.
* libchathub in a host that knows nothing of its text domain (Python through ctypes, as
  PyGObject or GJS would load it) returns its GError texts in Chinese: the library binds its
  domain itself.

The expected texts are looked up in the compiled catalogs (LOCALEDIR/LANG/LC_MESSAGES/
chathub.mo, built by meson from po/), so the test follows the translations as they change
but fails if a program prints the English original or another text.

glibc translates LC_MESSAGES only under a locale that exists: tools/deps generates zh_CN.UTF-8
and de_DE.UTF-8. Without them this test fails; it does not skip.

Usage: test_i18n.py --localedir BUILDDIR/po --library LIBCHATHUB.so
       (CHATHUBD and CHATHUBCTL name the programs)
"""

import gettext
import locale
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import chathub_harness as h  # noqa: E402

LOCALEDIR = None
LIBRARY = None
DOMAIN = "chathub"
LOCALES = {"zh_CN": "zh_CN.UTF-8", "de": "de_DE.UTF-8"}
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def catalog(lang):
    path = os.path.join(LOCALEDIR, lang, "LC_MESSAGES", DOMAIN + ".mo")
    if not os.path.exists(path):
        raise AssertionError("no compiled catalog %s: is po/LINGUAS right, and was the build "
                             "tree built?" % path)
    return gettext.translation(DOMAIN, localedir=LOCALEDIR, languages=[lang])


def translated(lang, msgid):
    text = catalog(lang).gettext(msgid)
    if text == msgid:
        raise AssertionError("%s has no translation of %r" % (lang, msgid))
    return text


def pattern(fmt):
    """A regex for a printf format whose directives are all %s."""
    return re.compile(re.escape(fmt).replace("%s", "(.+?)") + "$")


def language_env(lang, with_locale=True):
    """The environment of a program run by an operator of that language."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LC_") or k in ("LANG", "LANGUAGE"))}
    env["CHATHUB_LOCALEDIR"] = LOCALEDIR
    if with_locale:
        env["LANG"] = LOCALES[lang]
    else:
        env["LANG"] = "C.UTF-8"
    if lang == "zh_CN":
        env["LANGUAGE"] = "zh_CN"
    return env


def ctl(args, env):
    path = os.environ.get("CHATHUBCTL") or os.path.join(h.REPO_ROOT, "_build", "src", "ctl",
                                                         "chathubctl")
    proc = subprocess.run([path] + args, env=env, capture_output=True, timeout=30)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def daemon_env(lang):
    env = {k: None for k in os.environ if k.startswith("LC_") or k in ("LANG", "LANGUAGE")}
    env.update(language_env(lang))
    env["LC_ALL"] = None  # the harness sets C.UTF-8 otherwise
    return env


class Locales(unittest.TestCase):
    def test_locales_exist(self):
        """zh_CN.UTF-8 and de_DE.UTF-8 exist (tools/deps makes them with localedef)."""
        missing = []
        for name in LOCALES.values():
            try:
                locale.setlocale(locale.LC_ALL, name)
            except locale.Error:
                missing.append(name)
            finally:
                locale.setlocale(locale.LC_ALL, "C.UTF-8")
        self.assertEqual(missing, [], "locales missing: run tools/deps, or "
                         "`localedef -i zh_CN -c -f UTF-8 zh_CN.UTF-8` (same for de_DE)")

    def test_catalogs_from_build_tree(self):
        for lang in LOCALES:
            self.assertTrue(os.path.isfile(os.path.join(LOCALEDIR, lang, "LC_MESSAGES",
                                                        DOMAIN + ".mo")), lang)


class ChathubctlHelp(unittest.TestCase):
    USAGE = "Usage: chathubctl [--session | --system] [--json] COMMAND [OPTIONS]"
    SUMMARIES = ["Commands:", "version, address, counts and counters",
                 "print a signed token (for development and tests)",
                 "Run “chathubctl COMMAND --help” for the options of a command."]
    TOKEN = ["- print a signed token", "The user id (required)",
             "Sign with the shared secret in FILE (HS256, HS384, HS512)",
             "Seconds until the token expires; 0 for no expiry (default 3600)"]

    def check(self, lang, args, msgids, with_locale=True):
        status, out, err = ctl(args, language_env(lang, with_locale))
        self.assertEqual(status, 0, "chathubctl %s: %s" % (" ".join(args), err))
        for msgid in msgids:
            self.assertIn(translated(lang, msgid), out, "LANG=%s: %r not translated in:\n%s"
                          % (lang, msgid, out))
            self.assertNotIn(msgid, out)
        return out

    def test_help_chinese(self):
        out = self.check("zh_CN", ["--help"], [self.USAGE] + self.SUMMARIES)
        self.assertTrue(CJK.search(out.splitlines()[0]), out)

    def test_help_chinese_over_c_utf8(self):
        """LANGUAGE alone is enough over C.UTF-8 (which glibc always has)."""
        self.check("zh_CN", ["--help"], [self.USAGE] + self.SUMMARIES, with_locale=False)

    def test_token_help_chinese(self):
        out = self.check("zh_CN", ["token", "--help"], self.TOKEN)
        # the metavariables of the options are translated too
        self.assertIn("--secret-file=" + translated("zh_CN", "FILE"), out)

    def test_help_german(self):
        self.check("de", ["--help"], [self.USAGE] + self.SUMMARIES)

    def test_token_help_german(self):
        out = self.check("de", ["token", "--help"], self.TOKEN)
        self.assertIn("--secret-file=" + translated("de", "FILE"), out)

    def test_usage_error_chinese(self):
        status, out, err = ctl(["token", "--user-id", "0"], language_env("zh_CN"))
        self.assertEqual(status, 2)
        self.assertIn(translated("zh_CN", "--user-id must be a number greater than 0"), err)


class DaemonLog(unittest.TestCase):
    LISTENING = "chathubd %s listening on %s (tokens: %s)"
    REFUSED = "Refused a connection from %s: %s"
    STOPPED = "chathubd stopped"

    def run_daemon(self, lang, check_wire=False):
        d = h.Daemon(env=daemon_env(lang))
        try:
            d.start()
            # the listening line, in the language, with the real address and algorithm
            expected = pattern(translated(lang, self.LISTENING))
            line = d.wait_for_log(expected.pattern[:-1], timeout=5)
            self.assertIsNotNone(line, "no %s listening line in:\n%s" % (lang, d.log_text()))
            m = expected.search(line)
            self.assertEqual(m.group(2), "ws://127.0.0.1:%d/ws" % d.port, line)
            self.assertEqual(m.group(3), "HS256", line)
            self.assertNotIn("listening on", d.log_text())

            # a token signed with another secret: refused, English on the wire, logged in
            # the language with the translated reason
            bad = h.hs_token({"user_id": 7, "exp": h.now() + 600}, "not-the-secret")
            resp = h.http_request(d.port, path="/ws", headers=h.upgrade_headers(token=bad))
            try:
                self.assertEqual(resp.status, 401, resp.body)
                body = resp.json()
            finally:
                resp.close()
            self.assertEqual(body.get("error"), "invalid_token", body)
            reason = body.get("error_description", "")
            self.assertFalse(CJK.search(reason), "wire reason translated: %r" % reason)
            want = translated(lang, self.REFUSED) % ("127.0.0.1", translated(lang, reason))
            line = d.wait_for_log(re.escape(want), timeout=5)
            self.assertIsNotNone(line, "no line %r in:\n%s" % (want, d.log_text()))
            self.assertNotIn(reason, d.log_text())

            if check_wire:
                # error frames are wire data: English whatever the daemon's language
                ws = h.RawWS.connect(d.port, token=d.token(user_id=8))
                try:
                    ws.send_json({"type": "no-such-type"})
                    frame = ws.recv_json(timeout=5)
                finally:
                    ws.close()
                self.assertEqual(frame.get("type"), "error", frame)
                self.assertFalse(CJK.search(frame.get("content", "")), frame)
                self.assertRegex(frame.get("content", ""), r"^[\x20-\x7e“”]+$", frame)

            self.assertEqual(d.stop(), 0, d.log_text())
            self.assertIn(translated(lang, self.STOPPED), d.log_text())
        finally:
            d.cleanup()

    def test_daemon_chinese(self):
        self.run_daemon("zh_CN", check_wire=True)

    def test_daemon_german(self):
        self.run_daemon("de")


# Run in a child process: a host that calls setlocale() as any program must, but never
# bindtextdomain("chathub") or textdomain(). It prints the GError messages it gets.
FOREIGN_HOST = r"""
import ctypes, locale, sys
locale.setlocale(locale.LC_ALL, "")

class GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]

glib = ctypes.CDLL("libglib-2.0.so.0")
glib.g_bytes_new.restype = ctypes.c_void_p
glib.g_bytes_new.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
chat = ctypes.CDLL(sys.argv[1])
chat.chat_token_verifier_new.restype = ctypes.c_void_p
chat.chat_token_verifier_new.argtypes = [ctypes.c_int, ctypes.c_void_p,
                                         ctypes.POINTER(ctypes.POINTER(GError))]
chat.chat_message_new_from_json.restype = ctypes.c_void_p
chat.chat_message_new_from_json.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t,
                                            ctypes.POINTER(ctypes.POINTER(GError))]

error = ctypes.POINTER(GError)()
assert not chat.chat_token_verifier_new(0, glib.g_bytes_new(b"", 0), ctypes.byref(error))
print(error.contents.message.decode("utf-8"))
error = ctypes.POINTER(GError)()
assert not chat.chat_message_new_from_json(b"{}", -1, ctypes.byref(error))
print(error.contents.message.decode("utf-8"))
"""


class LibraryInForeignHost(unittest.TestCase):
    def test_gerror_chinese(self):
        env = language_env("zh_CN")
        env["LD_LIBRARY_PATH"] = os.path.dirname(LIBRARY)
        proc = subprocess.run([sys.executable, "-c", FOREIGN_HOST, LIBRARY], env=env,
                              capture_output=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        lines = proc.stdout.decode("utf-8").splitlines()
        self.assertEqual(lines, [translated("zh_CN", "The token key is empty"),
                                 translated("zh_CN", "Field “type” is missing")])


def main():
    global LOCALEDIR, LIBRARY
    args = sys.argv[1:]
    if len(args) >= 4 and args[0] == "--localedir" and args[2] == "--library":
        LOCALEDIR = os.path.abspath(args[1])
        LIBRARY = os.path.abspath(args[3])
        args = args[4:]
    else:
        sys.exit("usage: test_i18n.py --localedir BUILDDIR/po --library LIBCHATHUB.so "
                 "[unittest options]")
    unittest.main(argv=[sys.argv[0]] + args, verbosity=2)


if __name__ == "__main__":
    main()
