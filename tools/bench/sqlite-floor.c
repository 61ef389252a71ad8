/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * sqlite-floor: the ingest floor of the SQLite store. A bare loop that inserts rows like the
 * store's (the messages table of chat-sqlite-store.c, a ~200-byte room frame) in transactions
 * of a given size, in WAL mode with synchronous=NORMAL or FULL, and prints rows/s as one JSON
 * line. What the daemon does around the inserts (stream tops, last id, trimming, the hand-over
 * to its worker thread) is deliberately left out: this is what the disk and SQLite allow.
 *
 *   sqlite-floor [--rows N] [--group G] [--rooms R] [--sync normal|full] PATH
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char schema[] =
    "CREATE TABLE messages (kind INTEGER NOT NULL, stream_id INTEGER NOT NULL,"
    "  offset INTEGER NOT NULL, id INTEGER NOT NULL, timestamp INTEGER NOT NULL,"
    "  frame TEXT NOT NULL, PRIMARY KEY (kind, stream_id, offset)) WITHOUT ROWID;"
    "CREATE INDEX messages_by_time ON messages (kind, timestamp);";

static double
now (void)
{
	struct timespec ts;

	clock_gettime (CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
check (sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf (stderr, "sqlite-floor: %s: %s\n", what, sqlite3_errmsg (db));
		exit (1);
	}
}

static void
usage (void)
{
	fprintf (
	    stderr,
	    "usage: sqlite-floor [--rows N] [--group G] [--rooms R] [--sync normal|full] PATH\n");
	exit (2);
}

int
main (int argc, char **argv)
{
	long rows = 20000, group = 10, rooms = 20;
	const char *sync = "normal", *path = NULL;
	sqlite3 *db;
	sqlite3_stmt *insert, *begin, *commit;
	char frame[256], pragma[64];
	long *offsets;
	double start, seconds;

	for (int i = 1; i < argc; i++) {
		if (strcmp (argv[i], "--rows") == 0 && i + 1 < argc)
			rows = atol (argv[++i]);
		else if (strcmp (argv[i], "--group") == 0 && i + 1 < argc)
			group = atol (argv[++i]);
		else if (strcmp (argv[i], "--rooms") == 0 && i + 1 < argc)
			rooms = atol (argv[++i]);
		else if (strcmp (argv[i], "--sync") == 0 && i + 1 < argc)
			sync = argv[++i];
		else if (argv[i][0] != '-' && path == NULL)
			path = argv[i];
		else
			usage ();
	}
	if (path == NULL || rows < 1 || group < 1 || rooms < 1 ||
	    (strcmp (sync, "normal") != 0 && strcmp (sync, "full") != 0))
		usage ();

	/* a fresh file each run, as the daemon's compare steps start on one */
	unlink (path);
	for (const char *suffix = "-wal"; suffix != NULL;
	     suffix = strcmp (suffix, "-wal") == 0 ? "-shm" : NULL) {
		char side[4096];

		snprintf (side, sizeof side, "%s%s", path, suffix);
		unlink (side);
	}
	check (NULL, sqlite3_open (path, &db), "open");
	check (db, sqlite3_exec (db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), "WAL");
	snprintf (pragma,
		  sizeof pragma,
		  "PRAGMA synchronous = %s",
		  strcmp (sync, "full") == 0 ? "FULL" : "NORMAL");
	check (db, sqlite3_exec (db, pragma, NULL, NULL, NULL), "synchronous");
	check (db, sqlite3_exec (db, schema, NULL, NULL, NULL), "schema");
	check (db,
	       sqlite3_prepare_v2 (
		   db,
		   "INSERT INTO messages (kind, stream_id, offset, id, timestamp, frame)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		   -1,
		   &insert,
		   NULL),
	       "prepare");
	check (db, sqlite3_prepare_v2 (db, "BEGIN", -1, &begin, NULL), "prepare");
	check (db, sqlite3_prepare_v2 (db, "COMMIT", -1, &commit, NULL), "prepare");
	offsets = calloc ((size_t) rooms, sizeof *offsets);

	start = now ();
	for (long id = 1; id <= rows; id++) {
		long room = (id - 1) % rooms + 1;
		long long timestamp = (long long) time (NULL) * 1000;
		int length;

		if ((id - 1) % group == 0) {
			check (db, sqlite3_step (begin), "BEGIN");
			sqlite3_reset (begin);
		}
		offsets[room - 1]++;
		/* like a relayed room frame of chathub-bench: ~200 bytes */
		length = snprintf (
		    frame,
		    sizeof frame,
		    "{\"type\":\"message\",\"id\":%ld,\"timestamp\":%lld,\"from\":%ld,"
		    "\"room_id\":%ld,\"offset\":%ld,\"data\":{\"t\":%lld,\"p\":"
		    "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}",
		    id,
		    timestamp,
		    1000 + id % 200,
		    room,
		    offsets[room - 1],
		    timestamp);
		sqlite3_bind_int (insert, 1, 0);
		sqlite3_bind_int64 (insert, 2, room);
		sqlite3_bind_int64 (insert, 3, offsets[room - 1]);
		sqlite3_bind_int64 (insert, 4, id);
		sqlite3_bind_int64 (insert, 5, timestamp);
		sqlite3_bind_text (insert, 6, frame, length, SQLITE_STATIC);
		check (db, sqlite3_step (insert), "INSERT");
		sqlite3_reset (insert);
		if (id % group == 0 || id == rows) {
			check (db, sqlite3_step (commit), "COMMIT");
			sqlite3_reset (commit);
		}
	}
	seconds = now () - start;

	printf ("{\"sync\":\"%s\",\"group\":%ld,\"rooms\":%ld,\"rows\":%ld,\"frame_bytes\":%zu,"
		"\"seconds\":%.3f,\"rows_per_sec\":%.0f}\n",
		sync,
		group,
		rooms,
		rows,
		strlen (frame),
		seconds,
		(double) rows / seconds);
	sqlite3_finalize (insert);
	sqlite3_finalize (begin);
	sqlite3_finalize (commit);
	sqlite3_close (db);
	free (offsets);
	return 0;
}
