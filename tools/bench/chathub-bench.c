/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench: a load generator for chathub and for any server that speaks its protocol
 * (docs/protocol.md), in the spirit of redis-benchmark.
 *
 *   chathub-bench idle   --secret-file S -n 5000 --rate 2500 --duration 5 --pid PID
 *   chathub-bench fanout --secret-file S -n 1000 --rooms 1 --publishers 1 --rates 500,1000,2000
 *   chathub-bench storm  --secret-file S -n 1000 --rate 0 --hold 15000 --join
 *   chathub-bench recover --secret-file S -n 1000 --messages 100
 *
 * It uses plain non-blocking sockets and epoll, never libsoup, so that it is not the bottleneck
 * it measures. The method follows the Go load generator the peers were measured with
 * (../shared/bench/loadgen): every connection has its own HS256 token, joins its room and waits
 * for its own join echo; publishers send on a fixed schedule and skip ahead rather than burst
 * when more than 100 ms behind; latency is the receive time minus the send time carried in
 * data.t; after sending it drains until everything arrived, deliveries stall, or a drain limit.
 *
 * The parts: this file (the command line and the run's deadline), bench-scenarios.c (the
 * modes, on the orchestrator thread), bench-loop.c (the event loop threads and the
 * orchestrator's side of them), bench-conn.c (one connection: handshake, frames, receiving,
 * publishing), bench-token.c (HS256 tokens), bench-report.c (/proc readings, table and JSON),
 * bench-hist.c (the latency histogram), bench-util.c (messages, base64).
 *
 * Loopback only: the host must be in 127.0.0.0/8 or ::1. Every run is bounded by a wall-clock
 * deadline (the phases' budgets, capped by --timeout) and a SIGALRM backstop.
 */

#include "config.h"

#include <glib.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "chc-key.h"

#include "bench-loop.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "bench-token.h"
#include "bench.h"

/* ---- options ------------------------------------------------------------------------------- */

BenchOptions opt = {
    .port = 8080,
    .uid_base = 1,
    .n = 1000,
    .rate = -1,
    .ramp = 2000,
    .duration = 5,
    .size = 64,
    .rooms = 1,
    .publishers = 1,
    .hold_rate = 2000,
    .inflight = -1,
    .connect_timeout = 10,
    .threads = 1,
    .source_ips = 1,
    .settle = 1,
    .settle_max = 5,
    .drain = 5,
    .stall = 1,
    .pause = 1,
    .join_timeout = 20,
    .quiet_max = 10,
    .timeout = 120,
    .flood_max = 2000000,
    .messages = 100,
};

static GOptionEntry target_entries[] = {
    {"host",
     0,
     0,
     G_OPTION_ARG_STRING,
     &opt.host,
     "Server address, loopback only (default 127.0.0.1)",
     "ADDR"},
    {"port", 'p', 0, G_OPTION_ARG_INT, &opt.port, "Server port (default 8080)", "PORT"},
    {"path", 0, 0, G_OPTION_ARG_STRING, &opt.path, "WebSocket path (default /ws)", "PATH"},
    {"url",
     0,
     0,
     G_OPTION_ARG_STRING,
     &opt.url,
     "ws://HOST:PORT/PATH (wss://: --tls) instead of the three above",
     "URL"},
    {"secret-file",
     's',
     0,
     G_OPTION_ARG_FILENAME,
     &opt.secret_file,
     "HS256 secret to sign tokens with (trailing newline stripped)",
     "FILE"},
    {"uid-base",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.uid_base,
     "user_id of the first connection (default 1)",
     "N"},
    {"token-in-query",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.token_in_query,
     "Send the token as ?access_token= instead of Authorization: Bearer",
     NULL},
    {"tls",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.tls,
     "wss: speak TLS (GnuTLS) to the server; its certificate is not verified",
     NULL},
    {"pid", 0, 0, G_OPTION_ARG_INT, &opt.pid, "Server pid: report its RSS and CPU time", "PID"},
    {NULL}};
static GOptionEntry load_entries[] = {
    {"connections",
     'n',
     0,
     G_OPTION_ARG_INT,
     &opt.n,
     "Connections (default 1000); fanout: receivers, publishers included",
     "N"},
    {"rate",
     'r',
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.rate,
     "idle/storm/recover: connections opened per second (default 2000; storm 0 = all at "
     "once; recover: default 0); fanout: messages per second in total (default 1000)",
     "R"},
    {"rates",
     0,
     0,
     G_OPTION_ARG_STRING,
     &opt.rates,
     "fanout: a sweep of message rates, e.g. 500,1000,2000, one step each on the same "
     "connections",
     "LIST"},
    {"ramp",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.ramp,
     "fanout: connections opened per second (default 2000)",
     "R"},
    {"duration",
     'd',
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.duration,
     "fanout: seconds of publishing per step; idle: seconds to hold (default 5)",
     "S"},
    {"size",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.size,
     "fanout: bytes of content per message (default 64)",
     "BYTES"},
    {"rooms",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.rooms,
     "Rooms the receivers are spread over (default 1; 0 = no rooms, messages to the whole "
     "hub)",
     "R"},
    {"publishers",
     'P',
     0,
     G_OPTION_ARG_INT,
     &opt.publishers,
     "fanout: publishing connections, the first ones; they join every room (default 1)",
     "P"},
    {"join",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.join,
     "idle/storm: join a room after connecting (storm: measure until every join ack "
     "arrived)",
     NULL},
    {"hold",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.hold,
     "storm: idle connections opened before the storm",
     "N"},
    {"hold-rate",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.hold_rate,
     "storm: rate for the --hold connections (default 2000)",
     "R"},
    {"own-room",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.own_room,
     "fanout: each publisher joins and publishes into its own room only (room 1 + i % "
     "--rooms, like a receiver), so a room of ten is one publisher and nine receivers",
     NULL},
    {"messages",
     'm',
     0,
     G_OPTION_ARG_INT,
     &opt.messages,
     "recover: messages sent while the members are away (default 100)",
     "N"},
    {"flooder",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.flooder,
     "fanout: one more connection, in a room of its own, sends messages there as fast as the "
     "server reads them (and reads and discards its echoes); every rate runs twice on the same "
     "connections, without it and then with it flooding during the publishing",
     NULL},
    {NULL}};
static GOptionEntry tune_entries[] = {
    {"inflight",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.inflight,
     "Handshakes in flight at most (default 256; storm and recover: all)",
     "N"},
    {"connect-timeout",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.connect_timeout,
     "Seconds a connection may take until its 101 (default 10)",
     "S"},
    {"threads",
     't',
     0,
     G_OPTION_ARG_INT,
     &opt.threads,
     "Receiving event-loop threads (default 1; fanout adds one for the publishers)",
     "T"},
    {"source-ips",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.source_ips,
     "Spread connections over 127.0.0.1..K as source addresses (default 1)",
     "K"},
    {"settle",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.settle,
     "Seconds without any join echo after which the server is taken not to echo joins "
     "(default 1)",
     "S"},
    {"settle-max",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.settle_max,
     "fanout: at most this long waiting for join echoes (default 5)",
     "S"},
    {"join-timeout",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.join_timeout,
     "storm, recover: at most this long from the start waiting for join acks (recover: and "
     "the missed messages) (default 20)",
     "S"},
    {"quiet-max",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.quiet_max,
     "fanout: after the drain, wait up to this long until deliveries stop for --stall, so "
     "a step does not run into the previous one's backlog (default 10)",
     "S"},
    {"drain",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.drain,
     "fanout: at most this long waiting for deliveries after a step (default 5)",
     "S"},
    {"stall",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.stall,
     "fanout: end the drain when nothing arrived for this long (default 1)",
     "S"},
    {"pause",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.pause,
     "fanout: pause between steps (default 1)",
     "S"},
    {"flood-max",
     0,
     0,
     G_OPTION_ARG_INT,
     &opt.flood_max,
     "fanout --flooder: at most this many flood messages per step (default 2000000)",
     "N"},
    {"timeout",
     0,
     0,
     G_OPTION_ARG_DOUBLE,
     &opt.timeout,
     "Absolute limit of the whole run in seconds (default 120)",
     "S"},
    {"json",
     0,
     0,
     G_OPTION_ARG_NONE,
     &opt.json,
     "One JSON object per step on stdout (the table goes to stderr)",
     NULL},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt.quiet, "No progress messages", NULL},
    {"version", 0, 0, G_OPTION_ARG_NONE, &opt.version, "Print the version and exit", NULL},
    {NULL}};

typedef enum { MODE_IDLE, MODE_FANOUT, MODE_STORM, MODE_RECOVER, MODE_SHUTDOWN } Mode;

static const char summary[] =
    "Load generator for chathub (and servers speaking its protocol), loopback only.\n\n"
    "  idle    open N connections at --rate/s and hold them for --duration; with --pid, "
    "the\n"
    "          server's RSS per connection\n"
    "  fanout  N connections join --rooms rooms and wait for their join echo; --publishers "
    "send\n"
    "          --rate (or each of --rates) messages/s in total for --duration; reports "
    "delivered\n"
    "          ratio, deliveries/s and latency percentiles; --flooder adds one connection\n"
    "          flooding a room of its own and runs every rate without and with it\n"
    "  storm   open N connections at --rate/s (0: all at once), optionally after --hold "
    "idle ones\n"
    "          and with --join; reports the time until all are up (and joined)\n"
    "  recover N members of room 1 join at --rate/s (0: at once), drop without a close frame,\n"
    "          one publisher sends --messages, they rejoin with since and epoch; reports\n"
    "          whether all recovered every missed message once, and the time until the last\n"
    "          one had them against the time the plain joins took\n"
    "  shutdown open N idle connections as idle does, hold them for --duration, send SIGTERM\n"
    "          to --pid and count those that get their 1001 close frame, and the time until\n"
    "          the server exits";

/* resolved target */
struct sockaddr_storage target;
socklen_t target_len;
char host_header[80];
GBytes *secret;
double *rates;
int nrates;

/* ---- main ---------------------------------------------------------------------------------- */

static void
on_alarm (int sig)
{
	static const char msg[] = "chathub-bench: hard deadline passed; exiting\n";

	(void) sig;
	if (write (STDERR_FILENO, msg, sizeof msg - 1) < 0) {
		/* nothing left to do */
	}
	_exit (2);
}

/* Resolves the target and refuses anything that is not loopback. */
static void
resolve_target (void)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *) &target;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *) &target;
	const char *host = opt.host;

	if (opt.url) {
		/* ws://HOST:PORT/PATH, where HOST is an address or localhost */
		const char *p = opt.url, *h, *e, *slash;
		char *hostpart;

		if (g_str_has_prefix (p, "ws://")) {
			p += 5;
		} else if (g_str_has_prefix (p, "wss://")) {
			p += 6;
			opt.tls = TRUE;
		} else if (strstr (p, "://")) {
			die ("--url: only ws:// and wss:// URLs (loopback) are supported");
		}
		slash = strchr (p, '/');
		e = slash ? slash : p + strlen (p);
		hostpart = g_strndup (p, (gsize) (e - p));
		if (hostpart[0] == '[') {
			char *rb = strchr (hostpart, ']');

			if (!rb)
				die ("--url: bad IPv6 host");
			*rb = '\0';
			h = hostpart + 1;
			if (rb[1] == ':')
				opt.port = atoi (rb + 2);
		} else {
			char *colon = strrchr (hostpart, ':');

			if (colon) {
				*colon = '\0';
				opt.port = atoi (colon + 1);
			}
			h = hostpart;
		}
		host = g_strdup (h);
		g_free (hostpart);
		if (slash) {
			g_free (opt.path);
			opt.path = g_strdup (slash);
		}
	}
	if (host == NULL || g_strcmp0 (host, "localhost") == 0)
		host = "127.0.0.1";
	if (opt.port <= 0 || opt.port > 65535)
		die ("bad port %d", opt.port);
	memset (&target, 0, sizeof target);
	if (inet_pton (AF_INET, host, &v4->sin_addr) == 1) {
		if ((ntohl (v4->sin_addr.s_addr) >> 24) != 127)
			die ("refusing %s: only loopback (127.0.0.0/8, ::1) is allowed", host);
		v4->sin_family = AF_INET;
		v4->sin_port = htons ((uint16_t) opt.port);
		target_len = sizeof *v4;
		snprintf (host_header, sizeof host_header, "%s:%d", host, opt.port);
	} else if (inet_pton (AF_INET6, host, &v6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK (&v6->sin6_addr))
			die ("refusing %s: only loopback (127.0.0.0/8, ::1) is allowed", host);
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons ((uint16_t) opt.port);
		target_len = sizeof *v6;
		snprintf (host_header, sizeof host_header, "[%s]:%d", host, opt.port);
	} else {
		die ("refusing host %s: give a loopback address (127.0.0.0/8, ::1) or localhost",
		     host);
	}
	if (opt.path == NULL)
		opt.path = g_strdup ("/ws");
	if (opt.path[0] != '/')
		die ("--path must start with /");
}

/* The secret as chathubd reads it (src/common/chc-key.c): one final line end is not part of it. */
static void
read_secret (void)
{
	g_autoptr (GError) error = NULL;

	if (opt.secret_file == NULL)
		die ("--secret-file is required (the server's HS256 secret; a trailing newline is "
		     "ignored)");
	secret = chc_key_read_secret_file (opt.secret_file, &error);
	if (secret == NULL)
		die ("%s", error->message);
}

static void
parse_rates (void)
{
	char **parts;

	if (opt.rates == NULL) {
		rates = g_new (double, 1);
		rates[0] = opt.rate > 0 ? opt.rate : 1000;
		nrates = 1;
		return;
	}
	parts = g_strsplit (opt.rates, ",", -1);
	rates = g_new0 (double, g_strv_length (parts) + 1);
	for (char **p = parts; *p; p++) {
		char *end;
		double v = g_ascii_strtod (g_strstrip (*p), &end);

		if (**p == '\0')
			continue;
		if (*end != '\0' || !(v > 0))
			die ("--rates: “%s” is not a positive number", *p);
		rates[nrates++] = v;
	}
	g_strfreev (parts);
	if (nrates == 0)
		die ("--rates is empty");
}

static void
raise_nofile (uint64_t need)
{
	struct rlimit rl;

	if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit (RLIMIT_NOFILE, &rl);
	}
	if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    need + 32 > rl.rlim_cur)
		die ("%" PRIu64 " connections need more file descriptors than the limit of %lu "
		     "(raise the hard limit, e.g. ulimit -Hn)",
		     need,
		     (unsigned long) rl.rlim_cur);
}

/* Parses the command line into opt; returns the mode (exits on errors and after --version). */
static Mode
parse_command_line (int argc, char **argv)
{
	GOptionContext *ctx = g_option_context_new ("idle|fanout|storm|recover|shutdown");
	GOptionGroup *group;
	GError *error = NULL;

	g_option_context_set_summary (ctx, summary);
	g_option_context_add_main_entries (ctx, target_entries, NULL);
	group = g_option_group_new ("load", "Load options:", "Show load options", NULL, NULL);
	g_option_group_add_entries (group, load_entries);
	g_option_context_add_group (ctx, group);
	group = g_option_group_new ("tuning",
				    "Tuning and output options:",
				    "Show tuning and output options",
				    NULL,
				    NULL);
	g_option_group_add_entries (group, tune_entries);
	g_option_context_add_group (ctx, group);
	if (!g_option_context_parse (ctx, &argc, &argv, &error))
		die ("%s (see --help-all)", error->message);
	g_option_context_free (ctx);
	if (opt.version) {
		printf ("chathub-bench %s\n", PACKAGE_VERSION);
		exit (0);
	}
	if (argc != 2)
		die ("give one mode: idle, fanout, storm, recover or shutdown (see --help-all)");
	if (strcmp (argv[1], "idle") == 0)
		return MODE_IDLE;
	if (strcmp (argv[1], "fanout") == 0)
		return MODE_FANOUT;
	if (strcmp (argv[1], "storm") == 0)
		return MODE_STORM;
	if (strcmp (argv[1], "recover") == 0)
		return MODE_RECOVER;
	if (strcmp (argv[1], "shutdown") == 0)
		return MODE_SHUTDOWN;
	die ("unknown mode “%s”: idle, fanout, storm, recover or shutdown", argv[1]);
}

/* Refuses values out of range and fills in the defaults that depend on the mode. */
static void
check_options (Mode mode)
{
	bool rate_given = false;

	if (opt.n < 1 || opt.n > 1000000)
		die ("--connections must be 1..1000000");
	if (opt.threads < 1 || opt.threads > MAX_LOOPS)
		die ("--threads must be 1..%d", MAX_LOOPS);
	if (opt.rooms < 0 || opt.rooms > 1000000 || opt.size < 0 || opt.size > 16 * 1024 * 1024)
		die ("--rooms or --size out of range");
	if (opt.uid_base < 1 || opt.source_ips < 1 || opt.source_ips > 254 || opt.hold < 0)
		die ("--uid-base, --source-ips or --hold out of range");
	if (opt.duration < 0 || opt.timeout <= 0 || opt.connect_timeout <= 0)
		die ("--duration, --timeout and --connect-timeout must be positive");
	if (mode == MODE_FANOUT) {
		if (opt.publishers < 1 || opt.publishers > opt.n)
			die ("fanout needs 1 <= --publishers <= --connections");
		if (opt.flooder && (opt.rooms < 1 || opt.rooms >= 1000000 || opt.flood_max < 1))
			die ("--flooder needs --rooms 1..999999 (it floods a room of its own) and "
			     "--flood-max >= 1");
		if (opt.own_room && opt.rooms < 1)
			die ("--own-room needs --rooms >= 1");
		parse_rates ();
		if (opt.inflight <= 0)
			opt.inflight = 256;
	} else {
		if (opt.rates)
			die ("--rates is for fanout");
		if (opt.own_room)
			die ("--own-room is for fanout");
		if (opt.flooder)
			die ("--flooder is for fanout");
		rate_given = opt.rate >= 0;
		if (opt.rate < 0)
			opt.rate = 2000;
		if (mode == MODE_IDLE && opt.rate == 0)
			opt.rate = 0; /* all at once, within --inflight */
		if ((mode == MODE_IDLE || mode == MODE_SHUTDOWN) && opt.inflight <= 0)
			opt.inflight = 256;
	}
	if (mode == MODE_SHUTDOWN && opt.pid <= 0)
		die ("shutdown needs --pid: the server it sends SIGTERM to");
	if (mode == MODE_RECOVER) {
		if (opt.messages < 1 || opt.messages > 1000000)
			die ("--messages must be 1..1000000");
		/* one room, one publisher: conns[0]; the members are the next N */
		opt.rooms = 1;
		opt.publishers = 1;
		if (!rate_given)
			opt.rate = 0;
		if (opt.inflight <= 0)
			opt.inflight = opt.n;
	}
}

/* The hard deadline's budget: every phase's own, capped by --timeout. */
static double
run_budget (Mode mode)
{
	double budget;

	switch (mode) {
	case MODE_IDLE:
		budget = connect_budget ((uint32_t) opt.n, opt.rate) +
			 (opt.join ? opt.settle_max : 0) + opt.duration + 15;
		break;
	case MODE_SHUTDOWN:
		/* idle's, and at most 10 s watching the server go */
		budget = connect_budget ((uint32_t) opt.n, opt.rate) +
			 (opt.join ? opt.settle_max : 0) + opt.duration + 25;
		break;
	case MODE_FANOUT:
		budget = connect_budget ((uint32_t) opt.n, opt.ramp) + opt.settle_max + 15 +
			 nrates * (opt.flooder ? 2 : 1) *
			     (opt.duration + opt.drain + opt.quiet_max + opt.pause + 1);
		break;
	case MODE_RECOVER:
		/* join, drop (5 s), publish (30 s), rejoin, the stall after */
		budget = 2 * (connect_budget ((uint32_t) opt.n, opt.rate) + opt.join_timeout) +
			 connect_budget (1, 0) + 35 + opt.stall + 15;
		break;
	default:
		budget =
		    (opt.hold ? connect_budget ((uint32_t) opt.hold, opt.hold_rate) + opt.settle
			      : 0) +
		    connect_budget ((uint32_t) opt.n, opt.rate) +
		    (opt.join ? opt.join_timeout : 0) + 15;
		break;
	}
	if (budget > opt.timeout) {
		note ("the phases may need up to %.0f s; the run stops at --timeout %.0f s",
		      budget,
		      opt.timeout);
		budget = opt.timeout;
	}
	return budget;
}

int
main (int argc, char **argv)
{
	Mode mode = parse_command_line (argc, argv);
	double budget;
	int status;

	check_options (mode);
	resolve_target ();
	read_secret ();
	token_init ();
	raise_nofile ((uint64_t) opt.n + (mode == MODE_STORM ? (uint64_t) opt.hold : 0) +
		      (opt.flooder || mode == MODE_RECOVER ? 1 : 0));
	signal (SIGPIPE, SIG_IGN);
	if (opt.tls)
		bench_tls_init ();
	table_out = opt.json ? stderr : stdout;
	budget = run_budget (mode);
	deadline = mono_ns () + s_to_ns (budget);
	signal (SIGALRM, on_alarm);
	alarm ((unsigned) budget + 16);

	switch (mode) {
	case MODE_IDLE:
		status = run_idle ();
		break;
	case MODE_FANOUT:
		status = run_fanout ();
		break;
	case MODE_RECOVER:
		status = run_recover ();
		break;
	case MODE_SHUTDOWN:
		status = run_shutdown ();
		break;
	default:
		status = run_storm ();
		break;
	}
	stop_loops ();
	if (aborted)
		fprintf (stderr,
			 "chathub-bench: the run hit its deadline (--timeout or the phase budgets) "
			 "and was cut short\n");
	/* 0: measured; 1: nothing to measure (no connection, no publisher); 2: cut short by the
	 * deadline */
	return aborted ? 2 : status;
}
