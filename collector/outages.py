"""Running the detector inside the collector: one leader, a feed of stored results, history.

With PostgreSQL several collector replicas may run; exactly one of them holds a session-level
advisory lock and runs the detector. The lock lives with that replica's database connection, so
when the replica dies the server releases it and another replica takes over at its next tick,
rebuilding the detector from ``probe_state`` and the open outages, and the dispatcher from the
notification attempts already recorded, so nothing is alerted twice or lost. With SQLite there
is one collector, and it is always the leader.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, RowMapping, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from lomsong.collector.alerts.dispatcher import AlertSource, Attempt
from lomsong.collector.alerts.messages import Facts
from lomsong.collector.detector import (
    Change,
    Detector,
    DetectorConfig,
    Observation,
    Outage,
    ProbeMeta,
)
from lomsong.collector.live import LiveState
from lomsong.collector.store import StoredBatch
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import notification_attempts, outages, probe_state, results

log = logging.getLogger(__name__)

#: Advisory lock key of the detector ("lomsong" in ASCII, as a bigint).
LEADER_LOCK = 0x6C6F6D736F6E67
#: The feed re-reads this much before its cursor: a transaction that received a batch a moment
#: before the last read may have committed after it. Commits follow receipt by milliseconds
#: (one group commit); every second of margin is re-read on every tick, so it stays small.
FEED_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class HamletImpact:
    """The hamlets an outage leaves without signal (see ``CoverageService.impact``)."""

    hamlets: int
    population: int
    #: of those, hamlets without grid power
    without_power: int
    #: the largest of them, (name, population), most people first
    largest: tuple[tuple[str, int], ...] = ()


#: The hamlets an outage leaves without signal; ``None`` when that is not known.
Impact = Callable[[Outage], HamletImpact | None]


@dataclass
class TickResult:
    leader: bool
    changes: list[Change]
    observed: int


class OutageService:
    """Feeds the detector from the database and keeps the outage history."""

    def __init__(
        self,
        engine: Engine,
        live: LiveState,
        config: DetectorConfig,
        *,
        clock: Callable[[], float],
        public_url: str = "",
        impact: Impact | None = None,
    ) -> None:
        self.engine = engine
        self.live = live
        self.config = config
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.impact = impact
        self.detector: Detector | None = None
        self._lock_conn: Connection | None = None
        self._cursor = 0.0
        self._is_pg = engine.dialect.name == "postgresql"
        #: With SQLite this process is the only writer: the detector takes the committed
        #: batches as they are, instead of reading every result back from the database.
        self._inbox: deque[StoredBatch] | None = None if self._is_pg else deque()

    def accept(self, stored: Sequence[StoredBatch]) -> None:
        """Take committed batches (called by the store's writer after each commit)."""
        if self._inbox is not None:
            self._inbox.extend(stored)

    # -- leadership ----------------------------------------------------------------------------

    @property
    def leader(self) -> bool:
        return self.detector is not None

    def _hold_leadership(self) -> bool:
        if not self._is_pg:
            return True
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError:
                log.warning("lost the detector lock's connection; standing down")
                self._drop_lock()
                return False
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar()
            conn.commit()
        except SQLAlchemyError:
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._lock_conn = conn
        return True

    def _drop_lock(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.invalidate()
            finally:
                self._lock_conn = None
        self.detector = None

    def close(self) -> None:
        """Stand down (the lock goes with the connection)."""
        self._drop_lock()

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        """One round: keep or take leadership, read new results, run the detector, store."""
        if not self._hold_leadership():
            self.detector = None
            return TickResult(False, [], 0)
        now = self.clock()
        changes: list[Change] = []
        if self.detector is None:
            self.detector = self._build_detector()
            self._cursor = now
        detector = self.detector
        self._sync_probes(detector)
        if self._inbox is not None:
            observations, marks = self._drain(detector)
        else:
            # The marks are read before the results, so every result they cover is in the feed.
            with self.engine.connect() as conn:
                marks = dict(
                    conn.execute(
                        select(probe_state.c.probe_id, probe_state.c.stored_through_seq)
                    ).all()
                )
            observations = self._feed(detector)
        changes += detector.observe(observations, marks)
        changes += detector.tick(now)
        if changes:
            self._persist(changes, now)
        return TickResult(True, changes, len(observations))

    def _build_detector(self) -> Detector:
        detector = Detector(self.config)
        with self.engine.connect() as conn:
            states = {r["probe_id"]: r for r in conn.execute(select(probe_state)).mappings()}
            self._sync_probes(detector, states)
            for row in conn.execute(select(outages).where(outages.c.ended_at.is_(None))).mappings():
                detector.restore(outage_from_row(row))
        log.info("detector leadership taken: %d probes", len(states))
        return detector

    def _sync_probes(
        self, detector: Detector, states: Mapping[str, RowMapping] | None = None
    ) -> None:
        with self.live.lock:
            probes = dict(self.live.probes)
        for pid, info in probes.items():
            meta = ProbeMeta(
                pid,
                info.commune_code,
                info.province_code,
                {u.name: u.operator for u in info.uplinks},
            )
            state = states.get(pid) if states else None
            if state is None:
                detector.set_probe(meta)
                continue
            detector.set_probe(
                meta,
                last_heard=state["last_seen_at"],
                last_measured=state["last_measured_at"],
                boot_id=state["boot_id"],
                through=state["stored_through_seq"],
            )

    def _feed(self, detector: Detector) -> list[Observation]:
        since = self._cursor - FEED_MARGIN_SECONDS
        cols = (
            results.c.probe_id,
            results.c.seq,
            results.c.measured_at,
            results.c.received_at,
            results.c.kind,
            results.c.target,
            results.c.uplink,
            results.c.ok,
            results.c.duration_seconds,
            results.c.packets_sent,
            results.c.packets_received,
            results.c.boot_id,
            results.c.details,
        )
        out: list[Observation] = []
        newest = self._cursor
        with self.engine.connect() as conn:
            for r in conn.execute(select(*cols).where(results.c.received_at >= since)):
                newest = max(newest, r.received_at)
                if detector.has_seen(r.probe_id, r.seq):
                    continue
                out.append(observation(r.probe_id, r.boot_id, r.received_at, r._mapping))
        self._cursor = newest
        return out

    def _drain(self, detector: Detector) -> tuple[list[Observation], dict[str, int]]:
        """Observations of the committed batches, in commit order, with the marks."""
        assert self._inbox is not None
        out: list[Observation] = []
        marks: dict[str, int] = {}
        seen = detector.has_seen
        while self._inbox:
            stored = self._inbox.popleft()
            b = stored.batch
            marks[b.probe_id] = max(marks.get(b.probe_id, 0), stored.ack.stored_through_seq)
            pid, boot, received = b.probe_id, b.boot_id, b.received_at
            out.extend(
                observation(pid, boot, received, r) for r in b.rows if not seen(pid, r["seq"])
            )
        return out, marks

    def _persist(self, changes: Sequence[Change], now: float) -> None:
        latest: dict[str, Outage] = {}
        for ch in changes:
            latest[ch.outage.id] = ch.outage
        dialect = postgresql if self._is_pg else sqlite
        ins = dialect.insert(outages)
        stmt = ins.on_conflict_do_update(
            index_elements=["id"],
            set_={
                c: ins.excluded[c]
                for c in ("cause", "started_at", "ended_at", "resolved_at", "updated_at")
            },
        )
        with write_transaction(self.engine) as conn:
            conn.execute(stmt, [outage_row(o, now) for o in latest.values()])

    # -- alerts --------------------------------------------------------------------------------

    def alert_sources(self, changes: Sequence[Change]) -> list[AlertSource]:
        """The changed outages as alerts, with the facts a message needs."""
        latest: dict[str, Outage] = {}
        for ch in changes:
            latest[ch.outage.id] = ch.outage
        return [self.alert_source(o) for o in latest.values()]

    def alert_source(self, o: Outage) -> AlertSource:
        info = self.live.probes.get(o.probe_id)
        impact = self._impact(o)
        facts = Facts(
            condition=o.condition,
            province_code=o.province_code,
            province_name=info.province_name if info else o.province_code,
            commune_code=o.commune_code,
            commune_name=info.commune_name if info else o.commune_code,
            probe_id=o.probe_id,
            cause=o.cause,
            uplink=o.uplink,
            operator=o.operator,
            started_at=o.started_at,
            ended_at=o.ended_at,
            hamlets=impact.hamlets if impact else None,
            population=impact.population if impact else None,
            hamlets_without_power=impact.without_power if impact else None,
            hamlet_names=impact.largest if impact else (),
            map_url=(
                f"{self.public_url}/maps/province/{o.province_code}" if self.public_url else ""
            ),
        )
        return AlertSource(
            fingerprint=o.id, status="firing" if o.active else "resolved", facts=facts
        )

    def _impact(self, o: Outage) -> HamletImpact | None:
        """The hamlets ``o`` leaves without signal; a failure says "not known", never stops
        the alert."""
        if self.impact is None:
            return None
        try:
            return self.impact(o)
        except ImportError:  # a collector without the geo extra has no coverage
            return None
        except Exception:
            log.exception("the hamlets affected by outage %s could not be computed", o.id)
            return None

    def active_sources(self) -> list[AlertSource]:
        assert self.detector is not None
        return [self.alert_source(o) for o in self.detector.active()]

    def record_attempt(self, a: Attempt) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                notification_attempts.insert().values(
                    receiver=a.receiver,
                    route=a.route,
                    group_key=a.group_key,
                    status=a.status,
                    fingerprints=orjson.dumps(list(a.fingerprints)).decode(),
                    attempt=a.attempt,
                    ok=a.ok,
                    error=(a.error or "")[:512] or None,
                    at=a.at,
                )
            )

    def sent_groups(self) -> list[tuple[str, list[str], float]]:
        """For each group: the alerts firing in its newest message, and when it was sent."""
        newest = (
            select(
                notification_attempts.c.group_key, func.max(notification_attempts.c.id).label("id")
            )
            .where(notification_attempts.c.attempt == 1)
            .group_by(notification_attempts.c.group_key)
            .subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(notification_attempts).join(
                    newest, newest.c.id == notification_attempts.c.id
                )
            ).mappings()
            return [
                (
                    r["group_key"],
                    orjson.loads(r["fingerprints"]) if r["status"] == "firing" else [],
                    r["at"],
                )
                for r in rows
            ]


def outage_row(o: Outage, now: float) -> dict[str, object]:
    return {
        "id": o.id,
        "probe_id": o.probe_id,
        "commune_code": o.commune_code,
        "province_code": o.province_code,
        "condition": o.condition,
        "cause": o.cause,
        "uplink": o.uplink,
        "operator": o.operator,
        "started_at": o.started_at,
        "ended_at": o.ended_at,
        "detected_at": o.detected_at,
        "resolved_at": o.resolved_at,
        "updated_at": now,
    }


def outage_from_row(m: RowMapping) -> Outage:
    return Outage(
        id=m["id"],
        probe_id=m["probe_id"],
        commune_code=m["commune_code"],
        province_code=m["province_code"],
        condition=m["condition"],
        cause=m["cause"],
        started_at=m["started_at"],
        detected_at=m["detected_at"],
        uplink=m["uplink"],
        operator=m["operator"],
        ended_at=m["ended_at"],
        resolved_at=m["resolved_at"],
    )


def observation(
    probe_id: str, boot_id: str, received_at: float, r: Mapping[Any, Any]
) -> Observation:
    """A stored result (a table row, or a row as the store wrote it) as the detector sees it."""
    uptime = None
    details = r.get("details")
    if r["kind"] == "heartbeat" and details:
        uptime = orjson.loads(details).get("uptime_seconds")
    get = r.get
    # positional: thousands a second, and keywords cost a third more
    return Observation(
        probe_id,
        r["seq"],
        r["measured_at"],
        received_at,
        r["kind"],
        get("uplink"),
        bool(r["ok"]),
        boot_id,
        get("target", ""),
        get("duration_seconds"),
        get("packets_sent"),
        get("packets_received"),
        uptime,
    )
