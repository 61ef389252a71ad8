/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-sqlite-store.h"

G_BEGIN_DECLS

/* For tests: caps the database at @max_pages pages (PRAGMA max_page_count on the worker's
 * connection; SQLite never goes below the current size, so 1 means "no growth"), which
 * fails writes with SQLITE_FULL exactly as a full disk does. Waits for the worker and
 * returns the cap now in force. */
guint64
chat_sqlite_store_limit_pages (ChatSqliteStore *self, guint64 max_pages);

/* For tests: holds the worker thread (before whatever it is given next) until called again
 * with FALSE, as a very slow disk would. */
void
chat_sqlite_store_pause (ChatSqliteStore *self, gboolean paused);

G_END_DECLS
