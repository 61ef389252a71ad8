#!/usr/bin/python3
"""Fails when a C file is not formatted as .clang-format says: the tool owns whitespace."""
import pathlib
import shutil
import subprocess
import sys

top = pathlib.Path(__file__).resolve().parent.parent
tool = shutil.which("clang-format") or shutil.which("clang-format-14")
if tool is None:
    print("clang-format is not installed (tools/deps installs it)")
    sys.exit(1)
files = sorted(p for d in ("src", "tests", "tools") for p in (top / d).rglob("*.[ch]"))
bad = []
for path in files:
    result = subprocess.run([tool, "--dry-run", "--Werror", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        bad.append(path.relative_to(top))
for path in bad:
    print(f"{path}: not formatted; run: clang-format -i {path}")
print(f"{len(files)} files checked, {len(bad)} not formatted")
sys.exit(1 if bad else 0)
