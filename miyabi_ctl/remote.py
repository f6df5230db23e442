"""Run a POSIX sh script on a host with arguments that cannot become code.

Every value that reaches a remote shell goes through here: the script travels on stdin (read
whole before it runs), and the values travel as positional parameters (``"$1"``…), each quoted
once by ``shlex.quote``. A branch name, a path or an issue title is then only ever data.
"""

from __future__ import annotations

import shlex

from miyabi_ctl.transport import Host, RunResult

# Read the whole script from stdin first, then run it with stdin at /dev/null: with a plain
# `sh -s`, any command in the script that reads stdin (a git hook, an operator's --check) would
# swallow the rest of the script.
_RUNNER = 'exec sh -c "$(cat)" sh "$@" </dev/null'


def script_command(*args: str) -> str:
    """The command line that runs a script sent on stdin, with ``args`` as $1, $2, …"""
    return " ".join(["sh", "-c", shlex.quote(_RUNNER), "sh", *(shlex.quote(a) for a in args)])


def run_script(host: Host, script: str, *args: str, timeout: float | None = None,
               check: bool = False) -> RunResult:
    """Run ``script`` with ``args`` as $1, $2, … on ``host`` in one round trip."""
    return host.run(script_command(*args), stdin=script, timeout=timeout, check=check)


def quote(value: str) -> str:
    """Quote one value for a POSIX shell (exported so callers never hand-roll quoting)."""
    return shlex.quote(value)
