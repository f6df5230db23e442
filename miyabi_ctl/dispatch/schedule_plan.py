"""The schedule of the backlog on the fleet as seen now: which issues, which hosts, what runs.

This turns the backlog's graph, the hosts' figures (the same probe dispatch uses) and the runs
already assigned into the scheduler's jobs, machines and holds (``schedule``), and its outcome
into the plan people read: items with a host, an agent, a start and an end in working hours
from the schedule's start, and the issues no host can take, each with the reason.

- A host's slots are what dispatch would use now: ``max_sessions`` minus the sessions there
  that are not this tool's runs. A running run holds its slot until it started + its estimate;
  one already past that is assumed to need ``OVERDUE_MINUTES`` more (and is flagged). Time since
  a run started counts as work, at most ``hours_per_day`` of each calendar day.
- A host dispatch would not use now (unreachable, critical, no ``max_sessions``, load unknown)
  takes nothing in the schedule either.
- Tracking issues, pull requests and closed issues are no work: a dependency on a tracking
  issue waits for all its children.
- An issue naming an agent fleet.yaml does not know is scheduled all the same (the work is
  there), with a note: dispatch will not launch it until the agent is defined.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miyabi_ctl.dispatch.estimate import Effort, format_hours
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.placement import Agents, HostFigures
from miyabi_ctl.dispatch.schedule import Bound, Hold, Job, Machine, Problem

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.store import Assignment

OVERDUE_MINUTES = 60
def parse_start(text: str | None, now: datetime) -> datetime:
    """``--start``: ``now`` (the default), ``today``, ``tomorrow``, a weekday (its next
    occurrence, today included; 00:00), or an ISO date or date and time (local time unless it
    says otherwise). It names hour 0 of the schedule; runs' remaining time is counted from now."""
    from miyabi_ctl.phase0.prune import WEEKDAYS, parse_when  # the same words as --started-before

    word = (text or "now").strip().lower()
    if word == "now":
        return now
    midnight = now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "tomorrow":
        return midnight + timedelta(days=1)
    try:
        when = parse_when(str(text), now)
    except ValueError:
        raise ValueError(f"--start {text!r} is not a date, time or weekday (e.g. now, tomorrow, "
                         "monday, 2026-12-07, '2026-12-07 09:00')") from None
    if word in WEEKDAYS or word in (d[:3] for d in WEEKDAYS):
        when += timedelta(days=7 if when < midnight else 0)  # the next one, not the last
    return when


@dataclass(frozen=True)
class Item:
    """One issue on one host from ``start`` to ``end`` (minutes of work from the start)."""

    issue: int
    title: str
    host: str
    agent: str
    start: int
    end: int
    running: bool = False  # already assigned: the rest of its estimate
    default_estimate: bool = False  # no estimate in the backlog: the default was assumed
    overdue: bool = False  # running past its estimate


@dataclass
class Schedule:
    """The plan: items in start order, what no host can take, and how good the plan is."""

    effort: Effort
    start: datetime
    items: list[Item] = field(default_factory=list)
    unscheduled: list[tuple[int, str]] = field(default_factory=list)
    makespan: int = 0
    bound: Bound = field(default_factory=Bound)
    rule: str = "critical path"
    order: list[int] = field(default_factory=list)  # the list order of the winning schedule
    hosts: list[str] = field(default_factory=list)  # the hosts that take work, in fleet order
    notes: list[str] = field(default_factory=list)
    claims_error: str | None = None

    def day(self, minutes: int) -> int:
        """The working day (1, 2, …) a moment falls in; a start at 8h of 8h days is day 2."""
        return minutes // self.effort.day_minutes + 1

    def last_day(self, item: Item) -> int:
        return max(self.day(item.start), -(-item.end // self.effort.day_minutes))

    def first_placements(self) -> dict[int, str]:
        """What the schedule starts now: dispatch's plan."""
        return {i.issue: i.host for i in self.items if i.start == 0 and not i.running}

    def to_json(self) -> dict[str, Any]:
        return {
            "hours_per_day": self.effort.hours_per_day,
            "start": self.start.isoformat(timespec="seconds"),
            "items": [{"issue": i.issue, "title": i.title, "host": i.host, "agent": i.agent,
                       "effort_h": hours(i.end - i.start), "start_h": hours(i.start),
                       "end_h": hours(i.end), "day": self.day(i.start),
                       "end_day": self.last_day(i), "running": i.running,
                       "default_estimate": i.default_estimate} for i in self.items],
            "unscheduled": [{"issue": n, "reason": why} for n, why in self.unscheduled],
            "makespan_h": hours(self.makespan),
            "critical_path": self.bound.path,
            "critical_path_h": hours(self.bound.critical),
            "lower_bound_h": hours(self.bound.minutes),
            "slots": self.bound.slots,
            "default_estimate_h": hours(self.effort.minutes(None)[0]),
            "claims_error": self.claims_error,
        }


def hours(minutes: float) -> float:
    return round(minutes / 60, 4)


def build_schedule(graph: Graph, figures: Iterable[HostFigures], runs: Iterable[Assignment], *,
                   effort: Effort, agents: Agents, start: datetime, now: datetime,
                   assigned: dict[int, str] | None = None) -> Schedule:
    """The schedule of every open issue that is work, on the hosts of ``figures``."""
    schedule = Schedule(effort, start)
    figures = list(figures)
    holds, running = _holds(graph, runs, effort, now)
    states = {s.issue.number: s for s in graph.states(assigned or {}, effort)}
    jobs: dict[int, Job] = {}
    why_not: dict[int, str] = {}
    machines = [_machine(f, holds) for f in figures]
    for number, state in states.items():
        issue = state.issue
        if not graph.is_work(number) or number in running:
            continue
        if state.status == "assigned":
            why_not[number] = state.describe()
            continue
        minutes, _ = effort.minutes(issue.estimate)
        jobs[number] = Job(number, minutes, issue.rank, issue.needs)
        if not any(m.can_run(jobs[number]) for m in machines):
            why_not[number] = _no_host(issue.needs, figures, machines, holds)
    _resolve_dependencies(graph, jobs, running, why_not)
    for number in why_not:
        jobs.pop(number, None)
    problem = Problem(jobs.values(), machines, holds, {n: s.chain for n, s in states.items()})
    outcome = problem.best()
    schedule.rule, schedule.order, schedule.bound = outcome.rule, outcome.order, problem.bound()
    for number in outcome.left:  # not expected: every job left has a host that can take it
        why_not[number] = "no host could take it"
    for hold in holds:
        if hold.number in running:
            schedule.items.append(running[hold.number])
    for start_ in outcome.starts.values():
        issue = graph.issues[start_.number]
        schedule.items.append(Item(issue.number, issue.title, start_.host, agents.of(issue.agent),
                                   start_.start, start_.end,
                                   default_estimate=effort.minutes(issue.estimate)[1]))
    schedule.items.sort(key=lambda i: (i.start, i.host, i.issue))
    schedule.makespan = outcome.makespan
    schedule.hosts = [m.name for m in machines if m.slots > 0]
    schedule.unscheduled = [(n, why_not[n]) for n in states if n in why_not]
    schedule.notes = _notes(schedule, figures, machines, holds, agents)
    return schedule


def _holds(graph: Graph, runs: Iterable[Assignment], effort: Effort, now: datetime
           ) -> tuple[list[Hold], dict[int, Item]]:
    """The runs as holds on their hosts' slots; the open issues among them as running items."""
    holds: list[Hold] = []
    items: dict[int, Item] = {}
    for run in runs:
        issue = graph.issues.get(run.issue)
        minutes, defaulted = effort.minutes(issue.estimate if issue else None)
        elapsed = _elapsed_minutes(run.started, now, effort)
        left = minutes - elapsed
        overdue = left < OVERDUE_MINUTES and elapsed > minutes
        left = max(left, OVERDUE_MINUTES if overdue else 1)
        shown = issue is not None and graph.is_work(run.issue)
        holds.append(Hold(run.issue, run.host, left, counts=shown))
        if shown:
            items[run.issue] = Item(run.issue, issue.title, run.host, run.agent, 0, left,
                                    running=True, default_estimate=defaulted, overdue=overdue)
    return holds, items


def _elapsed_minutes(started: str, now: datetime, effort: Effort) -> int:
    """Working minutes since ``started``: the time that passed, but at most ``hours_per_day``
    of each full calendar day (a run started yesterday has had one working day)."""
    try:
        then = datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return 0
    if then.tzinfo is None:
        then = then.astimezone()
    minutes = max(0.0, (now - then).total_seconds() / 60)
    days, rest = divmod(minutes, 24 * 60)
    return int(days * effort.day_minutes + min(rest, effort.day_minutes))


def _machine(figure: HostFigures, holds: list[Hold]) -> Machine:
    """The host's slots for this tool over the plan: what dispatch sees free now, plus the slots
    this tool's runs hold there (they free up as the runs end); none if dispatch excludes it."""
    if figure.standing_exclusion() is not None or figure.max_sessions is None:
        return Machine(figure.name, 0, figure.tags)
    slots = figure.max_sessions - _others(figure, holds)
    return Machine(figure.name, max(0, slots), figure.tags, figure.load or 0.0,
                   figure.cpus or 1)


def _others(figure: HostFigures, holds: list[Hold]) -> int:
    """Sessions on the host that are not this tool's runs (dispatch counts each run once)."""
    ours = sum(h.slots for h in holds if h.host == figure.name)
    return figure.sessions + figure.own_running - ours


def _no_host(needs: tuple[str, ...], figures: list[HostFigures], machines: list[Machine],
             holds: list[Hold]) -> str:
    reasons = []
    for figure, machine in zip(figures, machines, strict=True):
        excluded = figure.standing_exclusion()
        missing = [t for t in needs if t not in figure.tags]
        if excluded:
            reasons.append(f"{figure.name}: {excluded[1]}")
        elif missing:
            reasons.append(f"{figure.name}: lacks tag {', '.join(missing)}")
        elif machine.slots <= 0:
            reasons.append(f"{figure.name}: {_no_slot(figure, holds)}")
    return "no host can take it (" + ("; ".join(reasons) or "no hosts selected") + ")"


def _resolve_dependencies(graph: Graph, jobs: dict[int, Job], running: dict[int, Item],
                          why_not: dict[int, str]) -> None:
    """Fill in each job's ``after`` (jobs and running issues; a tracking issue stands for its
    children); a job waiting on something that will not be done is not scheduled, and says so."""
    changed = True
    while changed:
        changed = False
        for number in sorted(jobs):
            if number in why_not:
                continue
            after, blocker = _waits_on(graph, graph.issues[number].depends, jobs, running, why_not)
            if blocker:
                why_not[number] = blocker
                changed = True
            else:
                jobs[number] = Job(number, jobs[number].minutes, jobs[number].rank,
                                   jobs[number].needs, tuple(sorted(after)))


def _waits_on(graph: Graph, depends: Iterable[int], jobs: dict[int, Job],
              running: dict[int, Item], why_not: dict[int, str]) -> tuple[set[int], str | None]:
    after: set[int] = set()
    for dep in depends:
        issue = graph.issues[dep]
        if issue.done:
            continue
        if issue.pull_request:
            what = "closed without merging" if issue.pull_request == "closed" else "open"
            return after, f"waits on pull request #{dep} ({what})"
        if dep in running or (dep in jobs and dep not in why_not):
            after.add(dep)
        elif not graph.is_work(dep):  # a tracking issue: done when its children are
            children = [c for c in graph.children.get(dep, ()) if not graph.issues[c].done]
            if not children:
                return after, f"waits on tracking issue #{dep}, open though its children are done"
            more, blocker = _waits_on(graph, children, jobs, running, why_not)
            if blocker:
                return after, f"waits on tracking issue #{dep}, whose children include work that "\
                              f"cannot be scheduled ({blocker})"
            after |= more
        else:
            return after, f"waits on #{dep}, which cannot be scheduled"
    return after, None


def _no_slot(figure: HostFigures, holds: list[Hold]) -> str:
    return (f"no slot ({_others(figure, holds)} sessions not started by miyabi-ctl, "
            f"max {figure.max_sessions})")


def _notes(schedule: Schedule, figures: list[HostFigures], machines: list[Machine],
           holds: list[Hold], agents: Agents) -> list[str]:
    notes = []
    for figure, machine in zip(figures, machines, strict=True):
        excluded = figure.standing_exclusion()
        if excluded:
            notes.append(f"{figure.name} takes no work: {excluded[1]}")
        elif machine.slots <= 0:
            notes.append(f"{figure.name} takes no work: {_no_slot(figure, holds)}")
    guessed = [i for i in schedule.items if i.default_estimate]
    if guessed:
        notes.append(f"no estimate, {schedule.effort.default} "
                     f"({format_hours(schedule.effort.minutes(None)[0])}) assumed: "
                     + ", ".join(f"#{i.issue}" for i in guessed))
    unknown: dict[str, list[int]] = {}
    for item in schedule.items:
        if not item.running and agents.problem(item.agent):
            unknown.setdefault(item.agent, []).append(item.issue)
    for name, numbers in unknown.items():
        notes.append(f"{agents.problem(name)}: dispatch will not launch "
                     + ", ".join(f"#{n}" for n in numbers) + " until it is (or --agent names one)")
    for item in schedule.items:
        if item.overdue:
            notes.append(f"#{item.issue} runs past its estimate: assumed to end within "
                         f"{format_hours(OVERDUE_MINUTES)}")
    return notes
