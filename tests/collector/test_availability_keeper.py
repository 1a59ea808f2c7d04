"""The keeper's scheduled runs move a month by today's difference, and the month still equals
the sum of its days: through runs of today only, an outage opening, growing and shrinking
today, a closed day corrected, and the first run of a new day (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from lomsong.collector.availability_keeper import _SUMMED, AvailabilityKeeper
from lomsong.collector.registry import Uplink, register_probe
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import availability_daily, availability_monthly, availability_probes
from lomsong.storage.schema import outages as outages_table
from lomsong.timefmt import LOCAL_TZ

HOUR = 3600.0
PROBES = {"kp-a": "01273", "kp-b": "01279", "kp-c": "00004"}
UPLINKS = (Uplink("viettel-4g", "viettel"), Uplink("fibre", "fibre"))


def at(day: int, hour: float) -> float:
    return datetime(2026, 11, day, tzinfo=LOCAL_TZ).timestamp() + hour * HOUR


def _outage(oid: str, pid: str, start: float, end: float | None, now: float) -> dict[str, Any]:
    return {
        "id": oid,
        "probe_id": pid,
        "commune_code": PROBES[pid],
        "province_code": "04" if pid != "kp-c" else "01",
        "condition": "uplink_down",
        "cause": "network",
        "uplink": "viettel-4g",
        "operator": "viettel",
        "started_at": start,
        "ended_at": end,
        "detected_at": start,
        "resolved_at": end,
        "updated_at": now,
    }


def _months(engine: Engine) -> dict[tuple[str, str, str], tuple[float, ...]]:
    m = availability_monthly.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(m.probe_id, m.uplink, m.month, *(m[c] for c in _SUMMED), m.longest_seconds)
        ).all()
    return {(r[0], r[1], r[2]): tuple(float(x) for x in r[3:]) for r in rows}


def _summed(engine: Engine) -> dict[tuple[str, str, str], tuple[float, ...]]:
    d = availability_daily.c
    month = func.substr(d.day, 1, 7)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                d.probe_id,
                d.uplink,
                month,
                *(func.sum(d[c]) for c in _SUMMED),
                func.max(d.longest_seconds),
            ).group_by(d.probe_id, d.uplink, month)
        ).all()
    return {(r[0], r[1], r[2]): tuple(float(x) for x in r[3:]) for r in rows}


def _same(engine: Engine) -> None:
    months, truth = _months(engine), _summed(engine)
    assert months.keys() == truth.keys()
    for key, want in truth.items():
        assert months[key] == pytest.approx(want, rel=1e-12, abs=1e-6), key


def test_scheduled_runs_move_the_month_and_it_stays_the_sum_of_its_days(engine: Engine) -> None:
    clock = {"now": at(20, 9)}
    for pid, commune in PROBES.items():
        register_probe(engine, pid, commune, UPLINKS)
    with write_transaction(engine) as conn:
        conn.execute(
            availability_probes.insert(),
            [{"probe_id": p, "first_heard_at": at(1, 0)} for p in PROBES],
        )
        conn.execute(outages_table.insert(), [_outage("old", "kp-a", at(5, 1), at(5, 3), at(5, 3))])
    keeper = AvailabilityKeeper(engine, clock=lambda: clock["now"])
    keeper.refresh()
    _same(engine)
    before = _months(engine)

    clock["now"] += 300  # a run of today only: every month moves by five minutes observed
    assert keeper.refresh() == len(PROBES) * 3
    _same(engine)
    after = _months(engine)
    for key, was in before.items():
        assert after[key][0] == pytest.approx(was[0] + 300)

    # an outage opens today and grows, run after run; it is the month's longest for kp-b
    clock["now"] += 300
    with write_transaction(engine) as conn:
        conn.execute(
            outages_table.insert(), [_outage("new", "kp-b", at(20, 9), None, clock["now"])]
        )
    for _ in range(3):
        keeper.refresh()
        _same(engine)
        clock["now"] += 600
    longest = _months(engine)[("kp-b", "viettel-4g", "2026-11")][-1]
    assert longest == pytest.approx(clock["now"] - 600 - at(20, 9))

    # it turns out shorter (a backfill): the month's longest shrinks with it
    with write_transaction(engine) as conn:
        conn.execute(
            outages_table.update()
            .where(outages_table.c.id == "new")
            .values(ended_at=at(20, 9) + 120, updated_at=clock["now"])
        )
    keeper.refresh()
    _same(engine)
    assert _months(engine)[("kp-b", "viettel-4g", "2026-11")][-1] == pytest.approx(120)

    # a closed day corrected, then the first run of the next day
    clock["now"] += 300
    with write_transaction(engine) as conn:
        conn.execute(
            outages_table.update()
            .where(outages_table.c.id == "old")
            .values(ended_at=at(5, 6), updated_at=clock["now"])
        )
    keeper.refresh()
    _same(engine)
    assert _months(engine)[("kp-a", "viettel-4g", "2026-11")][-1] == pytest.approx(5 * HOUR)
    clock["now"] = at(21, 0.5)
    keeper.refresh()
    _same(engine)
    clock["now"] += 300
    keeper.refresh()
    _same(engine)
