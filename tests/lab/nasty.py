"""Nasty work trees: everything git and a file system allow that a backup, a clean and a restore
must carry or leave alone, built in a lab host's repository from outside (same bytes inside).

``nasty_tree(repo)`` commits a base (CRLF rules, configs, a symlink, an executable, odd names) and
then leaves uncommitted: ``core.autocrlf``, skip-worktree and assume-unchanged on one file and
on two others (each edited), an intent-to-add file, a staged and a different unstaged change, a
deleted file, untracked files with unicode and newline names, a 0600 key, an untracked symlink,
an embedded repository with a commit, ignored files, empty directories and a FIFO.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.lab.harness import GIT_ENV
from tests.lab.inventory import git as inv_git


def git(repo: Path | str, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env={**os.environ, **GIT_ENV}).stdout


ODD = ["ünïcødé-日本.txt", "new\nline.txt", "tab\there.txt", "quote's \"q\".txt", "-dash.txt",
       "$(touch pwned).txt"]


def commit_base(repo: Path) -> None:
    """The committed part: eol rules, files the flags will hide, a symlink and an executable."""
    (repo / ".gitattributes").write_text("*.crlf text eol=crlf\n*.bin -text\n")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "both.cfg").write_text("committed both\n")
    (repo / "sparse.cfg").write_text("committed sparse\n")
    (repo / "quiet.cfg").write_text("committed quiet\n")
    (repo / "t.crlf").write_bytes(b"a\r\nb\r\n")
    (repo / "lf.txt").write_bytes(b"one\ntwo\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "gone.txt").write_text("to be deleted\n")
    os.symlink("lf.txt", repo / "link-to-lf")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "nasty base")


def dirty(repo: Path) -> None:
    """The uncommitted part, on a committed base."""
    git(repo, "config", "core.autocrlf", "true")
    # Flags: both on one file, one each on two others; each file edited (a local config).
    git(repo, "update-index", "--skip-worktree", "both.cfg")
    git(repo, "update-index", "--assume-unchanged", "both.cfg")
    git(repo, "update-index", "--skip-worktree", "sparse.cfg")
    git(repo, "update-index", "--assume-unchanged", "quiet.cfg")
    (repo / "both.cfg").write_text("local edit under both flags\n")
    (repo / "sparse.cfg").write_text("local edit under skip-worktree\n")
    (repo / "quiet.cfg").write_text("local edit under assume-unchanged\n")
    (repo / "planned.txt").write_text("intent to add\n")
    git(repo, "add", "-N", "planned.txt")
    # A staged and a different unstaged change; a deleted file; eol-sensitive edits.
    (repo / "lf.txt").write_bytes(b"staged\n")
    git(repo, "add", "lf.txt")
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


def nasty_tree(repo: Path) -> None:
    commit_base(repo)
    dirty(repo)


FLAGGED = {"both.cfg", "sparse.cfg", "quiet.cfg"}


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
