"""The collector's live state: what each probe and uplink said last, kept in memory.

It is updated after every commit, and reloaded from the database at start and periodically,
so that several replicas behind one load balancer converge on the same picture.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from lomsong.collector.ingest import Running
from lomsong.collector.registry import ProbeInfo, load_probes
from lomsong.collector.store import HeardState, StoredBatch
from lomsong.storage.schema import latest_results, probe_state


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
    #: runs of seqs, each from its first to its last, that are all in the results table: this
    #: process committed them, in batches without gaps (``stored_through_seq`` may also have
    #: moved past seqs the agent dropped, which were never stored); sorted, apart, the newest
    #: ``MAX_RUNS`` kept
    stored_runs: tuple[tuple[int, int], ...] = ()
    #: uplink name ("" for none) → (kind, target) → newest result
    checks: dict[str, dict[tuple[str, str], Latest]] = field(default_factory=dict)
    #: what its newest heartbeat that says so said of its configuration (``probe_state``)
    config_version: str | None = None
    config_refused_version: str | None = None
    config_error: str | None = None
    config_reported_at: float | None = None


class LiveState:
    """Registered probes and their newest results; safe to read while the writer updates it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.probes: dict[str, ProbeInfo] = {}
        self.live: dict[str, ProbeLive] = {}
        #: bumped on every change, so pages and caches know when to rebuild
        self.version = 0
        #: province → configurations refused by its agents that this process stored first
        #: (``lomsong_probe_config_errors_total``): each probe's refused version once
        self.config_refusals: dict[str, int] = {}

    def reload(self, engine: Engine) -> None:
        """Replace everything with what the database holds."""
        with self.lock:  # what this process knew it committed, before the database is read
            known = {
                pid: (p.stored_through_seq, max((r[1] for r in p.stored_runs), default=0))
                for pid, p in self.live.items()
            }
        with engine.connect() as conn:
            probes = load_probes(conn)
            live: dict[str, ProbeLive] = {pid: ProbeLive() for pid in probes}
            went_back: set[str] = set()
            for row in conn.execute(select(probe_state)):
                through, newest = known.get(row.probe_id, (0, 0))
                if row.stored_through_seq < through or row.max_seq < newest:
                    went_back.add(row.probe_id)  # restored to before what was committed
                p = live.setdefault(row.probe_id, ProbeLive())
                p.boot_id = row.boot_id
                p.agent_version = row.agent_version
                p.last_seen_at = row.last_seen_at
                p.last_measured_at = row.last_measured_at
                p.clock_skew_seconds = row.clock_skew_seconds
                p.stored_through_seq = row.stored_through_seq
                p.config_version = row.config_version
                p.config_refused_version = row.config_refused_version
                p.config_error = row.config_error
                p.config_reported_at = row.config_reported_at
            for row in conn.execute(select(latest_results)):
                p = live.setdefault(row.probe_id, ProbeLive())
                p.checks.setdefault(row.uplink, {})[(row.kind, row.target)] = Latest(
                    row.seq, row.measured_at, row.ok, row.duration_seconds, row.error, row.rsrp_dbm
                )
        with self.lock:
            # What this process committed stays known (batches committed while the database
            # was read included), unless the database went back to before it (a restore): then
            # a re-send must be stored again.
            for pid, p in live.items():
                old = self.live.get(pid)
                if old is not None and pid not in went_back:
                    p.stored_runs = old.stored_runs
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
                if p.last_seen_at is None or b.received_at > p.last_seen_at:
                    p.last_seen_at = b.received_at
                p.clock_skew_seconds = s.clock_skew_seconds
                p.stored_through_seq = s.ack.stored_through_seq
                if p.last_measured_at is None or b.max_measured_at > p.last_measured_at:
                    p.last_measured_at = b.max_measured_at
                p.stored_runs = _extended(p.stored_runs, b.seqs)
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
                if s.running is not None:
                    _forget(p.checks, s.running)
                config = b.config
                if config is not None and (
                    p.config_reported_at is None or config.measured_at > p.config_reported_at
                ):
                    p.config_version = config.version
                    p.config_refused_version = config.refused_version
                    p.config_error = config.error
                    p.config_reported_at = config.measured_at
                if s.config_refused is not None:
                    info = self.probes.get(b.probe_id)
                    province = info.province_code if info is not None else ""
                    self.config_refusals[province] = self.config_refusals.get(province, 0) + 1
            self.version += 1

    def heard(self, done: Sequence[HeardState]) -> None:
        """Fold in probes heard from with nothing new (called by the store after writing them)."""
        with self.lock:
            for d in done:
                h = d.heard
                p = self.live.setdefault(h.probe_id, ProbeLive())
                if p.last_seen_at is not None and h.received_at <= p.last_seen_at:
                    continue  # a stored batch came later (the database kept it too)
                p.last_seen_at = h.received_at
                p.boot_id = h.boot_id
                p.agent_version = h.agent_version
                p.clock_skew_seconds = d.clock_skew_seconds
            self.version += 1

    def known_stored(self, probe_id: str, lo: int, hi: int) -> int | None:
        """The probe's ``stored_through_seq`` if every seq from ``lo`` to ``hi`` is known to be
        stored, else None."""
        p = self.live.get(probe_id)
        if p is None:
            return None
        for first, last in p.stored_runs:
            if first <= lo and hi <= last:
                return p.stored_through_seq
        return None


def _forget(checks: dict[str, dict[tuple[str, str], Latest]], running: Running) -> None:
    """Drop the newest results of checks the probe no longer runs (as the store did)."""
    for uplink in list(checks):
        of_uplink = checks[uplink]
        for kind, target in [
            k for k, c in of_uplink.items() if running.stale((uplink, *k), c.measured_at)
        ]:
            del of_uplink[(kind, target)]
        if not of_uplink:
            del checks[uplink]


#: runs of stored seqs kept per probe: an agent back from a cut sends its newest heartbeat
#: first, which starts a run of its own above the one its re-sends fall in
MAX_RUNS = 4


def _extended(runs: tuple[tuple[int, int], ...], seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """The runs of stored seqs after a committed batch (``seqs`` sorted): every seq of the
    batch is in the table now, those stored before and those it added."""
    if not seqs or seqs[-1] - seqs[0] + 1 != len(seqs):
        return runs  # a batch with gaps neither extends nor starts a run
    lo, hi = seqs[0], seqs[-1]
    out: list[tuple[int, int]] = []
    for first, last in runs:
        if last < lo - 1 or first > hi + 1:
            out.append((first, last))
        else:  # touching or overlapping: one run now
            lo, hi = min(lo, first), max(hi, last)
    out.append((lo, hi))
    out.sort()
    return tuple(out[-MAX_RUNS:])  # the oldest seqs are the least likely to come again
