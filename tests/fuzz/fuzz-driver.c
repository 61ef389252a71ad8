/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The main() of a harness in a build without libFuzzer (-Dfuzzing=false, any compiler): runs
 * LLVMFuzzerTestOneInput() once over every file named on the command line, or in a directory
 * named there (not recursively, in name order), and prints one TAP line per file. A harness
 * that finds a bug aborts (or crashes), so the test fails on the input that shows it; the
 * file name is printed before the input runs.
 */

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

static int
compare_names (gconstpointer a, gconstpointer b)
{
	return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The files to run: @path itself, or the files in it. */
static void
add_inputs (GPtrArray *inputs, const char *path)
{
	g_autoptr (GDir) dir = NULL;
	g_autoptr (GPtrArray) names = NULL;
	const char *name;

	if (!g_file_test (path, G_FILE_TEST_IS_DIR)) {
		g_ptr_array_add (inputs, g_strdup (path));
		return;
	}
	dir = g_dir_open (path, 0, NULL);
	if (dir == NULL) {
		fprintf (stderr, "cannot read the directory %s\n", path);
		exit (1);
	}
	names = g_ptr_array_new_with_free_func (g_free);
	while ((name = g_dir_read_name (dir)) != NULL)
		g_ptr_array_add (names, g_build_filename (path, name, NULL));
	g_ptr_array_sort (names, compare_names);
	for (guint i = 0; i < names->len; i++)
		g_ptr_array_add (inputs, g_strdup (names->pdata[i]));
}

int
main (int argc, char **argv)
{
	g_autoptr (GPtrArray) inputs = g_ptr_array_new_with_free_func (g_free);

	for (int i = 1; i < argc; i++)
		add_inputs (inputs, argv[i]);
	if (inputs->len == 0) {
		fprintf (stderr, "usage: %s FILE|DIRECTORY...\n", argv[0]);
		return 1;
	}
	LLVMFuzzerInitialize (&argc, &argv);
	printf ("1..%u\n", inputs->len);
	for (guint i = 0; i < inputs->len; i++) {
		const char *path = inputs->pdata[i];
		g_autofree char *contents = NULL;
		g_autoptr (GError) error = NULL;
		gsize length;

		if (!g_file_get_contents (path, &contents, &length, &error)) {
			printf ("not ok %u %s: %s\n", i + 1, path, error->message);
			return 1;
		}
		/* the name first: if the input crashes the harness, the log says which it was */
		printf ("# %s\n", path);
		fflush (stdout);
		/* a copy of exactly the input's size (never NULL), as libFuzzer gives it */
		{
			g_autofree uint8_t *data = g_malloc (MAX (length, 1));

			memcpy (data, contents, length);
			LLVMFuzzerTestOneInput (data, length);
		}
		printf ("ok %u %s\n", i + 1, path);
	}
	return 0;
}
