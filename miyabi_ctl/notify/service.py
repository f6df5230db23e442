"""One call per command: compare what it saw with the record, tell each target what changed (one
message), remember. A failed send is a warning for the caller to print, never an error: the
change waits for that target and goes out with the next command's message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from miyabi_ctl.dispatch.lifecycle import RUN_STATES
from miyabi_ctl.notify.diff import Change, compare, queue
from miyabi_ctl.notify.message import clean, compose, test_message
from miyabi_ctl.notify.record import Busy, load, locked, record_path, save, scope_of
from miyabi_ctl.notify.seen import Seen, hosts_seen, runs_seen
from miyabi_ctl.notify.send import Delivery, deliver, target_id

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.run_views import RunView
    from miyabi_ctl.dispatch.store import Assignment
    from miyabi_ctl.inventory import Inventory
    from miyabi_ctl.status.health import HostStatus

# Levels and run states that are bad news: such a message is sent as Apprise's warning type.
ALARMS = frozenset({"warning", "critical", "unreachable", "failed", "conflicts", "check-failed",
                    "stale", "pr-closed"})


def look(command: str, *, statuses: Iterable[HostStatus] = (), views: Iterable[RunView] = (),
         assignments: Iterable[Assignment] = (), moved: Mapping[int, str] | None = None,
         all_runs: bool = False) -> Seen:
    """What a command saw: hosts it judged (``statuses``), runs it looked at (``views``),
    assignments it knows without a look (``assignments``: only ended ones tell a state), and
    runs the command itself moved since its look (``moved``: issue -> lifecycle key, as
    ``land``'s outcomes; each needs a run seen in ``views`` or ``assignments``)."""
    runs = list(views)
    if assignments:
        from miyabi_ctl.dispatch.run_views import RunView

        runs += [RunView(a) for a in assignments]
    seen = runs_seen(runs) if runs else {}
    for issue, state in (moved or {}).items():
        if issue in seen and state in RUN_STATES:
            seen[issue] = replace(seen[issue], state=state)
    return Seen(command, hosts_seen(statuses), seen, all_runs)


def fleet_name(inventory: Inventory) -> str:
    return clean(str(inventory.source.resolve()) if inventory.source else "(this machine)")


def report_changes(inventory: Inventory, seen: Seen, *, now: datetime | None = None,
                   directory: Path | None = None) -> list[str]:
    """Tell fleet.yaml's ``notify:`` targets what changed since the last look; the warnings to
    print (a target that failed, a record that could not be kept). Nothing when no target is
    configured: no record is kept either."""
    if not inventory.notify:
        return []
    now = now or datetime.now(UTC)
    path = record_path(inventory, directory)
    try:
        with locked(path):
            return _under_lock(inventory, seen, path, now)
    except Busy as exc:
        return [f"notifications put off: another miyabi-ctl held {exc} too long; the next "
                "command tells what changed"]
    except OSError as exc:
        return [f"notifications not kept in {path}: {exc}"]


def _under_lock(inventory: Inventory, seen: Seen, path: Path, now: datetime) -> list[str]:
    before = load(path)
    changes, after = compare(before, seen, now=now.isoformat(timespec="seconds"),
                             fleet_hosts={h.name for h in inventory.hosts})
    warnings = []
    pending: dict[str, list[Change]] = {}
    for url in dict.fromkeys(inventory.notify):
        key = target_id(url)
        waiting = queue(after.pending.get(key, []), changes)
        if waiting:
            title, body = compose(waiting, now=now, command=seen.command,
                                  fleet=fleet_name(inventory))
            sent = deliver(url, title, body, alarm=any(c.after in ALARMS for c in waiting))
            if not sent.ok:
                warnings.append(f"notification to {sent.target} not sent ({clean(sent.error or '')});"
                                f" it is tried again with the next command")
                pending[key] = waiting
    after.pending = pending  # targets no longer in fleet.yaml are forgotten
    if before is None or after.to_json() != before.to_json():
        save(path, after, scope_of(inventory))
    return warnings


def send_test(inventory: Inventory) -> list[Delivery]:
    """`notify --test`: one test message to every target, each target's outcome."""
    title, body = test_message(fleet_name(inventory))
    return [deliver(url, title, body) for url in dict.fromkeys(inventory.notify)]


def waiting_changes(inventory: Inventory, directory: Path | None = None) -> dict[str, int]:
    """For `notify`: how many changes wait for each target (by URL), from the record."""
    record = load(record_path(inventory, directory))
    pending = record.pending if record else {}
    return {url: len(pending.get(target_id(url), [])) for url in dict.fromkeys(inventory.notify)}
