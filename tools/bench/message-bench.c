/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-message-bench: the JSON cost of one large message on the routing path, without
 * sockets: chat_message_parse() (what ChatClient does with every text frame) and
 * chat_message_to_frame() (what ChatHub does once per relayed message), N times each.
 * Prints microseconds of CPU time per message; the median of several rounds. Not a test: nothing is
 * asserted. The message is structured data by default (about 600 records in `data`), or
 * mostly text with --text.
 */

#include "config.h"

#include <chathub.h>
#include <stdio.h>
#include <time.h>

#include "chat-message-private.h"

/* A chat message of about @size bytes: a short content and a `data` object holding an array
 * of records (strings with escapes, integers, fractions, booleans, nested arrays), as a bot
 * posting a search result or a table would send. */
static GString *
build_message (gsize size)
{
	GString *text = g_string_new ("{\"type\":\"message\",\"room_id\":42,\"content\":"
				      "\"Results for \\\"caf\\u00e9\\\" \xe2\x80\x94 see below\","
				      "\"data\":{\"query\":\"caf\xc3\xa9\",\"rows\":[");

	for (guint i = 0; text->len < size - 64; i++) {
		if (i > 0)
			g_string_append_c (text, ',');
		g_string_append_printf (text,
					"{\"id\":%u,\"name\":\"row %u \\u2014 \xf0\x9f\x98\x80\","
					"\"score\":%u.%02u,\"ok\":%s,\"tags\":[\"a\",\"b\\n\",%u],"
					"\"note\":null}",
					i,
					i,
					i % 100,
					i % 97,
					i % 2 ? "true" : "false",
					i * 7);
	}
	g_string_append (text, "],\"total\":12345678901234567890}}");
	return text;
}

/* A chat message of about @size bytes that is mostly text: a long `content` (prose with a few
 * escapes and non-ASCII characters) and a small `data`. */
static GString *
build_text_message (gsize size)
{
	GString *text = g_string_new ("{\"type\":\"message\",\"room_id\":42,\"content\":\"");

	while (text->len < size - 64)
		g_string_append (
		    text,
		    "Lorem ipsum dolor sit amet, \\\"consectetur\\\" adipiscing \xc3\xa9lit, "
		    "sed do eiusmod tempor \xe2\x80\x94 incididunt ut labore.\\n");
	g_string_append (text, "\",\"data\":{\"lang\":\"la\",\"n\":1}}");
	return text;
}

/* CPU time of this thread, in microseconds: on a shared machine, wall time would count
 * whatever else ran meanwhile. */
static gint64
cpu_time_us (void)
{
	struct timespec now;

	clock_gettime (CLOCK_THREAD_CPUTIME_ID, &now);
	return (gint64) now.tv_sec * G_USEC_PER_SEC + now.tv_nsec / 1000;
}

static int
compare_double (gconstpointer a, gconstpointer b)
{
	double x = *(const double *) a, y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static double
median (double *values, guint n)
{
	qsort (values, n, sizeof *values, compare_double);
	return values[n / 2];
}

int
main (int argc, char **argv)
{
	gint iterations = 2000, rounds = 7, size = 62 * 1024;
	gboolean with_tree = FALSE, mostly_text = FALSE;
	GOptionEntry entries[] = {
	    {"iterations", 'n', 0, G_OPTION_ARG_INT, &iterations, "Messages per round", "N"},
	    {"rounds", 'r', 0, G_OPTION_ARG_INT, &rounds, "Rounds (the median is printed)", "R"},
	    {"size", 's', 0, G_OPTION_ARG_INT, &size, "Message size in bytes", "BYTES"},
	    {"tree", 't', 0, G_OPTION_ARG_NONE, &with_tree, "Also build data's JsonNode", NULL},
	    {"text", 0, 0, G_OPTION_ARG_NONE, &mostly_text, "A long content, small data", NULL},
	    {NULL},
	};
	g_autoptr (GOptionContext) context = g_option_context_new ("- one message's JSON cost");
	g_autoptr (GError) error = NULL;
	g_autoptr (GString) text = NULL;
	g_autofree double *parse_us = NULL, *frame_us = NULL, *total_us = NULL, *tree_us = NULL;

	g_option_context_add_main_entries (context, entries, NULL);
	if (!g_option_context_parse (context, &argc, &argv, &error)) {
		g_printerr ("%s\n", error->message);
		return 2;
	}
	if (iterations < 1 || rounds < 1 || size < 256) {
		g_printerr ("--iterations and --rounds must be positive, --size at least 256\n");
		return 2;
	}

	text = mostly_text ? build_text_message ((gsize) size) : build_message ((gsize) size);
	{
		g_autoptr (ChatMessage) check =
		    chat_message_parse (text->str, text->len, FALSE, &error);

		if (check == NULL) {
			g_printerr ("the benchmark message is refused: %s\n", error->message);
			return 1;
		}
	}
	parse_us = g_new0 (double, rounds);
	frame_us = g_new0 (double, rounds);
	total_us = g_new0 (double, rounds);
	tree_us = g_new0 (double, rounds);
	for (gint r = 0; r < rounds; r++) {
		gint64 parse = 0, frame = 0, tree = 0;

		for (gint i = 0; i < iterations; i++) {
			g_autoptr (ChatMessage) message = NULL;
			g_autoptr (GBytes) bytes = NULL;
			gint64 t0 = cpu_time_us (), t1, t2;

			message = chat_message_parse (text->str, text->len, FALSE, NULL);
			t1 = cpu_time_us ();
			chat_message_stamp (message, (guint64) i + 1, 7);
			bytes = chat_message_to_frame (message);
			t2 = cpu_time_us ();
			parse += t1 - t0;
			frame += t2 - t1;
			if (with_tree) {
				g_assert_nonnull (chat_message_get_data (message));
				tree += cpu_time_us () - t2;
			}
		}
		parse_us[r] = (double) parse / iterations;
		frame_us[r] = (double) frame / iterations;
		total_us[r] = (double) (parse + frame) / iterations;
		tree_us[r] = (double) tree / iterations;
	}
	printf ("message: %" G_GSIZE_FORMAT " bytes, %d x %d\n", text->len, rounds, iterations);
	printf ("parse: %.1f us  frame: %.1f us  both: %.1f us",
		median (parse_us, rounds),
		median (frame_us, rounds),
		median (total_us, rounds));
	if (with_tree)
		printf ("  data tree (chat_message_get_data): %.1f us", median (tree_us, rounds));
	printf ("\n");
	return 0;
}
