#!/usr/bin/python3
"""Fails when a source file marks text for translation but is missing from po/POTFILES.in,
or when POTFILES.in names a file that does not exist."""
import pathlib
import re
import sys

top = pathlib.Path(__file__).resolve().parent.parent
listed = {
    line.strip()
    for line in (top / "po" / "POTFILES.in").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}
marker = re.compile(r'\b(?:_|N_|C_|NC_|TR)\s*\(\s*"')
using = {
    str(path.relative_to(top))
    for path in sorted((top / "src").rglob("*.c"))
    if marker.search(path.read_text(encoding="utf-8"))
}
problems = [f"{name} uses _() but is not in po/POTFILES.in" for name in sorted(using - listed)]
problems += [f"po/POTFILES.in lists {name}, which does not exist" for name in sorted(listed)
             if not (top / name).exists()]
for problem in problems:
    print(problem)
print(f"{len(using)} files use gettext, {len(listed)} listed")
sys.exit(1 if problems else 0)
