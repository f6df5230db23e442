"""`miyabi-ctl schedule`: every open issue placed on a host over time, as a table, a Gantt chart
and JSON. Thin: parse, call the library (dispatch.service.plan_schedule), render
(dispatch.schedule_render)."""

from __future__ import annotations

from typing import Annotated

import typer

from miyabi_ctl.cli.common import (
    FleetPath,
    Forks,
    Hosts,
    Json,
    Timeout,
    echo_lines,
    make_console,
    open_fleet,
    print_json,
    show,
)
from miyabi_ctl.cli.dispatch import BacklogPath, _graph


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)


def schedule(
    hosts: Hosts = None,
    hours_per_day: Annotated[float | None, typer.Option(
        "--hours-per-day", min=0.25, max=24, metavar="H",
        help="Working hours in a day: a '2d' estimate is 2 × H hours (default: "
             "schedule.hours_per_day, else 8).")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", metavar="WHEN",
        help="When hour 0 of the schedule is: now (default), today, tomorrow, a weekday, or a "
             "date and time (2026-12-07 09:00).")] = None,
    json_out: Json = False,
    backlog: BacklogPath = None,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """When each open issue will run, and on which host: dependencies, tags and free slots
    respected, priority then the critical path first. Today's part is what dispatch places."""
    from datetime import UTC, datetime

    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.schedule_plan import parse_start
    from miyabi_ctl.dispatch.schedule_render import gantt_lines, schedule_table, summary_lines
    from miyabi_ctl.dispatch.service import plan_schedule, see_hosts
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.errors import UsageError

    now = datetime.now(UTC)
    try:
        when = parse_start(start, now)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    graph, _source = _graph(inventory, backlog)
    store = RunStore(scope=inventory.scope)
    with fleet, ClaimKeeper(inventory, fleet, timeout=timeout) as keeper:
        view = see_hosts(fleet, store, keeper)
    plan = plan_schedule(graph, view, store, inventory, hours_per_day=hours_per_day, start=when,
                         now=now)
    if json_out:
        print_json(plan.to_json())
        return
    console = make_console()
    echo_lines(f"Schedule from {when.astimezone():%Y-%m-%d %H:%M %Z}, "
               f"{plan.effort.hours_per_day:g} working hours a day:")
    if plan.items:
        show(console, schedule_table(plan, plain=not console.is_terminal))
        echo_lines("", *gantt_lines(plan, console.width if console.is_terminal else None), "")
    echo_lines(*summary_lines(plan))
