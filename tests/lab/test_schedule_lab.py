"""`schedule --json` on lab hosts of their own (prefix sc-): one-slot hosts, a 15-issue backlog
with a tracking issue, a closed one, tags, estimates in hours, days and minutes, one without an
estimate. Every rule is checked on the real output, the makespan against a lower bound computed
here from the backlog, and dispatch against the schedule's first step; then with a run already
launched (its slot held, its dependents after it) and another tool's session on a host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.test_dispatch_lab import install_fake_agent

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "schedule.schema.json").read_text())
HOURS = {"30m": 0.5, "3h": 3, "4h": 4, "6h": 6, "8h": 8, "12h": 12, "1d": 8, "2d": 16}

# number: (title, priority, estimate, depends, needs); 1600 is tracking, 1601 closed.
WORK = {
    1602: ("Schema", "P0", "4h", [], []),
    1603: ("API", "P1", "2d", [1602], []),
    1604: ("Worker pool", "P1", "1d", [1602], ["worktree"]),
    1605: ("UI [beta]", "P1", "12h", [1603], []),
    1606: ("Docs", "P2", "30m", [], []),
    1607: ("CI", "P2", "6h", [], []),
    1608: ("Cache", "P2", "1d", [1604], ["worktree"]),
    1609: ("Auth", "P1", "8h", [], []),
    1610: ("Audit log", "P1", "4h", [1609], []),
    1611: ("Metrics", "P2", "3h", [1607], []),
    1613: ("Load test", "P2", "1d", [1608, 1605], []),
    1614: ("Release", "P2", "4h", [1613, 1610, 1611, 1601], []),
    1615: ("Migration", "P1", "2d", [], ["worktree"]),
    1616: ("Ops runbook", "P2", "4h", [1600], []),  # waits for the whole epic
    1617: ("No estimate", "P3", None, [], []),
}
EPIC = (1602, 1603, 1605)


def backlog_doc() -> dict:
    issues = [{"number": 1600, "title": "Epic", "priority": "P0"},
              {"number": 1601, "title": "Done already", "state": "closed", "estimate": "1w"}]
    for number, (title, priority, estimate, depends, needs) in WORK.items():
        entry = {"number": number, "title": title, "priority": priority, "depends": depends,
                 "needs": needs}
        if estimate:
            entry["estimate"] = estimate
        if number in EPIC:
            entry["parent"] = 1600
        issues.append(entry)
    return {"issues": issues}


def effort(number: int) -> float:
    return HOURS[WORK[number][2] or "1d"]


def waits_on(number: int) -> list[int]:
    """The open issues that must end first (the epic stands for its children)."""
    found = []
    for dep in WORK[number][3]:
        found += list(EPIC) if dep == 1600 else [dep] if dep in WORK else []
    return found


def lower_bound(slots: int) -> float:
    """max(critical path, total work / slots), from the backlog alone."""
    finish: dict[int, float] = {}

    def end(number: int) -> float:
        if number not in finish:
            finish[number] = max((end(d) for d in waits_on(number)), default=0) + effort(number)
        return finish[number]

    return max(max(end(n) for n in WORK), sum(effort(n) for n in WORK) / slots)


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


def json_of(*args: str, state: Path) -> dict:
    proc = cli(*args, "--json", state=state)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)


@dataclass
class ScheduleLab:
    fleet_file: Path
    hosts: dict[str, LabHost]


def fleet(lab: Lab, base: Path, hosts: list[LabHost], tagged: str, backlog: Path,
          max_sessions: dict[str, int] | None = None) -> Path:
    return write_fleet(base / "fleet.yaml", lab, {
        h.name: ssh_entry(h, lab, max_sessions=(max_sessions or {}).get(h.name, 1),
                          tags=["linux", "worktree"] if h.name == tagged else ["linux"])
        for h in hosts}, extra=f"backlog:\n  file: {backlog}\n")


@pytest.fixture(scope="module")
def sc(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> ScheduleLab:
    hosts = lab.add_hosts(["sc-a", "sc-b", "sc-c", "sc-d"], cpus=4)
    # The tagged host is the least loaded: dispatch's rule alone would hand it untagged work.
    for host, load in zip(hosts, (0.1, 0.5, 0.8, 1.2), strict=True):
        host.set_load(load, load, load)
    base = tmp_path_factory.mktemp("sc")
    backlog = base / "backlog.yaml"
    backlog.write_text(yaml.safe_dump(backlog_doc(), sort_keys=False))
    return ScheduleLab(fleet(lab, base, hosts, "sc-a", backlog), {h.name: h for h in hosts})


def check_schedule(doc: dict, slots: dict[str, int], tagged: str) -> dict[int, dict]:
    """Every rule of the acceptance check, on the real output."""
    Draft202012Validator(SCHEMA, format_checker=FormatChecker()).validate(doc)
    items = {i["issue"]: i for i in doc["items"]}
    assert len(items) == len(doc["items"])
    assert set(items) == set(WORK) and not doc["unscheduled"]  # not 1600 (tracking), 1601 (closed)
    for number, item in items.items():
        if not item["running"]:
            assert item["effort_h"] == effort(number), number
        assert item["end_h"] == pytest.approx(item["start_h"] + item["effort_h"], abs=1e-3)
        for dep in waits_on(number):
            assert item["start_h"] >= items[dep]["end_h"] - 1e-9, (number, dep)
        if WORK[number][4]:
            assert item["host"] == tagged, number
        assert item["day"] == int(item["start_h"] // doc["hours_per_day"]) + 1
    for host, count in slots.items():
        spans = [(i["start_h"], i["end_h"]) for i in items.values() if i["host"] == host]
        for moment, _ in spans:
            assert sum(1 for a, b in spans if a <= moment < b) <= count, (host, moment)
    assert doc["makespan_h"] == max(i["end_h"] for i in items.values())
    assert items[1617]["default_estimate"] is True and items[1603]["effort_h"] == 16  # 2d
    return items


def test_schedule_json_on_one_slot_hosts(sc: ScheduleLab, tmp_path: Path) -> None:
    doc = json_of("schedule", "--fleet", str(sc.fleet_file), state=tmp_path)
    check_schedule(doc, dict.fromkeys(sc.hosts, 1), "sc-a")
    bound = lower_bound(slots=4)
    assert doc["lower_bound_h"] >= bound - 1e-9  # the command's own bound is at least as tight
    assert doc["makespan_h"] <= 1.10 * bound, (doc["makespan_h"], bound)
    assert doc["critical_path"] == [1602, 1603, 1605, 1613, 1614]
    assert doc["hours_per_day"] == 8 and doc["slots"] == 4 and doc["claims_error"] is None
    # Today's dispatch is the schedule's first step, issue for issue and host for host.
    plan = json_of("dispatch", "--fleet", str(sc.fleet_file), state=tmp_path)
    first = {i["issue"]: i["host"] for i in doc["items"] if i["start_h"] == 0}
    assert {a["issue"]: a["host"] for a in plan["assignments"]} == first
    explain = cli("dispatch", "--explain", "--fleet", str(sc.fleet_file), state=tmp_path).stdout
    assert "so these placements are the schedule's first ones" in " ".join(explain.split())


def test_schedule_table_and_hosts(sc: ScheduleLab, tmp_path: Path) -> None:
    proc = cli("schedule", "sc-a", "sc-b", "--fleet", str(sc.fleet_file), state=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = proc.stdout
    assert "UI [beta]" in out and "Gantt: one column = " in out and "Critical path: #1602" in out
    chart = out[out.index("Gantt:"):].splitlines()
    assert {line.split()[0] for line in chart[2:4]} == {"sc-a", "sc-b"}  # only the hosts named
    assert all(len(line) <= 80 for line in chart[1:4])
    assert "Note: no estimate, 1d (8h) assumed: #1617" in out


@pytest.fixture
def sc2(lab: Lab, tmp_path: Path) -> ScheduleLab:
    hosts = lab.add_hosts(["sc2-a", "sc2-b"], cpus=4)
    for host in hosts:
        install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump(backlog_doc(), sort_keys=False))
    # sc2-b: two sessions allowed, one taken by someone else's agent: one slot for this tool
    hosts[1].spawn_agent("claude")
    return ScheduleLab(fleet(lab, tmp_path, hosts, "sc2-a", backlog, {"sc2-b": 2}),
                       {h.name: h for h in hosts})


def test_a_running_issue_holds_its_slot_and_others_sessions_take_theirs(sc2: ScheduleLab,
                                                                         tmp_path: Path) -> None:
    fleet_args = ("--fleet", str(sc2.fleet_file))
    before = json_of("schedule", *fleet_args, state=tmp_path)
    check_schedule(before, {"sc2-a": 1, "sc2-b": 1}, "sc2-a")
    assert before["slots"] == 2  # sc2-b's other slot is the other agent's
    launched = cli("dispatch", "--apply", "--yes", "--max", "1", *fleet_args, state=tmp_path)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (first,) = [i for i in before["items"] if i["start_h"] == 0 and i["issue"] == 1602]
    after = json_of("schedule", *fleet_args, state=tmp_path)
    items = check_schedule(after, {"sc2-a": 1, "sc2-b": 1}, "sc2-a")
    running = items[1602]
    assert running["running"] is True and running["host"] == first["host"]
    assert running["start_h"] == 0 and 3.9 <= running["effort_h"] <= 4  # minutes have passed
    others = [i for i in items.values() if i["host"] == first["host"] and i["issue"] != 1602]
    assert all(i["start_h"] >= running["end_h"] for i in others)
    # dispatch now places what the schedule starts now, and not #1602 again
    plan = json_of("dispatch", *fleet_args, state=tmp_path)
    now = {i["issue"]: i["host"] for i in after["items"] if i["start_h"] == 0 and not i["running"]}
    assert {a["issue"]: a["host"] for a in plan["assignments"]} == now
    assert 1602 not in now
