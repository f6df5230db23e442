"""One host, whatever reaches it: the ``Host`` every connector implements and its ``RunResult``.

``Host.run`` is the only way commands reach a machine. Connectors: ``local`` (the controller
itself, as local processes) and ``ssh`` (paramiko). Errors are one hierarchy
(``miyabi_ctl.errors``): unreachable, auth, host key, timeout, command failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from miyabi_ctl.errors import CommandFailed
from miyabi_ctl.inventory import HostSpec


@dataclass(frozen=True)
class RunResult:
    """A finished command: where it ran, how it ended, what it printed."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


#: Where a connector says something the operator should know that is not an error (the CLI
#: prints it on stderr); by default the ``miyabi_ctl`` logger.
Warn = Callable[[str], None]


def log_warning(message: str) -> None:
    logging.getLogger("miyabi_ctl").warning(message)


def unrecorded_key(host: str, path: object, reason: str) -> str:
    """accept-new met a known_hosts it cannot write: what ssh says ("Failed to add the host to
    the list of known hosts"), in words, with the file; the connection goes on, as ssh's does."""
    return (f"{host}: cannot add its new host key to {path} ({reason}); it is trusted for this "
            "connection only, as ssh does under accept-new, and will be new again next time")


class Host:
    """One machine of the fleet. Subclasses say how commands get there."""

    def __init__(self, spec: HostSpec):
        self.spec = spec
        self.name = spec.name

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None,
            check: bool = False) -> RunResult:
        result = self._run(command, stdin, timeout)
        if check and not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            raise CommandFailed(self.name, f"exit {result.exit_code}: {detail[0]}", result)
        return result

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
        raise NotImplementedError

    def close(self) -> None:
        """Drop any open connection; the next run reconnects."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
