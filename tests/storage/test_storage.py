"""Storage on both engines: migrations, places, idempotent all-or-nothing writes."""

from __future__ import annotations

import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select, text

from lomsong.collector.ingest import parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.errors import ConfigError, MigrationError
from lomsong.storage.database import check_ready, current_revision, head_revision, open_engine
from lomsong.storage.places import count_places
from lomsong.storage.schema import (
    communes,
    latest_results,
    metadata,
    probe_state,
    provinces,
    results,
)
from tests.factories import batch, body

LIMITS = IngestLimits()


def prepared(doc: dict[str, object]):  # type: ignore[no-untyped-def]
    raw, _ = body(doc)
    return parse_batch(raw, LIMITS, clock=time.time)


def test_migrations_build_exactly_the_schema(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    check_ready(engine)


def test_sqlite_file_is_in_wal_mode(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_readiness_fails_on_an_unmigrated_database(sqlite_url: str) -> None:
    eng = open_engine(sqlite_url)
    with pytest.raises(MigrationError, match="run `lomsong db upgrade`"):
        check_ready(eng)


def test_places_are_the_2025_units_with_diacritics(engine: Engine) -> None:
    with engine.connect() as conn:
        counts = count_places(conn)
        assert (counts.provinces, counts.communes) == (34, 3321)
        name = conn.execute(select(provinces.c.name).where(provinces.c.code == "04")).scalar()
        assert name == "Cao Bằng"
        row = conn.execute(select(communes).where(communes.c.code == "01273")).mappings().one()
        assert (row["name"], row["province_code"]) == ("Phường Thục Phán", "04")
        n_cb = conn.execute(
            select(func.count()).select_from(communes).where(communes.c.province_code == "04")
        ).scalar()
        assert n_cb == 56


def test_bad_database_urls_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"database_url .*backend 'mysql' is not supported"):
        open_engine("mysql://x@localhost/db")
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        open_engine("sqlite://")
    with pytest.raises(ConfigError, match="does not exist"):
        open_engine("sqlite:////nonexistent-folder-xyz/l.db")


def _store(engine: Engine) -> ReportStore:
    register_probe(engine, "cb-1", "01273", [Uplink("viettel-4g", "viettel")])
    return ReportStore(engine)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(results)).scalar_one())


def test_writes_are_idempotent_on_probe_and_seq(engine: Engine) -> None:
    store = _store(engine)
    [first] = store.write([prepared(batch("cb-1", range(1, 101)))])
    assert (first.ack.accepted, first.ack.duplicates, first.ack.stored_through_seq) == (100, 0, 100)
    [again] = store.write([prepared(batch("cb-1", range(51, 151)))])
    assert (again.ack.accepted, again.ack.duplicates, again.ack.stored_through_seq) == (50, 50, 150)
    [same] = store.write([prepared(batch("cb-1", range(1, 151)))])
    assert (same.ack.accepted, same.ack.duplicates) == (0, 150)
    assert _count(engine) == 150


def test_measured_and_received_times_are_both_kept(engine: Engine) -> None:
    store = _store(engine)
    doc = batch("cb-1", [1])
    store.write([prepared(doc)])
    with engine.connect() as conn:
        row = conn.execute(select(results)).mappings().one()
    from tests.factories import T0

    assert row["measured_at"] == pytest.approx((T0.timestamp() + 1), abs=1e-3)
    assert abs(row["received_at"] - time.time()) < 60
    assert row["received_at"] - row["measured_at"] > 3600  # buffered: not stamped on arrival


def test_stored_through_follows_the_contiguous_run(engine: Engine) -> None:
    store = _store(engine)
    # Reconnect: the newest heartbeat first, then the backlog oldest first.
    [hb] = store.write([prepared(batch("cb-1", [10]))])
    assert hb.ack.stored_through_seq == 0
    [b1] = store.write([prepared(batch("cb-1", range(1, 5)))])
    assert b1.ack.stored_through_seq == 4
    [b2] = store.write([prepared(batch("cb-1", range(5, 10)))])
    assert b2.ack.stored_through_seq == 10  # joins the heartbeat stored before
    # A spool that dropped 11..19 says so with spool_floor_seq.
    [b3] = store.write([prepared(batch("cb-1", [21], spool_floor_seq=20))])
    assert b3.ack.stored_through_seq == 19  # 11..19 are gone for good
    [b4] = store.write([prepared(batch("cb-1", [20], spool_floor_seq=20))])
    assert b4.ack.stored_through_seq == 21
    with engine.connect() as conn:
        state = conn.execute(select(probe_state)).mappings().one()
    assert (state["stored_through_seq"], state["max_seq"], state["results_total"]) == (21, 21, 12)


def test_a_group_commit_keeps_batches_apart(engine: Engine) -> None:
    store = _store(engine)
    register_probe(engine, "cb-2", "01279", [Uplink("fibre", "fibre")])
    out = store.write(
        [
            prepared(batch("cb-1", range(1, 11))),
            prepared(batch("cb-2", range(1, 6))),
            prepared(batch("cb-1", range(6, 16))),
        ]
    )
    assert [(s.ack.accepted, s.ack.duplicates, s.ack.stored_through_seq) for s in out] == [
        (10, 0, 10),
        (5, 0, 5),
        (5, 5, 15),
    ]


def test_a_group_answers_as_its_batches_one_at_a_time(engine: Engine) -> None:
    # One probe reconnecting: the newest heartbeat first, then overlapping re-sends, all in
    # one transaction; the writer defers its inserts, so it must see its own pending rows.
    store = _store(engine)
    register_probe(engine, "cb-2", "01279", [Uplink("fibre", "fibre")])
    seqs = [[10], range(1, 5), range(3, 12), range(5, 10)]
    grouped = store.write([prepared(batch("cb-1", s)) for s in seqs])
    alone = [store.write([prepared(batch("cb-2", s))])[0] for s in seqs]

    def acks(out):  # type: ignore[no-untyped-def]
        return [(s.ack.accepted, s.ack.duplicates, s.ack.stored_through_seq) for s in out]

    assert acks(grouped) == acks(alone) == [(1, 0, 0), (4, 0, 4), (6, 3, 11), (0, 5, 11)]
    with engine.connect() as conn:
        states = {
            r["probe_id"]: (r["stored_through_seq"], r["max_seq"], r["results_total"])
            for r in conn.execute(select(probe_state)).mappings()
        }
        newest = conn.execute(
            select(latest_results.c.probe_id, latest_results.c.seq).where(
                latest_results.c.kind == "icmp"
            )
        ).all()
    assert states == {"cb-1": (11, 11, 11), "cb-2": (11, 11, 11)}
    assert sorted(newest) == [("cb-1", 11), ("cb-2", 11)]
    assert _count(engine) == 22
