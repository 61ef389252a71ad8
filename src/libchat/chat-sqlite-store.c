/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <sqlite3.h>

#include "chat-error.h"
#include "chat-frame-private.h"
#include "chat-i18n-private.h"
#include "chat-message-private.h"
#include "chat-sqlite-store-private.h"
#include "chat-store-private.h"

/**
 * SECTION:chat-sqlite-store
 * @title: ChatSqliteStore
 * @short_description: a message store in an SQLite database file
 *
 * A #ChatSqliteStore keeps messages in one SQLite database file (WAL mode), so that they
 * survive a restart of the process, `kill -9` included, and with %CHAT_STORE_SYNC_FULL a
 * power loss.
 *
 * The main loop never waits for the disk. Messages appended in one main-loop iteration, and
 * those appended while the worker thread commits one group, are committed together in the
 * next transaction (group commit), so a slow disk makes groups larger, not the main loop
 * slower. With %CHAT_STORE_SYNC_NORMAL a small group is committed on the main thread when the
 * worker has nothing to do (in WAL mode such a commit writes to the file but never waits for
 * an `fsync`); large groups, every group with %CHAT_STORE_SYNC_FULL, checkpoints and reads
 * run on the worker. A write that fails (a full disk, a read-only file, an I/O error)
 * fails its whole group and nothing of it is kept; the next group tries again.
 *
 * Opening refuses, with a #GError, a file it cannot open, a file that is not a chathub store
 * or is damaged, and a store written by a newer version of chathub; it never replaces one.
 */

/**
 * ChatSqliteStore:
 *
 * A #ChatStore in an SQLite database file.
 *
 * Since: 1.0
 */

#define SCHEMA_VERSION 1
/* rows one group or trim pass removes by age at most, so trimming never holds the worker
 * long; a larger backlog is worked off in further passes */
#define TRIM_BATCH 1000
/* The most rows (messages and delivered watermarks) a group committed on the main thread may
 * have; it also bounds what it trims by age. Above it, the group goes to the worker. */
#define INLINE_MAX_ROWS 64
/* WAL frames (pages) after which the worker checkpoints: SQLite's own default */
#define CHECKPOINT_FRAMES 1000

/* Migrations: step i brings a database from version i to version i + 1. */
static const char *const migrations[SCHEMA_VERSION] = {
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;"
    "CREATE TABLE streams (kind INTEGER NOT NULL, stream_id INTEGER NOT NULL,"
    "  top INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (kind, stream_id)) WITHOUT ROWID;"
    "CREATE TABLE messages (kind INTEGER NOT NULL, stream_id INTEGER NOT NULL,"
    "  offset INTEGER NOT NULL, id INTEGER NOT NULL, timestamp INTEGER NOT NULL,"
    "  frame TEXT NOT NULL, PRIMARY KEY (kind, stream_id, offset)) WITHOUT ROWID;"
    "CREATE INDEX messages_by_time ON messages (kind, timestamp);"
    /* one epoch per database: stream rows are never deleted, so offsets never repeat in it */
    "INSERT INTO meta VALUES ('epoch', lower(hex(randomblob(8))));"
    "INSERT INTO meta VALUES ('last_id', 0);",
};

typedef struct {
	guint64 top;	  /* committed */
	guint64 assigned; /* handed out; differs from @top only while a group is in flight */
	guint64 first;	  /* the first retained offset; @top + 1 when none is */
	guint64 delivered;
} SqliteStream;

typedef struct {
	ChatStreamKind kind;
	guint64 stream_id;
	guint64 offset;
	guint64 id;
	gint64 timestamp;
	const char *text; /* the payload of its append's frame */
	gsize length;
} Row;

typedef struct {
	ChatStreamKind kind;
	guint64 stream_id;
	guint64 value; /* a top, a delivered watermark or a first retained offset */
} StreamValue;

/* one allocation: the entries (messages owned) and their frames follow */
typedef struct {
	ChatStoreAppendFunc done;
	gpointer done_data;
	guint n_entries;
	ChatStoreEntry *entries;
	GBytes **frames; /* per entry, made when the group is prepared */
} Append;

typedef enum { OP_GROUP, OP_READ, OP_CHECKPOINT, OP_QUERY, OP_PAUSE, OP_STOP } OpType;

typedef struct _SqliteOp SqliteOp;
struct _SqliteOp {
	OpType type;
	ChatSqliteStore *store; /* (owned): completions run on its main context */
	GMainContext *context;

	/* OP_GROUP, built on the main thread */
	GPtrArray *appends; /* Append* */
	guint n_entries;    /* of all appends */
	GArray *rows;	    /* Row, made when the group is prepared */
	GArray *tops;	    /* StreamValue: the new top of every stream written */
	GArray *delivered;  /* StreamValue: watermarks to persist */
	guint64 last_id;
	guint history_size;
	gint64 room_cutoff; /* timestamps below these expire; G_MININT64: no limit */
	gint64 history_cutoff;
	gint64 dm_cutoff;
	guint trim_batch; /* rows trimmed by age at most, per kind */
	/* OP_GROUP, results from the worker */
	GError *error;
	GArray *firsts; /* StreamValue: first retained offsets that trimming moved */
	guint64 n_trimmed;
	gboolean more_to_trim;
	gint64 commit_time_us;

	/* OP_READ */
	GTask *task;
	ChatStoreRange range;
	GPtrArray *texts;

	/* OP_QUERY: the caller waits; OP_PAUSE: the worker waits */
	const char *sql;
	gint64 answer;
	GMutex mutex;
	GCond cond;
	gboolean done;
};

/* The connection and its statements: the worker thread's, and the main thread's while the
 * worker has no operation queued or running (then its last use of them happened before the
 * completion of its last operation ran on the main thread, and its next one comes after the
 * main thread's push to the queue: the queue's and the main context's locks order them). */
typedef struct {
	sqlite3 *db;
	GAsyncQueue *queue;
	sqlite3_stmt *statements[16];
	/* frames in the WAL after the last commit (the WAL hook) */
	int wal_frames;
	/* the next write may start the WAL and sync its header: the WAL was checkpointed whole,
	 * or it may be empty (just opened), and no commit wrote to it since */
	gboolean restart_pending;
	int checkpoint_at; /* wal_frames from which the main thread asks for a checkpoint */
} Worker;

enum {
	STMT_INSERT_MESSAGE,
	STMT_SET_TOP,
	STMT_SET_DELIVERED,
	STMT_SET_LAST_ID,
	STMT_TRIM_SIZE,
	STMT_TRIM_ROOM_AGE,
	STMT_TRIM_USER_AGE,
	STMT_TRIM_PREFIX,
	STMT_FIRST,
	STMT_READ_OLDEST,
	STMT_READ_NEWEST,
	STMT_BEGIN,
	STMT_COMMIT,
	N_STATEMENTS
};

static const char *const statement_sql[N_STATEMENTS] = {
    [STMT_INSERT_MESSAGE] = "INSERT INTO messages (kind, stream_id, offset, id, timestamp, frame)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [STMT_SET_TOP] = "INSERT INTO streams (kind, stream_id, top) VALUES (?1, ?2, ?3)"
		     " ON CONFLICT (kind, stream_id) DO UPDATE SET top = excluded.top",
    [STMT_SET_DELIVERED] = "INSERT INTO streams (kind, stream_id, top, delivered)"
			   " VALUES (1, ?1, 0, ?2) ON CONFLICT (kind, stream_id)"
			   " DO UPDATE SET delivered = max(delivered, excluded.delivered)",
    [STMT_SET_LAST_ID] = "UPDATE meta SET value = max(value, ?1) WHERE key = 'last_id'",
    /* rooms keep their newest history-size; users too, of what was delivered */
    [STMT_TRIM_SIZE] = "DELETE FROM messages WHERE kind = ?1 AND stream_id = ?2 AND offset <="
		       " (SELECT CASE WHEN ?1 = 0 THEN top - ?3"
		       "  ELSE min(delivered, top - ?3) END"
		       "  FROM streams WHERE kind = ?1 AND stream_id = ?2)",
    [STMT_TRIM_ROOM_AGE] = "DELETE FROM messages WHERE (kind, stream_id, offset) IN"
			   " (SELECT kind, stream_id, offset FROM messages"
			   "  WHERE kind = 0 AND timestamp < ?1 LIMIT ?2)"
			   " RETURNING stream_id, offset",
    /* direct messages: undelivered ones until dm-ttl, delivered ones until history-ttl */
    [STMT_TRIM_USER_AGE] = "DELETE FROM messages WHERE (kind, stream_id, offset) IN"
			   " (SELECT m.kind, m.stream_id, m.offset FROM messages m"
			   "  WHERE m.kind = 1 AND m.timestamp < max(?1, ?2) AND"
			   "  (m.timestamp < ?1 OR m.offset <= (SELECT s.delivered FROM streams s"
			   "   WHERE s.kind = 1 AND s.stream_id = m.stream_id)) LIMIT ?3)"
			   " RETURNING stream_id, offset",
    /* only ever a prefix goes: what remains of a stream stays contiguous */
    [STMT_TRIM_PREFIX] = "DELETE FROM messages WHERE kind = ?1 AND stream_id = ?2 AND offset < ?3",
    [STMT_FIRST] = "SELECT coalesce((SELECT min(offset) FROM messages"
		   " WHERE kind = ?1 AND stream_id = ?2),"
		   " (SELECT top + 1 FROM streams WHERE kind = ?1 AND stream_id = ?2), 1)",
    [STMT_READ_OLDEST] = "SELECT frame FROM messages WHERE kind = ?1 AND stream_id = ?2"
			 " AND offset > ?3 AND offset < ?4 ORDER BY offset ASC LIMIT ?5",
    [STMT_READ_NEWEST] = "SELECT frame FROM messages WHERE kind = ?1 AND stream_id = ?2"
			 " AND offset > ?3 AND offset < ?4 ORDER BY offset DESC LIMIT ?5",
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
};

struct _ChatSqliteStore {
	GObject parent_instance;

	char *path;
	ChatStoreSync sync;
	ChatStoreRetention retention;

	GMainContext *context;
	GThread *thread;
	GAsyncQueue *queue; /* SqliteOp* for the worker */
	Worker *worker;	    /* handed to the thread once it runs */

	char *epoch;
	guint64 last_id;	     /* committed */
	GHashTable *streams[2];	     /* chat_store_streams_*: SqliteStream* */
	GHashTable *dirty_delivered; /* guint64* user id -> itself: watermarks to persist */
	GQueue backlog;		     /* SqliteOp* not yet with the worker, in order */
	SqliteOp *open_group;	     /* the unhanded group new appends join, or NULL */
	gboolean in_flight;	     /* one group at a time is with the worker */
	guint worker_ops;	     /* operations pushed to the worker, not yet completed */
	gboolean checkpoint_queued;
	GSource *kick_source;
	GSource *trim_source;
	gboolean failing;
	SqliteOp *pause;  /* tests: the operation the worker is held on */
	GString *scratch; /* where messages are serialized before they are framed */

	ChatStoreStatistics statistics;
};

static void
chat_sqlite_store_iface_init (ChatStoreInterface *iface);
static void
chat_sqlite_store_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ChatSqliteStore,
			       chat_sqlite_store,
			       G_TYPE_OBJECT,
			       G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
						      chat_sqlite_store_initable_iface_init)
				   G_IMPLEMENT_INTERFACE (CHAT_TYPE_STORE,
							  chat_sqlite_store_iface_init))

/* after the retention properties of the interface */
enum { PROP_PATH = CHAT_STORE_N_PROPS, PROP_SYNC, N_PROPS };
static GParamSpec *props[N_PROPS];

/* ---- errors ---- */

static GIOErrorEnum
io_error_from_sqlite (int code)
{
	switch (code & 0xff) {
	case SQLITE_FULL:
		return G_IO_ERROR_NO_SPACE;
	case SQLITE_READONLY:
		return G_IO_ERROR_READ_ONLY;
	case SQLITE_PERM:
		return G_IO_ERROR_PERMISSION_DENIED;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return G_IO_ERROR_BUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return G_IO_ERROR_INVALID_DATA;
	default:
		return G_IO_ERROR_FAILED;
	}
}

static void
set_sqlite_error (GError **error, sqlite3 *db, int code)
{
	g_set_error (error,
		     G_IO_ERROR,
		     io_error_from_sqlite (code),
		     "%s (%s)",
		     sqlite3_errmsg (db),
		     sqlite3_errstr (code));
}

/* ---- the worker thread ---- */

static sqlite3_stmt *
worker_statement (Worker *worker, guint index, GError **error)
{
	int rc;

	if (worker->statements[index] != NULL) {
		sqlite3_reset (worker->statements[index]);
		sqlite3_clear_bindings (worker->statements[index]);
		return worker->statements[index];
	}
	rc = sqlite3_prepare_v3 (worker->db,
				 statement_sql[index],
				 -1,
				 SQLITE_PREPARE_PERSISTENT,
				 &worker->statements[index],
				 NULL);
	if (rc != SQLITE_OK) {
		set_sqlite_error (error, worker->db, rc);
		return NULL;
	}
	return worker->statements[index];
}

/* Runs a statement that returns no rows. */
static gboolean
worker_step_done (Worker *worker, sqlite3_stmt *stmt, GError **error)
{
	int rc = sqlite3_step (stmt);

	if (rc != SQLITE_DONE) {
		set_sqlite_error (error, worker->db, rc);
		sqlite3_reset (stmt);
		return FALSE;
	}
	sqlite3_reset (stmt);
	return TRUE;
}

static gboolean
worker_exec (Worker *worker, guint index, GError **error)
{
	sqlite3_stmt *stmt = worker_statement (worker, index, error);

	return stmt != NULL && worker_step_done (worker, stmt, error);
}

static void
note_stream (GHashTable *streams, ChatStreamKind kind, guint64 stream_id)
{
	StreamValue *key = g_new0 (StreamValue, 1);

	key->kind = kind;
	key->stream_id = stream_id;
	g_hash_table_add (streams, key);
}

static guint
stream_value_hash (gconstpointer key)
{
	const StreamValue *value = key;

	return g_int64_hash (&value->stream_id) ^ (guint) value->kind;
}

static gboolean
stream_value_equal (gconstpointer a, gconstpointer b)
{
	const StreamValue *x = a, *y = b;

	return x->kind == y->kind && x->stream_id == y->stream_id;
}

/* Deletes one batch of expired messages of @kind; @trimmed collects the streams touched. */
static gboolean
worker_trim_age (Worker *worker,
		 SqliteOp *op,
		 ChatStreamKind kind,
		 GHashTable *trimmed,
		 GError **error)
{
	g_autoptr (GHashTable) max_deleted =
	    g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
	GHashTableIter iter;
	gpointer key, value;
	sqlite3_stmt *stmt;
	guint64 n = 0;
	int rc;

	if (kind == CHAT_STREAM_KIND_ROOM) {
		if (op->room_cutoff == G_MININT64)
			return TRUE;
		stmt = worker_statement (worker, STMT_TRIM_ROOM_AGE, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int64 (stmt, 1, op->room_cutoff);
		sqlite3_bind_int64 (stmt, 2, op->trim_batch);
	} else {
		if (op->dm_cutoff == G_MININT64 && op->history_cutoff == G_MININT64)
			return TRUE;
		stmt = worker_statement (worker, STMT_TRIM_USER_AGE, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int64 (stmt, 1, op->dm_cutoff);
		sqlite3_bind_int64 (stmt, 2, op->history_cutoff);
		sqlite3_bind_int64 (stmt, 3, op->trim_batch);
	}
	while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
		guint64 stream_id = (guint64) sqlite3_column_int64 (stmt, 0);
		guint64 offset = (guint64) sqlite3_column_int64 (stmt, 1);
		guint64 *highest = g_hash_table_lookup (max_deleted, &stream_id);

		if (highest == NULL) {
			highest = g_new0 (guint64, 1);
			g_hash_table_insert (max_deleted,
					     g_memdup2 (&stream_id, sizeof stream_id),
					     highest);
		}
		*highest = MAX (*highest, offset);
		n++;
	}
	sqlite3_reset (stmt);
	if (rc != SQLITE_DONE) {
		set_sqlite_error (error, worker->db, rc);
		return FALSE;
	}
	op->n_trimmed += n;
	if (n == op->trim_batch)
		op->more_to_trim = TRUE;

	/* a clock set back can leave a younger message before an expired one: it goes too */
	g_hash_table_iter_init (&iter, max_deleted);
	while (g_hash_table_iter_next (&iter, &key, &value)) {
		stmt = worker_statement (worker, STMT_TRIM_PREFIX, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int (stmt, 1, kind);
		sqlite3_bind_int64 (stmt, 2, (gint64) * (guint64 *) key);
		sqlite3_bind_int64 (stmt, 3, (gint64) * (guint64 *) value);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
		op->n_trimmed += (guint64) sqlite3_changes (worker->db);
		note_stream (trimmed, kind, *(guint64 *) key);
	}
	return TRUE;
}

static gboolean
worker_write_group (Worker *worker, SqliteOp *op, GError **error)
{
	g_autoptr (GHashTable) trimmed =
	    g_hash_table_new_full (stream_value_hash, stream_value_equal, g_free, NULL);
	g_autoptr (GHashTable) sized =
	    g_hash_table_new_full (stream_value_hash, stream_value_equal, g_free, NULL);
	GHashTableIter iter;
	gpointer key;
	sqlite3_stmt *stmt;

	if (!worker_exec (worker, STMT_BEGIN, error))
		return FALSE;
	for (guint i = 0; i < op->rows->len; i++) {
		Row *row = &g_array_index (op->rows, Row, i);

		stmt = worker_statement (worker, STMT_INSERT_MESSAGE, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int (stmt, 1, row->kind);
		sqlite3_bind_int64 (stmt, 2, (gint64) row->stream_id);
		sqlite3_bind_int64 (stmt, 3, (gint64) row->offset);
		sqlite3_bind_int64 (stmt, 4, (gint64) row->id);
		sqlite3_bind_int64 (stmt, 5, row->timestamp);
		sqlite3_bind_text (stmt, 6, row->text, (int) row->length, SQLITE_STATIC);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
	}
	for (guint i = 0; i < op->tops->len; i++) {
		StreamValue *top = &g_array_index (op->tops, StreamValue, i);

		stmt = worker_statement (worker, STMT_SET_TOP, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int (stmt, 1, top->kind);
		sqlite3_bind_int64 (stmt, 2, (gint64) top->stream_id);
		sqlite3_bind_int64 (stmt, 3, (gint64) top->value);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
		note_stream (sized, top->kind, top->stream_id);
	}
	for (guint i = 0; i < op->delivered->len; i++) {
		StreamValue *delivered = &g_array_index (op->delivered, StreamValue, i);

		stmt = worker_statement (worker, STMT_SET_DELIVERED, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int64 (stmt, 1, (gint64) delivered->stream_id);
		sqlite3_bind_int64 (stmt, 2, (gint64) delivered->value);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
		note_stream (sized, CHAT_STREAM_KIND_USER, delivered->stream_id);
	}
	if (op->last_id != 0) {
		stmt = worker_statement (worker, STMT_SET_LAST_ID, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int64 (stmt, 1, (gint64) op->last_id);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
	}

	/* retention by size, for the streams this group grew or delivered */
	g_hash_table_iter_init (&iter, sized);
	while (g_hash_table_iter_next (&iter, &key, NULL)) {
		StreamValue *stream = key;
		int changes;

		stmt = worker_statement (worker, STMT_TRIM_SIZE, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int (stmt, 1, stream->kind);
		sqlite3_bind_int64 (stmt, 2, (gint64) stream->stream_id);
		sqlite3_bind_int64 (stmt, 3, op->history_size);
		if (!worker_step_done (worker, stmt, error))
			return FALSE;
		changes = sqlite3_changes (worker->db);
		if (changes > 0) {
			op->n_trimmed += (guint64) changes;
			note_stream (trimmed, stream->kind, stream->stream_id);
		}
	}
	/* retention by age: one batch per group */
	if (!worker_trim_age (worker, op, CHAT_STREAM_KIND_ROOM, trimmed, error) ||
	    !worker_trim_age (worker, op, CHAT_STREAM_KIND_USER, trimmed, error))
		return FALSE;

	g_hash_table_iter_init (&iter, trimmed);
	while (g_hash_table_iter_next (&iter, &key, NULL)) {
		StreamValue first = *(StreamValue *) key;
		int rc;

		stmt = worker_statement (worker, STMT_FIRST, error);
		if (stmt == NULL)
			return FALSE;
		sqlite3_bind_int (stmt, 1, first.kind);
		sqlite3_bind_int64 (stmt, 2, (gint64) first.stream_id);
		rc = sqlite3_step (stmt);
		if (rc != SQLITE_ROW) {
			set_sqlite_error (error, worker->db, rc);
			sqlite3_reset (stmt);
			return FALSE;
		}
		first.value = (guint64) sqlite3_column_int64 (stmt, 0);
		sqlite3_reset (stmt);
		g_array_append_val (op->firsts, first);
	}
	return worker_exec (worker, STMT_COMMIT, error);
}

static void
worker_run_group (Worker *worker, SqliteOp *op)
{
	gint64 start = g_get_monotonic_time ();

	if (!worker_write_group (worker, op, &op->error)) {
		/* SQLite may have rolled back already (a full disk does) */
		if (!sqlite3_get_autocommit (worker->db))
			sqlite3_exec (worker->db, "ROLLBACK", NULL, NULL, NULL);
		g_array_set_size (op->firsts, 0);
		op->n_trimmed = 0;
		op->more_to_trim = FALSE;
	}
	op->commit_time_us = g_get_monotonic_time () - start;
}

static void
worker_run_read (Worker *worker, SqliteOp *op)
{
	const ChatStoreRange *range = &op->range;
	g_autoptr (GPtrArray) texts =
	    g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	sqlite3_stmt *stmt;
	int rc;

	stmt = worker_statement (worker,
				 range->newest ? STMT_READ_NEWEST : STMT_READ_OLDEST,
				 &op->error);
	if (stmt == NULL)
		return;
	sqlite3_bind_int (stmt, 1, range->kind);
	sqlite3_bind_int64 (stmt, 2, (gint64) range->stream_id);
	sqlite3_bind_int64 (stmt, 3, (gint64) MIN (range->after, (guint64) G_MAXINT64));
	sqlite3_bind_int64 (stmt, 4, range->before == 0 ? G_MAXINT64 : (gint64) range->before);
	sqlite3_bind_int64 (stmt, 5, range->limit == 0 ? -1 : (gint64) range->limit);
	while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
		g_ptr_array_add (texts,
				 g_bytes_new (sqlite3_column_text (stmt, 0),
					      (gsize) sqlite3_column_bytes (stmt, 0)));
	}
	sqlite3_reset (stmt);
	if (rc != SQLITE_DONE) {
		set_sqlite_error (&op->error, worker->db, rc);
		return;
	}
	if (range->newest) {
		/* read newest first, handed out oldest first */
		for (guint i = 0; i < texts->len / 2; i++) {
			gpointer swap = texts->pdata[i];

			texts->pdata[i] = texts->pdata[texts->len - 1 - i];
			texts->pdata[texts->len - 1 - i] = swap;
		}
	}
	op->texts = g_steal_pointer (&texts);
}

static void
worker_run_query (Worker *worker, SqliteOp *op)
{
	sqlite3_stmt *stmt = NULL;
	gint64 answer = G_MININT64;

	if (sqlite3_prepare_v2 (worker->db, op->sql, -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step (stmt) == SQLITE_ROW)
		answer = sqlite3_column_int64 (stmt, 0);
	sqlite3_finalize (stmt);
	g_mutex_lock (&op->mutex);
	op->answer = answer;
	op->done = TRUE;
	g_cond_signal (&op->cond);
	g_mutex_unlock (&op->mutex);
}

/* The WAL hook, called after every commit that wrote frames, on the committing thread. Having
 * one turns SQLite's automatic checkpoints off: those would run inside a commit, on the main
 * thread too; the store asks the worker for them instead. */
static int
on_wal_commit (gpointer data, sqlite3 *db, const char *name, int n_frames)
{
	Worker *worker = data;

	/* the WAL started over (after a complete checkpoint): its frames count from 0 again,
	 * and so does the next checkpoint's threshold, which counted on the old WAL's */
	if (n_frames < worker->wal_frames)
		worker->checkpoint_at = MIN (worker->checkpoint_at, CHECKPOINT_FRAMES);
	worker->wal_frames = n_frames;
	/* the WAL has a header now (written, and synced, by the first commit into it) */
	worker->restart_pending = FALSE;
	return SQLITE_OK;
}

static void
worker_checkpoint (Worker *worker)
{
	int n_log = 0, n_done = 0;
	int rc = sqlite3_wal_checkpoint_v2 (worker->db,
					    NULL,
					    SQLITE_CHECKPOINT_PASSIVE,
					    &n_log,
					    &n_done);

	/* the WAL taken in whole: the next write starts it over and syncs its new header,
	 * whatever `synchronous` says, so the next group commits on the worker */
	if (rc != SQLITE_OK || n_done == n_log)
		worker->restart_pending = TRUE;
	/* a WAL that could not be taken in whole (a reader in another process) is tried again
	 * once as much again has been written */
	worker->checkpoint_at = worker->wal_frames + CHECKPOINT_FRAMES;
}

static gboolean
on_op_done (gpointer user_data);

static gpointer
worker_main (gpointer user_data)
{
	Worker *worker = user_data;
	SqliteOp *op;

	while ((op = g_async_queue_pop (worker->queue))->type != OP_STOP) {
		switch (op->type) {
		case OP_GROUP:
			worker_run_group (worker, op);
			break;
		case OP_READ:
			worker_run_read (worker, op);
			break;
		case OP_CHECKPOINT:
			worker_checkpoint (worker);
			break;
		case OP_QUERY:
			/* the caller waits for it and owns it */
			worker_run_query (worker, op);
			continue;
		case OP_PAUSE:
			g_mutex_lock (&op->mutex);
			while (!op->done)
				g_cond_wait (&op->cond, &op->mutex);
			g_mutex_unlock (&op->mutex);
			g_mutex_clear (&op->mutex);
			g_cond_clear (&op->cond);
			g_free (op);
			continue;
		case OP_STOP:
		default:
			g_assert_not_reached ();
		}
		g_source_unref (chat_store_attach_source (g_idle_source_new (),
							  "chathub sqlite store completion",
							  on_op_done,
							  op,
							  op->context));
	}
	g_free (op);

	for (guint i = 0; i < G_N_ELEMENTS (worker->statements); i++)
		sqlite3_finalize (worker->statements[i]);
	sqlite3_close (worker->db);
	g_async_queue_unref (worker->queue);
	g_free (worker);
	return NULL;
}

/* ---- the main thread ---- */

static void
append_free (Append *append)
{
	for (guint i = 0; i < append->n_entries; i++) {
		g_clear_pointer (&append->frames[i], g_bytes_unref);
		g_object_unref (append->entries[i].message);
	}
	g_free (append);
}

static SqliteOp *
op_new (ChatSqliteStore *self, OpType type)
{
	SqliteOp *op = g_new0 (SqliteOp, 1);

	op->type = type;
	op->store = g_object_ref (self);
	op->context = self->context;
	if (type == OP_GROUP) {
		op->appends = g_ptr_array_new_with_free_func ((GDestroyNotify) append_free);
		op->rows = g_array_new (FALSE, FALSE, sizeof (Row));
		op->tops = g_array_new (FALSE, FALSE, sizeof (StreamValue));
		op->delivered = g_array_new (FALSE, FALSE, sizeof (StreamValue));
		op->firsts = g_array_new (FALSE, FALSE, sizeof (StreamValue));
	}
	return op;
}

static void
op_free (SqliteOp *op)
{
	g_clear_pointer (&op->appends, g_ptr_array_unref);
	g_clear_pointer (&op->rows, g_array_unref);
	g_clear_pointer (&op->tops, g_array_unref);
	g_clear_pointer (&op->delivered, g_array_unref);
	g_clear_pointer (&op->firsts, g_array_unref);
	g_clear_pointer (&op->texts, g_ptr_array_unref);
	g_clear_error (&op->error);
	g_clear_object (&op->task);
	g_clear_object (&op->store);
	g_free (op);
}

static SqliteStream *
lookup_stream (ChatSqliteStore *self, ChatStreamKind kind, guint64 stream_id)
{
	return chat_store_streams_lookup (self->streams, kind, stream_id);
}

static SqliteStream *
ensure_stream (ChatSqliteStore *self, ChatStreamKind kind, guint64 stream_id)
{
	SqliteStream *stream = lookup_stream (self, kind, stream_id);

	if (stream == NULL) {
		stream = g_new0 (SqliteStream, 1);
		stream->first = 1;
		chat_store_streams_insert (self->streams, kind, stream_id, stream);
	}
	return stream;
}

static void
mark_delivered_dirty (ChatSqliteStore *self, guint64 user_id)
{
	g_hash_table_add (self->dirty_delivered, g_memdup2 (&user_id, sizeof user_id));
}

/* Gives the group its offsets, texts, watermarks and retention. */
static void
prepare_group (ChatSqliteStore *self, SqliteOp *op, guint trim_batch)
{
	g_autoptr (GHashTable) tops =
	    g_hash_table_new_full (stream_value_hash, stream_value_equal, g_free, NULL);
	gint64 now = g_get_real_time () / G_USEC_PER_SEC;
	GHashTableIter iter;
	gpointer key;

	for (guint i = 0; i < op->appends->len; i++) {
		Append *append = g_ptr_array_index (op->appends, i);

		for (guint j = 0; j < append->n_entries; j++) {
			ChatStoreEntry *entry = &append->entries[j];
			SqliteStream *stream;
			Row row = {entry->kind, entry->stream_id};
			gsize size, header;

			if (entry->stream_id == 0) {
				/* an id only: recorded with the group as the last id */
				op->last_id =
				    MAX (op->last_id, chat_message_get_id (entry->message));
				continue;
			}
			stream = ensure_stream (self, entry->kind, entry->stream_id);
			row.offset = ++stream->assigned;
			/* the stored text is the frame the hub relays: offset included */
			chat_message_set_offset (entry->message, row.offset);
			row.id = chat_message_get_id (entry->message);
			row.timestamp = chat_message_get_timestamp (entry->message);
			/* framed once, here: the hub relays this frame */
			append->frames[j] =
			    chat_message_to_exact_frame (entry->message, self->scratch);
			row.text = g_bytes_get_data (append->frames[j], &size);
			/* the JSON text: the frame's payload */
			header = chat_frame_header_size_of (append->frames[j]);
			row.text += header;
			row.length = size - header;
			g_array_append_val (op->rows, row);
			op->last_id = MAX (op->last_id, row.id);
			note_stream (tops, entry->kind, entry->stream_id);
		}
	}
	g_hash_table_iter_init (&iter, tops);
	while (g_hash_table_iter_next (&iter, &key, NULL)) {
		StreamValue top = *(StreamValue *) key;

		top.value = lookup_stream (self, top.kind, top.stream_id)->assigned;
		g_array_append_val (op->tops, top);
	}
	g_hash_table_iter_init (&iter, self->dirty_delivered);
	while (g_hash_table_iter_next (&iter, &key, NULL)) {
		StreamValue delivered = {CHAT_STREAM_KIND_USER, *(guint64 *) key};

		delivered.value =
		    lookup_stream (self, CHAT_STREAM_KIND_USER, delivered.stream_id)->delivered;
		g_array_append_val (op->delivered, delivered);
	}
	g_hash_table_remove_all (self->dirty_delivered);
	op->history_size = self->retention.history_size;
	op->room_cutoff = chat_store_retention_cutoff (self->retention.history_ttl, now);
	op->history_cutoff = op->room_cutoff;
	op->dm_cutoff = chat_store_retention_cutoff (self->retention.dm_ttl, now);
	op->trim_batch = trim_batch;
}

static void
push_op (ChatSqliteStore *self, SqliteOp *op)
{
	self->worker_ops++;
	g_async_queue_push (self->queue, op);
}

static void
hand_group (ChatSqliteStore *self, SqliteOp *op)
{
	prepare_group (self, op, TRIM_BATCH);
	self->in_flight = TRUE;
	push_op (self, op);
}

/* Read only while no group commits and no checkpoint is queued: then nothing else writes
 * the worker's WAL figures. */
static gboolean
needs_checkpoint (ChatSqliteStore *self)
{
	return !self->checkpoint_queued && self->worker->wal_frames >= self->worker->checkpoint_at;
}

static void
queue_checkpoint (ChatSqliteStore *self)
{
	self->checkpoint_queued = TRUE;
	push_op (self, op_new (self, OP_CHECKPOINT));
}

/* A group the main thread may commit itself: small, with synchronous=NORMAL (a WAL commit
 * then never syncs; docs/architecture.md, "Storage"), while the worker has nothing queued or
 * running and the WAL is not due to start over (its first write syncs). Groups of only
 * trimming or watermarks are nobody's wait and go to the worker. */
static gboolean
can_commit_inline (ChatSqliteStore *self, SqliteOp *op)
{
	return self->sync == CHAT_STORE_SYNC_NORMAL && self->worker_ops == 0 &&
	       self->pause == NULL && !self->worker->restart_pending && op->n_entries > 0 &&
	       op->n_entries + g_hash_table_size (self->dirty_delivered) <= INLINE_MAX_ROWS;
}

static void
complete_group (ChatSqliteStore *self, SqliteOp *op);
static gboolean
on_kick (gpointer user_data);

/* Commits @op on the main thread, with the worker's connection and statements. */
static void
commit_inline (ChatSqliteStore *self, SqliteOp *op)
{
	prepare_group (self, op, INLINE_MAX_ROWS);
	worker_run_group (self->worker, op);
	complete_group (self, op);
	if (needs_checkpoint (self))
		queue_checkpoint (self);
}

/* Hands the backlog to the worker in order. @allow_inline: the first group may be committed
 * here, when it is small and the worker idle (not while another group's completions are still
 * to run: they must relay first). */
static void
process_backlog (ChatSqliteStore *self, gboolean allow_inline)
{
	SqliteOp *op, *inlined = NULL;

	while ((op = g_queue_peek_head (&self->backlog)) != NULL) {
		if (op->type == OP_GROUP) {
			/* one group in flight at a time; and one committed here per call, so that
			 * what its completions appended waits for the next iteration */
			if (self->in_flight || inlined != NULL)
				break;
			if (op == self->open_group)
				self->open_group = NULL;
			g_queue_pop_head (&self->backlog);
			if (allow_inline && can_commit_inline (self, op)) {
				commit_inline (self, op);
				inlined = op;
			} else {
				hand_group (self, op);
			}
		} else {
			g_queue_pop_head (&self->backlog);
			push_op (self, op);
		}
	}
	if (inlined != NULL) {
		if (!g_queue_is_empty (&self->backlog) && !self->in_flight &&
		    self->kick_source == NULL)
			self->kick_source = chat_store_attach_source (g_idle_source_new (),
								      "chathub sqlite store group",
								      on_kick,
								      self,
								      self->context);
		/* last: it holds a reference on the store */
		op_free (inlined);
	}
}

static gboolean
on_kick (gpointer user_data)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (user_data);

	g_clear_pointer (&self->kick_source, g_source_unref);
	process_backlog (self, TRUE);
	return G_SOURCE_REMOVE;
}

/* The group that appends of this main-loop iteration join; handed over on the next one (or
 * when the group in flight completes), so one iteration's appends share a transaction. */
static SqliteOp *
ensure_open_group (ChatSqliteStore *self)
{
	if (self->open_group == NULL) {
		self->open_group = op_new (self, OP_GROUP);
		g_queue_push_tail (&self->backlog, self->open_group);
	}
	if (self->kick_source == NULL && !self->in_flight)
		self->kick_source = chat_store_attach_source (g_idle_source_new (),
							      "chathub sqlite store group",
							      on_kick,
							      self,
							      self->context);
	return self->open_group;
}

static void
complete_group (ChatSqliteStore *self, SqliteOp *op)
{
	guint64 n_messages = op->rows->len;

	if (op->error != NULL) {
		/* nothing of the group was stored: its offsets are free again */
		for (guint i = 0; i < op->tops->len; i++) {
			StreamValue *top = &g_array_index (op->tops, StreamValue, i);
			SqliteStream *stream = lookup_stream (self, top->kind, top->stream_id);

			stream->assigned = stream->top;
		}
		for (guint i = 0; i < op->delivered->len; i++)
			mark_delivered_dirty (
			    self,
			    g_array_index (op->delivered, StreamValue, i).stream_id);
		self->statistics.failed += n_messages;
		chat_store_log_failure (&self->failing, op->error);
		for (guint i = 0; i < op->appends->len; i++) {
			Append *append = g_ptr_array_index (op->appends, i);

			for (guint j = 0; j < append->n_entries; j++)
				chat_message_set_offset (append->entries[j].message, 0);
			append->done (append->done_data, NULL, op->error);
		}
	} else {
		for (guint i = 0; i < op->tops->len; i++) {
			StreamValue *top = &g_array_index (op->tops, StreamValue, i);
			SqliteStream *stream = lookup_stream (self, top->kind, top->stream_id);

			stream->top = top->value;
		}
		for (guint i = 0; i < op->firsts->len; i++) {
			StreamValue *first = &g_array_index (op->firsts, StreamValue, i);

			ensure_stream (self, first->kind, first->stream_id)->first = first->value;
		}
		self->last_id = MAX (self->last_id, op->last_id);
		chat_store_statistics_add_group (&self->statistics, n_messages, op->commit_time_us);
		self->statistics.retained += n_messages;
		self->statistics.trimmed += op->n_trimmed;
		self->statistics.retained -= MIN (self->statistics.retained, op->n_trimmed);
		chat_store_log_recovery (&self->failing);
		for (guint i = 0; i < op->appends->len; i++) {
			Append *append = g_ptr_array_index (op->appends, i);

			append->done (append->done_data, append->frames, NULL);
		}
		/* more to trim by age: another pass (a failing store waits for the next append
		 * or the timer instead, or it would spin) */
		if (op->more_to_trim)
			ensure_open_group (self);
	}
}

static gboolean
on_op_done (gpointer user_data)
{
	SqliteOp *op = user_data;
	ChatSqliteStore *self = op->store;

	self->worker_ops--;
	if (op->type == OP_GROUP) {
		/* decided before another group is handed over, asked for after it */
		gboolean checkpoint = needs_checkpoint (self);

		self->in_flight = FALSE;
		/* What was appended meanwhile goes to the worker before this group's messages are
		 * relayed, so that the worker writes while the main thread relays (at saturation
		 * the two used to take turns). Not after a failure: the failed group's offsets are
		 * handed out again, so the next group takes its offsets only after that. */
		if (op->error == NULL)
			process_backlog (self, FALSE);
		complete_group (self, op);
		/* what the completions appended, or all of it after a failure */
		process_backlog (self, TRUE);
		if (checkpoint && !self->checkpoint_queued)
			queue_checkpoint (self);
	} else if (op->type == OP_CHECKPOINT) {
		self->checkpoint_queued = FALSE;
	} else if (op->error != NULL) {
		g_task_return_error (op->task, g_steal_pointer (&op->error));
	} else {
		g_task_return_pointer (op->task,
				       g_steal_pointer (&op->texts),
				       (GDestroyNotify) g_ptr_array_unref);
	}
	op_free (op);
	return G_SOURCE_REMOVE;
}

static gboolean
on_trim_timer (gpointer user_data)
{
	ensure_open_group (CHAT_SQLITE_STORE (user_data));
	return G_SOURCE_CONTINUE;
}

/* ---- ChatStore ---- */

static guint64
chat_sqlite_store_get_last_id (ChatStore *store)
{
	return CHAT_SQLITE_STORE (store)->last_id;
}

static void
chat_sqlite_store_get_stream (ChatStore *store,
			      ChatStreamKind kind,
			      guint64 stream_id,
			      guint64 *top,
			      guint64 *first,
			      const char **epoch)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (store);
	SqliteStream *stream = lookup_stream (self, kind, stream_id);

	*top = stream != NULL ? stream->top : 0;
	/* an append in flight into an empty stream does not move its first offset */
	*first = stream != NULL ? MIN (stream->first, stream->top + 1) : 1;
	*epoch = self->epoch;
}

static void
chat_sqlite_store_append (ChatStore *store,
			  const ChatStoreEntry *entries,
			  guint n_entries,
			  ChatStoreAppendFunc done,
			  gpointer user_data)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (store);
	Append *append =
	    g_malloc0 (sizeof (Append) + n_entries * (sizeof (ChatStoreEntry) + sizeof (GBytes *)));
	SqliteOp *group;

	G_STATIC_ASSERT (sizeof (Append) % sizeof (gpointer) == 0);
	G_STATIC_ASSERT (sizeof (ChatStoreEntry) % sizeof (gpointer) == 0);
	append->done = done;
	append->done_data = user_data;
	append->n_entries = n_entries;
	append->entries = (ChatStoreEntry *) (append + 1);
	append->frames = (GBytes **) (append->entries + n_entries);
	for (guint i = 0; i < n_entries; i++) {
		append->entries[i] = entries[i];
		g_object_ref (append->entries[i].message);
	}
	group = ensure_open_group (self);
	g_ptr_array_add (group->appends, append);
	group->n_entries += n_entries;
}

static void
chat_sqlite_store_read_async (ChatStore *store,
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
	ChatSqliteStore *self = CHAT_SQLITE_STORE (store);
	SqliteOp *op = op_new (self, OP_READ);

	op->task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (op->task, chat_sqlite_store_read_async);
	op->range = (ChatStoreRange){kind, stream_id, after, before, limit, newest};
	/* behind any append not yet with the worker, so that it sees them, and ahead of any
	 * append made after it: those go into a new group, or the read would see them too */
	if (g_queue_is_empty (&self->backlog)) {
		push_op (self, op);
	} else {
		g_queue_push_tail (&self->backlog, op);
		self->open_group = NULL;
	}
}

static guint64
chat_sqlite_store_get_delivered (ChatStore *store, guint64 user_id)
{
	SqliteStream *stream =
	    lookup_stream (CHAT_SQLITE_STORE (store), CHAT_STREAM_KIND_USER, user_id);

	return stream != NULL ? stream->delivered : 0;
}

static void
chat_sqlite_store_set_delivered (ChatStore *store, guint64 user_id, guint64 offset)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (store);
	SqliteStream *stream = ensure_stream (self, CHAT_STREAM_KIND_USER, user_id);

	if (offset <= stream->delivered)
		return;
	stream->delivered = offset;
	mark_delivered_dirty (self, user_id);
	/* written with the next group; a delivery alone makes one */
	ensure_open_group (self);
}

static GVariant *
chat_sqlite_store_get_statistics (ChatStore *store)
{
	return chat_store_statistics_to_variant (&CHAT_SQLITE_STORE (store)->statistics);
}

/* a failing store is tried again by the next append or the trim timer, within a minute */
static gboolean
chat_sqlite_store_is_ready (ChatStore *store)
{
	return !CHAT_SQLITE_STORE (store)->failing;
}

static void
chat_sqlite_store_iface_init (ChatStoreInterface *iface)
{
	iface->get_last_id = chat_sqlite_store_get_last_id;
	iface->get_stream = chat_sqlite_store_get_stream;
	iface->append = chat_sqlite_store_append;
	iface->read_async = chat_sqlite_store_read_async;
	iface->read_finish = chat_store_task_read_finish;
	iface->get_delivered = chat_sqlite_store_get_delivered;
	iface->set_delivered = chat_sqlite_store_set_delivered;
	iface->get_statistics = chat_sqlite_store_get_statistics;
	iface->is_ready = chat_sqlite_store_is_ready;
}

/* ---- opening ---- */

/* Runs @sql and reads one integer from its first row (0 when there is none). */
static gboolean
query_int (sqlite3 *db, const char *sql, gint64 *value, int *code)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);

	*value = 0;
	if (rc == SQLITE_OK) {
		rc = sqlite3_step (stmt);
		if (rc == SQLITE_ROW)
			*value = sqlite3_column_int64 (stmt, 0);
		if (rc == SQLITE_ROW || rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	sqlite3_finalize (stmt);
	*code = rc;
	return rc == SQLITE_OK;
}

static gboolean
exec_sql (sqlite3 *db, const char *sql, GError **error)
{
	int rc = sqlite3_exec (db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		set_sqlite_error (error, db, rc);
		return FALSE;
	}
	return TRUE;
}

static gboolean
migrate (sqlite3 *db, gint64 version, GError **error)
{
	for (; version < SCHEMA_VERSION; version++) {
		g_autofree char *set_version =
		    g_strdup_printf ("PRAGMA user_version = %" G_GINT64_FORMAT, version + 1);

		if (!exec_sql (db, "BEGIN IMMEDIATE", error))
			return FALSE;
		if (!exec_sql (db, migrations[version], error) ||
		    !exec_sql (db, set_version, error) || !exec_sql (db, "COMMIT", error)) {
			sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean
load_state (ChatSqliteStore *self, sqlite3 *db, GError **error)
{
	sqlite3_stmt *stmt = NULL;
	int rc;

	rc = sqlite3_prepare_v2 (db,
				 "SELECT (SELECT value FROM meta WHERE key = 'epoch'),"
				 " (SELECT value FROM meta WHERE key = 'last_id')",
				 -1,
				 &stmt,
				 NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW &&
	    sqlite3_column_type (stmt, 0) == SQLITE_TEXT) {
		self->epoch = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
		self->last_id = (guint64) sqlite3_column_int64 (stmt, 1);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_ROW) {
		rc = SQLITE_CORRUPT;
	}
	sqlite3_finalize (stmt);
	if (rc != SQLITE_OK) {
		set_sqlite_error (error, db, rc);
		return FALSE;
	}

	rc = sqlite3_prepare_v2 (db,
				 "SELECT s.kind, s.stream_id, s.top, s.delivered,"
				 " (SELECT min(offset) FROM messages m"
				 "  WHERE m.kind = s.kind AND m.stream_id = s.stream_id)"
				 " FROM streams s",
				 -1,
				 &stmt,
				 NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
		gint64 kind = sqlite3_column_int64 (stmt, 0);
		SqliteStream *stream;

		if (kind != CHAT_STREAM_KIND_ROOM && kind != CHAT_STREAM_KIND_USER) {
			rc = SQLITE_CORRUPT;
			break;
		}
		stream = ensure_stream (self, kind, (guint64) sqlite3_column_int64 (stmt, 1));
		stream->top = stream->assigned = (guint64) sqlite3_column_int64 (stmt, 2);
		stream->delivered = (guint64) sqlite3_column_int64 (stmt, 3);
		stream->first = sqlite3_column_type (stmt, 4) == SQLITE_NULL
				    ? stream->top + 1
				    : (guint64) sqlite3_column_int64 (stmt, 4);
		self->statistics.retained += stream->top + 1 - stream->first;
		rc = SQLITE_OK;
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	sqlite3_finalize (stmt);
	if (rc != SQLITE_OK) {
		set_sqlite_error (error, db, rc);
		return FALSE;
	}
	return TRUE;
}

/* Opens, checks and migrates the database, on the calling thread: the worker starts after. */
static sqlite3 *
open_database (ChatSqliteStore *self, GError **error)
{
	sqlite3 *db = NULL;
	gint64 version = 0, n_objects = 0;
	g_autofree char *journal = NULL;
	sqlite3_stmt *stmt = NULL;
	int rc;

	rc = sqlite3_open_v2 (self->path,
			      &db,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			      NULL);
	if (rc != SQLITE_OK) {
		g_set_error (error,
			     G_IO_ERROR,
			     io_error_from_sqlite (rc),
			     _ ("Cannot open the message store “%s”: %s"),
			     self->path,
			     db != NULL ? sqlite3_errmsg (db) : sqlite3_errstr (rc));
		sqlite3_close (db);
		return NULL;
	}
	sqlite3_extended_result_codes (db, 1);
	sqlite3_busy_timeout (db, 5000);

	/* the first read of the file: where a file that is no database shows */
	if (!query_int (db, "PRAGMA user_version", &version, &rc) ||
	    !query_int (db, "SELECT count(*) FROM sqlite_schema", &n_objects, &rc)) {
		if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
			g_set_error (
			    error,
			    G_IO_ERROR,
			    G_IO_ERROR_INVALID_DATA,
			    _ ("“%s” is not a chathub message store, or it is damaged: %s"),
			    self->path,
			    sqlite3_errmsg (db));
		else
			g_set_error (error,
				     G_IO_ERROR,
				     io_error_from_sqlite (rc),
				     _ ("Cannot read the message store “%s”: %s"),
				     self->path,
				     sqlite3_errmsg (db));
		sqlite3_close (db);
		return NULL;
	}
	if (version > SCHEMA_VERSION) {
		g_set_error (error,
			     G_IO_ERROR,
			     G_IO_ERROR_NOT_SUPPORTED,
			     _ ("The message store “%s” was written by a newer chathub (schema "
				"version %d, this one knows up to %d)"),
			     self->path,
			     (int) version,
			     SCHEMA_VERSION);
		sqlite3_close (db);
		return NULL;
	}
	if (version == 0 && n_objects > 0) {
		g_set_error (error,
			     G_IO_ERROR,
			     G_IO_ERROR_INVALID_DATA,
			     _ ("“%s” is an SQLite database but not a chathub message store"),
			     self->path);
		sqlite3_close (db);
		return NULL;
	}

	rc = sqlite3_prepare_v2 (db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
	if (rc == SQLITE_OK && sqlite3_step (stmt) == SQLITE_ROW)
		journal = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
	sqlite3_finalize (stmt);
	if (g_strcmp0 (journal, "wal") != 0) {
		g_set_error (error,
			     G_IO_ERROR,
			     G_IO_ERROR_NOT_SUPPORTED,
			     _ ("Cannot use write-ahead logging for the message store “%s”: %s"),
			     self->path,
			     sqlite3_errmsg (db));
		sqlite3_close (db);
		return NULL;
	}
	if (!exec_sql (db,
		       self->sync == CHAT_STORE_SYNC_FULL ? "PRAGMA synchronous = FULL"
							  : "PRAGMA synchronous = NORMAL",
		       error) ||
	    !migrate (db, version, error) || !load_state (self, db, error)) {
		g_prefix_error (error, _ ("Cannot open the message store “%s”: "), self->path);
		sqlite3_close (db);
		return NULL;
	}
	return db;
}

static gboolean
chat_sqlite_store_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (initable);
	sqlite3 *db;

	g_return_val_if_fail (self->thread == NULL, FALSE);

	if (self->path == NULL || self->path[0] == '\0') {
		g_set_error_literal (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("The message store needs a file name"));
		return FALSE;
	}
	db = open_database (self, error);
	if (db == NULL)
		return FALSE;

	self->worker = g_new0 (Worker, 1);
	self->worker->db = db;
	self->worker->queue = g_async_queue_ref (self->queue);
	sqlite3_wal_hook (db, on_wal_commit, self->worker);
	self->worker->restart_pending = TRUE;
	self->worker->checkpoint_at = CHECKPOINT_FRAMES;
	self->thread = g_thread_try_new ("chathub-store", worker_main, self->worker, error);
	if (self->thread == NULL) {
		sqlite3_close (db);
		g_async_queue_unref (self->queue);
		g_clear_pointer (&self->worker, g_free);
		return FALSE;
	}

	self->trim_source = chat_store_attach_source (
	    g_timeout_source_new_seconds (CHAT_STORE_TRIM_INTERVAL_SECONDS),
	    "chathub sqlite store trim",
	    on_trim_timer,
	    self,
	    self->context);
	return TRUE;
}

static void
chat_sqlite_store_initable_iface_init (GInitableIface *iface)
{
	iface->init = chat_sqlite_store_initable_init;
}

/* ---- GObject ---- */

static void
chat_sqlite_store_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (object);

	switch (prop_id) {
	case PROP_PATH:
		g_value_set_string (value, self->path);
		break;
	case PROP_SYNC:
		g_value_set_enum (value, self->sync);
		break;
	default:
		chat_store_retention_get_property (&self->retention, object, prop_id, value, pspec);
	}
}

static void
chat_sqlite_store_set_property (GObject *object,
				guint prop_id,
				const GValue *value,
				GParamSpec *pspec)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (object);

	switch (prop_id) {
	case PROP_PATH:
		self->path = g_value_dup_string (value);
		break;
	case PROP_SYNC:
		self->sync = g_value_get_enum (value);
		break;
	default:
		/* a shorter retention applies at once (by age; by size on the next append to
		 * each stream), not on the next beat */
		if (chat_store_retention_set_property (&self->retention,
						       object,
						       prop_id,
						       value,
						       pspec) &&
		    self->thread != NULL)
			ensure_open_group (self);
	}
}

static void
chat_sqlite_store_dispose (GObject *object)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (object);

	chat_store_clear_source (&self->trim_source);
	/* a kick left over from a group that completion handed already */
	chat_store_clear_source (&self->kick_source);
	G_OBJECT_CLASS (chat_sqlite_store_parent_class)->dispose (object);
}

static void
chat_sqlite_store_finalize (GObject *object)
{
	ChatSqliteStore *self = CHAT_SQLITE_STORE (object);

	/* every operation holds a reference: none is queued or in flight now */
	g_assert (g_queue_is_empty (&self->backlog));
	if (self->thread != NULL) {
		SqliteOp *stop = g_new0 (SqliteOp, 1);

		stop->type = OP_STOP;
		g_async_queue_push (self->queue, stop);
		g_thread_join (self->thread);
	}
	g_async_queue_unref (self->queue);
	chat_store_streams_clear (self->streams);
	g_hash_table_unref (self->dirty_delivered);
	g_free (self->epoch);
	g_free (self->path);
	g_string_free (self->scratch, TRUE);
	g_main_context_unref (self->context);
	G_OBJECT_CLASS (chat_sqlite_store_parent_class)->finalize (object);
}

static void
chat_sqlite_store_class_init (ChatSqliteStoreClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();
	object_class->get_property = chat_sqlite_store_get_property;
	object_class->set_property = chat_sqlite_store_set_property;
	object_class->dispose = chat_sqlite_store_dispose;
	object_class->finalize = chat_sqlite_store_finalize;

	/**
	 * ChatSqliteStore:path:
	 *
	 * The database file. Its directory must exist; the file is created if it does not.
	 *
	 * Since: 1.0
	 */
	props[PROP_PATH] = g_param_spec_string ("path",
						NULL,
						"The database file",
						NULL,
						G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
						    G_PARAM_STATIC_STRINGS);
	/**
	 * ChatSqliteStore:sync:
	 *
	 * How durable each group commit is before messages count as stored.
	 *
	 * Since: 1.0
	 */
	props[PROP_SYNC] =
	    g_param_spec_enum ("sync",
			       NULL,
			       "How durable each group commit is",
			       CHAT_TYPE_STORE_SYNC,
			       CHAT_STORE_SYNC_NORMAL,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	g_object_class_install_property (object_class, PROP_PATH, props[PROP_PATH]);
	g_object_class_install_property (object_class, PROP_SYNC, props[PROP_SYNC]);
	chat_store_override_properties (object_class);
}

static void
chat_sqlite_store_init (ChatSqliteStore *self)
{
	chat_store_streams_init (self->streams, g_free);
	self->dirty_delivered = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
	self->queue = g_async_queue_new ();
	g_queue_init (&self->backlog);
	self->scratch = g_string_sized_new (256);
	self->context = g_main_context_ref_thread_default ();
}

/**
 * chat_sqlite_store_new:
 * @path: (type filename): the database file; its directory must exist
 * @sync: how durable each commit is
 * @error: return location for a #GError
 *
 * Opens the store in @path, creating the file if it does not exist and bringing an older
 * schema up to date. The store's operations complete on the thread-default main context of
 * the caller. A file that cannot be opened, one that is not a chathub store or is damaged
 * (%G_IO_ERROR_INVALID_DATA) and one written by a newer chathub (%G_IO_ERROR_NOT_SUPPORTED)
 * are refused with an error that names the file; none is ever replaced.
 *
 * Dropping the last reference waits for the worker thread to finish; the hub holds one
 * while any operation is pending.
 *
 * Returns: (transfer full): the store, or %NULL on error
 *
 * Since: 1.0
 */
ChatSqliteStore *
chat_sqlite_store_new (const char *path, ChatStoreSync sync, GError **error)
{
	g_return_val_if_fail (path != NULL, NULL);
	g_return_val_if_fail (sync <= CHAT_STORE_SYNC_FULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	return g_initable_new (CHAT_TYPE_SQLITE_STORE,
			       NULL,
			       error,
			       "path",
			       path,
			       "sync",
			       sync,
			       NULL);
}

/**
 * chat_sqlite_store_get_path:
 * @self: a #ChatSqliteStore
 *
 * Gets the database file of @self.
 *
 * Returns: (type filename): the path
 *
 * Since: 1.0
 */
const char *
chat_sqlite_store_get_path (ChatSqliteStore *self)
{
	g_return_val_if_fail (CHAT_IS_SQLITE_STORE (self), NULL);
	return self->path;
}

/**
 * chat_sqlite_store_get_sync:
 * @self: a #ChatSqliteStore
 *
 * Gets how durable the commits of @self are.
 *
 * Returns: the #ChatStoreSync
 *
 * Since: 1.0
 */
ChatStoreSync
chat_sqlite_store_get_sync (ChatSqliteStore *self)
{
	g_return_val_if_fail (CHAT_IS_SQLITE_STORE (self), CHAT_STORE_SYNC_NORMAL);
	return self->sync;
}

gint64
chat_sqlite_store_query (ChatSqliteStore *self, const char *sql)
{
	SqliteOp op = {OP_QUERY};
	gint64 answer;

	g_return_val_if_fail (CHAT_IS_SQLITE_STORE (self), G_MININT64);
	g_return_val_if_fail (self->thread != NULL, G_MININT64);

	g_mutex_init (&op.mutex);
	g_cond_init (&op.cond);
	op.sql = sql;
	g_async_queue_push (self->queue, &op);
	g_mutex_lock (&op.mutex);
	while (!op.done)
		g_cond_wait (&op.cond, &op.mutex);
	answer = op.answer;
	g_mutex_unlock (&op.mutex);
	g_mutex_clear (&op.mutex);
	g_cond_clear (&op.cond);
	return answer;
}

void
chat_sqlite_store_pause (ChatSqliteStore *self, gboolean paused)
{
	g_return_if_fail (CHAT_IS_SQLITE_STORE (self));
	g_return_if_fail (self->thread != NULL);
	g_return_if_fail (paused == (self->pause == NULL));

	if (paused) {
		self->pause = g_new0 (SqliteOp, 1);
		self->pause->type = OP_PAUSE;
		g_mutex_init (&self->pause->mutex);
		g_cond_init (&self->pause->cond);
		g_async_queue_push (self->queue, self->pause);
		return;
	}
	/* the worker frees it once it has woken up */
	g_mutex_lock (&self->pause->mutex);
	self->pause->done = TRUE;
	g_cond_signal (&self->pause->cond);
	g_mutex_unlock (&self->pause->mutex);
	self->pause = NULL;
}
