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

static gboolean
scan_string (Scanner *s)
{
	s->p++; /* opening quote */
	while (s->p < s->end) {
		guchar c = *s->p;

		if (c == '"') {
			s->p++;
			return TRUE;
		}
		if (c < 0x20)
			return fail (s, N_ ("control character in a string"));
		if (c != '\\') {
			s->p++;
			continue;
		}
		if (s->end - s->p < 2)
			break;
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
	if (*s->p == '-')
		s->p++;
	if (s->p >= s->end)
		return fail (s, N_ ("bad number"));
	if (*s->p == '0')
		s->p++;
	else if (!scan_digits (s))
		return fail (s, N_ ("bad number"));
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!scan_digits (s))
			return fail (s, N_ ("bad number"));
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
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

static gboolean
scan_container (Scanner *s, guint depth, gboolean object)
{
	guchar close = object ? '}' : ']';

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
			if (!scan_string (s))
				return FALSE;
			skip_ws (s);
			if (s->p >= s->end || *s->p != ':')
				return fail (s, N_ ("expected ':'"));
			s->p++;
		}
		if (!scan_value (s, depth + 1))
			return FALSE;
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
chat_json_validate (const char *text, gsize length, guint max_depth, const char **reason)
{
	Scanner s = {(const guchar *) text, (const guchar *) text + length, max_depth, NULL};
	gboolean valid = scan_value (&s, 0);

	skip_ws (&s);
	if (valid && s.p != s.end)
		valid = fail (&s, N_ ("text after the JSON value"));
	if (!valid && reason != NULL)
		*reason = s.reason;
	return valid;
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
