#!/usr/bin/python3
"""The bash completions of data/completions/ load in bash and stay in step with the programs:

- chathubctl completes exactly the commands "chathubctl --help" lists, the global options
  it documents, and each command's options from "chathubctl COMMAND --help";
- chathubd completes exactly the options "chathubd --help" lists.

Usage: completion-check.py SOURCE_ROOT BUILD_ROOT (CHATHUBD and CHATHUBCTL in the
environment, as tests/meson.build sets them).
"""

import os
import re
import subprocess
import sys
import unittest

SRC = sys.argv[1] if len(sys.argv) > 2 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[2] if len(sys.argv) > 2 else os.path.join(SRC, "_build")
CTL_SCRIPT = os.path.join(SRC, "data", "completions", "chathubctl")
DAEMON_SCRIPT = os.path.join(BUILD, "data", "chathubd-completion")
LONG = re.compile(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", re.M)


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, env=dict(os.environ, LC_ALL="C.UTF-8"))


def complete(script, function, words):
    """What FUNCTION offers for the last of WORDS (the word being completed)."""
    quoted = " ".join("'%s'" % w.replace("'", "'\\''") for w in words)
    # PATH without chathubctl: the completion must not hang on, or need, a running service
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c",
         'set -u; source "$1" || exit 9; COMP_WORDS=(%s); COMP_CWORD=%d; %s; '
         'printf "%%s\\n" "${COMPREPLY[@]+"${COMPREPLY[@]}"}"; complete -p %s'
         % (quoted, len(words) - 1, function, words[0]), "bash", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    if result.returncode != 0 or result.stderr:
        raise AssertionError("bash failed on %s %r: %s%s"
                             % (os.path.basename(script), words, result.stderr, result.stdout))
    lines = result.stdout.splitlines()
    # the last line is "complete -F FUNCTION NAME": the script registered itself
    if not re.match(r"complete -F %s " % function, lines[-1]):
        raise AssertionError("%s does not register %s: %r" % (script, function, lines[-1]))
    return {line for line in lines[:-1] if line}


class ChathubctlCompletion(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        usage = run([os.environ["CHATHUBCTL"], "--help"]).stdout
        block = usage.split("Commands:", 1)[1].split("\n\n")[0]
        cls.commands = set(re.findall(r"^  ([a-z][a-z-]*)\b", block, re.M))
        assert len(cls.commands) >= 5, usage
        cls.globals = set(re.findall(r"--[a-z][a-z-]*", usage)) - {"--room", "--to", "--data",
                                                                  "--reason", "--user-id",
                                                                  "--before", "--limit",
                                                                  "--uri", "--token",
                                                                  "--secret-file", "--wait"}

    def test_commands(self):
        self.assertEqual(complete(CTL_SCRIPT, "_chathubctl", ["chathubctl", ""]), self.commands)
        self.assertEqual(complete(CTL_SCRIPT, "_chathubctl", ["chathubctl", "--json", "dis"]),
                         {"disconnect", "disconnect-user"})

    def test_global_options(self):
        offered = complete(CTL_SCRIPT, "_chathubctl", ["chathubctl", "--"])
        self.assertEqual(offered, self.globals)
        self.assertIn("--version", offered)

    def test_command_options(self):
        for command in sorted(self.commands):
            with self.subTest(command=command):
                own = set(LONG.findall(run([os.environ["CHATHUBCTL"], command, "--help"]).stdout))
                offered = complete(CTL_SCRIPT, "_chathubctl", ["chathubctl", command, "--"])
                self.assertEqual(offered, own)

    def test_values(self):
        self.assertEqual(complete(CTL_SCRIPT, "_chathubctl",
                                  ["chathubctl", "token", "--algorithm", "RS"]), {"RS256"})
        self.assertEqual(complete(CTL_SCRIPT, "_chathubctl",
                                  ["chathubctl", "token", "--key-file", CTL_SCRIPT[:-1]]),
                         {CTL_SCRIPT})
        # no service to ask: no client ids, and no error
        self.assertEqual(complete(CTL_SCRIPT, "_chathubctl", ["chathubctl", "disconnect", ""]),
                         set())


class ChathubdCompletion(unittest.TestCase):

    def test_options(self):
        own = set(LONG.findall(run([os.environ["CHATHUBD"], "--help"]).stdout))
        self.assertGreaterEqual(len(own), 5)
        self.assertEqual(complete(DAEMON_SCRIPT, "_chathubd", ["chathubd", "--"]), own)
        self.assertEqual(complete(DAEMON_SCRIPT, "_chathubd", ["chathubd", "--con"]),
                         {"--config"})

    def test_registered_by_full_path(self):
        with open(DAEMON_SCRIPT) as f:
            text = f.read()
        self.assertNotIn("@", text)
        self.assertRegex(text, r"complete -F _chathubd chathubd /\S+/chathubd\n")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
