"""``recall``: stop an issue's agent, back its worktree up (pushed, verified), remove the worktree,
release the issue's claim on the remote. ``recall --force``: release the claim of a host that
cannot be reached, touching no host.

``plan_recall`` is read-only (the backup is planned in a throw-away object directory, the
worktree inspected); ``apply_recall`` does it under the host's lock, and re-checks first.
Any controller can recall any assignment: the target comes from the claims, not the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.dispatch.claims import Claim, ClaimBoard, ClaimKeeper
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.dispatch.worktree import Leftovers
from miyabi_ctl.errors import HostError, Refused
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.phase0.backup import BackupPlan, backup_tree, plan_backup
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.phase0.publish import unkept_note

# Told when a claim is released (e.g. removes the issue's GitHub label): a note if that failed.
Release = Callable[[int, str], str | None]


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


@dataclass(frozen=True)
class RecallTarget:
    """The assignment to recall (ours from the cache, another controller's from its claim)."""

    assignment: Assignment
    claim: Claim | None  # None: an assignment made before claims existed


def recall_target(board: ClaimBoard, store: RunStore, inventory: Inventory, issue: int, *,
                  force: bool = False) -> RecallTarget:
    """What ``recall ISSUE`` acts on: the issue's claim on the remote, whoever made it."""
    board.require()
    claim = board.claims.get(issue)
    if claim is not None:
        assignment = store.by_claim(claim.oid) or claim.as_assignment()
    else:
        legacy = store.active_for(issue)
        if legacy is None or legacy.claim or force:
            raise RecallRefused(f"issue #{issue} has no claim on the remote, nothing to recall "
                                "(see `miyabi-ctl runs`)")
        assignment = legacy
    if force:
        return RecallTarget(assignment, claim)
    if claim is not None and claim.malformed:
        raise RecallRefused(f"issue #{issue} is held by {claim.holder()}; recall --force "
                            "releases it")
    if assignment.host not in {h.name for h in inventory.hosts}:
        raise RecallRefused(f"issue #{issue} runs on {assignment.host}, which is not in the "
                            "fleet; recall --force releases its claim")
    return RecallTarget(assignment, claim)


def backup_label(issue: int) -> str:
    return f"issue-{issue}"


@dataclass(frozen=True)
class Discard:
    """What the operator allowed a recall to delete although no backup holds it."""

    ignored: bool = False
    nested: bool = False
    unkept: bool = False  # FIFOs, sockets, device files, empty directories: git cannot keep them

    def refusals(self, leftovers: Leftovers) -> list[str]:
        return leftovers.refusals(discard_ignored=self.ignored, discard_nested=self.nested,
                                  discard_unkept=self.unkept)


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
    if leftovers and leftovers.detached:
        remove = (f"remove the worktree {a.worktree} (branch {a.branch} and its commits stay; "
                  f"the detached HEAD {leftovers.detached[:12]}, whose commits no branch holds, "
                  f"first goes on branch {leftovers.keep_as}, pushed to "
                  f"{remote} and read back: if that fails, the worktree is kept)")
    refusals = discard.refusals(leftovers) if leftovers else []
    if refusals:
        remove = (f"remove the worktree {a.worktree}: REFUSED ({'; '.join(refusals)}); recall "
                  "would stop before anything is changed")
    return [f"stop tmux session {a.session} on {a.host}", backup, remove,
            f"release the claim on #{a.issue} and mark it recalled"]


def recall_notes(backup_plan: BackupPlan, leftovers: Leftovers | None,
                 discard: Discard = Discard()) -> list[str]:
    """What the plan should say besides its steps: the backup's notes, what removal deletes.
    The backup's words on what git cannot keep ("a clean never removes them") are phase 0's;
    a recall's removal would delete them, and says so itself."""
    snap = backup_plan.snapshot
    unkept = unkept_note(snap.unkept) if snap and snap.unkept else None
    notes = [f"backup: {n}" for n in backup_plan.notes if n != unkept]
    if leftovers:
        notes += leftovers.notes(discard_ignored=discard.ignored, discard_nested=discard.nested,
                                 discard_unkept=discard.unkept)
    return notes


def apply_recall(target: RecallTarget, fleet: Fleet, store: RunStore, keeper: ClaimKeeper,
                 discard: Discard = Discard(), release: Release | None = None, *,
                 action: str = "recall", end_state: str = "recalled") -> RecallOutcome:
    """Stop the session, back the worktree up (pushed, verified), and only then remove it.

    Nested repositories with work, ignored files and what git cannot keep (FIFOs, sockets, empty
    directories) are in no backup: unless ``discard`` allows their deletion, the recall is
    refused before anything is changed (and the removal script checks again once the session is
    stopped). A detached HEAD's commits go on a pushed, verified ``recalled/`` branch first.
    ``land`` cleans up through this too, as ``action`` (its name in the audit log and the host
    lock), ending the run as ``end_state``."""
    from miyabi_ctl.dispatch.agent_run import stop
    from miyabi_ctl.dispatch.worktree import (
        WorktreeKept,
        inspect_worktree,
        remove_worktree,
        stop_processes,
    )

    audit.ensure_writable()
    a = target.assignment
    inventory = fleet.inventory
    host = fleet.host(a.host)
    out = RecallOutcome(a, ok=False)
    with host_lock(host, host.spec.repo_path_or(inventory.repo), action):
        refusals = discard.refusals(inspect_worktree(host, inventory, a.worktree))
        if refusals:
            out.message = f"not {end_state}, nothing changed: " + "; ".join(refusals)
            audit.record(host.name, action, result="refused", error=out.message, issue=a.issue)
            return out
        out.stopped = stop(host, a.issue)
        # Then everything else that works in the worktree (a helper the agent started with
        # setsid, a dev server, a second session): its writes must be in the backup.
        procs = stop_processes(host, inventory, a.worktree)
        audit.record(host.name, f"{action}.stop", result="ok" if not procs.left else "failed",
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
            audit.record(host.name, action, result="failed", error=out.message, issue=a.issue)
            return out
        # Right before the removal: the tree must still be exactly what the backup holds.
        now = plan_backup(host, a.worktree, label=backup_label(a.issue),
                          remote=inventory.repo.remote).snapshot
        if now is None or now.tree != backup.tree or now.index_tree != (
                backup.plan.snapshot.index_tree if backup.plan and backup.plan.snapshot else None):
            out.message = ("the worktree changed after its backup (is someone still working "
                           f"there?): worktree kept; {backup.message}")
            audit.record(host.name, f"{action}.remove", result="refused", error=out.message,
                         issue=a.issue, backup=backup.branch)
            return out
        try:
            found = remove_worktree(host, inventory, a.worktree, discard_ignored=discard.ignored,
                                    discard_nested=discard.nested, discard_unkept=discard.unkept)
        except WorktreeKept as exc:
            out.message = f"session stopped and work backed up, but the worktree is KEPT: {exc}"
            audit.record(host.name, f"{action}.remove", result="refused", error=str(exc),
                         issue=a.issue, backup=backup.branch)
            return out
        out.removed = True
        audit.record(host.name, f"{action}.remove", result="ok", issue=a.issue,
                     before={"worktree": a.worktree, "branch": a.branch,
                             "ignored": len(found.ignored),
                             "nested": [n.path for n in found.nested],
                             "unkept": len(found.unkept)},
                     after={"backup": backup.branch, "kept": found.kept,
                            "kept_remote": found.kept_remote},
                     discarded=vars(discard))
    problem = release_claim(target, keeper, [a.host], action, release)
    if a.id:
        store.end(a.id, end_state, backup.message)
    out.ok = problem is None
    out.message = (f"stopped {a.session}" if out.stopped else f"{a.session} was not running")
    if procs.stopped:
        out.message += f"; ended {len(procs.stopped)} other processes working in the worktree"
    out.message += f"; {backup.message}; worktree removed, branch {a.branch} kept"
    out.message += f"; {problem}" if problem else "; claim released"
    if found.kept:
        out.message += (f"; the detached HEAD's commits kept on branch {found.kept}, pushed to "
                        f"{found.kept_remote} and verified")
    return out


def release_claim(target: RecallTarget, keeper: ClaimKeeper, via: list[str], why: str,
                  release: Release | None = None) -> str | None:
    """Delete the claim (if it is still the one we read); a note if that could not be done."""
    if target.claim is None:
        return None
    problem = keeper.release(target.claim, via)
    audit.record(target.assignment.host, "claim.release", result="failed" if problem else "ok",
                 issue=target.claim.issue, claim=target.claim.oid, reason=why,
                 **({"error": problem} if problem else {}))
    if problem is None and release is not None and not target.claim.malformed:
        note = release(target.claim.issue, target.claim.host)
        if note:
            return note
    return problem


# --------------------------------------------------------------------------------------------
# recall --force: the host is gone, the claim is let go


@dataclass
class ForcePlan:
    """Releasing a claim whose host cannot be reached; the host is not touched."""

    target: RecallTarget
    reason: str  # why the host cannot do a normal recall
    stale: bool
    refusal: str | None = None  # why --force is refused (the host answers)

    @property
    def steps(self) -> list[str]:
        a, c = self.target.assignment, self.target.claim
        assert c is not None
        held = c.holder()
        steps = [f"release the claim on #{a.issue} (held by {held}): {self.reason}"]
        if self.refusal:
            steps = [f"release the claim on #{a.issue}: REFUSED ({self.refusal})"]
        return [*steps, f"{a.host} is not touched: its worktree, branch and session, if any, stay"]

    @property
    def notes(self) -> list[str]:
        if self.refusal or self.stale:
            return []
        return ["the claim is not stale yet: its host may only be cut off for a moment, and an "
                "agent there may still be working (see `miyabi-ctl runs`)"]

    def to_json(self) -> dict[str, Any]:
        a, c = self.target.assignment, self.target.claim
        return {"issue": a.issue, "host": a.host, "force": True, "claim": c.oid if c else None,
                "stale": self.stale, "reason": self.reason, "steps": self.steps,
                "notes": self.notes}


def plan_force(target: RecallTarget, fleet: Fleet, store: RunStore, limit: float,
               now: float | None = None) -> ForcePlan:
    """Can the claim be let go? Only if its host cannot be asked: a host that answers gets a
    normal recall, which backs its work up."""
    from miyabi_ctl.dispatch.agent_run import look
    from miyabi_ctl.dispatch.run_views import judge_stale

    a, claim = target.assignment, target.claim
    assert claim is not None
    now = time.time() if now is None else now
    if claim.malformed:
        return ForcePlan(target, "its record cannot be read", stale=True)
    if a.host not in {h.name for h in fleet.inventory.hosts}:
        reason = f"{a.host} is not in the fleet"
    else:
        try:
            facts = look(fleet.host(a.host), fleet.inventory,
                         [(a.issue, a.branch, a.base or "", a.log or "")])
        except HostError as exc:
            reason = f"{a.host} cannot be reached: {exc.message}"
        else:
            f = facts.get(a.issue)
            alive = "its session is alive" if f and f.alive else "it answers"
            return ForcePlan(target, "", stale=False,
                             refusal=f"{a.host} {alive}: recall without --force backs its "
                                     "work up first")
    since = store.sighting(claim.oid, now)
    stale = judge_stale(alive=None, last_activity=None, host_now=None, unreachable_since=since,
                        now=now, limit=limit)
    return ForcePlan(target, reason, stale)


def apply_force(plan: ForcePlan, keeper: ClaimKeeper, store: RunStore,
                release: Release | None = None) -> RecallOutcome:
    audit.ensure_writable()
    a = plan.target.assignment
    others = [n for n in keeper.order() if n != a.host]
    problem = release_claim(plan.target, keeper, others, "recall --force", release)
    if problem is None and a.id:
        store.end(a.id, "released", f"recall --force: {plan.reason}")
    return RecallOutcome(a, ok=problem is None,
                         message=problem or f"claim released ({plan.reason}); {a.host} untouched")


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
        return self.backup.action == "refuse" or bool(self.discard.refusals(self.leftovers))

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
