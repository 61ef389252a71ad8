/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>

#include "fuzz-common.h"

static gboolean verbose;

static GLogWriterOutput
write_log (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	if (verbose || (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)))
		g_log_writer_standard_streams (level, fields, n_fields, user_data);
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
		abort ();
	return G_LOG_WRITER_HANDLED;
}

void
fuzz_setup_log (void)
{
	verbose = g_strcmp0 (g_getenv ("CHATHUB_FUZZ_VERBOSE"), "1") == 0;
	g_log_set_writer_func (write_log, NULL, NULL);
}

gboolean
fuzz_verbose (void)
{
	return verbose;
}

void
fuzz_fail (const char *file, int line, const char *what)
{
	fprintf (stderr, "%s:%d: check failed: %s\n", file, line, what);
	abort ();
}
