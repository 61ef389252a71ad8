/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <libsoup/soup.h>

G_BEGIN_DECLS

/* The files of ChatServer:web-root, read once when the server starts listening: a request can
 * only ever name one of them, so no path from the network reaches the file system. */
typedef struct _ChatWebRoot ChatWebRoot;

/* Reads every servable file directly in @directory (plain names, known extensions); fails if
 * the directory cannot be read, a file is too large, or there is no index.html. */
ChatWebRoot *
chat_web_root_load (const char *directory, GError **error);
void
chat_web_root_free (ChatWebRoot *root);
/* Answers @msg if @path names one of the files ("/" is index.html): 200 for GET and HEAD,
 * 405 for other methods. FALSE (nothing set) for any other path. */
gboolean
chat_web_root_serve (ChatWebRoot *root, SoupServerMessage *msg, const char *path);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ChatWebRoot, chat_web_root_free)

G_END_DECLS
