"""Issue 18, item 7: audits that tell the truth under faults — Ctrl-C at the controller while the
host pushes or cleans, a host killed mid-clean or mid-merge, a full disk, a push a hook
rejects, runs killed before their cleanup — and plans that say what the apply will refuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.lab import inventory
from tests.lab.harness import LabHost
from tests.lab.p0fixtures import p0_fixture, state_fixture  # noqa: F401 (fixtures p0, state)
from tests.lab.test_json_contract_lab import validate
from tests.lab.test_phase0_lab import P0, cli, git

REPO = "/root/miyabi-private"



def audit_log(state: Path) -> list[dict]:
    path = state / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(state: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "miyabi_ctl", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(check: Callable[[], bool], what: str, limit: float = 60.0, step: float = 0.001) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def busy_tree(host: LabHost, n: int = 3000) -> None:
    """Enough files that a clean takes a while."""
    for i in range(n):
        target = host.repo / "work" / f"d{i % 30}" / f"f{i}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"work {i}\n")


def host_runs(host: LabHost, word: str) -> bool:
    return word in host.sh("ps -eo args", check=False).stdout


def test_ctrl_c_as_the_host_cleans_is_settled_by_its_journal_never_failed(
        p0: P0, state: Path) -> None:
    host = p0.host("af-sigint")
    busy_tree(host)
    fleet = p0.fleet("af-sigint", [host])
    journal = host.repo / ".git" / "miyabi-ctl.journal"
    proc = start(state, "phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean")
    wait_for(lambda: journal.exists() or proc.poll() is not None, "the clean's journal")
    proc.send_signal(signal.SIGINT)  # Ctrl-C as the host starts cleaning
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    wait_for(lambda: "done" in journal.read_text(), "the host to finish", step=0.05)
    assert all(e["result"] != "failed" for e in audit_log(state)), audit_log(state)

    again = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    cleans = [e for e in audit_log(state) if e["action"] == "backup.clean"]
    assert cleans and cleans[-1]["result"] == "ok" and cleans[-1]["recovered"], cleans
    assert all(e["result"] in ("ok", "unknown") for e in cleans), cleans
    assert all(e["result"] != "failed" for e in audit_log(state)), audit_log(state)


def test_ctrl_c_just_after_the_push_is_told_as_the_host_saw_it(p0: P0, state: Path) -> None:
    host = p0.host("af-sigint-push")
    busy_tree(host)
    fleet = p0.fleet("af-sigint-push", [host])
    today = time.strftime("%Y-%m-%d")
    ref = f"refs/heads/backup/af-sigint-push-{today}"
    proc = start(state, "phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean")
    wait_for(lambda: bool(p0.ref(ref)) or proc.poll() is not None, "the push", step=0.01)
    proc.send_signal(signal.SIGINT)  # Ctrl-C as the push lands
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    wait_for(lambda: not host_runs(host, "sh -s"), "the host's script to end", step=0.1)
    assert all(e["result"] != "failed" for e in audit_log(state)), audit_log(state)

    # The next apply tells how the clean ended, as the host's journal says.
    cleaned = not (host.repo / "work").exists()
    again = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    log = audit_log(state)
    assert all(e["result"] != "failed" for e in log), log
    cleans = [e for e in log if e["action"] == "backup.clean"]
    if cleaned:
        assert cleans[-1]["result"] == "ok", cleans
    else:
        assert not cleans or cleans[-1]["result"] == "skipped", cleans


def test_a_host_killed_mid_clean_is_logged_unknown_once(p0: P0, state: Path) -> None:
    host = p0.host("af-killclean")
    busy_tree(host)
    fleet = p0.fleet("af-killclean", [host])
    journal = host.repo / ".git" / "miyabi-ctl.journal"
    before = inventory.take(host.repo)
    proc = start(state, "phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean")
    wait_for(lambda: (journal.exists() and "start" in journal.read_text())
             or proc.poll() is not None, "the clean's journal")
    host.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    cleans = [e for e in audit_log(state) if e["action"] == "backup.clean"]
    assert [e["result"] for e in cleans] == ["unknown"], cleans

    host.restart()
    cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    cleans = [e for e in audit_log(state) if e["action"] == "backup.clean"]
    ended = "done" in journal.read_text() if journal.exists() else False
    assert [e["result"] for e in cleans] == (["unknown", "ok"] if ended else ["unknown"]), cleans
    assert all(e["result"] != "failed" for e in audit_log(state)), audit_log(state)
    backup = [e for e in audit_log(state) if e["action"] == "backup.create"]
    saved = inventory.backup_files(p0.origin, backup[0]["after"]["commit"])
    assert inventory.lost(before, backups=[saved]) == []


def test_a_merge_whose_host_is_killed_is_in_the_audit(p0: P0, state: Path) -> None:
    host = p0.host("af-killmerge")
    p0.commit_to_origin("af/feature", {"af.txt": "feature\n"}, "af feature")
    fleet = p0.fleet("af-killmerge", [host])
    proc = start(state, "phase0", "merge", "--from", "af/feature", "--check", "sleep 30",
                 "--fleet", str(fleet), "--apply", "--yes")
    wait_for(lambda: host_runs(host, "sleep 30") or proc.poll() is not None, "the check",
             step=0.05)
    host.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    merges = [e for e in audit_log(state) if e["action"] == "merge"]
    assert [e["result"] for e in merges] == ["unknown"], audit_log(state)
    assert "went away" in merges[0]["error"] or "connection" in merges[0]["error"], merges


def test_a_full_disk_gives_the_reason(p0: P0, state: Path) -> None:
    host = p0.host("af-full")
    # The repository on a small disk of its own; then /tmp full too.
    host.sh(f"mkdir -p /root/small && mount -t tmpfs -o size=3m tmpfs /root/small"
            f" && git clone -q {p0.origin} /root/small/repo && cd /root/small/repo"
            " && echo work >wip.txt && mkdir d && echo more >d/more.txt"
            " && dd if=/dev/zero of=/root/small/fill bs=64k 2>/dev/null; true")
    from tests.lab.fleets import ssh_entry, write_fleet

    fleet = write_fleet(p0.base / "af-full.yaml", p0.lab,
                        {"af-full": ssh_entry(host, p0.lab, repo_path="/root/small/repo")})
    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json",
                          state=state).stdout)["hosts"][0]
    assert plan["action"] == "create", plan  # a plan writes its objects under /tmp
    done = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json",
               state=state)
    out = json.loads(done.stdout)["hosts"][0]
    assert done.returncode == 1 and not out["ok"], done.stdout
    assert "No space left on device" in out["message"] or "no space left" in out["message"], out

    host.sh("mount -t tmpfs -o size=1m tmpfs /tmp && dd if=/dev/zero of=/tmp/fill bs=64k"
            " 2>/dev/null; true")
    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json",
                          state=state).stdout)["hosts"][0]
    assert plan["action"] == "refuse" and "no space left" in plan["reason"].lower(), plan


def test_a_push_a_hook_rejects_shows_the_hooks_message(p0: P0, state: Path) -> None:
    host = p0.host("af-hook")
    (host.repo / "wip.txt").write_text("work\n")
    origin = p0.lab.path / "af-hooked-origin.git"  # seen at the same path inside the hosts
    git("clone", "-q", "--bare", str(p0.origin), str(origin), cwd=p0.lab.path)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'push refused: backups go to the backup server (ops #42)' >&2"
                    "\nexit 1\n")
    hook.chmod(0o755)
    git("remote", "set-url", "origin", str(origin), cwd=host.repo)
    git("fetch", "-q", "origin", cwd=host.repo)
    fleet = p0.fleet("af-hook", [host])
    done = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json",
               state=state)
    out = json.loads(done.stdout)["hosts"][0]
    assert done.returncode == 1, done.stdout
    said = "push refused: backups go to the backup server (ops #42)"
    assert said in out["message"], out["message"]
    pushes = [e for e in audit_log(state) if e["action"] == "backup.push"]
    assert said in pushes[-1]["error"] and "pre-receive hook declined" in pushes[-1]["error"]

    host.sh(f"cd {REPO} && git stash -q -u && git switch -q -c af/hooked"
            " && echo f >f.txt && git add f.txt && git commit -qm f")
    merged = cli("phase0", "merge", "--from", "af/hooked", "--fleet", str(fleet), "--apply",
                 "--yes", "--json", state=state)
    assert merged.returncode == 1 and said in json.loads(merged.stdout)["message"], merged.stdout


def test_runs_killed_before_their_cleanup_leave_no_temporary_files(p0: P0, state: Path) -> None:
    host = p0.host("af-tmp")
    (host.repo / "wip.txt").write_text("work\n")
    git("config", "remote.origin.receivepack", "sleep 30; git-receive-pack", cwd=host.repo)
    fleet = p0.fleet("af-tmp", [host])
    proc = start(state, "phase0", "backup", "--fleet", str(fleet), "--apply", "--yes")
    wait_for(lambda: host_runs(host, "sleep 30") or proc.poll() is not None, "the push",
             step=0.05)
    assert "miyabi-backup." in host.sh("ls -a /tmp").stdout
    # The run dies without its cleanup (SIGKILL): the script, its git, the slow receive-pack.
    host.sh("for p in $(ps -eo pid=,args= | awk '/sh -s|sleep 30|git/ && !/awk/ {print $1}');"
            " do kill -9 $p; done", check=False)
    proc.communicate(timeout=120)
    assert "miyabi-backup." in host.sh("ls -a /tmp").stdout  # left behind
    git("config", "--unset", "remote.origin.receivepack", cwd=host.repo)
    plan = cli("phase0", "backup", "--fleet", str(fleet), state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "miyabi-" not in host.sh("ls -a /tmp").stdout


def test_a_sync_plan_says_the_fast_forward_would_be_refused_over_ignored_files(
        p0: P0, state: Path) -> None:
    chosen = p0.host("af-ffa")
    other = p0.host("af-ffb")
    (other.repo / ".git" / "info" / "exclude").write_text("seed.json\n")
    (other.repo / "seed.json").write_text("my local seed\n")
    p0.commit_to_origin("af/seed", {"seed.json": "upstream seed\n"}, "track the seed")
    fleet = p0.fleet("af-ff", [chosen, other])
    before = inventory.take(other.repo)
    plan = cli("phase0", "merge", "--from", "af/seed", "--on", "af-ffa", "--sync", "--fleet",
               str(fleet), state=state)
    assert "sync af-ffb: skip (the fast-forward would write over untracked or ignored files:" \
        " seed.json" in plan.stdout, plan.stdout
    validate("phase0-merge", json.loads(cli("phase0", "merge", "--from", "af/seed", "--on",
                                            "af-ffa", "--sync", "--fleet", str(fleet), "--json",
                                            state=state).stdout))
    done = json.loads(cli("phase0", "merge", "--from", "af/seed", "--on", "af-ffa", "--sync",
                          "--fleet", str(fleet), "--apply", "--yes", "--json",
                          state=state).stdout)
    steps = {s["host"]: s for s in done["sync"]}
    assert steps["af-ffb"]["action"] == "skip" and "seed.json" in steps["af-ffb"]["reason"]
    assert inventory.lost(before) == []
    assert (other.repo / "seed.json").read_text() == "my local seed\n"
