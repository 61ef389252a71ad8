/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib/gi18n-lib.h>

G_BEGIN_DECLS

/* Binds the library's text domain once, so its messages are translated inside any host
 * program (the daemon, Python, GJS) without that program knowing about it. */
void
chat_i18n_init (void);

G_END_DECLS
