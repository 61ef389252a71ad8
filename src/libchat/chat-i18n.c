/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-i18n-private.h"

void
chat_i18n_init (void)
{
	static gsize initialized = 0;

	if (g_once_init_enter (&initialized)) {
		const char *dir = g_getenv ("CHATHUB_LOCALEDIR");

		bindtextdomain (GETTEXT_PACKAGE, dir != NULL ? dir : LOCALEDIR);
		bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
		g_once_init_leave (&initialized, 1);
	}
}
