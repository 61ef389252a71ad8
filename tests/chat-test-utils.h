/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <chathub.h>

G_BEGIN_DECLS

/* 38 bytes: chathubd refuses an HS256 secret under 32 (RFC 7518, section 3.2) */
#define CHAT_TEST_SECRET "test-secret-0123456789-0123456789abcdef"

/* A JWT built by hand (GLib's HMAC, no libjwt), so hostile tokens can be made too. */
char *
chat_test_make_token (GChecksumType hmac,
		      const char *header_json,
		      const char *claims_json,
		      const char *secret);
/* An HS256 token for CHAT_TEST_SECRET with user_id and an exp an hour ahead. */
char *
chat_test_token_for_user (guint64 user_id);
GBytes *
chat_test_load_data (const char *name);

typedef gboolean (*ChatTestCondition) (gpointer user_data);
/* Iterates the thread-default main context until @condition holds; fails the test after
 * @timeout_ms, times CHAT_TEST_TIMEOUT_MULTIPLIER if set (the valgrind setup sets 10). */
void
chat_test_wait_until (ChatTestCondition condition, gpointer user_data, guint timeout_ms);

G_END_DECLS
