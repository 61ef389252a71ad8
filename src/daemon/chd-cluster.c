/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "chat-redis-connection-private.h"
#include "chd-cluster.h"
#include "chd-log.h"

/* A node is dropped when not heard from for this many of its own periods. */
#define MISSED_PERIODS 3

/* The nodes of the hub (docs/architecture.md, "Node announcements"): every
 * [cluster] announce-interval seconds this node PUBLISHes what it is and holds (name, host,
 * pid, version, start time, connections, rooms and their ids, messages relayed) on the
 * channel <prefix>:nodes, and keeps what the others publish there. Two Redis connections of
 * its own (hiredis on the main context), apart from the store's, so that announcements
 * neither wait behind nor delay messages. Without [cluster] the hub is this node alone. */

typedef struct {
	char *name;
	char *host;
	char *version;
	gint64 pid;
	gint64 started;	  /* Unix seconds */
	gint64 last_seen; /* Unix seconds of the last announcement */
	gint64 expires;	  /* monotonic µs: dropped after this */
	guint interval;	  /* seconds, its own */
	guint n_clients;
	guint n_rooms;
	guint64 messages_relayed;
	GArray *room_ids; /* guint64 */
} Node;

struct _ChdCluster {
	GObject parent_instance;

	ChatServer *server;
	ChatHub *hub;
	ChdConfig *config; /* unowned; outlives us */
	char *name;
	char *host;
	char *channel;
	gint64 started;
	ChatRedisConnection *commands; /* (nullable): no [cluster] */
	ChatRedisConnection *pubsub;
	GHashTable *others; /* name -> Node*, owned: the other nodes heard from */
	guint announce_id;
	guint sweep_id;
	guint others_clients; /* the sum of the others' connections */
	guint n_rooms;	      /* the union with the others', at the last update */
	gboolean name_clash_warned;
};

G_DEFINE_FINAL_TYPE (ChdCluster, chd_cluster, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
node_free (Node *node)
{
	g_free (node->name);
	g_free (node->host);
	g_free (node->version);
	g_clear_pointer (&node->room_ids, g_array_unref);
	g_free (node);
}

static void
chd_cluster_dispose (GObject *object)
{
	ChdCluster *self = CHD_CLUSTER (object);

	g_clear_handle_id (&self->announce_id, g_source_remove);
	g_clear_handle_id (&self->sweep_id, g_source_remove);
	g_clear_pointer (&self->commands, chat_redis_connection_free);
	g_clear_pointer (&self->pubsub, chat_redis_connection_free);
	g_clear_object (&self->hub);
	g_clear_object (&self->server);
	G_OBJECT_CLASS (chd_cluster_parent_class)->dispose (object);
}

static void
chd_cluster_finalize (GObject *object)
{
	ChdCluster *self = CHD_CLUSTER (object);

	g_hash_table_unref (self->others);
	g_free (self->name);
	g_free (self->host);
	g_free (self->channel);
	G_OBJECT_CLASS (chd_cluster_parent_class)->finalize (object);
}

static void
chd_cluster_class_init (ChdClusterClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->dispose = chd_cluster_dispose;
	object_class->finalize = chd_cluster_finalize;
	/* the node list or the hub-wide counts changed */
	signals[SIGNAL_CHANGED] = g_signal_new ("changed",
						G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST,
						0,
						NULL,
						NULL,
						NULL,
						G_TYPE_NONE,
						0);
}

static void
chd_cluster_init (ChdCluster *self)
{
	self->others =
	    g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) node_free);
	self->host = g_strdup (g_get_host_name ());
	self->started = g_get_real_time () / G_USEC_PER_SEC;
}

/* The hub-wide counts from the others' latest announcements and this node now. */
static void
update_counts (ChdCluster *self)
{
	g_autoptr (GHashTable) rooms = NULL;
	g_autofree guint64 *local = NULL;
	GHashTableIter iter;
	gpointer value;
	gsize n_local = 0;

	self->others_clients = 0;
	if (g_hash_table_size (self->others) == 0) {
		self->n_rooms = 0;
		return;
	}
	/* a room with members on two nodes is one room */
	rooms = g_hash_table_new (g_int64_hash, g_int64_equal);
	local = chat_hub_list_rooms (self->hub, &n_local);
	for (gsize i = 0; i < n_local; i++)
		g_hash_table_add (rooms, &local[i]);
	g_hash_table_iter_init (&iter, self->others);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		Node *node = value;

		self->others_clients += node->n_clients;
		for (guint i = 0; i < node->room_ids->len; i++)
			g_hash_table_add (rooms, &g_array_index (node->room_ids, guint64, i));
	}
	self->n_rooms = g_hash_table_size (rooms);
}

static void
changed (ChdCluster *self)
{
	update_counts (self);
	g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
on_published (redisReply *reply, gpointer user_data)
{
	/* a lost connection is reported by the connection itself; the next period tries again */
	(void) reply;
	(void) user_data;
}

static gboolean
publish (ChdCluster *self, JsonBuilder *builder, ChatRedisReplyFunc func, gpointer user_data)
{
	g_autoptr (JsonNode) root = json_builder_get_root (builder);
	g_autofree char *text = json_to_string (root, FALSE);
	const char *argv[] = {"PUBLISH", self->channel, text};
	size_t lengths[] = {7, strlen (self->channel), strlen (text)};

	return chat_redis_connection_command (self->commands, func, user_data, 3, argv, lengths);
}

static void
add_int (JsonBuilder *builder, const char *name, gint64 value)
{
	json_builder_set_member_name (builder, name);
	json_builder_add_int_value (builder, value);
}

static void
add_string (JsonBuilder *builder, const char *name, const char *value)
{
	json_builder_set_member_name (builder, name);
	json_builder_add_string_value (builder, value);
}

static void
announce (ChdCluster *self)
{
	g_autoptr (JsonBuilder) builder = json_builder_new ();
	g_autofree guint64 *rooms = NULL;
	gsize n_rooms = 0;

	rooms = chat_hub_list_rooms (self->hub, &n_rooms);
	json_builder_begin_object (builder);
	add_string (builder, "node", self->name);
	add_string (builder, "host", self->host);
	add_int (builder, "pid", getpid ());
	add_string (builder, "version", PACKAGE_VERSION);
	add_int (builder, "started", self->started);
	add_int (builder, "interval", self->config->announce_interval);
	add_int (builder, "connections", chat_hub_get_n_clients (self->hub));
	add_int (builder, "messages_relayed", (gint64) chat_hub_get_messages_relayed (self->hub));
	json_builder_set_member_name (builder, "rooms");
	json_builder_begin_array (builder);
	for (gsize i = 0; i < n_rooms; i++)
		json_builder_add_int_value (builder, (gint64) rooms[i]);
	json_builder_end_array (builder);
	json_builder_end_object (builder);
	publish (self, builder, on_published, NULL);
}

static gboolean
on_announce (gpointer user_data)
{
	ChdCluster *self = CHD_CLUSTER (user_data);

	announce (self);
	/* this node's own figures move on, too */
	changed (self);
	return G_SOURCE_CONTINUE;
}

/* Once a second: a node that stopped announcing (killed, cut off from Redis) is dropped. */
static gboolean
on_sweep (gpointer user_data)
{
	ChdCluster *self = CHD_CLUSTER (user_data);
	gint64 now = g_get_monotonic_time ();
	GHashTableIter iter;
	gpointer value;
	gboolean dropped = FALSE;

	g_hash_table_iter_init (&iter, self->others);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		Node *node = value;

		if (node->expires > now)
			continue;
		{
			g_autofree char *text = g_strdup_printf (
			    _ ("Node %s (%s, pid %" PRId64 ") was not heard from for "
			       "%u s; dropped from the node list"),
			    node->name,
			    node->host,
			    node->pid,
			    MISSED_PERIODS * node->interval);

			chd_log_event (G_LOG_LEVEL_MESSAGE, "node-lost", text);
		}
		g_hash_table_iter_remove (&iter);
		dropped = TRUE;
	}
	if (dropped)
		changed (self);
	return G_SOURCE_CONTINUE;
}

static const char *
member_string (JsonObject *object, const char *name)
{
	JsonNode *node = json_object_get_member (object, name);

	return node != NULL && JSON_NODE_HOLDS_VALUE (node) &&
		       json_node_get_value_type (node) == G_TYPE_STRING
		   ? json_node_get_string (node)
		   : NULL;
}

static gint64
member_int (JsonObject *object, const char *name)
{
	JsonNode *node = json_object_get_member (object, name);

	return node != NULL && JSON_NODE_HOLDS_VALUE (node) &&
		       json_node_get_value_type (node) == G_TYPE_INT64
		   ? json_node_get_int (node)
		   : -1;
}

/* Another node's announcement (or its goodbye): what is not understood is ignored, so that
 * nodes of another version may share the hub. */
static void
on_announcement (ChdCluster *self, const char *text, size_t length)
{
	g_autoptr (JsonParser) parser = json_parser_new ();
	JsonObject *object;
	JsonArray *rooms;
	const char *name, *host, *version;
	gint64 pid, interval;
	Node *node;

	if (!json_parser_load_from_data (parser, text, (gssize) length, NULL) ||
	    !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
		return;
	object = json_node_get_object (json_parser_get_root (parser));
	name = member_string (object, "node");
	host = member_string (object, "host");
	pid = member_int (object, "pid");
	if (name == NULL || host == NULL || pid < 0)
		return;
	if (strcmp (name, self->name) == 0) {
		/* our own, through Redis; or another process that took our name */
		if ((pid != getpid () || strcmp (host, self->host) != 0) &&
		    !self->name_clash_warned) {
			g_autofree char *warning = g_strdup_printf (
			    _ ("Another node announces itself as %s (%s, pid %" PRId64
			       "): give every node its own [cluster] node-name"),
			    name,
			    host,
			    pid);

			self->name_clash_warned = TRUE;
			chd_log_event (G_LOG_LEVEL_WARNING, "node-name-clash", warning);
		}
		return;
	}
	if (json_object_has_member (object, "leaving")) {
		node = g_hash_table_lookup (self->others, name);
		/* a late goodbye of an earlier process of that name is not this one's */
		if (node != NULL && node->pid == pid && strcmp (node->host, host) == 0) {
			g_hash_table_remove (self->others, name);
			changed (self);
		}
		return;
	}
	interval = member_int (object, "interval");
	rooms = json_object_has_member (object, "rooms")
		    ? json_object_get_array_member (object, "rooms")
		    : NULL;
	version = member_string (object, "version");
	if (interval <= 0 || interval > 3600 || rooms == NULL)
		return;

	node = g_hash_table_lookup (self->others, name);
	if (node == NULL) {
		g_autofree char *message = NULL;

		node = g_new0 (Node, 1);
		node->name = g_strdup (name);
		node->room_ids = g_array_new (FALSE, FALSE, sizeof (guint64));
		g_hash_table_insert (self->others, node->name, node);
		message = g_strdup_printf (_ ("Node %s (%s, pid %" PRId64 ") joined the node list"),
					   name,
					   host,
					   pid);
		chd_log_event (G_LOG_LEVEL_MESSAGE, "node-found", message);
	}
	g_free (node->host);
	node->host = g_strdup (host);
	g_free (node->version);
	node->version = g_strdup (version != NULL ? version : "");
	node->pid = pid;
	node->interval = (guint) interval;
	node->started = MAX (member_int (object, "started"), 0);
	node->n_clients = (guint) CLAMP (member_int (object, "connections"), 0, G_MAXUINT);
	node->messages_relayed = (guint64) MAX (member_int (object, "messages_relayed"), 0);
	node->last_seen = g_get_real_time () / G_USEC_PER_SEC;
	node->expires = g_get_monotonic_time () + MISSED_PERIODS * interval * G_USEC_PER_SEC;
	g_array_set_size (node->room_ids, 0);
	for (guint i = 0; i < json_array_get_length (rooms); i++) {
		JsonNode *element = json_array_get_element (rooms, i);
		guint64 room;

		if (!JSON_NODE_HOLDS_VALUE (element) ||
		    json_node_get_value_type (element) != G_TYPE_INT64 ||
		    json_node_get_int (element) <= 0)
			continue;
		room = (guint64) json_node_get_int (element);
		g_array_append_val (node->room_ids, room);
	}
	node->n_rooms = node->room_ids->len;
	changed (self);
}

/* What the pub/sub connection receives: ["message", channel, payload], or the confirmation
 * of our SUBSCRIBE. */
static void
on_push (redisReply *reply, gpointer user_data)
{
	ChdCluster *self = CHD_CLUSTER (user_data);

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp (reply->element[0]->str, "message") != 0 ||
	    reply->element[2]->type != REDIS_REPLY_STRING)
		return;
	on_announcement (self, reply->element[2]->str, reply->element[2]->len);
}

static void
on_pubsub_state (ChatRedisConnection *connection,
		 gboolean ready,
		 const GError *error,
		 gpointer user_data)
{
	ChdCluster *self = CHD_CLUSTER (user_data);
	const char *argv[] = {"SUBSCRIBE", self->channel};

	(void) error;
	/* a new connection has no subscription; the others are heard again from the next
	 * announcements on, or are dropped meanwhile */
	if (ready)
		chat_redis_connection_subscribe (connection, 2, argv);
}

static void
on_commands_state (ChatRedisConnection *connection,
		   gboolean ready,
		   const GError *error,
		   gpointer user_data)
{
	(void) error;
	/* at once, rather than a period later: the others learn of a restarted node */
	if (ready)
		announce (CHD_CLUSTER (user_data));
}

/**
 * chd_cluster_new:
 * @server: the server, for nothing but its hub's figures
 * @store: the hub's store; a #ChatRedisStore makes this a node of a hub on Redis
 * @config: the configuration ([cluster]); must outlive the object
 *
 * Returns: (transfer full): the node list of the hub this daemon belongs to
 */
ChdCluster *
chd_cluster_new (ChatServer *server, ChatStore *store, ChdConfig *config)
{
	ChdCluster *self = g_object_new (CHD_TYPE_CLUSTER, NULL);

	self->server = g_object_ref (server);
	g_object_get (server, "hub", &self->hub, NULL);
	self->config = config;
	if (CHAT_IS_REDIS_STORE (store)) {
		self->name = g_strdup (chat_redis_store_get_node_name (CHAT_REDIS_STORE (store)));
		self->channel = g_strdup_printf ("%s:nodes", config->key_prefix);
	} else {
		self->name = g_strdup_printf ("%s-%d", self->host, (int) getpid ());
	}
	return self;
}

/* Connects to Redis and starts announcing (nothing without [cluster]). */
void
chd_cluster_start (ChdCluster *self)
{
	if (self->channel == NULL || self->commands != NULL)
		return;
	self->pubsub = chat_redis_connection_new (self->config->redis_address,
						  self->config->redis_password,
						  "node list",
						  self->config->redis_timeout * 1000,
						  g_main_context_default (),
						  on_pubsub_state,
						  on_push,
						  self);
	self->commands = chat_redis_connection_new (self->config->redis_address,
						    self->config->redis_password,
						    "node announcements",
						    self->config->redis_timeout * 1000,
						    g_main_context_default (),
						    on_commands_state,
						    on_push,
						    self);
	self->announce_id =
	    g_timeout_add_seconds (self->config->announce_interval, on_announce, self);
	self->sweep_id = g_timeout_add_seconds (1, on_sweep, self);
}

typedef struct {
	GSourceFunc func;
	gpointer user_data;
} Leaving;

static void
on_left (redisReply *reply, gpointer user_data)
{
	Leaving *leaving = user_data;

	(void) reply;
	leaving->func (leaving->user_data);
	g_free (leaving);
}

/* Shutting down: the others drop this node at once rather than after three periods. @func
 * is called once Redis took the goodbye (or could not): until then it is not yet sent. */
void
chd_cluster_leave (ChdCluster *self, GSourceFunc func, gpointer user_data)
{
	g_autoptr (JsonBuilder) builder = json_builder_new ();
	Leaving *leaving;

	g_clear_handle_id (&self->announce_id, g_source_remove);
	if (self->commands == NULL) {
		func (user_data);
		return;
	}
	json_builder_begin_object (builder);
	add_string (builder, "node", self->name);
	add_string (builder, "host", self->host);
	add_int (builder, "pid", getpid ());
	json_builder_set_member_name (builder, "leaving");
	json_builder_add_boolean_value (builder, TRUE);
	json_builder_end_object (builder);
	leaving = g_new0 (Leaving, 1);
	leaving->func = func;
	leaving->user_data = user_data;
	if (!publish (self, builder, on_left, leaving)) {
		g_free (leaving);
		func (user_data);
	}
}

/* The nodes heard from, this one included. */
guint
chd_cluster_get_n_nodes (ChdCluster *self)
{
	return 1 + g_hash_table_size (self->others);
}

/* Connections on every node: this node's now, the others' as last announced. */
guint
chd_cluster_get_n_clients (ChdCluster *self)
{
	return chat_hub_get_n_clients (self->hub) + self->others_clients;
}

/* Rooms with a member on any node: as of the last announcement heard or made, or this
 * node's now when it is alone. */
guint
chd_cluster_get_n_rooms (ChdCluster *self)
{
	if (g_hash_table_size (self->others) == 0)
		return chat_hub_get_n_rooms (self->hub);
	return self->n_rooms;
}

static void
add_node (GVariantBuilder *builder,
	  const char *name,
	  const char *host,
	  gint64 pid,
	  const char *version,
	  gint64 started,
	  gint64 last_seen,
	  guint n_clients,
	  guint n_rooms,
	  guint64 messages_relayed,
	  gboolean local)
{
	GVariantBuilder fields;

	g_variant_builder_init (&fields, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&fields, "{sv}", "host", g_variant_new_string (host));
	g_variant_builder_add (&fields, "{sv}", "pid", g_variant_new_uint32 ((guint32) pid));
	g_variant_builder_add (&fields, "{sv}", "version", g_variant_new_string (version));
	g_variant_builder_add (&fields, "{sv}", "started", g_variant_new_int64 (started));
	g_variant_builder_add (&fields, "{sv}", "last-seen", g_variant_new_int64 (last_seen));
	g_variant_builder_add (&fields, "{sv}", "connections", g_variant_new_uint32 (n_clients));
	g_variant_builder_add (&fields, "{sv}", "rooms", g_variant_new_uint32 (n_rooms));
	g_variant_builder_add (&fields,
			       "{sv}",
			       "messages-relayed",
			       g_variant_new_uint64 (messages_relayed));
	g_variant_builder_add (&fields, "{sv}", "local", g_variant_new_boolean (local));
	g_variant_builder_add (builder, "(s@a{sv})", name, g_variant_builder_end (&fields));
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
	return strcmp (((const Node *) *(Node *const *) a)->name,
		       ((const Node *) *(Node *const *) b)->name);
}

/**
 * chd_cluster_list_nodes:
 * @self: a #ChdCluster
 *
 * Returns: (transfer floating): `a(sa{sv})`, this node first, then the others by name
 */
GVariant *
chd_cluster_list_nodes (ChdCluster *self)
{
	g_autoptr (GPtrArray) others = g_ptr_array_new ();
	GVariantBuilder builder;
	GHashTableIter iter;
	gpointer value;

	g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(sa{sv})"));
	add_node (&builder,
		  self->name,
		  self->host,
		  getpid (),
		  PACKAGE_VERSION,
		  self->started,
		  g_get_real_time () / G_USEC_PER_SEC,
		  chat_hub_get_n_clients (self->hub),
		  chat_hub_get_n_rooms (self->hub),
		  chat_hub_get_messages_relayed (self->hub),
		  TRUE);
	g_hash_table_iter_init (&iter, self->others);
	while (g_hash_table_iter_next (&iter, NULL, &value))
		g_ptr_array_add (others, value);
	g_ptr_array_sort (others, compare_names);
	for (guint i = 0; i < others->len; i++) {
		Node *node = others->pdata[i];

		add_node (&builder,
			  node->name,
			  node->host,
			  node->pid,
			  node->version,
			  node->started,
			  node->last_seen,
			  node->n_clients,
			  node->n_rooms,
			  node->messages_relayed,
			  FALSE);
	}
	return g_variant_builder_end (&builder);
}
