/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libsoup/soup.h>

#include "chat-client-private.h"
#include "chat-error.h"
#include "chat-flush-source-private.h"
#include "chat-histogram-private.h"
#include "chat-hub-private.h"
#include "chat-i18n-private.h"
#include "chat-inbox-private.h"
#include "chat-limit-extension-private.h"
#include "chat-listener-private.h"
#include "chat-network-private.h"
#include "chat-outbox-stream-private.h"
#include "chat-redis-store.h"
#include "chat-server.h"
#include "chat-source-private.h"
#include "chat-store-private.h"
#include "chat-token-verifier-private.h"
#include "chat-web-root-private.h"

/**
 * SECTION:chat-server
 * @title: ChatServer
 * @short_description: the WebSocket endpoint
 *
 * A #ChatServer listens for HTTP on one address and serves the WebSocket endpoint
 * (#ChatServer:path, `/ws` by default). It checks every upgrade request before answering
 * 101: a request head over 32 KiB gets 431, a request that is not a WebSocket upgrade 400,
 * a browser's request from an origin #ChatServer:allowed-origins does not allow 403, an
 * address (behind one of #ChatServer:trusted-proxies, the client's) over
 * #ChatServer:upgrades-per-second 429, a missing or refused token 401, a user
 * at #ChatServer:max-connections-per-user 429, and a request over
 * #ChatServer:max-connections 503, each with a JSON body. Accepted connections become
 * #ChatClient objects registered with the #ChatHub. With #ChatServer:web-root set, it
 * also serves the files of that directory (a browser chat page) at `/`; any other path gets
 * 404.
 *
 * Two health checks are answered on the same listener, before the upgrade rate and the
 * token (probes neither need a token nor use up an address's upgrades), to `GET` and `HEAD`
 * with `Cache-Control: no-store` (other methods 405): `/healthz` is always 200
 * `{"status":"ok"}` (the main loop runs); `/readyz` is 200 `{"status":"ready",...}` when new
 * clients would be served, else 503 `{"status":"not ready",...}`, with its `checks`:
 * `listener` (listening, and no accept() failed for want of file descriptors in the last 5
 * seconds), `store` (the hub's #ChatStore can take messages: a #ChatSqliteStore whose last
 * group commit failed cannot until one succeeds) and, with a #ChatRedisStore, `redis` (its
 * connections are up, chat_redis_store_is_connected()). They take precedence over files of
 * #ChatServer:web-root, but not over #ChatServer:path. With #ChatServer:metrics, `/metrics`
 * answers the counters in the Prometheus text format the same way, unless
 * chat_server_listen_metrics() gave it a listener of its own. Each refused upgrade is logged
 * (at most 10 lines a second) with its reason and the client's address.
 *
 * The server also enforces the per-connection limits: the message size (close 1009), binary
 * frames (1003), #ChatServer:outbox-size (1008, a slow consumer), and the heartbeat: a WebSocket
 * ping every #ChatServer:ping-interval seconds and a close (1001) after #ChatServer:idle-timeout
 * seconds without a message or pong.
 */

/**
 * ChatServer:
 *
 * The WebSocket endpoint of a #ChatHub. All its fields are private.
 *
 * Since: 1.0
 */

/* the most remote addresses whose upgrade rate is tracked; beyond it the least recently
 * seen one is forgotten, so many addresses cannot grow the table without bound */
#define MAX_RATE_BUCKETS 16384
/* RFC 6585; libsoup 3.2 has neither the constant nor its reason phrase */
#define HTTP_TOO_MANY_REQUESTS 429

/* The close codes /metrics counts one by one (the protocol's, and the usual ones of peers);
 * any other code a peer sends is counted as "other", so a client cannot grow the label set. */
static const guint16 close_codes[] =
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 4001, 4002};

/* Why an upgrade was refused: the label `reason` of chathub_upgrades_refused_total, and the
 * log line's. A small fixed set, so that no request can grow the label set. */
typedef enum {
	REFUSED_BAD_REQUEST,
	REFUSED_HEADER_TOO_LARGE, /* counted by the listener */
	REFUSED_FORBIDDEN_ORIGIN,
	REFUSED_TOO_MANY_REQUESTS,
	REFUSED_TOKEN_MISSING,
	REFUSED_TOKEN_MALFORMED,
	REFUSED_TOKEN_SIGNATURE,
	REFUSED_TOKEN_EXPIRED,
	REFUSED_TOKEN_NOT_YET_VALID,
	REFUSED_TOKEN_REJECTED, /* issuer, audience, user id, rooms claim, no key */
	REFUSED_TOO_MANY_CONNECTIONS,
	REFUSED_UNAVAILABLE,
	N_REFUSALS
} Refusal;

static const char *const refusal_names[N_REFUSALS] = {
    "bad_request",
    "header_too_large",
    "forbidden_origin",
    "too_many_requests",
    "token_missing",
    "token_malformed",
    "token_signature",
    "token_expired",
    "token_not_yet_valid",
    "token_rejected",
    "too_many_connections",
    "unavailable",
};

/* The most X-Forwarded-For elements read, from the right, behind trusted proxies. */
#define MAX_FORWARDED_HOPS 16

/* Refused-upgrade log lines per second; the rest are counted, and the count is logged by the
 * one-second sweep, so a flood of bad requests cannot fill the journal. */
#define REFUSAL_LOG_LINES_PER_SECOND 10

/* The main-loop lag timer (only while /metrics is served): how late a 100 ms timer fires. */
#define LAG_INTERVAL_MS 100
/* µs: 1 ms to 2.5 s */
static const guint64 lag_bounds[] =
    {1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

/* Seeds the rate table's hash, so that chosen addresses cannot be made to collide. */
static guint rate_seed;

/* The upgrade token bucket of one remote address (an IPv6 address's /64: one host's share). */
typedef struct {
	guint8 key[17]; /* the family's size (4 or 8), then the address or prefix */
	double tokens;
	gint64 updated; /* monotonic µs */
	GList link;	/* in rate_lru, least recently updated first */
} RateBucket;

/* The upgrades of one user, registered or on their way. */
typedef struct {
	guint64 user_id;
	guint n_connections;
} UserConnections;

struct _ChatServer {
	GObject parent_instance;

	ChatHub *hub;
	ChatTokenVerifier *verifier;
	SoupServer *soup;
	ChatListener *listener; /* the socket, and connections until their request head is in */
	GMainContext *context;	/* the thread-default one at construction: every source goes here */
	GSource *rate_sweep;
	guint handshake_timeout;
	GUri *ws_uri;
	GSource *flush_source;
	GSource *poll_source;
	GSource *heartbeat;
	char *path;
	char *web_root;		/* (nullable): the page's directory */
	ChatWebRoot *web_files; /* its files, read by chat_server_listen() */
	guint max_connections;
	guint max_message_size;
	guint outbox_size;
	guint ping_interval;
	guint idle_timeout;
	guint max_connections_per_user;
	guint upgrades_per_second;
	guint upgrade_burst;
	guint n_connections;	      /* upgraded or being upgraded */
	GHashTable *user_connections; /* &user_id -> UserConnections*, owned; n > 0 only */
	GHashTable *rate_buckets;     /* RateBucket* (by key) -> itself, owned */
	GQueue rate_lru;	      /* RateBucket.link */
	gint64 started;		      /* monotonic µs */
	guint messages_per_second;
	guint message_burst;
	guint max_rooms;
	gboolean reuse_port;
	guint64 accepted;
	guint64 refused[N_REFUSALS];  /* but REFUSED_HEADER_TOO_LARGE: the listener's */
	guint refusal_log_budget;     /* lines left this second */
	guint refusal_log_suppressed; /* lines not written this second */
	guint64 refusal_log_suppressed_total;
	guint64 bytes_sent_closed;    /* bytes of clients already gone */
	guint64 slow_consumer_closes; /* of clients already gone */
	guint64 idle_closes;
	guint64 closes[G_N_ELEMENTS (close_codes) + 1]; /* by close_codes' index; last: other */
	gboolean metrics;
	ChatListener *metrics_listener;	  /* (nullable): /metrics on an address of its own */
	SoupServer *metrics_soup;	  /* (nullable): its HTTP side */
	GSource *lag_timer;		  /* (nullable): while /metrics is served */
	gint64 lag_base;		  /* monotonic µs: the lag timer's last dispatch */
	ChatHistogram loop_lag;		  /* µs */
	char **allowed_origins;		  /* (nullable): NULL is same-origin */
	char **trusted_proxies;		  /* (nullable): as set */
	GPtrArray *proxy_masks;		  /* (nullable): GInetAddressMask*, from trusted_proxies */
	GTlsCertificate *tls_certificate; /* (nullable): serve https and wss */
};

G_DEFINE_FINAL_TYPE (ChatServer, chat_server, G_TYPE_OBJECT)

enum {
	PROP_0,
	PROP_HUB,
	PROP_VERIFIER,
	PROP_PATH,
	PROP_MAX_CONNECTIONS,
	PROP_MAX_MESSAGE_SIZE,
	PROP_OUTBOX_SIZE,
	PROP_PING_INTERVAL,
	PROP_IDLE_TIMEOUT,
	PROP_HANDSHAKE_TIMEOUT,
	PROP_MAX_CONNECTIONS_PER_USER,
	PROP_UPGRADES_PER_SECOND,
	PROP_UPGRADE_BURST,
	PROP_MESSAGES_PER_SECOND,
	PROP_MESSAGE_BURST,
	PROP_MAX_ROOMS,
	PROP_WEB_ROOT,
	PROP_REUSE_PORT,
	PROP_METRICS,
	PROP_ALLOWED_ORIGINS,
	PROP_TRUSTED_PROXIES,
	PROP_TLS_CERTIFICATE,
	N_PROPS
};
static GParamSpec *props[N_PROPS];

static void
restart_heartbeat (ChatServer *self);

static void
chat_server_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	ChatServer *self = CHAT_SERVER (object);

	switch (prop_id) {
	case PROP_HUB:
		g_value_set_object (value, self->hub);
		break;
	case PROP_VERIFIER:
		g_value_set_object (value, self->verifier);
		break;
	case PROP_PATH:
		g_value_set_string (value, self->path);
		break;
	case PROP_MAX_CONNECTIONS:
		g_value_set_uint (value, self->max_connections);
		break;
	case PROP_MAX_MESSAGE_SIZE:
		g_value_set_uint (value, self->max_message_size);
		break;
	case PROP_OUTBOX_SIZE:
		g_value_set_uint (value, self->outbox_size);
		break;
	case PROP_PING_INTERVAL:
		g_value_set_uint (value, self->ping_interval);
		break;
	case PROP_IDLE_TIMEOUT:
		g_value_set_uint (value, self->idle_timeout);
		break;
	case PROP_HANDSHAKE_TIMEOUT:
		g_value_set_uint (value, self->handshake_timeout);
		break;
	case PROP_MAX_CONNECTIONS_PER_USER:
		g_value_set_uint (value, self->max_connections_per_user);
		break;
	case PROP_UPGRADES_PER_SECOND:
		g_value_set_uint (value, self->upgrades_per_second);
		break;
	case PROP_UPGRADE_BURST:
		g_value_set_uint (value, self->upgrade_burst);
		break;
	case PROP_MESSAGES_PER_SECOND:
		g_value_set_uint (value, self->messages_per_second);
		break;
	case PROP_MESSAGE_BURST:
		g_value_set_uint (value, self->message_burst);
		break;
	case PROP_MAX_ROOMS:
		g_value_set_uint (value, self->max_rooms);
		break;
	case PROP_WEB_ROOT:
		g_value_set_string (value, self->web_root);
		break;
	case PROP_REUSE_PORT:
		g_value_set_boolean (value, self->reuse_port);
		break;
	case PROP_METRICS:
		g_value_set_boolean (value, self->metrics);
		break;
	case PROP_ALLOWED_ORIGINS:
		g_value_set_boxed (value, self->allowed_origins);
		break;
	case PROP_TRUSTED_PROXIES:
		g_value_set_boxed (value, self->trusted_proxies);
		break;
	case PROP_TLS_CERTIFICATE:
		g_value_set_object (value, self->tls_certificate);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
set_uint (ChatServer *self, guint *slot, guint value, guint prop_id)
{
	if (*slot == value)
		return;
	*slot = value;
	g_object_notify_by_pspec (G_OBJECT (self), props[prop_id]);
}

static void
start_lag_timer (ChatServer *self);

/* The rate limit and the room cap are the server's, not fixed per connection: an operator
 * who lowers them during a flood (chathubd's reload) means the clients already connected. */
static void
update_client_limits (ChatServer *self)
{
	GPtrArray *clients;

	if (self->hub == NULL)
		return;
	clients = chat_hub_get_clients_unowned (self->hub);
	for (guint i = 0; i < clients->len; i++)
		chat_client_set_limits (clients->pdata[i],
					self->messages_per_second,
					self->message_burst,
					self->max_rooms);
}

/* NULL and an empty list are the same setting */
static gboolean
strv_equal (char **a, char **b)
{
	if (a == NULL || a[0] == NULL || b == NULL || b[0] == NULL)
		return (a == NULL || a[0] == NULL) && (b == NULL || b[0] == NULL);
	return g_strv_equal ((const char *const *) a, (const char *const *) b);
}

/* Parses the proxies' addresses and networks; entries that are neither are left out, with a
 * warning (the daemon refuses them when it reads its configuration). */
static void
set_trusted_proxies (ChatServer *self, char **proxies)
{
	g_clear_pointer (&self->proxy_masks, g_ptr_array_unref);
	g_strfreev (self->trusted_proxies);
	self->trusted_proxies = g_strdupv (proxies);
	if (proxies == NULL || proxies[0] == NULL)
		return;
	self->proxy_masks = g_ptr_array_new_with_free_func (g_object_unref);
	for (guint i = 0; proxies[i] != NULL; i++) {
		g_autoptr (GError) error = NULL;
		GInetAddressMask *mask = NULL;

		if (!chat_network_prefix_is_valid (proxies[i])) {
			/* libc's "Invalid argument", in the user's language */
			g_warning (_ ("Ignoring the trusted proxy “%s”: %s"),
				   proxies[i],
				   g_strerror (EINVAL));
			continue;
		}
		mask = g_inet_address_mask_new_from_string (proxies[i], &error);
		if (mask == NULL) {
			g_warning (_ ("Ignoring the trusted proxy “%s”: %s"),
				   proxies[i],
				   error->message);
			continue;
		}
		g_ptr_array_add (self->proxy_masks, mask);
	}
}

static void
chat_server_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
	ChatServer *self = CHAT_SERVER (object);

	switch (prop_id) {
	case PROP_HUB:
		self->hub = g_value_dup_object (value);
		break;
	case PROP_VERIFIER:
		self->verifier = g_value_dup_object (value);
		break;
	case PROP_PATH:
		g_free (self->path);
		self->path = g_value_dup_string (value);
		break;
	case PROP_MAX_CONNECTIONS:
		set_uint (self, &self->max_connections, g_value_get_uint (value), prop_id);
		break;
	case PROP_MAX_MESSAGE_SIZE:
		set_uint (self, &self->max_message_size, g_value_get_uint (value), prop_id);
		break;
	case PROP_OUTBOX_SIZE:
		set_uint (self, &self->outbox_size, g_value_get_uint (value), prop_id);
		break;
	case PROP_PING_INTERVAL:
		set_uint (self, &self->ping_interval, g_value_get_uint (value), prop_id);
		restart_heartbeat (self);
		break;
	case PROP_IDLE_TIMEOUT:
		set_uint (self, &self->idle_timeout, g_value_get_uint (value), prop_id);
		restart_heartbeat (self);
		break;
	case PROP_HANDSHAKE_TIMEOUT:
		set_uint (self, &self->handshake_timeout, g_value_get_uint (value), prop_id);
		if (self->listener != NULL)
			chat_listener_set_handshake_timeout (self->listener,
							     self->handshake_timeout);
		if (self->metrics_listener != NULL)
			chat_listener_set_handshake_timeout (self->metrics_listener,
							     self->handshake_timeout);
		break;
	case PROP_MAX_CONNECTIONS_PER_USER:
		set_uint (self, &self->max_connections_per_user, g_value_get_uint (value), prop_id);
		break;
	case PROP_UPGRADES_PER_SECOND:
		set_uint (self, &self->upgrades_per_second, g_value_get_uint (value), prop_id);
		break;
	case PROP_UPGRADE_BURST:
		set_uint (self, &self->upgrade_burst, g_value_get_uint (value), prop_id);
		break;
	case PROP_MESSAGES_PER_SECOND:
		set_uint (self, &self->messages_per_second, g_value_get_uint (value), prop_id);
		update_client_limits (self);
		break;
	case PROP_MESSAGE_BURST:
		set_uint (self, &self->message_burst, g_value_get_uint (value), prop_id);
		update_client_limits (self);
		break;
	case PROP_MAX_ROOMS:
		set_uint (self, &self->max_rooms, g_value_get_uint (value), prop_id);
		update_client_limits (self);
		break;
	case PROP_WEB_ROOT:
		g_free (self->web_root);
		self->web_root = g_value_dup_string (value);
		break;
	case PROP_REUSE_PORT:
		if (self->reuse_port != g_value_get_boolean (value)) {
			self->reuse_port = g_value_get_boolean (value);
			g_object_notify_by_pspec (object, pspec);
		}
		break;
	case PROP_METRICS:
		if (self->metrics != g_value_get_boolean (value)) {
			self->metrics = g_value_get_boolean (value);
			start_lag_timer (self);
			g_object_notify_by_pspec (object, pspec);
		}
		break;
	case PROP_ALLOWED_ORIGINS:
		if (!strv_equal (self->allowed_origins, g_value_get_boxed (value))) {
			char **origins = g_value_get_boxed (value);

			g_strfreev (self->allowed_origins);
			/* empty is unset: bindings cannot tell them apart */
			self->allowed_origins =
			    origins != NULL && origins[0] != NULL ? g_strdupv (origins) : NULL;
			g_object_notify_by_pspec (object, pspec);
		}
		break;
	case PROP_TRUSTED_PROXIES:
		if (!strv_equal (self->trusted_proxies, g_value_get_boxed (value))) {
			set_trusted_proxies (self, g_value_get_boxed (value));
			g_object_notify_by_pspec (object, pspec);
		}
		break;
	case PROP_TLS_CERTIFICATE:
		if (g_set_object (&self->tls_certificate, g_value_get_object (value))) {
			if (self->listener != NULL)
				chat_listener_set_tls_certificate (self->listener,
								   self->tls_certificate);
			g_object_notify_by_pspec (object, pspec);
		}
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static GSource *
add_timeout (ChatServer *self, guint interval_ms, GSourceFunc func, const char *name)
{
	return chat_timeout_source_attach (self->context, interval_ms, func, self, name);
}

static void
chat_server_dispose (GObject *object)
{
	ChatServer *self = CHAT_SERVER (object);

	chat_server_stop_listening (self);
	if (self->hub != NULL) {
		GPtrArray *clients = chat_hub_get_clients_unowned (self->hub);

		for (guint i = 0; i < clients->len; i++)
			chat_client_clear_closed_func (clients->pdata[i], self);
	}
	chat_clear_source (&self->heartbeat);
	chat_clear_source (&self->rate_sweep);
	chat_clear_source (&self->lag_timer);
	/* with the connections still waiting for their request head */
	g_clear_object (&self->listener);
	g_clear_object (&self->metrics_listener);
	g_clear_object (&self->metrics_soup);
	if (self->flush_source != NULL) {
		chat_flush_source_destroy (self->flush_source);
		g_clear_pointer (&self->flush_source, g_source_unref);
	}
	chat_clear_source (&self->poll_source);
	g_clear_object (&self->soup);
	g_clear_object (&self->hub);
	g_clear_object (&self->verifier);
	g_clear_object (&self->tls_certificate);
	G_OBJECT_CLASS (chat_server_parent_class)->dispose (object);
}

static void
chat_server_finalize (GObject *object)
{
	ChatServer *self = CHAT_SERVER (object);

	g_free (self->path);
	g_free (self->web_root);
	g_strfreev (self->allowed_origins);
	g_strfreev (self->trusted_proxies);
	g_clear_pointer (&self->proxy_masks, g_ptr_array_unref);
	g_clear_pointer (&self->web_files, chat_web_root_free);
	g_hash_table_unref (self->user_connections);
	/* the links are inside the buckets the table frees */
	g_hash_table_unref (self->rate_buckets);
	g_clear_pointer (&self->ws_uri, g_uri_unref);
	g_clear_pointer (&self->context, g_main_context_unref);
	G_OBJECT_CLASS (chat_server_parent_class)->finalize (object);
}

/* The body of every refusal: {"error":…,"error_description":…} */
static char *
json_error_body (const char *error, const char *description)
{
	g_autoptr (JsonBuilder) builder = json_builder_new ();
	g_autoptr (JsonNode) root = NULL;

	json_builder_begin_object (builder);
	json_builder_set_member_name (builder, "error");
	json_builder_add_string_value (builder, error);
	json_builder_set_member_name (builder, "error_description");
	json_builder_add_string_value (builder, description);
	json_builder_end_object (builder);
	root = json_builder_get_root (builder);
	return json_to_string (root, FALSE);
}

static void
set_json_response (SoupServerMessage *msg, guint status, const char *error, const char *description)
{
	char *body = json_error_body (error, description);

	soup_server_message_set_status (msg,
					status,
					status == HTTP_TOO_MANY_REQUESTS ? "Too Many Requests"
									 : NULL);
	soup_server_message_set_response (msg,
					  "application/json",
					  SOUP_MEMORY_TAKE,
					  body,
					  strlen (body));
}

/* The connections of a user this server accepted or is upgrading. */
static guint
user_connections_get (ChatServer *self, guint64 user_id)
{
	UserConnections *user = g_hash_table_lookup (self->user_connections, &user_id);

	return user != NULL ? user->n_connections : 0;
}

static void
user_connections_add (ChatServer *self, guint64 user_id)
{
	UserConnections *user = g_hash_table_lookup (self->user_connections, &user_id);

	if (user == NULL) {
		user = g_new0 (UserConnections, 1);
		user->user_id = user_id;
		g_hash_table_add (self->user_connections, user);
	}
	user->n_connections++;
}

static void
user_connections_remove (ChatServer *self, guint64 user_id)
{
	UserConnections *user = g_hash_table_lookup (self->user_connections, &user_id);

	g_return_if_fail (user != NULL && user->n_connections > 0);
	if (--user->n_connections == 0)
		g_hash_table_remove (self->user_connections, &user_id);
}

/* A connection reserved by the gate is gone, upgraded or not. */
static void
release_connection (ChatServer *self, guint64 user_id)
{
	self->n_connections--;
	user_connections_remove (self, user_id);
}

static guint
rate_bucket_hash (gconstpointer data)
{
	const RateBucket *bucket = data;
	guint hash = 2166136261u ^ rate_seed;

	/* FNV-1a */
	for (gsize i = 0; i < sizeof bucket->key; i++)
		hash = (hash ^ bucket->key[i]) * 16777619u;
	return hash;
}

static gboolean
rate_bucket_equal (gconstpointer a, gconstpointer b)
{
	return memcmp (((const RateBucket *) a)->key,
		       ((const RateBucket *) b)->key,
		       sizeof ((const RateBucket *) a)->key) == 0;
}

/* Whom the upgrade rate applies to: an IPv4 address (IPv4-mapped ones included), or the /64
 * of an IPv6 address, since one host usually holds a whole /64. */
static gboolean
rate_key (GInetAddress *inet, guint8 key[17])
{
	const guint8 *bytes;

	memset (key, 0, 17);
	if (inet == NULL)
		return FALSE;
	bytes = g_inet_address_to_bytes (inet);
	if (g_inet_address_get_family (inet) == G_SOCKET_FAMILY_IPV4) {
		key[0] = 4;
		memcpy (key + 1, bytes, 4);
	} else if (memcmp (bytes, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		key[0] = 4;
		memcpy (key + 1, bytes + 12, 4);
	} else {
		key[0] = 8;
		memcpy (key + 1, bytes, 8);
	}
	return TRUE;
}

/* Microseconds for an empty bucket to fill up again: an older bucket is full, and forgotten. */
static gint64
rate_refill_us (ChatServer *self)
{
	return (gint64) ((double) self->upgrade_burst * G_USEC_PER_SEC / self->upgrades_per_second);
}

static void
rate_bucket_forget (ChatServer *self, RateBucket *bucket)
{
	g_queue_unlink (&self->rate_lru, &bucket->link);
	g_hash_table_remove (self->rate_buckets, bucket);
}

static void
prune_rate_buckets (ChatServer *self, gint64 now)
{
	RateBucket *oldest;

	while (self->rate_lru.head != NULL) {
		oldest = self->rate_lru.head->data;
		if (self->upgrades_per_second > 0 && now - oldest->updated < rate_refill_us (self))
			break;
		rate_bucket_forget (self, oldest);
	}
}

/* Takes one upgrade from the token bucket of @address's host; if it is empty, returns FALSE
 * and the seconds until the next one in @retry_after. */
static gboolean
rate_allows (ChatServer *self, GInetAddress *address, guint *retry_after)
{
	RateBucket lookup = {0};
	RateBucket *bucket;
	gint64 now;

	if (self->upgrades_per_second == 0 || !rate_key (address, lookup.key))
		return TRUE;
	now = g_get_monotonic_time ();
	bucket = g_hash_table_lookup (self->rate_buckets, &lookup);
	if (bucket == NULL) {
		prune_rate_buckets (self, now);
		if (g_hash_table_size (self->rate_buckets) >= MAX_RATE_BUCKETS)
			rate_bucket_forget (self, self->rate_lru.head->data);
		bucket = g_new0 (RateBucket, 1);
		memcpy (bucket->key, lookup.key, sizeof bucket->key);
		bucket->tokens = self->upgrade_burst;
		bucket->link.data = bucket;
		g_hash_table_add (self->rate_buckets, bucket);
	} else {
		g_queue_unlink (&self->rate_lru, &bucket->link);
		bucket->tokens =
		    MIN ((double) self->upgrade_burst,
			 bucket->tokens + (double) (now - bucket->updated) *
					      self->upgrades_per_second / G_USEC_PER_SEC);
	}
	bucket->updated = now;
	g_queue_push_tail_link (&self->rate_lru, &bucket->link);
	if (bucket->tokens >= 1.0) {
		bucket->tokens -= 1.0;
		return TRUE;
	}
	/* whole seconds, rounded up */
	*retry_after = (guint) ((1.0 - bucket->tokens) / self->upgrades_per_second) + 1;
	return FALSE;
}

/* An IPv4-mapped IPv6 address (a dual-stack socket's peer) as the IPv4 address it is, so that
 * it matches IPv4 networks. */
static GInetAddress *
unmap_address (GInetAddress *address)
{
	const guint8 *bytes = g_inet_address_to_bytes (address);

	if (g_inet_address_get_family (address) == G_SOCKET_FAMILY_IPV6 &&
	    memcmp (bytes, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
		return g_inet_address_new_from_bytes (bytes + 12, G_SOCKET_FAMILY_IPV4);
	return g_object_ref (address);
}

static gboolean
is_trusted_proxy (ChatServer *self, GInetAddress *address)
{
	for (guint i = 0; self->proxy_masks != NULL && i < self->proxy_masks->len; i++) {
		if (g_inet_address_mask_matches (self->proxy_masks->pdata[i], address))
			return TRUE;
	}
	return FALSE;
}

/* One element of X-Forwarded-For: an address, maybe with a port ("[::1]:80", "1.2.3.4:80"). */
static GInetAddress *
parse_forwarded_address (char *text)
{
	g_autoptr (GInetAddress) address = NULL;
	char *end;

	g_strstrip (text);
	if (text[0] == '[' && (end = strchr (text, ']')) != NULL) {
		*end = '\0';
		text++;
	} else if ((end = strchr (text, ':')) != NULL && strchr (end + 1, ':') == NULL) {
		*end = '\0'; /* one colon: IPv4 and a port */
	}
	address = g_inet_address_new_from_string (text);
	return address != NULL ? unmap_address (address) : NULL;
}

/* Whose request this is: the TCP peer, or, when the peer is one of
 * ChatServer:trusted-proxies, the rightmost address of X-Forwarded-For that is not a trusted
 * proxy (the proxies append what they saw; anything left of that is the client's to forge).
 * An element that is no address ends the walk, and so does the MAX_FORWARDED_HOPS-th: the
 * last address read is the client then.
 * @peer_out: the TCP peer's address, when it differs. NULL if the peer is no IP socket. */
static GInetAddress *
find_client_address (ChatServer *self, SoupServerMessage *msg, GInetAddress **peer_out)
{
	GSocketAddress *remote = soup_server_message_get_remote_address (msg);
	g_autoptr (GInetAddress) peer = NULL;
	g_autoptr (GInetAddress) client = NULL;
	g_autofree char *list = NULL;
	const char *forwarded;
	char *end;

	*peer_out = NULL;
	if (!G_IS_INET_SOCKET_ADDRESS (remote))
		return NULL;
	peer = unmap_address (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
	if (self->proxy_masks == NULL || !is_trusted_proxy (self, peer))
		return g_steal_pointer (&peer);
	/* several X-Forwarded-For headers are one list, in their order */
	forwarded = soup_message_headers_get_list (soup_server_message_get_request_headers (msg),
						   "X-Forwarded-For");
	if (forwarded == NULL)
		return g_steal_pointer (&peer);
	client = g_object_ref (peer);
	list = g_strdup (forwarded);
	end = list + strlen (list);
	/* from the right, at most MAX_FORWARDED_HOPS: a client can send a long list of
	 * trusted addresses, and each costs a parse */
	for (guint hops = 0; end > list && hops < MAX_FORWARDED_HOPS; hops++) {
		char *start = end;
		GInetAddress *hop;

		while (start > list && start[-1] != ',')
			start--;
		*end = '\0';
		hop = parse_forwarded_address (start);
		if (hop == NULL)
			break;
		g_set_object (&client, hop);
		g_object_unref (hop);
		if (!is_trusted_proxy (self, client))
			break;
		end = start > list ? start - 1 : list;
	}
	if (!g_inet_address_equal (client, peer))
		*peer_out = g_steal_pointer (&peer);
	return g_steal_pointer (&client);
}

/* ChatServer:allowed-origins: a request without Origin is no browser's and passes; else the
 * origin must be listed (or the list hold "*"), or, with no list, name the Host requested. */
static gboolean
origin_allowed (ChatServer *self, SoupServerMessage *msg)
{
	SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
	const char *origin = soup_message_headers_get_one (headers, "Origin");
	const char *host;
	const char *authority;

	if (origin == NULL)
		return TRUE;
	if (self->allowed_origins == NULL) {
		host = soup_message_headers_get_one (headers, "Host");
		authority = strstr (origin, "://");
		return host != NULL && authority != NULL &&
		       g_ascii_strcasecmp (authority + 3, host) == 0;
	}
	for (guint i = 0; self->allowed_origins[i] != NULL; i++) {
		if (strcmp (self->allowed_origins[i], "*") == 0 ||
		    g_ascii_strcasecmp (self->allowed_origins[i], origin) == 0)
			return TRUE;
	}
	return FALSE;
}

/* The verifier's refusal (its English wire text) as one of the few token reasons. */
static Refusal
token_refusal (const char *wire_reason)
{
	static const struct {
		const char *text;
		Refusal refusal;
	} reasons[] = {
	    {"No token was presented", REFUSED_TOKEN_MISSING},
	    {"The token is malformed", REFUSED_TOKEN_MALFORMED},
	    {"The token is not signed with the configured algorithm", REFUSED_TOKEN_MALFORMED},
	    {"The token header cannot be parsed", REFUSED_TOKEN_MALFORMED},
	    {"The token signature is invalid", REFUSED_TOKEN_SIGNATURE},
	    {"The token has expired", REFUSED_TOKEN_EXPIRED},
	    {"The token is not valid yet", REFUSED_TOKEN_NOT_YET_VALID},
	};

	if (wire_reason == NULL)
		return REFUSED_TOKEN_REJECTED;
	if (g_str_has_prefix (wire_reason, "The token claims cannot be parsed"))
		return REFUSED_TOKEN_MALFORMED;
	for (gsize i = 0; i < G_N_ELEMENTS (reasons); i++) {
		if (strcmp (wire_reason, reasons[i].text) == 0)
			return reasons[i].refusal;
	}
	return REFUSED_TOKEN_REJECTED;
}

/* One line per refused upgrade, within REFUSAL_LOG_LINES_PER_SECOND. @client: the address
 * the limits apply to; @peer: (nullable): the proxy it came through. */
static void
log_refusal (ChatServer *self,
	     Refusal refusal,
	     guint status,
	     const char *client,
	     const char *peer,
	     const char *detail)
{
	g_autofree char *from = NULL;
	g_autofree char *line = NULL;
	g_autofree char *text = NULL;

	if (self->refusal_log_budget == 0) {
		self->refusal_log_suppressed++;
		self->refusal_log_suppressed_total++;
		return;
	}
	self->refusal_log_budget--;
	/* TRANSLATORS: "203.0.113.7 (via 10.0.0.2)": a client behind a trusted proxy */
	from = peer != NULL ? g_strdup_printf (_ ("%s (via %s)"), client, peer) : g_strdup (client);
	line = g_strdup_printf (_ ("Refused a connection from %s: %s"), from, detail);
	/* the reason and the status as on the wire and in /metrics, for grep and tools */
	text = g_strdup_printf ("%s (%s, HTTP %u)", line, refusal_names[refusal], status);
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_MESSAGE,
			  "CHATHUB_EVENT",
			  "upgrade-refused",
			  "CHATHUB_REASON",
			  refusal_names[refusal],
			  "CHATHUB_REMOTE",
			  client,
			  "MESSAGE",
			  "%s",
			  text);
}

/* At the one-second sweep: what the limit kept out of the log in the last second. */
static void
log_refusals_suppressed (ChatServer *self)
{
	g_autofree char *text = NULL;

	self->refusal_log_budget = REFUSAL_LOG_LINES_PER_SECOND;
	if (self->refusal_log_suppressed == 0)
		return;
	text = g_strdup_printf (
	    g_dngettext (GETTEXT_PACKAGE,
			 "Suppressed %u more refused-upgrade line in the last second",
			 "Suppressed %u more refused-upgrade lines in the last second",
			 self->refusal_log_suppressed),
	    self->refusal_log_suppressed);
	self->refusal_log_suppressed = 0;
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_MESSAGE,
			  "CHATHUB_EVENT",
			  "upgrade-refused-suppressed",
			  "MESSAGE",
			  "%s",
			  text);
}

/* The listener's 431s, which never reach the gate. */
static void
on_head_refused (GSocketAddress *remote, gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	g_autofree char *address = NULL;

	if (G_IS_INET_SOCKET_ADDRESS (remote))
		address = g_inet_address_to_string (
		    g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
	log_refusal (self,
		     REFUSED_HEADER_TOO_LARGE,
		     431,
		     address != NULL ? address : "?",
		     NULL,
		     _ ("the request head is over 32 KiB"));
}

static const char *
find_token (SoupServerMessage *msg, GHashTable *query)
{
	const char *authorization =
	    soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
					  "Authorization");

	if (authorization != NULL) {
		while (*authorization == ' ')
			authorization++;
		if (g_ascii_strncasecmp (authorization, "Bearer ", 7) == 0) {
			authorization += 7;
			while (*authorization == ' ')
				authorization++;
			return authorization;
		}
		return NULL;
	}
	return query != NULL ? g_hash_table_lookup (query, "access_token") : NULL;
}

typedef struct {
	ChatServer *server; /* owned */
	guint64 user_id;
	GArray *rooms;
	gint64 token_deadline; /* real time, µs; 0: the token has no exp */
	char *remote_address;
	gboolean done;
} PendingUpgrade;

static void
pending_upgrade_free (gpointer data, GClosure *closure)
{
	PendingUpgrade *pending = data;

	/* the 101 was never written (the peer vanished): release the reserved slot */
	if (!pending->done)
		release_connection (pending->server, pending->user_id);
	g_clear_pointer (&pending->rooms, g_array_unref);
	g_free (pending->remote_address);
	g_object_unref (pending->server);
	g_free (pending);
}

static guint
close_code_index (guint16 code)
{
	guint i;

	for (i = 0; i < G_N_ELEMENTS (close_codes); i++) {
		if (close_codes[i] == code)
			break;
	}
	return i;
}

static void
on_client_closed (ChatClient *client, gpointer user_data)
{
	ChatServer *self = user_data;

	release_connection (self, chat_client_get_user_id (client));
	self->bytes_sent_closed += chat_client_get_bytes_sent (client);
	if (chat_client_is_slow_consumer (client))
		self->slow_consumer_closes++;
	self->closes[close_code_index (chat_client_get_close_code (client))]++;
	g_debug ("client %s of user %" G_GUINT64_FORMAT " left (%u)",
		 chat_client_get_id (client),
		 chat_client_get_user_id (client),
		 chat_client_get_close_code (client));
}

static void
on_upgraded (SoupServerMessage *msg, PendingUpgrade *pending)
{
	ChatServer *self = pending->server;
	g_autoptr (SoupServerMessage) keep = g_object_ref (msg);
	g_autoptr (GSocket) socket = NULL;
	g_autoptr (GIOStream) stolen = NULL;
	g_autoptr (GIOStream) io = NULL;
	g_autoptr (ChatOutbox) outbox = NULL;
	g_autoptr (SoupWebsocketConnection) conn = NULL;
	g_autoptr (ChatClient) client = NULL;
	g_autofree char *origin = g_strdup (
	    soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Origin"));
	GList *extensions;
	ChatInbox *inbox;
	gboolean tls = FALSE;

	if (pending->done)
		return;
	pending->done = TRUE;
	stolen = soup_server_message_steal_connection (msg);
	if (stolen != NULL)
		socket = chat_listener_claim_socket (stolen, &tls);
	if (socket == NULL) {
		g_warning (_ ("Cannot find the socket of an upgraded connection; dropping it"));
		release_connection (self, pending->user_id);
		if (stolen != NULL)
			g_io_stream_close (stolen, NULL, NULL);
		return;
	}

	outbox = chat_outbox_new (stolen, socket, tls, self->flush_source, self->poll_source);
	io = chat_outbox_stream_new (outbox);
	extensions = g_list_append (NULL, chat_limit_extension_new (self->max_message_size));
	/* one URI without the query for every connection: the request's would keep each
	 * client's access_token in memory for the life of the connection */
	inbox = CHAT_INBOX (g_io_stream_get_input_stream (io));
	chat_inbox_park_begin (inbox);
	conn = soup_websocket_connection_new (io,
					      self->ws_uri,
					      SOUP_WEBSOCKET_CONNECTION_SERVER,
					      origin,
					      NULL,
					      extensions);
	chat_inbox_park_end (inbox);
	/* libsoup drops frames over its cap without a close frame, so our own limit (which
	 * answers 1009 properly) must trip first; never 0 (CVE-2026-0716) */
	soup_websocket_connection_set_max_incoming_payload_size (
	    conn,
	    MAX ((guint64) self->max_message_size * 2, 128 * 1024));

	client = chat_client_new (conn,
				  outbox,
				  pending->user_id,
				  pending->rooms,
				  pending->remote_address,
				  self->outbox_size);
	chat_client_set_limits (client,
				self->messages_per_second,
				self->message_burst,
				self->max_rooms);
	chat_client_set_token (client, self->verifier, pending->token_deadline);
	self->accepted++;
	chat_client_set_closed_func (client, on_client_closed, self);
	g_debug ("client %s of user %" G_GUINT64_FORMAT " connected from %s",
		 chat_client_get_id (client),
		 pending->user_id,
		 pending->remote_address);
	chat_hub_register_client (self->hub, client);
}

static void
add_check (JsonBuilder *builder, const char *name, gboolean ok, const char *failure)
{
	json_builder_set_member_name (builder, name);
	json_builder_add_string_value (builder, ok ? "ok" : failure);
}

/* For the plain GET/HEAD resources: TRUE (and the 405 set) for any other method. */
static gboolean
refuse_method (SoupServerMessage *msg)
{
	static const char method_not_allowed[] =
	    "{\"error\":\"method_not_allowed\",\"error_description\":\"Only GET and HEAD are "
	    "allowed here\"}";
	const char *method = soup_server_message_get_method (msg);

	if (method == SOUP_METHOD_GET || method == SOUP_METHOD_HEAD)
		return FALSE;
	soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL);
	soup_message_headers_replace (soup_server_message_get_response_headers (msg),
				      "Allow",
				      "GET, HEAD");
	soup_server_message_set_response (msg,
					  "application/json",
					  SOUP_MEMORY_STATIC,
					  method_not_allowed,
					  strlen (method_not_allowed));
	return TRUE;
}

/* /healthz: the main loop runs, since it answers. /readyz: new clients would be served: the
 * listener accepts, and the store can take messages (with Redis: is connected). Both come
 * before the upgrade rate and the token, so that probes never use up an address's share.
 * Returns FALSE for any other path. */
static gboolean
serve_health (ChatServer *self, SoupServerMessage *msg, const char *path)
{
	SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
	gboolean live = g_strcmp0 (path, "/healthz") == 0;
	g_autoptr (JsonBuilder) builder = NULL;
	g_autoptr (JsonNode) root = NULL;
	g_autoptr (ChatStore) store = NULL;
	gboolean listener_ok, store_ok, redis_ok = TRUE, ready;
	char *body;

	if (!live && g_strcmp0 (path, "/readyz") != 0)
		return FALSE;
	if (refuse_method (msg))
		return TRUE;
	/* a cached answer would report a state that has passed */
	soup_message_headers_replace (headers, "Cache-Control", "no-store");
	g_object_get (self->hub, "store", &store, NULL);
	listener_ok = chat_listener_is_accepting (self->listener);
	store_ok = chat_store_is_ready (store);
	if (CHAT_IS_REDIS_STORE (store))
		redis_ok = chat_redis_store_is_connected (CHAT_REDIS_STORE (store));
	ready = live || (listener_ok && store_ok && redis_ok);

	builder = json_builder_new ();
	json_builder_begin_object (builder);
	json_builder_set_member_name (builder, "status");
	json_builder_add_string_value (builder, live ? "ok" : ready ? "ready" : "not ready");
	if (!live) {
		json_builder_set_member_name (builder, "checks");
		json_builder_begin_object (builder);
		add_check (builder,
			   "listener",
			   listener_ok,
			   chat_listener_is_listening (self->listener) ? "out of descriptors"
								       : "not listening");
		add_check (builder, "store", store_ok, "failing");
		if (CHAT_IS_REDIS_STORE (store))
			add_check (builder, "redis", redis_ok, "disconnected");
		json_builder_end_object (builder);
	}
	json_builder_end_object (builder);
	root = json_builder_get_root (builder);
	body = json_to_string (root, FALSE);
	soup_server_message_set_status (msg,
					ready ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE,
					NULL);
	soup_server_message_set_response (msg,
					  "application/json",
					  SOUP_MEMORY_TAKE,
					  body,
					  strlen (body));
	return TRUE;
}

static void
metric_family (GString *out, const char *name, const char *type, const char *help)
{
	g_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* @labels: (nullable): `name="value"` pairs, which need no escaping (ours are fixed words) */
static void
metric_sample (GString *out, const char *name, const char *labels, guint64 value)
{
	g_string_append_printf (out,
				"%s%s%s%s %" G_GUINT64_FORMAT "\n",
				name,
				labels != NULL ? "{" : "",
				labels != NULL ? labels : "",
				labels != NULL ? "}" : "",
				value);
}

static void
metric (GString *out, const char *name, const char *type, const char *help, guint64 value)
{
	metric_family (out, name, type, help);
	metric_sample (out, name, NULL, value);
}

/* A number of a statistics dictionary, whether `u` or `t`; 0 when missing. */
static guint64
lookup_count (GVariant *dict, const char *key)
{
	g_autoptr (GVariant) value = g_variant_lookup_value (dict, key, NULL);

	if (value == NULL)
		return 0;
	if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32))
		return g_variant_get_uint32 (value);
	return g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64) ? g_variant_get_uint64 (value)
								   : 0;
}

static void
labelled_family (GString *out,
		 const char *name,
		 const char *type,
		 const char *help,
		 const char *label,
		 const char *const *values,
		 const guint64 *counts,
		 gsize n)
{
	metric_family (out, name, type, help);
	for (gsize i = 0; i < n; i++) {
		g_autofree char *labels = g_strdup_printf ("%s=\"%s\"", label, values[i]);

		metric_sample (out, name, labels, counts[i]);
	}
}

/* /metrics: the counters chathub keeps anyway, in the Prometheus text format 0.0.4; no label
 * names a user or a room. Returns FALSE for any other path. */
static gboolean
serve_metrics (ChatServer *self, SoupServerMessage *msg, const char *path)
{
	static const char *const kinds[CHAT_TRAFFIC_N_KINDS] = {"room", "direct", "hub"};
	static const char *const limits[] = {"message_size", "binary", "rooms", "message_rate"};
	static const struct {
		const char *key;
		const char *name;
		const char *type;
		const char *help;
	} store_metrics[] = {
	    {"stored", "chathub_store_messages_stored_total", "counter", "Messages stored"},
	    {"failed",
	     "chathub_store_messages_failed_total",
	     "counter",
	     "Messages whose append failed (answered unavailable)"},
	    {"trimmed",
	     "chathub_store_messages_trimmed_total",
	     "counter",
	     "Messages removed by retention"},
	    {"retained", "chathub_store_messages_retained", "gauge", "Messages kept now"},
	    {"groups", "chathub_store_groups_total", "counter", "Group commits"},
	    {"largest-group",
	     "chathub_store_largest_group_messages",
	     "gauge",
	     "Messages in the largest group commit"},
	};
	g_autoptr (GVariant) statistics = NULL;
	g_autoptr (GVariant) store_statistics = NULL;
	g_autoptr (ChatStore) store = NULL;
	ChatHubCounters *counters = chat_hub_get_counters (self->hub);
	ChatFlushStatistics *flush = chat_flush_source_get_statistics (self->flush_source);
	guint64 refused[N_REFUSALS];
	guint64 limit_counts[G_N_ELEMENTS (limits)];
	const char *close_labels[G_N_ELEMENTS (close_codes) + 1];
	char close_names[G_N_ELEMENTS (close_codes)][8];
	GString *out;
	gsize length;
	char number[G_ASCII_DTOSTR_BUF_SIZE];

	if (g_strcmp0 (path, "/metrics") != 0)
		return FALSE;
	if (refuse_method (msg))
		return TRUE;
	statistics = g_variant_ref_sink (chat_server_get_statistics (self));
	g_object_get (self->hub, "store", &store, NULL);
	store_statistics = g_variant_take_ref (chat_store_get_statistics (store));
	out = g_string_sized_new (8192);

	metric (out,
		"chathub_connections",
		"gauge",
		"WebSocket connections, upgrades under way included",
		self->n_connections);
	metric (out,
		"chathub_connections_opened_total",
		"counter",
		"WebSocket connections accepted",
		self->accepted);
	for (gsize i = 0; i < G_N_ELEMENTS (close_codes); i++) {
		g_snprintf (close_names[i], sizeof close_names[i], "%u", close_codes[i]);
		close_labels[i] = close_names[i];
	}
	close_labels[G_N_ELEMENTS (close_codes)] = "other";
	labelled_family (out,
			 "chathub_connections_closed_total",
			 "counter",
			 "WebSocket connections closed, by close code",
			 "code",
			 close_labels,
			 self->closes,
			 G_N_ELEMENTS (close_labels));
	memcpy (refused, self->refused, sizeof refused);
	refused[REFUSED_HEADER_TOO_LARGE] =
	    chat_listener_get_refused_head_too_large (self->listener);
	labelled_family (out,
			 "chathub_upgrades_refused_total",
			 "counter",
			 "Upgrade requests refused, by reason (the 429s: too_many_requests and "
			 "too_many_connections)",
			 "reason",
			 refusal_names,
			 refused,
			 N_REFUSALS);
	labelled_family (out,
			 "chathub_messages_received_total",
			 "counter",
			 "Chat messages received from clients, by address",
			 "kind",
			 kinds,
			 counters->received,
			 CHAT_TRAFFIC_N_KINDS);
	labelled_family (out,
			 "chathub_messages_relayed_total",
			 "counter",
			 "Chat messages relayed (each once, whatever its recipients), by address",
			 "kind",
			 kinds,
			 counters->relayed,
			 CHAT_TRAFFIC_N_KINDS);
	metric (out,
		"chathub_deliveries_total",
		"counter",
		"Relayed chat messages queued to a connection (one per recipient connection)",
		counters->deliveries);
	metric (out,
		"chathub_bytes_received_total",
		"counter",
		"Payload bytes of the WebSocket messages read from clients",
		counters->bytes_received);
	metric (out,
		"chathub_bytes_sent_total",
		"counter",
		"Bytes written to WebSocket connections (frames whole)",
		lookup_count (statistics, "bytes-sent"));
	metric (out,
		"chathub_slow_consumer_closes_total",
		"counter",
		"Connections closed because they did not read (1008)",
		lookup_count (statistics, "slow-consumer-closes"));
	metric (out,
		"chathub_idle_closes_total",
		"counter",
		"Connections closed after idle-timeout without traffic (1001)",
		lookup_count (statistics, "idle-closes"));
	metric (out,
		"chathub_messages_rate_limited_total",
		"counter",
		"Messages refused rate_limited (over messages-per-second)",
		counters->rate_limited);
	limit_counts[0] = counters->message_size_closes;
	limit_counts[1] = counters->binary_closes;
	limit_counts[2] = counters->room_limit_refusals;
	limit_counts[3] = counters->rate_limit_closes;
	labelled_family (out,
			 "chathub_limits_hit_total",
			 "counter",
			 "Per-connection limits hit: closes for message_size (1009), binary (1003) "
			 "and message_rate (1008), joins refused over max-rooms (rooms)",
			 "limit",
			 limits,
			 limit_counts,
			 G_N_ELEMENTS (limits));
	metric (out,
		"chathub_rooms",
		"gauge",
		"Rooms with at least one member",
		chat_hub_get_n_rooms (self->hub));
	metric_family (out,
		       "chathub_outbox_write_bytes",
		       "histogram",
		       "Bytes per write to a connection (sendmsg, up to 256 frames)");
	chat_histogram_append (&flush->write_bytes, out, "chathub_outbox_write_bytes", 1);
	metric_family (out,
		       "chathub_outbox_waiting_bytes",
		       "histogram",
		       "Bytes queued for a connection when its flush began");
	chat_histogram_append (&flush->waiting_bytes, out, "chathub_outbox_waiting_bytes", 1);
	metric_family (out,
		       "chathub_main_loop_lag_seconds",
		       "histogram",
		       "How late a 100 ms timer on the main loop fires");
	chat_histogram_append (&self->loop_lag, out, "chathub_main_loop_lag_seconds", 1e6);
	metric (out,
		"chathub_log_lines_suppressed_total",
		"counter",
		"Refused-upgrade log lines left out over the limit of 10 per second",
		self->refusal_log_suppressed_total);
	for (gsize i = 0; i < G_N_ELEMENTS (store_metrics); i++)
		metric (out,
			store_metrics[i].name,
			store_metrics[i].type,
			store_metrics[i].help,
			lookup_count (store_statistics, store_metrics[i].key));
	metric_family (out,
		       "chathub_store_commit_seconds_total",
		       "counter",
		       "Time spent in group commits");
	g_string_append_printf (
	    out,
	    "chathub_store_commit_seconds_total %s\n",
	    g_ascii_formatd (number,
			     sizeof number,
			     "%.6f",
			     (double) lookup_count (store_statistics, "commit-time-us") / 1e6));
	metric (out,
		"chathub_uptime_seconds",
		"gauge",
		"Seconds since the server was created",
		lookup_count (statistics, "uptime"));

	soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
	soup_message_headers_replace (soup_server_message_get_response_headers (msg),
				      "Cache-Control",
				      "no-store");
	length = out->len;
	soup_server_message_set_response (msg,
					  "text/plain; version=0.0.4; charset=utf-8",
					  SOUP_MEMORY_TAKE,
					  g_string_free (out, FALSE),
					  length);
	return TRUE;
}

/* The metrics listener's only resource. */
static void
handle_metrics_request (SoupServer *soup,
			SoupServerMessage *msg,
			const char *path,
			GHashTable *query,
			gpointer user_data)
{
	if (!serve_metrics (CHAT_SERVER (user_data), msg, path))
		set_json_response (msg, SOUP_STATUS_NOT_FOUND, "not_found", "No such endpoint");
}

/* Counts and logs a refusal and sets its JSON answer. */
static void
refuse (ChatServer *self,
	SoupServerMessage *msg,
	Refusal refusal,
	guint status,
	const char *error,
	const char *description,
	const char *client,
	const char *peer,
	const char *detail)
{
	self->refused[refusal]++;
	log_refusal (self, refusal, status, client, peer, detail);
	set_json_response (msg, status, error, description);
}

static void
handle_request (SoupServer *soup,
		SoupServerMessage *msg,
		const char *path,
		GHashTable *query,
		gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	SoupMessageHeaders *response_headers = soup_server_message_get_response_headers (msg);
	g_autoptr (GInetAddress) client = NULL;
	g_autoptr (GInetAddress) peer = NULL;
	g_autofree char *remote = NULL;
	g_autofree char *via = NULL;
	g_autofree char *detail = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (GArray) rooms = NULL;
	const char *reason = NULL;
	guint64 user_id = 0;
	gint64 token_deadline = 0;
	guint retry_after = 1;
	char retry_text[16];
	PendingUpgrade *pending;

	/* Cheapest first, and nothing that costs a signature check before the per-address rate:
	 * the path, the handshake and the origin are string compares, the rate one hash lookup,
	 * and only then is the token verified; the per-user and server-wide limits need the
	 * token's user. */

	if (g_strcmp0 (path, self->path) != 0) {
		if (serve_health (self, msg, path))
			return;
		/* with a listener of its own, /metrics is served there only */
		if (self->metrics && self->metrics_soup == NULL && serve_metrics (self, msg, path))
			return;
		if (self->web_files != NULL && chat_web_root_serve (self->web_files, msg, path))
			return;
		set_json_response (msg, SOUP_STATUS_NOT_FOUND, "not_found", "No such endpoint");
		return;
	}
	/* behind a trusted proxy, the client it forwards for: logs, limits and the client's
	 * remote address */
	client = find_client_address (self, msg, &peer);
	remote = client != NULL ? g_inet_address_to_string (client)
				: g_strdup (soup_server_message_get_remote_host (msg));
	if (remote == NULL)
		remote = g_strdup ("?");
	if (peer != NULL)
		via = g_inet_address_to_string (peer);

	if (!soup_websocket_server_check_handshake (msg, NULL, NULL, NULL, &error)) {
		refuse (self,
			msg,
			REFUSED_BAD_REQUEST,
			SOUP_STATUS_BAD_REQUEST,
			"invalid_request",
			"This endpoint only accepts WebSocket upgrade requests",
			remote,
			via,
			error->message);
		return;
	}
	/* before the token: a page elsewhere cannot use a visitor's token, or learn whether it
	 * is valid */
	if (!origin_allowed (self, msg)) {
		detail = g_strdup_printf (
		    _ ("the origin %s is not allowed"),
		    soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
						  "Origin"));
		refuse (self,
			msg,
			REFUSED_FORBIDDEN_ORIGIN,
			SOUP_STATUS_FORBIDDEN,
			"forbidden_origin",
			"Connections from this origin are not allowed",
			remote,
			via,
			detail);
		return;
	}
	if (!rate_allows (self, client, &retry_after)) {
		detail =
		    g_strdup_printf (_ ("over %u upgrades per second"), self->upgrades_per_second);
		refuse (self,
			msg,
			REFUSED_TOO_MANY_REQUESTS,
			HTTP_TOO_MANY_REQUESTS,
			"too_many_requests",
			"Too many connection attempts from this address; try again later",
			remote,
			via,
			detail);
		g_snprintf (retry_text, sizeof retry_text, "%u", retry_after);
		soup_message_headers_replace (response_headers, "Retry-After", retry_text);
		return;
	}
	if (!chat_token_verifier_check_full (self->verifier,
					     find_token (msg, query),
					     &user_id,
					     &rooms,
					     &token_deadline,
					     &reason,
					     &error)) {
		refuse (self,
			msg,
			token_refusal (reason),
			SOUP_STATUS_UNAUTHORIZED,
			"invalid_token",
			reason,
			remote,
			via,
			error->message);
		soup_message_headers_replace (response_headers,
					      "WWW-Authenticate",
					      "Bearer error=\"invalid_token\"");
		return;
	}
	/* upgrades on their way count too, so a burst cannot overshoot */
	if (self->max_connections_per_user > 0 &&
	    user_connections_get (self, user_id) >= self->max_connections_per_user) {
		detail = g_strdup_printf (_ ("user %" PRIu64 " already has %u connections"),
					  user_id,
					  self->max_connections_per_user);
		refuse (self,
			msg,
			REFUSED_TOO_MANY_CONNECTIONS,
			HTTP_TOO_MANY_REQUESTS,
			"too_many_connections",
			"This user has too many connections; close one first",
			remote,
			via,
			detail);
		soup_message_headers_replace (response_headers, "Retry-After", "10");
		return;
	}
	if (self->max_connections > 0 && self->n_connections >= self->max_connections) {
		detail = g_strdup_printf (_ ("the limit of %u connections is reached"),
					  self->max_connections);
		refuse (self,
			msg,
			REFUSED_UNAVAILABLE,
			SOUP_STATUS_SERVICE_UNAVAILABLE,
			"server_busy",
			"Too many connections; try again later",
			remote,
			via,
			detail);
		soup_message_headers_replace (response_headers, "Retry-After", "5");
		return;
	}

	/* the 101 carries "Connection: Upgrade", never our "close" */
	soup_message_headers_remove (response_headers, "Connection");
	/* no extensions (NULL): prebuilt frames cannot be compressed per client, and deflate
	 * costs ~90 KB per connection and defeats the size limit */
	if (!soup_websocket_server_process_handshake (msg, NULL, NULL, NULL, NULL)) {
		soup_message_headers_replace (response_headers, "Connection", "close");
		return;
	}
	self->n_connections++;
	user_connections_add (self, user_id);
	pending = g_new0 (PendingUpgrade, 1);
	pending->server = g_object_ref (self);
	pending->user_id = user_id;
	pending->rooms = g_steal_pointer (&rooms);
	pending->token_deadline = token_deadline;
	pending->remote_address = g_steal_pointer (&remote);
	g_signal_connect_data (msg,
			       "wrote-informational",
			       G_CALLBACK (on_upgraded),
			       pending,
			       pending_upgrade_free,
			       0);
}

static void
on_request_started (SoupServer *soup, SoupServerMessage *msg, ChatServer *self)
{
	/* libsoup 3.2 leaks keep-alive connections the client closes: every answer but the
	 * 101 closes the connection (see docs/architecture.md) */
	soup_message_headers_replace (soup_server_message_get_response_headers (msg),
				      "Connection",
				      "close");
}

static gboolean
on_heartbeat (gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	GPtrArray *clients = chat_hub_get_clients_unowned (self->hub);
	gint64 now = g_get_monotonic_time ();
	gint64 real_now = g_get_real_time ();
	gint64 ping = (gint64) self->ping_interval * G_USEC_PER_SEC;
	gint64 idle = (gint64) self->idle_timeout * G_USEC_PER_SEC;

	/* closing never unregisters synchronously, but walk backwards to be safe */
	for (guint i = clients->len; i > 0; i--) {
		if (i <= clients->len &&
		    chat_client_heartbeat (clients->pdata[i - 1], now, real_now, ping, idle))
			self->idle_closes++;
	}
	return G_SOURCE_CONTINUE;
}

static void
restart_heartbeat (ChatServer *self)
{
	guint shortest = MIN (self->ping_interval > 0 ? self->ping_interval : G_MAXUINT,
			      self->idle_timeout > 0 ? self->idle_timeout : G_MAXUINT);
	guint tick_ms;

	chat_clear_source (&self->heartbeat);
	/* without a hub (a server that cannot listen) there is no client to watch */
	if (self->soup == NULL || self->hub == NULL)
		return;
	/* one timer for every client; granularity a quarter of the shortest period, and at most
	 * a second even without pings or idle timeout, for the tokens' exp */
	tick_ms = shortest == G_MAXUINT ? 1000 : CLAMP (shortest * 250, 100, 1000);
	self->heartbeat = add_timeout (self, tick_ms, on_heartbeat, "chathub heartbeat");
}

/* Addresses whose bucket is full again are forgotten. */
static gboolean
on_rate_sweep (gpointer user_data)
{
	prune_rate_buckets (CHAT_SERVER (user_data), g_get_monotonic_time ());
	log_refusals_suppressed (CHAT_SERVER (user_data));
	return G_SOURCE_CONTINUE;
}

/* How late the timer fires: GLib sets its next expiration from this dispatch's time, so
 * anything past that plus the interval is time the loop spent elsewhere. */
static gboolean
on_lag_tick (gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	gint64 now = g_get_monotonic_time ();

	if (self->lag_base != 0)
		chat_histogram_observe (
		    &self->loop_lag,
		    (guint64) MAX (0, now - self->lag_base - LAG_INTERVAL_MS * 1000));
	self->lag_base = g_source_get_time (self->lag_timer);
	return G_SOURCE_CONTINUE;
}

/* Only while /metrics is served: otherwise nobody reads it, and an idle daemon stays idle. */
static void
start_lag_timer (ChatServer *self)
{
	gboolean wanted = self->soup != NULL && (self->metrics || self->metrics_soup != NULL);

	if (wanted == (self->lag_timer != NULL))
		return;
	chat_clear_source (&self->lag_timer);
	self->lag_base = 0;
	if (wanted)
		self->lag_timer =
		    add_timeout (self, LAG_INTERVAL_MS, on_lag_tick, "chathub loop lag");
}

/* A connection whose request head has arrived: libsoup speaks HTTP from here on. */
static void
serve_connection (GIOStream *connection,
		  GSocketAddress *local,
		  GSocketAddress *remote,
		  gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	g_autoptr (GError) error = NULL;

	/* a GTlsConnection makes libsoup see https:// requests */
	if (!soup_server_accept_iostream (self->soup, connection, local, remote, &error)) {
		g_debug ("cannot serve a new connection: %s", error->message);
		g_io_stream_close (connection, NULL, NULL);
	}
}

static guint
count_connections (gpointer user_data)
{
	return CHAT_SERVER (user_data)->n_connections;
}

static void
chat_server_constructed (GObject *object)
{
	ChatServer *self = CHAT_SERVER (object);
	g_autoptr (GError) error = NULL;

	G_OBJECT_CLASS (chat_server_parent_class)->constructed (object);

	self->context = g_main_context_ref_thread_default ();
	self->soup = soup_server_new ("server-header", "chathub/" PACKAGE_VERSION, NULL);
	soup_server_add_handler (self->soup, NULL, handle_request, self, NULL);
	g_signal_connect (self->soup, "request-started", G_CALLBACK (on_request_started), self);

	self->flush_source = chat_flush_source_new ();
	g_source_attach (self->flush_source, self->context);
	self->poll_source = chat_poll_source_new (&error);
	if (self->poll_source == NULL)
		g_error (_ ("Cannot create the epoll set: %s"), error->message);
	g_source_attach (self->poll_source, self->context);
	self->listener =
	    chat_listener_new (self->context, serve_connection, count_connections, self);
	chat_listener_set_handshake_timeout (self->listener, self->handshake_timeout);
	chat_listener_set_refused_func (self->listener, on_head_refused);
	chat_listener_set_tls_certificate (self->listener, self->tls_certificate);
	self->started = g_get_monotonic_time ();
	restart_heartbeat (self);
	start_lag_timer (self);
}

static void
chat_server_class_init (ChatServerClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	chat_i18n_init ();
	rate_seed = g_random_int ();

	object_class->get_property = chat_server_get_property;
	object_class->set_property = chat_server_set_property;
	object_class->constructed = chat_server_constructed;
	object_class->dispose = chat_server_dispose;
	object_class->finalize = chat_server_finalize;

	/**
	 * ChatServer:hub:
	 *
	 * The hub accepted clients are registered with. Required: chat_server_listen() fails
	 * without it.
	 *
	 * Since: 1.0
	 */
	props[PROP_HUB] = g_param_spec_object ("hub",
					       NULL,
					       "The hub accepted clients are registered with",
					       CHAT_TYPE_HUB,
					       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
						   G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:verifier:
	 *
	 * The verifier every upgrade request's token is checked with. Required:
	 * chat_server_listen() fails without it.
	 *
	 * Since: 1.0
	 */
	props[PROP_VERIFIER] = g_param_spec_object (
	    "verifier",
	    NULL,
	    "The verifier every upgrade request's token is checked with",
	    CHAT_TYPE_TOKEN_VERIFIER,
	    G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:path:
	 *
	 * The path of the WebSocket endpoint.
	 *
	 * Since: 1.0
	 */
	props[PROP_PATH] = g_param_spec_string ("path",
						NULL,
						"The path of the WebSocket endpoint",
						"/ws",
						G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
						    G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:max-connections:
	 *
	 * The most connections at once; more upgrade requests get 503. 0 means no limit.
	 *
	 * Since: 1.0
	 */
	props[PROP_MAX_CONNECTIONS] = g_param_spec_uint (
	    "max-connections",
	    NULL,
	    "The most connections at once",
	    0,
	    G_MAXUINT,
	    0,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:max-message-size:
	 *
	 * The largest message a client may send, in bytes, all fragments together; a larger
	 * one closes the connection with 1009. Applies to connections accepted afterwards.
	 *
	 * Since: 1.0
	 */
	props[PROP_MAX_MESSAGE_SIZE] = g_param_spec_uint (
	    "max-message-size",
	    NULL,
	    "The largest message a client may send, in bytes",
	    1,
	    64 * 1024 * 1024,
	    64 * 1024,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:outbox-size:
	 *
	 * The most bytes that may wait for one client; a client over it is a slow consumer and
	 * is closed with 1008. Applies to connections accepted afterwards.
	 *
	 * Since: 1.0
	 */
	props[PROP_OUTBOX_SIZE] = g_param_spec_uint ("outbox-size",
						     NULL,
						     "The most bytes that may wait for one client",
						     1024,
						     G_MAXUINT,
						     1024 * 1024,
						     G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							 G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:ping-interval:
	 *
	 * Seconds between the WebSocket pings sent to every client; 0 disables them.
	 *
	 * Since: 1.0
	 */
	props[PROP_PING_INTERVAL] = g_param_spec_uint (
	    "ping-interval",
	    NULL,
	    "Seconds between the WebSocket pings to every client",
	    0,
	    86400,
	    54,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:idle-timeout:
	 *
	 * Seconds without a message or pong after which a client is closed with 1001; 0
	 * disables the check.
	 *
	 * Since: 1.0
	 */
	props[PROP_IDLE_TIMEOUT] = g_param_spec_uint (
	    "idle-timeout",
	    NULL,
	    "Seconds without a message or pong before a client is closed",
	    0,
	    86400,
	    60,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:handshake-timeout:
	 *
	 * Seconds a new TCP connection has to complete its upgrade request; a connection still
	 * not upgraded then is closed. 0 disables the limit.
	 *
	 * Since: 1.0
	 */
	props[PROP_HANDSHAKE_TIMEOUT] = g_param_spec_uint (
	    "handshake-timeout",
	    NULL,
	    "Seconds a new connection has to complete its upgrade",
	    0,
	    3600,
	    10,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:max-connections-per-user:
	 *
	 * The most connections one user (the token's user id) may hold at once, those being
	 * upgraded included; more upgrade requests get 429 `too_many_connections`. 0 means no
	 * limit.
	 *
	 * Since: 1.0
	 */
	props[PROP_MAX_CONNECTIONS_PER_USER] = g_param_spec_uint (
	    "max-connections-per-user",
	    NULL,
	    "The most connections one user may have at once",
	    0,
	    G_MAXUINT,
	    32,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:upgrades-per-second:
	 *
	 * The upgrade requests one remote address (an IPv6 address's /64) may make per second,
	 * on average, after #ChatServer:upgrade-burst; more get 429 `too_many_requests` before
	 * their token is checked. 0 means no limit.
	 *
	 * Since: 1.0
	 */
	props[PROP_UPGRADES_PER_SECOND] = g_param_spec_uint (
	    "upgrades-per-second",
	    NULL,
	    "Upgrades per second from one address",
	    0,
	    1000000,
	    20,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:upgrade-burst:
	 *
	 * The upgrade requests one remote address may make at once before
	 * #ChatServer:upgrades-per-second applies (the size of its token bucket).
	 *
	 * Since: 1.0
	 */
	props[PROP_UPGRADE_BURST] = g_param_spec_uint ("upgrade-burst",
						       NULL,
						       "Upgrades one address may make at once",
						       1,
						       1000000,
						       100,
						       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							   G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:messages-per-second:
	 *
	 * How many messages a client may send per second, on average; 0 disables the rate
	 * limit. A message over the limit is not relayed and gets a `rate_limited` error; a
	 * client refused more than #ChatServer:message-burst times within 10 seconds is closed
	 * with 1008. JSON and WebSocket pings are not counted. A change applies to the connections
	 * already open too (a client already over a lower limit is refused until it is under).
	 *
	 * Since: 1.0
	 */
	props[PROP_MESSAGES_PER_SECOND] = g_param_spec_uint (
	    "messages-per-second",
	    NULL,
	    "Messages one client may send per second, on average",
	    0,
	    1000000,
	    100,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:message-burst:
	 *
	 * How many messages a client may send at once above #ChatServer:messages-per-second
	 * (the size of its token bucket); 0 disables the rate limit. A change applies to the
	 * connections already open too.
	 *
	 * Since: 1.0
	 */
	props[PROP_MESSAGE_BURST] = g_param_spec_uint ("message-burst",
						       NULL,
						       "Messages one client may send at once",
						       0,
						       1000000,
						       200,
						       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							   G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:max-rooms:
	 *
	 * How many rooms one connection may be in at once; joining one more is refused with
	 * `limit_exceeded` (%CHAT_ERROR_LIMIT_EXCEEDED from chat_hub_join_room()). 0 means no
	 * limit. A change applies to the connections already open too (a connection already
	 * in more rooms stays in them, and cannot join more).
	 *
	 * Since: 1.0
	 */
	props[PROP_MAX_ROOMS] = g_param_spec_uint ("max-rooms",
						   NULL,
						   "The most rooms one connection may be in",
						   0,
						   G_MAXUINT,
						   1000,
						   G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
						       G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:web-root:
	 *
	 * A directory of files to serve over plain HTTP beside the WebSocket endpoint, such as
	 * chathub's browser chat page; %NULL (the default) serves none. chat_server_listen() reads
	 * every file directly in it whose name is plain (letters, digits, `.`, `-`, `_`) and
	 * ends in `.html`, `.css`, `.js`, `.json`, `.svg`, `.png`, `.ico` or `.txt`, at most 64
	 * of at most 4 MiB each, and fails if it cannot or if there is no `index.html`. Later
	 * changes to the directory are not seen: a request can only name a file read then, so no
	 * path from the network reaches the file system.
	 *
	 * `GET` or `HEAD` of `/` (`index.html`) or of `/NAME` is answered 200 with the file, its
	 * `Content-Type`, `Cache-Control: no-cache`, `X-Content-Type-Options: nosniff`,
	 * `Referrer-Policy: no-referrer` and a `Content-Security-Policy` that allows scripts,
	 * styles and images only from the server itself (no inline script) and connections only
	 * to it; other methods get 405. Every other path but #ChatServer:path still gets 404.
	 *
	 * Since: 1.0
	 */
	props[PROP_WEB_ROOT] = g_param_spec_string ("web-root",
						    NULL,
						    "A directory of files to serve over HTTP",
						    NULL,
						    G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
							G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:reuse-port:
	 *
	 * Whether chat_server_listen() sets `SO_REUSEPORT` on the listening socket, so that
	 * several processes (each with a server of its own, all with this set) can listen on
	 * the same address and port, the kernel spreading new connections over them. Only
	 * for servers whose hubs share one #ChatRedisStore (the nodes of one hub): hubs that do
	 * not share a store would split the users between them. Read by
	 * chat_server_listen(); %FALSE by default, when a second server on the same port fails
	 * to listen.
	 *
	 * Since: 1.0
	 */
	props[PROP_REUSE_PORT] = g_param_spec_boolean ("reuse-port",
						       NULL,
						       "Whether to set SO_REUSEPORT on the socket",
						       FALSE,
						       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							   G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:metrics:
	 *
	 * Whether `GET /metrics` (and `HEAD`) on the server's own address and port answers with
	 * the server's, the hub's and the store's counters in the Prometheus text format
	 * (version 0.0.4), without a token and without counting toward
	 * #ChatServer:upgrades-per-second; %FALSE (the default) answers 404 there. Anyone who can
	 * reach the port can read the counters: restrict the path in a reverse proxy, or serve
	 * them on a private address with chat_server_listen_metrics() instead (then this
	 * listener answers 404 whatever this says). The metrics are listed in
	 * `docs/deployment.md`.
	 *
	 * Since: 1.0
	 */
	props[PROP_METRICS] = g_param_spec_boolean ("metrics",
						    NULL,
						    "Whether to serve /metrics",
						    FALSE,
						    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
							G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:allowed-origins:
	 *
	 * The web origins (`https://chat.example.org`: scheme, host and port, no path; compared
	 * without regard to case) whose pages may open WebSocket connections; `*` in the list
	 * allows every origin. A browser upgrade request (one with an `Origin` header) from an
	 * origin not allowed gets 403 `forbidden_origin`, before its token is checked or the
	 * address's upgrade rate counted; requests without `Origin` (programs, not browsers) are
	 * not concerned. %NULL or an empty list (the default) allows the server's own origin
	 * only: the `Origin`'s host and port must be the request's `Host`, so a page served from
	 * #ChatServer:web-root can connect, and so can a reverse proxy that passes `Host` on.
	 *
	 * Since: 1.0
	 */
	props[PROP_ALLOWED_ORIGINS] = g_param_spec_boxed (
	    "allowed-origins",
	    NULL,
	    "The origins whose pages may connect; NULL: the server's own",
	    G_TYPE_STRV,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:trusted-proxies:
	 *
	 * The reverse proxies (IPv4 or IPv6 addresses, or networks such as `10.0.0.0/8` or
	 * `fd00::/8`) whose `X-Forwarded-For` header is believed. When the TCP peer of a request
	 * is one of them, the client is the rightmost address of that header that is not itself
	 * a trusted proxy: that address is logged, limited by #ChatServer:upgrades-per-second
	 * and given to the #ChatClient as its remote address. From any other peer the header is
	 * ignored, since anyone can send it. Entries that are neither an address nor a network
	 * are left out with a warning. %NULL (the default) trusts no one.
	 *
	 * Since: 1.0
	 */
	props[PROP_TRUSTED_PROXIES] = g_param_spec_boxed (
	    "trusted-proxies",
	    NULL,
	    "The proxies whose X-Forwarded-For is believed",
	    G_TYPE_STRV,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	/**
	 * ChatServer:tls-certificate:
	 *
	 * The #GTlsCertificate, with its #GTlsCertificate:private-key, that the server presents
	 * to its clients: when set, every connection accepted from then on speaks TLS (`wss://`
	 * for the WebSocket, `https://` for `/healthz`, `/readyz`, `/metrics` and the page),
	 * and a plain connection to the port is closed. Load it with
	 * g_tls_certificate_new_from_files(); the certificate file may hold the chain. Set it
	 * before chat_server_listen(). glib-networking provides the TLS backend (GnuTLS); the
	 * handshake runs on GLib's worker threads, everything after it on the server's
	 * thread. %NULL (the default): plain TCP.
	 *
	 * Since: 1.0
	 */
	props[PROP_TLS_CERTIFICATE] = g_param_spec_object (
	    "tls-certificate",
	    NULL,
	    "The certificate and key to serve TLS with, or NULL",
	    G_TYPE_TLS_CERTIFICATE,
	    G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
chat_server_init (ChatServer *self)
{
	self->handshake_timeout = 10;
	self->max_message_size = 64 * 1024;
	self->outbox_size = 1024 * 1024;
	self->ping_interval = 54;
	self->idle_timeout = 60;
	self->max_connections_per_user = 32;
	self->upgrades_per_second = 20;
	self->upgrade_burst = 100;
	/* the key is the record's first member */
	self->user_connections = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
	self->rate_buckets =
	    g_hash_table_new_full (rate_bucket_hash, rate_bucket_equal, g_free, NULL);
	self->messages_per_second = 100;
	self->message_burst = 200;
	self->max_rooms = 1000;
	self->refusal_log_budget = REFUSAL_LOG_LINES_PER_SECOND;
	chat_histogram_init (&self->loop_lag, lag_bounds, G_N_ELEMENTS (lag_bounds));
}

/**
 * chat_server_new:
 * @hub: the hub to register clients with
 * @verifier: the token verifier
 *
 * Creates a server. Call chat_server_listen() to start accepting connections; the server runs
 * on the thread-default main context it was created in.
 *
 * Returns: (transfer full): a new #ChatServer
 *
 * Since: 1.0
 */
ChatServer *
chat_server_new (ChatHub *hub, ChatTokenVerifier *verifier)
{
	g_return_val_if_fail (CHAT_IS_HUB (hub), NULL);
	g_return_val_if_fail (CHAT_IS_TOKEN_VERIFIER (verifier), NULL);

	return g_object_new (CHAT_TYPE_SERVER, "hub", hub, "verifier", verifier, NULL);
}

/**
 * chat_server_listen:
 * @self: a #ChatServer
 * @address: (nullable): an IPv4 or IPv6 address to listen on; %NULL for 127.0.0.1
 * @port: the TCP port; 0 picks a free one (see chat_server_get_port())
 * @error: return location for a #GError
 *
 * Starts listening. The socket is chathub's own, with a deep accept backlog, so connection
 * storms are not refused.
 *
 * A server needs its #ChatServer:hub and #ChatServer:verifier: without either it cannot
 * serve a client, and this fails with %CHAT_ERROR_INVALID_ARGUMENT.
 *
 * Returns: %TRUE on success; %FALSE with %CHAT_ERROR_INVALID_ARGUMENT if @address is not an
 *   IP address or the hub or the verifier is missing, or a %G_IO_ERROR if the socket cannot
 *   listen
 *
 * Since: 1.0
 */
gboolean
chat_server_listen (ChatServer *self, const char *address, guint16 port, GError **error)
{
	g_autoptr (GInetAddress) inet = NULL;
	g_autoptr (GSocketAddress) socket_address = NULL;

	g_return_val_if_fail (CHAT_IS_SERVER (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
	g_return_val_if_fail (!chat_listener_is_listening (self->listener), FALSE);

	/* construct-only properties that GObject cannot require: refuse here rather than
	 * crash on the first client */
	if (self->hub == NULL || self->verifier == NULL) {
		/* TRANSLATORS: %s is a property name, "hub" or "verifier" */
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("The server has no %s; set it when creating the server"),
			     self->hub == NULL ? "hub" : "verifier");
		return FALSE;
	}
	/* read now, once: a page that cannot be served is a failure to start, not a 404 later */
	if (self->web_root != NULL && self->web_files == NULL) {
		self->web_files = chat_web_root_load (self->web_root, error);
		if (self->web_files == NULL) {
			g_prefix_error (error, _ ("Cannot serve the web page: "));
			return FALSE;
		}
	}
	if (address == NULL)
		address = "127.0.0.1";
	inet = g_inet_address_new_from_string (address);
	if (inet == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("“%s” is not an IP address"),
			     address);
		return FALSE;
	}
	socket_address = g_inet_socket_address_new (inet, port);
	if (!chat_listener_listen (self->listener, socket_address, self->reuse_port, error)) {
		g_prefix_error (error, _ ("Cannot listen on %s port %u: "), address, port);
		return FALSE;
	}
	g_clear_pointer (&self->ws_uri, g_uri_unref);
	/* the connections' URI, and where clients connect */
	self->ws_uri = g_uri_build (G_URI_FLAGS_NONE,
				    self->tls_certificate != NULL ? "wss" : "ws",
				    NULL,
				    address,
				    chat_listener_get_port (self->listener),
				    self->path,
				    NULL,
				    NULL);
	if (self->rate_sweep == NULL)
		self->rate_sweep = add_timeout (self, 1000, on_rate_sweep, "chathub rate sweep");
	restart_heartbeat (self);
	return TRUE;
}

/**
 * chat_server_stop_listening:
 * @self: a #ChatServer
 *
 * Stops listening, on the metrics listener too (chat_server_listen_metrics()). Connected
 * clients stay connected; close them with chat_hub_close_all().
 * chat_server_listen() may be called again afterwards.
 *
 * Since: 1.0
 */
void
chat_server_stop_listening (ChatServer *self)
{
	g_return_if_fail (CHAT_IS_SERVER (self));

	if (self->listener != NULL)
		chat_listener_stop (self->listener);
	if (self->metrics_listener != NULL)
		chat_listener_stop (self->metrics_listener);
	if (self->soup != NULL)
		soup_server_disconnect (self->soup);
	if (self->metrics_soup != NULL)
		soup_server_disconnect (self->metrics_soup);
}

/* A connection to the metrics listener whose request head has arrived: plain HTTP, also
 * when the WebSocket's port speaks TLS (the listener is private, see [metrics] address). */
static void
serve_metrics_connection (GIOStream *connection,
			  GSocketAddress *local,
			  GSocketAddress *remote,
			  gpointer user_data)
{
	ChatServer *self = CHAT_SERVER (user_data);
	g_autoptr (GError) error = NULL;

	if (!soup_server_accept_iostream (self->metrics_soup, connection, local, remote, &error)) {
		g_debug ("cannot serve a metrics connection: %s", error->message);
		g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
	}
}

static guint
count_no_connections (gpointer user_data)
{
	return 0;
}

/**
 * chat_server_listen_metrics:
 * @self: a #ChatServer
 * @address: (nullable): an IPv4 or IPv6 address to listen on; %NULL for 127.0.0.1
 * @port: the TCP port; 0 picks a free one (see chat_server_get_metrics_port())
 * @error: return location for a #GError
 *
 * Serves `/metrics` (the Prometheus text format, as with #ChatServer:metrics) on a listener
 * of its own, so that the figures can stay on a loopback or private address while clients
 * connect elsewhere. That listener answers `GET` and `HEAD` of `/metrics` only (other methods
 * 405, other paths 404); from then on the WebSocket listener no longer serves `/metrics`,
 * whatever #ChatServer:metrics says. chat_server_stop_listening() stops it too.
 *
 * Returns: %TRUE on success; %FALSE with %CHAT_ERROR_INVALID_ARGUMENT if @address is not an
 *   IP address, or a %G_IO_ERROR if the socket cannot listen
 *
 * Since: 1.0
 */
gboolean
chat_server_listen_metrics (ChatServer *self, const char *address, guint16 port, GError **error)
{
	g_autoptr (GInetAddress) inet = NULL;
	g_autoptr (GSocketAddress) socket_address = NULL;

	g_return_val_if_fail (CHAT_IS_SERVER (self), FALSE);
	g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

	if (address == NULL)
		address = "127.0.0.1";
	inet = g_inet_address_new_from_string (address);
	if (inet == NULL) {
		g_set_error (error,
			     CHAT_ERROR,
			     CHAT_ERROR_INVALID_ARGUMENT,
			     _ ("“%s” is not an IP address"),
			     address);
		return FALSE;
	}
	if (self->metrics_listener == NULL) {
		self->metrics_listener = chat_listener_new (self->context,
							    serve_metrics_connection,
							    count_no_connections,
							    self);
		chat_listener_set_handshake_timeout (self->metrics_listener,
						     self->handshake_timeout);
	}
	g_return_val_if_fail (!chat_listener_is_listening (self->metrics_listener), FALSE);
	socket_address = g_inet_socket_address_new (inet, port);
	if (!chat_listener_listen (self->metrics_listener, socket_address, FALSE, error)) {
		g_prefix_error (error,
				_ ("Cannot listen for metrics on %s port %u: "),
				address,
				port);
		return FALSE;
	}
	if (self->metrics_soup == NULL) {
		self->metrics_soup =
		    soup_server_new ("server-header", "chathub/" PACKAGE_VERSION, NULL);
		soup_server_add_handler (self->metrics_soup,
					 NULL,
					 handle_metrics_request,
					 self,
					 NULL);
		g_signal_connect (self->metrics_soup,
				  "request-started",
				  G_CALLBACK (on_request_started),
				  self);
	}
	start_lag_timer (self);
	return TRUE;
}

/**
 * chat_server_get_metrics_port:
 * @self: a #ChatServer
 *
 * Gets the port of the metrics listener (chat_server_listen_metrics()).
 *
 * Returns: the port, or 0 if there is no metrics listener
 *
 * Since: 1.0
 */
guint16
chat_server_get_metrics_port (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), 0);
	return self->metrics_listener != NULL && chat_listener_is_listening (self->metrics_listener)
		   ? chat_listener_get_port (self->metrics_listener)
		   : 0;
}

/**
 * chat_server_get_port:
 * @self: a #ChatServer
 *
 * Gets the port the server listens on.
 *
 * Returns: the port, or 0 if not listening
 *
 * Since: 1.0
 */
guint16
chat_server_get_port (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), 0);
	return self->listener != NULL && chat_listener_is_listening (self->listener)
		   ? (guint16) g_uri_get_port (self->ws_uri)
		   : 0;
}

/**
 * chat_server_get_uri:
 * @self: a #ChatServer
 *
 * Gets the WebSocket URI clients connect to, such as `ws://127.0.0.1:8080/ws`
 * (`wss://` with #ChatServer:tls-certificate).
 *
 * Returns: (transfer full) (nullable): the URI, or %NULL if not listening
 *
 * Since: 1.0
 */
char *
chat_server_get_uri (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), NULL);

	/* g_uri_to_string() puts an IPv6 address in brackets */
	return self->listener != NULL && chat_listener_is_listening (self->listener)
		   ? g_uri_to_string (self->ws_uri)
		   : NULL;
}

/**
 * chat_server_get_hub:
 * @self: a #ChatServer
 *
 * Gets the hub.
 *
 * Returns: (transfer none) (nullable): the hub, or %NULL if the server was created without
 *   one (it cannot listen then)
 *
 * Since: 1.0
 */
ChatHub *
chat_server_get_hub (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), NULL);
	return self->hub;
}

/**
 * chat_server_get_verifier:
 * @self: a #ChatServer
 *
 * Gets the token verifier.
 *
 * Returns: (transfer none) (nullable): the verifier, or %NULL if the server was created
 *   without one (it cannot listen then)
 *
 * Since: 1.0
 */
ChatTokenVerifier *
chat_server_get_verifier (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), NULL);
	return self->verifier;
}

/**
 * chat_server_get_n_connections:
 * @self: a #ChatServer
 *
 * Gets the number of WebSocket connections of this server, those being upgraded included.
 *
 * Returns: the number of connections
 *
 * Since: 1.0
 */
guint
chat_server_get_n_connections (ChatServer *self)
{
	g_return_val_if_fail (CHAT_IS_SERVER (self), 0);
	return self->n_connections;
}

/**
 * chat_server_get_statistics:
 * @self: a #ChatServer
 *
 * Gets counters since the server was created, as a dictionary (`a{sv}`) with the keys
 * `connections-accepted`, `refused-bad-request`, `refused-token`, `refused-busy`,
 * `refused-rate` (over #ChatServer:upgrades-per-second), `refused-user-limit` (over
 * #ChatServer:max-connections-per-user), `refused-header-too-large` (431),
 * `refused-forbidden-origin` (403, see #ChatServer:allowed-origins) (t),
 * `connections` (u), `messages-relayed`, `bytes-sent`, `slow-consumer-closes`,
 * `idle-closes` (t) and `uptime` (t, seconds).
 *
 * Returns: (transfer floating): the statistics
 *
 * Since: 1.0
 */
GVariant *
chat_server_get_statistics (ChatServer *self)
{
	GVariantBuilder builder;
	guint64 bytes_sent;
	guint64 slow_consumer_closes;
	guint64 refused_token = 0;

	g_return_val_if_fail (CHAT_IS_SERVER (self), NULL);

	for (Refusal r = REFUSED_TOKEN_MISSING; r <= REFUSED_TOKEN_REJECTED; r++)
		refused_token += self->refused[r];

	/* the clients already gone, and those still here (a slow consumer is closing) */
	bytes_sent = self->bytes_sent_closed;
	slow_consumer_closes = self->slow_consumer_closes;
	if (self->hub != NULL) {
		GPtrArray *clients = chat_hub_get_clients_unowned (self->hub);

		for (guint i = 0; i < clients->len; i++) {
			bytes_sent += chat_client_get_bytes_sent (clients->pdata[i]);
			if (chat_client_is_slow_consumer (clients->pdata[i]))
				slow_consumer_closes++;
		}
	}

	g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&builder,
			       "{sv}",
			       "connections-accepted",
			       g_variant_new_uint64 (self->accepted));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-bad-request",
			       g_variant_new_uint64 (self->refused[REFUSED_BAD_REQUEST]));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-token",
			       g_variant_new_uint64 (refused_token));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-forbidden-origin",
			       g_variant_new_uint64 (self->refused[REFUSED_FORBIDDEN_ORIGIN]));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-busy",
			       g_variant_new_uint64 (self->refused[REFUSED_UNAVAILABLE]));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-rate",
			       g_variant_new_uint64 (self->refused[REFUSED_TOO_MANY_REQUESTS]));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "refused-user-limit",
			       g_variant_new_uint64 (self->refused[REFUSED_TOO_MANY_CONNECTIONS]));
	g_variant_builder_add (
	    &builder,
	    "{sv}",
	    "refused-header-too-large",
	    g_variant_new_uint64 (chat_listener_get_refused_head_too_large (self->listener)));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "connections",
			       g_variant_new_uint32 (self->n_connections));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "messages-relayed",
			       g_variant_new_uint64 (self->hub != NULL
							 ? chat_hub_get_messages_relayed (self->hub)
							 : 0));
	g_variant_builder_add (&builder, "{sv}", "bytes-sent", g_variant_new_uint64 (bytes_sent));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "slow-consumer-closes",
			       g_variant_new_uint64 (slow_consumer_closes));
	g_variant_builder_add (&builder,
			       "{sv}",
			       "idle-closes",
			       g_variant_new_uint64 (self->idle_closes));
	g_variant_builder_add (
	    &builder,
	    "{sv}",
	    "uptime",
	    g_variant_new_uint64 ((g_get_monotonic_time () - self->started) / G_USEC_PER_SEC));
	return g_variant_builder_end (&builder);
}
