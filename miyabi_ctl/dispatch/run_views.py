"""``runs``: every controller's assignments — the claims on the remote, looked at on their hosts
(one round trip per host) — and this controller's ended ones from its cache; which are stale."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.claims import DEFAULT_STALE_AFTER_S, Claim, ClaimKeeper
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.service import read_claims
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.errors import InventoryError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory


def stale_after(inventory: Inventory) -> float:
    """``dispatch.stale_after`` in fleet.yaml (e.g. ``30m``), else 30 minutes."""
    from miyabi_ctl.phase0.prune import parse_duration

    raw = inventory.dispatch.get("stale_after")
    if raw is None:
        return DEFAULT_STALE_AFTER_S
    try:
        return parse_duration(str(raw))
    except ValueError as exc:
        raise InventoryError(f"{inventory.source}: dispatch.stale_after: {exc}") from None


@dataclass(frozen=True)
class RunView:
    """One assignment as `runs` shows it."""

    assignment: Assignment
    alive: bool | None = None  # None: not looked at (ended) or the host could not be reached
    ahead: int | None = None
    merged: bool = False
    issue_closed: bool = False
    last_activity: int | None = None
    error: str | None = None
    condition: str | None = None  # agent_run.condition_of, for a run looked at; else None
    exit_status: int | None = None
    claim: Claim | None = None  # the claim on the remote (None: ended, or claims unreadable)
    stale: bool = False  # nothing vouches for the claim any more (see ``judge_stale``)
    tip: str | None = None  # the branch's commit, as its host saw it
    pr_state: str | None = None  # its pull request: open | merged | closed; None: none or unknown

    @property
    def done(self) -> bool:
        return self.merged or self.issue_closed


# Asks where the runs' pull requests stand: {issue: PR number} -> {issue: open|merged|closed}
# (those it could not ask are left out).
PullStates = Callable[[dict[int, int]], dict[int, str]]


@dataclass
class RunsReport:
    views: list[RunView]
    claims_error: str | None = None  # the claims could not be read: the cache is shown


def judge_stale(*, alive: bool | None, last_activity: int | None, host_now: int | None,
                unreachable_since: float | None, now: float, limit: float) -> bool:
    """Is nothing vouching for a claim any more? Each clock is only compared with itself.

    - its host answers: the session is gone and nothing happened in the worktree (commit, log
      write) for ``limit`` — both times on the host's clock;
    - its host does not answer (or left the fleet): this controller has seen it so for ``limit``
      — both times on this controller's clock.
    The claim's own time, written by another controller, is never compared with anything."""
    if alive is not None:
        if alive or host_now is None:
            return False
        return last_activity is None or host_now - last_activity >= limit
    return unreachable_since is not None and now - unreachable_since >= limit


def collect_runs(inventory: Inventory, store: RunStore, graph: Graph | None,
                 keeper: ClaimKeeper, *, forks: int | None = None,
                 timeout: float | None = None, now: float | None = None,
                 pulls: PullStates | None = None) -> RunsReport:
    """Every assignment: the claims on the remote (every controller's), looked at on their hosts
    (one round trip per host), and this controller's ended ones from its cache; with ``pulls``,
    where the pull requests that ``land`` opened stand."""
    from miyabi_ctl.dispatch.agent_run import RunFacts, look

    limit = stale_after(inventory)
    now = time.time() if now is None else now
    board = read_claims(keeper, store)
    # (assignment, its claim): the claims when readable (ours shown from the cache, with its
    # title and log), then assignments older than claims; else the cache alone.
    active: list[tuple[Assignment, Claim | None]] = []
    if board.readable:
        mine = {a.claim: a for a in store.active() if a.claim}
        for claim in board.claims.values():
            assignment = mine.get(claim.oid) or claim.as_assignment()
            if claim.malformed:
                assignment = replace(assignment, note=claim.holder())
            active.append((assignment, claim))
        active += [(a, None) for a in store.active()
                   if not a.claim and a.issue not in board.claims]
    else:
        active = [(a, None) for a in store.active()]
    history = [a for a in store.all() if not a.active]
    known = {h.name for h in inventory.hosts}
    looked = [a for a, c in active if a.host in known and not (c and c.malformed)]
    names = sorted({a.host for a in looked})
    facts: dict[int, RunFacts] = {}
    errors: dict[str, str] = {}
    if names:
        with Fleet(inventory, names, forks=forks, connect_timeout=timeout) as fleet:
            def on_host(host: Host) -> dict[int, RunFacts]:
                mine = [(a.issue, a.branch, a.base or "", a.log or "")
                        for a in looked if a.host == host.name]
                return look(host, inventory, mine)

            for outcome in fleet.map(on_host):
                if outcome.error is not None:
                    errors[outcome.host] = outcome.error.message
                else:
                    facts.update(outcome.value or {})
    unanswered = {c.oid for a, c in active if c and (a.host not in known or a.host in errors)}
    since = store.unreachable_since(unanswered, now) if board.readable else {}
    prs = {c.issue: int(c.pr) for _a, c in active if c and c.pr}
    pr_states = pulls(prs) if pulls and prs else {}
    views = []
    for a, claim in sorted(active, key=lambda pair: pair[0].issue):
        closed = bool(graph and a.issue in graph.issues and graph.issues[a.issue].done)
        f = facts.get(a.issue) if a.host in known and a.host not in errors else None
        error = None
        if claim is not None and claim.malformed:
            error = claim.holder()
        elif a.host not in known:
            error = f"host {a.host} is not in the fleet"
        elif a.host in errors:
            error = errors[a.host]
        elif f is None:
            error = "no answer for this run"
        stale = claim is not None and judge_stale(
            alive=f.alive if f else None, last_activity=f.last_activity if f else None,
            host_now=f.host_now if f else None, unreachable_since=since.get(claim.oid), now=now,
            limit=limit)
        pr_state = pr_states.get(a.issue)
        if f is None:
            views.append(RunView(a, issue_closed=closed, error=error, claim=claim, stale=stale,
                                 pr_state=pr_state))
        else:
            views.append(RunView(a, alive=f.alive, ahead=f.ahead, merged=f.merged,
                                 issue_closed=closed, last_activity=f.last_activity,
                                 condition=f.condition, exit_status=f.exit_status,
                                 claim=claim, stale=stale, tip=f.tip, pr_state=pr_state))
    for a in history:
        closed = bool(graph and a.issue in graph.issues and graph.issues[a.issue].done)
        views.append(RunView(a, issue_closed=closed, merged=a.state == "landed"))
    return RunsReport(views, board.error)
