"""What a recall must not lose, proved on a byte-exact inventory (issue 18, items 3 and 5).

3. FIFOs, sockets and empty directories are in no backup (git has no place for them): the plan
   names them, and the worktree is kept unless --discard-unkept says to delete them.
5. A detached HEAD's commits that nothing else holds go on a `recalled/issue-N-<sha>` branch
   that is pushed to the remote and read back before the worktree goes, so a host that dies
   afterwards loses nothing; a push the remote refuses keeps the worktree.

Hosts (prefix rk-) clone a bare origin of this module's own, so its hook and the branches pushed
here never meet another module's.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lab import inventory
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.test_dispatch_lab import cli, install_fake_agent

REPO = "/root/miyabi-private"


@pytest.fixture(scope="module")
def origin(lab: Lab) -> Path:
    path = lab.path / "recall-keeps-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(lab.origin), str(path)], check=True)
    return path


def launched(lab: Lab, origin: Path, tmp_path: Path, name: str, issue: int
             ) -> tuple[LabHost, Path, str, Path]:
    """A host of its own running issue ``issue`` (dispatched for real): host, fleet file, the
    worktree as the host sees it, and the same directory as this machine sees it."""
    host = lab.add_host(name, load=(0.2, 0.2, 0.2), cpus=2)
    install_fake_agent(host)
    host.sh(f"git -C {REPO} remote set-url origin {origin} && git -C {REPO} fetch -q origin")
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [{"number": issue, "title": "keep it all"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {name: ssh_entry(host, lab, max_sessions=2)},
                        extra=f"backlog:\n  file: {backlog}\n")
    proc = cli("dispatch", "--apply", "--yes", "--fleet", str(fleet), state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wt = f"/root/.miyabi/worktrees/issue-{issue}"
    return host, fleet, wt, host.home / wt.removeprefix("/root/")


def take(host: LabHost, outside: Path) -> inventory.Inventory:
    return inventory.take(outside, git_dir=host.repo / ".git" / "worktrees" / outside.name)


def recall(fleet: Path, state: Path, issue: int, *more: str) -> subprocess.CompletedProcess[str]:
    return cli("recall", str(issue), *more, "--fleet", str(fleet), state=state)


def test_fifos_sockets_and_empty_dirs_keep_the_worktree_unless_discarded(
        lab: Lab, origin: Path, tmp_path: Path) -> None:
    host, fleet, wt, outside = launched(lab, origin, tmp_path, "rk-unkept", 9401)
    (outside / "empty").mkdir()
    (outside / "logs" / "today").mkdir(parents=True)
    (outside / "src").mkdir(exist_ok=True)
    (outside / "src" / "work.txt").write_text("uncommitted\n")
    host.sh(f"mkfifo {wt}/src/pipe")
    with socket.socket(socket.AF_UNIX) as sock:  # the socket file stays after close
        sock.bind(str(outside / "agent.sock"))
    # An ignored empty directory is the ignored files' business (--discard-ignored), not this.
    (outside / ".gitignore").write_text("cache/\n")
    (outside / "cache").mkdir()
    before = take(host, outside)

    plan = recall(fleet, tmp_path, 9401)
    assert plan.returncode == 1, plan.stdout + plan.stderr  # a plan that refuses: exit 1
    step = plan.stdout.splitlines()[3]
    assert step == (
        f"  3. remove the worktree {wt}: REFUSED (cache/: ignored files that are not in the "
        "backup (--discard-ignored deletes them); agent.sock (socket), empty/ (empty "
        "directory), logs/today/ (empty directory), src/pipe (FIFO): git cannot keep these, so "
        "no backup holds them (--discard-unkept deletes them)); recall would stop before "
        "anything is changed"), plan.stdout
    assert "a clean never removes" not in plan.stdout  # phase 0's words, untrue of a recall

    refused = recall(fleet, tmp_path, 9401, "--apply", "--yes", "--discard-ignored")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not recalled, nothing changed: agent.sock (socket), empty/" in refused.stdout
    assert host.sh("tmux has-session -t =miyabi-9401", check=False).returncode == 0
    assert inventory.lost(before, refs_repo=host.repo) == []
    # The removal script checks again itself, with the session stopped, and keeps the tree.
    from miyabi_ctl.dispatch.worktree import WorktreeKept, remove_worktree
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory

    inv = load_inventory(fleet)
    with Fleet(inv) as raw, pytest.raises(WorktreeKept, match=r"src/pipe \(FIFO\): git cannot"):
        remove_worktree(raw.host("rk-unkept"), inv, wt, discard_ignored=True)
    assert inventory.lost(before, refs_repo=host.repo) == []

    plan = recall(fleet, tmp_path, 9401, "--discard-ignored", "--discard-unkept")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert ("  note: --discard-unkept: DELETES agent.sock (socket), empty/ (empty directory), "
            "logs/today/ (empty directory), src/pipe (FIFO)") in plan.stdout.splitlines()
    done = recall(fleet, tmp_path, 9401, "--apply", "--yes", "--discard-ignored",
                  "--discard-unkept")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not outside.exists()
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    removed = next(e for e in entries if e["action"] == "recall.remove")
    assert removed["before"]["unkept"] == 4
    assert removed["discarded"] == {"ignored": True, "nested": False, "unkept": True}
    backup = entries[[e["action"] for e in entries].index("backup.push")]["after"]["branch"]
    kept = inventory.backup_files(origin, backup)
    assert sorted(inventory.lost(before, backups=[kept], refs_repo=host.repo)) == [
        "lost empty dir cache", "lost empty dir empty", "lost empty dir logs/today",
        "lost fifo src/pipe", "lost socket agent.sock"]  # deleted as the flags said, no more


def detached(lab: Lab, origin: Path, tmp_path: Path, name: str, issue: int) -> tuple:
    """A launched run whose agent committed on a detached HEAD, which no branch holds: host,
    fleet, worktree (inside, outside), that commit, and the inventory before anything."""
    host, fleet, wt, outside = launched(lab, origin, tmp_path, name, issue)
    host.sh(f"cd {wt} && git switch -q --detach && echo {issue} >d.txt && git add d.txt"
            " && git commit -qm 'detached work'")
    head = host.sh(f"git -C {wt} rev-parse HEAD").stdout.strip()
    return host, fleet, wt, outside, head, take(host, outside)


def test_a_detached_heads_commits_are_pushed_before_the_worktree_goes(
        lab: Lab, origin: Path, tmp_path: Path) -> None:
    host, fleet, wt, _, head, before = detached(lab, origin, tmp_path, "rk-detached", 9402)
    branch = f"recalled/issue-9402-{head[:12]}"

    plan = recall(fleet, tmp_path, 9402)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[3] == (
        f"  3. remove the worktree {wt} (branch issue/9402 and its commits stay; the detached "
        f"HEAD {head[:12]}, whose commits no branch holds, first goes on branch {branch}, "
        "pushed to origin and read back: if that fails, the worktree is kept)")
    done = recall(fleet, tmp_path, 9402, "--apply", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"the detached HEAD's commits kept on branch {branch}, pushed to origin and "
            "verified") in done.stdout
    assert inventory.git(origin, "rev-parse", f"refs/heads/{branch}").decode().strip() == head
    # The host dies and its disk with it: everything the worktree held is on the remote.
    host.kill()
    shutil.rmtree(host.home)
    assert inventory.lost(before, refs_repo=origin) == []


def test_a_refused_push_of_the_detached_head_keeps_the_worktree(
        lab: Lab, origin: Path, tmp_path: Path) -> None:
    host, fleet, _, outside, head, before = detached(lab, origin, tmp_path, "rk-hook", 9403)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nif grep -q ' refs/heads/recalled/'; then\n"
                    "  echo 'recalled branches need a review first' >&2; exit 1\nfi\n")
    hook.chmod(0o755)
    try:
        refused = recall(fleet, tmp_path, 9403, "--apply", "--yes")
    finally:
        hook.unlink()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (f"the worktree is KEPT: push of recalled/issue-9403-{head[:12]} to origin failed: "
            "recalled branches need a review first") in refused.stdout
    assert outside.is_dir() and inventory.lost(before, refs_repo=host.repo) == []
    assert json.loads(cli("runs", "--json", "--fleet", str(fleet), state=tmp_path).stdout
                      )["runs"][0]["state"] == "running"  # still active: recall it again
    done = recall(fleet, tmp_path, 9403, "--apply", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert inventory.git(origin, "rev-parse",
                         f"refs/heads/recalled/issue-9403-{head[:12]}").decode().strip() == head
    assert inventory.lost(before, refs_repo=origin) == []
