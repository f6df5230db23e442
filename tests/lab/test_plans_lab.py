"""A plan changes nothing a user can see on any host (issue 18, item 6, the dispatch part).

Every host of a fleet of its own (prefix pl-, a bare origin of this module's own) is inventoried
byte for byte — its home with the repository, the git directory (FETCH_HEAD, refs, loose objects
and their mtimes), the agents' worktrees and run files, and its /tmp — before and after each
plan-only or read-only command: `issues`, `dispatch` (with and without --explain, --json),
`assign`, `runs`, and `recall` and `recall --force` plans. The claims read that every one of
them makes (dispatch/claims.sh) once wrote `.git/FETCH_HEAD` and left `refs/miyabi-read/`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.lab import inventory
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.test_dispatch_lab import cli, install_fake_agent

REPO = "/root/miyabi-private"


@dataclass
class PlansLab:
    fleet_file: Path
    hosts: list[LabHost]
    state: Path

    def disk(self) -> dict[str, inventory.Stamp]:
        return inventory.disk(*(p for h in self.hosts for p in (h.home, h.dir / "tmp")))


@pytest.fixture(scope="module")
def pl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlansLab]:
    origin = lab.path / "plans-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(lab.origin), str(origin)], check=True)
    hosts = lab.add_hosts(["pl-a", "pl-b", "pl-c"], load=(0.2, 0.2, 0.2), cpus=4)
    for host in hosts:
        install_fake_agent(host)
        host.sh(f"git -C {REPO} remote set-url origin {origin} && git -C {REPO} fetch -q origin")
    base = tmp_path_factory.mktemp("plans")
    backlog = base / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 61, "title": "running"}, {"number": 62, "title": "ready"},
        {"number": 63, "title": "waits", "depends": [62]}]}))
    fleet_file = write_fleet(base / "fleet.yaml", lab, {
        h.name: ssh_entry(h, lab, max_sessions=2) for h in hosts},
        extra=f"backlog:\n  file: {backlog}\n")
    state = base / "state"
    state.mkdir()
    launched = cli("assign", "61", "pl-a", "--apply", "--yes", "--fleet", str(fleet_file),
                   state=state)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    # Work in the run's worktree (a commit and a file not yet committed), as a recall finds it;
    # and a FETCH_HEAD of the operator's own on every host, which a plan must not overwrite.
    hosts[0].sh("cd /root/.miyabi/worktrees/issue-61 && echo one >a.txt && git add a.txt"
                " && git commit -qm one && echo two >b.txt")
    # Every clone holds the empty tree every claim points at as an old loose object (as a clone
    # that ever took a claim does): a read through a host that lacks the claim commit (pl-b,
    # pl-c) must not freshen it.
    for host in hosts:
        host.sh(f"git -C {REPO} fetch -q origin main && git -C {REPO} hash-object -t tree -w"
                f" /dev/null >/dev/null && touch -d 2020-01-01 {REPO}/.git/objects/4b/825dc642cb6e"
                "b9a060e54bf8d69288fbee4904")
    yield PlansLab(fleet_file, hosts, state)
    for host in hosts:
        host.sh("tmux kill-server", check=False)


COMMANDS = {
    "issues": ("issues",),
    "issues --json": ("issues", "--json"),
    "dispatch": ("dispatch",),
    "dispatch --explain": ("dispatch", "--explain"),
    "dispatch --json": ("dispatch", "--json"),
    "assign": ("assign", "62", "pl-b"),
    "runs": ("runs",),
    "runs --json": ("runs", "--json"),
    "recall": ("recall", "61"),
    "schedule": ("schedule",),
    "show": ("show", "61"),
    "land": ("land", "61"),
    "land --all": ("land", "--all"),
    "recall --force": ("recall", "61", "--force"),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_plan_or_a_read_changes_nothing_on_any_host(pl: PlansLab, command: tuple) -> None:
    before = pl.disk()
    fetch_head = (pl.hosts[1].repo / ".git" / "FETCH_HEAD").read_bytes()
    proc = cli(*command, "--fleet", str(pl.fleet_file), state=pl.state)
    # recall --force is refused while the host answers, and land of a run still working (exit 1);
    # the rest are plans or reads.
    refused = "--force" in command or command == ("land", "61")
    assert proc.returncode == (1 if refused else 0), proc.stdout + proc.stderr
    changes = inventory.disk_changes(before, pl.disk())
    assert not changes, "\n".join(changes)
    assert (pl.hosts[1].repo / ".git" / "FETCH_HEAD").read_bytes() == fetch_head
    for host in pl.hosts:
        assert not (host.repo / ".git" / "refs" / "miyabi-read").exists()
