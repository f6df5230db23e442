"""Presentation only: fleet status as tables (column registries, miyabi_ctl/tables.py) and as
the documented JSON; the check line is status/check.py.

Nothing here talks to a host; everything takes plain values computed elsewhere. rich is imported
when a table is drawn: `check` from cron and `status --json` never pay for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from miyabi_ctl.inventory import Inventory
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.probe.report import RepoState
from miyabi_ctl.status.collect import FleetStatus
from miyabi_ctl.status.health import HostStatus
from miyabi_ctl.tables import Column, Columns, TableView, ago, human_age

if TYPE_CHECKING:
    from rich.text import Text

STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red", "unreachable": "bold magenta"}


# -- JSON -----------------------------------------------------------------------------------------

def status_json(fleet: FleetStatus, inventory: Inventory) -> dict[str, Any]:
    """The documented `status --json` document (docs/json.md); field names are a contract."""
    return {
        "generated_at": fleet.generated_at.isoformat(timespec="seconds"),
        "fleet_file": str(inventory.source.absolute()) if inventory.source else None,
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
        "sessions": dict.fromkeys(agent_names, 0),  # zeros where nothing could be seen
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
        session_list=[{"pid": s.pid, "agent": s.agent, "age_s": s.age_s, "cwd": s.cwd or None,
                       "cmd": s.cmd, **_activity(s)} for s in report.sessions],
        repo=repo_json(report.repo) if report.repo else None,
        repo_error=report.repo_error,
    )
    return doc


def repo_json(repo: RepoState) -> dict[str, Any]:
    keys = ("path", "branch", "head", "head_subject", "head_time", "upstream", "ahead", "behind",
            "main_ahead", "main_behind", "staged", "unstaged", "untracked", "conflicted",
            "uncommitted", "stashes", "worktrees")
    return {**{k: getattr(repo, k) for k in keys},
            "worktree_list": [w.to_json() for w in repo.worktree_list]}


# -- tables ---------------------------------------------------------------------------------------

def status_columns(agent_names: list[str], now: float | None = None) -> Columns[HostStatus]:
    """The `status` table: one row per host; below 120 columns, branch and problems go beneath."""
    now = time.time() if now is None else now
    columns: Columns[HostStatus] = Columns([
        Column("host", "host", lambda h: h.name, priority=0),
        Column("role", "role", lambda h: h.spec.role or "", priority=9),
        Column("branch", "branch", _branch, priority=3, beneath=True, prefix="on "),
        Column("state", "state", lambda h: _styled(h.level, STYLE[h.level]), priority=0),
        Column("load", "load", _load, priority=4, justify="right"),
        Column("memory", "memory", _memory, priority=8, justify="right", short="mem"),
    ])
    for agent in agent_names:
        columns.add(Column(f"sessions.{agent}", agent, _count(agent), priority=1,
                           justify="right"))
    for column in (
        Column("uncommitted", "uncommitted", _uncommitted, priority=2, justify="right",
               short="unc"),
        Column("main", "main ±", _drift, priority=6),
        Column("last_commit", "last commit", lambda h: _last_commit(h, now), priority=7,
               short="last"),
        Column("problems", "problems", lambda h: "; ".join(h.problems), priority=0, wrap=True,
               beneath=True),
    ):
        columns.add(column)
    return columns


def status_table(fleet: FleetStatus, inventory: Inventory, *, plain: bool = False) -> TableView:
    return status_columns(list(inventory.agents)).table(fleet.hosts, plain=plain)


def _styled(text: str, style: str) -> Text:
    from rich.text import Text

    return Text(text, style=style)


def _branch(host: HostStatus) -> str:
    repo = host.report.repo if host.report else None
    if repo is None:
        return ""
    return repo.branch or (f"({(repo.head or '')[:9]})" if repo.head else "")


def _load(host: HostStatus) -> str:
    report = host.report
    if report is None:
        return ""
    if not report.load_avg:
        return "unknown"  # never blank: an unread load is a finding (docs/platforms.md)
    load = f"{report.load_avg[0]:g}"
    if report.load_per_core is not None:
        load += f" ({report.load_per_core:.2f}/c)"
    return load


def _memory(host: HostStatus) -> str:
    report = host.report
    if report is None:
        return ""
    if not report.mem_total or report.mem_available is None:
        return "unknown"
    return f"{_gib(report.mem_available)}/{_gib(report.mem_total)}G"


def _count(agent: str) -> Callable[[HostStatus], str]:
    def cell(host: HostStatus) -> str:
        return str(host.report.session_counts([agent])[agent]) if host.report else ""
    return cell


def _uncommitted(host: HostStatus) -> str:
    repo = host.report.repo if host.report else None
    if repo is None or repo.uncommitted is None:
        return ""
    linked = repo.worktrees_uncommitted  # in the linked worktrees (status --json: each)
    return str(repo.uncommitted) + (f" +{linked} wt" if linked else "")


def _drift(host: HostStatus) -> str:
    repo = host.report.repo if host.report else None
    if repo is None or repo.main_ahead is None:
        return ""
    return f"+{repo.main_ahead} -{repo.main_behind}"


def _last_commit(host: HostStatus, now: float) -> str:
    repo = host.report.repo if host.report else None
    if repo is None or not repo.head:
        return ""
    return f"{repo.head[:9]} {ago(now - repo.head_time) if repo.head_time else ''}".strip()


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


@dataclass
class _SessionRow:
    host: str
    session: AgentSession | None = None
    unreachable: str | None = None


SESSION_COLUMNS: Columns[_SessionRow] = Columns([
    Column("host", "host", lambda r: r.host, priority=0),
    Column("agent", "agent", lambda r: r.session.agent if r.session else "", priority=0),
    Column("pid", "pid", lambda r: str(r.session.pid) if r.session else "", priority=3,
           justify="right"),
    Column("age", "age", lambda r: human_age(r.session.age_s) if r.session else "", priority=0,
           justify="right"),
    Column("active", "active", lambda r: _active(r.session), priority=2, justify="right"),
    Column("attached", "attached", lambda r: _attached(r.session), priority=4),
    Column("branch", "branch", lambda r: (r.session.branch or "") if r.session else "",
           priority=5),
    Column("cwd", "cwd", lambda r: (r.session.cwd or "?") if r.session else "", priority=1,
           wrap=True),
    Column("command", "command", lambda r: r.session.cmd if r.session else _styled(
        f"unreachable: {r.unreachable}", STYLE["unreachable"]), priority=0, wrap=True,
           beneath=True),
])


def sessions_table(fleet: FleetStatus, *, plain: bool = False) -> TableView:
    rows: list[_SessionRow] = []
    for host in fleet.hosts:
        if host.report is None:
            rows.append(_SessionRow(host.name, unreachable=host.problems[0]))
            continue
        rows.extend(_SessionRow(host.name, s) for s in host.report.sessions)
    return SESSION_COLUMNS.table(rows, plain=plain)


def first_run_hint(fleet: FleetStatus, inventory: Inventory) -> str | None:
    """When no SSH host answered at all — the shipped example fleet.yaml, or a new one — what to
    do next, in a few lines for stderr (each host's own error is in the table)."""
    remote = [h for h in fleet.hosts if h.spec.transport != "local"]
    if not remote or any(h.reachable for h in remote):
        return None
    where = inventory.source or "fleet.yaml"
    return "\n".join([
        f"No SSH host of {where} could be reached. If these are the example's hosts:",
        f"  1. edit the hosts in {where} to yours (every key: docs/fleet.md);",
        "  2. check each host's key fingerprint, then trust it:",
        f"       ssh-keyscan -p PORT HOST >> {inventory.ssh.known_hosts}",
        f"  3. run `miyabi-ctl status --fleet {where}` again.",
    ])


def sessions_json(fleet: FleetStatus) -> dict[str, Any]:
    sessions = []
    unreachable = []
    for host in fleet.hosts:
        if host.report is None:
            unreachable.append({"host": host.name, "error": host.problems[0]})
            continue
        sessions.extend({"host": host.name, "pid": s.pid, "ppid": s.ppid, "agent": s.agent,
                         "age_s": s.age_s, "cwd": s.cwd or None, "cmd": s.cmd, **_activity(s)}
                        for s in host.report.sessions)
    return {"generated_at": fleet.generated_at.isoformat(timespec="seconds"),
            "sessions": sessions, "unreachable": unreachable}


def _activity(s: AgentSession) -> dict[str, Any]:
    """What a session is doing (docs/json.md): null where the host could not say."""
    return {"last_activity_s": s.last_activity_s, "activity_source": s.activity_source,
            "attached": s.attached, "branch": s.branch, "mine": s.mine}


def _active(s: AgentSession | None) -> str:
    if s is None:
        return ""
    return "?" if s.last_activity_s is None else human_age(s.last_activity_s) + " ago"


def _attached(s: AgentSession | None) -> str:
    return "" if s is None else {True: "yes", False: "no", None: "?"}[s.attached]
