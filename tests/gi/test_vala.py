#!/usr/bin/python3
"""Chat-1.0 from Vala: vapigen makes a VAPI from the built GIR, valac compiles vala-test.vala
against it, the C compiler links the result with the built library, and the program runs
against a real server of its own (it prints one line per check).

A Vala binding that compiles without a warning is a strict test of a GObject API: vapigen
silently drops a method that has a signal's name (chat_hub_broadcast() was unreachable from
Vala), a method named like GObject.Object's hides it (server.disconnect (handler_id)), and a
function taking an error domain's enum becomes an instance method of the errordomain, which
Vala cannot call (chat_error_get_wire_code() did). Warnings of vapigen and valac fail.

    test_vala.py BUILD/src/libchat/Chat-1.0.gir SRC/src/libchat BUILD/src/libchat CC [ARGS...]

Environment: VAPIGEN and VALAC (tests/meson.build sets them), else from PATH.
"""

import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ["gio-2.0", "json-glib-1.0", "libsoup-3.0"]


def run(argv, **kwargs):
    print("$", shlex.join(argv), flush=True)
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.exit(f"FAIL: {os.path.basename(argv[0])} exited with {result.returncode}")
    return result.stdout


def main(gir, source_dir, build_dir, cc):
    scale = float(os.environ.get("CHATHUB_TEST_TIME_SCALE", "1") or "1")
    with tempfile.TemporaryDirectory(prefix="chathub-vala-") as tmp:
        pkgs = [arg for name in PACKAGES for arg in ("--pkg", name)]
        output = run([os.environ.get("VAPIGEN", "vapigen"), "--library", "Chat-1.0", "--directory", tmp] + pkgs + [gir])
        if ": warning:" in output:
            sys.exit("FAIL: vapigen warned about Chat-1.0.gir")

        run([os.environ.get("VALAC", "valac"), "--ccode", "--fatal-warnings", "--vapidir", tmp, "--pkg", "Chat-1.0",
             "--directory", tmp] + pkgs + [os.path.join(HERE, "vala-test.vala")])

        flags = run(["pkg-config", "--cflags", "--libs"] + PACKAGES).split()
        program = os.path.join(tmp, "vala-test")
        # valac's C is not ours to keep free of warnings: -w
        run(cc + ["-w", "-o", program, os.path.join(tmp, "vala-test.c"),
                  "-I" + source_dir, "-I" + build_dir, "-L" + build_dir, "-lchathub-1.0"]
            + flags)

        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = build_dir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
        run([program], env=env, timeout=60 * scale)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
