/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One connection to Redis through hiredis's asynchronous API, attached to a GMainContext with
 * hiredis's GLib adapter: no thread, no other event loop. It authenticates, reconnects with
 * a backoff (0.1 s doubling up to 5 s, or up to the timeout if shorter) and says when it is
 * ready or lost. A connect, or a reply, that takes longer than the timeout drops the
 * connection (hiredis 0.14 has no timeout of its own for asynchronous contexts). Used by
 * ChatRedisStore only (docs/architecture.md, "Several nodes on Redis").
 */

#pragma once

#include <gio/gio.h>
#include <hiredis/hiredis.h>

G_BEGIN_DECLS

typedef struct _ChatRedisConnection ChatRedisConnection;

/* @ready: TRUE once connected (and authenticated); FALSE when the connection was lost or an
 * attempt failed, with @error (transfer none) saying why. */
typedef void (*ChatRedisStateFunc) (ChatRedisConnection *connection,
				    gboolean ready,
				    const GError *error,
				    gpointer user_data);
/* @reply: NULL when the connection was lost before the reply came (or is being freed). */
typedef void (*ChatRedisReplyFunc) (redisReply *reply, gpointer user_data);

ChatRedisConnection *
chat_redis_connection_new (const char *address,
			   const char *password,
			   const char *name,
			   guint timeout_ms,
			   GMainContext *context,
			   ChatRedisStateFunc state_func,
			   ChatRedisReplyFunc push_func,
			   gpointer user_data);
void
chat_redis_connection_free (ChatRedisConnection *self);
gboolean
chat_redis_connection_is_ready (ChatRedisConnection *self);
/* Sends a command; FALSE (and @func is never called) when not connected. */
gboolean
chat_redis_connection_command (ChatRedisConnection *self,
			       ChatRedisReplyFunc func,
			       gpointer user_data,
			       int argc,
			       const char **argv,
			       const size_t *lengths);
/* Writes the commands queued so far now, rather than once the main loop next polls the
 * socket: what one iteration asked for leaves in one write, an iteration sooner. Not from
 * inside a reply or push function. */
void
chat_redis_connection_flush (ChatRedisConnection *self);
/* SUBSCRIBE or UNSUBSCRIBE: their confirmations and every message published to the channels
 * go to the push function given to chat_redis_connection_new(). FALSE when not connected. */
gboolean
chat_redis_connection_subscribe (ChatRedisConnection *self, int argc, const char **argv);
/* Drops the connection now (the state function is told, with @why, a static translated
 * string), then reconnects as usual. Not from inside a reply or push function. */
void
chat_redis_connection_reset (ChatRedisConnection *self, const char *why);

/* A Redis error reply or a lost connection as a G_IO_ERROR. */
void
chat_redis_set_error (GError **error, redisReply *reply);

G_END_DECLS
