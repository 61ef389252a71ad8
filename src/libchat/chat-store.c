/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-i18n-private.h"
#include "chat-store-private.h"

/**
 * SECTION:chat-store
 * @title: ChatStore
 * @short_description: where the hub keeps messages
 *
 * A #ChatStore keeps the messages a hub relays, so that a client that was away can recover
 * what it missed and read a room's history. Each room is a stream, and so are a user's
 * direct messages: every stored message gets an offset, 1, 2, 3, … without holes within its
 * stream, and every stream has an epoch, a string that changes whenever the stream's history
 * may have been lost.
 *
 * chathub has two implementations: #ChatSqliteStore, a database file (the default of the
 * daemon), and #ChatMemoryStore, which forgets everything with the process. Programs create
 * a store, set its retention (#ChatStore:history-size, #ChatStore:history-ttl,
 * #ChatStore:dm-ttl) and hand it to the hub; reading and writing is the hub's business.
 */

/**
 * ChatStore:
 *
 * A message store. The interface's operations are internal to the library.
 *
 * Since: 1.0
 */

/**
 * ChatStoreInterface:
 *
 * The virtual functions of #ChatStore. Its members are private to the library: stores are
 * implemented inside it (#ChatSqliteStore, #ChatMemoryStore), not by applications.
 *
 * Since: 1.0
 */

G_DEFINE_ENUM_TYPE (ChatStreamKind,
		    chat_stream_kind,
		    G_DEFINE_ENUM_VALUE (CHAT_STREAM_KIND_ROOM, "room"),
		    G_DEFINE_ENUM_VALUE (CHAT_STREAM_KIND_USER, "user"))

G_DEFINE_ENUM_TYPE (ChatStoreSync,
		    chat_store_sync,
		    G_DEFINE_ENUM_VALUE (CHAT_STORE_SYNC_NORMAL, "normal"),
		    G_DEFINE_ENUM_VALUE (CHAT_STORE_SYNC_FULL, "full"))

G_DEFINE_INTERFACE (ChatStore, chat_store, G_TYPE_OBJECT)

static void
chat_store_default_init (ChatStoreInterface *iface)
{
	chat_i18n_init ();

	/**
	 * ChatStore:history-size:
	 *
	 * How many messages a room keeps, the newest. A user's direct messages are trimmed to
	 * this size too, but only those already delivered.
	 *
	 * Since: 1.0
	 */
	g_object_interface_install_property (
	    iface,
	    g_param_spec_uint ("history-size",
			       NULL,
			       "How many messages a room keeps",
			       1,
			       G_MAXUINT,
			       CHAT_STORE_DEFAULT_HISTORY_SIZE,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY |
				   G_PARAM_STATIC_STRINGS));
	/**
	 * ChatStore:history-ttl:
	 *
	 * How long a room message is kept, in seconds; 0 for no time limit. Delivered direct
	 * messages follow it too.
	 *
	 * Since: 1.0
	 */
	g_object_interface_install_property (
	    iface,
	    g_param_spec_uint64 ("history-ttl",
				 NULL,
				 "How long a room message is kept, in seconds",
				 0,
				 G_MAXINT64 / G_USEC_PER_SEC,
				 CHAT_STORE_DEFAULT_HISTORY_TTL,
				 G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY |
				     G_PARAM_STATIC_STRINGS));
	/**
	 * ChatStore:dm-ttl:
	 *
	 * How long a direct message is kept, delivered or not, in seconds; 0 for no time
	 * limit.
	 *
	 * Since: 1.0
	 */
	g_object_interface_install_property (
	    iface,
	    g_param_spec_uint64 ("dm-ttl",
				 NULL,
				 "How long a direct message is kept, in seconds",
				 0,
				 G_MAXINT64 / G_USEC_PER_SEC,
				 CHAT_STORE_DEFAULT_DM_TTL,
				 G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY |
				     G_PARAM_STATIC_STRINGS));
}

/**
 * chat_store_get_statistics:
 * @self: a #ChatStore
 *
 * Gets the store's counters since it was created, as a dictionary of `a{st}`: `stored`
 * (messages stored), `trimmed` (messages removed by retention), `failed` (messages whose
 * append failed), `groups` (group commits), `largest-group` (messages in the largest one),
 * `commit-time-us` (the total time spent committing groups, in microseconds; stored divided
 * by it is the ingest rate) and `retained` (messages kept now).
 *
 * Returns: (transfer full): a floating-free #GVariant of type `a{st}`
 *
 * Since: 1.0
 */
GVariant *
chat_store_get_statistics (ChatStore *self)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), NULL);
	return CHAT_STORE_GET_IFACE (self)->get_statistics (self);
}

guint64
chat_store_get_last_id (ChatStore *self)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), 0);
	return CHAT_STORE_GET_IFACE (self)->get_last_id (self);
}

void
chat_store_get_stream (ChatStore *self,
		       ChatStreamKind kind,
		       guint64 stream_id,
		       guint64 *top,
		       guint64 *first,
		       const char **epoch)
{
	guint64 top_dummy, first_dummy;
	const char *epoch_dummy;

	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (kind <= CHAT_STREAM_KIND_USER);

	CHAT_STORE_GET_IFACE (self)->get_stream (self,
						 kind,
						 stream_id,
						 top != NULL ? top : &top_dummy,
						 first != NULL ? first : &first_dummy,
						 epoch != NULL ? epoch : &epoch_dummy);
}

static gboolean
entries_valid (const ChatStoreEntry *entries, guint n_entries)
{
	g_return_val_if_fail (entries != NULL || n_entries == 0, FALSE);
	for (guint i = 0; i < n_entries; i++) {
		g_return_val_if_fail (CHAT_IS_MESSAGE (entries[i].message), FALSE);
		g_return_val_if_fail (entries[i].kind <= CHAT_STREAM_KIND_USER, FALSE);
	}
	return TRUE;
}

/* chat_store_append_async() on a store that implements append */
static void
on_appended_for_task (gpointer user_data, GBytes *const *frames, const GError *error)
{
	g_autoptr (GTask) task = user_data;

	if (error != NULL)
		g_task_return_error (task, g_error_copy (error));
	else
		g_task_return_boolean (task, TRUE);
}

void
chat_store_append_async (ChatStore *self,
			 const ChatStoreEntry *entries,
			 guint n_entries,
			 GCancellable *cancellable,
			 GAsyncReadyCallback callback,
			 gpointer user_data)
{
	ChatStoreInterface *iface;
	GTask *task;

	g_return_if_fail (CHAT_IS_STORE (self));
	if (!entries_valid (entries, n_entries))
		return;
	iface = CHAT_STORE_GET_IFACE (self);
	if (iface->append == NULL) {
		iface->append_async (self, entries, n_entries, cancellable, callback, user_data);
		return;
	}
	task = g_task_new (self, NULL, callback, user_data);
	g_task_set_source_tag (task, chat_store_append_async);
	iface->append (self, entries, n_entries, on_appended_for_task, task);
}

gboolean
chat_store_append_finish (ChatStore *self, GAsyncResult *result, GError **error)
{
	ChatStoreInterface *iface;

	g_return_val_if_fail (CHAT_IS_STORE (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
	iface = CHAT_STORE_GET_IFACE (self);
	if (iface->append == NULL)
		return iface->append_finish (self, result, error);
	return chat_store_task_append_finish (self, result, error);
}

typedef struct {
	ChatStoreAppendFunc done;
	gpointer user_data;
} AppendCall;

/* chat_store_append() on a store that implements only append_async */
static void
on_task_appended (GObject *source, GAsyncResult *result, gpointer user_data)
{
	AppendCall *call = user_data;
	g_autoptr (GError) error = NULL;

	CHAT_STORE_GET_IFACE (source)->append_finish (CHAT_STORE (source), result, &error);
	call->done (call->user_data, NULL, error);
	g_free (call);
}

void
chat_store_append (ChatStore *self,
		   const ChatStoreEntry *entries,
		   guint n_entries,
		   ChatStoreAppendFunc done,
		   gpointer user_data)
{
	ChatStoreInterface *iface;
	AppendCall *call;

	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (done != NULL);
	if (!entries_valid (entries, n_entries))
		return;
	iface = CHAT_STORE_GET_IFACE (self);
	if (iface->append != NULL) {
		iface->append (self, entries, n_entries, done, user_data);
		return;
	}
	call = g_new (AppendCall, 1);
	call->done = done;
	call->user_data = user_data;
	iface->append_async (self, entries, n_entries, NULL, on_task_appended, call);
}

void
chat_store_read_async (ChatStore *self,
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
	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (kind <= CHAT_STREAM_KIND_USER);
	CHAT_STORE_GET_IFACE (self)->read_async (self,
						 kind,
						 stream_id,
						 after,
						 before,
						 limit,
						 newest,
						 cancellable,
						 callback,
						 user_data);
}

GPtrArray *
chat_store_read_finish (ChatStore *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);
	return CHAT_STORE_GET_IFACE (self)->read_finish (self, result, error);
}

guint64
chat_store_get_delivered (ChatStore *self, guint64 user_id)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), 0);
	return CHAT_STORE_GET_IFACE (self)->get_delivered (self, user_id);
}

void
chat_store_set_delivered (ChatStore *self, guint64 user_id, guint64 offset)
{
	g_return_if_fail (CHAT_IS_STORE (self));
	CHAT_STORE_GET_IFACE (self)->set_delivered (self, user_id, offset);
}

gboolean
chat_store_is_ready (ChatStore *self)
{
	ChatStoreInterface *iface;

	g_return_val_if_fail (CHAT_IS_STORE (self), FALSE);
	iface = CHAT_STORE_GET_IFACE (self);
	return iface->is_ready == NULL || iface->is_ready (self);
}

gboolean
chat_store_set_broker (ChatStore *self, const ChatStoreBroker *broker, gpointer data)
{
	ChatStoreInterface *iface;

	g_return_val_if_fail (CHAT_IS_STORE (self), FALSE);
	iface = CHAT_STORE_GET_IFACE (self);
	return iface->set_broker != NULL && iface->set_broker (self, broker, data);
}

gboolean
chat_store_watch (ChatStore *self, ChatStreamKind kind, guint64 stream_id)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), FALSE);
	g_return_val_if_fail (CHAT_STORE_GET_IFACE (self)->watch != NULL, FALSE);
	return CHAT_STORE_GET_IFACE (self)->watch (self, kind, stream_id);
}

void
chat_store_unwatch (ChatStore *self, ChatStreamKind kind, guint64 stream_id)
{
	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (CHAT_STORE_GET_IFACE (self)->unwatch != NULL);
	CHAT_STORE_GET_IFACE (self)->unwatch (self, kind, stream_id);
}

void
chat_store_publish_event (ChatStore *self, ChatStreamKind kind, guint64 stream_id, GBytes *text)
{
	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (CHAT_STORE_GET_IFACE (self)->publish_event != NULL);
	CHAT_STORE_GET_IFACE (self)->publish_event (self, kind, stream_id, text);
}

void
chat_store_presence_set (ChatStore *self, guint64 room_id, guint64 user_id, gboolean present)
{
	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (CHAT_STORE_GET_IFACE (self)->presence_set != NULL);
	CHAT_STORE_GET_IFACE (self)->presence_set (self, room_id, user_id, present);
}

void
chat_store_presence_async (ChatStore *self,
			   guint64 room_id,
			   GAsyncReadyCallback callback,
			   gpointer user_data)
{
	g_return_if_fail (CHAT_IS_STORE (self));
	g_return_if_fail (CHAT_STORE_GET_IFACE (self)->presence_async != NULL);
	CHAT_STORE_GET_IFACE (self)->presence_async (self, room_id, callback, user_data);
}

GArray *
chat_store_presence_finish (ChatStore *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (CHAT_IS_STORE (self), NULL);
	return CHAT_STORE_GET_IFACE (self)->presence_finish (self, result, error);
}

/* One warning per failure streak, one message when it ends: a full disk would otherwise
 * write a line per group. */
void
chat_store_log_failure (gboolean *failing, const GError *error)
{
	g_autofree char *text = NULL;

	if (*failing)
		return;
	*failing = TRUE;
	text = g_strdup_printf (_ ("The message store failed, messages are refused until it "
				   "recovers: %s"),
				error->message);
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_WARNING,
			  "CHATHUB_EVENT",
			  "store-failed",
			  "MESSAGE",
			  "%s",
			  text);
}

void
chat_store_log_recovery (gboolean *failing)
{
	if (!*failing)
		return;
	*failing = FALSE;
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_MESSAGE,
			  "CHATHUB_EVENT",
			  "store-recovered",
			  "MESSAGE",
			  "%s",
			  _ ("The message store recovered, messages are stored again"));
}

/* ---- shared by the implementations ---- */

/* The interface declares the properties once; each implementation keeps the values in a
 * ChatStoreRetention and passes these ids to the helpers below. */
void
chat_store_override_properties (GObjectClass *object_class)
{
	g_object_class_override_property (object_class,
					  CHAT_STORE_PROP_HISTORY_SIZE,
					  "history-size");
	g_object_class_override_property (object_class, CHAT_STORE_PROP_HISTORY_TTL, "history-ttl");
	g_object_class_override_property (object_class, CHAT_STORE_PROP_DM_TTL, "dm-ttl");
}

void
chat_store_retention_get_property (const ChatStoreRetention *retention,
				   GObject *object,
				   guint prop_id,
				   GValue *value,
				   GParamSpec *pspec)
{
	switch (prop_id) {
	case CHAT_STORE_PROP_HISTORY_SIZE:
		g_value_set_uint (value, retention->history_size);
		break;
	case CHAT_STORE_PROP_HISTORY_TTL:
		g_value_set_uint64 (value, retention->history_ttl);
		break;
	case CHAT_STORE_PROP_DM_TTL:
		g_value_set_uint64 (value, retention->dm_ttl);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

gboolean
chat_store_retention_set_property (ChatStoreRetention *retention,
				   GObject *object,
				   guint prop_id,
				   const GValue *value,
				   GParamSpec *pspec)
{
	guint64 *ttl;

	switch (prop_id) {
	case CHAT_STORE_PROP_HISTORY_SIZE:
		if (retention->history_size == g_value_get_uint (value))
			return FALSE;
		retention->history_size = g_value_get_uint (value);
		break;
	case CHAT_STORE_PROP_HISTORY_TTL:
	case CHAT_STORE_PROP_DM_TTL:
		ttl = prop_id == CHAT_STORE_PROP_DM_TTL ? &retention->dm_ttl
							: &retention->history_ttl;
		if (*ttl == g_value_get_uint64 (value))
			return FALSE;
		*ttl = g_value_get_uint64 (value);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
		return FALSE;
	}
	g_object_notify_by_pspec (object, pspec);
	return TRUE;
}

gint64
chat_store_retention_cutoff (guint64 ttl, gint64 now)
{
	return ttl == 0 ? G_MININT64 : now - (gint64) ttl;
}

void
chat_store_statistics_add_group (ChatStoreStatistics *statistics,
				 guint64 n_messages,
				 gint64 commit_time_us)
{
	statistics->stored += n_messages;
	statistics->commit_time_us += (guint64) commit_time_us;
	if (n_messages > 0) {
		statistics->groups++;
		statistics->largest_group = MAX (statistics->largest_group, n_messages);
	}
}

GVariant *
chat_store_statistics_to_variant (const ChatStoreStatistics *statistics)
{
	GVariantBuilder builder;

	g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{st}"));
	g_variant_builder_add (&builder, "{st}", "stored", statistics->stored);
	g_variant_builder_add (&builder, "{st}", "trimmed", statistics->trimmed);
	g_variant_builder_add (&builder, "{st}", "failed", statistics->failed);
	g_variant_builder_add (&builder, "{st}", "groups", statistics->groups);
	g_variant_builder_add (&builder, "{st}", "largest-group", statistics->largest_group);
	g_variant_builder_add (&builder, "{st}", "commit-time-us", statistics->commit_time_us);
	g_variant_builder_add (&builder, "{st}", "retained", statistics->retained);
	return g_variant_ref_sink (g_variant_builder_end (&builder));
}

void
chat_store_streams_init (GHashTable *streams[2], GDestroyNotify free_stream)
{
	for (guint kind = 0; kind < 2; kind++)
		streams[kind] =
		    g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, free_stream);
}

void
chat_store_streams_clear (GHashTable *streams[2])
{
	for (guint kind = 0; kind < 2; kind++)
		g_clear_pointer (&streams[kind], g_hash_table_unref);
}

gpointer
chat_store_streams_lookup (GHashTable *streams[2], ChatStreamKind kind, guint64 stream_id)
{
	return g_hash_table_lookup (streams[kind], &stream_id);
}

void
chat_store_streams_insert (GHashTable *streams[2],
			   ChatStreamKind kind,
			   guint64 stream_id,
			   gpointer stream)
{
	g_hash_table_insert (streams[kind], g_memdup2 (&stream_id, sizeof stream_id), stream);
}

ChatStoreEntry *
chat_store_entries_dup (const ChatStoreEntry *entries, guint n_entries)
{
	ChatStoreEntry *copy = g_new (ChatStoreEntry, n_entries);

	for (guint i = 0; i < n_entries; i++) {
		copy[i] = entries[i];
		g_object_ref (copy[i].message);
	}
	return copy;
}

void
chat_store_entries_free (ChatStoreEntry *entries, guint n_entries)
{
	for (guint i = 0; i < n_entries; i++)
		g_object_unref (entries[i].message);
	g_free (entries);
}

gboolean
chat_store_task_append_finish (ChatStore *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
	return g_task_propagate_boolean (G_TASK (result), error);
}

GPtrArray *
chat_store_task_read_finish (ChatStore *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (g_task_is_valid (result, self), NULL);
	return g_task_propagate_pointer (G_TASK (result), error);
}

GSource *
chat_store_attach_source (GSource *source,
			  const char *name,
			  GSourceFunc func,
			  gpointer data,
			  GMainContext *context)
{
	g_source_set_priority (source, G_PRIORITY_DEFAULT);
	g_source_set_name (source, name);
	g_source_set_callback (source, func, data, NULL);
	g_source_attach (source, context);
	return source;
}

void
chat_store_clear_source (GSource **source)
{
	if (*source == NULL)
		return;
	g_source_destroy (*source);
	g_clear_pointer (source, g_source_unref);
}
