"""Small pieces every table of miyabi-ctl shares: the table's look, ages in words.

One place, so `status`, `phase0` and `dispatch` output look alike and a change of style is one
change. rich is imported when a table is made, never at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table


def make_table(*columns: str, plain: bool) -> Table:
    """Columns that fold rather than cut; no box when piped (``plain``), so lines stay greppable."""
    from rich import box
    from rich.table import Table

    table = Table(box=None if plain else box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="" if plain else "bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def ago(seconds: float) -> str:
    """``3d ago``, ``5h ago``, ``7m ago``, ``42s ago``: when something last happened."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def human_age(seconds: int) -> str:
    """3d4h, 5h12m, 7m05s, 42s: ages of sessions at a glance."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
