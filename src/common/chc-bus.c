/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gi18n-lib.h>

#include "chc-bus.h"

/**
 * chc_bus_describe:
 * @bus_type: %G_BUS_TYPE_SESSION or %G_BUS_TYPE_SYSTEM
 *
 * Names a bus in a message, the same words in chathubd's and in chathubctl's.
 *
 * Returns: (transfer none): "the session bus" or "the system bus", translated
 */
const char *
chc_bus_describe (GBusType bus_type)
{
	return bus_type == G_BUS_TYPE_SYSTEM ? _ ("the system bus") : _ ("the session bus");
}
