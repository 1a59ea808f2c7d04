"""``GET /metrics``: Prometheus text computed at scrape time from the live state.

The per-probe families (13,000+ series for the national shape) are rendered straight from the
live state with label strings cached per probe and uplink; building the same through
prometheus_client's sample objects costs several times more per scrape. Counters and the request
histogram are ordinary prometheus_client metrics in an injected registry.

Labels are bounded: probe, commune and province codes, uplink, operator, outcome and reason;
never a seq, a hamlet or free text.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lomsong.collector.ingest import REJECT_REASONS
from lomsong.collector.live import Latest, LiveState
from lomsong.collector.registry import ProbeInfo

#: The check whose round-trip stands for an uplink's latency, in order of preference.
PRIMARY_KINDS = ("icmp", "tcp", "http", "dns")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The counters and histograms of one collector, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.results = Counter(
            "lomsong_ingest_results",
            "Results received, by outcome: accepted (new) or duplicate (already stored).",
            ["outcome"],
            registry=self.registry,
        )
        self.batches = Counter("lomsong_ingest_batches", "Batches stored.", registry=self.registry)
        self.rejected = Counter(
            "lomsong_ingest_rejected",
            "Batches refused before anything was stored, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "lomsong_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template and method.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate"):
            self.results.labels(outcome)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(value: float) -> str:
    return repr(float(value))


class MetricsRenderer:
    """Renders the live state as exposition text, caching label strings between scrapes."""

    def __init__(
        self,
        state: LiveState,
        metrics: Metrics,
        *,
        report_interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._metrics = metrics
        self._interval = report_interval_seconds
        self._clock = clock
        self._labels: dict[tuple[str, str], str] = {}
        self._probe_labels: dict[str, str] = {}
        self._labels_for: dict[str, ProbeInfo] | None = None

    def render(self) -> bytes:
        return self.render_live().encode() + generate_latest(self._metrics.registry)

    def render_live(self) -> str:
        now = self._clock()
        silent_after = 3 * self._interval
        success: list[str] = []
        duration: list[str] = []
        rsrp: list[str] = []
        seen: list[str] = []
        skew: list[str] = []
        uplinks_by_state: Tally[tuple[str, str, str]] = Tally()
        probes_by_state: Tally[tuple[str, str]] = Tally()
        with self._state.lock:
            probes = self._state.probes
            if self._labels_for is not probes:
                self._rebuild_labels(probes)
            for pid, info in probes.items():
                live = self._state.live.get(pid)
                plab = self._probe_labels[pid]
                last_seen = live.last_seen_at if live else None
                reporting = last_seen is not None and now - last_seen <= silent_after
                probes_by_state[(info.province_code, "reporting" if reporting else "silent")] += 1
                if last_seen is not None:
                    seen.append(
                        f"lomsong_probe_last_seen_timestamp_seconds{{{plab}}} {_fmt(last_seen)}"
                    )
                if live is not None and live.clock_skew_seconds is not None:
                    skew.append(
                        f"lomsong_probe_clock_skew_seconds{{{plab}}} "
                        f"{_fmt(live.clock_skew_seconds)}"
                    )
                for up in info.uplinks:
                    checks = live.checks.get(up.name) if live else None
                    if not checks:
                        uplinks_by_state[(info.province_code, up.operator, "unknown")] += 1
                        continue
                    lab = self._labels[(pid, up.name)]
                    ok = all(c.ok for c in checks.values())
                    success.append(f"probe_success{{{lab}}} {1 if ok else 0}")
                    primary = _primary(checks)
                    if primary is not None and primary.duration_seconds is not None:
                        duration.append(
                            f"probe_duration_seconds{{{lab}}} {_fmt(primary.duration_seconds)}"
                        )
                    for (kind, _), c in checks.items():
                        if kind == "modem" and c.rsrp_dbm is not None:
                            rsrp.append(f"lomsong_uplink_rsrp_dbm{{{lab}}} {_fmt(c.rsrp_dbm)}")
                            break
                    state = "unknown" if not reporting else "up" if ok else "down"
                    uplinks_by_state[(info.province_code, up.operator, state)] += 1
        out: list[str] = []
        _family(
            out,
            "probe_success",
            "gauge",
            "1 if every check's newest result on the uplink succeeded, else 0.",
            success,
        )
        _family(
            out,
            "probe_duration_seconds",
            "gauge",
            "Round-trip of the uplink's newest primary check (icmp, else tcp, http, dns).",
            duration,
        )
        _family(
            out,
            "lomsong_uplink_rsrp_dbm",
            "gauge",
            "RSRP of the uplink modem's serving cell, newest reading.",
            rsrp,
        )
        _family(
            out,
            "lomsong_probe_last_seen_timestamp_seconds",
            "gauge",
            "When the collector last received a batch from the probe.",
            seen,
        )
        _family(
            out,
            "lomsong_probe_clock_skew_seconds",
            "gauge",
            "Collector clock minus probe clock, smoothed; positive when the probe is behind.",
            skew,
        )
        _family(
            out,
            "lomsong_probes",
            "gauge",
            "Registered probes per province, reporting or silent (3 report intervals).",
            [
                f'lomsong_probes{{province="{p}",state="{s}"}} {n}'
                for (p, s), n in sorted(probes_by_state.items())
            ],
        )
        _family(
            out,
            "lomsong_uplinks",
            "gauge",
            "Uplinks per province and operator, by state: up, down, or unknown "
            "(silent or never heard).",
            [
                f'lomsong_uplinks{{province="{p}",operator="{o}",state="{s}"}} {n}'
                for (p, o, s), n in sorted(uplinks_by_state.items())
            ],
        )
        return "\n".join(out) + "\n"

    def _rebuild_labels(self, probes: dict[str, ProbeInfo]) -> None:
        self._labels.clear()
        self._probe_labels.clear()
        for pid, info in probes.items():
            base = (
                f'probe="{_escape(pid)}",commune="{info.commune_code}",'
                f'province="{info.province_code}"'
            )
            self._probe_labels[pid] = base
            for up in info.uplinks:
                self._labels[(pid, up.name)] = (
                    f'{base},uplink="{_escape(up.name)}",operator="{_escape(up.operator)}"'
                )
        self._labels_for = probes


def _primary(checks: dict[tuple[str, str], Latest]) -> Latest | None:
    for kind in PRIMARY_KINDS:
        for (k, _), c in checks.items():
            if k == kind:
                return c
    return None


def _family(out: list[str], name: str, kind: str, help_text: str, lines: list[str]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(lines)
