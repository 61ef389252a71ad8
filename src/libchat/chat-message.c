/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "chat-error.h"
#include "chat-frame-private.h"
#include "chat-i18n-private.h"
#include "chat-json-private.h"
#include "chat-message-private.h"

/**
 * SECTION:chat-message
 * @title: ChatMessage
 * @short_description: one protocol message
 *
 * A #ChatMessage is one JSON object of the chathub protocol (see `docs/protocol.md`):
 * a `type`, the server-assigned `id`, `from` and `timestamp`, the addressing fields `to`
 * and `room_id`, the `content` text, free-form `data` and, on error frames, a `code`.
 *
 * chat_message_new_from_json() checks a client's frame field by field and says exactly what
 * is wrong; chat_message_to_json() writes the canonical form. `data` is kept as the exact
 * text the client sent, so it is relayed byte for byte.
 */

/**
 * ChatMessage:
 *
 * One protocol message. All its fields are private; use the properties.
 *
 * Since: 1.0
 */

struct _ChatMessage {
	GObject parent_instance;

	ChatMessageType type;
	guint64 id;
	guint64 offset; /* the stream offset a store gave it; 0: none */
	guint64 from;
	guint64 to;
	guint64 room_id;
	gint64 timestamp;
	char *content;
	char *code;
	JsonNode *data;	 /* (nullable) */
	char *data_text; /* (nullable): data exactly as received, relayed verbatim */
	gsize data_text_len;
};

G_DEFINE_FINAL_TYPE (ChatMessage, chat_message, G_TYPE_OBJECT)

G_DEFINE_ENUM_TYPE (ChatMessageType,
		    chat_message_type,
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_PING, "ping"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_PONG, "pong"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_MESSAGE, "message"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_JOIN, "join"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_LEAVE, "leave"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_ERROR, "error"))

enum {
	PROP_0,
	PROP_TYPE,
	PROP_ID,
	PROP_FROM,
	PROP_TO,
	PROP_ROOM_ID,
	PROP_CONTENT,
	PROP_DATA,
	PROP_TIMESTAMP,
	PROP_CODE,
	PROP_OFFSET,
	N_PROPS
};
static GParamSpec *props[N_PROPS];

static const char *const type_names[] = {"ping", "pong", "message", "join", "leave", "error"};

/**
 * chat_message_type_to_string:
 * @type: a #ChatMessageType
 *
 * Gets the wire name of @type, as in the `type` field.
 *
 * Returns: the name, such as `"message"`
 *
 * Since: 1.0
 */
const char *
chat_message_type_to_string (ChatMessageType type)
{
	g_return_val_if_fail (type <= CHAT_MESSAGE_TYPE_ERROR, NULL);
	return type_names[type];
}

static gboolean
message_type_from_string (const char *name, ChatMessageType *type)
{
	for (guint i = 0; i < G_N_ELEMENTS (type_names); i++) {
		if (strcmp (name, type_names[i]) == 0) {
			*type = (ChatMessageType) i;
			return TRUE;
		}
	}
	return FALSE;
}

/* g_set_str() is GLib 2.76; this is the same for 2.74. */
static gboolean
replace_str (char **slot, const char *value)
{
	if (g_strcmp0 (*slot, value) == 0)
		return FALSE;
	g_free (*slot);
	*slot = g_strdup (value);
	return TRUE;
}

static void
clear_data (ChatMessage *self)
{
	g_clear_pointer (&self->data, json_node_unref);
	g_clear_pointer (&self->data_text, g_free);
	self->data_text_len = 0;
}

static void
chat_message_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatMessage *self = CHAT_MESSAGE (object);

	switch (prop_id) {
	case PROP_TYPE:
		g_value_set_enum (value, self->type);
		break;
	case PROP_ID:
		g_value_set_uint64 (value, self->id);
		break;
	case PROP_FROM:
		g_value_set_uint64 (value, self->from);
		break;
	case PROP_TO:
		g_value_set_uint64 (value, self->to);
		break;
	case PROP_ROOM_ID:
		g_value_set_uint64 (value, self->room_id);
		break;
	case PROP_CONTENT:
		g_value_set_string (value, self->content);
		break;
	case PROP_DATA:
		g_value_set_boxed (value, chat_message_get_data (self));
		break;
	case PROP_TIMESTAMP:
		g_value_set_int64 (value, self->timestamp);
		break;
	case PROP_CODE:
		g_value_set_string (value, self->code);
		break;
	case PROP_OFFSET:
		g_value_set_uint64 (value, self->offset);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_message_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
	ChatMessage *self = CHAT_MESSAGE (object);

	switch (prop_id) {
	case PROP_TYPE:
		self->type = g_value_get_enum (value);
		break;
	case PROP_ID:
		chat_message_set_id (self, g_value_get_uint64 (value));
		break;
	case PROP_FROM:
		chat_message_set_from (self, g_value_get_uint64 (value));
		break;
	case PROP_TO:
		chat_message_set_to (self, g_value_get_uint64 (value));
		break;
	case PROP_ROOM_ID:
		chat_message_set_room_id (self, g_value_get_uint64 (value));
		break;
	case PROP_CONTENT:
		chat_message_set_content (self, g_value_get_string (value));
		break;
	case PROP_DATA:
		chat_message_set_data (self, g_value_get_boxed (value));
		break;
	case PROP_TIMESTAMP:
		chat_message_set_timestamp (self, g_value_get_int64 (value));
		break;
	case PROP_CODE:
		chat_message_set_code (self, g_value_get_string (value));
		break;
	case PROP_OFFSET:
		chat_message_set_offset (self, g_value_get_uint64 (value));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
chat_message_finalize (GObject *object)
{
	ChatMessage *self = CHAT_MESSAGE (object);

	g_free (self->content);
	g_free (self->code);
	clear_data (self);
	G_OBJECT_CLASS (chat_message_parent_class)->finalize (object);
}

static void
chat_message_class_init (ChatMessageClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();
	object_class->get_property = chat_message_get_property;
	object_class->set_property = chat_message_set_property;
	object_class->finalize = chat_message_finalize;

	/**
	 * ChatMessage:type:
	 *
	 * The message type, fixed at construction.
	 *
	 * Since: 1.0
	 */
	props[PROP_TYPE] =
	    g_param_spec_enum ("type",
			       NULL,
			       "The message type, fixed at construction",
			       CHAT_TYPE_MESSAGE_TYPE,
			       CHAT_MESSAGE_TYPE_MESSAGE,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:id:
	 *
	 * The server-assigned message id, strictly increasing per hub; 0 when not assigned.
	 *
	 * Since: 1.0
	 */
	props[PROP_ID] = g_param_spec_uint64 ("id",
					      NULL,
					      "The server-assigned message id",
					      0,
					      G_MAXUINT64,
					      0,
					      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						  G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:from:
	 *
	 * The sender's user id; 0 for the service itself.
	 *
	 * Since: 1.0
	 */
	props[PROP_FROM] = g_param_spec_uint64 ("from",
						NULL,
						"The sender's user id; 0 for the service itself",
						0,
						G_MAXUINT64,
						0,
						G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						    G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:to:
	 *
	 * The user id a direct message is addressed to; 0 when not a direct message.
	 *
	 * Since: 1.0
	 */
	props[PROP_TO] = g_param_spec_uint64 ("to",
					      NULL,
					      "The user a direct message is addressed to",
					      0,
					      G_MAXUINT64,
					      0,
					      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						  G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:room-id:
	 *
	 * The room the message is for; 0 when it is not for a room.
	 *
	 * Since: 1.0
	 */
	props[PROP_ROOM_ID] = g_param_spec_uint64 ("room-id",
						   NULL,
						   "The room the message is for",
						   0,
						   G_MAXUINT64,
						   0,
						   G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						       G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:content:
	 *
	 * The text of the message (UTF-8), or %NULL.
	 *
	 * Since: 1.0
	 */
	props[PROP_CONTENT] = g_param_spec_string ("content",
						   NULL,
						   "The text of the message (UTF-8)",
						   NULL,
						   G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						       G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:data:
	 *
	 * Free-form JSON attached to the message, relayed untouched, or %NULL.
	 *
	 * Since: 1.0
	 */
	props[PROP_DATA] = g_param_spec_boxed (
	    "data",
	    NULL,
	    "Free-form JSON attached to the message, relayed untouched",
	    JSON_TYPE_NODE,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:timestamp:
	 *
	 * When the server relayed the message, in Unix seconds; 0 when not set.
	 *
	 * Since: 1.0
	 */
	props[PROP_TIMESTAMP] = g_param_spec_int64 (
	    "timestamp",
	    NULL,
	    "When the server relayed the message, in Unix seconds",
	    0,
	    G_MAXINT64,
	    0,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:code:
	 *
	 * The machine-readable error code of an `error` message, such as `not_member`, or %NULL.
	 *
	 * Since: 1.0
	 */
	props[PROP_CODE] = g_param_spec_string ("code",
						NULL,
						"The machine-readable code of an error message",
						NULL,
						G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						    G_PARAM_STATIC_STRINGS);
	/**
	 * ChatMessage:offset:
	 *
	 * The position of a stored message in its stream (a room, or a user's direct
	 * messages): 1, 2, 3, … without holes; 0 when the message was not stored. Set by the
	 * hub's store, never taken from a client.
	 *
	 * Since: 1.0
	 */
	props[PROP_OFFSET] = g_param_spec_uint64 ("offset",
						  NULL,
						  "The position of a stored message in its stream",
						  0,
						  G_MAXUINT64,
						  0,
						  G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						      G_PARAM_STATIC_STRINGS);

	g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
chat_message_init (ChatMessage *self)
{
}

/**
 * chat_message_new:
 * @type: the message type
 *
 * Creates an empty message of @type.
 *
 * Returns: (transfer full): a new #ChatMessage
 *
 * Since: 1.0
 */
ChatMessage *
chat_message_new (ChatMessageType type)
{
	g_return_val_if_fail (type <= CHAT_MESSAGE_TYPE_ERROR, NULL);
	return g_object_new (CHAT_TYPE_MESSAGE, "type", type, NULL);
}

/* Wire text stays English; the public API translates. */
#define TR(text) (translate ? _ (text) : (text))

/* Reads an optional non-negative integer member; null counts as absent. */
static gboolean
read_uint_member (JsonObject *object,
		  const char *name,
		  gboolean positive,
		  guint64 *out,
		  gboolean translate,
		  GError **error)
{
	JsonNode *node = json_object_get_member (object, name);

	if (node == NULL || JSON_NODE_HOLDS_NULL (node))
		return TRUE;
	if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     TR ("Field “%s” must be an integer"),
			     name);
		return FALSE;
	}
	if (json_node_get_int (node) < (positive ? 1 : 0)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     positive ? TR ("Field “%s” must be an integer greater than 0")
				      : TR ("Field “%s” must not be negative"),
			     name);
		return FALSE;
	}
	*out = (guint64) json_node_get_int (node);
	return TRUE;
}

static gboolean
read_string_member (JsonObject *object,
		    const char *name,
		    char **out,
		    gboolean translate,
		    GError **error)
{
	JsonNode *node = json_object_get_member (object, name);

	if (node == NULL || JSON_NODE_HOLDS_NULL (node))
		return TRUE;
	if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     TR ("Field “%s” must be a string"),
			     name);
		return FALSE;
	}
	g_free (*out);
	*out = g_strdup (json_node_get_string (node));
	return TRUE;
}

/* A tiny scanner over text json-glib has already accepted: it finds the raw bytes of the
 * last top-level "data" member so they can be relayed verbatim. It returns FALSE on anything
 * unexpected, and the caller falls back to generating the member from its JsonNode. */
static const char *
skip_ws (const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
skip_string (const char *p, const char *end)
{
	/* p at the opening quote */
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *
skip_value (const char *p, const char *end)
{
	int depth = 0;

	p = skip_ws (p, end);
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string (p, end);
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
		       *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			p = skip_string (p, end);
			if (p == NULL)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

/* Whether the string token [key, key_end) (quotes included) is @name. A key with escapes
 * (rare) is decoded, so "d\u0061ta" is found and "a\u0062" does not stop the scan. */
static gboolean
key_is (const char *key, const char *key_end, const char *name)
{
	gsize name_len = strlen (name);
	g_autofree char *token = NULL;
	g_autoptr (JsonNode) node = NULL;

	if (memchr (key, '\\', key_end - key) == NULL)
		return (gsize) (key_end - key) == name_len + 2 &&
		       memcmp (key + 1, name, name_len) == 0;
	token = g_strndup (key, key_end - key);
	node = json_from_string (token, NULL);
	return node != NULL && json_node_get_value_type (node) == G_TYPE_STRING &&
	       g_strcmp0 (json_node_get_string (node), name) == 0;
}

/* Whether the string token [token, token_end) (quotes included) holds a \u0000 escape:
 * json-glib decodes it and then keeps the string only up to it. */
static gboolean
token_has_nul (const char *token, const char *token_end)
{
	for (const char *p = token + 1; p < token_end - 1; p++) {
		if (*p != '\\')
			continue;
		if (token_end - p >= 6 && p[1] == 'u' && memcmp (p + 2, "0000", 4) == 0)
			return TRUE;
		p++; /* the escaped character */
	}
	return FALSE;
}

/* A top-level member of the frame, as it was sent. */
typedef struct {
	const char *name;
	const char *start; /* (nullable): the value's first byte; the last duplicate wins */
	gsize len;
} RawMember;

/* Finds the raw text of the top-level @members of an object in one pass, and whether any
 * top-level member name holds a \u0000 escape. */
static gboolean
find_raw_members (const char *text,
		  gsize length,
		  RawMember *members,
		  guint n_members,
		  gboolean *nul_in_name)
{
	const char *p = text, *end = text + length;

	p = skip_ws (p, end);
	if (p >= end || *p != '{')
		return FALSE;
	p = skip_ws (p + 1, end);
	if (p < end && *p == '}')
		return TRUE;
	while (p < end) {
		const char *key = p, *key_end, *value;

		if (*p != '"')
			return FALSE;
		key_end = skip_string (p, end);
		if (key_end == NULL)
			return FALSE;
		p = skip_ws (key_end, end);
		if (p >= end || *p != ':')
			return FALSE;
		value = skip_ws (p + 1, end);
		p = skip_value (value, end);
		if (p == NULL)
			return FALSE;
		if (token_has_nul (key, key_end)) {
			*nul_in_name = TRUE;
		} else {
			for (guint i = 0; i < n_members; i++) {
				if (key_is (key, key_end, members[i].name)) {
					members[i].start = value;
					members[i].len = p - value;
				}
			}
		}
		p = skip_ws (p, end);
		if (p < end && *p == ',') {
			p = skip_ws (p + 1, end);
			continue;
		}
		return p < end && *p == '}';
	}
	return FALSE;
}

/* Whether the raw member holds a string with a NUL in it. */
static gboolean
raw_string_has_nul (const RawMember *member)
{
	return member->start != NULL && *member->start == '"' &&
	       token_has_nul (member->start, member->start + member->len);
}

/* Parses a client frame. Wire errors stay English (translate FALSE); the public API
 * translates. */
ChatMessage *
chat_message_parse (const char *text, gsize length, gboolean translate, GError **error)
{
	g_autoptr (ChatMessage) self = NULL;
	g_autoptr (JsonNode) root = NULL;
	JsonNode *node;
	JsonObject *object;
	ChatMessageType type;
	const char *type_name, *reason = NULL;
	enum { RAW_TYPE, RAW_CONTENT, RAW_CODE, RAW_DATA };
	RawMember raw[] = {{"type", NULL, 0},
			   {"content", NULL, 0},
			   {"code", NULL, 0},
			   {"data", NULL, 0}};
	gboolean has_nul, nul_in_name = FALSE;

	if (length == 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     TR ("Empty message; expected a JSON object"));
		return NULL;
	}

	/* json-glib is lenient (comments, single quotes, \x escapes); the wire is not */
	/* the envelope is one level: data itself may nest CHAT_JSON_MAX_DEPTH deep */
	root = chat_json_parse (text, length, CHAT_JSON_MAX_DEPTH + 1, &reason);
	if (root == NULL) {
		/* reason stays NULL only if json-glib refused what the strict check accepted */
		if (translate)
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     _ ("Invalid JSON: %s"),
				     reason != NULL ? _ (reason) : "");
		else
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     "The frame is not valid JSON: %s",
				     reason != NULL ? reason : "");
		return NULL;
	}
	if (!JSON_NODE_HOLDS_OBJECT (root)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("A message must be a JSON object"));
		return NULL;
	}
	object = json_node_get_object (root);

	/* json-glib cuts a string at a \u0000 escape: find where the frame has one, so that no
	 * name or field is silently shortened (data is relayed raw and may hold them) */
	has_nul = g_strstr_len (text, (gssize) length, "\\u0000") != NULL;
	if ((has_nul || json_object_has_member (object, "data")) &&
	    !find_raw_members (text, length, raw, G_N_ELEMENTS (raw), &nul_in_name) && has_nul)
		nul_in_name = TRUE; /* cannot tell where it is: refuse rather than truncate */
	if (nul_in_name) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Member names must not contain U+0000"));
		return NULL;
	}

	node = json_object_get_member (object, "type");
	if (node == NULL) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “type” is missing"));
		return NULL;
	}
	if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “type” must be a string"));
		return NULL;
	}
	type_name = json_node_get_string (node);
	if (raw_string_has_nul (&raw[RAW_TYPE])) {
		/* no type has a NUL in it; name it as sent, escapes and all */
		g_autofree char *sent = g_strndup (raw[RAW_TYPE].start + 1, raw[RAW_TYPE].len - 2);

		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_UNKNOWN_TYPE,
			     TR ("Unknown message type “%s”"),
			     sent);
		return NULL;
	}
	if (!message_type_from_string (type_name, &type)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_UNKNOWN_TYPE,
			     TR ("Unknown message type “%s”"),
			     type_name);
		return NULL;
	}

	self = chat_message_new (type);
	if (!read_uint_member (object, "id", FALSE, &self->id, translate, error) ||
	    !read_uint_member (object, "from", FALSE, &self->from, translate, error) ||
	    !read_uint_member (object, "to", TRUE, &self->to, translate, error) ||
	    !read_uint_member (object, "room_id", TRUE, &self->room_id, translate, error) ||
	    !read_string_member (object, "content", &self->content, translate, error) ||
	    !read_string_member (object, "code", &self->code, translate, error))
		return NULL;
	/* strings leave the library NUL-terminated (C, GObject properties, every binding): one
	 * with a NUL inside could only be handed out cut short, so it is refused */
	for (guint i = RAW_CONTENT; i <= RAW_CODE; i++) {
		if (raw_string_has_nul (&raw[i])) {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “%s” must not contain U+0000"),
				     raw[i].name);
			return NULL;
		}
	}

	node = json_object_get_member (object, "timestamp");
	if (node != NULL && !JSON_NODE_HOLDS_NULL (node)) {
		if (!JSON_NODE_HOLDS_VALUE (node) ||
		    json_node_get_value_type (node) != G_TYPE_INT64 ||
		    json_node_get_int (node) < 0) {
			g_set_error_literal (
			    error,
			    CHAT_ERROR,
			    CHAT_ERROR_INVALID_MESSAGE,
			    TR ("Field “timestamp” must be a non-negative integer"));
			return NULL;
		}
		self->timestamp = json_node_get_int (node);
	}

	node = json_object_get_member (object, "data");
	if (node != NULL && !JSON_NODE_HOLDS_NULL (node)) {
		self->data = json_node_ref (node);
		if (raw[RAW_DATA].start != NULL) {
			self->data_text = g_strndup (raw[RAW_DATA].start, raw[RAW_DATA].len);
			self->data_text_len = raw[RAW_DATA].len;
		}
	}

	return g_steal_pointer (&self);
}

/**
 * chat_message_new_from_json:
 * @text: the JSON text of one message
 * @length: the length of @text in bytes, or -1 if it is nul-terminated
 * @error: return location for a #GError
 *
 * Parses one protocol message and checks the type of every field. On failure @error is in the
 * %CHAT_ERROR domain: %CHAT_ERROR_INVALID_JSON for text that is not JSON (an empty text
 * included), %CHAT_ERROR_INVALID_MESSAGE for JSON that is not an object or has a missing or
 * mistyped field, %CHAT_ERROR_UNKNOWN_TYPE for an unknown `type`. The message says which field
 * is wrong. Which fields a type requires is checked by the hub when it routes the message.
 *
 * Returns: (transfer full): the message, or %NULL on error
 *
 * Since: 1.0
 */
ChatMessage *
chat_message_new_from_json (const char *text, gssize length, GError **error)
{
	g_return_val_if_fail (text != NULL || length == 0, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	chat_i18n_init ();
	if (length < 0)
		length = strlen (text);
	/* WebSocket text frames are validated by libsoup; text from the API is not */
	if (!g_utf8_validate_len (text, (gsize) length, NULL)) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     _ ("Invalid JSON: the text is not valid UTF-8"));
		return NULL;
	}
	return chat_message_parse (text, (gsize) length, TRUE, error);
}

static void
append_json_string (GString *out, const char *s)
{
	const char *run = s;

	g_string_append_c (out, '"');
	for (; *s != '\0'; s++) {
		guchar c = (guchar) *s;
		const char *escape = NULL;
		char buf[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		switch (c) {
		case '"':
			escape = "\\\"";
			break;
		case '\\':
			escape = "\\\\";
			break;
		case '\n':
			escape = "\\n";
			break;
		case '\r':
			escape = "\\r";
			break;
		case '\t':
			escape = "\\t";
			break;
		case '\b':
			escape = "\\b";
			break;
		case '\f':
			escape = "\\f";
			break;
		default:
			g_snprintf (buf, sizeof buf, "\\u%04x", c);
			escape = buf;
		}
		g_string_append_len (out, run, s - run);
		g_string_append (out, escape);
		run = s + 1;
	}
	g_string_append_len (out, run, s - run);
	g_string_append_c (out, '"');
}

static gboolean
type_has_sender (ChatMessageType type)
{
	return type == CHAT_MESSAGE_TYPE_MESSAGE || type == CHAT_MESSAGE_TYPE_JOIN ||
	       type == CHAT_MESSAGE_TYPE_LEAVE;
}

/* Appends the canonical JSON of @self: fixed key order, no whitespace. */
void
chat_message_append_json (ChatMessage *self, GString *out)
{
	g_string_append (out, "{\"type\":\"");
	g_string_append (out, type_names[self->type]);
	g_string_append_c (out, '"');
	if (self->id != 0)
		g_string_append_printf (out, ",\"id\":%" G_GUINT64_FORMAT, self->id);
	if (self->offset != 0)
		g_string_append_printf (out, ",\"offset\":%" G_GUINT64_FORMAT, self->offset);
	if (type_has_sender (self->type) || self->from != 0)
		g_string_append_printf (out, ",\"from\":%" G_GUINT64_FORMAT, self->from);
	if (self->to != 0)
		g_string_append_printf (out, ",\"to\":%" G_GUINT64_FORMAT, self->to);
	if (self->room_id != 0)
		g_string_append_printf (out, ",\"room_id\":%" G_GUINT64_FORMAT, self->room_id);
	if (self->code != NULL) {
		g_string_append (out, ",\"code\":");
		append_json_string (out, self->code);
	}
	if (self->content != NULL) {
		g_string_append (out, ",\"content\":");
		append_json_string (out, self->content);
	}
	if (self->data_text != NULL) {
		g_string_append (out, ",\"data\":");
		g_string_append_len (out, self->data_text, self->data_text_len);
	} else if (self->data != NULL) {
		g_autofree char *text = json_to_string (self->data, FALSE);

		g_string_append (out, ",\"data\":");
		g_string_append (out, text);
	}
	g_string_append_printf (out, ",\"timestamp\":%" G_GINT64_FORMAT "}", self->timestamp);
}

GBytes *
chat_message_to_frame (ChatMessage *self)
{
	GString *builder = chat_frame_builder_new ();

	chat_message_append_json (self, builder);
	return chat_frame_builder_finish (builder);
}

/**
 * chat_message_to_json:
 * @self: a #ChatMessage
 * @length: (out) (optional): return location for the length in bytes
 *
 * Serializes @self as one compact JSON object, the form chathub sends on the wire. Fields that
 * are not set are left out; `from` is always present on `message`, `join` and `leave`, and
 * `timestamp` always.
 *
 * Returns: (transfer full): the JSON text
 *
 * Since: 1.0
 */
char *
chat_message_to_json (ChatMessage *self, gsize *length)
{
	GString *out;

	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);

	out = g_string_sized_new (128);
	chat_message_append_json (self, out);
	if (length != NULL)
		*length = out->len;
	return g_string_free (out, FALSE);
}

/**
 * chat_message_get_message_type:
 * @self: a #ChatMessage
 *
 * Gets the type of @self.
 *
 * Returns: the #ChatMessageType
 *
 * Since: 1.0
 */
ChatMessageType
chat_message_get_message_type (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), CHAT_MESSAGE_TYPE_MESSAGE);
	return self->type;
}

#define DEFINE_UINT64_ACCESSORS(field, PROP)                             \
	guint64 chat_message_get_##field (ChatMessage *self)             \
	{                                                                \
		g_return_val_if_fail (CHAT_IS_MESSAGE (self), 0);        \
		return self->field;                                      \
	}                                                                \
	void chat_message_set_##field (ChatMessage *self, guint64 value) \
	{                                                                \
		g_return_if_fail (CHAT_IS_MESSAGE (self));               \
		if (self->field == value)                                \
			return;                                          \
		self->field = value;                                     \
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP]); \
	}

/**
 * chat_message_get_id:
 * @self: a #ChatMessage
 *
 * Gets the server-assigned id of @self.
 *
 * Returns: the id, or 0 if none was assigned
 *
 * Since: 1.0
 */
/**
 * chat_message_set_id:
 * @self: a #ChatMessage
 * @id: the id
 *
 * Sets the message id. The hub assigns ids when it relays; this is for tests and tools.
 *
 * Since: 1.0
 */
DEFINE_UINT64_ACCESSORS (id, PROP_ID)

/**
 * chat_message_get_offset:
 * @self: a #ChatMessage
 *
 * Gets the position of @self in its stream, as the store assigned it.
 *
 * Returns: the offset, or 0 if the message was not stored
 *
 * Since: 1.0
 */
/**
 * chat_message_set_offset:
 * @self: a #ChatMessage
 * @offset: the offset, or 0
 *
 * Sets the stream offset of @self. The store assigns offsets; this is for tests and tools.
 *
 * Since: 1.0
 */
DEFINE_UINT64_ACCESSORS (offset, PROP_OFFSET)

/**
 * chat_message_get_from:
 * @self: a #ChatMessage
 *
 * Gets the sender's user id.
 *
 * Returns: the user id, 0 for the service itself
 *
 * Since: 1.0
 */
/**
 * chat_message_set_from:
 * @self: a #ChatMessage
 * @from: the sender's user id
 *
 * Sets the sender's user id.
 *
 * Since: 1.0
 */
DEFINE_UINT64_ACCESSORS (from, PROP_FROM)

/**
 * chat_message_get_to:
 * @self: a #ChatMessage
 *
 * Gets the user a direct message is addressed to.
 *
 * Returns: the user id, or 0
 *
 * Since: 1.0
 */
/**
 * chat_message_set_to:
 * @self: a #ChatMessage
 * @to: the addressed user id, or 0
 *
 * Makes @self a direct message to user @to.
 *
 * Since: 1.0
 */
DEFINE_UINT64_ACCESSORS (to, PROP_TO)

/**
 * chat_message_get_room_id:
 * @self: a #ChatMessage
 *
 * Gets the room of @self.
 *
 * Returns: the room id, or 0
 *
 * Since: 1.0
 */
/**
 * chat_message_set_room_id:
 * @self: a #ChatMessage
 * @room_id: the room id, or 0
 *
 * Sets the room of @self.
 *
 * Since: 1.0
 */
DEFINE_UINT64_ACCESSORS (room_id, PROP_ROOM_ID)

/**
 * chat_message_get_content:
 * @self: a #ChatMessage
 *
 * Gets the text of @self.
 *
 * Returns: (nullable): the content
 *
 * Since: 1.0
 */
const char *
chat_message_get_content (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);
	return self->content;
}

/**
 * chat_message_set_content:
 * @self: a #ChatMessage
 * @content: (nullable): valid UTF-8 text
 *
 * Sets the text of @self.
 *
 * Since: 1.0
 */
void
chat_message_set_content (ChatMessage *self, const char *content)
{
	g_return_if_fail (CHAT_IS_MESSAGE (self));
	g_return_if_fail (content == NULL || g_utf8_validate (content, -1, NULL));

	if (replace_str (&self->content, content))
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CONTENT]);
}

/**
 * chat_message_get_data:
 * @self: a #ChatMessage
 *
 * Gets the free-form JSON attached to @self.
 *
 * Returns: (transfer none) (nullable): the data
 *
 * Since: 1.0
 */
JsonNode *
chat_message_get_data (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);
	return self->data;
}

/**
 * chat_message_set_data:
 * @self: a #ChatMessage
 * @data: (nullable) (transfer none): any JSON value
 *
 * Attaches free-form JSON to @self.
 *
 * Since: 1.0
 */
void
chat_message_set_data (ChatMessage *self, JsonNode *data)
{
	g_return_if_fail (CHAT_IS_MESSAGE (self));

	if (data == self->data)
		return;
	clear_data (self);
	if (data != NULL && !JSON_NODE_HOLDS_NULL (data))
		self->data = json_node_copy (data);
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DATA]);
}

/**
 * chat_message_set_data_json:
 * @self: a #ChatMessage
 * @json: the JSON text of one value
 * @length: the length of @json in bytes, or -1 if it is nul-terminated
 * @error: return location for a #GError
 *
 * Attaches free-form JSON given as text. The text must be exactly one valid JSON value; it is
 * kept and relayed byte for byte, as the data of a client's frame is.
 *
 * Returns: %TRUE on success; %FALSE with %CHAT_ERROR_INVALID_JSON if @json is not one JSON
 *   value
 *
 * Since: 1.0
 */
gboolean
chat_message_set_data_json (ChatMessage *self, const char *json, gssize length, GError **error)
{
	g_autoptr (JsonNode) node = NULL;
	const char *reason = NULL;
	gsize len;

	g_return_val_if_fail (CHAT_IS_MESSAGE (self), FALSE);
	g_return_val_if_fail (json != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	len = length < 0 ? strlen (json) : (gsize) length;
	node = chat_json_parse (json, len, CHAT_JSON_MAX_DEPTH, &reason);
	if (node == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_JSON,
			     _ ("Invalid JSON: %s"),
			     reason != NULL ? _ (reason) : "");
		return FALSE;
	}
	clear_data (self);
	if (!JSON_NODE_HOLDS_NULL (node)) {
		self->data = g_steal_pointer (&node);
		self->data_text = g_strndup (json, len);
		self->data_text_len = len;
	}
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DATA]);
	return TRUE;
}

/**
 * chat_message_get_timestamp:
 * @self: a #ChatMessage
 *
 * Gets when the server relayed @self.
 *
 * Returns: Unix seconds, or 0
 *
 * Since: 1.0
 */
gint64
chat_message_get_timestamp (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), 0);
	return self->timestamp;
}

/**
 * chat_message_set_timestamp:
 * @self: a #ChatMessage
 * @timestamp: Unix seconds
 *
 * Sets the timestamp of @self.
 *
 * Since: 1.0
 */
void
chat_message_set_timestamp (ChatMessage *self, gint64 timestamp)
{
	g_return_if_fail (CHAT_IS_MESSAGE (self));
	g_return_if_fail (timestamp >= 0);

	if (self->timestamp == timestamp)
		return;
	self->timestamp = timestamp;
	g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TIMESTAMP]);
}

/**
 * chat_message_get_code:
 * @self: a #ChatMessage
 *
 * Gets the error code of an `error` message.
 *
 * Returns: (nullable): the code, such as `"not_member"`
 *
 * Since: 1.0
 */
const char *
chat_message_get_code (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);
	return self->code;
}

/**
 * chat_message_set_code:
 * @self: a #ChatMessage
 * @code: (nullable): a machine-readable error code
 *
 * Sets the error code of @self.
 *
 * Since: 1.0
 */
void
chat_message_set_code (ChatMessage *self, const char *code)
{
	g_return_if_fail (CHAT_IS_MESSAGE (self));

	if (replace_str (&self->code, code))
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CODE]);
}

/* Internal: sets id/from and the timestamp (now, in seconds) without notify; the hub stamps
 * every relayed message, and the server's own pongs, events and errors. */
void
chat_message_stamp (ChatMessage *self, guint64 id, guint64 from)
{
	self->id = id;
	self->from = from;
	self->timestamp = g_get_real_time () / G_USEC_PER_SEC;
}

gboolean
chat_message_has_data (ChatMessage *self)
{
	return self->data != NULL;
}
