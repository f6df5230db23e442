"""What `runs` says about a session beyond alive/gone, from what its host reported."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("alive", "ahead", "pane", "log", "condition"), [
    (False, 0, "", "", "ended without commits"),
    (False, 2, "", "", "ended"),
    (False, None, "", "", "unknown"),  # no branch: nothing can be said
    (True, 0, "Do you want to make this edit to lambda.tf? (y/n)", "", "waiting for input"),
    (True, 0, "", "Overwrite main.tf? [Y/n]", "waiting for input"),
    (True, 1, "> ", "", "waiting for input"),
    (True, 1, "❯", "", "waiting for input"),
    (True, 0, "Enter passphrase for key '/root/.ssh/id_ed25519':", "", "waiting for input"),
    (True, 0, "Press Enter to continue", "", "waiting for input"),
    (True, 0, "Running tests... 42 passed", "miyabi-ctl: issue #7 starting", "unknown"),
    (True, 0, "", "", "unknown"),
])
def test_run_conditions(alive: bool, ahead: int | None, pane: str, log: str,
                        condition: str) -> None:
    from miyabi_ctl.dispatch.agent_run import condition_of

    assert condition_of(alive, ahead, pane, log) == condition
