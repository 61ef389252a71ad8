/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-limit-extension-private.h"

struct _ChatLimitExtension {
	SoupWebsocketExtension parent_instance;
	gsize max_message_size;
	gsize message_size; /* bytes of the message being reassembled */
	gboolean refused;
};

G_DEFINE_FINAL_TYPE (ChatLimitExtension, chat_limit_extension, SOUP_TYPE_WEBSOCKET_EXTENSION)

static GBytes *
chat_limit_extension_process_incoming (SoupWebsocketExtension *extension,
				       guint8 *header,
				       GBytes *payload,
				       GError **error)
{
	ChatLimitExtension *self = CHAT_LIMIT_EXTENSION (extension);
	guint8 opcode = header[0] & 0x0f;

	if (opcode & 0x08)
		return payload; /* control frames: libsoup limits them to 125 bytes */
	if (opcode == 0x2) {
		g_bytes_unref (payload);
		self->refused = TRUE;
		g_set_error_literal (error,
				     SOUP_WEBSOCKET_ERROR,
				     SOUP_WEBSOCKET_CLOSE_UNSUPPORTED_DATA,
				     "binary frames are not supported");
		return NULL;
	}
	if (opcode == 0x1)
		self->message_size = 0;
	self->message_size += g_bytes_get_size (payload);
	if (self->message_size > self->max_message_size) {
		g_bytes_unref (payload);
		self->refused = TRUE;
		g_set_error_literal (error,
				     SOUP_WEBSOCKET_ERROR,
				     SOUP_WEBSOCKET_CLOSE_TOO_BIG,
				     "message too big");
		return NULL;
	}
	return payload;
}

static void
chat_limit_extension_class_init (ChatLimitExtensionClass *klass)
{
	SoupWebsocketExtensionClass *extension_class = SOUP_WEBSOCKET_EXTENSION_CLASS (klass);

	extension_class->name = "x-chathub-limit";
	extension_class->process_incoming_message = chat_limit_extension_process_incoming;
}

static void
chat_limit_extension_init (ChatLimitExtension *self)
{
}

SoupWebsocketExtension *
chat_limit_extension_new (gsize max_message_size)
{
	ChatLimitExtension *self = g_object_new (CHAT_TYPE_LIMIT_EXTENSION, NULL);

	self->max_message_size = max_message_size;
	return SOUP_WEBSOCKET_EXTENSION (self);
}

/* TRUE once this extension refused a frame: libsoup then sends the close frame itself. */
gboolean
chat_limit_extension_has_refused (SoupWebsocketConnection *conn)
{
	for (GList *l = soup_websocket_connection_get_extensions (conn); l != NULL; l = l->next) {
		if (CHAT_IS_LIMIT_EXTENSION (l->data) && CHAT_LIMIT_EXTENSION (l->data)->refused)
			return TRUE;
	}
	return FALSE;
}
