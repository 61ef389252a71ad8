/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define __CHATHUB_H_INSIDE__

#include "chat-client.h"
#include "chat-connection.h"
#include "chat-error.h"
#include "chat-hub.h"
#include "chat-memory-store.h"
#include "chat-message.h"
#include "chat-redis-store.h"
#include "chat-server.h"
#include "chat-sqlite-store.h"
#include "chat-store.h"
#include "chat-token-verifier.h"
#include "chat-version.h"

#undef __CHATHUB_H_INSIDE__
