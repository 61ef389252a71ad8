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
	char *token;   /* (nullable): a `refresh` request's JWT */
	GArray *users; /* (nullable) (element-type guint64): a `presence` answer's user ids */
	/* data as given: a client's or chat_message_set_data_json()'s text, relayed verbatim, and
	 * its tree built on the first chat_message_get_data(); or a tree alone, from
	 * chat_message_set_data(). Both NULL: no data. */
	JsonNode *data;	 /* (nullable) */
	char *data_text; /* (nullable) */
	gsize data_text_len;
	/* protocol 1.1 requests (join with recovery, history) and their answers; private */
	gboolean has_since;
	guint64 since;
	guint64 before;
	guint64 limit;
	gboolean offset_always; /* an ack's room position: written even when 0 */
	char *epoch;		/* (nullable) */
	gint recovered;		/* -1: absent */
	GPtrArray *stored;	/* (nullable) GBytes: a history answer's frames, written raw */
};

G_DEFINE_FINAL_TYPE (ChatMessage, chat_message, G_TYPE_OBJECT)

G_DEFINE_ENUM_TYPE (ChatMessageType,
		    chat_message_type,
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_PING, "ping"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_PONG, "pong"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_MESSAGE, "message"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_JOIN, "join"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_LEAVE, "leave"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_ERROR, "error"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_PRESENCE, "presence"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_REFRESH, "refresh"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_HISTORY, "history"),
		    G_DEFINE_ENUM_VALUE (CHAT_MESSAGE_TYPE_SYNC, "sync"))

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
	PROP_TOKEN,
	N_PROPS
};
static GParamSpec *props[N_PROPS];

static const char *const type_names[] =
    {"ping", "pong", "message", "join", "leave", "error", "presence", "refresh", "history", "sync"};

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
	g_return_val_if_fail ((guint) type < G_N_ELEMENTS (type_names), NULL);
	return type_names[type];
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
	case PROP_TOKEN:
		g_value_set_string (value, self->token);
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
	case PROP_TOKEN:
		chat_message_set_token (self, g_value_get_string (value));
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
	g_free (self->token);
	g_clear_pointer (&self->users, g_array_unref);
	g_free (self->epoch);
	g_clear_pointer (&self->stored, g_ptr_array_unref);
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

	/**
	 * ChatMessage:token:
	 *
	 * The JWT a `refresh` request carries, or %NULL.
	 *
	 * Since: 1.0
	 */
	props[PROP_TOKEN] = g_param_spec_string ("token",
						 NULL,
						 "The JWT a refresh request carries",
						 NULL,
						 G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						     G_PARAM_STATIC_STRINGS);

	g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
chat_message_init (ChatMessage *self)
{
	self->recovered = -1;
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
	g_return_val_if_fail ((guint) type < G_N_ELEMENTS (type_names), NULL);
	return g_object_new (CHAT_TYPE_MESSAGE, "type", type, NULL);
}

/* The top-level members a message reads, in the order they are checked. */
enum {
	FIELD_TYPE,
	FIELD_ID,
	FIELD_FROM,
	FIELD_TO,
	FIELD_ROOM_ID,
	FIELD_CONTENT,
	FIELD_CODE,
	FIELD_TOKEN,
	FIELD_TIMESTAMP,
	FIELD_DATA,
	FIELD_OFFSET,
	FIELD_SINCE,
	FIELD_BEFORE,
	FIELD_LIMIT,
	FIELD_EPOCH,
	N_FIELDS
};
static const char *const field_names[N_FIELDS] = {"type",
						  "id",
						  "from",
						  "to",
						  "room_id",
						  "content",
						  "code",
						  "token",
						  "timestamp",
						  "data",
						  "offset",
						  "since",
						  "before",
						  "limit",
						  "epoch"};

/* What the one validating pass (chat_json_scan()) reports of a frame's object. */
typedef struct {
	ChatJsonMember fields[N_FIELDS]; /* value NULL: absent; the last duplicate wins */
	gboolean nul_in_name;
} Envelope;

static void
collect_member (const ChatJsonMember *member, gpointer user_data)
{
	Envelope *envelope = user_data;

	/* a name cut at its NUL, as json-glib would, could turn into "type" or "content" */
	if (member->name_flags & CHAT_JSON_STRING_NUL) {
		envelope->nul_in_name = TRUE;
		return;
	}
	for (guint i = 0; i < N_FIELDS; i++) {
		if (chat_json_string_equal (member->name,
					    member->name_len,
					    member->name_flags,
					    field_names[i])) {
			envelope->fields[i] = *member;
			return;
		}
	}
}

/* null counts as absent, for every field but `type` */
static gboolean
field_is_set (const ChatJsonMember *field)
{
	return field->value != NULL && field->kind != CHAT_JSON_KIND_NULL;
}

/* The value of an integer token: *@negative for a minus sign before anything but zero, and
 * G_MAXUINT64 for a magnitude beyond it. */
static guint64
integer_value (const ChatJsonMember *field, gboolean *negative)
{
	const char *p = field->value, *end = field->value + field->value_len;
	guint64 value = 0;
	gboolean minus = *p == '-';

	if (minus)
		p++;
	for (; p < end; p++) {
		guint digit = (guint) (*p - '0');

		if (value > (G_MAXUINT64 - digit) / 10) {
			value = G_MAXUINT64;
			break;
		}
		value = value * 10 + digit;
	}
	*negative = minus && value != 0;
	return value;
}

/* Wire text stays English; the public API translates. */
#define TR(text) (translate ? _ (text) : (text))

static gboolean
refuse_too_large (const char *name, gboolean translate, GError **error)
{
	/* the largest id json-glib and every binding hold without loss */
	g_set_error (error,
		     CHAT_ERROR,
		     CHAT_ERROR_INVALID_MESSAGE,
		     TR ("Field “%s” must be at most 9223372036854775807"),
		     name);
	return FALSE;
}

/* Reads an optional non-negative integer field. */
static gboolean
read_uint_field (const Envelope *envelope,
		 guint index,
		 gboolean positive,
		 guint64 *out,
		 gboolean translate,
		 GError **error)
{
	const ChatJsonMember *field = &envelope->fields[index];
	const char *name = field_names[index];
	gboolean negative;
	guint64 value;

	if (!field_is_set (field))
		return TRUE;
	if (field->kind != CHAT_JSON_KIND_INTEGER) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     TR ("Field “%s” must be an integer"),
			     name);
		return FALSE;
	}
	value = integer_value (field, &negative);
	if (negative || value < (positive ? 1 : 0)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     positive ? TR ("Field “%s” must be an integer greater than 0")
				      : TR ("Field “%s” must not be negative"),
			     name);
		return FALSE;
	}
	if (value > G_MAXINT64)
		return refuse_too_large (name, translate, error);
	*out = value;
	return TRUE;
}

/* Reads an optional string field; a string with a NUL inside is checked by the caller. */
static gboolean
read_string_field (const Envelope *envelope,
		   guint index,
		   char **out,
		   gboolean translate,
		   GError **error)
{
	const ChatJsonMember *field = &envelope->fields[index];

	if (!field_is_set (field))
		return TRUE;
	if (field->kind != CHAT_JSON_KIND_STRING) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_MESSAGE,
			     TR ("Field “%s” must be a string"),
			     field_names[index]);
		return FALSE;
	}
	g_free (*out);
	*out = chat_json_string_decode (field->value, field->value_len, field->value_flags, NULL);
	return TRUE;
}

/* Parses a client frame. Wire errors stay English (translate FALSE); the public API
 * translates. The text is scanned once: chat_json_scan() checks it and reports where each
 * top-level member is, and the fields are decoded from those spans. `data` stays text, relayed
 * byte for byte; its json-glib tree is built only if asked for (chat_message_get_data()). */
ChatMessage *
chat_message_parse (const char *text, gsize length, gboolean translate, GError **error)
{
	g_autoptr (ChatMessage) self = NULL;
	Envelope envelope = {{{NULL}}, FALSE};
	const ChatJsonMember *field;
	ChatJsonKind root_kind;
	ChatMessageType type;
	const char *reason = NULL;
	gboolean known = FALSE;

	if (length == 0) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     TR ("Empty message; expected a JSON object"));
		return NULL;
	}

	/* json-glib is lenient (comments, single quotes, \x escapes); the wire is not */
	/* the envelope is one level: data itself may nest CHAT_JSON_MAX_DEPTH deep */
	if (!chat_json_scan (text,
			     length,
			     CHAT_JSON_MAX_DEPTH + 1,
			     &root_kind,
			     collect_member,
			     &envelope,
			     &reason)) {
		if (translate)
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     _ ("Invalid JSON: %s"),
				     _ (reason));
		else
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_JSON,
				     "The frame is not valid JSON: %s",
				     reason);
		return NULL;
	}
	if (root_kind != CHAT_JSON_KIND_OBJECT) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("A message must be a JSON object"));
		return NULL;
	}
	if (envelope.nul_in_name) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Member names must not contain U+0000"));
		return NULL;
	}

	field = &envelope.fields[FIELD_TYPE];
	if (field->value == NULL) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “type” is missing"));
		return NULL;
	}
	if (field->kind != CHAT_JSON_KIND_STRING) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “type” must be a string"));
		return NULL;
	}
	for (guint i = 0; i < G_N_ELEMENTS (type_names) && !known; i++) {
		if (chat_json_string_equal (field->value,
					    field->value_len,
					    field->value_flags,
					    type_names[i])) {
			type = (ChatMessageType) i;
			known = TRUE;
		}
	}
	if (!known) {
		/* no type has a NUL in it; one that does is named as sent, escapes and all */
		g_autofree char *name = field->value_flags & CHAT_JSON_STRING_NUL
					    ? g_strndup (field->value + 1, field->value_len - 2)
					    : chat_json_string_decode (field->value,
								       field->value_len,
								       field->value_flags,
								       NULL);

		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_UNKNOWN_TYPE,
			     TR ("Unknown message type “%s”"),
			     name);
		return NULL;
	}

	self = chat_message_new (type);
	if (!read_uint_field (&envelope, FIELD_ID, FALSE, &self->id, translate, error) ||
	    !read_uint_field (&envelope, FIELD_FROM, FALSE, &self->from, translate, error) ||
	    !read_uint_field (&envelope, FIELD_TO, TRUE, &self->to, translate, error) ||
	    !read_uint_field (&envelope, FIELD_ROOM_ID, TRUE, &self->room_id, translate, error) ||
	    !read_string_field (&envelope, FIELD_CONTENT, &self->content, translate, error) ||
	    !read_string_field (&envelope, FIELD_CODE, &self->code, translate, error) ||
	    !read_string_field (&envelope, FIELD_TOKEN, &self->token, translate, error) ||
	    !read_uint_field (&envelope, FIELD_OFFSET, FALSE, &self->offset, translate, error) ||
	    !read_uint_field (&envelope, FIELD_SINCE, FALSE, &self->since, translate, error) ||
	    !read_uint_field (&envelope, FIELD_BEFORE, TRUE, &self->before, translate, error) ||
	    !read_uint_field (&envelope, FIELD_LIMIT, TRUE, &self->limit, translate, error) ||
	    !read_string_field (&envelope, FIELD_EPOCH, &self->epoch, translate, error))
		return NULL;
	self->has_since = field_is_set (&envelope.fields[FIELD_SINCE]);
	if (envelope.fields[FIELD_EPOCH].value_flags & CHAT_JSON_STRING_NUL) {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “epoch” must not contain U+0000"));
		return NULL;
	}
	/* strings leave the library NUL-terminated (C, GObject properties, every binding): one
	 * with a NUL inside could only be handed out cut short, so it is refused */
	for (guint i = FIELD_CONTENT; i <= FIELD_TOKEN; i++) {
		if (envelope.fields[i].value_flags & CHAT_JSON_STRING_NUL) {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_MESSAGE,
				     TR ("Field “%s” must not contain U+0000"),
				     field_names[i]);
			return NULL;
		}
	}

	field = &envelope.fields[FIELD_TIMESTAMP];
	if (field_is_set (field)) {
		gboolean negative = FALSE;
		guint64 value = 0;

		if (field->kind == CHAT_JSON_KIND_INTEGER)
			value = integer_value (field, &negative);
		if (field->kind != CHAT_JSON_KIND_INTEGER || negative) {
			g_set_error_literal (
			    error,
			    CHAT_ERROR,
			    CHAT_ERROR_INVALID_MESSAGE,
			    TR ("Field “timestamp” must be a non-negative integer"));
			return NULL;
		}
		if (value > G_MAXINT64) {
			refuse_too_large ("timestamp", translate, error);
			return NULL;
		}
		self->timestamp = (gint64) value;
	}

	field = &envelope.fields[FIELD_DATA];
	if (field_is_set (field)) {
		self->data_text = g_strndup (field->value, field->value_len);
		self->data_text_len = field->value_len;
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
/* ",\"key\":N": printf's machinery costs more than the rest of a frame together (issue
 * 11's ingest profile: 11 % of the daemon's time was vasprintf for these five numbers) */
static void
append_member_uint (GString *out, const char *member, guint64 value)
{
	char digits[20];
	guint n = 0;

	do
		digits[n++] = (char) ('0' + value % 10);
	while ((value /= 10) != 0);
	g_string_append (out, member);
	while (n > 0)
		g_string_append_c (out, digits[--n]);
}

void
chat_message_append_json (ChatMessage *self, GString *out)
{
	g_string_append (out, "{\"type\":\"");
	g_string_append (out, type_names[self->type]);
	g_string_append_c (out, '"');
	if (self->id != 0)
		append_member_uint (out, ",\"id\":", self->id);
	if (self->offset != 0 || self->offset_always)
		append_member_uint (out, ",\"offset\":", self->offset);
	if (type_has_sender (self->type) || self->from != 0)
		append_member_uint (out, ",\"from\":", self->from);
	if (self->to != 0)
		append_member_uint (out, ",\"to\":", self->to);
	if (self->room_id != 0)
		append_member_uint (out, ",\"room_id\":", self->room_id);
	if (self->epoch != NULL) {
		g_string_append (out, ",\"epoch\":");
		append_json_string (out, self->epoch);
	}
	if (self->recovered >= 0)
		g_string_append (out,
				 self->recovered ? ",\"recovered\":true" : ",\"recovered\":false");
	if (self->code != NULL) {
		g_string_append (out, ",\"code\":");
		append_json_string (out, self->code);
	}
	if (self->content != NULL) {
		g_string_append (out, ",\"content\":");
		append_json_string (out, self->content);
	}
	if (self->token != NULL) {
		g_string_append (out, ",\"token\":");
		append_json_string (out, self->token);
	}
	if (self->users != NULL) {
		g_string_append (out, ",\"users\":[");
		for (guint i = 0; i < self->users->len; i++)
			append_member_uint (out,
					    i > 0 ? "," : "",
					    g_array_index (self->users, guint64, i));
		g_string_append_c (out, ']');
	}
	if (self->data_text != NULL) {
		g_string_append (out, ",\"data\":");
		g_string_append_len (out, self->data_text, self->data_text_len);
	} else if (self->data != NULL) {
		g_autofree char *text = json_to_string (self->data, FALSE);

		g_string_append (out, ",\"data\":");
		g_string_append (out, text);
	}
	if (self->stored != NULL) {
		/* stored frames are canonical JSON already: written as they were relayed */
		g_string_append (out, ",\"messages\":[");
		for (guint i = 0; i < self->stored->len; i++) {
			gsize size;
			const char *text = g_bytes_get_data (self->stored->pdata[i], &size);

			if (i > 0)
				g_string_append_c (out, ',');
			g_string_append_len (out, text, size);
		}
		g_string_append_c (out, ']');
	}
	/* never negative: chat_message_set_timestamp() and the parser refuse it */
	append_member_uint (out, ",\"timestamp\":", (guint64) self->timestamp);
	g_string_append_c (out, '}');
}

GBytes *
chat_message_to_frame (ChatMessage *self)
{
	GString *builder = chat_frame_builder_new ();

	chat_message_append_json (self, builder);
	return chat_frame_builder_finish (builder);
}

GBytes *
chat_message_to_exact_frame (ChatMessage *self, GString *scratch)
{
	g_string_truncate (scratch, 0);
	chat_message_append_json (self, scratch);
	return chat_frame_new (0x1 /* text */, scratch->str, scratch->len);
}

/**
 * chat_message_to_json:
 * @self: a #ChatMessage
 *
 * Serializes @self as one compact JSON object, the form chathub sends on the wire. Fields that
 * are not set are left out; `from` is always present on `message`, `join` and `leave`, and
 * `timestamp` always. `data` given as text (by a client or chat_message_set_data_json()) is
 * written exactly as given.
 *
 * Returns: (transfer full): the JSON text
 *
 * Since: 1.0
 */
char *
chat_message_to_json (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);

	return chat_message_to_json_with_length (self, NULL);
}

/**
 * chat_message_to_json_with_length:
 * @self: a #ChatMessage
 * @length: (out) (optional): return location for the length in bytes
 *
 * Like chat_message_to_json(), and also gives the length of the text, for C callers that
 * write it out without a strlen(). In bindings, whose strings carry their length,
 * chat_message_to_json() is the one to use.
 *
 * Returns: (transfer full): the JSON text
 *
 * Since: 1.0
 */
char *
chat_message_to_json_with_length (ChatMessage *self, gsize *length)
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
 * Gets the free-form JSON attached to @self. Data that came as text (a parsed message,
 * chat_message_set_data_json()) is parsed into a tree on the first call, and kept.
 *
 * Returns: (transfer none) (nullable): the data
 *
 * Since: 1.0
 */
JsonNode *
chat_message_get_data (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);

	if (self->data == NULL && self->data_text != NULL) {
		/* the text passed the strict scanner, so json-glib accepts it */
		g_autoptr (JsonParser) parser = json_parser_new_immutable ();

		if (json_parser_load_from_data (parser,
						self->data_text,
						(gssize) self->data_text_len,
						NULL))
			self->data = json_node_ref (json_parser_get_root (parser));
	}
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
	ChatJsonKind kind;
	const char *reason = NULL;
	gsize len;

	g_return_val_if_fail (CHAT_IS_MESSAGE (self), FALSE);
	g_return_val_if_fail (json != NULL, FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	len = length < 0 ? strlen (json) : (gsize) length;
	if (!chat_json_scan (json, len, CHAT_JSON_MAX_DEPTH, &kind, NULL, NULL, &reason)) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_JSON,
			     _ ("Invalid JSON: %s"),
			     _ (reason));
		return FALSE;
	}
	clear_data (self);
	if (kind != CHAT_JSON_KIND_NULL) {
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

/**
 * chat_message_get_token:
 * @self: a #ChatMessage
 *
 * Gets the JWT of a `refresh` request.
 *
 * Returns: (nullable): the token
 *
 * Since: 1.0
 */
const char *
chat_message_get_token (ChatMessage *self)
{
	g_return_val_if_fail (CHAT_IS_MESSAGE (self), NULL);
	return self->token;
}

/**
 * chat_message_set_token:
 * @self: a #ChatMessage
 * @token: (nullable): a compact JWT
 *
 * Sets the JWT of a `refresh` request.
 *
 * Since: 1.0
 */
void
chat_message_set_token (ChatMessage *self, const char *token)
{
	g_return_if_fail (CHAT_IS_MESSAGE (self));

	if (replace_str (&self->token, token))
		g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TOKEN]);
}

/* Internal: the user ids of a `presence` answer, written as given (the hub sorts them). */
void
chat_message_set_users (ChatMessage *self, const guint64 *users, gsize n_users)
{
	g_clear_pointer (&self->users, g_array_unref);
	self->users = g_array_sized_new (FALSE, FALSE, sizeof (guint64), (guint) n_users);
	g_array_append_vals (self->users, users, (guint) n_users);
}

/* Internal: sets id/from and the timestamp (now, in seconds) without notify; the hub stamps
 * every relayed message, and the server's own pongs, events and errors. */
void
chat_message_stamp (ChatMessage *self, guint64 id, guint64 from)
{
	self->id = id;
	/* a client's offset means nothing: only a store sets one, after this */
	self->offset = 0;
	self->from = from;
	self->timestamp = g_get_real_time () / G_USEC_PER_SEC;
}

gboolean
chat_message_has_data (ChatMessage *self)
{
	return self->data != NULL || self->data_text != NULL;
}

gboolean
chat_message_get_since (ChatMessage *self, guint64 *since)
{
	*since = self->since;
	return self->has_since;
}

guint64
chat_message_get_before (ChatMessage *self)
{
	return self->before;
}

guint64
chat_message_get_limit (ChatMessage *self)
{
	return self->limit;
}

const char *
chat_message_get_epoch (ChatMessage *self)
{
	return self->epoch;
}

void
chat_message_set_position (ChatMessage *self, guint64 offset, const char *epoch)
{
	self->offset = offset;
	self->offset_always = TRUE;
	replace_str (&self->epoch, epoch);
}

void
chat_message_set_epoch (ChatMessage *self, const char *epoch)
{
	replace_str (&self->epoch, epoch);
}

void
chat_message_set_recovered (ChatMessage *self, gint recovered)
{
	self->recovered = recovered;
}

void
chat_message_set_stored (ChatMessage *self, GPtrArray *frames)
{
	g_clear_pointer (&self->stored, g_ptr_array_unref);
	if (frames != NULL)
		self->stored = g_ptr_array_ref (frames);
}
