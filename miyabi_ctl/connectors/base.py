"""One host, whatever reaches it: the ``Host`` every connector implements and its ``RunResult``.

``Host.run`` is the only way commands reach a machine. Connectors: ``local`` (the controller
itself, as local processes) and ``ssh`` (paramiko). Errors are one hierarchy
(``miyabi_ctl.errors``): unreachable, auth, host key, timeout, command failed.
"""

from __future__ import annotations

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
