"""Issue 18, item 2, on the byte inventory: phase0 backup covers every worktree of the
repository — each linked worktree (a branch, a detached HEAD with its own commit, a locked one,
one nested in the main tree) on a backup branch of its own that says which, idempotent like the
main one; a worktree whose directory was moved or deleted is named and left alone; --clean
resets the main tree only; restore targets a worktree; status counts each one's uncommitted
files. The plan changes nothing in any of them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from miyabi_ctl.names import check_branch
from tests.lab import inventory
from tests.lab.harness import LabHost
from tests.lab.p0fixtures import p0_fixture, state_fixture  # noqa: F401 (fixtures p0, state)
from tests.lab.test_index_flags_lab import same_tree
from tests.lab.test_json_contract_lab import validate
from tests.lab.test_phase0_lab import P0, cli, git

REPO = "/root/miyabi-private"
PRESENT = ("wt-feature", "wt-detached", "wt-locked", "nested")



def linked(host: LabHost) -> dict[str, Path]:
    """Each linked worktree's directory, as seen from outside the host."""
    return {"wt-feature": host.home / "wt-feature", "wt-detached": host.home / "wt-detached",
            "wt-locked": host.home / "wt-locked", "nested": host.repo / ".worktrees" / "nested",
            "wt-moved": host.home / "wt-moved-elsewhere"}


def take(host: LabHost, name: str) -> inventory.Inventory:
    return inventory.take(linked(host)[name], git_dir=host.repo / ".git" / "worktrees" / name)


def many_worktrees(host: LabHost) -> str:
    """Linked worktrees of every kind, each with uncommitted work; returns the detached one's
    own commit (on no branch)."""
    host.sh(f"cd {REPO} && git worktree add -q -b feature /root/wt-feature"
            " && git worktree add -q --detach /root/wt-detached"
            " && git worktree add -q -b locked /root/wt-locked"
            " && git worktree lock --reason 'on a usb disk' /root/wt-locked"
            " && git worktree add -q -b moved /root/wt-moved"
            " && mv /root/wt-moved /root/wt-moved-elsewhere"
            " && git worktree add -q -b gone /root/wt-gone && rm -rf /root/wt-gone"
            " && git worktree add -q -b nested .worktrees/nested"
            " && cd /root/wt-detached && echo c >detached.txt && git add detached.txt"
            " && git commit -qm 'on the detached HEAD'")
    dirs = linked(host)
    for name, path in dirs.items():
        (path / f"new in {name}.txt").write_text(f"untracked work in {name}\n")
        (path / "README.md").write_text(f"# edited in {name}\n")
    (dirs["wt-feature"] / "src" / "app.py").write_text("print('staged in feature')\n")
    host.sh("cd /root/wt-feature && git add src/app.py")
    (dirs["wt-feature"] / "src" / "app.py").write_text("print('unstaged in feature')\n")
    (dirs["wt-feature"] / "extra").mkdir()
    (dirs["wt-feature"] / "extra" / "x.txt").write_text("untracked, in a new directory\n")
    (host.repo / "main-work.txt").write_text("work in the main tree\n")
    return host.sh("git -C /root/wt-detached rev-parse HEAD").stdout.strip()


def test_backup_covers_every_worktree_each_on_its_own_branch(p0: P0, state: Path) -> None:
    host = p0.host("wt-many")
    detached = many_worktrees(host)
    fleet = p0.fleet("wt-many", [host])
    today = dt.date.today()
    befores = {"main": inventory.take(host.repo), **{n: take(host, n) for n in linked(host)}}

    status = json.loads(cli("status", "--json", "--fleet", str(fleet), state=state).stdout)
    validate("status", status)
    listed = {w["name"]: w for w in status["hosts"][0]["repo"]["worktree_list"]}
    assert {n: w["uncommitted"] for n, w in listed.items()} == {
        "wt-feature": 4, "wt-detached": 2, "wt-locked": 2, "wt-moved": None, "wt-gone": None,
        "nested": 2}, listed
    assert listed["wt-detached"]["branch"] is None and listed["wt-detached"]["head"] == detached
    assert listed["wt-locked"]["locked"] == "on a usb disk"
    assert listed["wt-moved"]["missing"] and listed["wt-gone"]["missing"]
    assert status["hosts"][0]["repo"]["uncommitted"] == 2  # main-work.txt and .worktrees/

    plan_doc = json.loads(cli("phase0", "backup", "--clean", "--fleet", str(fleet), "--json",
                              state=state).stdout)
    validate("phase0-backup", plan_doc)
    plan = plan_doc["hosts"][0]
    # The plan changes nothing, in any of the worktrees (mtimes and .git included).
    for name, before in befores.items():
        now = inventory.take(host.repo) if name == "main" else take(host, name)
        assert inventory.changes(before, now) == [], name
    plans = {w["worktree"]: w for w in plan["worktrees"]}
    assert set(plans) == {*PRESENT, "wt-moved", "wt-gone"}, plans
    for name in PRESENT:
        assert plans[name]["action"] == "create", plans[name]
        assert plans[name]["branch"] == f"backup/wt-many-{today:%Y-%m-%d}-wt-{name}"
        check_branch(plans[name]["branch"], "backup branch")
    for name in ("wt-moved", "wt-gone"):
        assert plans[name]["action"] == "missing" and "is gone" in plans[name]["reason"]
    assert any("on a usb disk" in n for n in plans["wt-locked"]["notes"])
    assert any("linked worktrees are backed up and left" in n for n in plan["notes"]), plan

    done = cli("phase0", "backup", "--clean", "--fleet", str(fleet), "--apply", "--yes",
               "--json", state=state)
    doc = json.loads(done.stdout)
    assert done.returncode == 0 and doc["ok"], done.stdout + done.stderr
    validate("phase0-backup", doc)
    out = doc["hosts"][0]
    assert out["cleaned"], out["message"]
    outs = {w["worktree"]: w for w in out["worktrees"]}
    main_backup = inventory.backup_files(p0.origin, out["commit"])
    assert inventory.lost(befores["main"], backups=[main_backup]) == []
    for name in PRESENT:
        assert outs[name]["ok"] and outs[name]["verified"] and not outs[name]["cleaned"], outs[name]
        backup = inventory.backup_files(p0.origin, outs[name]["commit"])
        assert inventory.lost(befores[name], backups=[backup], refs_repo=host.repo) == [], name
        assert same_tree(befores[name], linked(host)[name]) == [], name  # not cleaned
    assert same_tree(befores["wt-moved"], linked(host)["wt-moved"]) == []
    # The detached HEAD's own commit is on the remote now, as the backup's parent.
    git("merge-base", "--is-ancestor", detached, outs["wt-detached"]["commit"], cwd=p0.origin)

    # Again: nothing new, every branch verified once more.
    branches = git("for-each-ref", "refs/heads/backup/wt-many-*", cwd=p0.origin)
    again = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes",
                           "--json", state=state).stdout)
    assert again["ok"], again
    assert [w["message"].startswith("already backed up") for w in again["hosts"][0]["worktrees"]
            if w["worktree"] in PRESENT] == [True] * len(PRESENT)
    assert git("for-each-ref", "refs/heads/backup/wt-many-*", cwd=p0.origin) == branches

    # A worktree's work lost by hand comes back from its own branch, into that worktree.
    feature = linked(host)["wt-feature"]
    host.sh("cd /root/wt-feature && git reset -q --hard && git clean -fdq")
    restored = cli("phase0", "restore", "wt-many", outs["wt-feature"]["branch"], "--fleet",
                   str(fleet), "--json", state=state)
    rdoc = json.loads(restored.stdout)
    validate("phase0-restore", rdoc)
    assert rdoc["ok"] and rdoc["worktree"] == "wt-feature", restored.stdout + restored.stderr
    assert same_tree(befores["wt-feature"], feature) == []
