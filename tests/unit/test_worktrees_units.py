"""Linked worktrees, without hosts: their backup branches' names, the probe's section about them,
the plan of a whole repository read from backup.sh's output, and restore's choice of worktree."""

from __future__ import annotations

import datetime as dt

import pytest

from miyabi_ctl.names import check_branch
from miyabi_ctl.phase0.backup import branch_name, branch_pattern, decide_backup, worktree_label
from miyabi_ctl.phase0.restore import worktree_of
from miyabi_ctl.phase0.snapshot import BackupRef, Snapshot, parse_snapshots
from miyabi_ctl.probe.parse import parse_worktrees

DAY = dt.date(2026, 11, 26)


def test_a_worktrees_branches_say_which_and_never_match_another_trees() -> None:
    assert branch_name("majin", DAY) == "backup/majin-2026-11-26"
    assert branch_name("majin", DAY, 2, "issue-12") == "backup/majin-2026-11-26-2-wt-issue-12"
    for wt in (None, "issue-12", "issue-12-2"):
        check_branch(branch_name("majin", DAY, 3, wt), "backup branch")
    ours = branch_pattern("majin", "issue-12")
    assert ours.match("backup/majin-2026-11-26-wt-issue-12")
    assert ours.match("backup/majin-2026-11-26-4-wt-issue-12")
    assert not ours.match("backup/majin-2026-11-26-wt-issue-12-2")  # issue-12-2's
    assert not branch_pattern("majin").match("backup/majin-2026-11-26-wt-issue-12")


@pytest.mark.parametrize(("name", "label"), [
    ("issue-12", "issue-12"), ("wt.v2", "wt.v2"), ("naïve name", "na_ve_name"),
    ("x..y", "x_y"), (".hidden", "hidden"), ("a.lock", "a"), ("日本", "_")])
def test_worktree_names_become_branch_safe_labels(name: str, label: str) -> None:
    assert worktree_label(name) == label
    check_branch(branch_name("majin", DAY, 1, name), "backup branch")


def test_a_worktrees_backup_is_reused_only_from_its_own_branches() -> None:
    snap = Snapshot(path="~/r", head="h" * 40, tree="t" * 40, head_tree="H" * 40,
                    index_tree="H" * 40, added=1, refs=[
                        BackupRef("refs/heads/backup/m-2026-11-26", "c1", "t" * 40, None),
                        BackupRef("refs/heads/backup/m-2026-11-26-wt-b", "c2", "t" * 40, None)])
    plan = decide_backup("m", "~/r", "m", snap, DAY, "a")
    assert (plan.action, plan.branch, plan.where) == ("create", "backup/m-2026-11-26-wt-a", "m:a")
    plan = decide_backup("m", "~/r", "m", snap, DAY, "b")
    assert (plan.action, plan.branch) == ("exists", "backup/m-2026-11-26-wt-b")
    gone = decide_backup("m", "~/r", "m", Snapshot(path="~/r", missing="/mnt/usb/wt"), DAY, "c")
    assert gone.action == "missing" and "/mnt/usb/wt" in gone.reason


def test_flags_make_a_snapshot_different_from_a_backup_without_them() -> None:
    snap = Snapshot(path="~/r", head="h" * 40, tree="t" * 40, head_tree="H" * 40,
                    index_tree="H" * 40, flags_tree="f" * 40, added=1, refs=[
                        BackupRef("refs/heads/backup/m-2026-11-26", "c1", "t" * 40, None)])
    plan = decide_backup("m", "~/r", "m", snap, DAY)
    assert plan.action == "create" and plan.branch == "backup/m-2026-11-26-2"
    snap.refs.append(BackupRef("refs/heads/backup/m-2026-11-26-2", "c2", "t" * 40, "H" * 40,
                               "f" * 40))
    assert decide_backup("m", "~/r", "m", snap, DAY).action == "exists"


def test_a_repository_plan_reads_each_worktrees_section() -> None:
    text = "\n".join([
        "top=/root/r", "remote=origin", "head=" + "1" * 40, "branch=main", "tree=" + "2" * 40,
        "head_tree=" + "2" * 40, "index_tree=" + "2" * 40,
        "ref=refs/heads/backup/m-2026-11-26-wt-a c " + "3" * 40 + " - -",
        "worktree=a", "top=/root/wt-a", "head=" + "4" * 40, "detached=1", "tree=" + "5" * 40,
        "worktree=gone", "locked=on a usb disk", "missing=/mnt/usb/gone",
        "worktree=odd", "top=/root/odd", "error=cannot snapshot the working tree: disk full"])
    main, linked = parse_snapshots("~/r", text)
    assert main.top == "/root/r" and main.refs[0].flags_tree is None
    a, gone, odd = linked
    assert (a.worktree, a.path, a.detached, a.remote, a.refs) == ("a", "/root/wt-a", True,
                                                                  "origin", main.refs)
    assert (gone.missing, gone.locked) == ("/mnt/usb/gone", "on a usb disk")
    assert odd.refuse == "snapshot failed: cannot snapshot the working tree: disk full"


def test_restore_finds_the_worktree_a_branch_names() -> None:
    assert worktree_of("backup/majin-2026-11-26-wt-issue-12") == "issue-12"
    assert worktree_of("backup/majin-2026-11-26-3-wt-issue-12") == "issue-12"
    assert worktree_of("backup/majin-2026-11-26-3") is None
    assert worktree_of("backup/my-wt-box-2026-11-26") is None


def test_the_probe_section_about_linked_worktrees() -> None:
    found = parse_worktrees(["wissue-1", "p/root/.miyabi/worktrees/issue-1",
                             "href: refs/heads/issue/1", "u3",
                             "wdetached", "p/root/d", "h" + "a" * 40, "e124",
                             "wusb", "p/mnt/usb/x", "href: refs/heads/x", "lon a usb disk", "x"])
    one, detached, usb = found
    assert (one.name, one.branch, one.uncommitted, one.missing) == ("issue-1", "issue/1", 3, False)
    assert (detached.branch, detached.head, detached.error) == (None, "a" * 40,
                                                                "git status timed out")
    assert (usb.locked, usb.missing, usb.uncommitted) == ("on a usb disk", True, None)
