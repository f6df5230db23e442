"""The dependency graph of the backlog: which issues are done, ready, blocked or assigned.

Checked once, up front: a dependency on an issue nobody knows, or a cycle, is an error naming the
issues involved — a dispatcher that silently treats a typo as "done" would launch work too early.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from miyabi_ctl.dispatch.estimate import Effort
from miyabi_ctl.dispatch.issue import BacklogError, Issue


@dataclass
class IssueState:
    """Where one issue stands: ``done``, ``tracking``, ``blocked``, ``ready``, ``assigned``, or
    ``pull request`` (an open or unmerged pull request that other issues depend on)."""

    issue: Issue
    status: str
    blocked_by: tuple[int, ...] = ()
    children: tuple[int, ...] = ()
    unblocks: int = 0
    assigned_to: str | None = None
    chain: int = 0  # minutes: the longest chain of open work from here on (critical path)
    done_via: str | None = None  # done although the backlog says open: where that was learnt

    def describe(self) -> str:
        if self.status == "done" and self.done_via:
            return f"done ({self.done_via})"
        if self.status == "blocked":
            return "blocked by " + ", ".join(f"#{n}" for n in self.blocked_by)
        if self.status == "assigned":
            return f"assigned to {self.assigned_to}"
        if self.status == "pull request":
            return ("pull request (closed without merging)"
                    if self.issue.pull_request == "closed" else "pull request (open)")
        if self.status == "tracking":
            return f"tracking ({len(self.children)} children)" if self.children else "tracking"
        return self.status


@dataclass
class Graph:
    """The issues by number, validated: every reference known, no dependency cycle."""

    issues: dict[int, Issue]
    children: dict[int, tuple[int, ...]] = field(default_factory=dict)
    done_notes: dict[int, str] = field(default_factory=dict)  # see IssueState.done_via

    @classmethod
    def build(cls, issues: Iterable[Issue]) -> Graph:
        by_number: dict[int, Issue] = {}
        for issue in issues:
            if issue.number in by_number:
                raise BacklogError(f"issue #{issue.number} is listed twice")
            by_number[issue.number] = issue
        children: dict[int, list[int]] = {}
        for issue in by_number.values():
            for dep in issue.depends:
                if dep not in by_number:
                    raise BacklogError(f"issue #{issue.number} depends on #{dep}, "
                                       "which is not in the backlog")
                if dep == issue.number:
                    raise BacklogError(f"issue #{issue.number} depends on itself")
            if issue.parent is not None:
                if issue.parent not in by_number:
                    raise BacklogError(f"issue #{issue.number} has parent #{issue.parent}, "
                                       "which is not in the backlog")
                children.setdefault(issue.parent, []).append(issue.number)
        graph = cls(by_number, {k: tuple(sorted(v)) for k, v in children.items()})
        cycle = graph.find_cycle()
        if cycle:
            raise BacklogError("dependency cycle: " + " → ".join(f"#{n}" for n in cycle))
        return graph

    def find_cycle(self) -> list[int] | None:
        """One dependency cycle as ``[a, b, …, a]``, or None. Deterministic: lowest numbers first."""
        colour: dict[int, int] = {}  # 1 = on the current path, 2 = finished
        path: list[int] = []

        def visit(number: int) -> list[int] | None:
            colour[number] = 1
            path.append(number)
            for dep in sorted(self.issues[number].depends):
                if colour.get(dep) == 1:
                    return [*path[path.index(dep):], dep]
                if dep not in colour:
                    found = visit(dep)
                    if found:
                        return found
            path.pop()
            colour[number] = 2
            return None

        for number in sorted(self.issues):
            if number not in colour:
                found = visit(number)
                if found:
                    return found
        return None

    def dependents(self, number: int) -> set[int]:
        """Every open issue that waits, directly or through others, on ``number``."""
        direct: dict[int, list[int]] = {}
        for issue in self.issues.values():
            for dep in issue.depends:
                direct.setdefault(dep, []).append(issue.number)
        seen: set[int] = set()
        todo = list(direct.get(number, []))
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(direct.get(current, []))
        return {n for n in seen if not self.issues[n].done}

    def successors(self) -> dict[int, list[int]]:
        """What waits on each issue: its dependents, and an open tracking issue for its children
        (a dependency on a tracking issue is on all of its children)."""
        after: dict[int, list[int]] = {}
        for issue in self.issues.values():
            for dep in issue.depends:
                after.setdefault(dep, []).append(issue.number)
            parent = self.issues.get(issue.parent) if issue.parent is not None else None
            if parent is not None and not parent.done:
                after.setdefault(issue.number, []).append(parent.number)
        return after

    def is_work(self, number: int) -> bool:
        """Open work an agent can be given: not done, not tracking, not a pull request."""
        issue = self.issues[number]
        return not (issue.done or issue.pull_request or issue.tracking
                    or self.children.get(number))

    def chains(self, effort: Effort | None = None) -> dict[int, int]:
        """Per open issue, the minutes of the longest chain of open work it starts (its own
        estimate plus the longest chain of what waits on it): the critical path from there."""
        effort = effort or Effort()
        after = self.successors()
        memo: dict[int, int] = {}

        def chain(number: int) -> int:
            if number not in memo:
                own = effort.minutes(self.issues[number].estimate)[0] if self.is_work(number) else 0
                memo[number] = own + max((chain(n) for n in after.get(number, ())
                                          if not self.issues[n].done), default=0)
            return memo[number]

        return {n: chain(n) for n in self.issues if not self.issues[n].done}

    def state(self, number: int, assigned: dict[int, str] | None = None) -> IssueState:
        issue = self.issues[number]
        children = self.children.get(number, ())
        unblocks = len(self.dependents(number))
        if issue.done:
            return IssueState(issue, "done", children=children, unblocks=0,
                              done_via=self.done_notes.get(number))
        if issue.pull_request:  # a dependency only, never work to dispatch; merged is done
            return IssueState(issue, "pull request", unblocks=unblocks)
        if children or issue.tracking:
            return IssueState(issue, "tracking", children=children, unblocks=unblocks)
        if assigned and number in assigned:
            return IssueState(issue, "assigned", assigned_to=assigned[number], unblocks=unblocks)
        open_deps = tuple(d for d in issue.depends if not self.issues[d].done)
        if open_deps:
            return IssueState(issue, "blocked", blocked_by=open_deps, unblocks=unblocks)
        return IssueState(issue, "ready", unblocks=unblocks)

    def states(self, assigned: dict[int, str] | None = None,
               effort: Effort | None = None) -> list[IssueState]:
        """Every issue's state, in dispatch order: priority, then the longest remaining chain of
        work (critical path), then number."""
        chains = self.chains(effort)
        states = [replace(self.state(n, assigned), chain=chains.get(n, 0)) for n in self.issues]
        return sorted(states, key=order_key)

    def ready(self, assigned: dict[int, str] | None = None,
              effort: Effort | None = None) -> list[IssueState]:
        """Open, not tracking, every dependency done, not already assigned — in dispatch order."""
        return [s for s in self.states(assigned, effort) if s.status == "ready"]


def order_key(state: IssueState) -> tuple[int, int, int]:
    return (state.issue.rank, -state.chain, state.issue.number)
