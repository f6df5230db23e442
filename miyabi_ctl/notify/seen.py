"""What one command saw, in the words notifications compare: each host's health level, each run's
lifecycle key. Only what was really looked at is in it, so a partial look (``status HOST``, a
host that did not answer) can never read as a change of what was not looked at."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from miyabi_ctl.dispatch.lifecycle import run_state

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.run_views import RunView
    from miyabi_ctl.status.health import HostStatus


@dataclass(frozen=True)
class HostSeen:
    level: str  # ok | warning | critical | unreachable (status.health.LEVELS)
    reason: str = ""  # its problems, or why it could not be reached (remote text: untrusted)


@dataclass(frozen=True)
class RunSeen:
    state: str  # a key of dispatch.lifecycle.RUN_STATES, never "unknown"
    host: str = ""
    title: str = ""  # the issue's title (untrusted)
    commits: int | None = None


@dataclass
class Seen:
    """One command's look. ``all_runs``: every run was looked at (``runs`` with the claims
    readable), so runs seen for the first time are news, not a baseline."""

    command: str
    hosts: dict[str, HostSeen] = field(default_factory=dict)
    runs: dict[int, RunSeen] = field(default_factory=dict)
    all_runs: bool = False


def hosts_seen(statuses: Iterable[HostStatus]) -> dict[str, HostSeen]:
    """Each host `status` judged: its level, and its problems (or its error) as the reason."""
    return {s.name: HostSeen(s.level, "; ".join(s.problems)) for s in statuses}


def runs_seen(views: Iterable[RunView]) -> dict[int, RunSeen]:
    """Each issue's current run: its active assignment when it has one, else its latest ended
    one. An issue whose current run could not be looked at (lifecycle ``unknown``: its host did
    not answer) is left out — never "ended", never an older run's state."""
    current: dict[int, RunView] = {}
    for view in views:
        issue = view.assignment.issue
        held = current.get(issue)
        if held is None or view.assignment.active or not held.assignment.active:
            current[issue] = view  # active beats ended; among ended, the later (store order)
    out = {}
    for issue, view in current.items():
        state = run_state(view)
        if state != "unknown":
            a = view.assignment
            out[issue] = RunSeen(state, a.host, a.title, view.ahead)
    return out

