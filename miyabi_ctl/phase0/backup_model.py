"""What a backup of one work tree will do (``BackupPlan``) and what it did (``BackupOutcome``):
the data every backup step, the fleet's backups and their views share."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from miyabi_ctl.errors import HostError
from miyabi_ctl.phase0.publish import publish_flags
from miyabi_ctl.phase0.snapshot import Snapshot


@dataclass
class BackupPlan:
    """What a backup of one work tree will do, and why.

    ``action``: ``create`` a new backup branch; ``exists`` (a backup branch already holds this
    exact snapshot: create nothing, push/verify it); ``clean`` (nothing uncommitted);
    ``norepo`` (the path is not a git work tree); ``refuse`` (see ``reason``).
    ``recreate_from``: with ``exists``, the commit of a remote-tracking backup branch whose local
    branch was deleted; the local branch is recreated there before the push and verification.
    ``worktree``: the linked worktree this plan is for (its name), None for the tree at ``path``;
    ``worktrees``: a repository's plan holds one per linked worktree (``missing``: its directory
    is gone, nothing to back up there).
    """

    host: str
    path: str
    label: str
    action: str
    branch: str | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    snapshot: Snapshot | None = None
    recreate_from: str | None = None
    worktree: str | None = None
    worktrees: list[BackupPlan] = field(default_factory=list)
    clean_refusal: str | None = None  # why --clean would refuse here, foreseen by the plan

    @property
    def where(self) -> str:
        """``majin``, or ``majin:issue-12`` for a linked worktree."""
        return self.host if self.worktree is None else f"{self.host}:{self.worktree}"

    @property
    def files(self) -> int:
        s = self.snapshot
        return (s.added + s.modified + s.deleted) if s else 0

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "host": self.host, "path": self.path, "label": self.label, "action": self.action,
            "branch": self.branch, "reason": self.reason, "notes": self.notes,
            "recreate_from": self.recreate_from,
            "head": s.head if s else None, "on_branch": s.branch if s else None,
            "detached": s.detached if s else False, "tree": s.tree if s else None,
            "staged_tree": self._staged_tree(),
            "files": {"added": s.added, "modified": s.modified, "deleted": s.deleted} if s else None,
            "publish": [{"path": name, "size": size, "flags": publish_flags(name, size)}
                        for size, name in s.publish] if s else [],
            "worktree": self.worktree,
            "worktrees": [w.to_json() for w in self.worktrees],
            "clean_refusal": self.clean_refusal,
        }

    def _staged_tree(self) -> str | None:
        s = self.snapshot
        if s is None or s.index_tree in (None, s.head_tree):
            return None
        return s.index_tree


@dataclass
class BackupOutcome:
    """What a backup did. ``verified``: the remote (or, without push, the local) branch holds
    exactly the snapshot's tree."""

    branch: str | None
    commit: str | None
    created: bool
    pushed: bool
    verified: bool
    message: str
    ok: bool = True
    cleaned: bool = False
    action: str = ""
    tree: str | None = None
    plan: BackupPlan | None = None
    error: HostError | None = field(default=None, repr=False, compare=False)
    worktree: str | None = None
    worktrees: list[BackupOutcome] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        """This tree's backup and every linked worktree's did what they should."""
        return self.ok and all(w.all_ok for w in self.worktrees)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(dataclasses.replace(self, plan=None, error=None, worktrees=[]))
        doc["plan"] = self.plan.to_json() if self.plan else None
        doc["error"] = self.error.kind if self.error else None
        doc["worktrees"] = [w.to_json() for w in self.worktrees]
        return doc


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
