/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The store's operations, for the hub only (docs/architecture.md, "Storage"). Everything here
 * is called on the main context the store was created in.
 */

#pragma once

#include "chat-message.h"
#include "chat-store.h"

G_BEGIN_DECLS

typedef struct _ChatStoreBroker ChatStoreBroker;

/* An entry with @stream_id 0 keeps only its message's id (a hub-wide message: live only, but
 * its id must never be given again after a restart): no offset, no text, not readable. */
typedef struct {
	ChatStreamKind kind;
	guint64 stream_id;    /* room id, or user id; 0: the id only */
	ChatMessage *message; /* stamped: id, from, timestamp set; offset set by the store */
} ChatStoreEntry;

/* How an append completes (chat_store_append()): @error is NULL when everything was stored,
 * and then @frames holds, per entry, the text frame of its stored text, offset included,
 * which the hub relays as it is (NULL for an entry with stream id 0, and @frames itself NULL
 * from a store that makes none); (transfer none), valid during the call. */
typedef void (*ChatStoreAppendFunc) (gpointer user_data,
				     GBytes *const *frames,
				     const GError *error);

struct _ChatStoreInterface {
	GTypeInterface g_iface;

	guint64 (*get_last_id) (ChatStore *self);
	void (*get_stream) (ChatStore *self,
			    ChatStreamKind kind,
			    guint64 stream_id,
			    guint64 *top,
			    guint64 *first,
			    const char **epoch);
	void (*append_async) (ChatStore *self,
			      const ChatStoreEntry *entries,
			      guint n_entries,
			      GCancellable *cancellable,
			      GAsyncReadyCallback callback,
			      gpointer user_data);
	gboolean (*append_finish) (ChatStore *self, GAsyncResult *result, GError **error);
	/* instead of append_async and append_finish (then NULL): the same without a GTask per
	 * append, completing through @done with the stored frames */
	void (*append) (ChatStore *self,
			const ChatStoreEntry *entries,
			guint n_entries,
			ChatStoreAppendFunc done,
			gpointer user_data);
	void (*read_async) (ChatStore *self,
			    ChatStreamKind kind,
			    guint64 stream_id,
			    guint64 after,
			    guint64 before,
			    guint limit,
			    gboolean newest,
			    GCancellable *cancellable,
			    GAsyncReadyCallback callback,
			    gpointer user_data);
	GPtrArray *(*read_finish) (ChatStore *self, GAsyncResult *result, GError **error);
	guint64 (*get_delivered) (ChatStore *self, guint64 user_id);
	void (*set_delivered) (ChatStore *self, guint64 user_id, guint64 offset);
	GVariant *(*get_statistics) (ChatStore *self);
	/* optional (NULL: always ready): whether appends can succeed now, for /readyz */
	gboolean (*is_ready) (ChatStore *self);
	/* optional: a store that is also the broker between nodes (ChatRedisStore) */
	gboolean (*set_broker) (ChatStore *self, const ChatStoreBroker *broker, gpointer data);
	gboolean (*watch) (ChatStore *self, ChatStreamKind kind, guint64 stream_id);
	void (*unwatch) (ChatStore *self, ChatStreamKind kind, guint64 stream_id);
	/* a broker's: room events and presence across nodes */
	void (*publish_event) (ChatStore *self,
			       ChatStreamKind kind,
			       guint64 stream_id,
			       GBytes *text);
	void (*presence_set) (ChatStore *self, guint64 room_id, guint64 user_id, gboolean present);
	void (*presence_async) (ChatStore *self,
				guint64 room_id,
				GAsyncReadyCallback callback,
				gpointer user_data);
	GArray *(*presence_finish) (ChatStore *self, GAsyncResult *result, GError **error);
};

/* The highest message id ever stored: ids stay strictly increasing across restarts. */
guint64
chat_store_get_last_id (ChatStore *self);

/* A stream's committed state, from memory: @top the latest offset (0: empty), @first the
 * first retained offset (@top + 1 when nothing is retained), @epoch (transfer none, the same
 * for the store's life). Each out argument is optional. */
void
chat_store_get_stream (ChatStore *self,
		       ChatStreamKind kind,
		       guint64 stream_id,
		       guint64 *top,
		       guint64 *first,
		       const char **epoch);

/* Stores @entries atomically, all or none, and completes on the store's main context, never
 * before the next main-loop iteration. The store takes its own references on the messages,
 * sets each one's offset (contiguous per stream) before it serializes it, and unsets the
 * offsets again if the append fails. Appends made in one main-loop iteration, and those made
 * while the previous group is being committed, are committed in one transaction. Appends are
 * not cancellable once submitted: @cancellable is accepted for symmetry and ignored. */
void
chat_store_append_async (ChatStore *self,
			 const ChatStoreEntry *entries,
			 guint n_entries,
			 GCancellable *cancellable,
			 GAsyncReadyCallback callback,
			 gpointer user_data);
/* FALSE with a G_IO_ERROR (G_IO_ERROR_NO_SPACE for a full disk, G_IO_ERROR_READ_ONLY, ...)
 * when nothing of the append was stored. */
gboolean
chat_store_append_finish (ChatStore *self, GAsyncResult *result, GError **error);
/* The same append, completing through @done, in append order (with a G_IO_ERROR as above
 * when nothing was stored): what the hub uses, one call per message, so no GTask. */
void
chat_store_append (ChatStore *self,
		   const ChatStoreEntry *entries,
		   guint n_entries,
		   ChatStoreAppendFunc done,
		   gpointer user_data);

/* Reads a stream's stored JSON texts (GBytes each), oldest first: offsets in (@after,
 * @before), @before 0 for no upper bound, at most @limit of them (0: no limit), the newest
 * @limit of the range when @newest, else the oldest. Sees every append submitted before it. */
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
		       gpointer user_data);
/* (element-type GBytes) (transfer full) */
GPtrArray *
chat_store_read_finish (ChatStore *self, GAsyncResult *result, GError **error);

/* A user's delivered watermark: the highest offset of the user's stream known written whole
 * to one of the user's connections. It only moves up; a lower value is ignored. Persisted
 * with the next group commit. */
guint64
chat_store_get_delivered (ChatStore *self, guint64 user_id);
void
chat_store_set_delivered (ChatStore *self, guint64 user_id, guint64 offset);

/* Whether the store can take messages now (ChatServer's /readyz): FALSE while SQLite's last
 * group commit failed, until one succeeds; while a Redis store is disconnected. */
gboolean
chat_store_is_ready (ChatStore *self);

/* ---- a store that is a broker between nodes (docs/architecture.md, "Several nodes") ----
 *
 * With a broker, an append publishes its messages to every node that watches their streams,
 * and completes once this node has received its own publications (or with an error, and
 * then nothing was published). Nothing is relayed on an append's completion: every node
 * relays what @published hands it, in the order the broker published, its own messages
 * included. Stream id 0 of kind ROOM is the hub-wide stream (no offsets). */
struct _ChatStoreBroker {
	/* a message of a watched stream (or a hub-wide one), in publication order */
	void (*published) (gpointer data,
			   ChatStreamKind kind,
			   guint64 stream_id,
			   guint64 offset,
			   GBytes *text);
	/* a watch asked for by chat_store_watch() is ready: its state is loaded and everything
	 * published to it from now on comes through @published */
	void (*watched) (gpointer data, ChatStreamKind kind, guint64 stream_id);
	/* publications of a watched stream may have been missed (a lost connection, a new
	 * epoch): its state is reloaded (@watched follows) and its members must recover */
	void (*gap) (gpointer data, ChatStreamKind kind, guint64 stream_id);
	/* a watch could not be made, or was lost, within the store's timeout: what waits for
	 * it fails now. The store keeps trying; @watched follows when it succeeds, after @gap
	 * if publications were missed meanwhile */
	void (*unavailable) (gpointer data, ChatStreamKind kind, guint64 stream_id);
};

/* FALSE (and nothing changes) for a store that is no broker. */
gboolean
chat_store_set_broker (ChatStore *self, const ChatStoreBroker *broker, gpointer data);
/* Starts receiving @kind/@stream_id's publications; TRUE if it is ready at once (already
 * watched), else ChatStoreBroker.watched follows. Counted: unwatch as often. */
gboolean
chat_store_watch (ChatStore *self, ChatStreamKind kind, guint64 stream_id);
void
chat_store_unwatch (ChatStore *self, ChatStreamKind kind, guint64 stream_id);
/* Hands @text (a JSON frame that is not stored: a room's `join` or `leave` event) to the
 * other nodes watching the stream, whose ChatStoreBroker.published gets it with offset 0,
 * in order with the stream's messages. This node does not get it back. Best effort: lost
 * while the broker is unreachable. */
void
chat_store_publish_event (ChatStore *self, ChatStreamKind kind, guint64 stream_id, GBytes *text);
/* Presence across nodes: @user_id has a connection in @room_id on this node (counted: as
 * often FALSE as TRUE). The broker keeps this node's entries alive while they are set, and
 * lets them expire when the node is gone. */
void
chat_store_presence_set (ChatStore *self, guint64 room_id, guint64 user_id, gboolean present);
/* The users present in @room_id on every node (element-type guint64, unsorted, each
 * once), or an error when the broker is unreachable. */
void
chat_store_presence_async (ChatStore *self,
			   guint64 room_id,
			   GAsyncReadyCallback callback,
			   gpointer user_data);
GArray *
chat_store_presence_finish (ChatStore *self, GAsyncResult *result, GError **error);

/* ---- shared by the implementations ---- */

void
chat_store_log_failure (gboolean *failing, const GError *error);
void
chat_store_log_recovery (gboolean *failing);

/* The interface's retention properties, which every implementation overrides under these ids
 * (chat_store_override_properties()); its own properties start at CHAT_STORE_N_PROPS. */
enum {
	CHAT_STORE_PROP_HISTORY_SIZE = 1,
	CHAT_STORE_PROP_HISTORY_TTL,
	CHAT_STORE_PROP_DM_TTL,
	CHAT_STORE_N_PROPS
};

typedef struct {
	guint history_size;
	guint64 history_ttl; /* seconds, 0: no limit */
	guint64 dm_ttl;
} ChatStoreRetention;

void
chat_store_override_properties (GObjectClass *object_class);
/* For an implementation's get_property and set_property: handle the retention properties
 * (and warn about an unknown id). Setting returns TRUE when the value changed, after
 * notifying: the caller applies the new retention then. */
void
chat_store_retention_get_property (const ChatStoreRetention *retention,
				   GObject *object,
				   guint prop_id,
				   GValue *value,
				   GParamSpec *pspec);
gboolean
chat_store_retention_set_property (ChatStoreRetention *retention,
				   GObject *object,
				   guint prop_id,
				   const GValue *value,
				   GParamSpec *pspec);
/* Timestamps (seconds) below this have outlived @ttl; G_MININT64 when @ttl is 0 (no limit). */
gint64
chat_store_retention_cutoff (guint64 ttl, gint64 now);

/* The counters of chat_store_get_statistics(). */
typedef struct {
	guint64 stored;
	guint64 trimmed;
	guint64 failed;
	guint64 groups;
	guint64 largest_group;
	guint64 commit_time_us;
	guint64 retained;
} ChatStoreStatistics;

/* Counts a committed group of @n_messages (0: a group that only trimmed or delivered) in
 * stored, groups, largest-group and commit-time-us; retained is the caller's. */
void
chat_store_statistics_add_group (ChatStoreStatistics *statistics,
				 guint64 n_messages,
				 gint64 commit_time_us);
GVariant *
chat_store_statistics_to_variant (const ChatStoreStatistics *statistics);

/* A store's streams: per ChatStreamKind a table of guint64* stream id -> the implementation's
 * stream struct, which @free_stream frees. */
void
chat_store_streams_init (GHashTable *streams[2], GDestroyNotify free_stream);
void
chat_store_streams_clear (GHashTable *streams[2]);
gpointer
chat_store_streams_lookup (GHashTable *streams[2], ChatStreamKind kind, guint64 stream_id);
void
chat_store_streams_insert (GHashTable *streams[2],
			   ChatStreamKind kind,
			   guint64 stream_id,
			   gpointer stream);

/* An append's entries, copied with a reference on each message, and freed. */
ChatStoreEntry *
chat_store_entries_dup (const ChatStoreEntry *entries, guint n_entries);
void
chat_store_entries_free (ChatStoreEntry *entries, guint n_entries);

/* The arguments of a read, as an operation keeps them. */
typedef struct {
	ChatStreamKind kind;
	guint64 stream_id;
	guint64 after;
	guint64 before;
	guint limit;
	gboolean newest;
} ChatStoreRange;

/* append_finish and read_finish for implementations that complete with a GTask (boolean,
 * and a GPtrArray of GBytes) whose source object is the store. */
gboolean
chat_store_task_append_finish (ChatStore *self, GAsyncResult *result, GError **error);
GPtrArray *
chat_store_task_read_finish (ChatStore *self, GAsyncResult *result, GError **error);

/* how often expired messages of streams nobody writes to are trimmed */
#define CHAT_STORE_TRIM_INTERVAL_SECONDS 60

/* Attaches @source (an idle source or the trim timer) to @context, named, at the default
 * priority: an idle priority would never run under a steady load. Returns @source. */
GSource *
chat_store_attach_source (GSource *source,
			  const char *name,
			  GSourceFunc func,
			  gpointer data,
			  GMainContext *context);
/* Destroys and drops *@source, if any. */
void
chat_store_clear_source (GSource **source);

G_END_DECLS
