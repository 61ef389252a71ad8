/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <libsoup/soup.h>

G_BEGIN_DECLS

/* Not a negotiated extension: a hook libsoup 3.2 calls for every incoming frame before it
 * reassembles a message. It refuses binary frames (1003) and messages whose fragments add up
 * to more than the limit (1009) with a proper close frame, before the bytes pile up. */
#define CHAT_TYPE_LIMIT_EXTENSION (chat_limit_extension_get_type ())
G_DECLARE_FINAL_TYPE (ChatLimitExtension,
		      chat_limit_extension,
		      CHAT,
		      LIMIT_EXTENSION,
		      SoupWebsocketExtension)

SoupWebsocketExtension *
chat_limit_extension_new (gsize max_message_size);
gboolean
chat_limit_extension_has_refused (SoupWebsocketConnection *conn);

G_END_DECLS
