"""An issue of the backlog, whatever its source (``backlog`` file or ``github``), and its priority."""

from __future__ import annotations

import re
from dataclasses import dataclass

from miyabi_ctl.errors import UsageError

PRIORITIES = ("P0", "P1", "P2", "P3")
DEFAULT_PRIORITY = "P2"
_PRIORITY_RE = re.compile(r"(?<![A-Za-z0-9])p([0-3])(?![0-9])", re.IGNORECASE)


class BacklogError(UsageError):
    """The backlog cannot be read, or its graph is inconsistent (unknown issue, cycle)."""

    exit_code = 2


class NoBacklog(BacklogError):
    """No backlog is configured and none was found."""


@dataclass(frozen=True)
class Issue:
    """One unit of work. ``state`` is ``open`` or ``closed`` (closed = done)."""

    number: int
    title: str
    body: str = ""
    priority: str = DEFAULT_PRIORITY
    parent: int | None = None
    depends: tuple[int, ...] = ()
    needs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    state: str = "open"
    estimate: str | None = None  # a duration (estimate.py), checked when the backlog is read
    agent: str | None = None  # an entry of fleet.yaml's agents: whose template launches it
    tracking: bool = False  # known to have children even when they are not listed (GitHub sub-issues)
    pull_request: str | None = None  # a GitHub pull request depended on: open | closed | merged

    @property
    def done(self) -> bool:
        return self.state == "closed"

    @property
    def rank(self) -> int:
        return PRIORITIES.index(self.priority)


def normalise_priority(text: str | None) -> str | None:
    """``🔥 priority:P0-Critical``, ``priority:P0``, ``P0``, ``p0`` → ``P0``; None if no priority."""
    if not text:
        return None
    match = _PRIORITY_RE.search(str(text))
    return f"P{match.group(1)}" if match else None
