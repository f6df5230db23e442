"""Issue 18, items 1 and 4, on the byte inventory: edits hidden by skip-worktree and
assume-unchanged (on one file and on others) are in the backup, whatever the eol settings; a
restore after ``--clean`` works on what that clean left (core.autocrlf's stat-only changes,
embedded repositories) and puts back every byte, the staged versions and the index's flags
(skip-worktree, assume-unchanged, intent-to-add); recall keeps such an edit too."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.lab import inventory, nasty
from tests.lab.harness import Lab
from tests.lab.p0fixtures import p0_fixture, state_fixture  # noqa: F401 (fixtures p0, state)
from tests.lab.test_lossless_lab import backup_json, recall_host
from tests.lab.test_phase0_lab import P0, cli, git


def same_tree(before: inventory.Inventory, repo: Path) -> list[str]:
    """Every path's kind, mode and bytes, and the index with its flags, as before."""
    after = inventory.take(repo, before.git_dir)
    found = [f"path {p!r}: {before.paths.get(p)} -> {after.paths.get(p)}"
             for p in sorted(set(before.paths) | set(after.paths))
             if before.paths.get(p) != after.paths.get(p)]
    return found + inventory.index_changes(before, after)


def flagged_edits(repo: Path) -> None:
    """No eol rules anywhere (the snapshot trusts the index's stat cache): a committed config
    under both flags, one under skip-worktree, one under assume-unchanged, each edited."""
    for name in ("both.cfg", "sparse.cfg", "quiet.cfg"):
        (repo / name).write_text(f"committed {name}\n")
    git("add", "both.cfg", "sparse.cfg", "quiet.cfg", cwd=repo)
    git("commit", "-qm", "configs", cwd=repo)
    git("update-index", "--skip-worktree", "both.cfg", cwd=repo)
    git("update-index", "--assume-unchanged", "both.cfg", cwd=repo)
    git("update-index", "--skip-worktree", "sparse.cfg", cwd=repo)
    git("update-index", "--assume-unchanged", "quiet.cfg", cwd=repo)
    for name in ("both.cfg", "sparse.cfg", "quiet.cfg"):
        (repo / name).write_text(f"local edit of {name}\n")


def test_skip_worktree_and_assume_unchanged_edits_are_backed_up_and_their_flags_restored(
        p0: P0, state: Path) -> None:
    host = p0.host("fl-plain")
    repo = host.repo
    flagged_edits(repo)
    fleet = p0.fleet("fl-plain", [host])
    before = inventory.take(repo)
    flags = nasty.flags(repo)
    assert flags == {"both.cfg": "s", "sparse.cfg": "S", "quiet.cfg": "h"}

    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json", state=state)
                      .stdout)["hosts"][0]
    assert plan["action"] == "create", plan
    assert {p["path"] for p in plan["publish"]} == {"both.cfg", "sparse.cfg", "quiet.cfg"}, plan

    done = backup_json(fleet, state, "--clean")
    assert done["rc"] == 0 and done["cleaned"], done["message"]
    backup = inventory.backup_files(p0.origin, done["commit"])
    for name in ("both.cfg", "sparse.cfg", "quiet.cfg"):
        assert backup[name][1] == f"local edit of {name}\n".encode(), name
    assert inventory.lost(before, backups=[backup]) == []
    assert (repo / "both.cfg").read_text() == "committed both.cfg\n"

    restored = cli("phase0", "restore", "fl-plain", done["branch"], "--fleet", str(fleet),
                   state=state)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "index's flags" in restored.stdout, restored.stdout
    assert same_tree(before, repo) == []
    assert nasty.flags(repo) == flags


def nasty_cleaned(p0: P0, state: Path, name: str) -> tuple[Path, Path, inventory.Inventory,
                                                           dict]:
    """A host with the nasty tree, backed up and cleaned: its repo, fleet, the inventory before
    and the backup's outcome."""
    host = p0.host(name)
    nasty.nasty_tree(host.repo)
    fleet = p0.fleet(name, [host])
    before = inventory.take(host.repo)
    assert nasty.flags(host.repo) == nasty.FLAGS
    done = backup_json(fleet, state, "--clean")
    assert done["rc"] == 0 and done["cleaned"], done["message"]
    return host.repo, fleet, before, done


def test_restore_after_clean_of_a_nasty_autocrlf_tree_puts_back_every_byte_and_flag(
        p0: P0, state: Path) -> None:
    repo, fleet, before, done = nasty_cleaned(p0, state, "fl-nasty")
    flags = nasty.FLAGS
    backup = inventory.backup_files(p0.origin, done["commit"])
    assert inventory.lost(before, backups=[backup]) == []
    # What the clean left is HEAD, as git sees it: no stat-only "modified" file (under
    # core.autocrlf a file written with CRLF has another size than the index remembers).
    status = git("status", "--porcelain", cwd=repo)
    assert status == "?? vendor/\n", status  # the embedded repository, left in place

    restored = cli("phase0", "restore", "fl-nasty", done["branch"], "--fleet", str(fleet),
                   "--json", state=state)
    doc = json.loads(restored.stdout)
    assert restored.returncode == 0 and doc["ok"], restored.stdout + restored.stderr
    assert doc["index_restored"] and doc["flags_restored"], doc
    assert same_tree(before, repo) == []
    assert nasty.flags(repo) == flags
    # Twice is harmless: everything is there already.
    again = cli("phase0", "restore", "fl-nasty", done["branch"], "--fleet", str(fleet),
                "--json", state=state)
    assert json.loads(again.stdout)["ok"], again.stdout
    assert same_tree(before, repo) == []


def test_restore_names_other_work_where_the_backup_goes_and_writes_nothing(
        p0: P0, state: Path) -> None:
    repo, fleet, _before, done = nasty_cleaned(p0, state, "fl-taken")
    # Since the clean: a new edit of a file the backup changed, an untracked file where the
    # backup adds one, and an ignored one at another such path.
    (repo / "t.crlf").write_bytes(b"newer work\r\n")
    (repo / "mixed.txt").write_text("someone else's\n")
    (repo / "odd").mkdir(exist_ok=True)
    with (repo / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("tool.sh\n")
    (repo / "tool.sh").write_text("ignored, and mine\n")
    before = inventory.take(repo)
    refused = cli("phase0", "restore", "fl-taken", done["branch"], "--fleet", str(fleet),
                  state=state)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    for name in ("t.crlf", "mixed.txt", "tool.sh"):
        assert name in refused.stdout, refused.stdout
    assert inventory.changes(before, inventory.take(repo)) == []


def test_recall_keeps_an_edit_hidden_by_skip_worktree(lab: Lab, tmp_path: Path) -> None:
    host, fleet, wt = recall_host(lab, tmp_path, "fl-recall", 9311)
    host.sh(f"cd {wt} && git update-index --skip-worktree README.md"
            " && git update-index --assume-unchanged README.md"
            " && echo 'my local readme' >README.md")
    proc = cli("recall", "9311", "--apply", "--yes", "--fleet", str(fleet), state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    branch = re.search(r"origin/(backup/issue-9311-[0-9-]+\d)", proc.stdout)
    assert branch, proc.stdout
    saved = host.sh(f"git --git-dir {lab.origin} show {branch.group(1)}:README.md", check=False)
    assert saved.stdout == "my local readme\n", saved.stdout + saved.stderr


def test_a_nasty_linked_worktree_is_backed_up_with_its_flags_and_left_as_it_is(
        p0: P0, state: Path) -> None:
    host = p0.host("fl-wt")
    host.sh("cd /root/miyabi-private && git worktree add -q --detach /root/wt")
    wt, git_dir = host.home / "wt", host.repo / ".git" / "worktrees" / "wt"

    nasty.nasty_tree(wt, git_dir)
    fleet = p0.fleet("fl-wt", [host])
    before = inventory.take(wt, git_dir=git_dir)
    assert nasty.flags(wt, git_dir) == nasty.FLAGS
    done = json.loads(cli("phase0", "backup", "--clean", "--fleet", str(fleet), "--apply",
                          "--yes", "--json", state=state).stdout)
    out = done["hosts"][0]["worktrees"][0]
    assert done["ok"] and out["worktree"] == "wt" and out["verified"], done
    backup = inventory.backup_files(p0.origin, out["commit"])
    assert inventory.lost(before, backups=[backup], refs_repo=host.repo) == []
    assert {k for k in backup if k.startswith("flag:")} == {
        "flag:skip-worktree:both.cfg", "flag:assume-unchanged:both.cfg",
        "flag:skip-worktree:sparse.cfg", "flag:assume-unchanged:quiet.cfg",
        "flag:sparse:absent.cfg", "flag:intent-to-add:planned.txt"}, backup.keys()
    assert same_tree(before, wt) == []
