"""Dispatch as steps: see the fleet, plan the placement, apply it host by host; and the
follow-ups — look at runs, recall one.

Planning has no side effects (one probe per host, then ``placement.place``). Applying takes each
host's lock, claims the issue in the run store *before* launching (so a concurrent dispatch cannot
launch it twice), launches, and records every step in the audit log. One host failing is reported
and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from miyabi_ctl import audit
from miyabi_ctl.backlog import Graph
from miyabi_ctl.backup import BackupPlan, backup_tree
from miyabi_ctl.errors import HostError, MiyabiError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.launch import Launched, Leftovers, branch_name, launch, session_name, worktree_path
from miyabi_ctl.locks import host_lock
from miyabi_ctl.placement import Candidate, HostFigures, Placement, Plan, consider, place
from miyabi_ctl.runs import AlreadyAssigned, Assignment, RunStore
from miyabi_ctl.status import collect_status
from miyabi_ctl.transport import Host

# Exclusions `assign --force` may override: they are about capacity, not about safety.
FORCEABLE = ("tags", "slots", "no-max")


def default_agent(inventory: Inventory) -> str:
    return str(inventory.dispatch.get("agent") or "claude")


def see_hosts(fleet: Fleet, store: RunStore) -> list[HostFigures]:
    """One probe per host, combined with the store's running assignments."""
    from miyabi_ctl.placement import figures_from_status

    status = collect_status(fleet)
    return figures_from_status(status.hosts, store.active())


def assigned_map(store: RunStore) -> dict[int, str]:
    return {a.issue: f"{a.host} ({a.session})" for a in store.active()}


def plan_dispatch(graph: Graph, figures: list[HostFigures], store: RunStore, *, agent: str,
                  max_new: int | None = None) -> Plan:
    return place(graph.states(assigned_map(store)), figures, agent=agent, max_new=max_new)


class AssignRefused(MiyabiError):
    """`assign` cannot place this issue on this host."""

    exit_code = 1


@dataclass(frozen=True)
class AssignPlan:
    placement: Placement
    candidate: Candidate
    forced: str | None  # the exclusion --force overrode, said loudly


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


@dataclass
class ApplyReport:
    results: list[Applied] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.result == "ok" for r in self.results)


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
            return [Applied(p.issue, host.name, "failed", message) for p in mine]

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

    @property
    def done(self) -> bool:
        return self.merged or self.issue_closed


def collect_runs(inventory: Inventory, store: RunStore, graph: Graph | None, *,
                 forks: int | None = None, timeout: float | None = None) -> list[RunView]:
    """Every assignment; the active ones looked at on their hosts, one round trip per host."""
    from miyabi_ctl.launch import RunFacts, look

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
                                     issue_closed=closed, last_activity=f.last_activity))
    return views


# --------------------------------------------------------------------------------------------
# Recall


class RecallRefused(MiyabiError):
    """Nothing to recall, or the host it ran on is not in the fleet."""

    exit_code = 1


@dataclass
class RecallOutcome:
    assignment: Assignment
    ok: bool
    stopped: bool = False
    backup: str = ""
    removed: bool = False
    message: str = ""


def recall_target(store: RunStore, inventory: Inventory, issue: int) -> Assignment:
    assignment = store.active_for(issue)
    if assignment is None:
        raise RecallRefused(f"issue #{issue} has no active assignment (see `miyabi-ctl runs`)")
    if assignment.host not in {h.name for h in inventory.hosts}:
        raise RecallRefused(f"issue #{issue} runs on {assignment.host}, which is not in the fleet")
    return assignment


def backup_label(issue: int) -> str:
    return f"issue-{issue}"


@dataclass(frozen=True)
class Discard:
    """What the operator allowed a recall to delete although no backup holds it."""

    ignored: bool = False
    nested: bool = False


def recall_steps(assignment: Assignment, backup_plan: BackupPlan, remote: str,
                 leftovers: Leftovers | None = None, discard: Discard = Discard()) -> list[str]:
    """The plan in words; ``backup_plan`` is phase 0's side-effect-free plan of the backup,
    ``leftovers`` what the removal would destroy besides."""
    a = assignment
    if backup_plan.action == "create":
        backup = (f"back up the uncommitted work in {a.worktree} ({backup_plan.reason}) to "
                  f"{backup_plan.branch}, push it to {remote} and verify it")
    elif backup_plan.action == "refuse":
        backup = f"back up {a.worktree}: REFUSED ({backup_plan.reason}); recall would stop here"
    else:
        backup = f"back up {a.worktree}: {backup_plan.reason or backup_plan.action}"
    remove = f"remove the worktree {a.worktree} (branch {a.branch} and its commits stay)"
    refusals = leftovers.refusals(discard_ignored=discard.ignored,
                                  discard_nested=discard.nested) if leftovers else []
    if refusals:
        remove = (f"remove the worktree {a.worktree}: REFUSED ({'; '.join(refusals)}); recall "
                  "would stop before anything is changed")
    return [f"stop tmux session {a.session} on {a.host}", backup, remove,
            f"mark #{a.issue} recalled in the run store"]


def recall_notes(backup_plan: BackupPlan, leftovers: Leftovers | None,
                 discard: Discard = Discard()) -> list[str]:
    """What the plan should say besides its steps: the backup's notes, what removal deletes."""
    notes = [f"backup: {n}" for n in backup_plan.notes]
    if leftovers:
        notes += leftovers.notes(discard_ignored=discard.ignored, discard_nested=discard.nested)
    return notes


def apply_recall(assignment: Assignment, fleet: Fleet, store: RunStore,
                 discard: Discard = Discard()) -> RecallOutcome:
    """Stop the session, back the worktree up (pushed, verified), and only then remove it.

    Nested repositories with work and ignored files are in no backup: unless ``discard`` allows
    their deletion, the recall is refused before anything is changed (and the removal script
    checks again once the session is stopped)."""
    from miyabi_ctl.launch import WorktreeKept, inspect_worktree, remove_worktree, stop

    audit.ensure_writable()
    a = assignment
    inventory = fleet.inventory
    host = fleet.host(a.host)
    out = RecallOutcome(a, ok=False)
    with host_lock(host, host.spec.repo_path_or(inventory.repo), "recall"):
        refusals = inspect_worktree(host, inventory, a.worktree).refusals(
            discard_ignored=discard.ignored, discard_nested=discard.nested)
        if refusals:
            out.message = "not recalled, nothing changed: " + "; ".join(refusals)
            audit.record(host.name, "recall", result="refused", error=out.message, issue=a.issue)
            return out
        out.stopped = stop(host, a.issue)
        audit.record(host.name, "recall.stop", result="ok", issue=a.issue,
                     after={"session": a.session, "was_running": out.stopped})
        backup = backup_tree(host, a.worktree, label=backup_label(a.issue),
                             remote=inventory.repo.remote)
        out.backup = backup.message
        if not backup.ok:
            out.message = f"backup failed, worktree kept: {backup.message}"
            audit.record(host.name, "recall", result="failed", error=out.message, issue=a.issue)
            return out
        try:
            found = remove_worktree(host, inventory, a.worktree, discard_ignored=discard.ignored,
                                    discard_nested=discard.nested)
        except WorktreeKept as exc:
            out.message = f"session stopped and work backed up, but the worktree is KEPT: {exc}"
            audit.record(host.name, "recall.remove", result="refused", error=str(exc),
                         issue=a.issue, backup=backup.branch)
            return out
        out.removed = True
        audit.record(host.name, "recall.remove", result="ok", issue=a.issue,
                     before={"worktree": a.worktree, "branch": a.branch,
                             "ignored": len(found.ignored),
                             "nested": [n.path for n in found.nested]},
                     after={"backup": backup.branch}, discarded=vars(discard))
    store.end(a.id, "recalled", backup.message)
    out.ok = True
    out.message = (f"stopped {a.session}" if out.stopped else f"{a.session} was not running")
    out.message += f"; {backup.message}; worktree removed, branch {a.branch} kept"
    return out
