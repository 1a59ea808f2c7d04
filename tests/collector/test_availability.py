"""Availability from outage intervals (``collector/availability.py``) against a timeline walked
by hand, step by step: overlapping outages, maintenance over midnight, the end of a month."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lomsong.collector.availability import (
    CENTRE,
    DayFigures,
    OutageSpan,
    Subject,
    centre_labels,
    intersect,
    probe_days,
    subtract,
    union,
    uplink_labels,
)
from lomsong.config.alerts import MaintenanceConfig, Match
from lomsong.timefmt import LOCAL_TZ

#: every boundary falls on a step, so each step is all down or all up
STEP = 600.0
#: three local days across the end of November
FIRST = date(2026, 11, 29)
DAYS = 3
BASE = datetime.combine(FIRST, time(), LOCAL_TZ).timestamp()
STEPS = int(DAYS * 86400 / STEP)
COMMUNE, PROVINCE = "01273", "04"

steps = st.integers(0, STEPS)
outage = st.builds(
    lambda condition, a, n, cause, uplink, open_: (condition, a, n, cause, uplink, open_),
    st.sampled_from(["probe_silent", "uplink_down"]),
    steps,
    st.integers(1, 60),
    st.sampled_from(["power", "network", "unknown", None]),
    st.sampled_from(["a", "b"]),
    st.booleans(),
)
clock = st.builds(lambda h, m: time(h, m * 10), st.integers(0, 23), st.integers(0, 5))
match = st.builds(
    lambda communes, operators, conditions: Match(
        commune=communes, operator=operators, condition=conditions
    ),
    st.sampled_from([[], [COMMUNE], ["99999"]]),
    st.sampled_from([[], ["viettel"], ["mobifone"]]),
    st.sampled_from([[], ["uplink_down"], ["probe_silent"]]),
)
recurring = st.builds(
    lambda m, days, a, b: MaintenanceConfig(
        name="r", match=m, weekdays=days, from_time=a, to_time=b
    ),
    match,
    st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True),
    clock,
    clock,
)
one_off = st.builds(
    lambda m, a, n: MaintenanceConfig(
        name="o",
        match=m,
        start=datetime.fromtimestamp(BASE + a * STEP, LOCAL_TZ).replace(tzinfo=None),
        end=datetime.fromtimestamp(BASE + (a + n) * STEP, LOCAL_TZ).replace(tzinfo=None),
    ),
    match,
    steps,
    st.integers(1, 200),
)


def by_hand(
    subject: Subject, rows: list[OutageSpan], windows: list[MaintenanceConfig], now: float
) -> dict[tuple[date, str], dict[str, Any]]:
    """Walk the days step by step and add up what each step is, and the runs of down steps."""
    out: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: (
            dict.fromkeys(("observed", "maintenance", "power", "network", "unknown"), 0.0)
            | {"outages": 0, "resolved": 0, "repair": 0.0, "longest": 0.0}
        )
    )
    names = sorted(subject.uplinks)
    runs: dict[str, list[list[Any]]] = defaultdict(list)  # who → [start, end, all maintenance]
    assert subject.observed_from is not None
    for i in range(STEPS):
        t = BASE + i * STEP
        if t >= now:
            break
        day = datetime.fromtimestamp(t, LOCAL_TZ).date()

        def covers(o: OutageSpan, t: float = t) -> bool:
            return o.started_at <= t < (now if o.ended_at is None else o.ended_at)

        silent = {o.cause or "unknown" for o in rows if o.condition == "probe_silent" and covers(o)}
        down = {
            n: {o.cause or "unknown" for o in rows if o.uplink == n and covers(o)}
            for n in names
            if any(o.condition == "uplink_down" and o.uplink == n and covers(o) for o in rows)
        }
        every = bool(names) and all(n in down for n in names)
        seen = t >= subject.observed_from
        whos = [(CENTRE, centre_labels(COMMUNE, PROVINCE), bool(silent) or every)]
        whos += [
            (n, uplink_labels(COMMUNE, PROVINCE, subject.uplinks[n]), n in down) for n in names
        ]
        for who, labels, is_down in whos:
            known = who == CENTRE or not silent or is_down
            maint = any(w.match.matches(labels) and w.active(t) for w in windows)
            causes = (
                (silent | ({"network"} if every else set())) if who == CENTRE else down.get(who)
            )
            f = out[(day, who)]
            if seen and known:
                if maint:
                    f["maintenance"] += STEP
                else:
                    f["observed"] += STEP
                    if is_down:
                        assert causes
                        cause = next(c for c in ("power", "network", "unknown") if c in causes)
                        f[cause] += STEP
            run = runs[who]
            if is_down:
                if run and run[-1][1] == t:
                    run[-1][1] = t + STEP
                    run[-1][2] = run[-1][2] and maint
                else:
                    run.append([t, t + STEP, maint])
    for who, run in runs.items():
        for start, end, all_maint in run:
            if all_maint:
                continue
            f = out[(datetime.fromtimestamp(start, LOCAL_TZ).date(), who)]
            f["outages"] += 1
            if end < now:
                f["resolved"] += 1
                f["repair"] += end - start
            f["longest"] = max(f["longest"], end - start)
    return {k: v for k, v in out.items() if v["observed"] or v["maintenance"]}


def as_dict(f: DayFigures) -> dict[str, Any]:
    return {
        "observed": f.observed,
        "maintenance": f.maintenance,
        "power": f.power,
        "network": f.network,
        "unknown": f.unknown,
        "outages": f.outages,
        "resolved": f.resolved,
        "repair": f.repair,
        "longest": f.longest,
    }


@settings(max_examples=100, deadline=None)
@given(
    raw=st.lists(outage, max_size=7),
    windows=st.lists(st.one_of(recurring, one_off), max_size=3),
    uplinks=st.sampled_from([{}, {"a": "viettel"}, {"a": "viettel", "b": "mobifone"}]),
    observed_from=st.integers(0, STEPS // 2),
    now_step=st.integers(1, STEPS),
)
def test_availability_equals_the_timeline_walked_by_hand(
    raw: list[tuple[Any, ...]],
    windows: list[MaintenanceConfig],
    uplinks: dict[str, str],
    observed_from: int,
    now_step: int,
) -> None:
    now = BASE + now_step * STEP
    rows = []
    for condition, a, n, cause, uplink, open_ in raw:
        start = BASE + a * STEP
        if start >= now or (condition == "uplink_down" and uplink not in uplinks):
            continue
        end = None if open_ else min(start + n * STEP, now)
        rows.append(
            OutageSpan(condition, start, end, cause, uplink if condition == "uplink_down" else None)
        )
    subject = Subject("p", COMMUNE, PROVINCE, uplinks, BASE + observed_from * STEP)
    got = probe_days(subject, rows, windows, FIRST, FIRST + timedelta(days=DAYS - 1), now)
    expected = by_hand(subject, rows, windows, now)
    computed = {(f.day, f.uplink): as_dict(f) for f in got}
    assert set(computed) == set(expected)
    for key, want in expected.items():
        have = computed[key]
        for field, value in want.items():
            assert abs(have[field] - value) < 1e-6, (key, field, have, want)
    for f in got:
        assert f.down == f.power + f.network + f.unknown <= f.observed + 1e-6


def test_a_window_over_midnight_on_the_last_day_of_a_month_counts_in_both_days() -> None:
    # Monday 30 November 2026, 23:00 → Tuesday 1 December, 04:00, local time
    window = MaintenanceConfig(name="đêm", weekdays=[1], from_time=time(23, 0), to_time=time(4, 0))
    subject = Subject("p", COMMUNE, PROVINCE, {}, BASE)
    # silent all night: down, but under maintenance
    night = datetime(2026, 11, 30, 22, 0, tzinfo=LOCAL_TZ).timestamp()
    rows = [OutageSpan("probe_silent", night, night + 7 * 3600, "power")]
    now = BASE + DAYS * 86400
    got = {
        f.day: f
        for f in probe_days(subject, rows, [window], FIRST, date(2026, 12, 1), now)
        if f.uplink == CENTRE
    }
    assert got[date(2026, 11, 30)].maintenance == 3600
    assert got[date(2026, 11, 30)].power == 3600  # 22:00 to 23:00
    assert got[date(2026, 12, 1)].maintenance == 4 * 3600
    assert got[date(2026, 12, 1)].power == 3600  # 04:00 to 05:00
    assert got[date(2026, 12, 1)].observed == 20 * 3600
    assert got[date(2026, 11, 30)].outages == 1 and got[date(2026, 12, 1)].outages == 0


def test_span_arithmetic() -> None:
    a = union([(5, 7), (0, 2), (1, 3), (3, 4)])
    assert a == [(0, 4), (5, 7)]
    assert intersect(a, [(3, 6)]) == [(3, 4), (5, 6)]
    assert subtract(a, [(1, 2), (3.5, 6)]) == [(0, 1), (2, 3.5), (6, 7)]
