"""PostgreSQL: the writer copies the rows it knows are new, and falls back to inserting them
with ON CONFLICT DO NOTHING when some were stored behind its back; with rollups on it folds
what each flush inserted, in its transaction."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import text

from lomsong.collector.ingest import PreparedBatch, parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.storage.database import write_transaction
from lomsong.storage.rollups import RollupWriter
from tests.conftest import ready_engine
from tests.factories import batch, body


def prepared(seqs: range) -> PreparedBatch:
    raw, _ = body(batch("cb-c", seqs))
    return parse_batch(raw, IngestLimits(), clock=time.time)


def test_copied_rows_and_rows_stored_behind_the_writers_back(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = ready_engine(pg_url)
    try:
        register_probe(engine, "cb-c", "01273", [Uplink("viettel-4g", "viettel")])
        store = ReportStore(engine, rollups=False)
        [first] = store.write([prepared(range(1, 11))])
        assert first.ack.accepted == 10
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT seq, ok, duration_seconds, packets_sent FROM results ORDER BY seq")
            ).all()
        assert [tuple(r) for r in stored] == [(s, True, 0.0412, 5) for s in range(1, 11)]
        # the probe's state forgets what is stored, as if the rows came by other means
        with write_transaction(engine) as conn:
            conn.execute(text("UPDATE probe_state SET max_seq = 0, stored_through_seq = 0"))
        with caplog.at_level(logging.WARNING, logger="lomsong.collector.store"):
            store.write([prepared(range(5, 16))])
        assert "stored already" in caplog.text
        with engine.connect() as conn:
            seqs = conn.execute(text("SELECT seq FROM results ORDER BY seq")).scalars().all()
        assert seqs == list(range(1, 16))  # none twice, none lost
    finally:
        engine.dispose()


def test_rollups_on_each_flush_folds_its_rows_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group whose fold fails stores nothing; a group that flushes mid-way (a re-send)
    folds the rows of each flush, none twice."""
    engine = ready_engine(pg_url)
    try:
        register_probe(engine, "cb-c", "01273", [Uplink("viettel-4g", "viettel")])
        store = ReportStore(engine)

        def fail(self: RollupWriter, conn: object, fine: object) -> None:
            raise RuntimeError("the fold fails once")

        monkeypatch.setattr(RollupWriter, "write_fine", fail)
        with pytest.raises(RuntimeError):
            store.write([prepared(range(1, 11))])
        monkeypatch.undo()
        [done] = store.write([prepared(range(1, 11))])
        assert done.ack.accepted == 10
        # a re-send in the same group: the writer flushes and folds before it reads what is
        # stored, then folds the rest at the end
        more, resent = store.write([prepared(range(11, 21)), prepared(range(15, 25))])
        assert (more.ack.accepted, resent.ack.accepted) == (10, 4)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM results")).scalar_one() == 24
            runs = conn.execute(text("SELECT sum(runs) FROM rollup_5m")).scalar_one()
            left = conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one()
        assert (runs, left) == (24, 0)
    finally:
        engine.dispose()
