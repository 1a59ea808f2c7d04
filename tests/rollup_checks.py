"""Checks that stored rollups equal a recomputation from the raw rows (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, text

from lomsong.storage.rollups import (
    LEVELS,
    LOCAL_OFFSET_SECONDS,
    Key,
    Rollup,
    derive_marked,
    fold_pending,
    read_level,
    recompute,
)


def assert_same(stored: dict[Key, Rollup], recomputed: dict[Key, Rollup], what: str) -> None:
    assert stored.keys() == recomputed.keys(), what
    for key, a in stored.items():
        b = recomputed[key]
        ints = ("runs", "successes", "packets_sent", "packets_received", "hist", "cells")
        for name in ints:
            assert getattr(a, name) == getattr(b, name), (what, key, name)
        for name in ("rtt", "rsrp", "rsrq", "snr"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x.count, x.low, x.high) == (y.count, y.low, y.high), (what, key, name)
            assert x.total == pytest.approx(y.total, rel=1e-9, abs=1e-9), (what, key, name)


def check_against_raw(engine: Engine, probe_ids: Sequence[str], *, derive: bool = True) -> None:
    """Every level equals ``recompute``; the daily rows equal SQL's own sums by local day.

    The hourly and daily rows are derived first (what the leader's next run would do), unless
    ``derive`` is false: then they must be derived already, no mark left.
    """
    if derive:
        derive_marked(engine, limit=7)  # several transactions, as a backlog takes
    with engine.connect() as conn:
        assert not conn.execute(text("SELECT count(*) FROM rollup_marks")).scalar()
        again = recompute(conn, probe_ids)
        for level in LEVELS:
            assert_same(read_level(conn, level.name, probe_ids), again[level.name], level.name)
        # and the daily rows against SQL's own sums over local days, apart from ``fold``
        day = (
            f"(CAST(FLOOR((measured_at + {LOCAL_OFFSET_SECONDS}) / 86400.0) AS BIGINT) * 86400"
            f" - {LOCAL_OFFSET_SECONDS})"
        )
        ids = ", ".join(f"'{p}'" for p in probe_ids)
        sums = conn.execute(
            text(
                f"SELECT probe_id, COALESCE(uplink, ''), kind, target, {day}, COUNT(*), "
                "SUM(CASE WHEN ok THEN 1 ELSE 0 END), COALESCE(SUM(packets_received), 0), "
                "MAX(CASE WHEN ok AND kind IN ('icmp', 'tcp') THEN duration_seconds END) "
                f"FROM results WHERE probe_id IN ({ids}) GROUP BY 1, 2, 3, 4, 5"
            )
        ).all()
        daily = read_level(conn, "1d", probe_ids)
    assert {tuple(r[:5]) for r in sums} == set(daily)
    for *key, runs, ok, received, slowest in sums:
        r = daily[(key[0], key[1], key[2], key[3], int(key[4]))]
        assert (r.runs, r.successes, r.packets_received, r.rtt.high) == (
            runs,
            ok,
            received,
            slowest,
        )


def check_derived_so_far(engine: Engine, probe_ids: Sequence[str]) -> int:
    """The hourly and daily rows derived so far, without deriving: every hour left unmarked
    equals its recomputation, and every day none of whose hours is marked; the 5-minute rows
    all do, once the rows the writer left pending (SQLite) are folded. Return how many hourly
    rows that compared."""
    fold_pending(engine)
    with engine.connect() as conn:
        again = recompute(conn, probe_ids)
        ids = ", ".join(f"'{p}'" for p in probe_ids)
        marked = {
            (p, u, k, t, int(h))
            for p, u, k, t, h in conn.execute(
                text(
                    "SELECT probe_id, uplink, kind, target, hour_start FROM rollup_marks "
                    f"WHERE probe_id IN ({ids})"
                )
            )
        }
        stored = {lv.name: read_level(conn, lv.name, probe_ids) for lv in LEVELS}
    assert_same(stored["5m"], again["5m"], "5m")
    daily = LEVELS[2]
    marked_days = {(p, u, k, t, daily.bucket(h)) for p, u, k, t, h in marked}
    hours = {key: r for key, r in again["1h"].items() if key not in marked}
    days = {key: r for key, r in again["1d"].items() if key not in marked_days}
    done_hours = {k: r for k, r in stored["1h"].items() if k not in marked}
    done_days = {k: r for k, r in stored["1d"].items() if k not in marked_days}
    assert_same(done_hours, hours, "1h derived")
    assert_same(done_days, days, "1d derived")
    return len(hours)


def marked(engine: Engine) -> int:
    """How many (check, hour)s wait for the leader to derive them, once the rows the writer
    left pending (SQLite) are folded into 5-minute rollups, as the leader's run does first."""
    fold_pending(engine)
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM rollup_marks")).scalar_one())
