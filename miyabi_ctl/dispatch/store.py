"""This controller's cache of what it dispatched: one SQLite table of assignments.

The authority on who works on what is the claims on the repository's remote (``claims``); this
store only remembers what this controller launched, for its history, logs and notes. An assignment
is one issue given to one host: its worktree, branch, tmux session, the claim object it holds,
when it started, and its state — ``launching`` (claimed, agent starting), ``running``
(launched), ``failed`` (the launch did not succeed), ``recalled``, ``landed`` (its branch merged
into main, or its pull request merged, and cleaned up by ``land``), or ``released`` (its claim
left the remote without this controller: recalled elsewhere, cleared by hand). ``reconcile``
brings the cache in line with a fresh read of the claims, so a controller that was offline
catches up on its next command. The store lives in ``state_dir()/runs.sqlite``.

One controller may serve several fleets (several repositories): each assignment is filed under
its fleet's ``scope`` (``Inventory.scope``: the fleet file, or the repository the implicit fleet
looks at), and a store opened for a scope sees only that scope's assignments — so issue #5 of
one repository is never shown as assigned in another's, not even from the cache when the
claims cannot be read. Rows from before scopes existed are adopted: an active one holding a
claim by the fleet whose remote holds that claim (the first read that sees it), the others by
the first fleet that opens the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.state import state_dir

ACTIVE = ("launching", "running")
ENDED = ("failed", "recalled", "released", "landed")

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
    note     TEXT,
    claim    TEXT,
    scope    TEXT
);
CREATE TABLE IF NOT EXISTS unreachable (
    claim    TEXT PRIMARY KEY,
    since    REAL NOT NULL
);
"""

# One active assignment per issue of a fleet (made after the scope column: see RunStore).
ACTIVE_INDEX = """
DROP INDEX IF EXISTS one_active_assignment_per_issue;
CREATE UNIQUE INDEX IF NOT EXISTS one_active_assignment_per_scope_issue
    ON assignments(IFNULL(scope, ''), issue) WHERE state IN ('launching', 'running');
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
    claim: str | None = None  # the claim object on the remote this assignment holds
    scope: str | None = None  # the fleet it was made for (Inventory.scope)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def store_path() -> Path:
    return state_dir() / "runs.sqlite"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """Assignments on this controller, of one fleet (``scope``; None: every fleet's). A
    connection per call: safe from the fleet's threads."""

    def __init__(self, path: Path | None = None, *, scope: str | None = None):
        self.path = path or store_path()
        self.scope = scope
        with self._db() as db:
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(assignments)")}
            if "claim" not in columns:  # a store made before claims existed
                db.execute("ALTER TABLE assignments ADD COLUMN claim TEXT")
            if "scope" not in columns:  # … or before one controller served several fleets
                db.execute("ALTER TABLE assignments ADD COLUMN scope TEXT")
            db.executescript(ACTIVE_INDEX)
            if scope is not None:  # rows from before scopes: the first fleet takes them
                db.execute("UPDATE assignments SET scope = ? WHERE scope IS NULL AND NOT "
                           "(claim IS NOT NULL AND state IN ('launching', 'running'))", (scope,))

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
              branch: str, session: str, claim: str | None = None) -> Assignment:
        """Record a new active assignment, or raise AlreadyAssigned if the issue has one."""
        try:
            with self._db() as db:
                cursor = db.execute(
                    "INSERT INTO assignments (issue, title, host, agent, worktree, branch, session,"
                    " started, state, claim, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'launching', ?,"
                    " ?)", (issue, title, host, agent, worktree, branch, session, _now(), claim,
                            self.scope))
                row_id = cursor.lastrowid
        except sqlite3.IntegrityError:
            current = self.active_for(issue)
            where = f" to {current.host} ({current.session})" if current else ""
            raise AlreadyAssigned(f"issue #{issue} is already assigned{where}") from None
        assert row_id is not None
        return self.get(row_id)

    def mark_running(self, row_id: int, *, worktree: str, base: str | None,
                     log: str | None, claim: str | None = None) -> Assignment:
        with self._db() as db:
            db.execute("UPDATE assignments SET state = 'running', worktree = ?, base = ?, log = ?,"
                       " claim = COALESCE(?, claim) WHERE id = ?",
                       (worktree, base, log, claim, row_id))
        return self.get(row_id)

    def follow_claim(self, row_id: int, claim: str) -> None:
        """The assignment's claim was replaced (``land`` or ``tell`` recorded something on it):
        remember the new object, so the cache does not take the old one's absence for a
        release."""
        with self._db() as db:
            db.execute("UPDATE assignments SET claim = ? WHERE id = ?", (claim, row_id))

    def end(self, row_id: int, state: str, note: str | None = None) -> Assignment:
        """Close an assignment as ``failed`` or ``recalled``; the issue becomes free again."""
        if state not in ENDED:
            raise ValueError(f"{state!r} is not an end state")
        with self._db() as db:
            db.execute("UPDATE assignments SET state = ?, ended = ?, note = ? WHERE id = ?",
                       (state, _now(), note, row_id))
        return self.get(row_id)

    def remember_ended(self, assignment: Assignment, state: str, note: str | None = None
                       ) -> Assignment:
        """Keep another controller's run (known from its claim) in this cache's history, ended
        as ``state`` here (e.g. ``landed`` by this controller)."""
        if state not in ENDED:
            raise ValueError(f"{state!r} is not an end state")
        a = assignment
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO assignments (issue, title, host, agent, worktree, branch, session,"
                " base, log, started, state, ended, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)", (a.issue, a.title, a.host, a.agent, a.worktree, a.branch, a.session,
                              a.base, a.log, a.started or _now(), state, _now(), note))
            row_id = cursor.lastrowid
        assert row_id is not None
        return self.get(row_id)

    def get(self, row_id: int) -> Assignment:
        with self._db() as db:
            row = db.execute("SELECT * FROM assignments WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise KeyError(row_id)
        return Assignment(**dict(row))

    def all(self) -> list[Assignment]:
        """This fleet's assignments (every fleet's when the store has no scope), oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM assignments WHERE ?1 IS NULL OR scope = ?1 "
                              "ORDER BY started, id", (self.scope,)).fetchall()
        return [Assignment(**dict(r)) for r in rows]

    def active(self) -> list[Assignment]:
        return [a for a in self.all() if a.active]

    def active_for(self, issue: int) -> Assignment | None:
        return next((a for a in self.active() if a.issue == issue), None)

    def by_claim(self, oid: str) -> Assignment | None:
        """Our assignment holding claim object ``oid``, if this controller made it."""
        return next((a for a in self.active() if a.claim == oid), None)

    def reconcile(self, held: dict[int, str], read_at: datetime | None = None
                  ) -> list[Assignment]:
        """Bring the cache in line with the remote (``held``: issue → claim object, as read from
        ``read_at`` on this controller's clock).

        An active assignment of ours whose claim is no longer on the remote was recalled through
        another controller or cleared by hand: it ends as ``released``. Left alone: assignments
        made before claims existed (no claim recorded), and those started since the read began
        (by a concurrent command of this controller: the read could not see their claim yet).
        Rows from before scopes whose claim is among ``held`` are this fleet's: adopted first.
        Returns those ended."""
        if self.scope is not None and held:
            with self._db() as db:
                db.executemany("UPDATE assignments SET scope = ? WHERE scope IS NULL AND claim = ?",
                               [(self.scope, oid) for oid in held.values()])
        cutoff = (read_at - timedelta(seconds=1)).isoformat(timespec="seconds") if read_at else None
        ended = []
        for a in self.active():
            if cutoff is not None and a.started >= cutoff:
                continue
            if a.claim and held.get(a.issue) != a.claim:
                ended.append(self.end(a.id, "released", "its claim is no longer on the remote "
                                      "(recalled from another controller, or cleared by hand)"))
        return ended

    def unreachable_since(self, claims: set[str], now: float) -> dict[str, float]:
        """When this controller first saw each claim's host unreachable (its own clock only);
        sightings of other claims are forgotten (their hosts answered again, or they ended)."""
        with self._db() as db:
            db.executemany("INSERT OR IGNORE INTO unreachable (claim, since) VALUES (?, ?)",
                           [(c, now) for c in claims])
            rows = db.execute("SELECT claim, since FROM unreachable").fetchall()
            gone = [(r["claim"],) for r in rows if r["claim"] not in claims]
            db.executemany("DELETE FROM unreachable WHERE claim = ?", gone)
        return {r["claim"]: r["since"] for r in rows if r["claim"] in claims}

    def sighting(self, claim: str, now: float) -> float:
        """When this controller first saw ``claim``'s host unreachable (now, if this is the first
        time); the other sightings are kept."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO unreachable (claim, since) VALUES (?, ?)",
                       (claim, now))
            row = db.execute("SELECT since FROM unreachable WHERE claim = ?", (claim,)).fetchone()
        return float(row["since"])
