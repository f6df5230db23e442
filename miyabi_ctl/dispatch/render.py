"""Presentation of the backlog, dispatch plans and runs: rich tables, plain lines, JSON.

Nothing here talks to a host; everything takes values computed by backlog/placement/dispatch.
"""

from __future__ import annotations

import time
from typing import Any

from miyabi_ctl.dispatch.graph import IssueState
from miyabi_ctl.dispatch.lifecycle import describe, run_state
from miyabi_ctl.dispatch.placement import HostFigures, Plan
from miyabi_ctl.dispatch.run_views import RunView
from miyabi_ctl.dispatch.service import ApplyReport
from miyabi_ctl.tables import Column, Columns, TableView, ago

# -- issues ---------------------------------------------------------------------------------------

def issue_json(state: IssueState) -> dict[str, Any]:
    issue = state.issue
    return {
        "number": issue.number,
        "title": issue.title,
        "priority": issue.priority,
        "state": state.status,
        "blocked_by": list(state.blocked_by),
        "assigned_to": state.assigned_to,
        "needs": list(issue.needs),
        "parent": issue.parent,
        "children": list(state.children),
        "unblocks": state.unblocks,
        "estimate": issue.estimate,
        "agent": issue.agent,
        "labels": list(issue.labels),
        "done_via": state.done_via,
    }


def issues_json(states: list[IssueState], source: str) -> dict[str, Any]:
    return {"source": source, "issues": [issue_json(s) for s in states]}


ISSUE_STYLE = {"ready": "green", "blocked": "yellow", "assigned": "cyan", "done": "dim",
               "tracking": "dim", "pull request": "yellow"}

ISSUE_COLUMNS: Columns[IssueState] = Columns([
    Column("number", "#", lambda s: str(s.issue.number), priority=0, justify="right"),
    Column("priority", "PRIO", lambda s: s.issue.priority, priority=1),
    Column("state", "STATE", lambda s: s.describe(), priority=0, wrap=True),
    Column("needs", "NEEDS", lambda s: ",".join(s.issue.needs) or "-", priority=3),
    Column("estimate", "EST", lambda s: s.issue.estimate or "-", priority=4),
    Column("agent", "AGENT", lambda s: s.issue.agent or "-", priority=5),
    Column("title", "TITLE", lambda s: s.issue.title, priority=0, wrap=True, beneath=True),
])


def issues_table(states: list[IssueState], *, plain: bool = False) -> TableView:
    return ISSUE_COLUMNS.table(states, plain=plain, row_style=lambda s: ISSUE_STYLE.get(s.status))


def issues_summary(states: list[IssueState], source: str) -> str:
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    return f"{source}: {len(states)} issues ({parts})"


# -- dispatch -------------------------------------------------------------------------------------

def plan_lines(plan: Plan, *, title: str = "Dispatch plan") -> list[str]:
    lines = [f"{title}:"]
    if not plan.assignments:
        lines.append("  nothing to place")
    for p in plan.assignments:
        lines.append(f"  #{p.issue} → {p.host} ({p.agent}): {p.reason}")
    if plan.unplaced:
        lines.append("Not placed:")
        lines += [f"  #{u.issue}: {u.reason}" for u in plan.unplaced]
    return lines


def hosts_table(figures: list[HostFigures], plan: Plan, *, plain: bool = False) -> TableView:
    """--explain: every host's figures and what placement made of it."""
    chosen: dict[str, list[str]] = {}
    for p in plan.assignments:
        chosen.setdefault(p.host, []).append(f"#{p.issue}")

    def verdict(f: HostFigures) -> str:
        exclusion = f.standing_exclusion()
        if f.name in chosen:
            return "chosen for " + ", ".join(chosen[f.name])
        if exclusion:
            return "excluded: " + exclusion[1]
        return "eligible, not chosen"

    def per_core(f: HostFigures) -> str:
        lpc = f.load_per_core()
        return "-" if lpc is None else f"{lpc:.2f}"

    columns: Columns[HostFigures] = Columns([
        Column("host", "HOST", lambda f: f.name, priority=0),
        Column("status", "STATUS", lambda f: f.level, priority=1),
        Column("load", "LOAD", lambda f: _num(f.load), priority=5, justify="right"),
        Column("cpus", "CPUS", lambda f: _num(f.cpus), priority=5, justify="right"),
        Column("load_per_core", "LOAD/CORE", per_core, priority=2, justify="right",
               short="L/C"),
        Column("sessions", "SESSIONS", lambda f: str(f.sessions) if f.reachable else "-",
               priority=3, justify="right", short="SESS"),
        Column("ours", "OURS", lambda f: str(f.own_running), priority=4, justify="right"),
        Column("max", "MAX", lambda f: _num(f.max_sessions), priority=3, justify="right"),
        Column("free", "FREE", lambda f: _num(f.free_slots) if f.reachable else "-", priority=1,
               justify="right"),
        Column("tags", "TAGS", lambda f: ",".join(f.tags) or "-", priority=6),
        Column("verdict", "VERDICT", verdict, priority=0, wrap=True, beneath=True),
    ])
    return columns.table(figures, plain=plain)


def explain_lines(plan: Plan) -> list[str]:
    """Per issue: how each host looked when it was that issue's turn."""
    lines = []
    for entry in [*plan.assignments, *plan.unplaced]:
        if not entry.candidates:
            continue
        lines.append(f"#{entry.issue}:")
        for c in entry.candidates:
            mark = "✓" if c.eligible else "✗"
            lines.append(f"  {mark} {c.host}: {c.why}")
    return lines


def apply_lines(report: ApplyReport) -> list[str]:
    return [f"#{r.issue} {r.host}: {r.result}" + (f" — {r.message}" if r.message else "")
            for r in report.results]


def apply_json(report: ApplyReport) -> list[dict[str, Any]]:
    return [{"issue": r.issue, "host": r.host, "result": r.result, "message": r.message,
             "worktree": r.launched.worktree if r.launched else None,
             "branch": r.launched.branch if r.launched else None,
             "session": r.launched.session if r.launched else None} for r in report.results]


# -- runs -----------------------------------------------------------------------------------------

def run_json(view: RunView) -> dict[str, Any]:
    a = view.assignment
    return {
        "issue": a.issue, "title": a.title, "host": a.host, "agent": a.agent,
        "worktree": a.worktree, "branch": a.branch, "session": a.session, "started": a.started,
        "state": a.state, "ended": a.ended, "note": a.note,
        "session_alive": view.alive, "commits_ahead": view.ahead,
        "last_activity": view.last_activity, "merged": view.merged,
        "issue_closed": view.issue_closed, "done": view.done, "error": view.error,
        "condition": view.condition, "exit_status": view.exit_status,
        "claim": view.claim.oid if view.claim else None,
        "controller": view.claim.controller_name if view.claim else None,
        "stale": view.stale,
        "lifecycle": run_state(view), "lifecycle_text": describe(view), "tip": view.tip,
        "land": (view.claim.land or None) if view.claim else None,
        "land_note": (view.claim.land_note or None) if view.claim else None,
        "pr": int(view.claim.pr) if view.claim and view.claim.pr else None,
        "pr_state": view.pr_state,
    }


def runs_table(views: list[RunView], *, plain: bool = False, now: float | None = None) -> TableView:
    return run_columns(time.time() if now is None else now).table(views, plain=plain)


def run_columns(now: float) -> Columns[RunView]:
    def session(v: RunView) -> str:
        if v.error:
            return f"? ({v.error})"
        if v.alive is None:
            return "-"
        text = f"{v.assignment.session} {'alive' if v.alive else 'gone'}"
        if v.condition and v.condition not in ("unknown", "ended"):
            text += f", {v.condition}"
        if v.exit_status is not None:
            text += f" (exit {v.exit_status})"
        return text

    def done(v: RunView) -> str:
        return "merged" if v.merged else "issue closed" if v.issue_closed else "no"

    return Columns([
        Column("issue", "#", lambda v: str(v.assignment.issue), priority=0, justify="right"),
        Column("host", "HOST", lambda v: v.assignment.host, priority=0),
        Column("state", "STATE", describe, priority=1, wrap=True),
        Column("session", "SESSION", session, priority=0, wrap=True),
        Column("commits", "COMMITS", lambda v: _num(v.ahead), priority=2, justify="right",
               short="C"),
        Column("activity", "LAST ACTIVITY", lambda v: "-" if v.last_activity is None
               else ago(now - v.last_activity), priority=3, short="ACTIVE"),
        Column("done", "DONE", done, priority=1),
        Column("branch", "BRANCH", lambda v: v.assignment.branch, priority=4, beneath=True,
               prefix="branch "),
        Column("worktree", "WORKTREE", lambda v: v.assignment.worktree, priority=5, wrap=True,
               beneath=True),
    ])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


