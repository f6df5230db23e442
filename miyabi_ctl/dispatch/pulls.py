"""Pull requests on GitHub for ``land`` (GitHub backlog): open one for ``issue/N`` that closes the
issue, and ask where it stands (open, merged, closed) for ``runs``, ``show`` and the next ``land``.

The REST calls of GitHub's pulls API (``POST /repos/{owner}/{repo}/pulls``, ``GET …/pulls/N``,
``GET …/pulls?head=owner:branch``), over the backlog's API origin with its token only
(``github``'s rules: https, the token never follows a redirect off the origin). Issue titles,
commit subjects and file names are data: JSON values, and in the body inside code fences longer
than any run of backticks in them, so GitHub shows them as they are, never as markdown.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from miyabi_ctl.dispatch.github import GitHubClient, GitHubSource, _TokenStaysHome, backlog_source
from miyabi_ctl.dispatch.issue import BacklogError
from miyabi_ctl.dispatch.run_views import PullStates
from miyabi_ctl.inventory import Inventory

STATES = ("open", "merged", "closed")


class PullError(BacklogError):
    """GitHub would not open or show the pull request."""

    exit_code = 1


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str  # open | merged | closed (without merging)


def _request(source: GitHubSource, method: str, path: str, doc: Any = None,
             timeout: float = 20.0) -> tuple[int, Any]:
    """One call; (HTTP status, the JSON it answered, or None). Raise PullError when GitHub
    cannot be reached."""
    client = GitHubClient(source, timeout)
    opener = urllib.request.build_opener(_TokenStaysHome(client.origin))
    data = None if doc is None else json.dumps(doc).encode("utf-8")
    request = urllib.request.Request(client.repo_url(path), data=data, method=method, headers={
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "miyabi-ctl",
        **({"Authorization": f"Bearer {source.token}"} if source.token else {}),
        **({"Content-Type": "application/json"} if data is not None else {}),
    })
    try:
        with opener.open(request, timeout=timeout) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), b""
        with contextlib.suppress(OSError):
            raw = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise PullError(f"GitHub {source.repo}: cannot reach {client.base}: "
                        f"{getattr(exc, 'reason', exc)}") from None
    try:
        return status, json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return status, None


def _from_json(doc: Any) -> PullRequest:
    if not isinstance(doc, dict) or not isinstance(doc.get("number"), int):
        raise PullError("GitHub answered something that is not a pull request")
    merged = bool(doc.get("merged") or doc.get("merged_at"))
    state = "merged" if merged else ("closed" if doc.get("state") == "closed" else "open")
    return PullRequest(doc["number"], str(doc.get("html_url") or ""), state)


def _message(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    errors = [e.get("message", "") for e in doc.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(m for m in [str(doc.get("message") or ""), *errors] if m)


def find_open_pull(source: GitHubSource, head: str) -> PullRequest | None:
    """The open pull request from branch ``head`` of the repository itself, if any."""
    owner = source.repo.split("/", 1)[0]
    query = urllib.parse.urlencode({"head": f"{owner}:{head}", "state": "open"})
    status, doc = _request(source, "GET", f"/pulls?{query}")
    if status == 200 and isinstance(doc, list) and doc:
        return _from_json(doc[0])
    return None


def open_pull(source: GitHubSource, *, head: str, base: str, title: str, body: str
              ) -> tuple[PullRequest, bool]:
    """Open a pull request of ``head`` into ``base``; (it, True) — or the one already open for
    ``head`` (it, False). Raise PullError with GitHub's reason otherwise."""
    if not source.token:
        raise PullError("no GitHub token: a pull request cannot be opened "
                        "(backlog.token_env, $GITHUB_TOKEN or `gh auth login`)")
    status, doc = _request(source, "POST", "/pulls",
                           {"title": title, "head": head, "base": base, "body": body})
    if status == 201:
        return _from_json(doc), True
    if status == 422:  # "A pull request already exists for owner:issue/N", among others
        existing = find_open_pull(source, head)
        if existing is not None:
            return existing, False
    hint = " (the token may be read-only)" if status in (403, 404) else ""
    reason = _message(doc)
    raise PullError(f"GitHub {source.repo}: cannot open a pull request for {head}: HTTP "
                    f"{status}{hint}" + (f": {reason}" if reason else ""))


def pull_state(source: GitHubSource, number: int) -> PullRequest:
    status, doc = _request(source, "GET", f"/pulls/{number}")
    if status != 200:
        raise PullError(f"GitHub {source.repo}: pull request #{number}: HTTP {status}")
    return _from_json(doc)


def pull_states(source: GitHubSource, numbers: dict[int, int]) -> dict[int, str]:
    """{issue: PR number} → {issue: open | merged | closed}; one request each, those that cannot
    be read left out (their state is then what ``land`` recorded)."""
    found = {}
    for issue, number in numbers.items():
        with contextlib.suppress(BacklogError):
            found[issue] = pull_state(source, number).state
    return found


def pull_lookup(inventory: Inventory) -> PullStates | None:
    """With a GitHub backlog, how ``runs`` and ``show`` ask where the runs' pull requests stand."""
    source = backlog_source(inventory.backlog)
    if source is None:
        return None
    return lambda numbers: pull_states(source, numbers)


def fenced(lines: list[str]) -> str:
    """Lines in a code fence longer than any run of backticks in them (CommonMark): shown as
    they are, whatever they hold."""
    text = "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def pull_body(issue: int, summary: list[str], commits: list[str], files: list[str]) -> str:
    """``Closes #N``, what ``show`` says of the run (``summary``), its commits and files."""
    parts = [f"Closes #{issue}", "", *summary, ""]
    if commits:
        parts += [f"Commits ({len(commits)}):", "", fenced(commits), ""]
    if files:
        parts += ["Files:", "", fenced(files), ""]
    parts.append("Opened by miyabi-ctl land.")
    return "\n".join(parts)
