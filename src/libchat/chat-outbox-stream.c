/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-outbox-stream-private.h"

struct _ChatOutboxStream {
	GIOStream parent_instance;
	GInputStream *input; /* the stolen connection's (buffered) input */
	ChatOutbox *outbox;
};

G_DEFINE_FINAL_TYPE (ChatOutboxStream, chat_outbox_stream, G_TYPE_IO_STREAM)

static GInputStream *
outbox_stream_get_input_stream (GIOStream *stream)
{
	return CHAT_OUTBOX_STREAM (stream)->input;
}

static GOutputStream *
outbox_stream_get_output_stream (GIOStream *stream)
{
	return G_OUTPUT_STREAM (CHAT_OUTBOX_STREAM (stream)->outbox);
}

static gboolean
outbox_stream_close_fn (GIOStream *stream, GCancellable *cancellable, GError **error)
{
	chat_outbox_close_now (CHAT_OUTBOX_STREAM (stream)->outbox);
	return TRUE;
}

static void
outbox_stream_close_async (GIOStream *stream,
			   int io_priority,
			   GCancellable *cancellable,
			   GAsyncReadyCallback callback,
			   gpointer user_data)
{
	ChatOutboxStream *self = CHAT_OUTBOX_STREAM (stream);
	GTask *task = g_task_new (stream, cancellable, callback, user_data);

	g_task_set_source_tag (task, outbox_stream_close_async);
	chat_outbox_close_async (self->outbox, task);
}

static gboolean
outbox_stream_close_finish (GIOStream *stream, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

static void
chat_outbox_stream_finalize (GObject *object)
{
	ChatOutboxStream *self = CHAT_OUTBOX_STREAM (object);

	g_clear_object (&self->input);
	g_clear_object (&self->outbox);
	G_OBJECT_CLASS (chat_outbox_stream_parent_class)->finalize (object);
}

static void
chat_outbox_stream_class_init (ChatOutboxStreamClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);
	GIOStreamClass *stream_class = G_IO_STREAM_CLASS (klass);

	object_class->finalize = chat_outbox_stream_finalize;
	stream_class->get_input_stream = outbox_stream_get_input_stream;
	stream_class->get_output_stream = outbox_stream_get_output_stream;
	stream_class->close_fn = outbox_stream_close_fn;
	stream_class->close_async = outbox_stream_close_async;
	stream_class->close_finish = outbox_stream_close_finish;
}

static void
chat_outbox_stream_init (ChatOutboxStream *self)
{
}
GIOStream *
chat_outbox_stream_new (ChatOutbox *outbox)
{
	ChatOutboxStream *stream = g_object_new (CHAT_TYPE_OUTBOX_STREAM, NULL);

	stream->input = g_object_ref (G_INPUT_STREAM (chat_outbox_get_inbox (outbox)));
	stream->outbox = g_object_ref (outbox);
	return G_IO_STREAM (stream);
}
