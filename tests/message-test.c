/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatMessage: parsing client frames (every field type error, integers out of range, escaped
 * and duplicate names), serializing once, relaying `data` byte for byte and building its tree
 * only when asked.
 */

#include <chathub.h>
#include <string.h>

#include "chat-message-private.h"

static void
assert_parse_error (const char *text, ChatError code, const char *fragment)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_new_from_json (text, -1, &error);

	g_assert_null (message);
	g_assert_error (error, CHAT_ERROR, (gint) code);
	if (fragment != NULL && strstr (error->message, fragment) == NULL)
		g_error ("“%s”: error “%s” does not mention “%s”", text, error->message, fragment);
}

/* `data` of exactly @levels nested arrays around a 1 (levels 0: just the 1). */
static char *
message_with_depth (guint levels)
{
	GString *text = g_string_new ("{\"type\":\"message\",\"data\":");

	for (guint i = 0; i < levels; i++)
		g_string_append_c (text, '[');
	g_string_append_c (text, '1');
	for (guint i = 0; i < levels; i++)
		g_string_append_c (text, ']');
	g_string_append_c (text, '}');
	return g_string_free (text, FALSE);
}

/* data may nest 64 levels: the envelope does not count */
static void
test_message_data_depth (void)
{
	g_autofree char *deepest = message_with_depth (64);
	g_autofree char *too_deep = message_with_depth (65);
	g_autofree char *data_text = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_new_from_json (deepest, -1, &error);
	g_autoptr (ChatMessage) alone = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);

	g_assert_no_error (error);
	g_assert_nonnull (message);
	g_assert_true (JSON_NODE_HOLDS_ARRAY (chat_message_get_data (message)));
	assert_parse_error (too_deep, CHAT_ERROR_INVALID_JSON, "deep");

	/* the same limit for data given alone */
	data_text = g_strndup (strstr (deepest, "\"data\":") + 7, strlen (deepest) - 26);
	g_assert_true (chat_message_set_data_json (alone, data_text, -1, &error));
	g_assert_no_error (error);
	g_clear_pointer (&data_text, g_free);
	data_text = g_strndup (strstr (too_deep, "\"data\":") + 7, strlen (too_deep) - 26);
	g_assert_false (chat_message_set_data_json (alone, data_text, -1, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON);
}

/* json-glib cuts strings at U+0000: no field may be cut short, data is kept whole */
static void
test_message_nul (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = NULL;
	g_autofree char *json = NULL;

	assert_parse_error ("{\"type\":\"ping\\u0000x\"}", CHAT_ERROR_UNKNOWN_TYPE, "ping\\u0000x");
	assert_parse_error ("{\"type\":\"message\\u0000\",\"content\":\"hi\"}",
			    CHAT_ERROR_UNKNOWN_TYPE,
			    "message\\u0000");
	assert_parse_error ("{\"type\":\"message\",\"content\":\"a\\u0000b\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"message\",\"content\":\"\\u0000\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"error\",\"code\":\"x\\u0000y\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "code");
	/* a name cut at its NUL would be "content" or "type" */
	assert_parse_error ("{\"type\":\"message\",\"content\\u0000x\":\"hi\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "U+0000");
	assert_parse_error ("{\"type\\u0000\":\"ping\"}", CHAT_ERROR_INVALID_MESSAGE, "U+0000");

	/* an escaped backslash before "u0000" is no NUL */
	message = chat_message_new_from_json ("{\"type\":\"message\",\"content\":\"a\\\\u0000b\"}",
					      -1,
					      &error);
	g_assert_no_error (error);
	g_assert_cmpstr (chat_message_get_content (message), ==, "a\\u0000b");
	g_clear_object (&message);

	/* data is relayed as sent, the escape included */
	message = chat_message_new_from_json (
	    "{\"type\":\"message\",\"data\":{\"k\\u0000\":\"a\\u0000b\"},\"content\":\"c\"}",
	    -1,
	    &error);
	g_assert_no_error (error);
	json = chat_message_to_json (message);
	g_assert_nonnull (
	    strstr (json, ",\"content\":\"c\",\"data\":{\"k\\u0000\":\"a\\u0000b\"},"));
}

static void
test_message_parse_errors (void)
{
	/* not JSON at all */
	assert_parse_error ("", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("   ", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("hello", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"ping\"", CHAT_ERROR_INVALID_JSON, NULL);

	/* what json-glib 1.6 would accept but JSON does not: never relayed */
	assert_parse_error ("{'type':'ping'}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("/* c */ {\"type\":\"ping\"}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"ping\"} // c", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"ping\"}{\"type\":\"ping\"}",
			    CHAT_ERROR_INVALID_JSON,
			    NULL);
	assert_parse_error ("{\"type\":\"message\",\"content\":\"\\x41\"}",
			    CHAT_ERROR_INVALID_JSON,
			    NULL);
	assert_parse_error ("{\"type\":\"message\",\"content\":\"a\tb\"}",
			    CHAT_ERROR_INVALID_JSON,
			    NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":0x10}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":01}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":.5}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":1.}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":+1}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":[1,]}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":NaN}", CHAT_ERROR_INVALID_JSON, NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":\"\\ud800\"}",
			    CHAT_ERROR_INVALID_JSON,
			    NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":\"\\udc00x\"}",
			    CHAT_ERROR_INVALID_JSON,
			    NULL);
	assert_parse_error ("{\"type\":\"message\",\"data\":tru}", CHAT_ERROR_INVALID_JSON, NULL);
	{
		/* deep nesting would recurse in json-glib: refused before it */
		g_autoptr (GString) deep = g_string_new ("{\"type\":\"message\",\"data\":");

		for (int i = 0; i < 100000; i++)
			g_string_append_c (deep, '[');
		assert_parse_error (deep->str, CHAT_ERROR_INVALID_JSON, "deep");
	}

	/* JSON, but not a message */
	assert_parse_error ("[1,2]", CHAT_ERROR_INVALID_MESSAGE, "object");
	assert_parse_error ("42", CHAT_ERROR_INVALID_MESSAGE, "object");
	assert_parse_error ("\"ping\"", CHAT_ERROR_INVALID_MESSAGE, "object");
	assert_parse_error ("{}", CHAT_ERROR_INVALID_MESSAGE, "type");
	assert_parse_error ("{\"type\":7}", CHAT_ERROR_INVALID_MESSAGE, "type");
	assert_parse_error ("{\"type\":null}", CHAT_ERROR_INVALID_MESSAGE, "type");
	assert_parse_error ("{\"type\":[\"ping\"]}", CHAT_ERROR_INVALID_MESSAGE, "type");
	assert_parse_error ("{\"type\":\"shout\"}", CHAT_ERROR_UNKNOWN_TYPE, "shout");
	assert_parse_error ("{\"type\":\"PING\"}", CHAT_ERROR_UNKNOWN_TYPE, "PING");

	/* every field with the wrong type */
	assert_parse_error ("{\"type\":\"message\",\"room_id\":\"3\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "room_id");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":0}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "room_id");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":-4}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "room_id");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":1.5}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "room_id");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":true}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "room_id");
	assert_parse_error ("{\"type\":\"message\",\"to\":\"7\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "to");
	assert_parse_error ("{\"type\":\"message\",\"to\":0}", CHAT_ERROR_INVALID_MESSAGE, "to");
	assert_parse_error ("{\"type\":\"message\",\"to\":-1}", CHAT_ERROR_INVALID_MESSAGE, "to");
	assert_parse_error ("{\"type\":\"message\",\"to\":{}}", CHAT_ERROR_INVALID_MESSAGE, "to");
	assert_parse_error ("{\"type\":\"message\",\"from\":\"me\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "from");
	assert_parse_error ("{\"type\":\"message\",\"from\":-2}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "from");
	assert_parse_error ("{\"type\":\"message\",\"id\":\"1\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "id");
	assert_parse_error ("{\"type\":\"message\",\"content\":5}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"message\",\"content\":[\"a\"]}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"message\",\"content\":false}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"message\",\"timestamp\":\"now\"}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "timestamp");
	assert_parse_error ("{\"type\":\"message\",\"timestamp\":1.25}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "timestamp");
	assert_parse_error ("{\"type\":\"error\",\"code\":404}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "code");
}

/* Integers are read from the frame's digits: up to 2^63 - 1 (what json-glib and every binding
 * hold), never wrapped around; a fraction or an exponent is no integer, -0 is 0. */
static void
test_message_integers (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = NULL;

	message =
	    chat_message_new_from_json ("{\"type\":\"message\",\"id\":9223372036854775807,"
					"\"from\":-0,\"to\":1,\"room_id\":9223372036854775807,"
					"\"timestamp\":9223372036854775807}",
					-1,
					&error);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_id (message), ==, G_MAXINT64);
	g_assert_cmpuint (chat_message_get_from (message), ==, 0);
	g_assert_cmpuint (chat_message_get_room_id (message), ==, G_MAXINT64);
	g_assert_cmpint (chat_message_get_timestamp (message), ==, G_MAXINT64);

	/* json-glib wrapped these: 2^63 to a negative, 2^64 to -1, -2^63 - 1 to 2^63 - 1 */
	assert_parse_error ("{\"type\":\"message\",\"id\":9223372036854775808}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “id” must be at most 9223372036854775807");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":18446744073709551616}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “room_id” must be at most");
	assert_parse_error ("{\"type\":\"message\",\"to\":99999999999999999999999999}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “to” must be at most");
	assert_parse_error ("{\"type\":\"message\",\"timestamp\":12345678901234567890}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “timestamp” must be at most");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":-9223372036854775809}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “room_id” must be an integer greater than 0");
	assert_parse_error ("{\"type\":\"message\",\"from\":-99999999999999999999999}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “from” must not be negative");
	assert_parse_error ("{\"type\":\"message\",\"timestamp\":-1}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “timestamp” must be a non-negative integer");
	/* -0 is zero, which a room or an addressee cannot be */
	assert_parse_error ("{\"type\":\"message\",\"to\":-0}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “to” must be an integer greater than 0");
	assert_parse_error ("{\"type\":\"message\",\"room_id\":1e2}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “room_id” must be an integer");
	assert_parse_error ("{\"type\":\"message\",\"id\":1.0}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “id” must be an integer");
	assert_parse_error ("{\"type\":\"message\",\"timestamp\":1E0}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "Field “timestamp” must be a non-negative integer");
}

/* Names are compared decoded, and of duplicates the last wins, as in json-glib's objects. */
static void
test_message_names (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = NULL;
	g_autofree char *json = NULL;

	message =
	    chat_message_new_from_json ("{\"\\u0074ype\":\"\\u006dessage\",\"r\\u006fom_id\":4,"
					"\"content\":\"first\",\"cont\\u0065nt\":\"second\","
					"\"room_id\":5,\"data\":[1],\"data\":null}",
					-1,
					&error);
	g_assert_no_error (error);
	g_assert_cmpint (chat_message_get_message_type (message), ==, CHAT_MESSAGE_TYPE_MESSAGE);
	g_assert_cmpuint (chat_message_get_room_id (message), ==, 5);
	g_assert_cmpstr (chat_message_get_content (message), ==, "second");
	/* a later null takes the data away */
	g_assert_false (chat_message_has_data (message));
	g_assert_null (chat_message_get_data (message));
	json = chat_message_to_json (message);
	g_assert_null (strstr (json, "data"));
	g_clear_object (&message);

	message = chat_message_new_from_json ("{\"type\":\"ping\",\"type\":\"join\",\"room_id\":2}",
					      -1,
					      &error);
	g_assert_no_error (error);
	g_assert_cmpint (chat_message_get_message_type (message), ==, CHAT_MESSAGE_TYPE_JOIN);
	g_clear_object (&message);

	/* the last duplicate is the one checked */
	assert_parse_error ("{\"type\":\"message\",\"content\":\"x\",\"content\":5}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "content");
	assert_parse_error ("{\"type\":\"message\",\"type\":null}",
			    CHAT_ERROR_INVALID_MESSAGE,
			    "type");
	/* names that only start like a field are other members */
	message = chat_message_new_from_json ("{\"type\":\"message\",\"types\":1,\"typ\":2,"
					      "\"content\":\"c\",\"room\":\"x\",\"dat\":3}",
					      -1,
					      &error);
	g_assert_no_error (error);
	g_assert_false (chat_message_has_data (message));

	/* an escaped type is decoded before it is looked up, and named decoded when unknown */
	assert_parse_error ("{\"type\":\"p\\u00efng\"}", CHAT_ERROR_UNKNOWN_TYPE, "p\xc3\xafng");
}

/* content and code are decoded from the frame's escapes */
static void
test_message_string_escapes (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_new_from_json (
	    "{\"type\":\"error\",\"content\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t "
	    "\\u00e9\\ud83d\\ude00 \\u2028\",\"code\":\"not\\u005fmember\"}",
	    -1,
	    &error);

	g_assert_no_error (error);
	g_assert_cmpstr (chat_message_get_content (message),
			 ==,
			 "\" \\ / \b \f \n \r \t \xc3\xa9\xf0\x9f\x98\x80 \xe2\x80\xa8");
	g_assert_cmpstr (chat_message_get_code (message), ==, "not_member");
}

/* data is kept as text; its json-glib tree is built on the first chat_message_get_data() and
 * kept, and the frame still carries the text as sent. */
static void
test_message_data_tree (void)
{
	const char *text =
	    "{\"type\":\"message\",\"data\":{ \"n\" : 0.10, \"a\":[1,\"\\u00e9\"] }}";
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = chat_message_new_from_json (text, -1, &error);
	g_autoptr (JsonNode) expected =
	    json_from_string ("{\"n\":0.10,\"a\":[1,\"\\u00e9\"]}", NULL);
	g_autoptr (JsonNode) from_property = NULL;
	g_autofree char *json = NULL;
	JsonNode *data;

	g_assert_no_error (error);
	g_assert_true (chat_message_has_data (message));
	data = chat_message_get_data (message);
	g_assert_nonnull (data);
	g_assert_true (json_node_equal (data, expected));
	g_assert_true (chat_message_get_data (message) == data);
	g_object_get (message, "data", &from_property, NULL);
	g_assert_true (json_node_equal (from_property, expected));
	json = chat_message_to_json (message);
	g_assert_nonnull (strstr (json, ",\"data\":{ \"n\" : 0.10, \"a\":[1,\"\\u00e9\"] },"));

	/* a tree given is written by json-glib; text given replaces it */
	chat_message_set_data (message, expected);
	g_assert_true (json_node_equal (chat_message_get_data (message), expected));
	g_assert_true (chat_message_set_data_json (message, "\"s\"", -1, &error));
	g_assert_cmpstr (json_node_get_string (chat_message_get_data (message)), ==, "s");
	g_assert_true (chat_message_has_data (message));
}

/* Text that is not UTF-8 is refused with the reason, on the wire and in the API. */
static void
test_message_invalid_utf8 (void)
{
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (ChatMessage) parsed = NULL;
	g_autoptr (GError) error = NULL;
	const char *frame = "{\"type\":\"message\",\"content\":\"\xed\xa0\x80\"}";

	parsed = chat_message_parse (frame, strlen (frame), FALSE, &error);
	g_assert_null (parsed);
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON);
	g_assert_cmpstr (error->message,
			 ==,
			 "The frame is not valid JSON: invalid UTF-8 in a string");
	g_clear_error (&error);
	/* the public API checks UTF-8 first, as it always did */
	assert_parse_error (frame, CHAT_ERROR_INVALID_JSON, "not valid UTF-8");

	g_assert_false (chat_message_set_data_json (message, "[\"\xc0\x80\"]", -1, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON);
	g_assert_cmpstr (error->message, ==, "Invalid JSON: invalid UTF-8 in a string");
	g_assert_false (chat_message_has_data (message));
}

static void
test_message_parse_fields (void)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = NULL;
	JsonNode *data;

	message = chat_message_new_from_json ("{\"type\":\"message\",\"id\":9,\"from\":4,\"to\":7,"
					      "\"content\":\"h\\u00e9 \xf0\x9f\x98\x80\","
					      "\"data\":{\"k\":[1,null]},\"timestamp\":17}",
					      -1,
					      &error);
	g_assert_no_error (error);
	g_assert_cmpint (chat_message_get_message_type (message), ==, CHAT_MESSAGE_TYPE_MESSAGE);
	g_assert_cmpuint (chat_message_get_id (message), ==, 9);
	g_assert_cmpuint (chat_message_get_from (message), ==, 4);
	g_assert_cmpuint (chat_message_get_to (message), ==, 7);
	g_assert_cmpuint (chat_message_get_room_id (message), ==, 0);
	g_assert_cmpstr (chat_message_get_content (message), ==, "hé \xf0\x9f\x98\x80");
	g_assert_cmpint (chat_message_get_timestamp (message), ==, 17);
	data = chat_message_get_data (message);
	g_assert_nonnull (data);
	g_assert_true (JSON_NODE_HOLDS_OBJECT (data));

	/* null means absent, for every optional field */
	g_clear_object (&message);
	message = chat_message_new_from_json ("{\"type\":\"join\",\"room_id\":3,\"to\":null,"
					      "\"content\":null,\"data\":null,\"from\":null}",
					      -1,
					      &error);
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_room_id (message), ==, 3);
	g_assert_cmpuint (chat_message_get_to (message), ==, 0);
	g_assert_null (chat_message_get_content (message));
	g_assert_null (chat_message_get_data (message));
}

static void
test_message_to_json (void)
{
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (JsonNode) data = json_from_string ("[true,\"x\"]", NULL);
	g_autofree char *json = NULL;
	gsize length = 0;

	chat_message_set_id (message, 12);
	chat_message_set_from (message, 5);
	chat_message_set_room_id (message, 2);
	chat_message_set_content (message, "quote \" backslash \\ newline \n tab \t ctl \x01 é");
	chat_message_set_data (message, data);
	chat_message_set_timestamp (message, 1764350000);
	json = chat_message_to_json_with_length (message, &length);
	g_assert_cmpstr (
	    json,
	    ==,
	    "{\"type\":\"message\",\"id\":12,\"from\":5,\"room_id\":2,"
	    "\"content\":\"quote \\\" backslash \\\\ newline \\n tab \\t ctl \\u0001 é\","
	    "\"data\":[true,\"x\"],\"timestamp\":1764350000}");
	g_assert_cmpuint (length, ==, strlen (json));
}

static void
test_message_round_trip (void)
{
	const char *texts[] = {
	    "{\"type\":\"pong\",\"timestamp\":3}",
	    "{\"type\":\"join\",\"from\":42,\"room_id\":3,\"timestamp\":1}",
	    "{\"type\":\"error\",\"code\":\"not_member\",\"content\":\"no\",\"timestamp\":2}",
	    "{\"type\":\"message\",\"id\":1,\"from\":0,\"content\":\"service\",\"timestamp\":9}",
	};

	for (guint i = 0; i < G_N_ELEMENTS (texts); i++) {
		g_autoptr (GError) error = NULL;
		g_autoptr (ChatMessage) message = chat_message_new_from_json (texts[i], -1, &error);
		g_autofree char *json = NULL;

		g_assert_no_error (error);
		json = chat_message_to_json (message);
		g_assert_cmpstr (json, ==, texts[i]);
	}
}

/* data is relayed as the exact bytes the client sent, not as json-glib would print it */
static void
test_message_data_verbatim (void)
{
	const char *cases[][2] = {
	    {"{\"type\":\"message\",\"data\":0.1}", "0.1"},
	    {"{\"type\":\"message\",\"data\":12345678901234567890}", "12345678901234567890"},
	    {"{\"type\":\"message\",\"data\": { \"a\" : [ 1 , 2e10 , \"}\\\"\" ] } , "
	     "\"content\":\"x\"}",
	     "{ \"a\" : [ 1 , 2e10 , \"}\\\"\" ] }"},
	    {"{\"data\":\"\\u00e9\\ud83d\\ude00\",\"type\":\"message\"}",
	     "\"\\u00e9\\ud83d\\ude00\""},
	    {"{\"type\":\"message\",\"data\":1,\"data\":[2]}", "[2]"},
	    /* escaped keys: another member's, and "data" itself */
	    {"{\"type\":\"message\",\"a\\u0062\":1,\"data\":{\"n\":1.50,\"big\":"
	     "12345678901234567890}}",
	     "{\"n\":1.50,\"big\":12345678901234567890}"},
	    {"{\"type\":\"message\",\"d\\u0061ta\":12345678901234567890}", "12345678901234567890"},
	};

	for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
		g_autoptr (GError) error = NULL;
		g_autoptr (ChatMessage) message =
		    chat_message_new_from_json (cases[i][0], -1, &error);
		g_autofree char *json = NULL;
		g_autofree char *expected = g_strdup_printf (",\"data\":%s,", cases[i][1]);

		g_assert_no_error (error);
		json = chat_message_to_json (message);
		if (strstr (json, expected) == NULL)
			g_error ("%s: serialized as %s, expected data %s",
				 cases[i][0],
				 json,
				 cases[i][1]);
	}
}

static void
count_notify (GObject *object, GParamSpec *pspec, guint *counter)
{
	(*counter)++;
}

static void
test_message_properties (void)
{
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	guint notified = 0;
	g_autofree char *content = NULL;
	guint64 room_id = 0;
	ChatMessageType type;

	g_signal_connect (message, "notify", G_CALLBACK (count_notify), &notified);
	g_object_set (message, "room-id", (guint64) 8, "content", "x", NULL);
	g_assert_cmpuint (notified, ==, 2);
	/* setting the same value again is not a change */
	chat_message_set_room_id (message, 8);
	g_assert_cmpuint (notified, ==, 2);
	g_object_get (message, "room-id", &room_id, "content", &content, "type", &type, NULL);
	g_assert_cmpuint (room_id, ==, 8);
	g_assert_cmpstr (content, ==, "x");
	g_assert_cmpint (type, ==, CHAT_MESSAGE_TYPE_MESSAGE);
	g_assert_cmpstr (chat_message_type_to_string (CHAT_MESSAGE_TYPE_LEAVE), ==, "leave");
	g_assert_cmpstr (chat_error_get_wire_code (CHAT_ERROR_USER_OFFLINE), ==, "user_offline");
}

static void
test_message_set_data_json (void)
{
	g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	g_autoptr (GError) error = NULL;
	g_autofree char *json = NULL;

	g_assert_true (chat_message_set_data_json (message, "{ \"x\" : 0.10 }", -1, &error));
	g_assert_no_error (error);
	g_assert_true (JSON_NODE_HOLDS_OBJECT (chat_message_get_data (message)));
	json = chat_message_to_json (message);
	g_assert_nonnull (strstr (json, ",\"data\":{ \"x\" : 0.10 },"));

	g_assert_false (chat_message_set_data_json (message, "{'x':1}", -1, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON);
	g_clear_error (&error);
	g_assert_false (chat_message_set_data_json (message, "1 2", -1, &error));
	g_assert_error (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON);
	g_clear_error (&error);
	/* a failed call leaves the data as it was */
	g_assert_true (JSON_NODE_HOLDS_OBJECT (chat_message_get_data (message)));
	g_assert_true (chat_message_set_data_json (message, "null", 4, &error));
	g_assert_null (chat_message_get_data (message));
}

/* Hostile input never crashes the parser, and every answer is a message or one of the three
 * parse errors: mutations of valid frames (flipped, dropped, duplicated and random bytes). */
static void
test_message_mutations (void)
{
	const char *seeds[] = {
	    "{\"type\":\"message\",\"room_id\":3,\"content\":\"h\\u00e9\",\"data\":{\"a\":[1,2.5e3,"
	    "null,true]}}",
	    "{\"type\":\"join\",\"room_id\":1}",
	    "{\"type\":\"message\",\"to\":7,\"data\":\"\\ud83d\\ude00\"}",
	};
	static const char specials[] = "{}[],:\"\\0-.eE";
	g_autoptr (GRand) rand = g_rand_new_with_seed (20261128);
	guint accepted = 0, refused = 0;

	for (guint round = 0; round < 20000; round++) {
		const char *seed = seeds[round % G_N_ELEMENTS (seeds)];
		g_autoptr (GString) text = g_string_new (seed);
		g_autoptr (ChatMessage) message = NULL;
		g_autoptr (GError) error = NULL;
		guint edits = g_rand_int_range (rand, 1, 4);

		for (guint e = 0; e < edits && text->len > 0; e++) {
			guint at = g_rand_int_range (rand, 0, text->len);

			switch (g_rand_int_range (rand, 0, 4)) {
			case 0:
				text->str[at] = (char) g_rand_int_range (rand, 1, 256);
				break;
			case 1:
				g_string_erase (text, at, 1);
				break;
			case 2:
				g_string_insert_c (text, at, text->str[at]);
				break;
			default:
				g_string_insert_c (
				    text,
				    at,
				    specials[g_rand_int_range (rand,
							       0,
							       (gint32) strlen (specials))]);
			}
		}
		message = chat_message_new_from_json (text->str, text->len, &error);
		if (message != NULL) {
			g_autofree char *json = chat_message_to_json (message);
			g_autoptr (ChatMessage) again = NULL;

			/* what we accept is valid UTF-8 and writes back as valid JSON */
			g_assert_true (g_utf8_validate (json, -1, NULL));
			again = chat_message_new_from_json (json, -1, NULL);
			g_assert_nonnull (again);
			accepted++;
		} else {
			g_assert_true (
			    g_error_matches (error, CHAT_ERROR, CHAT_ERROR_INVALID_JSON) ||
			    g_error_matches (error, CHAT_ERROR, CHAT_ERROR_INVALID_MESSAGE) ||
			    g_error_matches (error, CHAT_ERROR, CHAT_ERROR_UNKNOWN_TYPE));
			refused++;
		}
	}
	g_test_message ("%u accepted, %u refused", accepted, refused);
	/* the mutations reach both outcomes */
	g_assert_cmpuint (accepted, >, 100);
	g_assert_cmpuint (refused, >, 1000);
}

/* the numbers of a frame, written without printf: every digit at both ends of the range */
static void
test_message_number_output (void)
{
	const guint64 users[] = {0, 9, 10, G_MAXUINT64};
	const gint64 timestamps[] = {0, 1, 1764350000, G_MAXINT64};

	for (guint i = 0; i < G_N_ELEMENTS (timestamps); i++) {
		g_autoptr (ChatMessage) message = chat_message_new (CHAT_MESSAGE_TYPE_PRESENCE);
		g_autofree char *json = NULL;
		g_autofree char *expected = NULL;

		chat_message_set_id (message, G_MAXUINT64 - i);
		chat_message_set_offset (message, 1000000 + i);
		chat_message_set_from (message, 12345678901234567890u);
		chat_message_set_to (message, 10);
		chat_message_set_room_id (message, 7);
		chat_message_set_users (message, users, G_N_ELEMENTS (users));
		chat_message_set_timestamp (message, timestamps[i]);
		json = chat_message_to_json (message);
		expected =
		    g_strdup_printf ("{\"type\":\"presence\",\"id\":%" G_GUINT64_FORMAT
				     ",\"offset\":%u,\"from\":12345678901234567890,\"to\":10,"
				     "\"room_id\":7,\"users\":[0,9,10,18446744073709551615],"
				     "\"timestamp\":%" G_GINT64_FORMAT "}",
				     G_MAXUINT64 - i,
				     1000000 + i,
				     timestamps[i]);
		g_assert_cmpstr (json, ==, expected);
	}
}

int
main (int argc, char **argv)
{
	g_test_init (&argc, &argv, NULL);

	g_test_add_func ("/chat/message/parse-errors", test_message_parse_errors);
	g_test_add_func ("/chat/message/data-depth", test_message_data_depth);
	g_test_add_func ("/chat/message/nul", test_message_nul);
	g_test_add_func ("/chat/message/parse-fields", test_message_parse_fields);
	g_test_add_func ("/chat/message/integers", test_message_integers);
	g_test_add_func ("/chat/message/number-output", test_message_number_output);
	g_test_add_func ("/chat/message/names", test_message_names);
	g_test_add_func ("/chat/message/string-escapes", test_message_string_escapes);
	g_test_add_func ("/chat/message/data-tree", test_message_data_tree);
	g_test_add_func ("/chat/message/invalid-utf8", test_message_invalid_utf8);
	g_test_add_func ("/chat/message/to-json", test_message_to_json);
	g_test_add_func ("/chat/message/round-trip", test_message_round_trip);
	g_test_add_func ("/chat/message/data-verbatim", test_message_data_verbatim);
	g_test_add_func ("/chat/message/properties", test_message_properties);
	g_test_add_func ("/chat/message/set-data-json", test_message_set_data_json);
	g_test_add_func ("/chat/message/mutations", test_message_mutations);
	return g_test_run ();
}
