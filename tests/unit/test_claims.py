"""Claim records and the claim swap, against real git repositories on this machine (a bare
"origin" and two clones, reached through the local transport as a host would be); the cache's
catching up; staleness; the GitHub label against a local server in the REST API's shapes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from miyabi_ctl.dispatch.claims import (
    Claim,
    ClaimBoard,
    ClaimHeld,
    ClaimKeeper,
    ClaimsUnavailable,
    claim_message,
    new_claim,
    parse_claims,
)
from miyabi_ctl.dispatch.github import GitHubSource, label_assignment
from miyabi_ctl.dispatch.run_views import judge_stale
from miyabi_ctl.dispatch.store import RunStore
from miyabi_ctl.inventory import HostSpec, Inventory
from miyabi_ctl.state import install_id
from tests.jsonserver import JSONHandler

HOSTILE = "$(touch /tmp/pwned) `x`\nclaim=9\noid=deadbeef\nm.host=evil"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Inventory]:
    """A bare origin with one commit, and two clones seen as two local hosts."""
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(origin))
    for name in ("one", "two"):
        git("clone", "-q", str(origin), str(tmp_path / name))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x",
        cwd=tmp_path / "one")
    git("push", "-q", "origin", "HEAD:main", cwd=tmp_path / "one")
    hosts = tuple(HostSpec(name, transport="local", repo_path=str(tmp_path / name))
                  for name in ("one", "two"))
    return origin, Inventory(source=None, hosts=hosts)


def a_claim(issue: int, host: str, title: str = "work") -> Claim:
    return new_claim(issue=issue, title=title, host=host, agent="claude", branch=f"issue/{issue}",
                     session=f"miyabi-{issue}", worktree=f"~/.miyabi/worktrees/issue-{issue}",
                     controller="c0ffee")


def test_record_round_trip_and_hostile_values_stay_one_field() -> None:
    claim = a_claim(7, "mugen", HOSTILE)
    message = claim_message(claim)
    assert message.startswith("miyabi-ctl claim: issue #7\n\nversion=1\nissue=7\n")
    # claims.sh prints each message line prefixed `m.`, after `claim=` and `oid=`.
    printed = "claim=7\noid=abc\n" + "".join(f"m.{line}\n" for line in message.splitlines())
    (parsed,) = parse_claims(printed)
    assert parsed.title == " ".join(HOSTILE.splitlines())  # one line, no record of its own
    assert (parsed.issue, parsed.oid, parsed.host, parsed.session, parsed.state) == (
        7, "abc", "mugen", "miyabi-7", "launching")
    assert parsed.controller == "c0ffee" and parsed.claimed == claim.claimed


def test_what_land_recorded_travels_with_the_claim_and_older_records_have_none() -> None:
    from dataclasses import replace

    claim = replace(a_claim(8, "majin"), state="running", land="conflicts", land_tip="ab" * 20,
                    land_note=f"conflicts in {HOSTILE}", pr="12")
    printed = "claim=8\noid=abc\n" + "".join(
        f"m.{line}\n" for line in claim_message(claim).splitlines())
    (parsed,) = parse_claims(printed)
    assert (parsed.land, parsed.land_tip, parsed.pr) == ("conflicts", "ab" * 20, "12")
    assert parsed.land_note == " ".join(f"conflicts in {HOSTILE}".splitlines())
    old = "claim=8\noid=abc\nm.version=1\nm.issue=8\nm.host=majin\nm.land=bogus\nm.pr=x\n"
    (parsed,) = parse_claims(old)
    assert (parsed.land, parsed.land_tip, parsed.land_note, parsed.pr) == ("", "", "", "")


def test_unreadable_records_still_hold_their_issue() -> None:
    printed = ("claim=5\noid=a1\nm.hello\n"                          # written by hand
               "claim=6\noid=a2\nm.version=1\nm.issue=60\nm.host=x\n"  # says another issue
               "claim=notanumber\noid=a3\nm.version=1\n")
    five, six = parse_claims(printed)
    assert five.malformed == "unknown claim format 'none'" and six.malformed == "record says issue '60'"
    board = ClaimBoard({5: five, 6: six})
    assert board.assigned()[5].startswith("an unreadable claim (unknown claim format")
    assert board.assignments() == []  # nothing to look at on a host, but the issue is held


def test_controller_id_is_per_state_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = install_id(tmp_path / "a")
    assert install_id(tmp_path / "a") == first and len(first) == 32
    assert install_id(tmp_path / "b") != first
    assert (tmp_path / "a" / "install-id").read_text().strip() == first


def test_take_lose_update_release_on_a_real_remote(repos: tuple[Path, Inventory]) -> None:
    origin, inventory = repos
    with ClaimKeeper(inventory) as keeper:
        assert keeper.read().claims == {}
        held = keeper.take(a_claim(12, "one", HOSTILE), via="one")
        assert git("--git-dir", str(origin), "rev-parse", "refs/miyabi/claims/12").strip() == held.oid
        with pytest.raises(ClaimHeld, match=r"issue #12 is claimed by one \(miyabi-12, claude"):
            keeper.take(a_claim(12, "two"), via="two")
        board = keeper.read(["two"])
        assert board.via == "one"  # this machine's clones come first, in fleet order
        assert board.claims[12].title == " ".join(HOSTILE.splitlines())
        # Reading leaves no ref behind in the clone it went through.
        assert git("for-each-ref", cwd=origin.parent / "one").count("miyabi") == 0

        running = keeper.update(held, Claim(**{**vars(held), "state": "running", "base": "b1"}),
                                via="two")
        assert isinstance(running, Claim) and running.oid != held.oid
        assert keeper.read().claims[12].state == "running"
        # The stale object may no longer be released or updated: the lease is on the exact oid.
        assert keeper.release(held).startswith("not released: the claim on #12 is now held by")
        assert keeper.update(held, held, via="one") == "the claim was changed meanwhile"
        assert keeper.release(running, ["two"]) is None
        assert keeper.read().claims == {}
        assert keeper.release(running) is None  # already gone: nothing to do


def test_unreachable_remote(repos: tuple[Path, Inventory]) -> None:
    origin, inventory = repos
    origin.rename(origin.with_suffix(".away"))
    with ClaimKeeper(inventory) as keeper:
        board = keeper.read()
        assert not board.readable
        assert board.error.startswith("one: cannot read the claims on origin: fatal: ")
        assert "; two: cannot read the claims" in board.error  # both hosts were tried
        with pytest.raises(ClaimsUnavailable, match="could not be read, so nothing is launched"):
            board.require()
        with pytest.raises(ClaimsUnavailable, match="cannot claim #3 on origin"):
            keeper.take(a_claim(3, "one"), via="one")


def test_judge_stale_compares_each_clock_only_with_itself() -> None:
    limit = 1800
    # The host answers: its own clock for both times.
    assert not judge_stale(alive=True, last_activity=0, host_now=10**9, unreachable_since=None,
                           now=0, limit=limit)
    assert judge_stale(alive=False, last_activity=1000, host_now=1000 + limit,
                       unreachable_since=None, now=0, limit=limit)
    assert not judge_stale(alive=False, last_activity=1000, host_now=1000 + limit - 1,
                           unreachable_since=None, now=5 * 10**9, limit=limit)
    # It does not: this controller's clock, from when it first saw that.
    assert not judge_stale(alive=None, last_activity=None, host_now=None,
                           unreachable_since=100.0, now=100.0 + limit - 1, limit=limit)
    assert judge_stale(alive=None, last_activity=None, host_now=None, unreachable_since=100.0,
                       now=100.0 + limit, limit=limit)


def test_cache_catches_up_and_old_stores_are_migrated(tmp_path: Path) -> None:
    old = tmp_path / "runs.sqlite"
    db = sqlite3.connect(old)
    db.executescript("""CREATE TABLE assignments (id INTEGER PRIMARY KEY, issue INTEGER NOT NULL,
        title TEXT NOT NULL DEFAULT '', host TEXT NOT NULL, agent TEXT NOT NULL,
        worktree TEXT NOT NULL, branch TEXT NOT NULL, session TEXT NOT NULL, base TEXT, log TEXT,
        started TEXT NOT NULL, state TEXT NOT NULL, ended TEXT, note TEXT);
        INSERT INTO assignments VALUES (1, 4, 't', 'h', 'claude', 'w', 'issue/4', 'miyabi-4',
        NULL, NULL, '2026-01-01', 'running', NULL, NULL);""")
    db.commit()
    db.close()
    store = RunStore(old)
    (legacy,) = store.active()
    assert legacy.claim is None
    mine = store.claim(issue=5, title="t", host="h", agent="claude", worktree="w",
                       branch="issue/5", session="miyabi-5", claim="oid5")
    kept = store.claim(issue=6, title="t", host="h", agent="claude", worktree="w",
                       branch="issue/6", session="miyabi-6", claim="oid6")
    # A read that began before #5 and #6 were started cannot judge them (a concurrent command).
    assert store.reconcile({}, datetime(2000, 1, 1, tzinfo=UTC)) == []
    ended = store.reconcile({6: "oid6"})  # #5 was recalled through another controller
    assert [a.issue for a in ended] == [5]
    assert store.get(mine.id).state == "released" and store.get(kept.id).state == "launching"
    assert store.get(legacy.id).state == "running"  # made before claims: left alone
    # Sightings: the first one is kept, the ones not seen again are forgotten.
    assert store.unreachable_since({"x", "y"}, 10.0) == {"x": 10.0, "y": 10.0}
    assert store.unreachable_since({"x"}, 20.0) == {"x": 10.0}
    assert store.sighting("y", 30.0) == 30.0


class Labels(JSONHandler):
    seen: ClassVar[list[tuple[str, str, str | None, object]]] = []

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization")
        Labels.seen.append((self.command, self.path, auth, body))
        if auth != "Bearer write-token":  # a fine-grained token with issues: read
            return self.reply(403, {"message": "Resource not accessible by personal access token",
                                    "documentation_url": "https://docs.github.com/rest"})
        if self.command == "POST":
            return self.reply(200, [{"id": 1, "name": body["labels"][0], "color": "ededed"}])
        self.reply(404, {"message": "Label does not exist"})

    do_POST = do_DELETE = _handle


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Labels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v3"
    finally:
        server.shutdown()
        server.server_close()


def test_assignment_label_with_write_read_only_and_no_token(api: str) -> None:
    Labels.seen.clear()
    writer = GitHubSource("acme/app", api, "write-token")
    assert label_assignment(writer, 1169, "mugen", add=True) is None
    assert label_assignment(writer, 1169, "mugen", add=False) is None  # 404: already gone
    reader = GitHubSource("acme/app", api, "read-token")
    assert label_assignment(reader, 1169, "mugen", add=True) == (
        "GitHub label miyabi:mugen not set: HTTP 403 (the token may be read-only)")
    assert label_assignment(GitHubSource("acme/app", api, None), 1169, "mugen", add=True) is None
    assert [(m, p, b) for m, p, _, b in Labels.seen] == [
        ("POST", "/api/v3/repos/acme/app/issues/1169/labels", {"labels": ["miyabi:mugen"]}),
        ("DELETE", "/api/v3/repos/acme/app/issues/1169/labels/miyabi%3Amugen", None),
        ("POST", "/api/v3/repos/acme/app/issues/1169/labels", {"labels": ["miyabi:mugen"]})]
    unreachable = GitHubSource("acme/app", "http://127.0.0.1:9/api", "write-token")
    assert label_assignment(unreachable, 1, "h", add=True).startswith(
        "GitHub label miyabi:h not set: cannot reach http://127.0.0.1:9/api")


def test_a_claim_pushed_by_hand_holds_its_issue_until_recall_force(
        repos: tuple[Path, Inventory], tmp_path: Path) -> None:
    """The by-hand recipe of docs/dispatch.md, end to end through the CLI with a local host."""
    origin, _ = repos
    one = origin.parent / "one"
    tree = git("hash-object", "-t", "tree", "-w", "/dev/null", cwd=one).strip()
    oid = git("-c", "user.name=me", "-c", "user.email=me@x", "commit-tree", "-m", "mine!", tree,
              cwd=one).strip()
    git("push", "-q", "origin", f"{oid}:refs/miyabi/claims/5", cwd=one)
    (tmp_path / "backlog.yaml").write_text("issues:\n  - {number: 5, title: five}\n")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"backlog:\n  file: {tmp_path / 'backlog.yaml'}\n"
                     f"hosts:\n  one:\n    transport: local\n    repo_path: {one}\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MIYABI_STATE_DIR": str(tmp_path / "state"),
               "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args, "--fleet", str(fleet)],
                              capture_output=True, text=True, env=env, timeout=120,
                              stdin=subprocess.DEVNULL)

    (issue,) = json.loads(cli("issues", "--json").stdout)["issues"]
    assert issue["state"] == "assigned"
    assert issue["assigned_to"] == ("an unreadable claim (unknown claim format 'none'; object "
                                    f"{oid[:12]})")
    refused = cli("recall", "5")
    assert refused.returncode == 1
    assert "recall --force releases it" in refused.stderr
    plan = cli("recall", "5", "--force")
    assert plan.returncode == 0, plan.stderr
    assert "release the claim on #5 (held by an unreadable claim" in plan.stdout
    assert "its record cannot be read" in plan.stdout
    done = cli("recall", "5", "--force", "--apply", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert git("ls-remote", str(origin), "refs/miyabi/*") == ""
    (issue,) = json.loads(cli("issues", "--json").stdout)["issues"]
    assert issue["state"] == "ready"
