"""A byte-exact inventory of a git work tree, to prove "nothing lost" instead of arguing it.

``take(repo)`` records every path under the work tree (ignored files, empty directories,
symlinks with their target, FIFOs, modes, file bytes; nested repositories' files too, only the
top ``.git`` is left out), the index entries with their skip-worktree/assume-unchanged flags,
HEAD, every ref and the stash. ``lost(before, repo, backups=...)`` then names everything of
``before`` that is neither on disk now (same kind, same bytes) nor in one of the given verified
backups (same bytes at the same path): the list a test asserts is empty. Modes, empty
directories and FIFOs are compared only on disk (git keeps none of them); ``unkept`` lists those
the backup could not hold, for the tests that check the plan says so.

``changes(before, after)`` is the stricter comparison for steps that must change nothing at all
(a plan): besides the above it compares every path's mtime, the index's flags (skip-worktree,
assume-unchanged, intent-to-add) and the git directory as ``disk`` records it (every file and
directory with its mtime: loose objects and packs, FETCH_HEAD, refs, the index file, logs; a
file made and removed again shows in its directory's mtime).
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(repo: Path | str, *args: str, check: bool = True, git_dir: Path | None = None) -> bytes:
    """git in ``repo``; ``git_dir`` for a linked worktree whose .git file names a path as seen
    inside a lab host."""
    env = {**os.environ, **GIT_ENV}
    if git_dir is not None:
        env.update(GIT_DIR=str(git_dir), GIT_WORK_TREE=str(repo))
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=check,
                          env=env).stdout


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, symlink, fifo, socket, other
    mode: int  # permission bits
    data: bytes = b""  # file bytes, or a symlink's target


@dataclass
class Inventory:
    root: Path
    paths: dict[str, Entry] = field(default_factory=dict)
    index: list[tuple[str, str, str, str]] = field(default_factory=list)  # tag, mode, sha, path
    head: str = ""
    head_ref: str = ""
    refs: dict[str, str] = field(default_factory=dict)
    stash: list[str] = field(default_factory=list)
    git_dir: Path | None = None
    mtimes: dict[str, int] = field(default_factory=dict)  # work tree path -> mtime (ns)
    ita: set[str] = field(default_factory=set)  # intent-to-add entries
    git_files: dict[str, Stamp] = field(default_factory=dict)  # the git directory (disk)

    def commits(self) -> set[str]:
        """Every commit a ref, HEAD or the stash held."""
        return {c for c in [self.head, *self.refs.values(), *self.stash] if c}


def _entry(path: Path) -> Entry:
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return Entry("symlink", mode, os.readlink(path).encode())
    if stat.S_ISREG(st.st_mode):
        return Entry("file", mode, path.read_bytes())
    if stat.S_ISDIR(st.st_mode):
        return Entry("dir", mode)
    if stat.S_ISFIFO(st.st_mode):
        return Entry("fifo", mode)
    if stat.S_ISSOCK(st.st_mode):
        return Entry("socket", mode)
    return Entry("other", mode)


def walk(root: Path, mtimes: dict[str, int] | None = None) -> dict[str, Entry]:
    """Every path under root except root/.git, without following symlinks; ``mtimes`` gets
    each one's mtime."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".git"]
            filenames = [f for f in filenames if f != ".git"]
        for name in [*dirnames, *filenames]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found[rel] = _entry(Path(dirpath) / name)
            if mtimes is not None:
                mtimes[rel] = (Path(dirpath) / name).lstat().st_mtime_ns
    return found


def take(repo: Path | str, git_dir: Path | None = None) -> Inventory:
    root = Path(repo)
    inv = Inventory(root, {}, git_dir=git_dir)
    inv.paths = walk(root, inv.mtimes)

    def git(*args: str, check: bool = True) -> bytes:
        return globals()["git"](root, *args, check=check, git_dir=git_dir)

    for raw in git("ls-files", "-s", "-t", "-v", "-z").split(b"\0"):
        if raw:
            meta, _, path = raw.decode("utf-8", "surrogateescape").partition("\t")
            tag, mode, sha, _stage = meta.split(" ")
            inv.index.append((tag, mode, sha, path))
    inv.head = git("rev-parse", "-q", "--verify", "HEAD", check=False).decode().strip()
    inv.head_ref = git("symbolic-ref", "-q", "HEAD", check=False).decode().strip()
    for line in git("for-each-ref", "--format=%(refname) %(objectname)").decode().splitlines():
        name, sha = line.split(" ")
        inv.refs[name] = sha
    inv.stash = git("log", "-g", "--format=%H", "refs/stash", check=False).decode().split()
    for raw in git("diff-files", "-z", "--name-only", "--diff-filter=A").split(b"\0"):
        if raw:
            inv.ita.add(raw.decode("utf-8", "surrogateescape"))
    common = git_dir.parent.parent if git_dir is not None else root / ".git"
    if common.is_dir():
        inv.git_files = disk(common)
    return inv


@dataclass(frozen=True)
class Stamp:
    """One path of a whole directory as a user could see it: kind, mode, bytes, mtime."""

    kind: str
    mode: int
    data: bytes
    mtime_ns: int


def disk(*roots: Path | str) -> dict[str, Stamp]:
    """Everything under ``roots``, git directories included (``FETCH_HEAD``, refs, loose
    objects, lock files): each path's kind, mode, bytes (a symlink's target) and mtime, for
    directories too (a file made and removed again shows in its directory's mtime). What a plan
    must leave exactly as it found it; compare two with ``disk_changes``."""
    found: dict[str, Stamp] = {}
    for root in map(Path, roots):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                path = Path(dirpath) / name
                try:
                    entry, st = _entry(path), path.lstat()
                except FileNotFoundError:  # went while walking: the next walk tells
                    continue
                found[str(path)] = Stamp(entry.kind, entry.mode, entry.data, st.st_mtime_ns)
    return found


def disk_changes(before: dict[str, Stamp], after: dict[str, Stamp]) -> list[str]:
    """Every difference between two ``disk`` inventories, one line each (empty: none)."""
    changes = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if new is None:
            changes.append(f"gone {path}")
        elif old is None:
            changes.append(f"new {new.kind} {path}")
        elif old != new:
            what = [n for n in ("kind", "mode", "data", "mtime_ns")
                    if getattr(old, n) != getattr(new, n)]
            changes.append(f"changed {path}: {', '.join(what)}")
    return changes


def index_changes(before: Inventory, after: Inventory) -> list[str]:
    """How the index differs: entries (flag tag, mode, blob) and intent-to-add marks."""
    found = []
    old, new = {e[3]: e[:3] for e in before.index}, {e[3]: e[:3] for e in after.index}
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            found.append(f"index {path!r}: {old.get(path)} -> {new.get(path)}")
    for path in sorted(before.ita ^ after.ita):
        found.append(f"intent-to-add {path!r}: {path in before.ita} -> {path in after.ita}")
    return found


def changes(before: Inventory, after: Inventory) -> list[str]:
    """Everything that differs between two inventories of the same tree, mtimes and the git
    directory's files included: the list a step that must change nothing asserts is empty."""
    found: list[str] = []

    def compare(what: str, old: dict, new: dict) -> None:
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                found.append(f"{what} {key}: {old.get(key)!r} -> {new.get(key)!r}")

    compare("path", before.paths, after.paths)
    compare("mtime", before.mtimes, after.mtimes)
    compare("index", {e[3]: e[:3] for e in before.index}, {e[3]: e[:3] for e in after.index})
    compare("ita", dict.fromkeys(before.ita, 1), dict.fromkeys(after.ita, 1))
    compare("ref", {"HEAD": before.head, "HEAD@": before.head_ref, **before.refs},
            {"HEAD": after.head, "HEAD@": after.head_ref, **after.refs})
    compare("stash", dict(enumerate(before.stash)), dict(enumerate(after.stash)))
    found += [f"git {change}" for change in disk_changes(before.git_files, after.git_files)]
    return found


def backup_files(repo: Path | str, commit: str) -> dict[str, tuple[str, bytes]]:
    """The paths of a backup commit (its tree, and the staged tree of its second parent) with
    mode and bytes, and the index flags of its third, read from ``repo`` (an origin or the
    host's repository)."""
    files: dict[str, tuple[str, bytes]] = {}
    # The index's flags (third parent): `flag:KIND:PATH` for each entry it marks.
    listing = git(repo, "ls-tree", "-r", "-z", "--name-only", f"{commit}^3", check=False)
    for raw in listing.split(b"\0"):
        if raw:
            kind, _, path = raw.decode("utf-8", "surrogateescape").partition("/")
            files[f"flag:{kind}:{path}"] = ("", b"")
    for tree in (commit, f"{commit}^2"):
        listing = git(repo, "ls-tree", "-r", "-z", tree, check=False)
        for raw in listing.split(b"\0"):
            if not raw:
                continue
            meta, _, path = raw.decode("utf-8", "surrogateescape").partition("\t")
            mode, kind, sha = meta.split(" ")
            data = git(repo, "cat-file", "blob", sha) if kind == "blob" else sha.encode()
            files.setdefault(path, (mode, data))
            files.setdefault(f"index:{path}:{sha}", (mode, b""))
    return files


def lost(before: Inventory, root: Path | str | None = None, *,
         backups: list[dict[str, tuple[str, bytes]]] = (),  # type: ignore[assignment]
         refs_repo: Path | str | None = None) -> list[str]:
    """What ``before`` held that is neither on disk at ``root`` (default: the same work tree)
    nor in one of ``backups``: files (bytes), symlinks (target), staged index entries, and
    commits of HEAD, refs and stash (they must still be reachable from a ref of ``refs_repo``,
    default the same repository). Empty directories and FIFOs count when they are gone from
    disk; modes when a file is on disk with another mode."""
    root = Path(root or before.root)
    now = walk(root) if root.exists() else {}
    where = Path(refs_repo or root)
    if before.head and not root.exists():
        # The work tree is gone: its committed files are in HEAD (checked below to be on a ref).
        backups = [*backups, backup_files(where, before.head)]
    problems: list[str] = []
    for path, old in sorted(before.paths.items()):
        cur = now.get(path)
        if old.kind in ("file", "symlink"):
            if cur == old:
                continue
            if cur and cur.kind == old.kind and cur.data == old.data:
                problems.append(f"mode {path}: {oct(old.mode)} -> {oct(cur.mode)}")
                continue
            want = "120000" if old.kind == "symlink" else None
            if any(path in b and b[path][1] == old.data and (want is None or b[path][0] == want)
                   for b in backups):
                continue
            problems.append(f"lost {old.kind} {path}")
        elif old.kind == "dir":
            if cur is None and not any(p.startswith(path + "/") for p in before.paths):
                problems.append(f"lost empty dir {path}")
        elif cur is None or cur.kind != old.kind:
            problems.append(f"lost {old.kind} {path}")
    index_now = ({(e[2], e[3]) for e in take(root, before.git_dir).index}
                 if (root / ".git").exists() else set())
    for _tag, mode, sha, path in before.index:
        if mode == "160000" or (sha, path) in index_now:
            continue
        if path in before.ita:  # no staged content: the mark itself must be kept
            if not any(f"flag:intent-to-add:{path}" in b for b in backups):
                problems.append(f"lost intent-to-add {path}")
            continue
        if any(f"index:{path}:{sha}" in b for b in backups):
            continue
        head_blob = git(refs_repo or root, "rev-parse", "-q", "--verify",
                        f"{before.head}:{path}", check=False).decode().strip()
        if head_blob != sha:
            problems.append(f"lost staged {path}")
    for commit in sorted(before.commits()):
        out = subprocess.run(["git", "-C", str(where), "rev-list", "-n", "1", commit, "--not",
                              "--all"], capture_output=True, text=True,
                             env={**os.environ, **GIT_ENV})
        if out.returncode != 0 or out.stdout.strip():
            problems.append(f"commit {commit} is on no ref")
    return problems
