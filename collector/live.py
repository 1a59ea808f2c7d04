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
from lomsong.collector.store import StoredBatch


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
