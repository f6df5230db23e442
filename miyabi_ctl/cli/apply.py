"""The one shape of every change: show the plan, ask, apply, show the outcome, exit.

Every command that changes hosts (phase0 backup/prune/merge/run, dispatch, assign, recall) goes
through ``plan_then_apply``, so they all behave alike:

- the plan is printed (``--json``: ``{"applied": false, …plan}``) and nothing changes without
  ``--apply``; with it, a terminal is asked, or ``--yes`` is needed without one;
- plan only, the exit code is 0, or 1 when some part of the plan refuses (the same refusal gives
  the same code in every command); a plan that refuses as a whole is never applied;
- applied, the outcome is printed (``--json``: ``{"applied": true, "ok": …, …outcome}``) and the
  exit code is the outcome's: 0 all done, 75 every failure was a locked host, 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import typer

from miyabi_ctl.cli.common import confirm_apply, echo_lines, print_json
from miyabi_ctl.errors import ExitCode

R = TypeVar("R")


@dataclass
class Change(Generic[R]):
    """A planned change, and how to show, carry out and judge it."""

    plan_json: dict[str, Any]
    show_plan: Callable[[], None]
    carry_out: Callable[[], R]
    outcome_json: Callable[[R], dict[str, Any]]
    show_outcome: Callable[[R], None]
    exit_code: Callable[[R], int]
    refuses: bool = False  # some part of the plan says no (plan only: exit 1)
    applicable: bool = True  # False: the plan as a whole refuses; --apply does nothing, exit 1
    nothing_to_do: bool = False  # nothing to apply: --apply does not ask
    question: str = "Apply this plan?"
    plan_only_note: str | None = None  # printed (not with --json) when the plan was not applied


def plan_then_apply(change: Change[R], *, apply: bool, yes: bool, json_out: bool) -> NoReturn:
    if not json_out:
        change.show_plan()
    runnable = change.applicable and not change.nothing_to_do
    if not runnable or not confirm_apply(apply, yes, change.question):
        if json_out:
            print_json({"applied": False, **change.plan_json})
        elif change.plan_only_note and runnable:
            echo_lines(change.plan_only_note)
        refused = change.refuses or not change.applicable
        raise typer.Exit(ExitCode.FAILED if refused else ExitCode.OK)
    outcome = change.carry_out()
    code = change.exit_code(outcome)
    if json_out:
        print_json({"applied": True, "ok": code == ExitCode.OK, **change.outcome_json(outcome)})
    else:
        change.show_outcome(outcome)
    raise typer.Exit(code)
