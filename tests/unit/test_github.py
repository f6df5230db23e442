"""The GitHub backlog source against a local HTTP server answering in the REST API's documented
shapes (issues list with Link pagination, label objects, pull requests carrying `pull_request`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from miyabi_ctl.dispatch.github import (
    GitHubSource,
    load_github_issues,
    needs_from_labels,
    parse_children,
    parse_depends,
    priority_from_labels,
)
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.dispatch.issue import BacklogError
from tests.jsonserver import JSONHandler

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_test_token"


def test_parse_depends_forms() -> None:
    body = """Build the API.

depends: #1167
Depends on #1168 and #1166
Blocked by #1172, #1173.
Requires #5
- [ ] depends on #6
- [x] Blocked by #7
See also #99 and other/repo#12; depends: other/repo#13
This requires care (no reference).
"""
    assert parse_depends(body) == (1167, 1168, 1166, 1172, 1173, 5, 6, 7)
    assert parse_depends("") == ()


def test_parse_children_is_a_task_list_of_bare_references() -> None:
    body = "Parent.\n\n- [ ] #1169 Lambda\n- [x] #1167\n* [ ] #1170\n- [ ] depends on #5\n- #8\n"
    assert parse_children(body) == (1169, 1167, 1170)


def test_labels() -> None:
    assert priority_from_labels(["bug", "🔥 priority:P0-Critical", "P2"]) == "P0"
    assert priority_from_labels(["⭐ priority:P1-High"]) == "P1"
    assert priority_from_labels(["bug"]) == "P2"
    assert needs_from_labels(["needs:worktree", "Needs: gpu", "needs:", "worktree"]) == (
        "worktree", "gpu")


def issue(number: int, title: str, *, body: str = "", labels: tuple[str, ...] = (),
          state: str = "open", **extra: object) -> dict:
    return {"number": number, "title": title, "body": body, "state": state,
            "labels": [{"id": i, "name": n, "color": "ededed"} for i, n in enumerate(labels)],
            "html_url": f"https://github.com/acme/app/issues/{number}", **extra}


OPEN_PAGE_1 = [
    issue(970, "Reconstruction", body="- [ ] #1169\n- [x] #1167\n", labels=("P0",)),
    issue(1169, "AWS Lambda + API Gateway", body="Depends on #1167\ndepends: #1168",
          labels=("🔥 priority:P0-Critical", "type:feature")),
]
OPEN_PAGE_2 = [
    issue(1174, "Parallel agents", body="Blocked by #1169", labels=("priority:P1", "needs:worktree")),
    issue(1200, "Fix the thing", labels=("bug",), pull_request={"url": "…/pulls/1200"}),
    issue(1300, "Epic with sub-issues", sub_issues_summary={"total": 3, "completed": 1,
                                                            "percent_completed": 33}),
]
SINGLE = {1167: issue(1167, "RDS", state="closed"), 1168: issue(1168, "Migrations", state="closed")}
# Pull requests as GET /issues/N returns them: `pull_request.merged_at` set only once merged.
PULLS = {
    1500: issue(1500, "Open PR", pull_request={"url": "…/pulls/1500", "merged_at": None}),
    1501: issue(1501, "Merged PR", state="closed",
                pull_request={"url": "…/pulls/1501", "merged_at": "2026-11-01T10:00:00Z"}),
    1502: issue(1502, "Abandoned PR", state="closed",
                pull_request={"url": "…/pulls/1502", "merged_at": None}),
    1503: issue(1503, "Merged PR, old server", state="closed",
                pull_request={"url": "…/pulls/1503"}),  # no merged_at: /pulls/1503 is asked
}


class Handler(JSONHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        Handler.seen.append((self.path, self.headers.get("Authorization")))
        url = urlparse(self.path)
        base = f"http://127.0.0.1:{self.server.server_port}/api/v3/repos/acme/app"
        if url.path == "/api/v3/repos/acme/app/issues":
            query = parse_qs(url.query)
            assert query["state"] == ["open"]
            page = int(query.get("page", ["1"])[0])
            body = OPEN_PAGE_1 if page == 1 else OPEN_PAGE_2
            link = (f'<{base}/issues?state=open&per_page=100&page=2>; rel="next", '
                    f'<{base}/issues?state=open&per_page=100&page=2>; rel="last"' if page == 1
                    else f'<{base}/issues?state=open&per_page=100&page=1>; rel="prev"')
            return self.reply(200, body, link)
        if url.path.startswith("/api/v3/repos/acme/app/issues/"):
            number = int(url.path.rsplit("/", 1)[1])
            if number in SINGLE:
                return self.reply(200, SINGLE[number])
            if number in PULLS:
                return self.reply(200, PULLS[number])
            return self.reply(404, {"message": "Not Found",
                                    "documentation_url": "https://docs.github.com/rest"})
        if url.path == "/api/v3/repos/acme/app/pulls/1503":
            return self.reply(200, {"number": 1503, "merged": True,
                                    "merged_at": "2026-10-01T10:00:00Z"})
        self.reply(404, {"message": "Not Found"})


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v3"
    finally:
        server.shutdown()
        server.server_close()


def test_github_issues_become_a_graph(api: str) -> None:
    Handler.seen.clear()
    issues = load_github_issues(GitHubSource("acme/app", api, TOKEN))
    by = {i.number: i for i in issues}
    assert sorted(by) == [970, 1167, 1168, 1169, 1174, 1300]  # the pull request is skipped
    assert by[1169].priority == "P0" and by[1169].depends == (1167, 1168)
    assert by[1169].parent == 970 and by[1167].parent == 970
    assert by[1174].needs == ("worktree",) and by[1174].priority == "P1"
    assert by[1167].state == "closed" and by[1168].done
    assert by[1300].tracking
    graph = Graph.build(issues)
    states = {s.issue.number: s.describe() for s in graph.states()}
    assert states == {970: "tracking (2 children)", 1300: "tracking",
                      1169: "ready", 1174: "blocked by #1169", 1167: "done", 1168: "done"}
    paths = [p for p, _ in Handler.seen]
    assert paths[:2] == ["/api/v3/repos/acme/app/issues?state=open&per_page=100",
                         "/api/v3/repos/acme/app/issues?state=open&per_page=100&page=2"]
    assert sorted(paths[2:]) == ["/api/v3/repos/acme/app/issues/1167",
                                 "/api/v3/repos/acme/app/issues/1168"]
    assert {auth for _, auth in Handler.seen} == {f"Bearer {TOKEN}"}


def test_unknown_reference_from_github_is_an_error(api: str) -> None:
    OPEN_PAGE_2.append(issue(1400, "Dangling", body="Requires #4040"))
    try:
        with pytest.raises(BacklogError, match="#1400 depends on #4040, which is not in the backlog"):
            Graph.build(load_github_issues(GitHubSource("acme/app", api, TOKEN)))
    finally:
        OPEN_PAGE_2.pop()


def test_unreachable_api_is_a_clear_error() -> None:
    with pytest.raises(BacklogError, match=r"GitHub acme/app: cannot reach http://127.0.0.1:9/api"):
        load_github_issues(GitHubSource("acme/app", "http://127.0.0.1:9/api", None))


def test_issues_command_reads_github_from_fleet_yaml(api: str, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("backlog:\n  github: acme/app\n  api_url: " + api + "\n"
                     "  token_env: ACME_TOKEN\nhosts:\n  here:\n    transport: local\n")
    Handler.seen.clear()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIYABI_STATE_DIR": str(tmp_path),
           "ACME_TOKEN": "from-env"}
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "issues", "--json", "--fleet",
                           str(fleet)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"] == "github:acme/app"
    assert [(i["number"], i["state"]) for i in doc["issues"]][:2] == [(1169, "ready"),
                                                                      (970, "tracking")]
    assert {auth for _, auth in Handler.seen} == {"Bearer from-env"}


def test_a_pull_request_dependency_blocks_until_merged(api: str) -> None:
    OPEN_PAGE_2.append(issue(1401, "Waits on PRs", body="Blocked by #1500\nDepends on #1501"))
    OPEN_PAGE_2.append(issue(1402, "Waits on an abandoned PR", body="Blocked by #1502"))
    OPEN_PAGE_2.append(issue(1403, "Waits on a merged PR", body="Requires #1503, #1501"))
    try:
        issues = load_github_issues(GitHubSource("acme/app", api, TOKEN))
    finally:
        del OPEN_PAGE_2[-3:]
    by = {i.number: i for i in issues}
    assert [by[n].pull_request for n in (1500, 1501, 1502, 1503)] == [
        "open", "merged", "closed", "merged"]
    states = {s.issue.number: s.describe() for s in Graph.build(issues).states()}
    assert states[1401] == "blocked by #1500"
    assert states[1402] == "blocked by #1502"
    assert states[1403] == "ready"
    assert states[1500] == "pull request (open)"
    assert states[1502] == "pull request (closed without merging)"
    assert states[1501] == states[1503] == "done"
    assert 1500 not in [s.issue.number for s in Graph.build(issues).ready()]


# -- the token stays on api_url's origin ------------------------------------------------------


class Recorder(JSONHandler):
    """A server that records who asked with which Authorization; `redirect_to` makes it answer
    every request with a 302 to that base URL (plus the path asked for)."""

    redirect_to: ClassVar[dict[int, str]] = {}
    seen: ClassVar[dict[int, list[tuple[str, str | None]]]] = {}

    def do_GET(self) -> None:
        port = self.server.server_port
        Recorder.seen.setdefault(port, []).append((self.path, self.headers.get("Authorization")))
        target = Recorder.redirect_to.get(port)
        if target is not None and not self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps([issue(1, "From wherever")] if "/issues?" in self.path
                          else issue(int(self.path.rsplit("/", 1)[1]), "x")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def servers() -> Iterator[list[int]]:
    started = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    Recorder.seen.clear()
    Recorder.redirect_to.clear()
    try:
        yield [s.server_port for s in started]
    finally:
        for server in started:
            server.shutdown()
            server.server_close()


def test_urllib_itself_forwards_the_token_on_a_redirect(servers: list[int]) -> None:
    """Why the client needs its own redirect handler: plain urllib copies Authorization to the
    other origin."""
    import urllib.request

    first, second = servers
    Recorder.redirect_to[first] = f"http://127.0.0.1:{second}"
    request = urllib.request.Request(f"http://127.0.0.1:{first}/api/repos/acme/app/issues/1",
                                     headers={"Authorization": "Bearer leaked"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
    assert Recorder.seen[second] == [("/api/repos/acme/app/issues/1", "Bearer leaked")]


def test_a_redirect_to_another_origin_never_carries_the_token(servers: list[int]) -> None:
    first, second = servers
    Recorder.redirect_to[first] = f"http://127.0.0.1:{second}"
    issues = load_github_issues(GitHubSource("acme/app", f"http://127.0.0.1:{first}/api", TOKEN))
    assert [i.title for i in issues] == ["From wherever"]  # followed, without the token
    assert Recorder.seen[first] == [("/api/repos/acme/app/issues?state=open&per_page=100",
                                     f"Bearer {TOKEN}")]
    assert Recorder.seen[second] == [("/api/repos/acme/app/issues?state=open&per_page=100", None)]


def test_a_redirect_within_the_origin_keeps_the_token(servers: list[int]) -> None:
    """GitHub answers a renamed repository with a 301 on its own origin: still authenticated."""
    from miyabi_ctl.dispatch.github import GitHubClient

    first, _ = servers
    base = f"http://127.0.0.1:{first}"
    Recorder.redirect_to[first] = base + "/moved"
    client = GitHubClient(GitHubSource("acme/app", f"{base}/api", TOKEN))
    doc, _ = client._get(f"{base}/api/repos/acme/app/issues/7")
    assert doc["number"] == 7
    assert Recorder.seen[first] == [("/api/repos/acme/app/issues/7", f"Bearer {TOKEN}"),
                                    ("/moved/api/repos/acme/app/issues/7", f"Bearer {TOKEN}")]


def test_a_next_page_on_another_origin_is_read_without_the_token(servers: list[int]) -> None:
    from miyabi_ctl.dispatch.github import GitHubClient

    first, second = servers
    client = GitHubClient(GitHubSource("acme/app", f"http://127.0.0.1:{first}/api", TOKEN))
    client._get(f"http://127.0.0.1:{second}/api/repos/acme/app/issues/3")
    assert Recorder.seen[second] == [("/api/repos/acme/app/issues/3", None)]


@pytest.mark.parametrize("url", ["http://api.github.com", "http://ghe.example.com/api/v3",
                                 "http://10.0.0.1/api/v3", "ftp://ghe.example.com/api"])
def test_plain_http_is_refused_except_to_loopback(url: str) -> None:
    from miyabi_ctl.dispatch.github import check_api_url, resolve_token

    with pytest.raises(BacklogError, match=r"plain http is refused|not an http"):
        load_github_issues(GitHubSource("acme/app", url, TOKEN))
    with pytest.raises(BacklogError):
        resolve_token(None, url)  # refused before any token is looked up
    for ok in ("https://ghe.example.com/api/v3", "http://127.0.0.1:8080/api",
               "http://[::1]:8080/api", "http://localhost/api"):
        check_api_url(ok)


def fake_gh(tmp_path: Path) -> Path:
    """A `gh` that records its argv and prints a token named after the --hostname it got."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" >>"$GH_ARGV_LOG"\n'
                  '[ "$1 $2 $3" = "auth token --hostname" ] || exit 4\necho "token-for-$4"\n')
    gh.chmod(0o755)
    return bindir


@pytest.mark.parametrize(("api_url", "hostname"), [
    ("https://api.github.com", "github.com"),
    ("https://ghe.example.com/api/v3", "ghe.example.com"),
    ("https://api.octo.ghe.com", "octo.ghe.com"),
])
def test_gh_is_asked_for_the_token_of_api_urls_host(api_url: str, hostname: str,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from miyabi_ctl.dispatch.github import resolve_token

    log = tmp_path / "argv"
    monkeypatch.setenv("PATH", f"{fake_gh(tmp_path)}:{os.environ['PATH']}")
    monkeypatch.setenv("GH_ARGV_LOG", str(log))
    for name in ("GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_token(None, api_url) == f"token-for-{hostname}"
    assert log.read_text().splitlines() == ["auth", "token", "--hostname", hostname]


def test_a_github_com_token_is_not_sent_to_an_enterprise_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from miyabi_ctl.dispatch.github import resolve_token

    monkeypatch.setenv("PATH", str(tmp_path))  # no gh
    monkeypatch.setenv("GITHUB_TOKEN", "dotcom")
    monkeypatch.delenv("GH_ENTERPRISE_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_ENTERPRISE_TOKEN", raising=False)
    assert resolve_token(None, "https://api.github.com") == "dotcom"
    assert resolve_token(None, "https://ghe.example.com/api/v3") is None
    monkeypatch.setenv("GH_ENTERPRISE_TOKEN", "ghe")
    assert resolve_token(None, "https://ghe.example.com/api/v3") == "ghe"
    assert resolve_token("GITHUB_TOKEN", "https://ghe.example.com/api/v3") == "dotcom"  # asked



def test_every_github_client_asks_for_its_own_servers_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issues, land's pull requests (backlog_source) and dispatch's labels (github_source)
    build their GitHub client from the fleet's backlog: an Enterprise api_url gets the
    Enterprise token, never $GITHUB_TOKEN."""
    from miyabi_ctl.dispatch.github import backlog_source
    from miyabi_ctl.dispatch.service import github_source
    from miyabi_ctl.inventory.parse import parse_inventory

    monkeypatch.setenv("PATH", str(tmp_path))  # no gh
    monkeypatch.setenv("GITHUB_TOKEN", "dotcom")
    monkeypatch.setenv("GH_ENTERPRISE_TOKEN", "ghe")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("backlog:\n  github: octo/repo\n  api_url: https://ghe.example.com/api/v3\n"
                     "hosts:\n  local:\n    transport: local\n")
    inventory = parse_inventory(fleet.read_text(), fleet)
    for source in (backlog_source(inventory.backlog), github_source(inventory)):
        assert source is not None and source.token == "ghe"
        assert source.api_url == "https://ghe.example.com/api/v3"
    assert backlog_source({"file": "backlog.yaml"}) is None
