"""The collector's live state: what each probe and uplink said last, kept in memory.

It is updated after every commit, and reloaded from the database at start and periodically,
so that several replicas behind one load balancer converge on the same picture.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from lomsong.collector.registry import ProbeInfo, load_probes
from lomsong.collector.schema import latest_results, probe_state
from lomsong.collector.store import Heard, StoredBatch, smoothed_skew


@dataclass
class Latest:
    """The newest result of one check (kind and target) on one uplink."""

    seq: int
    measured_at: float
    ok: bool
    duration_seconds: float | None
    error: str | None
    rsrp_dbm: float | None


@dataclass
class ProbeLive:
    """What the collector knows of one probe right now."""

    boot_id: str | None = None
    agent_version: str | None = None
    last_seen_at: float | None = None
    last_measured_at: float | None = None
    clock_skew_seconds: float | None = None
    stored_through_seq: int = 0
    #: seqs from the first to the second are all in the results table: this process committed
    #: them, in batches without gaps (``stored_through_seq`` may also have moved past seqs the
    #: agent dropped, which were never stored)
    stored_run: tuple[int, int] | None = None
    #: uplink name ("" for none) → (kind, target) → newest result
    checks: dict[str, dict[tuple[str, str], Latest]] = field(default_factory=dict)


class LiveState:
    """Registered probes and their newest results; safe to read while the writer updates it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.probes: dict[str, ProbeInfo] = {}
        self.live: dict[str, ProbeLive] = {}
        #: bumped on every change, so pages and caches know when to rebuild
        self.version = 0

    def reload(self, engine: Engine) -> None:
        """Replace everything with what the database holds."""
        with engine.connect() as conn:
            probes = load_probes(conn)
            live: dict[str, ProbeLive] = {pid: ProbeLive() for pid in probes}
            for row in conn.execute(select(probe_state)):
                p = live.setdefault(row.probe_id, ProbeLive())
                p.boot_id = row.boot_id
                p.agent_version = row.agent_version
                p.last_seen_at = row.last_seen_at
                p.last_measured_at = row.last_measured_at
                p.clock_skew_seconds = row.clock_skew_seconds
                p.stored_through_seq = row.stored_through_seq
            for row in conn.execute(select(latest_results)):
                p = live.setdefault(row.probe_id, ProbeLive())
                p.checks.setdefault(row.uplink, {})[(row.kind, row.target)] = Latest(
                    row.seq, row.measured_at, row.ok, row.duration_seconds, row.error, row.rsrp_dbm
                )
        with self.lock:
            # what this process knows it committed stays true whatever the database says
            for pid, p in live.items():
                old = self.live.get(pid)
                if old is not None:
                    p.stored_run = old.stored_run
            self.probes = probes
            self.live = live
            self.version += 1

    def apply(self, stored: Sequence[StoredBatch]) -> None:
        """Fold committed batches in (called by the store after each commit)."""
        with self.lock:
            for s in stored:
                b = s.batch
                p = self.live.setdefault(b.probe_id, ProbeLive())
                p.boot_id = b.boot_id
                p.agent_version = b.agent_version
                p.last_seen_at = b.received_at
                p.clock_skew_seconds = s.clock_skew_seconds
                p.stored_through_seq = s.ack.stored_through_seq
                if p.last_measured_at is None or b.max_measured_at > p.last_measured_at:
                    p.last_measured_at = b.max_measured_at
                p.stored_run = _extended(p.stored_run, b.seqs)
                # The newest result of each check, as the batch's preparation found them.
                for (uplink, kind, target), r in b.latest.items():
                    checks = p.checks.setdefault(uplink, {})
                    m = r["measured_at"]
                    cur = checks.get((kind, target))
                    if cur is None or m >= cur.measured_at:
                        checks[(kind, target)] = Latest(
                            r["seq"],
                            m,
                            r["ok"],
                            r.get("duration_seconds"),
                            r.get("error"),
                            r.get("rsrp_dbm"),
                        )
            self.version += 1

    def heard(
        self, probe_id: str, boot_id: str, agent_version: str, received_at: float, sent_at: float
    ) -> Heard:
        """A probe heard from with nothing new to store; what to write to ``probe_state``."""
        with self.lock:
            p = self.live.setdefault(probe_id, ProbeLive())
            skew = smoothed_skew(p.clock_skew_seconds, p.boot_id, boot_id, received_at - sent_at)
            p.boot_id = boot_id
            p.agent_version = agent_version
            if p.last_seen_at is None or received_at > p.last_seen_at:
                p.last_seen_at = received_at
            p.clock_skew_seconds = skew
            self.version += 1
        return Heard(probe_id, boot_id, agent_version, received_at, sent_at, skew)

    def all_stored(self, probe_id: str, lo: int, hi: int) -> bool:
        """Whether every seq from ``lo`` to ``hi`` of the probe is known to be stored."""
        p = self.live.get(probe_id)
        run = p.stored_run if p is not None else None
        return run is not None and run[0] <= lo and hi <= run[1]


def _extended(run: tuple[int, int] | None, seqs: list[int]) -> tuple[int, int] | None:
    """The run of stored seqs after a committed batch (``seqs`` sorted): every seq of the batch
    is in the table now, those stored before and those it added."""
    if not seqs or seqs[-1] - seqs[0] + 1 != len(seqs):
        return run  # a batch with gaps neither extends nor starts a run
    lo, hi = seqs[0], seqs[-1]
    if run is None or lo > run[1] + 1 or hi < run[0] - 1:
        return (lo, hi)  # apart from the old run: the newest one is the one re-sends touch
    return (min(lo, run[0]), max(hi, run[1]))
