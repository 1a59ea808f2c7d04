"""``/metrics`` for the national shape: 3,321 probes × 4 uplinks in < 100 ms.

Every commune centre of 2025 (the bundled commune codes) has a probe with a fibre line and three
4G modems (Viettel, VinaPhone, MobiFone); each uplink has the newest result of four checks (icmp,
tcp, http and dns to the National Public Service Portal) and each modem one more, its serving
cell's RSRP. The state is written to a SQLite file and loaded the way the collector loads it
(``LiveState.reload``), then:

1. ``MetricsRenderer.render()`` is timed in this process;
2. the baseline, measured in the same run: the same series produced the ordinary way, a
   prometheus_client custom collector yielding ``GaugeMetricFamily`` objects and
   ``generate_latest``, checked to say exactly the same;
3. a full ``GET /metrics`` over loopback from ``lomsong serve`` in its own process, on that file.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert

from bench.ingest_http import serve
from bench.report import Outcome, check, heading, line, percentile
from lomsong.collector.live import LiveState
from lomsong.collector.metrics import PRIMARY_KINDS, Metrics, MetricsRenderer
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import bundled_communes, load_places
from lomsong.storage.schema import latest_results, probe_state, probe_uplinks, probes

NAME = "metrics"
TARGET_MS = 100.0
RENDERS = 30
#: (uplink name, operator); the 4G ones also report their modem.
UPLINKS = (
    ("fibre", "fibre"),
    ("viettel-4g", "viettel"),
    ("vinaphone-4g", "vinaphone"),
    ("mobifone-4g", "mobifone"),
)
PORTAL = "dichvucong.gov.vn"
CHECKS = (
    ("icmp", PORTAL),
    ("tcp", f"{PORTAL}:443"),
    ("http", f"https://{PORTAL}/"),
    ("dns", PORTAL),
)


def main() -> list[Outcome]:
    heading("metrics: /metrics for the national shape (3,321 probes × 4 uplinks)")
    # Wall times on a shared machine follow its load; the CPU figures much less so.
    line("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-metrics-") as tmp:
        db = Path(tmp) / "national.db"
        engine = open_engine(f"sqlite:///{db}", synchronous="NORMAL")
        try:
            started = time.perf_counter()
            shape = write_national_state(engine, now=time.time())
            state = LiveState()
            state.reload(engine)
            line(
                f"state: {shape['probes']:,} probes, {shape['uplinks']:,} uplinks, "
                f"{shape['checks']:,} newest results, written and loaded in "
                f"{time.perf_counter() - started:.1f} s"
            )
            outcomes = [_in_process(state, engine)]
        finally:
            engine.dispose()
        outcomes.append(_over_http(db, Path(tmp) / "collector.log"))
    return outcomes


def write_national_state(engine: Engine, *, now: float, seed: int = 2025) -> dict[str, int]:
    """Register a probe at every bundled commune and store the newest result of its checks."""
    migrate(engine)
    load_places(engine)
    rnd = random.Random(seed)
    probe_rows: list[dict[str, Any]] = []
    uplink_rows: list[dict[str, Any]] = []
    state_rows: list[dict[str, Any]] = []
    latest_rows: list[dict[str, Any]] = []
    for commune in bundled_communes():
        pid = f"p{commune['code']}"
        probe_rows.append({"id": pid, "commune_code": commune["code"], "created_at": now - 86_400})
        # Most probes were heard within the last report interval; about 2 % are silent.
        seen = now - (rnd.uniform(0, 30) if rnd.random() > 0.02 else rnd.uniform(600, 7200))
        state_rows.append(
            {
                "probe_id": pid,
                "boot_id": f"boot-{pid}",
                "agent_version": "0.1.0",
                "last_seen_at": seen,
                "last_sent_at": seen - 0.2,
                "last_measured_at": seen - 1.0,
                "clock_skew_seconds": rnd.gauss(0.0, 0.8),
                "stored_through_seq": 10_000,
                "max_seq": 10_000,
                "results_total": 10_000,
            }
        )
        seq = 10_000
        for name, operator in UPLINKS:
            uplink_rows.append({"probe_id": pid, "name": name, "operator": operator})
            # A few uplinks are down: every check on them fails.
            down = rnd.random() < (0.01 if operator == "fibre" else 0.05)
            for kind, target in CHECKS:
                ok = not down and rnd.random() > 0.01
                latest_rows.append(
                    {
                        "probe_id": pid,
                        "uplink": name,
                        "kind": kind,
                        "target": target,
                        "seq": seq,
                        "measured_at": seen - rnd.uniform(1, 30),
                        "ok": ok,
                        "duration_seconds": rnd.uniform(0.008, 0.4) if ok else 5.0,
                        "error": None if ok else "timeout",
                        "rsrp_dbm": None,
                    }
                )
                seq -= 1
            if operator != "fibre":
                latest_rows.append(
                    {
                        "probe_id": pid,
                        "uplink": name,
                        "kind": "modem",
                        "target": "modem0",
                        "seq": seq,
                        "measured_at": seen - rnd.uniform(1, 30),
                        "ok": not down,
                        "duration_seconds": None,
                        "error": None if not down else "no service",
                        "rsrp_dbm": None if down else round(rnd.uniform(-120, -70), 1),
                    }
                )
                seq -= 1
    with engine.begin() as conn:
        conn.execute(insert(probes), probe_rows)
        conn.execute(insert(probe_uplinks), uplink_rows)
        conn.execute(insert(probe_state), state_rows)
        conn.execute(insert(latest_results), latest_rows)
    return {"probes": len(probe_rows), "uplinks": len(uplink_rows), "checks": len(latest_rows)}


class GaugeFamilies:
    """The baseline: the same series as ``MetricsRenderer``, built the ordinary way, as a
    prometheus_client custom collector yielding ``GaugeMetricFamily`` objects at scrape time."""

    def __init__(
        self, state: LiveState, report_interval_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._state = state
        self._silent_after = 3 * report_interval_seconds
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        probe_labels = ["probe", "commune", "province"]
        uplink_labels = [*probe_labels, "uplink", "operator"]
        success = GaugeMetricFamily(
            "probe_success",
            "1 if every check's newest result on the uplink succeeded, else 0.",
            labels=uplink_labels,
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds",
            "Round-trip of the uplink's newest primary check (icmp, else tcp, http, dns).",
            labels=uplink_labels,
        )
        rsrp = GaugeMetricFamily(
            "lomsong_uplink_rsrp_dbm",
            "RSRP of the uplink modem's serving cell, newest reading, in dBm.",
            labels=uplink_labels,
        )
        seen = GaugeMetricFamily(
            "lomsong_probe_last_seen_timestamp_seconds",
            "When the collector last received a batch from the probe, in Unix time.",
            labels=probe_labels,
        )
        skew = GaugeMetricFamily(
            "lomsong_probe_clock_skew_seconds",
            "Collector clock minus probe clock, smoothed; positive when the probe is behind.",
            labels=probe_labels,
        )
        probe_states: Tally[tuple[str, str]] = Tally()
        uplink_states: Tally[tuple[str, str, str]] = Tally()
        now = self._clock()
        with self._state.lock:
            for pid, info in self._state.probes.items():
                live = self._state.live.get(pid)
                plabels = [pid, info.commune_code, info.province_code]
                last_seen = live.last_seen_at if live else None
                reporting = last_seen is not None and now - last_seen <= self._silent_after
                for state in ("reporting", "silent"):
                    probe_states[(info.province_code, state)] += 0
                probe_states[(info.province_code, "reporting" if reporting else "silent")] += 1
                if last_seen is not None:
                    seen.add_metric(plabels, last_seen)
                if live is not None and live.clock_skew_seconds is not None:
                    skew.add_metric(plabels, live.clock_skew_seconds)
                for up in info.uplinks:
                    for state in ("up", "down", "unknown"):
                        uplink_states[(info.province_code, up.operator, state)] += 0
                    checks = live.checks.get(up.name) if live else None
                    if not checks:
                        uplink_states[(info.province_code, up.operator, "unknown")] += 1
                        continue
                    ulabels = [*plabels, up.name, up.operator]
                    ok = all(c.ok for c in checks.values())
                    success.add_metric(ulabels, 1 if ok else 0)
                    for kind in PRIMARY_KINDS:
                        primary = next((c for (k, _), c in checks.items() if k == kind), None)
                        if primary is not None:
                            if primary.duration_seconds is not None:
                                duration.add_metric(ulabels, primary.duration_seconds)
                            break
                    signal = next(
                        (
                            c.rsrp_dbm
                            for (k, _), c in checks.items()
                            if k == "modem" and c.rsrp_dbm is not None
                        ),
                        None,
                    )
                    if signal is not None:
                        rsrp.add_metric(ulabels, signal)
                    state = "unknown" if not reporting else "up" if ok else "down"
                    uplink_states[(info.province_code, up.operator, state)] += 1
        probes_family = GaugeMetricFamily(
            "lomsong_probes",
            "Registered probes per province, reporting or silent (3 report intervals).",
            labels=["province", "state"],
        )
        for (province, state), n in sorted(probe_states.items()):
            probes_family.add_metric([province, state], n)
        uplinks_family = GaugeMetricFamily(
            "lomsong_uplinks",
            "Uplinks per province and operator, by state: up, down, or unknown "
            "(silent or never heard).",
            labels=["province", "operator", "state"],
        )
        for (province, operator, state), n in sorted(uplink_states.items()):
            uplinks_family.add_metric([province, operator, state], n)
        yield from (success, duration, rsrp, seen, skew, probes_family, uplinks_family)


@dataclass
class Timings:
    """Wall and CPU (this thread) milliseconds of repeated calls."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        wall = sorted(self.wall)
        return (
            f"median {statistics.median(wall):.1f} ms, p95 {percentile(wall, 0.95):.1f} ms "
            f"(CPU median {statistics.median(self.cpu):.1f} ms)"
        )


def _timed(
    fn: Callable[[], bytes], n: int, before: Callable[[], object] | None = None
) -> tuple[Timings, bytes]:
    """Times of ``n`` calls; ``before`` runs untimed ahead of each."""
    times = Timings()
    out = b""
    for _ in range(n):
        if before is not None:
            before()
        c0 = time.thread_time()
        t0 = time.perf_counter()
        out = fn()
        times.wall.append((time.perf_counter() - t0) * 1000)
        times.cpu.append((time.thread_time() - c0) * 1000)
    return times, out


def _samples(text: bytes) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")  # creation times differ between the two registries
    }


def everyone_reported(state: LiveState) -> None:
    """What a scrape meets when every probe sent a batch since the previous one: a new last-seen
    time, skew, round-trip and RSRP everywhere (the worst case for the renderer, which formats
    only the values that changed)."""
    with state.lock:
        for live in state.live.values():
            if live.last_seen_at is not None:
                live.last_seen_at += 0.5
            if live.clock_skew_seconds is not None:
                live.clock_skew_seconds *= 0.999
            for checks in live.checks.values():
                for latest in checks.values():
                    if latest.duration_seconds is not None:
                        latest.duration_seconds *= 1.0001
                    if latest.rsrp_dbm is not None:
                        latest.rsrp_dbm = -latest.rsrp_dbm / 1000 - 95.0
        state.version += 1


def _in_process(state: LiveState, engine: Engine) -> Outcome:
    now = time.time()

    def clock() -> float:
        return now

    metrics = Metrics()
    renderer = MetricsRenderer(state, metrics, silent_after_seconds=90.0, clock=clock)
    baseline_registry = CollectorRegistry()
    baseline_registry.register(GaugeFamilies(state, 30.0, clock))
    baseline_registry.register(_Forward(metrics.registry))

    t0 = time.perf_counter()
    renderer.render()
    cold_ms = (time.perf_counter() - t0) * 1000
    steady, _ = _timed(renderer.render, RENDERS)
    changed, body = _timed(renderer.render, RENDERS, before=lambda: everyone_reported(state))
    reloaded, _ = _timed(renderer.render, 5, before=lambda: state.reload(engine))
    everyone_reported(state)
    body = renderer.render()
    theirs, baseline_body = _timed(lambda: generate_latest(baseline_registry), RENDERS)
    mine, base = _samples(body), _samples(baseline_body)
    if mine != base:
        raise AssertionError(
            f"renderer and baseline disagree: {len(mine - base)} samples only in the renderer, "
            f"{len(base - mine)} only in the baseline"
        )
    line(
        f"exposition: {len(mine):,} samples, {len(body):,} bytes "
        f"(baseline {len(baseline_body):,} bytes); the same samples in both"
    )
    line(f"MetricsRenderer.render(), first (builds the label text): {cold_ms:.1f} ms")
    line(f"  every probe reported since the last scrape, {RENDERS} renders: {changed}")
    line(f"  nothing changed since the last scrape, {RENDERS} renders: {steady}")
    line(f"  just after a reload of the live state from SQLite, 5 renders: {reloaded}")
    line(f"baseline GaugeMetricFamily + generate_latest, {RENDERS} renders: {theirs}")
    med = statistics.median(changed.wall)
    base_med = statistics.median(theirs.wall)
    line(
        f"ratio: baseline / renderer (every probe reported) = {base_med / med:.1f}x, "
        f"(nothing changed) = {base_med / statistics.median(steady.wall):.1f}x"
    )
    return check(
        NAME,
        "render national /metrics, every probe reported (median)",
        f"{med:.1f} ms",
        f"< {TARGET_MS:.0f} ms",
        med < TARGET_MS,
    )


class _Forward:
    """Puts another registry's metrics (the ingest counters) into the baseline's exposition."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def _over_http(db: Path, log_path: Path) -> Outcome:
    # No periodic reload during the measurement: it would compete with the scrapes for the CPU.
    with serve(db, log_path, LOMSONG_LIVE_STATE_REFRESH_SECONDS="3600") as server:
        collector = psutil.Process(server.pid)
        with httpx.Client(base_url=server.url, timeout=30) as http:

            def get() -> bytes:
                r = http.get("/metrics")
                r.raise_for_status()
                return r.content

            get()
            cpu0 = collector.cpu_times()
            times, body = _timed(get, RENDERS)
            cpu1 = collector.cpu_times()
    server_ms = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000 / RENDERS
    wall = sorted(times.wall)
    med = statistics.median(wall)
    line(
        f"GET /metrics from `lomsong serve` over loopback, {RENDERS} requests: "
        f"median {med:.1f} ms, p95 {percentile(wall, 0.95):.1f} ms, {len(body):,} bytes; "
        f"collector CPU {server_ms:.1f} ms per scrape"
    )
    return check(
        NAME,
        "GET /metrics over HTTP, nothing changed (median)",
        f"{med:.1f} ms",
        f"< {TARGET_MS:.0f} ms",
        med < TARGET_MS,
    )
