/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's tokens: every connection gets its own HS256 JWT.
 */

#pragma once

#include <glib.h>

#include <stdint.h>

#define TOKEN_MAX 400 /* room for any token token_mint() writes, NUL included */

void
token_init (void);
size_t
token_mint (GHmac *hmac, uint64_t uid, char *out);
