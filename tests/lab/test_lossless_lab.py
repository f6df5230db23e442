"""Issue 9's loss paths, each proved on a byte-exact inventory (tests/lab/inventory.py): every
path, the index, HEAD, refs and stash before a repair are, after it, on disk or in the verified
backup; where that cannot be proved the repair refuses and names the paths."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import inventory
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab
from tests.lab.test_dispatch_lab import install_fake_agent
from tests.lab.test_phase0_lab import P0, cli, git

REPO = "/root/miyabi-private"


class LosslessP0(P0):
    """P0 with an origin of its own: these tests merge into its main."""

    def __init__(self, lab: Lab, base: Path):
        self.lab, self.base = lab, base
        self.origin = lab.path / "lossless-origin.git"
        if not self.origin.exists():
            git("clone", "-q", "--bare", str(lab.origin), str(self.origin), cwd=lab.path)


@pytest.fixture(scope="module")
def p0(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> P0:
    return LosslessP0(lab, tmp_path_factory.mktemp("lossless"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def backup_json(fleet: Path, state: Path, *more: str) -> dict:
    proc = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", "--json", *more,
               state=state)
    return {"rc": proc.returncode, **json.loads(proc.stdout)["hosts"][0]}


def test_clean_keeps_ignored_files_whose_ignore_rules_are_uncommitted(p0: P0, state: Path) -> None:
    host = p0.host("ll-rules")
    repo = host.repo
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "conf").write_text("tracked file\n")
    git("add", ".gitignore", "conf", cwd=repo)
    git("commit", "-qm", "ignore logs", cwd=repo)
    # 1. a tracked .gitignore edited to add secrets/
    (repo / ".gitignore").write_text("*.log\nsecrets/\n")
    (repo / "secrets").mkdir()
    (repo / "secrets" / "a.key").write_text("key a\n")
    (repo / "secrets" / "b.key").write_text("key b\n")
    # 2. a staged new data/.gitignore
    (repo / "data").mkdir()
    (repo / "data" / ".gitignore").write_text("seed.json\ncache/\n")
    (repo / "data" / "seed.json").write_text('{"seed": 1}\n')
    (repo / "data" / "cache").mkdir()
    (repo / "data" / "cache" / "c.bin").write_bytes(b"\0cache")
    git("add", "data/.gitignore", cwd=repo)
    # 3. a tracked file replaced by a directory holding an ignored file
    (repo / "conf").unlink()
    (repo / "conf").mkdir()
    (repo / "conf" / "run.log").write_text("only here\n")
    fleet = p0.fleet("ll-rules", [host])
    before = inventory.take(repo)

    refused = backup_json(fleet, state, "--clean")
    assert refused["rc"] == 1 and refused["verified"] and not refused["cleaned"]
    assert "conf/run.log" in refused["message"], refused["message"]
    backups = [inventory.backup_files(p0.origin, refused["commit"])]
    assert inventory.lost(before, backups=backups) == []

    assert "conf/ " not in refused["message"]  # the files in it are named
    (repo / "conf" / "run.log").rename(repo / "run.log")  # the operator keeps it elsewhere
    (repo / "conf").rmdir()  # an empty directory in the way is named too: git cannot keep it
    before = inventory.take(repo)
    done = backup_json(fleet, state, "--clean")
    assert done["rc"] == 0 and done["cleaned"], done["message"]
    backups.append(inventory.backup_files(p0.origin, done["commit"]))
    assert inventory.lost(before, backups=backups) == []
    # The files the old rules do not ignore are simply left on disk (untracked now).
    assert (repo / "secrets" / "a.key").read_text() == "key a\n"
    assert (repo / "data" / "seed.json").exists() and (repo / "conf").read_text() == "tracked file\n"


def test_backup_holds_skip_worktree_edits_and_working_tree_bytes_the_plan_names_the_rest(
        p0: P0, state: Path) -> None:
    host = p0.host("ll-bytes")
    repo = host.repo
    (repo / ".gitattributes").write_text("*.crlf text eol=crlf\n*.bin filter=lfs -text\n")
    (repo / "hidden.cfg").write_text("committed\n")
    (repo / "quiet.cfg").write_text("committed\n")
    (repo / "t.crlf").write_bytes(b"a\r\nb\r\n")
    git("add", ".gitattributes", "hidden.cfg", "quiet.cfg", "t.crlf", cwd=repo)
    git("commit", "-qm", "configs", cwd=repo)
    git("config", "core.autocrlf", "true", cwd=repo)
    git("update-index", "--skip-worktree", "hidden.cfg", cwd=repo)
    git("update-index", "--assume-unchanged", "quiet.cfg", cwd=repo)
    (repo / "hidden.cfg").write_text("local edit under skip-worktree\n")
    (repo / "quiet.cfg").write_text("local edit under assume-unchanged\n")
    (repo / "mixed.txt").write_bytes(b"m1\r\nm2\n")
    (repo / "model.bin").write_bytes(b"\0lfs content, not a pointer\n")
    (repo / "t.crlf").write_bytes(b"a\nb\r\nc\n")
    (repo / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (repo / "key.pem").chmod(0o600)
    (repo / "empty").mkdir()
    import os
    os.mkfifo(repo / "pipe")
    fleet = p0.fleet("ll-bytes", [host])
    before = inventory.take(repo)

    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json", state=state)
                      .stdout)["hosts"][0]
    notes = " ".join(plan["notes"])
    assert "key.pem" in notes and "0600" in notes, notes
    assert "pipe" in notes and "empty" in notes, notes
    assert "1 files tracked by git-lfs are saved as their bytes" in notes, notes

    done = backup_json(fleet, state, "--clean")
    assert done["rc"] == 0 and done["cleaned"], done["message"]
    backup = inventory.backup_files(p0.origin, done["commit"])
    assert backup["mixed.txt"][1] == b"m1\r\nm2\n"
    assert backup["model.bin"][1] == b"\0lfs content, not a pointer\n"
    assert backup["t.crlf"][1] == b"a\nb\r\nc\n"
    assert backup["hidden.cfg"][1] == b"local edit under skip-worktree\n"
    assert backup["quiet.cfg"][1] == b"local edit under assume-unchanged\n"
    assert inventory.lost(before, backups=[backup]) == []
    assert (repo / "pipe").exists() and (repo / "empty").is_dir()  # never removed by a clean

    restored = cli("phase0", "restore", "ll-bytes", done["branch"], "--fleet", str(fleet),
                   state=state)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (repo / "mixed.txt").read_bytes() == b"m1\r\nm2\n"
    assert (repo / "t.crlf").read_bytes() == b"a\nb\r\nc\n"
    assert (repo / "hidden.cfg").read_text() == "local edit under skip-worktree\n"
    assert (repo / "key.pem").stat().st_mode & 0o777 == 0o600  # the mode came back too


def test_fast_forwards_never_overwrite_ignored_files(p0: P0, state: Path) -> None:
    chosen = p0.host("ll-ffa")
    other = p0.host("ll-ffb")
    for host in (chosen, other):
        (host.repo / ".git" / "info" / "exclude").write_text("data/\n.env.ff\n")
    (chosen.repo / "data").mkdir()
    (chosen.repo / "data" / "seed.json").write_text("my local seed\n")
    (other.repo / ".env.ff").write_text("TOKEN=mine\n")
    p0.commit_to_origin("ll/ff", {"data/seed.json": "upstream seed\n", ".env.ff": "TOKEN=x\n"},
                        "track seed and env")
    fleet = p0.fleet("ll-ff", [chosen, other])
    befores = {h.name: inventory.take(h.repo) for h in (chosen, other)}

    proc = cli("phase0", "merge", "--from", "ll/ff", "--on", "ll-ffa", "--sync", "--fleet",
               str(fleet), "--apply", "--yes", "--json", state=state)
    doc = json.loads(proc.stdout)
    assert doc["pushed"], proc.stdout
    assert doc["local"] is None and "data/seed.json" in " ".join(doc["notes"]), doc
    text = json.dumps(doc)
    assert ".env.ff" in text, text
    for host in (chosen, other):
        assert inventory.lost(befores[host.name]) == []
    assert (chosen.repo / "data" / "seed.json").read_text() == "my local seed\n"
    assert (other.repo / ".env.ff").read_text() == "TOKEN=mine\n"
    # Merged already: said so, not "merged" again.
    again = cli("phase0", "merge", "--from", "ll/ff", "--on", "ll-ffa", "--fleet", str(fleet),
                "--json", state=state)
    doc = json.loads(again.stdout)
    doc = doc.get("plan", doc)
    assert (doc["action"], doc["reason"]) == (
        "nothing", "origin/ll/ff is already merged into origin/main"), doc
    # An --apply its plan refuses changes nothing, and is in the audit log.
    refused = cli("phase0", "merge", "--from", "ll/none", "--on", "ll-ffa", "--fleet", str(fleet),
                  "--apply", "--yes", state=state)
    assert refused.returncode == 1
    entries = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "merge" and entries[-1]["result"] == "refused"
    assert "no ll/none branch" in entries[-1]["error"]


# -- recall ------------------------------------------------------------------------------------

def recall_host(lab: Lab, tmp_path: Path, name: str, issue: int) -> tuple:
    host = lab.add_host(name, load=(0.2, 0.2, 0.2), cpus=2)
    install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [{"number": issue, "title": "lossless"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {name: ssh_entry(host, lab, max_sessions=2)},
                        extra=f"backlog:\n  file: {backlog}\n")
    assert cli("dispatch", "--apply", "--yes", "--fleet", str(fleet),
               state=tmp_path).returncode == 0
    return host, fleet, f"/root/.miyabi/worktrees/issue-{issue}"


def test_recall_keeps_detached_head_commits_on_a_ref(lab: Lab, tmp_path: Path) -> None:
    host, fleet, wt = recall_host(lab, tmp_path, "ll-detached", 9301)
    host.sh(f"cd {wt} && git switch -q --detach && echo x >d.txt && git add d.txt"
            " && git -c user.name=a -c user.email=a@b commit -qm detached")
    before = inventory.take(host.home / wt.removeprefix("/root/"),
                            git_dir=host.repo / ".git" / "worktrees" / "issue-9301")
    proc = cli("recall", "9301", "--apply", "--yes", "--fleet", str(fleet), state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "detached" in proc.stdout, proc.stdout
    assert inventory.lost(before, refs_repo=host.repo) == []


def test_recall_stops_every_process_in_the_worktree_and_backs_up_what_they_wrote(
        lab: Lab, tmp_path: Path) -> None:
    host, fleet, wt = recall_host(lab, tmp_path, "ll-writer", 9302)
    writer = host.spawn(["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >>log.txt;"
                         " echo $i >/root/last-written; sleep 0.02; done"], cwd=wt)
    second = host.spawn_agent("claude", cwd=f"{wt}")
    time.sleep(0.5)
    proc = cli("recall", "9302", "--apply", "--yes", "--fleet", str(fleet), state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert writer not in host.pids() and second not in host.pids()
    last = (host.home / "last-written").read_text()
    branch = re.search(r"origin/(backup/issue-9302-[0-9-]+)", proc.stdout)
    assert branch, proc.stdout
    saved = host.sh(f"git --git-dir {lab.origin} show {branch.group(1)}:log.txt", check=False)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.splitlines()[-1] == last.strip()


def test_a_clean_the_controller_never_recorded_is_in_the_audit_log_after_the_next_run(
        p0: P0, state: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    host = p0.host("ll-journal")
    for i in range(50):
        (host.repo / f"wip-{i}.txt").write_text(f"work {i}\n")
    fleet = p0.fleet("ll-journal", [host])
    journal = host.repo / ".git" / "miyabi-ctl.journal"
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "miyabi_ctl", "phase0", "backup", "--fleet",
                             str(fleet), "--apply", "--yes", "--clean"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)  # the controller crashes as the host starts cleaning
    proc.wait()
    audit_log = state / "audit.jsonl"
    actions = [json.loads(line)["action"] for line in audit_log.read_text().splitlines()]
    assert "backup.clean" not in actions  # it died before recording the clean
    deadline = time.monotonic() + 10
    while "done" not in journal.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the host finishes the clean on its own

    again = cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    cleans = [e for e in map(json.loads, audit_log.read_text().splitlines())
              if e["action"] == "backup.clean"]
    assert [(e["result"], e["recovered"]) for e in cleans] == [("ok", True)], cleans
    assert cleans[0]["backup"].startswith("backup/ll-journal-")
    # Reconciled once: a third run adds nothing.
    cli("phase0", "backup", "--fleet", str(fleet), "--apply", "--yes", state=state)
    assert sum(json.loads(line)["action"] == "backup.clean"
               for line in audit_log.read_text().splitlines()) == 1


def test_backup_names_are_checked_against_the_remote_itself(p0: P0, state: Path) -> None:
    host = p0.host("ll-names")
    today = time.strftime("%Y-%m-%d")
    # Another clone took today's name on the remote; this clone never fetched it.
    taken = p0.commit_to_origin(f"backup/ll-names-{today}", {"other.txt": "x\n"}, "other backup")
    git("update-ref", "-d", f"refs/remotes/origin/backup/ll-names-{today}", cwd=host.repo)
    (host.repo / "wip.txt").write_text("work\n")
    fleet = p0.fleet("ll-names", [host])
    done = backup_json(fleet, state)
    assert done["rc"] == 0 and done["branch"] == f"backup/ll-names-{today}-2", done
    assert p0.ref(f"refs/heads/backup/ll-names-{today}") == taken


def test_plan_lists_what_a_backup_publishes_flags_secrets_and_exclude_keeps_them_home(
        p0: P0, state: Path) -> None:
    host = p0.host("ll-secrets")
    repo = host.repo
    (repo / "config").mkdir()
    (repo / "config" / ".env.local").write_text("A=committed\n")
    git("add", "config/.env.local", cwd=repo)
    git("commit", "-qm", "env template", cwd=repo)
    (repo / ".env").write_text("TOKEN=s3cret\n")
    (repo / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (repo / "config" / ".env.local").write_text("A=my local secret\n")
    (repo / "notes.md").write_text("ordinary work\n")
    fleet = p0.fleet("ll-secrets", [host])

    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json", state=state)
                      .stdout)["hosts"][0]
    published = {p["path"]: p["flags"] for p in plan["publish"]}
    assert published == {".env": ["secret-like name"], "deploy.pem": ["secret-like name"],
                         "config/.env.local": ["secret-like name"], "notes.md": []}
    assert any("--exclude PATTERN" in n and ".env" in n for n in plan["notes"]), plan["notes"]

    excl = ("--exclude", "**/.env*", "--exclude", "*.pem")
    before = inventory.take(repo)
    done = backup_json(fleet, state, "--clean", *excl)
    assert done["rc"] == 0 and done["cleaned"], done
    backup = inventory.backup_files(p0.origin, done["commit"])
    assert "notes.md" in backup and ".env" not in backup and "deploy.pem" not in backup
    assert backup["config/.env.local"][1] == b"A=committed\n"  # HEAD's, not the secret
    assert inventory.lost(before, backups=[backup]) == []
    # The excluded files are on disk as they were, the local secret change too; the rest went.
    assert (repo / ".env").read_text() == "TOKEN=s3cret\n" and (repo / "deploy.pem").exists()
    assert (repo / "config" / ".env.local").read_text() == "A=my local secret\n"
    assert not (repo / "notes.md").exists()


def test_stale_index_lock_and_a_nested_repo_without_commits_are_named(p0: P0, state: Path) -> None:
    host = p0.host("ll-stale")
    repo = host.repo
    (repo / "wip.txt").write_text("work\n")
    (repo / ".git" / "index.lock").write_text("")  # a git that crashed
    fleet = p0.fleet("ll-stale", [host])
    locked = backup_json(fleet, state, "--clean")
    assert locked["rc"] == 1 and locked["verified"] and not locked["cleaned"], locked
    assert locked["message"].startswith("backed up and verified on origin/backup/ll-stale-")
    assert ".git/index.lock exists: another git is running here, or one crashed" in \
        locked["message"], locked["message"]
    assert (repo / "wip.txt").exists()

    (repo / ".git" / "index.lock").unlink()
    git("init", "-q", str(repo / "vendor" / "fresh"), cwd=repo)
    (repo / "vendor" / "fresh" / "a.txt").write_text("not committed\n")
    plan = json.loads(cli("phase0", "backup", "--fleet", str(fleet), "--json", state=state)
                      .stdout)["hosts"][0]
    assert plan["action"] == "refuse" and "vendor/fresh" in plan["reason"], plan
    assert "has no commit yet" in plan["reason"], plan


def test_a_step_that_times_out_ends_its_remote_process_group(p0: P0, state: Path) -> None:
    from miyabi_ctl.errors import CommandTimeout
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.remote import run_script

    host = p0.host("ll-timeout")
    fleet_file = p0.fleet("ll-timeout", [host])
    # A "push" that takes too long: a child process, then a write at its end.
    script = "sleep 20 & sleep 20; echo late >/root/too-late"
    with Fleet(load_inventory(fleet_file)) as fleet, pytest.raises(CommandTimeout):
        run_script(fleet.host("ll-timeout"), script, timeout=2, end_on_timeout=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "sleep 20" in host.sh("ps -eo args").stdout:
        time.sleep(0.2)
    assert "sleep 20" not in host.sh("ps -eo args").stdout  # the whole group ended
    time.sleep(1)
    assert not (host.home / "too-late").exists()


def test_a_host_dying_mid_push_is_logged_with_an_error(p0: P0, state: Path) -> None:
    import os
    import subprocess
    import sys

    host = p0.host("ll-dies")
    (host.repo / "wip.txt").write_text("work\n")
    git("config", "remote.origin.receivepack", "sleep 30; git-receive-pack", cwd=host.repo)
    fleet = p0.fleet("ll-dies", [host])
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "miyabi_ctl", "phase0", "backup", "--fleet",
                             str(fleet), "--apply", "--yes"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "sleep 30" not in host.sh("ps -eo args").stdout:
        time.sleep(0.1)
    host.kill()  # mid-push
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    entries = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    last = entries[-1]
    # Whether the script's last words reached the controller or not, the push is not "ok" and
    # says why.
    assert (last["action"], last["result"]) in {("backup", "unknown"), ("backup.push", "unknown")}
    assert "went away" in last["error"] or "connection" in last["error"], last


def test_a_killed_merges_worktree_is_dropped_and_a_moved_worktree_kept(p0: P0, state: Path) -> None:
    host = p0.host("ll-stalewt")
    # A merge killed with SIGKILL left its temporary worktree registered; someone's worktree
    # lives on a disk that is not mounted now (its directory is missing).
    host.sh(f"cd {REPO} && git worktree add -q --detach /tmp/miyabi-merge.dead1/wt HEAD"
            " && git worktree add -q --detach /root/usb/feature HEAD && rm -rf /root/usb")
    p0.commit_to_origin("ll/stalewt", {"ll-stalewt.txt": "x\n"}, "stale worktree feature")
    fleet = p0.fleet("ll-stalewt", [host])
    proc = cli("phase0", "merge", "--from", "ll/stalewt", "--fleet", str(fleet), "--apply",
               "--yes", "--json", state=state)
    doc = json.loads(proc.stdout)
    assert doc["pushed"], proc.stdout + proc.stderr
    stale = "removed the temporary worktree a killed merge left: /tmp/miyabi-merge.dead1/wt"
    assert stale in doc["notes"], doc["notes"]
    listing = host.sh(f"git -C {REPO} worktree list --porcelain").stdout
    assert "/tmp/miyabi-merge.dead1/wt" not in listing
    assert "/root/usb/feature" in listing  # its admin data survives (no git worktree prune)


def test_recall_nested_repo_checks_fail_closed(lab: Lab, tmp_path: Path) -> None:
    host, fleet, wt = recall_host(lab, tmp_path, "ll-nested", 9303)
    # A nested repository git cannot read (a broken HEAD): it may hold work, so it counts.
    host.sh(f"cd {wt} && git init -q vendor/odd && echo 'garbage' >vendor/odd/.git/HEAD"
            " && echo precious >vendor/odd/work.txt")
    plan = cli("recall", "9303", "--fleet", str(fleet), state=tmp_path)
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert "vendor/odd (git cannot read it: it may hold work)" in plan.stdout, plan.stdout
    done = cli("recall", "9303", "--apply", "--yes", "--fleet", str(fleet), state=tmp_path)
    assert done.returncode == 1
    assert (host.home / wt.removeprefix("/root/") / "vendor/odd/work.txt").exists()
