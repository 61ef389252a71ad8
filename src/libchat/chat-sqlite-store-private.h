/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-sqlite-store.h"

G_BEGIN_DECLS

/* For tests: runs @sql on the worker's connection, after what is queued, and returns the
 * first column of its first row (G_MININT64 for none). "PRAGMA max_page_count = 1" caps the
 * database at its current size, so that writes fail with SQLITE_FULL exactly as on a full
 * disk. */
gint64
chat_sqlite_store_query (ChatSqliteStore *self, const char *sql);

/* For tests: holds the worker thread (before whatever it is given next) until called again
 * with FALSE, as a very slow disk would. */
void
chat_sqlite_store_pause (ChatSqliteStore *self, gboolean paused);

G_END_DECLS
