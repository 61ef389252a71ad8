#!/usr/bin/python3
"""Authentication and the HTTP gate of /ws, through the real daemon.

Every refusal is checked for: status 401, JSON body {"error":"invalid_token",
"error_description":...}, WWW-Authenticate: Bearer error="invalid_token",
Connection: close, and the server really closing the socket; both the
Authorization header form and the ?access_token= query form.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chathub_harness as h  # noqa: E402


class GateAssertions:
    def assert_json_error(self, resp, status, error):
        self.assertEqual(resp.status, status, "status (body %r)" % resp.body[:300])
        ctype = resp.header("Content-Type") or ""
        self.assertTrue(ctype.split(";")[0].strip().lower() == "application/json",
                        "Content-Type %r" % ctype)
        try:
            body = resp.json()
        except ValueError as e:
            self.fail("body is not JSON: %r (%s)" % (resp.body[:300], e))
        self.assertIsInstance(body, dict, "body %r" % body)
        self.assertEqual(body.get("error"), error, "body %r" % body)
        desc = body.get("error_description")
        self.assertIsInstance(desc, str, "error_description in %r" % body)
        self.assertTrue(desc.strip(), "empty error_description in %r" % body)
        conn = resp.header("Connection") or ""
        self.assertIn("close", [t.strip().lower() for t in conn.split(",")],
                      "Connection header %r on a %d" % (conn, status))
        self.assertTrue(resp.server_closed(3.0), "server kept the socket open after %d" % status)
        return body

    def assert_401(self, resp):
        body = self.assert_json_error(resp, 401, "invalid_token")
        www = resp.header_all("WWW-Authenticate")
        self.assertEqual(len(www), 1, "WWW-Authenticate headers: %r" % www)
        self.assertTrue(www[0].startswith("Bearer "), "WWW-Authenticate %r" % www[0])
        self.assertIn('error="invalid_token"', www[0], "WWW-Authenticate %r" % www[0])
        self.assertIsNone(resp.header("Sec-WebSocket-Accept"))
        return body

    def assert_refused_because(self, token, description, label=""):
        with self.subTest(case=label):
            r = self.upgrade(token=token)
            try:
                body = self.assert_401(r)
            finally:
                r.close()
            self.assertEqual(body.get("error_description"), description, label)

    def assert_unparsable_said_only_behind_good_signature(self, sign, forge):
        """Claims libjwt cannot parse: said so for a good signature, and for a bad one
        only that the signature is bad (nothing about the claims leaks)."""
        for label, claims in UNPARSABLE_CLAIMS:
            self.assert_refused_because(sign(claims), CLAIMS_UNPARSABLE, label)
            self.assert_refused_because(forge(claims), SIGNATURE_INVALID, label + ", forged")

    def upgrade(self, token=None, query_token=None, extra=None, path="/ws"):
        """Raw upgrade request; returns the HTTPResponse (101 or not)."""
        return h.http_request(self.daemon.port, "GET", h.ws_path(query_token, path),
                              h.upgrade_headers(token=token, extra=extra))

    def assert_refused(self, token, header=True, query=True, label=""):
        if header:
            with self.subTest(form="header", case=label):
                r = self.upgrade(token=token)
                try:
                    self.assert_401(r)
                finally:
                    r.close()
        if query:
            with self.subTest(form="query", case=label):
                r = self.upgrade(query_token=token)
                try:
                    self.assert_401(r)
                finally:
                    r.close()

    def assert_accepted(self, token, user_id, header=True, query=True):
        """Upgrade succeeds and the connection acts as user_id (checked with a broadcast)."""
        forms = []
        if header:
            forms.append(("header", dict(token=token)))
        if query:
            forms.append(("query", dict(query_token=token)))
        for form, kw in forms:
            with self.subTest(form=form):
                try:
                    ws = h.RawWS.connect(self.daemon.port, **kw)
                except h.HandshakeRefused as e:
                    self.fail("refused: HTTP %d %r" % (e.response.status, e.response.body[:300]))
                try:
                    ws.send_json({"type": "message", "content": "whoami"})
                    msg = ws.recv_json()
                    self.assertEqual(msg.get("type"), "message", msg)
                    self.assertEqual(msg.get("from"), user_id, msg)
                finally:
                    ws.close()


SIGNATURE_INVALID = "The token signature is invalid"
CLAIMS_UNPARSABLE = "The token claims cannot be parsed (a number out of range, or U+0000 in a string?)"
HEADER_UNPARSABLE = "The token header cannot be parsed"
# claims json-glib reads but libjwt's parser refuses (raw JSON text)
UNPARSABLE_CLAIMS = [
    ("exp 1e400", '{"user_id":5,"exp":1e400}'),
    ("user_id 2^63", '{"user_id":9223372036854775808}'),
    ("nbf 2^64", '{"user_id":5,"nbf":18446744073709551616}'),
    ("U+0000 in iss", '{"user_id":5,"iss":"a\\u0000b"}'),
]


# 32 bytes: makes a secret long enough for HS256 (RFC 7518 §3.2)
LONG = "0123456789abcdef0123456789abcdef-"


def hs(claims, secret=h.DEFAULT_SECRET, **kw):
    return h.hs_token(claims, secret, **kw)


def valid_claims(**extra):
    c = {"user_id": 4242, "exp": h.now() + 3600}
    c.update(extra)
    return c


class HttpGateTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    """400 / 404 for non-upgrade requests, and keep-alive connections being closed."""

    def test_plain_get_is_400_json(self):
        r = h.http_request(self.daemon.port, "GET", "/ws", {"Connection": "keep-alive"})
        try:
            self.assert_json_error(r, 400, "invalid_request")
            self.assertIsNone(r.header("WWW-Authenticate"))
        finally:
            r.close()

    def test_plain_get_with_valid_token_is_400(self):
        tok = self.daemon.token(11)
        for path, hdrs in (("/ws", {"Authorization": "Bearer " + tok}),
                           (h.ws_path(tok), {})):
            with self.subTest(path=path[:20]):
                r = h.http_request(self.daemon.port, "GET", path, hdrs)
                try:
                    self.assert_json_error(r, 400, "invalid_request")
                finally:
                    r.close()

    def test_plain_get_with_bad_token_is_400_not_401(self):
        # not an upgrade is checked before the token
        r = h.http_request(self.daemon.port, "GET", "/ws", {"Authorization": "Bearer garbage"})
        try:
            self.assert_json_error(r, 400, "invalid_request")
        finally:
            r.close()

    def test_post_with_upgrade_headers_is_400(self):
        tok = self.daemon.token(11)
        r = h.http_request(self.daemon.port, "POST", "/ws", h.upgrade_headers(token=tok), body=b"{}")
        try:
            self.assert_json_error(r, 400, "invalid_request")
        finally:
            r.close()

    def test_upgrade_with_bad_version_is_400(self):
        tok = self.daemon.token(11)
        hdrs = [(k, "8" if k == "Sec-WebSocket-Version" else v) for k, v in h.upgrade_headers(token=tok)]
        r = h.http_request(self.daemon.port, "GET", "/ws", hdrs)
        try:
            self.assertNotEqual(r.status, 101)
            self.assert_json_error(r, 400, "invalid_request")
        finally:
            r.close()

    def test_other_path_is_404_json(self):
        tok = self.daemon.token(11)
        r = h.http_request(self.daemon.port, "GET", "/ws/x", h.upgrade_headers(token=tok))
        try:
            self.assertEqual(r.status, 404, r.body[:200])
            ctype = (r.header("Content-Type") or "").split(";")[0].strip()
            self.assertEqual(ctype, "application/json")
            r.json()
            self.assertIn("close", (r.header("Connection") or "").lower())
            self.assertTrue(r.server_closed(3.0), "server kept the socket open after 404")
        finally:
            r.close()

    def test_keepalive_400_and_401_connections_closed_by_server(self):
        # HTTP/1.1 defaults to keep-alive and we ask for it explicitly; the server must
        # still close (Connection: close), or libsoup 3.2.3 leaks the connection.
        for label, hdrs in (("400", {"Connection": "keep-alive"}),
                            ("401", h.upgrade_headers(token="not.a.token"))):
            with self.subTest(answer=label):
                r = h.http_request(self.daemon.port, "GET", "/ws", hdrs)
                try:
                    self.assertEqual(str(r.status), label)
                    self.assertTrue(r.server_closed(3.0), "socket still open after %s" % label)
                finally:
                    r.close()

    def test_refused_requests_do_not_leak_fds(self):
        base = self.daemon.fd_count()
        for i in range(150):
            hdrs = {"Connection": "keep-alive"} if i % 2 else h.upgrade_headers(token="x.y.z")
            r = h.http_request(self.daemon.port, "GET", "/ws", hdrs)
            r.close()           # the client closes first, as in the 3.2.3 leak
        deadline = time.monotonic() + h.scaled(5)
        while True:
            count = self.daemon.fd_count()
            if count <= base + 5 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertLessEqual(count, base + 5, "daemon fds: %d before, %d after 150 refused requests"
                             % (base, count))


class HS256AuthTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_KW = {"verbose": True}

    # -- accepted ----------------------------------------------------------
    def test_valid_token_header_and_query(self):
        self.assert_accepted(hs(valid_claims(user_id=501)), 501)

    def test_numeric_sub_string(self):
        self.assert_accepted(hs({"sub": "502", "exp": h.now() + 600}), 502)

    def test_no_exp_claim_accepted(self):
        self.assert_accepted(hs({"user_id": 503}), 503, query=False)

    def test_exp_within_default_leeway_accepted(self):
        self.assert_accepted(hs({"user_id": 504, "exp": h.now() - 10}), 504, query=False)

    def test_nbf_within_default_leeway_accepted(self):
        self.assert_accepted(hs({"user_id": 505, "nbf": h.now() + 10, "exp": h.now() + 600}), 505,
                             query=False)

    def test_iat_and_unknown_claims_ignored(self):
        self.assert_accepted(hs(valid_claims(user_id=506, iat=h.now(), jti="abc", name="x",
                                             iss="whoever", aud="anyone")), 506, query=False)

    def test_no_rooms_claim_allows_any_room(self):
        ws = h.RawWS.connect(self.daemon.port, token=hs(valid_claims(user_id=507)))
        try:
            ws.send_json({"type": "join", "room_id": 987654})
            msg = ws.recv_json()
            self.assertEqual(msg.get("type"), "join", msg)
        finally:
            ws.close()

    # -- refused -----------------------------------------------------------
    def test_missing_token(self):
        self.assert_refused(None, query=False, label="no token at all")
        with self.subTest(case="empty query parameter"):
            r = h.http_request(self.daemon.port, "GET", "/ws?access_token=", h.upgrade_headers())
            try:
                self.assert_401(r)
            finally:
                r.close()
        with self.subTest(case="empty bearer"):
            r = self.upgrade(extra={"Authorization": "Bearer "})
            try:
                self.assert_401(r)
            finally:
                r.close()
        with self.subTest(case="Basic scheme"):
            r = self.upgrade(extra={"Authorization": "Basic dXNlcjpwYXNz"})
            try:
                self.assert_401(r)
            finally:
                r.close()

    def test_malformed_tokens(self):
        good = hs(valid_claims())
        head, payload, sig = good.split(".")
        cases = {
            "one segment": "notajwt",
            "two segments": head + "." + payload,
            "four segments": good + ".AAAA",
            "non-base64": "!!!.@@@.###",
            "header not JSON": h.b64url("garbage") + "." + payload + "." + sig,
            "claims not JSON": h.jws({"alg": "HS256", "typ": "JWT"}, "not json",
                                     lambda si: h.hmac_sign(si, h.DEFAULT_SECRET)),
            "claims a JSON array": h.jws({"alg": "HS256"}, "[1,2]",
                                         lambda si: h.hmac_sign(si, h.DEFAULT_SECRET)),
            "header without alg": h.jws({"typ": "JWT"}, valid_claims(),
                                        lambda si: h.hmac_sign(si, h.DEFAULT_SECRET)),
            "empty signature": head + "." + payload + ".",
            "dots only": "..",
        }
        for label, tok in cases.items():
            self.assert_refused(tok, label=label)

    def test_bad_signature(self):
        self.assert_refused(hs(valid_claims(), secret="some-other-secret"), label="other secret")
        good = hs(valid_claims(user_id=1))
        head, _, sig = good.split(".")
        tampered = head + "." + h.b64url('{"user_id":2,"exp":%d}' % (h.now() + 3600)) + "." + sig
        self.assert_refused(tampered, label="tampered claims")
        flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        self.assert_refused(flipped, label="flipped signature")

    def test_unparsable_claims_said_only_behind_a_good_signature(self):
        self.assert_unparsable_said_only_behind_good_signature(
            lambda claims: hs(claims), lambda claims: hs(claims, secret="some-other-secret"))
        # (a kid that is not a string is malformed in itself: another member of the header)
        header = '{"alg":"HS256","x5t":1e400}'
        self.assert_refused_because(
            h.jws(header, valid_claims(), lambda si: h.hmac_sign(si, h.DEFAULT_SECRET)),
            HEADER_UNPARSABLE, "header")
        self.assert_refused_because(
            h.jws(header, valid_claims(), lambda si: h.hmac_sign(si, "some-other-secret")),
            SIGNATURE_INVALID, "header, forged")

    def test_secret_with_newline_is_not_the_secret(self):
        # The secret file holds SECRET + "\n"; the newline is not part of the key.
        self.assert_refused(hs(valid_claims(), secret=h.DEFAULT_SECRET + "\n"), query=False)

    def test_expired(self):
        self.assert_refused(hs(valid_claims(exp=h.now() - 3600)), label="exp an hour ago")
        self.assert_refused(hs(valid_claims(exp=h.now() - 120)), label="exp beyond leeway")

    def test_not_yet_valid(self):
        self.assert_refused(hs(valid_claims(nbf=h.now() + 3600)), label="nbf in an hour")
        self.assert_refused(hs(valid_claims(nbf=h.now() + 120)), label="nbf beyond leeway")

    def test_alg_none(self):
        for name in ("none", "None", "NONE"):
            self.assert_refused(h.none_token(valid_claims(), alg_name=name), label=name)
        # alg none but a (valid HS256) signature attached
        tok = h.hs_token(valid_claims(), h.DEFAULT_SECRET, header={"alg": "none"}, sign_alg="HS256")
        self.assert_refused(tok, label="none with a signature")

    def test_other_hmac_algorithm_refused(self):
        # correctly signed with the right secret, but not the configured (pinned) algorithm
        self.assert_refused(hs(valid_claims(), alg="HS512"), label="HS512")
        self.assert_refused(hs(valid_claims(), alg="HS384"), label="HS384")

    def test_header_alg_mismatching_signature(self):
        tok = h.hs_token(valid_claims(), h.DEFAULT_SECRET, alg="HS256", sign_alg="HS512")
        self.assert_refused(tok)

    def test_user_id_missing_or_invalid(self):
        exp = h.now() + 3600
        cases = {
            "missing": {"exp": exp},
            "zero": {"user_id": 0, "exp": exp},
            "negative": {"user_id": -5, "exp": exp},
            "non-numeric string": {"user_id": "abc", "exp": exp},
            "null": {"user_id": None, "exp": exp},
            "fraction": {"user_id": 1.5, "exp": exp},
            "boolean": {"user_id": True, "exp": exp},
            "object": {"user_id": {"id": 3}, "exp": exp},
            "sub non-numeric": {"sub": "alice", "exp": exp},
            "sub zero": {"sub": "0", "exp": exp},
            "sub negative": {"sub": "-7", "exp": exp},
            "sub not a number but starts with digits": {"sub": "12abc", "exp": exp},
        }
        for label, claims in cases.items():
            self.assert_refused(hs(claims), label=label)

    def test_exp_wrong_type_refused(self):
        self.assert_refused(hs({"user_id": 9, "exp": "tomorrow"}), query=False)

    def test_zz_secret_and_tokens_never_logged(self):
        # Runs last in this class (alphabetical): the daemon has seen good and bad tokens.
        tok = hs(valid_claims(user_id=599))
        ws = h.RawWS.connect(self.daemon.port, token=tok)
        ws.close()
        self.assert_refused(hs(valid_claims(), secret="wrong"), query=False)
        time.sleep(0.2)
        log = self.daemon.log_text()
        self.assertNotIn(h.DEFAULT_SECRET, log, "the HMAC secret appears in the daemon's log")
        self.assertNotIn(tok, log, "a full bearer token appears in the daemon's log")
        self.assertNotIn(tok.split(".")[2], log, "a token signature appears in the daemon's log")


class LeewayZeroTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"auth": {"leeway": 0}}

    def test_expired_by_seconds_refused(self):
        self.assert_refused(hs(valid_claims(exp=h.now() - 5)))

    def test_nbf_seconds_ahead_refused(self):
        self.assert_refused(hs(valid_claims(nbf=h.now() + 20)))

    def test_fresh_token_accepted(self):
        self.assert_accepted(hs(valid_claims(user_id=610, exp=h.now() + 60)), 610)


class IssuerAudienceTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    ISS = "https://issuer.chathub.test"
    AUD = "chathub-test"
    DAEMON_CONFIG = {"auth": {"issuer": ISS, "audience": AUD}}

    def test_matching_iss_and_aud_accepted(self):
        self.assert_accepted(hs(valid_claims(user_id=701, iss=self.ISS, aud=self.AUD)), 701)

    def test_aud_array_containing_audience_accepted(self):
        self.assert_accepted(hs(valid_claims(user_id=702, iss=self.ISS,
                                             aud=["other-service", self.AUD])), 702)

    def test_wrong_issuer(self):
        self.assert_refused(hs(valid_claims(iss="https://evil.test", aud=self.AUD)))

    def test_missing_issuer(self):
        self.assert_refused(hs(valid_claims(aud=self.AUD)))

    def test_wrong_audience(self):
        self.assert_refused(hs(valid_claims(iss=self.ISS, aud="other-service")))

    def test_missing_audience(self):
        self.assert_refused(hs(valid_claims(iss=self.ISS)))

    def test_aud_array_without_audience(self):
        self.assert_refused(hs(valid_claims(iss=self.ISS, aud=["a", "b"])))
        self.assert_refused(hs(valid_claims(iss=self.ISS, aud=[])), label="empty array")


class HS512ConfiguredTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"auth": {"algorithm": "HS512"}}

    def test_hs512_accepted(self):
        self.assert_accepted(hs(valid_claims(user_id=801), alg="HS512"), 801)

    def test_hs256_refused(self):
        self.assert_refused(hs(valid_claims(), alg="HS256"))

    def test_hs384_refused(self):
        self.assert_refused(hs(valid_claims(), alg="HS384"))


class HS384ConfiguredTests(GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_CONFIG = {"auth": {"algorithm": "HS384"}}

    def test_hs384_accepted(self):
        self.assert_accepted(hs(valid_claims(user_id=802), alg="HS384"), 802, query=False)

    def test_hs256_refused(self):
        self.assert_refused(hs(valid_claims(), alg="HS256"), query=False)


class SecretSourceTests(GateAssertions, unittest.TestCase):
    """CHATHUB_JWT_SECRET and the secret file."""

    def run_with(self, **kw):
        self.daemon = h.Daemon(**kw)
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)

    def stop_clean(self):
        self.assertEqual(self.daemon.stop(), 0)

    def test_env_secret(self):
        self.run_with(secret=None, env={"CHATHUB_JWT_SECRET": LONG + "env-secret-1"})
        self.assert_accepted(hs(valid_claims(user_id=901), secret=LONG + "env-secret-1"), 901, query=False)
        self.assert_refused(hs(valid_claims()), query=False)
        self.stop_clean()

    def test_secret_file_wins_over_env(self):
        self.run_with(secret=LONG + "file-secret-2", env={"CHATHUB_JWT_SECRET": LONG + "env-secret-2"})
        self.assert_accepted(hs(valid_claims(user_id=902), secret=LONG + "file-secret-2"), 902, query=False)
        self.assert_refused(hs(valid_claims(), secret=LONG + "env-secret-2"), query=False)
        self.stop_clean()

    def test_secret_file_without_trailing_newline(self):
        self.run_with(secret=LONG + "no-newline-secret", secret_file_text=LONG + "no-newline-secret")
        self.assert_accepted(hs(valid_claims(user_id=903), secret=LONG + "no-newline-secret"), 903,
                             query=False)
        self.stop_clean()

    def test_secret_file_only_one_newline_stripped(self):
        self.run_with(secret=LONG + "two-newlines", secret_file_text=LONG + "two-newlines\n\n")
        self.assert_accepted(hs(valid_claims(user_id=904), secret=LONG + "two-newlines\n"), 904,
                             query=False)
        self.assert_refused(hs(valid_claims(), secret=LONG + "two-newlines"), query=False)
        self.stop_clean()


class KeysMixin:
    @classmethod
    def setUpClass(cls):
        cls.keys = h.shared_keys()
        cls.DAEMON_CONFIG = cls.daemon_config(cls.keys)
        super().setUpClass()


class RS256Tests(KeysMixin, GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_KW = {"secret": None}

    @staticmethod
    def daemon_config(keys):
        return {"auth": {"algorithm": "RS256", "public-key-file": keys.rsa_pub}}

    def test_rs256_accepted(self):
        self.assert_accepted(h.rs256_token(valid_claims(user_id=1001), self.keys.rsa_priv), 1001)

    def test_rs256_other_key_refused(self):
        self.assert_refused(h.rs256_token(valid_claims(), self.keys.rsa2_priv))

    def test_rs256_expired_refused(self):
        self.assert_refused(h.rs256_token(valid_claims(exp=h.now() - 3600), self.keys.rsa_priv))

    def test_rs256_missing_user_id_refused(self):
        self.assert_refused(h.rs256_token({"exp": h.now() + 600}, self.keys.rsa_priv), query=False)

    def test_algorithm_confusion_hs256_with_public_key(self):
        with open(self.keys.rsa_pub, "rb") as f:
            pem = f.read()
        for label, key in (("PEM file bytes", pem), ("PEM without newline", pem.rstrip(b"\n"))):
            for alg in ("HS256", "HS384", "HS512"):
                tok = h.hs_token(valid_claims(), key, alg=alg)
                self.assert_refused(tok, label="%s %s" % (alg, label))

    def test_alg_none_refused(self):
        self.assert_refused(h.none_token(valid_claims()))

    def test_es256_token_refused(self):
        self.assert_refused(h.es256_token(valid_claims(), self.keys.ec_priv))

    def test_rs256_unparsable_claims_said_only_behind_a_good_signature(self):
        self.assert_unparsable_said_only_behind_good_signature(
            lambda claims: h.rs256_token(claims, self.keys.rsa_priv),
            lambda claims: h.rs256_token(claims, self.keys.rsa2_priv))

    def test_rs256_signature_tampered(self):
        tok = h.rs256_token(valid_claims(user_id=1), self.keys.rsa_priv)
        head, _, sig = tok.split(".")
        forged = head + "." + h.b64url('{"user_id":2,"exp":%d}' % (h.now() + 600)) + "." + sig
        self.assert_refused(forged)


class ES256Tests(KeysMixin, GateAssertions, h.DaemonTestMixin, unittest.TestCase):
    DAEMON_KW = {"secret": None}

    @staticmethod
    def daemon_config(keys):
        return {"auth": {"algorithm": "ES256", "public-key-file": keys.ec_pub}}

    def test_es256_accepted(self):
        self.assert_accepted(h.es256_token(valid_claims(user_id=1101), self.keys.ec_priv), 1101)

    def test_es256_numeric_sub_accepted(self):
        self.assert_accepted(h.es256_token({"sub": "1102", "exp": h.now() + 600}, self.keys.ec_priv),
                             1102, query=False)

    def test_es256_other_key_refused(self):
        self.assert_refused(h.es256_token(valid_claims(), self.keys.ec2_priv))

    def test_es256_der_signature_refused(self):
        # JWS needs the raw r||s form; a DER-encoded signature is malformed
        tok = h.jws({"alg": "ES256", "typ": "JWT"}, valid_claims(),
                    lambda si: h.openssl_sign_sha256(si, self.keys.ec_priv))
        self.assert_refused(tok)

    def test_rs256_token_refused(self):
        self.assert_refused(h.rs256_token(valid_claims(), self.keys.rsa_priv))

    def test_es256_unparsable_claims_said_only_behind_a_good_signature(self):
        self.assert_unparsable_said_only_behind_good_signature(
            lambda claims: h.es256_token(claims, self.keys.ec_priv),
            lambda claims: h.es256_token(claims, self.keys.ec2_priv))
        # the DER form of a good signature is not the JWS form
        der = h.jws({"alg": "ES256", "typ": "JWT"}, UNPARSABLE_CLAIMS[0][1],
                    lambda si: h.openssl_sign_sha256(si, self.keys.ec_priv))
        self.assert_refused_because(der, SIGNATURE_INVALID, "DER signature")

    def test_hs256_with_public_key_refused(self):
        with open(self.keys.ec_pub, "rb") as f:
            pem = f.read()
        self.assert_refused(h.hs_token(valid_claims(), pem, alg="HS256"))

    def test_alg_none_refused(self):
        self.assert_refused(h.none_token(valid_claims()))

    def test_es256_not_yet_valid_refused(self):
        self.assert_refused(h.es256_token(valid_claims(nbf=h.now() + 3600), self.keys.ec_priv))


if __name__ == "__main__":
    h.main()
