"""The host's clean journal, reconciled into the audit log.

``backup.sh`` writes ``start ID TIME BRANCH HEAD`` to ``miyabi-ctl.journal`` in the
repository's git directory before a clean writes anything, ``done ID TIME`` right after, and
``nothing ID`` when it refused without writing. A controller stopped in between (Ctrl-C, a
crash) leaves a clean the audit log does not know, or knows only as ``unknown`` (the connection
closed before its end was seen); the next apply on that host reads the journal and records it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from miyabi_ctl import audit


def reconcile_journal(host: str, path: str, journal: list[str]) -> list[dict[str, Any]]:
    """Record the cleans the host's journal holds that the audit log does not (the controller
    was stopped, by Ctrl-C or a crash, between the clean and its audit entry), or holds only as
    ``unknown``. A clean that started without a ``done`` line ended in the middle: its outcome
    is ``unknown``. A clean logged ``unknown`` before it could start (no journal id) whose branch
    the journal does not name never started: ``skipped``."""
    started: dict[str, list[str]] = {}
    done: dict[str, list[str]] = {}
    for line in journal:
        word, _, rest = line.partition(" ")
        fields = rest.split(" ")
        if word == "start" and len(fields) >= 4:
            started[fields[0]] = fields
        elif word == "done" and len(fields) >= 2:
            done[fields[0]] = fields
        elif word == "nothing" and fields:
            started.pop(fields[0], None)  # refused before writing anything: already recorded
    cleans = [e for e in audit.entries() if e.get("action") == "backup.clean"
              and e.get("host") == host and e.get("path") == path and not e.get("worktree")]
    by_id = {e["journal"]: e for e in cleans if e.get("journal")}
    latest = {e.get("backup"): e for e in cleans}
    # Logged `unknown` before its journal id was seen: matched by its backup branch.
    unseen = {b: e for b, e in latest.items()
              if not e.get("journal") and e.get("result") == "unknown"}
    recorded = []
    for jid, (_, when, branch, head, *_rest) in started.items():
        end = done.get(jid)
        prior = by_id[jid] if jid in by_id else unseen.pop(branch, None)
        if prior is not None and (prior.get("result") != "unknown" or end is None):
            continue  # recorded as it ended, or as unknown and the journal knows no more
        at = dt.datetime.fromtimestamp(int(when), dt.UTC).isoformat() if when.isdigit() else when
        recorded.append(audit.record(
            host, "backup.clean", result="ok" if end else "unknown", path=path, backup=branch,
            before={"head": head},
            journal=jid, recovered=True,
            error=None if end else f"the clean started at {at} and its end was never recorded "
                                   "(the host or the controller stopped): check the tree"))
    named = {fields[2] for fields in started.values()}
    for branch, entry in unseen.items():
        if branch not in named:
            recorded.append(audit.record(
                host, "backup.clean", result="skipped", path=path, backup=branch,
                before=entry.get("before") or {}, recovered=True,
                error="the clean never started (the host's journal has no line of it): "
                      "nothing was cleaned"))
    return recorded
