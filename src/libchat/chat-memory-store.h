/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include "chat-store.h"

G_BEGIN_DECLS

#define CHAT_TYPE_MEMORY_STORE (chat_memory_store_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatMemoryStore, chat_memory_store, CHAT, MEMORY_STORE, GObject)

CHAT_AVAILABLE_IN_ALL
ChatMemoryStore *
chat_memory_store_new (void);

G_END_DECLS
