"""Checks that stored rollups equal a recomputation from the raw rows (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, text

from lomsong.storage.rollups import LEVELS, LOCAL_OFFSET_SECONDS, Key, Rollup, read_level, recompute


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


def check_against_raw(engine: Engine, probe_ids: Sequence[str]) -> None:
    """Every level equals ``recompute``; the daily rows equal SQL's own sums by local day."""
    with engine.connect() as conn:
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
