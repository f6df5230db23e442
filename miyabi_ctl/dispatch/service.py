"""Dispatch as steps: see the fleet, plan the placement, apply it host by host; and the
follow-ups — look at runs, recall one.

Planning has no side effects (one probe per host, then ``placement.place``). Applying takes each
host's lock, claims the issue in the run store *before* launching (so a concurrent dispatch cannot
launch it twice), launches, and records every step in the audit log. One host failing is reported
and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.launch import Launched, branch_name, launch, session_name, worktree_path
from miyabi_ctl.dispatch.placement import Candidate, HostFigures, Placement, Plan, consider, place
from miyabi_ctl.dispatch.store import AlreadyAssigned, Assignment, RunStore
from miyabi_ctl.errors import ExitCode, HostError, HostLocked, MiyabiError, Refused
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.status.collect import collect_status

# Exclusions `assign --force` may override: they are about capacity, not about safety.
FORCEABLE = ("tags", "slots", "no-max")


def default_agent(inventory: Inventory) -> str:
    return str(inventory.dispatch.get("agent") or "claude")


def see_hosts(fleet: Fleet, store: RunStore) -> list[HostFigures]:
    """One probe per host, combined with the store's running assignments."""
    from miyabi_ctl.dispatch.placement import figures_from_status

    status = collect_status(fleet)
    return figures_from_status(status.hosts, store.active())


def assigned_map(store: RunStore) -> dict[int, str]:
    return {a.issue: f"{a.host} ({a.session})" for a in store.active()}


def plan_dispatch(graph: Graph, figures: list[HostFigures], store: RunStore, *, agent: str,
                  max_new: int | None = None) -> Plan:
    return place(graph.states(assigned_map(store)), figures, agent=agent, max_new=max_new)


class AssignRefused(Refused):
    """`assign` cannot place this issue on this host."""


@dataclass(frozen=True)
class AssignPlan:
    placement: Placement
    candidate: Candidate
    forced: str | None  # the exclusion --force overrode, said loudly

    def to_json(self) -> dict[str, Any]:
        return {"assignments": [self.placement.to_json()], "unplaced": []}


def plan_assign(graph: Graph, figures: list[HostFigures], store: RunStore, *, issue: int,
                host: str, agent: str, force: bool) -> AssignPlan:
    """The same checks as dispatch for one issue on one host; --force skips tags and slots."""
    if issue not in graph.issues:
        raise AssignRefused(f"issue #{issue} is not in the backlog")
    state = graph.state(issue, assigned_map(store))
    if state.status != "ready":
        raise AssignRefused(f"issue #{issue} is not ready: {state.describe()}")
    figure = next(f for f in figures if f.name == host)
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
        return all(r.result == "ok" for r in self.results)

    def exit_code(self) -> int:
        """0 all launched; 75 when only locked hosts failed; 1 otherwise."""
        failed = [r for r in self.results if r.result != "ok"]
        if not failed:
            return ExitCode.OK
        return ExitCode.LOCKED if all(r.locked for r in failed) else ExitCode.FAILED


def apply_plan(placements: list[Placement], graph: Graph, fleet: Fleet, store: RunStore,
               *, action: str = "dispatch") -> ApplyReport:
    """Launch every placement, hosts in parallel, each host's placements in order under its lock."""
    audit.ensure_writable()
    by_host: dict[str, list[Placement]] = {}
    for placement in placements:
        by_host.setdefault(placement.host, []).append(placement)

    def on_host(host: Host) -> list[Applied]:
        mine = by_host.get(host.name, [])
        if not mine:
            return []
        repo_path = host.spec.repo_path_or(fleet.inventory.repo)
        try:
            with host_lock(host, repo_path, action):
                return [_launch_one(host, p, graph, fleet.inventory, store, action) for p in mine]
        except MiyabiError as exc:  # lock held, host gone: every placement here fails alike
            message = exc.message if isinstance(exc, HostError) else str(exc)
            for p in mine:
                audit.record(host.name, action, result="failed", error=message, issue=p.issue)
            locked = isinstance(exc, HostLocked)
            return [Applied(p.issue, host.name, "failed", message, locked=locked) for p in mine]

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
    return report


def _launch_one(host: Host, placement: Placement, graph: Graph, inventory: Inventory,
                store: RunStore, action: str) -> Applied:
    issue = graph.issues[placement.issue]
    try:
        claim = store.claim(issue=issue.number, title=issue.title, host=host.name,
                            agent=placement.agent, worktree=worktree_path(inventory, issue.number),
                            branch=branch_name(issue.number), session=session_name(issue.number))
    except AlreadyAssigned as exc:
        audit.record(host.name, action, result="skipped", error=str(exc), issue=issue.number)
        return Applied(issue.number, host.name, "skipped", str(exc))
    try:
        launched = launch(host, inventory, issue=issue.number, title=issue.title, body=issue.body,
                          agent=placement.agent)
    except MiyabiError as exc:
        message = exc.message if isinstance(exc, HostError) else str(exc)
        store.end(claim.id, "failed", message)
        audit.record(host.name, action, result="failed", error=message, issue=issue.number,
                     agent=placement.agent)
        return Applied(issue.number, host.name, "failed", message)
    store.mark_running(claim.id, worktree=launched.worktree, base=launched.base, log=launched.log)
    audit.record(host.name, action, result="ok", issue=issue.number, agent=placement.agent,
                 reason=placement.reason,
                 after={"worktree": launched.worktree, "branch": launched.branch,
                        "session": launched.session, "base": launched.base,
                        "worktree_action": launched.worktree_action})
    return Applied(issue.number, host.name, "ok", f"{launched.session} in {launched.worktree}",
                   launched)


# --------------------------------------------------------------------------------------------
# Runs


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

    @property
    def done(self) -> bool:
        return self.merged or self.issue_closed


def collect_runs(inventory: Inventory, store: RunStore, graph: Graph | None, *,
                 forks: int | None = None, timeout: float | None = None) -> list[RunView]:
    """Every assignment; the active ones looked at on their hosts, one round trip per host."""
    from miyabi_ctl.dispatch.agent_run import RunFacts, look

    assignments = store.all()
    active = [a for a in assignments if a.active]
    known = {h.name for h in inventory.hosts}
    names = sorted({a.host for a in active if a.host in known})
    facts: dict[int, RunFacts] = {}
    errors: dict[str, str] = {}
    if names:
        with Fleet(inventory, names, forks=forks, connect_timeout=timeout) as fleet:
            def on_host(host: Host) -> dict[int, RunFacts]:
                mine = [(a.issue, a.branch, a.base or "", a.log or "")
                        for a in active if a.host == host.name]
                return look(host, inventory, mine)

            for outcome in fleet.map(on_host):
                if outcome.error is not None:
                    errors[outcome.host] = outcome.error.message
                else:
                    facts.update(outcome.value or {})
    views = []
    for a in assignments:
        closed = bool(graph and a.issue in graph.issues and graph.issues[a.issue].done)
        if not a.active:
            views.append(RunView(a, issue_closed=closed))
        elif a.host not in known:
            views.append(RunView(a, issue_closed=closed, error=f"host {a.host} is not in the fleet"))
        elif a.host in errors:
            views.append(RunView(a, issue_closed=closed, error=errors[a.host]))
        else:
            f = facts.get(a.issue)
            if f is None:
                views.append(RunView(a, issue_closed=closed, error="no answer for this run"))
            else:
                views.append(RunView(a, alive=f.alive, ahead=f.ahead, merged=f.merged,
                                     issue_closed=closed, last_activity=f.last_activity,
                                     condition=f.condition, exit_status=f.exit_status))
    return views
