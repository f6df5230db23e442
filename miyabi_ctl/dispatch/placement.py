"""Where each ready issue should run: a pure function of the issues and the hosts' figures.

Rules (docs/dispatch.md):
- Ready issues are taken in the order given: the schedule's (``schedule``: P0 first, then the
  longest remaining chain of work — the critical path), so that today's placements are the
  schedule's first ones.
- A host is eligible for an issue when it is reachable, not critical, declares ``max_sessions``,
  has a free slot (``max_sessions`` − agent sessions seen − miyabi-ctl's running assignments
  there that the probe did not already see as sessions), knows its load, and has every tag the
  issue needs.
- Among eligible hosts the lowest load per core wins, counting what this dispatch already placed:
  each placed agent adds ``LOAD_PER_AGENT`` to the host's load and takes one slot. Ties go to the
  host with more free slots, then to the name — the same inputs always give the same plan. Where
  the schedule starts the issue on another eligible host (keeping a tagged host for the issues
  that need its tags), that host (``prefer``).
- Each issue runs the agent ``Agents`` names: ``--agent``, else its own, else the default.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from miyabi_ctl.dispatch.graph import IssueState

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.store import Assignment
    from miyabi_ctl.status.health import HostStatus

LOAD_PER_AGENT = 1.0  # one busy core: a coding agent compiling and testing keeps one CPU busy


@dataclass(frozen=True)
class Agents:
    """Which agent launches an issue: ``--agent`` (``override``), else the issue's own, else the
    default; one that fleet.yaml does not know cannot be launched."""

    known: Collection[str]
    default: str
    override: str | None = None

    def of(self, agent: str | None) -> str:
        return self.override or agent or self.default

    def problem(self, name: str) -> str | None:
        if name in self.known:
            return None
        return f"agent {name!r} is not in fleet.yaml's agents (known: {', '.join(self.known)})"


@dataclass(frozen=True)
class HostFigures:
    """What placement needs to know about one host, as the probe and the store saw it."""

    name: str
    reachable: bool
    level: str
    problem: str | None
    load: float | None
    cpus: int | None
    sessions: int
    own_running: int
    max_sessions: int | None
    tags: tuple[str, ...]

    @property
    def free_slots(self) -> int | None:
        if self.max_sessions is None:
            return None
        return max(0, self.max_sessions - self.sessions - self.own_running)

    def load_per_core(self, placed: int = 0) -> float | None:
        if self.load is None or not self.cpus:
            return None
        return (self.load + placed * LOAD_PER_AGENT) / self.cpus

    def standing_exclusion(self) -> tuple[str, str] | None:
        """(kind, why) this host takes no issue at all, whatever the issue; None if it may."""
        if not self.reachable:
            return "unreachable", f"unreachable ({self.problem})" if self.problem else "unreachable"
        if self.level == "critical":
            return "critical", f"critical ({self.problem})" if self.problem else "critical"
        if self.max_sessions is None:
            return "no-max", "no max_sessions set: no slot budget to dispatch into"
        if self.load_per_core() is None:
            why = f" ({self.problem})" if self.problem else ""
            return "load-unknown", f"not placed on: load or CPU count unknown{why}"
        return None


@dataclass(frozen=True)
class Candidate:
    """One host as considered for one issue."""

    host: str
    eligible: bool
    why: str
    kind: str = "ok"  # ok | unreachable | critical | no-max | load-unknown | tags | slots
    load_per_core: float | None = None
    free_slots: int | None = None


@dataclass(frozen=True)
class Placement:
    issue: int
    host: str
    agent: str
    reason: str
    candidates: tuple[Candidate, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"issue": self.issue, "host": self.host, "agent": self.agent, "reason": self.reason}


@dataclass(frozen=True)
class Unplaced:
    issue: int
    reason: str
    candidates: tuple[Candidate, ...] = ()


@dataclass
class Plan:
    """The outcome of placement: what goes where, what stays, and the hosts as they were seen."""

    assignments: list[Placement] = field(default_factory=list)
    unplaced: list[Unplaced] = field(default_factory=list)
    hosts: list[HostFigures] = field(default_factory=list)
    ordering: str = ""  # how the ready issues were ordered (for --explain)

    def to_json(self) -> dict[str, list[dict[str, object]]]:
        return {
            "assignments": [p.to_json() for p in self.assignments],
            "unplaced": [{"issue": u.issue, "reason": u.reason} for u in self.unplaced],
        }


def place(states: Iterable[IssueState], hosts: Iterable[HostFigures], *, agent: str | Agents,
          max_new: int | None = None, prefer: dict[int, str] | None = None) -> Plan:
    """Place every ready issue on the best eligible host; say why for every open issue left.
    ``agent``: one agent for every issue, or the per-issue choice; ``prefer``: the host the
    schedule starts an issue on, taken when it is eligible."""
    agents = agent if isinstance(agent, Agents) else Agents((agent,), agent, agent)
    figures = list(hosts)
    plan = Plan(hosts=figures)
    placed: dict[str, int] = {h.name: 0 for h in figures}
    for state in states:
        issue = state.issue
        if state.status == "done":
            continue
        if state.status != "ready":
            plan.unplaced.append(Unplaced(issue.number, state.describe()))
            continue
        name = agents.of(issue.agent)
        if agents.problem(name):
            plan.unplaced.append(Unplaced(issue.number, str(agents.problem(name))))
            continue
        if max_new is not None and len(plan.assignments) >= max_new:
            plan.unplaced.append(Unplaced(issue.number, f"not placed: --max {max_new} reached"))
            continue
        candidates = [consider(h, issue.needs, placed[h.name]) for h in figures]
        eligible = sorted((c for c in candidates if c.eligible),
                          key=lambda c: (round(c.load_per_core or 0.0, 6), -(c.free_slots or 0),
                                         c.host))
        if not eligible:
            why = "; ".join(f"{c.host}: {c.why}" for c in candidates) or "no hosts selected"
            plan.unplaced.append(Unplaced(issue.number, f"no eligible host ({why})",
                                          tuple(candidates)))
            continue
        wanted = (prefer or {}).get(issue.number)
        best = next((c for c in eligible if c.host == wanted), eligible[0])
        host = next(h for h in figures if h.name == best.host)
        after = host.load_per_core(placed[host.name] + 1)
        how = (f"lowest load per core of {len(eligible)} eligible host"
               f"{'s' if len(eligible) != 1 else ''}: " if best is eligible[0] else
               f"the schedule's host, keeping {eligible[0].host} for issues that need its tags; "
               f"load per core ")
        reason = (f"{issue.priority}, ready; {how}{best.load_per_core:.2f}"
                  f" ({after:.2f} with this agent), {best.free_slots} of "
                  f"{host.max_sessions} slots free")
        if issue.needs:
            reason += f", has {', '.join(issue.needs)}"
        plan.assignments.append(Placement(issue.number, host.name, name, reason,
                                          tuple(candidates)))
        placed[host.name] += 1
    return plan


def consider(host: HostFigures, needs: tuple[str, ...], placed_here: int) -> Candidate:
    """Whether ``host`` can take an issue needing ``needs`` after ``placed_here`` placements."""
    excluded = host.standing_exclusion()
    if excluded:
        return Candidate(host.name, False, excluded[1], excluded[0])
    free = (host.free_slots or 0) - placed_here
    lpc = host.load_per_core(placed_here)
    missing = [t for t in needs if t not in host.tags]
    if missing:
        return Candidate(host.name, False, f"lacks tag {', '.join(missing)}", "tags", lpc, free)
    if free <= 0:
        used = host.sessions + host.own_running + placed_here
        return Candidate(host.name, False, f"no free slot ({used} sessions, max "
                                           f"{host.max_sessions})", "slots", lpc, free)
    return Candidate(host.name, True, f"load/core {lpc:.2f}, {free} free", "ok", lpc, free)


def figures_from_status(statuses: Iterable[HostStatus],
                        running: Iterable[Assignment]) -> list[HostFigures]:
    """HostFigures from ``collect_status`` results and the store's active assignments.

    An active assignment counts against a host's slots only when the probe did not already see an
    agent session working in its worktree (an agent still starting, or one the probe cannot
    recognise) — otherwise it would be counted twice.
    """
    by_host: dict[str, list[Assignment]] = {}
    for assignment in running:
        by_host.setdefault(assignment.host, []).append(assignment)
    out = []
    for status in statuses:
        report = status.report
        sessions = report.sessions if report else []
        cwds = [s.cwd for s in sessions if s.cwd]
        unseen = [a for a in by_host.get(status.name, [])
                  if not any(c == a.worktree or c.startswith(a.worktree.rstrip("/") + "/")
                             for c in cwds)]
        problem = None
        if status.error is not None:
            problem = status.error.message
        elif status.level == "critical":
            problem = "; ".join(f.message for f in status.findings if f.level == "critical")
        elif report is not None and ("load" in report.unknown or "cpus" in report.unknown):
            problem = "; ".join(f.message for f in status.findings if f.code == "unknown")
        out.append(HostFigures(
            name=status.name,
            reachable=status.reachable,
            level=status.level,
            problem=problem,
            load=report.load_avg[0] if report and report.load_avg else None,
            cpus=report.cpu_count if report else None,
            sessions=len(sessions),
            own_running=len(unseen),
            max_sessions=status.spec.max_sessions,
            tags=status.spec.tags,
        ))
    return out
