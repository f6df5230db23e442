"""`land` on a lab host with a file backlog: stand-in agents commit and end, or keep working, or
leave work uncommitted, or conflict with main, and `land` merges what is ready onto the remote's
main (the issue done, its dependent ready), refuses the rest changing nothing — proven with a
byte-exact inventory of the worktrees and the origin's refs — and records why on the claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab import inventory
from tests.lab.harness import Lab
from tests.lab.landing import LandLab, git, land_lab, refs
from tests.lab.test_json_contract_lab import validate
from tests.receiver import Receiver

BACKLOG = [
    {"number": 901, "title": "Add the [/api] handler", "priority": "P0"},
    {"number": 902, "title": "Use the handler", "depends": [901]},
    {"number": 903, "title": "A long job"},
    {"number": 904, "title": "Rewrite shared.txt"},
    {"number": 905, "title": "Half done"},
    {"number": 906, "title": "Fails its check"},
]


@pytest.fixture(scope="module")
def ll(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> LandLab:
    return land_lab(lab, tmp_path_factory.mktemp("land"), "ld-file", BACKLOG)


def snapshot(ll: LandLab, issue: int) -> inventory.Inventory:
    return inventory.take(ll.worktree(issue),
                          git_dir=ll.host.repo / ".git" / "worktrees" / f"issue-{issue}")


def branches(ll: LandLab, seen: dict[str, str] | None = None) -> dict[str, str]:
    """The origin's refs but the claims (which record what land made of a run)."""
    return {k: v for k, v in (seen or refs(ll.origin)).items()
            if not k.startswith("refs/miyabi/")}


def runs(ll: LandLab) -> dict[int, dict]:
    proc = ll.cli("runs", "--json")
    doc = json.loads(proc.stdout)
    validate("runs", doc)
    assert not [r for r in doc["runs"] if r["state"] == "released"]  # the cache follows claims
    return {r["issue"]: r for r in doc["runs"]}


def test_land_merges_into_main_cleans_up_and_refuses_a_run_still_working(ll: LandLab) -> None:
    ll.assign(901, "commit")
    ll.assign(903, "idle")
    ll.wait_ended(901)
    tip = git(ll.host.repo, "rev-parse", "refs/heads/issue/901")
    seen = runs(ll)
    assert (seen[901]["lifecycle"], seen[901]["lifecycle_text"]) == (
        "ended", "ended with 1 commit (ready to land)")
    assert seen[903]["lifecycle"] == "running"

    # A run still working: refused, nothing pushed, its worktree as it was.
    before, origin_before = snapshot(ll, 903), refs(ll.origin)
    proc = ll.cli("land", "903", "--apply", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "still working: its session is alive" in proc.stdout
    assert refs(ll.origin) == origin_before
    assert inventory.lost(before, refs_repo=ll.host.repo) == []
    assert ll.alive(903)

    plan = json.loads(ll.cli("land", "901", "--json").stdout)
    validate("land", plan)
    assert plan["applied"] is False and plan["flow"] == "merge"
    assert [(r["issue"], r["action"], r["tip"]) for r in plan["runs"]] == [(901, "merge", tip)]

    before = snapshot(ll, 901)
    proc = ll.cli("land", "901", "--apply", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    validate("land", doc)
    assert [(r["issue"], r["result"]) for r in doc["results"]] == [(901, "landed")]
    # On the remote's main: a merge whose second parent is the agent's commit; issue/901 too.
    main = git(ll.origin, "rev-parse", "refs/heads/main")
    assert main == doc["results"][0]["merged"]
    assert git(ll.origin, "rev-parse", f"{main}^2") == tip
    assert git(ll.origin, "show", f"{main}:issue-901.txt") == "work for #901"
    assert git(ll.origin, "rev-parse", "refs/heads/issue/901") == tip
    # The worktree is gone, the claim released, nothing lost (its commits are on branches).
    assert not ll.worktree(901).exists()
    assert "refs/miyabi/claims/901" not in refs(ll.origin)
    assert inventory.lost(before, ll.worktree(901), refs_repo=ll.host.repo) == []
    # The issue is done (the backlog still says open), its dependent ready.
    issues = json.loads(ll.cli("issues", "--json").stdout)
    validate("issues", issues)
    state = {i["number"]: i for i in issues["issues"]}
    assert state[901]["state"] == "done"
    assert state[901]["done_via"] == f"merged into origin/main: issue/901 at {tip[:12]}"
    assert state[902]["state"] == "ready"
    assert runs(ll)[901]["lifecycle"] == "landed"
    # Someone else pushes to main, which this host's clone has not fetched: issues still knows
    # #901 is done (main's history fetched into a git dir of the read's own), and the host's
    # repository is left exactly as it was, mtimes included.
    ll.commit_to_origin({"other.txt": "someone else's work\n"}, "Another developer's change")
    before_disk = inventory.disk(ll.host.repo / ".git")
    issues = json.loads(ll.cli("issues", "--json").stdout)
    assert {i["number"]: i["state"] for i in issues["issues"]}[901] == "done"
    assert inventory.disk_changes(before_disk, inventory.disk(ll.host.repo / ".git")) == []
    audit = [json.loads(line) for line in (ll.state / "audit.jsonl").read_text().splitlines()]
    steps = [e["action"] for e in audit if e.get("issue") == 901]
    assert {"land.merge", "land.stop", "land.remove", "claim.release"} <= set(steps), steps
    ll.host.sh("tmux kill-session -t =miyabi-903", check=False)


def test_conflicts_dirty_worktrees_and_failed_checks_push_nothing(ll: LandLab) -> None:
    ll.commit_to_origin({"shared.txt": "the original\n"}, "Add shared.txt")
    for issue, mode in ((904, "conflict"), (905, "dirty"), (906, "commit")):
        ll.assign(issue, mode)
    for issue in (904, 905, 906):
        ll.wait_ended(issue)
    ll.commit_to_origin({"shared.txt": "main's version\n"}, "Change shared.txt on main")
    befores = {n: snapshot(ll, n) for n in (904, 905, 906)}
    origin_before = refs(ll.origin)

    proc = ll.cli("land", "904", "905", "906", "--check", "test -f must-exist", "--apply",
                  "--yes", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    validate("land", doc)
    results = {r["issue"]: r for r in doc["results"]}
    assert results[904]["result"] == "refused" and results[904]["conflicts"] == ["shared.txt"]
    assert results[905]["result"] == "refused"
    assert "1 uncommitted files in the worktree would not land" in results[905]["message"]
    assert results[906]["result"] == "refused" and results[906]["check_rc"] == 1
    assert branches(ll) == branches(ll, origin_before)
    for issue, before in befores.items():
        assert inventory.lost(before, refs_repo=ll.host.repo) == [], issue
    seen = runs(ll)
    assert [seen[n]["lifecycle"] for n in (904, 905, 906)] == ["conflicts", "ended",
                                                               "check-failed"]
    assert seen[904]["land_note"] == "conflicts with main in shared.txt"
    # Recorded beside the log: show says what the check said.
    shown = json.loads(ll.cli("show", "906", "--json").stdout)
    validate("show", shown)
    assert shown["check"]["rc"] == 1 and shown["check"]["command"] == "test -f must-exist"
    assert shown["lifecycle"] == "check-failed"

    # In cron: what is ready lands (nothing here), the rest is left; refusals give exit 1 and
    # the same refusals are not re-run on the same commits.
    proc = ll.cli("land", "--all", "--apply", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing new since" in proc.stdout
    assert branches(ll) == branches(ll, origin_before)


def test_show_says_what_the_run_did(ll: LandLab, tmp_path: Path) -> None:
    shown = json.loads(ll.cli("show", "905", "--json", "--diff").stdout)
    validate("show", shown)
    assert [c["subject"] for c in shown["commits"]] == ["Half the work"]
    assert shown["files"] == [{"path": "committed.txt", "added": 1, "deleted": 0}]
    assert shown["uncommitted"] == 1 and shown["uncommitted_files"] == ["?? draft.txt"]
    assert "+committed work" in shown["diff"]
    assert shown["log_tail"][-1].startswith("miyabi-ctl: ") and "exited with status 0" in \
        shown["log_tail"][-1]
    text = ll.cli("show", "905", "--diff").stdout  # piped: plain, the patch after the summary
    assert "#905 Half done" in text and "1 uncommitted files" in text
    assert "diff --git a/committed.txt b/committed.txt" in text


def test_land_tells_the_phone_where_each_run_went(lab: Lab, tmp_path: Path) -> None:
    """fleet.yaml's notify: hears what land did, once: a run landed, a run whose check failed
    (its hostile title verbatim); a second land that changes nothing, and runs after it, tell
    nothing more."""
    with Receiver() as target:
        nl = land_lab(lab, tmp_path, "ld-notify", [
            {"number": 911, "title": "Lands", "priority": "P0"},
            {"number": 912, "title": "Fails [/api] $(x) <b>"}], extra={"notify": [target.url]})
        for issue in (911, 912):
            nl.assign(issue, "commit")
        for issue in (911, 912):
            nl.wait_ended(issue)
        proc = nl.cli("runs")  # the baseline: both ended, told once
        assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr
        told = len(target.messages)

        proc = nl.cli("land", "911", "912", "--check", "test ! -f issue-912.txt", "--apply",
                      "--yes")
        assert proc.returncode == 1 and proc.stderr == "", proc.stdout + proc.stderr
        assert target.bodies()[told:] == [[
            '#911 "Lands" on ld-notify: ended with commits (ready to land) → landed',
            '#912 "Fails [/api] $(x) <b>" on ld-notify: ended with commits (ready to land) → '
            "check failed",
        ]]
        assert target.messages[-1]["type"] == "warning"  # a check that failed is bad news

        for args in (("land", "--all", "--apply", "--yes"), ("runs",)):
            nl.cli(*args)
        assert len(target.messages) == told + 1
