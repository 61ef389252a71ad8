/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <glib-unix.h>
#include <glib/gi18n.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "chc-bus.h"
#include "chd-cluster.h"
#include "chd-daemon.h"
#include "chd-dbus.h"
#include "chd-log.h"

/* How long shutdown waits for clients to answer their 1001. SIGTERM promises an exit within
 * 5 s whatever the clients do: the connections still open then are left to the kernel to
 * close at exit (see chd_daemon_run()), well within the second that remains. */
#define SHUTDOWN_DEADLINE_MS 4000

/* --verbose: how often the store's figures are logged, when they changed */
#define STORE_STATISTICS_INTERVAL_S 60

struct _ChdDaemon {
	GObject parent_instance;

	ChdConfig *config; /* unowned; outlives the daemon */
	ChatStore *store;
	ChatHub *hub;
	ChatTokenVerifier *verifier;
	ChatServer *server;
	ChdCluster *cluster;
	ChdDbus *dbus; /* (nullable): not on a bus */
	GMainLoop *loop;
	guint sigterm_id;
	guint sigint_id;
	guint sighup_id;
	guint shutdown_timeout_id;
	guint idle_id;
	guint statistics_id;
	GVariant *statistics_logged; /* (nullable): the figures last logged */
	gulong n_clients_id;
	gulong client_registered_id;
	gboolean stopping;
	gboolean leaving;      /* the node list's goodbye is on its way to Redis */
	gboolean clients_left; /* the shutdown deadline passed with clients still open */
	int exit_status;
};

G_DEFINE_FINAL_TYPE (ChdDaemon, chd_daemon, G_TYPE_OBJECT)

static void
chd_daemon_dispose (GObject *object)
{
	ChdDaemon *self = CHD_DAEMON (object);

	g_clear_handle_id (&self->shutdown_timeout_id, g_source_remove);
	g_clear_handle_id (&self->idle_id, g_source_remove);
	g_clear_handle_id (&self->statistics_id, g_source_remove);
	g_clear_pointer (&self->statistics_logged, g_variant_unref);
	g_clear_signal_handler (&self->n_clients_id, self->hub);
	g_clear_signal_handler (&self->client_registered_id, self->hub);
	g_clear_object (&self->dbus);
	g_clear_object (&self->cluster);
	g_clear_object (&self->server);
	g_clear_object (&self->hub);
	/* after the hub, which hands it what is still to be written */
	g_clear_object (&self->store);
	g_clear_object (&self->verifier);
	/* only now, and the signals blocked first: closing the store takes a moment (the last
	 * commit, a checkpoint), and a second SIGTERM then or later would otherwise kill the
	 * process with the default action, and its exit status with it. GLib's own threads
	 * block every signal, so they stay pending until the exit. */
	if (self->sigterm_id != 0) {
		sigset_t signals;

		sigemptyset (&signals);
		sigaddset (&signals, SIGTERM);
		sigaddset (&signals, SIGINT);
		sigaddset (&signals, SIGHUP);
		pthread_sigmask (SIG_BLOCK, &signals, NULL);
	}
	g_clear_handle_id (&self->sigterm_id, g_source_remove);
	g_clear_handle_id (&self->sigint_id, g_source_remove);
	g_clear_handle_id (&self->sighup_id, g_source_remove);
	g_clear_pointer (&self->loop, g_main_loop_unref);
	G_OBJECT_CLASS (chd_daemon_parent_class)->dispose (object);
}

static void
chd_daemon_class_init (ChdDaemonClass *klass)
{
	G_OBJECT_CLASS (klass)->dispose = chd_daemon_dispose;
}

static void
chd_daemon_init (ChdDaemon *self)
{
	self->loop = g_main_loop_new (NULL, FALSE);
}

static void
on_client_registered (ChatHub *hub, ChatClient *client, ChdDaemon *self)
{
	g_debug ("client %s registered (user %" G_GUINT64_FORMAT ", %s)",
		 chat_client_get_id (client),
		 chat_client_get_user_id (client),
		 chat_client_get_remote_address (client));
}

/* For a reader of the logs (--verbose): the store's figures, when they changed since the
 * last time, or always when @final. At message level, so that they go where the other
 * messages go (debug output goes to stdout); the figures keep GetStatistics' names. */
static void
log_store_statistics (ChdDaemon *self, gboolean final)
{
	g_autoptr (GVariant) statistics = chat_store_get_statistics (self->store);
	g_autoptr (GString) figures = g_string_new (NULL);
	g_autofree char *text = NULL;
	GVariantIter iter;
	const char *key;
	guint64 value;

	if (!final && self->statistics_logged != NULL &&
	    g_variant_equal (statistics, self->statistics_logged))
		return;
	g_variant_iter_init (&iter, statistics);
	while (g_variant_iter_next (&iter, "{&st}", &key, &value))
		g_string_append_printf (figures,
					"%sstore-%s=%" G_GUINT64_FORMAT,
					figures->len > 0 ? " " : "",
					key,
					value);
	text = final ? g_strdup_printf (_ ("Message store, final figures: %s"), figures->str)
		     : g_strdup_printf (_ ("Message store: %s"), figures->str);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "store-statistics", text);
	g_clear_pointer (&self->statistics_logged, g_variant_unref);
	self->statistics_logged = g_steal_pointer (&statistics);
}

static gboolean
on_statistics_timeout (gpointer user_data)
{
	log_store_statistics (CHD_DAEMON (user_data), FALSE);
	return G_SOURCE_CONTINUE;
}

static void
maybe_quit (ChdDaemon *self)
{
	if (self->stopping && !self->leaving && chat_hub_get_n_clients (self->hub) == 0)
		g_main_loop_quit (self->loop);
}

static void
stop (ChdDaemon *self, int exit_status);

static gboolean
on_cluster_left (gpointer user_data)
{
	ChdDaemon *self = CHD_DAEMON (user_data);

	self->leaving = FALSE;
	if (self->hub != NULL)
		maybe_quit (self);
	return G_SOURCE_REMOVE;
}

static gboolean
on_idle (gpointer user_data)
{
	ChdDaemon *self = CHD_DAEMON (user_data);
	g_autofree char *text = NULL;

	self->idle_id = 0;
	text = g_strdup_printf (_ ("No client and no D-Bus call for %u seconds; exiting"),
				self->config->exit_on_idle);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "idle-exit", text);
	stop (self, 0);
	return G_SOURCE_REMOVE;
}

/* [dbus] exit-on-idle: the countdown runs while no client is connected and starts again
 * with every D-Bus call. */
static void
restart_idle_countdown (ChdDaemon *self)
{
	g_clear_handle_id (&self->idle_id, g_source_remove);
	if (self->config->exit_on_idle == 0 || self->stopping ||
	    chat_hub_get_n_clients (self->hub) > 0)
		return;
	self->idle_id = g_timeout_add_seconds (self->config->exit_on_idle, on_idle, self);
}

static void
on_n_clients (GObject *hub, GParamSpec *pspec, ChdDaemon *self)
{
	restart_idle_countdown (self);
	maybe_quit (self);
}

static void
on_dbus_activity (ChdDbus *dbus, ChdDaemon *self)
{
	restart_idle_countdown (self);
}

static gboolean
on_shutdown_timeout (gpointer user_data)
{
	ChdDaemon *self = CHD_DAEMON (user_data);

	self->shutdown_timeout_id = 0;
	self->clients_left = chat_hub_get_n_clients (self->hub) > 0;
	g_message (ngettext ("%u client did not close in time; exiting anyway",
			     "%u clients did not close in time; exiting anyway",
			     chat_hub_get_n_clients (self->hub)),
		   chat_hub_get_n_clients (self->hub));
	g_main_loop_quit (self->loop);
	return G_SOURCE_REMOVE;
}

/* The one way out: stop listening, leave the bus, close every client with 1001 and quit
 * once they are gone (or the timeout says enough). */
static void
stop (ChdDaemon *self, int exit_status)
{
	g_autofree char *text = NULL;
	guint n;

	if (self->stopping)
		return;
	self->stopping = TRUE;
	self->exit_status = exit_status;
	g_clear_handle_id (&self->idle_id, g_source_remove);
	/* a new instance may be activated at once; it finds the port free, too */
	if (self->dbus != NULL)
		chd_dbus_stop (self->dbus);
	chat_server_stop_listening (self->server);
	self->leaving = TRUE;
	chd_cluster_leave (self->cluster, on_cluster_left, self);
	/* armed before closing, which takes a while with many clients; not
	 * g_timeout_add_seconds(), which may fire up to a second late; ahead of any I/O */
	self->shutdown_timeout_id = g_timeout_add_full (G_PRIORITY_HIGH,
							SHUTDOWN_DEADLINE_MS,
							on_shutdown_timeout,
							self,
							NULL);
	n = chat_hub_close_all (self->hub, CHAT_CLOSE_CODE_GOING_AWAY, "server shutting down");
	text = g_strdup_printf (
	    ngettext ("Shutting down; closing %u client", "Shutting down; closing %u clients", n),
	    n);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "shutdown", text);
	maybe_quit (self);
}

static gboolean
on_signal (gpointer user_data)
{
	stop (CHD_DAEMON (user_data), 0);
	return G_SOURCE_CONTINUE;
}

static void
on_name_lost (ChdDbus *dbus, gboolean was_owned, ChdDaemon *self)
{
	g_autofree char *text = NULL;

	if (self->stopping)
		return;
	if (!was_owned) {
		/* like any other failure to start: one line, status 1 */
		g_printerr (_ ("chathubd: cannot own the name %s on %s: another instance owns it, "
			       "or the bus does not allow it\n"),
			    CHC_BUS_NAME,
			    chc_bus_describe (self->config->bus_type));
		stop (self, 1);
		return;
	}
	text = g_strdup_printf (_ ("Lost the name %s on %s; shutting down"),
				CHC_BUS_NAME,
				chc_bus_describe (self->config->bus_type));
	chd_log_event (G_LOG_LEVEL_MESSAGE, "dbus-name-lost", text);
	stop (self, 0);
}

/* The [store] the configuration names, with its retention. A database that cannot be
 * used is an error: never replaced, never traded for a memory store behind the admin's back. */
static ChatStore *
open_store (ChdConfig *config, GError **error)
{
	g_autoptr (ChatStore) store = NULL;

	if (config->cluster_backend == CHD_CLUSTER_BACKEND_REDIS) {
		/* connects in the background: until Redis answers, senders get unavailable */
		store = g_object_new (CHAT_TYPE_REDIS_STORE,
				      "address",
				      config->redis_address,
				      "password",
				      config->redis_password,
				      "key-prefix",
				      config->key_prefix,
				      "node-name",
				      config->node_name,
				      "timeout",
				      config->redis_timeout * 1000,
				      "presence-ttl",
				      config->presence_ttl,
				      NULL);
	} else if (config->store_backend == CHD_STORE_BACKEND_MEMORY) {
		store = CHAT_STORE (chat_memory_store_new ());
	} else {
		g_autofree char *directory = g_path_get_dirname (config->store_path);

		/* messages are private: a directory of our own is only for us */
		if (g_mkdir_with_parents (directory, 0700) != 0) {
			int saved_errno = errno;

			g_set_error (
			    error,
			    G_IO_ERROR,
			    g_io_error_from_errno (saved_errno),
			    _ ("Cannot create the directory “%s” for the message store: %s"),
			    directory,
			    g_strerror (saved_errno));
			return NULL;
		}
		store = CHAT_STORE (
		    chat_sqlite_store_new (config->store_path, config->store_sync, error));
		if (store == NULL)
			return NULL;
	}
	g_object_set (store,
		      "history-size",
		      config->history_size,
		      "history-ttl",
		      (guint64) config->history_ttl,
		      "dm-ttl",
		      (guint64) config->dm_ttl,
		      NULL);
	return g_steal_pointer (&store);
}

/* The directory of the browser chat page, or NULL to serve none: [server] web=false, or its
 * files are missing (the WebSocket endpoint is the service; the page is not worth failing it). */
static char *
find_web_root (ChdConfig *config)
{
	const char *directory = g_getenv ("CHATHUB_WEBDIR");
	g_autofree char *index = NULL;

	if (!config->web)
		return NULL;
	/* a build tree's data/web (tools/run, the tests, "meson devenv"), else the installed page
	 */
	if (directory == NULL || *directory == '\0')
		directory = WEBDIR;
	index = g_build_filename (directory, "index.html", NULL);
	if (!g_file_test (index, G_FILE_TEST_IS_REGULAR)) {
		g_autofree char *text = g_strdup_printf (
		    _ ("Not serving the web page: %s is missing (set [server] web=false to "
		       "silence this)"),
		    index);

		chd_log_event (G_LOG_LEVEL_WARNING, "web-missing", text);
		return NULL;
	}
	return g_strdup (directory);
}

/* A verifier holding the keys of @config; an error names the key at fault, like every
 * other configuration error. */
static ChatTokenVerifier *
build_verifier (ChdConfig *config, GError **error)
{
	g_autoptr (ChatTokenVerifier) verifier =
	    g_object_new (CHAT_TYPE_TOKEN_VERIFIER, "algorithm", config->algorithm, NULL);

	for (guint i = 0; i < config->keys->len; i++) {
		ChdKey *key = config->keys->pdata[i];

		if (!chat_token_verifier_add_key (verifier,
						  key->id,
						  key->algorithm,
						  key->material,
						  error)) {
			g_prefix_error (error, "%s%s: ", _ ("bad configuration: "), key->origin);
			return NULL;
		}
	}
	chat_token_verifier_set_issuer (verifier, config->issuer);
	chat_token_verifier_set_audience (verifier, config->audience);
	chat_token_verifier_set_leeway (verifier, config->leeway);
	return g_steal_pointer (&verifier);
}

/* For the log: the keys by id, the one without id by where it came from. */
static char *
describe_keys (ChdConfig *config)
{
	g_autoptr (GString) text = g_string_new (NULL);

	for (guint i = 0; i < config->keys->len; i++) {
		ChdKey *key = config->keys->pdata[i];

		g_string_append_printf (text,
					"%s%s (%s)",
					i > 0 ? ", " : "",
					key->id != NULL ? key->id : key->origin,
					chat_token_algorithm_to_string (key->algorithm));
	}
	return g_string_free (g_steal_pointer (&text), FALSE);
}

/* The [limits] (and max-connections, the origins and proxies) of @config onto the server:
 * ChatServer applies the per-connection ones to connections accepted from now on. */
static void
apply_limits (ChdDaemon *self, ChdConfig *config)
{
	g_object_set (self->server,
		      "max-connections",
		      config->max_connections,
		      "max-message-size",
		      config->max_message_size,
		      "outbox-size",
		      config->outbox_size,
		      "ping-interval",
		      config->ping_interval,
		      "idle-timeout",
		      config->idle_timeout,
		      "handshake-timeout",
		      config->handshake_timeout,
		      "max-connections-per-user",
		      config->max_connections_per_user,
		      "upgrades-per-second",
		      config->upgrades_per_second,
		      "upgrade-burst",
		      config->upgrade_burst,
		      "messages-per-second",
		      config->messages_per_second,
		      "message-burst",
		      config->message_burst,
		      "max-rooms",
		      config->max_rooms,
		      "allowed-origins",
		      config->allowed_origins,
		      "trusted-proxies",
		      config->trusted_proxies,
		      NULL);
}

static void
log_reload_failure (ChdDaemon *self, GError *error)
{
	g_autofree char *text =
	    g_strdup_printf (_ ("Reload failed; the running configuration stays: %s"),
			     error->message);

	chd_log_event (G_LOG_LEVEL_WARNING, "reload-failed", text);
}

/**
 * chd_daemon_reload:
 * @self: a #ChdDaemon
 * @error: return location for a #GError
 *
 * Reads the configuration file again (SIGHUP, or Reload() over D-Bus) and applies the token
 * keys, [auth]'s issuer, audience and leeway, and [limits]. Connections stay open. Settings
 * that take a restart are logged and ignored. A file that cannot be used changes nothing.
 *
 * Returns: the number of token keys now valid, or 0 with @error set
 */
guint
chd_daemon_reload (ChdDaemon *self, GError **error)
{
	g_autoptr (ChdConfig) loaded = chd_config_new ();
	g_autoptr (ChatTokenVerifier) staging = NULL;
	g_autoptr (GPtrArray) ignored = NULL;
	g_autofree char *keys = NULL;
	g_autofree char *text = NULL;
	g_autoptr (GError) local = NULL;
	const char *file;

	g_return_val_if_fail (CHD_IS_DAEMON (self), 0);
	g_return_val_if_fail (error == NULL || *error == NULL, 0);

	file = self->config->file != NULL ? self->config->file : _ ("(no file)");
	if (self->stopping) {
		g_set_error_literal (&local,
				     CHAT_ERROR,
				     CHAT_ERROR_FAILED,
				     _ ("Not reloading: the service is shutting down"));
	} else {
		loaded->bus_type = self->config->bus_type;
		/* everything is checked before anything changes */
		if (!chd_config_load (loaded, self->config->file, &local))
			g_prefix_error (&local, "%s", _ ("bad configuration: "));
		else
			staging = build_verifier (loaded, &local);
	}
	if (local != NULL) {
		log_reload_failure (self, local);
		g_propagate_error (error, g_steal_pointer (&local));
		return 0;
	}

	ignored = chd_config_restart_changes (self->config, loaded);
	chd_config_take_reloadable (self->config, loaded);
	/* the main loop runs this and every token check: a check sees the old keys or the new */
	chat_token_verifier_replace_keys (self->verifier, staging);
	chat_token_verifier_set_issuer (self->verifier, self->config->issuer);
	chat_token_verifier_set_audience (self->verifier, self->config->audience);
	chat_token_verifier_set_leeway (self->verifier, self->config->leeway);
	apply_limits (self, self->config);
	/* a renewed certificate: connections accepted from now on present it */
	if (self->config->tls_certificate != NULL)
		g_object_set (self->server, "tls-certificate", self->config->tls_certificate, NULL);

	keys = describe_keys (self->config);
	text =
	    g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
					  "Configuration reloaded from %s: %u token key valid: %s",
					  "Configuration reloaded from %s: %u token keys valid: %s",
					  self->config->keys->len),
			     file,
			     self->config->keys->len,
			     keys);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "reloaded", text);
	if (ignored->len > 0) {
		g_autofree char *names = NULL;

		g_ptr_array_add (ignored, NULL);
		names = g_strjoinv (", ", (char **) ignored->pdata);
		g_free (text);
		text = g_strdup_printf (_ ("Changed settings that need a restart, ignored until "
					   "then: %s"),
					names);
		chd_log_event (G_LOG_LEVEL_WARNING, "reload-needs-restart", text);
	}
	return self->config->keys->len;
}

static guint
reload_for_dbus (gpointer user_data, GError **error)
{
	return chd_daemon_reload (CHD_DAEMON (user_data), error);
}

static gboolean
on_sighup (gpointer user_data)
{
	g_autoptr (GError) error = NULL;

	/* a failure is logged, and the running configuration stays */
	chd_daemon_reload (CHD_DAEMON (user_data), &error);
	return G_SOURCE_CONTINUE;
}

ChdDaemon *
chd_daemon_new (ChdConfig *config, GError **error)
{
	g_autofree char *web_root = NULL;
	g_autoptr (ChdDaemon) self = g_object_new (CHD_TYPE_DAEMON, NULL);

	self->config = config;
	self->verifier = build_verifier (config, error);
	if (self->verifier == NULL)
		return NULL;

	/* before listening: a store that cannot be opened is a failure to start */
	self->store = open_store (config, error);
	if (self->store == NULL)
		return NULL;
	self->hub = g_object_new (CHAT_TYPE_HUB, "store", self->store, NULL);
	web_root = find_web_root (config);
	self->server = g_object_new (CHAT_TYPE_SERVER,
				     "hub",
				     self->hub,
				     "verifier",
				     self->verifier,
				     "path",
				     config->path,
				     "max-connections",
				     config->max_connections,
				     "max-message-size",
				     config->max_message_size,
				     "outbox-size",
				     config->outbox_size,
				     "ping-interval",
				     config->ping_interval,
				     "idle-timeout",
				     config->idle_timeout,
				     "handshake-timeout",
				     config->handshake_timeout,
				     "max-connections-per-user",
				     config->max_connections_per_user,
				     "upgrades-per-second",
				     config->upgrades_per_second,
				     "upgrade-burst",
				     config->upgrade_burst,
				     "messages-per-second",
				     config->messages_per_second,
				     "message-burst",
				     config->message_burst,
				     "max-rooms",
				     config->max_rooms,
				     "web-root",
				     web_root,
				     "reuse-port",
				     config->reuse_port,
				     /* with a listener of its own, there only */
				     "metrics",
				     config->metrics && config->metrics_port == 0,
				     "allowed-origins",
				     config->allowed_origins,
				     "trusted-proxies",
				     config->trusted_proxies,
				     "tls-certificate",
				     config->tls_certificate,
				     NULL);
	self->cluster = chd_cluster_new (self->server, self->store, config);
	self->client_registered_id = g_signal_connect (self->hub,
						       "client-registered",
						       G_CALLBACK (on_client_registered),
						       self);
	self->n_clients_id =
	    g_signal_connect (self->hub, "notify::n-clients", G_CALLBACK (on_n_clients), self);
	return g_steal_pointer (&self);
}

gboolean
chd_daemon_start (ChdDaemon *self, GError **error)
{
	g_autofree char *uri = NULL;
	g_autofree char *text = NULL;

	if (!chat_server_listen (self->server, self->config->address, self->config->port, error))
		return FALSE;
	if (self->config->metrics_port != 0) {
		if (!chat_server_listen_metrics (self->server,
						 self->config->metrics_address,
						 self->config->metrics_port,
						 error)) {
			chat_server_stop_listening (self->server);
			return FALSE;
		}
		text = g_strdup_printf (_ ("Metrics on http://%s:%u/metrics"),
					self->config->metrics_address != NULL
					    ? self->config->metrics_address
					    : "127.0.0.1",
					chat_server_get_metrics_port (self->server));
		chd_log_event (G_LOG_LEVEL_MESSAGE, "metrics-listening", text);
		g_clear_pointer (&text, g_free);
	}
	self->sigterm_id = g_unix_signal_add (SIGTERM, on_signal, self);
	self->sigint_id = g_unix_signal_add (SIGINT, on_signal, self);
	self->sighup_id = g_unix_signal_add (SIGHUP, on_sighup, self);
	uri = chat_server_get_uri (self->server);
	text = g_strdup_printf (_ ("chathubd %s listening on %s (tokens: %s)"),
				PACKAGE_VERSION,
				uri,
				chat_token_algorithm_to_string (self->config->algorithm));
	chd_log_event (G_LOG_LEVEL_MESSAGE, "listening", text);
	g_clear_pointer (&text, g_free);
	if (CHAT_IS_REDIS_STORE (self->store))
		text = g_strdup_printf (
		    _ ("Node %s of the hub on Redis at %s (keys %s:*)"),
		    chat_redis_store_get_node_name (CHAT_REDIS_STORE (self->store)),
		    chat_redis_store_get_address (CHAT_REDIS_STORE (self->store)),
		    chat_redis_store_get_key_prefix (CHAT_REDIS_STORE (self->store)));
	else if (self->config->store_backend == CHD_STORE_BACKEND_MEMORY)
		text = g_strdup (_ ("Messages are kept in memory only: a restart loses them"));
	else
		text = g_strdup_printf (
		    _ ("Messages are stored in %s (sync=%s)"),
		    self->config->store_path,
		    self->config->store_sync == CHAT_STORE_SYNC_FULL ? "full" : "normal");
	chd_log_event (G_LOG_LEVEL_MESSAGE, "store-opened", text);
	chd_cluster_start (self->cluster);
	if (g_log_get_debug_enabled ())
		self->statistics_id = g_timeout_add_seconds (STORE_STATISTICS_INTERVAL_S,
							     on_statistics_timeout,
							     self);

	/* only now: owning the name is how the bus and systemd learn that we are ready */
	if (self->config->bus_type != G_BUS_TYPE_NONE) {
		self->dbus = chd_dbus_new (self->server, self->store, self->cluster, self->config);
		g_signal_connect (self->dbus, "activity", G_CALLBACK (on_dbus_activity), self);
		g_signal_connect (self->dbus, "name-lost", G_CALLBACK (on_name_lost), self);
		chd_dbus_set_reload_func (self->dbus, reload_for_dbus, self);
		if (!chd_dbus_start (self->dbus, error)) {
			chat_server_stop_listening (self->server);
			return FALSE;
		}
	}
	restart_idle_countdown (self);
	return TRUE;
}

int
chd_daemon_run (ChdDaemon *self)
{
	g_main_loop_run (self->loop);
	/* let the last D-Bus signals out before the connection goes */
	g_clear_object (&self->dbus);
	g_clear_handle_id (&self->statistics_id, g_source_remove);
	if (g_log_get_debug_enabled ())
		log_store_statistics (self, TRUE);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "stopped", _ ("chathubd stopped"));
	/* disposing of the connections one by one costs tens of µs each, which could take the
	 * exit past the 5 s SIGTERM promises; the kernel closes them all at once */
	if (self->clients_left)
		exit (self->exit_status);
	return self->exit_status;
}
