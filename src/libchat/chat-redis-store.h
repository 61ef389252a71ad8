/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__CHATHUB_H_INSIDE__) && !defined(CHATHUB_COMPILATION)
#error "Only <chathub.h> can be included directly."
#endif

#include "chat-store.h"

G_BEGIN_DECLS

/**
 * CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX:
 *
 * The default of #ChatRedisStore:key-prefix.
 *
 * Since: 1.0
 */
#define CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX "chathub"

/**
 * CHAT_REDIS_STORE_DEFAULT_TIMEOUT_MS:
 *
 * The default of #ChatRedisStore:timeout, in milliseconds.
 *
 * Since: 1.0
 */
#define CHAT_REDIS_STORE_DEFAULT_TIMEOUT_MS 5000

/**
 * CHAT_REDIS_STORE_DEFAULT_PRESENCE_TTL:
 *
 * The default of #ChatRedisStore:presence-ttl, in seconds.
 *
 * Since: 1.0
 */
#define CHAT_REDIS_STORE_DEFAULT_PRESENCE_TTL 60

#define CHAT_TYPE_REDIS_STORE (chat_redis_store_get_type ())
CHAT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (ChatRedisStore, chat_redis_store, CHAT, REDIS_STORE, GObject)

CHAT_AVAILABLE_IN_ALL
ChatRedisStore *
chat_redis_store_new (const char *address, const char *key_prefix);

CHAT_AVAILABLE_IN_ALL
const char *
chat_redis_store_get_address (ChatRedisStore *self);
CHAT_AVAILABLE_IN_ALL
const char *
chat_redis_store_get_key_prefix (ChatRedisStore *self);
CHAT_AVAILABLE_IN_ALL
const char *
chat_redis_store_get_node_name (ChatRedisStore *self);
CHAT_AVAILABLE_IN_ALL
gboolean
chat_redis_store_is_connected (ChatRedisStore *self);

G_END_DECLS
