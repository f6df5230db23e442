"""The audit log: one JSON line per applied step, appended, never rewritten.

Every destructive action records what it touched (host, action, refs and counts before and
after, result, error) so an operator can always answer "what did miyabi-ctl do to MAJIN?".
Each entry names the fleet it was made for (``scope``, ``Inventory.scope``, set once per command
with ``set_scope``): one controller may serve several fleets whose hosts share names.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.state import state_dir

_scope: str | None = None  # the fleet this process works for (one command: one fleet)


def set_scope(scope: str | None) -> None:
    """File every later entry under this fleet (``Inventory.scope``)."""
    global _scope
    _scope = scope


def in_scope(entry: dict[str, Any], scope: str | None) -> bool:
    """Is ``entry`` this fleet's? Entries from before scopes existed name none: they are every
    fleet's (nobody can tell whose they were)."""
    return scope is None or entry.get("scope") in (None, scope)


class AuditUnwritable(MiyabiError):
    """The audit log cannot be appended to: nothing may be changed, since it could not be told."""

    exit_code = 1


def audit_path() -> Path:
    return state_dir() / "audit.jsonl"


def ensure_writable() -> Path:
    """Check, before an apply changes anything, that its steps can be recorded.

    Every ``record`` happens after its remote change; without this check a full disk or a wrong
    ``$MIYABI_STATE_DIR`` would let a change happen and then lose its entry.
    """
    try:
        path = audit_path()
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        where = exc.filename or "the state directory"
        raise AuditUnwritable(f"cannot write the audit log ({where}: {exc.strerror or exc}); "
                              "nothing was changed") from None
    return path


def record(host: str, action: str, *, result: str, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, error: str | None = None,
           **details: Any) -> dict[str, Any]:
    """Append one entry; ``result`` is ``ok``, ``failed``, ``skipped`` or similar."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host,
        "action": action,
        "result": result,
        "before": before or {},
        "after": after or {},
        "error": error,
        "by": f"{_user()}@{socket.gethostname()}",
        **({"scope": _scope} if _scope is not None else {}),
        **details,
    }
    line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
    with audit_path().open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # many hosts finish at once; lines never interleave
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def entries(path: Path | None = None) -> Iterator[dict[str, Any]]:
    """Every entry, oldest first; a damaged line (not UTF-8, not JSON, not an object) is skipped."""
    path = path or audit_path()
    if not path.is_file():
        return
    with path.open("rb") as fh:
        for raw in fh:
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(entry, dict):
                yield entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
