"""``phase0 backup`` on the fleet: every host's repository, the main work tree and each linked
worktree (the agents' ``issue/N``, any ``git worktree add``), each on its own backup branch.

The plan is one round trip per host (backup.sh's ``plan`` over every worktree). The apply works
host by host under the host's lock: the main tree (and ``--clean``, there only: a linked worktree
is an agent's workspace, backed up and left as it is), then each linked worktree with work to
save. A worktree whose directory is gone (moved, deleted, not mounted) is named, not touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import HostError, exit_code_for
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.names import check_remote
from miyabi_ctl.phase0.backup import apply_backup, plan_repository
from miyabi_ctl.phase0.backup_model import BackupOutcome, BackupPlan
from miyabi_ctl.phase0.journal import reconcile_journal
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.probe.look import probe_host

SLOW_DEADLINE_S = 1800.0  # pushes of big trees outlast the probe deadline
LINKED_NOT_CLEANED = ("--clean resets the main working tree only: linked worktrees are backed "
                      "up and left as they are")


def _repo(fleet: Fleet, host: Host) -> str:
    return host.spec.repo_path_or(fleet.inventory.repo)


def plan_backups(fleet: Fleet, today: dt.date | None = None, exclude: Sequence[str] = (),
                 *, clean: bool = False) -> list[BackupPlan]:
    """One plan per host, its linked worktrees' plans in ``worktrees``."""
    remote = check_remote(fleet.inventory.repo.remote)
    outcomes = fleet.map(lambda h: plan_repository(h, _repo(fleet, h), label=h.name,
                                                   remote=remote, today=today, exclude=exclude),
                         deadline_s=SLOW_DEADLINE_S)
    plans = [o.value if o.value else BackupPlan(o.host, "", o.host, "refuse", reason=str(o.error))
             for o in outcomes]
    for plan in plans:
        if clean and plan.action in ("create", "exists") and plan.clean_refusal:
            plan.notes.append(f"--clean will refuse: {plan.clean_refusal}")
        if clean and any(w.action in ("create", "exists") for w in plan.worktrees):
            plan.notes.append(LINKED_NOT_CLEANED)
    return plans


def plans_refuse(plans: list[BackupPlan], *, clean: bool) -> bool:
    """Some part of the plans refuses (plan only: exit 1): a backup, or a clean it foresees."""
    return any(p.action == "refuse" or (clean and p.action in ("create", "exists")
                                        and p.clean_refusal)
               for p in every_plan(plans))


def every_plan(plans: list[BackupPlan]) -> Iterator[BackupPlan]:
    """Each host's plan, then its linked worktrees' plans."""
    for plan in plans:
        yield plan
        yield from plan.worktrees


def outcome_of(outcomes: dict[str, BackupOutcome], plan: BackupPlan) -> BackupOutcome | None:
    """The outcome of one plan of ``every_plan`` (a host's, or one of its worktrees')."""
    out = outcomes.get(plan.host)
    if out is None or plan.worktree is None:
        return out
    return next((w for w in out.worktrees if w.worktree == plan.worktree), None)


def _skipped(plan: BackupPlan, path: str) -> BackupOutcome | None:
    """The outcome of a plan with nothing to apply (clean, no repository, refused, gone)."""
    if plan.action in ("clean", "norepo", "missing"):
        return BackupOutcome(None, None, False, False, True, plan.reason, action=plan.action,
                             plan=plan, worktree=plan.worktree)
    if plan.action == "refuse":
        audit.record(plan.host, "backup", result="refused", error=plan.reason, path=path,
                     planned=True, **({"worktree": plan.worktree} if plan.worktree else {}))
        return BackupOutcome(None, None, False, False, False, plan.reason, ok=False,
                             action="refuse", plan=plan, worktree=plan.worktree)
    return None


def apply_backups(fleet: Fleet, plans: list[BackupPlan], *, push: bool, clean: bool,
                  today: dt.date | None = None,
                  exclude: Sequence[str] = ()) -> dict[str, BackupOutcome]:
    """Back up every host whose plan has work to save; each under its own lock. Each tree's
    outcome says how it went (``ok``); a host's ``all_ok``, whether every one of them did."""
    audit.ensure_writable()
    by_host = {p.host: p for p in plans}
    remote = check_remote(fleet.inventory.repo.remote)

    def main_tree(host: Host, plan: BackupPlan, path: str) -> BackupOutcome:
        skipped = _skipped(plan, path)
        if skipped is not None:
            return skipped
        sessions: list[AgentSession] = []
        if clean:
            # The sessions now, under the lock: the script will not clean under any of them.
            try:
                sessions = probe_host(host, fleet.inventory, fleet.settings.command_timeout).sessions
            except HostError as exc:
                out = apply_backup(host, path, label=host.name, remote=remote, push=push,
                                   clean=False, today=today, exclude=exclude)
                if out.ok:
                    out.ok = False
                    out.message += f"; not cleaned: cannot see the host's sessions ({exc.message})"
                return out
        return apply_backup(host, path, label=host.name, remote=remote, push=push, clean=clean,
                            sessions=sessions, today=today, exclude=exclude)

    def one(host: Host) -> BackupOutcome:
        plan = by_host[host.name]
        path = _repo(fleet, host)
        if plan.snapshot is not None and not plan.snapshot.norepo:
            reconcile_journal(host.name, path, plan.snapshot.journal)
        if all(p.action in ("clean", "norepo", "missing", "refuse") for p in every_plan([plan])):
            out = _skipped(plan, path)
            assert out is not None
            out.worktrees = [_skipped(w, path) for w in plan.worktrees]  # type: ignore[misc]
        else:
            with host_lock(host, path, "phase0 backup"):
                out = main_tree(host, plan, path)
                out.worktrees = [_skipped(w, path) or apply_backup(
                    host, path, label=host.name, remote=remote, push=push, today=today,
                    exclude=exclude, worktree=w.worktree) for w in plan.worktrees]
        return out

    return {o.host: o.value if o.value else
            BackupOutcome(None, None, False, False, False, str(o.error), ok=False, action="error",
                          error=o.error)
            for o in fleet.map(one, deadline_s=SLOW_DEADLINE_S)}


def backups_exit_code(outcomes: dict[str, BackupOutcome]) -> int:
    """0 when every host's backup did what it should; 75 when only locked hosts failed."""
    return exit_code_for([o.error for o in outcomes.values() if not o.all_ok])
