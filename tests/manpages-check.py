#!/usr/bin/python3
"""Checks the manual pages chathubd(8), chathubctl(1) and chathub.conf(5), as configured in
the build tree:

- each renders without a single warning, with "groff -ww" and with "man --warnings";
- each has the sections an operator looks for, and no placeholder left unconfigured;
- they cannot go stale: every option "chathubd --help" prints is in chathubd(8)'s OPTIONS,
  every command of "chathubctl --help" has its section in chathubctl(1) with every option
  of "chathubctl COMMAND --help", every key src/daemon/chd-config.c reads (also in the
  reference's Configuration chapter, docs/reference/configuration.xml) or
  data/chathub.conf sets is described in its group in chathub.conf(5), every environment
  variable the sources read and every exit status of chathubctl is documented, and the
  pages document no option or key that no longer exists.

  manpages-check.py SOURCE_ROOT MAN_BUILD_DIR   (CHATHUBD and CHATHUBCTL name the binaries)
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

SRC = pathlib.Path(sys.argv[1])
MAN = pathlib.Path(sys.argv[2])
PAGES = {name: MAN / name for name in ("chathubd.8", "chathubctl.1", "chathub.conf.5")}
REQUIRED_SECTIONS = {
    "chathubd.8": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION", "SIGNALS",
                   "D-BUS INTERFACE", "EXIT STATUS", "ENVIRONMENT", "FILES", "SECURITY",
                   "EXAMPLES", "SEE ALSO"],
    "chathubctl.1": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS",
                     "ENVIRONMENT", "EXAMPLES", "SEE ALSO"],
    "chathub.conf.5": ["NAME", "SYNOPSIS", "DESCRIPTION", "[server] GROUP", "[auth] GROUP",
                       "[limits] GROUP", "[dbus] GROUP", "ENVIRONMENT", "FILES", "EXAMPLES",
                       "SEE ALSO"],
}
# English output, whatever the translations and the caller's locale
ENV = dict(os.environ, LC_ALL="C.UTF-8", LANGUAGE="", MANWIDTH="80", MAN_KEEP_STDERR="1")
ENV.pop("MANPAGER", None)
ENV.pop("PAGER", None)

problems = []
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        problems.append(message)
        print("FAIL:", message)


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=ENV, timeout=60, **kwargs)


# ---- roff source -> sections of plain text ---------------------------------------------

ESCAPES = [(r"\-", "-"), (r"\(lq", '"'), (r"\(rq", '"'), (r"\(aq", "'"), (r"\(bu", "*"),
           (r"\(rs", "\\"), (r"\e", "\\"), (r"\&", ""), (r"\%", "")]


def plain(line):
    """The words of one roff line, without requests, fonts or escapes."""
    line = re.sub(r'\\".*$', "", line)
    line = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", line)
    for escape, text in ESCAPES:
        line = line.replace(escape, text)
    if line.startswith((".", "'")):
        line = line.split(None, 1)[1] if " " in line else ""
        line = line.replace('"', " ")
    return line.strip()


def sections(path):
    """[(section, subsection, [(is_tag, text)])]: .TP tags are marked, so that the words
    a list documents can be told from those it merely mentions."""
    result = []
    section = subsection = None
    body = []
    tag_next = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith(('.\\"', "'\\\"")):
            continue
        if raw.startswith((".SH", ".SS")):
            if section is not None:
                result.append((section, subsection, body))
            heading = plain(raw)
            if raw.startswith(".SH"):
                section, subsection = heading, None
            else:
                subsection = heading
            body = []
            continue
        if raw.startswith(".TP"):
            tag_next = True
            continue
        text = plain(raw)
        if text or tag_next:
            body.append((tag_next, text))
        tag_next = False
    if section is not None:
        result.append((section, subsection, body))
    return result


def text_of(secs, section, subsection=None):
    return "\n".join(t for s, ss, body in secs if s == section and (subsection is None or
                                                                    ss == subsection)
                     for _, t in body)


def tags_of(secs, section, subsection=None):
    return [t for s, ss, body in secs if s == section and (subsection is None or ss == subsection)
            for is_tag, t in body if is_tag]


def mentions(text, option):
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text) is not None


OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")


def help_options(text):
    """{long option: short option or None} from a GLib --help text."""
    found = {}
    for match in re.finditer(r"^\s+(?:-(\w), )?(--[a-z][a-z-]*)", text, re.M):
        found[match.group(2)] = "-" + match.group(1) if match.group(1) else None
    return found


# ---- 1. every page renders cleanly -------------------------------------------------------

groff = shutil.which("groff")
man = shutil.which("man")
if groff is None or man is None:
    print("groff and man are needed: install groff-base and man-db (tools/deps does)")
    sys.exit(1)

for name, path in PAGES.items():
    check(path.exists(), f"{path} was not generated")
    if not path.exists():
        continue
    source = path.read_text(encoding="utf-8")
    check(source.isascii(), f"{name}: not plain ASCII (use roff escapes such as \\(lq)")
    check(re.search(r"@[A-Za-z_]+@", source) is None, f"{name}: an @placeholder@ is left")
    for device in ("utf8", "ascii", "ps"):
        result = run([groff, "-ww", "-man", "-z", "-T" + device, str(path)])
        check(result.returncode == 0 and result.stderr == "",
              f"{name}: groff -ww -man -T{device} warns:\n{result.stderr}")
    result = run([man, "--warnings", "-l", str(path)])
    check(result.returncode == 0 and result.stderr == "" and name.split(".")[0].upper()
          in result.stdout, f"{name}: man --warnings -l warns or fails:\n{result.stderr}")
    secs = sections(path)
    names = [s for s, _, _ in secs]
    for wanted in REQUIRED_SECTIONS[name]:
        check(wanted in names, f"{name}: no section {wanted}")

# ---- 2. chathubd(8) and chathubd --help ------------------------------------------------

page = sections(PAGES["chathubd.8"])
options_text = text_of(page, "OPTIONS")
result = run([os.environ["CHATHUBD"], "--help"])
check(result.returncode == 0, "chathubd --help failed")
daemon_options = help_options(result.stdout)
check(len(daemon_options) >= 5, "chathubd --help: cannot find the options:\n" + result.stdout)
for long, short in daemon_options.items():
    for option in filter(None, (long, short)):
        check(mentions(options_text, option),
              f"chathubd.8: option {option} of chathubd --help is not in OPTIONS")
known = set(daemon_options) | {s for s in daemon_options.values() if s}
for tag in tags_of(page, "OPTIONS"):
    for option in OPTION.findall(tag):
        check(option in known, f"chathubd.8: OPTIONS documents {option}, which chathubd "
                               "--help does not know")

# ---- 3. chathubctl(1), chathubctl --help and chathubctl COMMAND --help -------------------

page = sections(PAGES["chathubctl.1"])
ctl = os.environ["CHATHUBCTL"]
result = run([ctl, "--help"])
check(result.returncode == 0, "chathubctl --help failed")
usage = result.stdout
commands = re.findall(r"^  ([a-z][a-z-]*)\b", usage.split("Commands:", 1)[-1].split("\n\n")[0],
                      re.M)
check(len(commands) >= 5, "chathubctl --help: cannot find the commands:\n" + usage)
global_long = set(OPTION.findall(usage.splitlines()[0]))
check("--json" in global_long, "chathubctl --help: no global options in the usage line")
global_long.add("--help")  # every command takes it; OPTIONS says what it does after one
global_options = {long: None for long in global_long}
documented = [ss for s, ss, _ in page if s == "COMMANDS" and ss is not None]
for command in commands:
    check(command in documented, f"chathubctl.1: command {command} has no section in COMMANDS")
for command in documented:
    check(command in commands, f"chathubctl.1: COMMANDS documents {command}, which chathubctl "
                               "--help does not list")
for command in commands:
    result = run([ctl, command, "--help"])
    check(result.returncode == 0, f"chathubctl {command} --help failed")
    own = help_options(result.stdout)
    check(own or command == "token", f"chathubctl {command} --help: no options found")
    section = text_of(page, "COMMANDS", command)
    for long, short in own.items():
        if long in global_long:
            global_options[long] = global_options[long] or short
            continue
        for option in filter(None, (long, short)):
            check(mentions(section, option),
                  f"chathubctl.1: option {option} of \"chathubctl {command} --help\" is not in "
                  f"the section of {command}")
    known = set(own) | {s for s in own.values() if s}
    for tag in tags_of(page, "COMMANDS", command):
        for option in OPTION.findall(tag):
            check(option in known, f"chathubctl.1: the section of {command} documents {option}, "
                                   f"which \"chathubctl {command} --help\" does not know")
options_text = text_of(page, "OPTIONS")
for long, short in global_options.items():
    for option in filter(None, (long, short)):
        check(mentions(options_text, option), f"chathubctl.1: global option {option} is not in "
                                              "OPTIONS")
known = set(global_options) | {s for s in global_options.values() if s} | {"--help", "-h",
                                                                          "--version"}
for tag in tags_of(page, "OPTIONS"):
    for option in OPTION.findall(tag):
        check(option in known, f"chathubctl.1: OPTIONS documents {option}, which chathubctl "
                               "does not take before a command")
        # and "chathubctl --help" tells about each of them, --version included
        check(not option.startswith("--") or option in OPTION.findall(usage),
              f"chathubctl --help does not mention {option}, which OPTIONS documents")
ctl_source = (SRC / "src" / "ctl" / "chathubctl.c").read_text(encoding="utf-8")
statuses = {"0"} | set(re.findall(r"^#define EXIT_\w+ (\d+)", ctl_source, re.M))
check(len(statuses) >= 4, "chathubctl.c: cannot find the EXIT_ statuses")
exit_tags = set(tags_of(page, "EXIT STATUS"))
for status in sorted(statuses):
    check(status in exit_tags, f"chathubctl.1: exit status {status} is not in EXIT STATUS")
for status in sorted(exit_tags - statuses):
    check(False, f"chathubctl.1: EXIT STATUS documents {status}, which chathubctl.c does not use")

# ---- 4. chathub.conf(5), chd-config.c and data/chathub.conf --------------------------------

page = sections(PAGES["chathub.conf.5"])
config_source = (SRC / "src" / "daemon" / "chd-config.c").read_text(encoding="utf-8")
read = set(re.findall(r'read_(?:uint|string|boolean|choice|list)\s*\(\s*file\s*,\s*"([a-z]+)"\s*,\s*"([a-z-]+)"',
                      config_source))
check(len(read) >= 10, "chd-config.c: cannot find the keys it reads")
documented = set()
for section, _, body in page:
    group = re.fullmatch(r"\[([a-z]+)\] GROUP", section)
    if group:
        for is_tag, text in body:
            key = re.match(r"([a-z][a-z-]*)=", text) if is_tag else None
            check(not is_tag or key, f"chathub.conf.5: [{group.group(1)}] has a list entry that "
                                     f"is not key=VALUE: {text}")
            if key:
                documented.add((group.group(1), key.group(1)))
for group, key in sorted(read - documented):
    check(False, f"chathub.conf.5: [{group}] {key}, read by chd-config.c, is not described")
for group, key in sorted(documented - read):
    check(False, f"chathub.conf.5: [{group}] {key} is described, but chd-config.c does not read it")
example = set()
group = None
for line in (SRC / "data" / "chathub.conf").read_text(encoding="utf-8").splitlines():
    header = re.fullmatch(r"\[([a-z]+)\]", line.strip())
    if header:
        group = header.group(1)
    key = re.match(r"#?([a-z][a-z-]*)=", line)
    if key and group:
        example.add((group, key.group(1)))
check(len(example) >= 10, "data/chathub.conf: cannot find its keys")
for group, key in sorted(example - documented):
    check(False, f"chathub.conf.5: [{group}] {key}, set in data/chathub.conf, is not described")

# ---- 4b. the reference's Configuration chapter lists every key too -------------------------

reference = (SRC / "docs" / "reference" / "configuration.xml").read_text(encoding="utf-8")
in_reference = set(re.findall(r"<literal>\[([a-z]+)\] ([a-z-]+)</literal></entry>", reference))
for group, key in sorted(read - in_reference):
    check(False, f"docs/reference/configuration.xml: [{group}] {key}, read by chd-config.c, is "
                 "not in the table")
for group, key in sorted(in_reference - read):
    check(False, f"docs/reference/configuration.xml: [{group}] {key} is in the table, but "
                 "chd-config.c does not read it")

# ---- 5. the environment the programs read ------------------------------------------------

getenv = re.compile(r'g_getenv\s*\(\s*"([A-Z_]+)"')
for page_name, folders in (("chathubd.8", ("daemon", "libchat")), ("chathubctl.1", ("ctl",))):
    variables = {v for folder in folders for f in sorted((SRC / "src" / folder).glob("*.c"))
                 for v in getenv.findall(f.read_text(encoding="utf-8"))}
    text = text_of(sections(PAGES[page_name]), "ENVIRONMENT")
    for variable in sorted(variables):
        check(mentions(text, variable),
              f"{page_name}: {variable}, read by src/{'|'.join(folders)}, is not in ENVIRONMENT")

print(f"manual pages: {checks} checks, {len(problems)} problems")
sys.exit(1 if problems else 0)
