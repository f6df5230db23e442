"""Back up a host's uncommitted work to a branch, pushed and verified, without touching it.

The work is snapshotted in a temporary index (the working tree, the real index and HEAD stay
exactly as they are, so running agents keep working), committed with HEAD as parent onto
``backup/<label>-<YYYY-MM-DD>`` (``-2``, ``-3`` when that name holds another snapshot), pushed
with an explicit refspec, and read back from the remote to check it holds the same tree. Staged
versions that differ from HEAD are kept too, as the backup commit's second parent (as ``git
stash`` does), so ``restore`` can put the index back as well.

A linked worktree of the repository is backed up on its own branch, ``backup/<label>-<date>-wt-
<name>`` (``-2``, ``-3`` go after the date), named by its name in ``.git/worktrees``.

``plan_backup`` builds the snapshot in a throw-away object directory and decides; ``apply_backup``
builds it for real and runs the same decision. ``backup_tree`` is the reusable entry point
(``recall`` calls it); callers hold the host lock. What the script saw is read in
``snapshot.py``, the plan's words about what it publishes in ``publish.py``, the host's clean
journal in ``journal.py``, and the fleet (every host, every worktree) is ``backups.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.errors import HostError
from miyabi_ctl.names import check_remote
from miyabi_ctl.phase0.backup_model import BackupOutcome, BackupPlan, last_line
from miyabi_ctl.phase0.commit_step import judge_commit, record_unseen_clean
from miyabi_ctl.phase0.journal import reconcile_journal
from miyabi_ctl.phase0.publish import publish_note, unkept_note
from miyabi_ctl.phase0.snapshot import Snapshot, parse_snapshot, parse_snapshots
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.remote import Script, key_values, run_script

__all__ = ["BACKUP_SCRIPT", "BackupOutcome", "BackupPlan", "apply_backup", "backup_tree",
           "decide_backup", "plan_backup", "plan_repository"]

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PUSH_TIMEOUT_S = 900.0  # a first backup of a big tree is a real upload

BACKUP_SCRIPT = Script("phase0", "backup.sh", uses=("snapshot.sh", "clean.sh"))


# -- deciding ---------------------------------------------------------------------------------

WORKTREE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def worktree_label(name: str) -> str:
    """A linked worktree's name as a branch name's part: git makes names ref-safe since 2.28
    (``issue-12``); older or hand-made ones have what they cannot hold turned into ``_``."""
    if WORKTREE_NAME_RE.match(name) and ".." not in name and not name.endswith((".", ".lock")):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-").replace("..", "_")
    return (cleaned.removesuffix(".lock") or "_")[:63]


def branch_pattern(label: str, worktree: str | None = None) -> re.Pattern[str]:
    tail = "" if worktree is None else f"-wt-{re.escape(worktree_label(worktree))}"
    return re.compile(rf"^backup/{re.escape(label)}-\d{{4}}-\d{{2}}-\d{{2}}(?:-\d+)?{tail}$")


def branch_name(label: str, today: dt.date, n: int = 1, worktree: str | None = None) -> str:
    """``backup/majin-2025-11-26``, ``…-2``; a linked worktree's ``…-2-wt-issue-12``."""
    name = f"backup/{label}-{today:%Y-%m-%d}" + (f"-{n}" if n > 1 else "")
    return name if worktree is None else f"{name}-wt-{worktree_label(worktree)}"


def decide_backup(host: str, path: str, label: str, snap: Snapshot, today: dt.date,
                  worktree: str | None = None) -> BackupPlan:
    """The one decision used by plan and apply: refuse, nothing to do, reuse, or a new branch."""
    plan = BackupPlan(host=host, path=path, label=label, action="refuse", snapshot=snap,
                      worktree=worktree)
    if snap.locked is not None:
        plan.notes.append("locked" + (f" ({snap.locked})" if snap.locked else ""))
    if snap.missing:
        plan.action = "missing"
        plan.reason = (f"its directory {snap.missing} is gone (moved, deleted or not mounted; "
                       "git worktree repair, after a move): nothing there to back up")
        return plan
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
    if snap.clean_way:
        plan.clean_refusal = ("cleaning would write HEAD's files over what no backup holds "
                              f"(ignored or in the way): {' '.join(snap.clean_way)} - move them "
                              "away first")
    elif snap.index_lock:
        plan.clean_refusal = (f"{snap.index_lock} exists: another git is running here, or one "
                              "crashed (remove the file if no git is running)")
    staged = snap.index_tree if snap.index_tree != snap.head_tree else None
    if snap.tree == snap.head_tree and staged is None:  # flags alone are no work
        plan.action, plan.reason = "clean", "no uncommitted work"
        return plan
    if (staged is None and snap.added == snap.new_gitlinks > 0 and not snap.modified
            and not snap.deleted):
        # Only embedded repositories (what --clean leaves, a worktree nested in the tree): a
        # backup would hold nothing but their commit ids, which they hold themselves.
        plan.action, plan.reason = "clean", "no uncommitted work besides embedded repositories"
        return plan
    pattern = branch_pattern(label, worktree)
    ours = [r for r in snap.refs if pattern.match(r.branch)]
    local = {r.branch: r for r in ours if r.ref.startswith("refs/heads/")}
    # The index's flags need the second parent: a backup that has them holds HEAD's tree there.
    index = staged or (snap.head_tree if snap.flags_tree else None)
    # A remote-tracking copy counts only when its local branch is gone (it is then recreated);
    # a local branch of that name holding something else makes the name unusable.
    same = next((r for r in ours if r.tree == snap.tree and r.index_tree == index
                 and r.flags_tree == snap.flags_tree
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
    n = 1
    while branch_name(label, today, n, worktree) in taken:
        n += 1
    plan.action, plan.branch = "create", branch_name(label, today, n, worktree)
    plan.reason = (f"{snap.added} added, {snap.modified} modified, {snap.deleted} deleted"
                   + (", staged versions kept" if staged else "")
                   + (", index flags kept" if snap.flags_tree else ""))
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
              exclude: Sequence[str] = (), worktree: str | None = None) -> Snapshot:
    result = run_script(host, BACKUP_SCRIPT, "snapshot" if write else "plan", path, label,
                        remote or "", worktree or "", "\n".join(exclude), timeout=PUSH_TIMEOUT_S)
    return _failed(parse_snapshot(path, result.stdout), result)


def _failed(snap: Snapshot, result: RunResult) -> Snapshot:
    """A script that failed without saying why (its `error=` is in ``refuse`` already)."""
    if result.exit_code != 0 and not snap.refuse:
        values = key_values(result.stdout)
        detail = values.get("error") or last_line(result.stderr) or f"exit {result.exit_code}"
        snap.refuse = f"snapshot failed: {detail}"
    return snap


def plan_backup(host: Host, path: str, *, label: str, remote: str | None,
                today: dt.date | None = None, exclude: Sequence[str] = (),
                worktree: str | None = None) -> BackupPlan:
    """Side-effect free: the snapshot's objects go to a temporary directory that is removed."""
    _check_label(label, remote)
    _check_excludes(exclude)
    snap = _snapshot(host, path, label, remote, write=False, exclude=exclude, worktree=worktree)
    return decide_backup(host.name, path, label, snap, today or dt.date.today(), worktree)


def plan_repository(host: Host, path: str, *, label: str, remote: str | None,
                    today: dt.date | None = None, exclude: Sequence[str] = ()) -> BackupPlan:
    """The plan of the work tree at ``path`` and, in ``worktrees``, of every linked worktree of
    its repository: one round trip, side-effect free."""
    _check_label(label, remote)
    _check_excludes(exclude)
    result = run_script(host, BACKUP_SCRIPT, "plan", path, label, remote or "", "*",
                        "\n".join(exclude), timeout=PUSH_TIMEOUT_S)
    main, linked = parse_snapshots(path, result.stdout)
    today = today or dt.date.today()
    plan = decide_backup(host.name, path, label, _failed(main, result), today)
    plan.worktrees = [decide_backup(host.name, path, label, snap, today, snap.worktree)
                      for snap in linked if snap.worktree]
    return plan


def apply_backup(host: Host, path: str, *, label: str, remote: str | None, push: bool = True,
                 clean: bool = False, sessions: Sequence[AgentSession] = (),
                 today: dt.date | None = None, exclude: Sequence[str] = (),
                 worktree: str | None = None) -> BackupOutcome:
    """Snapshot for real, decide as the plan does, then create, push, verify and maybe clean.

    ``sessions``: the host's agent sessions (from a probe); with ``clean``, the script refuses
    to clean while one of them still works inside the repository. ``worktree``: a linked
    worktree of the repository at ``path``, by name. The caller holds the host lock. Every step
    that changed something is in the audit log.
    """
    _check_label(label, remote)
    _check_excludes(exclude)
    snap = _snapshot(host, path, label, remote, write=True, exclude=exclude, worktree=worktree)
    if worktree is None:  # cleans (and their journal) are the main tree's
        reconcile_journal(host.name, path, snap.journal)
    plan = decide_backup(host.name, path, label, snap, today or dt.date.today(), worktree)
    outcome = BackupOutcome(branch=plan.branch, commit=None, created=False, pushed=False,
                            verified=False, message=plan.reason, action=plan.action,
                            tree=snap.tree, plan=plan, worktree=worktree)
    where = {"path": path, **({"worktree": worktree} if worktree else {})}
    if plan.action in ("clean", "norepo", "missing"):
        return outcome
    if plan.action == "refuse":
        outcome.ok = False
        audit.record(host.name, "backup", result="refused", error=plan.reason, **where)
        return outcome
    assert plan.branch and snap.tree and snap.head and snap.head_tree and snap.index_tree
    staged = snap.index_tree if snap.index_tree != snap.head_tree else ""
    message = (f"backup: {label} uncommitted work {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %z}"
               f"\n\nmiyabi-ctl phase0 backup of {snap.top or path} on {host.name}"
               + (f" (worktree {worktree})" if worktree else "")
               + f"\nHEAD {snap.head} ({snap.branch or 'detached'})"
               f"\n{plan.reason}"
               + ("\n\nModes git does not keep (restore puts them back):\n"
                  + "".join(f"Mode: {m}\n" for m in snap.modes) if snap.modes else ""))
    try:
        result = run_script(host, BACKUP_SCRIPT, "commit", path, label, snap.remote or "",
                            worktree or "", snap.tree, snap.head, staged, snap.flags_tree or "",
                            plan.branch,
                            "1" if plan.action == "create" else plan.recreate_from or "0",
                            "1" if push else "0",
                            "1" if clean else "0", message, "\n".join(exclude),
                            *(word for s in sessions for word in (str(s.pid), s.cwd or "")),
                            timeout=PUSH_TIMEOUT_S, end_on_timeout=True)
    except HostError as exc:
        # The connection went, or the step outlived its timeout (the host's watchdog then ends
        # it): what it did is unknown until the next run reads the host's journal.
        audit.record(host.name, "backup", result="unknown", error=exc.message,
                     after={"branch": plan.branch}, clean=clean, **where)
        if clean:
            record_unseen_clean(host.name, plan.branch, snap.head, exc.message, **where)
        raise
    return judge_commit(host.name, plan, outcome, result, push=push, clean=clean, where=where)


def backup_tree(host: Host, path: str, *, label: str, remote: str | None, push: bool = True,
                today: dt.date | None = None) -> BackupOutcome:
    """Back up the uncommitted work of any work tree (repo or worktree) on ``host``.

    The reusable form for other repairs (``recall``, ``prune``): no clean, caller holds the lock.
    ``outcome.ok`` is False when the work could not be saved; a clean tree is ok with no branch.
    """
    return apply_backup(host, path, label=label, remote=remote, push=push, clean=False,
                        today=today)
