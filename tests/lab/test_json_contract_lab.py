"""Every `--json` output, taken from the real CLI against lab hosts, validated against its JSON
Schema in docs/schemas/ (the contract docs/json.md describes) with the `jsonschema` library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from tests.lab.fleets import PlanFleet, ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.lab.test_dispatch_lab import install_fake_agent

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {p.name.removesuffix(".schema.json"): json.loads(p.read_text())
           for p in (ROOT / "docs" / "schemas").glob("*.schema.json")}
REGISTRY: Registry = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in SCHEMAS.values())


def validate(name: str, doc: Any) -> None:
    Draft202012Validator(SCHEMAS[name], registry=REGISTRY,
                         format_checker=FormatChecker()).validate(doc)


def cli(*args: str, state: Path, code: int | None = 0) -> Any:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state)}
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
    if code is not None:
        assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stderr == "" or "--json" not in args, proc.stderr
    return json.loads(proc.stdout)


def test_every_command_has_a_schema() -> None:
    assert set(SCHEMAS) == {"status", "check", "sessions", "issues", "dispatch", "runs", "audit",
                            "recall", "show", "land", "phase0-backup", "phase0-prune",
                            "phase0-merge", "phase0-run", "phase0-restore", "schedule"}
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


@pytest.fixture(scope="module")
def with_gone(plan_fleet: PlanFleet, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plan's fleet plus a host that is down: unreachable hosts are in every document."""
    gone = lab.add_host("js-gone")
    gone.kill()
    doc = yaml.safe_load(plan_fleet.fleet_file.read_text())
    doc["hosts"]["gone"] = ssh_entry(gone, lab)
    path = tmp_path_factory.mktemp("js") / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_status_json_is_exactly_as_documented(with_gone: Path, tmp_path: Path) -> None:
    doc = cli("status", "--json", "--fleet", str(with_gone), state=tmp_path)
    validate("status", doc)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["gone"]["sessions"] == {"claude": 0, "codex": 0}  # a map with zeros, not null
    assert Path(doc["fleet_file"]).is_absolute()
    assert all(s["cwd"] != "" for h in doc["hosts"] for s in h["session_list"])


def test_status_json_fleet_file_is_absolute_when_given_relative(with_gone: Path,
                                                                tmp_path: Path) -> None:
    env = {**os.environ, "MIYABI_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "gone",
                           "--fleet", with_gone.name], capture_output=True, text=True,
                          cwd=with_gone.parent, env=env, timeout=60)
    doc = json.loads(proc.stdout)
    validate("status", doc)
    assert doc["fleet_file"] == str(with_gone)


def test_check_json_both_shapes(with_gone: Path, tmp_path: Path) -> None:
    doc = cli("check", "--json", "--fleet", str(with_gone), state=tmp_path, code=2)
    validate("check", doc)
    assert doc["state"] == "CRITICAL" and doc["exit_code"] == 2
    unknown = cli("check", "--json", "--timeout", "abc", "--fleet", str(with_gone),
                  state=tmp_path, code=3)
    validate("check", unknown)


def test_sessions_json(with_gone: Path, tmp_path: Path) -> None:
    doc = cli("sessions", "--json", "--fleet", str(with_gone), state=tmp_path)
    validate("sessions", doc)
    assert [u["host"] for u in doc["unreachable"]] == ["gone"]
    assert sum(s["host"] == "macbook" for s in doc["sessions"]) == 32


def test_phase0_plans_json(with_gone: Path, tmp_path: Path) -> None:
    fleet = ["--fleet", str(with_gone)]
    validate("phase0-backup", cli("phase0", "backup", "--json", *fleet, state=tmp_path,
                                  code=None))
    validate("phase0-prune", cli("phase0", "prune", "--older-than", "2w", "--json", *fleet,
                                 state=tmp_path, code=None))
    validate("phase0-merge", cli("phase0", "merge", "--json", *fleet, state=tmp_path,
                                 code=None))
    run = cli("phase0", "run", "--older-than", "36h", "--json", *fleet, state=tmp_path,
              code=None)
    validate("phase0-run", run)
    assert run["applied"] is False and run["prune"] is not None and run["merge"] is not None


@pytest.fixture(scope="module")
def dispatch_fleet(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LabHost]:
    idle = lab.add_host("js-idle", load=(0.2, 0.2, 0.2), cpus=4)
    install_fake_agent(idle)
    base = tmp_path_factory.mktemp("js-dispatch")
    backlog = base / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 41, "title": "Handle [/api] prefix", "priority": "P0"},
        {"number": 42, "title": "[docs] Update README", "depends": [41]},
    ]}))
    fleet = write_fleet(base / "fleet.yaml", lab,
                        {"js-idle": ssh_entry(idle, lab, max_sessions=4)},
                        extra=f"backlog:\n  file: {backlog}\n")
    return fleet, idle


def test_issues_dispatch_runs_and_audit_json(dispatch_fleet: tuple[Path, LabHost],
                                             tmp_path: Path) -> None:
    fleet = ["--fleet", str(dispatch_fleet[0])]
    issues = cli("issues", "--json", *fleet, state=tmp_path)
    validate("issues", issues)
    assert [i["title"] for i in issues["issues"]] == ["Handle [/api] prefix", "[docs] Update README"]
    plan = cli("dispatch", "--json", *fleet, state=tmp_path)
    validate("dispatch", plan)
    assert plan["applied"] is False and [a["issue"] for a in plan["assignments"]] == [41]
    done = cli("dispatch", "--json", "--apply", "--yes", *fleet, state=tmp_path)
    validate("dispatch", done)
    assert done["applied"] is True and done["launches"][0]["result"] == "ok"
    runs = cli("runs", "--json", *fleet, state=tmp_path)
    validate("runs", runs)
    assert runs["runs"][0]["issue"] == 41 and runs["runs"][0]["session_alive"] is True
    backup = cli("phase0", "backup", "--json", "--apply", "--yes", "--no-push", *fleet,
                 state=tmp_path, code=None)
    validate("phase0-backup", backup)
    audit = cli("audit", "--json", *fleet, state=tmp_path)
    validate("audit", audit)
    assert audit["entries"], "dispatch --apply and backup --apply record what they did"
    recall = cli("recall", "41", "--json", *fleet, state=tmp_path, code=None)
    validate("recall", recall)
    assert recall["applied"] is False and recall["issue"] == 41
    restore = cli("phase0", "restore", "js-idle", "backup/js-idle-none", "--json", *fleet,
                  state=tmp_path, code=1)
    validate("phase0-restore", restore)
    assert restore["ok"] is False


def test_plan_only_exit_codes_agree_for_the_same_refusal(with_gone: Path, tmp_path: Path) -> None:
    """A host that cannot be planned (down) makes every plan-only repair exit 1, alike."""
    fleet = ["--fleet", str(with_gone)]
    codes = {}
    for args in (["backup"], ["prune", "--older-than", "2w"], ["run", "--older-than", "2w"]):
        proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "phase0", *args, *fleet],
                              capture_output=True, text=True, timeout=180,
                              env={**os.environ, "MIYABI_STATE_DIR": str(tmp_path)})
        codes[args[0]] = proc.returncode
    assert codes == {"backup": 1, "prune": 1, "run": 1}


def test_schedule_json_on_the_plans_fleet(with_gone: Path, tmp_path: Path) -> None:
    """The reference backlog on the plan's fleet and a host that is down: critical and
    unreachable hosts take nothing; the plan's agents, which this fleet.yaml lacks, are noted."""
    doc = cli("schedule", "--json", "--backlog", str(ROOT / "backlog.yaml"), "--fleet",
              str(with_gone), state=tmp_path)
    validate("schedule", doc)
    items = {i["issue"]: i for i in doc["items"]}
    assert {i["host"] for i in items.values()} == {"mugen"} and not doc["unscheduled"]
    assert set(items) == {1166, 1169, 1170, 1172, 1173, 1174, 1175, 1176}
    assert items[1173]["agent"] == "CodeGenAgent" and items[1175]["start_h"] >= items[1173]["end_h"]
