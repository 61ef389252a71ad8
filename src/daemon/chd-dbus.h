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

ChdDbus *
chd_dbus_new (ChatServer *server, ChatStore *store, ChdCluster *cluster, ChdConfig *config);
gboolean
chd_dbus_start (ChdDbus *self, GError **error);
void
chd_dbus_stop (ChdDbus *self);

G_END_DECLS
