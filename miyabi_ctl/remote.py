"""Run a POSIX sh script on a host with arguments that cannot become code.

Every value that reaches a remote shell goes through here: the script travels on stdin (as one
function, read whole before it runs), and the values travel as positional parameters (``"$1"``…),
each quoted once by ``shlex.quote``. A branch name, a path or an issue title is then only data.
"""

from __future__ import annotations

import shlex

from miyabi_ctl.transport import Host, RunResult


def script_command(*args: str) -> str:
    """``sh -s -- 'arg1' 'arg2'``: the command line that runs a script sent on stdin."""
    return " ".join(["sh", "-s", "--", *(shlex.quote(a) for a in args)])


def guarded(script: str) -> str:
    """The script as one function called with stdin at /dev/null.

    ``sh -s`` reads its script from stdin as it goes, so a command in it that reads stdin (a git
    hook, an operator's ``--check``) would swallow the rest of the script. A function body is
    read whole before it runs, and the call gives every command in it /dev/null instead — at no
    cost, where reading the script into a variable first would start two more processes per call.
    """
    return f"miyabi_script() {{\n{script.rstrip()}\n}}\nmiyabi_script \"$@\" </dev/null\nexit $?\n"


def run_script(host: Host, script: str, *args: str, timeout: float | None = None,
               check: bool = False) -> RunResult:
    """Run ``script`` with ``args`` as $1, $2, … on ``host`` in one round trip."""
    return host.run(script_command(*args), stdin=guarded(script), timeout=timeout, check=check)


def key_values(output: str) -> dict[str, str]:
    """The ``key=value`` lines a script prints, as a dict; the first value of a key wins and
    other lines (a stray message, a value split over lines) are ignored."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key, value)
    return values


def quote(value: str) -> str:
    """Quote one value for a POSIX shell (exported so callers never hand-roll quoting)."""
    return shlex.quote(value)
