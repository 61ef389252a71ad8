/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Checks on [server] trusted-proxies networks, shared by ChatServer and chathubd's
 * configuration parser (which compiles this file in, as the library does not export it).
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "chat-network-private.h"

/* Whether a network's prefix length, if it has one, is a decimal number up to 128. GLib 2.74
 * reads it with strtoul() into a guint and sets it as a property whose range is 0 to 128:
 * "0.0.0.0/-32", "0.0.0.0/4294967296" (silently) and "0.0.0.0/800" (with a GObject warning)
 * all became /0, a network of every address, trusted; found by tests/fuzz/fuzz-config.c.
 * GLib checks the rest of the range (33 for IPv4). */
gboolean
chat_network_prefix_is_valid (const char *network)
{
	const char *slash = strchr (network, '/');
	gsize digits;

	if (slash == NULL)
		return TRUE;
	digits = strspn (slash + 1, "0123456789");
	return digits >= 1 && digits <= 3 && slash[1 + digits] == '\0' &&
	       strtoul (slash + 1, NULL, 10) <= 128;
}
