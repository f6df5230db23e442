"""How long `phase0 backup --clean` leaves a write unprotected, on a big tree.

``python -m bench.clean_window [FILES] [CHANGED]`` builds a repository of FILES tracked files
(default 20000), changes CHANGED of them and adds CHANGED untracked ones (default 200 each),
and runs backup.sh's commit mode (no push, clean) on the controller itself, several times. It
prints, as JSON, per run: the whole commit step, and ``window_ms`` — the time the clean itself
(``read-tree -m -u``) takes; a file's write is unprotected only between git's check of that
file inside it and the write. For comparison, the old clean (``reset --hard`` + ``clean -fd``,
after which nothing was checked at all) on the same tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from miyabi_ctl.phase0.backup import BACKUP_SCRIPT
from miyabi_ctl.remote.runner import script_input

ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@b"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=ENV).stdout.strip()


def build(root: Path, files: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for i in range(files):
        d = repo / f"d{i % 200}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n" * 4)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "big")
    return repo


def mess(repo: Path, changed: int, run: int) -> None:
    for i in range(changed):
        (repo / f"d{i % 200}" / f"f{i}.txt").write_text(f"changed {run} {i}\n")
        (repo / f"d{i % 200}" / f"new-{run}-{i}.txt").write_text(f"new {run} {i}\n")


def sh(script: str, *args: str) -> dict[str, str]:
    proc = subprocess.run(["sh", "-s"], input=script_input(script, *args), capture_output=True,
                          text=True, env=ENV, start_new_session=True)
    values: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        values.setdefault(key, value)
    return values


def one_clean(repo: Path, run: int) -> dict[str, float]:
    text = BACKUP_SCRIPT.text()
    snap = sh(text, "snapshot", str(repo), "bench", "", "")
    head = git(repo, "rev-parse", "HEAD")
    started = time.monotonic()
    out = sh(text, "commit", str(repo), "bench", "", "", snap["tree"], head, "", "",
             f"backup/bench-{run}", "1", "0", "1", f"bench {run}", "")
    total = (time.monotonic() - started) * 1000
    assert out.get("cleaned") == "1", out
    return {"commit_step_ms": round(total), "window_ms": float(out["window_ms"])}


def old_clean(repo: Path) -> float:
    started = time.monotonic()
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-fdq")
    return round((time.monotonic() - started) * 1000)


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    changed = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as tmp:
        repo = build(Path(tmp), files)
        runs = []
        for run in range(5):
            mess(repo, changed, run)
            runs.append(one_clean(repo, run))
        old = []
        for run in range(5):
            mess(repo, changed, 100 + run)
            git(repo, "status", "--porcelain")  # refresh, as the old checks did before
            old.append(old_clean(repo))
    print(json.dumps({"files": files, "changed": changed, "added": changed, "runs": runs,
                      "old_reset_clean_ms": old}, indent=1))


if __name__ == "__main__":
    main()
