"""The pure decisions behind Phase 0: durations, cut-offs, session choice, branch naming, merge host."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miyabi_ctl.phase0.backup import decide_backup
from miyabi_ctl.phase0.merge import BranchState, decide_merge
from miyabi_ctl.phase0.prune import Selection, choose, parse_duration, parse_when
from miyabi_ctl.phase0.snapshot import BackupRef, Snapshot
from miyabi_ctl.probe.agents import AgentSession


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("90m", 5400), ("36h", 129600),
                                               ("3d", 259200), ("1h30m", 5400), ("2w", 1209600)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3", "h", "3x", "1h 30m", "-3h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_weekday_is_the_most_recent_such_midnight_including_today() -> None:
    wednesday = dt.datetime(2025, 11, 26, 15, 30).astimezone()
    assert parse_when("saturday", wednesday).date() == dt.date(2025, 11, 22)
    assert parse_when("Sat", wednesday).hour == 0
    assert parse_when("wednesday", wednesday).date() == dt.date(2025, 11, 26)
    assert parse_when("thursday", wednesday).date() == dt.date(2025, 11, 20)
    assert parse_when("2025-11-22", wednesday) == dt.datetime(2025, 11, 22).astimezone()
    with pytest.raises(ValueError, match="weekday"):
        parse_when("someday", wednesday)


def _session(pid: int, age: int, agent: str = "claude") -> AgentSession:
    return AgentSession(pid, 1, agent, age, "/root", agent)


def test_choose_keeps_the_newest_and_filters_by_agent() -> None:
    sessions = [_session(1, 500), _session(2, 400), _session(3, 300, "codex"), _session(4, 10)]
    acts = {a.pid: a for a in choose(sessions, Selection(older_than_s=100, keep=1), 1000)}
    assert {p for p, a in acts.items() if a.action == "kill"} == {1, 2, 3}
    assert acts[4].reason == "among the newest 1"
    acts = {a.pid: a for a in choose(sessions, Selection(older_than_s=100, agent="claude"), 1000)}
    assert {p for p, a in acts.items() if a.action == "kill"} == {1, 2}
    assert acts[3].reason == "not claude"
    cut = dt.datetime.fromtimestamp(1000 - 350).astimezone()
    acts = {a.pid: a for a in choose(sessions, Selection(started_before=cut), 1000)}
    assert {p for p, a in acts.items() if a.action == "kill"} == {1, 2}


def _snap(tree: str, refs: list[BackupRef], index_tree: str = "H") -> Snapshot:
    return Snapshot(path="~/r", head="c" * 40, branch="main", tree=tree, head_tree="H",
                    index_tree=index_tree, added=1, refs=refs)


def test_backup_names_and_idempotence() -> None:
    today = dt.date(2025, 11, 26)
    assert decide_backup("majin", "~/r", "majin", _snap("T", []), today).branch == \
        "backup/majin-2025-11-26"
    taken = [BackupRef("refs/heads/backup/majin-2025-11-26", "c1", "OTHER", None),
             BackupRef("refs/remotes/origin/backup/majin-2025-11-26-2", "c2", "OTHER2", None),
             BackupRef("refs/heads/backup/majin-old-2025-11-26-3", "c3", "T", None)]
    plan = decide_backup("majin", "~/r", "majin", _snap("T", taken), today)
    assert (plan.action, plan.branch) == ("create", "backup/majin-2025-11-26-3")
    same = [*taken, BackupRef("refs/remotes/origin/backup/majin-2025-11-20", "c4", "T", None)]
    plan = decide_backup("majin", "~/r", "majin", _snap("T", same), today)
    assert (plan.action, plan.branch) == ("exists", "backup/majin-2025-11-20")
    # The same files but different staged versions are a different snapshot.
    plan = decide_backup("majin", "~/r", "majin", _snap("T", same, index_tree="I"), today)
    assert plan.action == "create"
    assert decide_backup("majin", "~/r", "majin", _snap("H", []), today).action == "clean"
    assert plan.recreate_from is None  # never for a local branch
    refused = decide_backup("majin", "~/r", "majin", Snapshot(path="~/r", refuse="conflicted"), today)
    assert (refused.action, refused.reason) == ("refuse", "conflicted")


def test_backup_held_only_by_a_remote_tracking_branch_is_recreated_not_lost() -> None:
    today = dt.date(2025, 11, 26)
    remote_only = [BackupRef("refs/remotes/origin/backup/majin-2025-11-20", "c4", "T", None)]
    plan = decide_backup("majin", "~/r", "majin", _snap("T", remote_only), today)
    assert (plan.action, plan.branch, plan.recreate_from) == ("exists", "backup/majin-2025-11-20", "c4")
    assert "recreated from origin/backup/majin-2025-11-20" in plan.notes[0]
    # A local branch of that name holding another snapshot: the name is taken, make a new one.
    taken = [*remote_only, BackupRef("refs/heads/backup/majin-2025-11-20", "c5", "OTHER", None)]
    plan = decide_backup("majin", "~/r", "majin", _snap("T", taken), today)
    assert (plan.action, plan.branch, plan.recreate_from) == ("create", "backup/majin-2025-11-26", None)


def _state(host: str, ahead: int, relation: str, **kw: object) -> BranchState:
    return BranchState(host, head="h", branch="feat", from_local=f"{host}-sha",
                       from_remote="r-sha", into_remote="main-sha", from_ahead=ahead,
                       from_relation=relation, **kw)  # type: ignore[arg-type]


def test_merge_picks_the_most_ahead_refuses_divergence_and_notes_dirt() -> None:
    states = {"macbook": _state("macbook", 0, "behind"), "mugen": _state("mugen", 3, "ahead"),
              "majin": _state("majin", 1, "ahead")}
    plan = decide_merge("feat", "main", "origin", states)
    assert (plan.action, plan.host, plan.source) == ("merge", "mugen", "mugen-sha")
    assert "3 commits ahead" in plan.why
    assert any("majin also has 1 unpushed" in n for n in plan.notes)
    states["mugen"] = _state("mugen", 3, "diverged")
    assert "diverged" in decide_merge("feat", "main", "origin", states).reason
    # The merge runs in a temporary worktree: uncommitted work is no obstacle, only not merged.
    states["mugen"] = _state("mugen", 3, "ahead", dirty=4)
    plan = decide_merge("feat", "main", "origin", states)
    assert (plan.action, plan.host) == ("merge", "mugen")
    assert "mugen has 4 uncommitted changes: they are not part of the merge" in plan.notes[-1]
    states["mugen"] = _state("mugen", 3, "ahead", busy="rebase-merge")
    assert "rebase or cherry-pick is in progress" in decide_merge("feat", "main", "origin", states).reason
    plan = decide_merge("feat", "main", "origin", states, on="macbook")
    assert (plan.action, plan.source) == ("merge", "r-sha")  # behind: merge origin's copy


def test_hosts_cleaned_before_the_merge_count_as_clean_for_sync() -> None:
    """phase0 run --clean: a host whose work the backup saves and removes is synced, not skipped."""
    states = {"mugen": _state("mugen", 3, "ahead"),
              "majin": dataclasses.replace(_state("majin", 0, "none", dirty=300), branch="main")}
    skipped = decide_merge("feat", "main", "origin", states).sync
    assert [(s.host, s.action, s.reason) for s in skipped] == [
        ("majin", "skip", "working tree not clean")]
    synced = decide_merge("feat", "main", "origin", states, cleaned=frozenset({"majin"})).sync
    assert [(s.host, s.action) for s in synced] == [("majin", "fast-forward")]
    assert states["majin"].dirty == 300  # the facts are not rewritten, only judged


# -- the audit log -----------------------------------------------------------------------------

def _audit_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", "audit", *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_audit_skips_lines_that_are_not_utf8_or_not_objects(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from miyabi_ctl import audit

    monkeypatch.setenv("MIYABI_STATE_DIR", str(tmp_path))
    first = audit.record("fx-a", "backup.create", result="ok", error="caf\ufffd from a remote")
    log = audit.audit_path()
    with log.open("ab") as fh:
        fh.write(b'{"host": "fx-latin1", "error": "caf\xe9"}\n')  # not UTF-8
        fh.write(b'[1, 2]\n"a string"\n42\nnull\n{"torn": \n')
    last = audit.record("fx-b", "merge", result="failed", after=["not", "a", "dict"])  # type: ignore[arg-type]
    assert [e["host"] for e in audit.entries()] == [first["host"], last["host"]]
    assert next(audit.entries())["error"] == "caf\ufffd from a remote"  # a real U+FFFD is kept

    shown = _audit_cli(tmp_path, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [e["host"] for e in json.loads(shown.stdout)["entries"]] == ["fx-a", "fx-b"]
    table = _audit_cli(tmp_path)
    assert table.returncode == 0, table.stderr
    assert "fx-a" in table.stdout and "fx-b" in table.stdout and "Traceback" not in table.stderr


def test_audit_log_that_cannot_be_written_stops_an_apply_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from miyabi_ctl import audit

    monkeypatch.setenv("MIYABI_STATE_DIR", str(tmp_path))
    assert audit.ensure_writable() == tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl").unlink()
    (tmp_path / "audit.jsonl").mkdir()  # even root cannot append to a directory
    with pytest.raises(audit.AuditUnwritable, match=r"cannot write the audit log .*nothing was changed"):
        audit.ensure_writable()


# -- prune's identity logic where there is no /proc (macOS) -------------------------------------

# A macOS-like `ps` that knows one process, $FAKE_PID, and answers for it as macOS does: the
# start time with spaces and colons, a path as the first word of args.
FAKE_PS = r"""#!/bin/sh
if [ "$1" = -axo ]; then
  kill -0 "$FAKE_PID" 2>/dev/null && printf '%5s %5s\n' "$FAKE_PID" 1
  exit 0
fi
field=$2 pid=$4
[ "$pid" = "$FAKE_PID" ] && kill -0 "$pid" 2>/dev/null || exit 1
case $field in
  lstart=) echo "Mon Nov  4 10:00:00 2025" ;;
  args=) echo "/Users/me/.local/bin/claude --resume" ;;
  stat=) echo "S" ;;
esac
"""


def _no_proc_host(tmp_path: Path, pid: int) -> object:
    """A LocalHost whose commands run with /proc hidden and the fake ps first on PATH."""
    import shlex

    from miyabi_ctl.connectors.base import RunResult
    from miyabi_ctl.connectors.local import LocalHost
    from miyabi_ctl.inventory import HostSpec

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ps").write_text(FAKE_PS)
    (fake / "ps").chmod(0o755)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /proc"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot hide /proc in a mount namespace: {probe.stderr.strip()}")

    class NoProcHost(LocalHost):
        def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
            inner = ("mount -t tmpfs none /proc && "
                     f'exec env PATH={shlex.quote(str(fake))}:"$PATH" FAKE_PID={pid} sh -c "$1"')
            return super()._run(f"unshare -m sh -c {shlex.quote(inner)} sh {shlex.quote(command)}",
                                stdin, timeout)

    return NoProcHost(HostSpec("fx-macos", transport="local"))


def test_prune_pins_and_ends_a_session_where_start_times_come_from_ps_lstart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from miyabi_ctl.phase0.prune import PrunePlan, SessionAction, _identify, apply_prune, prune_ok

    monkeypatch.setenv("MIYABI_STATE_DIR", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    victim = subprocess.Popen(["sleep", "600"])
    threading.Thread(target=victim.wait, daemon=True).start()  # reap it as a real parent would
    host = _no_proc_host(tmp_path, victim.pid)

    def planned() -> PrunePlan:
        action = SessionAction(victim.pid, "claude", 3600, None, "claude --resume", action="kill")
        _identify(host, [action])  # type: ignore[arg-type]
        return PrunePlan("fx-macos", sessions=[action])

    plan = planned()
    pinned = plan.sessions[0]
    assert (pinned.action, pinned.start, pinned.exe) == ("kill", "Mon_Nov_4_10_00_00_2025", "claude")

    # The planned session is still this process: it is ended, and that is a success.
    done = apply_prune(host, plan, repo_path=str(repo), grace=2)  # type: ignore[arg-type]
    assert done.sessions[0].result == "terminated", done.sessions[0]
    assert prune_ok(done)
    victim.wait(timeout=10)

    # The pid now names another process (another start time): not signalled, and not a success.
    other = subprocess.Popen(["sleep", "600"])
    threading.Thread(target=other.wait, daemon=True).start()
    (tmp_path / "again").mkdir()
    host = _no_proc_host(tmp_path / "again", other.pid)
    stale = SessionAction(other.pid, "claude", 3600, None, "claude", action="kill",
                          start="Sun_Nov_3_09_00_00_2025", exe="claude")
    done = apply_prune(host, PrunePlan("fx-macos", sessions=[stale]),  # type: ignore[arg-type]
                       repo_path=str(repo), grace=1)
    assert done.sessions[0].result == "mismatch"
    assert "NOT ended" in done.sessions[0].reason
    assert not prune_ok(done)
    assert other.poll() is None  # never signalled
    other.kill()


# -- names that reach git ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["main", "feat/miyabi-society-reconstruction", "issue/1169",
                                  "backup/majin-2025-11-26-2", "v1.2", "a@b", "日本"])
def test_usable_branch_names(name: str) -> None:
    from miyabi_ctl.names import check_branch, ref_name_problem

    assert ref_name_problem(name) is None and check_branch(name) == name


@pytest.mark.parametrize(("name", "problem"), [
    ("-x", "starts with '-'"), ("--upload-pack=touch /tmp/p", "starts with '-'"), ("", "empty"),
    ("a b", "contains ' '"), ("a:b", "contains ':'"), ("a~1", "'~'"), ("a^", "'^'"), ("a?", "'?'"),
    ("a*", "'*'"), ("a[", "'['"), ("a\\b", "'\\\\'"), ("a\nb", "'\\n'"), ("a..b", "'..'"),
    ("/a", "'/'"), ("a/", "'/'"), ("a//b", "'//'"), ("a.", "ends with '.'"), ("@", "'@'"),
    ("a@{1}", "'@{'"), (".hidden", "starts with '.'"), ("a/.b", "starts with '.'"),
    ("x.lock", ".lock"), ("a/b.lock/c", ".lock"), ("a\x7fb", "'\\x7f'"),
])
def test_unusable_branch_names_are_refused_with_the_rule(name: str, problem: str) -> None:
    from miyabi_ctl.names import BadName, check_branch, check_remote

    with pytest.raises(BadName, match="is not a usable branch name") as info:
        check_branch(name, "--into")
    assert problem in str(info.value) and str(info.value).startswith(f"--into {name!r}")
    with pytest.raises(BadName, match="is not a usable remote name"):
        check_remote(name)
