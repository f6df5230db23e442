"""The schedule for people: the plan's table (day, issue, title, agent, host, effort, start–end),
a Gantt chart of plain characters that fits the screen (80 columns when piped), and the lines
under it (makespan, lower bound, critical path, notes, what is not scheduled).

Titles come from the backlog and are shown verbatim through ``tables`` (never markup); the chart
holds only issue numbers and host names.
"""

from __future__ import annotations

import math

from miyabi_ctl.dispatch.estimate import format_hours
from miyabi_ctl.dispatch.schedule_plan import Item, Schedule
from miyabi_ctl.tables import Column, Columns, TableView

GANTT_PIPED_WIDTH = 80
# Minutes per column the chart may use, smallest first (an hour, half a day, a day of 8 h, …).
SCALES = (5, 10, 15, 30, 60, 120, 240, 480, 960, 1440, 2400, 4800, 9600, 19200, 48000, 96000)
HOST_WIDTH = 12  # a longer host name is cut with … in the chart (the table shows it whole)


def schedule_table(schedule: Schedule, *, plain: bool = False) -> TableView:
    def day(item: Item) -> str:
        first, last = schedule.day(item.start), schedule.last_day(item)
        return str(first) if first == last else f"{first}–{last}"

    def effort(item: Item) -> str:
        text = format_hours(item.end - item.start)
        if item.running:
            return f"{text} left" + (" (overdue)" if item.overdue else "")
        return text + ("*" if item.default_estimate else "")

    columns: Columns[Item] = Columns([
        Column("day", "DAY", day, priority=0, justify="right"),
        Column("issue", "#", lambda i: str(i.issue), priority=0, justify="right"),
        Column("host", "HOST", lambda i: i.host, priority=0),
        Column("agent", "AGENT", lambda i: i.agent, priority=3),
        Column("effort", "EFFORT", effort, priority=1, justify="right"),
        Column("when", "START–END", lambda i: f"{format_hours(i.start)}–{format_hours(i.end)}",
               priority=2, short="WHEN"),
        Column("title", "TITLE", lambda i: i.title, priority=0, wrap=True, beneath=True),
    ])
    return columns.table(schedule.items, plain=plain,
                         row_style=lambda i: "cyan" if i.running else None)


def summary_lines(schedule: Schedule) -> list[str]:
    """Makespan, lower bound, critical path, notes and what is not scheduled."""
    lines = []
    if schedule.items:
        days = schedule.makespan / schedule.effort.day_minutes
        bound = schedule.bound
        lines.append(f"Makespan {format_hours(schedule.makespan)} ({days:.3g} working days of "
                     f"{schedule.effort.hours_per_day:g}h); lower bound "
                     f"{format_hours(bound.minutes)}"
                     + (f" ({schedule.makespan / bound.minutes:.2f}×)" if bound.minutes else ""))
        if bound.path:
            lines.append(f"Critical path: {' → '.join(f'#{n}' for n in bound.path)} "
                         f"({format_hours(bound.critical)}); all work "
                         f"{format_hours(bound.work * bound.slots)} on {bound.slots} "
                         f"slot{'s' if bound.slots != 1 else ''}")
    else:
        lines.append("Nothing to schedule.")
    lines += [f"Note: {note}" for note in schedule.notes]
    if schedule.claims_error:
        lines.append(f"Note: the claims on the remote could not be read; runs shown are this "
                     f"controller's own: {schedule.claims_error}")
    if schedule.unscheduled:
        lines.append("Not scheduled:")
        lines += [f"  #{n}: {why}" for n, why in schedule.unscheduled]
    return lines


def gantt_lines(schedule: Schedule, width: int | None) -> list[str]:
    """One row per host (more when issues overlap there), a bar per issue, ticks at each day.
    ``width``: the terminal's columns; None (piped) draws it for 80."""
    width = max(30, width or GANTT_PIPED_WIDTH)
    if not schedule.items:
        return []
    hosts = list(dict.fromkeys([*schedule.hosts, *(i.host for i in schedule.items)]))
    label = min(HOST_WIDTH, max(len(h) for h in hosts)) + 1
    room = width - label
    span = max(schedule.makespan, schedule.effort.day_minutes)
    scale = next((s for s in SCALES if math.ceil(span / s) + 1 <= room), SCALES[-1])
    cols = math.ceil(span / scale) + 1
    day = schedule.effort.day_minutes
    every = _tick_every(day / scale, len(str(schedule.day(span))))
    ticks = {round(d * day / scale): d + 1 for d in range(0, span // day + 1, every)}
    ticks = {c: d for c, d in ticks.items() if c < cols}
    axis = [" "] * room
    for col, number in ticks.items():
        text = f"|{number}" if col + len(str(number)) < room else "|"
        if all(axis[c] == " " for c in range(col, col + len(text))):
            axis[col:col + len(text)] = list(text)
    lines = [f"Gantt: one column = {format_hours(scale)}, | = start of a working day "
             f"({schedule.effort.hours_per_day:g}h); [===] running, [---] planned",
             " " * label + "".join(axis).rstrip()]
    for host in hosts:
        for n, lane in enumerate(_lanes([i for i in schedule.items if i.host == host], scale)
                                 or [[]]):
            row = ["." if c in ticks else " " for c in range(cols)]
            for item, (c0, c1) in lane:
                row += [" "] * (c1 - len(row))
                row[c0:c1] = _bar(item, c1 - c0)
            del row[room:]  # bars pushed along by short ones never pass the edge
            name = _cut(host, label - 1) if n == 0 else ""
            lines.append(f"{name:<{label}}" + "".join(row).rstrip())
    return lines


def _tick_every(columns_per_day: float, label: int) -> int:
    for every in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if every * columns_per_day >= label + 2:
            return every
    return 1000


def _lanes(items: list[Item], scale: int) -> list[list[tuple[Item, tuple[int, int]]]]:
    """Work a host runs at once goes on separate lines (one per slot in use); on a line, a bar
    too short for a column still takes one, pushing the next along."""
    lanes: list[list[tuple[Item, tuple[int, int]]]] = []
    for item in sorted(items, key=lambda i: (i.start, i.issue)):
        lane = next((lane for lane in lanes if lane[-1][0].end <= item.start), None)
        if lane is None:
            lane = []
            lanes.append(lane)
        c0 = max(round(item.start / scale), lane[-1][1][1] if lane else 0)
        lane.append((item, (c0, max(c0 + 1, round(item.end / scale)))))
    return lanes


def _bar(item: Item, size: int) -> list[str]:
    """``[1169--]``; ``[1169`` when the closing bracket does not fit (the next bar's ``[``, or
    a space, ends it); ``[-]``, ``[]`` or ``|`` when the number does not fit either."""
    fill = "=" if item.running else "-"
    number = str(item.issue)
    if size >= len(number) + 2:
        return list("[" + number + fill * (size - 2 - len(number)) + "]")
    if size == len(number) + 1:
        return list("[" + number)
    return ["|"] if size == 1 else list("[" + fill * (size - 2) + "]")


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 1] + "…"
