/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* libFuzzer's entry points, which every harness defines (the initializer once, before the
 * first input), and fuzz-driver.c's main() calls in a build without libFuzzer. */
int
LLVMFuzzerInitialize (int *argc, char ***argv);
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* For LLVMFuzzerInitialize(): a critical or a warning aborts (a g_return_if_fail() that
 * trips is a bug the input found), the rest of the log is dropped (the hub logs refused
 * clients at message level: printed, it would slow every run down). CHATHUB_FUZZ_VERBOSE=1
 * prints it all. */
void
fuzz_setup_log (void);
/* CHATHUB_FUZZ_VERBOSE=1: a harness may say what it did with each input */
gboolean
fuzz_verbose (void);

/* A check of the harness itself: aborts with @what when @condition fails, in every build
 * (g_assert() is compiled out with G_DISABLE_ASSERT). */
#define fuzz_check(condition, what)                             \
	G_STMT_START                                            \
	{                                                       \
		if (G_UNLIKELY (!(condition)))                  \
			fuzz_fail (__FILE__, __LINE__, (what)); \
	}                                                       \
	G_STMT_END

G_NORETURN void
fuzz_fail (const char *file, int line, const char *what);

G_END_DECLS
