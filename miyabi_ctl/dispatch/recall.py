"""``recall``: stop an issue's agent, back its worktree up (pushed, verified), remove the worktree.

``plan_recall`` is read-only (the backup is planned in a throw-away object directory, the
worktree inspected); ``apply_recall`` does it under the host's lock, and re-checks first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.dispatch.worktree import Leftovers
from miyabi_ctl.errors import Refused
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.phase0.backup import BackupPlan, backup_tree, plan_backup
from miyabi_ctl.phase0.locks import host_lock


class RecallRefused(Refused):
    """Nothing to recall, or the host it ran on is not in the fleet."""


@dataclass
class RecallOutcome:
    assignment: Assignment
    ok: bool
    stopped: bool = False
    backup: str = ""
    removed: bool = False
    message: str = ""


def recall_target(store: RunStore, inventory: Inventory, issue: int) -> Assignment:
    assignment = store.active_for(issue)
    if assignment is None:
        raise RecallRefused(f"issue #{issue} has no active assignment (see `miyabi-ctl runs`)")
    if assignment.host not in {h.name for h in inventory.hosts}:
        raise RecallRefused(f"issue #{issue} runs on {assignment.host}, which is not in the fleet")
    return assignment


def backup_label(issue: int) -> str:
    return f"issue-{issue}"


@dataclass(frozen=True)
class Discard:
    """What the operator allowed a recall to delete although no backup holds it."""

    ignored: bool = False
    nested: bool = False


def recall_steps(assignment: Assignment, backup_plan: BackupPlan, remote: str,
                 leftovers: Leftovers | None = None, discard: Discard = Discard()) -> list[str]:
    """The plan in words; ``backup_plan`` is phase 0's side-effect-free plan of the backup,
    ``leftovers`` what the removal would destroy besides."""
    a = assignment
    if backup_plan.action == "create":
        backup = (f"back up the uncommitted work in {a.worktree} ({backup_plan.reason}) to "
                  f"{backup_plan.branch}, push it to {remote} and verify it")
    elif backup_plan.action == "refuse":
        backup = f"back up {a.worktree}: REFUSED ({backup_plan.reason}); recall would stop here"
    else:
        backup = f"back up {a.worktree}: {backup_plan.reason or backup_plan.action}"
    remove = f"remove the worktree {a.worktree} (branch {a.branch} and its commits stay)"
    refusals = leftovers.refusals(discard_ignored=discard.ignored,
                                  discard_nested=discard.nested) if leftovers else []
    if refusals:
        remove = (f"remove the worktree {a.worktree}: REFUSED ({'; '.join(refusals)}); recall "
                  "would stop before anything is changed")
    return [f"stop tmux session {a.session} on {a.host}", backup, remove,
            f"mark #{a.issue} recalled in the run store"]


def recall_notes(backup_plan: BackupPlan, leftovers: Leftovers | None,
                 discard: Discard = Discard()) -> list[str]:
    """What the plan should say besides its steps: the backup's notes, what removal deletes."""
    notes = [f"backup: {n}" for n in backup_plan.notes]
    if leftovers:
        notes += leftovers.notes(discard_ignored=discard.ignored, discard_nested=discard.nested)
    return notes


def apply_recall(assignment: Assignment, fleet: Fleet, store: RunStore,
                 discard: Discard = Discard()) -> RecallOutcome:
    """Stop the session, back the worktree up (pushed, verified), and only then remove it.

    Nested repositories with work and ignored files are in no backup: unless ``discard`` allows
    their deletion, the recall is refused before anything is changed (and the removal script
    checks again once the session is stopped)."""
    from miyabi_ctl.dispatch.agent_run import stop
    from miyabi_ctl.dispatch.worktree import (
        WorktreeKept,
        inspect_worktree,
        remove_worktree,
        stop_processes,
    )

    audit.ensure_writable()
    a = assignment
    inventory = fleet.inventory
    host = fleet.host(a.host)
    out = RecallOutcome(a, ok=False)
    with host_lock(host, host.spec.repo_path_or(inventory.repo), "recall"):
        refusals = inspect_worktree(host, inventory, a.worktree).refusals(
            discard_ignored=discard.ignored, discard_nested=discard.nested)
        if refusals:
            out.message = "not recalled, nothing changed: " + "; ".join(refusals)
            audit.record(host.name, "recall", result="refused", error=out.message, issue=a.issue)
            return out
        out.stopped = stop(host, a.issue)
        # Then everything else that works in the worktree (a helper the agent started with
        # setsid, a dev server, a second session): its writes must be in the backup.
        procs = stop_processes(host, inventory, a.worktree)
        audit.record(host.name, "recall.stop", result="ok" if not procs.left else "failed",
                     issue=a.issue, after={"session": a.session, "was_running": out.stopped,
                                           "stopped": list(procs.stopped),
                                           "left": list(procs.left)})
        if procs.left:
            out.message = ("processes would not end, worktree kept: "
                           + ", ".join(map(str, procs.left)))
            return out
        backup = backup_tree(host, a.worktree, label=backup_label(a.issue),
                             remote=inventory.repo.remote)
        out.backup = backup.message
        if not backup.ok:
            out.message = f"backup failed, worktree kept: {backup.message}"
            audit.record(host.name, "recall", result="failed", error=out.message, issue=a.issue)
            return out
        # Right before the removal: the tree must still be exactly what the backup holds.
        now = plan_backup(host, a.worktree, label=backup_label(a.issue),
                          remote=inventory.repo.remote).snapshot
        if now is None or now.tree != backup.tree or now.index_tree != (
                backup.plan.snapshot.index_tree if backup.plan and backup.plan.snapshot else None):
            out.message = ("the worktree changed after its backup (is someone still working "
                           f"there?): worktree kept; {backup.message}")
            audit.record(host.name, "recall.remove", result="refused", error=out.message,
                         issue=a.issue, backup=backup.branch)
            return out
        try:
            found = remove_worktree(host, inventory, a.worktree, discard_ignored=discard.ignored,
                                    discard_nested=discard.nested)
        except WorktreeKept as exc:
            out.message = f"session stopped and work backed up, but the worktree is KEPT: {exc}"
            audit.record(host.name, "recall.remove", result="refused", error=str(exc),
                         issue=a.issue, backup=backup.branch)
            return out
        out.removed = True
        audit.record(host.name, "recall.remove", result="ok", issue=a.issue,
                     before={"worktree": a.worktree, "branch": a.branch,
                             "ignored": len(found.ignored),
                             "nested": [n.path for n in found.nested]},
                     after={"backup": backup.branch, "kept": found.kept},
                     discarded=vars(discard))
    store.end(a.id, "recalled", backup.message)
    out.ok = True
    out.message = (f"stopped {a.session}" if out.stopped else f"{a.session} was not running")
    if procs.stopped:
        out.message += f"; ended {len(procs.stopped)} other processes working in the worktree"
    out.message += f"; {backup.message}; worktree removed, branch {a.branch} kept"
    if found.kept:
        out.message += f"; the detached HEAD's commits kept on branch {found.kept}"
    return out


@dataclass
class RecallPlan:
    """What a recall would do, and what it would refuse."""

    assignment: Assignment
    backup: BackupPlan
    leftovers: Leftovers
    discard: Discard
    remote: str
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def refuses(self) -> bool:
        return self.backup.action == "refuse" or bool(self.leftovers.refusals(
            discard_ignored=self.discard.ignored, discard_nested=self.discard.nested))

    def to_json(self) -> dict[str, Any]:
        return {"issue": self.assignment.issue, "host": self.assignment.host,
                "steps": self.steps, "notes": self.notes, "backup": self.backup.to_json()}


def plan_recall(fleet: Fleet, assignment: Assignment, discard: Discard) -> RecallPlan:
    """Read-only: the backup's plan, what removal would destroy, the steps in words."""
    from miyabi_ctl.dispatch.worktree import inspect_worktree

    host = fleet.host(assignment.host)
    remote = fleet.inventory.repo.remote
    backup = plan_backup(host, assignment.worktree, label=backup_label(assignment.issue),
                         remote=remote)
    leftovers = inspect_worktree(host, fleet.inventory, assignment.worktree)
    return RecallPlan(assignment, backup, leftovers, discard, remote,
                      recall_steps(assignment, backup, remote, leftovers, discard),
                      recall_notes(backup, leftovers, discard))
