"""Assignments claimed on the repository's remote, seen by every controller (issue 12).

Two controllers are two state directories (two controller ids, two run caches) running the real
CLI against lab hosts (prefix cl-) whose clones share a bare origin of this module's own, so the
claims here never meet another module's. Each failure mode is made for real: two controllers
started at the same instant for the same issue, the origin moved away, a host SIGKILLed while
its agent starts and after, claims written by a controller whose clock is decades off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import pytest
import yaml

from tests.jsonserver import JSONHandler
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.test_dispatch_lab import install_fake_agent

ROOT = Path(__file__).resolve().parents[2]
REPO = "/root/miyabi-private"


@dataclass
class ClaimsLab:
    lab: Lab
    origin: Path
    fleet_file: Path
    hosts: dict[str, LabHost]
    base: Path


def _cli_env(state: Path) -> dict[str, str]:
    return {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}


def cli(*args: str, state: Path, fleet: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ("--fleet", str(fleet)) if fleet else ()
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args, *extra],
                          capture_output=True, text=True, timeout=240, env=_cli_env(state),
                          stdin=subprocess.DEVNULL)


def start(*args: str, state: Path, fleet: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "miyabi_ctl", *args, "--fleet", str(fleet)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_cli_env(state), stdin=subprocess.DEVNULL)


def claims_on(origin: Path) -> dict[int, dict[str, str]]:
    """The claims as plain git sees them on the origin: issue → the record's key=value lines."""
    refs = subprocess.run(["git", "--git-dir", str(origin), "for-each-ref",
                           "--format=%(objectname) %(refname)", "refs/miyabi/claims"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    found = {}
    for line in filter(None, refs):
        oid, ref = line.split()
        body = subprocess.run(["git", "--git-dir", str(origin), "log", "-1", "--format=%b", oid],
                              capture_output=True, text=True, check=True).stdout
        found[int(ref.rsplit("/", 1)[1])] = dict(
            kv.split("=", 1) for kv in body.splitlines() if "=" in kv)
    return found


def has_session(host: LabHost, issue: int) -> bool:
    return host.sh(f"tmux has-session -t =miyabi-{issue}", check=False).returncode == 0


def write_backlog(path: Path, numbers: list[int]) -> Path:
    path.write_text(yaml.safe_dump({"issues": [
        {"number": n, "title": f"claimed work {n}", "priority": "P1"} for n in numbers]}))
    return path


@pytest.fixture(scope="module")
def cl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClaimsLab]:
    origin = lab.path / "claims-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(lab.origin), str(origin)], check=True)
    hosts = lab.add_hosts(["cl-a", "cl-b", "cl-c", "cl-d"], load=(0.2, 0.2, 0.2), cpus=8)
    for host in hosts:
        install_fake_agent(host)
        host.sh(f"git -C {REPO} remote set-url origin {origin} && git -C {REPO} fetch -q origin")
    base = tmp_path_factory.mktemp("claims")
    fleet_file = write_fleet(base / "fleet.yaml", lab, {
        h.name: ssh_entry(h, lab, max_sessions=40, tags=["linux"]) for h in hosts},
        extra="dispatch:\n  stale_after: 3s\n")
    yield ClaimsLab(lab, origin, fleet_file, {h.name: h for h in hosts}, base)
    for host in hosts:
        if host.alive():
            host.sh("tmux kill-server", check=False)


def test_two_controllers_racing_20_times_never_launch_two_agents(cl: ClaimsLab,
                                                                 tmp_path: Path) -> None:
    """Each round, controller A and controller B start at once for the same issue, one by
    dispatch and one by assign, each limited to its own host. Exactly one agent starts."""
    a, b = tmp_path / "controller-a", tmp_path / "controller-b"
    ha, hb = cl.hosts["cl-a"], cl.hosts["cl-b"]
    decided_by_swap = decided_by_plan = 0
    rounds: list[float] = []
    for n in range(1, 21):
        began = time.monotonic()
        backlog = write_backlog(tmp_path / f"backlog-{n}.yaml", [n])
        common = ("--apply", "--yes", "--backlog", str(backlog))
        if n % 2:
            one = start("dispatch", "cl-a", "--max", "1", *common, state=a, fleet=cl.fleet_file)
            two = start("assign", str(n), "cl-b", *common, state=b, fleet=cl.fleet_file)
        else:
            one = start("assign", str(n), "cl-a", *common, state=a, fleet=cl.fleet_file)
            two = start("dispatch", "cl-b", "--max", "1", *common, state=b, fleet=cl.fleet_file)
        outs = [p.communicate(timeout=240) for p in (one, two)]
        rounds.append(time.monotonic() - began)
        texts = [o + e for o, e in outs]
        running = [h.name for h in (ha, hb) if has_session(h, n)]
        assert len(running) == 1, (n, running, texts)
        winner = running[0]
        assert claims_on(cl.origin)[n]["host"] == winner
        loser = texts[1] if winner == "cl-a" else texts[0]
        if f"not launched: issue #{n} is claimed by {winner}" in loser:
            decided_by_swap += 1
        else:
            assert f"assigned to {winner} (miyabi-{n})" in loser, (n, loser)
            decided_by_plan += 1
    print(f"20 races: {decided_by_swap} decided by the compare-and-swap, "
          f"{decided_by_plan} by the plan's read of the claims; a round took "
          f"{sorted(rounds)[10]:.1f} s (median), {max(rounds):.1f} s (max)")

    # Every controller sees every assignment, whoever launched it.
    full = write_backlog(tmp_path / "backlog.yaml", list(range(1, 21)))
    for state in (a, b):
        proc = cli("runs", "--json", "--backlog", str(full), state=state, fleet=cl.fleet_file)
        assert proc.returncode == 0, proc.stderr
        runs = {r["issue"]: r for r in json.loads(proc.stdout)["runs"]}
        assert sorted(runs) == list(range(1, 21))
        for n, run in runs.items():
            assert run["session_alive"] is True and run["stale"] is False
            assert has_session(cl.hosts[run["host"]], n)
            assert run["state"] == "running" and run["claim"]
        issues = json.loads(cli("issues", "--json", "--backlog", str(full), state=state,
                                fleet=cl.fleet_file).stdout)["issues"]
        assert {i["state"] for i in issues} == {"assigned"}
    # A live run is not released by --force: its host answers.
    proc = cli("recall", "1", "--force", "--apply", "--yes", state=b, fleet=cl.fleet_file)
    assert proc.returncode == 1
    assert "REFUSED" in proc.stdout and "recall without --force" in proc.stdout
    assert 1 in claims_on(cl.origin)


def test_the_swap_itself_has_one_winner(cl: ClaimsLab) -> None:
    """Two hosts push the same claim ref at the same instant, 20 times: one wins, the other
    reads the winner back."""
    from miyabi_ctl.dispatch.claims import ClaimHeld, ClaimKeeper, new_claim
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(cl.fleet_file)
    with Fleet(inventory, ["cl-a", "cl-b"]) as fleet, ClaimKeeper(inventory, fleet) as keeper:
        for n in range(5001, 5021):
            barrier = threading.Barrier(2)
            results: dict[str, object] = {}

            def take(host: str, n: int = n, barrier: threading.Barrier = barrier,
                     results: dict[str, object] = results) -> None:
                claim = new_claim(issue=n, title="t", host=host, agent="claude",
                                  branch=f"issue/{n}", session=f"miyabi-{n}", worktree="w",
                                  controller=host)
                barrier.wait()
                try:
                    results[host] = keeper.take(claim, via=host)
                except ClaimHeld as exc:
                    results[host] = exc

            threads = [threading.Thread(target=take, args=(h,)) for h in ("cl-a", "cl-b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            won = [h for h, r in results.items() if not isinstance(r, ClaimHeld)]
            lost = [r for r in results.values() if isinstance(r, ClaimHeld)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].claim.host == won[0]
            assert claims_on(cl.origin)[n]["host"] == won[0]
            assert keeper.release(results[won[0]]) is None  # type: ignore[arg-type]
    assert not any(5000 < n < 5021 for n in claims_on(cl.origin))


def test_unreachable_remote_refuses_to_launch(cl: ClaimsLab, tmp_path: Path) -> None:
    backlog = write_backlog(tmp_path / "backlog.yaml", [31])
    args = ("--backlog", str(backlog))
    moved = cl.origin.with_name("claims-origin.moved")
    cl.origin.rename(moved)
    try:
        plan = cli("dispatch", "cl-c", *args, state=tmp_path, fleet=cl.fleet_file)
        assert plan.returncode == 1
        assert "#31 → cl-c" in plan.stdout  # the plan is shown…
        assert "could not be read, so nothing will be launched" in plan.stdout  # …and refused
        applied = cli("dispatch", "cl-c", "--apply", "--yes", *args, state=tmp_path,
                      fleet=cl.fleet_file)
        assert applied.returncode == 1, applied.stdout
        assert not has_session(cl.hosts["cl-c"], 31)
        assert not (tmp_path / "audit.jsonl").exists()  # nothing was attempted
        runs = cli("runs", *args, state=tmp_path, fleet=cl.fleet_file)
        assert runs.returncode == 1
        assert "the claims could not be read" in runs.stderr
        assert "does not appear to be a git repository" in runs.stderr
        issues = cli("issues", *args, state=tmp_path, fleet=cl.fleet_file)
        assert "warning: the claims could not be read" in issues.stderr
        # A claim attempted while the remote is away is refused too, not assumed won.
        from miyabi_ctl.dispatch.claims import ClaimKeeper, ClaimsUnavailable, new_claim
        from miyabi_ctl.inventory import load_inventory

        with ClaimKeeper(load_inventory(cl.fleet_file)) as keeper, \
                pytest.raises(ClaimsUnavailable, match="cannot claim #31"):
            keeper.take(new_claim(issue=31, title="t", host="cl-c", agent="claude",
                                  branch="issue/31", session="miyabi-31", worktree="w",
                                  controller="x"), via="cl-c")
    finally:
        moved.rename(cl.origin)
    assert 31 not in claims_on(cl.origin)
    ok = cli("dispatch", "cl-c", "--apply", "--yes", *args, state=tmp_path, fleet=cl.fleet_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert has_session(cl.hosts["cl-c"], 31)


def test_host_dying_mid_launch_releases_the_claim(cl: ClaimsLab, tmp_path: Path) -> None:
    """The agent starts, then the host is SIGKILLed while launch waits to see it alive; the
    claim is released through another host, so the issue is free again."""
    host = cl.hosts["cl-d"]
    marker = host.home / "agent-started"
    exe = host.home / ".local" / "bin" / "claude"
    exe.write_text("#!/bin/bash\ntouch /root/agent-started\nexec -a claude /bin/sleep 100000\n")
    backlog = write_backlog(tmp_path / "backlog.yaml", [41])

    def kill_when_started() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not marker.exists():
            time.sleep(0.02)
        host.kill()

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    proc = cli("dispatch", "cl-d", "--apply", "--yes", "--backlog", str(backlog), state=tmp_path,
               fleet=cl.fleet_file)
    killer.join()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "#41 cl-d: failed" in proc.stdout and "claim released" in proc.stdout
    assert 41 not in claims_on(cl.origin)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["action"], e["result"]) for e in audit] == [
        ("claim.release", "ok"), ("dispatch", "failed")]
    # Free again: another host may take it.
    doc = json.loads(cli("dispatch", "cl-a", "--json", "--backlog", str(backlog), state=tmp_path,
                         fleet=cl.fleet_file).stdout)
    assert [(p["issue"], p["host"]) for p in doc["assignments"]] == [(41, "cl-a")]


def test_dead_host_claim_goes_stale_and_recall_force_releases_it(cl: ClaimsLab,
                                                                 tmp_path: Path) -> None:
    """cl-c runs #32 for controller A, then dies. `runs` says so; after stale_after (3s in this
    fleet), measured on the controller's own clock from when it first saw the host down, the
    claim shows STALE; the issue is not offered again until `recall --force` releases it — from
    controller B, which A learns on its next command."""
    a, b = tmp_path / "a", tmp_path / "b"
    backlog = write_backlog(tmp_path / "backlog.yaml", [32])
    args = ("--backlog", str(backlog))
    launched = cli("dispatch", "cl-c", "--apply", "--yes", *args, state=a, fleet=cl.fleet_file)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    cl.hosts["cl-c"].kill()

    first = cli("runs", "--json", *args, state=a, fleet=cl.fleet_file)
    assert first.returncode == 1  # a host could not be asked
    run = {r["issue"]: r for r in json.loads(first.stdout)["runs"]}[32]
    assert (run["host"], run["stale"], run["session_alive"]) == ("cl-c", False, None)
    assert run["error"]
    time.sleep(3.2)
    table = cli("runs", *args, state=a, fleet=cl.fleet_file)
    line = next(x for x in table.stdout.splitlines() if x.startswith("32 "))
    assert "running, STALE" in line
    # Not offered again while claimed, stale or not: no decision is made on a clock.
    doc = json.loads(cli("dispatch", "--json", *args, state=a, fleet=cl.fleet_file).stdout)
    assert doc["assignments"] == []
    assert doc["unplaced"] == [{"issue": 32, "reason": "assigned to cl-c (miyabi-32)"}]
    # A plain recall cannot reach the host; --force releases the claim from controller B.
    assert cli("recall", "32", "--apply", "--yes", state=b, fleet=cl.fleet_file).returncode != 0
    plan = cli("recall", "32", "--force", state=b, fleet=cl.fleet_file)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "  1. release the claim on #32 (held by cl-c" in plan.stdout
    assert "cl-c cannot be reached" in plan.stdout
    assert "note: the claim is not stale yet" in plan.stdout  # B has only just seen it down
    assert 32 in claims_on(cl.origin)  # plan only
    done = cli("recall", "32", "--force", "--apply", "--yes", state=b, fleet=cl.fleet_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "claim released" in done.stdout
    assert 32 not in claims_on(cl.origin)
    # Controller A catches up on its next command: its cache marks the run released.
    doc = json.loads(cli("dispatch", "cl-a", "--json", *args, state=a, fleet=cl.fleet_file).stdout)
    assert [p["issue"] for p in doc["assignments"]] == [32]
    import sqlite3

    db = sqlite3.connect(a / "runs.sqlite")
    states = [r[0] for r in db.execute("SELECT state FROM assignments WHERE issue = 32")]
    db.close()
    assert states == ["released"]


def test_clock_skew_decides_nothing(cl: ClaimsLab, tmp_path: Path) -> None:
    """Claims written by controllers whose clocks are 56 years behind and 73 years ahead: a
    live one is honoured and not stale; the swap, not the time, decides who holds an issue."""
    from miyabi_ctl.dispatch.claims import ClaimHeld, ClaimKeeper, new_claim
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(cl.fleet_file)
    host = cl.hosts["cl-b"]
    with ClaimKeeper(inventory) as keeper:
        past = keeper.take(new_claim(issue=61, title="t", host="cl-b", agent="claude",
                                     branch="issue/61", session="miyabi-61", worktree="w",
                                     controller="slow", now=datetime(1970, 1, 2, tzinfo=UTC)),
                           via="cl-b")
        host.sh("tmux new-session -d -s miyabi-61 'exec sleep 100000'")
        with pytest.raises(ClaimHeld, match="since 1970-01-02"):  # a later time does not win
            keeper.take(new_claim(issue=61, title="t", host="cl-a", agent="claude",
                                  branch="issue/61", session="miyabi-61", worktree="w",
                                  controller="fast", now=datetime(2099, 1, 1, tzinfo=UTC)),
                        via="cl-a")
    backlog = write_backlog(tmp_path / "backlog.yaml", [61, 62])
    proc = cli("runs", "--json", "--backlog", str(backlog), state=tmp_path, fleet=cl.fleet_file)
    run = {r["issue"]: r for r in json.loads(proc.stdout)["runs"]}[61]
    assert run["session_alive"] is True and run["stale"] is False
    assert run["started"] == "1970-01-02T00:00:00+00:00" and run["claim"] == past.oid
    doc = json.loads(cli("dispatch", "--json", "--backlog", str(backlog), state=tmp_path,
                         fleet=cl.fleet_file).stdout)
    assert [p["issue"] for p in doc["assignments"]] == [62]
    host.sh("tmux kill-session -t =miyabi-61")


class FakeGitHub(JSONHandler):
    """The REST endpoints dispatch uses, in GitHub's shapes: open issues, one issue, labels.
    Only the token `write-token` may write (a fine-grained read-only token gets 403)."""

    issues: ClassVar[dict[int, dict]] = {}
    writes: ClassVar[list[tuple[str, str, str | None]]] = []

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/api/v3/repos/acme/app/issues":
            return self.reply(200, [d for d in self.issues.values() if d["state"] == "open"])
        number = int(path.rsplit("/", 1)[1])
        if number in self.issues:
            return self.reply(200, self.issues[number])
        self.reply(404, {"message": "Not Found"})

    def write(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization")
        FakeGitHub.writes.append((self.command, urlparse(self.path).path, auth))
        if auth != "Bearer write-token":
            return self.reply(403, {"message": "Resource not accessible by personal access token"})
        self.reply(200, [{"id": 1, "name": "miyabi:cl-a", "color": "ededed"}])

    do_POST = do_DELETE = write


def test_github_backlog_labels_the_issue_and_a_closed_issue_releases_its_claim(
        cl: ClaimsLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_port}/api/v3"
    FakeGitHub.issues = {n: {"number": n, "title": f"gh {n}", "body": "", "state": "open",
                             "labels": [{"id": 1, "name": "P0", "color": "ededed"}]}
                         for n in (71, 72)}
    FakeGitHub.writes = []
    fleet = write_fleet(tmp_path / "fleet.yaml", cl.lab, yaml.safe_load(
        cl.fleet_file.read_text())["hosts"],
        extra=f"backlog:\n  github: acme/app\n  api_url: {api}\n  token_env: GH_TEST_TOKEN\n")
    try:
        monkeypatch.setenv("GH_TEST_TOKEN", "write-token")
        proc = cli("assign", "71", "cl-a", "--apply", "--yes", state=tmp_path, fleet=fleet)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert FakeGitHub.writes == [("POST", "/api/v3/repos/acme/app/issues/71/labels",
                                      "Bearer write-token")]
        # A read-only token: the launch happens all the same, with a note.
        monkeypatch.setenv("GH_TEST_TOKEN", "read-token")
        proc = cli("assign", "72", "cl-a", "--apply", "--yes", state=tmp_path, fleet=fleet)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "GitHub label miyabi:cl-a not set: HTTP 403 (the token may be read-only)" in \
            proc.stdout
        assert {71, 72} <= set(claims_on(cl.origin))
        # #71 is closed on GitHub: the next dispatch --apply releases its claim and label.
        monkeypatch.setenv("GH_TEST_TOKEN", "write-token")
        FakeGitHub.issues[71]["state"] = "closed"
        plan = cli("dispatch", "cl-a", state=tmp_path, fleet=fleet)
        assert "Claims to release (the issue is closed; worktree and branch stay):" in plan.stdout
        assert "  #71 held by cl-a (miyabi-71" in plan.stdout
        done = cli("dispatch", "cl-a", "--apply", "--yes", state=tmp_path, fleet=fleet)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "#71 cl-a: released — claim released: the issue is closed" in done.stdout
        assert 71 not in claims_on(cl.origin) and 72 in claims_on(cl.origin)
        assert FakeGitHub.writes[-1] == (
            "DELETE", "/api/v3/repos/acme/app/issues/71/labels/miyabi%3Acl-a", "Bearer write-token")
        assert has_session(cl.hosts["cl-a"], 71)  # the run itself is not touched
    finally:
        server.shutdown()
        server.server_close()
        for n in (71, 72):
            cl.hosts["cl-a"].sh(f"tmux kill-session -t =miyabi-{n}", check=False)
