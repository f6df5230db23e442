"""Dispatch as steps: see the fleet, plan the placement, apply it host by host; and the
follow-ups — look at runs, recall one.

Planning has no side effects (one probe per host, one read of the claims on the remote, then
``placement.place``). Applying takes each host's lock, takes the issue's claim on the remote
*before* launching (of two controllers racing for it, only the one that wins the swap launches),
launches, releases the claim if the launch fails, and records every step in the audit log. One
host failing is reported and the others go on. The run store is this controller's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.claims import (
    Claim,
    ClaimBoard,
    ClaimHeld,
    ClaimKeeper,
    ClaimsUnavailable,
    new_claim,
)
from miyabi_ctl.dispatch.estimate import Effort, format_hours
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.launch import Launched, branch_name, launch, session_name, worktree_path
from miyabi_ctl.dispatch.placement import (
    Agents,
    Candidate,
    HostFigures,
    Placement,
    Plan,
    consider,
    place,
)
from miyabi_ctl.dispatch.schedule_plan import Schedule, build_schedule
from miyabi_ctl.dispatch.store import AlreadyAssigned, Assignment, RunStore
from miyabi_ctl.errors import ExitCode, HostError, HostLocked, MiyabiError, Refused
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.state import install_id
from miyabi_ctl.status.collect import collect_status

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.github import GitHubSource
    from miyabi_ctl.status.health import HostStatus

# Exclusions `assign --force` may override: they are about capacity, not about safety.
FORCEABLE = ("tags", "slots", "no-max")


def default_agent(inventory: Inventory) -> str:
    return str(inventory.dispatch.get("agent") or "claude")


def agents_of(inventory: Inventory, override: str | None = None) -> Agents:
    """``--agent`` for every issue, else each issue's own, else ``dispatch.agent``."""
    return Agents(list(inventory.launchers), default_agent(inventory), override)


# Announces an assignment where people look (a GitHub label): (issue, host, added?) -> a note
# when it could not be done, else None.
Announce = Callable[[int, str, bool], str | None]
# Cleans up a run whose work landed (``landing.cleanup_landed``): (ok, message), or None when it
# cannot here (its host is not in this command's fleet) and the claim is only released.
Cleanup = Callable[[Claim], "tuple[bool, str] | None"]


def read_claims(keeper: ClaimKeeper, store: RunStore, prefer: list[str] | None = None
                ) -> ClaimBoard:
    """Every claim on the remote (one fetch through one host); the cache catches up with it."""
    board = keeper.read(prefer or [])
    if board.readable:
        store.reconcile({n: c.oid for n, c in board.claims.items()}, board.read_at)
    return board


def active_assignments(board: ClaimBoard, store: RunStore) -> list[Assignment]:
    """Every controller's assignments (the claims); our cache's when they could not be read.
    Assignments made before claims existed (no claim recorded) come from the cache either way."""
    legacy = [a for a in store.active() if not a.claim]
    if not board.readable:
        return store.active()
    return board.assignments() + [a for a in legacy if a.issue not in board.claims]


def assigned_map(board: ClaimBoard, store: RunStore) -> dict[int, str]:
    found = {a.issue: f"{a.host} ({a.session})" for a in active_assignments(board, store)}
    if board.readable:
        found.update(board.assigned())
    return found


def github_source(inventory: Inventory) -> GitHubSource:
    from miyabi_ctl.dispatch.github import backlog_source

    source = backlog_source(inventory.backlog)
    assert source is not None, "only called for a GitHub backlog"
    return source


def github_announcer(inventory: Inventory, source: str) -> Announce | None:
    """With a GitHub backlog, label the issue ``miyabi:<host>`` while it is claimed."""
    if not source.startswith("github:"):
        return None
    from miyabi_ctl.dispatch.github import label_assignment

    github = github_source(inventory)
    return lambda number, host, add: label_assignment(github, number, host, add=add)


@dataclass
class FleetView:
    """What planning sees: each host's figures, and the claims."""

    figures: list[HostFigures]
    board: ClaimBoard
    hosts: list[HostStatus] = field(default_factory=list)  # as judged (for notifications)
    running: list[Assignment] = field(default_factory=list)  # every controller's active runs


def see_hosts(fleet: Fleet, store: RunStore, keeper: ClaimKeeper) -> FleetView:
    """One probe per host, then the claims (read through a host that answered), combined."""
    from miyabi_ctl.dispatch.placement import figures_from_status

    status = collect_status(fleet)
    board = read_claims(keeper, store, [h.name for h in status.hosts if h.reachable])
    running = active_assignments(board, store)
    return FleetView(figures_from_status(status.hosts, running), board, hosts=status.hosts,
                     running=running)


def plan_schedule(graph: Graph, view: FleetView, store: RunStore, inventory: Inventory, *,
                  agent: str | None = None, hours_per_day: float | None = None,
                  start: datetime | None = None, now: datetime | None = None) -> Schedule:
    """The backlog scheduled on the hosts as this probe saw them (docs/dispatch.md#schedule)."""
    now = now or datetime.now(UTC)
    schedule = build_schedule(graph, view.figures, view.running,
                              effort=Effort.of(inventory.schedule, hours_per_day),
                              agents=agents_of(inventory, agent), start=start or now, now=now,
                              assigned=assigned_map(view.board, store))
    schedule.claims_error = view.board.error
    return schedule


def plan_dispatch(graph: Graph, view: FleetView, store: RunStore, inventory: Inventory, *,
                  agent: str | None = None, max_new: int | None = None) -> Plan:
    """Today's placements: the schedule's first ones (ready issues in its order, each on the
    host it starts there on), then why every other open issue waits."""
    schedule = plan_schedule(graph, view, store, inventory, agent=agent)
    position = {n: i for i, n in enumerate(schedule.order)}
    states = graph.states(assigned_map(view.board, store), schedule.effort)
    states.sort(key=lambda s: position.get(s.issue.number, len(position)))
    plan = place(states, view.figures, agent=agents_of(inventory, agent), max_new=max_new,
                 prefer=schedule.first_placements())
    ready = [s for s in states if s.status == "ready"]
    plan.ordering = (
        "Ready issues in the order of `miyabi-ctl schedule` (priority, then the longest remaining "
        "chain of work: the critical path), so these placements are the schedule's first ones"
        + (f"; this backlog's order: {schedule.rule}" if schedule.rule != "critical path" else "")
        + (": " + ", ".join(f"#{s.issue.number} ({s.issue.priority}, chain "
                            f"{format_hours(s.chain)})" for s in ready) if ready else ""))
    return plan


class AssignRefused(Refused):
    """`assign` cannot place this issue on this host."""


@dataclass(frozen=True)
class AssignPlan:
    placement: Placement
    candidate: Candidate
    forced: str | None  # the exclusion --force overrode, said loudly

    def to_json(self) -> dict[str, Any]:
        return {"assignments": [self.placement.to_json()], "unplaced": []}


def plan_assign(graph: Graph, view: FleetView, store: RunStore, *, issue: int,
                host: str, agents: Agents, force: bool) -> AssignPlan:
    """The same checks as dispatch for one issue on one host; --force skips tags and slots."""
    if issue not in graph.issues:
        raise AssignRefused(f"issue #{issue} is not in the backlog")
    state = graph.state(issue, assigned_map(view.board, store))
    if state.status != "ready":
        raise AssignRefused(f"issue #{issue} is not ready: {state.describe()}")
    agent = agents.of(state.issue.agent)
    if agents.problem(agent):
        raise AssignRefused(f"issue #{issue}: {agents.problem(agent)}")
    figure = next(f for f in view.figures if f.name == host)
    candidate = consider(figure, state.issue.needs, 0)
    forced = None
    if not candidate.eligible:
        if not (force and candidate.kind in FORCEABLE):
            hint = " (--force overrides this)" if candidate.kind in FORCEABLE else ""
            raise AssignRefused(f"{host} cannot take #{issue}: {candidate.why}{hint}")
        forced = candidate.why
    reason = f"assigned by hand; {candidate.why}" if not forced else f"FORCED past: {forced}"
    return AssignPlan(Placement(issue, host, agent, reason, (candidate,)), candidate, forced)


# --------------------------------------------------------------------------------------------
# Apply


@dataclass
class Applied:
    """What happened to one placement."""

    issue: int
    host: str
    result: str  # ok | failed | skipped
    message: str = ""
    launched: Launched | None = None
    locked: bool = False  # failed because another apply held the host


@dataclass
class ApplyReport:
    results: list[Applied] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.result in ("ok", "released", "cleaned") for r in self.results)

    def exit_code(self) -> int:
        """0 all launched; 75 when only locked hosts failed; 1 otherwise."""
        failed = [r for r in self.results if r.result not in ("ok", "released", "cleaned")]
        if not failed:
            return ExitCode.OK
        return ExitCode.LOCKED if all(r.locked for r in failed) else ExitCode.FAILED


def done_claims(board: ClaimBoard, graph: Graph, inventory: Inventory, source: str
                ) -> list[Claim]:
    """Claims whose issue is closed: that run is done, its claim can go. A GitHub backlog holds
    only open issues (and those they reference): a claimed issue missing from it is asked for."""
    done = {n for n in board.claims if n in graph.issues and graph.issues[n].done}
    missing = sorted(n for n in board.claims if n not in graph.issues)
    if missing and source.startswith("github:"):
        from miyabi_ctl.dispatch.github import closed_issues

        done |= closed_issues(github_source(inventory), missing)
    return [board.claims[n] for n in sorted(done)]


def release_done(claims: list[Claim], keeper: ClaimKeeper, store: RunStore,
                 announce: Announce | None = None, cleanup: Cleanup | None = None
                 ) -> list[Applied]:
    """Release the claims of closed issues (the worktree, branch and session stay); a run that
    ``land`` took home (its pull request merged) is cleaned up instead, as ``land`` does."""
    results = []
    for claim in claims:
        cleaned = cleanup(claim) if cleanup is not None else None
        if cleaned is not None:
            results.append(Applied(claim.issue, claim.host, "cleaned" if cleaned[0] else "failed",
                                   cleaned[1]))
            continue
        problem = _release(keeper, claim, claim.host, "issue closed")
        mine = store.by_claim(claim.oid)
        if problem is None and mine is not None:
            store.end(mine.id, "released", "the issue was closed")
        if problem is None and announce is not None and not claim.malformed:
            problem = announce(claim.issue, claim.host, False)
        results.append(Applied(claim.issue, claim.host, "failed" if problem else "released",
                               problem or "claim released: the issue is closed"))
    return results


def apply_plan(placements: list[Placement], graph: Graph, fleet: Fleet, store: RunStore,
               keeper: ClaimKeeper, *, action: str = "dispatch",
               announce: Announce | None = None, done: list[Claim] | None = None,
               cleanup: Cleanup | None = None) -> ApplyReport:
    """Release the claims of closed issues (``done``; ``cleanup`` those that landed), then
    launch every placement, hosts in parallel, each host's placements in order under its lock."""
    audit.ensure_writable()
    me = install_id()
    released = release_done(done or [], keeper, store, announce, cleanup)
    by_host: dict[str, list[Placement]] = {}
    for placement in placements:
        by_host.setdefault(placement.host, []).append(placement)

    def on_host(host: Host) -> list[Applied]:
        mine = by_host.get(host.name, [])
        if not mine:
            return []
        repo_path = host.spec.repo_path_or(fleet.inventory.repo)
        done: list[Applied] = []
        try:
            with host_lock(host, repo_path, action):
                for p in mine:
                    done.append(_launch_one(host, p, graph, fleet.inventory, store, keeper, me,
                                            action, announce))
            return done
        except MiyabiError as exc:  # lock held, host gone: the placements not yet tried fail
            message = exc.message if isinstance(exc, HostError) else str(exc)
            rest = mine[len(done):]  # (a host that died mid-launch also fails the lock release)
            for p in rest:
                audit.record(host.name, action, result="failed", error=message, issue=p.issue)
            locked = isinstance(exc, HostLocked)
            return done + [Applied(p.issue, host.name, "failed", message, locked=locked)
                           for p in rest]

    outcomes = fleet.map(on_host, deadline_s=30 + 150 * max((len(v) for v in by_host.values()),
                                                            default=1))
    report = ApplyReport()
    for outcome in outcomes:
        if outcome.error is not None:
            report.results += [Applied(p.issue, outcome.host, "failed", outcome.error.message)
                               for p in by_host.get(outcome.host, [])]
        else:
            report.results += outcome.value or []
    order = {p.issue: i for i, p in enumerate(placements)}
    report.results.sort(key=lambda r: order.get(r.issue, 0))
    report.results[:0] = released
    return report


def _launch_one(host: Host, placement: Placement, graph: Graph, inventory: Inventory,
                store: RunStore, keeper: ClaimKeeper, me: str, action: str,
                announce: Announce | None) -> Applied:
    """Claim on the remote, then launch; the loser of the claim does not launch."""
    issue = graph.issues[placement.issue]
    wanted = new_claim(issue=issue.number, title=issue.title, host=host.name,
                       agent=placement.agent, branch=branch_name(issue.number),
                       session=session_name(issue.number),
                       worktree=worktree_path(inventory, issue.number), controller=me)
    try:
        held = keeper.take(wanted, via=host.name)
    except ClaimHeld as exc:
        audit.record(host.name, action, result="skipped", error=str(exc), issue=issue.number)
        return Applied(issue.number, host.name, "skipped", f"not launched: {exc}")
    except ClaimsUnavailable as exc:
        audit.record(host.name, action, result="failed", error=str(exc), issue=issue.number)
        return Applied(issue.number, host.name, "failed", f"not launched: {exc}")
    try:
        row = store.claim(issue=issue.number, title=issue.title, host=host.name,
                          agent=placement.agent, worktree=wanted.worktree, branch=wanted.branch,
                          session=wanted.session, claim=held.oid)
    except AlreadyAssigned as exc:  # this controller's own cache disagrees: do not launch
        problem = _release(keeper, held, host.name, action)
        message = str(exc) + (f"; {problem}" if problem else "")
        audit.record(host.name, action, result="skipped", error=message, issue=issue.number)
        return Applied(issue.number, host.name, "skipped", message)
    try:
        launched = launch(host, inventory, issue=issue.number, title=issue.title, body=issue.body,
                          agent=placement.agent)
    except MiyabiError as exc:
        message = exc.message if isinstance(exc, HostError) else str(exc)
        problem = _release(keeper, held, host.name, action)
        message += f"; {problem}" if problem else "; claim released"
        store.end(row.id, "failed", message)
        audit.record(host.name, action, result="failed", error=message, issue=issue.number,
                     agent=placement.agent)
        return Applied(issue.number, host.name, "failed", message)
    running = replace(held, state="running", worktree=launched.worktree, base=launched.base,
                      log=launched.log)
    updated = keeper.update(held, running, via=host.name)
    notes = [] if isinstance(updated, Claim) else [f"claim not updated: {updated}"]
    store.mark_running(row.id, worktree=launched.worktree, base=launched.base, log=launched.log,
                       claim=updated.oid if isinstance(updated, Claim) else None)
    if announce is not None:
        note = announce(issue.number, host.name, True)
        if note:
            notes.append(note)
    audit.record(host.name, action, result="ok", issue=issue.number, agent=placement.agent,
                 reason=placement.reason,
                 after={"worktree": launched.worktree, "branch": launched.branch,
                        "session": launched.session, "base": launched.base,
                        "worktree_action": launched.worktree_action,
                        "claim": updated.oid if isinstance(updated, Claim) else held.oid},
                 **({"notes": notes} if notes else {}))
    message = f"{launched.session} in {launched.worktree}"
    return Applied(issue.number, host.name, "ok",
                   message + "".join(f"; {n}" for n in notes), launched)


def _release(keeper: ClaimKeeper, held: Claim, host: str, action: str) -> str | None:
    """Give the claim back (through ``host``, else another host); a note if that failed."""
    problem = keeper.release(held, [host])
    audit.record(host, "claim.release", result="failed" if problem else "ok", issue=held.issue,
                 claim=held.oid, reason=action, **({"error": problem} if problem else {}))
    return problem
