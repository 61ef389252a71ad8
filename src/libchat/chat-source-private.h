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

/* A timer on @context: g_timeout_add() would put it on the global default context, which a
 * server created under a pushed thread-default context never runs. Whole seconds use
 * g_timeout_source_new_seconds(), so GLib may wake up once for several such timers. */
static inline GSource *
chat_timeout_source_attach (GMainContext *context,
			    guint interval_ms,
			    GSourceFunc func,
			    gpointer data,
			    const char *name)
{
	GSource *source = interval_ms % 1000 == 0
			      ? g_timeout_source_new_seconds (interval_ms / 1000)
			      : g_timeout_source_new (interval_ms);

	g_source_set_callback (source, func, data, NULL);
	g_source_set_static_name (source, name);
	g_source_attach (source, context);
	return source;
}

G_END_DECLS
