"""What the speed work (docs/performance.md) must not change: the probe's figures that it now
reads without starting git or coreutils (stash and worktree counts, memory, CPUs, session working
directories, from a clone, a linked worktree and a subdirectory), and that a one-shot look closes
its connections while --watch keeps them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.status.collect import collect_status
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost


@pytest.fixture(scope="module")
def probed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict:
    host = lab.add_host("bp-probe", cpus=5)
    host.sh("cd /root/miyabi-private"
            " && echo one > stash-a.txt && git stash push -q -u -m first"
            " && echo two > stash-b.txt && git stash push -q -u -m second"
            " && git worktree add -q /root/wt-linked -b linked"
            " && mkdir -p src && echo wip > src/wip.txt")
    pid = host.spawn_agent("claude", cwd="/root/wt-linked")
    fleet = write_fleet(tmp_path_factory.mktemp("probe") / "fleet.yaml", lab, {
        "bp-clone": ssh_entry(host, lab),
        "bp-linked": ssh_entry(host, lab, repo_path="~/wt-linked"),
        "bp-subdir": ssh_entry(host, lab, repo_path="/root/miyabi-private/src"),
    })
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "--fleet",
                           str(fleet)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode in (0, 1, 2), proc.stderr
    hosts = {h["name"]: h for h in json.loads(proc.stdout)["hosts"]}
    return {"hosts": hosts, "agent_pid": pid}


def test_stashes_and_worktrees_are_counted_from_every_checkout(probed: dict) -> None:
    for name in ("bp-clone", "bp-linked", "bp-subdir"):
        repo = probed["hosts"][name]["repo"]
        assert probed["hosts"][name]["error"] is None, name
        assert repo["stashes"] == 2, (name, repo)
        assert repo["worktrees"] == 2, (name, repo)
    assert probed["hosts"]["bp-linked"]["repo"]["branch"] == "linked"
    assert probed["hosts"]["bp-clone"]["repo"]["branch"] == "main"
    assert probed["hosts"]["bp-subdir"]["repo"]["untracked"] == 1


def test_memory_is_exact_bytes_and_cpus_come_from_the_online_list(probed: dict) -> None:
    total_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:"))
    host = probed["hosts"]["bp-clone"]
    assert host["memory"]["total_bytes"] == total_kb * 1024
    assert host["cpu_count"] == 5


def test_session_cwd_is_where_the_agent_runs(probed: dict) -> None:
    sessions = probed["hosts"]["bp-clone"]["session_list"]
    assert [(s["pid"], s["cwd"]) for s in sessions] == [(probed["agent_pid"], "/root/wt-linked")]


def _sshd_sessions(host: LabHost) -> int:
    """sshd processes serving a connection (the listener excluded)."""
    lines = host.sh("ps -eo args=").stdout.splitlines()
    return sum(1 for line in lines if line.startswith("sshd: ") and "listener" not in line)


def _wait_for_sessions(host: LabHost, expected: int) -> int:
    deadline = time.monotonic() + 10
    while (count := _sshd_sessions(host)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_one_look_closes_each_connection_and_watch_keeps_them(lab: Lab, tmp_path: Path) -> None:
    hosts = lab.add_hosts(["bp-close-a", "bp-close-b"], clone=False)
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab,
                             {h.name: ssh_entry(h, lab) for h in hosts})
    inventory = load_inventory(fleet_file)
    with Fleet(inventory) as fleet:
        kept = collect_status(fleet)
        assert all(h.error is None for h in kept.hosts), [h.error for h in kept.hosts]
        assert [_wait_for_sessions(h, 1) for h in hosts] == [1, 1]
        once = collect_status(fleet, keep_connections=False)
        assert all(h.error is None for h in once.hosts), [h.error for h in once.hosts]
        assert [_wait_for_sessions(h, 0) for h in hosts] == [0, 0]
