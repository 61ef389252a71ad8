/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gi18n.h>
#include <locale.h>
#include <stdio.h>
#include <sys/resource.h>

#include "chd-config.h"
#include "chd-daemon.h"

/* The command line; it overrides chathub.conf(5). */
static char *opt_config;
static char *opt_address;
static int opt_port = G_MININT; /* not given */
static gboolean opt_verbose;
static gboolean opt_version;
static gboolean opt_session;
static gboolean opt_system;
static gboolean opt_no_dbus;

static const GOptionEntry main_entries[] = {
    {"config",
     'c',
     0,
     G_OPTION_ARG_FILENAME,
     &opt_config,
     N_ ("Read the configuration from FILE"),
     N_ ("FILE")},
    {"address",
     'a',
     0,
     G_OPTION_ARG_STRING,
     &opt_address,
     N_ ("Listen on this IP address"),
     N_ ("ADDRESS")},
    {"port",
     'p',
     0,
     G_OPTION_ARG_INT,
     &opt_port,
     N_ ("Listen on this TCP port (0 picks a free one)"),
     N_ ("PORT")},
    {"session",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt_session,
     N_ ("Offer the D-Bus interface on the session bus"),
     NULL},
    {"system",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt_system,
     N_ ("Offer the D-Bus interface on the system bus"),
     NULL},
    {"no-dbus", 0, 0, G_OPTION_ARG_NONE, &opt_no_dbus, N_ ("Stay off D-Bus (the default)"), NULL},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, N_ ("Log debug messages"), NULL},
    {"version", 0, 0, G_OPTION_ARG_NONE, &opt_version, N_ ("Print the version and exit"), NULL},
    {NULL}};

/* Every connection is a file descriptor: take all the kernel allows us. */
static void
raise_fd_limit (void)
{
	struct rlimit limit;

	if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		if (setrlimit (RLIMIT_NOFILE, &limit) != 0)
			g_debug ("could not raise the open-file limit");
	}
}

/* A bus-activated service gets no --config: look where a user or the system keeps it. */
static char *
find_default_config (GBusType bus_type)
{
	g_autofree char *user_path = NULL;
	g_autofree char *system_path =
	    g_build_filename (SYSCONFDIR, "chathub", "chathub.conf", NULL);

	if (bus_type == G_BUS_TYPE_SESSION) {
		user_path =
		    g_build_filename (g_get_user_config_dir (), "chathub", "chathub.conf", NULL);
		if (g_file_test (user_path, G_FILE_TEST_EXISTS))
			return g_steal_pointer (&user_path);
	}
	if (bus_type != G_BUS_TYPE_NONE && g_file_test (system_path, G_FILE_TEST_EXISTS))
		return g_steal_pointer (&system_path);
	return NULL;
}

/* libsoup logs two debug lines for every frame it reads, and GLib formats each one before
 * its writer finds that nobody asked for it: 6 % of the daemon's time when publishers keep
 * it busy, and written out (--verbose) 40 %, most of it glibc's check of /etc/localtime for
 * each line's time stamp. Unless G_MESSAGES_DEBUG names libsoup (or all), they stop at this
 * handler, which GLib calls before its default writer; --verbose is for chathub's own. */
static void
drop_message (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
}

static gboolean
libsoup_debug_wanted (void)
{
	const char *domains = g_getenv ("G_MESSAGES_DEBUG");
	g_auto (GStrv) names = NULL;

	if (domains == NULL)
		return FALSE;
	names = g_strsplit_set (domains, " ,", -1);
	return g_strv_contains ((const char *const *) names, "all") ||
	       g_strv_contains ((const char *const *) names, "libsoup");
}

int
main (int argc, char **argv)
{
	g_autoptr (GOptionContext) context = NULL;
	g_autoptr (GError) error = NULL;
	g_autoptr (ChdConfig) config = NULL;
	g_autoptr (ChdDaemon) daemon = NULL;
	g_autofree char *config_path = NULL;

	setlocale (LC_ALL, "");
	bindtextdomain (GETTEXT_PACKAGE,
			g_getenv ("CHATHUB_LOCALEDIR") != NULL ? g_getenv ("CHATHUB_LOCALEDIR")
							       : LOCALEDIR);
	bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
	textdomain (GETTEXT_PACKAGE);
	g_set_prgname ("chathubd");

	context = g_option_context_new (NULL);
	g_option_context_set_summary (context,
				      _ ("Real-time chat hub: a WebSocket service with "
					 "JWT authentication, rooms and direct messages."));
	g_option_context_add_main_entries (context, main_entries, GETTEXT_PACKAGE);
	g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
	if (!g_option_context_parse (context, &argc, &argv, &error)) {
		g_printerr (_ ("chathubd: %s\n"), error->message);
		return 2;
	}
	if (opt_version) {
		g_print ("chathubd %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (opt_verbose)
		g_log_set_debug_enabled (TRUE);
	if (!libsoup_debug_wanted ())
		g_log_set_handler ("libsoup", G_LOG_LEVEL_DEBUG, drop_message, NULL);
	if (opt_session + opt_system + opt_no_dbus > 1) {
		g_printerr (_ ("chathubd: give only one of --session, --system and --no-dbus\n"));
		return 2;
	}
	if (opt_port != G_MININT && (opt_port < 0 || opt_port > 65535)) {
		g_printerr (_ ("chathubd: --port: %d is not a TCP port\n"), opt_port);
		return 2;
	}

	config = chd_config_new ();
	config->bus_type = opt_session	? G_BUS_TYPE_SESSION
			   : opt_system ? G_BUS_TYPE_SYSTEM
					: G_BUS_TYPE_NONE;
	config_path =
	    opt_config != NULL ? g_strdup (opt_config) : find_default_config (config->bus_type);
	if (!chd_config_load (config, config_path, &error)) {
		g_printerr (_ ("chathubd: bad configuration: %s\n"), error->message);
		return 1;
	}
	if (opt_address != NULL) {
		g_free (config->address);
		config->address = g_strdup (opt_address);
		config->address_from_command_line = TRUE;
	}
	if (opt_port != G_MININT) {
		config->port = (guint) opt_port;
		config->port_from_command_line = TRUE;
	}

	raise_fd_limit ();
	daemon = chd_daemon_new (config, &error);
	if (daemon == NULL) {
		/* the key ("bad configuration: …") or the message store, whose error names its
		 * file: one line, status 1 */
		g_printerr (_ ("chathubd: %s\n"), error->message);
		return 1;
	}
	if (!chd_daemon_start (daemon, &error)) {
		g_printerr (_ ("chathubd: %s\n"), error->message);
		return 1;
	}
	return chd_daemon_run (daemon);
}
