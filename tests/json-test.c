/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The strict RFC 8259 scanner in front of json-glib (chat-json.c): what it accepts, what it
 * refuses and with which reason. Nesting depth and NUL escapes are tested elsewhere.
 */

#include <string.h>

#include "chat-json-private.h"

typedef struct {
	const char *text;
	gssize length;	    /* -1: strlen (text) */
	const char *reason; /* NULL: valid */
} JsonCase;

static const JsonCase valid_cases[] = {
    /* literals and numbers */
    {"true", -1, NULL},
    {"false", -1, NULL},
    {"null", -1, NULL},
    {"0", -1, NULL},
    {"-0", -1, NULL},
    {"7", -1, NULL},
    {"-12", -1, NULL},
    {"0.5", -1, NULL},
    {"-0.0", -1, NULL},
    {"10.25", -1, NULL},
    {"1e10", -1, NULL},
    {"1E10", -1, NULL},
    {"1e+2", -1, NULL},
    {"1e-2", -1, NULL},
    {"0e0", -1, NULL},
    {"-1.5E-300", -1, NULL},
    {"9223372036854775807", -1, NULL},
    {"-9223372036854775808", -1, NULL},
    {"123456789012345678901234567890", -1, NULL}, /* beyond 64 bits: a double */
    {"1e400", -1, NULL},
    /* strings */
    {"\"\"", -1, NULL},
    {"\"plain\"", -1, NULL},
    {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", -1, NULL},
    {"\"\\u00e9\\u00E9\\uFFFF\"", -1, NULL},
    {"\"\\ud83d\\ude00\"", -1, NULL}, /* a surrogate pair */
    {"\"\\uDBFF\\uDFFF\"", -1, NULL}, /* U+10FFFF */
    {"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", -1, NULL},
    {"\"\x7f\"", -1, NULL}, /* DEL is not a control character in JSON */
    {"\"'single' and /* not a comment */\"", -1, NULL},
    /* containers and whitespace */
    {"[]", -1, NULL},
    {"{}", -1, NULL},
    {"[ ]", -1, NULL},
    {"{ }", -1, NULL},
    {"[1,\"two\",true,null,{}]", -1, NULL},
    {"{\"a\":1,\"b\":[false,{\"c\":\"d\"}]}", -1, NULL},
    {"{\"a\":1,\"a\":2}", -1, NULL}, /* duplicate names: the grammar allows them */
    {" \t\r\n{ \"a\" \t: \r\n [ 1 , 2 ] } \t\r\n", -1, NULL},
    /* the length is what counts, not a terminating NUL */
    {"[1]garbage", 3, NULL},
    {"truex", 4, NULL},
};

static const JsonCase invalid_cases[] = {
    /* empty and whitespace */
    {"", -1, "unexpected end"},
    {" \t\r\n", -1, "unexpected end"},
    {"\f1", -1, "unexpected character"}, /* only four whitespace characters exist */
    {"\v1", -1, "unexpected character"},
    {"\xc2\xa0"
     "1",
     -1,
     "unexpected character"},			    /* a no-break space */
    {"\xef\xbb\xbf{}", -1, "unexpected character"}, /* a byte order mark */
    /* what json-glib 1.6 accepts and JSON does not */
    {"/* c */ 1", -1, "unexpected character"},
    {"1 // c", -1, "text after the JSON value"},
    {"[1 /* c */]", -1, "expected ',' or a closing bracket"},
    {"# c\n1", -1, "unexpected character"},
    {"'a'", -1, "unexpected character"},
    {"{'a':1}", -1, "expected a member name"},
    {"\"\\x41\"", -1, "bad escape in a string"},
    {"\"\\'\"", -1, "bad escape in a string"},
    {"\"\\U0041\"", -1, "bad escape in a string"},
    {"\"\\a\"", -1, "bad escape in a string"},
    {"\"\\u41\"", -1, "bad \\u escape"},
    {"\"\\u12G4\"", -1, "bad \\u escape"},
    {"\"\\u 123\"", -1, "bad \\u escape"},
    {"0x10", -1, "text after the JSON value"},
    {"NaN", -1, "unexpected character"},
    {"Infinity", -1, "unexpected character"},
    {"-Infinity", -1, "bad number"},
    {"True", -1, "unexpected character"},
    {"nul", -1, "unexpected character"},
    {"undefined", -1, "unexpected character"},
    {"{a:1}", -1, "expected a member name"},
    {"{1:2}", -1, "expected a member name"},
    /* trailing and missing commas, separators */
    {"[1,]", -1, "unexpected character"},
    {"{\"a\":1,}", -1, "expected a member name"},
    {"[,1]", -1, "unexpected character"},
    {"[1,,2]", -1, "unexpected character"},
    {"[1 2]", -1, "expected ',' or a closing bracket"},
    {"{\"a\":1 \"b\":2}", -1, "expected ',' or a closing bracket"},
    {"{\"a\" 1}", -1, "expected ':'"},
    {"{\"a\"=1}", -1, "expected ':'"},
    {"[1}", -1, "expected ',' or a closing bracket"},
    {"{\"a\":1]", -1, "expected ',' or a closing bracket"},
    {"1 2", -1, "text after the JSON value"},
    {"{}{}", -1, "text after the JSON value"},
    {"[]]", -1, "text after the JSON value"},
    /* lone surrogates */
    {"\"\\ud800\"", -1, "lone high surrogate"},
    {"\"\\udbff x\"", -1, "lone high surrogate"},
    {"\"\\ud800\\u0041\"", -1, "lone high surrogate"},
    {"\"\\ud800\\ud800\"", -1, "lone high surrogate"},
    {"\"\\ud800\\ue000\"", -1, "lone high surrogate"}, /* just past the low surrogates */
    {"\"\\udbff\\udbff\"", -1, "lone high surrogate"},
    {"\"\\ud800\\n\"", -1, "lone high surrogate"},
    {"\"\\udc00\"", -1, "lone low surrogate"},
    {"\"\\udfff\"", -1, "lone low surrogate"},
    {"\"\\ude00\\ud83d\"", -1, "lone low surrogate"}, /* a pair the wrong way round */
    /* numbers */
    {"01", -1, "text after the JSON value"},
    {"-01", -1, "text after the JSON value"},
    {"00", -1, "text after the JSON value"},
    {"+1", -1, "unexpected character"},
    {".5", -1, "unexpected character"},
    {"-", -1, "bad number"},
    {"--1", -1, "bad number"},
    {"-.5", -1, "bad number"},
    {"1.", -1, "bad number"},
    {"1.e5", -1, "bad number"},
    {"1e", -1, "bad number"},
    {"1e+", -1, "bad number"},
    {"1E-", -1, "bad number"},
    {"1e5.5", -1, "text after the JSON value"},
    {"1_000", -1, "text after the JSON value"},
    {"[01]", -1, "expected ',' or a closing bracket"},
    /* control characters in strings */
    {"\"a\tb\"", -1, "control character in a string"},
    {"\"a\nb\"", -1, "control character in a string"},
    {"\"\x01\"", -1, "control character in a string"},
    {"\"\x1f\"", -1, "control character in a string"},
    /* truncated texts */
    {"{", -1, "expected a member name"},
    {"[", -1, "unexpected end"},
    {"[1", -1, "unexpected end"},
    {"[1,", -1, "unexpected end"},
    {"{\"a\"", -1, "expected ':'"},
    {"{\"a\":", -1, "unexpected end"},
    {"{\"a\":1", -1, "unexpected end"},
    {"\"abc", -1, "unterminated string"},
    {"\"abc\\", -1, "unterminated string"},
    {"\"\\u00", -1, "bad \\u escape"},
    {"\"\\ud83d\\ude0", -1, "lone high surrogate"},
    {"tru", -1, "unexpected character"},
    {"[true]", 5, "unexpected end"},
    {"\"abc\"", 4, "unterminated string"},
    {"12", 0, "unexpected end"},
};

static void
test_json_valid (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (valid_cases); i++) {
		const JsonCase *c = &valid_cases[i];
		gsize length = c->length < 0 ? strlen (c->text) : (gsize) c->length;
		const char *reason = "untouched";
		g_autoptr (JsonNode) node = NULL;

		if (!chat_json_validate (c->text, length, CHAT_JSON_MAX_DEPTH, &reason))
			g_error ("“%.*s” refused: %s", (int) length, c->text, reason);
		/* a valid text leaves the reason alone */
		g_assert_cmpstr (reason, ==, "untouched");
		g_assert_true (chat_json_validate (c->text, length, CHAT_JSON_MAX_DEPTH, NULL));

		/* json-glib takes everything the strict scanner lets through */
		node = chat_json_parse (c->text, length, CHAT_JSON_MAX_DEPTH, &reason);
		if (node == NULL)
			g_error ("“%.*s” accepted, but not parsed", (int) length, c->text);
	}
}

static void
test_json_invalid (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (invalid_cases); i++) {
		const JsonCase *c = &invalid_cases[i];
		gsize length = c->length < 0 ? strlen (c->text) : (gsize) c->length;
		const char *reason = NULL;
		g_autoptr (JsonNode) node = NULL;

		if (chat_json_validate (c->text, length, CHAT_JSON_MAX_DEPTH, &reason))
			g_error ("“%.*s” accepted", (int) length, c->text);
		if (g_strcmp0 (reason, c->reason) != 0)
			g_error ("“%.*s”: reason “%s”, expected “%s”",
				 (int) length,
				 c->text,
				 reason,
				 c->reason);
		/* no reason wanted: still refused, and no crash */
		g_assert_false (chat_json_validate (c->text, length, CHAT_JSON_MAX_DEPTH, NULL));

		reason = NULL;
		node = chat_json_parse (c->text, length, CHAT_JSON_MAX_DEPTH, &reason);
		g_assert_null (node);
		g_assert_cmpstr (reason, ==, c->reason);
	}
}

/* Text that is not UTF-8 (overlong forms, encoded surrogates, code points past U+10FFFF, stray
 * or missing continuation bytes) never becomes a tree. The scanner itself only looks at
 * ASCII; json-glib refuses these, and WebSocket text frames and
 * chat_message_new_from_json() are checked for UTF-8 before they get here. */
static const char *const invalid_utf8[] = {
    "\"\xc0\x80\"",	    /* overlong U+0000 */
    "\"\xc1\xbf\"",	    /* overlong U+007F */
    "\"\xe0\x80\xaf\"",	    /* overlong '/' */
    "\"\xf0\x80\x80\xaf\"", /* overlong '/' in four bytes */
    "\"\xed\xa0\x80\"",	    /* U+D800 encoded */
    "\"\xf4\x90\x80\x80\"", /* U+110000 */
    "\"\x80\"",		    /* a continuation byte alone */
    "\"\xc3\"",		    /* a sequence cut short */
    "\"\xff\"",		    /* never in UTF-8 */
    "{\"\xc0\xa2\":1}",	    /* in a member name */
};

static void
test_json_invalid_utf8 (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (invalid_utf8); i++) {
		const char *text = invalid_utf8[i];
		g_autoptr (JsonNode) node =
		    chat_json_parse (text, strlen (text), CHAT_JSON_MAX_DEPTH, NULL);

		if (node != NULL)
			g_error ("invalid UTF-8 case %" G_GSIZE_FORMAT " parsed", i);
	}
}

/* The first failure is the one reported, not a consequence of it further on. */
static void
test_json_first_reason (void)
{
	const char *reason = NULL;

	g_assert_false (
	    chat_json_validate ("[\"\\x\", 01, 'a']", 15, CHAT_JSON_MAX_DEPTH, &reason));
	g_assert_cmpstr (reason, ==, "bad escape in a string");
	g_assert_false (chat_json_validate ("{\"a\":01}", 8, CHAT_JSON_MAX_DEPTH, &reason));
	g_assert_cmpstr (reason, ==, "expected ',' or a closing bracket");
}

/* chat_json_parse() returns json-glib's tree of exactly the text it checked. */
static void
test_json_parse_tree (void)
{
	const char *text = "{\"n\":-1.5e2,\"s\":\"\\u00e9\\ud83d\\ude00\",\"a\":[1,null]}";
	const char *reason = NULL;
	g_autoptr (JsonNode) node =
	    chat_json_parse (text, strlen (text), CHAT_JSON_MAX_DEPTH, &reason);
	JsonObject *object;
	JsonArray *array;

	g_assert_nonnull (node);
	g_assert_null (reason);
	g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
	object = json_node_get_object (node);
	g_assert_cmpfloat (json_object_get_double_member (object, "n"), ==, -150.0);
	g_assert_cmpstr (json_object_get_string_member (object, "s"),
			 ==,
			 "\xc3\xa9\xf0\x9f\x98\x80");
	array = json_object_get_array_member (object, "a");
	g_assert_cmpuint (json_array_get_length (array), ==, 2);
	g_assert_cmpint (json_array_get_int_element (array, 0), ==, 1);
	g_assert_true (json_array_get_null_element (array, 1));

	/* a scalar root is a value node */
	g_clear_pointer (&node, json_node_unref);
	node = chat_json_parse ("  \"x\"  ", 7, CHAT_JSON_MAX_DEPTH, &reason);
	g_assert_nonnull (node);
	g_assert_cmpstr (json_node_get_string (node), ==, "x");

	/* only @length bytes are parsed */
	g_clear_pointer (&node, json_node_unref);
	node = chat_json_parse ("[1][2]", 3, CHAT_JSON_MAX_DEPTH, &reason);
	g_assert_nonnull (node);
	g_assert_cmpuint (json_array_get_length (json_node_get_array (node)), ==, 1);
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

	g_test_add_func ("/chat/json/valid", test_json_valid);
	g_test_add_func ("/chat/json/invalid", test_json_invalid);
	g_test_add_func ("/chat/json/invalid-utf8", test_json_invalid_utf8);
	g_test_add_func ("/chat/json/first-reason", test_json_first_reason);
	g_test_add_func ("/chat/json/parse-tree", test_json_parse_tree);
	return g_test_run ();
}
