"""``land``: the plan. Which runs can go home, how, and why the others cannot.

A run that ended with commits lands one of two ways (``landing`` carries it out):

- **file backlog** (``merge``): issue/N merged onto the remote's current main in a temporary
  worktree on its host, the check run there, main and issue/N pushed together (``phase0/merge.sh``
  — nothing pushed on a conflict or a failed check), then cleaned up as ``recall`` does;
- **GitHub backlog** (``pull-request``): the same merge and check, pushing nothing; then issue/N
  is pushed (read back from the remote) and a pull request that closes the issue is opened. The
  worktree and the claim stay until it is merged; the next ``land`` (or ``dispatch --apply``)
  cleans up (``cleanup``). New commits on a run with an open pull request are checked and pushed
  (``update-pr``).

Refused, changing nothing: a run still working (or waiting for input), one whose worktree holds
uncommitted work, ignored files or nested repositories with work (landing would leave them
behind; ``recall`` backs up what it can), one without commits, a branch that conflicts with main
or whose check fails (found when applied, and recorded on the claim). With ``--all``, runs still
working, without commits or waiting for review are left alone, not refused.

Planning is read-only: one look per run (show.sh), one inspection of its worktree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl.dispatch.claims import ClaimBoard
from miyabi_ctl.dispatch.show import NoSuchRun, RunDetail, RunTarget, find_run, look_run
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.dispatch.worktree import Leftovers, inspect_worktree
from miyabi_ctl.errors import HostError
from miyabi_ctl.fleet import Fleet

LANDS = ("merge", "pull-request", "update-pr", "cleanup")  # actions that change something


@dataclass
class LandItem:
    """One run and what landing it means."""

    target: RunTarget
    action: str  # one of LANDS, refuse, leave
    reason: str
    detail: RunDetail | None = None
    leftovers: Leftovers | None = None
    title: str = ""  # the issue's title (the pull request's)
    pr_state: str | None = None  # open | merged | closed, when a pull request was opened
    steps: list[str] = field(default_factory=list)

    @property
    def issue(self) -> int:
        return self.target.assignment.issue

    @property
    def tip(self) -> str | None:
        return self.detail.view.tip if self.detail else None

    def to_json(self) -> dict[str, Any]:
        a, claim = self.target.assignment, self.target.claim
        return {"issue": a.issue, "host": a.host, "branch": a.branch, "action": self.action,
                "reason": self.reason, "tip": self.tip, "steps": self.steps,
                "commits": self.detail.commit_count if self.detail else None,
                "pr": int(claim.pr) if claim and claim.pr else None,
                "pr_state": self.pr_state}


@dataclass
class LandPlan:
    items: list[LandItem]
    flow: str  # merge | pull-request
    check: str  # '' when none is configured
    remote: str
    main: str
    all_runs: bool = False
    claims_error: str | None = None

    @property
    def landing(self) -> list[LandItem]:
        return [i for i in self.items if i.action in LANDS]

    @property
    def refuses(self) -> bool:
        return any(i.action == "refuse" for i in self.items) or self.claims_error is not None

    def to_json(self) -> dict[str, Any]:
        return {"flow": self.flow, "check": self.check or None, "remote": self.remote,
                "main": self.main, "all": self.all_runs, "claims_error": self.claims_error,
                "runs": [i.to_json() for i in self.items]}


def decide(item: LandItem, *, flow: str, named: bool) -> tuple[str, str]:
    """(action, reason) for one looked-at run. ``named``: the operator asked for this issue (a
    run that is not ready is then refused; with --all it is left alone)."""
    a, claim, detail = item.target.assignment, item.target.claim, item.detail
    not_ready = "refuse" if named else "leave"
    if detail is None or detail.error:
        return "refuse", f"cannot look at it: {detail.error if detail else 'not looked at'}"
    view = detail.view
    if view.alive:
        if view.condition == "waiting for input":
            return not_ready, "its session is waiting for input (answer it with `tell`)"
        return not_ready, "still working: its session is alive"
    if claim is None and not a.active:
        return "refuse", f"the run ended as {a.state}: nothing to land"
    problems = _left_behind(detail, item.leftovers)
    land = claim.land if claim else ""
    pr = claim.pr if claim else ""
    if land == "landed" or item.pr_state == "merged" or view.merged:
        why = (f"pull request #{pr} is merged" if item.pr_state == "merged" else
               f"{a.branch} is merged into main")
        return ("refuse", f"{why}, but " + "; ".join(problems)) if problems else ("cleanup", why)
    if item.pr_state == "closed":
        return "refuse", (f"pull request #{pr} was closed without merging: reopen it on GitHub, "
                          "or recall the run")
    if not detail.branch_exists or not view.tip:
        return "refuse", f"there is no branch {a.branch} on {a.host}"
    if not view.ahead:
        return not_ready, "it has no commits that main lacks: nothing to land"
    if problems:
        return "refuse", "; ".join(problems)
    if pr and land == "pr-open" and claim and claim.land_tip == view.tip:
        return "leave", f"pull request #{pr} is open, waiting for review"
    if claim and land in ("check-failed", "conflicts") and claim.land_tip == view.tip:
        said = claim.land_note or land
        if not named:
            return "refuse", (f"{said}, on this commit; nothing new since (`land {a.issue}` "
                              f"tries again, `tell {a.issue} …` asks the agent to fix it)")
        return ("update-pr" if pr else flow), f"{_commits(view.ahead)}; tried before: {said}"
    if pr:
        return "update-pr", f"new commits for pull request #{pr}: check and push them"
    return flow, f"ended with {_commits(view.ahead)}"


def _commits(n: int) -> str:
    return f"{n} commit{'' if n == 1 else 's'}"


def _left_behind(detail: RunDetail, leftovers: Leftovers | None) -> list[str]:
    """What landing would leave behind when it removes the worktree."""
    problems = []
    if detail.uncommitted:
        problems.append(f"{detail.uncommitted} uncommitted files in the worktree would not land "
                        "(tell the agent to commit them, or recall, which backs them up)")
    if leftovers is not None:
        problems += [f"{r.split(' (--discard', 1)[0]} (recall --discard-… removes them)"
                     for r in leftovers.refusals(discard_ignored=False, discard_nested=False)]
    return problems


def steps_of(item: LandItem, plan: LandPlan) -> list[str]:
    a = item.target.assignment
    tip = (item.tip or "?")[:12]
    check = (f"run the check `{plan.check}` on {a.host} in a temporary worktree: {a.branch} "
             f"({tip}) merged onto {plan.remote}/{plan.main} (fetched first)" if plan.check else
             f"merge {a.branch} ({tip}) onto {plan.remote}/{plan.main} (fetched first) in a "
             "temporary worktree on " + a.host + "; no check (--check or dispatch.test_command)")
    cleanup = (f"clean up as recall does: stop {a.session}, remove the worktree {a.worktree} "
               f"(branch {a.branch} stays), release the claim; the run ends as landed")
    if item.action == "merge":
        return [check, f"push the merge to {plan.remote}/{plan.main} together with {a.branch} "
                       "(nothing is pushed if it conflicts or the check fails)", cleanup]
    if item.action in ("pull-request", "update-pr"):
        steps = [check, f"push {a.branch} to {plan.remote} and read it back"]
        if item.action == "pull-request":
            steps.append(f"open a pull request into {plan.main} closing #{a.issue}, titled "
                         f"{item.title!r} (the label miyabi:{a.host} stays)")
        return [*steps, "the worktree and the claim stay until it is merged; then `land` (or "
                        "`dispatch --apply`) cleans up"]
    if item.action == "cleanup":
        return [cleanup]
    return []


def targets(board: ClaimBoard, store: RunStore, issues: list[int]) -> list[RunTarget | int]:
    """The runs to consider: the named issues' (an int where there is none), or every active
    run (--all: every claim, and this controller's runs made before claims existed)."""
    if issues:
        found: list[RunTarget | int] = []
        for n in issues:
            try:
                found.append(find_run(board, store, n))
            except NoSuchRun:
                found.append(n)
        return found
    runs: list[RunTarget | int] = [RunTarget(store.by_claim(c.oid) or c.as_assignment(), c)
                                   for c in board.claims.values() if not c.malformed]
    runs += [RunTarget(a, None) for a in store.active()
             if not a.claim and a.issue not in board.claims]
    return sorted(runs, key=lambda t: t.assignment.issue if isinstance(t, RunTarget) else t)


def look_all(fleet: Fleet, found: list[RunTarget]) -> dict[int, tuple[RunDetail | None,
                                                                        Leftovers | None, str]]:
    """Each run looked at on its host (hosts in parallel): its detail, its worktree's leftovers,
    or why it could not be looked at."""
    by_host: dict[str, list[RunTarget]] = {}
    for t in found:
        by_host.setdefault(t.assignment.host, []).append(t)
    known = {h.name for h in fleet.inventory.hosts}
    looked: dict[int, tuple[RunDetail | None, Leftovers | None, str]] = {
        t.assignment.issue: (None, None, f"{t.assignment.host} is not in the fleet")
        for t in found if t.assignment.host not in known}

    def on_host(host: Any) -> dict[int, tuple[RunDetail | None, Leftovers | None, str]]:
        out: dict[int, tuple[RunDetail | None, Leftovers | None, str]] = {}
        for t in by_host.get(host.name, []):
            try:
                detail = look_run(host, fleet.inventory, t)
                leftovers = inspect_worktree(host, fleet.inventory, t.assignment.worktree)
            except HostError as exc:
                out[t.assignment.issue] = (None, None, exc.message)
            else:
                out[t.assignment.issue] = (detail, leftovers, "")
        return out

    for outcome in fleet.map(on_host):
        if outcome.error is not None:
            for t in by_host.get(outcome.host, []):
                looked[t.assignment.issue] = (None, None, outcome.error.message)
        else:
            looked.update(outcome.value or {})
    return looked


def plan_land(fleet: Fleet, board: ClaimBoard, store: RunStore, *, issues: list[int],
              flow: str, check: str, titles: dict[int, str],
              pr_states: dict[int, str] | None = None) -> LandPlan:
    """Read-only: every target looked at and decided. ``titles``: the backlog's issue titles
    (a pull request's title); ``pr_states``: where the runs' pull requests stand."""
    inv = fleet.inventory
    plan = LandPlan([], flow, check, inv.repo.remote, inv.repo.main, all_runs=not issues,
                    claims_error=board.error)
    found = targets(board, store, issues)
    runs = [t for t in found if isinstance(t, RunTarget)]
    wanted = [t for t in runs if t.assignment.host in {h.name for h in inv.hosts}]
    looked = look_all(fleet, wanted) if wanted else {}
    for t in found:
        if isinstance(t, int):
            plan.items.append(LandItem(RunTarget(_nobody(t), None), "refuse",
                                       f"issue #{t} has no run to land (see `miyabi-ctl runs`)"))
            continue
        detail, leftovers, error = looked.get(t.assignment.issue, (None, None, ""))
        if detail is None:
            error = error or f"{t.assignment.host} is not in the fleet"
        item = LandItem(t, "refuse", error, detail, leftovers,
                        titles.get(t.assignment.issue) or t.assignment.title,
                        (pr_states or {}).get(t.assignment.issue))
        if detail is not None:
            item.action, item.reason = decide(item, flow=flow, named=bool(issues))
        elif not issues:
            item.action = "refuse"
        item.reason = item.reason or error
        item.steps = steps_of(item, plan)
        plan.items.append(item)
    return plan


def _nobody(issue: int) -> Assignment:
    return Assignment(id=0, issue=issue, title="", host="-", agent="", worktree="", branch="",
                      session="", base=None, log=None, started="", state="none", ended=None,
                      note=None)


def pr_numbers(board: ClaimBoard) -> dict[int, int]:
    return {n: int(c.pr) for n, c in board.claims.items() if c.pr}
