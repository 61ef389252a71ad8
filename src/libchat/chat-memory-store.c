/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-memory-store.h"
#include "chat-frame-private.h"
#include "chat-message-private.h"
#include "chat-store-private.h"

/**
 * SECTION:chat-memory-store
 * @title: ChatMemoryStore
 * @short_description: a message store that lives as long as the process
 *
 * A #ChatMemoryStore keeps each stream's newest messages in memory. Nothing survives the
 * process, so every instance has an epoch of its own: a client that recovers after a
 * restart is told that its history is gone. It behaves like #ChatSqliteStore otherwise,
 * operations completing on a later main-loop iteration included.
 */

/**
 * ChatMemoryStore:
 *
 * A #ChatStore in memory.
 *
 * Since: 1.0
 */

/* one retained message: 24 bytes in the ring plus its GBytes and frame, which is what the
 * hub relayed: reads give its payload, the JSON text */
typedef struct {
	guint64 offset;
	gint64 timestamp;
	GBytes *frame;
} MemoryEntry;

typedef struct {
	guint64 top;	  /* committed: the latest offset stored */
	guint64 assigned; /* offsets handed out to appends not yet completed */
	guint64 delivered;
	MemoryEntry *ring; /* a circular buffer of @len entries from @head */
	guint capacity;
	guint head;
	guint len;
} MemoryStream;

typedef enum { OP_APPEND, OP_READ } OpType;

typedef struct _MemoryOp MemoryOp;
struct _MemoryOp {
	OpType type;
	MemoryOp *next; /* in ChatMemoryStore.ops */
	/* OP_APPEND: no GTask, one allocation (entries and frames follow the op) */
	ChatStoreAppendFunc done;
	gpointer done_data;
	ChatStoreEntry *entries; /* messages owned */
	GBytes **frames;
	guint n_entries;
	/* OP_READ */
	GTask *task;
	ChatStoreRange range;
};

struct _ChatMemoryStore {
	GObject parent_instance;

	GHashTable *streams[2]; /* chat_store_streams_*: MemoryStream* */
	char *epoch;
	guint64 last_id;
	/* completed in order by @complete_source */
	MemoryOp *ops;
	MemoryOp *ops_tail;
	GMainContext *context; /* where operations complete */
	GString *scratch;      /* where messages are serialized before they are framed */
	GSource *complete_source;
	GSource *trim_source;

	ChatStoreRetention retention;
	ChatStoreStatistics statistics;
};

static void
chat_memory_store_iface_init (ChatStoreInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ChatMemoryStore,
			       chat_memory_store,
			       G_TYPE_OBJECT,
			       G_IMPLEMENT_INTERFACE (CHAT_TYPE_STORE,
						      chat_memory_store_iface_init))

static void
memory_stream_free (MemoryStream *stream)
{
	for (guint i = 0; i < stream->len; i++)
		g_bytes_unref (stream->ring[(stream->head + i) % stream->capacity].frame);
	g_free (stream->ring);
	g_free (stream);
}

static MemoryOp *
append_op_new (const ChatStoreEntry *entries,
	       guint n_entries,
	       ChatStoreAppendFunc done,
	       gpointer user_data)
{
	MemoryOp *op = g_malloc0 (sizeof (MemoryOp) +
				  n_entries * (sizeof (ChatStoreEntry) + sizeof (GBytes *)));

	G_STATIC_ASSERT (sizeof (MemoryOp) % sizeof (gpointer) == 0);
	G_STATIC_ASSERT (sizeof (ChatStoreEntry) % sizeof (gpointer) == 0);
	op->type = OP_APPEND;
	op->done = done;
	op->done_data = user_data;
	op->n_entries = n_entries;
	op->entries = (ChatStoreEntry *) (op + 1);
	op->frames = (GBytes **) (op->entries + n_entries);
	for (guint i = 0; i < n_entries; i++) {
		op->entries[i] = entries[i];
		g_object_ref (op->entries[i].message);
	}
	return op;
}

static void
chat_memory_store_read_async (ChatStore *store,
			      ChatStreamKind kind,
			      guint64 stream_id,
			      guint64 after,
			      guint64 before,
			      guint limit,
			      gboolean newest,
			      GCancellable *cancellable,
			      GAsyncReadyCallback callback,
			      gpointer user_data);

static MemoryOp *
read_op_new (ChatMemoryStore *self,
	     GCancellable *cancellable,
	     GAsyncReadyCallback callback,
	     gpointer user_data)
{
	MemoryOp *op = g_new0 (MemoryOp, 1);

	op->type = OP_READ;
	op->task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (op->task, chat_memory_store_read_async);
	return op;
}

static void
memory_op_free (MemoryOp *op)
{
	for (guint i = 0; i < op->n_entries; i++) {
		g_clear_pointer (&op->frames[i], g_bytes_unref);
		g_object_unref (op->entries[i].message);
	}
	g_clear_object (&op->task);
	g_free (op);
}

static MemoryStream *
ensure_stream (ChatMemoryStore *self, ChatStreamKind kind, guint64 stream_id)
{
	MemoryStream *stream = chat_store_streams_lookup (self->streams, kind, stream_id);

	if (stream == NULL) {
		stream = g_new0 (MemoryStream, 1);
		chat_store_streams_insert (self->streams, kind, stream_id, stream);
	}
	return stream;
}

static MemoryEntry *
stream_entry (MemoryStream *stream, guint index)
{
	return &stream->ring[(stream->head + index) % stream->capacity];
}

static void
stream_push (MemoryStream *stream, guint64 offset, gint64 timestamp, GBytes *frame)
{
	MemoryEntry *entry;

	if (stream->len == stream->capacity) {
		guint capacity = MAX (8, stream->capacity * 2);
		MemoryEntry *ring = g_new (MemoryEntry, capacity);

		for (guint i = 0; i < stream->len; i++)
			ring[i] = *stream_entry (stream, i);
		g_free (stream->ring);
		stream->ring = ring;
		stream->capacity = capacity;
		stream->head = 0;
	}
	entry = &stream->ring[(stream->head + stream->len) % stream->capacity];
	entry->offset = offset;
	entry->timestamp = timestamp;
	entry->frame = g_bytes_ref (frame);
	stream->len++;
}

/* Whether the oldest retained message of @stream has to go. Only a prefix is ever removed,
 * so the retained offsets stay contiguous. */
static gboolean
front_expired (ChatMemoryStore *self, ChatStreamKind kind, MemoryStream *stream, gint64 now)
{
	const ChatStoreRetention *retention = &self->retention;
	MemoryEntry *front = stream_entry (stream, 0);
	gboolean over_size = front->offset + retention->history_size <= stream->top;
	gboolean over_history_ttl =
	    front->timestamp < chat_store_retention_cutoff (retention->history_ttl, now);

	if (kind == CHAT_STREAM_KIND_ROOM)
		return over_size || over_history_ttl;
	/* direct messages: kept until dm-ttl, unless delivered and old or many */
	if (front->timestamp < chat_store_retention_cutoff (retention->dm_ttl, now))
		return TRUE;
	return front->offset <= stream->delivered && (over_size || over_history_ttl);
}

static void
trim_stream (ChatMemoryStore *self, ChatStreamKind kind, MemoryStream *stream, gint64 now)
{
	while (stream->len > 0 && front_expired (self, kind, stream, now)) {
		MemoryEntry *front = stream_entry (stream, 0);

		g_bytes_unref (front->frame);
		stream->head = (stream->head + 1) % stream->capacity;
		stream->len--;
		self->statistics.trimmed++;
		self->statistics.retained--;
	}
	/* give back the memory of a burst that has been trimmed away */
	if (stream->len == 0 && stream->capacity > 8) {
		g_clear_pointer (&stream->ring, g_free);
		stream->capacity = 0;
		stream->head = 0;
	}
}

static void
trim_all (ChatMemoryStore *self)
{
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;

	for (guint kind = 0; kind < G_N_ELEMENTS (self->streams); kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value))
			trim_stream (self, kind, value, now);
	}
}

static gboolean
on_trim_timer (gpointer user_data)
{
	trim_all (CHAT_MEMORY_STORE (user_data));
	return G_SOURCE_CONTINUE;
}

static void
complete_append (ChatMemoryStore *self, MemoryOp *op, gint64 now)
{
	for (guint i = 0; i < op->n_entries; i++) {
		ChatStoreEntry *entry = &op->entries[i];
		MemoryStream *stream;
		ChatMessage *message = entry->message;

		self->last_id = MAX (self->last_id, chat_message_get_id (message));
		if (entry->stream_id == 0)
			continue;
		stream = ensure_stream (self, entry->kind, entry->stream_id);
		stream_push (stream,
			     chat_message_get_offset (message),
			     chat_message_get_timestamp (message),
			     op->frames[i]);
		stream->top = chat_message_get_offset (message);
		self->statistics.retained++;
	}
	for (guint i = 0; i < op->n_entries; i++)
		if (op->entries[i].stream_id != 0)
			trim_stream (
			    self,
			    op->entries[i].kind,
			    ensure_stream (self, op->entries[i].kind, op->entries[i].stream_id),
			    now);
}

static void
complete_read (ChatMemoryStore *self, MemoryOp *op)
{
	const ChatStoreRange *range = &op->range;
	MemoryStream *stream =
	    chat_store_streams_lookup (self->streams, range->kind, range->stream_id);
	g_autoptr (GPtrArray) texts =
	    g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	guint start = 0, end = 0;

	if (stream != NULL) {
		/* the retained offsets are contiguous: indexes follow from them */
		guint64 first =
		    stream->len > 0 ? stream_entry (stream, 0)->offset : stream->top + 1;
		guint64 low = MAX (range->after + 1, first);
		guint64 high =
		    range->before == 0 ? stream->top : MIN (range->before - 1, stream->top);

		if (low <= high) {
			start = (guint) (low - first);
			end = (guint) (high - first) + 1;
		}
		if (range->limit != 0 && end - start > range->limit) {
			if (range->newest)
				start = end - range->limit;
			else
				end = start + range->limit;
		}
		for (guint i = start; i < end; i++)
			g_ptr_array_add (texts,
					 chat_frame_get_payload (stream_entry (stream, i)->frame));
	}
	g_task_return_pointer (op->task,
			       g_steal_pointer (&texts),
			       (GDestroyNotify) g_ptr_array_unref);
}

/* Completes every operation queued before this iteration, in order; those that their
 * completions queue wait for the next one. */
static gboolean
on_complete (gpointer user_data)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (user_data);
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;
	guint64 group = 0;
	gint64 commit_time_us = 0;
	MemoryOp *op, *next;

	g_clear_pointer (&self->complete_source, g_source_unref);
	g_object_ref (self);
	op = self->ops;
	self->ops = self->ops_tail = NULL;
	for (; op != NULL; op = next) {
		next = op->next;
		if (op->type == OP_APPEND) {
			gint64 start = g_get_monotonic_time ();

			for (guint i = 0; i < op->n_entries; i++)
				group += op->entries[i].stream_id != 0;
			complete_append (self, op, now);
			commit_time_us += g_get_monotonic_time () - start;
			op->done (op->done_data, op->frames, NULL);
		} else {
			complete_read (self, op);
		}
		memory_op_free (op);
	}
	chat_store_statistics_add_group (&self->statistics, group, commit_time_us);
	g_object_unref (self);
	return G_SOURCE_REMOVE;
}

static void
queue_op (ChatMemoryStore *self, MemoryOp *op)
{
	if (self->ops_tail != NULL)
		self->ops_tail->next = op;
	else
		self->ops = op;
	self->ops_tail = op;
	if (self->complete_source != NULL)
		return;
	self->complete_source = chat_store_attach_source (g_idle_source_new (),
							  "chathub memory store",
							  on_complete,
							  self,
							  self->context);
	/* queued operations keep the store */
	g_source_set_callback (self->complete_source,
			       on_complete,
			       g_object_ref (self),
			       g_object_unref);
}

static guint64
chat_memory_store_get_last_id (ChatStore *store)
{
	return CHAT_MEMORY_STORE (store)->last_id;
}

static void
chat_memory_store_get_stream (ChatStore *store,
			      ChatStreamKind kind,
			      guint64 stream_id,
			      guint64 *top,
			      guint64 *first,
			      const char **epoch)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (store);
	MemoryStream *stream = chat_store_streams_lookup (self->streams, kind, stream_id);

	*top = stream != NULL ? stream->top : 0;
	*first = stream != NULL && stream->len > 0 ? stream_entry (stream, 0)->offset : *top + 1;
	*epoch = self->epoch;
}

static void
chat_memory_store_append (ChatStore *store,
			  const ChatStoreEntry *entries,
			  guint n_entries,
			  ChatStoreAppendFunc done,
			  gpointer user_data)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (store);
	MemoryOp *op = append_op_new (entries, n_entries, done, user_data);

	for (guint i = 0; i < n_entries; i++) {
		MemoryStream *stream;

		if (entries[i].stream_id == 0)
			continue; /* an id only */
		stream = ensure_stream (self, entries[i].kind, entries[i].stream_id);
		chat_message_set_offset (entries[i].message, ++stream->assigned);
		/* kept and relayed as it is: serialized once, in a frame of the exact size (the
		 * serializer's buffer has room to spare, which retained for long would cost
		 * more than the copy) */
		op->frames[i] = chat_message_to_exact_frame (entries[i].message, self->scratch);
	}
	queue_op (self, op);
}

static void
chat_memory_store_read_async (ChatStore *store,
			      ChatStreamKind kind,
			      guint64 stream_id,
			      guint64 after,
			      guint64 before,
			      guint limit,
			      gboolean newest,
			      GCancellable *cancellable,
			      GAsyncReadyCallback callback,
			      gpointer user_data)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (store);
	MemoryOp *op = read_op_new (self, cancellable, callback, user_data);

	op->range = (ChatStoreRange){kind, stream_id, after, before, limit, newest};
	queue_op (self, op);
}

static guint64
chat_memory_store_get_delivered (ChatStore *store, guint64 user_id)
{
	MemoryStream *stream = chat_store_streams_lookup (CHAT_MEMORY_STORE (store)->streams,
							  CHAT_STREAM_KIND_USER,
							  user_id);

	return stream != NULL ? stream->delivered : 0;
}

static void
chat_memory_store_set_delivered (ChatStore *store, guint64 user_id, guint64 offset)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (store);
	MemoryStream *stream = ensure_stream (self, CHAT_STREAM_KIND_USER, user_id);

	stream->delivered = MAX (stream->delivered, offset);
}

static GVariant *
chat_memory_store_get_statistics (ChatStore *store)
{
	return chat_store_statistics_to_variant (&CHAT_MEMORY_STORE (store)->statistics);
}

static void
chat_memory_store_iface_init (ChatStoreInterface *iface)
{
	iface->get_last_id = chat_memory_store_get_last_id;
	iface->get_stream = chat_memory_store_get_stream;
	iface->append = chat_memory_store_append;
	iface->read_async = chat_memory_store_read_async;
	iface->read_finish = chat_store_task_read_finish;
	iface->get_delivered = chat_memory_store_get_delivered;
	iface->set_delivered = chat_memory_store_set_delivered;
	iface->get_statistics = chat_memory_store_get_statistics;
}

static void
chat_memory_store_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	chat_store_retention_get_property (&CHAT_MEMORY_STORE (object)->retention,
					   object,
					   prop_id,
					   value,
					   pspec);
}

static void
chat_memory_store_set_property (GObject *object,
				guint prop_id,
				const GValue *value,
				GParamSpec *pspec)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (object);

	/* a shorter retention applies at once, not on the next beat */
	if (chat_store_retention_set_property (&self->retention, object, prop_id, value, pspec))
		trim_all (self);
}

static void
chat_memory_store_dispose (GObject *object)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (object);

	chat_store_clear_source (&self->trim_source);
	G_OBJECT_CLASS (chat_memory_store_parent_class)->dispose (object);
}

static void
chat_memory_store_finalize (GObject *object)
{
	ChatMemoryStore *self = CHAT_MEMORY_STORE (object);

	/* every queued operation is completed by the idle, which holds a reference */
	g_assert (self->ops == NULL);
	g_string_free (self->scratch, TRUE);
	chat_store_streams_clear (self->streams);
	g_free (self->epoch);
	g_main_context_unref (self->context);
	G_OBJECT_CLASS (chat_memory_store_parent_class)->finalize (object);
}

static void
chat_memory_store_class_init (ChatMemoryStoreClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->get_property = chat_memory_store_get_property;
	object_class->set_property = chat_memory_store_set_property;
	object_class->dispose = chat_memory_store_dispose;
	object_class->finalize = chat_memory_store_finalize;

	chat_store_override_properties (object_class);
}

static void
chat_memory_store_init (ChatMemoryStore *self)
{
	chat_store_streams_init (self->streams, (GDestroyNotify) memory_stream_free);
	/* nothing survives the process: a new instance is a new history */
	self->epoch = g_uuid_string_random ();
	/* and no last id either: ids start from the clock, in microseconds, so a restarted
	 * process does not give an id again unless the last one gave more than one per µs */
	self->last_id = (guint64) g_get_real_time ();
	self->scratch = g_string_sized_new (256);
	self->context = g_main_context_ref_thread_default ();
	self->trim_source = chat_store_attach_source (
	    g_timeout_source_new_seconds (CHAT_STORE_TRIM_INTERVAL_SECONDS),
	    "chathub memory store trim",
	    on_trim_timer,
	    self,
	    self->context);
}

/**
 * chat_memory_store_new:
 *
 * Creates an empty store in memory with the default retention. Its operations complete on
 * the thread-default main context of the caller.
 *
 * Returns: (transfer full): a new #ChatMemoryStore
 *
 * Since: 1.0
 */
ChatMemoryStore *
chat_memory_store_new (void)
{
	return g_object_new (CHAT_TYPE_MEMORY_STORE, NULL);
}
