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


PR_STATES = {"open": "pr-open", "merged": "pr-merged", "closed": "pr-closed"}


def run_state(view: RunView) -> str:
    """The lifecycle key of one run as `runs` saw it (a key of ``RUN_STATES``).

    A live session is ``running`` or ``waiting`` whatever happened before (a follow-up works on
    a refused run, or on review comments). Then what ``land`` recorded on the claim: a pull
    request merged or closed; a check that failed or a conflict, while the branch is still at
    the commit it was about (new commits make it ``ended`` again, ready for another try); an
    open pull request; a merge whose clean-up is left (or a branch merged into main by hand).
    Then the run's own facts."""
    a = view.assignment
    if not a.active:
        return a.state if a.state in RUN_STATES else "unknown"
    if view.alive:
        return "waiting" if view.condition == "waiting for input" else "running"
    claim = view.claim if view.claim is not None and not view.claim.malformed else None
    land = claim.land if claim else ""
    pr = PR_STATES.get(view.pr_state or "") if claim and claim.pr else None
    if pr in ("pr-merged", "pr-closed"):
        return pr
    if claim and land in ("check-failed", "conflicts") and view.tip in (None, claim.land_tip):
        return land
    if pr or land == "pr-open":
        return pr or "pr-open"
    if land == "landed" or view.merged:
        return "landed"
    if view.stale:
        return "stale"
    if view.alive is None:
        return "unknown"
    if view.ahead == 0:
        return "ended-empty"
    return "ended" if view.ahead else "unknown"


def describe(view: RunView) -> str:
    """The run's state in words, with its figures: ``ended with 2 commits (ready to land)``,
    ``pull request #12 open``, ``check failed``."""
    key = run_state(view)
    claim = view.claim
    if key == "ended" and view.ahead:
        return f"ended with {view.ahead} commit{'s' if view.ahead != 1 else ''} (ready to land)"
    if key.startswith("pr-") and claim is not None and claim.pr:
        return f"pull request #{claim.pr} {key[3:]}"
    if key == "stale":
        return f"{view.assignment.state}, STALE"
    return RUN_STATES[key]
