/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* How deep a value given alone (a message's `data`, a token segment) may nest; a message's
 * envelope adds one level. The limit protects the recursive json-glib parser. */
#define CHAT_JSON_MAX_DEPTH 64

typedef enum {
	CHAT_JSON_KIND_NULL,
	CHAT_JSON_KIND_FALSE,
	CHAT_JSON_KIND_TRUE,
	CHAT_JSON_KIND_INTEGER, /* a number without fraction or exponent */
	CHAT_JSON_KIND_NUMBER,	/* a number with a fraction or an exponent */
	CHAT_JSON_KIND_STRING,
	CHAT_JSON_KIND_ARRAY,
	CHAT_JSON_KIND_OBJECT,
} ChatJsonKind;

/* What the scanner knows of a string token once it has checked it. */
typedef enum {
	CHAT_JSON_STRING_ESCAPES = 1 << 0, /* holds a backslash escape: decode before use */
	CHAT_JSON_STRING_NUL = 1 << 1,	   /* holds a \u0000 escape */
} ChatJsonStringFlags;

/* One member of the top-level object, as sent. The spans point into the scanned text. */
typedef struct {
	const char *name; /* the name's token, quotes included */
	gsize name_len;
	ChatJsonStringFlags name_flags;
	const char *value; /* the value's token (a container whole), no surrounding whitespace */
	gsize value_len;
	ChatJsonKind kind;
	ChatJsonStringFlags value_flags; /* for a string value */
} ChatJsonMember;

/* Called for each member of a top-level object as soon as it is scanned: the text may still
 * turn out invalid further on, so nothing may be kept before chat_json_scan() returned TRUE. */
typedef void (*ChatJsonMemberFunc) (const ChatJsonMember *member, gpointer user_data);

/* Strict RFC 8259 check of a whole text, UTF-8 included. json-glib 1.6 also accepts comments,
 * single quotes, hex numbers and "\x" escapes; relaying any of those byte for byte would hand
 * other clients text their parsers reject. Containers may nest @max_depth deep (1: no container
 * inside the top-level one). On failure, returns FALSE and an English reason (marked with N_():
 * translate it with _() where the text is not for the wire). */
gboolean
chat_json_validate (const char *text, gsize length, guint max_depth, const char **reason);
/* chat_json_validate() in the same single pass that reports the root's kind and, when the root
 * is an object, each of its members to @func (nullable). */
gboolean
chat_json_scan (const char *text,
		gsize length,
		guint max_depth,
		ChatJsonKind *root_kind,
		ChatJsonMemberFunc func,
		gpointer user_data,
		const char **reason);
/* chat_json_validate(), then json-glib's tree of the text (transfer full), or NULL. */
JsonNode *
chat_json_parse (const char *text, gsize length, guint max_depth, const char **reason);

/* The text of a string token that chat_json_scan() accepted, quotes included: decoded to
 * UTF-8 (a \u0000 escape becomes a NUL byte; *@length says where the string ends). */
char *
chat_json_string_decode (const char *token,
			 gsize token_len,
			 ChatJsonStringFlags flags,
			 gsize *length);
/* Whether an accepted string token decodes to exactly @name (NUL-terminated, no NUL inside). */
gboolean
chat_json_string_equal (const char *token,
			gsize token_len,
			ChatJsonStringFlags flags,
			const char *name);

G_END_DECLS
