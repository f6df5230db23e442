"""Fixtures of the lab tests: one session-wide SSH host lab (tests/lab/harness.py) and the plan's fleet."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import in_ci
from tests.lab.fleets import FEATURE, PlanFleet, ssh_entry, write_fleet
from tests.lab.harness import Lab, lab_unavailable_reason

_LABS: list[Lab] = []  # the session's lab, once a test asked for it


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One Lab for the whole session; hosts are added by the tests that need them."""
    reason = lab_unavailable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(f"SSH lab unavailable in CI: {reason}")
        pytest.skip(f"SSH lab unavailable: {reason}")
    with Lab() as the_lab:
        _LABS.append(the_lab)
        yield the_lab
        _LABS.clear()


def _claim_refs(the_lab: Lab) -> set[str]:
    out = subprocess.run(["git", "-C", str(the_lab.origin), "for-each-ref",
                          "--format=%(refname)", "refs/miyabi/"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.fixture(autouse=True)
def claims_stay_in_their_test() -> Iterator[None]:
    """Every lab host shares one origin, so the claims a test's dispatches leave there
    (refs/miyabi/claims/N, docs/dispatch.md) would hold those issue numbers, and show runs on
    hosts of other fleets, in the next test: a test's new claims are removed when it ends, as a
    recall would release them (claims made by module fixtures stay for their module)."""
    before = _claim_refs(_LABS[0]) if _LABS else set()
    yield
    if _LABS:
        for ref in sorted(_claim_refs(_LABS[0]) - before):
            subprocess.run(["git", "-C", str(_LABS[0].origin), "update-ref", "-d", ref],
                           check=True)


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
