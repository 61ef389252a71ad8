/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include "chat-store.h"

G_BEGIN_DECLS

#define CHAT_TYPE_SQLITE_STORE (chat_sqlite_store_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatSqliteStore, chat_sqlite_store, CHAT, SQLITE_STORE, GObject)

CHAT_AVAILABLE_IN_ALL
ChatSqliteStore *
chat_sqlite_store_new (const char *path, ChatStoreSync sync, GError **error);

CHAT_AVAILABLE_IN_ALL
const char *
chat_sqlite_store_get_path (ChatSqliteStore *self);
CHAT_AVAILABLE_IN_ALL
ChatStoreSync
chat_sqlite_store_get_sync (ChatSqliteStore *self);

G_END_DECLS
