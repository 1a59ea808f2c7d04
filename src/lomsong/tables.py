"""Tables on the terminal, as wide as it is and no wider than 100 columns.

A commune box is often an 80-column serial console, and a province office a laptop: every table
the CLI prints is built here, so that all of them honour ``COLUMNS`` (or the terminal's width),
right-align their numbers and, when the terminal is too narrow, drop their least important
columns first and wrap the rest instead of cutting headers to ``popula…``. Only rich is used,
so the probe agent's install (which has no server or geodata stack) prints them too.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: the widest any table is drawn, whatever the terminal
MAX_WIDTH = 100
#: what a table narrower than the terminal still gets (a pipe or a tiny window)
MIN_WIDTH = 40
#: two spaces between columns (box.SIMPLE, padding collapsed)
_GAP = 2


@dataclass(frozen=True)
class Column:
    """One column: its header, whether it holds numbers, and how it may give way.

    ``drop`` orders the columns that may be left out when the terminal is too narrow: the
    highest goes first; 0 is never dropped. ``wrap`` lets a text column fold onto more lines,
    down to ``min_width``.
    """

    header: str
    numeric: bool = False
    drop: int = 0
    wrap: bool = False
    min_width: int = 8


def terminal_width(limit: int = MAX_WIDTH) -> int:
    """The terminal's width (``COLUMNS`` wins), at most ``limit``."""
    columns = shutil.get_terminal_size((limit, 24)).columns
    return max(MIN_WIDTH, min(columns, limit))


def console(width: int | None = None) -> Console:
    """A console that draws at ``width`` columns (the terminal's, at most 100, by default)."""
    return Console(width=width or terminal_width(), highlight=False, soft_wrap=False)


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    *,
    width: int | None = None,
    title: str | None = None,
    footer: Sequence[str | Text] | None = None,
) -> Table:
    """A table of ``rows`` that fits ``width`` columns, its least important columns dropped
    first; the ``footer`` row (totals) comes after a rule.

    Examples
    --------
    >>> t = table([Column("commune"), Column("hamlets", numeric=True)], [["Thục Phán", "108"]])
    >>> console(80).print(t)  # doctest: +SKIP
    """
    width = width or terminal_width()
    every = [*rows, *([footer] if footer else [])]
    kept = _fitting(columns, every, width)
    widths = _widths([columns[i] for i in kept], [[row[i] for i in kept] for row in every], width)
    out = Table(
        box=box.SIMPLE,
        show_footer=footer is not None,
        footer_style="bold",
        title=title,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
        title_justify="left",
    )
    for i, w in zip(kept, widths, strict=True):
        column = columns[i]
        out.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=not column.wrap,
            overflow="fold",
            width=w,
            footer=footer[i] if footer is not None else "",
        )
    for row in rows:
        out.add_row(*(row[i] for i in kept))
    return out


def _widths(
    columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], width: int
) -> list[int]:
    """Each column's width: its widest cell, the widest wrapping column narrowed first (never
    below its ``min_width``) until the table fits."""
    widths = [_natural(c, rows, i) for i, c in enumerate(columns)]
    floors = [min(c.min_width, w) if c.wrap else w for c, w in zip(columns, widths, strict=True)]
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i] - floors[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def width_of(columns: Sequence[Column], rows: Sequence[Sequence[str | Text]]) -> int:
    """How wide the table is drawn with every column and no wrapping: for ``--wide``."""
    return sum(_natural(c, rows, i) for i, c in enumerate(columns)) + _GAP * len(columns)


def _fitting(
    columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], width: int
) -> list[int]:
    """The indexes of the columns to show: drop the highest ``drop`` while too wide."""
    kept = list(range(len(columns)))
    need = {i: _needed(columns[i], rows, i) for i in kept}
    while sum(need[i] for i in kept) + _GAP * (len(kept) - 1) > width:
        droppable = [i for i in kept if columns[i].drop > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    return kept


def _needed(column: Column, rows: Sequence[Sequence[str | Text]], i: int) -> int:
    natural = _natural(column, rows, i)
    return min(natural, column.min_width) if column.wrap else natural


def _natural(column: Column, rows: Sequence[Sequence[str | Text]], i: int) -> int:
    cells = [_cell_width(row[i]) for row in rows]
    header = max((cell_len(line) for line in column.header.splitlines()), default=0)
    return max([header, *cells])


def _cell_width(cell: str | Text) -> int:
    text = cell.plain if isinstance(cell, Text) else cell
    return max((cell_len(line) for line in text.splitlines()), default=0)
