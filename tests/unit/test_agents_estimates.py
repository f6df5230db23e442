"""An agent and an estimate per issue, from GitHub labels; fleet.yaml's `schedule:` section and
its agents with `like:` (a launch template of their own, a session kind of another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miyabi_ctl.dispatch.github import issue_from_json
from miyabi_ctl.dispatch.issue import BacklogError
from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory import load_inventory, parse_inventory
from miyabi_ctl.status.render import status_columns

ROOT = Path(__file__).resolve().parents[2]
HOSTS = "hosts:\n  a: {transport: local}\n"


def github_issue(*labels: str) -> dict:
    return {"number": 12, "title": "t", "body": "", "state": "open",
            "labels": [{"id": i, "name": n} for i, n in enumerate(labels)]}


def test_agent_and_estimate_labels() -> None:
    issue = issue_from_json(github_issue("agent:CodeGenAgent", "estimate:2d", "P1"), "acme/app")
    assert (issue.agent, issue.estimate, issue.priority) == ("CodeGenAgent", "2d", "P1")
    assert issue_from_json(github_issue("bug")).agent is None
    with pytest.raises(BacklogError) as info:
        issue_from_json(github_issue("estimate:soon"), "acme/app")
    assert str(info.value).startswith("GitHub acme/app: issue #12: label estimate:soon: estimate "
                                      "'soon' is not a duration")
    with pytest.raises(BacklogError, match=r"^GitHub acme/app: issue #12: labels agent:A and "
                                           r"agent:B disagree; keep one$"):
        issue_from_json(github_issue("agent:B", "agent:A"), "acme/app")


def parse(text: str) -> object:
    return parse_inventory(text, Path("fleet.yaml"))


def test_schedule_section() -> None:
    inv = parse("schedule: {hours_per_day: 6, default_estimate: 4h}\n" + HOSTS)
    assert inv.schedule == {"hours_per_day": 6.0, "default_estimate": "4h"}
    assert parse(HOSTS).schedule == {}
    assert load_inventory(ROOT / "fleet.yaml").schedule == {"hours_per_day": 8.0,
                                                           "default_estimate": "1d"}
    for text, line, key, words in (
        ("schedule: {hours_per_day: 0}\n", 1, "schedule.hours_per_day", "greater than 0"),
        ("schedule:\n  hours_per_day: 30\n", 2, "schedule.hours_per_day", "at most 24 hours"),
        ("schedule:\n  hours_per_day: eight\n", 2, "schedule.hours_per_day", "expected a number"),
        ("schedule:\n  default_estimate: soon\n", 2, "schedule.default_estimate",
         "not a duration"),
        ("schedule:\n  days: 5\n", 2, "days", "unknown key 'days' in schedule"),
    ):
        with pytest.raises(InventoryError) as info:
            parse(text + HOSTS)
        assert (info.value.line, info.value.key) == (line, key), str(info.value)
        assert words in str(info.value) and str(info.value).startswith("fleet.yaml:")


def test_agents_like_another_launch_their_own_way_and_count_as_it() -> None:
    inv = parse("agents:\n  CodeGenAgent:\n    like: claude\n"
                "    launch: claude -p \"$(cat {prompt_file})\" --append-system-prompt \"Be CodeGen\"\n"
                "  Reviewer: {like: codex}\n"
                "dispatch: {agent: CodeGenAgent}\n" + HOSTS)
    assert list(inv.agents) == ["claude", "codex"]  # the session kinds: status has no new column
    assert [c.header for c in status_columns(list(inv.agents))][6:8] == ["claude", "codex"]
    assert inv.launchers["CodeGenAgent"].launch.endswith('--append-system-prompt "Be CodeGen"')
    assert inv.launchers["Reviewer"].launch == inv.agents["codex"].launch  # inherited
    assert inv.launchers["Reviewer"].like == "codex"
    for text, line, key, words in (
        ("agents:\n  X:\n    like: gpt\n", 3, "agents.X.like", "unknown agent 'gpt'"),
        ("agents:\n  X:\n    like: claude\n    executables: [x]\n", 4, "agents.X.executables",
         "recognises no sessions of its own"),
        ("agents:\n  X:\n    like: claude\n    launch: sh -c \"agent {title}\"\n", 4,
         "agents.X.launch", "sh"),
        ("agents:\n  X: {like: claude}\n  Y:\n    like: X\n", 4, "agents.Y.like",
         "unknown agent 'X'"),
    ):
        with pytest.raises(InventoryError) as info:
            parse(text + HOSTS)
        assert (info.value.line, info.value.key) == (line, key), str(info.value)
        assert words in str(info.value)


def test_the_reference_fleet_has_the_plans_agents() -> None:
    inv = load_inventory(ROOT / "fleet.yaml")
    assert {"CodeGenAgent", "DeploymentAgent", "CoordinatorAgent"} <= set(inv.launchers)
    assert all(inv.launchers[a].like == "claude" for a in ("CodeGenAgent", "CoordinatorAgent"))
    assert list(inv.agents) == ["claude", "codex"]
