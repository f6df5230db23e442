"""Presentation of ``show`` and ``land``: plain lines and JSON.

Every value from a run — commit subjects, file names, log lines, check output, titles — is shown
as it is (the CLI prints these lines without markup); nothing here talks to a host.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from miyabi_ctl.dispatch.land import LandPlan
from miyabi_ctl.dispatch.landing import LandReport
from miyabi_ctl.dispatch.lifecycle import describe, run_state
from miyabi_ctl.dispatch.show import RunDetail


def _when(epoch: int | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


def detail_lines(detail: RunDetail) -> list[str]:
    """``show`` for people: the run, its commits, files, uncommitted work, check, log."""
    a, claim, view = detail.target.assignment, detail.target.claim, detail.view
    lines = [f"#{a.issue} {a.title}".rstrip(),
             f"  host:     {a.host} ({a.agent}, tmux session {a.session})"]
    if detail.error:
        return [*lines, f"  state:    unknown — {detail.error}"]
    lines.append(f"  state:    {describe(view)}")
    if view.exit_status is not None and not view.alive:
        lines[-1] += f" (the agent exited with status {view.exit_status})"
    if claim is not None and claim.land_note and run_state(view) in (
            "check-failed", "conflicts", "landed"):
        lines.append(f"  land:     {claim.land_note}")
    if claim is not None and claim.pr:
        state = view.pr_state or "state unknown"
        lines.append(f"  pull request: #{claim.pr} {state}"
                     + (f" {detail.pr_url}" if detail.pr_url else ""))
    if detail.branch_exists:
        base = f", {detail.commit_count} commits since {detail.base[:12]}" if detail.base else ""
        lines.append(f"  branch:   {a.branch} at {(view.tip or '?')[:12]}{base}")
    else:
        lines.append(f"  branch:   {a.branch} does not exist on {a.host}")
    if detail.worktree_exists is False:
        lines.append(f"  worktree: {a.worktree} (gone)")
    else:
        dirty = detail.uncommitted or 0
        lines.append(f"  worktree: {a.worktree} ("
                     + (f"{dirty} uncommitted files" if dirty else "clean") + ")")
        lines += [f"    {f}" for f in detail.uncommitted_files]
    if detail.check is not None:
        lines.append(f"  last check: {detail.check.describe()}")
    if detail.commits:
        shown = len(detail.commits)
        more = f", the last {shown} shown" if detail.commit_count > shown else ""
        lines.append(f"Commits ({detail.commit_count}{more}):")
        lines += [f"  {c.sha[:12]} {c.subject}" for c in detail.commits]
    if detail.files:
        lines.append(f"Files ({detail.shortstat or len(detail.files)}):")
        width = min(60, max(len(f.path) for f in detail.files))
        lines += [f"  {f.path.ljust(width)}  "
                  + ("binary" if f.added is None else f"+{f.added} -{f.deleted}")
                  for f in detail.files]
    if detail.check is not None and detail.check.output:
        lines.append("Check output (last lines):")
        lines += [f"  {line}" for line in detail.check.output]
    if detail.log:
        lines.append(f"Log (last {len(detail.log)} lines of {a.log}):")
        lines += [f"  {line}" for line in detail.log]
    elif a.log:
        lines.append(f"Log: {a.log} is empty or missing")
    return lines


def detail_json(detail: RunDetail) -> dict[str, Any]:
    a, claim, view = detail.target.assignment, detail.target.claim, detail.view
    looked = detail.error is None
    check = detail.check
    return {
        "issue": a.issue, "title": a.title, "host": a.host, "agent": a.agent,
        "session": a.session, "worktree": a.worktree, "branch": a.branch, "log": a.log,
        "state": a.state, "lifecycle": run_state(view) if looked else "unknown",
        "lifecycle_text": describe(view) if looked else "unknown",
        "session_alive": view.alive, "condition": view.condition,
        "exit_status": view.exit_status, "commits_ahead": view.ahead, "merged": view.merged,
        "tip": view.tip, "base": detail.base, "commit_count": detail.commit_count,
        "commits": [{"sha": c.sha, "time": c.time, "subject": c.subject}
                    for c in detail.commits],
        "files": [{"path": f.path, "added": f.added, "deleted": f.deleted}
                  for f in detail.files],
        "shortstat": detail.shortstat or None,
        "worktree_exists": detail.worktree_exists, "uncommitted": detail.uncommitted,
        "uncommitted_files": detail.uncommitted_files, "log_tail": detail.log,
        "check": None if check is None else {
            "rc": check.rc, "passed": check.passed, "command": check.command,
            "time": check.time or None, "onto": check.onto or None, "tip": check.tip or None,
            "output": check.output},
        "claim": claim.oid if claim else None,
        "controller": claim.controller_name if claim else None,
        "land": (claim.land or None) if claim else None,
        "land_note": (claim.land_note or None) if claim else None,
        "pr": int(claim.pr) if claim and claim.pr else None,
        "pr_state": view.pr_state, "pr_url": detail.pr_url,
        "diff": detail.diff, "error": detail.error,
    }


ACTION_WORDS = {"merge": "merge into main", "pull-request": "open a pull request",
                "update-pr": "update its pull request", "cleanup": "clean up",
                "refuse": "REFUSED", "leave": "left alone"}


def land_plan_lines(plan: LandPlan) -> list[str]:
    how = ("merged into main (file backlog)" if plan.flow == "merge" else
           "through a pull request (GitHub backlog)")
    lines = [f"Land plan ({how}; check: {f'`{plan.check}`' if plan.check else 'none'}):"]
    if plan.claims_error:
        lines.append(f"  the claims could not be read, so nothing is landed: {plan.claims_error}")
    if not plan.items:
        lines.append("  no runs")
    for item in plan.items:
        a = item.target.assignment
        lines.append(f"  #{a.issue} on {a.host}: {ACTION_WORDS.get(item.action, item.action)} "
                     f"— {item.reason}")
        lines += [f"      {n}. {step}" for n, step in enumerate(item.steps, 1)]
    return lines


def land_outcome_lines(report: LandReport) -> list[str]:
    lines = []
    for r in report.results:
        lines.append(f"#{r.issue} {r.host}: {r.result}" + (f" — {r.message}" if r.message else ""))
        if r.conflicts:
            lines += [f"    conflict: {path}" for path in r.conflicts]
        if r.check_rc not in (None, 0):
            lines += [f"    check: {line}" for line in r.check_output]
    return lines
