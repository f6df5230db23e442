"""One controller, several fleets (several repositories): the run cache and the audit log keep
each fleet's own (issue 18, item 9). Fleets here are real git repositories on this machine
reached through the local transport; the second fleet's claims cannot be read (its remote is
gone), which is when `issues` falls back to the cache."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from miyabi_ctl import audit
from miyabi_ctl.dispatch.store import AlreadyAssigned, RunStore
from miyabi_ctl.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
RUN = {"title": "t", "agent": "claude", "worktree": "/w/issue-5", "branch": "issue/5",
       "session": "miyabi-5"}


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    env.pop("MIYABI_FLEET", None)
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def fleet(base: Path, name: str) -> Path:
    """A repository with an origin of its own and a fleet file whose one host is this machine;
    its backlog has issue #5, as the other fleet's has."""
    origin, repo = base / f"{name}-origin.git", base / f"{name}-repo"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True,
                   capture_output=True)
    (base / f"{name}-backlog.yaml").write_text(
        "issues:\n  - {number: 5, title: five}\n  - {number: 6, title: six}\n")
    path = base / f"{name}.yaml"
    path.write_text(f"repo: {{path: {repo}}}\nbacklog: {{file: {name}-backlog.yaml}}\n"
                    "hosts:\n  box: {transport: local, max_sessions: 4}\n")
    return path


def issue_states(path: Path, state: Path) -> dict[int, str]:
    proc = cli("issues", "--json", "--fleet", str(path), state=state)
    assert proc.returncode == 0, proc.stderr
    return {i["number"]: i["state"] for i in json.loads(proc.stdout)["issues"]}


def test_a_second_fleet_never_shows_the_firsts_assignment_from_the_cache(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first, second = fleet(tmp_path, "first"), fleet(tmp_path, "second")
    RunStore(state / "runs.sqlite", scope=load_inventory(first).scope).claim(
        issue=5, host="box", claim="0" * 40, **RUN)
    for name in ("first", "second"):  # neither fleet's claims can be read: the cache is all
        (tmp_path / f"{name}-origin.git").rename(tmp_path / f"{name}-origin.gone")
    assert issue_states(first, state) == {5: "assigned", 6: "ready"}  # its own, from the cache
    assert issue_states(second, state) == {5: "ready", 6: "ready"}
    runs = cli("runs", "--json", "--fleet", str(second), state=state)
    assert runs.returncode == 1 and json.loads(runs.stdout)["runs"] == []  # 1: claims unreadable


def test_each_fleet_has_its_own_active_assignment_of_an_issue(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    one, two = RunStore(path, scope="fleet:/a.yaml"), RunStore(path, scope="fleet:/b.yaml")
    a = one.claim(issue=5, host="box", claim="a" * 40, **RUN)
    b = two.claim(issue=5, host="box", claim="b" * 40, **RUN)  # the other repository's #5
    with pytest.raises(AlreadyAssigned):
        one.claim(issue=5, host="box", **RUN)
    assert [x.id for x in one.active()] == [a.id] and [x.id for x in two.active()] == [b.id]
    assert two.reconcile({}) == [two.get(b.id)]  # b's claim is gone from its remote…
    assert one.get(a.id).state == "launching"  # …which says nothing about the other fleet's
    assert {x.id for x in RunStore(path).all()} == {a.id, b.id}  # no scope: every fleet's


def test_a_store_from_before_scopes_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE assignments (id INTEGER PRIMARY KEY, issue INTEGER NOT NULL,
        title TEXT NOT NULL DEFAULT '', host TEXT NOT NULL, agent TEXT NOT NULL,
        worktree TEXT NOT NULL, branch TEXT NOT NULL, session TEXT NOT NULL, base TEXT, log TEXT,
        started TEXT NOT NULL, state TEXT NOT NULL, ended TEXT, note TEXT, claim TEXT);
        CREATE UNIQUE INDEX one_active_assignment_per_issue ON assignments(issue)
            WHERE state IN ('launching', 'running');
        INSERT INTO assignments VALUES
          (1, 3, 't', 'h', 'claude', 'w', 'issue/3', 'miyabi-3', NULL, NULL, '2026-01-01',
           'recalled', '2026-01-02', NULL, 'old3'),
          (2, 4, 't', 'h', 'claude', 'w', 'issue/4', 'miyabi-4', NULL, NULL, '2026-01-01',
           'running', NULL, NULL, NULL),
          (3, 5, 't', 'h', 'claude', 'w', 'issue/5', 'miyabi-5', NULL, NULL, '2026-01-01',
           'running', NULL, NULL, 'oid5');""")
    db.commit()
    db.close()
    first = RunStore(path, scope="fleet:/a.yaml")
    # The first fleet takes the history and the run made before claims; a run holding a claim
    # waits for the fleet whose remote holds that claim.
    assert [a.id for a in first.all()] == [1, 2]
    assert first.reconcile({}) == [] and RunStore(path).get(3).state == "running"
    second = RunStore(path, scope="fleet:/b.yaml")
    assert second.all() == []
    second.reconcile({5: "oid5"})
    assert [(a.id, a.scope) for a in second.active()] == [(3, "fleet:/b.yaml")]
    # The new index allows each fleet its #4 (the old one allowed one #4 in all).
    second.claim(issue=4, host="h", **RUN)


def test_the_audit_log_says_whose_each_entry_is(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIYABI_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(audit, "_scope", None)  # set_scope below: put back after the test
    first, second = fleet(tmp_path, "first"), fleet(tmp_path, "second")
    audit.record("box", "recall", result="ok")  # from before scopes: nobody knows whose
    audit.set_scope(load_inventory(first).scope)
    audit.record("box", "dispatch", result="ok", issue=5)
    audit.set_scope(load_inventory(second).scope)
    audit.record("box", "backup.create", result="ok")

    def shown(*args: str) -> list[str]:
        proc = cli("audit", "--json", *args, state=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return [e["action"] for e in json.loads(proc.stdout)["entries"]]

    assert shown("--fleet", str(first)) == ["recall", "dispatch"]
    assert shown("--fleet", str(second)) == ["recall", "backup.create"]
    assert shown() == ["recall", "dispatch", "backup.create"]  # no fleet named: every fleet's
    doc = json.loads(cli("audit", "--json", "--fleet", str(second), state=tmp_path).stdout)
    assert doc["scope"] == f"fleet:{second.resolve()}"
    assert doc["entries"][1]["scope"] == doc["scope"]
