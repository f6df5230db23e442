"""The JSON Schemas in docs/schemas/ are valid and hold the documented rules (the lab test
validates real output against them: tests/lab/test_json_contract_lab.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {p.name.removesuffix(".schema.json"): json.loads(p.read_text())
           for p in (ROOT / "docs" / "schemas").glob("*.schema.json")}
REGISTRY: Registry = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in SCHEMAS.values())

HOST = {"name": "gone", "role": None, "tags": [], "max_sessions": None, "reachable": False,
        "error": "cannot connect to 10.0.0.5:22: Connection refused", "error_kind": "unreachable",
        "status": "unreachable", "load_avg": None, "cpu_count": None, "load_per_core": None,
        "memory": None, "sessions": {"claude": 0, "codex": 0}, "session_list": [], "repo": None,
        "repo_error": None, "problems": ["cannot connect"], "findings": []}
STATUS = {"generated_at": "2026-11-28T03:07:59+00:00", "fleet_file": "/home/op/fleet.yaml",
          "status": "unreachable", "hosts": [HOST]}


def valid(name: str, doc: Any) -> bool:
    try:
        Draft202012Validator(SCHEMAS[name], registry=REGISTRY).validate(doc)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    Draft202012Validator.check_schema(SCHEMAS[name])


def test_the_documented_example_is_valid() -> None:
    assert valid("status", STATUS)


@pytest.mark.parametrize("path, value", [
    (("hosts", 0, "sessions"), None),  # documented as a map with zeros
    (("fleet_file",), "fleet.yaml"),  # documented as absolute
    (("hosts", 0, "status"), "down"),
    (("hosts", 0, "error"), None),  # an unreachable host says why
])
def test_what_the_docs_forbid_is_refused(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(STATUS)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not valid("status", doc)


def test_cwd_is_null_not_empty() -> None:
    session = {"host": "h", "pid": 1, "ppid": 0, "agent": "claude", "age_s": 5, "cwd": "",
               "cmd": "claude"}
    assert not valid("sessions", {"generated_at": "x", "sessions": [session], "unreachable": []})
    assert valid("sessions", {"generated_at": "x", "sessions": [{**session, "cwd": None}],
                              "unreachable": []})


def test_check_line_never_holds_a_second_pipe() -> None:
    ok = {**STATUS, "state": "CRITICAL", "exit_code": 2,
          "line": "MIYABI CRITICAL - gone CRITICAL: x | 'a'=1;;;0;"}
    assert valid("check", ok)
    assert not valid("check", {**ok, "line": "MIYABI CRITICAL - on agent|fix | 'a'=1;;;0;"})
    assert valid("check", {"state": "UNKNOWN", "exit_code": 3, "line": "MIYABI UNKNOWN - x",
                           "error": "x"})
