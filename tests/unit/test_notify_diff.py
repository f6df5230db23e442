"""What a look changed and what each target still has to hear (notify/diff.py, notify/seen.py):
pure functions, no host, no sender."""

from __future__ import annotations

from miyabi_ctl.dispatch.run_views import RunView
from miyabi_ctl.dispatch.store import Assignment
from miyabi_ctl.notify.diff import Change, Record, compare, queue
from miyabi_ctl.notify.seen import HostSeen, RunSeen, Seen, runs_seen

T0, T1, T2 = "2026-12-04T10:00:00+00:00", "2026-12-04T10:01:00+00:00", "2026-12-04T10:02:00+00:00"


def hosts(**levels: str) -> Seen:
    return Seen("check", {n: HostSeen(lv, f"why {n}" if lv != "ok" else "")
                          for n, lv in levels.items()})


def runs(all_runs: bool = True, **states: str) -> Seen:
    return Seen("runs", runs={int(n.removeprefix("r")): RunSeen(s, "mugen", f"title {n}", 2)
                              for n, s in states.items()}, all_runs=all_runs)


def told(record: Record | None, seen: Seen, now: str = T1) -> tuple[list[tuple], Record]:
    """(subject, before, after) of what one target would hear, and the new record."""
    changes, after = compare(record, seen, now=now)
    return [(c.subject, c.before, c.after) for c in queue([], changes)], after


def test_the_first_look_is_a_baseline_and_tells_nothing() -> None:
    said, record = told(None, hosts(mugen="critical", majin="ok"))
    assert said == []
    assert record.hosts == {"mugen": "critical", "majin": "ok"}
    said, record = told(None, runs(r1169="ended", r1170="waiting"))
    assert said == [] and record.runs == {1169: "ended", 1170: "waiting"} and record.all_runs


def test_a_host_tells_every_change_of_level_once() -> None:
    _, record = told(None, hosts(mugen="ok", majin="ok"))
    said, record = told(record, hosts(mugen="critical", majin="ok"))
    assert said == [("host:mugen", "ok", "critical")]
    said, record = told(record, hosts(mugen="critical", majin="ok"))
    assert said == []  # cron's next check: nothing new
    said, record = told(record, hosts(mugen="unreachable", majin="warning"))
    assert said == [("host:mugen", "critical", "unreachable"), ("host:majin", "ok", "warning")]
    said, record = told(record, hosts(mugen="ok", majin="ok"))
    assert said == [("host:mugen", "unreachable", "ok"), ("host:majin", "warning", "ok")]


def test_a_partial_look_compares_only_what_it_saw() -> None:
    _, record = told(None, hosts(mugen="ok", majin="critical", macbook="ok"))
    said, record = told(record, hosts(mugen="warning"))  # `check mugen`
    assert said == [("host:mugen", "ok", "warning")]
    assert record.hosts == {"mugen": "warning", "majin": "critical", "macbook": "ok"}


def test_a_new_host_is_recorded_silently_and_a_removed_one_forgotten() -> None:
    _, record = told(None, hosts(mugen="ok"))
    said, record = told(record, hosts(mugen="ok", majin="critical"))
    assert said == [] and record.hosts["majin"] == "critical"
    _, record = compare(record, hosts(mugen="ok"), now=T2, fleet_hosts={"mugen"})
    assert record.hosts == {"mugen": "ok"}


def test_runs_tell_the_states_worth_telling() -> None:
    _, record = told(None, runs(r1="running", r2="running", r3="running", r4="running"))
    said, record = told(record, runs(r1="waiting", r2="ended", r3="ended-empty", r4="running"))
    assert said == [("run:1", "running", "waiting"), ("run:2", "running", "ended"),
                    ("run:3", "running", "ended-empty")]
    said, record = told(record, runs(r1="running", r2="landed", r3="recalled", r4="stale"))
    # back to running (answered) and recalled (the operator's own doing) are not news
    assert said == [("run:2", "ended", "landed"), ("run:4", "running", "stale")]
    before = "stale"
    for state in ("check-failed", "conflicts", "pr-open", "pr-merged", "pr-closed", "failed"):
        said, record = told(record, runs(r4=state))
        assert said == [("run:4", before, state)]
        before = state


def test_a_run_not_looked_at_keeps_its_state() -> None:
    _, record = told(None, runs(r1="ended", r2="running"))
    said, record = told(record, runs(r2="running"))  # r1's host did not answer: not in the look
    assert said == [] and record.runs[1] == "ended"
    said, record = told(record, runs(r1="ended", r2="running"))
    assert said == []  # no "recovered", no second "ended"


def test_a_run_first_seen_is_news_once_every_run_was_looked_at() -> None:
    _, record = told(None, hosts(mugen="ok"))  # a check first: runs never looked at
    said, record = told(record, runs(all_runs=False, r5="failed"))  # issues: a partial look
    assert said == [] and not record.all_runs
    said, record = told(record, runs(r6="ended"))  # runs: the runs' baseline
    assert said == [] and record.all_runs
    said, record = told(record, runs(r7="ended", r8="running"))  # launched and done in between
    assert said == [("run:7", None, "ended")]


def test_waiting_changes_fold_into_one_per_subject() -> None:
    a = Change("host:mugen", "ok", "critical", T0, reason="load")
    b = Change("host:mugen", "critical", "unreachable", T1, reason="refused")
    c = Change("host:mugen", "unreachable", "ok", T2)
    r = Change("run:3", "running", "waiting", T0)
    assert queue([a], [b]) == [Change("host:mugen", "ok", "unreachable", T0, reason="refused")]
    assert queue([a, r], [b, c]) == [r]  # ok → … → ok is nothing to tell
    back = Change("run:3", "waiting", "running", T1)
    assert queue([r], [back]) == []  # answered before the target heard it asked
    ended = Change("run:3", "waiting", "ended", T2, commits=4)
    assert queue([r], [ended]) == [Change("run:3", "running", "ended", T0, commits=4)]
    assert queue([], [back]) == []


def test_the_record_survives_json() -> None:
    record = Record({"mugen": "ok"}, {1169: "ended"}, True,
                    {"abc": [Change("run:1169", "running", "ended", T0, host="majin",
                                    title='Fix "x"\n', commits=3)]})
    assert Record.from_json(record.to_json()) == record


def _view(issue: int, state: str, **kw: object) -> RunView:
    a = Assignment(id=issue * 10 + len(state), issue=issue, title=f"t{issue}", host="mugen",
                   agent="claude", worktree="w", branch=f"issue/{issue}", session="s", base="b",
                   log=None, started=T0, state=state, ended=None, note=None)
    return RunView(a, **kw)  # type: ignore[arg-type]


def test_runs_seen_takes_each_issues_current_run() -> None:
    seen = runs_seen([
        _view(1, "recalled"), _view(1, "running", alive=False, ahead=2),  # re-dispatched
        _view(2, "failed"), _view(2, "recalled"),  # two ended: the later
        _view(3, "recalled"), _view(3, "running", error="unreachable"),  # not looked at
        _view(4, "running", alive=True, condition="waiting for input"),
    ])
    assert {n: s.state for n, s in seen.items()} == {1: "ended", 2: "recalled", 4: "waiting"}
    assert seen[1] == RunSeen("ended", "mugen", "t1", 2)
