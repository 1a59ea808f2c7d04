"""The 90-day availability bars of the status page: one cell a day, coloured by the day's
availability, and the share of the last 24 hours, 7, 30 and 90 days beside it.

Plain HTML and CSS, no script: a flex row of empty ``<i>`` elements that shrinks with its card,
so it fits a 390-px phone as well as a desk. A cell's ``title`` (day, figure, outages, down
time) shows on hover; a tap focuses the cell (``tabindex=-1`` keeps the 90 cells out of the
keyboard's tab order) and CSS shows the same text under the bar. Colours go by class, not
inline style, because a national page draws hundreds of thousands of cells.

Uptime over a window sums the days' seconds (1 − Σ down ÷ Σ observed), the definition of
``collector/availability_read.py``, so the figures agree with the API and the monthly report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from lomsong.maps.pages import both
from lomsong.words import duration

#: (lowest ratio, class, colour, words): the first whose ratio the day reaches
LEVELS: tuple[tuple[float, str, str, tuple[str, str]], ...] = (
    (0.999, "a0", "#1a7f43", ("≥ 99,9 %", "≥ 99.9 %")),
    (0.99, "a1", "#7cc47f", ("≥ 99 %", "≥ 99 %")),
    (0.95, "a2", "#e8c228", ("≥ 95 %", "≥ 95 %")),
    (0.90, "a3", "#f08c00", ("≥ 90 %", "≥ 90 %")),
    (float("-inf"), "a4", "#c62828", ("< 90 %", "< 90 %")),
)
#: a day nothing was observed (before the first result, or not computed yet)
UNSEEN = ("a5", "#9aa0a6")
#: a day observed wholly inside maintenance: no ratio
MAINTENANCE = ("a6", "#6b8fc7")
#: the windows beside each bar: (days, words)
WINDOWS: tuple[tuple[int, tuple[str, str]], ...] = (
    (1, ("24 giờ", "24 h")),
    (7, ("7 ngày", "7 d")),
    (30, ("30 ngày", "30 d")),
    (90, ("90 ngày", "90 d")),
)

BARS_STYLE = (
    ".avail { margin: 4px 0; }\n"
    ".bar { position: relative; display: flex; gap: 1px; height: 22px; margin: 2px 0; }\n"
    ".bar i { flex: 1 1 0; min-width: 0; border-radius: 1px; outline: none; }\n"
    # not opacity nor filter: they would reach the tip drawn in ``::after`` too
    ".bar i:hover, .bar i:focus { box-shadow: inset 0 0 0 2px var(--fg, #111); }\n"
    ".bar i:focus::after { content: attr(title); position: absolute; left: 0; right: 0; "
    "top: 100%; z-index: 2; margin-top: 2px; padding: 2px 6px; font: 12px/1.35 system-ui, "
    "sans-serif; background: var(--card, #fff); color: var(--fg, #111); "
    "border: 1px solid var(--line, #ccc); border-radius: 3px; white-space: normal; "
    "box-shadow: 0 1px 4px #0005; }\n"
    ".uptime { margin: 0; font-size: 12px; color: var(--muted, #5f6368); }\n"
    ".uptime b { color: var(--fg, #111); font-weight: 600; }\n"
    + "".join(f".bar .{cls} {{ background: {hex_} }}\n" for _, cls, hex_, _w in LEVELS)
    + f".bar .{UNSEEN[0]} {{ background: {UNSEEN[1]} }}\n"
    + f".bar .{MAINTENANCE[0]} {{ background: {MAINTENANCE[1]} }}\n"
)


@dataclass(frozen=True)
class Day:
    """One local day of a centre or a province (summed over its centres)."""

    day: str
    observed_seconds: float
    down_seconds: float
    maintenance_seconds: float = 0.0
    outages: int = 0

    @property
    def ratio(self) -> float | None:
        if self.observed_seconds <= 0:
            return None
        return 1.0 - self.down_seconds / self.observed_seconds


def level(ratio: float | None) -> tuple[str, str]:
    """The class and colour of a day's cell."""
    if ratio is None:
        return MAINTENANCE
    for lowest, cls, hex_, _words in LEVELS:
        if ratio >= lowest:
            return cls, hex_
    raise AssertionError("the last level takes every ratio")  # pragma: no cover


def percent(ratio: float | None, lang: str) -> str:
    """``99,95 %`` (vi) or ``99.95 %`` (en); 100 % only when nothing was down; ``—`` unknown."""
    if ratio is None:
        return "—"
    if ratio >= 1.0:
        text = "100"
    else:
        # never round up to 100: a minute down in 90 days is 99.9992 %, not 100 %
        value = min(ratio * 100, 99.99)
        text = f"{int(value * 100) / 100:.2f}"
    return (text.replace(".", ",") if lang == "vi" else text) + " %"


def title(day: str, cell: Day | None) -> str:
    """The words a cell shows on hover or tap."""
    if cell is None:
        return f"{day}: chưa có số liệu / not observed"
    if cell.ratio is None:
        return f"{day}: bảo trì cả ngày / maintenance all day"
    figure = f"{percent(cell.ratio, 'vi')} / {percent(cell.ratio, 'en')}"
    text = f"{day}: {figure} · {cell.outages} sự cố / outages"
    if cell.down_seconds > 0:
        down = cell.down_seconds
        text += f" · mất {duration(down, 'vi')} / down {duration(down, 'en')}"
    if cell.maintenance_seconds > 0:
        text += f" · bảo trì / maintenance {duration(cell.maintenance_seconds, 'en')}"
    return text


def uptime(cells: Sequence[Day | None], days: int) -> float | None:
    """The share of the last ``days`` cells: 1 − Σ down ÷ Σ observed."""
    observed = down = 0.0
    for c in cells[-days:] if days > 0 else ():
        if c is not None:
            observed += c.observed_seconds
            down += c.down_seconds
    return None if observed <= 0 else 1.0 - down / observed


def bar(calendar: Sequence[str], cells: Sequence[Day | None], *, what: str, key: str) -> str:
    """One bar and its uptime figures; ``what`` is ``probe`` or ``province``, ``key`` its id."""
    parts = []
    for day, cell in zip(calendar, cells, strict=True):
        cls = UNSEEN[0] if cell is None else level(cell.ratio)[0]
        parts.append(f'<i class="{cls}" tabindex="-1" title="{escape(title(day, cell))}"></i>')
    figures = " · ".join(
        f"{both(words)} <b>{percent(uptime(cells, n), 'vi')}</b>" for n, words in WINDOWS
    )
    label = escape(f"Khả dụng {len(calendar)} ngày / Availability, {len(calendar)} days")
    return (
        f'<div class="avail" data-{what}="{escape(key)}">'
        f'<div class="bar" role="img" aria-label="{label}">{"".join(parts)}</div>'
        f'<p class="uptime">{both(("Khả dụng", "Uptime"))}: {figures}</p></div>'
    )


class Bars:
    """The status page's ``AvailabilityBars``: days (oldest first), and per centre and per
    province a cell per day, ``None`` where nothing was observed."""

    def __init__(
        self,
        calendar: Sequence[str],
        probes: Mapping[str, Sequence[Day | None]],
        provinces: Mapping[str, Sequence[Day | None]],
    ) -> None:
        self.calendar = list(calendar)
        self.probes = probes
        self.provinces = provinces

    def province(self, code: str) -> str:
        """Its bar; nothing for a province none of whose centres was ever observed."""
        cells = self.provinces.get(code)
        if cells is None:
            return ""
        return bar(self.calendar, cells, what="province", key=code)

    def centre(self, probe_id: str) -> str:
        cells = self.probes.get(probe_id) or [None] * len(self.calendar)
        return bar(self.calendar, cells, what="probe", key=probe_id)
