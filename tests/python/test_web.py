#!/usr/bin/python3
"""The browser chat page as chathubd serves it ([server] web, ChatServer:web-root), through the
real daemon: the files of data/web/ at "/", their content types and security headers, HEAD,
405 for other methods, 404 for every other path (no way out of the directory), web=false, and
a directory without the page (a warning, the WebSocket endpoint still served)."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

WEBDIR = os.environ.get("CHATHUB_WEBDIR") or os.path.join(h.REPO_ROOT, "data", "web")

CONTENT_TYPES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/chathub-client.js": ("chathub-client.js", "text/javascript; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}


def read(name, directory=WEBDIR):
    with open(os.path.join(directory, name), "rb") as f:
        return f.read()


def get(port, path, method="GET", headers=None):
    response = h.http_request(port, method, path, headers=headers)
    response.close()
    return response


class PageTests(h.DaemonTestMixin, unittest.TestCase):
    DAEMON_KW = {"env": {"CHATHUB_WEBDIR": WEBDIR}}

    def test_files_with_their_content_types(self):
        for path, (name, content_type) in CONTENT_TYPES.items():
            with self.subTest(path=path):
                r = get(self.daemon.port, path)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Content-Type"), content_type)
                self.assertEqual(r.body, read(name))
                self.assertEqual(r.header("Content-Length"), str(len(r.body)))

    def test_security_headers(self):
        for path in CONTENT_TYPES:
            with self.subTest(path=path):
                r = get(self.daemon.port, path)
                self.assertEqual(r.header("Cache-Control"), "no-cache")
                self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
                self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
                policy = dict((d.strip().split(" ", 1) + [""])[:2]
                              for d in r.header("Content-Security-Policy").split(";"))
                self.assertEqual(policy["default-src"], "'self'")
                self.assertEqual(policy["script-src"], "'self'")   # no 'unsafe-inline'
                self.assertEqual(policy["connect-src"], "'self' ws: wss:")
                self.assertEqual(policy["frame-ancestors"], "'none'")
                self.assertEqual(r.header("Connection"), "close")

    def test_the_page_has_no_inline_script_and_loads_nothing_from_elsewhere(self):
        for name in ("index.html", "app.js", "chathub-client.js", "style.css"):
            text = read(name).decode("utf-8")
            with self.subTest(name=name):
                self.assertNotIn("http://", text.replace("http://host", ""))
                self.assertNotIn("https://", text)
                self.assertNotIn("innerHTML", text)
        index = read("index.html").decode("utf-8")
        self.assertNotRegex(index, r"<script(?![^>]*\bsrc=)[^>]*>")
        self.assertNotRegex(index, r"\son[a-z]+=")

    def test_head(self):
        r = get(self.daemon.port, "/", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("Content-Length"), str(len(read("index.html"))))
        self.assertEqual(r.body, b"")

    def test_other_methods_get_405(self):
        for method in ("POST", "PUT", "DELETE"):
            with self.subTest(method=method):
                r = h.http_request(self.daemon.port, method, "/app.js", body=b"x")
                r.close()
                self.assertEqual(r.status, 405)
                self.assertEqual(r.header("Allow"), "GET, HEAD")
                self.assertEqual(r.json()["error"], "method_not_allowed")

    def test_every_other_path_is_404(self):
        paths = ["/nothing.html", "/app.js/", "/web/app.js", "/../README.md",
                 "/%2e%2e/%2e%2e/etc/passwd", "//app.js", "/.app.js",
                 "/APP.JS", "/chathub.conf", "/ws/", "/index"]
        for path in paths:
            with self.subTest(path=path):
                r = get(self.daemon.port, path)
                self.assertEqual(r.status, 404)
                self.assertEqual(r.json()["error"], "not_found")
        # an escaped slash or NUL: libsoup refuses the request line before the server sees it
        for path in ("/..%2fmeson.build", "/app.js%00.html"):
            with self.subTest(path=path):
                self.assertEqual(get(self.daemon.port, path).status, 400)

    def test_a_query_does_not_change_the_file(self):
        r = get(self.daemon.port, "/?token=x")
        self.assertEqual((r.status, r.body), (200, read("index.html")))

    def test_the_websocket_endpoint_is_unchanged(self):
        r = get(self.daemon.port, "/ws")
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_request"))
        ws = h.RawWS.connect(self.daemon.port, self.daemon.token(7))
        ws.send_text('{"type":"ping"}')
        self.assertEqual(ws.recv_json()["type"], "pong")
        ws.close(1000)


class WebFalseTests(h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"server": {"web": "false"}}
    DAEMON_KW = {"env": {"CHATHUB_WEBDIR": WEBDIR}}

    def test_nothing_but_the_endpoint(self):
        for path in CONTENT_TYPES:
            with self.subTest(path=path):
                r = get(self.daemon.port, path)
                self.assertEqual((r.status, r.json()["error"]), (404, "not_found"))
        self.assertNotIn("web page", self.daemon.log_text())


class MissingPageTests(unittest.TestCase):
    def test_a_directory_without_the_page_is_a_warning(self):
        empty = tempfile.mkdtemp(prefix="chathub-web-")
        self.addCleanup(shutil.rmtree, empty)
        with h.Daemon(env={"CHATHUB_WEBDIR": empty}) as daemon:
            daemon.wait_for_log(r"Not serving the web page: %s is missing"
                                % os.path.join(empty, "index.html"))
            self.assertEqual(get(daemon.port, "/").status, 404)
            ws = h.RawWS.connect(daemon.port, daemon.token(7))
            ws.send_text('{"type":"ping"}')
            self.assertEqual(ws.recv_json()["type"], "pong")
            ws.close(1000)

    def test_the_files_are_read_at_start(self):
        copy = tempfile.mkdtemp(prefix="chathub-web-")
        self.addCleanup(shutil.rmtree, copy)
        shutil.copy(os.path.join(WEBDIR, "index.html"), copy)
        with open(os.path.join(copy, "extra.txt"), "w") as f:
            f.write("served\n")
        with open(os.path.join(copy, "secret.conf"), "w") as f:
            f.write("not served: not a page's kind of file\n")
        os.mkdir(os.path.join(copy, "sub.js"))
        with h.Daemon(env={"CHATHUB_WEBDIR": copy}) as daemon:
            self.assertEqual(get(daemon.port, "/extra.txt").body, b"served\n")
            self.assertEqual(get(daemon.port, "/secret.conf").status, 404)
            self.assertEqual(get(daemon.port, "/sub.js").status, 404)
            # a file that appears later is not served, one that changes is served as it was
            with open(os.path.join(copy, "late.txt"), "w") as f:
                f.write("late\n")
            with open(os.path.join(copy, "extra.txt"), "w") as f:
                f.write("changed\n")
            self.assertEqual(get(daemon.port, "/late.txt").status, 404)
            self.assertEqual(get(daemon.port, "/extra.txt").body, b"served\n")


if __name__ == "__main__":
    h.main()
