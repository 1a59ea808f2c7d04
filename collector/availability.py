"""Availability from outage intervals: pure arithmetic on time spans, no clock and no database.

The definition (DESIGN §2, README "Availability"):

- an **uplink** is *down* during its ``uplink_down`` outages. While its centre is silent and
  the uplink has no outage of its own, nobody knows its state: that time is not observed for
  the uplink (a power cut at the centre is not the operator's fault);
- a **centre** is *down* while it is silent (``probe_silent``) or every one of its uplinks is
  down at once;
- **observed time** runs from when the probe was first heard to ``now``; time inside a
  maintenance window that matches the centre or uplink is counted apart (``maintenance``) and
  left out of both down time and observed time;
- **availability** = 1 − down ÷ observed, in Asia/Ho_Chi_Minh days (``LOCAL_TZ``).

Overlapping outages are merged (an interval union) before anything is summed, so no second
is counted twice. Down time is split by cause with one cause per second, power before network
before unknown; a centre down because all its links are down is down for a network cause.

An *outage* in the counts (outages, MTTR, longest) is one merged down interval: it belongs to
the local day it starts on and its length is the whole interval's, up to ``now`` while it is
open. One that lies wholly inside maintenance is not counted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from lomsong.collector.alerts.dispatcher import SEVERITY
from lomsong.config.alerts import MaintenanceConfig
from lomsong.timefmt import LOCAL_TZ

Span = tuple[float, float]
#: the causes down time is split by, in the order a second is given to one of them
CAUSES = ("power", "network", "unknown")
#: the ``uplink`` of a centre's own figures
CENTRE = ""


# --- spans -------------------------------------------------------------------------------


def union(spans: Iterable[Span]) -> list[Span]:
    """Sorted, merged, non-empty spans: touching or overlapping spans become one."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The time in both (each argument already a ``union``)."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The time in ``a`` and not in ``b`` (each already a ``union``)."""
    out: list[Span] = []
    j = 0
    for start, end in a:
        cur = start
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def clip(spans: Sequence[Span], start: float, end: float) -> list[Span]:
    return [(max(s, start), min(e, end)) for s, e in spans if e > start and s < end]


def total(spans: Iterable[Span]) -> float:
    return sum(e - s for s, e in spans)


# --- local days ----------------------------------------------------------------------------


def local_day(ts: float) -> date:
    """The Asia/Ho_Chi_Minh date of an instant."""
    return datetime.fromtimestamp(ts, LOCAL_TZ).date()


def day_start(day: date) -> float:
    """The instant a local day begins (midnight in Asia/Ho_Chi_Minh)."""
    return datetime.combine(day, time(), LOCAL_TZ).timestamp()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- maintenance ---------------------------------------------------------------------------


def centre_labels(commune: str, province: str) -> dict[str, str]:
    """What a window must match to cover a whole centre: no operator, so a window limited to
    one operator's works never covers the centre."""
    return {
        "condition": "probe_silent",
        "severity": SEVERITY["probe_silent"],
        "province": province,
        "commune": commune,
    }


def uplink_labels(commune: str, province: str, operator: str) -> dict[str, str]:
    return {
        "condition": "uplink_down",
        "severity": SEVERITY["uplink_down"],
        "province": province,
        "commune": commune,
        "operator": operator,
    }


def maintenance_spans(
    windows: Sequence[MaintenanceConfig], labels: dict[str, str], start: float, end: float
) -> list[Span]:
    """The time in ``[start, end)`` under a window matching ``labels``, as the dispatcher's
    ``MaintenanceConfig.active`` judges an instant (a window over midnight belongs to the
    weekday it starts on)."""
    spans: list[Span] = []
    for w in windows:
        if not w.match.matches(labels):
            continue
        if w.start is not None and w.end is not None:
            s = w.start if w.start.tzinfo else w.start.replace(tzinfo=LOCAL_TZ)
            e = w.end if w.end.tzinfo else w.end.replace(tzinfo=LOCAL_TZ)
            spans.append((s.timestamp(), e.timestamp()))
            continue
        assert w.from_time is not None and w.to_time is not None
        if w.from_time == w.to_time:
            continue  # as ``active`` judges it: never in force
        for d in days_between(local_day(start) - timedelta(days=1), local_day(end)):
            if d.isoweekday() not in w.weekdays:
                continue
            until = d if w.from_time < w.to_time else d + timedelta(days=1)
            spans.append(
                (
                    datetime.combine(d, w.from_time, LOCAL_TZ).timestamp(),
                    datetime.combine(until, w.to_time, LOCAL_TZ).timestamp(),
                )
            )
    return union(clip(union(spans), start, end))


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutageSpan:
    """One ``outages`` row, as availability needs it."""

    condition: str
    started_at: float
    ended_at: float | None
    cause: str | None = None
    uplink: str | None = None


@dataclass(frozen=True)
class Subject:
    """A centre: where it is, its uplinks (name → operator), when it was first heard."""

    probe_id: str
    commune_code: str
    province_code: str
    uplinks: Mapping[str, str]
    observed_from: float | None


@dataclass
class Figures:
    """Seconds and counts of a centre, an uplink or a group, over a day or a longer period:
    what ``availability_daily`` and ``availability_monthly`` hold and the reports sum."""

    observed: float = 0.0
    down: float = 0.0
    maintenance: float = 0.0
    power: float = 0.0
    network: float = 0.0
    unknown: float = 0.0
    outages: int = 0
    resolved: int = 0
    repair: float = 0.0
    longest: float = 0.0

    @classmethod
    def of(cls, v: Sequence[Any]) -> Figures:
        """From the summed columns of a query, in the fields' order (``None``: nothing summed)."""
        s = [float(x or 0) for x in v]
        return cls(s[0], s[1], s[2], s[3], s[4], s[5], int(s[6]), int(s[7]), s[8], s[9])

    def add(self, other: Figures) -> None:
        """Merge ``other`` in: sums, and the longest of the two."""
        for f in fields(Figures):
            if f.name == "longest":
                self.longest = max(self.longest, other.longest)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def ratio(self) -> float | None:
        """1 − down ÷ observed; ``None`` when nothing was observed."""
        return None if self.observed <= 0 else 1.0 - self.down / self.observed

    @property
    def mttr(self) -> float | None:
        """Mean time to repair: the mean length of the outages that ended."""
        return self.repair / self.resolved if self.resolved else None


@dataclass(kw_only=True)
class DayFigures(Figures):
    """One local day of one centre (``uplink == ""``) or one of its uplinks, in seconds."""

    day: date
    probe_id: str
    uplink: str
    operator: str | None


def probe_days(
    subject: Subject,
    outages: Sequence[OutageSpan],
    windows: Sequence[MaintenanceConfig],
    first: date,
    last: date,
    now: float,
) -> list[DayFigures]:
    """The figures of a centre and each of its uplinks for every local day ``first…last``.

    ``outages``: every ``probe_silent`` and ``uplink_down`` outage of the centre that touches
    those days, and any that overlaps one of them (so that a merged interval is whole). Days
    with nothing observed and no maintenance give no figures.
    """
    lo, hi = day_start(first), min(day_start(last + timedelta(days=1)), now)
    if subject.observed_from is None or hi <= max(lo, subject.observed_from):
        return []
    observed = [(max(lo, subject.observed_from), hi)]
    days = [(d, day_start(d), day_start(d + timedelta(days=1))) for d in days_between(first, last)]

    def spans(condition: str, uplink: str | None = None) -> dict[str, list[Span]]:
        by_cause: dict[str, list[Span]] = {c: [] for c in CAUSES}
        for o in outages:
            if o.condition == condition and (uplink is None or o.uplink == uplink):
                end = now if o.ended_at is None else min(o.ended_at, now)
                cause = o.cause if o.cause in CAUSES else "unknown"
                by_cause[cause].append((o.started_at, end))
        return {c: union(s) for c, s in by_cause.items()}

    silent_by = spans("probe_silent")
    silent = union(s for c in CAUSES for s in silent_by[c])
    link_by = {name: spans("uplink_down", name) for name in subject.uplinks}
    link_down = {name: union(s for c in CAUSES for s in by[c]) for name, by in link_by.items()}

    out: list[DayFigures] = []
    # the centre: silent, or every uplink down at once
    every: list[Span] = []
    for i, name in enumerate(sorted(subject.uplinks)):
        every = link_down[name] if i == 0 else intersect(every, link_down[name])
    centre_by = dict(silent_by)
    centre_by["network"] = union([*silent_by["network"], *every])
    labels = centre_labels(subject.commune_code, subject.province_code)
    out += _days(subject, CENTRE, None, observed, centre_by, windows, labels, days, now)
    for name, operator in sorted(subject.uplinks.items()):
        # the centre's silence with no outage of the link's own: the link's state is unknown
        seen = subtract(observed, subtract(silent, link_down[name]))
        labels = uplink_labels(subject.commune_code, subject.province_code, operator)
        out += _days(subject, name, operator, seen, link_by[name], windows, labels, days, now)
    return out


def _days(
    subject: Subject,
    uplink: str,
    operator: str | None,
    observed: list[Span],
    by_cause: Mapping[str, list[Span]],
    windows: Sequence[MaintenanceConfig],
    labels: dict[str, str],
    days: Sequence[tuple[date, float, float]],
    now: float,
) -> list[DayFigures]:
    lo, hi = days[0][1], min(days[-1][2], now)
    maintenance = maintenance_spans(windows, labels, lo, hi)
    counted = subtract(observed, maintenance)
    in_maintenance = intersect(observed, maintenance)
    # one cause per second: power, then network, then unknown
    taken: list[Span] = []
    cause_spans: dict[str, list[Span]] = {}
    for c in CAUSES:
        cause_spans[c] = intersect(subtract(by_cause[c], taken), counted)
        taken = union([*taken, *by_cause[c]])
    down_all = taken  # the whole merged down intervals, not clipped: outages and their lengths
    starts = [start for _d, start, _e in days]
    observed_by = per_day(counted, starts)
    maintenance_by = per_day(in_maintenance, starts)
    cause_by = {c: per_day(cause_spans[c], starts) for c in CAUSES}
    figures = [
        DayFigures(day=d, probe_id=subject.probe_id, uplink=uplink, operator=operator)
        for d, _s, _e in days
    ]
    for i, f in enumerate(figures):
        f.observed, f.maintenance = observed_by[i], maintenance_by[i]
        f.power, f.network, f.unknown = (cause_by[c][i] for c in CAUSES)
        f.down = f.power + f.network + f.unknown
    for s, e in down_all:
        if s < lo or s >= days[-1][2] or not subtract([(s, e)], maintenance):
            continue
        f = figures[bisect_right(starts, s) - 1]
        f.outages += 1
        if e < now:  # an open outage ends at ``now``
            f.resolved += 1
            f.repair += e - s
        f.longest = max(f.longest, e - s)
    return [f for f in figures if f.observed > 0 or f.maintenance > 0]


def per_day(spans: Sequence[Span], starts: Sequence[float]) -> list[float]:
    """The seconds of ``spans`` (a ``union``) in each day, the days given by their starts (the
    last day ends a day after its start: the spans never reach past it)."""
    out = [0.0] * len(starts)
    for s, e in spans:
        i = bisect_right(starts, s) - 1
        while s < e:
            bound = starts[i + 1] if i + 1 < len(starts) else e
            cut = min(e, bound)
            if i >= 0:
                out[i] += cut - s
            s, i = cut, i + 1
    return out
