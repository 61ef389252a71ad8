/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The token verifier (chat-token-verifier.c): the header's and the claims' parsing, the key
 * selection and the libjwt call. A forged signature stops a token before its claims are read,
 * so the harness signs what the input gives it with keys the verifiers hold. The first byte
 * of the input says what the rest is:
 *   0      a compact token as a client sends it (up to the first NUL);
 *   1,2,3  HEADER NUL CLAIMS: both base64url-encoded and signed with the HS256, HS384 or
 *          HS512 key; without a NUL, the rest is CLAIMS under {"alg":"HS256","typ":"JWT"};
 *   4      HEADER NUL CLAIMS NUL SIGNATURE: encoded as they are, signature bytes included.
 * Every token goes to two verifiers: one with the HS256 key alone, one with three keys (two
 * of them with a key id), an issuer, an audience and a leeway. What the hub relies on is
 * checked: an accepted token has a user id above 0 and rooms above 0; a refused one has a
 * reason for the wire and a CHAT_ERROR_INVALID_TOKEN. A token the simple verifier accepts is
 * signed again by chat_token_sign() (what chathubctl token does), which that verifier must
 * accept too.
 */

#include <stdio.h>
#include <string.h>

#include "chat-error.h"
#include "chat-json-private.h"
#include "chat-token-verifier-private.h"
#include "fuzz-common.h"

/* 32, 48 and 64 bytes: RFC 7518's minimums */
#define SECRET_256 "fuzz-secret-hs256-0123456789abcd"
#define SECRET_384 "fuzz-secret-hs384-0123456789abcdef0123456789abcd"
#define SECRET_512 "fuzz-secret-hs512-0123456789abcdef0123456789abcdef0123456789abcd"

static ChatTokenVerifier *simple;
static ChatTokenVerifier *keyed;
static GBytes *secrets[3];

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
	static const char *const texts[] = {SECRET_256, SECRET_384, SECRET_512};
	g_autoptr (GError) error = NULL;

	fuzz_setup_log ();
	for (guint i = 0; i < G_N_ELEMENTS (secrets); i++)
		secrets[i] = g_bytes_new_static (texts[i], strlen (texts[i]));
	simple = chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, secrets[0], &error);
	fuzz_check (simple != NULL, "the HS256 verifier");
	keyed = chat_token_verifier_new (CHAT_TOKEN_ALGORITHM_HS256, secrets[0], &error);
	fuzz_check (keyed != NULL, "the verifier with key ids");
	fuzz_check (chat_token_verifier_add_key (keyed,
						 "k384",
						 CHAT_TOKEN_ALGORITHM_HS384,
						 secrets[1],
						 &error),
		    "the k384 key");
	fuzz_check (chat_token_verifier_add_key (keyed,
						 "k512",
						 CHAT_TOKEN_ALGORITHM_HS512,
						 secrets[2],
						 &error),
		    "the k512 key");
	chat_token_verifier_set_issuer (keyed, "https://id.example.org");
	chat_token_verifier_set_audience (keyed, "chathub");
	chat_token_verifier_set_leeway (keyed, 60);
	return 0;
}

static char *
base64url (const void *data, gsize size)
{
	char *text = g_base64_encode (data, size);
	char *p;

	g_strdelimit (text, "+", '-');
	g_strdelimit (text, "/", '_');
	p = strchr (text, '=');
	if (p != NULL)
		*p = '\0';
	return text;
}

static char *
sign (guint key, const char *header, gsize header_len, const char *claims, gsize claims_len)
{
	static const GChecksumType types[] = {G_CHECKSUM_SHA256,
					      G_CHECKSUM_SHA384,
					      G_CHECKSUM_SHA512};
	g_autofree char *h = base64url (header, header_len);
	g_autofree char *c = base64url (claims, claims_len);
	g_autofree char *input = g_strconcat (h, ".", c, NULL);
	g_autoptr (GHmac) hmac = NULL;
	g_autofree char *signature = NULL;
	guint8 digest[64];
	gsize digest_len = sizeof digest;
	gsize key_len;
	const guint8 *key_data = g_bytes_get_data (secrets[key], &key_len);

	hmac = g_hmac_new (types[key], key_data, key_len);
	g_hmac_update (hmac, (const guchar *) input, -1);
	g_hmac_get_digest (hmac, digest, &digest_len);
	signature = base64url (digest, digest_len);
	return g_strconcat (input, ".", signature, NULL);
}

/* Verifies @token with @verifier and checks the outcome; TRUE if it was accepted. */
static gboolean
check (ChatTokenVerifier *verifier, const char *token)
{
	g_autoptr (GArray) rooms = NULL;
	g_autoptr (GError) error = NULL;
	const char *wire_reason = NULL;
	guint64 user_id = 0;
	gint64 deadline = -1;
	gboolean accepted;

	accepted = chat_token_verifier_check_full (verifier,
						   token,
						   &user_id,
						   &rooms,
						   &deadline,
						   &wire_reason,
						   &error);
	if (fuzz_verbose ())
		fprintf (stderr,
			 "%s: %s\n",
			 verifier == simple ? "simple" : "keyed",
			 accepted ? "accepted" : wire_reason);
	if (!accepted) {
		fuzz_check (g_error_matches (error, CHAT_ERROR, CHAT_ERROR_INVALID_TOKEN),
			    "a refused token has CHAT_ERROR_INVALID_TOKEN");
		fuzz_check (wire_reason != NULL && *wire_reason != '\0',
			    "a refused token has a reason for the wire");
		return FALSE;
	}
	fuzz_check (error == NULL, "no error for an accepted token");
	fuzz_check (user_id > 0 && user_id <= G_MAXINT64, "an accepted token has a user id");
	fuzz_check (deadline >= 0, "a deadline, or 0 for none");
	for (guint i = 0; rooms != NULL && i < rooms->len; i++)
		fuzz_check (g_array_index (rooms, guint64, i) > 0, "rooms are above 0");
	return TRUE;
}

/* chat_token_sign() with the claims of a token @simple accepted: @simple accepts that too,
 * for the same user. */
static void
check_signed_again (const char *claims, gsize claims_len, const char *token)
{
	g_autoptr (JsonNode) node = chat_json_parse (claims, claims_len, CHAT_JSON_MAX_DEPTH, NULL);
	g_autoptr (GError) error = NULL;
	g_autofree char *again = NULL;
	guint64 user_id = 0, user_id_again = 0;

	if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
		return;
	again = chat_token_sign (CHAT_TOKEN_ALGORITHM_HS256,
				 secrets[0],
				 json_node_get_object (node),
				 &error);
	if (again == NULL)
		return;
	fuzz_check (chat_token_verifier_verify (simple, token, &user_id, NULL, NULL),
		    "accepted before");
	if (!chat_token_verifier_verify (simple, again, &user_id_again, NULL, &error)) {
		fprintf (stderr, "%s\n%s\n", again, error->message);
		fuzz_fail (__FILE__, __LINE__, "a token chat_token_sign() made of accepted claims");
	}
	fuzz_check (user_id == user_id_again, "the same user after chat_token_sign()");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	static const char default_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	const char *rest = (const char *) data + 1;
	gsize rest_len = size > 0 ? size - 1 : 0;
	const char *nul = rest_len > 0 ? memchr (rest, '\0', rest_len) : NULL;
	g_autofree char *token = NULL;
	guint mode;

	if (size == 0)
		return 0;
	mode = data[0] % 5;
	if (mode == 0) {
		token = g_strndup (rest, rest_len);
	} else if (mode <= 3 && nul == NULL) {
		token = sign (mode - 1, default_header, strlen (default_header), rest, rest_len);
	} else if (mode <= 3) {
		token = sign (mode - 1, rest, nul - rest, nul + 1, rest_len - (nul + 1 - rest));
	} else {
		const char *claims = nul != NULL ? nul + 1 : rest + rest_len;
		const char *end = rest + rest_len;
		const char *nul2 = memchr (claims, '\0', end - claims);
		const char *signature = nul2 != NULL ? nul2 + 1 : end;
		g_autofree char *h = base64url (rest, (nul != NULL ? nul : end) - rest);
		g_autofree char *c = base64url (claims, (nul2 != NULL ? nul2 : end) - claims);
		g_autofree char *s = base64url (signature, end - signature);

		token = g_strconcat (h, ".", c, ".", s, NULL);
	}

	if (check (simple, token) && mode == 1) {
		if (nul == NULL)
			check_signed_again (rest, rest_len, token);
		else
			check_signed_again (nul + 1, rest_len - (nul + 1 - rest), token);
	}
	check (keyed, token);
	return 0;
}
