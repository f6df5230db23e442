"""Issue 9's pieces that need no host: the lock holder's identity, the journal's reconciling,
the plan's words for what git cannot keep, the runner's watchdog."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from miyabi_ctl.phase0 import journal, locks, publish
from miyabi_ctl.remote.runner import script_input


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIYABI_STATE_DIR", str(tmp_path))
    return tmp_path


def test_lock_holder_is_this_installation_not_a_hostname(state: Path) -> None:
    me = locks.install_id()
    assert me == locks.install_id() == (state / "install-id").read_text().strip()
    dead = 2**22 + 12345  # above pid_max's default: no such process
    # Two Termux controllers are both `localhost`: only this installation's dead pid is gone.
    assert locks.Holder(f"u@localhost install={me} pid={dead} action=x").gone()
    assert not locks.Holder(f"u@localhost install=0123456789abcdef pid={dead} action=x").gone()
    assert f"install={me} " in locks.owner_text("phase0 backup")


def test_journal_cleans_missing_from_the_audit_log_are_recorded_once(state: Path) -> None:
    lines = ["start c0ffee.1700000000 1700000000 backup/h-2025-01-01 abc123",
             "done c0ffee.1700000000 1700000001",
             "start beef.1700000100 1700000100 backup/h-2025-01-01-2 abc123",
             "start dead.1700000200 1700000200 backup/h-2025-01-01-3 abc123",
             "nothing dead.1700000200"]
    recorded = journal.reconcile_journal("h", "~/repo", lines)
    assert [(e["journal"], e["result"]) for e in recorded] == [
        ("c0ffee.1700000000", "ok"), ("beef.1700000100", "unknown")]
    assert "never recorded" in recorded[1]["error"]
    assert journal.reconcile_journal("h", "~/repo", lines) == []
    logged = (state / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["recovered"] for line in logged] == [True, True]


def test_a_clean_logged_unknown_is_settled_by_the_journal_once(state: Path) -> None:
    from miyabi_ctl.phase0.commit_step import record_unseen_clean

    # Ctrl-C: the controller logged the cleans unknown (one with its journal id, two without).
    record_unseen_clean("h", "backup/h-1", "abc", "no exit status", path="~/repo",
                        journal="c0ffee.1")
    record_unseen_clean("h", "backup/h-2", "abc", "no exit status", path="~/repo")
    record_unseen_clean("h", "backup/h-3", "abc", "no exit status", path="~/repo")
    record_unseen_clean("h", "backup/h-9", "abc", "elsewhere", path="~/other")
    lines = ["start c0ffee.1 1 backup/h-1 abc", "done c0ffee.1 2",
             "start beef.3 3 backup/h-2 abc", "done beef.3 4"]
    recorded = journal.reconcile_journal("h", "~/repo", lines)
    assert [(e["backup"], e["result"]) for e in recorded] == [
        ("backup/h-1", "ok"), ("backup/h-2", "ok"), ("backup/h-3", "skipped")]
    assert "never started" in recorded[2]["error"]
    assert journal.reconcile_journal("h", "~/repo", lines) == []
    # A host killed mid-clean: start, no done: it stays `unknown`, logged once.
    record_unseen_clean("h", "backup/h-4", "abc", "connection lost", path="~/repo",
                        journal="d00d.5")
    assert journal.reconcile_journal("h", "~/repo", ["start d00d.5 5 backup/h-4 abc"]) == []


def test_unkept_note_names_each_path_and_what_happens_to_it() -> None:
    note = publish.unkept_note(["fifo run/pipe", "empty-dir build/out"])
    assert note == ("git cannot keep: run/pipe (fifo: not in the backup), build/out (empty dir: "
                    "not in the backup); a clean never removes FIFOs, sockets or empty "
                    "directories")


def test_watchdog_ends_the_whole_process_group_and_passes_exit_codes() -> None:
    started = time.monotonic()
    slow = subprocess.run(["sh", "-s"], input=script_input("echo start; sleep 30 & sleep 30",
                                                          limit=1),
                          capture_output=True, text=True, start_new_session=True, timeout=20)
    assert slow.stdout == "start\n" and slow.returncode != 0
    assert time.monotonic() - started < 10
    quick = subprocess.run(["sh", "-s"], input=script_input('echo "ok $1"; exit 3', "a b",
                                                           limit=5),
                           capture_output=True, text=True, start_new_session=True, timeout=20)
    assert (quick.returncode, quick.stdout) == (3, "ok a b\n")


def test_publish_flags_secret_names_and_files_github_refuses() -> None:
    assert publish.publish_flags("a/.env.production", 10) == ["secret-like name"]
    assert publish.publish_flags("keys/id_ed25519", 10) == ["secret-like name"]
    assert publish.publish_flags("aws/credentials.json", 10) == ["secret-like name"]
    assert publish.publish_flags("src/identity.py", 10) == []
    assert publish.publish_flags("data/dump.bin", 150 * 1024 * 1024) == [
        "150 MB, over GitHub's 100 MB limit"]
    note = publish.publish_note([(5, "ok.txt"), (7, ".env")], "origin")
    assert note is not None and note.startswith("the backup would publish to origin: .env "
                                                "(secret-like name) — --exclude PATTERN")
    assert publish.publish_note([(5, "ok.txt")], "origin") is None
