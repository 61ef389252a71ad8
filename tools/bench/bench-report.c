/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-report.h"

#include <inttypes.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench-loop.h"

FILE *table_out;

/* ---- /proc readings ------------------------------------------------------------------------ */

long
proc_rss_kib (int pid)
{
	char path[64], *text = NULL, *p;
	long v = -1;

	if (pid <= 0)
		return -1;
	snprintf (path, sizeof path, "/proc/%d/status", pid);
	if (!g_file_get_contents (path, &text, NULL, NULL))
		return -1;
	if ((p = strstr (text, "\nVmRSS:")) != NULL)
		v = strtol (p + 7, NULL, 10);
	g_free (text);
	return v;
}

/* utime + stime of pid in seconds, -1 if unreadable. */
static double
proc_cpu_s (int pid)
{
	char path[64], *text = NULL, *p;
	double v = -1;
	unsigned long ut, st;

	if (pid <= 0)
		return -1;
	snprintf (path, sizeof path, "/proc/%d/stat", pid);
	if (!g_file_get_contents (path, &text, NULL, NULL))
		return -1;
	p = strrchr (text, ')');
	if (p &&
	    sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
		v = (double) (ut + st) / (double) sysconf (_SC_CLK_TCK);
	g_free (text);
	return v;
}

static double
self_cpu_s (void)
{
	struct rusage ru;

	getrusage (RUSAGE_SELF, &ru);
	return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
mach_ticks (MachTicks *m)
{
	char *text = NULL;

	memset (m, 0, sizeof *m);
	m->at = mono_ns ();
	if (!g_file_get_contents ("/proc/stat", &text, NULL, NULL))
		return;
	sscanf (text,
		"cpu %lf %lf %lf %lf %lf %lf %lf %lf",
		&m->t[0],
		&m->t[1],
		&m->t[2],
		&m->t[3],
		&m->t[4],
		&m->t[5],
		&m->t[6],
		&m->t[7]);
	g_free (text);
}

void
cpu_mark (CpuMark *m)
{
	m->srv = proc_cpu_s (opt.pid);
	m->self = self_cpu_s ();
	mach_ticks (&m->mach);
}

CpuUse
cpu_use (const CpuMark *a, const CpuMark *b)
{
	CpuUse u = {0};
	double el = (double) (b->mach.at - a->mach.at) / 1e9, hz = (double) sysconf (_SC_CLK_TCK),
	       d[8], busy;

	if (el <= 0)
		return u;
	for (int i = 0; i < 8; i++)
		d[i] = (b->mach.t[i] - a->mach.t[i]) / hz / el * 100;
	busy = d[0] + d[1] + d[2] + d[5] + d[6];
	u.server_s = a->srv >= 0 && b->srv >= 0 ? b->srv - a->srv : -1;
	u.server = u.server_s >= 0 ? u.server_s / el * 100 : -1;
	u.bench_s = b->self - a->self;
	u.bench = u.bench_s / el * 100;
	u.softirq = d[6];
	u.idle = d[3] + d[4];
	u.other = MAX (0, busy - MAX (u.server, 0) - u.bench);
	return u;
}

/* ---- output -------------------------------------------------------------------------------- */

static void
j_key (GString *s, const char *k)
{
	if (s->len > 1)
		g_string_append_c (s, ',');
	g_string_append_printf (s, "\"%s\":", k);
}

void
j_int (GString *s, const char *k, int64_t v)
{
	j_key (s, k);
	g_string_append_printf (s, "%" PRId64, v);
}

void
j_num (GString *s, const char *k, double v)
{
	j_key (s, k);
	if (isfinite (v))
		g_string_append_printf (s, "%.3f", v);
	else
		g_string_append (s, "null");
}

void
j_null (GString *s, const char *k)
{
	j_key (s, k);
	g_string_append (s, "null");
}

void
j_bool (GString *s, const char *k, bool v)
{
	j_key (s, k);
	g_string_append (s, v ? "true" : "false");
}

void
j_str (GString *s, const char *k, const char *v)
{
	j_key (s, k);
	g_string_append_c (s, '"');
	for (const unsigned char *p = (const unsigned char *) v; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf (s, "\\%c", *p);
		else if (*p < 0x20)
			g_string_append_printf (s, "\\u%04x", *p);
		else
			g_string_append_c (s, (char) *p);
	}
	g_string_append_c (s, '"');
}

void
j_emit (GString *s)
{
	g_string_append (s, "}\n");
	if (opt.json) {
		fputs (s->str, stdout);
		fflush (stdout);
	}
	g_string_free (s, TRUE);
}

GString *
j_begin (const char *step_mode)
{
	GString *s = g_string_new ("{");

	j_str (s, "mode", step_mode);
	return s;
}

const char *
first_error (void)
{
	for (int i = 0; i < nloops; i++)
		if (atomic_load_explicit (&loops[i]->has_first_err, memory_order_acquire))
			return loops[i]->first_err;
	return NULL;
}

const char *
first_error_frame (void)
{
	for (int i = 0; i < nloops; i++)
		if (atomic_load_explicit (&loops[i]->has_errframe, memory_order_acquire))
			return loops[i]->first_errframe;
	return NULL;
}

/* "1008×3 1000×1" for the close frames counted between a and b; "-" if none. */
char *
closes_text (const Snap *a, const Snap *b)
{
	GString *s = g_string_new (NULL);

	for (int i = 0; i <= 16; i++) {
		uint64_t v = diff (a, b, S_CLOSE_FIRST + i);

		if (v == 0)
			continue;
		if (s->len)
			g_string_append_c (s, ' ');
		if (i < 16)
			g_string_append_printf (s, "%d×%" PRIu64, 1000 + i, v);
		else
			g_string_append_printf (s, "other×%" PRIu64, v);
	}
	if (s->len == 0)
		g_string_append_c (s, '-');
	return g_string_free (s, FALSE);
}

void
j_closes (GString *s, const Snap *a, const Snap *b)
{
	j_key (s, "closes");
	g_string_append_c (s, '{');
	for (int i = 0, first = 1; i <= 16; i++) {
		uint64_t v = diff (a, b, S_CLOSE_FIRST + i);

		if (v == 0)
			continue;
		if (i < 16)
			g_string_append_printf (s,
						"%s\"%d\":%" PRIu64,
						first ? "" : ",",
						1000 + i,
						v);
		else
			g_string_append_printf (s, "%s\"other\":%" PRIu64, first ? "" : ",", v);
		first = 0;
	}
	g_string_append_c (s, '}');
}

uint64_t
dial_errors (const Snap *a, const Snap *b)
{
	uint64_t v = 0;

	for (int k = S_FAIL_REFUSED; k <= S_FAIL_OTHER; k++)
		v += diff (a, b, k);
	return v;
}

void
j_failures (GString *s, const Snap *a, const Snap *b)
{
	j_int (s, "failed", (int64_t) dial_errors (a, b));
	j_int (s, "refused", (int64_t) diff (a, b, S_FAIL_REFUSED));
	j_int (s, "reset", (int64_t) diff (a, b, S_FAIL_RESET));
	j_int (s, "eof", (int64_t) diff (a, b, S_FAIL_EOF));
	j_int (s, "timeout", (int64_t) diff (a, b, S_FAIL_TIMEOUT));
	j_int (s, "http_401", (int64_t) diff (a, b, S_FAIL_HTTP_401));
	j_int (s, "http_503", (int64_t) diff (a, b, S_FAIL_HTTP_503));
	j_int (s, "http_other", (int64_t) diff (a, b, S_FAIL_HTTP));
	j_int (s, "other_failures", (int64_t) diff (a, b, S_FAIL_OTHER));
}

char *
failures_text (const Snap *a, const Snap *b)
{
	static const struct {
		int k;
		const char *name;
	} kinds[] = {
	    {S_FAIL_REFUSED, "refused"},
	    {S_FAIL_RESET, "reset"},
	    {S_FAIL_EOF, "eof"},
	    {S_FAIL_TIMEOUT, "timeout"},
	    {S_FAIL_HTTP_401, "401"},
	    {S_FAIL_HTTP_503, "503"},
	    {S_FAIL_HTTP, "http"},
	    {S_FAIL_OTHER, "other"},
	};
	GString *s = g_string_new (NULL);

	bool first = true;

	g_string_append_printf (s, "%" PRIu64, dial_errors (a, b));
	for (size_t i = 0; i < G_N_ELEMENTS (kinds); i++) {
		uint64_t v = diff (a, b, kinds[i].k);

		if (v) {
			g_string_append_printf (s,
						"%s%s×%" PRIu64,
						first ? " (" : ", ",
						kinds[i].name,
						v);
			first = false;
		}
	}
	if (!first)
		g_string_append_c (s, ')');
	return g_string_free (s, FALSE);
}

void
j_common (GString *s)
{
	char url[200];

	snprintf (url, sizeof url, "%s://%s%s", opt.tls ? "wss" : "ws", host_header, opt.path);
	j_str (s, "url", url);
	if (opt.pid > 0)
		j_int (s, "server_pid", opt.pid);
	j_bool (s, "aborted", aborted);
}

void
j_cpu (GString *s, const CpuUse *u)
{
	if (opt.pid > 0) {
		j_num (s, "server_cpu_s", u->server_s);
		j_num (s, "server_cpu_pct", u->server);
	}
	j_num (s, "bench_cpu_s", u->bench_s);
	j_num (s, "bench_cpu_pct", u->bench);
	j_num (s, "machine_softirq_pct", u->softirq);
	j_num (s, "machine_idle_pct", u->idle);
	j_num (s, "machine_other_pct", u->other);
}

Hist *
merged_hist (size_t offset)
{
	Hist *h = g_new0 (Hist, 1);

	for (int i = 0; i < nloops; i++)
		hist_merge (h, (const Hist *) ((const char *) loops[i] + offset));
	return h;
}

/* printf-ready text for v with prec decimals, "-" when v is not a number (a ring of buffers) */
const char *
num (double v, int prec)
{
	static char ring[16][32];
	static unsigned next;
	char *b = ring[next++ % G_N_ELEMENTS (ring)];

	if (!isfinite (v))
		return "-";
	snprintf (b, sizeof ring[0], "%.*f", prec, v);
	return b;
}

double
ms (double us)
{
	return us / 1000.0;
}
