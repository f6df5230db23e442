"""A dispatched agent after launch: look at its run (session alive, commits, last activity), stop it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.errors import CommandFailed
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.remote import Script, key_values, records, run_script

RUNS_SCRIPT = Script("dispatch", "runs.sh")
STOP_SCRIPT = Script("dispatch", "stop.sh")


# The end of a line that asks the operator something: "(y/n)", "[Y/n]", "Do you want to …?",
# "Password:", "Press Enter…", or an empty input prompt ("> ", "❯").
_QUESTION_RE = re.compile(
    r"(\([yn]/[yn]\)|\[[yn]/[yn]\]|\(yes/no[^)]*\)|\?|passphrase[^:]*:|password[^:]*:|"
    r"press (enter|return|any key)[^.]*\.?|^\s*[>❯›])\s*$",
    re.IGNORECASE)


@dataclass(frozen=True)
class RunFacts:
    issue: int
    alive: bool
    ahead: int | None
    merged: bool
    last_activity: int | None  # unix time: the latest of the last commit and the log's last write
    condition: str = "unknown"
    exit_status: int | None = None
    host_now: int | None = None  # the host's clock when it looked (compared with its own times)
    tip: str | None = None  # the branch's commit


def condition_of(alive: bool, ahead: int | None, pane_tail: str, log_tail: str) -> str:
    """What can be known about a run beyond "alive": ``ended without commits``, ``ended``,
    ``waiting for input`` (its pane or log ends in a question), else ``unknown`` (working and
    stuck look the same from outside)."""
    if not alive:
        if ahead == 0:
            return "ended without commits"
        return "ended" if ahead else "unknown"
    if any(_QUESTION_RE.search(text) for text in (pane_tail, log_tail) if text.strip()):
        return "waiting for input"
    return "unknown"


def look_args(inventory: Inventory, host: Host, runs: list[tuple[int, str, str, str]]
              ) -> list[str]:
    """runs.sh's arguments: the repository, remote and main, then (issue, branch, base, log)."""
    return [host.spec.repo_path_or(inventory.repo), inventory.repo.remote, inventory.repo.main,
            *(a for run in runs for a in (str(run[0]), run[1], run[2] or "", run[3] or ""))]


def look(host: Host, inventory: Inventory,
         runs: list[tuple[int, str, str, str]]) -> dict[int, RunFacts]:
    """One round trip: for each (issue, branch, base, log) whether its session lives, and more."""
    result = run_script(host, RUNS_SCRIPT, *look_args(inventory, host, runs), timeout=60)
    return parse_look(host.name, result)


def parse_look(host: str, result: RunResult) -> dict[int, RunFacts]:
    """runs.sh's records (also at the head of show.sh's output) as facts per issue."""
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host, f"cannot look at runs: {error}", result)
    facts: dict[int, RunFacts] = {}
    now = key_values(result.stdout).get("now", "")
    for values in records(result.stdout, "run"):
        times = [int(values[k]) for k in ("last_commit", "log_time") if values.get(k)]
        alive = values.get("alive") == "yes"
        ahead = int(values["ahead"]) if values.get("ahead") else None
        facts[int(values["run"])] = RunFacts(
            issue=int(values["run"]),
            alive=alive,
            ahead=ahead,
            merged=values.get("merged") == "yes",
            last_activity=max(times) if times else None,
            condition=condition_of(alive, ahead, values.get("pane_tail", ""),
                                   values.get("log_tail", "")),
            exit_status=int(values["exit_status"]) if values.get("exit_status") else None,
            host_now=int(now) if now.isdigit() else None,
            tip=values.get("tip") or None,
        )
    return facts


def stop(host: Host, issue: int) -> bool:
    """End the tmux session ``miyabi-<issue>``; True if one was running."""
    result = run_script(host, STOP_SCRIPT, str(issue), timeout=30)
    values = key_values(result.stdout)
    if result.exit_code != 0:
        raise CommandFailed(host.name, values.get("error") or result.stderr.strip(), result)
    return values.get("stopped") == "yes"
