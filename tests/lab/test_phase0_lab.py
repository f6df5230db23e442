"""Phase 0 repairs on lab hosts: backup loses nothing and touches nothing, merge leaves a host as
found or lands on the remote, prune ends only old agent sessions.

These hosts (prefix ``p0-``) push to a private copy of the lab's origin, so the plan-fleet tests
that read the shared origin see it unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import GIT_ENV, Lab, LabHost

REPO = "/root/miyabi-private"


def cli(*args: str, state: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL if stdin is None else None, input=stdin)


def git(*args: str, cwd: Path | str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}).stdout


class P0:
    """A private origin and the p0- hosts wired to it."""

    def __init__(self, lab: Lab, base: Path):
        self.lab, self.base = lab, base
        self.origin = lab.path / "p0-origin.git"
        if not self.origin.exists():
            git("clone", "-q", "--bare", str(lab.origin), str(self.origin), cwd=lab.path)

    def host(self, name: str, branch: str | None = None) -> LabHost:
        host = self.lab.add_host(name, branch=branch)
        git("remote", "set-url", "origin", str(self.origin), cwd=host.repo)
        git("fetch", "-q", "origin", cwd=host.repo)
        git("reset", "-q", "--hard", "origin/main" if branch in (None, "main") else "HEAD",
            cwd=host.repo)
        return host

    def fleet(self, name: str, hosts: list[LabHost]) -> Path:
        return write_fleet(self.base / f"{name}.yaml", self.lab,
                           {h.name: ssh_entry(h, self.lab) for h in hosts})

    def commit_to_origin(self, branch: str, files: dict[str, str], message: str) -> str:
        work = self.base / f"work-{time.monotonic_ns()}"
        git("clone", "-q", str(self.origin), str(work), cwd=self.base)
        exists = git("ls-remote", "--heads", "origin", branch, cwd=work).strip()
        git("checkout", "-q", *([branch] if exists else ["-b", branch]), cwd=work)
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-qm", message, cwd=work)
        git("push", "-q", "origin", branch, cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    def ref(self, ref: str) -> str:
        out = subprocess.run(["git", "rev-parse", "-q", "--verify", ref], cwd=self.origin,
                             capture_output=True, text=True)
        return out.stdout.strip()


@pytest.fixture(scope="module")
def p0(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> P0:
    return P0(lab, tmp_path_factory.mktemp("p0"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def manifest(root: Path, skip: tuple[str, ...] = (".git",)) -> dict[str, bytes]:
    """Every file under root (not .git) with its bytes; symlinks as their target."""
    files = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] in skip or path.is_dir():
            continue
        files[str(rel)] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return files


def repo_state(repo: Path) -> dict[str, str]:
    """What a backup must not change: HEAD, branch, index entries and bytes, status, refs."""
    return {
        "head": git("rev-parse", "HEAD", cwd=repo),
        "branch": git("symbolic-ref", "-q", "HEAD", cwd=repo),
        "ls_files": git("ls-files", "-s", "-z", cwd=repo),
        "index_sha": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "status": git("status", "--porcelain=v2", "-z", "--untracked-files=all", cwd=repo),
        "refs": git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", cwd=repo),
        "objects": git("count-objects", "-v", cwd=repo).split("\n")[0],
    }


# -- backup ------------------------------------------------------------------------------------

ODD_NAMES = ["name with spaces.txt", "quote's \"double\".txt", "new\nline.txt", "ünïcødé-日本.txt",
             "-leading-dash.txt", "$(touch pwned).txt"]


def make_majin_mess(repo: Path) -> None:
    """~300 uncommitted files of every awkward kind (text, binary, odd names), a deleted tracked
    file, a file with a staged and a different unstaged change, and an ignored file."""
    for i in range(290):
        target = repo / "work" / f"dir{i % 10}" / f"file {i}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"uncommitted change {i}\n")
    for i in range(8):
        (repo / "bin").mkdir(exist_ok=True)
        (repo / "bin" / f"blob{i}.bin").write_bytes(os.urandom(4096 + i * 1000) + b"\0\xff")
    for name in ODD_NAMES:
        (repo / "odd").mkdir(exist_ok=True)
        (repo / "odd" / name).write_bytes(f"odd {name!r}\n".encode())
    (repo / "notes" / "todo.txt").unlink()  # a deleted tracked file
    (repo / "src" / "app.py").write_text("print('staged version')\n")
    git("add", "src/app.py", cwd=repo)
    (repo / "src" / "app.py").write_text("print('working tree version')\n")
    (repo / "README.md").write_text("# changed, unstaged\n")
    (repo / ".git" / "info" / "exclude").write_text("*.log\n")
    (repo / "build.log").write_text("ignored: never backed up, never cleaned\n")


def test_backup_plan_apply_idempotent_clean_restore(p0: P0, state: Path) -> None:
    majin = p0.host("p0-majin")
    make_majin_mess(majin.repo)
    fleet = p0.fleet("majin", [majin])
    before = repo_state(majin.repo)
    files_before = manifest(majin.repo)
    today = dt.date.today()
    branch = f"backup/p0-majin-{today:%Y-%m-%d}"

    # Plan only: it says what it would do and changes nothing (not even the object store).
    plan = cli("phase0", "backup", "--fleet", str(fleet), state=state)
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if line.startswith("p0-majin"))
    assert "create" in row and branch in row and "staged versions kept" in row
    assert repo_state(majin.repo) == before
    assert not p0.ref(f"refs/heads/{branch}")

    # --apply without a terminal and without --yes refuses, changing nothing.
    refused = cli("phase0", "backup", "--fleet", str(fleet), "--apply", state=state)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--yes" in refused.stderr
    assert repo_state(majin.repo) == before

    done = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json", state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)["hosts"][0]
    assert out["branch"] == branch and out["created"] and out["pushed"] and out["verified"]
    # Working tree, index and HEAD untouched (byte for byte).
    after = repo_state(majin.repo)
    assert {k: v for k, v in after.items() if k not in ("refs", "objects")} == \
        {k: v for k, v in before.items() if k not in ("refs", "objects")}
    assert manifest(majin.repo) == files_before

    # The remote's branch holds exactly the working tree's files (ignored ones excepted).
    commit = p0.ref(f"refs/heads/{branch}")
    assert commit == out["commit"]
    scratch = p0.base / "scratch-backup"
    git("clone", "-q", "--no-checkout", str(p0.origin), str(scratch), cwd=p0.base)
    git("checkout", "-q", commit, cwd=scratch)
    expected = {k: v for k, v in files_before.items() if k != "build.log"}
    assert manifest(scratch) == expected
    assert len(expected) > 300
    # First parent is HEAD; the second keeps the staged version of src/app.py.
    parents = git("rev-list", "--parents", "-n1", commit, cwd=scratch).split()
    assert parents[1] == before["head"].strip()
    assert git("show", f"{parents[2]}:src/app.py", cwd=scratch) == "print('staged version')\n"

    # A second run creates nothing.
    again = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already backed up" in again.stdout
    mine = "refs/heads/backup/p0-majin-*"
    assert git("for-each-ref", mine, cwd=majin.repo).count("\n") == 1
    assert git("for-each-ref", mine, cwd=p0.origin).count("\n") == 1

    # New work, and the remote is broken: the branch stays local, --clean cleans nothing.
    (majin.repo / "late.txt").write_text("written after the first backup\n")
    files_late = manifest(majin.repo)
    state_late = repo_state(majin.repo)
    git("remote", "set-url", "origin", "/nonexistent/origin.git", cwd=majin.repo)
    broken = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean",
                 state=state)
    assert broken.returncode == 1, broken.stdout
    assert "not verified" in broken.stdout and "nothing was cleaned" in broken.stdout
    assert manifest(majin.repo) == files_late
    assert repo_state(majin.repo)["ls_files"] == state_late["ls_files"]

    # Remote back: the same snapshot (now -2) is pushed, verified, and only then cleaned.
    git("remote", "set-url", "origin", str(p0.origin), cwd=majin.repo)
    cleaned = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean",
                  state=state)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "working tree reset to HEAD" in cleaned.stdout
    second = f"{branch}-2"
    assert p0.ref(f"refs/heads/{second}")
    assert git("status", "--porcelain", cwd=majin.repo) == ""
    assert (majin.repo / "build.log").exists()  # ignored files stay
    assert git("rev-parse", "HEAD", cwd=majin.repo) == before["head"]

    # restore puts every byte back, and the staged version into the index.
    restored = cli("phase0", "restore", "p0-majin", second, "--fleet", str(fleet), state=state)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert manifest(majin.repo) == files_late
    assert git("show", ":src/app.py", cwd=majin.repo) == "print('staged version')\n"
    assert repo_state(majin.repo)["ls_files"] == state_late["ls_files"]
    # ... and a second time is harmless: everything is there already, nothing is written.
    again = cli("phase0", "restore", "p0-majin", second, "--fleet", str(fleet), state=state)
    assert again.returncode == 0 and "were already there" in again.stdout, again.stdout
    assert manifest(majin.repo) == files_late

    log = cli("audit", "--json", state=state)
    actions = [(e["action"], e["result"]) for e in json.loads(log.stdout)["entries"]]
    assert ("backup.create", "ok") in actions and ("backup.push", "failed") in actions
    assert ("backup.clean", "ok") in actions and ("restore", "ok") in actions


def test_backup_refuses_conflicted_index_and_second_apply_is_locked(p0: P0, state: Path) -> None:
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.phase0.locks import host_lock

    host = p0.host("p0-conflicted")
    fleet_file = p0.fleet("conflicted", [host])
    # Another apply holds the host: the second is refused, naming the holder.
    inventory = load_inventory(fleet_file)
    with Fleet(inventory) as fleet, host_lock(fleet.host("p0-conflicted"), REPO, "test holder"):
        (host.repo / "x.txt").write_text("x\n")
        locked = cli("phase0", "backup", "--fleet", str(fleet_file), "--apply", "--yes",
                     state=state)
        assert locked.returncode == 75, locked.stdout + locked.stderr  # EX_TEMPFAIL, as merge
        assert "action=test holder" in locked.stdout and "lock held by" in locked.stdout
    assert not git("for-each-ref", "refs/heads/backup", cwd=host.repo)

    # A conflicted index is refused with the reason; nothing is created.
    git("checkout", "-q", "-b", "side", cwd=host.repo)
    (host.repo / "README.md").write_text("side\n")
    git("commit", "-qam", "side", cwd=host.repo)
    git("checkout", "-q", "main", cwd=host.repo)
    (host.repo / "README.md").write_text("main\n")
    git("commit", "-qam", "main", cwd=host.repo)
    subprocess.run(["git", "merge", "-q", "side"], cwd=host.repo, capture_output=True,
                   env={**os.environ, **GIT_ENV})
    conflicted = cli("phase0", "backup", "--fleet", str(fleet_file), "--apply", "--yes",
                     state=state)
    assert conflicted.returncode == 1
    assert "merge, rebase or cherry-pick is in progress" in conflicted.stdout
    assert not git("for-each-ref", "refs/heads/backup", cwd=host.repo)


# -- merge -------------------------------------------------------------------------------------

def heads(repo: Path) -> dict[str, str]:
    """Branch, HEAD, local branches and status: what 'left exactly as found' compares."""
    return {"branch": git("symbolic-ref", "-q", "HEAD", cwd=repo),
            "head": git("rev-parse", "HEAD", cwd=repo),
            "refs": git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads",
                        cwd=repo),
            "status": git("status", "--porcelain", "--untracked-files=all", cwd=repo)}


def commit_on(host: LabHost, branch: str, files: dict[str, str], message: str) -> None:
    exists = subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/heads/{branch}"],
                            cwd=host.repo, capture_output=True).returncode == 0
    git("checkout", "-q", *([branch] if exists else ["-b", branch, "main"]), cwd=host.repo)
    for rel, text in files.items():
        (host.repo / rel).write_text(text)
    git("add", "-A", cwd=host.repo)
    git("commit", "-qm", message, cwd=host.repo)


def test_merge_conflict_and_failed_check_leave_host_as_found_then_merge_and_sync(
        p0: P0, state: Path) -> None:
    p0.commit_to_origin("main", {"conflict me.txt": "base\n"}, "base for the merge tests")
    mugen = p0.host("p0-mugen")
    mini = p0.host("p0-mini")
    dirty = p0.host("p0-dirtymain")
    commit_on(mugen, "p0/conflict", {"conflict me.txt": "feature side\n"}, "feature edit")
    commit_on(mugen, "p0/clean", {"feature-a.txt": "a\n"}, "feature a")
    commit_on(mugen, "p0/clean", {"feature-b.txt": "b\n"}, "feature b")
    main_before = p0.commit_to_origin("main", {"conflict me.txt": "main side\n"}, "main edit")
    (dirty.repo / "wip.txt").write_text("uncommitted\n")
    fleet = p0.fleet("merge", [mugen, mini, dirty])

    # Plan: mugen is chosen because its p0/clean is 2 commits ahead of origin's (which has none).
    plan = cli("phase0", "merge", "--from", "p0/clean", "--sync", "--fleet", str(fleet),
               state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "host: p0-mugen (its p0/clean is 2 commits ahead of origin's, the most)" in plan.stdout
    assert "sync p0-mini: fast-forward" in plan.stdout
    assert "sync p0-dirtymain: skip (working tree not clean)" in plan.stdout

    # A conflict: exit 1, the conflicting file named, the host exactly as found.
    found = heads(mugen.repo)
    conflict = cli("phase0", "merge", "--from", "p0/conflict", "--fleet", str(fleet), "--apply",
                   "--yes", state=state)
    assert conflict.returncode == 1, conflict.stdout + conflict.stderr
    assert "conflicts in 1 files" in conflict.stdout
    assert "nothing was pushed, and the host's working tree, index and HEAD were not touched" \
        in conflict.stdout
    assert '"conflict me.txt"' in conflict.stdout or "conflict me.txt" in conflict.stdout
    assert heads(mugen.repo) == found
    assert p0.ref("refs/heads/main") == main_before

    # A failing --check undoes the merge the same way; the check's output is shown.
    failed = cli("phase0", "merge", "--from", "p0/clean", "--check", "echo 'boom  here'; exit 3",
                 "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "the check failed (exit 3)" in failed.stdout and "boom  here" in failed.stdout
    assert heads(mugen.repo) == found
    assert p0.ref("refs/heads/main") == main_before

    # A clean merge lands on origin's main; --sync fast-forwards p0-mini, skips the dirty one.
    # (The check reads stdin: it must not eat the rest of the script, which arrives there.)
    mini_before = heads(dirty.repo)
    ok = cli("phase0", "merge", "--from", "p0/clean", "--check", "cat >/dev/null; test -f feature-b.txt",
             "--sync", "--fleet", str(fleet), "--apply", "--yes", "--json", state=state)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = json.loads(ok.stdout)
    merged = p0.ref("refs/heads/main")
    assert doc["merged"] == merged and doc["pushed"]
    parents = git("rev-list", "--parents", "-n1", merged, cwd=p0.origin).split()
    assert parents[1:] == [main_before, git("rev-parse", "p0/clean", cwd=mugen.repo).strip()]
    assert git("rev-parse", "HEAD", cwd=mini.repo).strip() == merged
    assert heads(dirty.repo) == mini_before
    sync = {s["host"]: s for s in doc["sync"]}
    assert sync["p0-mini"]["action"] == "fast-forward" and sync["p0-dirtymain"]["action"] == "skip"
    # mugen went back to the branch it was on, clean.
    assert git("symbolic-ref", "--short", "HEAD", cwd=mugen.repo).strip() == "p0/clean"
    assert git("status", "--porcelain", cwd=mugen.repo) == ""
    entries = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert [(e["host"], e["action"], e["result"]) for e in entries] == [
        ("p0-mugen", "merge", "failed"), ("p0-mugen", "merge", "failed"),
        ("p0-mugen", "merge", "ok"), ("p0-mini", "merge.sync", "ok")]


# -- prune -------------------------------------------------------------------------------------

def test_prune_ends_only_old_sessions_backs_up_dirty_work_never_others(p0: P0, state: Path) -> None:
    mac = p0.host("p0-mac")
    stuck = mac.home / "stuck"  # a repo mid-merge: its work cannot be backed up
    git("init", "-q", "-b", "main", str(stuck), cwd=mac.home)
    (stuck / "f.txt").write_text("committed\n")
    git("add", "-A", cwd=stuck)
    git("commit", "-qm", "init", cwd=stuck)
    (stuck / ".git" / "MERGE_HEAD").write_text(git("rev-parse", "HEAD", cwd=stuck))
    (stuck / "f.txt").write_text("unsaved\n")
    (mac.repo / "session-work.txt").write_text("written by an old session\n")

    old_home = mac.spawn_agent("claude", cwd="/root")
    old_repo = mac.spawn_agent("claude-node", cwd=REPO)
    old_stuck = mac.spawn_agent("codex", cwd="/root/stuck")
    decoys = mac.spawn_decoys()
    bystander = mac.spawn(["sleep", "100000000"])
    # A cut-off instant between the old and the new sessions, not an age: however slowly a busy
    # machine runs the commands below, the new sessions stay on the right side of it.
    cut = (dt.datetime.now() + dt.timedelta(seconds=3)).isoformat(timespec="seconds")
    time.sleep(6)
    new = [mac.spawn_agent("claude", cwd="/root"), mac.spawn_agent("codex-node", cwd="/root")]
    fleet = p0.fleet("prune", [mac])
    everyone = {old_home, old_repo, old_stuck, bystander, *decoys, *new}

    plan = cli("phase0", "prune", "--started-before", cut, "--grace", "2", "--fleet", str(fleet),
               "--json", state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    actions = {s["pid"]: s for s in json.loads(plan.stdout)["hosts"][0]["sessions"]}
    assert set(actions) == {old_home, old_repo, old_stuck, *new}  # decoys are not sessions
    assert {p for p, s in actions.items() if s["action"] == "kill"} == {old_home, old_repo}
    assert actions[old_stuck]["action"] == "skip"
    assert "cannot be backed up" in actions[old_stuck]["reason"]
    assert actions[old_repo]["backup"]["action"] == "create"
    assert everyone <= set(mac.pids())  # the plan changed nothing

    done = cli("phase0", "prune", "--started-before", cut, "--grace", "2", "--fleet", str(fleet),
               "--apply", "--yes", "--json", state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {s["pid"]: s["result"] for s in json.loads(done.stdout)["hosts"][0]["sessions"]}
    assert results[old_home] == "terminated" and results[old_repo] == "terminated"
    alive = set(mac.pids())
    assert old_home not in alive and old_repo not in alive
    assert {old_stuck, bystander, *decoys, *new} <= alive
    # The dirty work of the repo session was pushed before it was killed.
    branch = f"refs/heads/backup/p0-mac-{dt.date.today():%Y-%m-%d}"
    assert git("show", f"{p0.ref(branch)}:session-work.txt", cwd=p0.origin) == \
        "written by an old session\n"
    assert (mac.repo / "session-work.txt").exists()  # backed up, not cleaned


def test_prune_never_signals_a_reused_pid(p0: P0) -> None:
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.phase0.prune import PRUNE_SCRIPT
    from miyabi_ctl.remote import run_script

    host = p0.host("p0-pidreuse", branch=None)
    pid = host.spawn_agent("claude")
    inventory = load_inventory(p0.fleet("pidreuse", [host]))
    with Fleet(inventory) as fleet:
        target = fleet.host("p0-pidreuse")
        ident = run_script(target, PRUNE_SCRIPT, "ident", str(pid)).stdout.split()
        assert ident[0] == f"ident={pid}" and ident[2] == "claude"
        # Same pid, another start time: another process as far as prune is concerned.
        wrong = run_script(target, PRUNE_SCRIPT, "kill", "1", str(pid), str(int(ident[1]) + 1),
                           "claude")
        assert f"result={pid} mismatch" in wrong.stdout
        assert pid in host.pids()
        right = run_script(target, PRUNE_SCRIPT, "kill", "1", str(pid), ident[1], "claude")
        assert f"result={pid} terminated" in right.stdout
    assert pid not in host.pids()


# -- run ---------------------------------------------------------------------------------------

def test_run_backs_up_prunes_and_merges_as_one_plan(p0: P0, state: Path) -> None:
    runa = p0.host("p0-runa")
    runb = p0.host("p0-runb")
    commit_on(runa, "p0/run", {"run-feature.txt": "feature\n"}, "run feature")
    (runa.repo / "run-wip.txt").write_text("unsaved work on runa\n")
    old = runb.spawn_agent("claude", cwd="/root")
    time.sleep(4)
    fleet = p0.fleet("run", [runa, runb])
    args = ["phase0", "run", "--clean", "--older-than", "3s", "--grace", "1", "--from", "p0/run",
            "--sync", "--fleet", str(fleet)]
    main_before = p0.ref("refs/heads/main")

    plan = cli(*args, "--json", state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    assert [b["action"] for b in doc["backup"]] == ["create", "clean"]
    assert doc["merge"]["action"] == "merge" and doc["merge"]["host"] == "p0-runa"
    assert "p0-runa has 1 uncommitted changes: they are not part of the merge (only commits " \
        "are) and its working tree is not touched" not in doc["merge"]["notes"]  # cleaned first
    assert [s["pid"] for s in doc["prune"][1]["sessions"] if s["action"] == "kill"] == [old]
    assert (runa.repo / "run-wip.txt").exists() and old in runb.pids()
    assert not (state / "audit.jsonl").exists()

    done = cli(*args, "--apply", "--yes", "--json", state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    backup_branch = out["backup"][0]["branch"]
    assert git("show", f"{backup_branch}:run-wip.txt", cwd=p0.origin) == "unsaved work on runa\n"
    assert not (runa.repo / "run-wip.txt").exists()  # cleaned after the verified push
    assert old not in runb.pids()
    merged = p0.ref("refs/heads/main")
    assert merged != main_before and out["merge"]["merged"] == merged
    assert git("rev-parse", "HEAD", cwd=runb.repo).strip() == merged


# -- fixes: each test below failed before its fix (hosts fx-) ------------------------------------

def test_unwritable_audit_log_refuses_the_apply_before_any_change(p0: P0, state: Path) -> None:
    host = p0.host("fx-audit")
    (host.repo / "wip.txt").write_text("work an unaudited backup must not touch\n")
    fleet = p0.fleet("fx-audit", [host])
    (state / "audit.jsonl").mkdir()  # cannot be appended to, even by root
    before = repo_state(host.repo)
    done = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean",
               state=state)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("miyabi-ctl: error: cannot write the audit log (")
    assert "nothing was changed" in done.stderr
    assert repo_state(host.repo) == before
    assert not p0.ref("refs/heads/backup/fx-audit-" + f"{dt.date.today():%Y-%m-%d}")
    assert (host.repo / "wip.txt").exists()


def test_backup_whose_local_branch_was_deleted_is_recreated_from_the_remote_tracking_one(
        p0: P0, state: Path) -> None:
    host = p0.host("fx-gone")
    (host.repo / "wip.txt").write_text("saved once, local branch then deleted\n")
    fleet = p0.fleet("fx-gone", [host])
    first = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json",
                state=state)
    assert first.returncode == 0, first.stdout + first.stderr
    branch = json.loads(first.stdout)["hosts"][0]["branch"]
    commit = p0.ref(f"refs/heads/{branch}")
    git("branch", "-q", "-D", branch, cwd=host.repo)  # origin/backup/... is still there
    assert git("rev-parse", f"refs/remotes/origin/{branch}", cwd=host.repo).strip() == commit

    plan = cli("phase0", "backup", "--fleet", str(fleet), "--json", state=state)
    planned = json.loads(plan.stdout)["hosts"][0]
    assert (planned["action"], planned["branch"]) == ("exists", branch)
    assert planned["notes"] == [f"the local branch {branch} was deleted: it is recreated from "
                                f"origin/{branch}"]
    again = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json",
                state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    out = json.loads(again.stdout)["hosts"][0]
    assert out["verified"] and out["branch"] == branch and not out["created"]
    assert out["message"].endswith("(its deleted local branch recreated)")
    assert git("rev-parse", f"refs/heads/{branch}", cwd=host.repo).strip() == commit
    assert p0.ref(f"refs/heads/{branch}") == commit
    assert ("backup.recreate", "ok") in [(e["action"], e["result"]) for e in
                                         json.loads(cli("audit", "--json", state=state).stdout)["entries"]]


def worktrees(host: LabHost) -> list[str]:
    """The worktrees the host's repository knows, as the host sees them."""
    out = host.sh(f"git -C {REPO} worktree list --porcelain").stdout
    return [line[len("worktree "):] for line in out.splitlines() if line.startswith("worktree ")]


def test_merge_runs_in_a_temporary_worktree_and_never_touches_the_agents_tree(
        p0: P0, state: Path) -> None:
    host = p0.host("fx-merge")
    commit_on(host, "fx/conflict", {"fx-shared.txt": "feature side\n"}, "fx conflict side")
    commit_on(host, "fx/feat", {"fx-feature.txt": "feature\n"}, "fx feature")
    p0.commit_to_origin("main", {"fx-shared.txt": "main side\n"}, "fx main side")
    # The agents' tree: on fx/feat, with an untracked file that `git status` is told to hide.
    git("config", "status.showUntrackedFiles", "no", cwd=host.repo)
    (host.repo / "agent-scratch.txt").write_text("an agent's untracked work\n")
    fleet = p0.fleet("fx-merge", [host])
    found = heads(host.repo)

    def live() -> dict[str, object]:
        return {**heads(host.repo), "files": manifest(host.repo)}

    # 1. A conflict: listed, nothing pushed, the untracked file (and everything else) kept.
    before = live()
    main_before = p0.ref("refs/heads/main")
    conflict = cli("phase0", "merge", "--from", "fx/conflict", "--fleet", str(fleet), "--apply",
                   "--yes", "--json", state=state)
    assert conflict.returncode == 1, conflict.stdout + conflict.stderr
    doc = json.loads(conflict.stdout)
    assert doc["conflicts"] == ["fx-shared.txt"] and "conflicts in 1 files" in doc["message"]
    assert live() == before and (host.repo / "agent-scratch.txt").exists()
    assert p0.ref("refs/heads/main") == main_before
    assert worktrees(host) == [REPO]

    # 2. A failing check while an agent writes in its tree: the agent's writes stay; the tree
    #    stayed on its branch while the check ran.
    check = (f"git -C {REPO} symbolic-ref --short HEAD >/root/branch-during-check; "
             f"echo 'agent wrote this meanwhile' >>{REPO}/agent-notes.txt; "
             f"echo 'edited meanwhile' >>{REPO}/README.md; exit 4")
    failed = cli("phase0", "merge", "--from", "fx/feat", "--check", check, "--fleet", str(fleet),
                 "--apply", "--yes", state=state)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "the check failed (exit 4)" in failed.stdout
    assert (host.home / "branch-during-check").read_text() == "fx/feat\n"
    assert (host.repo / "agent-notes.txt").read_text() == "agent wrote this meanwhile\n"
    assert (host.repo / "README.md").read_text().endswith("edited meanwhile\n")
    assert (host.repo / "agent-scratch.txt").exists()
    assert heads(host.repo)["head"] == found["head"] and heads(host.repo)["branch"] == found["branch"]
    assert p0.ref("refs/heads/main") == main_before and worktrees(host) == [REPO]

    # 3. Success, with main checked out in another worktree: the check's files stay in the
    #    temporary worktree, the merge is pushed, that worktree's main is left with a note.
    host.sh(f"git -C {REPO} worktree add -q /root/main-wt main")
    before = live()
    ok = cli("phase0", "merge", "--from", "fx/feat", "--check",
             "test -f fx-feature.txt && test \"$MIYABI_REPO\" = /root/miyabi-private && "
             "echo generated >check-artifact.txt && git commit -qm 'check commit' --allow-empty",
             "--fleet", str(fleet), "--apply", "--yes", "--json", state=state)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = json.loads(ok.stdout)
    merged = p0.ref("refs/heads/main")
    assert doc["merged"] == merged and doc["pushed"] and doc["local"] is None
    assert git("log", "-1", "--format=%s", merged, cwd=p0.origin).strip() == \
        "Merge branch 'fx/feat' into main"  # the check's own commit was not pushed
    assert doc["notes"] == ["the local main is checked out in /root/main-wt: not updated "
                            "(fast-forward it there)"]
    assert live() == before  # no check-artifact.txt, same branch, same HEAD, same refs
    assert worktrees(host) == [REPO, "/root/main-wt"]

    # 4. --no-push keeps the merge on the local main, which must be movable.
    p0.commit_to_origin("main", {"fx-more.txt": "more\n"}, "fx more on main")
    commit_on(host, "fx/feat", {"fx-feature-2.txt": "two\n"}, "fx feature 2")
    git("checkout", "-q", "fx/feat", cwd=host.repo)
    refused = cli("phase0", "merge", "--from", "fx/feat", "--no-push", "--fleet", str(fleet),
                  "--apply", "--yes", state=state)
    assert refused.returncode == 1
    assert "--no-push keeps the merge on the local main, but main is checked out in " \
           "/root/main-wt" in refused.stdout
    host.sh(f"git -C {REPO} worktree remove /root/main-wt")
    before = live()
    origin_main = p0.ref("refs/heads/main")
    kept = cli("phase0", "merge", "--from", "fx/feat", "--no-push", "--fleet", str(fleet),
               "--apply", "--yes", "--json", state=state)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    doc = json.loads(kept.stdout)
    assert (doc["pushed"], doc["local"]) == (False, "updated")
    assert p0.ref("refs/heads/main") == origin_main
    assert git("rev-parse", "refs/heads/main", cwd=host.repo).strip() == doc["merged"]
    after = live()
    assert {k: v for k, v in after.items() if k != "refs"} == \
        {k: v for k, v in before.items() if k != "refs"}
    assert worktrees(host) == [REPO]


def test_merge_fast_forwards_a_clean_tree_on_into_and_leaves_a_dirty_one(p0: P0, state: Path) -> None:
    host = p0.host("fx-onmain")
    p0.commit_to_origin("fx/onmain", {"fx-onmain.txt": "x\n"}, "fx onmain feature")
    fleet = p0.fleet("fx-onmain", [host])
    (host.repo / "wip.txt").write_text("uncommitted, on main\n")
    dirty = cli("phase0", "merge", "--from", "fx/onmain", "--fleet", str(fleet), "--apply", "--yes",
                "--json", state=state)
    assert dirty.returncode == 0, dirty.stdout + dirty.stderr
    doc = json.loads(dirty.stdout)
    assert doc["pushed"] and doc["local"] is None
    assert doc["notes"][0].startswith("the working tree is on main with uncommitted changes: "
                                      "main not fast-forwarded")
    assert git("rev-parse", "HEAD", cwd=host.repo).strip() != doc["merged"]
    assert (host.repo / "wip.txt").read_text() == "uncommitted, on main\n"
    (host.repo / "wip.txt").unlink()
    p0.commit_to_origin("fx/onmain", {"fx-onmain-2.txt": "y\n"}, "fx onmain feature 2")
    clean = cli("phase0", "merge", "--from", "fx/onmain", "--fleet", str(fleet), "--apply", "--yes",
                "--json", state=state)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    doc = json.loads(clean.stdout)
    assert doc["local"] == "fast-forwarded" and doc["notes"] == []
    assert git("rev-parse", "HEAD", cwd=host.repo).strip() == doc["merged"] == p0.ref("refs/heads/main")
    assert git("status", "--porcelain", cwd=host.repo) == "" and worktrees(host) == [REPO]


def test_merge_waits_for_git_as_long_as_its_scripts_allow(p0: P0, state: Path) -> None:
    import yaml

    chosen = p0.host("fx-slowplan")
    slow = p0.host("fx-slowsync")
    commit_on(chosen, "fx/slow", {"fx-slow.txt": "slow\n"}, "fx slow feature")
    # Every ls-remote and fetch of fx-slowsync takes 10 s: longer than the fleet's own deadline
    # (connect 3 s + command 4 s + 1), well within the merge scripts' 300 s.
    git("config", "remote.origin.uploadpack", "sleep 10; git-upload-pack", cwd=slow.repo)
    fleet = p0.fleet("fx-slow", [chosen, slow])
    doc = yaml.safe_load(fleet.read_text())
    doc["ssh"]["command_timeout"] = 4
    fleet.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = cli("phase0", "merge", "--from", "fx/slow", "--sync", "--fleet", str(fleet), state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "sync fx-slowsync: fast-forward (main is checked out and clean)" in plan.stdout
    done = cli("phase0", "merge", "--from", "fx/slow", "--sync", "--fleet", str(fleet), "--apply",
               "--yes", "--json", state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert [(s["host"], s["action"], s["ok"]) for s in out["sync"]] == [
        ("fx-slowsync", "fast-forward", True)]
    assert git("rev-parse", "HEAD", cwd=slow.repo).strip() == out["merged"] == p0.ref("refs/heads/main")


def test_run_reports_backups_done_when_the_merge_host_is_locked(p0: P0, state: Path) -> None:
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.phase0.locks import host_lock

    saved = p0.host("fx-runsave")
    locked = p0.host("fx-runlocked")
    (saved.repo / "fx-run-wip.txt").write_text("work the run must save\n")
    commit_on(locked, "fx/run", {"fx-run.txt": "run\n"}, "fx run feature")
    fleet = p0.fleet("fx-run", [saved, locked])
    with Fleet(load_inventory(fleet)) as held, \
            host_lock(held.host("fx-runlocked"), REPO, "fx holder"):
        done = cli("phase0", "run", "--from", "fx/run", "--fleet", str(fleet), "--apply", "--yes",
                   "--json", state=state)
    assert done.returncode == 1, done.stdout + done.stderr
    out = json.loads(done.stdout)
    backup = next(b for b in out["backup"] if b["plan"]["host"] == "fx-runsave")
    assert backup["ok"] and backup["verified"] and backup["created"]
    assert out["merge"]["ok"] is False
    assert out["merge"]["message"].startswith("not merged: fx-runlocked: another apply is running "
                                              "there (lock held by ")
    assert "action=fx holder" in out["merge"]["message"]
    assert p0.ref(f"refs/heads/{backup['branch']}")


def test_option_like_remote_and_branch_names_never_reach_git(p0: P0, state: Path) -> None:
    import yaml

    host = p0.host("fx-inject")
    (host.repo / "wip.txt").write_text("work\n")
    fleet = p0.fleet("fx-inject", [host])
    doc = yaml.safe_load(fleet.read_text())
    doc["repo"]["remote"] = "--receive-pack=touch /root/pwned; git-receive-pack"
    evil = p0.base / "fx-inject-evil.yaml"
    evil.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = cli("phase0", "backup", "--fleet", str(evil), "--apply", "--yes", state=state)
    assert done.returncode == 2, done.stdout + done.stderr
    # Refused when fleet.yaml is read, with its line, before any host is contacted.
    assert done.stderr == (f"miyabi-ctl: error: {evil}:4: key 'remote': '--receive-pack=touch "
                           "/root/pwned; git-receive-pack' is not a usable remote name: it starts "
                           "with '-' (git would read it as an option)\n")
    assert not (host.home / "pwned").exists()
    assert not git("for-each-ref", "refs/heads/backup", cwd=host.repo)

    into = cli("phase0", "merge", "--from", "fx/x", "--into=--upload-pack=touch /root/pwned",
               "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert into.returncode == 2, into.stdout + into.stderr
    assert "--into '--upload-pack=touch /root/pwned' is not a usable branch name" in into.stderr
    assert not (host.home / "pwned").exists()

    # The scripts themselves put the remote after `--`: even a value that slipped past the
    # Python checks is a (refused) repository name, not an option.
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.phase0.merge import MERGE_SCRIPT
    from miyabi_ctl.remote import run_script

    with Fleet(load_inventory(fleet)) as raw:
        facts = run_script(raw.host("fx-inject"), MERGE_SCRIPT, "facts", REPO,
                           "--upload-pack=touch /root/pwned; git-upload-pack", "fx/x", "main", "1",
                           timeout=60)
    assert facts.exit_code == 1 and "error=git fetch --upload-pack=" in facts.stdout
    assert not (host.home / "pwned").exists()


def test_clean_is_refused_while_an_agent_session_works_in_the_repo(p0: P0, state: Path) -> None:
    host = p0.host("fx-cleanrace")
    (host.repo / "fx-wip.txt").write_text("an agent is still writing here\n")
    fleet = p0.fleet("fx-cleanrace", [host])
    agent = host.spawn_agent("claude", cwd=f"{REPO}/src")
    elsewhere = host.spawn_agent("codex", cwd="/root")

    busy = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean", "--json",
               state=state)
    assert busy.returncode == 1, busy.stdout + busy.stderr
    out = json.loads(busy.stdout)["hosts"][0]
    assert out["verified"] and not out["cleaned"]  # saved, not cleaned
    assert out["message"].endswith(f"; not cleaned: an agent session (pid {agent}) works in "
                                   f"{REPO}/src: not cleaning (end it first, e.g. with phase0 prune)")
    assert (host.repo / "fx-wip.txt").exists()

    # Once that session is gone, a session elsewhere on the host does not stop the clean.
    host.sh(f"kill {agent}")
    deadline = time.monotonic() + 10
    while agent in host.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    cleaned = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--clean",
                  "--json", state=state)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert json.loads(cleaned.stdout)["hosts"][0]["cleaned"]
    assert not (host.repo / "fx-wip.txt").exists() and elsewhere in host.pids()
