"""Issue 18, item 6 (phase0): a plan changes nothing on disk a user can see. An inventory of the
work tree and of every file of the git directory, with mtimes (loose objects and packs, which
git "freshens" when it writes an object it already has; FETCH_HEAD; the index; refs and logs),
taken before and after each of the backup, prune, merge and run plans, is the same — on a tree
whose objects a backup already wrote, and under core.autocrlf, where the snapshot reads every
file again."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.lab import inventory, nasty
from tests.lab.p0fixtures import p0_fixture, state_fixture  # noqa: F401 (fixtures p0, state)
from tests.lab.test_lossless_lab import backup_json
from tests.lab.test_phase0_lab import P0, cli

REPO = "/root/miyabi-private"



def test_backup_prune_merge_and_run_plans_change_nothing(p0: P0, state: Path) -> None:
    host = p0.host("qp-host")
    repo = host.repo
    nasty.nasty_tree(repo)
    host.sh(f"cd {REPO} && git worktree add -q -b qp-side /root/side && echo w >/root/side/w.txt")
    p0.commit_to_origin("qp/feature", {"qp.txt": "feature\n"}, "qp feature")
    fleet = p0.fleet("qp-host", [host])
    # A backup made before: the next plans' snapshot objects all exist in the repository.
    assert backup_json(fleet, state)["rc"] == 0
    (repo / "later.txt").write_text("more work\n")
    host.spawn_agent("claude", cwd=REPO)  # a session the prune plan backs up first
    time.sleep(1.2)  # an mtime git would touch now differs from the one it had
    side = host.home / "side"
    side_git = repo / ".git" / "worktrees" / "side"
    plans = [
        ("phase0", "backup"), ("phase0", "backup", "--clean"),
        ("phase0", "prune", "--older-than", "1s"),
        ("phase0", "merge", "--from", "qp/feature", "--sync"),
        ("phase0", "run", "--clean", "--older-than", "1s", "--from", "qp/feature", "--sync"),
    ]
    for args in plans:
        before = inventory.take(repo), inventory.take(side, git_dir=side_git)
        proc = cli(*args, "--fleet", str(fleet), "--json", state=state)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        json.loads(proc.stdout)
        after = inventory.take(repo), inventory.take(side, git_dir=side_git)
        assert inventory.changes(before[0], after[0]) == [], args
        assert inventory.changes(before[1], after[1]) == [], args
    assert "miyabi-" not in host.sh("ls -a /tmp").stdout  # and nothing left behind
