"""Launch templates that would hand a value to something that parses it again as code.

``render_template`` makes every placeholder a quoted variable reference, so the shell running
``run.sh`` never executes a value. A program the template starts can still re-parse what it is
given: ``sh -c "agent {title}"`` expands the title into the text ``sh`` then runs, ``eval`` and
``ssh`` (whose remote shell reads the joined command line) do the same, ``xargs`` re-splits its
input, ``python -c``/``perl -e`` run their argument. Such templates are refused, naming the safe
form. What is checked: every simple command (split at ``; & | ( )`` and inside ``$( )``), the
program in command position (after ``VAR=value`` words and wrappers such as ``env``, ``nohup``,
``sudo``, ``timeout 5m``), and which of its words hold a value (a placeholder, or a direct
``$MIYABI_…`` reference).
"""

from __future__ import annotations

import re
import shlex

_VALUE_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_REFERENCE_RE = re.compile(r"\$\{?MIYABI_[A-Z_]+\}?")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPER_ARG_RE = re.compile(r"^(-.*|[A-Za-z_][A-Za-z0-9_]*=.*|\d+(\.\d+)?[smhd]?)$")
# Wrapper options whose value is the next word (sudo -u USER, nice -n 5, timeout -s KILL, …).
_WRAPPER_VALUE_OPTIONS = {"-u", "-g", "-n", "-s", "-k", "-c", "-p", "-C"}
# Shell options whose value is the next word (bash -o pipefail -c …).
_SHELL_VALUE_OPTIONS = {"-o", "+o", "-O", "+O"}

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "tcsh", "csh", "busybox"}
# Interpreters whose option (the key) takes program text as its next word.
CODE_OPTIONS = {"python": "-c", "python3": "-c", "perl": "-e", "ruby": "-e", "node": "-e",
                "php": "-r", "osascript": "-e", "expect": "-c"}
# Programs whose first operand is program text (sed's also follows -e): awk's system(), sed's
# `e` and `w` commands run or write anything. Options that take a value, per program.
SCRIPT_FIRST = {"awk": {"-F", "-v", "-f"}, "gawk": {"-F", "-v", "-f"}, "mawk": {"-F", "-v", "-f"},
                "nawk": {"-F", "-v", "-f"}, "sed": {"-e", "-f", "-l"}}
WRAPPERS = {"env", "nohup", "exec", "command", "nice", "setsid", "stdbuf", "time", "timeout",
            "sudo", "doas", "chrt", "ionice", "taskset", "caffeinate"}
# Programs that always re-parse what follows them, with the safe form to use instead.
REPARSERS = {
    "eval": "drop eval and write the command itself: agent --title {title}",
    "ssh": "ssh joins its arguments into one command line that the remote shell parses again; "
           "run the agent on the host itself (dispatch already runs it there)",
    "su": "su -c hands its command to a shell; run as that user instead (the host's ssh user)",
    "runuser": "runuser -c hands its command to a shell; run as that user instead",
    "xargs": "xargs re-splits its input on blanks and quotes; pass the value as an argument",
    "parallel": "parallel re-parses its arguments as a command line; pass the value as an "
                "argument",
    "tmux": "tmux runs a command string through sh -c; the launch already runs in tmux",
    "screen": "screen runs a command string through a shell; the launch already runs in tmux",
    "watch": "watch runs its command through sh -c",
    "script": "script -c hands its command to a shell",
    "source": "that runs the file as shell code",
    ".": "that runs the file as shell code",
}
SAFE_SHELL_FORM = ("pass values as positional parameters after a single-quoted script: "
                   "sh -c 'agent --title \"$1\" --prompt-file \"$2\"' sh {title} {prompt_file}")


def reparsing_problem(template: str) -> str | None:
    """Why the template would hand a value to a re-parser, or None when it does not."""
    template = _mark_references(template)
    for inner in _substitutions(template):  # "$( … )" read from the text, quotes and all
        problem = reparsing_problem(inner)
        if problem:
            return problem
    try:
        lexer = shlex.shlex(template, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
    except ValueError:
        return None  # unbalanced quotes: render_template refuses it with its own message
    if _holds_value(words) and any(w.rsplit("/", 1)[-1] == "xargs" for w in words):
        return _refusal("xargs", REPARSERS["xargs"])
    segment: list[str] = []
    for word in [*words, ";"]:
        if word and set(word) <= set(";&|()"):
            problem = _command_problem(segment)
            if problem:
                return problem
            segment = []
            continue
        for inner in _substitutions(word):  # "$(…)" inside a quoted word is a command too
            problem = reparsing_problem(inner)
            if problem:
                return problem
        segment.append(word)
    return None


def _mark_references(template: str) -> str:
    """``$MIYABI_TITLE`` written outside single quotes is expanded by run.sh's shell, so for the
    check it is a value like ``{title}``; inside single quotes it is text for the program."""
    out, quote = [], ""
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and quote != "'":
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == "'" and quote != '"':
            quote = "" if quote == "'" else "'"
        elif ch == '"' and quote != "'":
            quote = "" if quote == '"' else '"'
        match = _REFERENCE_RE.match(template, i) if quote != "'" else None
        if match:
            out.append("{value}")
            i = match.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _substitutions(word: str) -> list[str]:
    """The bodies of the ``$( … )`` in a word (after quote removal), outermost first."""
    found = []
    start = word.find("$(")
    while start >= 0:
        depth, i = 0, start + 2
        while i < len(word):
            if word[i] == "(":
                depth += 1
            elif word[i] == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        found.append(word[start + 2:i])
        start = word.find("$(", i)
    return found


def _command_problem(words: list[str]) -> str | None:
    """The verdict for one simple command (its words after quote removal)."""
    i = 0
    while i < len(words) and _ASSIGNMENT_RE.match(words[i]):
        i += 1
    while i < len(words):
        program = words[i].rsplit("/", 1)[-1]
        rest = words[i + 1:]
        if program not in WRAPPERS:
            break
        split = any(w.startswith(("-S", "--split-string")) for w in rest)
        if program == "env" and split and _holds_value(rest):
            return _refusal("env -S", "env -S splits and re-parses its string; write the "
                            "command without it")
        i += 1
        while i < len(words):
            if words[i] in _WRAPPER_VALUE_OPTIONS:
                i += 2
            elif _WRAPPER_ARG_RE.match(words[i]):
                i += 1
            else:
                break
    if i >= len(words):
        return None
    program, rest = words[i].rsplit("/", 1)[-1], words[i + 1:]
    if program == "busybox" and rest:  # busybox sh -c …: the applet is the program
        program, rest = rest[0], rest[1:]
    for k, word in enumerate(rest):  # find … -exec sh -c "…" {} \;: a command within
        if word in ("-exec", "-execdir", "-ok", "-okdir"):
            inner = _command_problem(rest[k + 1:])
            if inner:
                return inner
    if program in SCRIPT_FIRST:
        return _script_problem(program, rest, SCRIPT_FIRST[program])
    if program in REPARSERS and _holds_value(rest):
        return _refusal(program, REPARSERS[program])
    if program in SHELLS or re.fullmatch(r"python3(\.\d+)?", program):
        code_option = "-c" if program not in SHELLS else None
        return _program_text_problem(program, rest, code_option)
    if program in CODE_OPTIONS:
        return _program_text_problem(program, rest, CODE_OPTIONS[program])
    return None


def _program_text_problem(program: str, rest: list[str], code_option: str | None) -> str | None:
    """A shell's ``-c`` string or script file, or an interpreter's ``-c``/``-e`` text, must not
    hold a value; the words after it (positional parameters, ``sys.argv``) may."""
    skip = False
    for j, word in enumerate(rest):
        if skip or word == "--":
            skip = False
            continue
        if code_option is None and word in _SHELL_VALUE_OPTIONS:
            skip = True
            continue
        if word[:1] in "-+" and len(word) > 1:
            takes_text = (code_option is None and word[0] == "-" and not word.startswith("--")
                          and "c" in word[1:]) or word == code_option
            if takes_text:
                text = next((w for w in rest[j + 1:] if w != "--"), "")
                if _holds_value([text]):
                    return _refusal(f"{program} {word}", SAFE_SHELL_FORM if program in SHELLS
                                    else f"read the value from sys.argv/ARGV or the environment "
                                         f"($MIYABI_TITLE), never inside the {word} text")
                return None
            continue
        if _holds_value([word]):  # the script file the shell runs is a value
            return _refusal(program, "that runs the file as code; " + SAFE_SHELL_FORM)
        return None
    return None


def _script_problem(program: str, rest: list[str], value_options: set[str]) -> str | None:
    """awk/sed: the program text (first operand, or sed's ``-e`` value) must not hold a value."""
    safe = (f"pass the value as data instead: a file operand, or awk -v name=… / ENVIRON"
            f"[\"MIYABI_TITLE\"], never inside the {program} program")
    has_script = False
    j = 0
    while j < len(rest):
        word = rest[j]
        if word in value_options:
            text = rest[j + 1] if j + 1 < len(rest) else ""
            if word == "-e" and _holds_value([text]):
                return _refusal(f"{program} -e", safe)
            has_script = has_script or word in ("-e", "-f")
            j += 2
            continue
        if word[:1] == "-" and len(word) > 1:
            j += 1
            continue
        if not has_script and _holds_value([word]):
            return _refusal(program, safe)
        return None
    return None


def _holds_value(words: list[str]) -> bool:
    return any(_VALUE_RE.search(word) for word in words)


def _refusal(what: str, safe: str) -> str:
    return (f"launch template: a value would be parsed again as code by `{what}` (an issue "
            f"title such as $(rm -rf ~) would run); {safe}")
