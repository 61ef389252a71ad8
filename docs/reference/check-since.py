#!/usr/bin/python3
# Checks the DocBook gtkdoc-mkdb wrote: every documented public symbol (function, macro, enum,
# struct, property, signal) carries "Since: 1.0" or later. gtkdoc-check does not look at this.
import glob
import os
import re
import sys

builddir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BUILDDIR", ".")
files = sorted(glob.glob(os.path.join(builddir, "xml", "chat-*.xml")))
if not files:
    sys.exit(f"no gtk-doc output in {builddir}/xml")

block = re.compile(r'<refsect2 id="([^"]+)" role="([^"]+)"(.*?)</refsect2>', re.S)
since = re.compile(r'<para role="since">Since: (?:<link [^>]*>)?(\d+)\.(\d+)')
missing = []
count = 0
for path in files:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for symbol_id, role, body in block.findall(text):
        count += 1
        m = since.search(body)
        if m is None or (int(m.group(1)), int(m.group(2))) < (1, 0):
            missing.append(f"{os.path.basename(path)}: {role} {symbol_id}")

print(f"{count} symbols, {count - len(missing)} with Since: 1.0 or later")
for line in missing:
    print(f"missing Since: {line}")
sys.exit(1 if missing or count == 0 else 0)
