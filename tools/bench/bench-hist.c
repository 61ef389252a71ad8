/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bench-hist.h"

void
hist_merge (Hist *into, const Hist *from)
{
	for (unsigned i = 0; i < H_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
}

/* The value at quantile q (0..1): the middle of the bucket it falls in, at most the maximum. */
double
hist_quantile (const Hist *h, double q)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	want = (uint64_t) (q * (double) h->n);
	if ((double) want < q * (double) h->n || want < 1)
		want++;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		double lo, width, mid;

		seen += h->b[i];
		if (seen < want)
			continue;
		if (i < H_LINEAR) {
			lo = i;
			width = 1;
		} else {
			unsigned k = i - H_LINEAR, e = k / H_SUB + H_SUB_BITS + 1, sub = k % H_SUB;
			width = (double) (1ULL << (e - H_SUB_BITS));
			lo = (double) (H_SUB + sub) * width;
		}
		mid = i < H_LINEAR ? lo : lo + width / 2;
		return mid < (double) h->max ? mid : (double) h->max;
	}
	return (double) h->max;
}
