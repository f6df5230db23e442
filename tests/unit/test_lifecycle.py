"""A run's lifecycle key (dispatch/lifecycle.py) from what `runs` saw."""

from __future__ import annotations

from miyabi_ctl.dispatch.claims import Claim
from miyabi_ctl.dispatch.lifecycle import RUN_STATES, describe, run_state
from miyabi_ctl.dispatch.run_views import RunView
from miyabi_ctl.dispatch.store import Assignment


def _assignment(state: str = "running") -> Assignment:
    return Assignment(id=1, issue=1169, title="t", host="mugen", agent="claude",
                      worktree="~/.miyabi/worktrees/issue-1169", branch="issue/1169",
                      session="miyabi-1169", base="abc", log=None, started="2026-12-04T00:00:00Z",
                      state=state, ended=None, note=None)


def test_live_runs() -> None:
    assert run_state(RunView(_assignment(), alive=True, condition="unknown")) == "running"
    assert run_state(RunView(_assignment(), alive=True, condition="waiting for input")) == "waiting"


def test_ended_runs_by_their_commits() -> None:
    assert run_state(RunView(_assignment(), alive=False, ahead=3)) == "ended"
    assert run_state(RunView(_assignment(), alive=False, ahead=0)) == "ended-empty"
    assert run_state(RunView(_assignment(), alive=False, ahead=None)) == "unknown"


def test_unlooked_stale_and_history() -> None:
    assert run_state(RunView(_assignment(), alive=None, error="unreachable")) == "unknown"
    assert run_state(RunView(_assignment(), alive=False, ahead=0, stale=True)) == "stale"
    assert run_state(RunView(_assignment("recalled"))) == "recalled"
    assert run_state(RunView(_assignment("failed"))) == "failed"


def test_every_key_reads_as_words() -> None:
    assert all(key and words for key, words in RUN_STATES.items())


def _claim(**land: str) -> Claim:
    return Claim(issue=1169, oid="c0ffee", host="mugen", state="running", **land)


def test_what_land_recorded_on_the_claim() -> None:
    a = _assignment()
    tip = "a" * 40
    refused = _claim(land="check-failed", land_tip=tip)
    assert run_state(RunView(a, alive=False, ahead=2, tip=tip, claim=refused)) == "check-failed"
    # New commits since the refusal: ready for another try.
    assert run_state(RunView(a, alive=False, ahead=3, tip="b" * 40, claim=refused)) == "ended"
    # A follow-up works on it: running, whatever was recorded.
    assert run_state(RunView(a, alive=True, condition="unknown", claim=refused)) == "running"
    conflict = _claim(land="conflicts", land_tip=tip)
    assert run_state(RunView(a, alive=False, ahead=2, tip=tip, claim=conflict)) == "conflicts"
    assert run_state(RunView(a, alive=False, ahead=2, claim=_claim(land="landed"))) == "landed"
    # Merged into main by hand: its work is home, only the clean-up is left.
    assert run_state(RunView(a, alive=False, ahead=0, merged=True, claim=_claim())) == "landed"


def test_pull_requests() -> None:
    a = _assignment()
    pr = _claim(land="pr-open", pr="12")
    assert run_state(RunView(a, alive=False, ahead=2, claim=pr)) == "pr-open"  # not asked
    for state, key in (("open", "pr-open"), ("merged", "pr-merged"), ("closed", "pr-closed")):
        view = RunView(a, alive=False, ahead=2, claim=pr, pr_state=state)
        assert run_state(view) == key
        assert describe(view) == f"pull request #12 {state}"
    # An open pull request vouches for the run: not stale however long it waits for review.
    assert run_state(RunView(a, alive=False, ahead=2, claim=pr, stale=True)) == "pr-open"


def test_words() -> None:
    assert describe(RunView(_assignment(), alive=False, ahead=2)) == (
        "ended with 2 commits (ready to land)")
    assert describe(RunView(_assignment(), alive=False, ahead=1)) == (
        "ended with 1 commit (ready to land)")
    assert describe(RunView(_assignment(), alive=False, ahead=0, stale=True)) == "running, STALE"
    assert describe(RunView(_assignment("landed"))) == "landed"
