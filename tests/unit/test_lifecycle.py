"""A run's lifecycle key (dispatch/lifecycle.py) from what `runs` saw."""

from __future__ import annotations

from miyabi_ctl.dispatch.lifecycle import RUN_STATES, run_state
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
