/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The read side of a connection under libsoup: libsoup's input source for a connection is a
 * cheap GSource without a file descriptor, made ready by one edge-triggered epoll set per main
 * context (the poll source). GLib's poll() would otherwise walk every connection's descriptor
 * on every main-loop iteration.
 *
 * Those sources are not attached to the main context either, whose every iteration would walk
 * them all: libsoup attaches its input source to the thread-default context, and while a
 * connection is "parking" that is one of a fixed set of shard contexts no loop runs. The poll
 * source iterates a shard only when one of its connections is readable. See
 * docs/performance.md. */

#define CHAT_TYPE_INBOX (chat_inbox_get_type ())
G_DECLARE_FINAL_TYPE (ChatInbox, chat_inbox, CHAT, INBOX, GInputStream)

/* One epoll set per GMainContext making every connection's input source ready. */
GSource *
chat_poll_source_new (GError **error);

ChatInbox *
chat_inbox_new (GInputStream *base, int fd, GSource *poll_source);
/* Between these two calls, the input source libsoup creates for @self (on construction of its
 * connection, or after a read) is attached to @self's shard. */
void
chat_inbox_park_begin (ChatInbox *self);
void
chat_inbox_park_end (ChatInbox *self);
/* A paused inbox reads nothing (libsoup sees EAGAIN) and keeps what arrives for when it is
 * resumed: the hub pauses a client whose requests pile up faster than they are handled. */
void
chat_inbox_set_paused (ChatInbox *self, gboolean paused);
/* Stops watching the descriptor; call before it is closed. */
void
chat_inbox_detach (ChatInbox *self);

G_END_DECLS
