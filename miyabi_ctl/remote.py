"""Run a POSIX sh script on a host with arguments that cannot become code.

Every value that reaches a remote shell goes through here: the script travels on stdin, and the
values travel as positional parameters (``"$1"``…), each quoted once by ``shlex.quote``. A branch
name, a path or an issue title is then only ever data.
"""

from __future__ import annotations

import shlex

from miyabi_ctl.transport import Host, RunResult


def script_command(*args: str) -> str:
    """``sh -s -- 'arg1' 'arg2'``: the command line that runs a script read from stdin."""
    return " ".join(["sh", "-s", "--", *(shlex.quote(a) for a in args)])


def run_script(host: Host, script: str, *args: str, timeout: float | None = None,
               check: bool = False) -> RunResult:
    """Run ``script`` with ``args`` as $1, $2, … on ``host`` in one round trip."""
    return host.run(script_command(*args), stdin=script, timeout=timeout, check=check)


def quote(value: str) -> str:
    """Quote one value for a POSIX shell (exported so callers never hand-roll quoting)."""
    return shlex.quote(value)
