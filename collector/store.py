"""Storing batches: idempotent on (probe_id, seq), all-or-nothing, many batches per commit.

One writer thread takes prepared batches from a queue and commits as many as are waiting in one
transaction (group commit), then answers each. With SQLite this keeps one writer and one fsync
per group; with PostgreSQL the row locks on ``probe_state``, taken in probe order, serialise
replicas per probe.

A group costs a handful of statements whatever its size: one read of its probes' states, the new
rows in one ``executemany`` per shape of row (the set of its non-NULL columns), one upsert of the
newest result of each check and one update of the states; a re-sent batch adds one read of the
seqs it overlaps. They are plain SQL on the driver: SQLAlchemy's per-row parameter processing
costs more than SQLite's insert itself. On PostgreSQL the new rows are copied (``COPY``), not
inserted one statement a row: they are known to be new (see ``_copy_new_rows``).

With rollups on, the rows a group inserts are folded into the 5-minute rollups
(``storage/rollups.py``), from which the detector's leader derives the hourly and daily rows
later. Where the fold runs depends on the database:

- PostgreSQL: in the group's own transaction (``fold_5m``, one additive upsert); replicas each
  fold what they insert.
- SQLite: the group records the range of rowids it inserted (``rollup_pending``: a rowid table
  gives each new row one above the largest) and the leader folds the ranges every
  ``rollups.derive_every_seconds`` in SQL, reading them without the write lock
  (``rollups.fold_pending``). SQLite has one writer, and folding a group costs about as much
  as inserting it: in the group's transaction it would hold that writer, and every probe
  waiting for an answer, for as long again.

Both are exactly once, whatever is killed when: the rows and their fold, or the rows and their
range, commit together, and a range is deleted in the transaction that adds its fold. Which
rows are new is known before the insert (the probe's ``probe_state`` row is locked, and a
re-send's stored seqs are read); the insert's own row count is checked against it, and a
disagreement fails the group rather than count a result twice or never.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from lomsong.collector.ingest import CheckKey, ConfigReport, PreparedBatch, Running
from lomsong.errors import StorageError, StorageUnavailable
from lomsong.storage.database import (
    UNAVAILABLE_KINDS,
    enable_immediate_transactions,
    unavailable,
)
from lomsong.storage.rollups import RollupWriter, fold_5m
from lomsong.wire import ReportAck

log = logging.getLogger(__name__)

#: Weight of a new clock-skew sample in the smoothed estimate.
SKEW_SMOOTHING = 0.2
#: The writer records probes heard from without anything new (re-sends) at most this often.
HEARD_FLUSH_SECONDS = 1.0
_WALK_CHUNK = 1_000
#: INSERT statements kept, one per shape of row (its non-NULL columns). Agents send a few dozen
#: shapes; the cap keeps a probe that sends every combination of optional fields from growing
#: the cache without end.
MAX_INSERT_SHAPES = 512


def smoothed_skew(
    old_skew: float | None, old_boot: str | None, boot_id: str, sample: float
) -> float:
    """The clock-skew estimate after a new sample; a new boot starts afresh."""
    if old_skew is None or old_boot != boot_id:
        return sample
    return old_skew + SKEW_SMOOTHING * (sample - old_skew)


@dataclass(frozen=True)
class Heard:
    """A probe heard from with nothing new to store: a re-send of stored results."""

    probe_id: str
    boot_id: str
    agent_version: str
    received_at: float
    sent_at: float


@dataclass(frozen=True)
class HeardState:
    """What ``ReportStore.write_heard`` wrote of a probe heard from."""

    heard: Heard
    clock_skew_seconds: float


@dataclass(frozen=True)
class StoredBatch:
    """What one committed batch changed, for the live state and the metrics."""

    batch: PreparedBatch
    ack: ReportAck
    clock_skew_seconds: float
    #: the checks the probe runs, when this batch listed them or holds results of checks it
    #: no longer runs: the live state forgets what they leave out
    running: Running | None = None
    #: the version of a configuration the agent refused, when this batch first said so
    #: (``lomsong_probe_config_errors_total`` counts each probe's refused version once)
    config_refused: str | None = None


class ReportStore:
    """Writes prepared batches and answers what was accepted and stored."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_commit: Callable[[Sequence[StoredBatch]], None] | None = None,
        on_heard: Callable[[Sequence[HeardState]], None] | None = None,
        max_group: int = 64,
        rollups: bool = True,
    ) -> None:
        enable_immediate_transactions(engine)
        self._engine = engine
        self._on_commit = on_commit
        self._on_heard = on_heard
        self._max_group = max_group
        self._sql = _Sql(engine.dialect.name)
        #: None: rollups off (``rollups.enabled``)
        self._rollups = RollupWriter(engine.dialect.name) if rollups else None
        self._queue: queue.Queue[
            tuple[PreparedBatch, concurrent.futures.Future[ReportAck]] | None
        ] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._heard: dict[str, Heard] = {}
        #: transactions of batches committed so far
        self.groups_written = 0
        self._heard_lock = threading.Lock()
        #: held through a whole ``write_heard``
        self._flush_lock = threading.Lock()

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
        self._write_heard_logged()

    def heard(self, heard: Heard) -> None:
        """Note a probe heard from; written to ``probe_state`` within ``HEARD_FLUSH_SECONDS``.

        A re-send answered from the live state costs no transaction of its own: what it says
        of the probe (last seen, clock skew) is folded into one update a second, and a crash
        before that loses nothing that was acknowledged. Of a probe heard several times in
        that second, the newest counts. Takes no lock the writer holds for long: the event
        loop calls it.
        """
        with self._heard_lock:
            cur = self._heard.get(heard.probe_id)
            if cur is None or heard.received_at >= cur.received_at:
                self._heard[heard.probe_id] = heard

    async def submit(self, batch: PreparedBatch) -> ReportAck:
        """Queue a batch for the writer and wait until it is committed."""
        future: concurrent.futures.Future[ReportAck] = concurrent.futures.Future()
        self._queue.put((batch, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        flushed = time.monotonic()
        while True:
            if self._heard and time.monotonic() - flushed >= HEARD_FLUSH_SECONDS:
                self._write_heard_logged()
                flushed = time.monotonic()
            try:
                item = self._queue.get(timeout=HEARD_FLUSH_SECONDS)
            except queue.Empty:
                continue
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
        except Exception as exc:
            away = unavailable(exc)
            if away is not None:
                # The database, not a batch, is at fault: every batch gets the answer now;
                # writing them one by one would wait out the busy timeout once per batch.
                log.warning("storing %d batches: %s", len(group), away)
                for _, future in group:
                    future.set_exception(StorageUnavailable(away.kind, str(away)))
                return
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

    def _write_heard_logged(self) -> None:
        try:
            self.write_heard()
        except Exception as exc:  # the next second tries again; nothing acknowledged hangs on it
            away = unavailable(exc)
            if away is None:
                log.exception("recording the probes heard from failed")
            else:  # one line a second while it lasts, not a traceback
                log.warning("recording the probes heard from: %s", away)

    def write_heard(self) -> int:
        """Write what ``heard`` noted (synchronous), then tell ``on_heard``; return how many
        probes it updated.

        The clock skew is smoothed from the stored estimate, as a stored batch's is, so that the
        database and the live state agree on it. When it returns, everything heard before the
        call is written and told, whichever thread wrote it.
        """
        with self._flush_lock:
            return self._write_heard()

    def _write_heard(self) -> int:
        with self._heard_lock:
            heard, self._heard = self._heard, {}
        if not heard:
            return 0
        try:
            with self._engine.connect().execution_options(sqlite_immediate=True) as conn:
                with conn.begin():
                    ids = sorted(heard)
                    rows = conn.exec_driver_sql(self._sql.select_seen(len(ids)), tuple(ids))
                    done: list[HeardState] = []
                    for probe_id, boot_id, skew, last_seen in rows:
                        h = heard[probe_id]
                        if last_seen is not None and last_seen >= h.received_at:
                            continue  # a batch received later is stored (here or by a replica)
                        skew = smoothed_skew(skew, boot_id, h.boot_id, h.received_at - h.sent_at)
                        done.append(HeardState(h, skew))
                    if done:
                        conn.exec_driver_sql(
                            self._sql.update_heard,
                            [
                                (
                                    d.heard.boot_id,
                                    d.heard.agent_version,
                                    d.heard.received_at,
                                    d.heard.sent_at,
                                    d.clock_skew_seconds,
                                    d.heard.probe_id,
                                )
                                for d in done
                            ],
                        )
        except Exception:
            with self._heard_lock:  # keep what came since, and retry these
                self._heard = heard | self._heard
            raise
        if self._on_heard is not None and done:
            self._on_heard(done)
        return len(done)

    # -- the transaction ---------------------------------------------------------------------

    def write(self, batches: Sequence[PreparedBatch]) -> list[StoredBatch]:
        """Store ``batches`` in one transaction; return what each did (synchronous)."""
        if not batches:
            return []
        # In probe order, so that replicas lock probe_state rows in the same order; a stable
        # sort keeps one probe's batches in the order they came.
        order = sorted(range(len(batches)), key=lambda i: batches[i].probe_id)
        with self._engine.connect().execution_options(sqlite_immediate=True) as conn:
            with conn.begin():
                done = _Group(conn, self._sql, self._rollups).write([batches[i] for i in order])
        self.groups_written += 1
        stored: list[StoredBatch] = [done[0]] * len(batches)
        for i, s in zip(order, done, strict=True):
            stored[i] = s
        if self._on_commit is not None:
            self._on_commit(stored)
        return stored


class _Sql:
    """The statements of a group, in the driver's parameter style."""

    def __init__(self, dialect: str) -> None:
        p = self.p = "?" if dialect == "sqlite" else "%s"
        self.lock = " FOR UPDATE" if dialect == "postgresql" else ""
        #: new rows are copied (PostgreSQL: ``_copy_new_rows``), not inserted one by one
        self.copy = dialect == "postgresql"
        self.insert_state = (
            "INSERT INTO probe_state (probe_id, stored_through_seq, max_seq, results_total) "
            f"VALUES ({p}, 0, 0, 0) ON CONFLICT DO NOTHING"
        )
        self.stored_between = (
            f"SELECT seq FROM results WHERE probe_id = {p} AND seq BETWEEN {p} AND {p}"
        )
        self.stored_after = (
            f"SELECT seq FROM results WHERE probe_id = {p} AND seq > {p} "
            f"ORDER BY seq LIMIT {_WALK_CHUNK}"
        )
        self.upsert_latest = (
            "INSERT INTO latest_results (probe_id, uplink, kind, target, seq, measured_at, ok, "
            f"duration_seconds, error, rsrp_dbm) VALUES ({', '.join([p] * 10)}) "
            "ON CONFLICT (probe_id, uplink, kind, target) DO UPDATE SET seq = excluded.seq, "
            "measured_at = excluded.measured_at, ok = excluded.ok, "
            "duration_seconds = excluded.duration_seconds, error = excluded.error, "
            "rsrp_dbm = excluded.rsrp_dbm "
            "WHERE excluded.measured_at >= latest_results.measured_at"
        )
        self.update_state = (
            f"UPDATE probe_state SET boot_id = {p}, agent_version = {p}, last_seen_at = {p}, "
            f"last_sent_at = {p}, last_measured_at = {p}, clock_skew_seconds = {p}, "
            f"stored_through_seq = {p}, max_seq = {p}, results_total = results_total + {p}, "
            f"running_checks = {p}, running_checks_at = {p}, config_version = {p}, "
            f"config_refused_version = {p}, config_error = {p}, config_reported_at = {p} "
            f"WHERE probe_id = {p}"
        )
        self.latest_of = (
            f"SELECT uplink, kind, target, measured_at FROM latest_results WHERE probe_id = {p}"
        )
        self.delete_latest = (
            f"DELETE FROM latest_results WHERE probe_id = {p} AND uplink = {p} AND kind = {p} "
            f"AND target = {p}"
        )
        self.update_heard = (
            f"UPDATE probe_state SET boot_id = {p}, agent_version = {p}, last_seen_at = {p}, "
            f"last_sent_at = {p}, clock_skew_seconds = {p} WHERE probe_id = {p}"
        )
        self._inserts: dict[tuple[str, ...], str] = {}

    def select_states(self, n: int) -> str:
        """The rows a group of batches reads and updates (``_State``), locked."""
        return self._select_state(
            "boot_id, last_measured_at, clock_skew_seconds, stored_through_seq, max_seq, "
            "running_checks, running_checks_at, config_version, config_refused_version, "
            "config_error, config_reported_at",
            n,
        )

    def select_seen(self, n: int) -> str:
        """The rows ``write_heard`` reads and updates, locked."""
        return self._select_state("boot_id, clock_skew_seconds, last_seen_at", n)

    def _select_state(self, columns: str, n: int) -> str:
        # in probe order, as every writer locks them (PostgreSQL: FOR UPDATE)
        return (
            f"SELECT probe_id, {columns} FROM probe_state WHERE probe_id IN "
            f"({', '.join([self.p] * n)}) ORDER BY probe_id{self.lock}"
        )

    def insert_results(self, columns: tuple[str, ...]) -> str:
        sql = self._inserts.get(columns)
        if sql is None:
            if len(self._inserts) >= MAX_INSERT_SHAPES:
                self._inserts.clear()
            sql = self._inserts[columns] = (
                f"INSERT INTO results ({', '.join(columns)}) "
                f"VALUES ({', '.join([self.p] * len(columns))}) "
                # No conflict target: on PostgreSQL the key is (probe_id, seq, measured_at),
                # the partition key being part of it; a seq already stored on another day is
                # left out before this by the read of stored seqs (``_one``).
                "ON CONFLICT DO NOTHING"
            )
        return sql


@dataclass
class _State:
    """One probe's ``probe_state`` row while its group is written."""

    probe_id: str
    boot_id: str | None
    last_measured_at: float | None
    clock_skew_seconds: float | None
    stored_through_seq: int
    max_seq: int
    running_checks: str | None = None
    running_checks_at: float | None = None
    config_version: str | None = None
    config_refused_version: str | None = None
    config_error: str | None = None
    config_reported_at: float | None = None
    accepted: int = 0
    last: PreparedBatch | None = None
    #: the stored list of running checks, parsed when first needed
    _running: Running | None = None
    #: a batch of the group brought a newer list: stale newest results are deleted
    running_changed: bool = False

    @property
    def running(self) -> Running | None:
        if self._running is None and self.running_checks and self.running_checks_at is not None:
            keys = frozenset(tuple(k) for k in orjson.loads(self.running_checks))
            self._running = Running(self.running_checks_at, keys)
        return self._running

    def take(self, running: Running) -> None:
        """Keep ``running`` if it is newer than the list stored."""
        if self.running_checks_at is not None and running.measured_at <= self.running_checks_at:
            return
        self._running = running
        self.running_checks = orjson.dumps(sorted(running.checks)).decode()
        self.running_checks_at = running.measured_at
        self.running_changed = True

    def take_config(self, config: ConfigReport) -> str | None:
        """Keep what a newer heartbeat says of the configuration; return the version it
        refused if that is news (not the one stored)."""
        if self.config_reported_at is not None and config.measured_at <= self.config_reported_at:
            return None
        news = (
            config.refused_version
            if config.refused_version is not None
            and config.refused_version != self.config_refused_version
            else None
        )
        self.config_version = config.version
        self.config_refused_version = config.refused_version
        self.config_error = config.error
        self.config_reported_at = config.measured_at
        return news


class _Group:
    """One transaction: the batches of a group, in probe order."""

    def __init__(self, conn: Connection, sql: _Sql, rollups: RollupWriter | None) -> None:
        self.conn = conn
        self.sql = sql
        self.rollups = rollups
        #: PostgreSQL with rollups: the rows of the next flush, which it folds
        self.accepted: list[dict[str, Any]] = []
        #: rows not yet inserted, by their columns
        self.pending: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        #: the newest result of each (probe, check) the group stores
        self.latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def write(self, batches: Sequence[PreparedBatch]) -> list[StoredBatch]:
        states = self._lock_states(sorted({b.probe_id for b in batches}))
        out = [self._one(states[b.probe_id], b) for b in batches]
        self._flush()
        self._forget_stale(states)
        if self.latest:
            self.conn.exec_driver_sql(
                self.sql.upsert_latest,
                [
                    (
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        r["seq"],
                        r["measured_at"],
                        r["ok"],
                        r.get("duration_seconds"),
                        r.get("error"),
                        r.get("rsrp_dbm"),
                    )
                    for key, r in sorted(self.latest.items())
                ],
            )
        self.conn.exec_driver_sql(
            self.sql.update_state,
            [
                (
                    st.last.boot_id,
                    st.last.agent_version,
                    st.last.received_at,
                    st.last.sent_at,
                    st.last_measured_at,
                    st.clock_skew_seconds,
                    st.stored_through_seq,
                    st.max_seq,
                    st.accepted,
                    st.running_checks,
                    st.running_checks_at,
                    st.config_version,
                    st.config_refused_version,
                    st.config_error,
                    st.config_reported_at,
                    st.probe_id,
                )
                for st in sorted(states.values(), key=lambda st: st.probe_id)
                if st.last is not None
            ],
        )
        return out

    def _forget_stale(self, states: dict[str, _State]) -> None:
        """Leave out of ``latest_results`` the checks a probe no longer runs: delete their rows
        when a newer list came, and never upsert their results (a backfill after the list)."""
        for key in [k for k, r in self.latest.items() if _stale(states[k[0]], k, r)]:
            del self.latest[key]
        for st in states.values():
            running = st.running
            if not st.running_changed or running is None:
                continue
            gone = [
                (st.probe_id, uplink, kind, target)
                for uplink, kind, target, measured_at in self.conn.exec_driver_sql(
                    self.sql.latest_of, (st.probe_id,)
                )
                if running.stale((uplink, kind, target), measured_at)
            ]
            if gone:
                self.conn.exec_driver_sql(self.sql.delete_latest, gone)
                log.info(
                    "probe %s no longer runs %d checks: their last results are forgotten",
                    st.probe_id,
                    len(gone),
                    extra={"probe": st.probe_id},
                )

    def _lock_states(self, probe_ids: list[str]) -> dict[str, _State]:
        select = self.sql.select_states(len(probe_ids))
        rows = self.conn.exec_driver_sql(select, tuple(probe_ids)).fetchall()
        if len(rows) < len(probe_ids):
            found = {r[0] for r in rows}
            missing = [(pid,) for pid in probe_ids if pid not in found]
            self.conn.exec_driver_sql(self.sql.insert_state, missing)
            rows = self.conn.exec_driver_sql(select, tuple(probe_ids)).fetchall()
        return {r[0]: _State(*r) for r in rows}

    def _flush(self) -> None:
        """Insert the pending rows, and with rollups on fold them: before any read of
        ``results`` and at the end."""
        if not self.pending:
            return
        new = sum(len(params) for params in self.pending.values())
        conn, rollups, copy = self.conn, self.rollups, self.sql.copy
        # SQLite with rollups: the rowids above this one are the rows inserted now
        after = 0
        if rollups is not None and not copy:
            after = conn.exec_driver_sql("SELECT max(rowid) FROM results").scalar() or 0
        if copy and _copy_new_rows(conn, self.pending):
            inserted = new
        else:
            inserted = sum(
                conn.exec_driver_sql(self.sql.insert_results(columns), params).rowcount
                for columns, params in self.pending.items()
            )
        self.pending.clear()
        if rollups is None:
            return
        _checked(inserted, new)
        if copy:
            rollups.write_fine(conn, fold_5m(self.accepted))
            self.accepted.clear()
        else:
            rollups.pend(conn, after)

    def _one(self, st: _State, b: PreparedBatch) -> StoredBatch:
        lo, hi = b.seqs[0], b.seqs[-1]
        rows = b.rows
        if lo <= st.max_seq:
            # Some of these may be stored already (a re-send after a lost answer).
            self._flush()
            have = {
                seq
                for (seq,) in self.conn.exec_driver_sql(
                    self.sql.stored_between, (b.probe_id, lo, min(hi, st.max_seq))
                )
            }
            if have:
                rows = [r for r in rows if r["seq"] not in have]
        pending = self.pending
        for r in rows:
            columns = tuple(r)
            params = tuple(r.values())
            try:
                pending[columns].append(params)
            except KeyError:
                pending[columns] = [params]
        accepted = len(rows)
        if accepted:
            self._note_latest(b, rows)
            if self.rollups is not None and self.sql.copy:
                self.accepted.extend(rows)
        max_seq = max(st.max_seq, hi)
        through = self._advance(b, st.stored_through_seq, max_seq)
        skew = smoothed_skew(
            st.clock_skew_seconds, st.boot_id, b.boot_id, b.received_at - b.sent_at
        )
        if st.last_measured_at is None or b.max_measured_at > st.last_measured_at:
            st.last_measured_at = b.max_measured_at
        st.boot_id = b.boot_id
        st.clock_skew_seconds = skew
        st.stored_through_seq = through
        st.max_seq = max_seq
        st.accepted += accepted
        st.last = b
        if b.running is not None:
            st.take(b.running)
        refused = st.take_config(b.config) if b.config is not None else None
        running = st.running
        if running is not None and b.running is None:
            stale = any(running.stale(k, r["measured_at"]) for k, r in b.latest.items())
            if not stale:
                running = None  # nothing for the live state to forget
        ack = ReportAck(
            accepted=accepted, duplicates=len(b.rows) - accepted, stored_through_seq=through
        )
        return StoredBatch(
            batch=b, ack=ack, clock_skew_seconds=skew, running=running, config_refused=refused
        )

    def _note_latest(self, b: PreparedBatch, rows: list[dict[str, Any]]) -> None:
        if len(rows) == len(b.rows):
            newest: dict[CheckKey, dict[str, Any]] = b.latest
        else:
            # Only what this batch adds: the rest was stored, and noted, before.
            newest = {}
            for r in rows:
                check = (r.get("uplink") or "", r["kind"], r["target"])
                mine = newest.get(check)
                if mine is None or r["measured_at"] >= mine["measured_at"]:
                    newest[check] = r
        latest = self.latest
        pid = b.probe_id
        for (uplink, kind, target), r in newest.items():
            key = (pid, uplink, kind, target)
            cur = latest.get(key)
            if cur is None or r["measured_at"] >= cur["measured_at"]:
                latest[key] = r

    def _advance(self, b: PreparedBatch, through: int, max_seq: int) -> int:
        """The highest seq up to which every result of the probe is stored."""
        if b.spool_floor_seq is not None:
            through = max(through, b.spool_floor_seq - 1)
        in_batch = set(b.seqs)
        while through + 1 in in_batch:
            through += 1
        if through >= max_seq:
            return through
        # Results stored earlier out of order (a heartbeat sent first on reconnect) may
        # continue the run beyond this batch.
        self._flush()
        while through < max_seq:
            chunk = [
                seq
                for (seq,) in self.conn.exec_driver_sql(
                    self.sql.stored_after, (b.probe_id, through)
                )
            ]
            for seq in chunk:
                if seq != through + 1:
                    return through
                through = seq
            if len(chunk) < _WALK_CHUNK:
                break
        return through


def _checked(inserted: int, new: int) -> None:
    """Fail the group unless the insert stored every new row and no other."""
    if inserted != new:
        # Never seen: the locked probe_state rows make the count exact. Folding anyway
        # would count a result twice or miss one, for good.
        raise StorageError(
            f"the insert stored {inserted} results where {new} were new: rollups would "
            "disagree with the rows"
        )


def _copy_new_rows(conn: Connection, pending: dict[tuple[str, ...], list[tuple[Any, ...]]]) -> bool:
    """COPY the pending rows into ``results`` (PostgreSQL); False, with nothing written, if
    one of them is stored already.

    The rows are known to be new: the probe's ``probe_state`` row is locked and the seqs a
    batch shares with stored ones were read and left out (``_Group._one``). So they need no
    ``ON CONFLICT`` and can be copied, which costs the client a small part of what one
    ``INSERT`` per row does (psycopg's ``executemany`` dumps and sends each row in Python,
    under the GIL the event loop needs). Rows stored by other means than this writer could
    still clash: then the COPY is undone to its savepoint and the caller inserts them with
    ``ON CONFLICT DO NOTHING`` as before.
    """
    from psycopg import OperationalError, errors

    dbapi: Any = conn.connection.driver_connection
    with dbapi.cursor() as cur:
        cur.execute("SAVEPOINT lomsong_copy")
        try:
            for columns, params in pending.items():
                with cur.copy(f"COPY results ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in params:
                        copy.write_row(row)
        except errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT lomsong_copy")
            log.warning("rows to copy were stored already; inserting them one by one")
            return False
        except OperationalError as exc:
            # Raised by the driver, not wrapped by SQLAlchemy: a connection lost under the
            # COPY has no SQLSTATE to be told by (``unavailable``), so it is said here.
            if getattr(exc, "sqlstate", None):
                raise
            raise StorageUnavailable(
                "unreachable", f"database {UNAVAILABLE_KINDS['unreachable']} (connection lost)"
            ) from exc
        cur.execute("RELEASE SAVEPOINT lomsong_copy")
    return True


def _stale(st: _State, key: tuple[str, str, str, str], row: dict[str, Any]) -> bool:
    running = st.running
    return running is not None and running.stale(key[1:], row["measured_at"])
