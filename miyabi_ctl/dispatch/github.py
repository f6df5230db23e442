"""GitHub as a backlog source: open issues over the REST API, turned into ``Issue`` values.

urllib only (no extra dependency). ``api_url`` points at GitHub Enterprise
(``https://ghe.example.com/api/v3``). The token goes to ``api_url``'s own origin only, over https
(plain http only to a loopback address, for tests): it comes from the variable named by
``backlog.token_env``, else ``$GITHUB_TOKEN`` for github.com (``$GH_ENTERPRISE_TOKEN`` /
``$GITHUB_ENTERPRISE_TOKEN`` for another host), else ``gh auth token --hostname <that host>``; a
redirect or a ``Link`` to another origin is followed without it (urllib would otherwise copy the
``Authorization`` header to wherever a redirect points). Open issues are read page by page
following the ``Link`` header; pull requests (which the issues endpoint also returns) are skipped.
An issue referenced as a dependency but not open is fetched on its own: closed means done, 404
means an unknown reference; a reference to a pull request is a dependency on that pull request
(merged = done, otherwise it blocks).

What the labels and bodies mean, following Miyabi's conventions:
- priority from labels: ``🔥 priority:P0-Critical``, ``priority:P0``, ``P0``, ``p0`` → P0;
- needs from labels ``needs:<tag>``; the agent from ``agent:<name>``; the estimate from
  ``estimate:<duration>`` (``estimate:4h``);
- dependencies from body lines ``depends: #N``, ``Depends on #N``, ``Blocked by #N``,
  ``Requires #N`` (also as task-list items, and with several references on one line);
- a task list of bare references (``- [ ] #N``) makes the issue a tracking issue, its parent;
  so does GitHub's own sub-issue count (``sub_issues_summary.total``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from miyabi_ctl.dispatch.estimate import parse_estimate
from miyabi_ctl.dispatch.issue import DEFAULT_PRIORITY, BacklogError, Issue, normalise_priority

DEFAULT_API = "https://api.github.com"
_DEPENDS_RE = re.compile(r"\b(?:depends(?:\s+on)?|blocked\s+by|requires)\b\s*:?", re.IGNORECASE)
_REF_RE = re.compile(r"(?<![\w/])#(\d+)\b")
_CHILD_RE = re.compile(r"^\s*[-*+]\s+\[[ xX]\]\s+#(\d+)\b")
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


@dataclass(frozen=True)
class GitHubSource:
    """Where the issues live: ``owner/name`` on ``api_url``, read with ``token``."""

    repo: str
    api_url: str = DEFAULT_API
    token: str | None = None


def backlog_source(backlog: dict[str, Any]) -> GitHubSource | None:
    """fleet.yaml's GitHub backlog (``backlog:`` section), or None when it is not on GitHub:
    its repository, API and the token for ``api_url``'s own host (issues, labels and pull
    requests all use this one, so a github.com token never reaches an Enterprise server)."""
    if not backlog.get("github"):
        return None
    api_url = backlog.get("api_url") or DEFAULT_API
    return GitHubSource(backlog["github"], api_url, resolve_token(backlog.get("token_env"), api_url))


Origin = tuple[str, str, int]  # scheme, lower-case host, port


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of a URL, the default port filled in: what "same origin" compares."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise BacklogError(f"backlog.api_url {url!r} has a bad port") from None
    return scheme, (parts.hostname or "").lower(), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(api_url: str) -> Origin:
    """The API's origin; https required (plain http only to a loopback address, for tests),
    since the token and the issue texts that become agents' prompts travel over it."""
    scheme, host, port = origin_of(api_url)
    if not host or scheme not in ("https", "http"):
        raise BacklogError(f"backlog.api_url {api_url!r} is not an http(s) URL")
    if scheme == "http" and not _is_loopback(host):
        raise BacklogError(f"backlog.api_url {api_url!r}: plain http is refused (the token and "
                           "the issues would travel unencrypted); use https://")
    return scheme, host, port


def gh_hostname(api_url: str) -> str:
    """The host ``gh`` knows the token by: github.com for api.github.com, ``X.ghe.com`` for
    ``api.X.ghe.com``, else the API's own host (GitHub Enterprise Server)."""
    host = origin_of(api_url)[1]
    if host == "api.github.com":
        return "github.com"
    if host.startswith("api.") and host.endswith(".ghe.com"):
        return host[len("api."):]
    return host


def resolve_token(token_env: str | None = None, api_url: str = DEFAULT_API) -> str | None:
    """The token for ``api_url``'s host, else None (public repositories).

    ``token_env`` names the variable; without it, ``$GITHUB_TOKEN`` is used for github.com only
    and ``$GH_ENTERPRISE_TOKEN`` / ``$GITHUB_ENTERPRISE_TOKEN`` for any other host (as ``gh``
    does), so a github.com token is never sent to an Enterprise server by accident. Then
    ``gh auth token --hostname <host>``: the token gh holds for that host, not its default one."""
    check_api_url(api_url)
    hostname = gh_hostname(api_url)
    if token_env:
        names = [token_env]
    elif hostname == "github.com" or hostname.endswith(".ghe.com"):
        names = ["GITHUB_TOKEN"]
    else:
        names = ["GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"]
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    if shutil.which("gh"):
        try:
            proc = subprocess.run(["gh", "auth", "token", "--hostname", hostname],
                                  capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    return None


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but only a redirect to the API's own origin keeps ``Authorization``:
    urllib's own handler copies every header to wherever the redirect points."""

    def __init__(self, origin: Origin):
        self.origin = origin

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin_of(newurl) != self.origin:
            new.remove_header("Authorization")
        return new


def parse_depends(body: str) -> tuple[int, ...]:
    """Issue numbers this body says it depends on, in order of appearance, without repeats."""
    found: list[int] = []
    for line in (body or "").splitlines():
        match = _DEPENDS_RE.search(line)
        if not match:
            continue
        for ref in _REF_RE.findall(line[match.end():]):
            if int(ref) not in found:
                found.append(int(ref))
    return tuple(found)


def parse_children(body: str) -> tuple[int, ...]:
    """Issue numbers listed as bare task-list items (``- [ ] #N``): this issue tracks them."""
    found: list[int] = []
    for line in (body or "").splitlines():
        if _DEPENDS_RE.search(line):
            continue  # "- [ ] depends on #N" is a dependency, not a child
        match = _CHILD_RE.match(line)
        if match and int(match.group(1)) not in found:
            found.append(int(match.group(1)))
    return tuple(found)


def priority_from_labels(labels: list[str]) -> str:
    """The most urgent priority among the labels; P2 when none carries one."""
    found = [p for p in (normalise_priority(name) for name in labels) if p]
    return min(found) if found else DEFAULT_PRIORITY


def needs_from_labels(labels: list[str]) -> tuple[str, ...]:
    return tuple(name.split(":", 1)[1].strip() for name in labels
                 if name.lower().startswith("needs:") and name.split(":", 1)[1].strip())


def label_value(labels: list[str], key: str, where: str) -> str | None:
    """The value of the one label ``key:value`` (``agent:CodeGenAgent``); None when none; two
    different ones are an error naming the issue."""
    found = {name.split(":", 1)[1].strip() for name in labels
             if name.lower().startswith(f"{key}:") and name.split(":", 1)[1].strip()}
    if len(found) > 1:
        both = " and ".join(f"{key}:{value}" for value in sorted(found))
        raise BacklogError(f"{where}: labels {both} disagree; keep one")
    return found.pop() if found else None


def estimate_from_labels(labels: list[str], where: str) -> str | None:
    estimate = label_value(labels, "estimate", where)
    if estimate is not None:
        try:
            parse_estimate(estimate)
        except ValueError as exc:
            raise BacklogError(f"{where}: label estimate:{estimate}: {exc}") from None
    return estimate


def issue_from_json(doc: dict[str, Any], repo: str = "") -> Issue:
    """One issue object of the REST API as an ``Issue`` (parent is filled in by the caller).

    A pull request (only ever fetched as a dependency) is done when merged; open, or closed
    without being merged, it blocks what depends on it. It is never dispatched itself."""
    labels = [label["name"] if isinstance(label, dict) else str(label)
              for label in doc.get("labels") or []]
    body = doc.get("body") or ""
    where = f"GitHub {repo}: issue #{doc['number']}" if repo else f"GitHub issue #{doc['number']}"
    pull = doc.get("pull_request")
    if isinstance(pull, dict):
        merged = bool(pull.get("merged_at"))
        return Issue(number=int(doc["number"]), title=str(doc.get("title") or ""),
                     labels=tuple(labels), state="closed" if merged else "open",
                     pull_request="merged" if merged else (
                         "closed" if doc.get("state") == "closed" else "open"))
    return Issue(
        number=int(doc["number"]),
        title=str(doc.get("title") or ""),
        body=body,
        priority=priority_from_labels(labels),
        depends=parse_depends(body),
        needs=needs_from_labels(labels),
        labels=tuple(labels),
        state="closed" if doc.get("state") == "closed" else "open",
        estimate=estimate_from_labels(labels, where),
        agent=label_value(labels, "agent", where),
    )


class GitHubClient:
    """The few REST calls the backlog needs."""

    def __init__(self, source: GitHubSource, timeout: float = 20.0):
        self.source = source
        self.timeout = timeout
        self.base = source.api_url.rstrip("/")
        self.origin = check_api_url(self.base)
        self._opener = urllib.request.build_opener(_TokenStaysHome(self.origin))

    def _get(self, url: str) -> tuple[Any, str | None]:
        """GET one URL; the token is attached only when the URL is on the API's own origin."""
        home = origin_of(url) == self.origin
        request = urllib.request.Request(url, headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "miyabi-ctl",
            **({"Authorization": f"Bearer {self.source.token}"}
               if self.source.token and home else {}),
        })
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read().decode("utf-8")
                link = response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            detail = ""
            with contextlib.suppress(ValueError, OSError, AttributeError):
                detail = json.loads(exc.read().decode("utf-8")).get("message", "")
            raise GitHubHTTPError(exc.code, f"GitHub {self.source.repo}: HTTP {exc.code} "
                                            f"for {url}" + (f": {detail}" if detail else "")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BacklogError(f"GitHub {self.source.repo}: cannot reach {self.base}: {reason}") from None
        try:
            return json.loads(body), link
        except ValueError:
            raise BacklogError(f"GitHub {self.source.repo}: {url} did not return JSON") from None

    def repo_url(self, path: str) -> str:
        owner, _, name = self.source.repo.partition("/")
        return (f"{self.base}/repos/{urllib.parse.quote(owner, safe='')}/"
                f"{urllib.parse.quote(name, safe='')}{path}")

    def open_issues(self) -> list[dict[str, Any]]:
        """Every open issue (not pull request), following ``rel="next"`` links."""
        url: str | None = self.repo_url("/issues?state=open&per_page=100")
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            page, link = self._get(url)
            if not isinstance(page, list):
                raise BacklogError(f"GitHub {self.source.repo}: expected a list of issues")
            found.extend(item for item in page if "pull_request" not in item)
            match = _LINK_NEXT_RE.search(link or "")
            url = match.group(1) if match else None
        return found

    def issue(self, number: int) -> dict[str, Any] | None:
        """One issue or pull request by number, or None when it does not exist (404, 410).

        A pull request's ``pull_request.merged_at`` says whether it was merged; a server too old
        to send it is asked ``/pulls/N`` (``merged``)."""
        try:
            doc, _ = self._get(self.repo_url(f"/issues/{number}"))
            if not isinstance(doc, dict):
                raise BacklogError(f"GitHub {self.source.repo}: expected issue #{number}")
            pull = doc.get("pull_request")
            if isinstance(pull, dict) and "merged_at" not in pull and doc.get("state") == "closed":
                detail, _ = self._get(self.repo_url(f"/pulls/{number}"))
                pull["merged_at"] = detail.get("merged_at") if isinstance(detail, dict) else None
        except GitHubHTTPError as exc:
            if exc.status in (404, 410):
                return None
            raise
        return doc


class GitHubHTTPError(BacklogError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def load_github_issues(source: GitHubSource) -> list[Issue]:
    """Open issues plus every issue they reference (to learn whether it is done)."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", source.repo):
        raise BacklogError(f"backlog.github must be owner/name, got {source.repo!r}")
    client = GitHubClient(source)
    docs = client.open_issues()
    issues = {int(d["number"]): issue_from_json(d, source.repo) for d in docs}
    parents: dict[int, int] = {}
    tracking: set[int] = set()
    for doc in docs:
        number = int(doc["number"])
        kids = parse_children(doc.get("body") or "")
        for child in kids:
            parents.setdefault(child, number)
        summary = doc.get("sub_issues_summary") or {}
        if kids or (isinstance(summary, dict) and summary.get("total")):
            tracking.add(number)
    wanted = ({d for i in issues.values() for d in i.depends} | set(parents)) - set(issues)
    for number in sorted(wanted):
        doc = client.issue(number)
        if doc is None:
            continue  # left out: the graph reports the reference as unknown
        issues[number] = issue_from_json(doc, source.repo)
    return [replace(issue, parent=parents.get(number), tracking=number in tracking)
            for number, issue in sorted(issues.items())]


# --------------------------------------------------------------------------------------------
# Writing: the assignment shown where people look (a label ``miyabi:<host>`` on the issue)


def assignment_label(host: str) -> str:
    return f"miyabi:{host}"


def _send(source: GitHubSource, method: str, path: str, doc: Any | None = None,
          timeout: float = 20.0) -> int:
    """One write request; its HTTP status (errors included), or raise BacklogError if GitHub
    cannot be reached. No token: nothing is sent (GitHub refuses anonymous writes anyway)."""
    client = GitHubClient(source, timeout)
    data = None if doc is None else json.dumps(doc).encode("utf-8")
    request = urllib.request.Request(client.repo_url(path), data=data, method=method, headers={
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "miyabi-ctl",
        "Authorization": f"Bearer {source.token}",
        **({"Content-Type": "application/json"} if data is not None else {}),
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BacklogError(f"cannot reach {client.base}: {reason}") from None


def label_assignment(source: GitHubSource, number: int, host: str, *, add: bool) -> str | None:
    """Add (or remove) the label ``miyabi:<host>`` on issue ``number``.

    A note when it could not be done — a read-only token gets 403 (or 404), which is expected:
    the claim on the remote is what counts, the label only shows it. None when done, or when
    there is no token (nothing is tried)."""
    if not source.token:
        return None
    label = assignment_label(host)
    try:
        if add:
            status = _send(source, "POST", f"/issues/{number}/labels", {"labels": [label]})
        else:
            status = _send(source, "DELETE", f"/issues/{number}/labels/"
                                             f"{urllib.parse.quote(label, safe='')}")
    except BacklogError as exc:
        return f"GitHub label {label} not {'set' if add else 'removed'}: {exc}"
    if 200 <= status < 300 or (not add and status == 404):  # 404 on removal: already gone
        return None
    hint = " (the token may be read-only)" if status in (403, 404) else ""
    return f"GitHub label {label} not {'set' if add else 'removed'}: HTTP {status}{hint}"


def closed_issues(source: GitHubSource, numbers: list[int]) -> set[int]:
    """Which of these issues (claimed, but not among the open ones) are closed: one request each.
    An issue that cannot be read is left out (its claim stays)."""
    client = GitHubClient(source)
    closed = set()
    for number in numbers:
        try:
            doc = client.issue(number)
        except BacklogError:
            continue
        if doc is not None and doc.get("state") == "closed":
            closed.add(number)
    return closed
