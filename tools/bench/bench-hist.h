/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's latency histogram: log-linear, <= 3 % bucket error.
 */

#pragma once

#include <stdint.h>

#define H_SUB_BITS 5
#define H_SUB (1 << H_SUB_BITS)
#define H_LINEAR (2 * H_SUB)
#define H_BUCKETS (H_LINEAR + (64 - H_SUB_BITS - 1) * H_SUB)

typedef struct {
	uint64_t n, max, sum;
	uint64_t b[H_BUCKETS];
} Hist;

static inline unsigned
hist_index (uint64_t v)
{
	int e;

	if (v < H_LINEAR)
		return (unsigned) v;
	e = 63 - __builtin_clzll (v);
	return H_LINEAR + (unsigned) (e - H_SUB_BITS - 1) * H_SUB +
	       (unsigned) ((v >> (e - H_SUB_BITS)) & (H_SUB - 1));
}

static inline void
hist_add (Hist *h, uint64_t v)
{
	h->b[hist_index (v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

void
hist_merge (Hist *into, const Hist *from);
double
hist_quantile (const Hist *h, double q);
