"""Any login shell (issue 8, item 3): users whose login shells are sh, bash, dash, zsh, fish and
tcsh get the same probe, prune, backup and scripts, and every value arrives exactly and runs
nothing — the SSH command line is the constant ``sh -s`` and values travel on stdin
(miyabi_ctl/remote/runner.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.remote import run_script
from tests.lab.fleets import write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.platforms import hosts

ROOT = Path(__file__).resolve().parents[2]
SETUP = hosts.UsersSetup()
SHELLS = list(hosts.UsersSetup.SHELLS)

# What an issue title, a branch or a body can hold; 100 KB of it at the end.
HOSTILE = [
    "Fix C:\\", "it's", 'say "hi"', "$(touch ~/pwned-dollar)", "`touch ~/pwned-tick`",
    "; touch ~/pwned-semi", "a\nb\n", "\\'", "%s %n $HOME !! ~", "-n", "",
    "\n".join(f"line {i}: 'q' \"d\" $(x) `y` \\ C:\\ {{}} ! # * ?" for i in range(1500))[:100_000],
]
ECHO_BACK = ('mkdir -p "$HOME/got" && i=0\nfor v in "$@"; do\n  i=$((i + 1))\n'
             '  printf "%s" "$v" >"$HOME/got/$i"\ndone\necho "count=$#"\n')


@pytest.fixture(scope="module")
def shells(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[LabHost, Path]:
    reason = hosts.need_tools()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"login shells unavailable in CI: {reason}")
        pytest.skip(f"login shells unavailable: {reason}")
    host = lab.add_host("sh-users", setup=SETUP)
    fleet = write_fleet(tmp_path_factory.mktemp("shells") / "fleet.yaml", lab, {
        f"as-{u.name[2:]}": {"ssh": f"{u.name}@{host.address}", "identity_file": str(lab.client_key)}
        for u in SETUP.users})
    return host, fleet


def _home(host: LabHost, shell: str) -> Path:
    return host.dir / "homes" / f"u-{shell}"


def test_values_arrive_exactly_and_run_nothing_on_every_login_shell(shells: tuple[LabHost, Path]) -> None:
    host, fleet_file = shells
    with Fleet(load_inventory(fleet_file)) as fleet:
        for shell in SHELLS:
            result = run_script(fleet.host(f"as-{shell}"), ECHO_BACK, *HOSTILE, timeout=60)
            assert result.ok, (shell, result.stderr)
            assert result.stdout == f"count={len(HOSTILE)}\n", (shell, result.stdout)
            home = _home(host, shell)
            for i, value in enumerate(HOSTILE, 1):
                assert (home / "got" / str(i)).read_bytes() == value.encode(), (shell, i)
            assert not list(home.glob("pwned*")), shell


def test_login_path_comes_from_every_login_shell(shells: tuple[LabHost, Path]) -> None:
    _, fleet_file = shells
    with Fleet(load_inventory(fleet_file)) as fleet:
        for user in SETUP.users:
            shell = user.name[2:]
            lib = (ROOT / "miyabi_ctl" / "remote" / "lib.sh").read_text()
            result = run_script(fleet.host(f"as-{shell}"), lib + 'use_login_path\necho "$PATH"\n')
            assert result.ok, (shell, result.stderr)
            assert result.stdout.split(":")[0] == f"{user.home}/rc-bin", (shell, result.stdout)


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "MIYABI_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def test_probe_backup_and_prune_on_every_login_shell(shells: tuple[LabHost, Path],
                                                     tmp_path: Path) -> None:
    host, fleet_file = shells
    agent = host.lab.agent_binary()
    pids = {}
    for user in SETUP.users:
        shell = user.name[2:]
        home = _home(host, shell)
        dirty = home / "miyabi-private" / "Fix C:\\ it's $(x).txt"
        dirty.write_text(f"unsaved work of {shell}\n")
        os.chown(dirty, user.uid, user.uid)
        target = home / ".local/bin/claude"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(agent, target)
        pids[shell] = host.spawn([f"{user.home}/.local/bin/claude"], uid=user.uid,
                                 cwd=f"{user.home}/miyabi-private",
                                 env={"HOME": user.home, "PATH": "/usr/bin:/bin"})
    time.sleep(1.5)
    state = tmp_path / "state"
    status = cli("status", "--json", "--fleet", str(fleet_file), state=state)
    doc = {h["name"]: h for h in json.loads(status.stdout)["hosts"]}
    for shell in SHELLS:
        h = doc[f"as-{shell}"]
        assert h["reachable"] and h["repo_error"] is None, (shell, h["error"], h["repo_error"])
        assert h["repo"]["untracked"] == 1, shell
        # every user's ps lists every user's sessions; prune plans only the login's own
        assert sorted(s["pid"] for s in h["session_list"]) == sorted(pids.values()), shell
    backup = cli("phase0", "backup", "--apply", "--yes", "--no-push", "--json", "--fleet",
                 str(fleet_file), state=state)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    for user in SETUP.users:
        repo = _home(host, user.name[2:]) / "miyabi-private"
        branches = _git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/backup/").split()
        assert len(branches) == 1, (user.name, branches)
        shown = _git(repo, "show", f"{branches[0]}:Fix C:\\ it's $(x).txt")
        assert shown == f"unsaved work of {user.name[2:]}\n"
    pruned = cli("phase0", "prune", "--older-than", "1s", "--grace", "2", "--apply", "--yes",
                 "--json", "--fleet", str(fleet_file), state=state)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    alive = set(host.pids())
    assert not set(pids.values()) & alive


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), *args],
                          capture_output=True, text=True, check=True).stdout
