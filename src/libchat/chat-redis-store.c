/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat-i18n-private.h"
#include "chat-redis-connection-private.h"
#include "chat-redis-store.h"
#include "chat-store-private.h"

/**
 * SECTION:chat-redis-store
 * @title: ChatRedisStore
 * @short_description: a message store in Redis, shared by several hubs
 *
 * A #ChatRedisStore keeps the streams in Redis (7.0 or later), so that several chathub
 * processes, on one machine or several, form one hub: message ids come from one Redis
 * counter and so increase across all of them, and every room and user stream lives once,
 * with its offsets and epoch. Each message costs one script call, which stores it (an entry
 * in the stream's Redis stream, trimmed to the retention) and publishes it to the nodes
 * that have members in its room or connections of its user.
 *
 * The store connects by itself and reconnects after a loss, with a backoff; while Redis is
 * unreachable, appends and reads fail with %G_IO_ERROR_NOT_CONNECTED, which a hub answers
 * with `unavailable`. Redis holds the epoch of each stream: when Redis loses a stream (a
 * restart without persistence), the next message starts a new epoch.
 *
 * hiredis, which the store uses, has no TLS: reach a remote Redis through a unix socket of a
 * tunnel (see `docs/deployment.md`).
 */

/**
 * ChatRedisStore:
 *
 * A #ChatStore in Redis.
 *
 * Since: 1.0
 */

typedef enum {
	WATCH_NONE,
	WATCH_SUBSCRIBING, /* SUBSCRIBE sent, not confirmed */
	WATCH_LOADING,	   /* the watch script sent; its marker not back yet */
	WATCH_READY,
} WatchState;

typedef struct {
	ChatStreamKind kind;
	guint64 id;
	guint64 top;
	guint64 first;
	guint64 delivered;
	char *epoch;
	WatchState watch;
	guint watchers;
	guint pending_subs;
	guint generation;
	gint64 watch_started; /* monotonic, the current attempt */
	gboolean relayed;     /* was ready: top and epoch are what this node relayed */
	gboolean reported;    /* ChatStoreBroker.unavailable told for the current attempt */
} RedisStream;

typedef enum { OP_APPEND, OP_READ } OpType;

typedef struct {
	ChatRedisStore *self; /* owned */
	OpType type;
	GTask *task;
	/* OP_APPEND */
	ChatStoreEntry *entries;
	guint n_entries;
	guint64 seq;
	gboolean acked;
	gboolean replied;
	gint64 replied_us;
	gboolean orphaned; /* its ack was lost with a pub/sub connection: its reply tells */
	gboolean completed;
	/* OP_READ */
	ChatStoreRange range;
} RedisOp;

struct _ChatRedisStore {
	GObject parent_instance;

	char *address;
	char *password;
	char *key_prefix;
	char *node_name;
	GMainContext *context;

	ChatRedisConnection *commands;
	ChatRedisConnection *pubsub; /* only with a broker */
	gboolean scripts_loaded;

	GHashTable *streams[2]; /* chat_store_streams_*: RedisStream* */
	char *epoch_candidate;	/* for a stream created by the next script */
	guint64 last_id;
	guint64 next_seq;
	GQueue backlog;		/* RedisOp*: not yet sent, in order */
	GQueue awaiting_ack;	/* RedisOp*: appends sent, waiting for their publication */
	GSource *kick_source;	/* sends the backlog once per iteration */
	GSource *reload_source; /* loads the scripts again after a refusal */

	const ChatStoreBroker *broker;
	gpointer broker_data;
	char *node_channel;

	guint timeout_ms;	  /* the bound on anything that waits for Redis */
	guint presence_ttl;	  /* seconds */
	GSource *tick_source;	  /* with a broker: the probe and the watches' deadlines */
	GSource *check_source;	  /* a watch to report unavailable at once */
	guint64 probe_seq;	  /* the last probe sent */
	guint64 probe_echoed;	  /* the last probe that came back */
	gboolean probe_in_flight; /* its PUBLISH not answered yet */
	gint64 probe_answered_us; /* when it was; 0: not waiting for its echo */
	gint64 next_probe_us;
	/* room id -> (user id -> how many of its connections are in the room here) */
	GHashTable *presence;
	GSource *presence_source; /* refreshes this node's presence entries */

	ChatStoreRetention retention;
	ChatStoreStatistics statistics;
	gboolean failing;
};

enum {
	PROP_ADDRESS = CHAT_STORE_N_PROPS,
	PROP_PASSWORD,
	PROP_KEY_PREFIX,
	PROP_NODE_NAME,
	PROP_TIMEOUT,
	PROP_PRESENCE_TTL,
	N_PROPS
};

static GParamSpec *props[N_PROPS];

static void
chat_redis_store_iface_init (ChatStoreInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ChatRedisStore,
			       chat_redis_store,
			       G_TYPE_OBJECT,
			       G_IMPLEMENT_INTERFACE (CHAT_TYPE_STORE, chat_redis_store_iface_init))

/* ---- the scripts ---------------------------------------------------------------------- */

/* Stream entries have the id "<offset>-0", fields t (the message's timestamp) and f (the
 * frame). Only a prefix is ever trimmed, so the retained offsets stay contiguous. Numbers go
 * into strings through %d: Lua would write a large one with an exponent. Expiry looks at the
 * oldest entry alone first (it usually has not expired: reading 100 entries to find that was
 * most of the append script's time), then at 100 more at most. */
#define LUA_TRIM                                                                                  \
	"local function trim(kind, meta, stream, top)\n"                                          \
	"  local size = tonumber(ARGV[5]); local hist_ttl = tonumber(ARGV[6])\n"                  \
	"  local dm_ttl = tonumber(ARGV[7]); local now = tonumber(redis.call('TIME')[1])\n"       \
	"  local delivered = tonumber(redis.call('HGET', meta, 'd') or '0')\n"                    \
	"  local cut = 0\n"                                                                       \
	"  if top > size then\n"                                                                  \
	"    cut = top - size\n"                                                                  \
	"    if kind == 'u' and cut > delivered then cut = delivered end\n"                       \
	"  end\n"                                                                                 \
	"  local hist_cut = -1; if hist_ttl > 0 then hist_cut = now - hist_ttl end\n"             \
	"  local dm_cut = -1; if dm_ttl > 0 then dm_cut = now - dm_ttl end\n"                     \
	"  local from = '-'\n"                                                                    \
	"  if cut > 0 then from = '(' .. string.format('%d', cut) .. '-0' end\n"                  \
	"  local batch = 1\n"                                                                     \
	"  for pass = 1, 2 do\n"                                                                  \
	"    local entries = redis.call('XRANGE', stream, from, '+', 'COUNT', batch)\n"           \
	"    local more = #entries == batch\n"                                                    \
	"    for _, e in ipairs(entries) do\n"                                                    \
	"      local off = tonumber(string.match(e[1], '^%d+'))\n"                                \
	"      local t = tonumber(e[2][2])\n"                                                     \
	"      local old\n"                                                                       \
	"      if kind == 'r' then old = t < hist_cut\n"                                          \
	"      else old = t < dm_cut or (off <= delivered and t < hist_cut) end\n"                \
	"      if not old then more = false; break end\n"                                         \
	"      cut = off\n"                                                                       \
	"    end\n"                                                                               \
	"    if not more then break end\n"                                                        \
	"    from = '(' .. string.format('%d', cut) .. '-0'; batch = 100\n"                       \
	"  end\n"                                                                                 \
	"  local trimmed = 0\n"                                                                   \
	"  if cut > 0 then\n"                                                                     \
	"    trimmed = redis.call('XTRIM', stream, 'MINID', string.format('%d', cut + 1) .. "     \
	"'-0')\n"                                                                                 \
	"  end\n"                                                                                 \
	"  local ttl = hist_ttl; if kind == 'u' then ttl = dm_ttl end\n"                          \
	"  if ttl > 0 then redis.call('EXPIRE', stream, ttl) else redis.call('PERSIST', stream) " \
	"end\n"                                                                                   \
	"  local f = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)\n"                        \
	"  local first = top + 1\n"                                                               \
	"  if f[1] then first = tonumber(string.match(f[1][1], '^%d+')) end\n"                    \
	"  return first, trimmed\n"                                                               \
	"end\n"

#define LUA_ENSURE_META                                                           \
	"local function ensure_meta(meta, candidate, meta_ttl)\n"                 \
	"  local epoch = redis.call('HGET', meta, 'e')\n"                         \
	"  if not epoch then\n"                                                   \
	"    epoch = candidate\n"                                                 \
	"    redis.call('HSET', meta, 'e', epoch, 'o', 0)\n"                      \
	"  end\n"                                                                 \
	"  if tonumber(meta_ttl) > 0 then redis.call('EXPIRE', meta, meta_ttl)\n" \
	"  else redis.call('PERSIST', meta) end\n"                                \
	"  return epoch\n"                                                        \
	"end\n"

/* KEYS: the id counter, then meta and stream per entry. ARGV: 1 ack channel, 2 ack payload,
 * 3 proposed id, 4 epoch candidate, 5 history-size, 6 history-ttl, 7 dm-ttl, 8 meta ttl,
 * 9 timestamp, 10 frame prefix, 11 frame tail, 12 hub-wide channel, then kind and channel
 * per entry. Returns the id, then per entry offset, epoch, first retained, trimmed. */
static const char append_script[] = LUA_TRIM LUA_ENSURE_META
    "local id = redis.call('INCR', KEYS[1])\n"
    "if tonumber(ARGV[3]) > id then redis.call('SET', KEYS[1], ARGV[3]); id = tonumber(ARGV[3]) "
    "end\n"
    "local ids = string.format('%d', id)\n"
    "local res = {ids}\n"
    "if ARGV[12] ~= '' then\n"
    "  redis.call('PUBLISH', ARGV[12], '0 -\\n' .. ARGV[10] .. ',\"id\":' .. ids .. ARGV[11])\n"
    "end\n"
    "for i = 1, (#KEYS - 1) / 2 do\n"
    "  local meta = KEYS[2 * i]; local stream = KEYS[2 * i + 1]\n"
    "  local kind = ARGV[11 + 2 * i]; local channel = ARGV[12 + 2 * i]\n"
    "  local epoch = ensure_meta(meta, ARGV[4], ARGV[8])\n"
    "  local off = redis.call('HINCRBY', meta, 'o', 1)\n"
    "  local offs = string.format('%d', off)\n"
    "  local frame = ARGV[10] .. ',\"id\":' .. ids .. ',\"offset\":' .. offs .. ARGV[11]\n"
    "  redis.call('XADD', stream, offs .. '-0', 't', ARGV[9], 'f', frame)\n"
    "  local first, trimmed = trim(kind, meta, stream, off)\n"
    "  if channel ~= '' then redis.call('PUBLISH', channel, offs .. ' ' .. epoch .. '\\n' .. "
    "frame) end\n"
    "  res[#res + 1] = offs; res[#res + 1] = epoch\n"
    "  res[#res + 1] = string.format('%d', first); res[#res + 1] = trimmed\n"
    "end\n"
    "if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end\n"
    "return res\n";

/* KEYS: meta, stream. ARGV: 1 after, 2 before (0: none), 3 limit (0: none), 4 newest (1),
 * 5 epoch candidate, 6 meta ttl. Returns epoch, top, first, delivered, then the frames,
 * oldest first. */
static const char read_script[] = LUA_ENSURE_META
    "local epoch = ensure_meta(KEYS[1], ARGV[5], ARGV[6])\n"
    "local top = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')\n"
    "local lo = '-'; if ARGV[1] ~= '0' then lo = '(' .. ARGV[1] .. '-0' end\n"
    "local hi = '+'; if ARGV[2] ~= '0' then hi = '(' .. ARGV[2] .. '-0' end\n"
    "local entries\n"
    "local reversed = ARGV[4] == '1' and ARGV[3] ~= '0'\n"
    "if reversed then entries = redis.call('XREVRANGE', KEYS[2], hi, lo, 'COUNT', ARGV[3])\n"
    "elseif ARGV[3] ~= '0' then entries = redis.call('XRANGE', KEYS[2], lo, hi, 'COUNT', ARGV[3])\n"
    "else entries = redis.call('XRANGE', KEYS[2], lo, hi) end\n"
    "local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "local first = top + 1\n"
    "if f[1] then first = tonumber(string.match(f[1][1], '^%d+')) end\n"
    "local res = {epoch, string.format('%d', top), string.format('%d', first),\n"
    "             redis.call('HGET', KEYS[1], 'd') or '0'}\n"
    "local n = #entries\n"
    "for i = 1, n do\n"
    "  local e = entries[i]; if reversed then e = entries[n + 1 - i] end\n"
    "  res[#res + 1] = e[2][4]\n"
    "end\n"
    "return res\n";

/* KEYS: meta, stream. ARGV: 1 this node's channel, 2 marker, 3 epoch candidate, 4 meta ttl.
 * Publishes the marker with the stream's state to this node: what this node receives of the
 * stream after the marker has offsets above that state's top. */
static const char watch_script[] = LUA_ENSURE_META
    "local epoch = ensure_meta(KEYS[1], ARGV[3], ARGV[4])\n"
    "local top = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')\n"
    "local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "local first = top + 1\n"
    "if f[1] then first = tonumber(string.match(f[1][1], '^%d+')) end\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. string.format('%d', top) .. ' ' .. epoch\n"
    "  .. ' ' .. string.format('%d', first) .. ' ' .. (redis.call('HGET', KEYS[1], 'd') or '0'))\n"
    "return 1\n";

/* KEYS: meta. ARGV: the delivered offset; it only moves up, on a stream that exists. */
static const char delivered_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[1], 'd') or '0') then\n"
    "  redis.call('HSET', KEYS[1], 'd', ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: meta, stream. ARGV: 1 kind, 5 history-size, 6 history-ttl, 7 dm-ttl. Returns the
 * first retained offset and how many went. */
static const char trim_script[] =
    LUA_TRIM "if redis.call('EXISTS', KEYS[1]) == 0 then return {'1', 0} end\n"
	     "local top = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')\n"
	     "local first, trimmed = trim(ARGV[1], KEYS[1], KEYS[2], top)\n"
	     "return {string.format('%d', first), trimmed}\n";

/* Presence, after Centrifugo's presence_*.lua: per room a hash (field -> user id) and a
 * sorted set (field -> expiry in ms), a field per user and node ("<user> <node>"), so that
 * nodes never remove each other's entries; both keys expire with the last refresh. */
#define LUA_NOW_MS                       \
	"local t = redis.call('TIME')\n" \
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* KEYS: hash, zset. ARGV: 1 ttl (ms), then field and user id pairs. */
static const char presence_add_script[] = LUA_NOW_MS
    "local expiry = string.format('%d', now + tonumber(ARGV[1]))\n"
    "for i = 2, #ARGV, 2 do\n"
    "  redis.call('ZADD', KEYS[2], expiry, ARGV[i])\n"
    "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "end\n"
    /* nodes with a longer TTL keep theirs */
    "for k = 1, 2 do\n"
    "  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[k], "
    "ARGV[1]) end\n"
    "end\n"
    "return 1\n";

/* KEYS: hash, zset. ARGV: the fields. */
static const char presence_remove_script[] =
    "for i = 1, #ARGV do\n"
    "  redis.call('ZREM', KEYS[2], ARGV[i]); redis.call('HDEL', KEYS[1], ARGV[i])\n"
    "end\n"
    "return 1\n";

/* KEYS: hash, zset. Drops the expired entries; returns the user ids of the others. */
static const char presence_get_script[] =
    LUA_NOW_MS "local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)\n"
	       "for i = 1, #expired, 1000 do\n"
	       "  redis.call('HDEL', KEYS[1], unpack(expired, i, math.min(i + 999, #expired)))\n"
	       "end\n"
	       "if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end\n"
	       "return redis.call('HVALS', KEYS[1])\n";

typedef enum {
	SCRIPT_APPEND,
	SCRIPT_READ,
	SCRIPT_WATCH,
	SCRIPT_DELIVERED,
	SCRIPT_TRIM,
	SCRIPT_PRESENCE_ADD,
	SCRIPT_PRESENCE_REMOVE,
	SCRIPT_PRESENCE_GET,
	N_SCRIPTS
} ScriptId;

static const char *const scripts[N_SCRIPTS] = {
    append_script,
    read_script,
    watch_script,
    delivered_script,
    trim_script,
    presence_add_script,
    presence_remove_script,
    presence_get_script,
};
static char *script_shas[N_SCRIPTS];

static void
ensure_script_shas (void)
{
	static gsize done = 0;

	if (g_once_init_enter (&done)) {
		for (guint i = 0; i < N_SCRIPTS; i++)
			script_shas[i] =
			    g_compute_checksum_for_string (G_CHECKSUM_SHA1, scripts[i], -1);
		g_once_init_leave (&done, 1);
	}
}

/* ---- streams and keys ----------------------------------------------------------------- */

static char
kind_letter (ChatStreamKind kind)
{
	return kind == CHAT_STREAM_KIND_ROOM ? 'r' : 'u';
}

static char *
stream_key (ChatRedisStore *self, ChatStreamKind kind, guint64 id, const char *suffix)
{
	return g_strdup_printf ("%s:%c:%" G_GUINT64_FORMAT "%s",
				self->key_prefix,
				kind_letter (kind),
				id,
				suffix);
}

static void
redis_stream_free (RedisStream *stream)
{
	g_free (stream->epoch);
	g_free (stream);
}

static RedisStream *
ensure_stream (ChatRedisStore *self, ChatStreamKind kind, guint64 id)
{
	RedisStream *stream = chat_store_streams_lookup (self->streams, kind, id);

	if (stream == NULL) {
		stream = g_new0 (RedisStream, 1);
		stream->kind = kind;
		stream->id = id;
		stream->first = 1;
		/* until Redis says otherwise: the epoch the next script would create */
		stream->epoch = g_strdup (self->epoch_candidate);
		chat_store_streams_insert (self->streams, kind, id, stream);
	}
	return stream;
}

static void
stream_set_epoch (RedisStream *stream, const char *epoch)
{
	if (g_strcmp0 (stream->epoch, epoch) == 0)
		return;
	g_free (stream->epoch);
	stream->epoch = g_strdup (epoch);
}

/* A candidate used by a script becomes an epoch: the next stream gets another. */
static void
renew_candidate (ChatRedisStore *self, const char *used)
{
	if (g_strcmp0 (used, self->epoch_candidate) != 0)
		return;
	g_free (self->epoch_candidate);
	self->epoch_candidate = g_uuid_string_random ();
}

static guint64
reply_uint (redisReply *reply)
{
	if (reply->type == REDIS_REPLY_INTEGER)
		return (guint64) MAX (reply->integer, 0);
	if (reply->type == REDIS_REPLY_STRING)
		return g_ascii_strtoull (reply->str, NULL, 10);
	return 0;
}

static guint64
meta_ttl (ChatRedisStore *self)
{
	/* kept as long as anything in its stream may be: a lost meta means a new epoch */
	if (self->retention.history_ttl == 0 || self->retention.dm_ttl == 0)
		return 0;
	return 2 * MAX (self->retention.history_ttl, self->retention.dm_ttl);
}

/* ---- operations ----------------------------------------------------------------------- */

static RedisOp *
redis_op_new (ChatRedisStore *self,
	      OpType type,
	      GCancellable *cancellable,
	      GAsyncReadyCallback callback,
	      gpointer user_data,
	      gpointer source_tag)
{
	RedisOp *op = g_new0 (RedisOp, 1);

	op->self = g_object_ref (self);
	op->type = type;
	op->task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (op->task, source_tag);
	return op;
}

static void
redis_op_free (RedisOp *op)
{
	chat_store_entries_free (op->entries, op->n_entries);
	g_clear_object (&op->task);
	g_object_unref (op->self);
	g_free (op);
}

static void
fail_op (RedisOp *op, GError *error)
{
	ChatRedisStore *self = op->self;

	if (op->type == OP_APPEND) {
		for (guint i = 0; i < op->n_entries; i++) {
			chat_message_set_offset (op->entries[i].message, 0);
			/* counted as stored when its group was sent */
			if (op->entries[i].stream_id != 0) {
				self->statistics.failed++;
				self->statistics.stored--;
			}
		}
		chat_store_log_failure (&self->failing, error);
	}
	g_task_return_error (op->task, error);
}

static void
complete_append (RedisOp *op)
{
	if (op->completed)
		return;
	op->completed = TRUE;
	chat_store_log_recovery (&op->self->failing);
	g_task_return_boolean (op->task, TRUE);
}

static void
on_append_reply (redisReply *reply, gpointer user_data)
{
	RedisOp *op = user_data;
	ChatRedisStore *self = op->self;
	guint index = 1;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
		GError *error = NULL;

		chat_redis_set_error (&error, reply);
		if (op->acked) {
			/* published: the loss came after it */
			g_error_free (error);
			complete_append (op);
		} else {
			g_queue_remove (&self->awaiting_ack, op);
			op->completed = TRUE;
			fail_op (op, error);
		}
		if (!g_queue_find (&self->awaiting_ack, op))
			redis_op_free (op);
		return;
	}
	op->replied = TRUE;
	op->replied_us = g_get_monotonic_time ();
	self->last_id = MAX (self->last_id, reply_uint (reply->element[0]));
	for (guint i = 0; i < op->n_entries; i++) {
		ChatStoreEntry *entry = &op->entries[i];
		RedisStream *stream;
		guint64 offset, first;
		const char *epoch;

		/* the id Redis gave, which the stored frame has: the message says the same */
		chat_message_set_id (entry->message, reply_uint (reply->element[0]));
		if (entry->stream_id == 0)
			continue;
		if (index + 4 > reply->elements)
			break;
		offset = reply_uint (reply->element[index]);
		epoch = reply->element[index + 1]->str;
		first = reply_uint (reply->element[index + 2]);
		self->statistics.trimmed += reply_uint (reply->element[index + 3]);
		index += 4;
		chat_message_set_offset (entry->message, offset);
		renew_candidate (self, epoch);
		stream = ensure_stream (self, entry->kind, entry->stream_id);
		/* a watched stream moves with what is published, in that order */
		if (stream->watch == WATCH_NONE) {
			stream->top = MAX (stream->top, offset);
			stream_set_epoch (stream, epoch);
		}
		stream->first = MAX (stream->first, first);
	}
	self->statistics.retained =
	    self->statistics.stored - MIN (self->statistics.trimmed, self->statistics.stored);
	if (self->broker == NULL || op->acked || op->orphaned ||
	    (self->pubsub != NULL && !chat_redis_connection_is_ready (self->pubsub))) {
		g_queue_remove (&self->awaiting_ack, op);
		complete_append (op);
		redis_op_free (op);
	}
}

static void
on_read_reply (redisReply *reply, gpointer user_data)
{
	RedisOp *op = user_data;
	ChatRedisStore *self = op->self;
	g_autoptr (GPtrArray) texts = NULL;
	RedisStream *stream;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4) {
		GError *error = NULL;

		chat_redis_set_error (&error, reply);
		fail_op (op, error);
		redis_op_free (op);
		return;
	}
	stream = ensure_stream (self, op->range.kind, op->range.stream_id);
	renew_candidate (self, reply->element[0]->str);
	if (stream->watch == WATCH_NONE) {
		stream_set_epoch (stream, reply->element[0]->str);
		stream->top = MAX (stream->top, reply_uint (reply->element[1]));
	}
	stream->first = MAX (stream->first, reply_uint (reply->element[2]));
	stream->delivered = MAX (stream->delivered, reply_uint (reply->element[3]));
	texts = g_ptr_array_new_full (reply->elements - 4, (GDestroyNotify) g_bytes_unref);
	for (gsize i = 4; i < reply->elements; i++)
		g_ptr_array_add (texts,
				 g_bytes_new (reply->element[i]->str, reply->element[i]->len));
	g_task_return_pointer (op->task,
			       g_steal_pointer (&texts),
			       (GDestroyNotify) g_ptr_array_unref);
	redis_op_free (op);
}

/* EVALSHA; the scripts are loaded whenever the connection is (re)made. */
static gboolean
run_script (ChatRedisStore *self,
	    ScriptId script,
	    GPtrArray *keys,
	    GPtrArray *args,
	    ChatRedisReplyFunc func,
	    gpointer user_data)
{
	g_autofree const char **argv = g_new (const char *, 3 + keys->len + args->len);
	g_autofree char *n_keys = g_strdup_printf ("%u", keys->len);
	int argc = 0;

	argv[argc++] = "EVALSHA";
	argv[argc++] = script_shas[script];
	argv[argc++] = n_keys;
	for (guint i = 0; i < keys->len; i++)
		argv[argc++] = keys->pdata[i];
	for (guint i = 0; i < args->len; i++)
		argv[argc++] = args->pdata[i];
	return chat_redis_connection_command (self->commands, func, user_data, argc, argv, NULL);
}

static void
ignore_reply (redisReply *reply, gpointer user_data)
{
	(void) reply;
	(void) user_data;
}

static GPtrArray *
string_array (void)
{
	return g_ptr_array_new_with_free_func (g_free);
}

static void
add_uint (GPtrArray *array, guint64 value)
{
	g_ptr_array_add (array, g_strdup_printf ("%" G_GUINT64_FORMAT, value));
}

static char *
channel_name (ChatRedisStore *self, ChatStreamKind kind, guint64 id)
{
	return stream_key (self, kind, id, "");
}

static gboolean
send_append (ChatRedisStore *self, RedisOp *op)
{
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();
	g_autofree char *json = NULL;
	ChatMessage *first = op->entries[0].message;
	gboolean hub_wide = FALSE;
	const char *tail;
	gsize length;

	/* the frame without id and offset, which the script puts in after the type */
	chat_message_set_offset (first, 0);
	{
		guint64 proposed = chat_message_get_id (first);

		chat_message_set_id (first, 0);
		json = chat_message_to_json_with_length (first, &length);
		chat_message_set_id (first, proposed);
		g_ptr_array_add (keys, g_strdup_printf ("%s:id", self->key_prefix));
		g_ptr_array_add (args, g_strdup (self->broker != NULL ? self->node_channel : ""));
		g_ptr_array_add (args, g_strdup_printf ("a %" G_GUINT64_FORMAT, op->seq));
		add_uint (args, proposed);
	}
	g_ptr_array_add (args, g_strdup (self->epoch_candidate));
	add_uint (args, self->retention.history_size);
	add_uint (args, self->retention.history_ttl);
	add_uint (args, self->retention.dm_ttl);
	add_uint (args, meta_ttl (self));
	g_ptr_array_add (args,
			 g_strdup_printf ("%" G_GINT64_FORMAT, chat_message_get_timestamp (first)));
	/* {"type":"message" | ,"from":...} */
	tail = strchr (json + strlen ("{\"type\":\""), '"') + 1;
	g_ptr_array_add (args, g_strndup (json, tail - json));
	g_ptr_array_add (args, g_strdup (tail));
	for (guint i = 0; i < op->n_entries; i++)
		hub_wide |= op->entries[i].stream_id == 0;
	g_ptr_array_add (args,
			 hub_wide && self->broker != NULL
			     ? g_strdup_printf ("%s:all", self->key_prefix)
			     : g_strdup (""));
	for (guint i = 0; i < op->n_entries; i++) {
		ChatStoreEntry *entry = &op->entries[i];

		if (entry->stream_id == 0)
			continue;
		g_ptr_array_add (keys, stream_key (self, entry->kind, entry->stream_id, ":m"));
		g_ptr_array_add (keys, stream_key (self, entry->kind, entry->stream_id, ":s"));
		g_ptr_array_add (args, g_strdup_printf ("%c", kind_letter (entry->kind)));
		g_ptr_array_add (args,
				 self->broker != NULL
				     ? channel_name (self, entry->kind, entry->stream_id)
				     : g_strdup (""));
	}
	return run_script (self, SCRIPT_APPEND, keys, args, on_append_reply, op);
}

static gboolean
send_read (ChatRedisStore *self, RedisOp *op)
{
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();
	const ChatStoreRange *range = &op->range;

	g_ptr_array_add (keys, stream_key (self, range->kind, range->stream_id, ":m"));
	g_ptr_array_add (keys, stream_key (self, range->kind, range->stream_id, ":s"));
	add_uint (args, range->after);
	add_uint (args, range->before);
	add_uint (args, range->limit);
	add_uint (args, range->newest ? 1 : 0);
	g_ptr_array_add (args, g_strdup (self->epoch_candidate));
	add_uint (args, meta_ttl (self));
	return run_script (self, SCRIPT_READ, keys, args, on_read_reply, op);
}

/* Sends what this iteration asked for, in order: one group. */
static gboolean
on_kick (gpointer user_data)
{
	ChatRedisStore *self = user_data;
	guint64 group = 0;
	RedisOp *op;

	g_clear_pointer (&self->kick_source, g_source_unref);
	g_object_ref (self);
	while ((op = g_queue_pop_head (&self->backlog)) != NULL) {
		gboolean sent;

		if (op->type == OP_APPEND) {
			for (guint i = 0; i < op->n_entries; i++)
				group += op->entries[i].stream_id != 0;
			if (self->broker != NULL)
				g_queue_push_tail (&self->awaiting_ack, op);
			/* with a broker, a message this node would not receive is not sent */
			sent = self->scripts_loaded &&
			       (self->pubsub == NULL ||
				chat_redis_connection_is_ready (self->pubsub)) &&
			       send_append (self, op);
		} else {
			sent = self->scripts_loaded && send_read (self, op);
		}
		if (!sent) {
			g_queue_remove (&self->awaiting_ack, op);
			op->completed = TRUE;
			fail_op (op,
				 g_error_new_literal (G_IO_ERROR,
						      G_IO_ERROR_NOT_CONNECTED,
						      _ ("Redis is not reachable")));
			redis_op_free (op);
		}
	}
	chat_store_statistics_add_group (&self->statistics, group, 0);
	/* each message's way to the other nodes starts with this write: not an iteration later */
	chat_redis_connection_flush (self->commands);
	g_object_unref (self);
	return G_SOURCE_REMOVE;
}

static void
queue_op (ChatRedisStore *self, RedisOp *op)
{
	g_queue_push_tail (&self->backlog, op);
	if (self->kick_source == NULL)
		self->kick_source = chat_store_attach_source (g_idle_source_new (),
							      "chathub redis store",
							      on_kick,
							      self,
							      self->context);
}

/* ---- pub/sub -------------------------------------------------------------------------- */

static void
send_watch_script (ChatRedisStore *self, RedisStream *stream)
{
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();

	stream->watch = WATCH_LOADING;
	g_ptr_array_add (keys, stream_key (self, stream->kind, stream->id, ":m"));
	g_ptr_array_add (keys, stream_key (self, stream->kind, stream->id, ":s"));
	g_ptr_array_add (args, g_strdup (self->node_channel));
	g_ptr_array_add (args,
			 g_strdup_printf ("w %c %" G_GUINT64_FORMAT " %u",
					  kind_letter (stream->kind),
					  stream->id,
					  stream->generation));
	g_ptr_array_add (args, g_strdup (self->epoch_candidate));
	add_uint (args, meta_ttl (self));
	/* a failure shows as a lost connection, which watches everything again */
	run_script (self, SCRIPT_WATCH, keys, args, ignore_reply, NULL);
}

static void
schedule_check (ChatRedisStore *self);

static void
subscribe_stream (ChatRedisStore *self, RedisStream *stream)
{
	g_autofree char *channel = channel_name (self, stream->kind, stream->id);
	const char *argv[] = {"SUBSCRIBE", channel};

	stream->generation++;
	stream->watch = WATCH_SUBSCRIBING;
	stream->watch_started = g_get_monotonic_time ();
	if (chat_redis_connection_subscribe (self->pubsub, 2, argv))
		stream->pending_subs++;
	else
		schedule_check (self); /* unavailable now; subscribed again when Redis is back */
}

typedef struct {
	ChatStreamKind kind;
	guint64 id;
} StreamRef;

/* Tells the broker of every watch that is not ready and cannot be soon: Redis is not
 * connected, or the watch took longer than the timeout. Once per attempt. */
static void
check_watches (ChatRedisStore *self)
{
	gint64 now = g_get_monotonic_time ();
	gboolean connected = self->scripts_loaded && chat_redis_connection_is_ready (self->pubsub);
	g_autoptr (GArray) late = g_array_new (FALSE, FALSE, sizeof (StreamRef));

	if (self->broker == NULL)
		return;
	for (guint kind = 0; kind < 2; kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			RedisStream *stream = value;
			StreamRef ref = {stream->kind, stream->id};

			if (stream->watchers == 0 || stream->watch == WATCH_READY ||
			    stream->reported)
				continue;
			if (connected &&
			    now - stream->watch_started < (gint64) self->timeout_ms * 1000)
				continue;
			stream->reported = TRUE;
			g_array_append_val (late, ref);
		}
	}
	/* the broker may unwatch, which changes the tables */
	for (guint i = 0; i < late->len && self->broker != NULL; i++) {
		StreamRef *ref = &g_array_index (late, StreamRef, i);

		self->broker->unavailable (self->broker_data, ref->kind, ref->id);
	}
}

static gboolean
on_check (gpointer user_data)
{
	ChatRedisStore *self = user_data;

	g_clear_pointer (&self->check_source, g_source_unref);
	check_watches (self);
	return G_SOURCE_REMOVE;
}

static void
schedule_check (ChatRedisStore *self)
{
	if (self->check_source == NULL)
		self->check_source = chat_store_attach_source (g_idle_source_new (),
							       "chathub redis watch check",
							       on_check,
							       self,
							       self->context);
}

/* "<kind letter>:<id>" after the prefix: the stream a channel is for */
static RedisStream *
stream_of_channel (ChatRedisStore *self, const char *channel, gsize length)
{
	gsize prefix = strlen (self->key_prefix);
	ChatStreamKind kind;
	guint64 id;
	char *end = NULL;

	if (length < prefix + 4 || memcmp (channel, self->key_prefix, prefix) != 0 ||
	    channel[prefix] != ':' || channel[prefix + 2] != ':')
		return NULL;
	if (channel[prefix + 1] == 'r')
		kind = CHAT_STREAM_KIND_ROOM;
	else if (channel[prefix + 1] == 'u')
		kind = CHAT_STREAM_KIND_USER;
	else
		return NULL;
	id = g_ascii_strtoull (channel + prefix + 3, &end, 10);
	if (end != channel + length)
		return NULL;
	return chat_store_streams_lookup (self->streams, kind, id);
}

static void
log_gap (RedisStream *stream)
{
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_MESSAGE,
			  "CHATHUB_EVENT",
			  "stream-gap",
			  "MESSAGE",
			  stream->kind == CHAT_STREAM_KIND_ROOM
			      ? _ ("Messages of room %" PRIu64
				   " may have been missed; its members are told to recover")
			      : _ ("Direct messages of user %" PRIu64
				   " may have been missed; its connections are told to recover"),
			  stream->id);
}

/* A watched stream lost track: its members recover, and it is loaded again. */
static void
stream_gap (ChatRedisStore *self, RedisStream *stream)
{
	log_gap (stream);
	stream->generation++;
	/* told now: the state that comes is the new start, not to compare with */
	stream->relayed = FALSE;
	send_watch_script (self, stream);
	self->broker->gap (self->broker_data, stream->kind, stream->id);
}

static void
on_stream_message (ChatRedisStore *self, RedisStream *stream, const char *payload, gsize length)
{
	const char *newline = memchr (payload, '\n', length);
	g_autofree char *header = NULL;
	g_autoptr (GBytes) text = NULL;
	g_auto (GStrv) fields = NULL;
	guint64 offset;

	if (stream == NULL || stream->watch != WATCH_READY || newline == NULL)
		return; /* what was published before the watch's marker is in its state */
	header = g_strndup (payload, newline - payload);
	fields = g_strsplit (header, " ", 2);
	if (g_strv_length (fields) != 2)
		return;
	if (strcmp (fields[0], "e") == 0) {
		/* a room event, not stored: in order with the messages, no offset */
		if (strcmp (fields[1], self->node_name) == 0)
			return;
		text = g_bytes_new (newline + 1, length - (newline + 1 - payload));
		self->broker->published (self->broker_data, stream->kind, stream->id, 0, text);
		return;
	}
	offset = g_ascii_strtoull (fields[0], NULL, 10);
	if (offset <= stream->top && g_strcmp0 (fields[1], stream->epoch) == 0)
		return;
	if (offset != stream->top + 1 || g_strcmp0 (fields[1], stream->epoch) != 0) {
		stream_gap (self, stream);
		return;
	}
	stream->top = offset;
	text = g_bytes_new (newline + 1, length - (newline + 1 - payload));
	self->broker->published (self->broker_data, stream->kind, stream->id, offset, text);
}

static void
on_node_message (ChatRedisStore *self, const char *payload, gsize length)
{
	g_autofree char *text = g_strndup (payload, length);
	g_auto (GStrv) fields = g_strsplit (text, " ", 0);
	guint n = g_strv_length (fields);

	if (n == 2 && strcmp (fields[0], "a") == 0) {
		guint64 seq = g_ascii_strtoull (fields[1], NULL, 10);
		RedisOp *op;

		/* acks come in the order of the appends; a failed one has none */
		while ((op = g_queue_peek_head (&self->awaiting_ack)) != NULL && op->seq <= seq) {
			g_queue_pop_head (&self->awaiting_ack);
			if (op->seq < seq)
				continue; /* failed: its reply has it */
			op->acked = TRUE;
			complete_append (op);
			if (op->replied)
				redis_op_free (op);
		}
	} else if (n == 2 && strcmp (fields[0], "p") == 0) {
		/* it may overtake the answer to its PUBLISH, which is on the other connection */
		self->probe_echoed = g_ascii_strtoull (fields[1], NULL, 10);
		if (self->probe_echoed == self->probe_seq)
			self->probe_answered_us = 0;
	} else if (n == 8 && strcmp (fields[0], "w") == 0) {
		ChatStreamKind kind =
		    fields[1][0] == 'r' ? CHAT_STREAM_KIND_ROOM : CHAT_STREAM_KIND_USER;
		guint64 id = g_ascii_strtoull (fields[2], NULL, 10);
		RedisStream *stream = chat_store_streams_lookup (self->streams, kind, id);
		guint64 top = g_ascii_strtoull (fields[4], NULL, 10);
		gboolean gap;

		if (stream == NULL || stream->watch != WATCH_LOADING ||
		    g_ascii_strtoull (fields[3], NULL, 10) != stream->generation)
			return;
		/* watched again after a loss: what it relayed must be where the stream is, or
		 * something was published meanwhile (or Redis lost it, a new epoch) */
		gap = stream->relayed &&
		      (top != stream->top || g_strcmp0 (fields[5], stream->epoch) != 0);
		stream->top = top;
		stream_set_epoch (stream, fields[5]);
		renew_candidate (self, fields[5]);
		stream->first = g_ascii_strtoull (fields[6], NULL, 10);
		stream->delivered = MAX (stream->delivered, g_ascii_strtoull (fields[7], NULL, 10));
		stream->watch = WATCH_READY;
		stream->relayed = TRUE;
		stream->reported = FALSE;
		if (gap) {
			log_gap (stream);
			self->broker->gap (self->broker_data, kind, id);
			if (self->broker == NULL ||
			    chat_store_streams_lookup (self->streams, kind, id) != stream)
				return;
		}
		self->broker->watched (self->broker_data, kind, id);
	}
}

static void
on_push (redisReply *reply, gpointer user_data)
{
	ChatRedisStore *self = user_data;
	redisReply *type, *channel, *payload;
	RedisStream *stream;
	g_autofree char *all = NULL;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    self->broker == NULL)
		return;
	type = reply->element[0];
	channel = reply->element[1];
	payload = reply->element[2];
	if (type->type != REDIS_REPLY_STRING || channel->type != REDIS_REPLY_STRING)
		return;
	if (strcmp (type->str, "subscribe") == 0) {
		stream = stream_of_channel (self, channel->str, channel->len);
		if (stream == NULL || stream->pending_subs == 0)
			return;
		stream->pending_subs--;
		if (stream->pending_subs == 0 && stream->watch == WATCH_SUBSCRIBING)
			send_watch_script (self, stream);
		return;
	}
	if (strcmp (type->str, "message") != 0 || payload->type != REDIS_REPLY_STRING)
		return;
	if (strcmp (channel->str, self->node_channel) == 0) {
		on_node_message (self, payload->str, payload->len);
		return;
	}
	all = g_strdup_printf ("%s:all", self->key_prefix);
	if (strcmp (channel->str, all) == 0) {
		const char *newline = memchr (payload->str, '\n', payload->len);
		g_autoptr (GBytes) text = NULL;

		if (newline == NULL)
			return;
		text = g_bytes_new (newline + 1, payload->len - (newline + 1 - payload->str));
		self->broker->published (self->broker_data, CHAT_STREAM_KIND_ROOM, 0, 0, text);
		return;
	}
	on_stream_message (self,
			   stream_of_channel (self, channel->str, channel->len),
			   payload->str,
			   payload->len);
}

static void
subscribe_all (ChatRedisStore *self)
{
	g_autofree char *all = g_strdup_printf ("%s:all", self->key_prefix);
	const char *argv[] = {"SUBSCRIBE", self->node_channel, all};

	chat_redis_connection_subscribe (self->pubsub, 3, argv);
	for (guint kind = 0; kind < 2; kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			RedisStream *stream = value;

			if (stream->watchers > 0) {
				stream->pending_subs = 0;
				subscribe_stream (self, stream);
			}
		}
	}
}

static void
on_pubsub_state (ChatRedisConnection *connection,
		 gboolean ready,
		 const GError *error,
		 gpointer user_data)
{
	ChatRedisStore *self = user_data;

	(void) connection;
	(void) error;
	if (self->broker == NULL)
		return;
	if (ready) {
		self->probe_answered_us = 0;
		self->next_probe_us = g_get_monotonic_time ();
		subscribe_all (self);
		return;
	}
	/* appends whose script ran are published: without their acks, their replies tell */
	while (!g_queue_is_empty (&self->awaiting_ack)) {
		RedisOp *op = g_queue_pop_head (&self->awaiting_ack);

		if (op->replied) {
			complete_append (op);
			redis_op_free (op);
		} else {
			/* the reply may come after the pub/sub connection is back */
			op->orphaned = TRUE;
		}
	}
	/* every watched stream may miss publications from now on: what waits for one fails,
	 * and once it is watched again its state tells whether its members must recover */
	for (guint kind = 0; kind < 2; kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			RedisStream *stream = value;

			if (stream->watchers == 0)
				continue;
			stream->watch = WATCH_SUBSCRIBING;
			stream->generation++;
			stream->pending_subs = 0;
		}
	}
	check_watches (self);
}

static void
on_probe_reply (redisReply *reply, gpointer user_data)
{
	ChatRedisStore *self = user_data;

	if (reply == NULL)
		return; /* the store is going, or the connection: tick() starts over */
	self->probe_in_flight = FALSE;
	if (reply->type != REDIS_REPLY_INTEGER || self->probe_echoed == self->probe_seq)
		return;
	/* nobody received it, not even this node's own subscription: expired at once */
	self->probe_answered_us = reply->integer > 0 ? g_get_monotonic_time () : 1;
}

static void
send_probe (ChatRedisStore *self)
{
	g_autofree char *payload = g_strdup_printf ("p %" G_GUINT64_FORMAT, ++self->probe_seq);
	const char *argv[] = {"PUBLISH", self->node_channel, payload};

	self->next_probe_us = g_get_monotonic_time () + (gint64) self->timeout_ms * 1000;
	self->probe_answered_us = 0;
	self->probe_in_flight =
	    chat_redis_connection_command (self->commands, on_probe_reply, self, 3, argv, NULL);
}

/* With a broker, every so often: the probe, and the bounds on what waits for pub/sub. */
static gboolean
on_tick (gpointer user_data)
{
	ChatRedisStore *self = user_data;
	gint64 now = g_get_monotonic_time ();
	gint64 bound = (gint64) self->timeout_ms * 1000;
	RedisOp *oldest = g_queue_peek_head (&self->awaiting_ack);

	if (!chat_redis_connection_is_ready (self->pubsub))
		return G_SOURCE_CONTINUE;
	/* a pub/sub connection can stay open and deliver nothing (centrifugo#1189): a probe
	 * published to this node's channel must come back, and so must the acknowledgement of
	 * an append Redis answered */
	if ((self->probe_answered_us != 0 && now - self->probe_answered_us >= bound) ||
	    (oldest != NULL && oldest->replied && now - oldest->replied_us >= bound)) {
		g_log_structured (G_LOG_DOMAIN,
				  G_LOG_LEVEL_WARNING,
				  "CHATHUB_EVENT",
				  "redis-pubsub-silent",
				  "MESSAGE",
				  "%s",
				  _ ("Redis publications stopped arriving; reconnecting"));
		self->probe_answered_us = 0;
		chat_redis_connection_reset (self->pubsub, _ ("publications stopped arriving"));
		return G_SOURCE_CONTINUE;
	}
	if (!self->probe_in_flight && self->probe_answered_us == 0 && self->scripts_loaded &&
	    chat_redis_connection_is_ready (self->commands) && now >= self->next_probe_us)
		send_probe (self);
	check_watches (self);
	return G_SOURCE_CONTINUE;
}

/* ---- the command connection ----------------------------------------------------------- */

static void
load_scripts (ChatRedisStore *self);
static void
refresh_presence (ChatRedisStore *self);

static gboolean
on_reload (gpointer user_data)
{
	ChatRedisStore *self = user_data;

	g_clear_pointer (&self->reload_source, g_source_unref);
	if (chat_redis_connection_is_ready (self->commands) && !self->scripts_loaded)
		load_scripts (self);
	return G_SOURCE_REMOVE;
}

static void
on_script_loaded (redisReply *reply, gpointer user_data)
{
	ChatRedisStore *self = user_data;

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	/* a Redis still loading its data set says so (LOADING): try again shortly; what was
	 * pipelined behind fails meanwhile, and is answered `unavailable` */
	if (self->scripts_loaded)
		g_log_structured (G_LOG_DOMAIN,
				  G_LOG_LEVEL_MESSAGE,
				  "CHATHUB_EVENT",
				  "redis-script-refused",
				  "MESSAGE",
				  _ ("Redis refused a script of chathub: %s"),
				  reply->str);
	self->scripts_loaded = FALSE;
	if (self->reload_source == NULL)
		self->reload_source =
		    chat_store_attach_source (g_timeout_source_new (MAX (self->timeout_ms / 4, 10)),
					      "chathub redis script reload",
					      on_reload,
					      self,
					      self->context);
}

static void
load_scripts (ChatRedisStore *self)
{
	for (guint i = 0; i < N_SCRIPTS; i++) {
		const char *argv[] = {"SCRIPT", "LOAD", scripts[i]};

		chat_redis_connection_command (self->commands,
					       on_script_loaded,
					       self,
					       3,
					       argv,
					       NULL);
	}
	/* pipelined behind the loads */
	self->scripts_loaded = TRUE;
	/* watches whose script was lost with the connection, or refused */
	for (guint kind = 0; self->pubsub != NULL && kind < 2; kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			RedisStream *stream = value;

			if (stream->watchers > 0 && stream->watch == WATCH_LOADING)
				send_watch_script (self, stream);
		}
	}
	refresh_presence (self);
}

static void
on_commands_state (ChatRedisConnection *connection,
		   gboolean ready,
		   const GError *error,
		   gpointer user_data)
{
	ChatRedisStore *self = user_data;

	(void) connection;
	(void) error;
	self->scripts_loaded = FALSE;
	if (!ready) {
		self->probe_in_flight = FALSE; /* its reply will not come */
		return;
	}
	load_scripts (self);
}

typedef struct {
	ChatRedisStore *self; /* owned */
	ChatStreamKind kind;
	guint64 stream_id;
} TrimOp;

static void
on_trim_reply (redisReply *reply, gpointer user_data)
{
	TrimOp *op = user_data;
	RedisStream *stream;

	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
		op->self->statistics.trimmed += reply_uint (reply->element[1]);
		op->self->statistics.retained =
		    op->self->statistics.stored -
		    MIN (op->self->statistics.trimmed, op->self->statistics.stored);
		stream = chat_store_streams_lookup (op->self->streams, op->kind, op->stream_id);
		if (stream != NULL)
			stream->first = MAX (stream->first, reply_uint (reply->element[0]));
	}
	g_object_unref (op->self);
	g_free (op);
}

static void
trim_known (ChatRedisStore *self)
{
	if (!self->scripts_loaded)
		return;
	for (guint kind = 0; kind < 2; kind++) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->streams[kind]);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			RedisStream *stream = value;
			g_autoptr (GPtrArray) keys = string_array ();
			g_autoptr (GPtrArray) args = string_array ();
			TrimOp *op = g_new0 (TrimOp, 1);

			op->self = g_object_ref (self);
			op->kind = stream->kind;
			op->stream_id = stream->id;
			g_ptr_array_add (keys, stream_key (self, stream->kind, stream->id, ":m"));
			g_ptr_array_add (keys, stream_key (self, stream->kind, stream->id, ":s"));
			g_ptr_array_add (args, g_strdup_printf ("%c", kind_letter (stream->kind)));
			g_ptr_array_add (args, g_strdup (""));
			g_ptr_array_add (args, g_strdup (""));
			g_ptr_array_add (args, g_strdup (""));
			add_uint (args, self->retention.history_size);
			add_uint (args, self->retention.history_ttl);
			add_uint (args, self->retention.dm_ttl);
			if (!run_script (self, SCRIPT_TRIM, keys, args, on_trim_reply, op)) {
				g_object_unref (op->self);
				g_free (op);
			}
		}
	}
}

/* ---- presence and events -------------------------------------------------------------- */

static void
send_presence (ChatRedisStore *self,
	       ScriptId script,
	       guint64 room_id,
	       const guint64 *users,
	       guint n_users)
{
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();

	/* not connected: everything is refreshed once it is */
	if (!self->scripts_loaded || n_users == 0)
		return;
	g_ptr_array_add (keys, stream_key (self, CHAT_STREAM_KIND_ROOM, room_id, ":p"));
	g_ptr_array_add (keys, stream_key (self, CHAT_STREAM_KIND_ROOM, room_id, ":pz"));
	if (script == SCRIPT_PRESENCE_ADD)
		add_uint (args, (guint64) self->presence_ttl * 1000);
	for (guint i = 0; i < n_users; i++) {
		g_ptr_array_add (
		    args,
		    g_strdup_printf ("%" G_GUINT64_FORMAT " %s", users[i], self->node_name));
		if (script == SCRIPT_PRESENCE_ADD)
			add_uint (args, users[i]);
	}
	run_script (self, script, keys, args, ignore_reply, NULL);
}

/* This node's entries, all of them: every third of the TTL, and on every connect (a Redis
 * restarted without its data has none). */
static void
refresh_presence (ChatRedisStore *self)
{
	GHashTableIter iter;
	gpointer key, value;

	g_hash_table_iter_init (&iter, self->presence);
	while (g_hash_table_iter_next (&iter, &key, &value)) {
		g_autoptr (GArray) users = g_array_new (FALSE, FALSE, sizeof (guint64));
		GHashTableIter user_iter;
		gpointer user;

		g_hash_table_iter_init (&user_iter, value);
		while (g_hash_table_iter_next (&user_iter, &user, NULL))
			g_array_append_val (users, *(guint64 *) user);
		send_presence (self,
			       SCRIPT_PRESENCE_ADD,
			       *(guint64 *) key,
			       (const guint64 *) users->data,
			       users->len);
	}
}

static gboolean
on_presence_refresh (gpointer user_data)
{
	refresh_presence (user_data);
	return G_SOURCE_CONTINUE;
}

static void
on_presence_reply (redisReply *reply, gpointer user_data)
{
	g_autoptr (GTask) task = user_data;
	g_autoptr (GArray) users = NULL;
	GError *error = NULL;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		chat_redis_set_error (&error, reply);
		g_task_return_error (task, error);
		return;
	}
	users = g_array_sized_new (FALSE, FALSE, sizeof (guint64), reply->elements);
	for (gsize i = 0; i < reply->elements; i++) {
		guint64 user = reply_uint (reply->element[i]);

		g_array_append_val (users, user);
	}
	g_task_return_pointer (task, g_steal_pointer (&users), (GDestroyNotify) g_array_unref);
}

/* ---- the interface -------------------------------------------------------------------- */

static guint64
chat_redis_store_get_last_id (ChatStore *store)
{
	return CHAT_REDIS_STORE (store)->last_id;
}

static void
chat_redis_store_get_stream (ChatStore *store,
			     ChatStreamKind kind,
			     guint64 stream_id,
			     guint64 *top,
			     guint64 *first,
			     const char **epoch)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisStream *stream = ensure_stream (self, kind, stream_id);

	*top = stream->top;
	*first = MAX (stream->first, 1);
	if (*first > *top + 1)
		*first = *top + 1;
	*epoch = stream->epoch;
}

static void
chat_redis_store_append_async (ChatStore *store,
			       const ChatStoreEntry *entries,
			       guint n_entries,
			       GCancellable *cancellable,
			       GAsyncReadyCallback callback,
			       gpointer user_data)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisOp *op = redis_op_new (self,
				    OP_APPEND,
				    NULL,
				    callback,
				    user_data,
				    chat_redis_store_append_async);

	(void) cancellable;
	op->n_entries = n_entries;
	op->entries = chat_store_entries_dup (entries, n_entries);
	op->seq = ++self->next_seq;
	if (n_entries == 0) {
		g_task_return_boolean (op->task, TRUE);
		redis_op_free (op);
		return;
	}
	queue_op (self, op);
}

static void
chat_redis_store_read_async (ChatStore *store,
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
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisOp *op = redis_op_new (self,
				    OP_READ,
				    cancellable,
				    callback,
				    user_data,
				    chat_redis_store_read_async);

	op->range = (ChatStoreRange){kind, stream_id, after, before, limit, newest};
	queue_op (self, op);
}

static guint64
chat_redis_store_get_delivered (ChatStore *store, guint64 user_id)
{
	RedisStream *stream = chat_store_streams_lookup (CHAT_REDIS_STORE (store)->streams,
							 CHAT_STREAM_KIND_USER,
							 user_id);

	return stream != NULL ? stream->delivered : 0;
}

static void
chat_redis_store_set_delivered (ChatStore *store, guint64 user_id, guint64 offset)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisStream *stream = ensure_stream (self, CHAT_STREAM_KIND_USER, user_id);
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();

	if (offset <= stream->delivered)
		return;
	stream->delivered = offset;
	g_ptr_array_add (keys, stream_key (self, CHAT_STREAM_KIND_USER, user_id, ":m"));
	add_uint (args, offset);
	/* lost with the connection: the next connection may get a message again, never miss
	 * one */
	if (self->scripts_loaded)
		run_script (self, SCRIPT_DELIVERED, keys, args, ignore_reply, NULL);
}

static GVariant *
chat_redis_store_get_statistics (ChatStore *store)
{
	return chat_store_statistics_to_variant (&CHAT_REDIS_STORE (store)->statistics);
}

/* the connections, not the failing flag: that one clears only with a successful append,
 * which a node taken out of service would not get */
static gboolean
chat_redis_store_is_ready (ChatStore *store)
{
	return chat_redis_store_is_connected (CHAT_REDIS_STORE (store));
}

static gboolean
chat_redis_store_set_broker (ChatStore *store, const ChatStoreBroker *broker, gpointer data)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);

	if (broker == NULL) {
		/* the hub is going: nothing is handed on any more */
		self->broker = NULL;
		self->broker_data = NULL;
		chat_store_clear_source (&self->tick_source);
		chat_store_clear_source (&self->check_source);
		chat_store_clear_source (&self->presence_source);
		return TRUE;
	}
	g_return_val_if_fail (self->broker == NULL && self->pubsub == NULL, FALSE);
	self->broker = broker;
	self->broker_data = data;
	self->pubsub = chat_redis_connection_new (self->address,
						  self->password,
						  "pub/sub",
						  self->timeout_ms,
						  self->context,
						  on_pubsub_state,
						  on_push,
						  self);
	self->tick_source =
	    chat_store_attach_source (g_timeout_source_new (MAX (self->timeout_ms / 4, 10)),
				      "chathub redis probe",
				      on_tick,
				      self,
				      self->context);
	self->presence_source = chat_store_attach_source (
	    g_timeout_source_new (MAX (self->presence_ttl * 1000 / 3, 10)),
	    "chathub redis presence",
	    on_presence_refresh,
	    self,
	    self->context);
	return TRUE;
}

static gboolean
chat_redis_store_watch (ChatStore *store, ChatStreamKind kind, guint64 stream_id)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisStream *stream = ensure_stream (self, kind, stream_id);

	g_return_val_if_fail (self->pubsub != NULL, FALSE);
	if (stream->watchers++ > 0)
		return stream->watch == WATCH_READY;
	subscribe_stream (self, stream);
	return FALSE;
}

static void
chat_redis_store_unwatch (ChatStore *store, ChatStreamKind kind, guint64 stream_id)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	RedisStream *stream = chat_store_streams_lookup (self->streams, kind, stream_id);
	g_autofree char *channel = NULL;
	const char *argv[2] = {"UNSUBSCRIBE", NULL};

	g_return_if_fail (stream != NULL && stream->watchers > 0);
	if (--stream->watchers > 0)
		return;
	stream->watch = WATCH_NONE;
	stream->generation++;
	channel = channel_name (self, kind, stream_id);
	argv[1] = channel;
	chat_redis_connection_subscribe (self->pubsub, 2, argv);
	/* forgotten: the next watch loads it again */
	g_hash_table_remove (self->streams[kind], &stream_id);
}

static void
chat_redis_store_publish_event (ChatStore *store,
				ChatStreamKind kind,
				guint64 stream_id,
				GBytes *text)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	g_autofree char *channel = channel_name (self, kind, stream_id);
	gsize length;
	const char *data = g_bytes_get_data (text, &length);
	g_autofree char *header = g_strdup_printf ("e %s\n", self->node_name);
	g_autofree char *payload = g_malloc (strlen (header) + length);
	const char *argv[] = {"PUBLISH", channel, payload};
	size_t lengths[] = {strlen ("PUBLISH"), strlen (channel), strlen (header) + length};

	memcpy (payload, header, strlen (header));
	memcpy (payload + strlen (header), data, length);
	/* the other nodes skip their own: this node has pushed it already */
	chat_redis_connection_command (self->commands, ignore_reply, NULL, 3, argv, lengths);
}

static void
chat_redis_store_presence_set (ChatStore *store, guint64 room_id, guint64 user_id, gboolean present)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	GHashTable *users = g_hash_table_lookup (self->presence, &room_id);
	guint count = users != NULL ? GPOINTER_TO_UINT (g_hash_table_lookup (users, &user_id)) : 0;

	if (present) {
		if (users == NULL) {
			users = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
			g_hash_table_insert (self->presence,
					     g_memdup2 (&room_id, sizeof room_id),
					     users);
		}
		g_hash_table_insert (users,
				     g_memdup2 (&user_id, sizeof user_id),
				     GUINT_TO_POINTER (count + 1));
		if (count == 0)
			send_presence (self, SCRIPT_PRESENCE_ADD, room_id, &user_id, 1);
		return;
	}
	g_return_if_fail (count > 0);
	if (count > 1) {
		g_hash_table_insert (users,
				     g_memdup2 (&user_id, sizeof user_id),
				     GUINT_TO_POINTER (count - 1));
		return;
	}
	g_hash_table_remove (users, &user_id);
	if (g_hash_table_size (users) == 0)
		g_hash_table_remove (self->presence, &room_id);
	send_presence (self, SCRIPT_PRESENCE_REMOVE, room_id, &user_id, 1);
}

static void
chat_redis_store_presence_async (ChatStore *store,
				 guint64 room_id,
				 GAsyncReadyCallback callback,
				 gpointer user_data)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (store);
	GTask *task = g_task_new (self, NULL, callback, user_data);
	g_autoptr (GPtrArray) keys = string_array ();
	g_autoptr (GPtrArray) args = string_array ();

	g_task_set_source_tag (task, chat_redis_store_presence_async);
	g_ptr_array_add (keys, stream_key (self, CHAT_STREAM_KIND_ROOM, room_id, ":p"));
	g_ptr_array_add (keys, stream_key (self, CHAT_STREAM_KIND_ROOM, room_id, ":pz"));
	if (!self->scripts_loaded ||
	    !run_script (self, SCRIPT_PRESENCE_GET, keys, args, on_presence_reply, task)) {
		g_task_return_new_error (task,
					 G_IO_ERROR,
					 G_IO_ERROR_NOT_CONNECTED,
					 _ ("Redis is not reachable"));
		g_object_unref (task);
	}
}

static GArray *
chat_redis_store_presence_finish (ChatStore *store, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (g_task_is_valid (result, store), NULL);
	return g_task_propagate_pointer (G_TASK (result), error);
}

static void
chat_redis_store_iface_init (ChatStoreInterface *iface)
{
	iface->get_last_id = chat_redis_store_get_last_id;
	iface->get_stream = chat_redis_store_get_stream;
	iface->append_async = chat_redis_store_append_async;
	iface->append_finish = chat_store_task_append_finish;
	iface->read_async = chat_redis_store_read_async;
	iface->read_finish = chat_store_task_read_finish;
	iface->get_delivered = chat_redis_store_get_delivered;
	iface->set_delivered = chat_redis_store_set_delivered;
	iface->get_statistics = chat_redis_store_get_statistics;
	iface->is_ready = chat_redis_store_is_ready;
	iface->set_broker = chat_redis_store_set_broker;
	iface->watch = chat_redis_store_watch;
	iface->unwatch = chat_redis_store_unwatch;
	iface->publish_event = chat_redis_store_publish_event;
	iface->presence_set = chat_redis_store_presence_set;
	iface->presence_async = chat_redis_store_presence_async;
	iface->presence_finish = chat_redis_store_presence_finish;
}

/* ---- GObject -------------------------------------------------------------------------- */

static void
chat_redis_store_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (object);

	switch (prop_id) {
	case PROP_ADDRESS:
		g_value_set_string (value, self->address);
		break;
	case PROP_KEY_PREFIX:
		g_value_set_string (value, self->key_prefix);
		break;
	case PROP_NODE_NAME:
		g_value_set_string (value, self->node_name);
		break;
	case PROP_TIMEOUT:
		g_value_set_uint (value, self->timeout_ms);
		break;
	case PROP_PRESENCE_TTL:
		g_value_set_uint (value, self->presence_ttl);
		break;
	default:
		chat_store_retention_get_property (&self->retention, object, prop_id, value, pspec);
	}
}

static void
chat_redis_store_set_property (GObject *object,
			       guint prop_id,
			       const GValue *value,
			       GParamSpec *pspec)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (object);

	switch (prop_id) {
	case PROP_ADDRESS:
		g_free (self->address);
		self->address = g_value_dup_string (value);
		break;
	case PROP_PASSWORD:
		g_free (self->password);
		self->password = g_value_dup_string (value);
		break;
	case PROP_KEY_PREFIX:
		if (g_value_get_string (value) != NULL) {
			g_free (self->key_prefix);
			self->key_prefix = g_value_dup_string (value);
		}
		break;
	case PROP_NODE_NAME:
		if (g_value_get_string (value) != NULL) {
			g_free (self->node_name);
			self->node_name = g_value_dup_string (value);
		}
		break;
	case PROP_TIMEOUT:
		self->timeout_ms = g_value_get_uint (value);
		break;
	case PROP_PRESENCE_TTL:
		self->presence_ttl = g_value_get_uint (value);
		break;
	default:
		/* a shorter retention applies at once to the streams this process knows; the
		 * others follow when they are next written, or expire */
		if (chat_store_retention_set_property (&self->retention,
						       object,
						       prop_id,
						       value,
						       pspec))
			trim_known (self);
	}
}

static void
chat_redis_store_constructed (GObject *object)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (object);

	G_OBJECT_CLASS (chat_redis_store_parent_class)->constructed (object);
	if (self->address == NULL)
		self->address = g_strdup ("127.0.0.1:6379");
	self->node_channel = g_strdup_printf ("%s:node:%s", self->key_prefix, self->node_name);
	self->commands = chat_redis_connection_new (self->address,
						    self->password,
						    "commands",
						    self->timeout_ms,
						    self->context,
						    on_commands_state,
						    NULL,
						    self);
}

static void
chat_redis_store_dispose (GObject *object)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (object);

	chat_store_clear_source (&self->kick_source);
	chat_store_clear_source (&self->tick_source);
	chat_store_clear_source (&self->check_source);
	chat_store_clear_source (&self->reload_source);
	chat_store_clear_source (&self->presence_source);
	G_OBJECT_CLASS (chat_redis_store_parent_class)->dispose (object);
}

static void
chat_redis_store_finalize (GObject *object)
{
	ChatRedisStore *self = CHAT_REDIS_STORE (object);

	/* every operation holds a reference: none is left */
	g_assert (g_queue_is_empty (&self->backlog));
	chat_redis_connection_free (self->pubsub);
	chat_redis_connection_free (self->commands);
	chat_store_streams_clear (self->streams);
	g_hash_table_unref (self->presence);
	g_free (self->address);
	if (self->password != NULL)
		explicit_bzero (self->password, strlen (self->password));
	g_free (self->password);
	g_free (self->key_prefix);
	g_free (self->node_name);
	g_free (self->node_channel);
	g_free (self->epoch_candidate);
	g_main_context_unref (self->context);
	G_OBJECT_CLASS (chat_redis_store_parent_class)->finalize (object);
}

static void
chat_redis_store_class_init (ChatRedisStoreClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->get_property = chat_redis_store_get_property;
	object_class->set_property = chat_redis_store_set_property;
	object_class->constructed = chat_redis_store_constructed;
	object_class->dispose = chat_redis_store_dispose;
	object_class->finalize = chat_redis_store_finalize;

	chat_store_override_properties (object_class);

	/**
	 * ChatRedisStore:address:
	 *
	 * Where Redis listens: `host:port`, or the absolute path of a unix socket.
	 *
	 * Since: 1.0
	 */
	props[PROP_ADDRESS] = g_param_spec_string ("address",
						   NULL,
						   "Where Redis listens",
						   "127.0.0.1:6379",
						   G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
						       G_PARAM_STATIC_STRINGS);
	/**
	 * ChatRedisStore:password:
	 *
	 * The password for Redis's `AUTH`, or %NULL for none. Write-only.
	 *
	 * Since: 1.0
	 */
	props[PROP_PASSWORD] = g_param_spec_string ("password",
						    NULL,
						    "The password for Redis",
						    NULL,
						    G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY |
							G_PARAM_STATIC_STRINGS);
	/**
	 * ChatRedisStore:key-prefix:
	 *
	 * What every key and channel of this hub starts with: hubs with different prefixes
	 * share a Redis without seeing each other.
	 *
	 * Since: 1.0
	 */
	props[PROP_KEY_PREFIX] = g_param_spec_string ("key-prefix",
						      NULL,
						      "What the hub's keys start with",
						      CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX,
						      G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
							  G_PARAM_STATIC_STRINGS);
	/**
	 * ChatRedisStore:node-name:
	 *
	 * This process's name among the hub's nodes, unique among them; by default the host
	 * name and the process id.
	 *
	 * Since: 1.0
	 */
	props[PROP_NODE_NAME] = g_param_spec_string ("node-name",
						     NULL,
						     "This node's name",
						     NULL,
						     G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
							 G_PARAM_STATIC_STRINGS);
	/**
	 * ChatRedisStore:timeout:
	 *
	 * How long, in milliseconds, anything may wait for Redis: connecting, an answer, a
	 * subscription, a publication coming back to this node. Past it the connection is
	 * dropped and made again, and what waited fails (a message is answered `unavailable`).
	 * It also bounds the reconnection backoff, and a probe goes through the pub/sub
	 * connection this often.
	 *
	 * Since: 1.0
	 */
	props[PROP_TIMEOUT] =
	    g_param_spec_uint ("timeout",
			       NULL,
			       "How long to wait for Redis (ms)",
			       10,
			       G_MAXUINT,
			       CHAT_REDIS_STORE_DEFAULT_TIMEOUT_MS,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatRedisStore:presence-ttl:
	 *
	 * How long, in seconds, this node's entries in a room's presence live in Redis
	 * without being refreshed. The node refreshes them at a third of it while its
	 * clients are in the room: a node that dies leaves presence within this time.
	 *
	 * Since: 1.0
	 */
	props[PROP_PRESENCE_TTL] =
	    g_param_spec_uint ("presence-ttl",
			       NULL,
			       "How long presence entries live unrefreshed (s)",
			       1,
			       G_MAXUINT,
			       CHAT_REDIS_STORE_DEFAULT_PRESENCE_TTL,
			       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	for (guint i = CHAT_STORE_N_PROPS; i < N_PROPS; i++)
		g_object_class_install_property (object_class, i, props[i]);
}

static void
chat_redis_store_init (ChatRedisStore *self)
{
	ensure_script_shas ();
	chat_store_streams_init (self->streams, (GDestroyNotify) redis_stream_free);
	self->key_prefix = g_strdup (CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX);
	self->timeout_ms = CHAT_REDIS_STORE_DEFAULT_TIMEOUT_MS;
	self->presence_ttl = CHAT_REDIS_STORE_DEFAULT_PRESENCE_TTL;
	self->node_name = g_strdup_printf ("%s-%d", g_get_host_name (), (int) getpid ());
	self->epoch_candidate = g_uuid_string_random ();
	g_queue_init (&self->backlog);
	g_queue_init (&self->awaiting_ack);
	self->presence = g_hash_table_new_full (g_int64_hash,
						g_int64_equal,
						g_free,
						(GDestroyNotify) g_hash_table_unref);
	self->context = g_main_context_ref_thread_default ();
}

/**
 * chat_redis_store_new:
 * @address: where Redis listens: `host:port` or a unix socket's absolute path
 * @key_prefix: (nullable): what the hub's keys and channels start with; %NULL for
 *   %CHAT_REDIS_STORE_DEFAULT_KEY_PREFIX
 *
 * Creates a store in Redis with the default retention. It connects in the background, on
 * the thread-default main context of the caller, where its operations also complete; until
 * Redis is reachable they fail with %G_IO_ERROR_NOT_CONNECTED.
 *
 * Returns: (transfer full): a new #ChatRedisStore
 *
 * Since: 1.0
 */
ChatRedisStore *
chat_redis_store_new (const char *address, const char *key_prefix)
{
	g_return_val_if_fail (address != NULL, NULL);
	return g_object_new (CHAT_TYPE_REDIS_STORE,
			     "address",
			     address,
			     "key-prefix",
			     key_prefix,
			     NULL);
}

/**
 * chat_redis_store_get_address:
 * @self: a #ChatRedisStore
 *
 * Gets #ChatRedisStore:address.
 *
 * Returns: where Redis listens
 *
 * Since: 1.0
 */
const char *
chat_redis_store_get_address (ChatRedisStore *self)
{
	g_return_val_if_fail (CHAT_IS_REDIS_STORE (self), NULL);
	return self->address;
}

/**
 * chat_redis_store_get_key_prefix:
 * @self: a #ChatRedisStore
 *
 * Gets #ChatRedisStore:key-prefix.
 *
 * Returns: the prefix
 *
 * Since: 1.0
 */
const char *
chat_redis_store_get_key_prefix (ChatRedisStore *self)
{
	g_return_val_if_fail (CHAT_IS_REDIS_STORE (self), NULL);
	return self->key_prefix;
}

/**
 * chat_redis_store_get_node_name:
 * @self: a #ChatRedisStore
 *
 * Gets #ChatRedisStore:node-name.
 *
 * Returns: this node's name
 *
 * Since: 1.0
 */
const char *
chat_redis_store_get_node_name (ChatRedisStore *self)
{
	g_return_val_if_fail (CHAT_IS_REDIS_STORE (self), NULL);
	return self->node_name;
}

/**
 * chat_redis_store_is_connected:
 * @self: a #ChatRedisStore
 *
 * Whether the store can reach Redis now (and, when a hub uses it between several nodes,
 * receives its publications).
 *
 * Returns: %TRUE when connected
 *
 * Since: 1.0
 */
gboolean
chat_redis_store_is_connected (ChatRedisStore *self)
{
	g_return_val_if_fail (CHAT_IS_REDIS_STORE (self), FALSE);
	return chat_redis_connection_is_ready (self->commands) &&
	       (self->pubsub == NULL || chat_redis_connection_is_ready (self->pubsub));
}
