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
    """A ``.sh`` file shipped in a package of miyabi_ctl, e.g. ``Script("probe", "probe.sh")``."""

    package: str
    name: str

    def text(self) -> str:
        return _load(self.package, self.name)


@cache
def _load(package: str, name: str) -> str:
    def read(pkg: str, file: str) -> str:
        return resources.files(f"miyabi_ctl.{pkg}").joinpath(file).read_text(encoding="utf-8")

    return read("remote", "lib.sh") + "\n" + read(package, name)


def guarded(script: str) -> str:
    """The script as one function called with stdin at /dev/null.

    ``sh -s`` reads its script from stdin as it goes, so a command in it that reads stdin (a git
    hook, an operator's ``--check``) would swallow the rest of the script. A function body is
    read whole before it runs, and the call gives every command in it /dev/null instead — at no
    cost, where reading the script into a variable first would start two more processes per call.
    """
    return f"miyabi_script() {{\n{script.rstrip()}\n}}\nmiyabi_script \"$@\" </dev/null\nexit $?\n"


def script_input(script: Script | str, *args: str) -> str:
    """What ``sh -s`` reads: the arguments as ``set --``, then the guarded script."""
    for arg in args:
        if "\0" in arg:
            raise ValueError("a value for a remote script contains a NUL byte")
    text = script.text() if isinstance(script, Script) else script
    values = " ".join(shlex.quote(a) for a in args)
    return f"set -- {values}\n" + guarded(text) if args else "set --\n" + guarded(text)


def run_script(host: Host, script: Script | str, *args: str, timeout: float | None = None,
               check: bool = False) -> RunResult:
    """Run ``script`` with ``args`` as $1, $2, … on ``host`` in one round trip."""
    return host.run(COMMAND, stdin=script_input(script, *args), timeout=timeout, check=check)


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
