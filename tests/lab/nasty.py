"""Nasty work trees: everything git and a file system allow that a backup, a clean and a restore
must carry or leave alone, built in a lab host's repository from outside (same bytes inside).

``nasty_tree(repo)`` commits a base (CRLF rules, configs, a symlink, an executable, odd names) and
then leaves uncommitted: ``core.autocrlf``, skip-worktree and assume-unchanged on one file and
on two others (each edited), a skip-worktree file absent from disk (sparse), an intent-to-add
file, a staged and a different unstaged change, a
deleted file, untracked files with unicode and newline names, a 0600 key, an untracked symlink,
an embedded repository with a commit, ignored files, empty directories and a FIFO.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.lab.harness import GIT_ENV
from tests.lab.inventory import git as inv_git


def git(repo: Path | str, *args: str, git_dir: Path | None = None) -> str:
    """git in ``repo`` (``git_dir``: a linked worktree's, whose .git file names a path as seen
    inside a lab host)."""
    import subprocess

    env = {**os.environ, **GIT_ENV}
    if git_dir is not None:
        env.update(GIT_DIR=str(git_dir), GIT_WORK_TREE=str(repo))
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env=env).stdout


ODD = ["ünïcødé-日本.txt", "new\nline.txt", "tab\there.txt", "quote's \"q\".txt", "-dash.txt",
       "$(touch pwned).txt"]


def commit_base(repo: Path, git_dir: Path | None = None) -> None:
    """The committed part: eol rules, files the flags will hide, a symlink and an executable."""
    (repo / ".gitattributes").write_text("*.crlf text eol=crlf\n*.bin -text\n")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "both.cfg").write_text("committed both\n")
    (repo / "sparse.cfg").write_text("committed sparse\n")
    (repo / "quiet.cfg").write_text("committed quiet\n")
    (repo / "absent.cfg").write_text("committed, not checked out (a sparse checkout)\n")
    (repo / "t.crlf").write_bytes(b"a\r\nb\r\n")
    (repo / "lf.txt").write_bytes(b"one\ntwo\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "gone.txt").write_text("to be deleted\n")
    os.symlink("lf.txt", repo / "link-to-lf")
    git(repo, "add", "-A", git_dir=git_dir)
    git(repo, "commit", "-qm", "nasty base", git_dir=git_dir)


def dirty(repo: Path, git_dir: Path | None = None) -> None:
    """The uncommitted part, on a committed base."""
    git(repo, "config", "core.autocrlf", "true", git_dir=git_dir)
    # Flags: both on one file, one each on two others; each file edited (a local config).
    git(repo, "update-index", "--skip-worktree", "both.cfg", git_dir=git_dir)
    git(repo, "update-index", "--assume-unchanged", "both.cfg", git_dir=git_dir)
    git(repo, "update-index", "--skip-worktree", "sparse.cfg", git_dir=git_dir)
    git(repo, "update-index", "--assume-unchanged", "quiet.cfg", git_dir=git_dir)
    git(repo, "update-index", "--skip-worktree", "absent.cfg", git_dir=git_dir)
    (repo / "absent.cfg").unlink()
    (repo / "both.cfg").write_text("local edit under both flags\n")
    (repo / "sparse.cfg").write_text("local edit under skip-worktree\n")
    (repo / "quiet.cfg").write_text("local edit under assume-unchanged\n")
    (repo / "planned.txt").write_text("intent to add\n")
    git(repo, "add", "-N", "planned.txt", git_dir=git_dir)
    # A staged and a different unstaged change; a deleted file; eol-sensitive edits.
    (repo / "lf.txt").write_bytes(b"staged\n")
    git(repo, "add", "lf.txt", git_dir=git_dir)
    (repo / "lf.txt").write_bytes(b"unstaged\r\nmixed\n")
    (repo / "t.crlf").write_bytes(b"a\nb\r\nc\n")
    (repo / "gone.txt").unlink()
    (repo / "mixed.txt").write_bytes(b"m1\r\nm2\n")
    (repo / "odd").mkdir()
    for name in ODD:
        (repo / "odd" / name).write_bytes(f"odd {name!r}\r\n".encode())
    (repo / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (repo / "key.pem").chmod(0o600)
    os.symlink("odd", repo / "link-to-odd")
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    # An embedded repository with a commit and work of its own.
    inner = repo / "vendor" / "inner"
    inner.mkdir(parents=True)
    inv_git(inner, "init", "-q")
    (inner / "lib.txt").write_text("inner lib\n")
    git(inner, "add", "lib.txt")
    git(inner, "commit", "-qm", "inner")
    (inner / "wip.txt").write_text("inner work\n")
    # What git cannot or must not keep: ignored files, empty directories, a FIFO.
    (repo / "debug.log").write_text("ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.o").write_bytes(b"\0obj")
    (repo / "empty" / "deeper").mkdir(parents=True)
    os.mkfifo(repo / "pipe")


def nasty_tree(repo: Path, git_dir: Path | None = None) -> None:
    commit_base(repo, git_dir)
    dirty(repo, git_dir)


FLAGS = {"both.cfg": "s", "sparse.cfg": "S", "quiet.cfg": "h", "absent.cfg": "S",
         "planned.txt": "+ita"}


def flags(repo: Path | str, git_dir: Path | None = None) -> dict[str, str]:
    """Each flagged index entry's tag from ``ls-files -t -v`` (S skip-worktree, lowercase
    assume-unchanged) plus ``+ita`` for intent-to-add entries."""
    found: dict[str, str] = {}
    for raw in inv_git(repo, "ls-files", "-t", "-v", "-z", git_dir=git_dir).split(b"\0"):
        if raw:
            tag, _, path = raw.decode("utf-8", "surrogateescape").partition(" ")
            if tag != "H":
                found[path] = tag
    ita = inv_git(repo, "diff-files", "-z", "--name-only", "--diff-filter=A", git_dir=git_dir)
    for raw in ita.split(b"\0"):
        if raw:
            path = raw.decode("utf-8", "surrogateescape")
            found[path] = found.get(path, "") + "+ita"
    return found
