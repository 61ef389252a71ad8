/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "chat-test-utils.h"

static char *
base64url (const guchar *data, gsize length)
{
	g_autofree char *b64 = g_base64_encode (data, length);
	GString *out = g_string_new (NULL);

	for (const char *p = b64; *p != '\0'; p++) {
		if (*p == '+')
			g_string_append_c (out, '-');
		else if (*p == '/')
			g_string_append_c (out, '_');
		else if (*p != '=')
			g_string_append_c (out, *p);
	}
	return g_string_free (out, FALSE);
}

char *
chat_test_make_token (GChecksumType hmac_type,
		      const char *header_json,
		      const char *claims_json,
		      const char *secret)
{
	g_autofree char *header = base64url ((const guchar *) header_json, strlen (header_json));
	g_autofree char *claims = base64url ((const guchar *) claims_json, strlen (claims_json));
	g_autofree char *signing_input = g_strdup_printf ("%s.%s", header, claims);
	g_autoptr (GHmac) hmac = NULL;
	guint8 digest[64];
	gsize digest_len = sizeof digest;
	g_autofree char *signature = NULL;

	if (secret == NULL)
		return g_strdup_printf ("%s.", signing_input);
	hmac = g_hmac_new (hmac_type, (const guchar *) secret, strlen (secret));
	g_hmac_update (hmac, (const guchar *) signing_input, -1);
	g_hmac_get_digest (hmac, digest, &digest_len);
	signature = base64url (digest, digest_len);
	return g_strdup_printf ("%s.%s", signing_input, signature);
}

char *
chat_test_token_for_user (guint64 user_id)
{
	g_autofree char *claims =
	    g_strdup_printf ("{\"user_id\":%" G_GUINT64_FORMAT ",\"exp\":%" G_GINT64_FORMAT "}",
			     user_id,
			     g_get_real_time () / G_USEC_PER_SEC + 3600);

	return chat_test_make_token (G_CHECKSUM_SHA256,
				     "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
				     claims,
				     CHAT_TEST_SECRET);
}

GBytes *
chat_test_load_data (const char *name)
{
	g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", name, NULL);
	g_autoptr (GError) error = NULL;
	char *contents = NULL;
	gsize length = 0;

	g_file_get_contents (path, &contents, &length, &error);
	g_assert_no_error (error);
	return g_bytes_new_take (contents, length);
}

/* CHAT_TEST_TIMEOUT_MULTIPLIER (the valgrind test setup sets it) stretches every deadline. */
static guint64
timeout_multiplier (void)
{
	const char *text = g_getenv ("CHAT_TEST_TIMEOUT_MULTIPLIER");
	guint64 value = 1;

	if (text != NULL && !g_ascii_string_to_unsigned (text, 10, 1, 1000, &value, NULL))
		g_error ("CHAT_TEST_TIMEOUT_MULTIPLIER=%s is not a number from 1 to 1000", text);
	return value;
}

void
chat_test_wait_until (ChatTestCondition condition, gpointer user_data, guint timeout_ms)
{
	gint64 deadline =
	    g_get_monotonic_time () + (gint64) (timeout_ms * timeout_multiplier ()) * 1000;

	while (!condition (user_data)) {
		if (g_get_monotonic_time () > deadline)
			g_error ("condition not met within %" G_GUINT64_FORMAT " ms",
				 timeout_ms * timeout_multiplier ());
		g_main_context_iteration (g_main_context_get_thread_default (), FALSE);
		if (!condition (user_data))
			g_usleep (200);
	}
}
