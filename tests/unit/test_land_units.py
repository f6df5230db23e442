"""land's decision (a pure function of what the run's host said), show's parser on a captured
document, pull requests against a local server in GitHub's shapes, and issues made done by a
merged branch."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import ThreadingHTTPServer
from typing import ClassVar

import pytest

from miyabi_ctl.connectors.base import RunResult
from miyabi_ctl.dispatch.claims import Claim
from miyabi_ctl.dispatch.github import GitHubSource
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.issue import Issue
from miyabi_ctl.dispatch.land import LandItem, decide
from miyabi_ctl.dispatch.merged import MergedBoard, open_issues, with_merged
from miyabi_ctl.dispatch.pulls import (
    PullError,
    fenced,
    open_pull,
    pull_body,
    pull_state,
    pull_states,
)
from miyabi_ctl.dispatch.show import RunTarget, parse_detail
from miyabi_ctl.dispatch.store import Assignment
from miyabi_ctl.dispatch.worktree import Leftovers, NestedRepo
from tests.jsonserver import JSONHandler

TIP = "a" * 40
BASE = "b" * 40

# show.sh's document for an ended run (runs.sh's record first, as the two run as one script).
DOCUMENT = "\n".join([
    "run=1169", "alive=no", "ahead=2", "merged=no", f"tip={TIP}", "last_commit=1764800000",
    "log_time=1764800010", "pane_tail=", "log_tail=", "exit_status=0", "tmux=yes",
    "now=1764800100", f"from={BASE}", "commit_count=2",
    f"commit={TIP} 1764800000 Add [/api] $(x) `id` = handler",
    f"commit={'c' * 40} 1764799000 First",
    "file=3\t1\tsrc/handler.py", "file=-\t-\tlogo.png", 'file=1\t0\t"we\\nird.txt"',
    "shortstat=3 files changed, 4 insertions(+), 1 deletion(-)", "worktree=yes", "dirty=0",
    "log=miyabi-ctl: Fri Dec  4 04:50:32 UTC 2026 issue #1169 starting", "log=run=5 is not a key",
    "check.rc=1", "check.command=pytest -q", "check.time=2026-12-04T05:00:00+00:00",
    f"check.onto={BASE}", f"check.tip={TIP}", "check_out=FAILED test_x", "@@miyabi-diff@@",
    "diff --git a/src/handler.py b/src/handler.py", "run=7", "+alive=yes", ""])


def assignment(**changes: object) -> Assignment:
    a = Assignment(id=1, issue=1169, title="t", host="majin", agent="claude",
                   worktree="~/.miyabi/worktrees/issue-1169", branch="issue/1169",
                   session="miyabi-1169", base=BASE, log="/r/.runs/issue-1169/agent.log",
                   started="2026-12-04T00:00:00+00:00", state="running", ended=None, note=None)
    return replace(a, **changes)  # type: ignore[arg-type]


def detail(claim: Claim | None = None, **facts: str) -> LandItem:
    lines = DOCUMENT.replace("alive=no", f"alive={facts.get('alive', 'no')}")
    lines = lines.replace("ahead=2", f"ahead={facts.get('ahead', '2')}")
    lines = lines.replace("dirty=0", f"dirty={facts.get('dirty', '0')}")
    target = RunTarget(assignment(), claim)
    parsed = parse_detail(target, RunResult("majin", "sh -s", 0, lines, "", 0.1))
    return LandItem(target, "", "", parsed, Leftovers())


def test_show_document_parsed_and_the_diff_kept_apart() -> None:
    d = detail().detail
    assert d is not None
    assert [c.subject for c in d.commits] == ["Add [/api] $(x) `id` = handler", "First"]
    assert [(f.path, f.added) for f in d.files] == [("src/handler.py", 3), ("logo.png", None),
                                                     ('"we\\nird.txt"', 1)]
    assert d.log[-1] == "run=5 is not a key" and d.base == BASE and d.commit_count == 2
    assert d.check is not None and (d.check.rc, d.check.output) == (1, ["FAILED test_x"])
    assert d.diff == "diff --git a/src/handler.py b/src/handler.py\nrun=7\n+alive=yes\n"
    assert (d.view.alive, d.view.ahead, d.view.tip) == (False, 2, TIP)  # not the diff's lines


def test_land_decides_from_the_facts() -> None:
    assert decide(detail(), flow="merge", named=True) == ("merge", "ended with 2 commits")
    assert decide(detail(), flow="pull-request", named=True)[0] == "pull-request"
    working = detail(alive="yes")
    assert decide(working, flow="merge", named=True) == (
        "refuse", "still working: its session is alive")
    assert decide(working, flow="merge", named=False)[0] == "leave"  # --all
    assert decide(detail(ahead="0"), flow="merge", named=False)[0] == "leave"
    action, reason = decide(detail(dirty="3"), flow="merge", named=False)
    assert action == "refuse" and reason.startswith("3 uncommitted files")
    nested = detail()
    nested.leftovers = Leftovers(nested=(NestedRepo("vendor/lib", 2, 0),), ignored=(".env",))
    action, reason = decide(nested, flow="merge", named=True)
    assert action == "refuse" and "vendor/lib" in reason and ".env" in reason


def test_recorded_refusals_and_pull_requests() -> None:
    claim = Claim(1169, "c0ffee", host="majin", state="running")
    failed = replace(claim, land="check-failed", land_tip=TIP, land_note="the check failed")
    assert decide(detail(failed), flow="merge", named=False)[0] == "refuse"  # not re-run
    assert decide(detail(failed), flow="merge", named=True)[0] == "merge"  # asked: try again
    assert decide(detail(replace(failed, land_tip=BASE)), flow="merge", named=False)[0] == "merge"
    pr = replace(claim, land="pr-open", land_tip=TIP, pr="12")
    assert decide(detail(pr), flow="pull-request", named=True)[0] == "leave"
    assert decide(detail(replace(pr, land_tip=BASE)), flow="pull-request",
                  named=True)[0] == "update-pr"
    merged = detail(pr)
    merged.pr_state = "merged"
    assert decide(merged, flow="pull-request", named=True) == (
        "cleanup", "pull request #12 is merged")
    closed = detail(pr)
    closed.pr_state = "closed"
    assert decide(closed, flow="pull-request", named=True)[0] == "refuse"


class GitHub(JSONHandler):
    posted: ClassVar[list[dict]] = []
    status: ClassVar[int] = 201

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        GitHub.posted.append(doc)
        if GitHub.status == 201:
            return self.reply(201, {"number": 7, "state": "open", "merged": False,
                                    "html_url": "https://github.com/acme/app/pull/7"})
        self.reply(GitHub.status, {"message": "Validation Failed",
                                   "errors": [{"message": "A pull request already exists"}]})

    def do_GET(self) -> None:
        if self.path.startswith("/api/v3/repos/acme/app/pulls?"):
            return self.reply(200, [{"number": 5, "state": "open",
                                     "html_url": "https://github.com/acme/app/pull/5"}])
        number = int(self.path.rsplit("/", 1)[1])
        merged = number == 5
        self.reply(200 if number in (5, 6) else 404, {
            "number": number, "state": "closed", "merged": merged,
            "merged_at": "2026-12-04T00:00:00Z" if merged else None})


@pytest.fixture(scope="module")
def api() -> Iterator[GitHubSource]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield GitHubSource("acme/app", f"http://127.0.0.1:{server.server_port}/api/v3", "tok")
    finally:
        server.shutdown()
        server.server_close()


def test_pull_requests_opened_found_and_asked(api: GitHubSource) -> None:
    GitHub.status = 201
    pr, created = open_pull(api, head="issue/1169", base="main", title="T", body="B")
    assert (pr.number, pr.state, created) == (7, "open", True)
    assert GitHub.posted[-1] == {"title": "T", "head": "issue/1169", "base": "main", "body": "B"}
    GitHub.status = 422  # one is already open for the branch: that one
    pr, created = open_pull(api, head="issue/1169", base="main", title="T", body="B")
    assert (pr.number, created) == (5, False)
    GitHub.status = 403
    with pytest.raises(PullError, match="HTTP 403 \\(the token may be read-only\\)"):
        open_pull(api, head="issue/1169", base="main", title="T", body="B")
    with pytest.raises(PullError, match="no GitHub token"):
        open_pull(replace(api, token=None), head="h", base="main", title="T", body="B")
    assert pull_state(api, 5).state == "merged" and pull_state(api, 6).state == "closed"
    assert pull_states(api, {1169: 5, 1170: 6, 1171: 404}) == {1169: "merged", 1170: "closed"}


def test_body_keeps_hostile_text_in_fences() -> None:
    text = fenced(["```", "# not a heading", "````` five"])
    fence = text.splitlines()[0].removesuffix("text")
    assert fence == "`" * 6 and text.endswith("\n" + fence)
    body = pull_body(1169, ["From majin."], ["abc @someone #12 </details>"], ["a.py | +1 -0"])
    assert body.startswith("Closes #1169\n")
    assert "```text\nabc @someone #12 </details>\n```" in body


def test_a_merged_branch_makes_its_issue_done() -> None:
    graph = Graph.build([Issue(1, "one"), Issue(2, "two", depends=(1,)), Issue(3, "three"),
                         Issue(4, "parent"), Issue(5, "kid", parent=4)])
    assert open_issues(graph) == [1, 2, 3, 5]
    marked = with_merged(graph, MergedBoard({1: TIP, 9: TIP}, main=BASE), "origin", "main")
    states = {s.issue.number: s for s in marked.states()}
    assert states[1].status == "done"
    assert states[1].describe() == f"done (merged into origin/main: issue/1 at {TIP[:12]})"
    assert states[2].status == "ready"
    assert with_merged(graph, MergedBoard(error="x"), "origin", "main") is graph


def test_tell_and_land_write_only_in_the_run_directory_launch_made() -> None:
    from miyabi_ctl.dispatch.show import run_dir

    assert run_dir(assignment(log="/r/.runs/issue-1169/agent.log")) == "/r/.runs/issue-1169"
    for log in ("/home/me/.ssh/agent.log", "/r/.runs/issue-1170/agent.log", None,
                "/r/.runs/issue-1169/../../.ssh/.runs/issue-1169/agent.log"):
        assert run_dir(assignment(log=log)) is None, log
