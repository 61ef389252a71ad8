/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <gio/gio.h>

#include "chat-message.h"
#include "chat-version.h"

G_BEGIN_DECLS

/**
 * ChatConnectionState:
 * @CHAT_CONNECTION_STATE_DISCONNECTED: not connected and not trying: before
 *   chat_connection_open(), after chat_connection_close() and after a final close
 * @CHAT_CONNECTION_STATE_CONNECTING: the first attempt is under way
 * @CHAT_CONNECTION_STATE_CONNECTED: the WebSocket is open (the server answered 101)
 * @CHAT_CONNECTION_STATE_RECONNECTING: the connection was lost (a close that is not final);
 *   waiting for the backoff timer or attempting again
 *
 * The state of a #ChatConnection.
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_CONNECTION_STATE_DISCONNECTED,
	CHAT_CONNECTION_STATE_CONNECTING,
	CHAT_CONNECTION_STATE_CONNECTED,
	CHAT_CONNECTION_STATE_RECONNECTING,
} ChatConnectionState;

CHAT_AVAILABLE_IN_ALL
GType
chat_connection_state_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_CONNECTION_STATE (chat_connection_state_get_type ())

#define CHAT_TYPE_CONNECTION (chat_connection_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatConnection, chat_connection, CHAT, CONNECTION, GObject)

CHAT_AVAILABLE_IN_ALL
ChatConnection *
chat_connection_new (const char *uri, const char *token);

CHAT_AVAILABLE_IN_ALL
const char *
chat_connection_get_uri (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
const char *
chat_connection_get_token (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_set_token (ChatConnection *self, const char *token);
CHAT_AVAILABLE_IN_ALL
ChatConnectionState
chat_connection_get_state (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
guint64
chat_connection_get_user_id (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
guint
chat_connection_get_backoff_min (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_set_backoff_min (ChatConnection *self, guint backoff_min);
CHAT_AVAILABLE_IN_ALL
guint
chat_connection_get_backoff_max (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_set_backoff_max (ChatConnection *self, guint backoff_max);
CHAT_AVAILABLE_IN_ALL
GTlsDatabase *
chat_connection_get_tls_database (ChatConnection *self);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_set_tls_database (ChatConnection *self, GTlsDatabase *database);

CHAT_AVAILABLE_IN_ALL
gboolean
chat_connection_open (ChatConnection *self, GError **error);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_close (ChatConnection *self);

CHAT_AVAILABLE_IN_ALL
void
chat_connection_join (ChatConnection *self, guint64 room_id);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_connection_leave (ChatConnection *self, guint64 room_id, GError **error);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_connection_get_rooms (ChatConnection *self, gsize *n_rooms);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_connection_send_to_room (ChatConnection *self,
			      guint64 room_id,
			      const char *content,
			      GError **error);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_connection_send_to_user (ChatConnection *self,
			      guint64 user_id,
			      const char *content,
			      GError **error);

CHAT_AVAILABLE_IN_ALL
void
chat_connection_request_history_async (ChatConnection *self,
				       guint64 room_id,
				       guint64 before,
				       guint limit,
				       GCancellable *cancellable,
				       GAsyncReadyCallback callback,
				       gpointer user_data);
CHAT_AVAILABLE_IN_ALL
GPtrArray *
chat_connection_request_history_finish (ChatConnection *self, GAsyncResult *result, GError **error);
CHAT_AVAILABLE_IN_ALL
void
chat_connection_request_presence_async (ChatConnection *self,
					guint64 room_id,
					GCancellable *cancellable,
					GAsyncReadyCallback callback,
					gpointer user_data);
CHAT_AVAILABLE_IN_ALL
guint64 *
chat_connection_request_presence_finish (ChatConnection *self,
					 GAsyncResult *result,
					 gsize *n_users,
					 GError **error);

G_END_DECLS
