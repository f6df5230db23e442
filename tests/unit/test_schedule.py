"""The scheduler (dispatch/schedule.py) on graphs whose best makespan is known, and the rules
every schedule keeps: dependencies, tags, slots, priority; and its lower bound."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from miyabi_ctl.dispatch.schedule import Hold, Job, Machine, Outcome, Problem

H = 60  # minutes in an hour


def hosts(*names: str, slots: int = 1, tags: Iterable[str] = ()) -> list[Machine]:
    return [Machine(n, slots, tuple(tags), load=1.0, cpus=4) for n in names]


def check(problem: Problem, outcome: Outcome) -> None:
    """What every schedule must respect, whatever it is."""
    starts = outcome.starts
    assert outcome.left == [] and set(starts) == set(problem.jobs)
    ends = {**problem.ends, **{n: s.end for n, s in starts.items()}}
    machines = {m.name: m for m in problem.machines}
    for number, start in starts.items():
        job = problem.jobs[number]
        assert start.end - start.start == job.minutes
        assert all(ends[a] <= start.start for a in job.after), (number, job.after)
        assert set(job.needs) <= set(machines[start.host].tags)
    for machine in problem.machines:  # never more at once than its slots, the holds included
        spans = [(s.start, s.end) for s in starts.values() if s.host == machine.name]
        spans += [(0, h.end) for h in problem.holds if h.host == machine.name
                  for _ in range(h.slots)]
        for moment in {a for a, _ in spans}:
            assert sum(1 for a, b in spans if a <= moment < b) <= machine.slots
    assert outcome.makespan >= problem.bound().minutes - 1e-9


def test_a_chain_takes_its_length_whatever_the_hosts() -> None:
    jobs = [Job(1, 2 * H), Job(2, 3 * H, after=(1,)), Job(3, 4 * H, after=(2,)),
            Job(4, 1 * H, after=(3,))]
    problem = Problem(jobs, hosts("a", "b", "c"))
    best = problem.best()
    check(problem, best)
    assert best.makespan == 10 * H == problem.bound().critical
    assert problem.bound().path == [1, 2, 3, 4]
    assert [best.starts[n].start for n in (1, 2, 3, 4)] == [0, 2 * H, 5 * H, 9 * H]


def test_a_fan_out_and_a_fan_in_on_one_slot_hosts() -> None:
    # one root, six leaves of 3h on three hosts: 2h + two rounds of 3h
    out = Problem([Job(0, 2 * H), *(Job(n, 3 * H, after=(0,)) for n in range(1, 7))],
                  hosts("a", "b", "c"))
    check(out, best := out.best())
    assert best.makespan == 8 * H
    # six 3h issues, then one of 2h waiting on them all
    fan_in = Problem([*(Job(n, 3 * H) for n in range(1, 7)), Job(9, 2 * H, after=tuple(range(1, 7)))],
                     hosts("a", "b", "c"))
    check(fan_in, best := fan_in.best())
    assert best.makespan == 8 * H and best.starts[9].start == 6 * H


def test_the_search_beats_plain_list_scheduling_where_it_falls_short() -> None:
    """3, 3, 2, 2, 2 hours on two hosts: longest-first gives 7h, the best is 6h (3+3 | 2+2+2)."""
    problem = Problem([Job(n, m * H) for n, m in enumerate((3, 3, 2, 2, 2), 1)], hosts("a", "b"))
    plain = problem.simulate(problem.rules()[0][1])
    assert plain.makespan == 7 * H
    best = problem.best()
    check(problem, best)
    assert best.makespan == 6 * H == problem.bound().work
    assert "local search" in best.rule


def test_tagged_hosts_are_kept_for_the_issues_that_need_them() -> None:
    """The gpu host is the least loaded, so dispatch's rule alone would give it untagged work
    first; two 4h gpu issues and four untagged ones fit in 8h only if it does not."""
    machines = [Machine("gpu", 1, ("gpu",), load=0.1, cpus=8), *hosts("b", "c")]
    jobs = [Job(1, 4 * H), Job(2, 4 * H), Job(3, 4 * H), Job(4, 4 * H),
            Job(5, 4 * H, needs=("gpu",), after=(1,)), Job(6, 4 * H, needs=("gpu",))]
    problem = Problem(jobs, machines)
    best = problem.best()
    check(problem, best)
    assert {best.starts[5].host, best.starts[6].host} == {"gpu"}
    assert best.makespan == 8 * H == problem.bound().work  # #6, then #5 once #1 has ended
    assert problem.bound().groups == 8 * H  # the gpu host's own work: a bound on its own


def test_slots_running_work_and_priority() -> None:
    # a 3-slot host: six 1h issues in two rounds
    wide = Problem([Job(n, H) for n in range(6)], hosts("big", slots=3))
    check(wide, best := wide.best())
    assert best.makespan == 2 * H
    # a run holding the only slot for 2h: the next issue starts then, and its dependent after it
    held = Problem([Job(1, H), Job(2, H, after=(7,))], hosts("a"), [Hold(7, "a", 2 * H)])
    check(held, best := held.best())
    assert best.starts[1].start == 2 * H and best.starts[2].start == 3 * H
    # P0 first even though the P1 chain is longer; within P1 the longer chain first
    ranked = Problem([Job(1, 8 * H, rank=1), Job(2, 8 * H, rank=1, after=(1,)),
                      Job(3, H, rank=0), Job(4, 2 * H, rank=1)], hosts("a"))
    order = [s.number for s in sorted(ranked.best().starts.values(), key=lambda s: s.start)]
    assert order == [3, 1, 2, 4]


def test_hosts_that_cannot_take_an_issue_leave_it_unplaced() -> None:
    problem = Problem([Job(1, H, needs=("gpu",)), Job(2, H)],
                      [Machine("a", 1), Machine("gone", 0, ("gpu",))])
    outcome = problem.best()
    assert outcome.left == [1] and set(outcome.starts) == {2}


def planted(seed: int, n: int = 15, count: int = 3) -> tuple[Problem, int]:
    """A backlog built from a schedule with no idle time on ``count`` one-slot hosts (one of them
    tagged): the best makespan is known — every host busy until the same end."""
    rng = random.Random(seed)
    lanes: list[list[tuple[int, int, int]]] = [[] for _ in range(count)]
    for number in rng.sample(range(100, 100 + n), n):
        lane = min(range(count), key=lambda k: sum(m for _, _, m in lanes[k]))
        if rng.random() < 0.3:
            lane = rng.randrange(count)
        start = sum(m for _, _, m in lanes[lane])
        lanes[lane].append((number, start, rng.choice((1, 2, 3, 4, 6, 8, 16)) * H))
    end = max(sum(m for _, _, m in lane) for lane in lanes)
    placed = []
    for k, lane in enumerate(lanes):
        if lane:
            number, start, _ = lane[-1]
            lane[-1] = (number, start, end - start)
        placed += [(k, *entry) for entry in lane]
    jobs = []
    for k, number, start, minutes in placed:
        after = tuple(other for _, other, s, m in placed if s + m <= start and rng.random() < 0.3)
        needs = ("worktree",) if k == 0 and rng.random() < 0.5 else ()
        jobs.append(Job(number, minutes, needs=needs, after=after))
    machines = [Machine(f"h{k}", 1, ("worktree",) if k == 0 else (), load=1.0, cpus=4)
                for k in range(count)]
    return Problem(jobs, machines), end


def test_within_ten_percent_of_the_best_on_tightly_packed_backlogs() -> None:
    """Backlogs packed so tightly that the best schedule leaves no host idle: the hardest case
    for list scheduling (plain critical-path order is often 30–80% longer on them)."""
    ratios = []
    for seed in range(40):
        problem, best_possible = planted(seed)
        outcome = problem.best()
        check(problem, outcome)
        ratios.append(outcome.makespan / best_possible)
    assert max(ratios) <= 1.10, sorted(ratios)[-5:]


def test_random_backlogs_keep_every_rule_and_the_same_inputs_give_the_same_plan() -> None:
    for seed in range(10):
        rng = random.Random(seed)
        jobs = [Job(n, rng.choice((30, 60, 240, 480, 960)), rank=rng.choice((0, 1, 2, 2, 3)),
                    needs=("linux",) if rng.random() < 0.2 else (),
                    after=tuple(d for d in range(n) if rng.random() < 0.15)) for n in range(20)]
        machines = [Machine("a", 2, ("linux",), 0.5, 4), Machine("b", 1, (), 2.0, 8),
                    Machine("c", 1, ("linux",), 1.0, 2)]
        holds = [Hold(99, "a", 90)]
        problem = Problem(jobs, machines, holds)
        outcome = problem.best()
        check(problem, outcome)
        again = Problem(jobs, machines, holds).best()
        assert again.starts == outcome.starts and again.order == outcome.order


@pytest.mark.parametrize("shape", ["chain", "independent"])
def test_the_bound_is_the_larger_of_critical_path_and_work_per_slot(shape: str) -> None:
    after = (lambda n: (n - 1,) if n else ()) if shape == "chain" else (lambda n: ())
    problem = Problem([Job(n, 2 * H, after=after(n)) for n in range(6)], hosts("a", "b", "c"))
    bound = problem.bound()
    assert bound.critical == (12 * H if shape == "chain" else 2 * H)
    assert bound.work == 4 * H and bound.slots == 3
    assert bound.minutes == max(bound.critical, bound.work)
