"""Self-tests of the SSH host lab: if these fail, nothing built on the lab can be trusted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.lab.harness import Lab, LabHost

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def pair(lab: Lab) -> tuple[LabHost, LabHost]:
    """Two hosts shared by this module (names prefixed to avoid clashing with other tests)."""
    a, b = lab.add_hosts(["selftest-a", "selftest-b"], load=(17.4, 10.0, 5.0), cpus=16)
    return a, b


def _wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _ps(host: LabHost, pid: int) -> str:
    """`stat comm args` of one pid inside host ('' if it is gone)."""
    return host.sh(f"ps -o stat=,comm=,args= -p {pid}", check=False).stdout.strip()


def test_address_and_net(lab: Lab, pair: tuple[LabHost, LabHost]) -> None:
    a, b = pair
    assert a.address.startswith(f"127.0.{lab.net}.") and a.port == 22
    assert a.address != b.address
    owner = json.loads((lab.path.parent / "nets" / str(lab.net) / "owner").read_text())
    assert owner["pid"] == os.getpid()


def test_hostname_load_cpus(pair: tuple[LabHost, LabHost]) -> None:
    a, _ = pair
    out = a.sh("hostname; cat /proc/loadavg; getconf _NPROCESSORS_ONLN; echo $HOME; pwd")
    name, loadavg, cpus, home, cwd = out.stdout.splitlines()
    assert name == "selftest-a"
    assert loadavg.split()[:3] == ["17.40", "10.00", "5.00"]
    assert (cpus, home, cwd) == ("16", "/root", "/root")
    a.set_load(0.5, 1.25, 2.0)
    a.set_cpus(4)
    out = a.sh("cat /proc/loadavg; getconf _NPROCESSORS_ONLN").stdout.split()
    assert out[:3] == ["0.50", "1.25", "2.00"] and out[-1] == "4"


def test_real_ssh_client(lab: Lab, pair: tuple[LabHost, LabHost]) -> None:
    a, b = pair
    direct = subprocess.run(
        ["ssh", "-i", str(lab.client_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{a.address}",
         "hostname"],
        capture_output=True, text=True, timeout=20,
    )
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.strip() == "selftest-a"
    via_config = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config()), "selftest-b", "cat /proc/loadavg"],
        capture_output=True, text=True, timeout=20,
    )
    assert via_config.returncode == 0, via_config.stderr
    assert via_config.stdout.split()[0] == f"{b.sh('cat /proc/loadavg').stdout.split()[0]}"


def test_repo_clone_and_origin(lab: Lab, pair: tuple[LabHost, LabHost]) -> None:
    a, _ = pair
    assert (a.repo / ".git").is_dir()
    head = a.sh("cd miyabi-private && git rev-parse --abbrev-ref HEAD && git status --porcelain")
    assert head.stdout.strip() == "main"
    sha = lab.commit_to_origin("feature/x", {"x.txt": "x\n"}, "Add x")
    fetched = a.sh("cd miyabi-private && git fetch -q && git rev-parse origin/feature/x")
    assert fetched.stdout.strip() == sha
    assert a.sh("git -C miyabi-private config user.email").stdout.strip().endswith(".invalid")


def test_agents_show_in_ps(pair: tuple[LabHost, LabHost]) -> None:
    a, _ = pair
    expected = {
        "claude": ("claude", "claude 100000000"),
        "codex": ("codex", "codex 100000000"),
        "claude-node": (
            "node",
            "node /root/.npm-global/lib/node_modules/@anthropic-ai/claude-code/cli.js --resume",
        ),
        "codex-node": (
            "node",
            "node /root/.npm-global/lib/node_modules/@openai/codex/bin/codex.js",
        ),
    }
    pids = {kind: a.spawn_agent(kind) for kind in expected}
    for kind, (comm, args) in expected.items():
        stat, got_comm, got_args = _ps(a, pids[kind]).split(None, 2)
        assert (got_comm, got_args) == (comm, args), kind
        assert "Z" not in stat
        assert pids[kind] in a.pids()
    assert a.sh(f"cat /proc/{pids['claude']}/status | grep PPid").stdout.split() == ["PPid:", "1"]


def test_killed_process_is_reaped(pair: tuple[LabHost, LabHost]) -> None:
    a, _ = pair
    pid = a.spawn(["sleep", "1000"])
    assert _ps(a, pid).split()[1] == "sleep"
    a.sh(f"kill -9 {pid}")
    assert _wait_for(lambda: _ps(a, pid) == ""), f"not reaped: {_ps(a, pid)}"


def test_decoys(pair: tuple[LabHost, LabHost]) -> None:
    _, b = pair
    grep, tmux, vim, less, zombie = b.spawn_decoys()
    assert _ps(b, grep).split(None, 2)[2] == "grep claude"
    assert b.sh("tmux ls -F '#{session_name}'").stdout.split() == ["claude-build"]
    assert _ps(b, tmux).split(None, 2)[1] == "tmux:"
    assert _ps(b, vim).split(None, 2)[2] == "vim /root/.claude/settings.json"
    assert _ps(b, less).split(None, 2)[2] == "less /root/notes/codex-review.txt"
    time.sleep(0.3)  # the decoy zombie must stay a zombie: nobody waits for it
    assert _ps(b, zombie).split() == ["Z", "claude", "[claude]", "<defunct>"]


def test_hosts_are_isolated(pair: tuple[LabHost, LabHost]) -> None:
    a, b = pair
    a.spawn(["sleep", "4242424"])
    a.sh("echo secret > /tmp/only-on-a")
    assert "4242424" in a.sh("ps -axo args").stdout
    assert "4242424" not in b.sh("ps -axo args").stdout
    assert b.sh("test -e /tmp/only-on-a", check=False).returncode != 0
    assert (a.home.parent / "tmp" / "only-on-a").read_text() == "secret\n"


def test_kill_refuses_connections(lab: Lab) -> None:
    host = lab.add_host("selftest-doomed", clone=False)
    assert host.alive() and 1 in host.pids()
    socket.create_connection((host.address, 22), timeout=2).close()
    host.kill()
    assert not host.alive() and host.pids() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host.address, 22), timeout=2)


def test_nets_are_exclusive(lab: Lab) -> None:
    with Lab() as other:
        assert other.net != lab.net
        assert (other.path.parent / "nets" / str(other.net)).is_dir()
    assert not (other.path.parent / "nets" / str(other.net)).exists()
    assert not other.path.exists()
