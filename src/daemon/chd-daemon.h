/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <chathub.h>

#include "chd-config.h"

G_BEGIN_DECLS

#define CHD_TYPE_DAEMON (chd_daemon_get_type ())
G_DECLARE_FINAL_TYPE (ChdDaemon, chd_daemon, CHD, DAEMON, GObject)

ChdDaemon *
chd_daemon_new (ChdConfig *config, GError **error);
gboolean
chd_daemon_start (ChdDaemon *self, GError **error);
int
chd_daemon_run (ChdDaemon *self);
guint
chd_daemon_reload (ChdDaemon *self, GError **error);

G_END_DECLS
