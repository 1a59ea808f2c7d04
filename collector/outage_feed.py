"""The detector's feed and state: stored results in, outage changes out, once per tick.

Only the leader (``leadership``) runs the detector. When it takes the lead it builds the
detector afresh from ``probe_state`` and the open outages in the history; then every tick it
syncs the registered probes from the live state, feeds the detector what was stored since the
last tick, lets it judge silence at the current time and writes what changed to the history.
The checks each agent runs (``probe_state.running_checks``, from its heartbeats) go to the
detector too, at its start and whenever a heartbeat brings a newer list, so that a check
removed from an agent's config does not keep an uplink's outage open, or keep one from opening.

Where the stored results come from depends on the database. With SQLite this process is the
only writer: the store hands each committed group to ``accept`` and the tick drains that inbox,
instead of reading every result back. With PostgreSQL other replicas write too, so the tick
reads the ``results`` received since its cursor, a small margin before it included.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, RowMapping, select

from lomsong.collector.detector import Change, Detector, DetectorConfig, Observation, ProbeMeta
from lomsong.collector.leadership import Leadership
from lomsong.collector.live import LiveState
from lomsong.collector.outage_history import OutageHistory
from lomsong.collector.store import StoredBatch
from lomsong.storage.schema import probe_state, results

log = logging.getLogger(__name__)

#: The feed re-reads this much before its cursor: a transaction that received a batch a moment
#: before the last read may have committed after it. Commits follow receipt by milliseconds
#: (one group commit); every second of margin is re-read on every tick, so it stays small.
FEED_MARGIN_SECONDS = 5.0

#: read every tick: the lists themselves only for the probes whose list is newer
_STATE_COLUMNS = (
    probe_state.c.probe_id,
    probe_state.c.stored_through_seq,
    probe_state.c.running_checks_at,
)

_RESULT_COLUMNS = (
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


@dataclass
class TickResult:
    """What one tick did: whether this process leads, what changed, how many results it read."""

    leader: bool
    changes: list[Change]
    observed: int


class OutageFeed:
    """Feeds the detector from the store (or the database) and writes its changes."""

    def __init__(
        self,
        engine: Engine,
        live: LiveState,
        config: DetectorConfig,
        history: OutageHistory,
        leadership: Leadership,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.live = live
        self.config = config
        self.history = history
        self.leadership = leadership
        self.clock = clock
        #: the running detector while this process leads, else ``None``
        self.detector: Detector | None = None
        self._cursor = 0.0
        self._inbox: deque[StoredBatch] | None = None if leadership.exclusive else deque()
        #: changes made when the detector was built (checks removed while it was down), which
        #: the next tick stores and hands on with its own
        self._built: list[Change] = []
        #: per probe, the time of the running list last given to the detector (PostgreSQL)
        self._running_at: dict[str, float] = {}

    @property
    def leader(self) -> bool:
        """Whether this process runs the detector (``/healthz`` says leader or standby)."""
        return self.detector is not None

    def accept(self, stored: Sequence[StoredBatch]) -> None:
        """Take committed batches (called by the store's writer after each commit)."""
        if self._inbox is not None:
            self._inbox.extend(stored)

    def prepare(self) -> None:
        """Build the detector before the store accepts anything, where this process always
        leads (SQLite). Built later, it would start from ``probe_state`` marks that already
        cover the batches stored in between, take them as seen and never observe them."""
        if self._inbox is not None and self.detector is None and self.leadership.hold():
            self.detector = self._build_detector()
            self._cursor = self.clock()

    def tick(self) -> TickResult:
        """One round: keep or take the lead, read new results, run the detector, store."""
        if not self.leadership.hold():
            self.detector = None
            return TickResult(False, [], 0)
        now = self.clock()
        if self.detector is None:
            self.detector = self._build_detector()
            self._cursor = now
        detector = self.detector
        changes, self._built = self._built, []
        if self._inbox is not None:
            # Probes are synced after the inbox is taken: a probe registered since the last
            # tick whose first batch is already in it is then known when it is observed.
            batches = self._take_inbox()
            self._sync_probes(detector)
            # The running lists go first: a removed check's results in the same batches are
            # then not judged.
            for stored in batches:
                if stored.running is not None:
                    b, running = stored.batch, stored.running
                    changes += detector.set_running(
                        b.probe_id, running.checks, running.measured_at, b.received_at
                    )
            observations, marks = self._drain(detector, batches)
        else:
            self._sync_probes(detector)
            # The marks are read before the results, so every result they cover is in the feed.
            marks = {}
            with self.engine.connect() as conn:
                newer: list[str] = []
                for pid, through, at in conn.execute(select(*_STATE_COLUMNS)):
                    marks[pid] = through
                    if at is not None and self._running_at.get(pid) != at:
                        newer.append(pid)
                if newer:
                    query = select(probe_state).where(probe_state.c.probe_id.in_(newer))
                    for state in conn.execute(query).mappings():
                        changes += self._running(detector, state, now)
            observations = self._feed(detector)
        changes += detector.observe(observations, marks)
        changes += detector.tick(now)
        self.history.persist(changes, now)
        return TickResult(True, changes, len(observations))

    def stand_down(self) -> None:
        """Stop leading: the lock is released and the detector forgotten."""
        self.leadership.release()
        self.detector = None

    def _running(self, detector: Detector, state: Mapping[Any, Any], now: float) -> list[Change]:
        """Give the detector a probe's running list (a ``probe_state`` row's) if it is newer
        than the last one given; parsed only then, not on every tick."""
        pid, listed, at = state["probe_id"], state["running_checks"], state["running_checks_at"]
        if at is None or not listed or self._running_at.get(pid) == at:
            return []
        self._running_at[pid] = at
        checks = [(u, k, t) for u, k, t in orjson.loads(listed)]
        return detector.set_running(pid, checks, at, now)

    def _build_detector(self) -> Detector:
        detector = Detector(self.config)
        with self.engine.connect() as conn:
            states = {r["probe_id"]: r for r in conn.execute(select(probe_state)).mappings()}
        self._sync_probes(detector, states)
        for outage in self.history.open_outages():
            detector.restore(outage)
        # Outages restored on uplinks whose checks were all removed meanwhile end now.
        now = self.clock()
        self._running_at = {}
        self._built = []
        for state in states.values():
            self._built += self._running(detector, state, now)
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
        """Results received since the cursor (less the margin) that the detector has not seen."""
        since = self._cursor - FEED_MARGIN_SECONDS
        out: list[Observation] = []
        newest = self._cursor
        with self.engine.connect() as conn:
            query = select(*_RESULT_COLUMNS).where(results.c.received_at >= since)
            for r in conn.execute(query):
                newest = max(newest, r.received_at)
                if detector.has_seen(r.probe_id, r.seq):
                    continue
                out.append(observation(r.probe_id, r.boot_id, r.received_at, r._mapping))
        self._cursor = newest
        return out

    def _take_inbox(self) -> list[StoredBatch]:
        """The committed batches so far, in commit order; later ones wait for the next tick."""
        assert self._inbox is not None
        taken: list[StoredBatch] = []
        while self._inbox:
            taken.append(self._inbox.popleft())
        return taken

    def _drain(
        self, detector: Detector, batches: Sequence[StoredBatch]
    ) -> tuple[list[Observation], dict[str, int]]:
        """Observations of the committed batches, in commit order, with the marks."""
        out: list[Observation] = []
        marks: dict[str, int] = {}
        seen = detector.has_seen
        for stored in batches:
            b = stored.batch
            marks[b.probe_id] = max(marks.get(b.probe_id, 0), stored.ack.stored_through_seq)
            pid, boot, received = b.probe_id, b.boot_id, b.received_at
            out.extend(
                observation(pid, boot, received, r) for r in b.rows if not seen(pid, r["seq"])
            )
        return out, marks


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
