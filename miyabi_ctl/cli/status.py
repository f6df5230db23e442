"""`status`, `check`, `sessions`: the fleet's state as a table, a monitoring line, JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from miyabi_ctl.cli.common import (
    FleetPath,
    Forks,
    Hosts,
    Json,
    Timeout,
    echo_lines,
    make_console,
    notify_changes,
    open_fleet,
    print_json,
    show,
)

if TYPE_CHECKING:
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import Inventory


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("check")(check)
    app.command("sessions")(sessions)


def status(
    hosts: Hosts = None,
    json_out: Json = False,
    watch: Annotated[float | None, typer.Option(
        "--watch", "-w", min=0.2, metavar="[SECONDS]",
        help="Refresh in place every SECONDS (default 2 when only --watch is given), "
             "reusing connections.")] = None,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Show every host: load, memory, agent sessions, git state, and what is wrong."""
    from miyabi_ctl.status.collect import collect_status
    from miyabi_ctl.status.render import first_run_hint, status_json, status_table

    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout,
                                   quiet=json_out)
    with fleet:
        if watch is not None:
            _watch(fleet, inventory, watch)
            return
        result = collect_status(fleet, keep_connections=False)
    if json_out:
        print_json(status_json(result, inventory))
        notify_changes(inventory, "status", statuses=result.hosts)
        return
    console = make_console()
    show(console, status_table(result, inventory, plain=not console.is_terminal))
    hint = first_run_hint(result, inventory)
    if hint:
        echo_lines(hint, err=True)
    notify_changes(inventory, "status", statuses=result.hosts)
    if not console.is_terminal:
        return
    counts = {lv: sum(h.level == lv for h in result.hosts)
              for lv in ("ok", "warning", "critical", "unreachable")}
    console.print(" ".join(f"{n} {lv}" for lv, n in counts.items() if n), style="dim")


def _watch(fleet: Fleet, inventory: Inventory, interval: float) -> None:
    import time

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from miyabi_ctl.status.collect import collect_status
    from miyabi_ctl.status.render import status_table

    console = make_console()
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                started = time.monotonic()
                result = collect_status(fleet)
                took = time.monotonic() - started
                stamp = Text(f"{result.generated_at:%H:%M:%S} UTC · {took:.2f}s · every "
                             f"{interval:g}s · Ctrl-C to stop", style="dim")
                live.update(Group(status_table(result, inventory), stamp), refresh=True)
                time.sleep(max(0.0, interval - took))
    except KeyboardInterrupt:
        pass


def check(
    hosts: Hosts = None,
    json_out: Json = False,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """One monitoring-plugins line for cron/Nagios; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    Its own failures (options, fleet file, a bug) are UNKNOWN (3); see cli/app.py and
    docs/cron.md. It never falls back to the local-only fleet: cron must name a fleet file."""
    from miyabi_ctl.cli.edge import check_failure
    from miyabi_ctl.errors import MiyabiError

    try:
        from miyabi_ctl.status.check import check_line
        from miyabi_ctl.status.collect import collect_status
        from miyabi_ctl.status.render import status_json

        inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout,
                                       quiet=True, require_file=True)
        with fleet:
            result = collect_status(fleet, keep_connections=False)
        line, code = check_line(result, inventory)
    except MiyabiError as exc:
        raise typer.Exit(check_failure(str(exc), json_out=json_out)) from None
    if json_out:
        doc = status_json(result, inventory)
        print_json({"state": line.split()[1], "exit_code": code, "line": line, **doc})
    else:
        typer.echo(line)
    notify_changes(inventory, "check", statuses=result.hosts)
    raise typer.Exit(code)


def sessions(
    hosts: Hosts = None,
    json_out: Json = False,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Every agent session in the fleet: host, agent, pid, age, working directory."""
    from miyabi_ctl.status.collect import collect_status
    from miyabi_ctl.status.render import sessions_json, sessions_table

    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout,
                                  quiet=json_out)
    with fleet:
        result = collect_status(fleet, keep_connections=False)
    if json_out:
        print_json(sessions_json(result))
    else:
        console = make_console()
        show(console, sessions_table(result, plain=not console.is_terminal))
    notify_changes(inventory, "sessions", statuses=result.hosts)
