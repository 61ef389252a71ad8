/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <chathub.h>

G_BEGIN_DECLS

/* [store] backend */
typedef enum {
	CHD_STORE_BACKEND_SQLITE,
	CHD_STORE_BACKEND_MEMORY,
} ChdStoreBackend;

/* [cluster] backend: none (no [cluster] group, one process is the hub) or redis */
typedef enum {
	CHD_CLUSTER_BACKEND_NONE,
	CHD_CLUSTER_BACKEND_REDIS,
} ChdClusterBackend;

/* One key tokens may be signed with: [auth]'s, which has no id, or a [key:ID] group's. */
typedef struct {
	char *id; /* (nullable) */
	ChatTokenAlgorithm algorithm;
	GBytes *material; /* HMAC secret or PEM public key */
	char *origin;	  /* where it came from, for errors: "[key:ID] public-key-file" */
} ChdKey;

/* The daemon's settings: chathub.conf(5) and the command line, which overrides it;
 * CHATHUB_JWT_SECRET supplies the secret only when the file names no key at all. */
typedef struct {
	char *file;			    /* (nullable): the file loaded, read again on reload */
	gboolean address_from_command_line; /* --address: a reload leaves it alone */
	gboolean port_from_command_line;    /* --port: likewise */
	char *address;
	guint port;
	char *path;
	guint max_connections;
	gboolean web;		      /* serve the browser chat page at "/" */
	gboolean reuse_port;	      /* SO_REUSEPORT: only with cluster_backend REDIS */
	ChatTokenAlgorithm algorithm; /* [auth]'s, the default of every [key:ID] */
	GBytes *key;	 /* (nullable): [auth]'s key, NULL if only [key:ID] give keys */
	GPtrArray *keys; /* ChdKey*: [auth]'s first, then [key:ID] in file order */
	GTlsCertificate *tls_certificate; /* (nullable): tls-certificate with tls-key */
	char *issuer;
	char *audience;
	guint leeway;
	guint max_message_size;
	guint outbox_size;
	guint ping_interval;
	guint idle_timeout;
	guint handshake_timeout;
	guint max_connections_per_user;
	guint upgrades_per_second;
	guint upgrade_burst;
	guint messages_per_second; /* 0 = no rate limit */
	guint message_burst;	   /* 0 = no rate limit */
	guint max_rooms;	   /* per connection; 0 = no limit */
	/* [dbus] */
	GBusType bus_type; /* G_BUS_TYPE_NONE: not on a bus; only the command line sets it */
	char *admin_group; /* (nullable): may Broadcast and Disconnect on the system bus */
	gboolean message_signals;
	guint exit_on_idle; /* seconds; 0 = never */
	/* [store] */
	ChdStoreBackend store_backend;
	char *store_path; /* absolute; the default depends on the environment (see load) */
	ChatStoreSync store_sync;
	guint history_size;
	guint history_ttl; /* seconds; 0 = no time limit */
	guint dm_ttl;	   /* seconds; 0 = no time limit */
	/* [cluster]: several chathubd processes as one hub; with it, [store] is not used */
	ChdClusterBackend cluster_backend;
	char *redis_address;	 /* host:port or an absolute unix socket path */
	char *redis_password;	 /* (nullable): read from redis-password-file */
	char *node_name;	 /* (nullable): default host name and process id */
	char *key_prefix;	 /* default "chathub" */
	guint redis_timeout;	 /* seconds: the bound on anything that waits for Redis */
	guint presence_ttl;	 /* seconds: a node's presence entries outlive it this long */
	guint announce_interval; /* seconds between node announcements; default 5 */
	/* [metrics] */
	gboolean metrics;      /* serve /metrics */
	char *metrics_address; /* (nullable): on a listener of its own, at this address ... */
	guint metrics_port;    /* ... and port; 0: on the WebSocket's listener */
	/* [server] origins and proxies */
	char **allowed_origins; /* (nullable): NULL is same-origin */
	char **trusted_proxies; /* (nullable) */
} ChdConfig;

ChdConfig *
chd_config_new (void);
void
chd_config_free (ChdConfig *config);
gboolean
chd_config_load (ChdConfig *config, const char *path, GError **error);
gboolean
chd_config_load_data (ChdConfig *config,
		      const char *name,
		      const char *data,
		      gsize length,
		      GError **error);
GPtrArray *
chd_config_restart_changes (const ChdConfig *running, const ChdConfig *loaded);
void
chd_config_take_reloadable (ChdConfig *running, ChdConfig *loaded);

char *
chd_config_default_store_path (void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ChdConfig, chd_config_free)

G_END_DECLS
