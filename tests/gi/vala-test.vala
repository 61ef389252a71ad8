/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The Chat-1.0 API from Vala, through the VAPI that vapigen makes from the built GIR
 * (test_vala.py builds and runs this): a hub, a verifier and a server on 127.0.0.1, one real
 * libsoup WebSocket client, the hub's send_to_all() beside its broadcast signal, GObject's
 * disconnect() on a server, errors of the Chat.Error domain and their wire codes, and a
 * verifier made without a key. A Vala class cannot hold a method and a signal of one name,
 * and a method named like GObject.Object's hides it: this program does not compile then.
 */

const string SECRET = "chathub-vala-test-secret";

delegate bool Condition ();

int failures = 0;

void check (bool condition, string what)
{
	if (condition) {
		print ("ok: %s\n", what);
	} else {
		printerr ("FAIL: %s\n", what);
		failures++;
	}
}

/* Iterates the default main context until @condition holds, for up to five seconds. */
bool wait_until (Condition condition, string what)
{
	var scale = double.parse (Environment.get_variable ("CHATHUB_TEST_TIME_SCALE") ?? "1");
	int64 deadline = get_monotonic_time () + (int64) (5 * 1000000 * (scale > 0 ? scale : 1));

	while (!condition ()) {
		if (get_monotonic_time () > deadline) {
			check (false, "timed out waiting for " + what);
			return false;
		}
		MainContext.default ().iteration (false);
		Thread.usleep (1000);
	}
	return true;
}

string make_token (uint64 user_id) throws GLib.Error
{
	var claims = new Json.Object ();
	claims.set_int_member ("user_id", (int64) user_id);
	claims.set_int_member ("exp", get_real_time () / 1000000 + 3600);
	var rooms = new Json.Array ();
	rooms.add_int_element (3);
	claims.set_array_member ("rooms", rooms);
	return Chat.token_sign (Chat.TokenAlgorithm.HS256, new Bytes (SECRET.data), claims);
}

void test_verifier (Chat.TokenVerifier verifier, string token)
{
	uint64 user_id;
	GLib.Array<uint64>? rooms;

	try {
		check (verifier.verify (token, out user_id, out rooms), "the token verifies");
		check (user_id == 42, "its user id");
		check (rooms != null && rooms.length == 1 && rooms.index (0) == 3, "its rooms claim");
	} catch (GLib.Error e) {
		check (false, "verify(): " + e.message);
	}

	/* made without a key: every token is refused, without a critical (fatal-criticals) */
	var bare = (Chat.TokenVerifier) Object.new (typeof (Chat.TokenVerifier));
	try {
		bare.verify (token, out user_id, out rooms);
		check (false, "a verifier without a key refused the token");
	} catch (Chat.Error.INVALID_TOKEN e) {
		check (true, "a verifier without a key refuses: " + e.message);
	} catch (GLib.Error e) {
		check (false, "a verifier without a key: another error: " + e.message);
	}
}

void test_errors (Chat.Hub hub)
{
	var message = new Chat.Message (Chat.MessageType.MESSAGE);
	message.content = "anyone there?";
	try {
		hub.send_to_user (99, message);
		check (false, "send_to_user(99) threw");
	} catch (Chat.Error.USER_OFFLINE e) {
		check (Chat.Error.get_wire_code_for_error (e) == "user_offline",
		       "Chat.Error.get_wire_code_for_error (e)");
		check (Chat.Error.get_wire_code (e.code) == "user_offline",
		       "Chat.Error.get_wire_code (e.code)");
		check (Chat.Error.get_wire_code (Chat.Error.NOT_MEMBER) == "not_member",
		       "Chat.Error.get_wire_code (Chat.Error.NOT_MEMBER)");
	} catch (GLib.Error e) {
		check (false, "send_to_user(99): another error: " + e.message);
	}
	try {
		new Chat.Message.from_json ("{\"type\":\"shout\"}", -1);
		check (false, "an unknown type threw");
	} catch (Chat.Error.UNKNOWN_TYPE e) {
		check (true, "Chat.Error.UNKNOWN_TYPE from Message.from_json");
	} catch (GLib.Error e) {
		check (false, "Message.from_json: another error: " + e.message);
	}
}

int main ()
{
	var hub = new Chat.Hub ();
	Chat.TokenVerifier verifier;
	string token;
	try {
		verifier = new Chat.TokenVerifier (Chat.TokenAlgorithm.HS256, new Bytes (SECRET.data));
		token = make_token (42);
	} catch (GLib.Error e) {
		printerr ("FAIL: the verifier or the token: %s\n", e.message);
		return 1;
	}
	test_verifier (verifier, token);
	test_errors (hub);

	var server = new Chat.Server (hub, verifier);
	server.ping_interval = 0;

	/* GObject's disconnect(): the handler goes, nothing else happens */
	uint notified = 0;
	ulong handler = server.notify["max-connections"].connect (() => notified++);
	server.max_connections = 50;
	server.disconnect (handler);
	server.max_connections = 60;
	check (notified == 1, "GObject's disconnect() on a server");

	try {
		server.listen ("127.0.0.1", 0);
	} catch (GLib.Error e) {
		printerr ("FAIL: listen(): %s\n", e.message);
		return 1;
	}
	check (server.get_port () > 0, "listening on a port");
	check (server.get_hub () == hub && server.verifier == verifier, "hub and verifier");

	/* a real client: libsoup's WebSocket */
	Chat.Client? registered = null;
	hub.client_registered.connect ((client) => registered = client);
	var session = new Soup.Session ();
	var request = new Soup.Message ("GET", server.get_uri ());
	request.request_headers.append ("Authorization", "Bearer " + token);
	Soup.WebsocketConnection? ws = null;
	session.websocket_connect_async.begin (request, null, null, Priority.DEFAULT, null,
	                                       (obj, result) => {
		try {
			ws = session.websocket_connect_async.end (result);
		} catch (GLib.Error e) {
			check (false, "the WebSocket handshake: " + e.message);
		}
	});
	if (!wait_until (() => ws != null && registered != null, "the client to register"))
		return 1;
	check (registered.user_id == 42 && registered.is_open (), "Chat.Client of user 42");
	check (hub.lookup_client (registered.id) == registered, "lookup_client()");
	var frames = new GenericArray<string> ();
	ws.message.connect ((type, bytes) => {
		var text = new StringBuilder.sized (bytes.length + 1); /* the bytes end without a NUL */
		text.append_len ((string) bytes.get_data (), (ssize_t) bytes.length);
		frames.add (text.str);
	});

	/* the hub: send_to_all() is the method, broadcast the signal */
	uint broadcasts = 0;
	hub.broadcast.connect ((message) => broadcasts++);
	var message = new Chat.Message (Chat.MessageType.MESSAGE);
	message.content = "from Vala";
	try {
		check (hub.send_to_all (message) == 1, "send_to_all() reached the client");
	} catch (GLib.Error e) {
		check (false, "send_to_all(): " + e.message);
	}
	if (wait_until (() => frames.length > 0, "the message")) {
		check (broadcasts == 1, "the broadcast signal");
		try {
			var got = new Chat.Message.from_json (frames[0], -1);
			check (got.get_message_type () == Chat.MessageType.MESSAGE &&
			       got.content == "from Vala" && got.id == message.id,
			       "the client got the message");
		} catch (GLib.Error e) {
			check (false, "the frame: " + e.message);
		}
	}

	ws.close (Soup.WebsocketCloseCode.NORMAL, null);
	wait_until (() => hub.n_clients == 0, "the client to unregister");
	server.stop_listening ();
	check (server.get_port () == 0, "stop_listening()");
	return failures > 0 ? 1 : 0;
}
