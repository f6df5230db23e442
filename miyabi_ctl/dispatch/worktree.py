"""The issue's worktree on its host: what removing it would destroy that no backup holds, and
its removal, re-checked on the host right before it happens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.errors import CommandFailed, Refused
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_remote
from miyabi_ctl.remote import Script, key_values, run_script

WORKTREE_SCRIPT = Script("dispatch", "worktree.sh")


class WorktreeKept(Refused):
    """The worktree holds what no backup has (nested repositories, ignored files, what git cannot
    keep), or a detached HEAD's commits could not be pushed: not removed."""


@dataclass(frozen=True)
class NestedRepo:
    path: str  # relative to the worktree
    changes: int  # uncommitted, untracked or ignored files; -1: git could not tell
    commits: int  # commits on none of its remotes; -1: git could not tell

    @property
    def has_work(self) -> bool:
        """Fails closed: a repository git could not read counts as holding work."""
        return self.changes != 0 or self.commits != 0

    def describe(self) -> str:
        if self.changes < 0 or self.commits < 0:
            return f"{self.path} (git cannot read it: it may hold work)"
        if not self.has_work:
            return f"{self.path} (clean, every commit on its remotes)"
        parts = [f"{self.changes} uncommitted or ignored files"] if self.changes else []
        parts += [f"{self.commits} commits on no remote"] if self.commits else []
        return f"{self.path} ({', '.join(parts)})"


UNKEPT_WORDS = {"fifo": "FIFO", "socket": "socket", "device": "device file",
                "empty-dir": "empty directory", "special": "special file"}


def describe_unkept(item: str) -> str:
    """``fifo PATH`` (worktree.sh's record) in words: ``PATH (FIFO)``, ``PATH/ (empty directory)``."""
    kind, _, path = item.partition(" ")
    return f"{path}{'/' if kind == 'empty-dir' else ''} ({UNKEPT_WORDS.get(kind, kind)})"


@dataclass(frozen=True)
class Leftovers:
    """What removing a worktree would destroy that its backup does not hold."""

    nested: tuple[NestedRepo, ...] = ()
    ignored: tuple[str, ...] = ()
    absent: bool = False
    kept: str | None = None  # the branch a detached HEAD's commits were kept on
    unkept: tuple[str, ...] = ()  # what git cannot keep: "fifo PATH", "empty-dir PATH", …
    detached: str | None = None  # a detached HEAD whose commits no branch, tag or remote holds
    keep_as: str | None = None  # the branch a removal keeps that HEAD on
    kept_remote: str | None = None  # the remote that branch was pushed to and read back from

    @property
    def nested_with_work(self) -> list[NestedRepo]:
        return [n for n in self.nested if n.has_work]

    def refusals(self, *, discard_ignored: bool, discard_nested: bool,
                 discard_unkept: bool = False) -> list[str]:
        """Why the worktree must not be removed without the matching --discard-* flag."""
        reasons = []
        if self.nested_with_work and not discard_nested:
            reasons.append(f"{_some(n.describe() for n in self.nested_with_work)}: nested "
                           "repositories whose files and commits are not in the backup "
                           "(--discard-nested deletes them)")
        if self.ignored and not discard_ignored:
            reasons.append(f"{_some(self.ignored)}: ignored files that are not in the backup "
                           "(--discard-ignored deletes them)")
        if self.unkept and not discard_unkept:
            reasons.append(f"{_some(map(describe_unkept, self.unkept))}: git cannot keep these, "
                           "so no backup holds them (--discard-unkept deletes them)")
        return reasons

    def notes(self, *, discard_ignored: bool, discard_nested: bool,
              discard_unkept: bool = False) -> list[str]:
        """What removal deletes anyway (nothing lost that exists nowhere else, or --discard-*)."""
        notes = [f"nested repository {n.describe()} is deleted with the worktree"
                 for n in self.nested if not n.has_work]
        if self.nested_with_work and discard_nested:
            notes.append(f"--discard-nested: DELETES {_some(n.describe() for n in self.nested_with_work)}")
        if self.ignored and discard_ignored:
            notes.append(f"--discard-ignored: DELETES the ignored {_some(self.ignored)}")
        if self.unkept and discard_unkept:
            notes.append(f"--discard-unkept: DELETES {_some(map(describe_unkept, self.unkept))}")
        return notes


def _some(items: Iterable[str], limit: int = 5) -> str:
    names = list(items)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _count(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _parse_leftovers(stdout: str) -> Leftovers:
    nested, ignored, unkept, absent = [], [], [], False
    single: dict[str, str] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("kept", "kept_remote", "detached", "keep_as"):
            single[key] = value
        elif key == "nested":
            changes, commits, path = value.split(" ", 2)
            nested.append(NestedRepo(path, _count(changes), _count(commits)))
        elif key == "ignored" and value:
            ignored.append(value)
        elif key == "unkept" and value:
            unkept.append(value)
        elif key == "absent":
            absent = True
    return Leftovers(tuple(nested), tuple(ignored), absent, single.get("kept"), tuple(unkept),
                     single.get("detached"), single.get("keep_as"), single.get("kept_remote"))


def _worktree_script(host: Host, inventory: Inventory, worktree: str, mode: str, *,
                     discard: tuple[bool, bool, bool] = (False, False, False), grace_s: int = 10,
                     timeout: float = 120) -> RunResult:
    """worktree.sh: REPO WORKTREE MODE DISCARD_IGNORED DISCARD_NESTED DISCARD_UNKEPT GRACE REMOTE."""
    remote = inventory.repo.remote
    check_remote(remote)
    return run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                      mode, *("1" if flag else "0" for flag in discard), str(grace_s), remote,
                      timeout=timeout, end_on_timeout=mode != "inspect")  # stop, remove: changes


def inspect_worktree(host: Host, inventory: Inventory, worktree: str) -> Leftovers:
    """Read-only: what a removal would destroy that no backup holds (nested repositories with
    work, ignored files, what git cannot keep) and a detached HEAD's unheld commits."""
    result = _worktree_script(host, inventory, worktree, "inspect")
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot look into {worktree}: {error}", result)
    return _parse_leftovers(result.stdout)


@dataclass(frozen=True)
class Stopped:
    """The processes that worked in a worktree: ended, and those that would not end."""

    stopped: tuple[int, ...] = ()
    left: tuple[int, ...] = ()


def stop_processes(host: Host, inventory: Inventory, worktree: str, grace_s: int = 10) -> Stopped:
    """End every process whose working directory or an open file is inside the worktree (a
    helper the agent started with setsid, a dev server, a second session): TERM, then KILL."""
    result = _worktree_script(host, inventory, worktree, "stop", grace_s=grace_s,
                              timeout=grace_s + 60)
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot stop the processes in {worktree}: {error}", result)
    pids = {"stopped": [], "left": []}  # type: dict[str, list[int]]
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in pids and value.isdigit():
            pids[key].append(int(value))
    return Stopped(tuple(pids["stopped"]), tuple(pids["left"]))


def remove_worktree(host: Host, inventory: Inventory, worktree: str, *,
                    discard_ignored: bool = False, discard_nested: bool = False,
                    discard_unkept: bool = False) -> Leftovers:
    """Remove the issue's worktree (its branch and the run files with the log stay).

    Call only after the worktree has been backed up. The script checks again, just before the
    removal, for nested repositories with work, ignored files and what git cannot keep, and
    keeps the worktree (WorktreeKept) unless the matching ``discard_*`` flag says to delete them.
    A detached HEAD's commits that nothing else holds are kept on a ``recalled/`` branch, pushed
    to the remote and read back first; if that fails, the worktree is kept too.
    """
    result = _worktree_script(host, inventory, worktree, "remove",
                              discard=(discard_ignored, discard_nested, discard_unkept),
                              timeout=600)  # it may push a branch
    found = _parse_leftovers(result.stdout)
    if result.exit_code == 6:
        reasons = found.refusals(discard_ignored=discard_ignored, discard_nested=discard_nested,
                                 discard_unkept=discard_unkept)
        raise WorktreeKept("; ".join(reasons) or key_values(result.stdout).get("error", "refused"))
    if result.exit_code in (7, 8):
        raise WorktreeKept(key_values(result.stdout).get("error", "processes work in it"))
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot remove {worktree}: {error}", result)
    return found
