/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatTokenVerifier: the pinned algorithm, signatures, time claims, issuer and audience, user
 * ids and the rooms claim, with hand-made hostile tokens.
 */

#include <string.h>

#include "chat-test-utils.h"

static const char *HS256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static ChatTokenVerifier *
hs256_verifier (void)
{
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));
	g_autoptr (GError) error = NULL;
	ChatTokenVerifier *verifier =
	    chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, key, &error);

	g_assert_no_error (error);
	return verifier;
}

static gint64
now (void)
{
	return g_get_real_time () / G_USEC_PER_SEC;
}

static void
assert_refused (ChatTokenVerifier *verifier, const char *token, const char *why)
{
	g_autoptr (GError) error = NULL;
	guint64 user_id = 0;

	if (chat_token_verifier_verify (verifier, token, &user_id, NULL, &error))
		g_error ("token accepted (user %" G_GUINT64_FORMAT ") but should be refused: %s",
			 user_id,
			 why);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_TOKEN);
}

static guint64
assert_accepted (ChatTokenVerifier *verifier, const char *token)
{
	g_autoptr (GError) error = NULL;
	guint64 user_id = 0;

	g_assert_true (chat_token_verifier_verify (verifier, token, &user_id, NULL, &error));
	g_assert_no_error (error);
	return user_id;
}

static void
assert_claims_refused (ChatTokenVerifier *verifier, const char *claims, const char *why)
{
	g_autofree char *token =
	    chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims, CHAT_TEST_SECRET);
	assert_refused (verifier, token, why);
}

static guint64
assert_claims_accepted (ChatTokenVerifier *verifier, const char *claims)
{
	g_autofree char *token =
	    chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims, CHAT_TEST_SECRET);
	return assert_accepted (verifier, token);
}

static void
test_token_hmac_algorithms (void)
{
	const ChatTokenAlgorithm algorithms[] = {CHAT_TOKEN_ALGORITHM_HS256,
						 CHAT_TOKEN_ALGORITHM_HS384,
						 CHAT_TOKEN_ALGORITHM_HS512};
	g_autoptr (GBytes) key = g_bytes_new_static ("k3y", 3);

	for (guint i = 0; i < G_N_ELEMENTS (algorithms); i++) {
		g_autoptr (ChatTokenVerifier) verifier = NULL;
		g_autoptr (ChatTokenVerifier) other = NULL;
		g_autoptr (JsonObject) claims = json_object_new ();
		g_autoptr (GError) error = NULL;
		g_autofree char *token = NULL;
		guint64 user_id = 0;

		json_object_set_int_member (claims, "user_id", 77);
		token = chat_token_sign (algorithms[i], key, claims, &error);
		g_assert_no_error (error);
		verifier = chat_token_verifier_new (algorithms[i], key, &error);
		g_assert_no_error (error);
		g_assert_true (
		    chat_token_verifier_verify (verifier, token, &user_id, NULL, &error));
		g_assert_no_error (error);
		g_assert_cmpuint (user_id, ==, 77);

		/* the same token against another HMAC size is the wrong algorithm */
		other = chat_token_verifier_new (algorithms[(i + 1) % 3], key, &error);
		assert_refused (other, token, "another HS algorithm");
	}
}

static void
test_token_bad_signature (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();
	g_autofree char *claims =
	    g_strdup_printf ("{\"user_id\":5,\"exp\":%" G_GINT64_FORMAT "}", now () + 60);
	g_autofree char *wrong = chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims, "other");
	g_autofree char *good =
	    chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims, CHAT_TEST_SECRET);
	g_autofree char *tampered = NULL;
	char *dot;

	assert_refused (verifier, wrong, "signed with another secret");
	g_assert_cmpuint (assert_accepted (verifier, good), ==, 5);
	/* swap the claims of a good token for other claims */
	tampered = g_strdup (good);
	dot = strchr (tampered, '.');
	dot[2] = dot[2] == 'A' ? 'B' : 'A';
	assert_refused (verifier, tampered, "claims changed after signing");
}

static void
assert_refused_because (ChatTokenVerifier *verifier, const char *token, const char *reason)
{
	g_autoptr (GError) error = NULL;

	g_assert_false (chat_token_verifier_verify (verifier, token, NULL, NULL, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_TOKEN);
	if (strstr (error->message, reason) == NULL)
		g_error ("refused with “%s”, expected “%s”", error->message, reason);
}

/* Claims that libjwt's parser refuses: named as such, but only behind a good signature. */
static void
test_token_unparsable_claims (void)
{
	const struct {
		GChecksumType hmac;
		const char *header;
		ChatTokenAlgorithm algorithm;
	} algorithms[] = {
	    {G_CHECKSUM_SHA256, "{\"alg\":\"HS256\"}", CHAT_TOKEN_ALGORITHM_HS256},
	    {G_CHECKSUM_SHA384, "{\"alg\":\"HS384\"}", CHAT_TOKEN_ALGORITHM_HS384},
	    {G_CHECKSUM_SHA512, "{\"alg\":\"HS512\"}", CHAT_TOKEN_ALGORITHM_HS512},
	};
	const char *const claims[] = {
	    "{\"user_id\":5,\"exp\":1e400}",
	    "{\"user_id\":9223372036854775808}",
	    "{\"user_id\":5,\"exp\":18446744073709551616}",
	    "{\"user_id\":5,\"iss\":\"a\\u0000b\"}",
	};
	g_autoptr (GBytes) key = g_bytes_new_static (CHAT_TEST_SECRET, strlen (CHAT_TEST_SECRET));

	for (guint a = 0; a < G_N_ELEMENTS (algorithms); a++) {
		g_autoptr (GError) error = NULL;
		g_autoptr (ChatTokenVerifier) verifier =
		    chat_token_verifier_new (algorithms[a].algorithm, key, &error);
		g_autofree char *bad_header =
		    g_strdup_printf ("{\"alg\":\"%s\",\"x5t\":1e400}",
				     chat_token_algorithm_to_string (algorithms[a].algorithm));
		g_autofree char *header_token = chat_test_make_token (algorithms[a].hmac,
								      bad_header,
								      "{\"user_id\":5}",
								      CHAT_TEST_SECRET);

		g_assert_no_error (error);
		for (guint c = 0; c < G_N_ELEMENTS (claims); c++) {
			g_autofree char *good = chat_test_make_token (algorithms[a].hmac,
								      algorithms[a].header,
								      claims[c],
								      CHAT_TEST_SECRET);
			g_autofree char *forged =
			    chat_test_make_token (algorithms[a].hmac,
						  algorithms[a].header,
						  claims[c],
						  "another-secret-0123456789");

			assert_refused_because (verifier,
						good,
						"The token claims cannot be parsed");
			assert_refused_because (verifier, forged, "The token signature is invalid");
		}
		assert_refused_because (verifier,
					header_token,
					"The token header cannot be parsed");
	}
}

static void
test_token_alg_none (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();
	g_autofree char *unsigned_token =
	    chat_test_make_token (G_CHECKSUM_SHA256, "{\"alg\":\"none\"}", "{\"user_id\":1}", NULL);
	g_autofree char *signed_none = chat_test_make_token (G_CHECKSUM_SHA256,
							     "{\"alg\":\"none\"}",
							     "{\"user_id\":1}",
							     CHAT_TEST_SECRET);
	g_autofree char *lower = chat_test_make_token (G_CHECKSUM_SHA256,
						       "{\"alg\":\"hs256\"}",
						       "{\"user_id\":1}",
						       CHAT_TEST_SECRET);
	g_autofree char *no_alg = chat_test_make_token (G_CHECKSUM_SHA256,
							"{\"typ\":\"JWT\"}",
							"{\"user_id\":1}",
							CHAT_TEST_SECRET);

	assert_refused (verifier, unsigned_token, "alg none, no signature");
	assert_refused (verifier, signed_none, "alg none with a signature");
	assert_refused (verifier, lower, "algorithm names are case-sensitive");
	assert_refused (verifier, no_alg, "no alg");
}

/* The classic: an RS256 service, and an attacker signing HS256 with the public key. */
static void
test_token_algorithm_confusion (void)
{
	g_autoptr (GBytes) public_key = chat_test_load_data ("rsa-public.pem");
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatTokenVerifier) verifier =
	    chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_RS256, public_key, &error);
	g_autofree char *pem =
	    g_strndup (g_bytes_get_data (public_key, NULL), g_bytes_get_size (public_key));
	g_autofree char *forged =
	    chat_test_make_token (G_CHECKSUM_SHA256, HS256, "{\"user_id\":1}", pem);

	g_assert_no_error (error);
	assert_refused (verifier, forged, "HS256 signed with the RSA public key");
}

static void
test_token_public_key_algorithms (void)
{
	const struct {
		ChatTokenAlgorithm algorithm;
		const char *private_key, *public_key, *other_key;
	} cases[] = {
	    {CHAT_TOKEN_ALGORITHM_RS256,
	     "rsa-private.pem",
	     "rsa-public.pem",
	     "rsa-public-other.pem"},
	    {CHAT_TOKEN_ALGORITHM_ES256, "ec-private.pem", "ec-public.pem", "ec-public-other.pem"},
	};

	for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autoptr (GBytes) private_key = chat_test_load_data (cases[i].private_key);
		g_autoptr (GBytes) public_key = chat_test_load_data (cases[i].public_key);
		g_autoptr (GBytes) other_public = chat_test_load_data (cases[i].other_key);
		g_autoptr (GBytes) other_kind = chat_test_load_data (cases[1 - i].public_key);
		g_autoptr (JsonObject) claims = json_object_new ();
		g_autoptr (GError) error = NULL;
		g_autoptr (ChatTokenVerifier) verifier = NULL;
		g_autoptr (ChatTokenVerifier) wrong_key = NULL;
		g_autofree char *token = NULL;
		guint64 user_id = 0;

		json_object_set_string_member (claims, "sub", "31337");
		json_object_set_int_member (claims, "exp", now () + 60);
		token = chat_token_sign (cases[i].algorithm, private_key, claims, &error);
		g_assert_no_error (error);
		verifier = chat_token_verifier_new (cases[i].algorithm, public_key, &error);
		g_assert_no_error (error);
		g_assert_true (
		    chat_token_verifier_verify (verifier, token, &user_id, NULL, &error));
		g_assert_no_error (error);
		g_assert_cmpuint (user_id, ==, 31337);

		wrong_key = chat_token_verifier_new (cases[i].algorithm, other_public, &error);
		g_assert_no_error (error);
		assert_refused (wrong_key, token, "verified with an unrelated public key");

		/* an RSA key for ES256 or an EC key for RS256 is a configuration error */
		g_assert_null (chat_token_verifier_new (cases[i].algorithm, other_kind, &error));
		g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	}
}

static void
test_token_time_claims (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();
	g_autofree char *expired =
	    g_strdup_printf ("{\"user_id\":1,\"exp\":%" G_GINT64_FORMAT "}", now () - 100);
	g_autofree char *in_leeway =
	    g_strdup_printf ("{\"user_id\":1,\"exp\":%" G_GINT64_FORMAT "}", now () - 10);
	g_autofree char *future =
	    g_strdup_printf ("{\"user_id\":1,\"nbf\":%" G_GINT64_FORMAT "}", now () + 100);
	g_autofree char *soon =
	    g_strdup_printf ("{\"user_id\":1,\"nbf\":%" G_GINT64_FORMAT "}", now () + 10);
	g_autofree char *wrong_type =
	    g_strdup_printf ("{\"user_id\":1,\"exp\":\"%" G_GINT64_FORMAT "\"}", now () + 100);

	assert_claims_refused (verifier, expired, "expired");
	assert_claims_accepted (verifier, in_leeway);
	assert_claims_refused (verifier, future, "not yet valid");
	assert_claims_accepted (verifier, soon);
	assert_claims_refused (verifier, wrong_type, "exp is a string");
	assert_claims_accepted (verifier, "{\"user_id\":1}");

	chat_token_verifier_set_leeway (verifier, 0);
	g_assert_cmpuint (chat_token_verifier_get_leeway (verifier), ==, 0);
	assert_claims_refused (verifier, in_leeway, "expired without leeway");
	assert_claims_refused (verifier, soon, "not yet valid without leeway");
}

static void
test_token_issuer_audience (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();

	assert_claims_accepted (verifier, "{\"user_id\":1,\"iss\":\"anyone\",\"aud\":\"any\"}");
	g_object_set (verifier, "issuer", "https://id.example", "audience", "chathub", NULL);
	assert_claims_accepted (
	    verifier,
	    "{\"user_id\":1,\"iss\":\"https://id.example\",\"aud\":\"chathub\"}");
	assert_claims_accepted (
	    verifier,
	    "{\"user_id\":1,\"iss\":\"https://id.example\",\"aud\":[\"x\",\"chathub\"]}");
	assert_claims_refused (verifier, "{\"user_id\":1,\"aud\":\"chathub\"}", "no iss");
	assert_claims_refused (verifier,
			       "{\"user_id\":1,\"iss\":\"evil\",\"aud\":\"chathub\"}",
			       "wrong iss");
	assert_claims_refused (verifier,
			       "{\"user_id\":1,\"iss\":\"https://id.example\"}",
			       "no aud");
	assert_claims_refused (verifier,
			       "{\"user_id\":1,\"iss\":\"https://id.example\",\"aud\":\"other\"}",
			       "wrong aud");
	assert_claims_refused (
	    verifier,
	    "{\"user_id\":1,\"iss\":\"https://id.example\",\"aud\":[\"a\",\"b\"]}",
	    "aud array without us");
	/* "" clears the requirement */
	chat_token_verifier_set_issuer (verifier, "");
	g_assert_null (chat_token_verifier_get_issuer (verifier));
}

static void
test_token_user_id (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();

	g_assert_cmpuint (assert_claims_accepted (verifier, "{\"user_id\":42}"), ==, 42);
	g_assert_cmpuint (assert_claims_accepted (verifier, "{\"sub\":\"1234\"}"), ==, 1234);
	g_assert_cmpuint (assert_claims_accepted (verifier, "{\"sub\":99}"), ==, 99);
	g_assert_cmpuint (assert_claims_accepted (verifier, "{\"user_id\":7,\"sub\":\"9\"}"),
			  ==,
			  7);
	assert_claims_refused (verifier, "{}", "no user id");
	assert_claims_refused (verifier, "{\"user_id\":0}", "user id 0");
	assert_claims_refused (verifier, "{\"user_id\":-5}", "negative user id");
	assert_claims_refused (verifier, "{\"user_id\":\"42\"}", "user id as a string");
	assert_claims_refused (verifier, "{\"user_id\":4.5}", "fractional user id");
	assert_claims_refused (verifier, "{\"user_id\":null}", "null user id");
	assert_claims_refused (verifier, "{\"sub\":\"alice\"}", "non-numeric sub");
	assert_claims_refused (verifier, "{\"sub\":\"-3\"}", "negative sub");
	assert_claims_refused (verifier, "{\"sub\":\"0\"}", "sub 0");
	assert_claims_refused (verifier, "{\"sub\":\"12abc\"}", "sub with trailing letters");
}

static void
test_token_rooms (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();
	const char *claims[] = {"{\"user_id\":1,\"rooms\":[3,5]}",
				"{\"user_id\":1,\"rooms\":[]}",
				"{\"user_id\":1}"};
	const guint expected_len[] = {2, 0, G_MAXUINT};

	for (guint i = 0; i < G_N_ELEMENTS (claims); i++) {
		g_autofree char *token =
		    chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims[i], CHAT_TEST_SECRET);
		g_autoptr (GArray) rooms = NULL;
		g_autoptr (GError) error = NULL;

		g_assert_true (chat_token_verifier_verify (verifier, token, NULL, &rooms, &error));
		g_assert_no_error (error);
		if (expected_len[i] == G_MAXUINT) {
			g_assert_null (rooms);
			continue;
		}
		g_assert_nonnull (rooms);
		g_assert_cmpuint (rooms->len, ==, expected_len[i]);
		if (rooms->len == 2) {
			g_assert_cmpuint (g_array_index (rooms, guint64, 0), ==, 3);
			g_assert_cmpuint (g_array_index (rooms, guint64, 1), ==, 5);
		}
	}
	assert_claims_refused (verifier, "{\"user_id\":1,\"rooms\":\"3\"}", "rooms not an array");
	assert_claims_refused (verifier, "{\"user_id\":1,\"rooms\":[0]}", "room 0");
	assert_claims_refused (verifier, "{\"user_id\":1,\"rooms\":[\"a\"]}", "room as a string");
}

static void
test_token_malformed (void)
{
	g_autoptr (ChatTokenVerifier) verifier = hs256_verifier ();
	g_autofree char *huge = NULL;
	g_autofree char *good = chat_test_token_for_user (3);
	g_autofree char *four = g_strdup_printf ("%s.x", good);
	g_autoptr (GString) padded = g_string_new (good);

	assert_refused (verifier, NULL, "no token");
	assert_refused (verifier, "", "empty");
	assert_refused (verifier, "abc", "no dots");
	assert_refused (verifier, "abc.def", "two parts");
	assert_refused (verifier, four, "four parts");
	assert_refused (verifier, "!!!.eyJ1c2VyX2lkIjoxfQ.sig", "header not base64url");
	assert_refused (verifier, "bm90IGpzb24.eyJ1c2VyX2lkIjoxfQ.sig", "header not JSON");
	assert_refused (verifier, "WzFd.eyJ1c2VyX2lkIjoxfQ.sig", "header not an object");
	g_string_append (padded, "==");
	assert_refused (verifier, padded->str, "padding is not base64url");
	huge = g_strnfill (20000, 'a');
	assert_refused (verifier, huge, "huge");
	assert_claims_refused (verifier, "[1,2]", "claims not an object");
	{
		g_autofree char *crit =
		    chat_test_make_token (G_CHECKSUM_SHA256,
					  "{\"alg\":\"HS256\",\"crit\":[\"x\"]}",
					  "{\"user_id\":1}",
					  CHAT_TEST_SECRET);
		assert_refused (verifier, crit, "unknown critical header");
	}
}

static void
test_token_verifier_new_errors (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (GBytes) empty = g_bytes_new_static ("", 0);
	g_autoptr (GBytes) not_pem = g_bytes_new_static ("secret", 6);
	static const char garbage[] =
	    "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
	g_autoptr (GBytes) garbage_pem = g_bytes_new_static (garbage, strlen (garbage));
	g_autoptr (GBytes) p384 = chat_test_load_data ("ec-p384-public.pem");
	ChatTokenAlgorithm algorithm;

	g_assert_null (chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, empty, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_null (chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_ES256, not_pem, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_null (chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_ES256, garbage_pem, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_null (chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_ES256, p384, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_false (chat_token_algorithm_from_string ("none", &algorithm, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_true (chat_token_algorithm_from_string ("ES256", &algorithm, &error));
	g_assert_cmpint (algorithm, ==, CHAT_TOKEN_ALGORITHM_ES256);
	g_assert_cmpstr (chat_token_algorithm_to_string (CHAT_TOKEN_ALGORITHM_HS512), ==, "HS512");
}

/* g_object_new(), as bindings construct: no key, so every token is refused, and no critical
 * (the tests run with G_DEBUG=fatal-criticals) */
static void
test_token_verifier_without_key (void)
{
	static const ChatTokenAlgorithm algorithms[] = {CHAT_TOKEN_ALGORITHM_HS256,
							CHAT_TOKEN_ALGORITHM_RS256};
	g_autofree char *claims =
	    g_strdup_printf ("{\"user_id\":5,\"exp\":%" G_GINT64_FORMAT "}", now () + 3600);
	g_autofree char *token =
	    chat_test_make_token (G_CHECKSUM_SHA256, HS256, claims, CHAT_TEST_SECRET);

	for (guint i = 0; i < G_N_ELEMENTS (algorithms); i++) {
		g_autoptr (ChatTokenVerifier) verifier =
		    g_object_new (CHAT_TYPE_TOKEN_VERIFIER, "algorithm", algorithms[i], NULL);
		g_autoptr (GError) error = NULL;

		assert_refused (verifier, token, "a verifier without a key");
		assert_refused (verifier, "", "no token");
		g_assert_false (chat_token_verifier_verify (verifier, token, NULL, NULL, &error));
		g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_TOKEN);
		g_assert_nonnull (strstr (error->message, "no key"));
	}
}

static char *
sign_with_id (const char *secret, const char *key_id, guint64 user_id)
{
	g_autoptr (GBytes) key = g_bytes_new (secret, strlen (secret));
	g_autoptr (JsonObject) claims = json_object_new ();
	g_autoptr (GError) error = NULL;
	char *token;

	json_object_set_int_member (claims, "user_id", (gint64) user_id);
	json_object_set_int_member (claims, "exp", now () + 60);
	token =
	    chat_token_sign_with_key_id (CHAT_TOKEN_ALGORITHM_HS256, key, key_id, claims, &error);
	g_assert_no_error (error);
	return token;
}

static void
add_secret (ChatTokenVerifier *verifier, const char *key_id, const char *secret)
{
	g_autoptr (GBytes) key = g_bytes_new (secret, strlen (secret));
	g_autoptr (GError) error = NULL;

	g_assert_true (chat_token_verifier_add_key (verifier,
						    key_id,
						    CHAT_TOKEN_ALGORITHM_HS256,
						    key,
						    &error));
	g_assert_no_error (error);
}

#define SECRET_A "secret-a-0123456789-0123456789-0123456789"
#define SECRET_B "secret-b-0123456789-0123456789-0123456789"

/* Several keys: a kid picks its key (and only it), no kid tries each key of the algorithm,
 * an unknown kid is refused by name, keys are pinned to their algorithm. */
static void
test_token_key_ids (void)
{
	g_autoptr (ChatTokenVerifier) verifier = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	g_autoptr (GBytes) rsa_public = chat_test_load_data ("rsa-public.pem");
	g_autoptr (GBytes) rsa_private = chat_test_load_data ("rsa-private.pem");
	g_autoptr (JsonObject) claims = json_object_new ();
	g_autoptr (GError) error = NULL;
	g_autofree char *b_as_b = NULL, *b_as_a = NULL, *a_unknown = NULL, *b_plain = NULL;
	g_autofree char *a_plain = NULL, *rsa_token = NULL, *hs_as_rsa = NULL, *bad_kid = NULL;

	g_assert_cmpuint (chat_token_verifier_get_n_keys (verifier), ==, 0);
	add_secret (verifier, "a", SECRET_A);
	add_secret (verifier, "b", SECRET_B);
	g_assert_true (chat_token_verifier_add_key (verifier,
						    "r",
						    CHAT_TOKEN_ALGORITHM_RS256,
						    rsa_public,
						    &error));
	g_assert_no_error (error);
	g_assert_cmpuint (chat_token_verifier_get_n_keys (verifier), ==, 3);
	g_assert_true (chat_token_verifier_has_key_id (verifier, "b"));
	g_assert_false (chat_token_verifier_has_key_id (verifier, "c"));
	g_assert_cmpint (chat_token_verifier_get_algorithm (verifier),
			 ==,
			 CHAT_TOKEN_ALGORITHM_HS256);

	b_as_b = sign_with_id (SECRET_B, "b", 21);
	g_assert_cmpuint (assert_accepted (verifier, b_as_b), ==, 21);
	/* the kid says "a": B's signature is not even tried */
	b_as_a = sign_with_id (SECRET_B, "a", 22);
	assert_refused_because (verifier, b_as_a, "signature");
	a_unknown = sign_with_id (SECRET_A, "nope", 23);
	assert_refused_because (verifier, a_unknown, "unknown key id");
	/* no kid: each HS256 key is tried */
	b_plain = sign_with_id (SECRET_B, NULL, 24);
	g_assert_cmpuint (assert_accepted (verifier, b_plain), ==, 24);
	a_plain = sign_with_id (SECRET_A, NULL, 25);
	g_assert_cmpuint (assert_accepted (verifier, a_plain), ==, 25);

	json_object_set_int_member (claims, "user_id", 26);
	rsa_token = chat_token_sign_with_key_id (CHAT_TOKEN_ALGORITHM_RS256,
						 rsa_private,
						 "r",
						 claims,
						 &error);
	g_assert_no_error (error);
	g_assert_cmpuint (assert_accepted (verifier, rsa_token), ==, 26);
	/* the RS256 key never checks an HS256 token, even one naming it */
	hs_as_rsa = sign_with_id (SECRET_A, "r", 27);
	assert_refused_because (verifier, hs_as_rsa, "configured algorithm");

	bad_kid = chat_test_make_token (G_CHECKSUM_SHA256,
					"{\"alg\":\"HS256\",\"kid\":5}",
					"{\"user_id\":28}",
					SECRET_A);
	assert_refused_because (verifier, bad_kid, "malformed");
}

/* A key without id checks the tokens whose kid names no key, so a single key keeps taking
 * the tokens of a provider that always sets kid. */
static void
test_token_key_without_id (void)
{
	g_autoptr (ChatTokenVerifier) verifier = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	g_autofree char *a_other = sign_with_id (SECRET_A, "other", 31);
	g_autofree char *b_other = sign_with_id (SECRET_B, "other", 32);
	g_autofree char *b_as_b = sign_with_id (SECRET_B, "b", 33);

	add_secret (verifier, NULL, SECRET_A);
	add_secret (verifier, "b", SECRET_B);
	g_assert_cmpuint (assert_accepted (verifier, a_other), ==, 31);
	/* the keys with another id are not tried for an unknown kid */
	assert_refused_because (verifier, b_other, "signature");
	g_assert_cmpuint (assert_accepted (verifier, b_as_b), ==, 33);
}

static void
test_token_add_key_errors (void)
{
	g_autoptr (ChatTokenVerifier) verifier = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	g_autoptr (GBytes) key = g_bytes_new_static (SECRET_A, strlen (SECRET_A));
	g_autoptr (GBytes) empty = g_bytes_new_static ("", 0);
	g_autoptr (JsonObject) claims = json_object_new ();
	const char *bad_ids[] = {"", "a b", "tab\t", "é"};
	g_autoptr (GError) error = NULL;

	for (guint i = 0; i < G_N_ELEMENTS (bad_ids); i++) {
		g_assert_false (chat_token_verifier_add_key (verifier,
							     bad_ids[i],
							     CHAT_TOKEN_ALGORITHM_HS256,
							     key,
							     &error));
		g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
		g_clear_error (&error);
	}
	g_assert_false (
	    chat_token_verifier_add_key (verifier, "e", CHAT_TOKEN_ALGORITHM_HS256, empty, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	for (guint i = 0; i < CHAT_TOKEN_VERIFIER_MAX_KEYS; i++) {
		g_autofree char *id = g_strdup_printf ("k%u", i);

		add_secret (verifier, id, SECRET_A);
	}
	g_assert_false (chat_token_verifier_add_key (verifier,
						     "one-too-many",
						     CHAT_TOKEN_ALGORITHM_HS256,
						     key,
						     &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);
	g_assert_cmpuint (chat_token_verifier_get_n_keys (verifier),
			  ==,
			  CHAT_TOKEN_VERIFIER_MAX_KEYS);

	/* the same id twice */
	g_clear_object (&verifier);
	verifier = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	add_secret (verifier, "twice", SECRET_A);
	g_assert_false (chat_token_verifier_add_key (verifier,
						     "twice",
						     CHAT_TOKEN_ALGORITHM_HS256,
						     key,
						     &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
	g_clear_error (&error);

	json_object_set_int_member (claims, "user_id", 1);
	g_assert_null (
	    chat_token_sign_with_key_id (CHAT_TOKEN_ALGORITHM_HS256, key, "a b", claims, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_ARGUMENT);
}

static void
count_notify (GObject *object, GParamSpec *pspec, guint *count)
{
	(*count)++;
}

/* The whole set is swapped at once: the old keys stop, the new ones start, together. */
static void
test_token_replace_keys (void)
{
	g_autoptr (GBytes) a = g_bytes_new_static (SECRET_A, strlen (SECRET_A));
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatTokenVerifier) verifier =
	    chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, a, &error);
	g_autoptr (ChatTokenVerifier) staging = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	g_autoptr (ChatTokenVerifier) empty = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, NULL);
	g_autofree char *a_plain = sign_with_id (SECRET_A, NULL, 41);
	g_autofree char *b_as_b = sign_with_id (SECRET_B, "b", 42);
	g_autofree char *c_as_c = sign_with_id (SECRET_B, "c", 43);
	guint notified = 0;

	g_assert_no_error (error);
	g_signal_connect (verifier, "notify::n-keys", G_CALLBACK (count_notify), &notified);
	chat_token_verifier_set_leeway (verifier, 7);
	g_assert_cmpuint (assert_accepted (verifier, a_plain), ==, 41);
	assert_refused (verifier, b_as_b, "B is not a key yet");

	add_secret (staging, "b", SECRET_B);
	add_secret (staging, "c", SECRET_B);
	/* building the new set does not touch the verifier in use */
	assert_refused (verifier, b_as_b, "B is only staged");
	chat_token_verifier_replace_keys (verifier, staging);
	g_assert_cmpuint (notified, ==, 1);
	g_assert_cmpuint (chat_token_verifier_get_n_keys (verifier), ==, 2);
	g_assert_cmpuint (chat_token_verifier_get_leeway (verifier), ==, 7);
	g_assert_cmpuint (assert_accepted (verifier, b_as_b), ==, 42);
	g_assert_cmpuint (assert_accepted (verifier, c_as_c), ==, 43);
	assert_refused (verifier, a_plain, "A was replaced");
	/* the staging verifier lives on separately */
	g_clear_object (&staging);
	g_assert_cmpuint (assert_accepted (verifier, b_as_b), ==, 42);

	chat_token_verifier_replace_keys (verifier, empty);
	g_assert_cmpuint (chat_token_verifier_get_n_keys (verifier), ==, 0);
	assert_refused_because (verifier, b_as_b, "no key");
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

	g_test_add_func ("/chat/token/hmac-algorithms", test_token_hmac_algorithms);
	g_test_add_func ("/chat/token/bad-signature", test_token_bad_signature);
	g_test_add_func ("/chat/token/unparsable-claims", test_token_unparsable_claims);
	g_test_add_func ("/chat/token/alg-none", test_token_alg_none);
	g_test_add_func ("/chat/token/algorithm-confusion", test_token_algorithm_confusion);
	g_test_add_func ("/chat/token/public-key-algorithms", test_token_public_key_algorithms);
	g_test_add_func ("/chat/token/time-claims", test_token_time_claims);
	g_test_add_func ("/chat/token/issuer-audience", test_token_issuer_audience);
	g_test_add_func ("/chat/token/user-id", test_token_user_id);
	g_test_add_func ("/chat/token/rooms", test_token_rooms);
	g_test_add_func ("/chat/token/malformed", test_token_malformed);
	g_test_add_func ("/chat/token/verifier-new-errors", test_token_verifier_new_errors);
	g_test_add_func ("/chat/token/verifier-without-key", test_token_verifier_without_key);
	g_test_add_func ("/chat/token/key-ids", test_token_key_ids);
	g_test_add_func ("/chat/token/key-without-id", test_token_key_without_id);
	g_test_add_func ("/chat/token/add-key-errors", test_token_add_key_errors);
	g_test_add_func ("/chat/token/replace-keys", test_token_replace_keys);
	return g_test_run ();
}
