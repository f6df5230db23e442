"""Presentation only: fleet status as a rich table, as the documented JSON, as a check line.

Nothing here talks to a host; everything takes plain values computed elsewhere. rich is imported
by the table functions only: `check` from cron and `status --json` never pay for it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from miyabi_ctl.inventory import Inventory
from miyabi_ctl.probe.report import RepoState
from miyabi_ctl.status.collect import FleetStatus
from miyabi_ctl.status.health import HostStatus
from miyabi_ctl.tables import ago, human_age

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red", "unreachable": "bold magenta"}


# -- JSON -----------------------------------------------------------------------------------------

def status_json(fleet: FleetStatus, inventory: Inventory) -> dict[str, Any]:
    """The documented `status --json` document (docs/json.md); field names are a contract."""
    return {
        "generated_at": fleet.generated_at.isoformat(timespec="seconds"),
        "fleet_file": str(inventory.source) if inventory.source else None,
        "status": fleet.level,
        "hosts": [host_json(h, list(inventory.agents)) for h in fleet.hosts],
    }


def host_json(status: HostStatus, agent_names: list[str]) -> dict[str, Any]:
    report = status.report
    doc: dict[str, Any] = {
        "name": status.name,
        "role": status.spec.role,
        "tags": list(status.spec.tags),
        "max_sessions": status.spec.max_sessions,
        "reachable": status.reachable,
        "error": status.error.message if status.error else None,
        "error_kind": status.error.kind if status.error else None,
        "status": status.level,
        "load_avg": None,
        "cpu_count": None,
        "load_per_core": None,
        "memory": None,
        "sessions": dict.fromkeys(agent_names, 0) if report else None,
        "session_list": [],
        "repo": None,
        "repo_error": None,
        "problems": status.problems,
        "findings": [vars(f) for f in status.findings],
    }
    if report is None:
        return doc
    doc.update(
        hostname=report.hostname,
        os=report.os,
        uptime_s=report.uptime_s,
        load_avg=list(report.load_avg) if report.load_avg else None,
        cpu_count=report.cpu_count,
        load_per_core=report.load_per_core,
        memory={"total_bytes": report.mem_total, "available_bytes": report.mem_available},
        sessions=report.session_counts(agent_names),
        session_list=[{"pid": s.pid, "agent": s.agent, "age_s": s.age_s, "cwd": s.cwd,
                       "cmd": s.cmd} for s in report.sessions],
        repo=repo_json(report.repo) if report.repo else None,
        repo_error=report.repo_error,
    )
    return doc


def repo_json(repo: RepoState) -> dict[str, Any]:
    keys = ("path", "branch", "head", "head_subject", "head_time", "upstream", "ahead", "behind",
            "main_ahead", "main_behind", "staged", "unstaged", "untracked", "conflicted",
            "uncommitted", "stashes", "worktrees")
    return {k: getattr(repo, k) for k in keys}


# -- table ----------------------------------------------------------------------------------------

def status_table(fleet: FleetStatus, inventory: Inventory, *, plain: bool = False) -> Table:
    from rich import box
    from rich.table import Table

    agent_names = list(inventory.agents)
    table = Table(box=None if plain else box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="" if plain else "bold")
    for column in ("host", "role", "branch", "state", "load", "memory", *agent_names,
                   "uncommitted", "main ±", "last commit", "problems"):
        justify = "right" if column in ("load", "memory", "uncommitted", *agent_names) else "left"
        table.add_column(column, justify=justify, overflow="fold",
                         max_width=60 if column == "problems" and not plain else None)
    now = time.time()
    for host in fleet.hosts:
        table.add_row(*_row(host, agent_names, now))
    return table


def _row(host: HostStatus, agent_names: list[str], now: float) -> list[str | Text]:
    from rich.text import Text

    state = Text(host.level, style=STYLE[host.level])
    problems = "; ".join(host.problems)
    report = host.report
    if report is None:
        return [host.name, host.spec.role or "", "", state, "", "", *[""] * len(agent_names),
                "", "", "", problems]
    load = ""
    if report.load_avg:
        load = f"{report.load_avg[0]:g}"
        if report.load_per_core is not None:
            load += f" ({report.load_per_core:.2f}/c)"
    memory = ""
    if report.mem_total and report.mem_available is not None:
        memory = f"{_gib(report.mem_available)}/{_gib(report.mem_total)}G"
    counts = report.session_counts(agent_names)
    repo = report.repo
    branch = uncommitted = drift = last = ""
    if repo is not None:
        branch = repo.branch or (f"({(repo.head or '')[:9]})" if repo.head else "")
        uncommitted = "" if repo.uncommitted is None else str(repo.uncommitted)
        if repo.main_ahead is not None:
            drift = f"+{repo.main_ahead} -{repo.main_behind}"
        if repo.head:
            last = f"{repo.head[:9]} {ago(now - repo.head_time) if repo.head_time else ''}"
    return [host.name, host.spec.role or "", branch, state, load, memory,
            *[str(counts[a]) for a in agent_names], uncommitted, drift, last.strip(), problems]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def sessions_table(fleet: FleetStatus, *, plain: bool = False) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None if plain else box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="" if plain else "bold")
    for column in ("host", "agent", "pid", "age", "cwd", "command"):
        table.add_column(column, justify="right" if column in ("pid", "age") else "left",
                         overflow="fold")
    for host in fleet.hosts:
        if host.report is None:
            table.add_row(host.name, "", "", "", "", Text(f"unreachable: {host.problems[0]}",
                                                          style=STYLE["unreachable"]))
            continue
        for s in host.report.sessions:
            table.add_row(host.name, s.agent, str(s.pid), human_age(s.age_s), s.cwd or "?",
                          s.cmd)
    return table


def sessions_json(fleet: FleetStatus) -> dict[str, Any]:
    sessions = []
    unreachable = []
    for host in fleet.hosts:
        if host.report is None:
            unreachable.append({"host": host.name, "error": host.problems[0]})
            continue
        sessions.extend({"host": host.name, "pid": s.pid, "ppid": s.ppid, "agent": s.agent,
                         "age_s": s.age_s, "cwd": s.cwd, "cmd": s.cmd}
                        for s in host.report.sessions)
    return {"generated_at": fleet.generated_at.isoformat(timespec="seconds"),
            "sessions": sessions, "unreachable": unreachable}
