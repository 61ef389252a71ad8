/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * ChatStore: the same behaviour from ChatMemoryStore, ChatSqliteStore and ChatRedisStore
 * (offsets, groups, reads, retention, delivered watermarks, asynchrony), then what only a
 * database file has: restarts, files it must refuse, and a full disk. The Redis cases run
 * against a real redis-server that main() starts (CHAT_TEST_REDIS_SERVER names it), each
 * with a key prefix of its own.
 */

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "chat-sqlite-store-private.h"
#include "chat-store-private.h"
#include "chat-test-utils.h"

typedef enum { BACKEND_MEMORY, BACKEND_SQLITE, BACKEND_SQLITE_FULL, BACKEND_REDIS } Backend;

typedef struct {
	Backend backend;
	char *dir;
	char *path;
	ChatStore *store;
} StoreFixture;

/* ---- log events: counted, and not fatal ---- */

static guint n_failed_events;
static guint n_recovered_events;

static GLogWriterOutput
test_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
	for (gsize i = 0; i < n_fields; i++) {
		if (g_strcmp0 (fields[i].key, "CHATHUB_EVENT") != 0)
			continue;
		if (g_strcmp0 (fields[i].value, "store-failed") == 0) {
			g_assert_true (level & G_LOG_LEVEL_WARNING);
			n_failed_events++;
			return G_LOG_WRITER_HANDLED;
		}
		/* the Redis store's connection, refused or lost */
		if (g_strcmp0 (fields[i].value, "redis-unavailable") == 0)
			return G_LOG_WRITER_HANDLED;
		if (g_strcmp0 (fields[i].value, "store-recovered") == 0) {
			n_recovered_events++;
			return G_LOG_WRITER_HANDLED;
		}
	}
	return g_log_writer_default (level, fields, n_fields, data);
}

/* ---- a real redis-server, for the whole run ---- */

static GPid redis_pid;
static char *redis_address;
static char *redis_dir;
static guint redis_prefixes;

static gboolean
redis_connected (gpointer data)
{
	return chat_redis_store_is_connected (data);
}

/* it must not outlive a test that aborts: meson would wait for its end of the pipes */
static void
die_with_parent (gpointer data)
{
	/* not under valgrind (the setup that scales the timeouts): there the signal comes at
	 * once, the forking thread being valgrind's own; stop_redis() still kills it */
	if (data == NULL)
		prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static gboolean
redis_accepts (gpointer data)
{
	g_autoptr (GSocketClient) client = g_socket_client_new ();
	g_autoptr (GSocketAddress) address = g_unix_socket_address_new (data);
	g_autoptr (GSocketConnection) connection =
	    g_socket_client_connect (client, G_SOCKET_CONNECTABLE (address), NULL, NULL);

	return connection != NULL;
}

static void
start_redis (const char *server)
{
	g_autoptr (GError) error = NULL;
	g_autofree char *socket_path = NULL;
	const char *argv[] = {server,
			      "--port",
			      "0",
			      "--unixsocket",
			      NULL,
			      "--dir",
			      NULL,
			      "--save",
			      "",
			      "--appendonly",
			      "no",
			      "--logfile",
			      "",
			      NULL};

	/* a unix socket in a directory of our own: no TCP port another test could take first */
	redis_dir = g_dir_make_tmp ("chathub-redis-XXXXXX", &error);
	g_assert_no_error (error);
	socket_path = g_build_filename (redis_dir, "redis.sock", NULL);
	argv[4] = socket_path;
	argv[6] = redis_dir;
	/* our own child, not a grandchild: without DO_NOT_REAP_CHILD GLib forks an intermediate
	 * process that exits at once, and the death signal set below then killed redis-server
	 * before it started in about one run in six */
	g_assert_true (g_spawn_async (NULL,
				      (char **) argv,
				      NULL,
				      G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
					  G_SPAWN_STDERR_TO_DEV_NULL,
				      die_with_parent,
				      (gpointer) g_getenv ("CHAT_TEST_TIMEOUT_MULTIPLIER"),
				      &redis_pid,
				      &error));
	g_assert_no_error (error);
	redis_address = g_steal_pointer (&socket_path);
	/* ready before any store tries it: a store's reconnection backs off up to seconds */
	chat_test_wait_until (redis_accepts, redis_address, 20000);
}

static void
stop_redis (void)
{
	g_autofree char *dump = NULL;

	if (redis_pid == 0)
		return;
	kill (redis_pid, SIGKILL);
	waitpid (redis_pid, NULL, 0);
	g_spawn_close_pid (redis_pid);
	g_remove (redis_address); /* the socket */
	g_rmdir (redis_dir);
	g_free (redis_dir);
	g_free (redis_address);
}

static ChatStore *
open_redis (void)
{
	g_autofree char *prefix = g_strdup_printf ("store-test-%u", ++redis_prefixes);
	ChatRedisStore *store = chat_redis_store_new (redis_address, prefix);

	g_assert_cmpstr (chat_redis_store_get_key_prefix (store), ==, prefix);
	g_assert_cmpstr (chat_redis_store_get_address (store), ==, redis_address);
	chat_test_wait_until (redis_connected, store, 10000);
	return CHAT_STORE (store);
}

/* ---- helpers ---- */

static ChatMessage *
make_message (guint64 room_id, guint64 to, guint64 id, gint64 timestamp, const char *content)
{
	ChatMessage *message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);

	chat_message_set_id (message, id);
	chat_message_set_from (message, 1);
	chat_message_set_room_id (message, room_id);
	chat_message_set_to (message, to);
	chat_message_set_timestamp (message, timestamp);
	chat_message_set_content (message, content);
	return message;
}

static gint64
now_seconds (void)
{
	return g_get_real_time () / G_USEC_PER_SEC;
}

typedef struct {
	gboolean done;
	gboolean ok;
	GError *error;
	GPtrArray *texts;
} Result;

static gboolean
result_done (gpointer data)
{
	return ((Result *) data)->done;
}

static void
on_appended (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Result *out = user_data;

	out->ok = chat_store_append_finish (CHAT_STORE (source), result, &out->error);
	out->done = TRUE;
}

static void
on_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Result *out = user_data;

	out->texts = chat_store_read_finish (CHAT_STORE (source), result, &out->error);
	out->done = TRUE;
}

static void
result_clear (Result *result)
{
	g_clear_error (&result->error);
	g_clear_pointer (&result->texts, g_ptr_array_unref);
	memset (result, 0, sizeof *result);
}

static void
wait_result (Result *result)
{
	chat_test_wait_until (result_done, result, 10000);
}

/* Appends one message to @kind/@stream_id and waits; returns whether it was stored. */
static gboolean
append_one (ChatStore *store,
	    ChatStreamKind kind,
	    guint64 stream_id,
	    ChatMessage *message,
	    GError **error)
{
	ChatStoreEntry entry = {kind, stream_id, message};
	Result result = {0};
	gboolean ok;

	chat_store_append_async (store, &entry, 1, NULL, on_appended, &result);
	wait_result (&result);
	ok = result.ok;
	if (result.error != NULL)
		g_propagate_error (error, g_steal_pointer (&result.error));
	result_clear (&result);
	return ok;
}

static void
append_room (ChatStore *store, guint64 room_id, guint64 id, gint64 timestamp)
{
	g_autoptr (ChatMessage) message = make_message (room_id, 0, id, timestamp, "hello");
	g_autoptr (GError) error = NULL;

	g_assert_true (append_one (store, CHAT_STREAM_KIND_ROOM, room_id, message, &error));
	g_assert_no_error (error);
}

static void
append_dm (ChatStore *store, guint64 user_id, guint64 id, gint64 timestamp)
{
	g_autoptr (ChatMessage) message = make_message (0, user_id, id, timestamp, "psst");
	g_autoptr (GError) error = NULL;

	g_assert_true (append_one (store, CHAT_STREAM_KIND_USER, user_id, message, &error));
	g_assert_no_error (error);
}

/* Reads @range and waits. */
static GPtrArray *
read_stream (ChatStore *store, const ChatStoreRange *range)
{
	Result result = {0};
	GPtrArray *texts;

	chat_store_read_async (store,
			       range->kind,
			       range->stream_id,
			       range->after,
			       range->before,
			       range->limit,
			       range->newest,
			       NULL,
			       on_read,
			       &result);
	wait_result (&result);
	g_assert_no_error (result.error);
	g_assert_nonnull (result.texts);
	texts = g_steal_pointer (&result.texts);
	result_clear (&result);
	return texts;
}

/* The offsets of the JSON texts, in order. */
static char *
offsets_of (GPtrArray *texts)
{
	GString *out = g_string_new (NULL);

	for (guint i = 0; i < texts->len; i++) {
		gsize length;
		const char *text = g_bytes_get_data (texts->pdata[i], &length);
		g_autoptr (GError) error = NULL;
		g_autofree char *copy = g_strndup (text, length);
		g_autoptr (JsonNode) node = json_from_string (copy, &error);

		g_assert_no_error (error);
		g_string_append_printf (
		    out,
		    "%s%" G_GINT64_FORMAT,
		    i > 0 ? "," : "",
		    json_object_get_int_member (json_node_get_object (node), "offset"));
	}
	return g_string_free (out, FALSE);
}

static void
assert_read (ChatStore *store,
	     ChatStreamKind kind,
	     guint64 stream_id,
	     guint64 after,
	     guint64 before,
	     guint limit,
	     gboolean newest,
	     const char *expected)
{
	ChatStoreRange range = {kind, stream_id, after, before, limit, newest};
	g_autoptr (GPtrArray) texts = read_stream (store, &range);
	g_autofree char *offsets = offsets_of (texts);

	g_assert_cmpstr (offsets, ==, expected);
}

static guint64
stream_top (ChatStore *store, ChatStreamKind kind, guint64 stream_id)
{
	guint64 top;

	chat_store_get_stream (store, kind, stream_id, &top, NULL, NULL);
	return top;
}

static guint64
stream_first (ChatStore *store, ChatStreamKind kind, guint64 stream_id)
{
	guint64 first;

	chat_store_get_stream (store, kind, stream_id, NULL, &first, NULL);
	return first;
}

static guint64
statistic (ChatStore *store, const char *name)
{
	g_autoptr (GVariant) statistics = chat_store_get_statistics (store);
	guint64 value = G_MAXUINT64;

	g_assert_true (g_variant_lookup (statistics, name, "t", &value));
	return value;
}

static ChatStore *
open_sqlite_sync (const char *path, ChatStoreSync sync)
{
	g_autoptr (GError) error = NULL;
	ChatSqliteStore *store = chat_sqlite_store_new (path, sync, &error);

	g_assert_no_error (error);
	g_assert_nonnull (store);
	g_assert_cmpint (chat_sqlite_store_get_sync (store), ==, sync);
	/* the worker's connection: WAL, and synchronous NORMAL (1) or FULL (2) */
	g_assert_cmpint (chat_sqlite_store_query (store, "PRAGMA synchronous"),
			 ==,
			 sync == CHAT_STORE_SYNC_FULL ? 2 : 1);
	g_assert_cmpint (chat_sqlite_store_query (store,
						  "SELECT count(*) FROM pragma_journal_mode"
						  " WHERE journal_mode = 'wal'"),
			 ==,
			 1);
	g_assert_cmpstr (chat_sqlite_store_get_path (store), ==, path);
	return CHAT_STORE (store);
}

static ChatStore *
open_sqlite (const char *path)
{
	return open_sqlite_sync (path, CHAT_STORE_SYNC_NORMAL);
}

/* Lets every completion and trim pass run, then drops the store. */
static gboolean
only_reference (gpointer data)
{
	return G_OBJECT (data)->ref_count == 1;
}

static void
close_store (ChatStore **store)
{
	chat_test_wait_until (only_reference, *store, 10000);
	g_clear_object (store);
}

static void
store_setup (StoreFixture *fixture, gconstpointer data)
{
	g_autoptr (GError) error = NULL;

	fixture->backend = GPOINTER_TO_INT (data);
	fixture->dir = g_dir_make_tmp ("chathub-store-XXXXXX", &error);
	g_assert_no_error (error);
	fixture->path = g_build_filename (fixture->dir, "chathub.db", NULL);
	if (fixture->backend == BACKEND_SQLITE)
		fixture->store = open_sqlite (fixture->path);
	else if (fixture->backend == BACKEND_SQLITE_FULL)
		fixture->store = open_sqlite_sync (fixture->path, CHAT_STORE_SYNC_FULL);
	else if (fixture->backend == BACKEND_REDIS)
		fixture->store = open_redis ();
	else
		fixture->store = CHAT_STORE (chat_memory_store_new ());
	n_failed_events = n_recovered_events = 0;
}

static void
store_teardown (StoreFixture *fixture, gconstpointer data)
{
	g_autoptr (GDir) dir = NULL;
	const char *name;

	if (fixture->store != NULL)
		close_store (&fixture->store);
	dir = g_dir_open (fixture->dir, 0, NULL);
	while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
		g_autofree char *path = g_build_filename (fixture->dir, name, NULL);

		g_assert_cmpint (g_remove (path), ==, 0);
	}
	g_assert_cmpint (g_rmdir (fixture->dir), ==, 0);
	g_free (fixture->path);
	g_free (fixture->dir);
}

/* ---- both backends ---- */

/* offsets count per stream from 1; the stored text is the message with its offset */
static void
test_store_offsets (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	/* the memory store keeps no last id across a restart: it starts from the clock */
	guint64 base = chat_store_get_last_id (store);
	g_autoptr (ChatMessage) message = make_message (2, 0, base + 40, now_seconds (), "x\"y");
	g_autoptr (GPtrArray) texts = NULL;
	g_autofree char *json = NULL;
	g_autofree char *expected_id = NULL;
	const char *epoch = NULL;
	guint64 top = 99, first = 99;

	if (fixture->backend == BACKEND_MEMORY) {
		g_assert_cmpuint (base, >, 0);
		g_assert_cmpuint (base, <=, (guint64) g_get_real_time ());
	} else {
		g_assert_cmpuint (base, ==, 0);
	}

	chat_store_get_stream (store, CHAT_STREAM_KIND_ROOM, 1, &top, &first, &epoch);
	g_assert_cmpuint (top, ==, 0);
	g_assert_cmpuint (first, ==, 1);
	g_assert_nonnull (epoch);
	g_assert_cmpuint (strlen (epoch), >=, 8);

	append_room (store, 1, base + 10, now_seconds ());
	append_room (store, 1, base + 11, now_seconds ());
	append_dm (store, 1, base + 12, now_seconds ());
	append_room (store, 1, base + 13, now_seconds ());
	g_assert_true (append_one (store, CHAT_STREAM_KIND_ROOM, 2, message, NULL));
	g_assert_cmpuint (chat_message_get_offset (message), ==, 1);

	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 3);
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_ROOM, 1), ==, 1);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 2), ==, 1);
	/* a room and a user with the same id are different streams */
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_USER, 1), ==, 1);
	g_assert_cmpuint (chat_store_get_last_id (store), ==, base + 40);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2,3");

	texts = read_stream (store, &(ChatStoreRange){CHAT_STREAM_KIND_ROOM, 2});
	g_assert_cmpuint (texts->len, ==, 1);
	json = chat_message_to_json (message);
	{
		g_autoptr (GBytes) expected = g_bytes_new_static (json, strlen (json));

		g_assert_true (g_bytes_equal (texts->pdata[0], expected));
	}
	expected_id = g_strdup_printf ("\"id\":%" G_GUINT64_FORMAT ",\"offset\":1,", base + 40);
	g_assert_nonnull (strstr (json, expected_id));
	g_assert_cmpuint (statistic (store, "stored"), ==, 5);
	g_assert_cmpuint (statistic (store, "retained"), ==, 5);
}

/* nothing completes inside the call; the committed top moves with the completion */
static void
test_store_asynchronous (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	g_autoptr (ChatMessage) message = make_message (5, 0, 1, now_seconds (), "a");
	ChatStoreEntry entry = {CHAT_STREAM_KIND_ROOM, 5, message};
	Result result = {0};

	chat_store_append_async (store, &entry, 1, NULL, on_appended, &result);
	g_assert_false (result.done);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 5), ==, 0);
	wait_result (&result);
	g_assert_true (result.ok);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 5), ==, 1);
	result_clear (&result);

	chat_store_read_async (store,
			       CHAT_STREAM_KIND_ROOM,
			       5,
			       0,
			       0,
			       0,
			       FALSE,
			       NULL,
			       on_read,
			       &result);
	g_assert_false (result.done);
	wait_result (&result);
	result_clear (&result);
}

/* appends of one main-loop iteration share one group; every message of an append is
 * stored together, offsets contiguous across appends */
static void
test_store_group (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	Result results[4] = {{0}};
	ChatMessage *messages[8];
	guint64 groups;

	append_room (store, 1, 1, now_seconds ());
	groups = statistic (store, "groups");
	for (guint i = 0; i < G_N_ELEMENTS (messages); i++)
		messages[i] = make_message (1, 0, 2 + i, now_seconds (), "m");
	for (guint i = 0; i < G_N_ELEMENTS (results); i++) {
		/* each append: one message to room 1, one to user 9 */
		ChatStoreEntry entries[2] = {
		    {CHAT_STREAM_KIND_ROOM, 1, messages[2 * i]},
		    {CHAT_STREAM_KIND_USER, 9, messages[2 * i + 1]},
		};

		chat_store_append_async (store, entries, 2, NULL, on_appended, &results[i]);
	}
	for (guint i = 0; i < G_N_ELEMENTS (results); i++) {
		wait_result (&results[i]);
		g_assert_true (results[i].ok);
		result_clear (&results[i]);
	}
	for (guint i = 0; i < G_N_ELEMENTS (messages); i++) {
		g_assert_cmpuint (chat_message_get_offset (messages[i]),
				  ==,
				  i % 2 == 0 ? 2 + i / 2 : 1 + i / 2);
		g_object_unref (messages[i]);
	}
	g_assert_cmpuint (statistic (store, "groups"), ==, groups + 1);
	g_assert_cmpuint (statistic (store, "largest-group"), ==, 8);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2,3,4,5");
	assert_read (store, CHAT_STREAM_KIND_USER, 9, 0, 0, 0, FALSE, "1,2,3,4");
}

/* (after, before) exclusive, the oldest or the newest @limit; a read sees the appends made
 * before it even when they are not complete yet */
static void
test_store_read (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	g_autoptr (ChatMessage) late = make_message (3, 0, 100, now_seconds (), "late");
	ChatStoreEntry entry = {CHAT_STREAM_KIND_ROOM, 3, late};
	Result appended = {0};

	for (guint i = 1; i <= 10; i++)
		append_room (store, 3, i, now_seconds ());
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 0, 0, 0, FALSE, "1,2,3,4,5,6,7,8,9,10");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 4, 0, 3, FALSE, "5,6,7");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 0, 0, 3, TRUE, "8,9,10");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 0, 8, 3, TRUE, "5,6,7");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 2, 6, 0, TRUE, "3,4,5");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 10, 0, 5, FALSE, "");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 5, 6, 5, FALSE, "");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 4, 0, 0, 5, FALSE, "");

	chat_store_append_async (store, &entry, 1, NULL, on_appended, &appended);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 3, 9, 0, 0, FALSE, "10,11");
	wait_result (&appended);
	g_assert_true (appended.ok);
	result_clear (&appended);
}

/* rooms keep their newest history-size; a user's stream only loses delivered messages */
static void
test_store_history_size (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;

	g_object_set (store, "history-size", 3, NULL);
	for (guint i = 1; i <= 5; i++)
		append_room (store, 1, i, now_seconds ());
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_ROOM, 1), ==, 3);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 5);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "3,4,5");
	g_assert_cmpuint (statistic (store, "trimmed"), ==, 2);
	g_assert_cmpuint (statistic (store, "retained"), ==, 3);

	for (guint i = 1; i <= 5; i++)
		append_dm (store, 8, 10 + i, now_seconds ());
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_USER, 8), ==, 1);
	chat_store_set_delivered (store, 8, 4);
	append_dm (store, 8, 20, now_seconds ());
	/* delivered up to 4, newest 3 of 6 are 4..6: 1..3 go */
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_USER, 8), ==, 4);
	assert_read (store, CHAT_STREAM_KIND_USER, 8, 0, 0, 0, FALSE, "4,5,6");
}

static gboolean
room_first_is_4 (gpointer data)
{
	return stream_first (data, CHAT_STREAM_KIND_ROOM, 1) == 4;
}

static gboolean
user_emptied (gpointer data)
{
	return stream_first (data, CHAT_STREAM_KIND_USER, 2) == 3;
}

/* history-ttl for rooms, dm-ttl for direct messages; a shorter retention applies at once */
static void
test_store_ttl (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	gint64 now = now_seconds ();

	g_object_set (store, "history-ttl", (guint64) 3600, "dm-ttl", (guint64) 0, NULL);
	/* an hour and more old: gone as soon as they are stored */
	append_room (store, 1, 1, now - 7200);
	append_room (store, 1, 2, now - 3700);
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_ROOM, 1), ==, 3);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 2);
	append_room (store, 1, 3, now - 600);
	append_room (store, 1, 4, now);
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_ROOM, 1), ==, 3);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "3,4");

	/* undelivered direct messages ignore history-ttl: dm-ttl 0 keeps them */
	append_dm (store, 2, 5, now - 7200);
	append_dm (store, 2, 6, now - 7000);
	g_assert_cmpuint (stream_first (store, CHAT_STREAM_KIND_USER, 2), ==, 1);
	assert_read (store, CHAT_STREAM_KIND_USER, 2, 0, 0, 0, FALSE, "1,2");

	/* shorter limits trim streams nobody writes to */
	g_object_set (store, "history-ttl", (guint64) 300, NULL);
	chat_test_wait_until (room_first_is_4, store, 10000);
	g_object_set (store, "dm-ttl", (guint64) 3600, NULL);
	chat_test_wait_until (user_emptied, store, 10000);
	assert_read (store, CHAT_STREAM_KIND_USER, 2, 0, 0, 0, FALSE, "");
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_USER, 2), ==, 2);
	g_assert_cmpuint (statistic (store, "trimmed"), ==, 5);
	/* offsets go on from the top, never reused */
	append_dm (store, 2, 7, now);
	assert_read (store, CHAT_STREAM_KIND_USER, 2, 0, 0, 0, FALSE, "3");
}

static void
test_store_delivered (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;

	g_assert_cmpuint (chat_store_get_delivered (store, 4), ==, 0);
	chat_store_set_delivered (store, 4, 7);
	g_assert_cmpuint (chat_store_get_delivered (store, 4), ==, 7);
	/* a watermark does not go back */
	chat_store_set_delivered (store, 4, 3);
	g_assert_cmpuint (chat_store_get_delivered (store, 4), ==, 7);
	g_assert_cmpuint (chat_store_get_delivered (store, 5), ==, 0);
}

/* ---- the Redis store ---- */

/* nothing reachable: appends and reads fail with NOT_CONNECTED (a hub answers
 * `unavailable`), nothing gets an offset, one warning for the streak */
static void
test_redis_store_unreachable (void)
{
	/* the discard port: nobody listens there */
	g_autoptr (ChatRedisStore) redis = chat_redis_store_new ("127.0.0.1:9", "unreachable");
	ChatStore *store = CHAT_STORE (redis);
	g_autoptr (ChatMessage) message = make_message (1, 0, 1, now_seconds (), "lost");
	g_autoptr (GError) error = NULL;
	Result read = {0};

	n_failed_events = 0;
	g_assert_false (chat_redis_store_is_connected (redis));
	g_assert_false (append_one (store, CHAT_STREAM_KIND_ROOM, 1, message, &error));
	g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED);
	g_assert_cmpuint (chat_message_get_offset (message), ==, 0);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 0);
	g_assert_cmpuint (statistic (store, "failed"), ==, 1);
	g_assert_cmpuint (statistic (store, "stored"), ==, 0);
	g_clear_error (&error);
	g_assert_false (append_one (store, CHAT_STREAM_KIND_ROOM, 1, message, &error));
	g_assert_cmpuint (n_failed_events, ==, 1);
	chat_store_read_async (store,
			       CHAT_STREAM_KIND_ROOM,
			       1,
			       0,
			       0,
			       0,
			       FALSE,
			       NULL,
			       on_read,
			       &read);
	wait_result (&read);
	g_assert_error (read.error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED);
	g_assert_null (read.texts);
	result_clear (&read);
	chat_test_wait_until (only_reference, redis, 10000);
}

/* ---- the memory store ---- */

static void
test_memory_store_epoch (void)
{
	g_autoptr (ChatMemoryStore) a = chat_memory_store_new ();
	g_autoptr (ChatMemoryStore) b = chat_memory_store_new ();
	const char *epoch_a, *epoch_b;

	chat_store_get_stream (CHAT_STORE (a), CHAT_STREAM_KIND_ROOM, 1, NULL, NULL, &epoch_a);
	chat_store_get_stream (CHAT_STORE (b), CHAT_STREAM_KIND_ROOM, 1, NULL, NULL, &epoch_b);
	g_assert_cmpstr (epoch_a, !=, epoch_b);
}

/* an entry with stream id 0 (a hub-wide message) keeps its id and nothing else */
static void
test_store_id_only (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	guint64 base = chat_store_get_last_id (store);
	g_autoptr (ChatMessage) message = make_message (0, 0, base + 7, now_seconds (), "all");
	g_autoptr (GError) error = NULL;

	g_assert_true (append_one (store, CHAT_STREAM_KIND_ROOM, 0, message, &error));
	g_assert_no_error (error);
	g_assert_cmpuint (chat_store_get_last_id (store), ==, base + 7);
	/* no offset, no stream, nothing counted as stored or retained */
	g_assert_cmpuint (chat_message_get_offset (message), ==, 0);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 0), ==, 0);
	g_assert_cmpuint (statistic (store, "stored"), ==, 0);
	g_assert_cmpuint (statistic (store, "retained"), ==, 0);
	append_room (store, 1, base + 5, now_seconds ());
	if (fixture->backend == BACKEND_REDIS) {
		/* Redis gives the ids, from its counter: above every id before, whatever the
		 * message proposed, and a new store on the same keys goes on from it */
		g_autofree char *prefix = NULL;

		g_assert_cmpuint (chat_store_get_last_id (store), ==, base + 8);
		g_object_get (store, "key-prefix", &prefix, NULL);
		close_store (&fixture->store);
		fixture->store = CHAT_STORE (chat_redis_store_new (redis_address, prefix));
		chat_test_wait_until (redis_connected, fixture->store, 10000);
		append_room (fixture->store, 1, 1, now_seconds ());
		g_assert_cmpuint (chat_store_get_last_id (fixture->store), ==, base + 9);
		assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2");
		return;
	}
	/* with a stored message in the same group the last id is the larger */
	g_assert_cmpuint (chat_store_get_last_id (store), ==, base + 7);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1");
	if (fixture->backend == BACKEND_MEMORY)
		return;
	/* and it survives a restart */
	close_store (&fixture->store);
	fixture->store = open_sqlite (fixture->path);
	g_assert_cmpuint (chat_store_get_last_id (fixture->store), ==, base + 7);
}

/* ---- the SQLite store ---- */

/* everything committed is there after a reopen: ids, offsets, epoch, watermarks, texts */
static void
test_sqlite_store_restart (StoreFixture *fixture, gconstpointer data)
{
	g_autofree char *epoch = NULL;
	const char *epoch_again;
	guint64 first;

	g_object_set (fixture->store, "history-size", 2, NULL);
	for (guint i = 1; i <= 3; i++)
		append_room (fixture->store, 6, 100 + i, now_seconds ());
	append_dm (fixture->store, 7, 200, now_seconds ());
	chat_store_set_delivered (fixture->store, 7, 1);
	chat_store_get_stream (fixture->store, CHAT_STREAM_KIND_ROOM, 6, NULL, NULL, &epoch_again);
	epoch = g_strdup (epoch_again);
	close_store (&fixture->store);

	fixture->store = open_sqlite (fixture->path);
	g_assert_cmpuint (chat_store_get_last_id (fixture->store), ==, 200);
	chat_store_get_stream (fixture->store,
			       CHAT_STREAM_KIND_ROOM,
			       6,
			       NULL,
			       &first,
			       &epoch_again);
	g_assert_cmpstr (epoch_again, ==, epoch);
	g_assert_cmpuint (first, ==, 2);
	g_assert_cmpuint (stream_top (fixture->store, CHAT_STREAM_KIND_ROOM, 6), ==, 3);
	g_assert_cmpuint (stream_top (fixture->store, CHAT_STREAM_KIND_USER, 7), ==, 1);
	g_assert_cmpuint (chat_store_get_delivered (fixture->store, 7), ==, 1);
	g_assert_cmpuint (statistic (fixture->store, "retained"), ==, 3);
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 6, 0, 0, 0, FALSE, "2,3");
	/* retention is configuration, not stored */
	g_object_set (fixture->store, "history-size", 2, NULL);
	append_room (fixture->store, 6, 201, now_seconds ());
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 6, 0, 0, 0, FALSE, "3,4");
}

/* a new file is a version-1 database in WAL mode */
static void
test_sqlite_store_schema (StoreFixture *fixture, gconstpointer data)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;

	close_store (&fixture->store);
	g_assert_cmpint (sqlite3_open (fixture->path, &db), ==, SQLITE_OK);
	g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL),
			 ==,
			 SQLITE_OK);
	g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
	g_assert_cmpint (sqlite3_column_int (stmt, 0), ==, 1);
	sqlite3_finalize (stmt);
	g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA journal_mode", -1, &stmt, NULL),
			 ==,
			 SQLITE_OK);
	g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
	g_assert_cmpstr ((const char *) sqlite3_column_text (stmt, 0), ==, "wal");
	sqlite3_finalize (stmt);
	sqlite3_close (db);
}

static void
assert_open_fails (const char *path, GIOErrorEnum code, const char *fragment)
{
	g_autoptr (GError) error = NULL;
	g_autoptr (ChatSqliteStore) store =
	    chat_sqlite_store_new (path, CHAT_STORE_SYNC_FULL, &error);

	g_assert_null (store);
	g_assert_error (error, G_IO_ERROR, (gint) code);
	g_assert_nonnull (strstr (error->message, path));
	if (fragment != NULL && strstr (error->message, fragment) == NULL)
		g_error ("error “%s” does not mention “%s”", error->message, fragment);
}

/* garbage is refused and left as it is, never replaced */
static void
test_sqlite_store_garbage (StoreFixture *fixture, gconstpointer data)
{
	g_autofree char *path = g_build_filename (fixture->dir, "garbage.db", NULL);
	g_autofree char *contents = NULL;
	const char *garbage = "this is not a database, it is a shopping list: milk, eggs\n";
	g_autoptr (GError) error = NULL;
	gsize length;

	g_assert_true (g_file_set_contents (path, garbage, -1, &error));
	assert_open_fails (path, G_IO_ERROR_INVALID_DATA, "not a chathub message store");
	g_assert_true (g_file_get_contents (path, &contents, &length, &error));
	g_assert_cmpstr (contents, ==, garbage);
}

/* an SQLite database of something else is not taken over */
static void
test_sqlite_store_foreign (StoreFixture *fixture, gconstpointer data)
{
	g_autofree char *path = g_build_filename (fixture->dir, "other.db", NULL);
	sqlite3 *db = NULL;

	g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
	g_assert_cmpint (sqlite3_exec (db, "CREATE TABLE recipes (name TEXT)", NULL, NULL, NULL),
			 ==,
			 SQLITE_OK);
	sqlite3_close (db);
	assert_open_fails (path, G_IO_ERROR_INVALID_DATA, "not a chathub message store");
}

/* The tests run as root, for whom chmod 000 changes nothing: a directory where the file
 * should be and a directory that does not exist cannot be opened either. */
static void
test_sqlite_store_unopenable (StoreFixture *fixture, gconstpointer data)
{
	g_autofree char *missing = g_build_filename (fixture->dir, "no", "such", "dir.db", NULL);
	g_autofree char *unreadable = g_build_filename (fixture->dir, "unreadable.db", NULL);
	g_autoptr (GError) error = NULL;

	assert_open_fails (fixture->dir, G_IO_ERROR_FAILED, "Cannot open the message store");
	assert_open_fails (missing, G_IO_ERROR_FAILED, "Cannot open the message store");
	if (geteuid () != 0) {
		g_assert_true (g_file_set_contents (unreadable, "", 0, &error));
		g_assert_cmpint (g_chmod (unreadable, 0), ==, 0);
		assert_open_fails (unreadable, G_IO_ERROR_FAILED, "Cannot open the message store");
	}
}

/* a store from a newer chathub is refused, never downgraded */
static void
test_sqlite_store_newer (StoreFixture *fixture, gconstpointer data)
{
	sqlite3 *db = NULL;

	append_room (fixture->store, 1, 1, now_seconds ());
	close_store (&fixture->store);
	g_assert_cmpint (sqlite3_open (fixture->path, &db), ==, SQLITE_OK);
	g_assert_cmpint (sqlite3_exec (db, "PRAGMA user_version = 2", NULL, NULL, NULL),
			 ==,
			 SQLITE_OK);
	sqlite3_close (db);
	assert_open_fails (fixture->path, G_IO_ERROR_NOT_SUPPORTED, "schema version 2");
}

static ChatMessage *
big_message (guint64 room_id, guint64 id)
{
	g_autofree char *content = g_strnfill (20000, 'x');

	return make_message (room_id, 0, id, now_seconds (), content);
}

/* A full disk (SQLITE_FULL from a capped database): every append of the failing groups is
 * refused whole (the small message that fitted is rolled back with the rest), offsets stay
 * contiguous, one warning for the streak, and once there is room again appends succeed and one
 * message says so. */
static void
test_sqlite_store_full (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	/* small: it fits, the group fails on the next one */
	g_autoptr (ChatMessage) a = make_message (1, 0, 10, now_seconds (), "small");
	g_autoptr (ChatMessage) b = big_message (1, 11);
	g_autoptr (ChatMessage) c = big_message (2, 12);
	g_autoptr (ChatMessage) d = big_message (1, 13);
	ChatStoreEntry ab[2] = {{CHAT_STREAM_KIND_ROOM, 1, a}, {CHAT_STREAM_KIND_ROOM, 1, b}};
	ChatStoreEntry c_entry = {CHAT_STREAM_KIND_ROOM, 2, c};
	Result results[2] = {{0}};
	g_autoptr (GError) error = NULL;

	append_room (store, 1, 1, now_seconds ());
	append_room (store, 1, 2, now_seconds ());
	g_assert_cmpint (
	    chat_sqlite_store_query (CHAT_SQLITE_STORE (store), "PRAGMA max_page_count = 1"),
	    >,
	    1);

	/* two appends in one iteration: one group, both refused */
	chat_store_append_async (store, ab, 2, NULL, on_appended, &results[0]);
	chat_store_append_async (store, &c_entry, 1, NULL, on_appended, &results[1]);
	for (guint i = 0; i < 2; i++) {
		wait_result (&results[i]);
		g_assert_false (results[i].ok);
		g_assert_error (results[i].error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
		result_clear (&results[i]);
	}
	g_assert_cmpuint (chat_message_get_offset (a), ==, 0);
	g_assert_cmpuint (chat_message_get_offset (b), ==, 0);
	g_assert_cmpuint (chat_message_get_offset (c), ==, 0);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 2);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 2), ==, 0);
	/* still full: the next group fails too, without a second warning */
	g_assert_false (append_one (store, CHAT_STREAM_KIND_ROOM, 1, d, &error));
	g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
	g_clear_error (&error);
	g_assert_cmpuint (n_failed_events, ==, 1);
	g_assert_cmpuint (n_recovered_events, ==, 0);
	g_assert_cmpuint (statistic (store, "failed"), ==, 4);
	g_assert_cmpuint (statistic (store, "stored"), ==, 2);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2");
	assert_read (store, CHAT_STREAM_KIND_ROOM, 2, 0, 0, 0, FALSE, "");

	/* room again: the same messages go in with the next offsets */
	chat_sqlite_store_query (CHAT_SQLITE_STORE (store), "PRAGMA max_page_count = 1073741823");
	chat_store_append_async (store, ab, 2, NULL, on_appended, &results[0]);
	wait_result (&results[0]);
	g_assert_no_error (results[0].error);
	g_assert_true (results[0].ok);
	result_clear (&results[0]);
	g_assert_true (append_one (store, CHAT_STREAM_KIND_ROOM, 2, c, &error));
	g_assert_no_error (error);
	g_assert_cmpuint (chat_message_get_offset (a), ==, 3);
	g_assert_cmpuint (chat_message_get_offset (b), ==, 4);
	g_assert_cmpuint (chat_message_get_offset (c), ==, 1);
	g_assert_cmpuint (n_failed_events, ==, 1);
	g_assert_cmpuint (n_recovered_events, ==, 1);

	/* and nothing half-stored survives a reopen */
	close_store (&fixture->store);
	fixture->store = open_sqlite (fixture->path);
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2,3,4");
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 2, 0, 0, 0, FALSE, "1");
	g_assert_cmpuint (chat_store_get_last_id (fixture->store), ==, 12);
}

/* ---- a VFS that counts, per thread, what SQLite writes and syncs ---- */

static GThread *main_thread;
static gint main_writes, main_syncs, checkpoints;
static sqlite3_vfs counting_vfs;

/* a file's methods (one set per kind of file), and the same but for these two */
typedef struct {
	const sqlite3_io_methods *real;
	sqlite3_io_methods counting;
} CountingMethods;
static CountingMethods counting_methods[8];

static const sqlite3_io_methods *
real_methods (sqlite3_file *file)
{
	const CountingMethods *methods =
	    G_STRUCT_MEMBER_P (file->pMethods, -G_STRUCT_OFFSET (CountingMethods, counting));

	return methods->real;
}

static int
counting_write (sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset)
{
	if (g_thread_self () == main_thread)
		g_atomic_int_inc (&main_writes);
	return real_methods (file)->xWrite (file, data, amount, offset);
}

/* after the file SQLite's VFS keeps: whether it is the database itself */
static gboolean *
is_database (sqlite3_file *file)
{
	sqlite3_vfs *real = counting_vfs.pAppData;

	return (gboolean *) ((char *) file + real->szOsFile);
}

static int
counting_sync (sqlite3_file *file, int flags)
{
	if (g_thread_self () == main_thread)
		g_atomic_int_inc (&main_syncs);
	/* a commit syncs the WAL at most; a checkpoint syncs the database */
	else if (*is_database (file))
		g_atomic_int_inc (&checkpoints);
	return real_methods (file)->xSync (file, flags);
}

static int
counting_open (sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
	sqlite3_vfs *real = vfs->pAppData;
	int rc = real->xOpen (real, name, file, flags, out_flags);
	guint i;

	if (rc != SQLITE_OK || file->pMethods == NULL)
		return rc;
	*is_database (file) = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	for (i = 0; counting_methods[i].real != NULL && counting_methods[i].real != file->pMethods;
	     i++)
		g_assert_cmpuint (i + 1, <, G_N_ELEMENTS (counting_methods));
	if (counting_methods[i].real == NULL) {
		counting_methods[i].real = file->pMethods;
		counting_methods[i].counting = *file->pMethods;
		counting_methods[i].counting.xWrite = counting_write;
		counting_methods[i].counting.xSync = counting_sync;
	}
	file->pMethods = &counting_methods[i].counting;
	return rc;
}

static void
append_numbered (ChatStore *store, guint first, guint last, GString *expected)
{
	for (guint i = first; i <= last; i++) {
		g_autoptr (ChatMessage) message = make_message (1, 0, i, now_seconds (), "m");
		g_autoptr (GError) error = NULL;

		g_assert_true (append_one (store, CHAT_STREAM_KIND_ROOM, 1, message, &error));
		g_assert_no_error (error);
		g_string_append_printf (expected, "%s%u", i > 1 ? "," : "", i);
		/* the worker done with what it had (a checkpoint), and its completions run */
		chat_sqlite_store_query (CHAT_SQLITE_STORE (store), "SELECT 1");
		while (g_main_context_iteration (NULL, FALSE))
			;
	}
}

/* With sync=normal the main thread commits small groups itself, and never waits for an
 * fsync: SQLite's automatic checkpoints are off, the worker checkpoints the WAL, and the
 * first write into an empty or checkpointed WAL (which syncs its header) is the worker's.
 * 400 commits of one message, each once the worker is idle, fill the WAL past the 1,000
 * frames that ask for a checkpoint. The store is reopened on a file whose WAL the previous
 * close removed: empty. With sync=full, everything is the worker's. */
static void
test_sqlite_store_main_thread_never_syncs (StoreFixture *fixture, gconstpointer data)
{
	sqlite3_vfs *real = sqlite3_vfs_find (NULL);
	g_autoptr (GString) expected = g_string_new (NULL);

	close_store (&fixture->store);
	counting_vfs = *real;
	counting_vfs.zName = "chathub-test-counting";
	counting_vfs.szOsFile = real->szOsFile + (int) sizeof (gboolean);
	counting_vfs.pAppData = real;
	counting_vfs.xOpen = counting_open;
	g_assert_cmpint (sqlite3_vfs_register (&counting_vfs, 1), ==, SQLITE_OK);
	main_thread = g_thread_self ();

	/* opening may sync: at start-up, before the main loop runs */
	fixture->store = open_sqlite (fixture->path);
	main_writes = main_syncs = checkpoints = 0;
	append_numbered (fixture->store, 1, 400, expected);
	g_assert_cmpint (g_atomic_int_get (&checkpoints), >, 0);
	g_assert_cmpint (g_atomic_int_get (&main_syncs), ==, 0);
	/* the main thread did commit */
	g_assert_cmpint (g_atomic_int_get (&main_writes), >, 0);
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, expected->str);

	close_store (&fixture->store);
	fixture->store = open_sqlite_sync (fixture->path, CHAT_STORE_SYNC_FULL);
	main_writes = main_syncs = 0;
	append_numbered (fixture->store, 401, 420, expected);
	g_assert_cmpint (g_atomic_int_get (&main_syncs), ==, 0);
	g_assert_cmpint (g_atomic_int_get (&main_writes), ==, 0);

	/* and it is all in the file */
	close_store (&fixture->store);
	g_assert_cmpint (sqlite3_vfs_unregister (&counting_vfs), ==, SQLITE_OK);
	g_assert_cmpint (sqlite3_vfs_register (real, 1), ==, SQLITE_OK);
	fixture->store = open_sqlite (fixture->path);
	assert_read (fixture->store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, expected->str);
}

/* The WAL starts over after each complete checkpoint and stays near the 1,000 frames that ask
 * for one. It grew without bound once (found by tools/soak: 110 MB in 9 minutes): after each
 * checkpoint the next one was asked for at the frames so far plus 1,000, counted in a WAL that
 * had started over, so each round let the WAL grow 1,000 frames more than the last. */
static void
test_sqlite_store_wal_bounded (StoreFixture *fixture, gconstpointer data)
{
	g_autofree char *wal = g_strconcat (fixture->path, "-wal", NULL);
	g_autoptr (GString) expected = g_string_new (NULL);
	goffset largest = 0;

	for (guint first = 1; first <= 4000; first += 200) {
		GStatBuf st;

		append_numbered (fixture->store, first, first + 199, expected);
		if (g_stat (wal, &st) == 0)
			largest = MAX (largest, (goffset) st.st_size);
	}
	/* 1,000 frames of 4 KiB and what one round commits past them (4 MiB); growing, the
	 * WAL had reached 24 MiB by here */
	g_test_message ("largest WAL: %" G_GOFFSET_FORMAT " bytes", largest);
	g_assert_cmpint (largest, >, 0);
	g_assert_cmpint (largest, <, 8 * 1024 * 1024);
	g_assert_cmpuint (statistic (fixture->store, "stored"), >=, 4000);
}

static gboolean
offset_given (gpointer data)
{
	return chat_message_get_offset (data) != 0;
}

/* One group in flight: what is appended meanwhile, over several main-loop iterations, waits
 * and then goes in one group; the main loop goes on meanwhile, a stalled disk or not. */
typedef struct {
	Result result;
	ChatMessage *next;   /* appended after, in the next group */
	guint64 next_offset; /* @next's offset when this append completed */
} FirstResult;

static void
on_first_appended (GObject *source, GAsyncResult *result, gpointer user_data)
{
	FirstResult *first = user_data;

	first->next_offset = chat_message_get_offset (first->next);
	on_appended (source, result, &first->result);
}

static void
test_sqlite_store_group_in_flight (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	ChatMessage *messages[4];
	Result results[4] = {{0}};
	FirstResult first = {{0}};
	guint64 groups;

	append_room (store, 1, 1, now_seconds ());
	groups = statistic (store, "groups");
	for (guint i = 0; i < G_N_ELEMENTS (messages); i++)
		messages[i] = make_message (1, 0, 10 + i, now_seconds (), "m");

	chat_sqlite_store_pause (CHAT_SQLITE_STORE (store), TRUE);
	{
		ChatStoreEntry entry = {CHAT_STREAM_KIND_ROOM, 1, messages[0]};

		first.next = messages[1];
		chat_store_append_async (store, &entry, 1, NULL, on_first_appended, &first);
	}
	/* handed to the (stalled) worker: offset given, not committed */
	chat_test_wait_until (offset_given, messages[0], 10000);
	g_assert_cmpuint (stream_top (store, CHAT_STREAM_KIND_ROOM, 1), ==, 1);
	for (guint i = 1; i < G_N_ELEMENTS (messages); i++) {
		ChatStoreEntry entry = {CHAT_STREAM_KIND_ROOM, 1, messages[i]};

		chat_store_append_async (store, &entry, 1, NULL, on_appended, &results[i]);
		for (guint j = 0; j < 5; j++)
			g_main_context_iteration (NULL, FALSE);
	}
	g_assert_false (first.result.done);
	for (guint i = 0; i < G_N_ELEMENTS (messages); i++) {
		g_assert_false (results[i].done);
		g_assert_cmpuint (chat_message_get_offset (messages[i]), ==, i == 0 ? 2 : 0);
	}
	chat_sqlite_store_pause (CHAT_SQLITE_STORE (store), FALSE);

	/* the next group went to the worker before the first one's completions ran, so that
	 * the worker writes while the main thread relays */
	wait_result (&first.result);
	g_assert_cmpuint (first.next_offset, ==, 3);
	results[0] = first.result;
	for (guint i = 0; i < G_N_ELEMENTS (messages); i++) {
		wait_result (&results[i]);
		g_assert_true (results[i].ok);
		result_clear (&results[i]);
		g_assert_cmpuint (chat_message_get_offset (messages[i]), ==, 2 + i);
		g_object_unref (messages[i]);
	}
	g_assert_cmpuint (statistic (store, "groups"), ==, groups + 2);
	g_assert_cmpuint (statistic (store, "largest-group"), ==, 3);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2,3,4,5");
}

/* A read sees exactly the appends made before it, none made after it, even when both come
 * in the same main-loop iteration (the recovery of a join relies on it). */
static void
test_store_read_between_appends (StoreFixture *fixture, gconstpointer data)
{
	ChatStore *store = fixture->store;
	g_autoptr (ChatMessage) before = make_message (1, 0, 1, now_seconds (), "before");
	g_autoptr (ChatMessage) after = make_message (1, 0, 2, now_seconds (), "after");
	Result appended[2] = {{0}}, read = {0};
	g_autofree char *offsets = NULL;

	chat_store_append_async (store,
				 &(ChatStoreEntry){CHAT_STREAM_KIND_ROOM, 1, before},
				 1,
				 NULL,
				 on_appended,
				 &appended[0]);
	chat_store_read_async (store,
			       CHAT_STREAM_KIND_ROOM,
			       1,
			       0,
			       0,
			       0,
			       FALSE,
			       NULL,
			       on_read,
			       &read);
	chat_store_append_async (store,
				 &(ChatStoreEntry){CHAT_STREAM_KIND_ROOM, 1, after},
				 1,
				 NULL,
				 on_appended,
				 &appended[1]);
	wait_result (&read);
	g_assert_no_error (read.error);
	offsets = offsets_of (read.texts);
	g_assert_cmpstr (offsets, ==, "1");
	for (guint i = 0; i < G_N_ELEMENTS (appended); i++) {
		wait_result (&appended[i]);
		g_assert_true (appended[i].ok);
		result_clear (&appended[i]);
	}
	result_clear (&read);
	assert_read (store, CHAT_STREAM_KIND_ROOM, 1, 0, 0, 0, FALSE, "1,2");
}

static void
add_both (const char *name, void (*test) (StoreFixture *, gconstpointer))
{
	g_autofree char *memory = g_strdup_printf ("/chat/store/memory/%s", name);
	g_autofree char *sqlite = g_strdup_printf ("/chat/store/sqlite/%s", name);
	g_autofree char *sqlite_full = g_strdup_printf ("/chat/store/sqlite-full/%s", name);

	g_test_add (memory,
		    StoreFixture,
		    GINT_TO_POINTER (BACKEND_MEMORY),
		    store_setup,
		    test,
		    store_teardown);
	g_test_add (sqlite,
		    StoreFixture,
		    GINT_TO_POINTER (BACKEND_SQLITE),
		    store_setup,
		    test,
		    store_teardown);
	g_test_add (sqlite_full,
		    StoreFixture,
		    GINT_TO_POINTER (BACKEND_SQLITE_FULL),
		    store_setup,
		    test,
		    store_teardown);
	if (redis_address != NULL) {
		g_autofree char *redis = g_strdup_printf ("/chat/store/redis/%s", name);

		g_test_add (redis,
			    StoreFixture,
			    GINT_TO_POINTER (BACKEND_REDIS),
			    store_setup,
			    test,
			    store_teardown);
	}
}

static void
add_sqlite (const char *name, void (*test) (StoreFixture *, gconstpointer))
{
	g_autofree char *path = g_strdup_printf ("/chat/store/sqlite/%s", name);

	g_test_add (path,
		    StoreFixture,
		    GINT_TO_POINTER (BACKEND_SQLITE),
		    store_setup,
		    test,
		    store_teardown);
}

int
main (int argc, char **argv)
{
	const char *redis_server = g_getenv ("CHAT_TEST_REDIS_SERVER");
	int status;

	g_log_set_writer_func (test_log_writer, NULL, NULL);
	g_test_init (&argc, &argv, NULL);
	if (redis_server != NULL && *redis_server != '\0')
		start_redis (redis_server);

	add_both ("offsets", test_store_offsets);
	add_both ("id-only", test_store_id_only);
	add_both ("read-between-appends", test_store_read_between_appends);
	add_both ("asynchronous", test_store_asynchronous);
	add_both ("group", test_store_group);
	add_both ("read", test_store_read);
	add_both ("history-size", test_store_history_size);
	add_both ("ttl", test_store_ttl);
	add_both ("delivered", test_store_delivered);
	g_test_add_func ("/chat/store/memory/epoch", test_memory_store_epoch);
	if (redis_address != NULL)
		g_test_add_func ("/chat/store/redis/unreachable", test_redis_store_unreachable);
	add_sqlite ("group-in-flight", test_sqlite_store_group_in_flight);
	add_sqlite ("wal-bounded", test_sqlite_store_wal_bounded);
	add_sqlite ("restart", test_sqlite_store_restart);
	add_sqlite ("schema", test_sqlite_store_schema);
	add_sqlite ("garbage", test_sqlite_store_garbage);
	add_sqlite ("foreign", test_sqlite_store_foreign);
	add_sqlite ("unopenable", test_sqlite_store_unopenable);
	add_sqlite ("newer", test_sqlite_store_newer);
	add_sqlite ("full", test_sqlite_store_full);
	add_sqlite ("main-thread-never-syncs", test_sqlite_store_main_thread_never_syncs);
	status = g_test_run ();
	stop_redis ();
	return status;
}
