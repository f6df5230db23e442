"""Shared pytest fixtures: one session-wide SSH host lab (see tests/lab.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab import Lab, LabHost, lab_unavailable_reason


def _in_ci() -> bool:
    """CI=true (or any value but empty/0/false/no) means a skip must fail."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: runs against the SSH host lab (needs root, sshd, unshare, nsenter)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the lab fixture, so `-m lab` / `-m 'not lab'` work."""
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One Lab for the whole session; hosts are added by the tests that need them."""
    reason = lab_unavailable_reason()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"SSH lab unavailable in CI: {reason}")
        pytest.skip(f"SSH lab unavailable: {reason}")
    with Lab() as the_lab:
        yield the_lab


# -- the plan's fleet (shared/seed/operations-plan-2025-11-26.md, section 1) -------------------
#
# Read-only: tests that change hosts (repairs, dispatch) must add lab hosts of their own, so
# the figures asserted here stay true whatever order tests run in.

FEATURE = "feat/miyabi-society-reconstruction"


@dataclass
class PlanFleet:
    lab: Lab
    fleet_file: Path
    pixel_repo: Path
    hosts: dict[str, LabHost]
    decoys: list[int]


def write_fleet(path: Path, lab: Lab, hosts: dict[str, dict], *, extra: str = "",
                strict: str = "yes", known_hosts: Path | None = None) -> Path:
    """A fleet.yaml for lab hosts; ``hosts`` maps a name to its host entry."""
    import yaml

    doc = {
        "repo": {"path": "~/miyabi-private", "main": "main", "remote": "origin",
                 "feature": FEATURE},
        "ssh": {"config": str(lab.ssh_config()), "known_hosts": str(known_hosts or lab.known_hosts),
                "strict_host_keys": strict, "connect_timeout": 3, "command_timeout": 20,
                "max_parallel": 16},
        "hosts": hosts,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + extra)
    return path


def ssh_entry(host: LabHost, lab: Lab, **more: object) -> dict:
    """A host entry reaching a lab host as root@address with the lab's key."""
    return {"ssh": f"root@{host.address}", "identity_file": str(lab.client_key), **more}


@pytest.fixture(scope="session")
def plan_fleet(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> PlanFleet:
    """pixel (local, main, clean), macbook (32 claude, feature branch), mugen (load 17.4 on 16
    cores, feature branch, 2 claude + 1 codex), majin (main, 300 uncommitted files)."""
    lab.commit_to_origin(FEATURE, {"web-api/Cargo.toml": "[package]\nname = \"web-api\"\n"},
                         "web-api Axum 0.8")
    lab.commit_to_origin("main", {"CLAUDE.md": "# fixed\n"}, "CLAUDE.md fixed")
    lab.commit_to_origin("main", {"docs/plan.md": "plan\n"}, "plan")
    macbook = lab.add_host("macbook", branch=FEATURE, load=(6.5, 7.0, 9.0), cpus=8)
    mugen = lab.add_host("mugen", branch=FEATURE, load=(17.4, 15.2, 12.8), cpus=16)
    majin = lab.add_host("majin", load=(1.0, 1.0, 1.0), cpus=8)
    for i in range(32):
        macbook.spawn_agent("claude" if i % 2 else "claude-node",
                            cwd="/root/miyabi-private" if i < 4 else "/root")
    decoys = macbook.spawn_decoys()
    mugen.spawn_agent("claude", cwd="/root/miyabi-private")
    mugen.spawn_agent("claude-node", cwd="/root/miyabi-private")
    mugen.spawn_agent("codex-node", cwd="/root/miyabi-private")
    for i in range(300):
        target = majin.repo / "work" / f"dir{i % 10}" / f"file {i}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"uncommitted change {i}\n")
    pixel_repo = lab.path / "pixel-repo"
    subprocess.run(["git", "clone", "-q", str(lab.origin), str(pixel_repo)], check=True)
    base = tmp_path_factory.mktemp("plan")
    fleet_file = write_fleet(base / "fleet.yaml", lab, {
        "pixel": {"transport": "local", "role": "maestro", "repo_path": str(pixel_repo)},
        "macbook": {"ssh": "macbook", "max_sessions": 8, "tags": ["macos"]},
        "mugen": ssh_entry(mugen, lab, max_sessions=6, tags=["linux", "worktree"]),
        "majin": ssh_entry(majin, lab, tags=["linux"]),
    })
    return PlanFleet(lab, fleet_file, pixel_repo,
                     {"macbook": macbook, "mugen": mugen, "majin": majin}, decoys)
