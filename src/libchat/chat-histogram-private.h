/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <string.h>

#include <glib.h>

G_BEGIN_DECLS

/* The most finite bucket bounds a histogram may have. */
#define CHAT_HISTOGRAM_MAX_BOUNDS 16

/* A Prometheus histogram with fixed bounds: observing is a short scan and two additions,
 * no allocation and no clock, so it can sit on the write path. The counts are per bucket
 * (the last one past every bound); /metrics adds them up into cumulative `le` buckets. */
typedef struct {
	const guint64 *bounds; /* (array length=n_bounds): increasing, inclusive upper bounds */
	guint n_bounds;
	guint64 counts[CHAT_HISTOGRAM_MAX_BOUNDS + 1];
	guint64 sum;
} ChatHistogram;

static inline void
chat_histogram_init (ChatHistogram *self, const guint64 *bounds, guint n_bounds)
{
	g_assert (n_bounds <= CHAT_HISTOGRAM_MAX_BOUNDS);
	memset (self, 0, sizeof *self);
	self->bounds = bounds;
	self->n_bounds = n_bounds;
}

static inline void
chat_histogram_observe (ChatHistogram *self, guint64 value)
{
	guint i = 0;

	while (i < self->n_bounds && value > self->bounds[i])
		i++;
	self->counts[i]++;
	self->sum += value;
}

/* Appends the histogram's `_bucket`, `_sum` and `_count` samples (not its HELP and TYPE) to
 * @out; the bounds and the sum are divided by @scale (1 for bytes, 1e6 for µs as seconds). */
void
chat_histogram_append (const ChatHistogram *self, GString *out, const char *name, double scale);

G_END_DECLS
