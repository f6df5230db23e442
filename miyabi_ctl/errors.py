"""One error hierarchy for the whole library; the CLI maps it to messages and exit codes once."""

from __future__ import annotations

from pathlib import Path


class MiyabiError(Exception):
    """Base of every error miyabi-ctl reports to the user as a message, not a traceback."""

    exit_code = 1


class InventoryError(MiyabiError):
    """fleet.yaml is missing, malformed or inconsistent. Names file, line, host and key."""

    exit_code = 2

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
