/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-token-verifier.h"

G_BEGIN_DECLS

gboolean
chat_token_verifier_check (ChatTokenVerifier *self,
			   const char *token,
			   guint64 *user_id,
			   GArray **rooms,
			   const char **wire_reason,
			   GError **error);
gboolean
chat_token_verifier_check_full (ChatTokenVerifier *self,
				const char *token,
				guint64 *user_id,
				GArray **rooms,
				gint64 *deadline,
				const char **wire_reason,
				GError **error);

G_END_DECLS
