"""``phase0 run``: backup → prune → merge as one plan and one confirmation.

Each step lives in its own module (``backup``, ``prune``, ``merge``) with its one-host and
fleet-wide plan/apply; this module only chains them: a host whose backup failed gets no prune,
and the merge does not run on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.errors import ExitCode
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.phase0.backup_model import BackupOutcome, BackupPlan
from miyabi_ctl.phase0.backups import (
    apply_backups,
    backups_exit_code,
    plan_backups,
    plans_refuse,
)
from miyabi_ctl.phase0.merge import MergeOutcome, MergePlan, apply_merge, plan_merge
from miyabi_ctl.phase0.prune import (
    PrunePlan,
    Selection,
    apply_prunes,
    plan_prune,
    prune_ok,
    prunes_exit_code,
)

# -- run: backup → prune → merge --------------------------------------------------------------

@dataclass
class RunPlan:
    backups: list[BackupPlan]
    prunes: list[PrunePlan] | None
    merge: MergePlan | None
    notes: list[str] = field(default_factory=list)
    exclude: tuple[str, ...] = ()  # --exclude: kept out of the backups, left alone by --clean
    clean: bool = False

    @property
    def refuses(self) -> bool:
        """Some step of the plan refuses (plan only: exit 1)."""
        return (plans_refuse(self.backups, clean=self.clean)
                or any(p.error for p in self.prunes or [])
                or (self.merge is not None and self.merge.action == "refuse"))

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
        return (all(b.all_ok for b in self.backups.values())
                and all(prune_ok(p) for p in self.prunes or [])
                and (self.merge is None or self.merge.ok))

    def exit_code(self) -> int:
        """The worst of the steps' codes (a locked host alone: 75)."""
        codes = [backups_exit_code(self.backups), prunes_exit_code(self.prunes or []),
                 ExitCode.OK if self.merge is None or self.merge.ok else ExitCode.FAILED]
        failing = [c for c in codes if c != ExitCode.OK]
        if not failing:
            return ExitCode.OK
        return ExitCode.LOCKED if all(c == ExitCode.LOCKED for c in failing) else ExitCode.FAILED

    def to_json(self) -> dict[str, Any]:
        return {"backup": [b.to_json() for b in self.backups.values()],
                "prune": [p.to_json() for p in self.prunes] if self.prunes is not None else None,
                "merge": self.merge.to_json() if self.merge else None, "notes": self.notes}


def plan_run(fleet: Fleet, *, selection: Selection | None, clean: bool, force: bool = False,
             merge_from: str | None = None, merge_into: str | None = None,
             today: dt.date | None = None, exclude: tuple[str, ...] = ()) -> RunPlan:
    backups = plan_backups(fleet, today, exclude=exclude, clean=clean)
    notes = []
    prunes = plan_prune(fleet, selection, force=force) if selection else None
    if selection is None:
        notes.append("prune: no --older-than/--started-before given, no sessions are ended")
    merge = None
    from_ = merge_from or fleet.inventory.repo.feature
    into = merge_into or fleet.inventory.repo.main
    if from_:
        # With --clean, a host whose work the backup saves is clean by the time the merge runs
        # (which matters to --sync, and to fast-forwarding the merge host's checked-out --into).
        saved = frozenset(b.host for b in backups if b.action in ("create", "exists"))
        merge = plan_merge(fleet, from_=from_, into=into, cleaned=saved if clean else frozenset())
    else:
        notes.append("merge: no --from and no repo.feature in fleet.yaml, nothing is merged")
    return RunPlan(backups, prunes, merge, notes, exclude, clean)


def apply_run(fleet: Fleet, plan: RunPlan, *, push: bool, clean: bool, grace: float,
              force: bool = False, check: str | None = None, sync: bool = False,
              today: dt.date | None = None) -> RunOutcome:
    audit.ensure_writable()
    backups = apply_backups(fleet, plan.backups, push=push, clean=clean, today=today,
                            exclude=plan.exclude)
    failed = {h for h, b in backups.items() if not b.all_ok}
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
