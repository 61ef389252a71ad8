/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <hiredis/adapters/glib.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "chat-i18n-private.h"
#include "chat-redis-connection-private.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct _ChatRedisConnection {
	char *host; /* NULL for a unix socket */
	int port;
	char *socket_path;
	char *password;
	char *name; /* for the logs: "commands", "pub/sub" */
	GMainContext *context;
	ChatRedisStateFunc state_func;
	ChatRedisReplyFunc push_func;
	gpointer user_data;

	redisAsyncContext *ac;
	GSource *source;       /* hiredis's GLib adapter source for @ac */
	GSource *retry_source; /* the reconnection timer */
	GSource *watchdog;     /* bounds a connect and every reply */
	guint timeout_ms;
	guint backoff_ms;
	gint64 started_us; /* the current attempt began */
	GQueue pending;	   /* Pending*, sent and not answered, oldest first */
	const char *abort_why;
	gboolean ready;
	gboolean freeing;
	gboolean warned; /* one warning per outage */
};

typedef struct {
	ChatRedisConnection *self;
	ChatRedisReplyFunc func;
	gpointer user_data;
	gint64 sent_us;
} Pending;

static void
connection_start (ChatRedisConnection *self);

void
chat_redis_set_error (GError **error, redisReply *reply)
{
	if (reply == NULL)
		g_set_error_literal (error,
				     G_IO_ERROR,
				     G_IO_ERROR_NOT_CONNECTED,
				     _ ("The connection to Redis was lost"));
	else if (reply->type == REDIS_REPLY_ERROR)
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("Redis: %s"), reply->str);
	else
		g_set_error_literal (error,
				     G_IO_ERROR,
				     G_IO_ERROR_INVALID_DATA,
				     _ ("Redis answered something unexpected"));
}

static void
drop_source (ChatRedisConnection *self)
{
	if (self->source == NULL)
		return;
	g_source_destroy (self->source);
	g_clear_pointer (&self->source, g_source_unref);
}

static gboolean
on_retry (gpointer user_data)
{
	ChatRedisConnection *self = user_data;

	g_clear_pointer (&self->retry_source, g_source_unref);
	connection_start (self);
	return G_SOURCE_REMOVE;
}

/* The connection is gone (@ac freed or about to be by hiredis): tell, and try again later. */
static void
connection_lost (ChatRedisConnection *self, const char *why)
{
	g_autoptr (GError) error = NULL;
	gboolean was_ready = self->ready;

	self->ac = NULL;
	self->ready = FALSE;
	if (self->abort_why != NULL) {
		why = self->abort_why;
		self->abort_why = NULL;
	}
	/* not destroyed here: on a failed connect, hiredis's cleanup still removes the poll from
	 * it after this; without a descriptor it never dispatches again */
	if (self->freeing)
		return;
	g_set_error (&error,
		     G_IO_ERROR,
		     G_IO_ERROR_NOT_CONNECTED,
		     _ ("Redis (%s connection): %s"),
		     self->name,
		     why != NULL && *why != '\0' ? why : _ ("connection lost"));
	if (!self->warned) {
		self->warned = TRUE;
		g_log_structured (G_LOG_DOMAIN,
				  G_LOG_LEVEL_WARNING,
				  "CHATHUB_EVENT",
				  "redis-unavailable",
				  "MESSAGE",
				  "%s",
				  error->message);
	}
	self->retry_source = g_timeout_source_new (self->backoff_ms);
	g_source_set_name (self->retry_source, "chathub redis reconnect");
	g_source_set_callback (self->retry_source, on_retry, self, NULL);
	g_source_attach (self->retry_source, self->context);
	/* never longer than a step may wait: Redis back is noticed within the timeout */
	self->backoff_ms = MIN (self->backoff_ms * 2, MIN (BACKOFF_MAX_MS, self->timeout_ms));
	self->backoff_ms = MAX (self->backoff_ms, BACKOFF_MIN_MS);
	(void) was_ready;
	self->state_func (self, FALSE, error, self->user_data);
}

static void
became_ready (ChatRedisConnection *self)
{
	self->ready = TRUE;
	self->backoff_ms = BACKOFF_MIN_MS;
	if (self->warned) {
		self->warned = FALSE;
		g_log_structured (G_LOG_DOMAIN,
				  G_LOG_LEVEL_MESSAGE,
				  "CHATHUB_EVENT",
				  "redis-connected",
				  "MESSAGE",
				  _ ("Redis (%s connection) is reachable again"),
				  self->name);
	}
	self->state_func (self, TRUE, NULL, self->user_data);
}

static void
on_reply (redisAsyncContext *ac, void *reply, void *privdata)
{
	Pending *pending = privdata;

	(void) ac;
	g_queue_remove (&pending->self->pending, pending);
	pending->func (reply, pending->user_data);
	g_free (pending);
}

static void
on_push (redisAsyncContext *ac, void *reply, void *privdata)
{
	ChatRedisConnection *self = privdata;

	(void) ac;
	if (!self->freeing)
		self->push_func (reply, self->user_data);
}

static void
on_auth (redisReply *reply, gpointer user_data)
{
	ChatRedisConnection *self = user_data;

	if (reply == NULL)
		return; /* lost meanwhile: connection_lost() has it */
	if (reply->type == REDIS_REPLY_ERROR) {
		g_autofree char *why = g_strdup (reply->str);

		/* wrong password: try again later, the administrator may fix Redis */
		self->warned = FALSE;
		redisAsyncDisconnect (self->ac);
		g_log_structured (G_LOG_DOMAIN,
				  G_LOG_LEVEL_WARNING,
				  "CHATHUB_EVENT",
				  "redis-auth-failed",
				  "MESSAGE",
				  _ ("Redis refused the password: %s"),
				  why);
		return;
	}
	became_ready (self);
}

static void
on_connect (const redisAsyncContext *ac, int status)
{
	ChatRedisConnection *self = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this */
		connection_lost (self, ac->errstr);
		return;
	}
	if (self->password != NULL) {
		const char *argv[] = {"AUTH", self->password};

		self->ready = TRUE; /* for the command only: became_ready() tells */
		chat_redis_connection_command (self, on_auth, self, 2, argv, NULL);
		self->ready = FALSE;
		return;
	}
	became_ready (self);
}

static void
on_disconnect (const redisAsyncContext *ac, int status)
{
	ChatRedisConnection *self = ac->data;

	(void) status;
	connection_lost (self, ac->errstr);
}

/* Drops the connection from a timer (never from inside hiredis): every pending callback is
 * called without a reply, then the state function is told, with @why. */
static void
connection_abort (ChatRedisConnection *self, const char *why)
{
	redisAsyncContext *ac = self->ac;
	gboolean connected = (ac->c.flags & REDIS_CONNECTED) != 0;

	self->abort_why = why;
	redisAsyncFree (ac);
	/* hiredis calls on_disconnect() only for an established connection */
	if (!connected)
		connection_lost (self, why);
}

/* Redis that stops answering (stopped, a network partition) is no better than Redis gone:
 * an attempt or a reply that takes longer than the timeout drops the connection, so that
 * nothing waits on it for longer. */
static gboolean
on_watchdog (gpointer user_data)
{
	ChatRedisConnection *self = user_data;
	gint64 now = g_get_monotonic_time ();
	gint64 bound = (gint64) self->timeout_ms * 1000;
	Pending *oldest;

	if (self->ac == NULL)
		return G_SOURCE_CONTINUE;
	if (!self->ready && now - self->started_us >= bound)
		connection_abort (self, _ ("no connection within the timeout"));
	else if ((oldest = g_queue_peek_head (&self->pending)) != NULL &&
		 now - oldest->sent_us >= bound)
		connection_abort (self, _ ("no answer within the timeout"));
	return G_SOURCE_CONTINUE;
}

static void
connection_start (ChatRedisConnection *self)
{
	redisAsyncContext *ac;

	drop_source (self);
	self->started_us = g_get_monotonic_time ();
	ac = self->socket_path != NULL ? redisAsyncConnectUnix (self->socket_path)
				       : redisAsyncConnect (self->host, self->port);
	if (ac == NULL || ac->err != 0) {
		g_autofree char *why = g_strdup (ac != NULL ? ac->errstr : g_strerror (ENOMEM));

		if (ac != NULL)
			redisAsyncFree (ac);
		connection_lost (self, why);
		return;
	}
	ac->data = self;
	self->ac = ac;
	/* the adapter's hooks first: setting the connect callback arms the write watch */
	self->source = redis_source_new (ac);
	g_source_set_name (self->source, "chathub redis");
	g_source_attach (self->source, self->context);
	redisAsyncSetConnectCallback (ac, on_connect);
	redisAsyncSetDisconnectCallback (ac, on_disconnect);
}

ChatRedisConnection *
chat_redis_connection_new (const char *address,
			   const char *password,
			   const char *name,
			   guint timeout_ms,
			   GMainContext *context,
			   ChatRedisStateFunc state_func,
			   ChatRedisReplyFunc push_func,
			   gpointer user_data)
{
	ChatRedisConnection *self = g_new0 (ChatRedisConnection, 1);
	const char *colon = strrchr (address, ':');

	if (address[0] == '/') {
		self->socket_path = g_strdup (address);
	} else if (colon != NULL) {
		self->host = g_strndup (address, colon - address);
		self->port = atoi (colon + 1);
	} else {
		self->host = g_strdup (address);
		self->port = 6379;
	}
	self->password = g_strdup (password);
	self->name = g_strdup (name);
	self->context = g_main_context_ref (context);
	self->state_func = state_func;
	self->push_func = push_func;
	self->user_data = user_data;
	self->backoff_ms = BACKOFF_MIN_MS;
	self->timeout_ms = MAX (timeout_ms, 1);
	g_queue_init (&self->pending);
	self->watchdog = g_timeout_source_new (MAX (self->timeout_ms / 4, 10));
	g_source_set_name (self->watchdog, "chathub redis watchdog");
	g_source_set_callback (self->watchdog, on_watchdog, self, NULL);
	g_source_attach (self->watchdog, self->context);
	connection_start (self);
	return self;
}

void
chat_redis_connection_free (ChatRedisConnection *self)
{
	if (self == NULL)
		return;
	self->freeing = TRUE;
	if (self->ac != NULL) {
		/* calls every pending callback with a NULL reply, then on_disconnect */
		redisAsyncContext *ac = self->ac;

		self->ac = NULL;
		redisAsyncFree (ac);
	}
	drop_source (self);
	g_source_destroy (self->watchdog);
	g_source_unref (self->watchdog);
	if (self->retry_source != NULL) {
		g_source_destroy (self->retry_source);
		g_clear_pointer (&self->retry_source, g_source_unref);
	}
	g_main_context_unref (self->context);
	g_free (self->host);
	g_free (self->socket_path);
	if (self->password != NULL)
		explicit_bzero (self->password, strlen (self->password));
	g_free (self->password);
	g_free (self->name);
	g_free (self);
}

gboolean
chat_redis_connection_is_ready (ChatRedisConnection *self)
{
	return self->ready;
}

gboolean
chat_redis_connection_command (ChatRedisConnection *self,
			       ChatRedisReplyFunc func,
			       gpointer user_data,
			       int argc,
			       const char **argv,
			       const size_t *lengths)
{
	Pending *pending;

	if (!self->ready)
		return FALSE;
	pending = g_new0 (Pending, 1);
	pending->self = self;
	pending->func = func;
	pending->user_data = user_data;
	pending->sent_us = g_get_monotonic_time ();
	if (redisAsyncCommandArgv (self->ac, on_reply, pending, argc, argv, lengths) != REDIS_OK) {
		g_free (pending);
		return FALSE;
	}
	g_queue_push_tail (&self->pending, pending);
	return TRUE;
}

void
chat_redis_connection_flush (ChatRedisConnection *self)
{
	/* what the adapter's source would do when polled; a failed write drops the connection
	 * the same way */
	if (self->ac != NULL && self->ready)
		redisAsyncHandleWrite (self->ac);
}

gboolean
chat_redis_connection_subscribe (ChatRedisConnection *self, int argc, const char **argv)
{
	if (!self->ready)
		return FALSE;
	return redisAsyncCommandArgv (self->ac, on_push, self, argc, argv, NULL) == REDIS_OK;
}

/* Not from inside a hiredis callback: from a timer. on_disconnect() follows from inside, with
 * every pending callback failed. */
void
chat_redis_connection_reset (ChatRedisConnection *self, const char *why)
{
	if (self->ac != NULL && self->ready)
		connection_abort (self, why);
}
