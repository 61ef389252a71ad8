/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-token.h"

#include "bench.h"

#include <inttypes.h>
#include <string.h>

static char jwt_header[64]; /* base64url of {"alg":"HS256","typ":"JWT"} */

/* Encodes the header every token shares, once before the event loops start. */
void
token_init (void)
{
	static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

	b64 (jwt_header, (const uint8_t *) hdr, strlen (hdr), B64_URL, false);
}

/* An HS256 JWT {"user_id": uid, "exp": now + 3600} into out (NUL-terminated), signed with a copy
 * of hmac (keyed with the secret, nothing hashed yet); returns its length. */
size_t
token_mint (GHmac *hmac, uint64_t uid, char *out)
{
	char payload[96];
	int plen = snprintf (payload,
			     sizeof payload,
			     "{\"user_id\":%" PRIu64 ",\"exp\":%" PRId64 "}",
			     uid,
			     (int64_t) time (NULL) + 3600);
	size_t o = strlen (jwt_header);
	GHmac *h = g_hmac_copy (hmac);
	guint8 digest[32];
	gsize dlen = sizeof digest;

	memcpy (out, jwt_header, o);
	out[o++] = '.';
	o += b64 (out + o, (const uint8_t *) payload, (size_t) plen, B64_URL, false);
	g_hmac_update (h, (const guchar *) out, (gssize) o);
	g_hmac_get_digest (h, digest, &dlen);
	g_hmac_unref (h);
	out[o++] = '.';
	o += b64 (out + o, digest, dlen, B64_URL, false);
	return o;
}
