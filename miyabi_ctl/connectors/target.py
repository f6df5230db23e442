"""Parse the ``ssh:`` value of a host: an ssh_config alias, ``host``, ``user@host``, ``user@host:port``.

Kept apart from the transport so the inventory can validate targets without importing paramiko.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TARGET_RE = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_][A-Za-z0-9_.-]*))"
    r"(?::(?P<port>\d{1,5}))?$"
)


@dataclass(frozen=True)
class SSHTarget:
    host: str
    user: str | None = None
    port: int | None = None


def parse_target(text: str) -> SSHTarget:
    """Split a target; raise ValueError with a readable reason for anything else."""
    match = _TARGET_RE.match(text.strip())
    if not match:
        raise ValueError(f"not an SSH target: {text!r} (use alias, host, user@host or "
                         "user@host:port)")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return SSHTarget(host=match["ip6"] or match["host"], user=match["user"], port=port)
