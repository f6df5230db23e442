"""A run's place in its lifecycle, as one word: what `runs` shows and what notifications follow.

A run moves: launched → ``running`` ⇄ ``waiting`` (for input) → ``ended`` (with commits, ready
to land) or ``ended-empty`` (without); landing takes an ended run to ``landed`` (file backlog:
merged into main), ``pr-open`` → ``pr-merged`` | ``pr-closed`` (GitHub backlog), or refuses it as
``check-failed`` or ``conflicts``. ``stale`` is a claim nothing vouches for; ``failed`` a launch
that did not start; ``recalled`` a run taken back by hand; ``unknown`` what could not be looked at.

The vocabulary is the contract between `runs` (table and JSON), `show`, `land` and `notify`:
its keys never change meaning once released (scripts and the notification state match on them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.run_views import RunView

# key -> how a person reads it
RUN_STATES: dict[str, str] = {
    "running": "running",
    "waiting": "waiting for input",
    "ended": "ended with commits (ready to land)",
    "ended-empty": "ended without commits",
    "check-failed": "check failed",
    "conflicts": "conflicts with main",
    "pr-open": "pull request open",
    "pr-merged": "pull request merged",
    "pr-closed": "pull request closed",
    "landed": "landed",
    "stale": "stale",
    "failed": "launch failed",
    "recalled": "recalled",
    "released": "released",
    "unknown": "unknown",
}


def run_state(view: RunView) -> str:
    """The lifecycle key of one run as `runs` saw it (a key of ``RUN_STATES``)."""
    a = view.assignment
    if not a.active:
        return a.state if a.state in RUN_STATES else "unknown"
    if view.stale:
        return "stale"
    if view.alive is None:
        return "unknown"
    if view.alive:
        return "waiting" if view.condition == "waiting for input" else "running"
    if view.ahead == 0:
        return "ended-empty"
    return "ended" if view.ahead else "unknown"
