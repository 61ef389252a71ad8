/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <glib-object.h>

#include "chat-version.h"

G_BEGIN_DECLS

/**
 * CHAT_ERROR:
 *
 * The error domain of chathub. Errors in this domain are from the #ChatError enumeration.
 *
 * Since: 1.0
 */
#define CHAT_ERROR (chat_error_quark ())

/**
 * ChatError:
 * @CHAT_ERROR_FAILED: a generic failure
 * @CHAT_ERROR_INVALID_JSON: a frame that is not valid JSON (wire code `invalid_json`)
 * @CHAT_ERROR_INVALID_MESSAGE: JSON that is not a valid message: not an object, a missing or
 *   mistyped field (wire code `invalid_message`)
 * @CHAT_ERROR_UNKNOWN_TYPE: a message whose `type` is not known (wire code `unknown_type`)
 * @CHAT_ERROR_NOT_MEMBER: the client has not joined the room (wire code `not_member`)
 * @CHAT_ERROR_FORBIDDEN: the client's token does not allow this room (wire code `forbidden`)
 * @CHAT_ERROR_USER_OFFLINE: the addressed user has no connection (wire code `user_offline`)
 * @CHAT_ERROR_INVALID_TOKEN: a token that was refused
 * @CHAT_ERROR_NOT_FOUND: no such client, room or object
 * @CHAT_ERROR_INVALID_ARGUMENT: an argument or configuration value is invalid
 * @CHAT_ERROR_PERMISSION_DENIED: the caller may not do this
 * @CHAT_ERROR_RATE_LIMITED: the client sent messages faster than its rate limit allows; the
 *   message was not relayed (wire code `rate_limited`)
 * @CHAT_ERROR_LIMIT_EXCEEDED: a per-connection limit, such as the number of rooms, would be
 *   exceeded (wire code `limit_exceeded`)
 * @CHAT_ERROR_UNAVAILABLE: the message store could not store a message (a full disk, a
 *   failing store), so it was not relayed; trying again later may succeed (wire code
 *   `unavailable`)
 *
 * Error codes of the %CHAT_ERROR domain. The first few are sent to WebSocket clients as the
 * `code` of an error frame (see chat_error_get_wire_code() and
 * chat_error_get_wire_code_for_error()).
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_ERROR_FAILED,
	CHAT_ERROR_INVALID_JSON,
	CHAT_ERROR_INVALID_MESSAGE,
	CHAT_ERROR_UNKNOWN_TYPE,
	CHAT_ERROR_NOT_MEMBER,
	CHAT_ERROR_FORBIDDEN,
	CHAT_ERROR_USER_OFFLINE,
	CHAT_ERROR_INVALID_TOKEN,
	CHAT_ERROR_NOT_FOUND,
	CHAT_ERROR_INVALID_ARGUMENT,
	CHAT_ERROR_PERMISSION_DENIED,
	CHAT_ERROR_RATE_LIMITED,
	CHAT_ERROR_LIMIT_EXCEEDED,
	CHAT_ERROR_UNAVAILABLE,
} ChatError;

CHAT_AVAILABLE_IN_ALL
GType
chat_error_get_type (void) G_GNUC_CONST;
CHAT_AVAILABLE_IN_ALL
GQuark
chat_error_quark (void);
CHAT_AVAILABLE_IN_ALL
const char *
chat_error_get_wire_code (ChatError code);
CHAT_AVAILABLE_IN_ALL
const char *
chat_error_get_wire_code_for_error (const GError *error);

G_END_DECLS
