"""Where what was last seen is kept: one JSON file per fleet in the state directory, written
atomically, read and written under a lock file so that two commands (cron's `check` and an
operator's `status`) never both send one change.

A fleet is its fleet file's absolute path with the repository it names (``repo.path``,
``repo.remote``, ``repo.main``): two fleets on one controller, or one file pointed at another
repository, keep separate records (``notify/<sha256 of those, 16 hex>.json``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miyabi_ctl.notify.diff import Record
from miyabi_ctl.state import state_dir

if TYPE_CHECKING:
    from miyabi_ctl.inventory import Inventory

VERSION = 1
LOCK_WAIT_S = 30.0  # a sender holds the lock at most ~8 s per target (Apprise's timeouts)


class Busy(Exception):
    """Another command held the lock for longer than ``LOCK_WAIT_S``."""


def scope_of(inventory: Inventory) -> dict[str, str]:
    """One record per fleet, as runs and the audit log are filed (``Inventory.scope``), and per
    repository it follows: pointing the fleet at another remote or main starts afresh."""
    return {"fleet": inventory.scope, "repo": inventory.repo.path, "remote": inventory.repo.remote,
            "main": inventory.repo.main}


def record_path(inventory: Inventory, directory: Path | None = None) -> Path:
    scope = json.dumps(scope_of(inventory), sort_keys=True)
    name = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return (directory or state_dir()) / "notify" / f"{name}.json"


@contextlib.contextmanager
def locked(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold ``<path>.lock`` (flock: released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{path}.lock") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def load(path: Path) -> Record | None:
    """The record, or None when there is none yet (the first look) or it cannot be read (a
    damaged file starts a new baseline rather than stopping every command)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Record.from_json(doc)
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def save(path: Path, record: Record, scope: dict[str, str]) -> None:
    """Write the whole record to a temporary file beside it, then rename it over the old one."""
    doc: dict[str, Any] = {"version": VERSION, "scope": scope, **record.to_json()}
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
