/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include <gio/gio.h>

#include "chat-version.h"

G_BEGIN_DECLS

/**
 * ChatStreamKind:
 * @CHAT_STREAM_KIND_ROOM: a room's messages; the stream id is the room id
 * @CHAT_STREAM_KIND_USER: a user's direct messages, sent and received; the stream id is the
 *   user id
 *
 * The kinds of message stream a #ChatStore keeps. Offsets count within one stream.
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_STREAM_KIND_ROOM,
	CHAT_STREAM_KIND_USER,
} ChatStreamKind;

CHAT_AVAILABLE_IN_ALL
GType
chat_stream_kind_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_STREAM_KIND (chat_stream_kind_get_type ())

/**
 * ChatStoreSync:
 * @CHAT_STORE_SYNC_NORMAL: a commit is durable once the operating system has it: it survives
 *   the daemon being killed (`kill -9`), not a power loss
 * @CHAT_STORE_SYNC_FULL: every group commit waits for `fsync`: it survives a power loss too
 *
 * How durable a #ChatSqliteStore makes each commit before it reports messages stored.
 *
 * Since: 1.0
 */
typedef enum {
	CHAT_STORE_SYNC_NORMAL,
	CHAT_STORE_SYNC_FULL,
} ChatStoreSync;

CHAT_AVAILABLE_IN_ALL
GType
chat_store_sync_get_type (void) G_GNUC_CONST;
#define CHAT_TYPE_STORE_SYNC (chat_store_sync_get_type ())

/**
 * CHAT_STORE_DEFAULT_HISTORY_SIZE:
 *
 * The default of #ChatStore:history-size: messages kept per room.
 *
 * Since: 1.0
 */
#define CHAT_STORE_DEFAULT_HISTORY_SIZE 1000

/**
 * CHAT_STORE_DEFAULT_HISTORY_TTL:
 *
 * The default of #ChatStore:history-ttl: seven days, in seconds.
 *
 * Since: 1.0
 */
#define CHAT_STORE_DEFAULT_HISTORY_TTL (7 * 24 * 3600)

/**
 * CHAT_STORE_DEFAULT_DM_TTL:
 *
 * The default of #ChatStore:dm-ttl: thirty days, in seconds.
 *
 * Since: 1.0
 */
#define CHAT_STORE_DEFAULT_DM_TTL (30 * 24 * 3600)

#define CHAT_TYPE_STORE (chat_store_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (ChatStore, chat_store, CHAT, STORE, GObject)

CHAT_AVAILABLE_IN_ALL
GVariant *
chat_store_get_statistics (ChatStore *self);

G_END_DECLS
