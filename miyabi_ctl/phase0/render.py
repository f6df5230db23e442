"""Presentation of Phase 0 plans and results: rich tables and JSON. Nothing here talks to a host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from miyabi_ctl.phase0.backup import BackupOutcome, BackupPlan
from miyabi_ctl.phase0.merge import MergeOutcome, MergePlan
from miyabi_ctl.phase0.prune import PrunePlan
from miyabi_ctl.phase0.run import RunOutcome, RunPlan
from miyabi_ctl.tables import human_age, make_table

Show = Callable[[Console, Any], None]  # cli.common.show: a terminal as is, piped as plain lines


def backup_table(plans: list[BackupPlan], outcomes: dict[str, BackupOutcome] | None = None, *,
                 plain: bool = False) -> Table:
    table = make_table("HOST", "ACTION", "BRANCH", "FILES", "DETAIL", plain=plain)
    for plan in plans:
        files = str(plan.files) if plan.snapshot and plan.action in ("create", "exists") else "-"
        detail = "; ".join([plan.reason, *plan.notes]) if plan.reason or plan.notes else ""
        action = plan.action
        if outcomes is not None and plan.host in outcomes:
            out = outcomes[plan.host]
            action = ("done" if out.ok else "FAILED") if out.action in ("create", "exists") \
                else ("FAILED" if not out.ok else action)
            detail = "; ".join([out.message, *plan.notes])
            plan_branch = out.branch or plan.branch
        else:
            plan_branch = plan.branch
        table.add_row(plan.host, action, plan_branch or "-", files, detail)
    return table


def prune_table(plans: list[PrunePlan], *, plain: bool = False) -> Table:
    table = make_table("HOST", "PID", "AGENT", "AGE", "ACTION", "CWD", "WHY", plain=plain)
    for plan in plans:
        if plan.error:
            table.add_row(plan.host, "-", "-", "-", "ERROR", "-", plan.error)
            continue
        if not plan.sessions:
            table.add_row(plan.host, "-", "-", "-", "none", "-", "no agent sessions")
        for s in plan.sessions:
            action = s.action if s.result is None else f"{s.action}: {s.result}"
            table.add_row(plan.host, str(s.pid), s.agent, human_age(s.age_s), action, s.cwd or "?",
                          s.reason)
    return table


def merge_lines(plan: MergePlan) -> list[str]:
    lines = [f"merge {plan.from_} into {plan.into}: {plan.action}"]
    if plan.host:
        lines.append(f"  host: {plan.host}" + (f" ({plan.why})" if plan.why else ""))
    if plan.reason:
        lines.append(f"  {plan.reason}")
    for name, state in plan.states.items():
        if state.error:
            lines.append(f"  {name}: {state.error}")
            continue
        lines.append(f"  {name}: on {state.branch or 'detached HEAD'}, {state.dirty} uncommitted, "
                     f"{plan.from_} {state.from_relation}"
                     + (f" by {state.from_ahead}" if state.from_ahead else ""))
    for step in plan.sync:
        lines.append(f"  sync {step.host}: {step.action} ({step.reason})")
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
        lines.append(f"  sync {step.host}: {step.action}: {step.reason}"
                     + ("" if step.ok else " (FAILED)"))
    return lines


def audit_table(entries: list[dict[str, Any]], *, plain: bool = False) -> Table:
    table = make_table("TIME", "HOST", "ACTION", "RESULT", "DETAIL", plain=plain)
    for e in entries:
        after = e.get("after") if isinstance(e.get("after"), dict) else {}
        detail = e.get("error") or ", ".join(f"{k}={v}" for k, v in after.items())
        table.add_row(str(e.get("time", "")), str(e.get("host", "")), str(e.get("action", "")),
                      str(e.get("result", "")), str(detail))
    return table



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
