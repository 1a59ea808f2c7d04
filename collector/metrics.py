"""``GET /metrics``: Prometheus text computed at scrape time from the live state.

The per-probe families (43,000 samples for the national shape, 3,321 probes × 4 uplinks) are
rendered straight from the live state, not kept in thousands of gauges updated per report.
What does not change between scrapes is kept between them: the label text of every sample and
the tally each uplink counts towards (rebuilt only for probes whose registration changed), and
each sample's line until its value changes, since formatting floats is the dearest step. A
scrape then walks the newest results, appends ready lines and joins them: several times faster
than prometheus_client's sample objects (``python -m bench metrics`` measures both). Counters
and the request histogram are ordinary prometheus_client metrics in an injected registry.

Labels are bounded: probe, commune and province codes, uplink, operator, state, outcome,
reason, route template and method; never a seq, a hamlet or free text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lomsong.collector.ingest import REJECT_REASONS
from lomsong.collector.live import LiveState
from lomsong.collector.registry import ProbeInfo

#: The check whose round-trip stands for an uplink's latency, in order of preference.
PRIMARY_KINDS = ("icmp", "tcp", "http", "dns")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: HTTP methods kept as label values; any other token a client sends is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_RANK = {kind: i for i, kind in enumerate(PRIMARY_KINDS)}
_NO_RANK = len(PRIMARY_KINDS)

#: (name, HELP text) of the live families, in the order they are written.
_FAMILIES = (
    (
        "probe_success",
        "1 if every check's newest result on the uplink succeeded, else 0.",
    ),
    (
        "probe_duration_seconds",
        "Round-trip of the uplink's newest primary check (icmp, else tcp, http, dns).",
    ),
    (
        "lomsong_uplink_rsrp_dbm",
        "RSRP of the uplink modem's serving cell, newest reading, in dBm.",
    ),
    (
        "lomsong_probe_last_seen_timestamp_seconds",
        "When the collector last received a batch from the probe, in Unix time.",
    ),
    (
        "lomsong_probe_clock_skew_seconds",
        "Collector clock minus probe clock, smoothed; positive when the probe is behind.",
    ),
    (
        "lomsong_probes",
        "Registered probes per province, reporting or silent (silent: no batch for "
        "detector.grace_intervals report intervals).",
    ),
    (
        "lomsong_uplinks",
        "Uplinks per province and operator, by state: up, down, or unknown "
        "(silent or never heard).",
    ),
)
_HEADERS = {name: f"# HELP {name} {text}\n# TYPE {name} gauge" for name, text in _FAMILIES}
CONFIG_ERRORS = "lomsong_probe_config_errors_total"
_HEADERS[CONFIG_ERRORS] = (
    f"# HELP {CONFIG_ERRORS} Configurations the agents refused to apply (each probe's refused "
    f"version once), by province.\n# TYPE {CONFIG_ERRORS} counter"
)


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

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        """Time one answered request; a method outside the usual set is counted as "other"."""
        label = method if method in HTTP_METHODS else "other"
        self.request_seconds.labels(route, label).observe(seconds)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


#: Index of each state in a tally list.
_UP, _DOWN, _UNKNOWN = 0, 1, 2
_REPORTING, _SILENT = 0, 1
_UPLINK_STATES = (("up", _UP), ("down", _DOWN), ("unknown", _UNKNOWN))
_PROBE_STATES = (("reporting", _REPORTING), ("silent", _SILENT))


class _Sample:
    """One sample's line, remade only when its value changes.

    Formatting a float (``repr``) is the dearest step of a scrape; between two scrapes most
    probes have not reported, so most values are the ones already formatted.
    """

    __slots__ = ("prefix", "text", "value")

    def __init__(self, name: str, labels: str) -> None:
        self.prefix = f"{name}{{{labels}}} "
        self.value: float | None = None
        self.text = ""


class _UplinkKeys:
    """What one uplink keeps between scrapes: its two possible ``probe_success`` lines, its
    other samples, and the tally of its province and operator, so that a scrape appends ready
    strings and bumps list items instead of building label text and hashing keys."""

    __slots__ = ("down_line", "duration", "name", "rsrp", "tally", "up_line")

    def __init__(self, name: str, labels: str, tally: list[int]) -> None:
        self.name = name
        self.up_line = f"probe_success{{{labels}}} 1"
        self.down_line = f"probe_success{{{labels}}} 0"
        self.duration = _Sample("probe_duration_seconds", labels)
        self.rsrp = _Sample("lomsong_uplink_rsrp_dbm", labels)
        self.tally = tally


class _ProbeKeys:
    """The same for one probe, with the registration it was built from."""

    __slots__ = ("info", "pid", "seen", "skew", "tally", "uplinks")

    def __init__(
        self,
        pid: str,
        info: ProbeInfo,
        tally: list[int],
        uplink_tallies: dict[tuple[str, str], list[int]],
    ) -> None:
        labels = (
            f'probe="{_escape(pid)}",commune="{_escape(info.commune_code)}",'
            f'province="{_escape(info.province_code)}"'
        )
        self.info = info
        self.pid = pid
        self.seen = _Sample("lomsong_probe_last_seen_timestamp_seconds", labels)
        self.skew = _Sample("lomsong_probe_clock_skew_seconds", labels)
        self.tally = tally
        self.uplinks = tuple(
            _UplinkKeys(
                up.name,
                f'{labels},uplink="{_escape(up.name)}",operator="{_escape(up.operator)}"',
                uplink_tallies[(info.province_code, up.operator)],
            )
            for up in info.uplinks
        )


class MetricsRenderer:
    """Renders the live state as exposition text, keeping label text between scrapes."""

    def __init__(
        self,
        state: LiveState,
        metrics: Metrics,
        *,
        silent_after_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._metrics = metrics
        self._silent_after = silent_after_seconds
        self._clock = clock
        self._keys: list[_ProbeKeys] = []
        self._keys_for: dict[str, ProbeInfo] | None = None
        self._probe_tallies: dict[str, list[int]] = {}
        self._uplink_tallies: dict[tuple[str, str], list[int]] = {}
        #: families kept as ready text elsewhere (availability), appended after the live ones
        self.extra: Callable[[], str] | None = None

    def render(self) -> bytes:
        """The whole exposition: live families, then the registry's counters and histogram."""
        extra = self.extra() if self.extra is not None else ""
        return (self.render_live() + extra).encode() + generate_latest(self._metrics.registry)

    def render_live(self) -> str:
        """The families computed from the live state, in the text format."""
        now = self._clock()
        silent_after = self._silent_after
        success: list[str] = [_HEADERS["probe_success"]]
        duration: list[str] = [_HEADERS["probe_duration_seconds"]]
        rsrp: list[str] = [_HEADERS["lomsong_uplink_rsrp_dbm"]]
        seen: list[str] = [_HEADERS["lomsong_probe_last_seen_timestamp_seconds"]]
        skew: list[str] = [_HEADERS["lomsong_probe_clock_skew_seconds"]]
        rank_of = _RANK.get
        no_rank = _NO_RANK
        # The tallies and samples are shared by every scrape: filled and read under the lock.
        with self._state.lock:
            # The registry is replaced, never changed in place, when probes are (re)loaded.
            if self._keys_for is not self._state.probes:
                self._rebuild_keys(self._state.probes)
            for tally in self._probe_tallies.values():
                tally[:] = (0, 0)
            for tally in self._uplink_tallies.values():
                tally[:] = (0, 0, 0)
            live_of = self._state.live.get
            for keys in self._keys:
                live = live_of(keys.pid)
                last_seen = live.last_seen_at if live is not None else None
                if last_seen is None or now - last_seen > silent_after:
                    keys.tally[_SILENT] += 1
                    reporting = False
                else:
                    keys.tally[_REPORTING] += 1
                    reporting = True
                if live is None:
                    for uk in keys.uplinks:
                        uk.tally[_UNKNOWN] += 1
                    continue
                if last_seen is not None:
                    sample = keys.seen
                    if last_seen != sample.value:
                        sample.value = last_seen
                        sample.text = sample.prefix + repr(last_seen)
                    seen.append(sample.text)
                value = live.clock_skew_seconds
                if value is not None:
                    sample = keys.skew
                    if value != sample.value:
                        sample.value = value
                        sample.text = sample.prefix + repr(value)
                    skew.append(sample.text)
                checks_of = live.checks.get
                for uk in keys.uplinks:
                    checks = checks_of(uk.name)
                    if not checks:
                        uk.tally[_UNKNOWN] += 1
                        continue
                    # One pass over the checks: all ok?, the primary one, the modem's RSRP.
                    ok = True
                    best = no_rank
                    primary = None
                    signal = None
                    for (kind, _target), c in checks.items():
                        if not c.ok:
                            ok = False
                        rank = rank_of(kind, no_rank)
                        if rank < best:
                            best = rank
                            primary = c
                        elif signal is None and kind == "modem" and c.rsrp_dbm is not None:
                            signal = c.rsrp_dbm
                    if ok:
                        success.append(uk.up_line)
                        uk.tally[_UP if reporting else _UNKNOWN] += 1
                    else:
                        success.append(uk.down_line)
                        uk.tally[_DOWN if reporting else _UNKNOWN] += 1
                    if primary is not None and primary.duration_seconds is not None:
                        value = primary.duration_seconds
                        sample = uk.duration
                        if value != sample.value:
                            sample.value = value
                            sample.text = sample.prefix + repr(value)
                        duration.append(sample.text)
                    if signal is not None:
                        sample = uk.rsrp
                        if signal != sample.value:
                            sample.value = signal
                            sample.text = sample.prefix + repr(signal)
                        rsrp.append(sample.text)
            probes_lines = [_HEADERS["lomsong_probes"]]
            probes_lines.extend(
                f'lomsong_probes{{province="{_escape(p)}",state="{state}"}} {tally[i]}'
                for p, tally in sorted(self._probe_tallies.items())
                for state, i in _PROBE_STATES
            )
            uplinks_lines = [_HEADERS["lomsong_uplinks"]]
            uplinks_lines.extend(
                f'lomsong_uplinks{{province="{_escape(p)}",operator="{_escape(o)}",'
                f'state="{state}"}} {tally[i]}'
                for (p, o), tally in sorted(self._uplink_tallies.items())
                for state, i in _UPLINK_STATES
            )
            # every province with a probe has a series from the start, so rate() sees the
            # first refusal
            refusals = self._state.config_refusals
            config_lines = [_HEADERS[CONFIG_ERRORS]]
            config_lines.extend(
                f'{CONFIG_ERRORS}{{province="{_escape(p)}"}} {refusals.get(p, 0)}'
                for p in sorted(set(self._probe_tallies) | set(refusals))
            )
        # One join over every line, with "" last for the final newline.
        return "\n".join(
            [
                *success,
                *duration,
                *rsrp,
                *seen,
                *skew,
                *probes_lines,
                *uplinks_lines,
                *config_lines,
                "",
            ]
        )

    def _rebuild_keys(self, probes: dict[str, ProbeInfo]) -> None:
        # The live state is reloaded every few seconds into new objects: a probe whose
        # registration is unchanged keeps its keys, so a reload costs a comparison per probe.
        # Every province and operator with a registered probe gets a series for every state,
        # zeros included, so that alert rules never meet an absent series; a tally list lives
        # as long as its province and operator do, since the keys hold it.
        old_probe, old_uplink = self._probe_tallies, self._uplink_tallies
        self._probe_tallies, self._uplink_tallies = {}, {}
        for info in probes.values():
            province = info.province_code
            if province not in self._probe_tallies:
                self._probe_tallies[province] = old_probe.get(province) or [0, 0]
            for up in info.uplinks:
                key = (province, up.operator)
                if key not in self._uplink_tallies:
                    self._uplink_tallies[key] = old_uplink.get(key) or [0, 0, 0]
        old_keys = {keys.pid: keys for keys in self._keys}
        fresh: list[_ProbeKeys] = []
        for pid, info in probes.items():
            keys = old_keys.get(pid)
            if keys is None or keys.info != info:
                keys = _ProbeKeys(
                    pid, info, self._probe_tallies[info.province_code], self._uplink_tallies
                )
            fresh.append(keys)
        self._keys = fresh
        self._keys_for = probes
