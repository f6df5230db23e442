"""When each issue runs, and where: a list schedule over the dependency graph (pure).

The model (docs/dispatch.md#schedule): every host has a number of slots for this tool's work;
an issue takes one slot for its estimate; it starts only when everything it waits on has ended,
only on a host with every tag it needs, and never on a host with no free slot. Work already
running holds its slots until it is expected to end. Hosts are neither faster nor slower than
each other.

The schedule is built as dispatch works, run again whenever something ends: at each moment the
waiting issues whose dependencies have all ended are taken in a *list order* — priority, then
the longest remaining chain of work (the critical path) — and each goes to the free host that
dispatch would pick (lowest load per core, then more free slots, then the name).

Plain list scheduling can be far from the best on awkward graphs, so a few other list orders
(all priority-first), each also with a host choice that keeps a host whose tags waiting issues
need for them, are tried, then a local search moves issues (those on the critical chain first)
earlier in the list or changes their host choice. Another schedule wins only if it is strictly
shorter; everything is deterministic. Dispatch takes the winner's first moment as its plan:
the same issues, in the same order, on the same hosts.
A lower bound (the critical path, the work per slot, the work per slot of the hosts a group of
issues can use) says how close the plan is.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LOAD_PER_AGENT = 1.0  # as placement: one busy core per agent
# The search simulates about this many job placements at most, and never more than
# MAX_SCHEDULES schedules (on this project's 2-core machine, busy: 0.03 s median and 0.26 s at
# most for 15 issues on three hosts; 0.2 s for 100 issues on 10 hosts, 0.7 s for 200 on 16).
SEARCH_WORK = 25_000
MAX_SCHEDULES = 1500


@dataclass(frozen=True)
class Job:
    """An issue to schedule: ``minutes`` of work once everything in ``after`` has ended."""

    number: int
    minutes: int
    rank: int = 2
    needs: tuple[str, ...] = ()
    after: tuple[int, ...] = ()  # numbers of jobs or holds


@dataclass(frozen=True)
class Hold:
    """Work already running: ``slots`` of ``host`` until ``end`` (minutes from the start)."""

    number: int
    host: str
    end: int
    slots: int = 1
    counts: bool = True  # part of the plan (an open issue); False: it only holds the slot


@dataclass(frozen=True)
class Machine:
    """A host as the schedule sees it: ``slots`` for this tool's work over the whole plan (the
    holds included); ``load``/``cpus`` to choose among free hosts as dispatch does."""

    name: str
    slots: int
    tags: tuple[str, ...] = ()
    load: float = 0.0
    cpus: int = 1

    def can_run(self, job: Job) -> bool:
        return self.slots > 0 and all(t in self.tags for t in job.needs)


@dataclass(frozen=True)
class Start:
    number: int
    host: str
    start: int
    end: int


@dataclass
class Outcome:
    """One simulated schedule: where and when each job runs, and what could not be placed."""

    starts: dict[int, Start]
    left: list[int]
    makespan: int
    order: list[int]
    spare: frozenset[int] = frozenset()  # jobs that leave hosts with tags others need alone
    rule: str = "critical path"


@dataclass
class Bound:
    """A lower bound on the makespan: no schedule can be shorter than any of these."""

    critical: int = 0  # the longest chain of work (holds included), minutes
    path: list[int] = field(default_factory=list)  # that chain, first to last
    work: float = 0.0  # all work (holds included) spread over every slot
    slots: int = 0
    groups: float = 0.0  # the work of issues only some hosts can take, over those hosts' slots

    @property
    def minutes(self) -> float:
        return max(self.critical, self.work, self.groups)


class Problem:
    """Jobs, holds and machines, with what the rules and the bound need computed once."""

    def __init__(self, jobs: Iterable[Job], machines: Iterable[Machine], holds: Iterable[Hold] = (),
                 chains: dict[int, int] | None = None):
        """``chains``: each job's remaining chain of work as the whole backlog sees it (work no
        host can take included), for the first list order; else computed over these jobs."""
        self.jobs = {j.number: j for j in jobs}
        self.machines = list(machines)
        self.holds = list(holds)
        self.ends = {h.number: h.end for h in self.holds}
        self.successors: dict[int, list[int]] = {}
        for job in self.jobs.values():
            for dep in job.after:
                self.successors.setdefault(dep, []).append(job.number)
        self.chain = self._chains()
        if chains:
            self.chain = {n: chains.get(n, c) for n, c in self.chain.items()}
        self._able = {n: [m for m in self.machines if m.can_run(j)] for n, j in self.jobs.items()}
        self.eligible = {n: tuple(m.name for m in able) for n, able in self._able.items()}
        # Where every simulation starts from.
        self._held = {m.name: 0 for m in self.machines}  # slots the holds have at the start
        for hold in self.holds:
            if hold.host in self._held:
                self._held[hold.host] += hold.slots
        self._free0 = {m.name: m.slots - self._held[m.name] for m in self.machines}
        self._ending0 = sorted((h.end, h.host) for h in self.holds if h.host in self._held
                               for _ in range(h.slots))
        self._hold_ends = sorted({h.end for h in self.holds})
        self._unmet0 = {n: sum(1 for a in j.after if a in self.jobs) for n, j in self.jobs.items()}
        self._ready0 = {n: max((self.ends.get(a, 0) for a in self.jobs[n].after), default=0)
                        for n, count in self._unmet0.items() if count == 0}
        self._tags0 = Counter(tag for j in self.jobs.values() for tag in j.needs)

    def _chains(self) -> dict[int, int]:
        chain: dict[int, int] = {}
        for number in reversed(self.topological()):
            chain[number] = self.jobs[number].minutes + max(
                (chain[s] for s in self.successors.get(number, ())), default=0)
        return chain

    def topological(self) -> list[int]:
        """Jobs in an order where each comes after what it waits on (number order otherwise)."""
        waiting = {n: sum(1 for a in j.after if a in self.jobs) for n, j in self.jobs.items()}
        ready = [n for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            number = heapq.heappop(ready)
            out.append(number)
            for s in self.successors.get(number, ()):
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready, s)
        return out

    def descendants(self, number: int) -> set[int]:
        seen: set[int] = set()
        todo = list(self.successors.get(number, ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.successors.get(current, ()))
        return seen

    # -- list orders ----------------------------------------------------------------------------

    def rules(self) -> list[tuple[str, list[int]]]:
        """The list orders tried, the first being dispatch's own: priority, then critical path."""
        later = {n: self.descendants(n) for n in self.jobs}
        reach = {n: sum(m.slots for m in self.machines if m.name in e)
                 for n, e in self.eligible.items()}
        keys: list[tuple[str, Callable[[Job], tuple[float, ...]]]] = [
            ("critical path", lambda j: (-self.chain[j.number],)),
            ("most work waiting", lambda j: (-j.minutes - sum(self.jobs[d].minutes
                                                               for d in later[j.number]),)),
            ("most issues waiting", lambda j: (-len(later[j.number]), -self.chain[j.number])),
            ("fewest hosts first", lambda j: (reach[j.number], -self.chain[j.number])),
            ("longest first", lambda j: (-j.minutes, -self.chain[j.number])),
        ]
        return [(name, sorted(self.jobs, key=lambda n, k=key: (self.jobs[n].rank, *k(self.jobs[n]),
                                                                n)))
                for name, key in keys]

    # -- one schedule ---------------------------------------------------------------------------

    def simulate(self, order: list[int], spare: frozenset[int] = frozenset()) -> Outcome:
        """Dispatch, run whenever something ends: at each moment the jobs whose dependencies
        have ended, in ``order``, each onto the free host dispatch would choose — for a job in
        ``spare``, first one whose tags no job still to start needs."""
        position = {n: i for i, n in enumerate(order)}
        free = dict(self._free0)
        ending = list(self._ending0)  # (end, host) of every used slot still to free up
        unmet = dict(self._unmet0)
        ready_at = dict(self._ready0)
        pending = sorted(ready_at, key=position.__getitem__)  # dependencies placed, in order
        to_start = Counter(self._tags0)
        placed: dict[int, Start] = {}
        t = 0
        while pending:
            while ending and ending[0][0] <= t:
                free[heapq.heappop(ending)[1]] += 1
            room = sum(f for f in free.values() if f > 0)
            for number in list(pending):
                if room <= 0:
                    break
                if ready_at[number] > t:
                    continue
                job = self.jobs[number]
                wanted = {tag for tag, c in to_start.items() if c} if number in spare else set()
                host = self._choose(job, free, wanted)
                if host is None:
                    continue
                start = Start(number, host, t, t + job.minutes)
                placed[number] = start
                free[host] -= 1
                room -= 1
                to_start.subtract(job.needs)
                heapq.heappush(ending, (start.end, host))
                pending.remove(number)
                for s in self.successors.get(number, ()):
                    unmet[s] -= 1
                    if unmet[s] == 0:
                        ready_at[s] = max(placed[a].end if a in placed else self.ends.get(a, 0)
                                          for a in self.jobs[s].after)
                        bisect.insort(pending, s, key=position.__getitem__)
            later = [e for e in (ending[0][0] if ending else None, self._next_end(t)) if e]
            if not later:
                break
            t = min(later)
        left = [n for n in order if n not in placed]
        makespan = max([*(s.end for s in placed.values()),
                        *(h.end for h in self.holds if h.counts)], default=0)
        return Outcome(placed, left, makespan, list(order), spare)

    def _next_end(self, t: int) -> int | None:
        """The next end of a hold after ``t`` (one on a host outside the plan frees nothing,
        but what waits on it may start then)."""
        return next((e for e in self._hold_ends if e > t), None)

    def _choose(self, job: Job, free: dict[str, int], wanted: set[str]) -> str | None:
        """The free host dispatch would pick: lowest load per core counting the agents started
        (and the runs ended) since now, then more free slots, then the name; with ``wanted``
        (tags other jobs still need), first a host that has none of them."""
        best: tuple[tuple[float, ...], str] | None = None
        others = wanted - set(job.needs)
        for m in self._able[job.number]:
            if free[m.name] <= 0:
                continue
            used = m.slots - free[m.name]
            load = max(0.0, m.load + LOAD_PER_AGENT * (used - self._held[m.name]))
            key: tuple[float, ...] = (round(load / max(1, m.cpus), 6), -free[m.name])
            if others:
                key = (1 if others & set(m.tags) else 0, *key)
            if best is None or (key, m.name) < best:
                best = (key, m.name)
        return None if best is None else best[1]

    # -- search ---------------------------------------------------------------------------------

    def best(self, budget: int | None = None) -> Outcome:
        """The shortest of the rules' schedules, improved by a local search; dispatch's own
        rule (the first) unless another schedule is strictly shorter."""
        everyone = frozenset(self.jobs)
        first: Outcome | None = None
        best: Outcome | None = None
        for name, order in self.rules():
            for spare in (frozenset(), everyone):
                outcome = self.simulate(order, spare)
                outcome.rule = name + (", tagged hosts kept for tagged issues" if spare else "")
                first = first or outcome
                if best is None or _better(outcome, best):
                    best = outcome
        assert first is not None and best is not None
        if budget is None:
            budget = max(30, min(MAX_SCHEDULES, SEARCH_WORK // max(1, len(self.jobs))))
        search = _Search(self, budget, self.bound().minutes)
        best = search.descend(best)
        # Iterated local search: kick the best list (a few jobs moved at random, the random
        # source seeded: the same inputs always give the same schedule) and descend again.
        kicks = random.Random(len(self.jobs))
        while search.left > 0 and best.makespan > search.floor and len(self.jobs) > 2:
            order = list(best.order)
            for _ in range(3):
                a, b = sorted(kicks.sample(range(len(order)), 2))
                if self.jobs[order[a]].rank == self.jobs[order[b]].rank:
                    order.insert(a, order.pop(b))
            found = search.descend(search.run(order, best.spare, best.rule))
            if _score(found) < _score(best):
                best = found
        return best if _better(best, first) else first

    def _moves(self, outcome: Outcome) -> Iterable[tuple[list[int], frozenset[int]]]:
        """Neighbours: one job keeping tagged hosts free or not, or moved before an earlier job
        of its rank — the jobs of the critical chain first (the last first), then the others."""
        order, spare = outcome.order, outcome.spare
        chain = self.critical_chain(outcome)
        tagged = any(m.tags for m in self.machines)
        for number in [*reversed(chain), *(n for n in reversed(order) if n not in chain)]:
            if tagged:
                yield order, spare ^ {number}
            at = order.index(number)
            rank = self.jobs[number].rank
            for i in range(at - 1, -1, -1):
                if self.jobs[order[i]].rank == rank:
                    yield [*order[:i], number, *order[i:at], *order[at + 1:]], spare

    def critical_chain(self, outcome: Outcome) -> list[int]:
        """The jobs that made the schedule as long as it is: from the last to end back through
        the dependency or the host slot each one waited for."""
        starts = outcome.starts
        if not starts:
            return []
        current = max(starts.values(), key=lambda s: (s.end, -s.number))
        chain = [current.number]
        while current.start > 0:
            job = self.jobs[current.number]
            if any(self.ends.get(a) == current.start for a in job.after):
                break  # it waited for work already running
            before = [starts[a] for a in job.after if a in starts and starts[a].end == current.start]
            if not before:
                before = [s for s in starts.values() if s.end == current.start
                          and s.host in self.eligible[current.number]]
            if not before:
                break
            current = min(before, key=lambda s: s.number)
            chain.append(current.number)
        return chain[::-1]

    # -- how good it can be ---------------------------------------------------------------------

    def bound(self) -> Bound:
        usable = [m for m in self.machines if m.slots > 0]
        names = {m.name for m in usable}
        held = {h.number: h.end for h in self.holds if h.counts}
        finish: dict[int, int] = {}
        via: dict[int, int | None] = {}
        for number in self.topological():
            job = self.jobs[number]
            deps = [(finish.get(a, held.get(a, 0)), a) for a in job.after]
            ready, parent = max(deps, default=(0, None))
            finish[number], via[number] = ready + job.minutes, parent
        ends = {**held, **finish}
        last = max(ends, key=lambda n: (ends[n], -n), default=None)
        path: list[int] = []
        while last is not None:
            path.append(last)
            last = via.get(last)
        bound = Bound(critical=max(ends.values(), default=0), path=path[::-1])
        bound.slots = sum(m.slots for m in usable)
        hold_work = {h.host: 0 for h in self.holds}
        for h in self.holds:  # a hold that is not part of the plan only delays it: not counted
            hold_work[h.host] += h.end * h.slots if h.counts else 0
        if bound.slots:
            total = sum(j.minutes for j in self.jobs.values()) + sum(
                w for host, w in hold_work.items() if host in names)
            bound.work = total / bound.slots
        for group in {frozenset(e) for e in self.eligible.values() if e}:
            slots = sum(m.slots for m in usable if m.name in group)
            work = sum(self.jobs[n].minutes for n, e in self.eligible.items()
                       if e and set(e) <= group) + sum(hold_work.get(h, 0) for h in group)
            bound.groups = max(bound.groups, work / slots)
        return bound


class _Search:
    """First-improvement descent over ``Problem._moves``, within a budget of simulations."""

    def __init__(self, problem: Problem, budget: int, floor: float):
        self.problem, self.left, self.floor = problem, budget, floor

    def run(self, order: list[int], spare: frozenset[int], rule: str) -> Outcome:
        self.left -= 1
        outcome = self.problem.simulate(order, spare)
        outcome.rule = rule.split(" + ")[0] + " + local search"
        return outcome

    def descend(self, best: Outcome) -> Outcome:
        improved = True
        while improved and self.left > 0 and best.makespan > self.floor:
            improved = False
            for order, spare in self.problem._moves(best):
                outcome = self.run(order, spare, best.rule)
                if _score(outcome) < _score(best):
                    best, improved = outcome, True
                    break
                if self.left <= 0:
                    break
        return best


def _better(a: Outcome, b: Outcome) -> bool:
    return (len(a.left), a.makespan) < (len(b.left), b.makespan)


def _score(outcome: Outcome) -> tuple[int, int, int]:
    """What the local search lowers: unplaced jobs, the makespan, then the sum of the ends (so
    that it moves on across schedules of the same length)."""
    return len(outcome.left), outcome.makespan, sum(s.end for s in outcome.starts.values())
