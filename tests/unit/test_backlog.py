"""The backlog graph, priorities, the backlog file, placement and the run store: no hosts needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from miyabi_ctl.dispatch.backlog import load_backlog_file
from miyabi_ctl.dispatch.estimate import Effort, parse_estimate
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.issue import BacklogError, Issue, normalise_priority
from miyabi_ctl.dispatch.placement import HostFigures, place
from miyabi_ctl.dispatch.store import AlreadyAssigned, RunStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("label", "expected"), [
    ("🔥 priority:P0-Critical", "P0"), ("priority:P0", "P0"), ("P0", "P0"), ("p0", "P0"),
    ("⚠️ priority:P1-High", "P1"), ("priority:p2-medium", "P2"), ("P3", "P3"),
    ("bug", None), ("mp3", None), ("P4", None), ("p10", None), ("", None),
])
def test_priority_normalisation(label: str, expected: str | None) -> None:
    assert normalise_priority(label) == expected


def test_shipped_backlog_mirrors_the_plan() -> None:
    graph = Graph.build(load_backlog_file(ROOT / "backlog.yaml"))
    states = {s.issue.number: s for s in graph.states()}
    assert set(states) == {970, 1166, 1167, 1168, 1169, 1170, 1172, 1173, 1174, 1175, 1176}
    assert states[970].status == "tracking"
    assert {states[n].status for n in (1167, 1168)} == {"done"}
    assert [s.issue.number for s in graph.ready()] == [1169, 1172, 1166]
    assert states[1170].describe() == "blocked by #1166, #1169"
    assert states[1176].blocked_by == (1172,)  # #1168 is done
    assert states[1174].issue.needs == ("worktree",)
    assert states[1169].issue.estimate == "4h" and states[1169].issue.priority == "P0"
    # #1172 unblocks #1173, #1176 and, through #1173, #1174 and #1175.
    assert (states[1172].unblocks, states[1169].unblocks, states[1166].unblocks) == (4, 2, 1)


def test_order_is_priority_then_the_longest_remaining_chain_then_number() -> None:
    graph = Graph.build([
        Issue(1, "low", priority="P3"),
        Issue(2, "p1 leaf, long", priority="P1", estimate="3d"),
        Issue(3, "p1, unblocks two short ones", priority="P1", estimate="2h"),
        Issue(4, "waits on 3", priority="P3", depends=(3,), estimate="1h"),
        Issue(5, "waits on 3 too", priority="P3", depends=(3,), estimate="2h"),
        Issue(6, "urgent", priority="P0", estimate="30m"),
        Issue(7, "p1 leaf, no estimate (one day)", priority="P1"),
    ])
    # #2's chain is 24h, #7's 8h, #3's 2h + 2h: the longest chain first, not the most unblocked
    assert [s.issue.number for s in graph.ready()] == [6, 2, 7, 3, 1]
    assert {s.issue.number: s.chain for s in graph.ready()}[3] == 4 * 60
    assert [s.issue.number for s in graph.ready(effort=Effort(hours_per_day=2))] == [6, 2, 3, 7, 1]
    assigned = graph.ready({6: "somewhere"})
    assert [s.issue.number for s in assigned] == [2, 7, 3, 1]
    assert graph.state(6, {6: "mugen (miyabi-6)"}).describe() == "assigned to mugen (miyabi-6)"


def test_estimates_and_agents_in_the_backlog_file(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("issues:\n  - {number: 1, title: t, estimate: 2d, agent: CodeGenAgent}\n"
                    "  - {number: 2, title: u, estimate: 1h30m}\n")
    one, two = load_backlog_file(path)
    assert (one.estimate, one.agent, two.estimate, two.agent) == ("2d", "CodeGenAgent", "1h30m",
                                                                  None)
    assert parse_estimate("2d").minutes(8) == 960 and parse_estimate("1w").minutes(8) == 2400
    assert parse_estimate("30m").minutes(8) == 30 and parse_estimate("1.5h").minutes() == 90
    assert [parse_estimate(t).minutes(8) for t in ("90 min", "2 days", "1 week", "1h 30m", "4H")] \
        == [90, 960, 2400, 90, 240]
    for bad, why in (("4", "a number needs a unit"), ("0h", "is zero"), ("soon", "not a duration"),
                     ("4 hours ago", "not a duration"), ("-2h", "not a duration"),
                     ("4hx", "not a duration"), ("4 mo", "not a duration")):
        path.write_text(f"issues:\n  - {{number: 7, title: t, estimate: '{bad}'}}\n")
        with pytest.raises(BacklogError) as info:
            load_backlog_file(path)
        assert str(info.value).startswith(f"{path}: issue #7: estimate '{bad}'"), info.value
        assert why in str(info.value)
    path.write_text("issues:\n  - {number: 7, title: t, agent: ''}\n")
    with pytest.raises(BacklogError, match="issue #7: 'agent': expected a non-empty string"):
        load_backlog_file(path)


def test_cycle_is_an_error_naming_the_cycle() -> None:
    with pytest.raises(BacklogError, match=r"^dependency cycle: #2 → #3 → #4 → #2$"):
        Graph.build([Issue(1, "a", depends=(2,)), Issue(2, "b", depends=(3,)),
                     Issue(3, "c", depends=(4,)), Issue(4, "d", depends=(2,))])
    with pytest.raises(BacklogError, match="#5 depends on itself"):
        Graph.build([Issue(5, "self", depends=(5,))])


def test_unknown_references_are_errors() -> None:
    with pytest.raises(BacklogError, match=r"issue #1 depends on #99, which is not in the backlog"):
        Graph.build([Issue(1, "a", depends=(99,))])
    with pytest.raises(BacklogError, match=r"issue #1 has parent #7, which is not in the backlog"):
        Graph.build([Issue(1, "a", parent=7)])
    with pytest.raises(BacklogError, match="#1 is listed twice"):
        Graph.build([Issue(1, "a"), Issue(1, "b")])


def test_backlog_file_errors_name_the_issue(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    cases = {
        "issues:\n  - number: 3\n    title: t\n    priority: urgent\n":
            "issue #3: priority 'urgent' is not one of P0..P3",
        "issues:\n  - number: 3\n    title: t\n    state: wip\n":
            "issue #3: state must be open or closed, got 'wip'",
        "issues:\n  - number: 3\n    title: t\n    depend: [1]\n": "issue 1: unknown key 'depend'",
        "issues:\n  - title: t\n": "issue 1: 'number': expected an issue number, got None",
        "issues:\n  - number: 3\n    title: t\n    depends: 4\n": "'depends' must be a list",
        "tasks: []\n": "a backlog file needs an 'issues:' list",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(BacklogError) as info:
            load_backlog_file(path)
        assert str(info.value) .startswith(str(path)) and message in str(info.value), text
    path.write_text("issues:\n  - number: '#3'\n    title: t\n    depends: ['#1']\n"
                    "  - {number: 1, title: one, priority: 🔥 priority:P0-Critical}\n")
    three, one = load_backlog_file(path)
    assert (three.number, three.depends, three.priority, one.priority) == (3, (1,), "P2", "P0")


def test_backlog_file_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("issues:\n  - number: 1\n    title: café\n".encode("latin-1"))
    with pytest.raises(BacklogError) as info:
        load_backlog_file(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 36: b'\\xe9'); save it as UTF-8"


# -- placement ------------------------------------------------------------------------------------

def host(name: str, *, load: float = 1.0, cpus: int = 8, sessions: int = 0, max_sessions: int | None = 4,
         tags: tuple[str, ...] = (), level: str = "ok", reachable: bool = True,
         own: int = 0) -> HostFigures:
    return HostFigures(name, reachable, level, None if reachable else "connection refused",
                       load if reachable else None, cpus if reachable else None, sessions, own,
                       max_sessions, tags)


def test_placement_counts_what_it_already_placed() -> None:
    graph = Graph.build([Issue(n, f"i{n}", priority="P1") for n in (1, 2, 3, 4)])
    hosts = [host("a", load=2.0, cpus=4, max_sessions=3), host("b", load=4.0, cpus=8)]
    plan = place(graph.states(), hosts, agent="claude")
    # Load per core with each placed agent adding 1.0: a 0.5 → 0.75, b 0.5 → 0.625 → 0.75.
    # Ties go to more free slots (#1: b has 4, a 3), then to the name (#4: both 0.75, 2 free).
    assert [(p.issue, p.host) for p in plan.assignments] == [(1, "b"), (2, "a"), (3, "b"),
                                                             (4, "a")]
    assert place(graph.states(), hosts, agent="claude") == plan  # deterministic


def test_placement_exclusions() -> None:
    graph = Graph.build([Issue(1, "x", needs=("worktree",)), Issue(2, "y")])
    hosts = [host("full", sessions=3, own=1), host("crit", level="critical"),
             host("down", reachable=False), host("nomax", max_sessions=None),
             host("wt", load=30.0, tags=("worktree",), max_sessions=1)]
    plan = place(graph.states(), hosts, agent="codex")
    assert [(p.issue, p.host, p.agent) for p in plan.assignments] == [(1, "wt", "codex")]
    (left,) = plan.unplaced
    assert left.issue == 2
    assert left.reason == (
        "no eligible host (full: no free slot (4 sessions, max 4); crit: critical; "
        "down: unreachable (connection refused); nomax: no max_sessions set: no slot budget to "
        "dispatch into; wt: no free slot (1 sessions, max 1))")
    assert plan.to_json()["unplaced"] == [{"issue": 2, "reason": left.reason}]


def test_placement_max_and_blocked() -> None:
    graph = Graph.build([Issue(1, "a"), Issue(2, "b"), Issue(3, "c", depends=(1,)),
                         Issue(4, "done", state="closed")])
    plan = place(graph.states(), [host("h")], agent="claude", max_new=1)
    assert plan.to_json() == {
        "assignments": [{"issue": 1, "host": "h", "agent": "claude",
                         "reason": plan.assignments[0].reason}],
        "unplaced": [{"issue": 2, "reason": "not placed: --max 1 reached"},
                     {"issue": 3, "reason": "blocked by #1"}],
    }


# -- run store -------------------------------------------------------------------------------------

def test_store_never_double_assigns(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    fields = dict(title="t", agent="claude", worktree="~/w/issue-1", branch="issue/1",
                  session="miyabi-1")
    first = store.claim(issue=1, host="a", **fields)
    with pytest.raises(AlreadyAssigned, match=r"issue #1 is already assigned to a \(miyabi-1\)"):
        RunStore(tmp_path / "runs.sqlite").claim(issue=1, host="b", **fields)
    store.mark_running(first.id, worktree="/root/w/issue-1", base="abc", log="/l")
    assert [(a.issue, a.host, a.state, a.worktree) for a in store.active()] == [
        (1, "a", "running", "/root/w/issue-1")]
    store.end(first.id, "recalled", "backed up")
    assert store.active() == []
    again = store.claim(issue=1, host="b", **fields)
    assert [a.state for a in store.all()] == ["recalled", "launching"] and again.host == "b"
