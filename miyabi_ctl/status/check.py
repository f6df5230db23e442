"""`check`: the fleet as one monitoring-plugins line (``MIYABI <STATE> - <text> | <perfdata>``).

Written for what reads it (the monitoring-plugins development guidelines):

- the text never holds a raw ``|`` (a branch ``agent|fix`` would start the perfdata early): it is
  shown as ``¦``; the line is one line;
- each threshold is written so that a monitoring system reading warn/crit as a Nagios *range*
  ("alert when outside 0..N") reaches the state `check` reports: integer counts get the value one
  below the threshold (``uncommitted >= 10`` alerts, so ``9``: alert above 9); fractional values
  get the explicit range ``@T:`` (alert inside T..infinity, i.e. at T or above);
- the output is bounded: at most ``TEXT_BUDGET`` bytes of text (the hosts left out are counted),
  and the per-host perfdata is given whole, or — when it would pass ``PERF_BUDGET`` — left out in
  favour of fleet totals (monitor each host as its own service with ``check HOST``).
"""

from __future__ import annotations

import math

from miyabi_ctl.inventory import Inventory
from miyabi_ctl.status.collect import FleetStatus
from miyabi_ctl.status.health import HostStatus, session_limits

NAGIOS = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unreachable": "CRITICAL"}
NAGIOS_CODE = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
TEXT_BUDGET = 4000  # bytes of status text (Nagios 4 keeps 8 KB of plugin output in all)
PERF_BUDGET = 3900  # bytes of perfdata; beyond it only the fleet totals are given


def check_line(fleet: FleetStatus, inventory: Inventory) -> tuple[str, int]:
    """The plugin line and its exit code (0 OK, 1 WARNING, 2 CRITICAL)."""
    state = NAGIOS[fleet.level]
    line = f"MIYABI {state} - {_summary(fleet)}"
    perf = " ".join(p for h in fleet.hosts for p in host_perfdata(h, inventory))
    if len(perf.encode()) > PERF_BUDGET:
        perf = " ".join(fleet_perfdata(fleet))
    return (f"{line} | {perf}" if perf else line), NAGIOS_CODE[state]


def _summary(fleet: FleetStatus) -> str:
    """The hosts that are not ok, worst first, each with its problems, within TEXT_BUDGET."""
    bad = sorted((h for h in fleet.hosts if h.level != "ok"), key=lambda h: h.level == "warning")
    ok = len(fleet.hosts) - len(bad)
    if not bad:
        return f"{fleet.hosts[0].name} ok" if ok == 1 else f"{ok} hosts ok"
    tail = f"; {ok} ok" if ok else ""
    budget = TEXT_BUDGET - len("MIYABI CRITICAL - ") - len(tail)
    parts: list[str] = []
    used = 0
    for i, host in enumerate(bad):
        part = _cut(clean(f"{host.name} {NAGIOS[host.level]}: {', '.join(host.problems)}"), 600)
        reserve = len(_more(bad[i + 1:])) + 2 if i + 1 < len(bad) else 0
        if used + len(part.encode()) + reserve > budget:
            parts.append(_more(bad[i:]))
            break
        parts.append(part)
        used += len(part.encode()) + 2
    return "; ".join(parts) + tail


def _cut(text: str, limit: int) -> str:
    return text if len(text.encode()) <= limit else text.encode()[:limit - 3].decode(errors="ignore") + "…"


def _more(hosts: list[HostStatus]) -> str:
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h.level] = counts.get(h.level, 0) + 1
    what = ", ".join(f"{n} {level}" for level, n in counts.items())
    return f"and {len(hosts)} more hosts ({what})"


def clean(text: str) -> str:
    """One line without ``|``: the plugin format gives both a meaning."""
    return " ".join(text.split()).replace("|", "¦")


def at_least(threshold: float, *, integer: bool) -> str:
    """warn/crit for "alert when value >= threshold" as a Nagios range reads it.

    A bare ``N`` alerts outside 0..N, i.e. above N; for integer values ``>= T`` is ``> ceil(T)-1``.
    Otherwise (fractions, or a threshold at or below zero) the explicit ``@T:`` — alert inside
    T..infinity — says exactly the same."""
    if integer and threshold > 0:
        return str(math.ceil(threshold) - 1)
    return f"@{threshold:g}:"


def host_perfdata(host: HostStatus, inventory: Inventory) -> list[str]:
    """One host's metrics: load (raw), load_per_core, sessions, uncommitted."""
    report = host.report
    if report is None:
        return []
    label = host.name.replace("'", "_").replace("=", "_")
    out = []
    if report.load_avg:
        out.append(f"'{label}_load'={report.load_avg[0]:g};;;0;")
    if report.load_per_core is not None:
        warn, crit = inventory.thresholds.load_per_core
        out.append(f"'{label}_load_per_core'={report.load_per_core:g};"
                   f"{at_least(warn, integer=False)};{at_least(crit, integer=False)};0;")
    total = len(report.sessions)
    if host.spec.max_sessions is not None:
        # health: a finding only above max_sessions, then graded by session_limits.
        above = host.spec.max_sessions + 1
        warn, crit = (max(t, above) for t in session_limits(host.spec.max_sessions, inventory))
        out.append(f"'{label}_sessions'={total};{at_least(warn, integer=True)};"
                   f"{at_least(crit, integer=True)};0;")
    else:
        out.append(f"'{label}_sessions'={total};;;0;")
    if report.repo is not None and report.repo.uncommitted is not None:
        # health: no finding for a clean tree, whatever the thresholds say.
        warn, crit = (max(t, 1) for t in inventory.thresholds.uncommitted)
        out.append(f"'{label}_uncommitted'={report.repo.uncommitted};"
                   f"{at_least(warn, integer=True)};{at_least(crit, integer=True)};0;")
    return out


def fleet_perfdata(fleet: FleetStatus) -> list[str]:
    """Fleet totals, used when the per-host perfdata would not fit."""
    n = len(fleet.hosts)
    counts = {level: sum(h.level == level for h in fleet.hosts) for level in NAGIOS}
    sessions = sum(len(h.report.sessions) for h in fleet.hosts if h.report is not None)
    return [f"hosts_{level}={count};;;0;{n}" for level, count in counts.items()] + [
        f"sessions={sessions};;;0;"]
