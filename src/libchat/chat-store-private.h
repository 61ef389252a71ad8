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

typedef struct {
	ChatStreamKind kind;
	guint64 stream_id;    /* room id, or user id */
	ChatMessage *message; /* stamped: id, from, timestamp set; offset set by the store */
} ChatStoreEntry;

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

/* shared by the implementations */
void
chat_store_log_failure (gboolean *failing, const GError *error);
void
chat_store_log_recovery (gboolean *failing);

G_END_DECLS
