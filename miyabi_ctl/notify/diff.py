"""What changed since the last look, and what each target has still to be told: pure functions of
the record, the new look and the time (unit-tested without a host or a sender).

Rules (docs/cron.md, "Push to your phone"):

- a host notifies every change of level (ok, warning, critical, unreachable), worse or better;
  a host seen for the first time is recorded silently, and one that left fleet.yaml forgotten;
- a run notifies when it enters one of ``NOTIFIED_RUN_STATES``; entering ``running`` (a launch,
  an answered question), ``recalled`` or ``released`` (the operator's own doing) is recorded
  silently; a run not looked at keeps its recorded state;
- a run seen for the first time notifies when its state does, once some command has looked at
  every run (``Record.all_runs``): an agent launched and finished between two looks is news;
- the first look ever records a baseline and sends nothing;
- changes wait per target until that target took them; a subject's waiting changes fold into
  one (ok → critical → ok is nothing to tell).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from miyabi_ctl.notify.seen import Seen

NOTIFIED_RUN_STATES = frozenset({
    "waiting", "ended", "ended-empty", "check-failed", "conflicts", "pr-open", "pr-merged",
    "pr-closed", "landed", "stale", "failed",
})


@dataclass(frozen=True)
class Change:
    """One subject's move: ``host:NAME`` or ``run:N``, from ``before`` (None: first seen) to
    ``after``, first seen at ``at`` (ISO time); ``host``/``title``/``commits``/``reason`` say
    more (``reason``, ``title``: untrusted text)."""

    subject: str
    before: str | None
    after: str
    at: str
    reason: str = ""
    host: str = ""
    title: str = ""
    commits: int | None = None

    @property
    def is_run(self) -> bool:
        return self.subject.startswith("run:")

    @property
    def name(self) -> str:
        return self.subject.split(":", 1)[1]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Change:
        return Change(**{k: doc[k] for k in Change.__dataclass_fields__ if k in doc})


@dataclass
class Record:
    """What the state directory remembers for one fleet: the last level of each host, the last
    lifecycle key of each run, and each target's changes not yet delivered (by target id)."""

    hosts: dict[str, str] = field(default_factory=dict)
    runs: dict[int, str] = field(default_factory=dict)
    all_runs: bool = False
    pending: dict[str, list[Change]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "runs": {str(n): s for n, s in self.runs.items()},
                "all_runs": self.all_runs,
                "pending": {t: [c.to_json() for c in cs] for t, cs in self.pending.items()}}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Record:
        return Record(hosts={str(k): str(v) for k, v in doc.get("hosts", {}).items()},
                      runs={int(k): str(v) for k, v in doc.get("runs", {}).items()},
                      all_runs=bool(doc.get("all_runs")),
                      pending={t: [Change.from_json(c) for c in cs]
                               for t, cs in doc.get("pending", {}).items()})


def compare(record: Record | None, seen: Seen, *, now: str,
            fleet_hosts: set[str] | None = None) -> tuple[list[Change], Record]:
    """Every move since ``record`` (``queue`` keeps those worth telling), and the record after
    this look. ``record`` None: the first look ever (a baseline: no move at all).
    ``fleet_hosts``: the hosts still in fleet.yaml (the others are forgotten)."""
    old = record or Record()
    changes: list[Change] = []
    hosts = {n: lv for n, lv in old.hosts.items() if fleet_hosts is None or n in fleet_hosts}
    for name, host in seen.hosts.items():
        before = hosts.get(name)
        if before is not None and before != host.level:
            changes.append(Change(f"host:{name}", before, host.level, now, reason=host.reason))
        hosts[name] = host.level
    runs = dict(old.runs)
    for issue, run in sorted(seen.runs.items()):
        before = runs.get(issue)
        # every move is passed on (``queue`` folds it into what waits, then drops what is not
        # worth telling); a run first seen only once every run has been looked at before
        if before != run.state and (before is not None or (
                old.all_runs and run.state in NOTIFIED_RUN_STATES)):
            changes.append(Change(f"run:{issue}", before, run.state, now, host=run.host,
                                  title=run.title, commits=run.commits))
        runs[issue] = run.state
    return changes, Record(hosts, runs, old.all_runs or seen.all_runs, dict(old.pending))


def worth_telling(change: Change) -> bool:
    if change.before == change.after:
        return False
    return change.after in NOTIFIED_RUN_STATES if change.is_run else True


def queue(waiting: list[Change], changes: list[Change]) -> list[Change]:
    """A target's waiting changes with ``changes`` folded in: one per subject, from the first
    state it had not been told about to the latest; what folds back to nothing, or to a state
    not worth telling, is dropped."""
    by_subject = {c.subject: c for c in waiting}
    order = [c.subject for c in waiting]
    for change in changes:
        held = by_subject.get(change.subject)
        if held is None:
            if not worth_telling(change):
                continue
            order.append(change.subject)
            by_subject[change.subject] = change
        else:
            by_subject[change.subject] = replace(change, before=held.before, at=held.at)
    return [by_subject[s] for s in order if worth_telling(by_subject[s])]
