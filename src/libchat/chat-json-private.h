/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* How deep a value given alone (a message's `data`, a token segment) may nest; a message's
 * envelope adds one level. The limit protects the recursive json-glib parser. */
#define CHAT_JSON_MAX_DEPTH 64

/* Strict RFC 8259 check of a whole text. json-glib 1.6 also accepts comments, single quotes,
 * hex numbers and "\x" escapes; relaying any of those byte for byte would hand other clients
 * text their parsers reject. Containers may nest @max_depth deep (1: no container inside the
 * top-level one). On failure, returns FALSE and an English reason (marked with N_():
 * translate it with _() where the text is not for the wire). */
gboolean
chat_json_validate (const char *text, gsize length, guint max_depth, const char **reason);
/* chat_json_validate(), then json-glib's tree of the text (transfer full), or NULL. */
JsonNode *
chat_json_parse (const char *text, gsize length, guint max_depth, const char **reason);

G_END_DECLS
