"""Hourly and daily rollups derived from the marked 5-minute ones: exact however a derivation
ends, and on PostgreSQL beside writers that change the hour it is deriving."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from lomsong.collector.history import series
from lomsong.collector.ingest import PreparedBatch, parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.storage import retention
from lomsong.storage.database import write_transaction
from lomsong.storage.retention import prune
from lomsong.storage.rollups import (
    LEVELS,
    Rollup,
    RollupWriter,
    _FoldStep,
    coarsen,
    derive_marked,
    fold,
    fold_pending,
    merge_values,
    read_level,
)
from tests.factories import T0, batch, body, result
from tests.rollup_checks import assert_same, check_against_raw, check_derived_so_far, marked
from tests.waiting import wait_until

UPLINKS = (Uplink("viettel-4g", "viettel"), Uplink("fibre", "fibre"))
#: 80 results 7 minutes apart from here stay in the past
BASE = T0 - timedelta(hours=4)


def prepared(probe_id: str, seqs: range, minutes: int = 7) -> PreparedBatch:
    """Results ``minutes`` apart from BASE (so a batch spans hours), icmp and modem in turn."""
    doc = batch(probe_id, [])
    doc["results"] = [
        result(s, at=BASE + timedelta(minutes=minutes * s), kind=("icmp", "tcp")[s % 2])
        for s in seqs
    ]
    raw, _ = body(doc)
    return parse_batch(raw, IngestLimits(), clock=time.time)


def test_the_writer_marks_and_the_derivation_clears(engine: Engine) -> None:
    register_probe(engine, "cb-d", "01273", UPLINKS)
    ReportStore(engine).write([prepared("cb-d", range(1, 60))])
    # SQLite: the rows wait, as a rowid range, for the leader to fold them (PostgreSQL's
    # writer folded them already)
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one()
    assert pending == (1 if engine.dialect.name == "sqlite" else 0)
    assert fold_pending(engine) == pending
    with engine.connect() as conn:
        assert read_level(conn, "5m", ["cb-d"])
        assert not read_level(conn, "1h", ["cb-d"]) and not read_level(conn, "1d", ["cb-d"])
    # a chart finds the checks not yet derived by their marks
    span = (BASE.timestamp(), BASE.timestamp() + 86_400)
    assert sum(p.runs for p in series(engine, "cb-d", "viettel-4g", "icmp", *span, "5m")) == 29
    # 59 results 7 minutes apart, two checks: each check in 7 or 8 hours
    before = marked(engine)
    assert 14 <= before <= 16
    assert derive_marked(engine, limit=5) == before  # in four transactions
    assert marked(engine) == 0
    check_against_raw(engine, ["cb-d"], derive=False)


def test_a_derivation_cut_short_leaves_its_marks_and_the_next_one_is_exact(
    engine: Engine,
) -> None:
    register_probe(engine, "cb-k", "01273", UPLINKS)
    store = ReportStore(engine)
    store.write([prepared("cb-k", range(1, 40))])
    derive_marked(engine)
    store.write([prepared("cb-k", range(40, 80))])  # the same hours and later ones
    before = marked(engine)
    assert before > 0
    writer = RollupWriter(engine.dialect.name)
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            assert writer.derive(conn) == before
            raise RuntimeError("killed between the derivation and its commit")
    assert marked(engine) == before
    # what was derived before the cut is still exact; the rest waits for its marks
    assert check_derived_so_far(engine, ["cb-k"]) > 0
    # twice over: rebuilding is idempotent
    assert derive_marked(engine) == before
    check_against_raw(engine, ["cb-k"], derive=False)
    with write_transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO rollup_marks (probe_id, uplink, kind, target, hour_start) "
                "SELECT probe_id, uplink, kind, target, bucket_start FROM rollup_1h"
            )
        )
    assert derive_marked(engine) > 0
    check_against_raw(engine, ["cb-k"], derive=False)


def test_a_write_during_a_derivation_is_derived_by_the_next(pg_url: str) -> None:
    from tests.conftest import ready_engine

    engine = ready_engine(pg_url)
    try:
        register_probe(engine, "cb-w", "01273", UPLINKS)
        store = ReportStore(engine)
        store.write([prepared("cb-w", range(1, 30))])
        writer = RollupWriter("postgresql")
        done: dict[str, Any] = {}
        with write_transaction(engine) as conn:
            took = writer.derive(conn)
            assert took > 0
            # a second derivation meanwhile does nothing (one at a time)
            assert derive_marked(engine) == 0

            def write_same_hours() -> None:
                # a backlog: new seqs measured in the hours being derived
                done["acks"] = store.write([prepared("cb-w", range(30, 35), minutes=1)])

            t = threading.Thread(target=write_same_hours)
            t.start()
            # the writer waits for the marks this derivation holds
            time.sleep(0.5)
            assert t.is_alive()
        t.join(timeout=10)
        assert not t.is_alive() and done["acks"][0].ack.accepted == 5
        assert marked(engine) > 0  # marked again after the derivation deleted its marks
        check_derived_so_far(engine, ["cb-w"])
        check_against_raw(engine, ["cb-w"])
    finally:
        engine.dispose()


def test_the_leader_derives_on_its_schedule(collector_factory: Any, db_url: str) -> None:
    c = collector_factory(db_url, rollups={"derive_every_seconds": 1})
    token = c.register("cb-l")
    with c.client(token) as http:
        for lo in (1, 41):
            raw, headers = body(batch("cb-l", range(lo, lo + 40)), gz=True)
            assert http.post("/api/v1/reports", content=raw, headers=headers).status_code == 200
    wait_until(lambda: marked(c.engine) == 0, timeout=15, what="marks derived by the leader")
    check_against_raw(c.engine, ["cb-l"], derive=False)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["icmp", "modem"]),
                "ok": st.booleans(),
                "at": st.integers(0, 3 * 3600),
                "d": st.floats(1e-5, 30.0),
                "rsrp": st.one_of(st.none(), st.floats(-140.0, -44.0)),
                "cid": st.one_of(st.none(), st.integers(1, 4)),
            }
        ),
        min_size=1,
        max_size=30,
    )
)
def test_merged_values_equal_merged_rollups(rows: list[dict[str, Any]]) -> None:
    raw = [
        {"probe_id": "p", "uplink": "u", "kind": r["kind"], "target": "t",
         "measured_at": 1_800_000_000 + r["at"], "ok": r["ok"], "duration_seconds": r["d"],
         "packets_sent": 5, "packets_received": 5 if r["ok"] else 0, "rsrp_dbm": r["rsrp"],
         "mcc": "452", "mnc": "04", "tac": 7, "cid": r["cid"]}
        for r in rows
    ]  # fmt: skip
    folded = fold(raw)
    for kind in ("icmp", "modem"):
        fine = {k: r for k, r in folded["5m"].items() if k[2] == kind}
        for key, want in coarsen(fine, LEVELS[1]).items():
            same = [r.params() for k, r in sorted(fine.items()) if LEVELS[1].bucket(k[4]) == key[4]]
            got = Rollup.from_values(merge_values(same))
            assert_same({key: got}, {key: want}, "merge_values")


# -- SQLite: the rows the writer leaves pending ---------------------------------------------------


def pending_ranges(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [
            (int(a), int(b))
            for a, b in conn.execute(
                text("SELECT after_rowid, last_rowid FROM rollup_pending ORDER BY after_rowid")
            )
        ]


def test_sqlite_writer_records_each_group_s_rowids_and_a_fold_takes_them_once(
    sqlite_engine: Engine,
) -> None:
    engine = sqlite_engine
    register_probe(engine, "cb-p", "01273", UPLINKS)
    store = ReportStore(engine)
    store.write([prepared("cb-p", range(1, 30))])
    store.write([prepared("cb-p", range(30, 60)), prepared("cb-p", range(20, 35))])  # re-sends
    # one range a group, adjacent, the re-sent seqs not in them (the insert skipped them)
    assert pending_ranges(engine) == [(0, 29), (29, 59)]
    with engine.connect() as conn:
        assert not read_level(conn, "5m", ["cb-p"])
    # a fold that read the ranges but lost them to another fold adds nothing
    late = _FoldStep.read(engine, upto=59)
    assert late is not None and late.taken == [(0, 29), (29, 59)]
    assert fold_pending(engine) == 2
    with write_transaction(engine) as conn:
        assert late.add(conn, RollupWriter("sqlite")) is False
    assert pending_ranges(engine) == []
    check_against_raw(engine, ["cb-p"])


def test_sqlite_fold_cut_short_leaves_its_ranges_and_the_next_is_exact(
    sqlite_engine: Engine,
) -> None:
    engine = sqlite_engine
    register_probe(engine, "cb-q", "01273", UPLINKS)
    ReportStore(engine).write([prepared("cb-q", range(1, 50))])
    step = _FoldStep.read(engine, upto=49)
    assert step is not None
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            assert step.add(conn, RollupWriter("sqlite"))
            raise RuntimeError("killed between the fold and its commit")
    assert pending_ranges(engine) == [(0, 49)]
    with engine.connect() as conn:
        assert not read_level(conn, "5m", ["cb-q"])
    check_against_raw(engine, ["cb-q"])  # the leader's next run: fold and derive
    assert fold_pending(engine) == 0  # nothing twice


def test_sqlite_a_fold_leaves_ranges_the_writer_adds_while_it_runs(sqlite_engine: Engine) -> None:
    """Under steady ingest a range is always pending: a fold takes those pending when it
    began, so it ends."""
    engine = sqlite_engine
    register_probe(engine, "cb-r", "01273", UPLINKS)
    store = ReportStore(engine)
    store.write([prepared("cb-r", range(1, 20))])
    first = _FoldStep.read(engine, upto=19)
    store.write([prepared("cb-r", range(20, 40))])
    assert first is not None and first.taken == [(0, 19)]
    assert _FoldStep.read(engine, upto=19) is not None  # still there: the same one
    assert fold_pending(engine, max_rows=10) == 2  # one range a step, both pending at its start
    assert pending_ranges(engine) == []
    check_against_raw(engine, ["cb-r"])


def test_sqlite_prune_folds_first_and_leaves_rows_of_a_range_still_pending(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    register_probe(engine, "cb-s", "01273", UPLINKS)
    store = ReportStore(engine)
    now = BASE.timestamp() + 40 * 86_400  # every result expired with raw_days = 1
    store.write([prepared("cb-s", range(1, 40))])
    prune(engine, now=now, raw_days=1, rollup_5m_days=400)
    assert pending_ranges(engine) == [] and stored_rows(engine) == 0
    # a range the writer adds after the prune's fold (no fold here): its rows stay
    monkeypatch.setattr(retention, "fold_pending", lambda engine: 0)
    store.write([prepared("cb-s", range(40, 60))])
    assert len(pending_ranges(engine)) == 1
    prune(engine, now=now, raw_days=1, rollup_5m_days=400)
    assert stored_rows(engine) == 20
    monkeypatch.undo()
    prune(engine, now=now, raw_days=1, rollup_5m_days=400)
    assert pending_ranges(engine) == [] and stored_rows(engine) == 0
    with engine.connect() as conn:  # every result counted once, though none is left
        assert sum(r.runs for r in read_level(conn, "5m", ["cb-s"]).values()) == 59


def stored_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM results")).scalar_one())


def test_sqlite_rows_deleted_under_a_pending_range_lend_their_rowids_once(
    sqlite_engine: Engine,
) -> None:
    """A database put back from a copy without the rows of a pending range: the rows stored
    again take the same rowids, and are folded once."""
    engine = sqlite_engine
    register_probe(engine, "cb-t", "01273", UPLINKS)
    ReportStore(engine).write([prepared("cb-t", range(1, 21))])
    with write_transaction(engine) as conn:
        conn.execute(text("DELETE FROM results WHERE seq > 10"))
        conn.execute(text("UPDATE probe_state SET stored_through_seq = 10, max_seq = 10"))
    ReportStore(engine).write([prepared("cb-t", range(11, 26))])
    # rowids 16–20 (freed at the top) again, folded by the first range; the rest above it
    assert pending_ranges(engine) == [(0, 20), (20, 30)]
    check_against_raw(engine, ["cb-t"])


def test_sqlite_two_folds_of_overlapping_runs_count_each_range_once(sqlite_engine: Engine) -> None:
    """The leader's scheduled fold and the one at stop may read runs that overlap: the one
    that finds part of its run taken adds nothing, and the next read takes the rest."""
    engine = sqlite_engine
    register_probe(engine, "cb-u", "01273", UPLINKS)
    store = ReportStore(engine)
    store.write([prepared("cb-u", range(1, 11))])
    store.write([prepared("cb-u", range(11, 21))])
    short = _FoldStep.read(engine, upto=20)
    store.write([prepared("cb-u", range(21, 31))])
    long = _FoldStep.read(engine, upto=30)
    assert short is not None and long is not None
    assert (short.taken, long.taken) == ([(0, 10), (10, 20)], [(0, 10), (10, 20), (20, 30)])
    writer = RollupWriter("sqlite")
    with write_transaction(engine) as conn:
        assert short.add(conn, writer)
    with write_transaction(engine) as conn:
        assert not long.add(conn, writer)
    assert pending_ranges(engine) == [(20, 30)]
    assert fold_pending(engine) == 1
    check_against_raw(engine, ["cb-u"])
