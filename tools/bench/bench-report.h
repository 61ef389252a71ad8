/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's readings and output: server and machine CPU and RSS from /proc, the markdown
 * table (on table_out) and one JSON object per step (on stdout with --json).
 */

#pragma once

#include <glib.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench-hist.h"
#include "bench-loop.h"

/* The machine's aggregate CPU ticks: user nice system idle iowait irq softirq steal. */
typedef struct {
	double t[8];
	int64_t at;
} MachTicks;

/* CPU use over a window, each in % of one core. */
typedef struct {
	double server, bench, softirq, idle, other, server_s, bench_s;
} CpuUse;

/* A reading at one end of such a window. */
typedef struct {
	double srv, self;
	MachTicks mach;
} CpuMark;

extern FILE *table_out; /* stdout, or stderr with --json */

long
proc_rss_kib (int pid);
void
cpu_mark (CpuMark *m);
CpuUse
cpu_use (const CpuMark *a, const CpuMark *b);
void
j_int (GString *s, const char *k, int64_t v);
void
j_num (GString *s, const char *k, double v);
void
j_null (GString *s, const char *k);
void
j_bool (GString *s, const char *k, bool v);
void
j_str (GString *s, const char *k, const char *v);
void
j_emit (GString *s);
GString *
j_begin (const char *step_mode);
const char *
first_error (void);
const char *
first_error_frame (void);
char *
closes_text (const Snap *a, const Snap *b);
void
j_closes (GString *s, const Snap *a, const Snap *b);
uint64_t
dial_errors (const Snap *a, const Snap *b);
void
j_failures (GString *s, const Snap *a, const Snap *b);
char *
failures_text (const Snap *a, const Snap *b);
void
j_common (GString *s);
void
j_cpu (GString *s, const CpuUse *u);
Hist *
merged_hist (size_t offset);
const char *
num (double v, int prec);
double
ms (double us);
