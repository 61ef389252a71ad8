/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <gio/gio.h>

#include "chat-error.h"

/**
 * SECTION:chat-error
 * @title: ChatError
 * @short_description: the chathub error domain
 *
 * Every recoverable failure in chathub is a #GError in the %CHAT_ERROR domain. The domain is
 * registered with GDBus, so the codes cross D-Bus as named errors
 * (`io.github.chathub.Hub1.Error.NotFound`, ...).
 */

G_DEFINE_ENUM_TYPE (ChatError,
		    chat_error,
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_FAILED, "failed"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_INVALID_JSON, "invalid-json"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_INVALID_MESSAGE, "invalid-message"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_UNKNOWN_TYPE, "unknown-type"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_NOT_MEMBER, "not-member"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_FORBIDDEN, "forbidden"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_USER_OFFLINE, "user-offline"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_INVALID_TOKEN, "invalid-token"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_NOT_FOUND, "not-found"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_INVALID_ARGUMENT, "invalid-argument"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_PERMISSION_DENIED, "permission-denied"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_RATE_LIMITED, "rate-limited"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_LIMIT_EXCEEDED, "limit-exceeded"),
		    G_DEFINE_ENUM_VALUE (CHAT_ERROR_UNAVAILABLE, "unavailable"))

static const GDBusErrorEntry chat_dbus_errors[] = {
    {CHAT_ERROR_FAILED, "io.github.chathub.Hub1.Error.Failed"},
    {CHAT_ERROR_INVALID_JSON, "io.github.chathub.Hub1.Error.InvalidJson"},
    {CHAT_ERROR_INVALID_MESSAGE, "io.github.chathub.Hub1.Error.InvalidMessage"},
    {CHAT_ERROR_UNKNOWN_TYPE, "io.github.chathub.Hub1.Error.UnknownType"},
    {CHAT_ERROR_NOT_MEMBER, "io.github.chathub.Hub1.Error.NotMember"},
    {CHAT_ERROR_FORBIDDEN, "io.github.chathub.Hub1.Error.Forbidden"},
    {CHAT_ERROR_USER_OFFLINE, "io.github.chathub.Hub1.Error.UserOffline"},
    {CHAT_ERROR_INVALID_TOKEN, "io.github.chathub.Hub1.Error.InvalidToken"},
    {CHAT_ERROR_NOT_FOUND, "io.github.chathub.Hub1.Error.NotFound"},
    {CHAT_ERROR_INVALID_ARGUMENT, "io.github.chathub.Hub1.Error.InvalidArgument"},
    {CHAT_ERROR_PERMISSION_DENIED, "io.github.chathub.Hub1.Error.PermissionDenied"},
    {CHAT_ERROR_RATE_LIMITED, "io.github.chathub.Hub1.Error.RateLimited"},
    {CHAT_ERROR_LIMIT_EXCEEDED, "io.github.chathub.Hub1.Error.LimitExceeded"},
    {CHAT_ERROR_UNAVAILABLE, "io.github.chathub.Hub1.Error.Unavailable"},
};

/**
 * chat_error_quark:
 *
 * Returns the #GQuark of the %CHAT_ERROR domain, registering its D-Bus error names on first use.
 *
 * Returns: the error domain
 *
 * Since: 1.0
 */
GQuark
chat_error_quark (void)
{
	static gsize quark = 0;

	g_dbus_error_register_error_domain ("chat-error-quark",
					    &quark,
					    chat_dbus_errors,
					    G_N_ELEMENTS (chat_dbus_errors));
	return (GQuark) quark;
}

/**
 * chat_error_get_wire_code:
 * @code: (type gint): a #ChatError code, such as the `code` of a caught #GError
 *
 * Gets the machine-readable `code` that an error frame carries on the wire for @code.
 * The wire codes are English and never translated.
 *
 * Bindings list this function with the #ChatError enumeration (`Chat.Error.get_wire_code()`)
 * and it takes a code, not an error: given a caught `GLib.Error` `e`, call
 * `Chat.Error.get_wire_code(e.code)` after checking `e.domain`, or simply
 * chat_error_get_wire_code_for_error() (`Chat.error_get_wire_code_for_error(e)`).
 *
 * Returns: the wire code, such as `"invalid_json"`
 *
 * Since: 1.0
 */
const char *
chat_error_get_wire_code (ChatError code)
{
	switch (code) {
	case CHAT_ERROR_INVALID_JSON:
		return "invalid_json";
	case CHAT_ERROR_INVALID_MESSAGE:
		return "invalid_message";
	case CHAT_ERROR_UNKNOWN_TYPE:
		return "unknown_type";
	case CHAT_ERROR_NOT_MEMBER:
		return "not_member";
	case CHAT_ERROR_FORBIDDEN:
		return "forbidden";
	case CHAT_ERROR_USER_OFFLINE:
		return "user_offline";
	case CHAT_ERROR_INVALID_TOKEN:
		return "invalid_token";
	case CHAT_ERROR_NOT_FOUND:
		return "not_found";
	case CHAT_ERROR_INVALID_ARGUMENT:
		return "invalid_argument";
	case CHAT_ERROR_PERMISSION_DENIED:
		return "permission_denied";
	case CHAT_ERROR_RATE_LIMITED:
		return "rate_limited";
	case CHAT_ERROR_LIMIT_EXCEEDED:
		return "limit_exceeded";
	case CHAT_ERROR_UNAVAILABLE:
		return "unavailable";
	case CHAT_ERROR_FAILED:
	default:
		return "failed";
	}
}

/**
 * chat_error_get_wire_code_for_error:
 * @error: a #GError of any domain
 *
 * Gets the machine-readable `code` that an error frame would carry on the wire for @error:
 * chat_error_get_wire_code() of its code for a %CHAT_ERROR, and `"failed"` for an error of
 * any other domain (whose codes mean something else).
 *
 * This is the natural call from bindings, where a caught error is a `GLib.Error`:
 * `Chat.error_get_wire_code_for_error(e)` in Python and GJS.
 *
 * Returns: the wire code, such as `"user_offline"`
 *
 * Since: 1.0
 */
const char *
chat_error_get_wire_code_for_error (const GError *error)
{
	g_return_val_if_fail (error != NULL, "failed");

	if (error->domain != CHAT_ERROR)
		return "failed";
	return chat_error_get_wire_code ((ChatError) error->code);
}
