"""Storing batches: idempotent on (probe_id, seq), all-or-nothing, many batches per commit.

One writer thread takes prepared batches from a queue and commits as many as are waiting in one
transaction (group commit), then answers each. With SQLite this keeps one writer and one fsync
per group; with PostgreSQL the row lock on ``probe_state`` serialises replicas per probe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lomsong.collector.ingest import PreparedBatch
from lomsong.collector.schema import latest_results, probe_state, results
from lomsong.errors import StorageError
from lomsong.wire import ReportAck

log = logging.getLogger(__name__)

#: Weight of a new clock-skew sample in the smoothed estimate.
SKEW_SMOOTHING = 0.2
_WALK_CHUNK = 1_000


@dataclass(frozen=True)
class StoredBatch:
    """What one committed batch changed, for the live state and the metrics."""

    batch: PreparedBatch
    ack: ReportAck
    clock_skew_seconds: float


def enable_immediate_transactions(engine: Engine) -> None:
    """Let SQLite connections opt into ``BEGIN IMMEDIATE`` (execution option ``sqlite_immediate``).

    pysqlite starts transactions lazily at the first write, so a writer that first reads could
    meet another process's write and fail at once with SQLITE_BUSY instead of waiting; taking
    the write lock at BEGIN makes it wait for busy_timeout like any other lock.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, "_lomsong_immediate", False):
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    engine._lomsong_immediate = True  # type: ignore[attr-defined]


class ReportStore:
    """Writes prepared batches and answers what was accepted and stored."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_commit: Callable[[Sequence[StoredBatch]], None] | None = None,
        max_group: int = 64,
    ) -> None:
        enable_immediate_transactions(engine)
        self._engine = engine
        self._on_commit = on_commit
        self._max_group = max_group
        dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
        self._insert_results = dialect.insert(results).on_conflict_do_nothing(
            index_elements=["probe_id", "seq"]
        )
        ins = dialect.insert(latest_results)
        self._upsert_latest = ins.on_conflict_do_update(
            index_elements=["probe_id", "uplink", "kind", "target"],
            set_={
                c: ins.excluded[c]
                for c in ("seq", "measured_at", "ok", "duration_seconds", "error", "rsrp_dbm")
            },
            where=ins.excluded.measured_at >= latest_results.c.measured_at,
        )
        self._queue: queue.Queue[
            tuple[PreparedBatch, concurrent.futures.Future[ReportAck]] | None
        ] = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- the writer thread -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lomsong-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def submit(self, batch: PreparedBatch) -> ReportAck:
        """Queue a batch for the writer and wait until it is committed."""
        future: concurrent.futures.Future[ReportAck] = concurrent.futures.Future()
        self._queue.put((batch, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                group.append(more)
            self._write_group(group)

    def _write_group(
        self, group: list[tuple[PreparedBatch, concurrent.futures.Future[ReportAck]]]
    ) -> None:
        try:
            stored = self.write([b for b, _ in group])
        except Exception:
            if len(group) == 1:
                log.exception("storing a batch of probe %s failed", group[0][0].probe_id)
                group[0][1].set_exception(StorageError("the batch could not be stored"))
                return
            # One bad batch must not fail the others: store them one by one.
            for item in group:
                self._write_group([item])
            return
        for (_, future), done in zip(group, stored, strict=True):
            future.set_result(done.ack)

    # -- the transaction ---------------------------------------------------------------------

    def write(self, batches: Sequence[PreparedBatch]) -> list[StoredBatch]:
        """Store ``batches`` in one transaction; return what each did (synchronous)."""
        with self._engine.connect().execution_options(sqlite_immediate=True) as conn:
            with conn.begin():
                stored = [self._write_one(conn, b) for b in batches]
        if self._on_commit is not None:
            self._on_commit(stored)
        return stored

    def _write_one(self, conn: Connection, b: PreparedBatch) -> StoredBatch:
        state = self._lock_state(conn, b.probe_id)
        lo, hi = b.seqs[0], b.seqs[-1]
        rows = b.rows
        if lo <= state["max_seq"]:
            # Some of these may be stored already (a re-send after a lost answer).
            have = set(
                conn.execute(
                    select(results.c.seq).where(
                        results.c.probe_id == b.probe_id,
                        results.c.seq.between(lo, min(hi, state["max_seq"])),
                    )
                ).scalars()
            )
            if have:
                rows = [r for r in rows if r["seq"] not in have]
        if rows:
            conn.execute(self._insert_results, rows)
        accepted = len(rows)
        max_seq = max(state["max_seq"], hi)
        through = self._advance(conn, b, state["stored_through_seq"], max_seq)
        if rows:
            self._update_latest(conn, rows)
        skew_sample = b.received_at - b.sent_at
        old_skew = state["clock_skew_seconds"]
        skew = (
            skew_sample
            if old_skew is None or state["boot_id"] != b.boot_id
            else old_skew + SKEW_SMOOTHING * (skew_sample - old_skew)
        )
        last_measured = max(r["measured_at"] for r in b.rows)
        if state["last_measured_at"] is not None:
            last_measured = max(last_measured, state["last_measured_at"])
        conn.execute(
            update(probe_state)
            .where(probe_state.c.probe_id == b.probe_id)
            .values(
                boot_id=b.boot_id,
                agent_version=b.agent_version,
                last_seen_at=b.received_at,
                last_sent_at=b.sent_at,
                last_measured_at=last_measured,
                clock_skew_seconds=skew,
                stored_through_seq=through,
                max_seq=max_seq,
                results_total=probe_state.c.results_total + accepted,
            )
        )
        ack = ReportAck(
            accepted=accepted, duplicates=len(b.rows) - accepted, stored_through_seq=through
        )
        return StoredBatch(batch=b, ack=ack, clock_skew_seconds=skew)

    def _lock_state(self, conn: Connection, probe_id: str) -> dict[str, Any]:
        query = select(probe_state).where(probe_state.c.probe_id == probe_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            conn.execute(
                (sqlite if conn.dialect.name == "sqlite" else postgresql)
                .insert(probe_state)
                .values(probe_id=probe_id, stored_through_seq=0, max_seq=0, results_total=0)
                .on_conflict_do_nothing()
            )
            row = conn.execute(query).mappings().one()
        return dict(row)

    def _advance(self, conn: Connection, b: PreparedBatch, through: int, max_seq: int) -> int:
        """The highest seq up to which every result of the probe is stored."""
        if b.spool_floor_seq is not None:
            through = max(through, b.spool_floor_seq - 1)
        in_batch = set(b.seqs)
        while through + 1 in in_batch:
            through += 1
        while through < max_seq:
            # Results stored earlier out of order (a heartbeat sent first on reconnect) may
            # continue the run beyond this batch.
            chunk = list(
                conn.execute(
                    select(results.c.seq)
                    .where(results.c.probe_id == b.probe_id, results.c.seq > through)
                    .order_by(results.c.seq)
                    .limit(_WALK_CHUNK)
                ).scalars()
            )
            for seq in chunk:
                if seq != through + 1:
                    return through
                through = seq
            if len(chunk) < _WALK_CHUNK:
                break
        return through

    def _update_latest(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        newest: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in rows:
            key = (r["uplink"] or "", r["kind"], r["target"])
            cur = newest.get(key)
            if cur is None or r["measured_at"] >= cur["measured_at"]:
                newest[key] = r
        conn.execute(
            self._upsert_latest,
            [
                {
                    "probe_id": r["probe_id"],
                    "uplink": key[0],
                    "kind": r["kind"],
                    "target": r["target"],
                    "seq": r["seq"],
                    "measured_at": r["measured_at"],
                    "ok": r["ok"],
                    "duration_seconds": r["duration_seconds"],
                    "error": r["error"],
                    "rsrp_dbm": r["rsrp_dbm"],
                }
                for key, r in sorted(newest.items())
            ],
        )
