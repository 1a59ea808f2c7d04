"""The outage detector: a pure state machine fed by results and by the passing of time.

Nothing here reads a clock, a database or a socket. ``observe`` takes results as they were
stored, ``tick`` takes the current time, and both answer with the outages they opened, changed
or closed (DESIGN §7):

- **probe silent**: nothing heard for longer than the grace period. Opened at the last time
  heard; when the probe is back and its backfill has arrived, classified as **network** (results
  recorded during the gap with failing uplinks), **power** (no results in the gap and a new
  ``boot_id``) or **unknown**, with start and end corrected from the probe's own measurements.
- **uplink down**: every check stream of an uplink failed its last N runs; closed when one of
  them succeeds M times in a row (hysteresis).
- **degraded**: packet loss or latency over a threshold across a window of icmp results.

``set_running`` takes the checks an agent runs, as its heartbeat listed them: a check left out
of its config is forgotten, and the uplink is judged again by the checks that remain.
"""

from __future__ import annotations

import math
import statistics
import uuid
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from pydantic import ConfigDict

from lomsong.config.collector import DetectorSettings

Condition = Literal["probe_silent", "uplink_down", "degraded"]
Cause = Literal["power", "network", "unknown"]
Action = Literal["open", "update", "close"]
#: Why an outage was closed other than by what it watches recovering.
CloseReason = Literal["checks_removed"]
#: A check an agent runs: (uplink, "" for none; kind; target), as its heartbeat lists it.
RunningKey = tuple[str, str, str]

#: Check kinds that say whether an uplink reaches the outside; modem and heartbeat do not.
REACHABILITY_KINDS = frozenset({"icmp", "tcp", "http", "dns"})
#: The quality window keeps at most this many rounds (a 5-minute window of 1-second pings).
WINDOW_MAX_SAMPLES = 512
_NAN = math.nan


class DetectorConfig(DetectorSettings):
    """The detector's thresholds: the collector's ``detector`` settings and the probes' report
    interval, which silence is measured in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    report_interval_seconds: float = 30.0

    @property
    def grace_seconds(self) -> float:
        return self.silent_after(self.report_interval_seconds)


@dataclass(frozen=True)
class ProbeMeta:
    """Where a probe stands and what its uplinks are, as the detector needs it."""

    probe_id: str
    commune_code: str
    province_code: str
    #: uplink name → operator
    uplinks: Mapping[str, str]


class Observation(NamedTuple):
    """One stored result, as the detector sees it (a tuple: thousands are built a second)."""

    probe_id: str
    seq: int
    measured_at: float
    received_at: float
    kind: str
    uplink: str | None
    ok: bool
    boot_id: str
    target: str = ""
    duration_seconds: float | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    uptime_seconds: float | None = None


@dataclass(frozen=True)
class Outage:
    """One outage, open (``ended_at`` is None) or closed."""

    id: str
    probe_id: str
    commune_code: str
    province_code: str
    condition: Condition
    cause: Cause | None
    started_at: float
    detected_at: float
    uplink: str | None = None
    operator: str | None = None
    ended_at: float | None = None
    resolved_at: float | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class Change:
    action: Action
    outage: Outage
    #: set on a close that no recovery caused: the checks that failed were removed from the
    #: agent's config, so nobody saw the link come back (the journal says so)
    reason: CloseReason | None = None


@dataclass(slots=True)
class _Stream:
    """Consecutive outcomes of one check (kind, target) on one uplink."""

    last_measured: float = float("-inf")
    fail_streak: int = 0
    fail_since: float | None = None
    ok_streak: int = 0
    ok_since: float | None = None


class _Window:
    """The newest answered icmp rounds of one uplink, oldest first, at most
    ``WINDOW_MAX_SAMPLES``: measured_at, loss ratio and round-trip (NaN for none) of each, as
    three doubles in one array.

    Every uplink of every probe holds one, full after ``degraded_window_seconds``: 13,000
    uplinks for the national shape, 80 answered icmp checks each at 4× the national rate. A
    tuple of three float objects per round would take 136 bytes, 130 MB in all and 830 MB at
    the cap; three doubles take 24.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = array("d")

    def __len__(self) -> int:
        return len(self._data) // 3

    def append(self, measured_at: float, loss: float, rtt: float | None) -> None:
        data = self._data
        data.extend((measured_at, loss, _NAN if rtt is None else rtt))
        if len(data) > 3 * WINDOW_MAX_SAMPLES:
            del data[:3]

    def drop_before(self, cutoff: float) -> None:
        """Drop the oldest rounds while they were measured before ``cutoff``."""
        data = self._data
        n = 0
        end = len(data)
        while n < end and data[n] < cutoff:
            n += 3
        if n:
            del data[:n]

    def clear(self) -> None:
        del self._data[:]

    def first_measured(self) -> float:
        return self._data[0]

    def mean_loss(self) -> float:
        return sum(self._data[1::3]) / len(self)

    def median_rtt(self) -> float | None:
        rtts = [x for x in self._data[2::3] if x == x]  # NaN != NaN: rounds without one
        return statistics.median(rtts) if rtts else None


@dataclass(slots=True)
class _Uplink:
    streams: dict[tuple[str, str], _Stream] = field(default_factory=dict)
    window: _Window = field(default_factory=_Window)
    down: Outage | None = None
    degraded: Outage | None = None


@dataclass
class _Return:
    """A silent probe that is back: its backfill is awaited before it is classified."""

    received_at: float
    measured_at: float
    seq: int
    boot_id: str
    new_boot: bool
    old_boot: str | None = None
    boot_time: float | None = None
    #: the last measurement of the old boot (backfill included) and the first of the new one
    last_old_measured: float | None = None
    first_new_measured: float | None = None
    gap_failures: int = 0
    gap_checks: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    ok_after_failure: float | None = None


@dataclass(slots=True)
class _Probe:
    meta: ProbeMeta
    last_heard: float | None = None
    last_measured: float | None = None
    boot_id: str | None = None
    through: int = 0
    pending: set[int] = field(default_factory=set)
    uplinks: dict[str, _Uplink] = field(default_factory=dict)
    silent: Outage | None = None
    back: _Return | None = None
    #: uplinks whose quality window changed in this arrival, with the newest result
    dirty: dict[str, Observation] = field(default_factory=dict)
    #: the checks the agent runs, as its newest heartbeat that listed them said, and when that
    #: heartbeat was measured; None while no heartbeat listed them (older agents never do)
    running: frozenset[RunningKey] | None = None
    running_at: float = float("-inf")


class Detector:
    """Tracks every probe's state and turns results and time into outage changes."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._probes: dict[str, _Probe] = {}

    # -- set-up --------------------------------------------------------------------------------

    def set_probe(
        self,
        meta: ProbeMeta,
        *,
        last_heard: float | None = None,
        last_measured: float | None = None,
        boot_id: str | None = None,
        through: int = 0,
    ) -> None:
        """Add or update a probe; the keyword values seed a detector started on old data."""
        p = self._probes.get(meta.probe_id)
        if p is None:
            self._probes[meta.probe_id] = _Probe(meta, last_heard, last_measured, boot_id, through)
        else:
            p.meta = meta

    def restore(self, outage: Outage) -> None:
        """Take back an outage that was open when the detector last stopped."""
        p = self._probes.get(outage.probe_id)
        if p is None or not outage.active:
            return
        if outage.condition == "probe_silent":
            p.silent = outage
        elif outage.uplink is not None:
            up = p.uplinks.setdefault(outage.uplink, _Uplink())
            if outage.condition == "uplink_down":
                up.down = outage
            else:
                up.degraded = outage

    def set_running(
        self,
        probe_id: str,
        checks: Iterable[RunningKey],
        measured_at: float,
        received_at: float,
    ) -> list[Change]:
        """Take the checks an agent runs, as a heartbeat measured at ``measured_at`` listed
        them: forget the others and judge their uplinks again by the checks that remain.

        A check left out is forgotten only if its newest result is not newer than the list (a
        newer one comes from a config whose heartbeat is still on its way), and its results
        measured before the list are not judged any more (a backfill). An older list than the
        one held changes nothing.
        """
        p = self._probes.get(probe_id)
        if p is None or measured_at <= p.running_at:
            return []
        p.running = frozenset(checks)
        p.running_at = measured_at
        changes: list[Change] = []
        for name, up in p.uplinks.items():
            self._forget(p, name, up, received_at, changes)
        return changes

    def has_seen(self, probe_id: str, seq: int) -> bool:
        """Whether this result was observed already (the feed re-reads a safety margin)."""
        p = self._probes.get(probe_id)
        return p is not None and (seq <= p.through or seq in p.pending)

    def active(self) -> list[Outage]:
        """Every open outage."""
        out: list[Outage] = []
        for p in self._probes.values():
            if p.silent is not None:
                out.append(p.silent)
            for up in p.uplinks.values():
                out.extend(o for o in (up.down, up.degraded) if o is not None)
        return out

    # -- events --------------------------------------------------------------------------------

    def observe(
        self,
        observations: Iterable[Observation],
        stored_through: Mapping[str, int] | None = None,
    ) -> list[Change]:
        """Fold stored results in, in the order of their seq per probe.

        ``stored_through`` is the collector's contiguous mark per probe (everything up to it is
        stored), read before these results: it tells when a returning probe's backlog is
        complete, even across seqs the agent dropped or a spool that started at a high seq.
        """
        changes: list[Change] = []
        by_probe: dict[str, list[Observation]] = {}
        for o in observations:
            by_probe.setdefault(o.probe_id, []).append(o)
        for probe_id, obs in by_probe.items():
            p = self._probes.get(probe_id)
            if p is None:
                continue
            obs.sort(key=lambda o: o.seq)
            mark = stored_through.get(probe_id) if stored_through else None
            self._observe_probe(p, obs, changes, mark)
        return changes

    def tick(self, now: float) -> list[Change]:
        """Open silent outages whose grace has run out; close stalled backfills."""
        changes: list[Change] = []
        grace = self.config.grace_seconds
        for p in self._probes.values():
            if p.silent is None:
                if p.last_heard is not None and now - p.last_heard > grace:
                    p.silent = Outage(
                        id=_new_id(),
                        probe_id=p.meta.probe_id,
                        commune_code=p.meta.commune_code,
                        province_code=p.meta.province_code,
                        condition="probe_silent",
                        cause=None,
                        started_at=p.last_heard,
                        detected_at=now,
                    )
                    p.back = None
                    changes.append(Change("open", p.silent))
            elif (
                p.back is not None
                and now - p.back.received_at > self.config.backfill_timeout_seconds
            ):
                changes.append(self._close_silent(p, now))
        return changes

    # -- internals -----------------------------------------------------------------------------

    def _observe_probe(
        self, p: _Probe, obs: list[Observation], changes: list[Change], mark: int | None
    ) -> None:
        newest_received = max(o.received_at for o in obs)
        if (
            p.silent is not None
            and p.back is None
            and (p.last_heard is None or newest_received > p.last_heard)
        ):
            # Back from silence. The newest result of this arrival marks the return; what was
            # measured before it is the gap's backfill.
            newest = max(obs, key=lambda o: o.measured_at)
            p.back = _Return(
                received_at=newest_received,
                measured_at=newest.measured_at,
                seq=max(o.seq for o in obs),
                boot_id=newest.boot_id,
                new_boot=p.boot_id is not None and newest.boot_id != p.boot_id,
                old_boot=p.boot_id,
            )
            changes.append(Change("update", p.silent))
        gap_start = p.silent.started_at if p.silent is not None else None
        for o in obs:
            self._advance_seq(p, o.seq)
            if p.back is not None and gap_start is not None:
                self._note_gap(p.back, o, gap_start, p.last_measured)
            if (
                o.uplink is not None
                and o.kind in REACHABILITY_KINDS
                and not (
                    p.running is not None
                    and o.measured_at <= p.running_at
                    and (o.uplink, o.kind, o.target) not in p.running
                )
            ):
                self._stream(p, o, changes)
            # While a return is being classified, the last measurement before the gap stays.
            if p.back is None and (p.last_measured is None or o.measured_at > p.last_measured):
                p.last_measured = o.measured_at
                p.boot_id = o.boot_id
        for uplink, newest_obs in p.dirty.items():
            self._degraded(p, p.uplinks[uplink], newest_obs, changes)
        p.dirty.clear()
        p.last_heard = (
            newest_received if p.last_heard is None else max(p.last_heard, newest_received)
        )
        if mark is not None and mark > p.through:
            p.through = mark
            p.pending = {q for q in p.pending if q > mark}
            while p.through + 1 in p.pending:
                p.through += 1
                p.pending.discard(p.through)
        if p.back is not None and p.silent is not None and p.through >= p.back.seq:
            changes.append(self._close_silent(p, newest_received))

    def _advance_seq(self, p: _Probe, seq: int) -> None:
        if seq <= p.through:
            return
        p.pending.add(seq)
        while p.through + 1 in p.pending:
            p.through += 1
            p.pending.discard(p.through)

    def _note_gap(
        self, back: _Return, o: Observation, gap_start: float, before: float | None
    ) -> None:
        if o.kind == "heartbeat" and o.uptime_seconds is not None and back.new_boot:
            boot = o.measured_at - o.uptime_seconds
            if boot >= (before or gap_start) and (back.boot_time is None or boot < back.boot_time):
                back.boot_time = boot
        if back.new_boot:
            m = o.measured_at
            if o.boot_id == back.old_boot:
                if back.last_old_measured is None or m > back.last_old_measured:
                    back.last_old_measured = m
            elif back.first_new_measured is None or m < back.first_new_measured:
                back.first_new_measured = m
        floor = before if before is not None else gap_start
        if not (floor < o.measured_at < back.measured_at):
            return
        if o.uplink is None or o.kind not in REACHABILITY_KINDS:
            return
        back.gap_checks += 1
        if not o.ok:
            back.gap_failures += 1
            if back.first_failure is None or o.measured_at < back.first_failure:
                back.first_failure = o.measured_at
            if back.last_failure is None or o.measured_at > back.last_failure:
                back.last_failure = o.measured_at
                back.ok_after_failure = None
        elif back.last_failure is not None and o.measured_at > back.last_failure:
            if back.ok_after_failure is None or o.measured_at < back.ok_after_failure:
                back.ok_after_failure = o.measured_at

    def _close_silent(self, p: _Probe, now: float) -> Change:
        assert p.silent is not None
        back = p.back
        outage = p.silent
        if back is None:
            closed = replace(outage, cause="unknown", ended_at=now, resolved_at=now)
        elif back.gap_failures:
            closed = replace(
                outage,
                cause="network",
                started_at=back.first_failure or outage.started_at,
                ended_at=back.ok_after_failure or back.measured_at,
                resolved_at=now,
            )
        elif back.new_boot:
            # The box restarted and nothing it measured failed: it lost power. It was dark from
            # its last measurement (results it could not send before the cut included) until
            # it booted again.
            seen = [x for x in (p.last_measured, back.last_old_measured) if x is not None]
            last = max(seen) if seen else outage.started_at
            if back.boot_time is not None and back.boot_time >= last:
                end = back.boot_time
            elif back.first_new_measured is not None:
                end = back.first_new_measured
            else:
                end = back.measured_at
            closed = replace(outage, cause="power", started_at=last, ended_at=end, resolved_at=now)
        else:
            closed = replace(outage, cause="unknown", ended_at=back.measured_at, resolved_at=now)
        if closed.ended_at is not None and closed.ended_at < closed.started_at:
            closed = replace(closed, ended_at=closed.started_at)
        p.silent = None
        p.back = None
        if back is not None:
            p.boot_id = back.boot_id
            p.last_measured = max(p.last_measured or back.measured_at, back.measured_at)
        return Change("close", closed)

    def _stream(self, p: _Probe, o: Observation, changes: list[Change]) -> None:
        assert o.uplink is not None
        # get-then-create: setdefault would build a fresh _Uplink and _Stream for every result
        up = p.uplinks.get(o.uplink)
        if up is None:
            up = p.uplinks[o.uplink] = _Uplink()
        key = (o.kind, o.target)
        s = up.streams.get(key)
        if s is None:
            s = up.streams[key] = _Stream()
        if o.measured_at <= s.last_measured:
            return  # older than what this stream already judged
        s.last_measured = o.measured_at
        cfg = self.config
        if o.ok:
            if s.ok_streak == 0:
                s.ok_since = o.measured_at
            s.ok_streak += 1
            s.fail_streak, s.fail_since = 0, None
        else:
            if s.fail_streak == 0:
                s.fail_since = o.measured_at
            s.fail_streak += 1
            s.ok_streak, s.ok_since = 0, None
        if up.down is None:
            # only a failure can complete every stream's failure streak
            if not o.ok and all(
                x.fail_streak >= cfg.down_after_failures for x in up.streams.values()
            ):
                start = max(x.fail_since for x in up.streams.values() if x.fail_since is not None)
                up.down = self._uplink_outage(p, o, "uplink_down", start, o.received_at)
                changes.append(Change("open", up.down))
                if up.degraded is not None:
                    changes.append(self._end(up, "degraded", o))
        elif s.ok_streak >= cfg.up_after_successes:
            changes.append(self._end(up, "uplink_down", o, ended=s.ok_since))
            up.window.clear()
        if o.kind == "icmp" and o.ok:
            # Only answered rounds judge the quality of a link; unanswered ones judge whether
            # it is down at all.
            loss = (
                1.0 - o.packets_received / o.packets_sent
                if o.packets_sent and o.packets_received is not None
                else 0.0
            )
            up.window.append(o.measured_at, loss, o.duration_seconds)
            up.window.drop_before(o.measured_at - cfg.degraded_window_seconds)
            # Judged once per arrival, not per result: a backlog of thousands of results in
            # one window would otherwise cost its square.
            p.dirty[o.uplink] = o

    def _forget(
        self, p: _Probe, name: str, up: _Uplink, received_at: float, changes: list[Change]
    ) -> None:
        """Drop the streams of ``name`` that the running list leaves out; judge it again."""
        running, at = p.running, p.running_at
        assert running is not None
        gone = [
            (key, s)
            for key, s in up.streams.items()
            if (name, *key) not in running and s.last_measured <= at
        ]
        for key, _ in gone:
            del up.streams[key]
        listed = {k for u, k, _ in running if u == name and k in REACHABILITY_KINDS}
        cfg = self.config
        remaining = up.streams.values()
        if up.down is not None:
            # Ended when nothing that remains fails: no check left to watch the uplink, or
            # every remaining one succeeds and the failures were the removed checks'.
            if (not remaining and not listed) or (
                remaining
                and any(s.fail_streak > 0 for _, s in gone)
                and all(s.ok_streak > 0 for s in remaining)
            ):
                changes.append(self._removed(up, "uplink_down", at, received_at))
        elif (
            gone and remaining and all(s.fail_streak >= cfg.down_after_failures for s in remaining)
        ):
            # A removed check that succeeded no longer keeps the others' failures from taking
            # the uplink down: down since the last of those began, or the removed check's last
            # success if that came later.
            fails = [s.fail_since for s in remaining if s.fail_since is not None]
            oks = [s.last_measured for _, s in gone if s.ok_streak > 0]
            up.down = Outage(
                id=_new_id(),
                probe_id=p.meta.probe_id,
                commune_code=p.meta.commune_code,
                province_code=p.meta.province_code,
                condition="uplink_down",
                cause="network",
                started_at=max(fails + oks),
                detected_at=received_at,
                uplink=name,
                operator=p.meta.uplinks.get(name, ""),
            )
            changes.append(Change("open", up.down))
            if up.degraded is not None:
                closed = replace(up.degraded, ended_at=at, resolved_at=received_at)
                up.degraded = None
                changes.append(Change("close", closed))
        if any(kind == "icmp" for (kind, _), _ in gone):
            # The window does not say which target a round pinged: it starts again from the
            # icmp checks that remain.
            up.window.clear()
            p.dirty.pop(name, None)
        if (
            up.degraded is not None
            and "icmp" not in listed
            and not any(kind == "icmp" for kind, _ in up.streams)
        ):
            changes.append(self._removed(up, "degraded", at, received_at))

    def _removed(self, up: _Uplink, condition: Condition, at: float, received_at: float) -> Change:
        """Close an outage of ``up`` because the checks it rested on were removed at ``at``."""
        current = up.down if condition == "uplink_down" else up.degraded
        assert current is not None
        closed = replace(current, ended_at=max(at, current.started_at), resolved_at=received_at)
        if condition == "uplink_down":
            up.down = None
        else:
            up.degraded = None
        return Change("close", closed, "checks_removed")

    def _degraded(self, p: _Probe, up: _Uplink, o: Observation, changes: list[Change]) -> None:
        cfg = self.config
        if len(up.window) < cfg.degraded_min_samples or up.down is not None:
            return
        mean_loss = up.window.mean_loss()
        latency = up.window.median_rtt()
        bad = mean_loss > cfg.degraded_loss_ratio or (
            latency is not None and latency > cfg.degraded_latency_seconds
        )
        # Closing asks for a clear margin below the thresholds, so a link on the edge does
        # not flap between degraded and fine.
        good = mean_loss <= 0.5 * cfg.degraded_loss_ratio and (
            latency is None or latency <= 0.8 * cfg.degraded_latency_seconds
        )
        if up.degraded is None and bad:
            up.degraded = self._uplink_outage(
                p, o, "degraded", up.window.first_measured(), o.received_at
            )
            changes.append(Change("open", up.degraded))
        elif up.degraded is not None and good:
            changes.append(self._end(up, "degraded", o))

    def _uplink_outage(
        self, p: _Probe, o: Observation, condition: Condition, start: float, detected: float
    ) -> Outage:
        assert o.uplink is not None
        return Outage(
            id=_new_id(),
            probe_id=p.meta.probe_id,
            commune_code=p.meta.commune_code,
            province_code=p.meta.province_code,
            condition=condition,
            cause="network",
            started_at=start,
            detected_at=detected,
            uplink=o.uplink,
            operator=p.meta.uplinks.get(o.uplink, ""),
        )

    def _end(
        self, up: _Uplink, condition: Condition, o: Observation, ended: float | None = None
    ) -> Change:
        current = up.down if condition == "uplink_down" else up.degraded
        assert current is not None
        closed = replace(current, ended_at=ended or o.measured_at, resolved_at=o.received_at)
        if condition == "uplink_down":
            up.down = None
        else:
            up.degraded = None
        return Change("close", closed)


def _new_id() -> str:
    return uuid.uuid4().hex
