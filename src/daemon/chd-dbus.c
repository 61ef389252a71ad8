/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gi18n.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "chc-bus.h"
#include "chd-dbus.h"
#include "chd-hub1-generated.h"
#include "chd-log.h"

/* RFC 6455 leaves 123 bytes for the reason of a close frame. */
#define MAX_REASON_BYTES 123
#define DEFAULT_REASON "disconnected by operator"

/* io.github.chathub.Hub1 on a bus: the generated skeleton answers the calls by asking the
 * library, and relays the hub's signals. Nothing here knows about WebSocket. */
struct _ChdDbus {
	GObject parent_instance;

	ChatServer *server;
	ChatHub *hub;
	ChatStore *store;
	ChdCluster *cluster;
	gulong cluster_changed_id;
	ChdConfig *config; /* unowned; outlives us */
	GDBusConnection *connection;
	ChdHub1 *skeleton;
	guint owner_id;
	gboolean name_owned;
	guint never_owned_id;	   /* the idle that reports a name we could not have */
	ChdReloadFunc reload_func; /* (nullable) */
	gpointer reload_data;
	gulong hub_handlers[5];
};

G_DEFINE_FINAL_TYPE (ChdDbus, chd_dbus, G_TYPE_OBJECT)

enum { SIGNAL_ACTIVITY, SIGNAL_NAME_LOST, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
chd_dbus_dispose (GObject *object)
{
	ChdDbus *self = CHD_DBUS (object);

	g_clear_handle_id (&self->never_owned_id, g_source_remove);
	g_clear_handle_id (&self->owner_id, g_bus_unown_name);
	for (guint i = 0; i < G_N_ELEMENTS (self->hub_handlers); i++)
		g_clear_signal_handler (&self->hub_handlers[i], self->hub);
	if (self->skeleton != NULL &&
	    g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self->skeleton)))
		g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->skeleton));
	/* the last signals (clients leaving on shutdown) must reach the bus before we exit */
	if (self->connection != NULL && !g_dbus_connection_is_closed (self->connection))
		g_dbus_connection_flush_sync (self->connection, NULL, NULL);
	g_clear_object (&self->skeleton);
	g_clear_object (&self->connection);
	g_clear_object (&self->hub);
	g_clear_object (&self->store);
	g_clear_signal_handler (&self->cluster_changed_id, self->cluster);
	g_clear_object (&self->cluster);
	g_clear_object (&self->server);
	G_OBJECT_CLASS (chd_dbus_parent_class)->dispose (object);
}

static void
chd_dbus_class_init (ChdDbusClass *klass)
{
	G_OBJECT_CLASS (klass)->dispose = chd_dbus_dispose;

	/* a method was called: the daemon's exit-on-idle timer starts again */
	signals[SIGNAL_ACTIVITY] = g_signal_new ("activity",
						 G_TYPE_FROM_CLASS (klass),
						 G_SIGNAL_RUN_LAST,
						 0,
						 NULL,
						 NULL,
						 NULL,
						 G_TYPE_NONE,
						 0);
	/* the bus name is gone, or was never ours (the argument says whether we had it) */
	signals[SIGNAL_NAME_LOST] = g_signal_new ("name-lost",
						  G_TYPE_FROM_CLASS (klass),
						  G_SIGNAL_RUN_LAST,
						  0,
						  NULL,
						  NULL,
						  NULL,
						  G_TYPE_NONE,
						  1,
						  G_TYPE_BOOLEAN);
}

static void
chd_dbus_init (ChdDbus *self)
{
}

static void
note_activity (ChdDbus *self)
{
	g_signal_emit (self, signals[SIGNAL_ACTIVITY], 0);
}

/* ---- access control ------------------------------------------------------------------- */

static gboolean
user_in_group (uid_t uid, const char *group_name)
{
	struct passwd *pw;
	struct group *group;
	g_autofree char *user_name = NULL;
	g_autofree gid_t *groups = NULL;
	gid_t wanted, primary;
	int n_groups = 32;

	group = getgrnam (group_name);
	if (group == NULL)
		return FALSE;
	wanted = group->gr_gid;
	pw = getpwuid (uid);
	if (pw == NULL)
		return FALSE;
	user_name = g_strdup (pw->pw_name);
	primary = pw->pw_gid;
	if (primary == wanted)
		return TRUE;

	/* getgrouplist() says how many groups there are when the array is too small */
	for (;;) {
		int n = n_groups;

		g_free (groups);
		groups = g_new (gid_t, n);
		if (getgrouplist (user_name, primary, groups, &n) >= 0) {
			n_groups = n;
			break;
		}
		if (n <= n_groups)
			return FALSE;
		n_groups = n;
	}
	for (int i = 0; i < n_groups; i++) {
		if (groups[i] == wanted)
			return TRUE;
	}
	return FALSE;
}

typedef void (*PrivilegedFunc) (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid);

typedef struct {
	ChdDbus *self;
	GDBusMethodInvocation *invocation;
	PrivilegedFunc func;
} PrivilegedCall;

static void
privileged_call_free (PrivilegedCall *call)
{
	g_object_unref (call->self);
	g_object_unref (call->invocation);
	g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (PrivilegedCall, privileged_call_free)

/* Logs who was refused and why (the journal is where an administrator looks), then answers
 * the call with PermissionDenied and a text that says who may call it. */
static void
deny_caller (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid)
{
	const char *method = g_dbus_method_invocation_get_method_name (invocation);
	const char *sender = g_dbus_method_invocation_get_sender (invocation);
	const char *group = self->config->admin_group;
	g_autofree char *uid_text = g_strdup_printf ("%u", uid);
	g_autofree char *text = NULL;
	g_autofree char *reply = NULL;

	if (self->config->bus_type != G_BUS_TYPE_SYSTEM) {
		text = g_strdup_printf (_ ("Refused %s from %s (uid %u): not the user running the "
					   "service"),
					method,
					sender,
					uid);
		reply = g_strdup_printf (_ ("%s is only allowed to the user running the service"),
					 method);
	} else if (group != NULL) {
		text =
		    g_strdup_printf (_ ("Refused %s from %s (uid %u): neither root nor a member of "
					"group “%s”"),
				     method,
				     sender,
				     uid,
				     group);
		reply = g_strdup_printf (_ ("%s is only allowed to root and to members of group "
					    "“%s”"),
					 method,
					 group);
	} else {
		text = g_strdup_printf (_ ("Refused %s from %s (uid %u): not root, and no "
					   "[dbus] admin-group is configured"),
					method,
					sender,
					uid);
		reply = g_strdup_printf (_ ("%s is only allowed to root"), method);
	}
	g_log_structured (G_LOG_DOMAIN,
			  G_LOG_LEVEL_MESSAGE,
			  "CHATHUB_EVENT",
			  "dbus-permission-denied",
			  "CHATHUB_DBUS_METHOD",
			  method,
			  "CHATHUB_DBUS_SENDER",
			  sender,
			  "CHATHUB_DBUS_UID",
			  uid_text,
			  "MESSAGE",
			  "%s",
			  text);
	g_dbus_method_invocation_return_error_literal (invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_PERMISSION_DENIED,
						       reply);
}

static gboolean
may_administer (ChdDbus *self, guint32 uid)
{
	if (uid == 0)
		return TRUE;
	/* the session bus lets only its user in; be sure anyway */
	if (self->config->bus_type != G_BUS_TYPE_SYSTEM)
		return uid == getuid ();
	return self->config->admin_group != NULL && user_in_group (uid, self->config->admin_group);
}

static void
on_caller_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (PrivilegedCall) call = user_data;
	g_autoptr (GVariant) reply = NULL;
	g_autoptr (GError) error = NULL;
	guint32 uid;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
	if (reply == NULL) {
		g_dbus_error_strip_remote_error (error);
		g_dbus_method_invocation_return_error (call->invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_PERMISSION_DENIED,
						       _ ("Cannot tell who is calling: %s"),
						       error->message);
		return;
	}
	g_variant_get (reply, "(u)", &uid);
	if (!may_administer (call->self, uid)) {
		deny_caller (call->self, call->invocation, uid);
		return;
	}
	call->func (call->self, call->invocation, uid);
}

/* Runs func once the caller is known to be allowed to change the hub: the bus tells us
 * the caller's uid, so a policy file that lets too much through does not open the door. */
static gboolean
run_privileged (ChdDbus *self, GDBusMethodInvocation *invocation, PrivilegedFunc func)
{
	PrivilegedCall *call = g_new0 (PrivilegedCall, 1);
	const char *sender = g_dbus_method_invocation_get_sender (invocation);

	note_activity (self);
	call->self = g_object_ref (self);
	call->invocation = g_object_ref (invocation);
	call->func = func;
	g_dbus_connection_call (self->connection,
				"org.freedesktop.DBus",
				"/org/freedesktop/DBus",
				"org.freedesktop.DBus",
				"GetConnectionUnixUser",
				g_variant_new ("(s)", sender),
				G_VARIANT_TYPE ("(u)"),
				G_DBUS_CALL_FLAGS_NONE,
				-1,
				NULL,
				on_caller_uid,
				call);
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- read-only methods ---------------------------------------------------------------- */

static gboolean
handle_list_clients (ChdHub1 *skeleton, GDBusMethodInvocation *invocation, ChdDbus *self)
{
	g_autoptr (GPtrArray) clients = chat_hub_list_clients (self->hub);
	GVariantBuilder builder;

	note_activity (self);
	g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(stxat)"));
	for (guint i = 0; i < clients->len; i++) {
		ChatClient *client = clients->pdata[i];
		gsize n_rooms = 0;
		g_autofree guint64 *rooms = chat_client_get_rooms (client, &n_rooms);

		g_variant_builder_add (&builder,
				       "(stx@at)",
				       chat_client_get_id (client),
				       chat_client_get_user_id (client),
				       chat_client_get_connected_since (client),
				       g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64,
								  rooms,
								  n_rooms,
								  sizeof (guint64)));
	}
	chd_hub1_complete_list_clients (skeleton, invocation, g_variant_builder_end (&builder));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_rooms (ChdHub1 *skeleton, GDBusMethodInvocation *invocation, ChdDbus *self)
{
	gsize n_rooms = 0;
	g_autofree guint64 *rooms = chat_hub_list_rooms (self->hub, &n_rooms);
	GVariantBuilder builder;

	note_activity (self);
	g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(tu)"));
	for (gsize i = 0; i < n_rooms; i++) {
		g_variant_builder_add (&builder,
				       "(tu)",
				       rooms[i],
				       chat_hub_get_n_room_members (self->hub, rooms[i]));
	}
	chd_hub1_complete_list_rooms (skeleton, invocation, g_variant_builder_end (&builder));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* RoomMembers: this node's users in a room, each once, ascending */
static gboolean
handle_room_members (ChdHub1 *skeleton,
		     GDBusMethodInvocation *invocation,
		     guint64 room_id,
		     ChdDbus *self)
{
	g_autofree guint64 *users = NULL;
	gsize n_users = 0;

	note_activity (self);
	if (room_id == 0) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_INVALID_ARGUMENT,
							       _ ("Room ids start at 1"));
		return G_DBUS_METHOD_INVOCATION_HANDLED;
	}
	users = chat_hub_list_room_users (self->hub, room_id, &n_users);
	chd_hub1_complete_room_members (
	    skeleton,
	    invocation,
	    g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, users, n_users, sizeof (guint64)));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* Presence and History answer from the store, later */
typedef struct {
	ChdHub1 *skeleton;
	GDBusMethodInvocation *invocation;
} StoreCall;

static StoreCall *
store_call_new (ChdHub1 *skeleton, GDBusMethodInvocation *invocation)
{
	StoreCall *call = g_new0 (StoreCall, 1);

	call->skeleton = g_object_ref (skeleton);
	call->invocation = g_object_ref (invocation);
	return call;
}

static void
store_call_free (StoreCall *call)
{
	g_object_unref (call->skeleton);
	g_object_unref (call->invocation);
	g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (StoreCall, store_call_free)

/* The store's own errors (SQLite's I/O errors, hiredis's) mean nothing to a D-Bus caller */
static void
return_store_error (StoreCall *call, const GError *error)
{
	if (error->domain == CHAT_ERROR)
		g_dbus_method_invocation_return_gerror (call->invocation, error);
	else
		g_dbus_method_invocation_return_error (call->invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_UNAVAILABLE,
						       _ ("The message store cannot be read: %s"),
						       error->message);
}

static void
on_presence_listed (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (StoreCall) call = user_data;
	g_autoptr (GError) error = NULL;
	gsize n_users = 0;
	g_autofree guint64 *users =
	    chat_hub_list_room_users_finish (CHAT_HUB (source), result, &n_users, &error);

	if (users == NULL) {
		return_store_error (call, error);
		return;
	}
	chd_hub1_complete_presence (
	    call->skeleton,
	    call->invocation,
	    g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, users, n_users, sizeof (guint64)));
}

/* Presence: every node's users (from Redis with [cluster]), as a member's `presence` */
static gboolean
handle_presence (ChdHub1 *skeleton,
		 GDBusMethodInvocation *invocation,
		 guint64 room_id,
		 ChdDbus *self)
{
	note_activity (self);
	if (room_id == 0) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_INVALID_ARGUMENT,
							       _ ("Room ids start at 1"));
		return G_DBUS_METHOD_INVOCATION_HANDLED;
	}
	chat_hub_list_room_users_async (self->hub,
					room_id,
					NULL,
					on_presence_listed,
					store_call_new (skeleton, invocation));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_history_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr (StoreCall) call = user_data;
	g_autoptr (GError) error = NULL;
	g_autofree char *epoch = NULL;
	g_autoptr (GPtrArray) messages =
	    chat_hub_read_history_finish (CHAT_HUB (source), result, &epoch, &error);
	g_autoptr (GPtrArray) texts = NULL;

	if (messages == NULL) {
		return_store_error (call, error);
		return;
	}
	texts = g_ptr_array_new_full (messages->len + 1, g_free);
	for (guint i = 0; i < messages->len; i++)
		g_ptr_array_add (texts, chat_message_to_json (messages->pdata[i]));
	g_ptr_array_add (texts, NULL);
	chd_hub1_complete_history (call->skeleton,
				   call->invocation,
				   epoch != NULL ? epoch : "",
				   (const char *const *) texts->pdata);
}

static gboolean
handle_history (ChdHub1 *skeleton,
		GDBusMethodInvocation *invocation,
		guint64 room_id,
		guint64 before,
		guint limit,
		ChdDbus *self)
{
	note_activity (self);
	if (room_id == 0) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_INVALID_ARGUMENT,
							       _ ("Room ids start at 1"));
		return G_DBUS_METHOD_INVOCATION_HANDLED;
	}
	/* the hub applies the wire's default and cap to limit */
	chat_hub_read_history_async (self->hub,
				     room_id,
				     before,
				     limit,
				     NULL,
				     on_history_read,
				     store_call_new (skeleton, invocation));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_statistics (ChdHub1 *skeleton, GDBusMethodInvocation *invocation, ChdDbus *self)
{
	g_autoptr (GVariant) server =
	    g_variant_ref_sink (chat_server_get_statistics (self->server));
	g_autoptr (GVariant) store = chat_store_get_statistics (self->store);
	GVariantBuilder builder;
	GVariantIter iter;
	const char *key;
	GVariant *value;
	guint64 number;

	note_activity (self);
	g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
	g_variant_iter_init (&iter, server);
	while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
		g_variant_builder_add (&builder, "{sv}", key, value);
	/* the store's figures beside the server's, "stored" as "store-stored" */
	g_variant_iter_init (&iter, store);
	while (g_variant_iter_next (&iter, "{&st}", &key, &number)) {
		g_autofree char *name = g_strconcat ("store-", key, NULL);

		g_variant_builder_add (&builder, "{sv}", name, g_variant_new_uint64 (number));
	}
	chd_hub1_complete_get_statistics (skeleton, invocation, g_variant_builder_end (&builder));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- methods that change the hub ------------------------------------------------------ */

/* Reads the a{sv} of Broadcast; a mistyped or unknown key is refused rather than ignored,
 * because ignoring "room" for "room_id" would send to everyone. */
static gboolean
parse_broadcast_options (GVariant *options,
			 gboolean *has_room,
			 guint64 *room_id,
			 gboolean *has_to,
			 guint64 *to,
			 const char **data,
			 GError **error)
{
	GVariantIter iter;
	const char *key;
	GVariant *next;

	g_variant_iter_init (&iter, options);
	while (g_variant_iter_next (&iter, "{&sv}", &key, &next)) {
		g_autoptr (GVariant) value = next;
		const GVariantType *wanted;

		if (g_strcmp0 (key, "room_id") == 0 || g_strcmp0 (key, "to") == 0)
			wanted = G_VARIANT_TYPE_UINT64;
		else if (g_strcmp0 (key, "data") == 0)
			wanted = G_VARIANT_TYPE_STRING;
		else {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("Unknown option “%s” (known: room_id, to, data)"),
				     key);
			return FALSE;
		}
		if (!g_variant_is_of_type (value, wanted)) {
			g_set_error (error,
				     CHAT_ERROR,
				     CHAT_ERROR_INVALID_ARGUMENT,
				     _ ("Option “%s” must be of type “%s”, not “%s”"),
				     key,
				     g_variant_type_peek_string (wanted),
				     g_variant_get_type_string (value));
			return FALSE;
		}
		if (g_strcmp0 (key, "room_id") == 0) {
			*has_room = TRUE;
			*room_id = g_variant_get_uint64 (value);
		} else if (g_strcmp0 (key, "to") == 0) {
			*has_to = TRUE;
			*to = g_variant_get_uint64 (value);
		} else {
			/* the string lives in options, which outlives the caller's use */
			*data = g_variant_get_string (value, NULL);
		}
	}
	return TRUE;
}

static void
do_broadcast (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid)
{
	GVariant *parameters = g_dbus_method_invocation_get_parameters (invocation);
	g_autoptr (GVariant) options = NULL;
	g_autoptr (ChatMessage) message = NULL;
	g_autoptr (GError) error = NULL;
	const char *content = NULL;
	const char *data = NULL;
	gboolean has_room = FALSE, has_to = FALSE;
	guint64 room_id = 0, to = 0;
	guint recipients;
	gsize size;

	g_variant_get (parameters, "(&s@a{sv})", &content, &options);
	if (!parse_broadcast_options (options, &has_room, &room_id, &has_to, &to, &data, &error)) {
		g_dbus_method_invocation_return_gerror (invocation, error);
		return;
	}
	/* the rules of the WebSocket path (docs/protocol.md, 3.2), with its error codes; the hub
	 * itself refuses a message with both a room and a user, or neither content nor data */
	if ((has_room && room_id == 0) || (has_to && to == 0)) {
		g_dbus_method_invocation_return_error (invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_INVALID_MESSAGE,
						       _ ("Option “%s” must be greater than 0"),
						       has_room ? "room_id" : "to");
		return;
	}
	size = strlen (content) + (data != NULL ? strlen (data) : 0);
	if (size > self->config->max_message_size) {
		g_dbus_method_invocation_return_error (invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_INVALID_MESSAGE,
						       _ ("The message is larger than the %u bytes "
							  "clients may send"),
						       self->config->max_message_size);
		return;
	}
	message = chat_message_new (CHAT_MESSAGE_TYPE_MESSAGE);
	if (data != NULL && !chat_message_set_data_json (message, data, -1, &error)) {
		g_prefix_error (&error, _ ("Option “data”: "));
		g_dbus_method_invocation_return_gerror (invocation, error);
		return;
	}
	if (*content != '\0')
		chat_message_set_content (message, content);
	chat_message_set_from (message, 0); /* the service itself */

	chat_message_set_room_id (message, room_id);
	chat_message_set_to (message, to);
	recipients = chat_hub_send (self->hub, message, &error);
	if (error != NULL) {
		g_dbus_method_invocation_return_gerror (invocation, error);
		return;
	}
	g_debug ("uid %u posted message %" G_GUINT64_FORMAT " to %u connections",
		 uid,
		 chat_message_get_id (message),
		 recipients);
	chd_hub1_complete_broadcast (self->skeleton,
				     invocation,
				     chat_message_get_id (message),
				     recipients);
}

static gboolean
check_reason (GDBusMethodInvocation *invocation, const char *reason)
{
	if (strlen (reason) <= MAX_REASON_BYTES)
		return TRUE;
	g_dbus_method_invocation_return_error (invocation,
					       CHAT_ERROR,
					       CHAT_ERROR_INVALID_ARGUMENT,
					       _ ("The reason is longer than %u bytes"),
					       MAX_REASON_BYTES);
	return FALSE;
}

static void
log_disconnect (ChatClient *client, guint32 uid, const char *reason)
{
	g_autofree char *text = NULL;

	text = g_strdup_printf (_ ("Client %s (user %" PRIu64 ") disconnected over D-Bus "
				   "by uid %u: %s"),
				chat_client_get_id (client),
				chat_client_get_user_id (client),
				uid,
				reason);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "dbus-disconnect", text);
}

static void
do_disconnect (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid)
{
	const char *client_id = NULL;
	const char *reason = NULL;
	ChatClient *client;

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation),
		       "(&s&s)",
		       &client_id,
		       &reason);
	if (!check_reason (invocation, reason))
		return;
	client = chat_hub_lookup_client (self->hub, client_id);
	if (client == NULL) {
		g_dbus_method_invocation_return_error (invocation,
						       CHAT_ERROR,
						       CHAT_ERROR_NOT_FOUND,
						       _ ("No client “%s” is connected"),
						       client_id);
		return;
	}
	if (*reason == '\0')
		reason = DEFAULT_REASON;
	log_disconnect (client, uid, reason);
	/* after what was broadcast before: "say this, then disconnect" works */
	chat_hub_close_client (self->hub, client, CHAT_CLOSE_CODE_POLICY_VIOLATION, reason);
	chd_hub1_complete_disconnect (self->skeleton, invocation);
}

static void
do_disconnect_user (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid)
{
	g_autoptr (GPtrArray) clients = NULL;
	const char *reason = NULL;
	guint64 user_id = 0;

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation),
		       "(t&s)",
		       &user_id,
		       &reason);
	if (user_id == 0) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_INVALID_ARGUMENT,
							       _ ("User ids start at 1"));
		return;
	}
	if (!check_reason (invocation, reason))
		return;
	if (*reason == '\0')
		reason = DEFAULT_REASON;
	clients = chat_hub_list_user_clients (self->hub, user_id);
	for (guint i = 0; i < clients->len; i++) {
		log_disconnect (clients->pdata[i], uid, reason);
		chat_hub_close_client (self->hub,
				       clients->pdata[i],
				       CHAT_CLOSE_CODE_POLICY_VIOLATION,
				       reason);
	}
	chd_hub1_complete_disconnect_user (self->skeleton, invocation, clients->len);
}

static void
do_reload (ChdDbus *self, GDBusMethodInvocation *invocation, guint32 uid)
{
	g_autoptr (GError) error = NULL;
	g_autofree char *text = NULL;
	guint n_keys;

	if (self->reload_func == NULL) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_FAILED,
							       _ ("This service cannot reload"));
		return;
	}
	text = g_strdup_printf (_ ("Reload requested over D-Bus by uid %u"), uid);
	chd_log_event (G_LOG_LEVEL_MESSAGE, "dbus-reload", text);
	n_keys = self->reload_func (self->reload_data, &error);
	if (n_keys == 0) {
		g_dbus_method_invocation_return_error_literal (invocation,
							       CHAT_ERROR,
							       CHAT_ERROR_FAILED,
							       error->message);
		return;
	}
	chd_hub1_complete_reload (self->skeleton, invocation, n_keys);
}

static gboolean
handle_reload (ChdHub1 *skeleton, GDBusMethodInvocation *invocation, ChdDbus *self)
{
	return run_privileged (self, invocation, do_reload);
}

static gboolean
handle_broadcast (ChdHub1 *skeleton,
		  GDBusMethodInvocation *invocation,
		  const char *content,
		  GVariant *options,
		  ChdDbus *self)
{
	return run_privileged (self, invocation, do_broadcast);
}

static gboolean
handle_disconnect (ChdHub1 *skeleton,
		   GDBusMethodInvocation *invocation,
		   const char *client_id,
		   const char *reason,
		   ChdDbus *self)
{
	return run_privileged (self, invocation, do_disconnect);
}

static gboolean
handle_disconnect_user (ChdHub1 *skeleton,
			GDBusMethodInvocation *invocation,
			guint64 user_id,
			const char *reason,
			ChdDbus *self)
{
	return run_privileged (self, invocation, do_disconnect_user);
}

/* ---- the hub's signals and properties on the bus -------------------------------------- */

static void
on_client_registered (ChatHub *hub, ChatClient *client, ChdDbus *self)
{
	chd_hub1_emit_client_registered (self->skeleton,
					 chat_client_get_id (client),
					 chat_client_get_user_id (client));
}

static void
on_client_unregistered (ChatHub *hub, ChatClient *client, guint code, ChdDbus *self)
{
	chd_hub1_emit_client_unregistered (self->skeleton,
					   chat_client_get_id (client),
					   chat_client_get_user_id (client),
					   (guint16) code);
}

static void
on_broadcast (ChatHub *hub, ChatMessage *message, ChdDbus *self)
{
	const char *content = chat_message_get_content (message);

	chd_hub1_emit_message_broadcast (self->skeleton,
					 chat_message_get_id (message),
					 chat_message_get_from (message),
					 content != NULL ? content : "");
}

/* The hub-wide figures, after the local ones or the node list changed. */
static void
update_cluster_properties (ChdDbus *self)
{
	chd_hub1_set_cluster_node_count (self->skeleton, chd_cluster_get_n_nodes (self->cluster));
	chd_hub1_set_cluster_client_count (self->skeleton,
					   chd_cluster_get_n_clients (self->cluster));
	chd_hub1_set_cluster_room_count (self->skeleton, chd_cluster_get_n_rooms (self->cluster));
}

static void
on_n_clients (ChatHub *hub, GParamSpec *pspec, ChdDbus *self)
{
	/* the skeleton emits PropertiesChanged only when the value differs */
	chd_hub1_set_client_count (self->skeleton, chat_hub_get_n_clients (hub));
	update_cluster_properties (self);
}

static void
on_n_rooms (ChatHub *hub, GParamSpec *pspec, ChdDbus *self)
{
	chd_hub1_set_room_count (self->skeleton, chat_hub_get_n_rooms (hub));
	update_cluster_properties (self);
}

static void
on_cluster_changed (ChdCluster *cluster, ChdDbus *self)
{
	update_cluster_properties (self);
}

static gboolean
handle_list_nodes (ChdHub1 *skeleton, GDBusMethodInvocation *invocation, ChdDbus *self)
{
	note_activity (self);
	chd_hub1_complete_list_nodes (skeleton, invocation, chd_cluster_list_nodes (self->cluster));
	return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- the name ------------------------------------------------------------------------- */

static void
on_name_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
	ChdDbus *self = CHD_DBUS (user_data);
	g_autofree char *text = NULL;

	self->name_owned = TRUE;
	text = g_strdup_printf (_ ("Owning the name %s on %s"),
				name,
				chc_bus_describe (self->config->bus_type));
	chd_log_event (G_LOG_LEVEL_MESSAGE, "dbus-name-acquired", text);
}

static gboolean
report_never_owned (gpointer user_data)
{
	ChdDbus *self = CHD_DBUS (user_data);

	self->never_owned_id = 0;
	g_signal_emit (self, signals[SIGNAL_NAME_LOST], 0, FALSE);
	return G_SOURCE_REMOVE;
}

static void
on_name_lost (GDBusConnection *connection, const char *name, gpointer user_data)
{
	ChdDbus *self = CHD_DBUS (user_data);

	if (!self->name_owned) {
		/* GLib calls us before it notes that RequestName failed: a g_bus_unown_name() from
		 * in here (the daemon stops at once) would release a name we never had, with a
		 * GLib-GIO-WARNING. From an idle, GLib knows there is nothing to release. */
		if (self->never_owned_id == 0)
			self->never_owned_id = g_idle_add (report_never_owned, self);
		return;
	}
	self->name_owned = FALSE;
	g_signal_emit (self, signals[SIGNAL_NAME_LOST], 0, TRUE);
}

/**
 * chd_dbus_new:
 * @server: the server whose hub goes on the bus
 * @store: the hub's message store, for its statistics
 * @cluster: the hub's node list
 * @config: the daemon's settings (bus type and [dbus]); must outlive the object
 *
 * Returns: (transfer full): a #ChdDbus, not on the bus yet
 */
ChdDbus *
chd_dbus_new (ChatServer *server, ChatStore *store, ChdCluster *cluster, ChdConfig *config)
{
	ChdDbus *self = g_object_new (CHD_TYPE_DBUS, NULL);

	self->server = g_object_ref (server);
	self->store = g_object_ref (store);
	self->cluster = g_object_ref (cluster);
	self->hub = g_object_ref (chat_server_get_hub (server));
	self->config = config;
	return self;
}

/**
 * chd_dbus_start:
 * @self: a #ChdDbus
 * @error: return location for a #GError
 *
 * Connects to the bus, exports the hub and asks for the name. Call it once the server
 * listens: owning the name tells the bus (and systemd) that the service is ready.
 * #ChdDbus::name-lost follows if the name cannot be had or is lost later.
 *
 * Returns: %TRUE when connected and exported
 */
gboolean
chd_dbus_start (ChdDbus *self, GError **error)
{
	g_autofree char *uri = NULL;

	g_return_val_if_fail (CHD_IS_DBUS (self), FALSE);
	g_return_val_if_fail (self->connection == NULL, FALSE);

	/* registers the io.github.chathub.Hub1.Error.* names before the first reply */
	(void) CHAT_ERROR;

	self->connection = g_bus_get_sync (self->config->bus_type, NULL, error);
	if (self->connection == NULL) {
		g_prefix_error (error,
				_ ("cannot connect to %s: "),
				chc_bus_describe (self->config->bus_type));
		return FALSE;
	}
	/* a vanished bus is a lost name, handled like any other, not a SIGTERM to ourselves */
	g_dbus_connection_set_exit_on_close (self->connection, FALSE);

	uri = chat_server_get_uri (self->server);
	self->skeleton = chd_hub1_skeleton_new ();
	chd_hub1_set_version (self->skeleton, PACKAGE_VERSION);
	chd_hub1_set_listen_uri (self->skeleton, uri);
	chd_hub1_set_client_count (self->skeleton, chat_hub_get_n_clients (self->hub));
	chd_hub1_set_room_count (self->skeleton, chat_hub_get_n_rooms (self->hub));
	update_cluster_properties (self);

	g_signal_connect (self->skeleton,
			  "handle-list-nodes",
			  G_CALLBACK (handle_list_nodes),
			  self);
	g_signal_connect (self->skeleton,
			  "handle-list-clients",
			  G_CALLBACK (handle_list_clients),
			  self);
	g_signal_connect (self->skeleton,
			  "handle-list-rooms",
			  G_CALLBACK (handle_list_rooms),
			  self);
	g_signal_connect (self->skeleton,
			  "handle-room-members",
			  G_CALLBACK (handle_room_members),
			  self);
	g_signal_connect (self->skeleton, "handle-presence", G_CALLBACK (handle_presence), self);
	g_signal_connect (self->skeleton, "handle-history", G_CALLBACK (handle_history), self);
	g_signal_connect (self->skeleton,
			  "handle-get-statistics",
			  G_CALLBACK (handle_get_statistics),
			  self);
	g_signal_connect (self->skeleton, "handle-broadcast", G_CALLBACK (handle_broadcast), self);
	g_signal_connect (self->skeleton,
			  "handle-disconnect",
			  G_CALLBACK (handle_disconnect),
			  self);
	g_signal_connect (self->skeleton,
			  "handle-disconnect-user",
			  G_CALLBACK (handle_disconnect_user),
			  self);
	g_signal_connect (self->skeleton, "handle-reload", G_CALLBACK (handle_reload), self);

	self->hub_handlers[0] = g_signal_connect (self->hub,
						  "client-registered",
						  G_CALLBACK (on_client_registered),
						  self);
	self->hub_handlers[1] = g_signal_connect (self->hub,
						  "client-unregistered",
						  G_CALLBACK (on_client_unregistered),
						  self);
	self->hub_handlers[2] =
	    g_signal_connect (self->hub, "notify::n-clients", G_CALLBACK (on_n_clients), self);
	self->hub_handlers[3] =
	    g_signal_connect (self->hub, "notify::n-rooms", G_CALLBACK (on_n_rooms), self);
	self->cluster_changed_id =
	    g_signal_connect (self->cluster, "changed", G_CALLBACK (on_cluster_changed), self);
	/* the hub skips building the signal's arguments when nobody listens */
	if (self->config->message_signals)
		self->hub_handlers[4] =
		    g_signal_connect (self->hub, "broadcast", G_CALLBACK (on_broadcast), self);

	if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->skeleton),
					       self->connection,
					       CHC_BUS_PATH,
					       error)) {
		g_prefix_error (error, _ ("cannot export %s: "), CHC_BUS_PATH);
		return FALSE;
	}
	if (self->config->bus_type == G_BUS_TYPE_SYSTEM && self->config->admin_group != NULL &&
	    getgrnam (self->config->admin_group) == NULL) {
		g_autofree char *text = NULL;

		text = g_strdup_printf (_ ("[dbus] admin-group: there is no group “%s”; only root "
					   "may call Broadcast, Disconnect, DisconnectUser and "
					   "Reload"),
					self->config->admin_group);
		chd_log_event (G_LOG_LEVEL_WARNING, "dbus-admin-group-missing", text);
	}
	/* no queueing: a second chathubd on the same bus gives up instead of waiting */
	self->owner_id = g_bus_own_name_on_connection (self->connection,
						       CHC_BUS_NAME,
						       G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
						       on_name_acquired,
						       on_name_lost,
						       self,
						       NULL);
	return TRUE;
}

/**
 * chd_dbus_stop:
 * @self: a #ChdDbus
 *
 * Releases the name, so that the bus can start a new instance while this one drains.
 * The object stays exported, and its signals keep flowing, until it is disposed.
 */
void
chd_dbus_stop (ChdDbus *self)
{
	g_return_if_fail (CHD_IS_DBUS (self));

	g_clear_handle_id (&self->owner_id, g_bus_unown_name);
	self->name_owned = FALSE;
}

/**
 * chd_dbus_set_reload_func:
 * @self: a #ChdDbus
 * @func: (nullable): what Reload() runs, once the caller is known to be an administrator
 * @user_data: its argument
 *
 * Lets Reload() reach the daemon, which alone knows how to apply a configuration.
 */
void
chd_dbus_set_reload_func (ChdDbus *self, ChdReloadFunc func, gpointer user_data)
{
	g_return_if_fail (CHD_IS_DBUS (self));

	self->reload_func = func;
	self->reload_data = user_data;
}
