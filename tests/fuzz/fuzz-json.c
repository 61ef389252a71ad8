/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The JSON validator (chat-json.c) and the message parser (chat_message_parse(), which turns a
 * client's text frame into a ChatMessage): the input is the frame's text, as libsoup hands it
 * over (any bytes: the scanner checks UTF-8 itself). Besides crashes and sanitizer reports,
 * the harness checks what the rest of chathub relies on:
 *   - a text valid at one depth is valid at every greater depth;
 *   - the members reported by chat_json_scan() are string tokens whose decoding is valid
 *     UTF-8, never longer than the token, and compares equal to itself;
 *   - json-glib accepts every text the strict scanner accepts (chat_json_parse() and
 *     chat_message_get_data() rely on it);
 *   - a parsed message serializes to a frame that parses again into the same message.
 */

#include <stdio.h>
#include <string.h>

#include "chat-error.h"
#include "chat-json-private.h"
#include "chat-message-private.h"
#include "fuzz-common.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
	fuzz_setup_log ();
	return 0;
}

typedef struct {
	guint n_members;
} Members;

static void
check_string (const char *token, gsize token_len, ChatJsonStringFlags flags)
{
	g_autofree char *decoded = NULL;
	gsize length = 0;

	fuzz_check (token_len >= 2 && token[0] == '"' && token[token_len - 1] == '"',
		    "a string token is quoted");
	decoded = chat_json_string_decode (token, token_len, flags, &length);
	fuzz_check (length <= token_len - 2, "a string never decodes longer than its token");
	fuzz_check (decoded[length] == '\0', "a decoded string is NUL-terminated");
	/* GLib's validator stops at U+0000, which is valid UTF-8: check what lies around it */
	for (const char *piece = decoded; piece <= decoded + length; piece += strlen (piece) + 1)
		fuzz_check (g_utf8_validate (piece, -1, NULL), "a decoded string is UTF-8");
	fuzz_check (((flags & CHAT_JSON_STRING_NUL) != 0) == (memchr (decoded, 0, length) != NULL),
		    "CHAT_JSON_STRING_NUL says whether the string holds U+0000");
	if (!(flags & CHAT_JSON_STRING_NUL))
		fuzz_check (chat_json_string_equal (token, token_len, flags, decoded),
			    "a string equals its own decoding");
}

static void
on_member (const ChatJsonMember *member, gpointer user_data)
{
	Members *members = user_data;

	members->n_members++;
	check_string (member->name, member->name_len, member->name_flags);
	fuzz_check (member->value_len > 0, "a member has a value");
	if (member->kind == CHAT_JSON_KIND_STRING)
		check_string (member->value, member->value_len, member->value_flags);
}

/* The message as a frame's text, and that text parsed again: the same message. */
static void
check_round_trip (ChatMessage *message)
{
	g_autoptr (ChatMessage) again = NULL;
	g_autoptr (GError) error = NULL;
	g_autofree char *json = NULL;
	g_autofree char *json_again = NULL;
	gsize length = 0, length_again = 0;

	json = chat_message_to_json_with_length (message, &length);
	again = chat_message_parse (json, length, FALSE, &error);
	if (again == NULL)
		fprintf (stderr, "%s\n%s\n", json, error->message);
	fuzz_check (again != NULL, "a serialized message parses again");
	json_again = chat_message_to_json_with_length (again, &length_again);
	fuzz_check (length == length_again && memcmp (json, json_again, length) == 0,
		    "a message serializes the same after a round trip");
	fuzz_check (chat_message_get_message_type (again) ==
			chat_message_get_message_type (message),
		    "the type survives a round trip");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	const char *text = (const char *) data;
	Members members = {0};
	ChatJsonKind kind = CHAT_JSON_KIND_NULL;
	const char *reason = NULL;
	gboolean valid, shallow;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatMessage) message = NULL;

	/* as the message parser scans a frame: its envelope is one more level */
	valid = chat_json_scan (text,
				size,
				CHAT_JSON_MAX_DEPTH + 1,
				&kind,
				on_member,
				&members,
				&reason);
	fuzz_check (valid == (reason == NULL), "a reason exactly when the text is refused");
	shallow = chat_json_validate (text, size, 2, NULL);
	if (shallow)
		fuzz_check (chat_json_validate (text, size, CHAT_JSON_MAX_DEPTH, NULL),
			    "valid at depth 2 means valid at a greater depth");
	if (chat_json_validate (text, size, CHAT_JSON_MAX_DEPTH, NULL))
		fuzz_check (valid, "valid at one depth means valid at a greater depth");
	if (valid) {
		g_autoptr (JsonNode) node =
		    chat_json_parse (text, size, CHAT_JSON_MAX_DEPTH + 1, NULL);

		fuzz_check (g_utf8_validate_len (text, size, NULL), "valid JSON is valid UTF-8");
		fuzz_check (node != NULL, "json-glib accepts what the strict scanner accepts");
		fuzz_check ((kind == CHAT_JSON_KIND_OBJECT) == JSON_NODE_HOLDS_OBJECT (node),
			    "the root's kind is json-glib's");
		fuzz_check ((kind == CHAT_JSON_KIND_ARRAY) == JSON_NODE_HOLDS_ARRAY (node),
			    "the root's kind is json-glib's");
	}

	/* the hub's path (wire errors in English) and the public API's (translated) */
	message = chat_message_parse (text, size, FALSE, &error);
	fuzz_check ((message != NULL) == (error == NULL), "a message or an error");
	if (message != NULL) {
		fuzz_check (valid && kind == CHAT_JSON_KIND_OBJECT, "a message is a JSON object");
		if (chat_message_has_data (message))
			fuzz_check (chat_message_get_data (message) != NULL,
				    "a message's data parses with json-glib");
		check_round_trip (message);
	} else {
		fuzz_check (error->domain == CHAT_ERROR, "parse errors are CHAT_ERROR");
	}
	g_clear_error (&error);
	if (size > 0 && g_utf8_validate_len (text, size, NULL)) {
		g_autoptr (ChatMessage) translated =
		    chat_message_new_from_json (text, (gssize) size, &error);

		fuzz_check ((translated != NULL) == (message != NULL),
			    "the public parser agrees with the hub's");
	}
	return 0;
}
