"""The schedule of a backlog on hosts as the probe saw them (dispatch/schedule_plan.py): the
reference plan, estimates, running work, what no host can take, and dispatch doing exactly the
schedule's first step."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miyabi_ctl.dispatch.backlog import load_backlog_file
from miyabi_ctl.dispatch.claims import ClaimBoard
from miyabi_ctl.dispatch.estimate import Effort
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.issue import Issue
from miyabi_ctl.dispatch.placement import Agents, HostFigures
from miyabi_ctl.dispatch.schedule_plan import Item, Schedule, build_schedule, parse_start
from miyabi_ctl.dispatch.service import FleetView, plan_dispatch
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
EIGHT_HOUR_DAYS = Effort()
AGENTS = Agents(["claude", "codex", "CodeGenAgent", "DeploymentAgent", "CoordinatorAgent"],
                "claude")


def host(name: str, *, slots: int | None = 1, tags: tuple[str, ...] = (), load: float = 1.0,
         cpus: int = 8, sessions: int = 0, own: int = 0, level: str = "ok",
         reachable: bool = True) -> HostFigures:
    return HostFigures(name, reachable, level, None if reachable else "connection refused",
                       load if reachable else None, cpus if reachable else None, sessions, own,
                       slots, tags)


def schedule(issues: list[Issue] | Graph, hosts: list[HostFigures], runs: list[Assignment] = (),
             effort: Effort = EIGHT_HOUR_DAYS, agents: Agents = AGENTS) -> Schedule:
    graph = issues if isinstance(issues, Graph) else Graph.build(issues)
    return build_schedule(graph, hosts, list(runs), effort=effort, agents=agents, start=NOW,
                          now=NOW, assigned={r.issue: r.host for r in runs})


def run(issue: int, host: str, started: datetime, agent: str = "claude") -> Assignment:
    return Assignment(0, issue, f"t{issue}", host, agent, f"/w/issue-{issue}", f"issue/{issue}",
                      f"miyabi-{issue}", None, None, started.isoformat(), "running", None, None)


def by_issue(plan: Schedule) -> dict[int, Item]:
    return {i.issue: i for i in plan.items}


REFERENCE_HOSTS = [host("pixel", slots=None), host("macbook", tags=("macos",)),
                   host("mugen", tags=("linux", "worktree"), cpus=16), host("majin", tags=("linux",))]


def test_the_reference_plan_scheduled() -> None:
    """The plan's hand-made table ran #1175 beside #1173, which it depends on, and never placed
    #1172, which #1176 depends on; the schedule does neither."""
    plan = schedule(Graph.build(load_backlog_file(ROOT / "backlog.yaml")), REFERENCE_HOSTS)
    items = by_issue(plan)
    assert set(items) == {1166, 1169, 1170, 1172, 1173, 1174, 1175, 1176}  # not 970, 1167, 1168
    assert items[1175].start >= items[1173].end and items[1175].start >= items[1169].end
    assert items[1176].start >= items[1172].end and items[1173].start >= items[1172].end
    assert items[1170].start >= max(items[1166].end, items[1169].end)
    assert items[1174].host == "mugen" and items[1174].start >= items[1173].end
    assert (items[1173].agent, items[1170].agent, items[1174].agent, items[1169].agent) == (
        "CodeGenAgent", "DeploymentAgent", "CoordinatorAgent", "claude")
    assert [(n, items[n].end - items[n].start) for n in (1169, 1173, 1174)] == [
        (1169, 4 * 60), (1173, 16 * 60), (1174, 20 * 60)]
    assert {n for n, i in items.items() if i.default_estimate} == {1166, 1172}
    assert any(note.startswith("no estimate, 1d (8h) assumed") for note in plan.notes)
    assert "pixel takes no work: no max_sessions set" in " ".join(plan.notes)
    # the longest chain: #1172 (8h, the default) → #1173 (16h) → #1174 (20h)
    assert plan.bound.path == [1172, 1173, 1174] and plan.makespan == plan.bound.critical == 44 * 60
    doc = plan.to_json()
    assert doc["makespan_h"] == 44.0 and doc["critical_path"] == [1172, 1173, 1174]
    assert {i["issue"]: i["day"] for i in doc["items"]}[1174] == 4  # starts at 24h: day 4
    assert not plan.unscheduled


@pytest.mark.parametrize("estimate, hours_per_day, hours", [
    ("2d", 8, 16), ("2d", 6, 12), ("1w", 8, 40), ("30m", 8, 0.5), ("1d4h", 8, 12), ("1.5h", 8, 1.5),
])
def test_estimates_in_working_days(estimate: str, hours_per_day: float, hours: float) -> None:
    plan = schedule([Issue(1, "x", estimate=estimate)], [host("a")], effort=Effort(hours_per_day))
    assert plan.to_json()["items"][0]["effort_h"] == hours


def test_running_work_holds_its_slot_until_its_estimate_is_spent() -> None:
    issues = [Issue(1, "running", estimate="4h"), Issue(2, "after it", estimate="1h", depends=(1,)),
              Issue(3, "waits for the slot", estimate="1h"),
              Issue(4, "overdue", estimate="2h")]
    runs = [run(1, "a", NOW - timedelta(hours=3)),
            run(4, "b", NOW - timedelta(hours=30))]  # a day and 6h: 8h + 6h of work, past 2h
    plan = schedule(issues, [host("a", sessions=1), host("b", sessions=1)], runs)
    items = by_issue(plan)
    assert (items[1].running, items[1].start, items[1].end) == (True, 0, 60)
    assert items[2].start == 60 and items[3].start == 60  # the slots free up at 1h
    assert (items[4].overdue, items[4].end) == (True, 60)
    assert "#4 runs past its estimate" in " ".join(plan.notes)
    assert plan.first_placements() == {}  # nothing starts now: dispatch places nothing either


def test_free_slots_are_what_dispatch_would_use() -> None:
    """max 2, one session of someone else's and one of this tool's run: one slot for this tool,
    held by the run for its last hour; the new issue starts then."""
    issues = [Issue(1, "running", estimate="2h"), Issue(2, "new", estimate="1h")]
    plan = schedule(issues, [host("a", slots=2, sessions=2)], [run(1, "a", NOW - timedelta(hours=1))])
    assert by_issue(plan)[2].start == 60
    # the run not seen by the probe (still starting): dispatch counts it as own_running
    plan = schedule(issues, [host("a", slots=2, sessions=1, own=1)],
                    [run(1, "a", NOW - timedelta(hours=1))])
    assert by_issue(plan)[2].start == 60


def test_what_no_host_can_take_is_listed_with_the_reason() -> None:
    issues = [Issue(1, "needs a gpu", needs=("gpu",)), Issue(2, "after the gpu work", depends=(1,)),
              Issue(3, "unknown agent", agent="Nobody"), Issue(4, "fine"),
              Issue(5, "open pull request", pull_request="open"),
              Issue(6, "waits on the PR", depends=(5,)), Issue(9, "done", state="closed")]
    plan = schedule(issues, [host("a", tags=("linux",)), host("down", reachable=False),
                             host("busy", level="critical")])
    reasons = dict(plan.unscheduled)
    assert reasons[1] == ("no host can take it (a: lacks tag gpu; down: unreachable (connection "
                          "refused); busy: critical)")
    assert reasons[2] == "waits on #1, which cannot be scheduled"
    assert reasons[6] == "waits on pull request #5 (open)"
    assert set(reasons) == {1, 2, 6} and set(by_issue(plan)) == {3, 4}
    # an agent fleet.yaml lacks: the work is scheduled all the same, and the note says dispatch
    # will not launch it (dispatch lists it with the reason)
    assert by_issue(plan)[3].agent == "Nobody"
    assert ("agent 'Nobody' is not in fleet.yaml's agents (known: claude, codex, CodeGenAgent, "
            "DeploymentAgent, CoordinatorAgent): dispatch will not launch #3 until it is (or "
            "--agent names one)") in plan.notes
    unreachable = schedule([Issue(1, "x")], [host("a", reachable=False)])
    assert unreachable.unscheduled == [
        (1, "no host can take it (a: unreachable (connection refused))")]


def test_a_dependency_on_a_tracking_issue_waits_for_all_its_children() -> None:
    issues = [Issue(10, "epic"), Issue(11, "part", parent=10, estimate="2h"),
              Issue(12, "part", parent=10, estimate="5h"), Issue(20, "after the epic", depends=(10,))]
    plan = schedule(issues, [host("a"), host("b")])
    items = by_issue(plan)
    assert 10 not in items and items[20].start == 5 * 60


def test_dispatch_places_exactly_what_the_schedule_starts_now(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    inventory = Inventory(source=None, hosts=())
    for seed in range(15):
        rng = random.Random(seed)
        issues = [Issue(n, f"i{n}", priority=rng.choice(("P0", "P1", "P2")),
                        estimate=rng.choice(("1h", "4h", "1d", "2d")),
                        needs=("worktree",) if rng.random() < 0.25 else (),
                        depends=tuple(d for d in range(1, n) if rng.random() < 0.2))
                  for n in range(1, 13)]
        figures = [host("a", slots=rng.randint(1, 3), tags=("worktree",), load=rng.random()),
                   host("b", slots=rng.randint(1, 2), load=rng.random(), sessions=1),
                   host("c", slots=1, load=rng.random())]
        graph = Graph.build(issues)
        view = FleetView(figures, ClaimBoard())
        plan = plan_dispatch(graph, view, store, inventory)
        first = schedule(graph, figures).first_placements()
        assert {p.issue: p.host for p in plan.assignments} == first, seed
        # --max N places the first N of them
        some = plan_dispatch(graph, view, store, inventory, max_new=1)
        assert [p.issue for p in some.assignments] == [p.issue for p in plan.assignments][:1]


def test_each_issue_runs_its_own_agent_unless_agent_overrides(tmp_path: Path) -> None:
    graph = Graph.build(load_backlog_file(ROOT / "backlog.yaml"))
    inventory = load_inventory(ROOT / "fleet.yaml")
    view = FleetView([host("a", slots=8)], ClaimBoard())
    store = RunStore(tmp_path / "runs.sqlite")
    plan = plan_dispatch(graph, view, store, inventory)
    assert {p.issue: p.agent for p in plan.assignments} == {1169: "claude", 1172: "claude",
                                                             1166: "claude"}
    later = Graph.build([replace(i, state="closed") if i.number in (1166, 1169, 1172) else i
                         for i in graph.issues.values()])
    plan = plan_dispatch(later, view, store, inventory)
    assert {p.issue: p.agent for p in plan.assignments} == {
        1170: "DeploymentAgent", 1173: "CodeGenAgent", 1176: "CodeGenAgent"}
    plan = plan_dispatch(later, view, store, inventory, agent="codex")
    assert {p.agent for p in plan.assignments} == {"codex"}
    assert "the critical path" in plan.ordering and "#1173 (P1, chain 36h)" in plan.ordering


def test_start() -> None:
    monday = datetime(2026, 12, 7, 15, 30).astimezone()  # a Monday afternoon
    assert parse_start(None, monday) == monday and parse_start("now", monday) == monday
    assert parse_start("tomorrow", monday) == monday.replace(day=8, hour=0, minute=0)
    assert parse_start("wednesday", monday) == monday.replace(day=9, hour=0, minute=0)
    assert parse_start("mon", monday) == monday.replace(hour=0, minute=0)
    assert parse_start("2026-12-14 09:00", monday).hour == 9
    with pytest.raises(ValueError, match="not a date, time or weekday"):
        parse_start("someday", monday)


def test_order_counts_the_whole_chain_even_where_it_cannot_be_scheduled(tmp_path: Path) -> None:
    """Without the plan's agents in fleet.yaml, #1173–#1176 cannot be scheduled; #1172 still
    starts the longest chain of the backlog (44h) and goes before #1166 (11h)."""
    graph = Graph.build(load_backlog_file(ROOT / "backlog.yaml"))
    view = FleetView([host("a", slots=8)], ClaimBoard())
    plan = plan_dispatch(graph, view, RunStore(tmp_path / "runs.sqlite"),
                         Inventory(source=None, hosts=()))
    assert [p.issue for p in plan.assignments] == [1169, 1172, 1166]
    assert "#1172 (P2, chain 44h), #1166 (P2, chain 11h)" in plan.ordering


def test_a_run_of_a_closed_issue_holds_its_slot_but_is_no_part_of_the_plan() -> None:
    issues = [Issue(1, "closed while its agent still runs", state="closed", estimate="3h"),
              Issue(2, "next", estimate="1h")]
    plan = schedule(issues, [host("a", sessions=1)], [run(1, "a", NOW)])
    assert [(i.issue, i.start) for i in plan.items] == [(2, 3 * 60)]  # the slot frees at 3h
    assert plan.bound.path == [2] and plan.makespan == 4 * 60
    assert 1 not in plan.to_json()["critical_path"]
