"""Presentation of Phase 0 plans and results: rich tables and JSON. Nothing here talks to a host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from miyabi_ctl.phase0.backup import BackupOutcome, BackupPlan
from miyabi_ctl.phase0.backups import every_plan, outcome_of
from miyabi_ctl.phase0.merge import MergeOutcome, MergePlan
from miyabi_ctl.phase0.prune import PrunePlan, Selection
from miyabi_ctl.phase0.run import RunOutcome, RunPlan
from miyabi_ctl.tables import Columns, TableView, duration, human_age, keyed

Show = Callable[[Console, Any], None]  # cli.common.show: a terminal as is, piped as plain lines


def backup_table(plans: list[BackupPlan], outcomes: dict[str, BackupOutcome] | None = None, *,
                 plain: bool = False) -> TableView:
    """One row per host (DETAIL: the reason, or what happened); on a terminal each of the plan's
    notes (embedded repositories, what git cannot keep, modes, secret-like names…) on lines of
    its own under the host. Piped, a row stays one line: its notes follow the detail."""
    rows = []
    for plan in every_plan(plans):  # a host's row, then one per linked worktree (host:name)
        files = str(plan.files) if plan.snapshot and plan.action in ("create", "exists") else "-"
        detail = plan.reason
        action = plan.action
        branch = plan.branch
        out = outcome_of(outcomes, plan) if outcomes is not None else None
        if out is not None:
            action = ("done" if out.ok else "FAILED") if out.action in ("create", "exists") \
                else ("FAILED" if not out.ok else action)
            detail = out.message
            branch = out.branch or plan.branch
        if plain:
            detail = "; ".join(filter(None, [detail, *plan.notes]))
        rows.append({"host": plan.where, "action": action, "branch": branch or "-", "files": files,
                     "detail": unprefixed(plan.host, detail), "notes": plan.notes})
    return BACKUP_COLUMNS.table(rows, plain=plain,
                                notes=None if plain else lambda row: row["notes"])


BACKUP_COLUMNS: Columns[dict[str, Any]] = Columns([
    keyed("host", "HOST", priority=0),
    keyed("action", "ACTION", priority=0),
    keyed("branch", "BRANCH", priority=2),
    keyed("files", "FILES", priority=3, justify="right"),
    keyed("detail", "DETAIL", priority=0, wrap=True, beneath=True),
])

PRUNE_COLUMNS: Columns[dict[str, str]] = Columns([
    keyed("host", "HOST", priority=0),
    keyed("pid", "PID", priority=0, justify="right"),
    keyed("agent", "AGENT", priority=2),
    keyed("age", "AGE", priority=1, justify="right"),
    keyed("action", "ACTION", priority=0),
    keyed("cwd", "CWD", priority=3, wrap=True),
    keyed("why", "WHY", priority=0, wrap=True, beneath=True),
])


def prune_table(plans: list[PrunePlan], *, plain: bool = False) -> TableView:
    """The sessions prune ends (or skips, saying why), and per host a count of those it keeps;
    the kept ones themselves are in ``--json``."""
    rows = []
    for plan in plans:
        if plan.error:
            rows.append(_prune_row(plan.host, action="ERROR", why=unprefixed(plan.host, plan.error)))
            continue
        kept = sum(s.action == "keep" for s in plan.sessions)
        for s in plan.sessions:
            if s.action == "keep":
                continue
            action = s.action if s.result is None else f"{s.action}: {s.result}"
            rows.append(_prune_row(plan.host, str(s.pid), s.agent, human_age(s.age_s), action,
                                   s.cwd or "?", s.reason))
        if not plan.sessions:
            rows.append(_prune_row(plan.host, action="none", why="no agent sessions"))
        elif kept:
            rows.append(_prune_row(plan.host, action="keep",
                                   why=f"{kept} other session{'s' if kept != 1 else ''} kept"))
    return PRUNE_COLUMNS.table(rows, plain=plain)


def _prune_row(host: str, pid: str = "-", agent: str = "-", age: str = "-", action: str = "",
               cwd: str = "-", why: str = "") -> dict[str, str]:
    return {"host": host, "pid": pid, "agent": agent, "age": age, "action": action, "cwd": cwd,
            "why": why}


def unprefixed(host: str, message: str) -> str:
    """A host's error without the host's name in front (a HostError's text starts with it), for
    lines and rows that already name the host: ``macbook: cannot connect``, not ``macbook:
    macbook: cannot connect``."""
    return message.removeprefix(f"{host}: ")


def describe_selection(selection: Selection) -> str:
    """``older than 36h, agent claude``: the selection as the operator wrote it."""
    parts = []
    if selection.older_than_s is not None:
        parts.append(f"older than {duration(selection.older_than_s)}")
    if selection.started_before is not None:
        parts.append(f"started before {selection.started_before:%Y-%m-%d %H:%M %Z}".rstrip())
    if selection.agent:
        parts.append(f"agent {selection.agent}")
    if selection.keep:
        parts.append(f"keeping the newest {selection.keep} per host")
    return ", ".join(parts)


def merge_lines(plan: MergePlan) -> list[str]:
    lines = [f"merge {plan.from_} into {plan.into}: {plan.action}"]
    if plan.host:
        lines.append(f"  host: {plan.host}" + (f" ({plan.why})" if plan.why else ""))
    if plan.reason:
        lines.append(f"  {plan.reason}")
    for name, state in plan.states.items():
        if state.error:
            lines.append(f"  {name}: {unprefixed(name, state.error)}")
            continue
        lines.append(f"  {name}: on {state.branch or 'detached HEAD'}, {state.dirty} uncommitted, "
                     f"{plan.from_} {state.from_relation}"
                     + (f" by {state.from_ahead}" if state.from_ahead else ""))
    for step in plan.sync:
        lines.append(f"  sync {step.host}: {step.action} ({unprefixed(step.host, step.reason)})")
    lines.extend(f"  note: {n}" for n in plan.notes)
    return lines


def merge_result_lines(out: MergeOutcome) -> list[str]:
    lines = [("OK: " if out.ok else "FAILED: ") + out.message]
    if out.conflicts:
        lines.append("  conflicting files:")
        lines.extend(f"    {f}" for f in out.conflicts)
    if out.check_output:
        lines.append("  check output (last lines):")
        lines.extend(f"    {line}" for line in out.check_output)
    lines.extend(f"  note: {n}" for n in out.notes)
    for step in out.sync:
        lines.append(f"  sync {step.host}: {step.action}: {unprefixed(step.host, step.reason)}"
                     + ("" if step.ok else " (FAILED)"))
    return lines


AUDIT_COLUMNS: Columns[dict[str, str]] = Columns([
    keyed("time", "TIME", priority=1),
    keyed("host", "HOST", priority=0),
    keyed("action", "ACTION", priority=0),
    keyed("result", "RESULT", priority=0),
    keyed("detail", "DETAIL", priority=0, wrap=True, beneath=True),
])


def audit_table(entries: list[dict[str, Any]], *, plain: bool = False) -> TableView:
    rows = []
    for e in entries:
        after = e.get("after") if isinstance(e.get("after"), dict) else {}
        detail = e.get("error") or ", ".join(f"{k}={v}" for k, v in after.items())
        rows.append({"time": str(e.get("time", "")), "host": str(e.get("host", "")),
                     "action": str(e.get("action", "")), "result": str(e.get("result", "")),
                     "detail": str(detail)})
    return AUDIT_COLUMNS.table(rows, plain=plain)


def run_plan_lines(console: Console, plan: RunPlan, *, show: Show, plain: bool) -> None:
    """The ``phase0 run`` plan: its steps numbered in order, then the notes."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("backup", lambda: show(console, backup_table(plan.backups, plain=plain)))]
    if plan.prunes is not None:
        prunes = plan.prunes
        steps.append(("prune", lambda: show(console, prune_table(prunes, plain=plain))))
    if plan.merge is not None:
        merge = plan.merge
        steps.append(("merge", lambda: console.print("\n".join(merge_lines(merge)),
                                                      markup=False)))
    for number, (name, draw) in enumerate(steps, 1):
        console.print(f"{number}. {name}")
        draw()
    for note in plan.notes:
        console.print(f"note: {note}", markup=False)


def show_run_outcome(console: Console, plan: RunPlan, out: RunOutcome, *, show: Show,
                     plain: bool) -> None:
    show(console, backup_table(plan.backups, out.backups, plain=plain))
    if out.prunes is not None:
        show(console, prune_table(out.prunes, plain=plain))
    if out.merge is not None:
        console.print("\n".join(merge_result_lines(out.merge)), markup=False)
