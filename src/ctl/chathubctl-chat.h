/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

/* "chathubctl chat": the interactive terminal client (chathubctl-chat.c). */
int
chathubctl_command_chat (int argc, char **argv);
