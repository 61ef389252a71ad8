/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <chathub.h>

#include "chd-cluster.h"
#include "chd-config.h"

G_BEGIN_DECLS

#define CHD_TYPE_DBUS (chd_dbus_get_type ())
G_DECLARE_FINAL_TYPE (ChdDbus, chd_dbus, CHD, DBUS, GObject)

/* Reloads the configuration (chd_daemon_reload()); returns the number of token keys, or 0
 * with @error set. */
typedef guint (*ChdReloadFunc) (gpointer user_data, GError **error);

ChdDbus *
chd_dbus_new (ChatServer *server, ChatStore *store, ChdCluster *cluster, ChdConfig *config);
gboolean
chd_dbus_start (ChdDbus *self, GError **error);
void
chd_dbus_stop (ChdDbus *self);
void
chd_dbus_set_reload_func (ChdDbus *self, ChdReloadFunc func, gpointer user_data);

G_END_DECLS
