/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "chat-client-private.h"
#include "chat-hub.h"

G_BEGIN_DECLS

/* Whom a chat message is addressed to: the label `kind` of /metrics. */
typedef enum {
	CHAT_TRAFFIC_ROOM,
	CHAT_TRAFFIC_DIRECT,
	CHAT_TRAFFIC_HUB, /* everyone */
	CHAT_TRAFFIC_N_KINDS,
} ChatTraffic;

/* What the hub and its clients count for /metrics: plain increments on the one thread. */
typedef struct {
	guint64 received[CHAT_TRAFFIC_N_KINDS]; /* `message` frames from clients, by address */
	guint64 relayed[CHAT_TRAFFIC_N_KINDS];	/* messages routed, each once */
	guint64 deliveries;			/* routed messages queued to a connection */
	guint64 bytes_received;			/* payload of the WebSocket messages read */
	guint64 rate_limited;			/* messages refused `rate_limited` */
	guint64 rate_limit_closes;		/* clients closed 1008 "rate limit" */
	guint64 message_size_closes;		/* closed 1009: a message over the limit */
	guint64 binary_closes;			/* closed 1003: a binary message */
	guint64 room_limit_refusals;		/* joins refused `limit_exceeded` */
} ChatHubCounters;

ChatHubCounters *
chat_hub_get_counters (ChatHub *self);

/* only #ChatServer creates clients, so only the library registers them */
void
chat_hub_register_client (ChatHub *self, ChatClient *client);
void
chat_hub_unregister_client (ChatHub *self, ChatClient *client);
void
chat_hub_handle_client_message (ChatHub *self, ChatClient *client, ChatMessage *message);
GPtrArray *
chat_hub_get_clients_unowned (ChatHub *self);
/* Answers keep the order of the requests: relays wait for the store, and whatever a client
 * is sent or told after them waits its turn too (now if nothing is pending). */
void
chat_hub_push_in_order (ChatHub *self, ChatClient *client, GBytes *frame);
void
chat_hub_close_in_order (ChatHub *self, ChatClient *client, guint16 code, const char *reason);
/* how many clients chat_hub_close_all() closes per main loop iteration (tests) */
void
chat_hub_set_close_batch (ChatHub *self, guint n_clients);

G_END_DECLS
