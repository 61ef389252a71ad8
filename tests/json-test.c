/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The strict RFC 8259 scanner in front of json-glib (chat-json.c): what it accepts, what it
 * refuses and with which reason (UTF-8 included), what it reports of a top-level object's
 * members, and the decoding of the string tokens it accepted. Nesting depth and what a
 * message makes of NUL escapes are tested in message-test.c.
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
    /* the edges of UTF-8's ranges */
    {"\"\xc2\x80 \xdf\xbf\"", -1, NULL},		 /* U+0080, U+07FF */
    {"\"\xe0\xa0\x80 \xed\x9f\xbf\"", -1, NULL},	 /* U+0800, U+D7FF */
    {"\"\xee\x80\x80 \xef\xbf\xbf\"", -1, NULL},	 /* U+E000, U+FFFF */
    {"\"\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\"", -1, NULL}, /* U+10000, U+10FFFF */
    {"{\"\xc3\xa9\":\"\xe2\x82\xac\"}", -1, NULL},	 /* in a member name too */
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
 * or missing continuation bytes) is refused with a reason, wherever it is: json-glib would
 * refuse it later without one. Outside strings only ASCII is JSON at all. */
static const JsonCase invalid_utf8_cases[] = {
    {"\"\xc0\x80\"", -1, "invalid UTF-8 in a string"},	       /* overlong U+0000 */
    {"\"\xc1\xbf\"", -1, "invalid UTF-8 in a string"},	       /* overlong U+007F */
    {"\"\xe0\x80\xaf\"", -1, "invalid UTF-8 in a string"},     /* overlong '/' */
    {"\"\xe0\x9f\xbf\"", -1, "invalid UTF-8 in a string"},     /* overlong U+07FF */
    {"\"\xf0\x80\x80\xaf\"", -1, "invalid UTF-8 in a string"}, /* overlong '/', 4 bytes */
    {"\"\xf0\x8f\xbf\xbf\"", -1, "invalid UTF-8 in a string"}, /* overlong U+FFFF */
    {"\"\xed\xa0\x80\"", -1, "invalid UTF-8 in a string"},     /* U+D800 encoded */
    {"\"\xed\xbf\xbf\"", -1, "invalid UTF-8 in a string"},     /* U+DFFF encoded */
    {"\"\xf4\x90\x80\x80\"", -1, "invalid UTF-8 in a string"}, /* U+110000 */
    {"\"\xf5\x80\x80\x80\"", -1, "invalid UTF-8 in a string"}, /* lead byte past F4 */
    {"\"\x80\"", -1, "invalid UTF-8 in a string"},	       /* a continuation byte alone */
    {"\"\xbf\xbf\"", -1, "invalid UTF-8 in a string"},
    {"\"\xc3\"", -1, "invalid UTF-8 in a string"},	     /* a sequence cut short by the quote */
    {"\"\xe2\x28\xa1\"", -1, "invalid UTF-8 in a string"},   /* ASCII inside a sequence */
    {"\"\xe2\x82", -1, "invalid UTF-8 in a string"},	     /* cut short by the end */
    {"\"ok \xf0\x9f\x98\"", 8, "invalid UTF-8 in a string"}, /* cut short by @length */
    {"\"\xff\"", -1, "invalid UTF-8 in a string"},	     /* never in UTF-8 */
    {"\"\xfe\"", -1, "invalid UTF-8 in a string"},
    {"{\"\xc0\xa2\":1}", -1, "invalid UTF-8 in a string"},		   /* in a member name */
    {"[\"a\",{\"b\":\"\xed\xa0\x80\"}]", -1, "invalid UTF-8 in a string"}, /* nested */
    {"[\xc3\xa9]", -1, "unexpected character"}, /* well-formed, but outside a string */
};

static void
test_json_invalid_utf8 (void)
{
	for (gsize i = 0; i < G_N_ELEMENTS (invalid_utf8_cases); i++) {
		const JsonCase *c = &invalid_utf8_cases[i];
		gsize length = c->length < 0 ? strlen (c->text) : (gsize) c->length;
		const char *reason = NULL;
		g_autoptr (JsonNode) node = NULL;

		if (chat_json_validate (c->text, length, CHAT_JSON_MAX_DEPTH, &reason))
			g_error ("invalid UTF-8 case %" G_GSIZE_FORMAT " accepted", i);
		if (g_strcmp0 (reason, c->reason) != 0)
			g_error ("invalid UTF-8 case %" G_GSIZE_FORMAT
				 ": reason “%s”, expected “%s”",
				 i,
				 reason,
				 c->reason);
		reason = NULL;
		node = chat_json_parse (c->text, length, CHAT_JSON_MAX_DEPTH, &reason);
		g_assert_null (node);
		g_assert_cmpstr (reason, ==, c->reason);
	}
}

static void
collect_member (const ChatJsonMember *member, gpointer user_data)
{
	g_array_append_val ((GArray *) user_data, *member);
}

static void
assert_member (const ChatJsonMember *member,
	       const char *name,
	       ChatJsonStringFlags name_flags,
	       const char *value,
	       ChatJsonKind kind,
	       ChatJsonStringFlags value_flags)
{
	g_autofree char *got_name = g_strndup (member->name, member->name_len);
	g_autofree char *got_value = g_strndup (member->value, member->value_len);

	g_assert_cmpstr (got_name, ==, name);
	g_assert_cmpint (member->name_flags, ==, name_flags);
	g_assert_cmpstr (got_value, ==, value);
	g_assert_cmpint (member->kind, ==, kind);
	g_assert_cmpint (member->value_flags, ==, value_flags);
}

/* One pass validates and says where each top-level member is: its name and value tokens as
 * sent, the value's kind, and which strings need decoding or hold a NUL. */
static void
test_json_scan_members (void)
{
	const char *text = " { \"type\" : \"message\" ,\"n\":-12,\"f\":1.5e3,\"g\":-0.0,"
			   "\"s\":\"a\\u0000b\",\"d\\u0061ta\":{\"inner\":[1,{\"x\":2}]},"
			   "\"k\\u0000\":[],\"t\":true,\"u\":false,\"z\":null,\"e\":\"\\n\"} ";
	g_autoptr (GArray) members = g_array_new (FALSE, FALSE, sizeof (ChatJsonMember));
	ChatJsonKind kind = CHAT_JSON_KIND_NULL;
	const char *reason = NULL;
	const ChatJsonMember *m;
	struct {
		const char *text;
		ChatJsonKind kind;
	} roots[] = {
	    {"0", CHAT_JSON_KIND_INTEGER},
	    {" -7 ", CHAT_JSON_KIND_INTEGER},
	    {"1e2", CHAT_JSON_KIND_NUMBER},
	    {"0.5", CHAT_JSON_KIND_NUMBER},
	    {"\"x\"", CHAT_JSON_KIND_STRING},
	    {"true", CHAT_JSON_KIND_TRUE},
	    {"false", CHAT_JSON_KIND_FALSE},
	    {"\tnull", CHAT_JSON_KIND_NULL},
	    {"[{\"a\":1}]", CHAT_JSON_KIND_ARRAY},
	    {"{}", CHAT_JSON_KIND_OBJECT},
	};

	g_assert_true (chat_json_scan (text,
				       strlen (text),
				       CHAT_JSON_MAX_DEPTH,
				       &kind,
				       collect_member,
				       members,
				       &reason));
	g_assert_null (reason);
	g_assert_cmpint (kind, ==, CHAT_JSON_KIND_OBJECT);
	g_assert_cmpuint (members->len, ==, 11);
	m = (const ChatJsonMember *) (gpointer) members->data;
	assert_member (&m[0], "\"type\"", 0, "\"message\"", CHAT_JSON_KIND_STRING, 0);
	assert_member (&m[1], "\"n\"", 0, "-12", CHAT_JSON_KIND_INTEGER, 0);
	assert_member (&m[2], "\"f\"", 0, "1.5e3", CHAT_JSON_KIND_NUMBER, 0);
	assert_member (&m[3], "\"g\"", 0, "-0.0", CHAT_JSON_KIND_NUMBER, 0);
	assert_member (&m[4],
		       "\"s\"",
		       0,
		       "\"a\\u0000b\"",
		       CHAT_JSON_KIND_STRING,
		       CHAT_JSON_STRING_ESCAPES | CHAT_JSON_STRING_NUL);
	/* a container is one member, whole; its own members are not reported */
	assert_member (&m[5],
		       "\"d\\u0061ta\"",
		       CHAT_JSON_STRING_ESCAPES,
		       "{\"inner\":[1,{\"x\":2}]}",
		       CHAT_JSON_KIND_OBJECT,
		       0);
	assert_member (&m[6],
		       "\"k\\u0000\"",
		       CHAT_JSON_STRING_ESCAPES | CHAT_JSON_STRING_NUL,
		       "[]",
		       CHAT_JSON_KIND_ARRAY,
		       0);
	assert_member (&m[7], "\"t\"", 0, "true", CHAT_JSON_KIND_TRUE, 0);
	assert_member (&m[8], "\"u\"", 0, "false", CHAT_JSON_KIND_FALSE, 0);
	assert_member (&m[9], "\"z\"", 0, "null", CHAT_JSON_KIND_NULL, 0);
	assert_member (&m[10],
		       "\"e\"",
		       0,
		       "\"\\n\"",
		       CHAT_JSON_KIND_STRING,
		       CHAT_JSON_STRING_ESCAPES);

	/* an escaped backslash before "u0000" is no NUL */
	g_array_set_size (members, 0);
	g_assert_true (chat_json_scan ("{\"a\\\\u0000\":\"\\\\u0000\"}",
				       22,
				       CHAT_JSON_MAX_DEPTH,
				       NULL,
				       collect_member,
				       members,
				       NULL));
	g_assert_cmpuint (members->len, ==, 1);
	m = (const ChatJsonMember *) (gpointer) members->data;
	g_assert_cmpint (m->name_flags, ==, CHAT_JSON_STRING_ESCAPES);
	g_assert_cmpint (m->value_flags, ==, CHAT_JSON_STRING_ESCAPES);

	/* members of an object inside a top-level array are not the envelope's */
	g_array_set_size (members, 0);
	g_assert_true (chat_json_scan ("[{\"a\":1}]",
				       9,
				       CHAT_JSON_MAX_DEPTH,
				       &kind,
				       collect_member,
				       members,
				       NULL));
	g_assert_cmpuint (members->len, ==, 0);

	for (gsize i = 0; i < G_N_ELEMENTS (roots); i++) {
		kind = -1;
		g_assert_true (chat_json_scan (roots[i].text,
					       strlen (roots[i].text),
					       CHAT_JSON_MAX_DEPTH,
					       &kind,
					       NULL,
					       NULL,
					       NULL));
		if (kind != roots[i].kind)
			g_error ("“%s”: kind %d, expected %d", roots[i].text, kind, roots[i].kind);
	}
}

/* Decoding an accepted string token gives what json-glib gives, NUL bytes included. */
static void
test_json_string_decode (void)
{
	const char *cases[][2] = {
	    {"\"\"", ""},
	    {"\"plain caf\xc3\xa9\"", "plain caf\xc3\xa9"},
	    {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t"},
	    {"\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"",
	     "A\xc3\xa9\xc3\xa9\xe2\x82\xac\xef\xbf\xbf"},
	    {"\"\\ud83d\\ude00x\\uDBFF\\uDFFF\"", "\xf0\x9f\x98\x80x\xf4\x8f\xbf\xbf"},
	    {"\"a\\\\u0000b\"", "a\\u0000b"},
	};

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		const char *token = cases[i][0];
		g_autoptr (GArray) members = g_array_new (FALSE, FALSE, sizeof (ChatJsonMember));
		g_autofree char *object = g_strdup_printf ("{\"v\":%s}", token);
		g_autofree char *decoded = NULL;
		g_autoptr (JsonNode) node = NULL;
		const ChatJsonMember *m;
		gsize length = 0;

		g_assert_true (chat_json_scan (object,
					       strlen (object),
					       CHAT_JSON_MAX_DEPTH,
					       NULL,
					       collect_member,
					       members,
					       NULL));
		m = (const ChatJsonMember *) (gpointer) members->data;
		decoded = chat_json_string_decode (m->value, m->value_len, m->value_flags, &length);
		g_assert_cmpstr (decoded, ==, cases[i][1]);
		g_assert_cmpuint (length, ==, strlen (cases[i][1]));
		/* the same text json-glib makes of it */
		node = json_from_string (token, NULL);
		g_assert_cmpstr (json_node_get_string (node), ==, decoded);
		g_assert_true (
		    chat_json_string_equal (m->value, m->value_len, m->value_flags, cases[i][1]));
	}

	{
		/* a NUL escape decodes to a NUL byte; the length says where the string ends */
		const char *token = "\"a\\u0000b\"";
		ChatJsonStringFlags flags = CHAT_JSON_STRING_ESCAPES | CHAT_JSON_STRING_NUL;
		gsize length = 0;
		g_autofree char *decoded =
		    chat_json_string_decode (token, strlen (token), flags, &length);

		g_assert_cmpuint (length, ==, 3);
		g_assert_cmpmem (decoded, 4, "a\0b", 4);
		/* so it equals neither what precedes the NUL nor the whole */
		g_assert_false (chat_json_string_equal (token, strlen (token), flags, "a"));
		g_assert_false (chat_json_string_equal (token, strlen (token), flags, "ab"));
	}
	/* names: plain and escaped, never a prefix */
	g_assert_true (chat_json_string_equal ("\"data\"", 6, 0, "data"));
	g_assert_false (chat_json_string_equal ("\"dat\"", 5, 0, "data"));
	g_assert_false (chat_json_string_equal ("\"datas\"", 7, 0, "data"));
	g_assert_true (
	    chat_json_string_equal ("\"d\\u0061ta\"", 11, CHAT_JSON_STRING_ESCAPES, "data"));
	g_assert_false (
	    chat_json_string_equal ("\"d\\u0061t\"", 10, CHAT_JSON_STRING_ESCAPES, "data"));
	g_assert_true (chat_json_string_equal ("\"\"", 2, 0, ""));
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
	g_test_add_func ("/chat/json/scan-members", test_json_scan_members);
	g_test_add_func ("/chat/json/string-decode", test_json_string_decode);
	g_test_add_func ("/chat/json/first-reason", test_json_first_reason);
	g_test_add_func ("/chat/json/parse-tree", test_json_parse_tree);
	return g_test_run ();
}
