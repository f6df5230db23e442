"""Phase 0 across the fleet: plan and apply backup, prune and merge per host, in parallel.

Each ``plan_*`` is read-only and returns plain dataclasses; each ``apply_*`` takes that plan,
holds the host's lock while it changes anything, and reports per host. ``run`` chains the three
as one plan: a host whose backup failed gets no prune, and the merge does not run on it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.agents import AgentSession
from miyabi_ctl.backup import BackupOutcome, BackupPlan, apply_backup, plan_backup
from miyabi_ctl.errors import HostError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.locks import host_lock
from miyabi_ctl.merge import MergeOutcome, MergePlan, apply_merge, decide, plan_merge
from miyabi_ctl.names import check_remote
from miyabi_ctl.prune import PrunePlan, Selection, apply_prune, plan_prune, prune_ok
from miyabi_ctl.status import probe_host
from miyabi_ctl.transport import Host

SLOW_DEADLINE_S = 1800.0  # pushes of big trees and --grace waits outlast the probe deadline


def _repo(fleet: Fleet, host: Host) -> str:
    return host.spec.repo_path_or(fleet.inventory.repo)


# -- backup -----------------------------------------------------------------------------------

def plan_backups(fleet: Fleet, today: dt.date | None = None) -> list[BackupPlan]:
    remote = check_remote(fleet.inventory.repo.remote)
    outcomes = fleet.map(lambda h: plan_backup(h, _repo(fleet, h), label=h.name, remote=remote,
                                               today=today), deadline_s=SLOW_DEADLINE_S)
    return [o.value if o.value else BackupPlan(o.host, "", o.host, "refuse", reason=str(o.error))
            for o in outcomes]


def apply_backups(fleet: Fleet, plans: list[BackupPlan], *, push: bool, clean: bool,
                  today: dt.date | None = None) -> dict[str, BackupOutcome]:
    """Back up every host whose plan has work to save; each under its own lock."""
    audit.ensure_writable()
    by_host = {p.host: p for p in plans}
    remote = check_remote(fleet.inventory.repo.remote)

    def one(host: Host) -> BackupOutcome:
        plan = by_host[host.name]
        if plan.action in ("clean", "norepo"):
            return BackupOutcome(None, None, False, False, True, plan.reason, action=plan.action,
                                 plan=plan)
        if plan.action == "refuse":
            return BackupOutcome(None, None, False, False, False, plan.reason, ok=False,
                                 action="refuse", plan=plan)
        path = _repo(fleet, host)
        with host_lock(host, path, "phase0 backup"):
            sessions: list[AgentSession] = []
            if clean:
                # The sessions now, under the lock: the script will not clean under any of them.
                try:
                    sessions = probe_host(host, fleet).sessions
                except HostError as exc:
                    out = apply_backup(host, path, label=host.name, remote=remote, push=push,
                                       clean=False, today=today)
                    if out.ok:
                        out.ok = False
                        out.message += f"; not cleaned: cannot see the host's sessions ({exc.message})"
                    return out
            return apply_backup(host, path, label=host.name, remote=remote, push=push,
                                clean=clean, sessions=sessions, today=today)

    return {o.host: o.value if o.value else
            BackupOutcome(None, None, False, False, False, str(o.error), ok=False, action="error")
            for o in fleet.map(one, deadline_s=SLOW_DEADLINE_S)}


# -- prune ------------------------------------------------------------------------------------

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


# -- run: backup → prune → merge --------------------------------------------------------------

@dataclass
class RunPlan:
    backups: list[BackupPlan]
    prunes: list[PrunePlan] | None
    merge: MergePlan | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"backup": [p.to_json() for p in self.backups],
                "prune": [p.to_json() for p in self.prunes] if self.prunes is not None else None,
                "merge": self.merge.to_json() if self.merge else None, "notes": self.notes}


@dataclass
class RunOutcome:
    backups: dict[str, BackupOutcome]
    prunes: list[PrunePlan] | None
    merge: MergeOutcome | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (all(b.ok for b in self.backups.values())
                and all(prune_ok(p) for p in self.prunes or [])
                and (self.merge is None or self.merge.ok))


def plan_run(fleet: Fleet, *, selection: Selection | None, clean: bool, force: bool = False,
             merge_from: str | None = None, merge_into: str | None = None,
             today: dt.date | None = None) -> RunPlan:
    backups = plan_backups(fleet, today)
    notes = []
    prunes = plan_prune(fleet, selection, force=force) if selection else None
    if selection is None:
        notes.append("prune: no --older-than/--started-before given, no sessions are ended")
    merge = None
    from_ = merge_from or fleet.inventory.repo.feature
    into = merge_into or fleet.inventory.repo.main
    if from_:
        merge = plan_merge(fleet, from_=from_, into=into)
        merge = _after_backup(merge, backups, clean)
    else:
        notes.append("merge: no --from and no repo.feature in fleet.yaml, nothing is merged")
    return RunPlan(backups, prunes, merge, notes)


def _after_backup(merge: MergePlan, backups: list[BackupPlan], clean: bool) -> MergePlan:
    """With --clean, a host whose work the backup saves will be clean when the merge runs (which
    matters to --sync, and to whether the merge host's checked-out --into can be fast-forwarded)."""
    if not clean:
        return merge
    saved = {b.host for b in backups if b.action in ("create", "exists")}
    states = {n: dataclasses.replace(s, dirty=0) if n in saved else s
              for n, s in merge.states.items()}
    return decide(merge.from_, merge.into, merge.remote, states)


def apply_run(fleet: Fleet, plan: RunPlan, *, push: bool, clean: bool, grace: float,
              force: bool = False, check: str | None = None, sync: bool = False,
              today: dt.date | None = None) -> RunOutcome:
    audit.ensure_writable()
    backups = apply_backups(fleet, plan.backups, push=push, clean=clean, today=today)
    failed = {h for h, b in backups.items() if not b.ok}
    out = RunOutcome(backups, None, None)
    if plan.prunes is not None:
        out.prunes = apply_prunes(fleet, plan.prunes, grace=grace, force=force, skip=failed)
    if plan.merge is not None:
        if plan.merge.host in failed:
            out.merge = MergeOutcome(plan.merge, ok=False,
                                     message=f"not merged: the backup of {plan.merge.host} failed")
        else:
            fresh = plan_merge(fleet, from_=plan.merge.from_, into=plan.merge.into,
                               on=plan.merge.host if plan.merge.action == "merge" else None)
            if fresh.host != plan.merge.host and plan.merge.host is not None:
                fresh.notes.append(f"planned on {plan.merge.host}")
            try:
                out.merge = apply_merge(fleet, fresh, check=check, push=push, sync=sync)
            except Exception as exc:  # locked, timed out, gone: the steps before stay reported
                out.merge = MergeOutcome(fresh, ok=False,
                                         message=f"not merged: {str(exc) or type(exc).__name__}")
    return out
