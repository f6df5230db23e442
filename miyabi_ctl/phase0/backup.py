"""Back up a host's uncommitted work to a branch, pushed and verified, without touching it.

The work is snapshotted in a temporary index (the working tree, the real index and HEAD stay
exactly as they are, so running agents keep working), committed with HEAD as parent onto
``backup/<label>-<YYYY-MM-DD>`` (``-2``, ``-3`` when that name holds another snapshot), pushed
with an explicit refspec, and read back from the remote to check it holds the same tree. Staged
versions that differ from HEAD are kept too, as the backup commit's second parent (as ``git
stash`` does), so ``restore`` can put the index back as well.

``plan_backup`` builds the snapshot in a throw-away object directory and decides; ``apply_backup``
builds it for real and runs the same decision. ``backup_tree`` is the reusable entry point
(``recall`` calls it); callers hold the host lock. What the script saw is read in
``snapshot.py``, the plan's words about what it publishes in ``publish.py``, and the host's
clean journal in ``journal.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import HostError, exit_code_for
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.names import check_remote
from miyabi_ctl.phase0.journal import reconcile_journal
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.phase0.publish import publish_flags, publish_note, unkept_note
from miyabi_ctl.phase0.snapshot import Snapshot, parse_snapshot
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.probe.look import probe_host
from miyabi_ctl.remote import Script, key_values, run_script

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PUSH_TIMEOUT_S = 900.0  # a first backup of a big tree is a real upload



BACKUP_SCRIPT = Script("phase0", "backup.sh")


@dataclass
class BackupPlan:
    """What a backup of one work tree will do, and why.

    ``action``: ``create`` a new backup branch; ``exists`` (a backup branch already holds this
    exact snapshot: create nothing, push/verify it); ``clean`` (nothing uncommitted);
    ``norepo`` (the path is not a git work tree); ``refuse`` (see ``reason``).
    ``recreate_from``: with ``exists``, the commit of a remote-tracking backup branch whose local
    branch was deleted; the local branch is recreated there before the push and verification.
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

    def to_json(self) -> dict[str, Any]:
        doc = asdict(dataclasses.replace(self, plan=None, error=None))
        doc["plan"] = self.plan.to_json() if self.plan else None
        doc["error"] = self.error.kind if self.error else None
        return doc


# -- deciding ---------------------------------------------------------------------------------

def branch_pattern(label: str) -> re.Pattern[str]:
    return re.compile(rf"^backup/{re.escape(label)}-\d{{4}}-\d{{2}}-\d{{2}}(?:-\d+)?$")


def decide_backup(host: str, path: str, label: str, snap: Snapshot, today: dt.date) -> BackupPlan:
    """The one decision used by plan and apply: refuse, nothing to do, reuse, or a new branch."""
    plan = BackupPlan(host=host, path=path, label=label, action="refuse", snapshot=snap)
    if snap.norepo:
        plan.action, plan.reason = "norepo", snap.norepo
        return plan
    if snap.refuse:
        plan.reason = snap.refuse
        return plan
    if not snap.tree or not snap.head_tree or not snap.index_tree:
        plan.reason = "the backup script gave an incomplete answer"
        return plan
    if snap.detached:
        plan.notes.append(f"detached HEAD at {snap.head[:12] if snap.head else '?'}: the backup's "
                          "parent is that commit")
    if snap.new_gitlinks > 0:
        plan.notes.append(f"{snap.new_gitlinks} embedded repositories are recorded as a commit id "
                          "only (their files are not in the backup; --clean leaves them in place)")
    if snap.unkept:
        plan.notes.append(unkept_note(snap.unkept))
    if snap.modes:
        plan.notes.append("modes git does not keep are recorded in the backup and put back by "
                          "restore: " + ", ".join(f"{m.partition(' ')[2]} ({m.partition(' ')[0]})"
                                                  for m in snap.modes[:10])
                          + (f" and {len(snap.modes) - 10} more" if len(snap.modes) > 10 else ""))
    if snap.lfs:
        plan.notes.append(f"{snap.lfs} files tracked by git-lfs are saved as their bytes, as plain "
                          "git blobs (not LFS objects: no pointer, and the LFS server is not "
                          "involved; files over 100 MB are flagged)")
    flagged = publish_note(snap.publish, snap.remote)
    if flagged:
        plan.notes.append(flagged)
    staged = snap.index_tree if snap.index_tree != snap.head_tree else None
    if snap.tree == snap.head_tree and staged is None:
        plan.action, plan.reason = "clean", "no uncommitted work"
        return plan
    pattern = branch_pattern(label)
    ours = [r for r in snap.refs if pattern.match(r.branch)]
    local = {r.branch: r for r in ours if r.ref.startswith("refs/heads/")}
    # A remote-tracking copy counts only when its local branch is gone (it is then recreated);
    # a local branch of that name holding something else makes the name unusable.
    same = next((r for r in ours if r.tree == snap.tree and r.index_tree == staged
                 and (r.ref.startswith("refs/heads/") or r.branch not in local)), None)
    if same is not None:
        plan.action, plan.branch = "exists", same.branch
        plan.reason = f"already backed up on {same.branch}"
        if not same.ref.startswith("refs/heads/"):
            plan.recreate_from = same.commit
            plan.notes.append(f"the local branch {same.branch} was deleted: it is recreated from "
                              f"{same.ref.removeprefix('refs/remotes/')}")
        return plan
    taken = {r.branch for r in ours}
    base = f"backup/{label}-{today:%Y-%m-%d}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    plan.action, plan.branch = "create", name
    plan.reason = (f"{snap.added} added, {snap.modified} modified, {snap.deleted} deleted"
                   + (", staged versions kept" if staged else ""))
    return plan


# -- talking to the host ----------------------------------------------------------------------

def _check_excludes(exclude: Sequence[str]) -> None:
    for pattern in exclude:
        if not pattern or "\n" in pattern or "\0" in pattern:
            raise ValueError(f"--exclude pattern {pattern!r} must be one non-empty line")


def _check_label(label: str, remote: str | None = None) -> None:
    if not LABEL_RE.match(label):
        raise ValueError(f"backup label {label!r} must match {LABEL_RE.pattern}")
    if remote:
        check_remote(remote)


def _snapshot(host: Host, path: str, label: str, remote: str | None, *, write: bool,
              exclude: Sequence[str] = ()) -> Snapshot:
    result = run_script(host, BACKUP_SCRIPT, "snapshot" if write else "plan", path, label,
                        remote or "", "\n".join(exclude), timeout=PUSH_TIMEOUT_S)
    snap = parse_snapshot(path, result.stdout)
    if result.exit_code != 0 and not snap.refuse:
        values = key_values(result.stdout)
        detail = values.get("error") or _last_line(result.stderr) or f"exit {result.exit_code}"
        snap.refuse = f"snapshot failed: {detail}"
    return snap


def plan_backup(host: Host, path: str, *, label: str, remote: str | None,
                today: dt.date | None = None, exclude: Sequence[str] = ()) -> BackupPlan:
    """Side-effect free: the snapshot's objects go to a temporary directory that is removed."""
    _check_label(label, remote)
    _check_excludes(exclude)
    snap = _snapshot(host, path, label, remote, write=False, exclude=exclude)
    return decide_backup(host.name, path, label, snap, today or dt.date.today())


def apply_backup(host: Host, path: str, *, label: str, remote: str | None, push: bool = True,
                 clean: bool = False, sessions: Sequence[AgentSession] = (),
                 today: dt.date | None = None, exclude: Sequence[str] = ()) -> BackupOutcome:
    """Snapshot for real, decide as the plan does, then create, push, verify and maybe clean.

    ``sessions``: the host's agent sessions (from a probe); with ``clean``, the script refuses
    to clean while one of them still works inside the repository. The caller holds the host
    lock. Every step that changed something is in the audit log.
    """
    _check_label(label, remote)
    _check_excludes(exclude)
    snap = _snapshot(host, path, label, remote, write=True, exclude=exclude)
    reconcile_journal(host.name, path, snap.journal)
    plan = decide_backup(host.name, path, label, snap, today or dt.date.today())
    outcome = BackupOutcome(branch=plan.branch, commit=None, created=False, pushed=False,
                            verified=False, message=plan.reason, action=plan.action,
                            tree=snap.tree, plan=plan)
    if plan.action in ("clean", "norepo"):
        return outcome
    if plan.action == "refuse":
        outcome.ok = False
        audit.record(host.name, "backup", result="refused", error=plan.reason, path=path)
        return outcome
    assert plan.branch and snap.tree and snap.head and snap.head_tree and snap.index_tree
    staged = snap.index_tree if snap.index_tree != snap.head_tree else ""
    message = (f"backup: {label} uncommitted work {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %z}"
               f"\n\nmiyabi-ctl phase0 backup of {snap.top or path} on {host.name}"
               f"\nHEAD {snap.head} ({snap.branch or 'detached'})"
               f"\n{plan.reason}"
               + ("\n\nModes git does not keep (restore puts them back):\n"
                  + "".join(f"Mode: {m}\n" for m in snap.modes) if snap.modes else ""))
    try:
        result = run_script(host, BACKUP_SCRIPT, "commit", path, label, snap.remote or "",
                            snap.tree, snap.head, staged, plan.branch,
                            "1" if plan.action == "create" else plan.recreate_from or "0",
                            "1" if push else "0",
                            "1" if clean else "0", message, "\n".join(exclude),
                            *(word for s in sessions for word in (str(s.pid), s.cwd or "")),
                            timeout=PUSH_TIMEOUT_S, end_on_timeout=True)
    except HostError as exc:
        # The connection went, or the step outlived its timeout (the host's watchdog then ends
        # it): what it did is unknown until the next run reads the host's journal.
        audit.record(host.name, "backup", result="unknown", error=exc.message, path=path,
                     after={"branch": plan.branch}, clean=clean)
        raise
    values = key_values(result.stdout)
    outcome.commit = values.get("commit") or values.get("created")
    outcome.created = "created" in values
    outcome.pushed = values.get("pushed") == "1"
    outcome.verified = values.get("remote_verified" if push else "local_verified") == "1"
    outcome.cleaned = values.get("cleaned") == "1"
    before = {"head": snap.head, "branch": snap.branch, "tree": snap.tree,
              "files": plan.files}
    if outcome.created:
        audit.record(host.name, "backup.create", result="ok", before=before,
                     after={"branch": plan.branch, "commit": outcome.commit}, path=path)
    if "recreated" in values:
        audit.record(host.name, "backup.recreate", result="ok",
                     after={"branch": plan.branch, "commit": values["recreated"]}, path=path)
    # No exit status: the connection closed before the script ended (the host went away).
    vanished = result.exit_code == -1
    error = values.get("error") or (None if result.exit_code == 0 else
                                    _last_line(result.stderr) or
                                    ("the host went away before the step finished: its outcome "
                                     "is unknown" if vanished else f"exit {result.exit_code}"))
    if push:
        audit.record(host.name, "backup.push",
                     result="ok" if outcome.verified else "unknown" if vanished else "failed",
                     after={"branch": plan.branch, "remote": snap.remote, "commit": outcome.commit,
                            "remote_tree": values.get("remote_tree")},
                     error=None if outcome.verified else error or "no verification", path=path)
    where = f"{snap.remote}/{plan.branch}" if push else f"{plan.branch} (local only)"
    if not outcome.verified:
        outcome.ok = False
        outcome.message = f"backup not verified: {error or 'no verification'}"
        if clean:
            outcome.message += "; nothing was cleaned"  # a clean runs only after verification
        return outcome
    verb = "backed up" if outcome.created else "already backed up"
    outcome.message = f"{verb} and verified on {where}"
    if "recreated" in values:
        outcome.message += " (its deleted local branch recreated)"
    if not clean:
        if error:
            outcome.ok = False
            outcome.message += f"; then: {error}"
        return outcome
    wrote = "window_ms" in values  # the clean's read-tree ran: files were changed
    if wrote:
        audit.record(host.name, "backup.clean", result="ok" if outcome.cleaned else "failed",
                     before=before,
                     after={"head": snap.head, "left": _int(values.get("left"))},
                     error=None if outcome.cleaned else error, path=path, backup=plan.branch,
                     journal=values.get("journal_id"), window_ms=_int(values.get("window_ms")))
        outcome.message += "; working tree reset to HEAD"
        left = _int(values.get("left")) or 0
        if left:
            outcome.message += (f" ({left} paths the backup does not hold were left as they "
                                "were: see git status)")
        if not outcome.cleaned:
            outcome.ok = False
            outcome.message += f", but: {error or 'the clean did not finish'}"
    else:
        outcome.ok = False
        reason = values.get("refuse") or error or "clean did not run"
        audit.record(host.name, "backup.clean", result="refused" if "refuse" in values else "failed",
                     error=reason, path=path)
        outcome.message += f"; not cleaned: {reason}"
    return outcome


def backup_tree(host: Host, path: str, *, label: str, remote: str | None, push: bool = True,
                today: dt.date | None = None) -> BackupOutcome:
    """Back up the uncommitted work of any work tree (repo or worktree) on ``host``.

    The reusable form for other repairs (``recall``, ``prune``): no clean, caller holds the lock.
    ``outcome.ok`` is False when the work could not be saved; a clean tree is ok with no branch.
    """
    return apply_backup(host, path, label=label, remote=remote, push=push, clean=False,
                        today=today)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- the fleet --------------------------------------------------------------------------------

SLOW_DEADLINE_S = 1800.0  # pushes of big trees outlast the probe deadline


def _repo(fleet: Fleet, host: Host) -> str:
    return host.spec.repo_path_or(fleet.inventory.repo)


def plan_backups(fleet: Fleet, today: dt.date | None = None,
                 exclude: Sequence[str] = ()) -> list[BackupPlan]:
    remote = check_remote(fleet.inventory.repo.remote)
    outcomes = fleet.map(lambda h: plan_backup(h, _repo(fleet, h), label=h.name, remote=remote,
                                               today=today, exclude=exclude),
                         deadline_s=SLOW_DEADLINE_S)
    return [o.value if o.value else BackupPlan(o.host, "", o.host, "refuse", reason=str(o.error))
            for o in outcomes]


def apply_backups(fleet: Fleet, plans: list[BackupPlan], *, push: bool, clean: bool,
                  today: dt.date | None = None,
                  exclude: Sequence[str] = ()) -> dict[str, BackupOutcome]:
    """Back up every host whose plan has work to save; each under its own lock."""
    audit.ensure_writable()
    by_host = {p.host: p for p in plans}
    remote = check_remote(fleet.inventory.repo.remote)

    def one(host: Host) -> BackupOutcome:
        plan = by_host[host.name]
        if plan.snapshot and plan.snapshot.journal:
            reconcile_journal(host.name, _repo(fleet, host), plan.snapshot.journal)
        if plan.action in ("clean", "norepo"):
            return BackupOutcome(None, None, False, False, True, plan.reason, action=plan.action,
                                 plan=plan)
        if plan.action == "refuse":
            audit.record(host.name, "backup", result="refused", error=plan.reason,
                         path=_repo(fleet, host), planned=True)
            return BackupOutcome(None, None, False, False, False, plan.reason, ok=False,
                                 action="refuse", plan=plan)
        path = _repo(fleet, host)
        with host_lock(host, path, "phase0 backup"):
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
            return apply_backup(host, path, label=host.name, remote=remote, push=push,
                                clean=clean, sessions=sessions, today=today, exclude=exclude)

    return {o.host: o.value if o.value else
            BackupOutcome(None, None, False, False, False, str(o.error), ok=False, action="error",
                          error=o.error)
            for o in fleet.map(one, deadline_s=SLOW_DEADLINE_S)}


def backups_exit_code(outcomes: dict[str, BackupOutcome]) -> int:
    """0 when every host's backup did what it should; 75 when only locked hosts failed."""
    return exit_code_for([o.error for o in outcomes.values() if not o.ok])
