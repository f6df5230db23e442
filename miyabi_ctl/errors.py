"""Every error miyabi-ctl reports, and the exit code each one means; the CLI maps them once.

The hierarchy says what kind of failure it is, and the kind decides the exit code:

- ``UsageError`` (2): the input is wrong — fleet.yaml, a name, a template, the backlog, a flag;
- ``Refused`` (1): a safety rule said no (nothing was changed);
- ``HostError`` (1): one host could not be reached or did not do its part; it carries the host;
  ``HostLocked`` (75, EX_TEMPFAIL): another apply holds that host — try again later.

``ExitCode`` lists every code a command returns (docs: README, "Exit codes").
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a step failed or was refused; the output says which
    USAGE = 2  # bad input: fleet.yaml, backlog, names, options
    UNKNOWN = 3  # `check` only: the monitoring-plugins UNKNOWN
    LOCKED = 75  # another apply holds the host (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C


class MiyabiError(Exception):
    """Base of every error miyabi-ctl reports to the user as a message, not a traceback."""

    exit_code: int = ExitCode.FAILED


class UsageError(MiyabiError):
    """The input is wrong (a file, a name, a template, an option); nothing was attempted."""

    exit_code = ExitCode.USAGE


class Refused(MiyabiError):
    """A safety rule said no; nothing was changed."""

    exit_code = ExitCode.FAILED


class InventoryError(UsageError):
    """fleet.yaml is missing, malformed or inconsistent. Names file, line, host and key."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None,
                 host: str | None = None, key: str | None = None):
        self.message, self.path, self.line, self.host, self.key = message, path, line, host, key
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        parts = []
        if self.host:
            parts.append(f"host {self.host!r}")
        if self.key:
            parts.append(f"key {self.key!r}")
        context = f"{', '.join(parts)}: " if parts else ""
        return f"{where}{context}{self.message}"


class HostError(MiyabiError):
    """Something went wrong talking to one host; the fleet goes on without it."""

    kind = "error"

    def __init__(self, host: str, message: str):
        self.host, self.message = host, message
        super().__init__(f"{host}: {message}")


class Unreachable(HostError):
    """No connection: DNS, refused, timed out, connection dropped."""

    kind = "unreachable"


class AuthFailed(HostError):
    """Connected, but no offered key was accepted."""

    kind = "auth"


class HostKeyError(HostError):
    """The host's key is unknown or changed; we never silently trust it."""

    kind = "hostkey"


class CommandTimeout(HostError):
    """The remote command did not finish within the command timeout."""

    kind = "timeout"


class CommandFailed(HostError):
    """A remote command exited non-zero where success was required. Carries the result."""

    kind = "command"

    def __init__(self, host: str, message: str, result: object | None = None):
        super().__init__(host, message)
        self.result = result


class HostLocked(HostError):
    """Another apply (from this or another controller) holds this host's lock."""

    kind = "locked"
    exit_code = ExitCode.LOCKED

    def __init__(self, host: str, holder: str, age_s: int):
        self.holder, self.age_s = holder, age_s
        super().__init__(host, f"another apply is running there (lock held by {holder}, "
                               f"for {age_s}s); try again when it has finished")


class InternalError(HostError):
    """A bug met on one host (an unexpected exception); the other hosts go on."""

    kind = "internal"


def exit_code_for(errors: list[BaseException | None]) -> int:
    """One exit code for a command whose hosts failed, given one entry per failed host (None
    where the failure has no exception): LOCKED when every failure is a lock conflict (retry
    later), FAILED otherwise, OK with none."""
    if not errors:
        return ExitCode.OK
    if all(isinstance(e, HostLocked) for e in errors):
        return ExitCode.LOCKED
    return ExitCode.FAILED
