/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "chat-i18n-private.h"
#include "chat-json-private.h"

typedef struct {
	const guchar *p;
	const guchar *end;
	guint max_depth;
	const char *reason;
	ChatJsonMemberFunc member_func; /* (nullable) */
	gpointer user_data;
	ChatJsonStringFlags string_flags; /* of the string scanned last */
	gboolean integer;		  /* whether the number scanned last is an integer */
} Scanner;

static gboolean
scan_value (Scanner *s, guint depth);

static gboolean
fail (Scanner *s, const char *reason)
{
	if (s->reason == NULL)
		s->reason = reason;
	return FALSE;
}

static void
skip_ws (Scanner *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static gboolean
is_hex (guchar c)
{
	return g_ascii_isxdigit (c);
}

static guint
hex4 (const guchar *p)
{
	guint value = 0;

	for (int i = 0; i < 4; i++)
		value = value * 16 + g_ascii_xdigit_value (p[i]);
	return value;
}

/* The length of the well-formed UTF-8 sequence at p (its lead byte >= 0x80), or 0: no overlong
 * forms, no encoded surrogates, nothing past U+10FFFF (RFC 3629). */
static gsize
utf8_sequence_length (const guchar *p, const guchar *end)
{
	guchar lead = p[0], low = 0x80, high = 0xbf;
	gsize length;

	if (lead >= 0xc2 && lead <= 0xdf)
		length = 2;
	else if (lead >= 0xe0 && lead <= 0xef)
		length = 3;
	else if (lead >= 0xf0 && lead <= 0xf4)
		length = 4;
	else
		return 0;
	if ((gsize) (end - p) < length)
		return 0;
	/* the second byte carries the range limits of the first */
	if (lead == 0xe0)
		low = 0xa0;
	else if (lead == 0xed)
		high = 0x9f;
	else if (lead == 0xf0)
		low = 0x90;
	else if (lead == 0xf4)
		high = 0x8f;
	if (p[1] < low || p[1] > high)
		return 0;
	for (gsize i = 2; i < length; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return length;
}

static gboolean
scan_string (Scanner *s)
{
	s->string_flags = 0;
	s->p++; /* opening quote */
	while (s->p < s->end) {
		const guchar *p = s->p;
		guchar c;

		/* most of a message is plain ASCII text: skip it in a tight loop */
		while (p < s->end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		s->p = p;
		if (p == s->end)
			break;
		c = *p;
		if (c == '"') {
			s->p++;
			return TRUE;
		}
		if (c < 0x20)
			return fail (s, N_ ("control character in a string"));
		if (c >= 0x80) {
			gsize length = utf8_sequence_length (s->p, s->end);

			if (length == 0)
				return fail (s, N_ ("invalid UTF-8 in a string"));
			s->p += length;
			continue;
		}
		/* a backslash */
		if (s->end - s->p < 2)
			break;
		s->string_flags |= CHAT_JSON_STRING_ESCAPES;
		switch (s->p[1]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			s->p += 2;
			break;
		case 'u': {
			guint unit;

			if (s->end - s->p < 6 || !is_hex (s->p[2]) || !is_hex (s->p[3]) ||
			    !is_hex (s->p[4]) || !is_hex (s->p[5]))
				return fail (s, N_ ("bad \\u escape"));
			unit = hex4 (s->p + 2);
			s->p += 6;
			/* json-glib ends a string at U+0000: the caller decides what that means */
			if (unit == 0)
				s->string_flags |= CHAT_JSON_STRING_NUL;
			if (unit >= 0xdc00 && unit <= 0xdfff)
				return fail (s, N_ ("lone low surrogate"));
			if (unit >= 0xd800 && unit <= 0xdbff) {
				if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
				    !is_hex (s->p[2]) || !is_hex (s->p[3]) || !is_hex (s->p[4]) ||
				    !is_hex (s->p[5]))
					return fail (s, N_ ("lone high surrogate"));
				unit = hex4 (s->p + 2);
				if (unit < 0xdc00 || unit > 0xdfff)
					return fail (s, N_ ("lone high surrogate"));
				s->p += 6;
			}
			break;
		}
		default:
			return fail (s, N_ ("bad escape in a string"));
		}
	}
	return fail (s, N_ ("unterminated string"));
}

static gboolean
scan_digits (Scanner *s)
{
	const guchar *start = s->p;

	while (s->p < s->end && g_ascii_isdigit (*s->p))
		s->p++;
	return s->p > start;
}

static gboolean
scan_number (Scanner *s)
{
	s->integer = TRUE;
	if (*s->p == '-')
		s->p++;
	if (s->p >= s->end)
		return fail (s, N_ ("bad number"));
	if (*s->p == '0')
		s->p++;
	else if (!scan_digits (s))
		return fail (s, N_ ("bad number"));
	if (s->p < s->end && *s->p == '.') {
		s->integer = FALSE;
		s->p++;
		if (!scan_digits (s))
			return fail (s, N_ ("bad number"));
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->integer = FALSE;
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!scan_digits (s))
			return fail (s, N_ ("bad number"));
	}
	return TRUE;
}

static gboolean
scan_literal (Scanner *s, const char *word, gsize len)
{
	if ((gsize) (s->end - s->p) < len || memcmp (s->p, word, len) != 0)
		return fail (s, N_ ("unexpected character"));
	s->p += len;
	return TRUE;
}

static ChatJsonKind
kind_of (Scanner *s, guchar first)
{
	switch (first) {
	case '{':
		return CHAT_JSON_KIND_OBJECT;
	case '[':
		return CHAT_JSON_KIND_ARRAY;
	case '"':
		return CHAT_JSON_KIND_STRING;
	case 't':
		return CHAT_JSON_KIND_TRUE;
	case 'f':
		return CHAT_JSON_KIND_FALSE;
	case 'n':
		return CHAT_JSON_KIND_NULL;
	default:
		return s->integer ? CHAT_JSON_KIND_INTEGER : CHAT_JSON_KIND_NUMBER;
	}
}

static gboolean
scan_container (Scanner *s, guint depth, gboolean object)
{
	guchar close = object ? '}' : ']';
	gboolean report = object && depth == 0 && s->member_func != NULL;
	ChatJsonMember member = {NULL};

	if (depth >= s->max_depth)
		return fail (s, N_ ("nested too deeply"));
	s->p++;
	skip_ws (s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return TRUE;
	}
	for (;;) {
		if (object) {
			skip_ws (s);
			if (s->p >= s->end || *s->p != '"')
				return fail (s, N_ ("expected a member name"));
			member.name = (const char *) s->p;
			if (!scan_string (s))
				return FALSE;
			member.name_len = (const char *) s->p - member.name;
			member.name_flags = s->string_flags;
			skip_ws (s);
			if (s->p >= s->end || *s->p != ':')
				return fail (s, N_ ("expected ':'"));
			s->p++;
			skip_ws (s);
			member.value = (const char *) s->p;
		}
		if (!scan_value (s, depth + 1))
			return FALSE;
		if (report) {
			member.value_len = (const char *) s->p - member.value;
			member.kind = kind_of (s, (guchar) member.value[0]);
			member.value_flags =
			    member.kind == CHAT_JSON_KIND_STRING ? s->string_flags : 0;
			s->member_func (&member, s->user_data);
		}
		skip_ws (s);
		if (s->p >= s->end)
			return fail (s, N_ ("unexpected end"));
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p == close) {
			s->p++;
			return TRUE;
		}
		return fail (s, N_ ("expected ',' or a closing bracket"));
	}
}

static gboolean
scan_value (Scanner *s, guint depth)
{
	skip_ws (s);
	if (s->p >= s->end)
		return fail (s, N_ ("unexpected end"));
	switch (*s->p) {
	case '{':
		return scan_container (s, depth, TRUE);
	case '[':
		return scan_container (s, depth, FALSE);
	case '"':
		return scan_string (s);
	case 't':
		return scan_literal (s, "true", 4);
	case 'f':
		return scan_literal (s, "false", 5);
	case 'n':
		return scan_literal (s, "null", 4);
	default:
		if (*s->p == '-' || g_ascii_isdigit (*s->p))
			return scan_number (s);
		return fail (s, N_ ("unexpected character"));
	}
}

gboolean
chat_json_scan (const char *text,
		gsize length,
		guint max_depth,
		ChatJsonKind *root_kind,
		ChatJsonMemberFunc func,
		gpointer user_data,
		const char **reason)
{
	Scanner s = {(const guchar *) text,
		     (const guchar *) text + length,
		     max_depth,
		     NULL,
		     func,
		     user_data,
		     0,
		     FALSE};
	const guchar *start;
	gboolean valid;

	skip_ws (&s);
	start = s.p;
	valid = scan_value (&s, 0);
	if (valid && root_kind != NULL)
		*root_kind = kind_of (&s, *start);
	skip_ws (&s);
	if (valid && s.p != s.end)
		valid = fail (&s, N_ ("text after the JSON value"));
	if (!valid && reason != NULL)
		*reason = s.reason;
	return valid;
}

gboolean
chat_json_validate (const char *text, gsize length, guint max_depth, const char **reason)
{
	return chat_json_scan (text, length, max_depth, NULL, NULL, NULL, reason);
}

JsonNode *
chat_json_parse (const char *text, gsize length, guint max_depth, const char **reason)
{
	g_autoptr (JsonParser) parser = NULL;
	JsonNode *root;

	if (!chat_json_validate (text, length, max_depth, reason))
		return NULL;
	/* validated text holds no NUL, and the parser takes a length: no copy needed */
	parser = json_parser_new_immutable ();
	if (!json_parser_load_from_data (parser, text, (gssize) length, NULL))
		return NULL;
	root = json_parser_get_root (parser);
	return root != NULL ? json_node_ref (root) : NULL;
}

char *
chat_json_string_decode (const char *token,
			 gsize token_len,
			 ChatJsonStringFlags flags,
			 gsize *length)
{
	const char *p = token + 1, *end = token + token_len - 1;
	char *out, *q;

	if (!(flags & CHAT_JSON_STRING_ESCAPES)) {
		if (length != NULL)
			*length = (gsize) (end - p);
		return g_strndup (p, end - p);
	}
	/* an escape never decodes to more bytes than it takes: \uXXXX is at most 3, a pair 4 */
	out = q = g_malloc (end - p + 1);
	while (p < end) {
		gunichar unit;

		if (*p != '\\') {
			*q++ = *p++;
			continue;
		}
		switch (p[1]) {
		case 'b':
			*q++ = '\b';
			break;
		case 'f':
			*q++ = '\f';
			break;
		case 'n':
			*q++ = '\n';
			break;
		case 'r':
			*q++ = '\r';
			break;
		case 't':
			*q++ = '\t';
			break;
		case 'u':
			unit = hex4 ((const guchar *) p + 2);
			if (unit >= 0xd800 && unit <= 0xdbff) {
				/* the scanner saw the low surrogate that follows */
				unit = 0x10000 + ((unit - 0xd800) << 10) +
				       (hex4 ((const guchar *) p + 8) - 0xdc00);
				p += 6;
			}
			q += g_unichar_to_utf8 (unit, q);
			p += 6;
			continue;
		default: /* " \ / */
			*q++ = p[1];
		}
		p += 2;
	}
	*q = '\0';
	if (length != NULL)
		*length = (gsize) (q - out);
	return out;
}

gboolean
chat_json_string_equal (const char *token,
			gsize token_len,
			ChatJsonStringFlags flags,
			const char *name)
{
	gsize name_len = strlen (name), decoded_len;
	g_autofree char *decoded = NULL;

	if (!(flags & CHAT_JSON_STRING_ESCAPES))
		return token_len == name_len + 2 && memcmp (token + 1, name, name_len) == 0;
	/* escaped names are rare ("d\u0061ta"): decode them */
	decoded = chat_json_string_decode (token, token_len, flags, &decoded_len);
	return decoded_len == name_len && memcmp (decoded, name, name_len) == 0;
}
