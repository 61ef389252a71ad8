/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <chathub.h>

#include "chd-config.h"

G_BEGIN_DECLS

#define CHD_TYPE_CLUSTER (chd_cluster_get_type ())
G_DECLARE_FINAL_TYPE (ChdCluster, chd_cluster, CHD, CLUSTER, GObject)

ChdCluster *
chd_cluster_new (ChatServer *server, ChatStore *store, ChdConfig *config);
void
chd_cluster_start (ChdCluster *self);
void
chd_cluster_leave (ChdCluster *self, GSourceFunc func, gpointer user_data);
guint
chd_cluster_get_n_nodes (ChdCluster *self);
guint
chd_cluster_get_n_clients (ChdCluster *self);
guint
chd_cluster_get_n_rooms (ChdCluster *self);
GVariant *
chd_cluster_list_nodes (ChdCluster *self);

G_END_DECLS
