"""A dispatched agent after launch: look at its run (session alive, commits, last activity), stop it."""

from __future__ import annotations

from dataclasses import dataclass

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import CommandFailed
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.remote import Script, key_values, records, run_script

RUNS_SCRIPT = Script("dispatch", "runs.sh")
STOP_SCRIPT = Script("dispatch", "stop.sh")


@dataclass(frozen=True)
class RunFacts:
    issue: int
    alive: bool
    ahead: int | None
    merged: bool
    last_activity: int | None  # unix time: the latest of the last commit and the log's last write
    host_now: int | None = None  # the host's clock when it looked (compared with its own times)


def look(host: Host, inventory: Inventory,
         runs: list[tuple[int, str, str, str]]) -> dict[int, RunFacts]:
    """One round trip: for each (issue, branch, base, log) whether its session lives, and more."""
    args = [a for run in runs for a in (str(run[0]), run[1], run[2] or "", run[3] or "")]
    result = run_script(host, RUNS_SCRIPT, host.spec.repo_path_or(inventory.repo),
                        inventory.repo.remote, inventory.repo.main, *args, timeout=60)
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot look at runs: {error}", result)
    facts: dict[int, RunFacts] = {}
    now = key_values(result.stdout).get("now", "")
    for values in records(result.stdout, "run"):
        times = [int(values[k]) for k in ("last_commit", "log_time") if values.get(k)]
        facts[int(values["run"])] = RunFacts(
            issue=int(values["run"]),
            alive=values.get("alive") == "yes",
            ahead=int(values["ahead"]) if values.get("ahead") else None,
            merged=values.get("merged") == "yes",
            last_activity=max(times) if times else None,
            host_now=int(now) if now.isdigit() else None,
        )
    return facts


def stop(host: Host, issue: int) -> bool:
    """End the tmux session ``miyabi-<issue>``; True if one was running."""
    result = run_script(host, STOP_SCRIPT, str(issue), timeout=30)
    values = key_values(result.stdout)
    if result.exit_code != 0:
        raise CommandFailed(host.name, values.get("error") or result.stderr.strip(), result)
    return values.get("stopped") == "yes"
