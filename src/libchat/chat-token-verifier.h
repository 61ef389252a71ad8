/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <json-glib/json-glib.h>

#include "chat-version.h"

G_BEGIN_DECLS

/**
 * ChatTokenAlgorithm:
 * @CHAT_TOKEN_ALGORITHM_HS256: HMAC with SHA-256 and a shared secret
 * @CHAT_TOKEN_ALGORITHM_HS384: HMAC with SHA-384 and a shared secret
 * @CHAT_TOKEN_ALGORITHM_HS512: HMAC with SHA-512 and a shared secret
 * @CHAT_TOKEN_ALGORITHM_RS256: RSA PKCS#1 v1.5 with SHA-256 and a PEM public key
 * @CHAT_TOKEN_ALGORITHM_ES256: ECDSA P-256 with SHA-256 and a PEM public key
 *
 * The JWT signature algorithms chathub accepts. A verifier is pinned to one of them.
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_TOKEN_ALGORITHM_HS256,
	CHAT_TOKEN_ALGORITHM_HS384,
	CHAT_TOKEN_ALGORITHM_HS512,
	CHAT_TOKEN_ALGORITHM_RS256,
	CHAT_TOKEN_ALGORITHM_ES256,
} ChatTokenAlgorithm;

CHAT_AVAILABLE_IN_ALL
GType
chat_token_algorithm_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_TOKEN_ALGORITHM (chat_token_algorithm_get_type ())

CHAT_AVAILABLE_IN_ALL
gboolean
chat_token_algorithm_from_string (const char *name, ChatTokenAlgorithm *algorithm, GError **error);
CHAT_AVAILABLE_IN_ALL
const char *
chat_token_algorithm_to_string (ChatTokenAlgorithm algorithm);

/**
 * CHAT_TOKEN_VERIFIER_MAX_KEYS:
 *
 * The most keys one #ChatTokenVerifier holds at once. A token without a `kid` header may be
 * tried against every key of its algorithm: the bound keeps what a forged token costs small.
 *
 * Since: 1.0
 */
#define CHAT_TOKEN_VERIFIER_MAX_KEYS 8

#define CHAT_TYPE_TOKEN_VERIFIER (chat_token_verifier_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatTokenVerifier, chat_token_verifier, CHAT, TOKEN_VERIFIER, GObject)

CHAT_AVAILABLE_IN_ALL
ChatTokenVerifier *
chat_token_verifier_new (ChatTokenAlgorithm algorithm, GBytes *key, GError **error);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_token_verifier_add_key (ChatTokenVerifier *self,
			     const char *key_id,
			     ChatTokenAlgorithm algorithm,
			     GBytes *key,
			     GError **error);
CHAT_AVAILABLE_IN_ALL
void
chat_token_verifier_replace_keys (ChatTokenVerifier *self, ChatTokenVerifier *source);
CHAT_AVAILABLE_IN_ALL
guint
chat_token_verifier_get_n_keys (ChatTokenVerifier *self);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_token_verifier_has_key_id (ChatTokenVerifier *self, const char *key_id);
CHAT_AVAILABLE_IN_ALL
ChatTokenAlgorithm
chat_token_verifier_get_algorithm (ChatTokenVerifier *self);
CHAT_AVAILABLE_IN_ALL
const char *
chat_token_verifier_get_issuer (ChatTokenVerifier *self);
CHAT_AVAILABLE_IN_ALL
void
chat_token_verifier_set_issuer (ChatTokenVerifier *self, const char *issuer);
CHAT_AVAILABLE_IN_ALL
const char *
chat_token_verifier_get_audience (ChatTokenVerifier *self);
CHAT_AVAILABLE_IN_ALL
void
chat_token_verifier_set_audience (ChatTokenVerifier *self, const char *audience);
CHAT_AVAILABLE_IN_ALL
guint
chat_token_verifier_get_leeway (ChatTokenVerifier *self);
CHAT_AVAILABLE_IN_ALL
void
chat_token_verifier_set_leeway (ChatTokenVerifier *self, guint seconds);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_token_verifier_verify (ChatTokenVerifier *self,
			    const char *token,
			    guint64 *user_id,
			    GArray **rooms,
			    GError **error);

CHAT_AVAILABLE_IN_ALL
char *
chat_token_sign (ChatTokenAlgorithm algorithm, GBytes *key, JsonObject *claims, GError **error);
CHAT_AVAILABLE_IN_ALL
char *
chat_token_sign_with_key_id (ChatTokenAlgorithm algorithm,
			     GBytes *key,
			     const char *key_id,
			     JsonObject *claims,
			     GError **error);

G_END_DECLS
