"""Server-side SVG charts of a centre's history: a SmokePing-style latency band and lines.

Drawn on the server, so the page needs no script and no library from a CDN, and a chart is a
few ``<path>`` elements whatever the number of points: the p5–p95 band is one filled path per
run of consecutive buckets, the median one stroked path per loss colour (each bucket a short
step at its median, coloured by the share of packets lost, as SmokePing does). A bucket with no
point, or with no successful run, leaves a gap: nothing is drawn where nothing was measured.

The drawing has a fixed ``viewBox`` and scales to its container's width (``width: 100%``), so
it fits a 390-px phone; text stays legible because the box is narrow (``WIDTH`` units).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from lomsong.timefmt import LOCAL_TZ

WIDTH, HEIGHT = 440.0, 180.0
#: the plot inside the box: left margin for the axis labels, bottom for the times
LEFT, RIGHT, TOP, BOTTOM = 42.0, 8.0, 8.0, 22.0
#: (highest loss, colour, words): the first that takes a bucket's loss
LOSS: tuple[tuple[float, str, str], ...] = (
    (0.0, "#1a7f43", "0 %"),
    (0.02, "#1565c0", "≤ 2 %"),
    (0.10, "#8e24aa", "≤ 10 %"),
    (0.50, "#ef6c00", "≤ 50 %"),
    (1.0, "#c62828", "> 50 %"),
)
NO_LOSS_FIGURE = "#37474f"
BAND_COLOUR = "#9e9e9e"

CHART_STYLE = """
.chart { width: 100%; max-width: 760px; height: auto; display: block;
  background: var(--card, #fff); border: 1px solid var(--line, #d9dde3); border-radius: 4px; }
.chart text { font: 10px system-ui, sans-serif; fill: var(--muted, #5f6368); }
.chart .grid { stroke: var(--line, #d9dde3); stroke-width: .5; }
.chart .empty { font-size: 12px; }
.legend { font-size: 12px; color: var(--muted, #5f6368); margin: 2px 0 10px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px;
  vertical-align: -1px; }
"""


@dataclass(frozen=True)
class BandPoint:
    """One bucket of a latency band: seconds of latency, the share of packets lost."""

    start: float
    seconds: float
    p5: float | None
    p50: float | None
    p95: float | None
    loss: float | None


def loss_colour(loss: float | None) -> str:
    if loss is None:
        return NO_LOSS_FIGURE
    for highest, colour, _words in LOSS:
        if loss <= highest:
            return colour
    return LOSS[-1][1]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value`` (an axis's top)."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** _floor_log10(value)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * scale >= value * (1 - 1e-9):
            return step * scale
    return 10.0 * scale  # pragma: no cover


def _floor_log10(value: float) -> int:
    n = 0
    while value >= 10:
        value /= 10
        n += 1
    while value < 1:
        value *= 10
        n -= 1
    return n


class Frame:
    """Maps time and a value range onto the plot."""

    def __init__(self, since: float, until: float, low: float, high: float) -> None:
        self.since, self.until, self.low, self.high = since, until, low, high

    def x(self, t: float) -> float:
        share = (t - self.since) / (self.until - self.since)
        return LEFT + max(0.0, min(1.0, share)) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        share = (v - self.low) / ((self.high - self.low) or 1.0)
        return TOP + (1 - max(0.0, min(1.0, share))) * (HEIGHT - TOP - BOTTOM)


def _time_label(t: float, span: float) -> str:
    local = datetime.fromtimestamp(t, LOCAL_TZ)
    if span <= 2 * 86_400:
        return local.strftime("%H:%M")
    if span <= 60 * 86_400:
        return local.strftime("%d/%m")
    return local.strftime("%m/%Y")


def _axes(frame: Frame, ticks: Sequence[float], unit: str, digits: int) -> list[str]:
    parts = []
    for v in ticks:
        y = frame.y(v)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 3}" y="{y + 3:.1f}" text-anchor="end">{v:.{digits}f}{unit}</text>'
        )
    span = frame.until - frame.since
    for i in range(5):
        t = frame.since + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{frame.x(t):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{_time_label(t, span)}</text>"
        )
    return parts


def _svg(label: str, parts: Sequence[str], kind: str) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>"
    )


def _runs(points: Sequence[BandPoint]) -> list[list[BandPoint]]:
    """Consecutive buckets with a latency; a missing bucket or one without success splits."""
    runs: list[list[BandPoint]] = []
    previous: BandPoint | None = None
    for p in points:
        if p.p50 is None or p.p5 is None or p.p95 is None:
            previous = None
            continue
        if previous is None or p.start > previous.start + previous.seconds * 1.5:
            runs.append([])
        runs[-1].append(p)
        previous = p
    return runs


def band_chart(points: Sequence[BandPoint], since: float, until: float, *, label: str) -> str:
    """Latency in milliseconds: p5–p95 shaded, the median a step per bucket coloured by loss,
    and a loss tick along the bottom for buckets that lost everything (no latency to draw)."""
    drawn = [p for p in points if p.p95 is not None]
    if not points:
        return _svg(label, [_empty()], "band")
    top = nice_ceiling(max((p.p95 or 0.0) for p in drawn) * 1000 * 1.05) if drawn else 1.0
    frame = Frame(since, until, 0.0, top)
    parts = _axes(frame, [top * i / 4 for i in range(5)], " ms", 0 if top >= 4 else 1)
    for run in _runs(points):
        upper = [(frame.x(p.start), frame.y((p.p95 or 0) * 1000)) for p in run]
        lower = [(frame.x(p.start), frame.y((p.p5 or 0) * 1000)) for p in run]
        end = run[-1].start + run[-1].seconds
        upper.append((frame.x(end), upper[-1][1]))
        lower.append((frame.x(end), lower[-1][1]))
        outline = upper + lower[::-1]
        d = "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in outline) + "Z"
        parts.append(f'<path class="band" d="{d}" fill="{BAND_COLOUR}" fill-opacity=".45"/>')
    steps: dict[str, list[str]] = {}
    for p in points:
        if p.p50 is None:
            continue
        x0, x1 = frame.x(p.start), frame.x(p.start + p.seconds)
        y = frame.y(p.p50 * 1000)
        steps.setdefault(loss_colour(p.loss), []).append(f"M{x0:.1f},{y:.1f}H{max(x1, x0 + 1):.1f}")
    for colour, segments in steps.items():
        parts.append(
            f'<path class="median" d="{"".join(segments)}" stroke="{colour}" '
            'stroke-width="2" fill="none"/>'
        )
    lost = [
        f"M{frame.x(p.start):.1f},{HEIGHT - BOTTOM:.1f}v-6"
        for p in points
        if p.p50 is None and p.loss is not None and p.loss > 0
    ]
    if lost:
        parts.append(
            f'<path class="lost" d="{"".join(lost)}" stroke="{LOSS[-1][1]}" stroke-width="2"/>'
        )
    return _svg(label, parts, "band")


def lines_chart(
    series: Mapping[str, tuple[str, Sequence[tuple[float, float, float]]]],
    since: float,
    until: float,
    *,
    label: str,
    unit: str,
) -> str:
    """Lines of ``(start, seconds, value)`` per name (``name → (colour, points)``), breaking
    where a bucket is missing."""
    values = [v for _c, pts in series.values() for _s, _len, v in pts]
    if not values:
        return _svg(label, [_empty()], "lines")
    low, high = min(values), max(values)
    low, high = 10 * (low // 10) - 5, 10 * -(-high // 10) + 5
    frame = Frame(since, until, low, high)
    parts = _axes(frame, [low + (high - low) * i / 4 for i in range(5)], unit, 0)
    for name, (colour, pts) in series.items():
        d = []
        previous: tuple[float, float, float] | None = None
        for start, seconds, v in sorted(pts):
            x, y = frame.x(start + seconds / 2), frame.y(v)
            joined = previous is not None and start <= previous[0] + previous[1] * 1.5
            d.append(f"{'L' if joined else 'M'}{x:.1f},{y:.1f}")
            if not joined:  # a lone point is still drawn: a dot-long line
                d.append("h.5")
            previous = (start, seconds, v)
        parts.append(
            f'<path class="line" data-series="{escape(name)}" d="{"".join(d)}" '
            f'stroke="{colour}" stroke-width="1.6" fill="none" stroke-linecap="round"/>'
        )
    return _svg(label, parts, "lines")


def _empty() -> str:
    return (
        f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
        "Chưa có số liệu / No data</text>"
    )


def loss_legend() -> str:
    """The loss colours, and what the band is, in words."""
    items = "".join(f'<i style="background:{c}"></i>{escape(w)}' for _h, c, w in LOSS)
    return (
        '<p class="legend">Trung vị (màu theo tỉ lệ mất gói) / median (coloured by packet loss):'
        f'{items}<i style="background:{BAND_COLOUR};opacity:.6"></i>p5–p95</p>'
    )
