/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "chat-histogram-private.h"

static const char *
format_number (char buffer[G_ASCII_DTOSTR_BUF_SIZE], double value)
{
	/* %g keeps 1024 as "1024" and 0.0005 as "0.0005"; the C locale's point, always */
	return g_ascii_formatd (buffer, G_ASCII_DTOSTR_BUF_SIZE, "%.10g", value);
}

void
chat_histogram_append (const ChatHistogram *self, GString *out, const char *name, double scale)
{
	char number[G_ASCII_DTOSTR_BUF_SIZE];
	guint64 cumulative = 0;

	for (guint i = 0; i <= self->n_bounds; i++) {
		cumulative += self->counts[i];
		if (i < self->n_bounds)
			g_string_append_printf (
			    out,
			    "%s_bucket{le=\"%s\"} %" G_GUINT64_FORMAT "\n",
			    name,
			    format_number (number, (double) self->bounds[i] / scale),
			    cumulative);
		else
			g_string_append_printf (out,
						"%s_bucket{le=\"+Inf\"} %" G_GUINT64_FORMAT "\n",
						name,
						cumulative);
	}
	g_string_append_printf (out,
				"%s_sum %s\n",
				name,
				format_number (number, (double) self->sum / scale));
	g_string_append_printf (out, "%s_count %" G_GUINT64_FORMAT "\n", name, cumulative);
}
