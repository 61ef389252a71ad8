/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-flush-source-private.h"

typedef struct {
	GSource source;
	GPtrArray *dirty; /* ChatOutbox*, owned refs */
	GPtrArray *spare;
	ChatFlushStatistics statistics;
} ChatFlushSource;

/* bytes: 64 B to 4 MiB by fours (a frame header, a small message, ..., a full outbox) */
static const guint64 byte_bounds[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};

static gboolean
flush_source_prepare (GSource *source, gint *timeout)
{
	*timeout = -1;
	return ((ChatFlushSource *) source)->dirty->len > 0;
}

static gboolean
flush_source_check (GSource *source)
{
	return ((ChatFlushSource *) source)->dirty->len > 0;
}

static gboolean
flush_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
	ChatFlushSource *fs = (ChatFlushSource *) source;
	GPtrArray *batch = fs->dirty;

	/* swap first: flushing can close connections, which may queue more work */
	fs->dirty = fs->spare;
	fs->spare = batch;
	for (guint i = 0; i < batch->len; i++)
		chat_outbox_flush_listed (batch->pdata[i]);
	g_ptr_array_set_size (batch, 0);
	return G_SOURCE_CONTINUE;
}

static void
flush_source_finalize (GSource *source)
{
	ChatFlushSource *fs = (ChatFlushSource *) source;

	/* every listed outbox holds a reference on this source: the list is empty by now */
	g_ptr_array_unref (fs->dirty);
	g_ptr_array_unref (fs->spare);
}

static GSourceFuncs flush_source_funcs = {
    .prepare = flush_source_prepare,
    .check = flush_source_check,
    .dispatch = flush_source_dispatch,
    .finalize = flush_source_finalize,
};

GSource *
chat_flush_source_new (void)
{
	GSource *source = g_source_new (&flush_source_funcs, sizeof (ChatFlushSource));
	ChatFlushSource *fs = (ChatFlushSource *) source;

	fs->dirty = g_ptr_array_new_with_free_func (g_object_unref);
	fs->spare = g_ptr_array_new_with_free_func (g_object_unref);
	/* same priority as socket I/O: a lower one starves exactly when the server is busiest */
	g_source_set_priority (source, G_PRIORITY_DEFAULT);
	g_source_set_static_name (source, "chathub flush");
	chat_histogram_init (&fs->statistics.write_bytes, byte_bounds, G_N_ELEMENTS (byte_bounds));
	chat_histogram_init (&fs->statistics.waiting_bytes,
			     byte_bounds,
			     G_N_ELEMENTS (byte_bounds));
	return source;
}

void
chat_flush_source_destroy (GSource *source)
{
	ChatFlushSource *fs = (ChatFlushSource *) source;
	g_autoptr (GPtrArray) listed = g_steal_pointer (&fs->dirty);

	/* listed outboxes and the source hold references on each other: write them now, as an
	 * outbox does by itself once the source is destroyed, and let them go */
	g_source_destroy (source);
	fs->dirty = g_ptr_array_new_with_free_func (g_object_unref);
	for (guint i = 0; i < listed->len; i++)
		chat_outbox_flush_listed (listed->pdata[i]);
}

void
chat_flush_source_add (GSource *source, ChatOutbox *outbox)
{
	g_ptr_array_add (((ChatFlushSource *) source)->dirty, g_object_ref (outbox));
}

ChatFlushStatistics *
chat_flush_source_get_statistics (GSource *source)
{
	return &((ChatFlushSource *) source)->statistics;
}
