/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One line for the journal: the text is translated, CHATHUB_EVENT is the stable key tools
 * match on (docs/deployment.md). */
static inline void
chd_log_event (GLogLevelFlags level, const char *event, const char *text)
{
	g_log_structured (G_LOG_DOMAIN, level, "CHATHUB_EVENT", event, "MESSAGE", "%s", text);
}

G_END_DECLS
