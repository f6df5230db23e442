"""`land` with a GitHub backlog: a local server in the REST API's shapes records the pull request
(title = the issue's, head issue/N, base main, a body that closes the issue, with the commits
shown verbatim); `runs` and `show` follow its state; once it is merged, `land` — or `dispatch
--apply`, which finds the issue closed — cleans up as recall does, and the label stays."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from tests.jsonserver import JSONHandler
from tests.lab.harness import Lab
from tests.lab.landing import LandLab, git, land_lab, refs
from tests.lab.test_json_contract_lab import validate

REPO = "/api/v3/repos/acme/app"
TITLE = "Serve [/api] from Lambda `now` <b>"


class GitHub(JSONHandler):
    """Issues #911 and #912; pull requests as POST /pulls makes them; labels accepted."""

    issues: ClassVar[dict[int, dict]] = {}
    pulls: ClassVar[dict[int, dict]] = {}
    posted: ClassVar[list[dict]] = []
    calls: ClassVar[list[tuple[str, str]]] = []

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        GitHub.calls.append(("GET", self.path))
        url = urlparse(self.path)
        if url.path == f"{REPO}/issues":
            return self.reply(200, [i for i in GitHub.issues.values() if i["state"] == "open"])
        if url.path.startswith(f"{REPO}/issues/"):
            number = int(url.path.rsplit("/", 1)[1])
            return self.reply(*((200, GitHub.issues[number]) if number in GitHub.issues
                                else (404, {"message": "Not Found"})))
        if url.path == f"{REPO}/pulls":
            head = parse_qs(url.query)["head"][0].split(":", 1)[1]
            return self.reply(200, [p for p in GitHub.pulls.values()
                                    if p["head"]["ref"] == head and p["state"] == "open"])
        if url.path.startswith(f"{REPO}/pulls/"):
            number = int(url.path.rsplit("/", 1)[1])
            return self.reply(200, GitHub.pulls[number])
        self.reply(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        GitHub.calls.append(("POST", self.path))
        doc = self._body()
        if self.path == f"{REPO}/pulls":
            assert self.headers["Authorization"] == "Bearer acme-token"
            GitHub.posted.append(doc)
            if any(p["head"]["ref"] == doc["head"] and p["state"] == "open"
                   for p in GitHub.pulls.values()):
                return self.reply(422, {"message": "Validation Failed", "errors": [{
                    "message": f"A pull request already exists for acme:{doc['head']}."}]})
            number = len(GitHub.pulls) + 1
            GitHub.pulls[number] = {
                "number": number, "state": "open", "merged": False, "merged_at": None,
                "title": doc["title"], "head": {"ref": doc["head"]}, "base": {"ref": doc["base"]},
                "html_url": f"https://github.com/acme/app/pull/{number}"}
            return self.reply(201, GitHub.pulls[number])
        self.reply(200, [{"name": n} for n in doc.get("labels", [])])

    def do_DELETE(self) -> None:
        GitHub.calls.append(("DELETE", self.path))
        self.reply(200, [])


def merge_pull(number: int, issue: int) -> None:
    GitHub.pulls[number].update(state="closed", merged=True, merged_at="2026-12-04T10:00:00Z")
    GitHub.issues[issue]["state"] = "closed"  # "Closes #N": GitHub closes the issue


@pytest.fixture(scope="module")
def gh(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LandLab]:
    GitHub.issues = {n: {"number": n, "title": TITLE if n == 911 else f"Issue {n}", "body": "",
                         "state": "open", "labels": []} for n in (911, 912)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_port}/api/v3"
    try:
        yield land_lab(lab, tmp_path_factory.mktemp("land-gh"), "ld-gh", [], extra={
            "backlog": {"github": "acme/app", "api_url": api, "token_env": "ACME_TOKEN"},
            "dispatch": {"test_command": "test -f issue-911.txt -o -f issue-912.txt"}})
    finally:
        server.shutdown()
        server.server_close()


ENV = {"ACME_TOKEN": "acme-token"}


def test_a_pull_request_is_opened_followed_and_cleaned_up_once_merged(gh: LandLab) -> None:
    gh.mode(911, "commit")
    proc = gh.cli("assign", "911", gh.host.name, "--apply", "--yes", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gh.wait_ended(911)
    tip = git(gh.host.repo, "rev-parse", "refs/heads/issue/911")
    main = git(gh.origin, "rev-parse", "refs/heads/main")

    proc = gh.cli("land", "911", "--apply", "--yes", "--json", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    validate("land", doc)
    assert doc["flow"] == "pull-request"
    assert [(r["result"], r["pr"]) for r in doc["results"]] == [("pr-opened", 1)]
    (posted,) = GitHub.posted
    assert (posted["title"], posted["head"], posted["base"]) == (TITLE, "issue/911", "main")
    body = posted["body"]
    assert body.startswith("Closes #911\n")
    assert "```text\n" + f"{tip[:12]} Add [/api] $(x) `id` for #911" in body  # verbatim, fenced
    assert "passed on" in body
    # issue/911 is on the remote (read back), main is not touched; the worktree stays.
    assert git(gh.origin, "rev-parse", "refs/heads/issue/911") == tip
    assert git(gh.origin, "rev-parse", "refs/heads/main") == main
    assert gh.worktree(911).exists()

    runs = json.loads(gh.cli("runs", "--json", env=ENV).stdout)
    validate("runs", runs)
    (run,) = [r for r in runs["runs"] if r["issue"] == 911]
    assert (run["lifecycle"], run["pr"], run["pr_state"]) == ("pr-open", 1, "open")
    shown = json.loads(gh.cli("show", "911", "--json", env=ENV).stdout)
    validate("show", shown)
    assert shown["pr_url"] == "https://github.com/acme/app/pull/1" and shown["check"]["rc"] == 0
    plan = json.loads(gh.cli("land", "--all", "--json", env=ENV).stdout)
    assert [(r["issue"], r["action"]) for r in plan["runs"]] == [(911, "leave")]

    merge_pull(1, 911)
    (run,) = [r for r in json.loads(gh.cli("runs", "--json", env=ENV).stdout)["runs"]
              if r["issue"] == 911]
    assert run["lifecycle"] == "pr-merged"
    proc = gh.cli("land", "911", "--apply", "--yes", "--json", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["result"] for r in json.loads(proc.stdout)["results"]] == ["cleaned"]
    assert not gh.worktree(911).exists()
    assert "refs/miyabi/claims/911" not in refs(gh.origin)
    (run,) = [r for r in json.loads(gh.cli("runs", "--json", env=ENV).stdout)["runs"]
              if r["issue"] == 911]
    assert run["lifecycle"] == "landed"
    assert not [c for c in GitHub.calls if c[0] == "DELETE"]  # the label stays


def test_dispatch_apply_cleans_up_a_run_whose_pull_request_was_merged(gh: LandLab) -> None:
    gh.mode(912, "commit")
    proc = gh.cli("assign", "912", gh.host.name, "--apply", "--yes", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gh.wait_ended(912)
    proc = gh.cli("land", "912", "--apply", "--yes", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    number = max(GitHub.pulls)
    merge_pull(number, 912)
    proc = gh.cli("dispatch", "--apply", "--yes", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "#912 ld-gh: cleaned" in proc.stdout
    assert not gh.worktree(912).exists()
    assert "refs/miyabi/claims/912" not in refs(gh.origin)


def test_a_push_the_remote_refuses_opens_nothing_and_says_why(gh: LandLab) -> None:
    """A pre-receive hook (branch protection, a quota) turns issue/913 away: land says the
    remote's words verbatim (never markup), opens no pull request, keeps the worktree and
    records nothing on the claim — `land` again tries again."""
    hook = gh.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n"
                    "  [ \"$ref\" = refs/heads/issue/913 ] && "
                    "{ echo '[red]frozen[/red]: issue/913 is protected' >&2; exit 1; }\n"
                    "done\nexit 0\n")
    hook.chmod(0o755)
    # filed now: the dispatch above would have launched it
    GitHub.issues[913] = {"number": 913, "title": "Issue 913", "body": "", "state": "open",
                          "labels": []}
    try:
        gh.mode(913, "commit")
        proc = gh.cli("assign", "913", gh.host.name, "--apply", "--yes", env=ENV)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        gh.wait_ended(913)
        posted = len(GitHub.posted)
        proc = gh.cli("land", "913", "--check", "true", "--apply", "--yes", "--json", env=ENV)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (result,) = json.loads(proc.stdout)["results"]
        assert result["result"] == "failed" and result["pr"] is None
        assert result["message"].startswith(
            "push of issue/913 to origin failed: [remote rejected] (pre-receive hook declined); "
            "the remote said: [red]frozen[/red]: issue/913 is protected"), result["message"]
        proc = gh.cli("land", "913", "--check", "true", "--apply", "--yes", env=ENV)  # verbatim
        assert "[red]frozen[/red]: issue/913 is protected" in proc.stdout, proc.stdout
        assert len(GitHub.posted) == posted
        assert "refs/heads/issue/913" not in refs(gh.origin)
        assert gh.worktree(913).exists()
        (run,) = [r for r in json.loads(gh.cli("runs", "--json", env=ENV).stdout)["runs"]
                  if r["issue"] == 913]
        assert run["lifecycle"] == "ended"
    finally:
        hook.unlink()
