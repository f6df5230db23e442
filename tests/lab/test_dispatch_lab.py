"""`issues`, `dispatch`, `assign`, `runs` on lab hosts of their own (prefix dp-), shaped like the
plan's fleet: a host with 32 sessions of max 8, one with load 17.4 on 16 cores tagged worktree, a
dirty one, and an idle one. The "agent" is a fake `claude` on each host's login PATH that records
the arguments it was given and then idles like a long session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost

ROOT = Path(__file__).resolve().parents[2]
BACKLOG = ROOT / "backlog.yaml"

# Records its argv (NUL-separated) beside the run, then becomes a process named `claude`, as the
# real CLI is, so the probe counts it as a session working in the worktree.
FAKE_CLAUDE = """#!/bin/bash
printf '%s\\0' "$@" >"$MIYABI_RUN_DIR/agent-argv"
exec -a claude /bin/sleep 100000
"""


def install_fake_agent(host: LabHost) -> None:
    exe = host.home / ".local" / "bin" / "claude"
    exe.write_text(FAKE_CLAUDE)
    exe.chmod(0o755)
    # Like the real installers: ~/.local/bin reaches PATH through the login profile only.
    (host.home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


@dataclass
class DispatchLab:
    lab: Lab
    fleet_file: Path
    hosts: dict[str, LabHost]


@pytest.fixture(scope="module")
def dp(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> DispatchLab:
    mac, mugen, majin, idle = lab.add_hosts(
        ["dp-mac", "dp-mugen", "dp-majin", "dp-idle"], load=(1.0, 1.0, 1.0), cpus=8)
    mac.set_load(6.5, 7.0, 9.0)
    mugen.set_load(17.4, 15.2, 12.8)
    mugen.set_cpus(16)
    idle.set_load(0.5, 0.4, 0.3)
    idle.set_cpus(4)
    for i in range(32):
        mac.spawn_agent("claude" if i % 2 else "claude-node")
    for kind in ("claude", "claude-node", "codex-node"):
        mugen.spawn_agent(kind, cwd="/root/miyabi-private")
    for i in range(150):
        (majin.repo / f"wip-{i}.txt").write_text(f"work in progress {i}\n")
    install_fake_agent(idle)  # the others already run `claude` (a copy of sleep) as sessions
    base = tmp_path_factory.mktemp("dp")
    fleet_file = write_fleet(base / "fleet.yaml", lab, {
        "dp-mac": ssh_entry(mac, lab, max_sessions=8, tags=["macos"]),
        "dp-mugen": ssh_entry(mugen, lab, max_sessions=6, tags=["linux", "worktree"]),
        "dp-majin": ssh_entry(majin, lab, max_sessions=4, tags=["linux"]),
        "dp-idle": ssh_entry(idle, lab, max_sessions=4, tags=["linux"]),
    }, extra=f"backlog:\n  file: {BACKLOG}\n")
    return DispatchLab(lab, fleet_file, {h.name: h for h in (mac, mugen, majin, idle)})


def plan_json(dp: DispatchLab, state: Path, *args: str) -> dict:
    proc = cli("dispatch", "--json", "--fleet", str(dp.fleet_file), *args, state=state)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_plan_puts_1169_on_the_least_loaded_eligible_host(dp: DispatchLab, tmp_path: Path) -> None:
    doc = plan_json(dp, tmp_path, "--max", "1")
    assert set(doc) == {"applied", "assignments", "unplaced"} and doc["applied"] is False
    assert [(a["issue"], a["host"], a["agent"]) for a in doc["assignments"]] == [
        (1169, "dp-idle", "claude")]
    assert "P0" in doc["assignments"][0]["reason"]
    unplaced = {u["issue"]: u["reason"] for u in doc["unplaced"]}
    assert unplaced[1170] == "blocked by #1166, #1169"
    assert unplaced[1174] == "blocked by #1173"
    assert unplaced[970].startswith("tracking")
    assert unplaced[1172] == "not placed: --max 1 reached"
    assert 1167 not in unplaced and 1168 not in unplaced  # done


def test_full_plan_respects_slots_criticality_and_dependencies(dp: DispatchLab,
                                                               tmp_path: Path) -> None:
    doc = plan_json(dp, tmp_path)
    placed = {a["issue"]: a["host"] for a in doc["assignments"]}
    # Only issues whose dependencies are all done, in priority / unblocks order.
    assert [a["issue"] for a in doc["assignments"]] == [1169, 1172, 1166]
    # Never the 32-session host (no free slot, critical) nor the dirty one (critical).
    assert not {"dp-mac", "dp-majin"} & set(placed.values())
    # Each placed agent adds 1.0 load: idle goes 0.5/4 → 1.5/4 → 2.5/4 = 0.625, still below
    # dp-mugen's 17.4/16 = 1.09.
    assert set(placed.values()) == {"dp-idle"}


def test_explain_shows_figures_and_exclusions(dp: DispatchLab, tmp_path: Path) -> None:
    proc = cli("dispatch", "--explain", "--max", "1", "--fleet", str(dp.fleet_file),
               state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()
            if line.startswith("dp-")}
    assert "excluded: critical (32 claude sessions, max 8)" in rows["dp-mac"]
    assert "excluded: critical (150 uncommitted files)" in rows["dp-majin"]
    assert "1.09" in rows["dp-mugen"] and "eligible, not chosen" in rows["dp-mugen"]
    assert "chosen for #1169" in rows["dp-idle"] and "0.12" in rows["dp-idle"]
    assert "  #1169 → dp-idle (claude): P0, ready" in proc.stdout
    assert "Plan only: nothing launched" in proc.stdout


def test_needs_worktree_only_on_worktree_hosts(dp: DispatchLab, tmp_path: Path) -> None:
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 1, "title": "needs worktrees", "priority": "P0", "needs": ["worktree"]},
        {"number": 2, "title": "anywhere", "priority": "P0"},
        {"number": 3, "title": "needs a GPU", "priority": "P1", "needs": ["gpu"]},
    ]}))
    doc = plan_json(dp, tmp_path, "--backlog", str(backlog))
    assert {a["issue"]: a["host"] for a in doc["assignments"]} == {1: "dp-mugen", 2: "dp-idle"}
    reason = {u["issue"]: u["reason"] for u in doc["unplaced"]}[3]
    assert reason.startswith("no eligible host (")
    assert "dp-idle: lacks tag gpu" in reason and "dp-mugen: lacks tag gpu" in reason


def test_apply_launches_records_and_runs_tracks(dp: DispatchLab, tmp_path: Path) -> None:
    idle = dp.hosts["dp-idle"]
    proc = cli("dispatch", "--apply", "--yes", "--max", "1", "--fleet", str(dp.fleet_file),
               state=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "#1169 dp-idle: ok — miyabi-1169 in /root/.miyabi/worktrees/issue-1169" in proc.stdout

    # On the host: a worktree on issue/1169 from origin/main and a live tmux session.
    wt = "/root/.miyabi/worktrees/issue-1169"
    assert idle.sh(f"git -C {wt} rev-parse --abbrev-ref HEAD").stdout.strip() == "issue/1169"
    assert (idle.sh(f"git -C {wt} rev-parse HEAD").stdout
            == idle.sh("git -C /root/miyabi-private rev-parse origin/main").stdout)
    assert idle.sh("tmux has-session -t =miyabi-1169", check=False).returncode == 0
    argv = (idle.home / ".miyabi/worktrees/.runs/issue-1169/agent-argv").read_text().split("\0")
    assert argv[0] == "-p" and argv[1].startswith("# Issue #1169: AWS Lambda + API Gateway\n")
    assert "miyabi-ctl:" in (idle.home / ".miyabi/worktrees/.runs/issue-1169/agent.log").read_text()

    # In the store, and in the audit log.
    store = sqlite_rows(tmp_path)
    assert [(r["issue"], r["host"], r["state"], r["branch"], r["session"], r["worktree"])
            for r in store] == [(1169, "dp-idle", "running", "issue/1169", "miyabi-1169", wt)]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["host"], e["action"], e["result"], e["issue"]) for e in audit] == [
        ("dp-idle", "dispatch", "ok", 1169)]

    # A second dispatch places nothing new for it; the probe sees our agent as a session.
    doc = plan_json(dp, tmp_path, "--max", "1")
    assert 1169 not in [a["issue"] for a in doc["assignments"]]
    assert {u["issue"]: u["reason"] for u in doc["unplaced"]}[1169] == (
        "assigned to dp-idle (miyabi-1169)")
    assert doc["assignments"][0]["issue"] == 1172
    explain = cli("dispatch", "--explain", "--max", "1", "--fleet", str(dp.fleet_file),
                  state=tmp_path).stdout
    idle_row = next(line for line in explain.splitlines() if line.startswith("dp-idle"))
    assert idle_row.split()[5:9] == ["1", "0", "4", "3"]  # sessions, ours unseen, max, free
    issues = json.loads(cli("issues", "--json", "--fleet", str(dp.fleet_file),
                            state=tmp_path).stdout)
    by_number = {i["number"]: i for i in issues["issues"]}
    assert by_number[1169]["state"] == "assigned"
    assert by_number[1169]["assigned_to"] == "dp-idle (miyabi-1169)"

    # runs: alive, no commits yet; then a commit; then the session dies.
    run = runs_json(dp, tmp_path)
    assert (run["session_alive"], run["commits_ahead"], run["done"]) == (True, 0, False)
    idle.sh(f"cd {wt} && echo lambda >lambda.tf && git add lambda.tf && git commit -qm lambda")
    run = runs_json(dp, tmp_path)
    assert (run["session_alive"], run["commits_ahead"], run["done"]) == (True, 1, False)
    assert run["last_activity"] is not None
    idle.sh("tmux kill-session -t =miyabi-1169")
    run = runs_json(dp, tmp_path)
    assert run["session_alive"] is False and run["state"] == "running"
    table = cli("runs", "--fleet", str(dp.fleet_file), state=tmp_path).stdout
    assert "miyabi-1169 gone" in table
    # Merged into main (main moved to include the branch; simulated on this host's ref only).
    idle.sh(f"cd {wt} && git update-ref refs/remotes/origin/main HEAD")
    run = runs_json(dp, tmp_path)
    assert run["merged"] is True and run["done"] is True


def runs_json(dp: DispatchLab, state: Path) -> dict:
    proc = cli("runs", "--json", "--fleet", str(dp.fleet_file), state=state)
    assert proc.returncode == 0, proc.stderr
    (run,) = json.loads(proc.stdout)["runs"]
    return run


def sqlite_rows(state: Path) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(state / "runs.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM assignments ORDER BY id")]
    finally:
        db.close()


HOSTILE_TITLE = """$(touch /root/pwned) "; touch /root/pwned2; " `touch /root/pwned3` it's ${HOME}"""
HOSTILE_BODY = "Body $(touch /root/pwned4)\n'; touch /root/pwned5; '\n`touch /root/pwned6`\n"


def test_hostile_titles_arrive_as_text(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("dp-hostile", load=(0.1, 0.1, 0.1), cpus=2)
    install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 4242, "title": HOSTILE_TITLE, "body": HOSTILE_BODY, "priority": "P0"}]}))
    # Every placeholder, unquoted and inside double quotes and $( ).
    template = 'claude --title {title} -p "$(cat {prompt_file})" --info "#{issue} on {branch}" {worktree}'
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "dp-hostile": ssh_entry(host, lab, max_sessions=2)},
        extra=yaml.safe_dump({"agents": {"claude": {"launch": template}}}))
    proc = cli("dispatch", "--apply", "--yes", "--fleet", str(fleet), "--backlog", str(backlog),
               state=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run_dir = host.home / ".miyabi/worktrees/.runs/issue-4242"
    prompt = (run_dir / "prompt.md").read_text()
    assert prompt.startswith(f"# Issue #4242: {HOSTILE_TITLE}\n\n{HOSTILE_BODY}")
    argv = (run_dir / "agent-argv").read_text().split("\0")[:-1]
    wt = "/root/.miyabi/worktrees/issue-4242"
    assert argv == ["--title", HOSTILE_TITLE, "-p", prompt.rstrip("\n"),
                    "--info", "#4242 on issue/4242", wt]
    for name in ("pwned", "pwned2", "pwned3", "pwned4", "pwned5", "pwned6"):
        assert not (host.home / name).exists(), name
        assert not Path("/root", name).exists(), name
    host.sh("tmux kill-server", check=False)


def test_missing_agent_binary_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("dp-noagent", load=(0.1, 0.1, 0.1), cpus=2)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [{"number": 7, "title": "seven"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "dp-noagent": ssh_entry(host, lab, max_sessions=2)},
        extra=yaml.safe_dump({"agents": {"claude": {"launch": "no-such-agent -p {prompt_file}"}}}))
    proc = cli("dispatch", "--apply", "--yes", "--fleet", str(fleet), "--backlog", str(backlog),
               state=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert ("#7 dp-noagent: failed — dp-noagent: cannot launch #7: agent command 'no-such-agent' "
            "not found on the login PATH") in proc.stdout
    assert host.sh("tmux has-session -t =miyabi-7", check=False).returncode != 0
    assert [(r["issue"], r["state"]) for r in sqlite_rows(tmp_path)] == [(7, "failed")]
    # A failed launch frees the issue: the next plan offers it again.
    doc = json.loads(cli("dispatch", "--json", "--fleet", str(fleet), "--backlog", str(backlog),
                         state=tmp_path).stdout)
    assert [a["issue"] for a in doc["assignments"]] == [7]


def test_recall_backs_up_then_removes_the_worktree(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("dp-recall", load=(0.2, 0.2, 0.2), cpus=2)
    install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [{"number": 8101, "title": "recall me"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "dp-recall": ssh_entry(host, lab, max_sessions=2)}, extra=f"backlog:\n  file: {backlog}\n")
    args = ("--fleet", str(fleet))
    assert cli("dispatch", "--apply", "--yes", *args, state=tmp_path).returncode == 0
    wt = "/root/.miyabi/worktrees/issue-8101"
    host.sh(f"cd {wt} && echo done >step1.txt && git add step1.txt && git commit -qm step1"
            " && echo 'half-way' >step2.txt")

    proc = cli("recall", "8101", *args, state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:5] == [
        "Recall plan for #8101 on dp-recall:",
        "  1. stop tmux session miyabi-8101 on dp-recall",
        f"  2. back up the uncommitted work in {wt} (1 added, 0 modified, 0 deleted) to "
        f"backup/issue-8101-{date.today():%Y-%m-%d}, push it to origin and verify it",
        f"  3. remove the worktree {wt} (branch issue/8101 and its commits stay)",
        "  4. release the claim on #8101 and mark it recalled"]
    assert host.sh("tmux has-session -t =miyabi-8101", check=False).returncode == 0  # plan only

    proc = cli("recall", "8101", "--apply", "--yes", *args, state=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "#8101 dp-recall: ok — stopped miyabi-8101; backed up and verified" in proc.stdout
    assert proc.stdout.rstrip().endswith("; claim released")
    assert "refs/miyabi/claims/8101" not in host.sh(f"git --git-dir {lab.origin} for-each-ref").stdout
    assert host.sh("tmux has-session -t =miyabi-8101", check=False).returncode != 0
    assert not (host.home / ".miyabi/worktrees/issue-8101").exists()
    # The half-way file is on the pushed backup branch, on top of the agent's commit.
    branch = f"backup/issue-8101-{date.today():%Y-%m-%d}"
    origin = f"git --git-dir {lab.origin}"
    assert host.sh(f"{origin} show {branch}:step2.txt").stdout == "half-way\n"
    assert host.sh(f"{origin} log --format=%s -2 {branch}").stdout.splitlines()[1] == "step1"
    assert host.sh("git -C /root/miyabi-private log --format=%s -1 issue/8101").stdout == "step1\n"
    assert [(r["issue"], r["state"]) for r in sqlite_rows(tmp_path)] == [(8101, "recalled")]
    issues = json.loads(cli("issues", "--json", *args, state=tmp_path).stdout)
    assert issues["issues"][0]["state"] == "ready"
    actions = [e["action"] for e in map(json.loads, (tmp_path / "audit.jsonl").read_text()
                                        .splitlines())]
    assert actions == ["dispatch", "recall.stop", "backup.create", "backup.push", "recall.remove",
                       "claim.release"]
    assert cli("recall", "8101", *args, state=tmp_path).returncode == 1  # nothing left to recall


def test_assign_checks_like_dispatch_and_force_is_loud(dp: DispatchLab, tmp_path: Path) -> None:
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 1, "title": "needs worktrees", "needs": ["worktree"]},
        {"number": 2, "title": "waits", "depends": [1]}]}))
    args = ("--fleet", str(dp.fleet_file), "--backlog", str(backlog))
    proc = cli("assign", "2", "dp-mugen", *args, state=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "miyabi-ctl: error: issue #2 is not ready: blocked by #1")
    proc = cli("assign", "1", "dp-idle", *args, state=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "miyabi-ctl: error: dp-idle cannot take #1: lacks tag worktree (--force overrides this)")
    proc = cli("assign", "1", "dp-idle", "--force", *args, state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("WARNING: --force: placing #1 on dp-idle although lacks tag "
                           "worktree\n")
    assert "  #1 → dp-idle (claude): FORCED past: lacks tag worktree" in proc.stdout
    assert "Plan only: nothing launched" in proc.stdout
    proc = cli("assign", "1", "dp-mac", "--force", *args, state=tmp_path)  # safety is not forced
    assert proc.returncode == 1
    assert "dp-mac cannot take #1: critical (32 claude sessions, max 8)" in proc.stderr
    doc = json.loads(cli("assign", "1", "dp-mugen", "--json", *args, state=tmp_path).stdout)
    assert [(a["issue"], a["host"]) for a in doc["assignments"]] == [(1, "dp-mugen")]
    assert not (tmp_path / "runs.sqlite").exists() or sqlite_rows(tmp_path) == []


def test_recall_refuses_to_delete_nested_repos_and_ignored_files_no_backup_holds(
        lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("fx-recall", load=(0.2, 0.2, 0.2), cpus=2)
    install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [{"number": 8201, "title": "nested work"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "fx-recall": ssh_entry(host, lab, max_sessions=2)}, extra=f"backlog:\n  file: {backlog}\n")
    args = ("--fleet", str(fleet))
    assert cli("dispatch", "--apply", "--yes", *args, state=tmp_path).returncode == 0
    wt = "/root/.miyabi/worktrees/issue-8201"
    # The agent cloned a library and committed to it, and keeps a secret in an ignored .env.
    host.sh(f"cd {wt} && printf '.env\\n' >.gitignore && echo 'TOKEN=s3cret' >.env"
            " && git init -q vendor/lib && cd vendor/lib && echo patched >lib.txt"
            " && git add lib.txt && git -c user.name=a -c user.email=a@b commit -qm 'local patch'")

    plan = cli("recall", "8201", *args, state=tmp_path)
    assert plan.returncode == 1, plan.stderr  # plan only, and the plan refuses: exit 1
    lines = plan.stdout.splitlines()
    assert lines[3] == (
        f"  3. remove the worktree {wt}: REFUSED (vendor/lib (1 commits on no remote): nested "
        "repositories whose files and commits are not in the backup (--discard-nested deletes "
        "them); .env: ignored files that are not in the backup (--discard-ignored deletes them)); "
        "recall would stop before anything is changed")
    # The backup's own notes are shown: the nested repository is only a commit id there.
    assert "  note: backup: 1 embedded repositories are recorded as a commit id only (their files " \
        "are not in the backup; --clean leaves them in place)" in lines

    refused = cli("recall", "8201", "--apply", "--yes", "--discard-ignored", *args, state=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "#8201 fx-recall: failed — not recalled, nothing changed: vendor/lib (1 commits on no " \
        "remote): nested repositories" in refused.stdout
    assert host.sh("tmux has-session -t =miyabi-8201", check=False).returncode == 0
    assert (host.home / ".miyabi/worktrees/issue-8201/.env").read_text() == "TOKEN=s3cret\n"
    assert (host.home / ".miyabi/worktrees/issue-8201/vendor/lib/lib.txt").exists()
    assert [(r["issue"], r["state"]) for r in sqlite_rows(tmp_path)] == [(8201, "running")]
    # The removal script checks again itself, right before removing (the session is stopped by
    # then, and may have written more): without the flags it keeps the worktree.
    from miyabi_ctl.dispatch.worktree import WorktreeKept, remove_worktree
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(fleet)
    with Fleet(inventory) as raw, pytest.raises(WorktreeKept, match=r"^vendor/lib .*\.env: ignored"):
        remove_worktree(raw.host("fx-recall"), inventory, wt, discard_nested=False)
    assert (host.home / ".miyabi/worktrees/issue-8201/.env").exists()

    done = cli("recall", "8201", "--apply", "--yes", "--discard-ignored", "--discard-nested", *args,
               state=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (host.home / ".miyabi/worktrees/issue-8201").exists()
    assert [(r["issue"], r["state"]) for r in sqlite_rows(tmp_path)] == [(8201, "recalled")]
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["action"], e["result"]) for e in entries if e["action"].startswith("recall")] == [
        ("recall", "refused"), ("recall.stop", "ok"), ("recall.remove", "ok")]
    removed = next(e for e in entries if e["action"] == "recall.remove")
    assert removed["before"]["nested"] == ["vendor/lib"] and removed["before"]["ignored"] == 1
    assert removed["discarded"] == {"ignored": True, "nested": True, "unkept": False}
