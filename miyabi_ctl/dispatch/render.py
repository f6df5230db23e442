"""Presentation of the backlog, dispatch plans and runs: rich tables, plain lines, JSON.

Nothing here talks to a host; everything takes values computed by backlog/placement/dispatch.
"""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from miyabi_ctl.dispatch.graph import IssueState
from miyabi_ctl.dispatch.placement import HostFigures, Plan
from miyabi_ctl.dispatch.run_views import RunView
from miyabi_ctl.dispatch.service import ApplyReport
from miyabi_ctl.tables import ago, make_table

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
        "labels": list(issue.labels),
    }


def issues_json(states: list[IssueState], source: str) -> dict[str, Any]:
    return {"source": source, "issues": [issue_json(s) for s in states]}


def issues_table(states: list[IssueState], *, plain: bool = False) -> Table:
    table = make_table("#", "PRIO", "STATE", "NEEDS", "EST", "TITLE", plain=plain)
    style = {"ready": "green", "blocked": "yellow", "assigned": "cyan", "done": "dim",
             "tracking": "dim", "pull request": "yellow"}
    for s in states:
        table.add_row(str(s.issue.number), s.issue.priority, s.describe(),
                      ",".join(s.issue.needs) or "-", s.issue.estimate or "-", s.issue.title,
                      style=style.get(s.status))
    return table


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


def hosts_table(figures: list[HostFigures], plan: Plan, *, plain: bool = False) -> Table:
    """--explain: every host's figures and what placement made of it."""
    chosen: dict[str, list[str]] = {}
    for p in plan.assignments:
        chosen.setdefault(p.host, []).append(f"#{p.issue}")
    table = make_table("HOST", "STATUS", "LOAD", "CPUS", "LOAD/CORE", "SESSIONS", "OURS", "MAX",
                   "FREE", "TAGS", "VERDICT", plain=plain)
    for f in figures:
        exclusion = f.standing_exclusion()
        if f.name in chosen:
            verdict = "chosen for " + ", ".join(chosen[f.name])
        elif exclusion:
            verdict = "excluded: " + exclusion[1]
        else:
            verdict = "eligible, not chosen"
        lpc = f.load_per_core()
        table.add_row(f.name, f.level, _num(f.load), _num(f.cpus),
                      "-" if lpc is None else f"{lpc:.2f}", str(f.sessions) if f.reachable else "-",
                      str(f.own_running), _num(f.max_sessions),
                      _num(f.free_slots) if f.reachable else "-", ",".join(f.tags) or "-", verdict)
    return table


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
    }


def runs_table(views: list[RunView], *, plain: bool = False, now: float | None = None) -> Table:
    now = now or time.time()
    table = make_table("#", "HOST", "STATE", "SESSION", "COMMITS", "LAST ACTIVITY", "DONE", "BRANCH",
                   "WORKTREE", plain=plain)
    for v in views:
        a = v.assignment
        if v.error:
            session = f"? ({v.error})"
        elif v.alive is None:
            session = "-"
        else:
            session = f"{a.session} {'alive' if v.alive else 'gone'}"
            if v.condition and v.condition != "unknown" and v.condition != "ended":
                session += f", {v.condition}"
            if v.exit_status is not None:
                session += f" (exit {v.exit_status})"
        activity = "-" if v.last_activity is None else ago(now - v.last_activity)
        done = "merged" if v.merged else "issue closed" if v.issue_closed else "no"
        state = f"{a.state}, STALE" if v.stale else a.state
        table.add_row(str(a.issue), a.host, state, session, _num(v.ahead), activity, done,
                      a.branch, a.worktree)
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


