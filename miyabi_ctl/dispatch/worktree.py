"""The issue's worktree on its host: what removing it would destroy that no backup holds, and
its removal, re-checked on the host right before it happens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import CommandFailed, Refused
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.remote import Script, key_values, run_script

WORKTREE_SCRIPT = Script("dispatch", "worktree.sh")


class WorktreeKept(Refused):
    """The worktree holds what no backup has (nested repositories, ignored files): not removed."""


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


@dataclass(frozen=True)
class Leftovers:
    """What removing a worktree would destroy that its backup does not hold."""

    nested: tuple[NestedRepo, ...] = ()
    ignored: tuple[str, ...] = ()
    absent: bool = False
    kept: str | None = None  # the branch a detached HEAD's commits were kept on

    @property
    def nested_with_work(self) -> list[NestedRepo]:
        return [n for n in self.nested if n.has_work]

    def refusals(self, *, discard_ignored: bool, discard_nested: bool) -> list[str]:
        """Why the worktree must not be removed without the matching --discard-* flag."""
        reasons = []
        if self.nested_with_work and not discard_nested:
            reasons.append(f"{_some(n.describe() for n in self.nested_with_work)}: nested "
                           "repositories whose files and commits are not in the backup "
                           "(--discard-nested deletes them)")
        if self.ignored and not discard_ignored:
            reasons.append(f"{_some(self.ignored)}: ignored files that are not in the backup "
                           "(--discard-ignored deletes them)")
        return reasons

    def notes(self, *, discard_ignored: bool, discard_nested: bool) -> list[str]:
        """What removal deletes anyway (nothing lost that exists nowhere else, or --discard-*)."""
        notes = [f"nested repository {n.describe()} is deleted with the worktree"
                 for n in self.nested if not n.has_work]
        if self.nested_with_work and discard_nested:
            notes.append(f"--discard-nested: DELETES {_some(n.describe() for n in self.nested_with_work)}")
        if self.ignored and discard_ignored:
            notes.append(f"--discard-ignored: DELETES the ignored {_some(self.ignored)}")
        return notes


def _some(items: Iterable[str], limit: int = 5) -> str:
    names = list(items)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _count(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _parse_leftovers(stdout: str) -> Leftovers:
    nested, ignored, absent, kept = [], [], False, None
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "kept":
            kept = value
        if key == "nested":
            changes, commits, path = value.split(" ", 2)
            nested.append(NestedRepo(path, _count(changes), _count(commits)))
        elif key == "ignored" and value:
            ignored.append(value)
        elif key == "absent":
            absent = True
    return Leftovers(tuple(nested), tuple(ignored), absent, kept)


def inspect_worktree(host: Host, inventory: Inventory, worktree: str) -> Leftovers:
    """Read-only: the nested repositories and ignored files a removal would destroy."""
    result = run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                        "inspect", "0", "0", timeout=120)
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
    result = run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                        "stop", "0", "0", str(grace_s), timeout=grace_s + 60, end_on_timeout=True)
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
                    discard_ignored: bool = False, discard_nested: bool = False) -> Leftovers:
    """Remove the issue's worktree (its branch and the run files with the log stay).

    Call only after the worktree has been backed up. The script checks again, just before the
    removal, for nested repositories with work and ignored files, and keeps the worktree
    (WorktreeKept) unless the matching ``discard_*`` flag says to delete them.
    """
    result = run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                        "remove", "1" if discard_ignored else "0", "1" if discard_nested else "0",
                        timeout=120, end_on_timeout=True)
    found = _parse_leftovers(result.stdout)
    if result.exit_code == 6:
        reasons = found.refusals(discard_ignored=discard_ignored, discard_nested=discard_nested)
        raise WorktreeKept("; ".join(reasons) or key_values(result.stdout).get("error", "refused"))
    if result.exit_code == 7:
        raise WorktreeKept(key_values(result.stdout).get("error", "processes work in it"))
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot remove {worktree}: {error}", result)
    return found
