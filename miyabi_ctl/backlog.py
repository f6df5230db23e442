"""The backlog: issues, their priorities and the dependency graph that says which are ready.

Issues come from a backlog file (``backlog.yaml``) or from GitHub (``miyabi_ctl.github``); either
way they become ``Issue`` values and one ``Graph``. The graph is checked once, up front: a
dependency on an issue nobody knows, or a cycle, is an error naming the issues involved — a
dispatcher that silently treats a typo as "done" would launch work too early.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from miyabi_ctl.errors import MiyabiError

if TYPE_CHECKING:
    from miyabi_ctl.inventory import Inventory

PRIORITIES = ("P0", "P1", "P2", "P3")
DEFAULT_PRIORITY = "P2"
ISSUE_KEYS = {"number", "title", "body", "priority", "parent", "depends", "needs", "labels",
              "state", "estimate"}
_PRIORITY_RE = re.compile(r"(?<![A-Za-z0-9])p([0-3])(?![0-9])", re.IGNORECASE)


class BacklogError(MiyabiError):
    """The backlog cannot be read, or its graph is inconsistent (unknown issue, cycle)."""

    exit_code = 2


class NoBacklog(BacklogError):
    """No backlog is configured and none was found."""


@dataclass(frozen=True)
class Issue:
    """One unit of work. ``state`` is ``open`` or ``closed`` (closed = done)."""

    number: int
    title: str
    body: str = ""
    priority: str = DEFAULT_PRIORITY
    parent: int | None = None
    depends: tuple[int, ...] = ()
    needs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    state: str = "open"
    estimate: str | None = None
    tracking: bool = False  # known to have children even when they are not listed (GitHub sub-issues)

    @property
    def done(self) -> bool:
        return self.state == "closed"

    @property
    def rank(self) -> int:
        return PRIORITIES.index(self.priority)


def normalise_priority(text: str | None) -> str | None:
    """``🔥 priority:P0-Critical``, ``priority:P0``, ``P0``, ``p0`` → ``P0``; None if no priority."""
    if not text:
        return None
    match = _PRIORITY_RE.search(str(text))
    return f"P{match.group(1)}" if match else None


# --------------------------------------------------------------------------------------------
# The graph


@dataclass
class IssueState:
    """Where one issue stands: ``done``, ``tracking``, ``blocked``, ``ready`` or ``assigned``."""

    issue: Issue
    status: str
    blocked_by: tuple[int, ...] = ()
    children: tuple[int, ...] = ()
    unblocks: int = 0
    assigned_to: str | None = None

    def describe(self) -> str:
        if self.status == "blocked":
            return "blocked by " + ", ".join(f"#{n}" for n in self.blocked_by)
        if self.status == "assigned":
            return f"assigned to {self.assigned_to}"
        if self.status == "tracking":
            return f"tracking ({len(self.children)} children)" if self.children else "tracking"
        return self.status


@dataclass
class Graph:
    """The issues by number, validated: every reference known, no dependency cycle."""

    issues: dict[int, Issue]
    children: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, issues: Iterable[Issue]) -> Graph:
        by_number: dict[int, Issue] = {}
        for issue in issues:
            if issue.number in by_number:
                raise BacklogError(f"issue #{issue.number} is listed twice")
            by_number[issue.number] = issue
        children: dict[int, list[int]] = {}
        for issue in by_number.values():
            for dep in issue.depends:
                if dep not in by_number:
                    raise BacklogError(f"issue #{issue.number} depends on #{dep}, "
                                       "which is not in the backlog")
                if dep == issue.number:
                    raise BacklogError(f"issue #{issue.number} depends on itself")
            if issue.parent is not None:
                if issue.parent not in by_number:
                    raise BacklogError(f"issue #{issue.number} has parent #{issue.parent}, "
                                       "which is not in the backlog")
                children.setdefault(issue.parent, []).append(issue.number)
        graph = cls(by_number, {k: tuple(sorted(v)) for k, v in children.items()})
        cycle = graph.find_cycle()
        if cycle:
            raise BacklogError("dependency cycle: " + " → ".join(f"#{n}" for n in cycle))
        return graph

    def find_cycle(self) -> list[int] | None:
        """One dependency cycle as ``[a, b, …, a]``, or None. Deterministic: lowest numbers first."""
        colour: dict[int, int] = {}  # 1 = on the current path, 2 = finished
        path: list[int] = []

        def visit(number: int) -> list[int] | None:
            colour[number] = 1
            path.append(number)
            for dep in sorted(self.issues[number].depends):
                if colour.get(dep) == 1:
                    return [*path[path.index(dep):], dep]
                if dep not in colour:
                    found = visit(dep)
                    if found:
                        return found
            path.pop()
            colour[number] = 2
            return None

        for number in sorted(self.issues):
            if number not in colour:
                found = visit(number)
                if found:
                    return found
        return None

    def dependents(self, number: int) -> set[int]:
        """Every open issue that waits, directly or through others, on ``number``."""
        direct: dict[int, list[int]] = {}
        for issue in self.issues.values():
            for dep in issue.depends:
                direct.setdefault(dep, []).append(issue.number)
        seen: set[int] = set()
        todo = list(direct.get(number, []))
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(direct.get(current, []))
        return {n for n in seen if not self.issues[n].done}

    def state(self, number: int, assigned: dict[int, str] | None = None) -> IssueState:
        issue = self.issues[number]
        children = self.children.get(number, ())
        unblocks = len(self.dependents(number))
        if issue.done:
            return IssueState(issue, "done", children=children, unblocks=0)
        if children or issue.tracking:
            return IssueState(issue, "tracking", children=children, unblocks=unblocks)
        if assigned and number in assigned:
            return IssueState(issue, "assigned", assigned_to=assigned[number], unblocks=unblocks)
        open_deps = tuple(d for d in issue.depends if not self.issues[d].done)
        if open_deps:
            return IssueState(issue, "blocked", blocked_by=open_deps, unblocks=unblocks)
        return IssueState(issue, "ready", unblocks=unblocks)

    def states(self, assigned: dict[int, str] | None = None) -> list[IssueState]:
        """Every issue's state, in dispatch order: priority, then most unblocked work, then number."""
        return sorted((self.state(n, assigned) for n in self.issues), key=_order)

    def ready(self, assigned: dict[int, str] | None = None) -> list[IssueState]:
        """Open, not tracking, every dependency done, not already assigned — in dispatch order."""
        return [s for s in self.states(assigned) if s.status == "ready"]


def _order(state: IssueState) -> tuple[int, int, int]:
    return (state.issue.rank, -state.unblocks, state.issue.number)


# --------------------------------------------------------------------------------------------
# The backlog file


def load_backlog_file(path: str | Path) -> list[Issue]:
    """Read ``issues:`` from a backlog YAML file; every problem names the file and the issue."""
    path = Path(path).expanduser()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BacklogError(f"{path}: cannot read backlog: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BacklogError(f"{path}: not UTF-8 text (byte {exc.start}: "
                           f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise BacklogError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("issues"), list):
        raise BacklogError(f"{path}: a backlog file needs an 'issues:' list")
    return [_issue_from_dict(entry, path, i) for i, entry in enumerate(doc["issues"], 1)]


def _issue_from_dict(entry: Any, path: Path, index: int) -> Issue:
    where = f"{path}: issue {index}"
    if not isinstance(entry, dict):
        raise BacklogError(f"{where}: expected a mapping")
    unknown = set(entry) - ISSUE_KEYS
    if unknown:
        raise BacklogError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                           f"(allowed: {', '.join(sorted(ISSUE_KEYS))})")
    number = _number(entry.get("number"), f"{where}: 'number'")
    where = f"{path}: issue #{number}"
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        raise BacklogError(f"{where}: 'title' must be a non-empty string")
    raw_priority = entry.get("priority")
    priority = normalise_priority(str(raw_priority)) if raw_priority is not None else DEFAULT_PRIORITY
    if priority is None:
        raise BacklogError(f"{where}: priority {raw_priority!r} is not one of P0..P3")
    state = entry.get("state", "open")
    if state not in ("open", "closed"):
        raise BacklogError(f"{where}: state must be open or closed, got {state!r}")
    parent = entry.get("parent")
    return Issue(
        number=number,
        title=title,
        body=str(entry.get("body") or ""),
        priority=priority,
        parent=None if parent is None else _number(parent, f"{where}: 'parent'"),
        depends=tuple(_number(d, f"{where}: 'depends'") for d in _list(entry, "depends", where)),
        needs=tuple(_string(t, f"{where}: 'needs'") for t in _list(entry, "needs", where)),
        labels=tuple(_string(t, f"{where}: 'labels'") for t in _list(entry, "labels", where)),
        state=state,
        estimate=None if entry.get("estimate") is None else str(entry["estimate"]),
    )


def _number(value: Any, where: str) -> int:
    if isinstance(value, str) and value.startswith("#"):
        value = value[1:]
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BacklogError(f"{where}: expected an issue number, got {value!r}")
    return value


def _list(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BacklogError(f"{where}: {key!r} must be a list")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BacklogError(f"{where}: expected a non-empty string, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Where the backlog comes from


def load_backlog(inventory: Inventory, override: str | None = None) -> tuple[list[Issue], str]:
    """The issues and a description of their source.

    ``--backlog PATH`` wins; else fleet.yaml's ``backlog.github`` or ``backlog.file`` (relative to
    fleet.yaml); else a ``backlog.yaml`` beside fleet.yaml or in the current directory.
    """
    settings = inventory.backlog
    if override:
        return load_backlog_file(override), str(override)
    if settings.get("github") and settings.get("file"):
        raise BacklogError("fleet.yaml: backlog takes either 'file' or 'github', not both")
    if settings.get("github"):
        from miyabi_ctl.github import DEFAULT_API, GitHubSource, load_github_issues, resolve_token

        source = GitHubSource(settings["github"], settings.get("api_url") or DEFAULT_API,
                              resolve_token(settings.get("token_env")))
        return load_github_issues(source), f"github:{source.repo}"
    base = inventory.source.parent if inventory.source is not None else Path.cwd()
    if settings.get("file"):
        path = Path(settings["file"]).expanduser()
        path = path if path.is_absolute() else base / path
        return load_backlog_file(path), str(path)
    for candidate in (base / "backlog.yaml", Path("backlog.yaml")):
        if candidate.is_file():
            return load_backlog_file(candidate), str(candidate)
    raise NoBacklog("no backlog: pass --backlog PATH, or set backlog.file or backlog.github "
                    "in fleet.yaml")
