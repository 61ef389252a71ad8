#!/usr/bin/python3
"""[server] trusted-proxies, through the real daemon (the tests' peer is 127.0.0.1, playing
the proxy):

* from a trusted peer, the rightmost X-Forwarded-For address that is not a trusted proxy is
  the client: in the refused-upgrade log line (with "via" the peer) and as the key of the
  per-address upgrade rate; addresses left of it (the client's to forge) do not count;
* IPv6 addresses, ports and several headers;
* from a peer that is not trusted, and by default, the header is ignored;
* the configuration refuses what is neither an address nor a network.
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402

LINE_RE = re.compile(r"Refused a connection from (\S+)(?: \(via (\S+)\))?: .* \((\w+), HTTP (\d+)\)$")


class ProxyTestCase(unittest.TestCase):
    proxies = None
    limits = {}

    def setUp(self):
        config = {"limits": self.limits}
        if self.proxies is not None:
            config["server"] = {"trusted-proxies": self.proxies}
        self.daemon = h.Daemon(config=config)
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def refuse(self, forwarded):
        """A bad token with these X-Forwarded-For headers; the answer's status and the log
        line's (client, via, reason)."""
        n = len(self.lines())
        headers = h.upgrade_headers(token="bad") + [("X-Forwarded-For", f) for f in forwarded]
        r = h.http_request(self.daemon.port, path="/ws", headers=headers)
        r.close()
        deadline = time.monotonic() + h.scaled(5)
        while len(self.lines()) <= n:
            if time.monotonic() > deadline:
                self.fail("no new refusal line:\n" + self.daemon.log_text())
            time.sleep(0.02)
        return r.status, self.lines()[n]

    def lines(self):
        return [LINE_RE.search(l).groups()[:3] for l in self.daemon.log if LINE_RE.search(l)]


class TrustedTests(ProxyTestCase):
    proxies = "10.1.2.3 127.0.0.0/8, ::1, fd00::/8"

    # each test its own daemon: the log takes 10 refusal lines a second
    def test_client_address(self):
        self.check([
            (["203.0.113.7"], "203.0.113.7"),
            # the proxies append: the rightmost untrusted hop, trusted ones skipped
            (["198.51.100.1, 203.0.113.7, 127.0.0.5"], "203.0.113.7"),
            (["198.51.100.1", "203.0.113.8, 10.1.2.3"], "203.0.113.8"),
            (["203.0.113.9:5555"], "203.0.113.9"),
            ([], "127.0.0.1"),
        ])

    def test_ipv6(self):
        self.check([
            (["2001:db8::1"], "2001:db8::1"),
            (["[2001:db8::2]:443, fd00::1"], "2001:db8::2"),
            (["::ffff:203.0.113.10"], "203.0.113.10"),
        ])

    def test_end_of_the_walk(self):
        self.check([
            # nothing but proxies: the leftmost
            (["127.0.0.9, 10.1.2.3"], "127.0.0.9"),
            # garbage ends the walk at the last address read
            (["203.0.113.7, unknown, 10.1.2.3"], "10.1.2.3"),
            # so does the 16th element from the right
            (["198.51.100.1, " + ", ".join("127.0.0.%d" % i for i in range(1, 21))],
             "127.0.0.5"),
        ])

    def check(self, cases):
        for forwarded, client in cases:
            status, line = self.refuse(forwarded)
            self.assertEqual(status, 401)
            via = None if client == "127.0.0.1" else "127.0.0.1"
            self.assertEqual(line, (client, via, "token_malformed"), forwarded)


class TrustedRateTests(ProxyTestCase):
    proxies = "127.0.0.1"
    limits = {"upgrades-per-second": 1, "upgrade-burst": 2}

    def test_rate_per_forwarded_client(self):
        a = ["203.0.113.7"]
        self.assertEqual(self.refuse(a)[0], 401)
        self.assertEqual(self.refuse(a)[0], 401)
        status, line = self.refuse(a)
        self.assertEqual((status, line), (429, ("203.0.113.7", "127.0.0.1", "too_many_requests")))
        # another client behind the same proxy has its own share, even with a forged hop
        self.assertEqual(self.refuse(["203.0.113.7, 203.0.113.20"])[0], 401)
        # and the one on the left is not believed
        self.assertEqual(self.refuse(["203.0.113.20, 203.0.113.7"])[0], 429)


class UntrustedTests(ProxyTestCase):
    proxies = "10.0.0.0/8"
    limits = {"upgrades-per-second": 1, "upgrade-burst": 2}

    def test_header_ignored(self):
        self.assertEqual(self.refuse(["203.0.113.1"]), (401, ("127.0.0.1", None, "token_malformed")))
        self.assertEqual(self.refuse(["203.0.113.2"])[0], 401)
        # the third from 127.0.0.1, whatever the header says
        self.assertEqual(self.refuse(["203.0.113.3"]),
                         (429, ("127.0.0.1", None, "too_many_requests")))


class DefaultTests(ProxyTestCase):

    def test_header_ignored(self):
        self.assertEqual(self.refuse(["203.0.113.1"]), (401, ("127.0.0.1", None, "token_malformed")))


class ConfigTests(unittest.TestCase):

    def test_refused_values(self):
        for value in ("proxy.example", "10.0.0.0/33", "1.2.3.4/8x", "::1/129"):
            rc, log = h.run_daemon_expect_exit(config={"server": {"trusted-proxies": value}})
            self.assertNotEqual(rc, 0, value)
            self.assertIn("[server] trusted-proxies", log)


if __name__ == "__main__":
    h.main()
