/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The signing and verifying keys as chathubd, chathubctl and chathub-bench read them, so that
 * a secret file means the same to all three.
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The variable that holds the HS* secret where no secret file is given. */
#define CHC_KEY_SECRET_VARIABLE "CHATHUB_JWT_SECRET"

GBytes *
chc_key_read_secret_file (const char *path, GError **error);
GBytes *
chc_key_read_pem_file (const char *path, GError **error);
GBytes *
chc_key_secret_from_environment (void);

G_END_DECLS
