"""`check` read as a monitoring system reads it.

The parser below is written from the monitoring-plugins development guidelines (section "Plugin
Output for Nagios" and "Threshold and Ranges"), not from our code:

- output ``TEXT | PERFDATA``; perfdata is space-separated ``'label'=value[UOM];[warn];[crit];[min];[max]``;
  a label with spaces is single-quoted; ``=`` and ``'`` are not allowed in it;
- a range is ``[@]start:end``: ``start`` defaults to 0, ``~`` is negative infinity, an empty end
  is positive infinity, start <= end; a bare ``N`` means ``0:N``; it alerts when the value is
  *outside* start..end (inclusive), or with ``@`` *inside* it.

Each figure is judged by its own range; the worst of them must be the state `check` reports for
the thresholds it covers (load, sessions, uncommitted).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from miyabi_ctl.inventory import parse_inventory
from miyabi_ctl.probe.agents import AgentSession
from miyabi_ctl.probe.report import ProbeReport, RepoState
from miyabi_ctl.status.check import PERF_BUDGET, TEXT_BUDGET, check_line
from miyabi_ctl.status.collect import FleetStatus
from miyabi_ctl.status.health import HostStatus, evaluate

# -- a strict reader of plugin output -------------------------------------------------------------

_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_PERF = re.compile(rf"^(?:'(?P<q>[^'=]+)'|(?P<u>[^'= ]+))=(?P<value>{_NUMBER})(?P<uom>[a-zA-Z%]*)"
                   rf";(?P<warn>[^;]*);(?P<crit>[^;]*);(?P<min>{_NUMBER})?;(?P<max>{_NUMBER})?$")
_RANGE = re.compile(rf"^(?P<at>@)?(?:(?P<start>~|{_NUMBER}):)?(?P<end>{_NUMBER})?$")


def parse_range(text: str) -> tuple[bool, float, float]:
    """(inside, start, end): alert when the value is outside start..end (inside with ``@``)."""
    match = _RANGE.match(text)
    assert match and text not in ("", "@"), f"not a range: {text!r}"
    if match["start"] is None and ":" not in text:
        start = 0.0
    elif match["start"] == "~":
        start = -math.inf
    else:
        start = float(match["start"])
    end = math.inf if match["end"] is None else float(match["end"])
    assert start <= end, f"range start > end: {text!r}"
    return bool(match["at"]), start, end


def alerts(value: float, text: str) -> bool:
    inside, start, end = parse_range(text)
    within = start <= value <= end
    return within if inside else not within


def parse_output(out: str) -> tuple[str, str, dict[str, dict[str, str]]]:
    """(state, text, {label: fields}); asserts the format is one line and well formed."""
    assert "\n" not in out.rstrip("\n"), "one line"
    text, _, perf = out.rstrip("\n").partition("|")
    assert "|" not in perf, "a second '|' on the first line"
    state = re.match(r"^MIYABI (OK|WARNING|CRITICAL|UNKNOWN) - ", text)
    assert state, text
    metrics: dict[str, dict[str, str]] = {}
    for item in re.findall(r"'[^']*'=\S*|\S+", perf.strip()):
        match = _PERF.match(item)
        assert match, f"malformed perfdata {item!r}"
        label = match["q"] or match["u"]
        assert label not in metrics, f"duplicate label {label}"
        metrics[label] = match.groupdict()
    return state[1], text, metrics


def perf_state(metrics: dict[str, dict[str, str]]) -> str:
    state = "OK"
    for m in metrics.values():
        value = float(m["value"])
        if m["crit"] and alerts(value, m["crit"]):
            return "CRITICAL"
        if m["warn"] and alerts(value, m["warn"]):
            state = "WARNING"
    return state


def test_the_range_reader_follows_the_guidelines() -> None:
    """The guidelines' own table of examples."""
    assert [alerts(v, "10") for v in (-1, 0, 10, 11)] == [True, False, False, True]
    assert [alerts(v, "10:") for v in (9, 10, 1e9)] == [True, False, False]
    assert [alerts(v, "~:10") for v in (-1e9, 10, 11)] == [False, False, True]
    assert [alerts(v, "10:20") for v in (9, 10, 20, 21)] == [True, False, False, True]
    assert [alerts(v, "@10:20") for v in (9, 10, 20, 21)] == [False, True, True, False]
    with pytest.raises(AssertionError):
        parse_range("20:10")


# -- fleets built from parts --------------------------------------------------------------------

FLEET = """
thresholds:
  load_per_core: [1.0, 2.0]
  uncommitted: [10, 100]
  sessions_over_max: [1, 2]
hosts:
  h: {ssh: h, max_sessions: 3}
"""


def _fleet(yaml_text: str, reports: dict[str, ProbeReport | None]) -> tuple[FleetStatus, object]:
    inventory = parse_inventory(yaml_text, Path("fleet.yaml"))
    hosts = []
    for spec in inventory.hosts:
        report = reports.get(spec.name)
        status = HostStatus(spec=spec, report=report)
        if report is not None:
            status.findings = evaluate(spec, report, inventory)
        hosts.append(status)
    return FleetStatus(datetime.now(UTC), hosts), inventory


def _report(*, load: float = 0.5, cpus: int = 1, sessions: int = 0, uncommitted: int = 0,
            branch: str = "main") -> ProbeReport:
    return ProbeReport(
        load_avg=(load, load, load), cpu_count=cpus,
        sessions=[AgentSession(100 + i, 1, "claude", 60, "/r", "claude") for i in range(sessions)],
        repo=RepoState(path="/r", branch=branch, head="a" * 40, uncommitted=uncommitted,
                       main_ahead=0, main_behind=0, ahead=0, behind=0, conflicted=0))


@pytest.mark.parametrize("figures", [
    *({"sessions": n} for n in range(0, 9)),
    *({"uncommitted": n} for n in (0, 1, 9, 10, 11, 99, 100, 101)),
    *({"load": x, "cpus": 4} for x in (3.99, 4.0, 4.01, 7.98, 8.0, 8.02)),
    *({"load": x, "cpus": 3} for x in (2.99, 3.0, 5.99, 6.0)),
])
def test_perfdata_ranges_reach_the_state_check_reports(figures: dict) -> None:
    """At, below and above each threshold (`mugen_sessions=3;3;4` was OK to Nagios, WARNING to us)."""
    fleet, inventory = _fleet(FLEET, {"h": _report(**figures)})
    line, code = check_line(fleet, inventory)  # type: ignore[arg-type]
    state, _text, metrics = parse_output(line)
    assert perf_state(metrics) == state, (figures, line)
    assert code == {"OK": 0, "WARNING": 1, "CRITICAL": 2}[state]


@pytest.mark.parametrize("thresholds", [
    "load_per_core: [0.75, 1.5]\n  uncommitted: [2.5, 7]\n  sessions_over_max: [0, 1.5]",
    "load_per_core: [1, 1]\n  uncommitted: [0, 5]\n  sessions_over_max: [2, 3]",
])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 7, 8])
def test_odd_thresholds_still_agree(thresholds: str, n: int) -> None:
    text = f"thresholds:\n  {thresholds}\nhosts:\n  h: {{ssh: h, max_sessions: 3}}\n"
    fleet, inventory = _fleet(text, {"h": _report(sessions=n, uncommitted=n, load=n * 0.5,
                                                  cpus=2)})
    state, _text, metrics = parse_output(check_line(fleet, inventory)[0])  # type: ignore[arg-type]
    assert perf_state(metrics) == state


def test_a_pipe_in_a_branch_name_stays_out_of_the_perfdata() -> None:
    """`agent|fix` is a legal git branch name; a raw `|` would start the perfdata early."""
    report = _report(branch="agent|fix")
    assert report.repo is not None
    report.repo.main_behind = 2
    fleet, inventory = _fleet("hosts:\n  h: {ssh: h}\n", {"h": report})
    line, _code = check_line(fleet, inventory)  # type: ignore[arg-type]
    state, text, metrics = parse_output(line)
    assert state == "WARNING" and "agent¦fix" in text
    assert set(metrics) == {"h_load", "h_load_per_core", "h_sessions", "h_uncommitted"}


def test_two_hundred_hosts_stay_within_the_budget_and_count_the_rest() -> None:
    hosts = "".join(f"  host-{i:03d}: {{ssh: h{i}, max_sessions: 2}}\n" for i in range(200))
    reports = {f"host-{i:03d}": _report(sessions=9, uncommitted=300, load=40, cpus=8,
                                        branch=f"feat/very-long-branch-name-{i}")
               for i in range(200)}
    reports["host-007"] = None  # unreachable
    fleet, inventory = _fleet("hosts:\n" + hosts, reports)
    line, code = check_line(fleet, inventory)  # type: ignore[arg-type]
    state, text, metrics = parse_output(line)
    assert code == 2 and state == "CRITICAL"
    assert len(text.encode()) <= TEXT_BUDGET
    assert re.search(r"and \d+ more hosts \(\d+ critical", text), text[-200:]
    # per-host perfdata would not fit: the fleet totals, whole
    assert len(line.encode()) - len(text.encode()) <= PERF_BUDGET + 3
    assert metrics["hosts_critical"]["value"] == "199" and metrics["hosts_unreachable"]["value"] == "1"
    assert metrics["sessions"]["value"] == str(199 * 9)


def test_one_host_is_one_service() -> None:
    fleet, inventory = _fleet(FLEET, {"h": _report()})
    state, text, metrics = parse_output(check_line(fleet, inventory)[0])  # type: ignore[arg-type]
    assert (state, text.strip()) == ("OK", "MIYABI OK - h ok")
    assert metrics["h_sessions"]["warn"] == "3" and metrics["h_sessions"]["crit"] == "5"
