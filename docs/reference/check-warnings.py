#!/usr/bin/python3
# Builds the reference again, exactly as the build does (the command of the chathub-doc
# target, from "meson introspect"), and fails on any warning gtk-doc prints: a property
# without a blurb, a link it cannot resolve, a symbol it cannot place. The build shows those
# warnings but does not fail on them, so without this they would pile up unnoticed.
#
#   check-warnings.py BUILD_ROOT
import json
import re
import subprocess
import sys

build_root = sys.argv[1]
targets = json.loads(subprocess.run(["meson", "introspect", "--targets", build_root],
                                    stdout=subprocess.PIPE, text=True, check=True).stdout)
commands = [source["compiler"] for target in targets
            if target["name"] == "chathub-doc" and target["type"] == "custom"
            for source in target["target_sources"]]
if len(commands) != 1 or "gtkdoc" not in commands[0]:
    sys.exit(f"cannot find the gtk-doc command of the chathub-doc target in {build_root}")

result = subprocess.run(commands[0], cwd=build_root, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=600)
print(result.stdout)
warnings = [line for line in result.stdout.splitlines()
            if re.search(r"warning|error|unresolved|no link for", line, re.I)]
for line in warnings:
    print(f"gtk-doc warns: {line}")
if result.returncode != 0:
    sys.exit(f"the gtk-doc build failed with status {result.returncode}")
print(f"{len(warnings)} warnings")
sys.exit(1 if warnings else 0)
