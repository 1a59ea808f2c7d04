"""Bounded storage: expired days go whole, nothing younger goes, archives come first."""

from __future__ import annotations

import csv
import hashlib
import time
from datetime import date, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import Engine, text

from lomsong.collector.ingest import parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.storage.database import _alembic_config, migrate, open_engine
from lomsong.storage.partitions import (
    DEFAULT_PARTITION,
    create_partition,
    day_bounds,
    day_of,
    detach_partition,
    partition_days,
)
from lomsong.storage.places import load_places
from lomsong.storage.retention import keep_from, plan_prune, prune
from tests.factories import batch, body, iso

#: Noon (local) of a fixed day: pruning is judged against it, not against the wall clock.
NOW = day_bounds(date(2026, 11, 20))[0] + 12 * 3600
PROBES = ("cb-1", "cb-2", "cb-3")
#: rows per probe per day, spread over the day (the first at 00:00:30, the last at 23:59)
PER_DAY = 24


def fill(engine: Engine, days: int, *, start_seq: int = 1, now: float = NOW) -> None:
    """``PER_DAY`` results a probe a day, for the ``days`` days up to ``now``'s day."""
    rows = []
    first = day_of(now) - timedelta(days=days - 1)
    for p, pid in enumerate(PROBES):
        seq = start_seq
        for d in range(days):
            lo, hi = day_bounds(first + timedelta(days=d))
            for i in range(PER_DAY):
                at = lo + 30 + i * (hi - lo - 90) / (PER_DAY - 1)
                rows.append(
                    {"pid": pid, "seq": seq, "m": at, "r": at + 5, "ok": (seq + p) % 3 != 0}
                )
                seq += 1
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO results (probe_id, seq, measured_at, received_at, kind, target, "
                "ok, boot_id) VALUES (:pid, :seq, :m, :r, 'icmp', '1.1.1.1', :ok, 'b')"
            ),
            rows,
        )


def digest(engine: Engine, since: float = float("-inf")) -> tuple[int, str]:
    """Count and checksum of the rows measured at or after ``since``."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT probe_id, seq, measured_at, received_at, ok FROM results "
                "WHERE measured_at >= :s ORDER BY probe_id, seq"
            ),
            {"s": since},
        ).all()
    h = hashlib.sha256()
    for r in rows:
        h.update(repr((r[0], r[1], round(r[2], 6), round(r[3], 6), bool(r[4]))).encode())
    return len(rows), h.hexdigest()


def test_prune_removes_whole_expired_days_and_nothing_younger(engine: Engine) -> None:
    fill(engine, 10)
    first_kept = keep_from(NOW, 3)
    assert first_kept == day_of(NOW) - timedelta(days=3)
    cutoff = NOW - 3 * 86_400
    younger = digest(engine, cutoff)
    kept_days = digest(engine, day_bounds(first_kept)[0])

    plan = plan_prune(engine, now=NOW, raw_days=3, rollup_5m_days=400)
    expired = [day_of(NOW) - timedelta(days=i) for i in range(9, 3, -1)]
    assert [d.day for d in plan.days] == expired
    assert all(d.rows == PER_DAY * len(PROBES) for d in plan.days)
    assert plan.rollup_rows == 0  # the fill writes raw rows only, no rollups

    report = prune(engine, now=NOW, raw_days=3, rollup_5m_days=400)
    assert [d.day for d in report.days] == expired
    assert report.rows == 6 * PER_DAY * len(PROBES)
    assert digest(engine, cutoff) == younger
    assert digest(engine) == kept_days  # the day of the cutoff is kept whole
    again = prune(engine, now=NOW, raw_days=3, rollup_5m_days=400)
    assert again.days == [] and digest(engine) == kept_days


def test_an_archive_comes_before_the_day_goes_and_a_failed_one_keeps_it(
    engine: Engine, tmp_path: Path
) -> None:
    fill(engine, 6)
    archived: list[date] = []
    broken = day_of(NOW) - timedelta(days=3)

    def to_csv(day: date) -> None:
        if day == broken:
            raise OSError(f"disk full writing {day}")
        lo, hi = day_bounds(day)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT probe_id, seq, measured_at FROM results "
                    "WHERE measured_at >= :lo AND measured_at < :hi ORDER BY probe_id, seq"
                ),
                {"lo": lo, "hi": hi},
            ).all()
        with (tmp_path / f"{day}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        archived.append(day)

    before = digest(engine, day_bounds(broken)[0])
    report = prune(engine, now=NOW, raw_days=1, rollup_5m_days=400, archiver=to_csv)
    oldest = day_of(NOW) - timedelta(days=5)
    assert archived == [oldest, oldest + timedelta(days=1)]
    assert [d.day for d in report.days] == archived
    assert report.failed is not None and report.failed[0] == broken
    assert "disk full" in report.failed[1]
    # the failed day and every later one are all still there, row for row
    assert digest(engine) == before
    for day in archived:
        with (tmp_path / f"{day}.csv").open() as f:
            assert len(list(csv.reader(f))) == PER_DAY * len(PROBES)


def test_five_minute_rollups_expire(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rollup_5m (probe_id, uplink, kind, target, bucket_start) "
                "VALUES ('cb-1', 'fibre', 'icmp', '1.1.1.1', :b)"
            ),
            [{"b": int(NOW - k * 3600)} for k in range(0, 24 * 12)],  # 12 days, hourly
        )
    plan = plan_prune(engine, now=NOW, raw_days=3, rollup_5m_days=5)
    cutoff = day_bounds(day_of(NOW - 5 * 86_400))[0]
    assert plan.rollup_cutoff == cutoff
    expected = sum(1 for k in range(24 * 12) if NOW - k * 3600.0 < cutoff)
    assert plan.rollup_rows == expected
    report = prune(engine, now=NOW, raw_days=3, rollup_5m_days=5)
    assert report.rollup_rows == expected
    with engine.connect() as conn:
        left = conn.execute(text("SELECT min(bucket_start), count(*) FROM rollup_5m")).one()
    assert left[0] >= cutoff and left[1] == 24 * 12 - expected


def test_sqlite_reuses_and_gives_back_freed_pages(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA auto_vacuum")).scalar() == 2  # incremental
    fill(sqlite_engine, 8)
    report = prune(sqlite_engine, now=NOW, raw_days=2, rollup_5m_days=400)
    assert report.rows > 0 and report.chunks >= len(report.days)
    assert report.pages_released > 0
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA freelist_count")).scalar() == 0
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"


# -- PostgreSQL: partitions ------------------------------------------------------------------


def _relkind(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT relkind FROM pg_class WHERE oid = 'results'::regclass")
            ).scalar()
        )


def test_migration_takes_an_unpartitioned_table_over_without_losing_a_row(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        migrate(engine, "0005")
        fill(engine, 5)
        with engine.begin() as conn:  # one row far back, one ahead: their days are made too
            conn.execute(
                text(
                    "INSERT INTO results (probe_id, seq, measured_at, received_at, kind, "
                    "target, ok, boot_id) VALUES ('cb-9', 1, :a, :a, 'tcp', 'x', true, 'b'), "
                    "('cb-9', 2, :b, :b, 'tcp', 'x', false, 'b')"
                ),
                {"a": NOW - 400 * 86_400, "b": NOW + 30 * 86_400},
            )
        assert _relkind(engine) == "r"
        before = digest(engine)
        migrate(engine)
        assert _relkind(engine) == "p"
        assert digest(engine) == before
        with engine.connect() as conn:
            days = partition_days(conn)
            in_default = conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar()
        assert in_default == 0
        assert day_of(NOW - 400 * 86_400) in days and day_of(NOW + 30 * 86_400) in days
        assert {day_of(NOW) - timedelta(days=i) for i in range(5)} <= set(days)
        with engine.begin() as conn:  # and back, still without losing a row
            command.downgrade(_alembic_config(conn), "0005")
        assert _relkind(engine) == "r" and digest(engine) == before
    finally:
        engine.dispose()


def _prepared(doc: dict[str, object]):  # type: ignore[no-untyped-def]
    raw, _ = body(doc)
    return parse_batch(raw, IngestLimits(), clock=time.time)


def test_a_resend_lands_in_its_partition_and_a_reused_seq_is_refused(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        migrate(engine)
        load_places(engine)
        register_probe(engine, "cb-1", "01273", [Uplink("viettel-4g", "viettel")])
        store = ReportStore(engine)
        [first] = store.write([_prepared(batch("cb-1", range(1, 11)))])
        [again] = store.write([_prepared(batch("cb-1", range(1, 11)))])
        assert (first.ack.accepted, again.ack.accepted, again.ack.duplicates) == (10, 0, 10)
        # a hostile agent reuses seq 5 with a time on another day: the first row stays
        doc = batch("cb-1", [5, 11])
        results = doc["results"]
        assert isinstance(results, list)
        results[0]["measured_at"] = iso_shift(results[0]["measured_at"], days=-2)
        [reused] = store.write([_prepared(doc)])
        assert (reused.ack.accepted, reused.ack.duplicates) == (1, 1)
        with engine.connect() as conn:
            n5 = conn.execute(
                text("SELECT count(*) FROM results WHERE probe_id = 'cb-1' AND seq = 5")
            ).scalar()
            total = conn.execute(text("SELECT count(*) FROM results")).scalar()
        assert (n5, total) == (1, 11)
    finally:
        engine.dispose()


def iso_shift(value: str, *, days: int) -> str:
    from datetime import datetime

    return iso(datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(days=days))


def test_rows_waiting_in_default_move_into_their_new_partition(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        migrate(engine)
        fill(engine, 40)  # older than any partition the migration made: DEFAULT takes them
        old = day_of(NOW) - timedelta(days=39)
        with engine.connect() as conn:
            assert old not in partition_days(conn)
            waiting = conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar()
        assert waiting == 40 * PER_DAY * len(PROBES)  # no partition near NOW yet
        before = digest(engine)
        with engine.begin() as conn:
            assert create_partition(conn, old)
        with engine.connect() as conn:
            assert old in partition_days(conn)
            n = conn.execute(
                text("SELECT count(*) FROM result_days.results_" + f"{old:%Y_%m_%d}")
            ).scalar()
        assert n == PER_DAY * len(PROBES)
        assert digest(engine) == before
        with engine.begin() as conn:  # as a prune killed between its detach and its drop
            assert detach_partition(conn, old)
        report = prune(engine, now=NOW, raw_days=10, rollup_5m_days=400)
        assert report.rows == 28 * PER_DAY * len(PROBES)  # 40 days, 11 kept, 1 detached
        with engine.connect() as conn:
            orphan = conn.execute(
                text("SELECT to_regclass(:t)"), {"t": f"result_days.results_{old:%Y_%m_%d}"}
            ).scalar()
        assert orphan is None
        with engine.connect() as conn:
            assert min(partition_days(conn)) >= keep_from(NOW, 10)
            assert conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar() == 0
        assert digest(engine)[0] == 11 * PER_DAY * len(PROBES)
    finally:
        engine.dispose()
