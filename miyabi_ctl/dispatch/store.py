"""The controller's memory of what it dispatched: one SQLite table of assignments.

An assignment is one issue given to one host: its worktree, branch, tmux session, when it
started, and its state — ``launching`` (claimed, agent starting), ``running`` (launched),
``failed`` (the launch did not succeed) or ``recalled``. At most one assignment per issue is
*active* (launching or running); a unique index enforces it, so two dispatches racing for the same
issue cannot both claim it. The store lives in ``state_dir()/runs.sqlite``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.state import state_dir

ACTIVE = ("launching", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    id       INTEGER PRIMARY KEY,
    issue    INTEGER NOT NULL,
    title    TEXT NOT NULL DEFAULT '',
    host     TEXT NOT NULL,
    agent    TEXT NOT NULL,
    worktree TEXT NOT NULL,
    branch   TEXT NOT NULL,
    session  TEXT NOT NULL,
    base     TEXT,
    log      TEXT,
    started  TEXT NOT NULL,
    state    TEXT NOT NULL,
    ended    TEXT,
    note     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_assignment_per_issue
    ON assignments(issue) WHERE state IN ('launching', 'running');
"""


class AlreadyAssigned(MiyabiError):
    """The issue already has an active assignment."""

    exit_code = 1


@dataclass(frozen=True)
class Assignment:
    id: int
    issue: int
    title: str
    host: str
    agent: str
    worktree: str
    branch: str
    session: str
    base: str | None
    log: str | None
    started: str
    state: str
    ended: str | None
    note: str | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def store_path() -> Path:
    return state_dir() / "runs.sqlite"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """Assignments on this controller. A connection per call: safe from the fleet's threads."""

    def __init__(self, path: Path | None = None):
        self.path = path or store_path()
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def claim(self, *, issue: int, title: str, host: str, agent: str, worktree: str,
              branch: str, session: str) -> Assignment:
        """Record a new active assignment, or raise AlreadyAssigned if the issue has one."""
        try:
            with self._db() as db:
                cursor = db.execute(
                    "INSERT INTO assignments (issue, title, host, agent, worktree, branch, session,"
                    " started, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'launching')",
                    (issue, title, host, agent, worktree, branch, session, _now()))
                row_id = cursor.lastrowid
        except sqlite3.IntegrityError:
            current = self.active_for(issue)
            where = f" to {current.host} ({current.session})" if current else ""
            raise AlreadyAssigned(f"issue #{issue} is already assigned{where}") from None
        assert row_id is not None
        return self.get(row_id)

    def mark_running(self, row_id: int, *, worktree: str, base: str | None,
                     log: str | None) -> Assignment:
        with self._db() as db:
            db.execute("UPDATE assignments SET state = 'running', worktree = ?, base = ?, log = ?"
                       " WHERE id = ?", (worktree, base, log, row_id))
        return self.get(row_id)

    def end(self, row_id: int, state: str, note: str | None = None) -> Assignment:
        """Close an assignment as ``failed`` or ``recalled``; the issue becomes free again."""
        if state in ACTIVE:
            raise ValueError(f"{state!r} is not an end state")
        with self._db() as db:
            db.execute("UPDATE assignments SET state = ?, ended = ?, note = ? WHERE id = ?",
                       (state, _now(), note, row_id))
        return self.get(row_id)

    def get(self, row_id: int) -> Assignment:
        with self._db() as db:
            row = db.execute("SELECT * FROM assignments WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise KeyError(row_id)
        return Assignment(**dict(row))

    def all(self) -> list[Assignment]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM assignments ORDER BY started, id").fetchall()
        return [Assignment(**dict(r)) for r in rows]

    def active(self) -> list[Assignment]:
        return [a for a in self.all() if a.active]

    def active_for(self, issue: int) -> Assignment | None:
        return next((a for a in self.active() if a.issue == issue), None)
