/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Destroys and drops a GSource held by pointer, if any (g_clear_handle_id() for sources
 * kept as objects, which may live on a context other than the global default one). */
static inline void
chat_clear_source (GSource **source)
{
	if (*source != NULL) {
		g_source_destroy (*source);
		g_clear_pointer (source, g_source_unref);
	}
}

G_END_DECLS
