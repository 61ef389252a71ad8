#!/usr/bin/python3
"""Checks the translations in po/ (run by `meson test --suite i18n`).

For every language in po/LINGUAS, po/LANG.po must
* pass `msgfmt --check --check-format` (header, plural forms, printf directives),
* have every message translated and none fuzzy (`msgfmt --statistics`),
* keep the printf directives of every message, flagged c-format or not, in the same
  order (no reordering with %1$s: every form takes the arguments as the original does),
* be complete for the sources as they are now: the messages xgettext finds in the files of
  po/POTFILES.in today (with the keywords of po/meson.build) are all translated in it.
The last check fails as soon as a new or changed message is left untranslated; the fix is
`meson compile -C BUILDDIR chathub-update-po` and translating what it marks.

Usage: po_check.py SOURCE_ROOT
"""
import ast
import pathlib
import re
import subprocess
import sys
import tempfile

# The keywords of meson's 'glib' gettext preset plus the project's own (po/meson.build).
KEYWORDS = ["_", "N_", "C_:1c,2", "NC_:1c,2", "g_dcgettext:2", "g_dngettext:2,3",
            "g_dpgettext2:2c,3", "TR"]
# A printf directive: %%, or %[n$][flags][width][.precision][length]conversion, where the
# length may be a <PRIu64>-style macro as xgettext writes it.
DIRECTIVE = re.compile(r"%(?:%|(\d+\$)?[-+ #0']*(\d+|\*)?(?:\.(\d+|\*))?"
                       r"(?:<PRI[a-zA-Z0-9]+>|hh|h|ll|l|L|q|j|z|Z|t)?([diouxXeEfFgGaAcspnm]?))")


def parse_po(path):
    """Yields (msgid, msgid_plural or None, [msgstr...], flags) for every entry but the header."""
    entries, current, key = [], None, None
    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if not line:
            if current is not None and "msgid" in current:
                entries.append(current)
            current, key = None, None
            continue
        if current is None:
            current = {"flags": set()}
        if line.startswith("#~"):
            continue
        if line.startswith("#,"):
            current["flags"] |= {f.strip() for f in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")$', line)
        if m:
            key = m.group(1)
            current[key] = ast.literal_eval(m.group(2))
        elif line.startswith('"') and key is not None:
            current[key] += ast.literal_eval(line)
        else:
            raise ValueError(f"{path}: cannot read line {raw!r}")
    for e in entries:
        if e["msgid"] == "":
            continue
        strs = [e[k] for k in sorted(k for k in e if k.startswith("msgstr"))]
        yield e["msgid"], e.get("msgid_plural"), strs, e["flags"]


def directives(text):
    return [m.group(0) for m in DIRECTIVE.finditer(text) if m.group(0) != "%%"]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def main():
    top = pathlib.Path(sys.argv[1]).resolve()
    po_dir = top / "po"
    problems = []
    linguas = [w for line in (po_dir / "LINGUAS").read_text().splitlines()
               if not line.lstrip().startswith("#") for w in line.split()]
    if not linguas:
        problems.append("po/LINGUAS names no language")
    for extra in sorted({p.stem for p in po_dir.glob("*.po")} - set(linguas)):
        problems.append(f"po/{extra}.po is not listed in po/LINGUAS")

    with tempfile.TemporaryDirectory(prefix="chathub-po-check-") as tmp:
        pot = pathlib.Path(tmp) / "current.pot"
        xgettext = run(["xgettext", "--from-code=UTF-8", "--language=C", "--no-location",
                        "--directory", str(top), "--files-from", str(po_dir / "POTFILES.in"),
                        "--output", str(pot)] + [f"--keyword={k}" for k in KEYWORDS])
        if xgettext.returncode != 0:
            problems.append(f"xgettext failed:\n{xgettext.stderr}")

        for lang in linguas:
            po = po_dir / f"{lang}.po"
            if not po.exists():
                problems.append(f"po/LINGUAS lists {lang}, but po/{lang}.po does not exist")
                continue
            check = run(["msgfmt", "--check", "--check-format", "--statistics",
                         "--output-file=/dev/null", str(po)], env={"LC_ALL": "C"})
            stats = check.stderr.strip().splitlines()[-1] if check.stderr.strip() else ""
            if check.returncode != 0:
                problems.append(f"msgfmt --check --check-format fails on po/{lang}.po:\n"
                                f"{check.stderr}")
            elif not re.fullmatch(r"\d+ translated messages?\.", stats):
                problems.append(f"po/{lang}.po is not complete: {stats}")
            print(f"po/{lang}.po: {stats}")

            for msgid, plural, strs, flags in parse_po(po):
                # every form keeps the directives of the original, in order: printf takes
                # the same arguments whatever the language
                want = directives(plural if plural is not None else msgid)
                for text in strs:
                    got = directives(text)
                    if text and got != want:
                        problems.append(f"po/{lang}.po: {msgid!r}: directives {got} in the "
                                        f"translation, {want} in the original")

            if xgettext.returncode == 0:
                merged = pathlib.Path(tmp) / f"{lang}.po"
                merge = run(["msgmerge", "--quiet", "--no-fuzzy-matching", "--output-file",
                             str(merged), str(po), str(pot)])
                if merge.returncode != 0:
                    problems.append(f"msgmerge failed for po/{lang}.po:\n{merge.stderr}")
                    continue
                left = run(["msgattrib", "--untranslated", "--no-obsolete", "--no-location",
                            str(merged)]).stdout
                missing = [e[0] for e in parse_po_text(left, tmp)]
                if missing:
                    problems.append(f"po/{lang}.po lacks {len(missing)} message(s) of the "
                                    "current sources (run `meson compile -C BUILDDIR "
                                    "chathub-update-po` and translate them):\n    "
                                    + "\n    ".join(repr(m) for m in missing))

    for problem in problems:
        print("FAIL:", problem)
    print(f"{len(linguas)} languages checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def parse_po_text(text, tmp):
    path = pathlib.Path(tmp) / "untranslated.po"
    path.write_text(text, encoding="utf-8")
    return list(parse_po(path))


if __name__ == "__main__":
    sys.exit(main())
