/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define CHAT_TYPE_LISTENER (chat_listener_get_type ())
G_DECLARE_FINAL_TYPE (ChatListener, chat_listener, CHAT, LISTENER, GObject)

/* An accepted connection whose request head arrived whole and within MAX_REQUEST_HEAD (with
 * TLS: whose handshake is done, @connection is then the GTlsConnection), for the HTTP server
 * to take (transfer none: it refs what it keeps). */
typedef void (*ChatListenerServeFunc) (GIOStream *connection,
				       GSocketAddress *local,
				       GSocketAddress *remote,
				       gpointer user_data);
/* The connections the owner holds, for the warning when descriptors run out. */
typedef guint (*ChatListenerCountFunc) (gpointer user_data);

ChatListener *
chat_listener_new (GMainContext *context,
		   ChatListenerServeFunc serve_func,
		   ChatListenerCountFunc count_func,
		   gpointer user_data);
/* @reuse_port: SO_REUSEPORT, so that other processes may listen on the same address */
gboolean
chat_listener_listen (ChatListener *self,
		      GSocketAddress *address,
		      gboolean reuse_port,
		      GError **error);
void
chat_listener_stop (ChatListener *self);
gboolean
chat_listener_is_listening (ChatListener *self);
/* listening, and no accept() failed for want of descriptors in the last 5 s */
gboolean
chat_listener_is_accepting (ChatListener *self);
guint16
chat_listener_get_port (ChatListener *self);
void
chat_listener_set_handshake_timeout (ChatListener *self, guint seconds);
guint64
chat_listener_get_refused_head_too_large (ChatListener *self);
/* Called for each request head answered 431, with the peer's address (for the log). */
typedef void (*ChatListenerRefusedFunc) (GSocketAddress *remote, gpointer user_data);
void
chat_listener_set_refused_func (ChatListener *self, ChatListenerRefusedFunc refused_func);
void
chat_listener_set_tls_certificate (ChatListener *self, GTlsCertificate *certificate);
GSocket *
chat_listener_claim_socket (GIOStream *stolen, gboolean *tls);

G_END_DECLS
