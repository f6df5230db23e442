"""Every table of miyabi-ctl: a column registry, one layout for every width, ages in words.

A table is a list of ``Column`` (name, header, cell function, width priority) and the rows they
read. One renderer lays it out for where it is going:

- piped or redirected: every column, one line per row, nothing wrapped (greppable);
- a terminal of ``COMPACT_BELOW`` columns or more: every column that fits; long text wraps at
  spaces;
- a narrower terminal (a phone): ``beneath`` columns move to an indented line under their row
  (two lines per host: figures, then problems), and the least important columns are left out
  until the rest fit.

A table may also give each row ``notes``: each is shown on lines of its own under the row
(``    note: …``, wrapped with a hanging indent), at every width, instead of one cell holding a
paragraph.

A word is never broken mid-letter: a column is never narrower than its longest word (a word
longer than the whole screen is cut with ``…``). Cells are plain text, never rich markup: issue
titles, branch names and remote errors are shown as they are (``[docs] Update README``).
Commands (or other modules) add a column with ``Columns.add`` rather than editing a positional
row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.text import Text

R = TypeVar("R")
Cell = Any  # str or rich Text
COMPACT_BELOW = 120  # terminal columns
GAP = 2


@dataclass(frozen=True)
class Column(Generic[R]):
    """One column: what it is called, how a row fills it, how much it matters when space is short.

    ``priority`` 0 is always shown; higher numbers are left out first on a narrow terminal.
    ``wrap``: long text that may wrap at spaces (problems, titles); other cells stay whole.
    ``beneath``: on a narrow terminal, shown on its own line under the row, after ``prefix``.
    """

    name: str
    header: str
    cell: Callable[[R], Cell]
    priority: int = 1
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    beneath: bool = False
    prefix: str = ""
    short: str | None = None  # header on a narrow terminal


class Columns(Generic[R]):
    """An ordered registry of columns; ``add`` places a new one by name, not by position."""

    def __init__(self, columns: Iterable[Column[R]] = ()) -> None:
        self._columns: list[Column[R]] = list(columns)

    def add(self, column: Column[R], *, after: str | None = None) -> Columns[R]:
        if after is None:
            self._columns.append(column)
        else:
            at = next(i for i, c in enumerate(self._columns) if c.name == after)
            self._columns.insert(at + 1, column)
        return self

    def __iter__(self) -> Iterator[Column[R]]:
        return iter(self._columns)

    def names(self) -> list[str]:
        return [c.name for c in self._columns]

    def table(self, rows: Sequence[R], *, plain: bool = False,
              row_style: Callable[[R], str | None] | None = None,
              notes: Callable[[R], Sequence[str]] | None = None) -> TableView[R]:
        return TableView(list(self._columns), list(rows), plain=plain, row_style=row_style,
                         notes=notes)


class TableView(Generic[R]):
    """A rich renderable: laid out for the width it is given when printed (``status --watch``
    re-lays out on every refresh)."""

    def __init__(self, columns: list[Column[R]], rows: list[R], *, plain: bool,
                 row_style: Callable[[R], str | None] | None = None,
                 notes: Callable[[R], Sequence[str]] | None = None) -> None:
        self.columns, self.rows, self.plain, self.row_style = columns, rows, plain, row_style
        self.notes = notes

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(console, None if self.plain else options.max_width)

    def lines(self, console: Console, width: int | None) -> list[Text]:
        from rich.text import Text

        cells = [[_text(c.cell(row)) for c in self.columns] for row in self.rows]
        styles = [self.row_style(row) if self.row_style else None for row in self.rows]
        compact = width is not None and width < COMPACT_BELOW
        inline = [i for i, c in enumerate(self.columns) if not (compact and c.beneath)]
        below = [i for i, c in enumerate(self.columns) if compact and c.beneath]
        headers = {i: (c.short or c.header) if compact else c.header
                   for i, c in enumerate(self.columns)}
        shown, widths = _fit(self.columns, inline, headers, cells, width)
        out: list[Text] = [_join([Text(headers[i], style="" if self.plain else "bold")
                                  for i in shown], shown, widths, self.columns)]
        for raw, row, style in zip(self.rows, cells, styles, strict=True):
            wrapped = {i: _wrap(console, row[i], widths[i], self.columns[i].wrap, width)
                       for i in shown}
            height = max((len(w) for w in wrapped.values()), default=1)
            for n in range(height):
                parts = [wrapped[i][n] if n < len(wrapped[i]) else Text() for i in shown]
                line = _join(parts, shown, widths, self.columns)
                if style:
                    line.stylize(style)
                out.append(line)
            beneath = Text(" · ").join(
                Text(self.columns[i].prefix) + row[i] for i in below if row[i].plain.strip())
            if beneath.plain:
                indent = "    "
                for line in beneath.wrap(console, max(10, (width or 10**6) - len(indent)),
                                         overflow="ellipsis"):
                    out.append(Text(indent) + line)
            for note in self.notes(raw) if self.notes else ():
                out += _note_lines(console, _text(note), width)
        for line in out:
            line.no_wrap, line.overflow = True, "ignore"
            line.rstrip()
        return out


NOTE, HANGING = "    note: ", " " * 10


def _note_lines(console: Console, note: Text, width: int | None) -> list[Text]:
    """One note under its row: ``    note: …``, continued under its first word."""
    from rich.text import Text

    if width is None:
        return [Text(NOTE) + note]
    lines = note.wrap(console, max(10, width - len(HANGING)), overflow="ellipsis")
    return [Text(NOTE if n == 0 else HANGING) + line for n, line in enumerate(lines)]


def _text(value: Cell) -> Text:
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))  # never markup


def _fit(columns: Sequence[Column[Any]], candidates: list[int], headers: dict[int, str],
         cells: list[list[Text]], width: int | None) -> tuple[list[int], dict[int, int]]:
    """Which columns are shown and how wide: natural widths when they fit; else wrap columns
    narrowed (never below their longest word); else the least important columns left out."""
    natural = {i: max([len(headers[i]), *(row[i].cell_len for row in cells)]) for i in candidates}
    if width is None:
        return candidates, natural
    least = {i: _least(columns[i], headers[i], cells, i, width) for i in candidates}
    shown = list(candidates)

    def total(ws: dict[int, int]) -> int:
        return sum(ws[i] for i in shown) + GAP * (len(shown) - 1)

    while total(least) > width:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    widths = {i: least[i] for i in shown}
    spare = width - total(widths)
    for i in sorted(shown, key=lambda i: (columns[i].priority, i)):  # most important first
        grow = min(spare, natural[i] - widths[i])
        if grow > 0:
            widths[i] += grow
            spare -= grow
    return shown, widths


def _least(column: Column[Any], header: str, cells: list[list[Text]], i: int, width: int) -> int:
    """The narrowest a column may be: its header and, for wrapped text, its longest word; other
    cells whole. Never more than the screen."""
    longest = len(header)
    for row in cells:
        text = row[i].plain
        size = max((len(w) for w in text.split()), default=0) if column.wrap else row[i].cell_len
        longest = max(longest, size)
    if column.wrap:  # a longer word is cut with … rather than take the screen from the others
        longest = min(longest, max(24, width // 3))
    return min(longest, width)


def _wrap(console: Console, text: Text, width: int, wrap: bool, screen: int | None) -> list[Text]:
    if text.cell_len <= width or screen is None:
        return [text]
    if not wrap:
        cut = text.copy()
        cut.truncate(width, overflow="ellipsis")
        return [cut]
    return list(text.wrap(console, width, overflow="ellipsis"))


def _join(parts: list[Text], shown: list[int], widths: dict[int, int],
          columns: Sequence[Column[Any]]) -> Text:
    from rich.text import Text

    line = Text()
    for n, (i, part) in enumerate(zip(shown, parts, strict=True)):
        pad = max(0, widths[i] - part.cell_len)
        if n:
            line.append(" " * GAP)
        if columns[i].justify == "right":
            line.append(" " * pad)
            line.append_text(part)
        else:
            line.append_text(part)
            line.append(" " * pad)
    return line


def keyed(name: str, header: str, **options: Any) -> Column[dict[str, Cell]]:
    """A column of rows that are mappings: the cell is ``row[name]``."""
    return Column(name, header, lambda row: row.get(name, ""), **options)


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


def duration(seconds: float) -> str:
    """A duration as people write it (and ``--older-than`` reads it): ``45s``, ``90m``, ``36h``,
    ``3d``, ``2w`` — the largest unit that divides it exactly."""
    seconds = max(0, round(seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
