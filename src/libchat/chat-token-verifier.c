/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-i18n-private.h"
#include "chat-json-private.h"
#include "chat-token-verifier-private.h"

/**
 * SECTION:chat-token-verifier
 * @title: ChatTokenVerifier
 * @short_description: checks the JWT a client presents
 *
 * A #ChatTokenVerifier checks a JSON Web Token against a small set of keys, each pinned to
 * one algorithm: a token whose header names an algorithm no key has (`none`, or HS256 signed
 * with an RSA public key) is refused before its signature is even looked at. It then enforces
 * `exp` and `nbf` (with a small leeway), `iss` and `aud` when configured, and extracts the
 * user id (`user_id`, or a numeric `sub`) and the optional `rooms` claim.
 *
 * Create a verifier with chat_token_verifier_new(), which checks the key. One made without
 * a key (g_object_new(), or `Chat.TokenVerifier()` in bindings) is valid but refuses every
 * token with %CHAT_ERROR_INVALID_TOKEN, so a server using it answers every client 401.
 *
 * Several keys may be valid at once, so that keys can be rotated without refusing the tokens
 * already handed out: chat_token_verifier_add_key() adds one, with an optional key id. A
 * token whose header carries a `kid` is checked only with the key of that id; when no key
 * has that id, only with the keys added without an id (so that a single key keeps accepting
 * tokens from a provider that always sets `kid`), and if there are none it is refused as
 * naming an unknown key id. A token without `kid` is tried with every key of its algorithm,
 * at most %CHAT_TOKEN_VERIFIER_MAX_KEYS. chat_token_verifier_replace_keys() swaps the whole
 * set at once, for a reload: a token checked on the same thread sees the old set or the new
 * one, never a mix.
 *
 * libjwt is an implementation detail of this class; it never appears in a public header.
 */

/**
 * ChatTokenVerifier:
 *
 * A JWT checker with a set of keys, each pinned to one algorithm. All its fields are private.
 *
 * Since: 1.0
 */

/* Tokens larger than this are refused before any parsing. */
#define MAX_TOKEN_LENGTH 8192

/* One key of the set: immutable once added. */
typedef struct {
	char *id; /* (nullable): the `kid` that selects it */
	ChatTokenAlgorithm algorithm;
	GBytes *material; /* the HMAC secret or the PEM public key */
} Key;

struct _ChatTokenVerifier {
	GObject parent_instance;

	ChatTokenAlgorithm algorithm; /* as constructed; the first key's once there is one */
	GPtrArray *keys;	      /* Key*, owned; empty when made without a key */
	char *issuer;
	char *audience;
	guint leeway;
};

G_DEFINE_FINAL_TYPE (ChatTokenVerifier, chat_token_verifier, G_TYPE_OBJECT)

G_DEFINE_ENUM_TYPE (ChatTokenAlgorithm,
		    chat_token_algorithm,
		    G_DEFINE_ENUM_VALUE (CHAT_TOKEN_ALGORITHM_HS256, "HS256"),
		    G_DEFINE_ENUM_VALUE (CHAT_TOKEN_ALGORITHM_HS384, "HS384"),
		    G_DEFINE_ENUM_VALUE (CHAT_TOKEN_ALGORITHM_HS512, "HS512"),
		    G_DEFINE_ENUM_VALUE (CHAT_TOKEN_ALGORITHM_RS256, "RS256"),
		    G_DEFINE_ENUM_VALUE (CHAT_TOKEN_ALGORITHM_ES256, "ES256"))

enum { PROP_0, PROP_ALGORITHM, PROP_ISSUER, PROP_AUDIENCE, PROP_LEEWAY, PROP_N_KEYS, N_PROPS };
static GParamSpec *props[N_PROPS];

static const struct {
	const char *name;
	jwt_alg_t jwt_alg;
} algorithms[] = {
    [CHAT_TOKEN_ALGORITHM_HS256] = {"HS256", JWT_ALG_HS256},
    [CHAT_TOKEN_ALGORITHM_HS384] = {"HS384", JWT_ALG_HS384},
    [CHAT_TOKEN_ALGORITHM_HS512] = {"HS512", JWT_ALG_HS512},
    [CHAT_TOKEN_ALGORITHM_RS256] = {"RS256", JWT_ALG_RS256},
    [CHAT_TOKEN_ALGORITHM_ES256] = {"ES256", JWT_ALG_ES256},
};

/* Refusal reasons: English on the wire (the 401 body), translated in the GError. */
static const char *const reason_missing = N_ ("No token was presented");
static const char *const reason_no_key = N_ ("The server has no key to verify tokens with");
static const char *const reason_malformed = N_ ("The token is malformed");
static const char *const reason_algorithm =
    N_ ("The token is not signed with the configured algorithm");
static const char *const reason_unknown_key_id = N_ ("The token names an unknown key id");
static const char *const reason_signature = N_ ("The token signature is invalid");
static const char *const reason_header_unparsable = N_ ("The token header cannot be parsed");
static const char *const reason_claims_unparsable =
    N_ ("The token claims cannot be parsed (a number out of range, or U+0000 in a string?)");
static const char *const reason_expired = N_ ("The token has expired");
static const char *const reason_not_yet = N_ ("The token is not valid yet");
static const char *const reason_issuer = N_ ("The token issuer is not accepted");
static const char *const reason_audience = N_ ("The token audience is not accepted");
static const char *const reason_user = N_ ("The token carries no valid user id");
static const char *const reason_rooms = N_ ("The token rooms claim is not a list of room ids");

/**
 * chat_token_algorithm_from_string:
 * @name: an algorithm name such as `"HS256"`
 * @algorithm: (out): return location for the algorithm
 * @error: return location for a #GError
 *
 * Looks up an algorithm by its JWS name (case-sensitive, as in a token header).
 *
 * Bindings that honour the skip annotation, such as PyGObject, return the algorithm alone
 * and raise the error (GJS 1.74 still returns the boolean first).
 *
 * Returns: (skip): %TRUE if @name is supported, %FALSE with %CHAT_ERROR_INVALID_ARGUMENT
 *   otherwise
 *
 * Since: 1.0
 */
gboolean
chat_token_algorithm_from_string (const char *name, ChatTokenAlgorithm *algorithm, GError **error)
{
	g_return_val_if_fail (name != NULL, FALSE);
	g_return_val_if_fail (algorithm != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	chat_i18n_init ();
	for (guint i = 0; i < G_N_ELEMENTS (algorithms); i++) {
		if (strcmp (name, algorithms[i].name) == 0) {
			*algorithm = (ChatTokenAlgorithm) i;
			return TRUE;
		}
	}
	g_set_error (
	    error,
	    CHAT_ERROR,
	    CHAT_ERROR_INVALID_ARGUMENT,
	    _ ("Unsupported token algorithm “%s” (expected HS256, HS384, HS512, RS256 or ES256)"),
	    name);
	return FALSE;
}

/**
 * chat_token_algorithm_to_string:
 * @algorithm: a #ChatTokenAlgorithm
 *
 * Gets the JWS name of @algorithm.
 *
 * Returns: the name, such as `"HS256"`
 *
 * Since: 1.0
 */
const char *
chat_token_algorithm_to_string (ChatTokenAlgorithm algorithm)
{
	g_return_val_if_fail (algorithm <= CHAT_TOKEN_ALGORITHM_ES256, NULL);
	return algorithms[algorithm].name;
}

static gboolean
algorithm_is_hmac (ChatTokenAlgorithm algorithm)
{
	return algorithm <= CHAT_TOKEN_ALGORITHM_HS512;
}

static void
chat_token_verifier_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatTokenVerifier *self = CHAT_TOKEN_VERIFIER (object);

	switch (prop_id) {
	case PROP_ALGORITHM:
		g_value_set_enum (value, chat_token_verifier_get_algorithm (self));
		break;
	case PROP_N_KEYS:
		g_value_set_uint (value, self->keys->len);
		break;
	case PROP_ISSUER:
		g_value_set_string (value, self->issuer);
		break;
	case PROP_AUDIENCE:
		g_value_set_string (value, self->audience);
		break;
	case PROP_LEEWAY:
		g_value_set_uint (value, self->leeway);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_token_verifier_set_property (GObject *object,
				  guint prop_id,
				  const GValue *value,
				  GParamSpec *pspec)
{
	ChatTokenVerifier *self = CHAT_TOKEN_VERIFIER (object);

	switch (prop_id) {
	case PROP_ALGORITHM:
		self->algorithm = g_value_get_enum (value);
		break;
	case PROP_ISSUER:
		chat_token_verifier_set_issuer (self, g_value_get_string (value));
		break;
	case PROP_AUDIENCE:
		chat_token_verifier_set_audience (self, g_value_get_string (value));
		break;
	case PROP_LEEWAY:
		chat_token_verifier_set_leeway (self, g_value_get_uint (value));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_token_verifier_finalize (GObject *object)
{
	ChatTokenVerifier *self = CHAT_TOKEN_VERIFIER (object);

	g_ptr_array_unref (self->keys);
	g_free (self->issuer);
	g_free (self->audience);
	G_OBJECT_CLASS (chat_token_verifier_parent_class)->finalize (object);
}

static void
chat_token_verifier_class_init (ChatTokenVerifierClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();

	object_class->get_property = chat_token_verifier_get_property;
	object_class->set_property = chat_token_verifier_set_property;
	object_class->finalize = chat_token_verifier_finalize;

	/**
	 * ChatTokenVerifier:algorithm:
	 *
	 * The algorithm tokens must be signed with: the algorithm of the first key once the
	 * verifier has keys (chat_token_verifier_add_key() may add keys of other algorithms).
	 *
	 * Since: 1.0
	 */
	props[PROP_ALGORITHM] =
	    g_param_spec_enum ("algorithm",
			       NULL,
			       "The one algorithm tokens must be signed with",
			       CHAT_TYPE_TOKEN_ALGORITHM,
			       CHAT_TOKEN_ALGORITHM_HS256,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatTokenVerifier:issuer:
	 *
	 * When set, the `iss` claim must equal it.
	 *
	 * Since: 1.0
	 */
	props[PROP_ISSUER] = g_param_spec_string ("issuer",
						  NULL,
						  "The iss claim tokens must carry, if set",
						  NULL,
						  G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						      G_PARAM_STATIC_STRINGS);
	/**
	 * ChatTokenVerifier:audience:
	 *
	 * When set, the `aud` claim (a string or an array of strings) must contain it.
	 *
	 * Since: 1.0
	 */
	props[PROP_AUDIENCE] = g_param_spec_string (
	    "audience",
	    NULL,
	    "The audience the aud claim must contain, if set",
	    NULL,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatTokenVerifier:leeway:
	 *
	 * Seconds of clock skew tolerated when checking `exp` and `nbf`.
	 *
	 * Since: 1.0
	 */
	/**
	 * ChatTokenVerifier:n-keys:
	 *
	 * How many keys the verifier holds: 0 for one made without a key, which refuses every
	 * token; at most %CHAT_TOKEN_VERIFIER_MAX_KEYS.
	 *
	 * Since: 1.0
	 */
	props[PROP_N_KEYS] =
	    g_param_spec_uint ("n-keys",
			       NULL,
			       "How many keys the verifier holds",
			       0,
			       CHAT_TOKEN_VERIFIER_MAX_KEYS,
			       0,
			       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	props[PROP_LEEWAY] = g_param_spec_uint ("leeway",
						NULL,
						"Seconds of clock skew tolerated on exp and nbf",
						0,
						3600,
						30,
						G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						    G_PARAM_STATIC_STRINGS);

	g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
key_free (Key *key)
{
	g_free (key->id);
	g_bytes_unref (key->material);
	g_free (key);
}

static void
chat_token_verifier_init (ChatTokenVerifier *self)
{
	self->keys = g_ptr_array_new_with_free_func ((GDestroyNotify) key_free);
	self->leeway = 30;
}

/* Checks that @key is a PEM public key of the kind @algorithm needs, so a wrong key file is
 * reported at startup rather than as every token being refused. */
static gboolean
public_key_fits (ChatTokenAlgorithm algorithm, GBytes *key)
{
	gsize length;
	const void *data = g_bytes_get_data (key, &length);
	BIO *bio = BIO_new_mem_buf (data, (int) length);
	EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL) : NULL;
	gboolean fits = FALSE;

	if (pkey != NULL && algorithm == CHAT_TOKEN_ALGORITHM_RS256) {
		fits = EVP_PKEY_base_id (pkey) == EVP_PKEY_RSA && EVP_PKEY_bits (pkey) >= 2048;
	} else if (pkey != NULL && algorithm == CHAT_TOKEN_ALGORITHM_ES256) {
		fits = EVP_PKEY_base_id (pkey) == EVP_PKEY_EC;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		if (fits) {
			char group[64] = "";

			fits = EVP_PKEY_get_group_name (pkey, group, sizeof group, NULL) == 1 &&
			       (strcmp (group, "prime256v1") == 0 || strcmp (group, "P-256") == 0);
		}
#endif
	}
	EVP_PKEY_free (pkey);
	BIO_free (bio);
	ERR_clear_error ();
	return fits;
}

/**
 * chat_token_verifier_new:
 * @algorithm: the algorithm tokens must use
 * @key: the shared secret (HS*) or the PEM public key (RS256, ES256)
 * @error: return location for a #GError
 *
 * Creates a verifier pinned to @algorithm and @key.
 *
 * Returns: (transfer full): the verifier, or %NULL with %CHAT_ERROR_INVALID_ARGUMENT if @key is
 *   empty or not a PEM public key where one is needed
 *
 * Since: 1.0
 */
ChatTokenVerifier *
chat_token_verifier_new (ChatTokenAlgorithm algorithm, GBytes *key, GError **error)
{
	g_autoptr (ChatTokenVerifier) self = NULL;

	g_return_val_if_fail (algorithm <= CHAT_TOKEN_ALGORITHM_ES256, NULL);
	g_return_val_if_fail (key != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	self = g_object_new (CHAT_TYPE_TOKEN_VERIFIER, "algorithm", algorithm, NULL);
	if (!chat_token_verifier_add_key (self, NULL, algorithm, key, error))
		return NULL;
	return g_steal_pointer (&self);
}

/* A `kid` as chathub accepts it: 1 to 128 printable ASCII characters, no space, so that it
 * can be named in a configuration file and a log line as it is. */
static gboolean
key_id_is_valid (const char *key_id)
{
	gsize length = strlen (key_id);

	if (length == 0 || length > 128)
		return FALSE;
	for (gsize i = 0; i < length; i++) {
		if (key_id[i] <= 0x20 || key_id[i] >= 0x7f)
			return FALSE;
	}
	return TRUE;
}

static Key *
find_key_id (ChatTokenVerifier *self, const char *key_id)
{
	for (guint i = 0; i < self->keys->len; i++) {
		Key *key = self->keys->pdata[i];

		if (key->id != NULL && strcmp (key->id, key_id) == 0)
			return key;
	}
	return NULL;
}

/**
 * chat_token_verifier_add_key:
 * @self: a #ChatTokenVerifier
 * @key_id: (nullable): the key id a token names in its `kid` header to be checked with this
 *   key, or %NULL for a key without id
 * @algorithm: the algorithm tokens checked with this key must use
 * @key: the shared secret (HS*) or the PEM public key (RS256, ES256)
 * @error: return location for a #GError
 *
 * Adds a key to those @self accepts tokens from. See the class description for how a token
 * picks its key. To change the keys of a verifier in use, build the new set in another
 * verifier and hand it over with chat_token_verifier_replace_keys().
 *
 * Returns: %TRUE if the key was added; %FALSE with %CHAT_ERROR_INVALID_ARGUMENT if @key is
 *   empty or not a PEM public key where one is needed, if @key_id is not 1 to 128 printable
 *   ASCII characters without space, if another key has that id, or if @self already holds
 *   %CHAT_TOKEN_VERIFIER_MAX_KEYS keys
 *
 * Since: 1.0
 */
gboolean
chat_token_verifier_add_key (ChatTokenVerifier *self,
			     const char *key_id,
			     ChatTokenAlgorithm algorithm,
			     GBytes *key,
			     GError **error)
{
	Key *entry;

	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), FALSE);
	g_return_val_if_fail (algorithm <= CHAT_TOKEN_ALGORITHM_ES256, FALSE);
	g_return_val_if_fail (key != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	chat_i18n_init ();
	if (key_id != NULL && !key_id_is_valid (key_id)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("A key id must be 1 to 128 printable ASCII characters "
					"without space"));
		return FALSE;
	}
	if (key_id != NULL && find_key_id (self, key_id) != NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("There is already a key with id “%s”"),
			     key_id);
		return FALSE;
	}
	if (self->keys->len >= CHAT_TOKEN_VERIFIER_MAX_KEYS) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("A verifier holds at most %u keys"),
			     (guint) CHAT_TOKEN_VERIFIER_MAX_KEYS);
		return FALSE;
	}
	if (g_bytes_get_size (key) == 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("The token key is empty"));
		return FALSE;
	}
	if (!algorithm_is_hmac (algorithm) && !public_key_fits (algorithm, key)) {
		g_set_error (
		    error,
		    CHAT_ERROR,
		    CHAT_ERROR_INVALID_ARGUMENT,
		    algorithm == CHAT_TOKEN_ALGORITHM_RS256
			? _ ("The key for RS256 must be a PEM RSA public key of at least 2048 bits")
			: _ ("The key for ES256 must be a PEM P-256 public key"));
		return FALSE;
	}

	entry = g_new0 (Key, 1);
	entry->id = g_strdup (key_id);
	entry->algorithm = algorithm;
	entry->material = g_bytes_ref (key);
	g_ptr_array_add (self->keys, entry);
	if (self->keys->len == 1 && self->algorithm != algorithm) {
		self->algorithm = algorithm;
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ALGORITHM]);
	}
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_KEYS]);
	return TRUE;
}

/**
 * chat_token_verifier_replace_keys:
 * @self: a #ChatTokenVerifier
 * @source: the verifier whose keys @self takes
 *
 * Makes the keys of @self those of @source, all at once: a token checked before this call is
 * checked with the old set only, one checked after it with the new set only. This is how a
 * server in use rotates its keys: build the new set in a fresh verifier (where each
 * chat_token_verifier_add_key() can fail without harm), then hand it over. #ChatTokenVerifier:
 * issuer, #ChatTokenVerifier:audience and #ChatTokenVerifier:leeway stay as they are.
 *
 * A @source without keys leaves @self refusing every token.
 *
 * Since: 1.0
 */
void
chat_token_verifier_replace_keys (ChatTokenVerifier *self, ChatTokenVerifier *source)
{
	g_autoptr (GPtrArray) keys = NULL;
	guint old_n_keys;

	g_return_if_fail (CHAT_IS_TOKEN_VERIFIER (self));
	g_return_if_fail (CHAT_IS_TOKEN_VERIFIER (source));

	if (self == source)
		return;
	keys = g_ptr_array_new_full (source->keys->len, (GDestroyNotify) key_free);
	for (guint i = 0; i < source->keys->len; i++) {
		Key *from = source->keys->pdata[i];
		Key *copy = g_new0 (Key, 1);

		copy->id = g_strdup (from->id);
		copy->algorithm = from->algorithm;
		copy->material = g_bytes_ref (from->material);
		g_ptr_array_add (keys, copy);
	}
	old_n_keys = self->keys->len;
	/* one pointer swap: nothing can look at the set in between */
	g_ptr_array_unref (self->keys);
	self->keys = g_steal_pointer (&keys);

	g_object_freeze_notify (G_OBJECT (self));
	if (self->keys->len > 0 && ((Key *) self->keys->pdata[0])->algorithm != self->algorithm) {
		self->algorithm = ((Key *) self->keys->pdata[0])->algorithm;
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ALGORITHM]);
	}
	if (old_n_keys != self->keys->len)
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_N_KEYS]);
	g_object_thaw_notify (G_OBJECT (self));
}

/**
 * chat_token_verifier_get_n_keys:
 * @self: a #ChatTokenVerifier
 *
 * Gets how many keys @self holds.
 *
 * Returns: the number of keys, 0 to %CHAT_TOKEN_VERIFIER_MAX_KEYS
 *
 * Since: 1.0
 */
guint
chat_token_verifier_get_n_keys (ChatTokenVerifier *self)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), 0);
	return self->keys->len;
}

/**
 * chat_token_verifier_has_key_id:
 * @self: a #ChatTokenVerifier
 * @key_id: a key id
 *
 * Whether @self holds a key with id @key_id.
 *
 * Returns: %TRUE if a token whose `kid` is @key_id is checked with a key of that id
 *
 * Since: 1.0
 */
gboolean
chat_token_verifier_has_key_id (ChatTokenVerifier *self, const char *key_id)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), FALSE);
	g_return_val_if_fail (key_id != NULL, FALSE);
	return find_key_id (self, key_id) != NULL;
}

/**
 * chat_token_verifier_get_algorithm:
 * @self: a #ChatTokenVerifier
 *
 * Gets the algorithm @self is pinned to: that of its first key (see
 * #ChatTokenVerifier:algorithm).
 *
 * Returns: the algorithm
 *
 * Since: 1.0
 */
ChatTokenAlgorithm
chat_token_verifier_get_algorithm (ChatTokenVerifier *self)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), CHAT_TOKEN_ALGORITHM_HS256);
	return self->algorithm;
}

/**
 * chat_token_verifier_get_issuer:
 * @self: a #ChatTokenVerifier
 *
 * Gets the required issuer.
 *
 * Returns: (nullable): the issuer, or %NULL if any is accepted
 *
 * Since: 1.0
 */
const char *
chat_token_verifier_get_issuer (ChatTokenVerifier *self)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), NULL);
	return self->issuer;
}

static void
set_optional_string (ChatTokenVerifier *self, char **slot, const char *value, GParamSpec *pspec)
{
	if (value != NULL && *value == '\0')
		value = NULL;
	if (g_strcmp0 (*slot, value) == 0)
		return;
	g_free (*slot);
	*slot = g_strdup (value);
	g_object_notify_by_pspec (G_OBJECT (self), pspec);
}

/**
 * chat_token_verifier_set_issuer:
 * @self: a #ChatTokenVerifier
 * @issuer: (nullable): the required `iss`, or %NULL (or "") to accept any
 *
 * Requires tokens to carry `iss` equal to @issuer.
 *
 * Since: 1.0
 */
void
chat_token_verifier_set_issuer (ChatTokenVerifier *self, const char *issuer)
{
	g_return_if_fail (CHAT_IS_TOKEN_VERIFIER (self));
	set_optional_string (self, &self->issuer, issuer, props[PROP_ISSUER]);
}

/**
 * chat_token_verifier_get_audience:
 * @self: a #ChatTokenVerifier
 *
 * Gets the required audience.
 *
 * Returns: (nullable): the audience, or %NULL if any is accepted
 *
 * Since: 1.0
 */
const char *
chat_token_verifier_get_audience (ChatTokenVerifier *self)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), NULL);
	return self->audience;
}

/**
 * chat_token_verifier_set_audience:
 * @self: a #ChatTokenVerifier
 * @audience: (nullable): the required `aud`, or %NULL (or "") to accept any
 *
 * Requires tokens whose `aud` (a string or an array) contains @audience.
 *
 * Since: 1.0
 */
void
chat_token_verifier_set_audience (ChatTokenVerifier *self, const char *audience)
{
	g_return_if_fail (CHAT_IS_TOKEN_VERIFIER (self));
	set_optional_string (self, &self->audience, audience, props[PROP_AUDIENCE]);
}

/**
 * chat_token_verifier_get_leeway:
 * @self: a #ChatTokenVerifier
 *
 * Gets the tolerated clock skew.
 *
 * Returns: seconds
 *
 * Since: 1.0
 */
guint
chat_token_verifier_get_leeway (ChatTokenVerifier *self)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), 0);
	return self->leeway;
}

/**
 * chat_token_verifier_set_leeway:
 * @self: a #ChatTokenVerifier
 * @seconds: tolerated clock skew, at most 3600
 *
 * Sets how many seconds past `exp` or before `nbf` a token is still accepted.
 *
 * Since: 1.0
 */
void
chat_token_verifier_set_leeway (ChatTokenVerifier *self, guint seconds)
{
	g_return_if_fail (CHAT_IS_TOKEN_VERIFIER (self));
	g_return_if_fail (seconds <= 3600);

	if (self->leeway == seconds)
		return;
	self->leeway = seconds;
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_LEEWAY]);
}

static void
jwt_freep (jwt_t **jwt)
{
	g_clear_pointer (jwt, jwt_free);
}

/* base64url without padding, as in a compact JWT; NULL if it is not that or is empty. */
static GBytes *
decode_segment (const char *segment, gsize len)
{
	g_autofree char *b64 = g_malloc (len + 4);
	guchar *raw;
	gsize raw_len = 0, n = len;

	for (gsize i = 0; i < len; i++) {
		char c = segment[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!g_ascii_isalnum (c))
			return NULL; /* '=' padding, '+', '/' are not base64url */
		b64[i] = c;
	}
	while (n % 4 != 0)
		b64[n++] = '=';
	b64[n] = '\0';
	if (len % 4 == 1)
		return NULL;
	raw = g_base64_decode (b64, &raw_len);
	if (raw == NULL || raw_len == 0) {
		g_free (raw);
		return NULL;
	}
	return g_bytes_new_take (raw, raw_len);
}

static JsonNode *
decode_segment_json (const char *segment, gsize len)
{
	g_autoptr (GBytes) raw = decode_segment (segment, len);
	gsize raw_len;
	const char *text;

	if (raw == NULL)
		return NULL;
	text = g_bytes_get_data (raw, &raw_len);
	return chat_json_parse (text, raw_len, CHAT_JSON_MAX_DEPTH, NULL);
}

static gboolean
hmac_holds (Key *self, const char *input, gsize input_len, GBytes *signature)
{
	static const GChecksumType types[] = {
	    [CHAT_TOKEN_ALGORITHM_HS256] = G_CHECKSUM_SHA256,
	    [CHAT_TOKEN_ALGORITHM_HS384] = G_CHECKSUM_SHA384,
	    [CHAT_TOKEN_ALGORITHM_HS512] = G_CHECKSUM_SHA512,
	};
	gsize key_len, sig_len, digest_len = 64;
	const guchar *key = g_bytes_get_data (self->material, &key_len);
	const guchar *sig = g_bytes_get_data (signature, &sig_len);
	g_autoptr (GHmac) hmac = g_hmac_new (types[self->algorithm], key, key_len);
	guint8 digest[64];

	g_hmac_update (hmac, (const guchar *) input, (gssize) input_len);
	g_hmac_get_digest (hmac, digest, &digest_len);
	return sig_len == digest_len && CRYPTO_memcmp (sig, digest, digest_len) == 0;
}

/* JWS carries an ES256 signature as r || s (32 bytes each); OpenSSL verifies DER. */
static GBytes *
ecdsa_raw_to_der (GBytes *signature)
{
	gsize len;
	const guchar *raw = g_bytes_get_data (signature, &len);
	ECDSA_SIG *sig;
	BIGNUM *r, *s;
	guchar *der = NULL;
	int der_len;
	GBytes *result;

	if (len != 64)
		return NULL;
	sig = ECDSA_SIG_new ();
	r = BN_bin2bn (raw, 32, NULL);
	s = BN_bin2bn (raw + 32, 32, NULL);
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0 (sig, r, s) != 1) {
		BN_free (r);
		BN_free (s);
		ECDSA_SIG_free (sig);
		return NULL;
	}
	der_len = i2d_ECDSA_SIG (sig, &der);
	ECDSA_SIG_free (sig);
	if (der_len <= 0)
		return NULL;
	result = g_bytes_new (der, der_len);
	OPENSSL_free (der);
	return result;
}

static gboolean
public_key_holds (Key *self, const char *input, gsize input_len, GBytes *signature)
{
	gsize key_len, sig_len;
	const void *key = g_bytes_get_data (self->material, &key_len);
	g_autoptr (GBytes) der = NULL;
	const guchar *sig;
	BIO *bio = BIO_new_mem_buf (key, (int) key_len);
	EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL) : NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
	gboolean holds = FALSE;

	if (self->algorithm == CHAT_TOKEN_ALGORITHM_ES256) {
		der = ecdsa_raw_to_der (signature);
		signature = der;
	}
	if (pkey != NULL && ctx != NULL && signature != NULL &&
	    EVP_DigestVerifyInit (ctx, NULL, EVP_sha256 (), NULL, pkey) == 1) {
		sig = g_bytes_get_data (signature, &sig_len);
		holds =
		    EVP_DigestVerify (ctx, sig, sig_len, (const guchar *) input, input_len) == 1;
	}
	EVP_MD_CTX_free (ctx);
	EVP_PKEY_free (pkey);
	BIO_free (bio);
	ERR_clear_error ();
	return holds;
}

/* Whether the signature (after @dot2) is right for the rest of @token. Only used once libjwt
 * has refused a token: libjwt 1.10 parses the header and the claims before it checks the
 * signature, and reports every failure alike. */
static gboolean
signature_holds (Key *self, const char *token, const char *dot2)
{
	g_autoptr (GBytes) signature = decode_segment (dot2 + 1, strlen (dot2 + 1));

	if (signature == NULL)
		return FALSE;
	if (algorithm_is_hmac (self->algorithm))
		return hmac_holds (self, token, dot2 - token, signature);
	return public_key_holds (self, token, dot2 - token, signature);
}

/* Why libjwt refused a correctly signed token: its JSON parser (jansson) refuses what
 * json-glib takes, such as numbers beyond 64 bits and U+0000 in strings. */
static const char *
unparsable_reason (const char *dot1, const char *dot2)
{
	__attribute__ ((cleanup (jwt_freep))) jwt_t *jwt = NULL;
	g_autoptr (GBytes) raw = decode_segment (dot1 + 1, dot2 - dot1 - 1);
	g_autofree char *claims = NULL;

	if (raw == NULL || jwt_new (&jwt) != 0)
		return reason_claims_unparsable;
	claims = g_strndup (g_bytes_get_data (raw, NULL), g_bytes_get_size (raw));
	if (strlen (claims) != g_bytes_get_size (raw) || jwt_add_grants_json (jwt, claims) != 0)
		return reason_claims_unparsable;
	return reason_header_unparsable;
}

static gboolean
node_is_int (JsonNode *node)
{
	return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64;
}

static gboolean
node_is_number (JsonNode *node)
{
	return JSON_NODE_HOLDS_VALUE (node) && (json_node_get_value_type (node) == G_TYPE_INT64 ||
						json_node_get_value_type (node) == G_TYPE_DOUBLE);
}

static gboolean
node_is_string (JsonNode *node)
{
	return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING;
}

static gboolean
parse_user_id (JsonObject *claims, guint64 *user_id)
{
	JsonNode *node = json_object_get_member (claims, "user_id");

	if (node != NULL) {
		if (!node_is_int (node) || json_node_get_int (node) <= 0)
			return FALSE;
		*user_id = (guint64) json_node_get_int (node);
		return TRUE;
	}
	node = json_object_get_member (claims, "sub");
	if (node == NULL)
		return FALSE;
	if (node_is_int (node)) {
		if (json_node_get_int (node) <= 0)
			return FALSE;
		*user_id = (guint64) json_node_get_int (node);
		return TRUE;
	}
	if (node_is_string (node)) {
		const char *sub = json_node_get_string (node);
		guint64 value = 0;

		if (*sub == '\0' || !g_ascii_isdigit (*sub))
			return FALSE;
		if (!g_ascii_string_to_unsigned (sub, 10, 1, G_MAXINT64, &value, NULL))
			return FALSE;
		*user_id = value;
		return TRUE;
	}
	return FALSE;
}

static gboolean
audience_matches (JsonNode *aud, const char *audience)
{
	if (node_is_string (aud))
		return strcmp (json_node_get_string (aud), audience) == 0;
	if (JSON_NODE_HOLDS_ARRAY (aud)) {
		JsonArray *array = json_node_get_array (aud);

		for (guint i = 0; i < json_array_get_length (array); i++) {
			JsonNode *element = json_array_get_element (array, i);

			if (node_is_string (element) &&
			    strcmp (json_node_get_string (element), audience) == 0)
				return TRUE;
		}
	}
	return FALSE;
}

static GArray *
parse_rooms (JsonNode *node)
{
	g_autoptr (GArray) rooms = g_array_new (FALSE, FALSE, sizeof (guint64));
	JsonArray *array;

	if (!JSON_NODE_HOLDS_ARRAY (node))
		return NULL;
	array = json_node_get_array (node);
	for (guint i = 0; i < json_array_get_length (array); i++) {
		JsonNode *element = json_array_get_element (array, i);
		guint64 room;

		if (!node_is_int (element) || json_node_get_int (element) <= 0)
			return NULL;
		room = (guint64) json_node_get_int (element);
		g_array_append_val (rooms, room);
	}
	return g_steal_pointer (&rooms);
}

static gboolean
fail_invalid_token (const char *reason, const char **wire_reason, GError **error)
{
	if (wire_reason != NULL)
		*wire_reason = reason;
	g_set_error_literal (error, CHAT_ERROR, CHAT_ERROR_INVALID_TOKEN, _ (reason));
	return FALSE;
}

/* Like chat_token_verifier_verify(), and also returns the untranslated reason for the wire. */
gboolean
chat_token_verifier_check (ChatTokenVerifier *self,
			   const char *token,
			   guint64 *user_id,
			   GArray **rooms,
			   const char **wire_reason,
			   GError **error)
{
	return chat_token_verifier_check_full (self,
					       token,
					       user_id,
					       rooms,
					       NULL,
					       wire_reason,
					       error);
}

/* Whether a token naming @kid has any key to be checked with, whatever its algorithm: the key
 * of that id, else the keys without id. */
static gboolean
kid_has_keys (ChatTokenVerifier *self, const char *kid)
{
	if (find_key_id (self, kid) != NULL)
		return TRUE;
	for (guint i = 0; i < self->keys->len; i++) {
		if (((Key *) self->keys->pdata[i])->id == NULL)
			return TRUE;
	}
	return FALSE;
}

/* The keys a token with header @kid (nullable) and @alg may be checked with, into @out (room
 * for CHAT_TOKEN_VERIFIER_MAX_KEYS), in the order they were added; returns how many. */
static guint
select_keys (ChatTokenVerifier *self, const char *kid, const char *alg, Key **out)
{
	Key *named = kid != NULL ? find_key_id (self, kid) : NULL;
	guint n = 0;

	if (named != NULL) {
		if (strcmp (algorithms[named->algorithm].name, alg) != 0)
			return 0;
		out[0] = named;
		return 1;
	}
	for (guint i = 0; i < self->keys->len && n < CHAT_TOKEN_VERIFIER_MAX_KEYS; i++) {
		Key *key = self->keys->pdata[i];

		/* an unknown kid falls back on the keys without id only */
		if (kid != NULL && key->id != NULL)
			continue;
		if (strcmp (algorithms[key->algorithm].name, alg) == 0)
			out[n++] = key;
	}
	return n;
}

/* The real time (µs) from which a token with this `exp` is refused: exp plus the leeway. */
static gint64
token_deadline (gdouble exp, guint leeway)
{
	gdouble deadline = (exp + leeway) * G_USEC_PER_SEC;

	/* 0 means "no deadline"; an exp at or before the epoch is refused before this */
	return deadline >= (gdouble) G_MAXINT64 ? G_MAXINT64 : MAX ((gint64) deadline, 1);
}

/* Like chat_token_verifier_check(), and also gives the token's @deadline: the real time, in
 * µs, from which it is no longer accepted (`exp` plus the leeway), or 0 without `exp`. */
gboolean
chat_token_verifier_check_full (ChatTokenVerifier *self,
				const char *token,
				guint64 *user_id,
				GArray **rooms,
				gint64 *deadline,
				const char **wire_reason,
				GError **error)
{
	__attribute__ ((cleanup (jwt_freep))) jwt_t *jwt = NULL;
	g_autoptr (JsonNode) header = NULL;
	g_autoptr (JsonNode) claims_node = NULL;
	const char *dot1, *dot2, *alg, *kid = NULL;
	Key *candidates[CHAT_TOKEN_VERIFIER_MAX_KEYS];
	Key *key = NULL;
	guint n_candidates;
	JsonObject *claims;
	JsonNode *node;
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;
	gint64 expires = 0;
	guint64 uid = 0;
	gsize len;

	if (self->keys->len == 0)
		return fail_invalid_token (reason_no_key, wire_reason, error);
	if (token == NULL || *token == '\0')
		return fail_invalid_token (reason_missing, wire_reason, error);
	len = strlen (token);
	if (len > MAX_TOKEN_LENGTH)
		return fail_invalid_token (reason_malformed, wire_reason, error);

	/* Pin the algorithm before libjwt sees the token: libjwt 1.10 verifies with whatever
	 * algorithm the header names, which is how "alg confusion" attacks work. */
	dot1 = strchr (token, '.');
	dot2 = dot1 != NULL ? strchr (dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr (dot2 + 1, '.') != NULL || dot2[1] == '\0')
		return fail_invalid_token (reason_malformed, wire_reason, error);
	header = decode_segment_json (token, dot1 - token);
	if (header == NULL || !JSON_NODE_HOLDS_OBJECT (header))
		return fail_invalid_token (reason_malformed, wire_reason, error);
	node = json_object_get_member (json_node_get_object (header), "alg");
	if (node == NULL || !node_is_string (node))
		return fail_invalid_token (reason_malformed, wire_reason, error);
	alg = json_node_get_string (node);
	node = json_object_get_member (json_node_get_object (header), "kid");
	if (node != NULL) {
		if (!node_is_string (node))
			return fail_invalid_token (reason_malformed, wire_reason, error);
		kid = json_node_get_string (node);
	}
	/* each key is pinned to its algorithm: only keys of the header's algorithm are tried */
	n_candidates = select_keys (self, kid, alg, candidates);
	if (n_candidates == 0)
		return fail_invalid_token (kid != NULL && !kid_has_keys (self, kid)
					       ? reason_unknown_key_id
					       : reason_algorithm,
					   wire_reason,
					   error);
	if (json_object_has_member (json_node_get_object (header), "crit"))
		return fail_invalid_token (reason_malformed, wire_reason, error);

	for (guint i = 0; i < n_candidates && key == NULL; i++) {
		if (jwt_decode (&jwt,
				token,
				g_bytes_get_data (candidates[i]->material, NULL),
				(int) g_bytes_get_size (candidates[i]->material)) == 0 &&
		    jwt != NULL) {
			key = candidates[i];
			break;
		}
		g_clear_pointer (&jwt, jwt_free);
		/* say why only to the holder of a good signature */
		if (signature_holds (candidates[i], token, dot2))
			return fail_invalid_token (unparsable_reason (dot1, dot2),
						   wire_reason,
						   error);
	}
	if (key == NULL)
		return fail_invalid_token (reason_signature, wire_reason, error);
	if (jwt_get_alg (jwt) != algorithms[key->algorithm].jwt_alg)
		return fail_invalid_token (reason_algorithm, wire_reason, error);

	/* the signature holds: read the claims from the token's payload, as the header above,
	 * rather than have libjwt print back what it parsed */
	claims_node = decode_segment_json (dot1 + 1, dot2 - dot1 - 1);
	if (claims_node == NULL || !JSON_NODE_HOLDS_OBJECT (claims_node))
		return fail_invalid_token (reason_malformed, wire_reason, error);
	claims = json_node_get_object (claims_node);

	node = json_object_get_member (claims, "exp");
	if (node != NULL) {
		if (!node_is_number (node))
			return fail_invalid_token (reason_malformed, wire_reason, error);
		if ((gdouble) now > json_node_get_double (node) + self->leeway)
			return fail_invalid_token (reason_expired, wire_reason, error);
		expires = token_deadline (json_node_get_double (node), self->leeway);
	}
	node = json_object_get_member (claims, "nbf");
	if (node != NULL) {
		if (!node_is_number (node))
			return fail_invalid_token (reason_malformed, wire_reason, error);
		if ((gdouble) now + self->leeway < json_node_get_double (node))
			return fail_invalid_token (reason_not_yet, wire_reason, error);
	}
	if (self->issuer != NULL) {
		node = json_object_get_member (claims, "iss");
		if (node == NULL || !node_is_string (node) ||
		    strcmp (json_node_get_string (node), self->issuer) != 0)
			return fail_invalid_token (reason_issuer, wire_reason, error);
	}
	if (self->audience != NULL) {
		node = json_object_get_member (claims, "aud");
		if (node == NULL || !audience_matches (node, self->audience))
			return fail_invalid_token (reason_audience, wire_reason, error);
	}
	if (!parse_user_id (claims, &uid))
		return fail_invalid_token (reason_user, wire_reason, error);

	node = json_object_get_member (claims, "rooms");
	if (node != NULL) {
		g_autoptr (GArray) allowed = parse_rooms (node);

		if (allowed == NULL)
			return fail_invalid_token (reason_rooms, wire_reason, error);
		if (rooms != NULL)
			*rooms = g_steal_pointer (&allowed);
	} else if (rooms != NULL) {
		*rooms = NULL;
	}
	if (user_id != NULL)
		*user_id = uid;
	if (deadline != NULL)
		*deadline = expires;
	return TRUE;
}

/**
 * chat_token_verifier_verify:
 * @self: a #ChatTokenVerifier
 * @token: (nullable): the compact JWT, as sent by a client; %NULL or "" is refused as no token
 * @user_id: (out) (optional): return location for the user id
 * @rooms: (out) (optional) (nullable) (transfer full) (element-type guint64): return location
 *   for the rooms the token is limited to, or %NULL when it carries no `rooms` claim
 * @error: return location for a #GError
 *
 * Checks @token: its header must name the algorithm of a key, its signature must verify with
 * that key (the one its `kid` header names, if any: see the class description), `exp` and
 * `nbf` must hold (within #ChatTokenVerifier:leeway), `iss` and `aud` must match
 * when configured, and it must carry a user id greater than 0.
 *
 * A verifier made without a key (not with chat_token_verifier_new()) refuses every token.
 *
 * Bindings that honour the skip annotation, such as PyGObject, return the user id and the
 * rooms and raise the error (GJS 1.74 still returns the boolean first).
 *
 * Returns: (skip): %TRUE if the token is accepted; %FALSE with %CHAT_ERROR_INVALID_TOKEN
 *   saying why
 *
 * Since: 1.0
 */
gboolean
chat_token_verifier_verify (ChatTokenVerifier *self,
			    const char *token,
			    guint64 *user_id,
			    GArray **rooms,
			    GError **error)
{
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	return chat_token_verifier_check (self, token, user_id, rooms, NULL, error);
}

/**
 * chat_token_sign:
 * @algorithm: the algorithm to sign with
 * @key: the shared secret (HS*) or the PEM private key (RS256, ES256)
 * @claims: (transfer none): the claims, e.g. `user_id`, `exp`, `rooms`
 * @error: return location for a #GError
 *
 * Creates a signed compact JWT. Meant for development, tests and tools such as
 * `chathubctl token`; production tokens normally come from an identity provider.
 *
 * Returns: (transfer full): the token, or %NULL with %CHAT_ERROR_INVALID_ARGUMENT
 *
 * Since: 1.0
 */
char *
chat_token_sign (ChatTokenAlgorithm algorithm, GBytes *key, JsonObject *claims, GError **error)
{
	g_return_val_if_fail (algorithm <= CHAT_TOKEN_ALGORITHM_ES256, NULL);
	g_return_val_if_fail (key != NULL, NULL);
	g_return_val_if_fail (claims != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	return chat_token_sign_with_key_id (algorithm, key, NULL, claims, error);
}

/**
 * chat_token_sign_with_key_id:
 * @algorithm: the algorithm to sign with
 * @key: the shared secret (HS*) or the PEM private key (RS256, ES256)
 * @key_id: (nullable): the key id to put in the token's `kid` header, or %NULL for none
 * @claims: (transfer none): the claims, e.g. `user_id`, `exp`, `rooms`
 * @error: return location for a #GError
 *
 * Like chat_token_sign(), and names the key in the header, so that a verifier holding
 * several keys (chat_token_verifier_add_key()) checks the token with that key only.
 *
 * Returns: (transfer full): the token, or %NULL with %CHAT_ERROR_INVALID_ARGUMENT
 *
 * Since: 1.0
 */
char *
chat_token_sign_with_key_id (ChatTokenAlgorithm algorithm,
			     GBytes *key,
			     const char *key_id,
			     JsonObject *claims,
			     GError **error)
{
	__attribute__ ((cleanup (jwt_freep))) jwt_t *jwt = NULL;
	g_autoptr (JsonNode) node = NULL;
	g_autofree char *json = NULL;
	char *encoded;
	char *token;

	g_return_val_if_fail (algorithm <= CHAT_TOKEN_ALGORITHM_ES256, NULL);
	g_return_val_if_fail (key != NULL, NULL);
	g_return_val_if_fail (claims != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	chat_i18n_init ();
	node = json_node_init_object (json_node_alloc (), claims);
	json = json_to_string (node, FALSE);
	if (key_id != NULL && !key_id_is_valid (key_id)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("A key id must be 1 to 128 printable ASCII characters "
					"without space"));
		return NULL;
	}
	if (jwt_new (&jwt) != 0 || jwt_add_grants_json (jwt, json) != 0 ||
	    (key_id != NULL && jwt_add_header (jwt, "kid", key_id) != 0) ||
	    jwt_set_alg (jwt,
			 algorithms[algorithm].jwt_alg,
			 g_bytes_get_data (key, NULL),
			 (int) g_bytes_get_size (key)) != 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("Cannot create a token with these claims and this key"));
		return NULL;
	}
	encoded = jwt_encode_str (jwt);
	if (encoded == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("Cannot sign the token: %s"),
			     g_strerror (errno));
		return NULL;
	}
	token = g_strdup (encoded);
	free (encoded);
	return token;
}
