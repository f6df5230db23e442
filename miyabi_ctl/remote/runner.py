"""Run one of miyabi-ctl's shell scripts on a host, with arguments that cannot become code.

Every remote program is a ``.sh`` file beside the Python module that reads its output, with
``remote/lib.sh`` in front of it. The SSH command line is always the same constant, ``sh -s``,
so whatever the user's login shell (sh, bash, zsh, fish, tcsh) it reads it alike; the script
*and its values* travel on stdin: ``set -- 'arg1' 'arg2'`` (each quoted once by ``shlex.quote``
for the POSIX ``sh`` that reads it, never for the login shell), then the script as one function
read whole before it runs. A branch name, a path or an issue title is only data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import cache
from importlib import resources

from miyabi_ctl.connectors.base import Host, RunResult

#: The command line every script runs under. Constant: no value ever rides on it.
COMMAND = "sh -s"


@dataclass(frozen=True)
class Script:
    """A ``.sh`` file shipped in a package of miyabi_ctl, e.g. ``Script("probe", "probe.sh")``.

    ``uses``: shell libraries of the same package (functions only, one job each) sent between
    ``lib.sh`` and the script, e.g. ``Script("phase0", "backup.sh", uses=("snapshot.sh",))``."""

    package: str
    name: str
    uses: tuple[str, ...] = ()

    def text(self) -> str:
        return _load(self.package, self.name, self.uses)


@cache
def _load(package: str, name: str, uses: tuple[str, ...] = ()) -> str:
    def read(pkg: str, file: str) -> str:
        return resources.files(f"miyabi_ctl.{pkg}").joinpath(file).read_text(encoding="utf-8")

    parts = [read("remote", "lib.sh"), *(read(package, lib) for lib in uses), read(package, name)]
    return "\n".join(parts)


WATCHDOG = (
    "miyabi_script \"$@\" </dev/null &\n"
    "miyabi_run=$!\n"
    # Past the limit, TERM the whole process group (this shell, the script, git and its
    # children), as a lost connection alone would not: sshd leaves a command without a pty running.
    "sh -c 'sleep \"$1\" & s=$!; trap \"kill $s 2>/dev/null; exit 0\" TERM; wait $s && kill -TERM 0'"
    " miyabi-watchdog {limit} </dev/null >/dev/null 2>&1 &\n"
    "miyabi_dog=$!\n"
    "wait $miyabi_run\n"
    "miyabi_rc=$?\n"
    "kill $miyabi_dog 2>/dev/null\n"
    "exit $miyabi_rc\n"
)


def guarded(script: str, limit: float | None = None) -> str:
    """The script as one function called with stdin at /dev/null.

    ``sh -s`` reads its script from stdin as it goes, so a command in it that reads stdin (a git
    hook, an operator's ``--check``) would swallow the rest of the script. A function body is
    read whole before it runs, and the call gives every command in it /dev/null instead — at no
    cost, where reading the script into a variable first would start two more processes per call.

    With ``limit`` (seconds), a watchdog ends the script's whole process group when it runs
    longer: a controller that gives up (its timeout) must not leave a push or a clean running.
    """
    body = f"miyabi_script() {{\n{script.rstrip()}\n}}\n"
    if limit is not None:
        return body + WATCHDOG.format(limit=max(1, int(limit + 0.999)))
    return body + "miyabi_script \"$@\" </dev/null\nexit $?\n"


def script_input(script: Script | str, *args: str, limit: float | None = None) -> str:
    """What ``sh -s`` reads: the arguments as ``set --``, then the guarded script."""
    for arg in args:
        if "\0" in arg:
            raise ValueError("a value for a remote script contains a NUL byte")
    text = script.text() if isinstance(script, Script) else script
    values = " ".join(shlex.quote(a) for a in args)
    return (f"set -- {values}\n" if args else "set --\n") + guarded(text, limit)


def run_script(host: Host, script: Script | str, *args: str, timeout: float | None = None,
               check: bool = False, end_on_timeout: bool = False) -> RunResult:
    """Run ``script`` with ``args`` as $1, $2, … on ``host`` in one round trip.

    ``end_on_timeout`` (with ``timeout``): the script ends itself, with everything it started,
    when the timeout passes — for steps that change things (a push, a clean, a merge)."""
    limit = timeout if end_on_timeout else None
    return host.run(COMMAND, stdin=script_input(script, *args, limit=limit), timeout=timeout,
                    check=check)


def key_values(output: str) -> dict[str, str]:
    """The ``key=value`` lines a script prints, as a dict; the first value of a key wins and
    other lines (a stray message, a value split over lines) are ignored."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key, value)
    return values


def records(output: str, first_key: str) -> list[dict[str, str]]:
    """``key=value`` lines grouped into records, each starting at a ``first_key=`` line."""
    found: list[dict[str, str]] = []
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == first_key:
            found.append({})
        if found:
            found[-1].setdefault(key, value)
    return found
