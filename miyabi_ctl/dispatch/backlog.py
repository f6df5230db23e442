"""Where the backlog comes from: a ``backlog.yaml`` file, or GitHub (``miyabi_ctl.dispatch.github``).

Either way the issues become ``Issue`` values (``issue``), then one ``Graph`` (``graph``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from miyabi_ctl.dispatch.estimate import parse_estimate
from miyabi_ctl.dispatch.issue import DEFAULT_PRIORITY, BacklogError, Issue, NoBacklog, normalise_priority

if TYPE_CHECKING:
    from miyabi_ctl.inventory import Inventory

ISSUE_KEYS = {"number", "title", "body", "priority", "parent", "depends", "needs", "labels",
              "state", "estimate", "agent"}


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
        estimate=_estimate(entry.get("estimate"), where),
        agent=None if entry.get("agent") is None else _string(entry["agent"], f"{where}: 'agent'"),
    )


def _estimate(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        parse_estimate(value)
    except ValueError as exc:
        raise BacklogError(f"{where}: {exc}") from None
    return str(value)


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
        from miyabi_ctl.dispatch.github import backlog_source, load_github_issues

        source = backlog_source(settings)
        assert source is not None
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
