"""End old agent sessions without losing their work, and never anything else.

Candidates come from the same probe and detector as ``miyabi-ctl sessions`` (a grep, an editor
on ``~/.claude``, a tmux session named ``claude-build`` are never sessions). Each candidate is
pinned by its kernel start time when planned; the kill script re-checks it, so a pid reused by
another process is never signalled. A session whose working directory is a git work tree with
uncommitted changes is backed up first (``backup_tree``), or skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import ExitCode
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.phase0.backup import BackupPlan, backup_tree, plan_backup
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.remote import Script, run_script
from miyabi_ctl.status.collect import collect_status
from miyabi_ctl.tables import human_age

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


PRUNE_SCRIPT = Script("phase0", "prune.sh")


def parse_duration(text: str) -> float:
    """``36h``, ``3d``, ``90m``, ``45s``, ``1h30m``, ``2w`` to seconds."""
    cleaned = text.strip().lower()
    parts = _DURATION_RE.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (use e.g. 45s, 90m, 36h, 3d, 1h30m)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A cut-off in the controller's local time: an ISO date/time, or a weekday name.

    A weekday means that day's 00:00, the most recent one *including today*: ``saturday`` said
    on a Saturday is today 00:00, i.e. "sessions started before today". ``today`` and
    ``yesterday`` work too.
    """
    now = (now or dt.datetime.now()).astimezone()
    word = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - dt.timedelta(days=1)
    for i, day in enumerate(WEEKDAYS):
        if word in (day, day[:3]):
            return midnight - dt.timedelta(days=(now.weekday() - i) % 7)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a date, time or weekday: {text!r} (e.g. 2025-11-22, "
                         "'2025-11-22 18:00', saturday)") from None
    return when.astimezone() if when.tzinfo is None else when


@dataclass(frozen=True)
class Selection:
    """Which sessions to end. ``older_than_s`` and ``started_before`` may both be given."""

    older_than_s: float | None = None
    started_before: dt.datetime | None = None
    keep: int = 0
    agent: str | None = None
    idle_for_s: float | None = None  # no activity for this long; unknown activity is not idle

    def describe(self) -> str:
        parts = []
        if self.idle_for_s is not None:
            parts.append(f"idle for {self.idle_for_s:g}s")
        if self.older_than_s is not None:
            parts.append(f"older than {self.older_than_s:g}s")
        if self.started_before is not None:
            parts.append(f"started before {self.started_before:%Y-%m-%d %H:%M %Z}")
        if self.agent:
            parts.append(f"agent {self.agent}")
        if self.keep:
            parts.append(f"keeping the newest {self.keep} per host")
        return ", ".join(parts)


@dataclass
class SessionAction:
    """One session and what prune does with it: ``kill``, ``keep`` or ``skip`` (and why)."""

    pid: int
    agent: str
    age_s: int
    cwd: str | None
    cmd: str
    action: str
    reason: str = ""
    last_activity_s: int | None = None
    start: str | None = None
    exe: str | None = None
    backup: BackupPlan | None = None
    result: str | None = None  # after apply: terminated, killed, gone, mismatch, survived, skipped

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "agent": self.agent, "age_s": self.age_s, "cwd": self.cwd,
                "cmd": self.cmd, "action": self.action, "reason": self.reason,
                "last_activity_s": self.last_activity_s,
                "start": self.start, "backup": self.backup.to_json() if self.backup else None,
                "result": self.result}


@dataclass
class PrunePlan:
    host: str
    error: str | None = None
    sessions: list[SessionAction] = field(default_factory=list)

    @property
    def to_kill(self) -> list[SessionAction]:
        return [s for s in self.sessions if s.action == "kill"]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "error": self.error,
                "sessions": [s.to_json() for s in self.sessions]}


def choose(sessions: list[AgentSession], sel: Selection, host_now: int | None) -> list[SessionAction]:
    """The selection rule, pure: every session with ``kill`` or ``keep`` and the reason."""
    pool = [s for s in sessions if sel.agent in (None, s.agent)]
    newest_first = sorted(pool, key=lambda s: (s.age_s, -s.pid))
    kept = {s.pid for s in newest_first[:sel.keep]}
    now = host_now if host_now is not None else int(dt.datetime.now().timestamp())
    actions = []
    for s in sorted(sessions, key=lambda s: (-s.age_s, s.pid)):
        act = SessionAction(s.pid, s.agent, s.age_s, s.cwd, s.cmd, action="keep",
                            last_activity_s=s.last_activity_s)
        started = dt.datetime.fromtimestamp(now - s.age_s).astimezone()
        old = sel.older_than_s is None or s.age_s > sel.older_than_s
        early = sel.started_before is None or started < sel.started_before
        if sel.agent not in (None, s.agent):
            act.reason = f"not {sel.agent}"
        elif s.mine is False:
            act.reason = "another user's session"
        elif s.pid in kept:
            act.reason = f"among the newest {sel.keep}"
        elif not (old and early):
            act.reason = "too recent"
        elif sel.idle_for_s is not None and s.last_activity_s is None:
            act.reason = "activity unknown: never counted as idle"
        elif sel.idle_for_s is not None and s.last_activity_s is not None \
                and s.last_activity_s < sel.idle_for_s:
            act.reason = f"active {human_age(s.last_activity_s)} ago"
        else:
            act.action, act.reason = "kill", f"started {started:%Y-%m-%d %H:%M}"
            if sel.idle_for_s is not None and s.last_activity_s is not None:
                act.reason += f", idle for {human_age(s.last_activity_s)}"
        actions.append(act)
    return actions


def _identify(host: Host, actions: list[SessionAction]) -> None:
    """Pin each candidate by its start time (and executable) as the host sees it now."""
    pids = [str(a.pid) for a in actions if a.action == "kill"]
    if not pids:
        return
    result = run_script(host, PRUNE_SCRIPT, "ident", *pids, timeout=60)
    idents = {}
    for line in result.stdout.splitlines():
        if line.startswith("ident="):
            pid, start, *exe = line[6:].split(" ")
            idents[int(pid)] = (start, " ".join(exe))
    for a in actions:
        if a.action != "kill":
            continue
        if a.pid not in idents:
            a.action, a.reason = "skip", "exited before it could be pinned"
        else:
            a.start, a.exe = idents[a.pid]


def _check_work(host: Host, actions: list[SessionAction], force: bool) -> None:
    """Sessions in a dirty work tree need a backup first (planned here, read-only)."""
    plans: dict[str, BackupPlan] = {}
    for a in actions:
        if a.action != "kill":
            continue
        if not a.cwd or a.cwd.endswith(" (deleted)"):
            if not force:
                a.action, a.reason = "skip", "working directory unknown: cannot check for unsaved work"
            continue
        if a.cwd not in plans:
            plans[a.cwd] = plan_backup(host, a.cwd, label=host.name, remote=None)
        plan = plans[a.cwd]
        a.backup = plan
        if plan.action in ("create", "exists"):
            a.reason += f"; back up {plan.files} changed files to {plan.branch} first"
        elif plan.action == "refuse" and not force:
            a.action, a.reason = "skip", f"unsaved work cannot be backed up: {plan.reason}"
        elif plan.action == "refuse":
            a.reason += f"; --force: NOT backed up ({plan.reason})"


def plan_prune(fleet: Fleet, sel: Selection, *, force: bool = False) -> list[PrunePlan]:
    """Probe every host, choose sessions, pin them, plan backups of dirty work trees."""
    status = collect_status(fleet)
    reports = {h.name: h for h in status.hosts}

    def one(host: Host) -> PrunePlan:
        st = reports[host.name]
        if st.report is None:
            return PrunePlan(host.name, error=str(st.error.message if st.error else "no report"))
        actions = choose(st.report.sessions, sel, st.report.now)
        _identify(host, actions)
        _check_work(host, actions, force)
        return PrunePlan(host.name, sessions=actions)

    return [o.value if o.value else PrunePlan(o.host, error=str(o.error))
            for o in fleet.map(one, deadline_s=600)]


def apply_prune(host: Host, plan: PrunePlan, *, repo_path: str, grace: float,
                force: bool = False) -> PrunePlan:
    """Back up dirty work trees, then end the pinned sessions: TERM, grace, KILL survivors."""
    with host_lock(host, repo_path, "phase0 prune"):
        saved: dict[str, bool] = {}
        for a in plan.to_kill:
            # Every repo work tree is checked again now (a clean tree may have changed since
            # the plan); a clean one costs one round trip and creates nothing.
            if a.backup is None or a.backup.action in ("norepo", "refuse") or not a.cwd:
                continue
            if a.cwd not in saved:
                outcome = backup_tree(host, a.cwd, label=host.name, remote=None)
                saved[a.cwd] = outcome.ok
                if outcome.ok and outcome.branch:
                    a.backup.branch = outcome.branch
                a.reason += f"; {outcome.message}" if outcome.branch or not outcome.ok else ""
            if not saved[a.cwd]:
                if force:
                    a.reason += "; --force: killed WITHOUT a verified backup"
                else:
                    a.action, a.result = "skip", "backup-failed"
                    a.reason = "the backup failed, so it was not killed: " + a.reason
        targets = [a for a in plan.to_kill if a.start and a.exe]
        if targets:
            entries = [word for a in targets for word in (str(a.pid), a.start, a.exe)]
            result = run_script(host, PRUNE_SCRIPT, "kill", str(max(0, int(grace))), *entries,
                                timeout=grace + 30 * len(targets) + 30)
            results = {}
            for line in result.stdout.splitlines():
                if line.startswith("result="):
                    pid, what = line[7:].split(" ", 1)
                    results[int(pid)] = what
            for a in targets:
                a.result = results.get(a.pid, "unknown")
                if a.result == "mismatch":
                    a.reason += ("; NOT ended: the pid now has another start time or executable "
                                 "than when it was planned, so it was not signalled")
                audit.record(host.name, "prune.kill",
                             result="ok" if a.result in ("terminated", "killed", "gone") else "failed",
                             before={"pid": a.pid, "agent": a.agent, "age_s": a.age_s,
                                     "start": a.start, "cwd": a.cwd},
                             after={"result": a.result},
                             forced=force, backup=a.backup.branch if a.backup else None)
        for a in plan.sessions:
            if a.action == "skip":
                audit.record(host.name, "prune.skip", result="skipped", error=a.reason,
                             before={"pid": a.pid, "agent": a.agent, "cwd": a.cwd})
    return plan


def prune_ok(plan: PrunePlan) -> bool:
    """Every planned kill ended its session, and no backup failed on the way.

    ``mismatch`` is not success: the process was not signalled, because what holds the pid is not
    provably the planned session (a reused pid, an exec, or a start time that cannot be read).
    """
    if plan.error:
        return False
    return all(a.result in ("terminated", "killed", "gone")
               for a in plan.sessions if a.action == "kill") and \
        not any(a.result == "backup-failed" for a in plan.sessions)


# -- the fleet --------------------------------------------------------------------------------

SLOW_DEADLINE_S = 1800.0  # --grace waits and backups of dirty sessions outlast the probe deadline


def _repo(fleet: Fleet, host: Host) -> str:
    return host.spec.repo_path_or(fleet.inventory.repo)


def apply_prunes(fleet: Fleet, plans: list[PrunePlan], *, grace: float, force: bool,
                 skip: set[str] | frozenset[str] = frozenset()) -> list[PrunePlan]:
    audit.ensure_writable()
    by_host = {p.host: p for p in plans}

    def one(host: Host) -> PrunePlan:
        plan = by_host[host.name]
        if plan.error or not plan.to_kill:
            return plan
        if host.name in skip:
            plan.error = "not pruned: its backup failed"
            return plan
        return apply_prune(host, plan, repo_path=_repo(fleet, host), grace=grace, force=force)

    return [o.value if o.value else dataclasses.replace(by_host[o.host], error=str(o.error))
            for o in fleet.map(one, deadline_s=SLOW_DEADLINE_S)]


def prunes_exit_code(results: list[PrunePlan]) -> int:
    return ExitCode.OK if all(prune_ok(p) for p in results) else ExitCode.FAILED
