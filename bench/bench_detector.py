"""The outage detector for the national shape, and how soon a silent centre reaches a webhook.

1. ``Detector.tick`` with 3,321 probes × 4 uplinks (4 checks each) in memory: target ≤ 200 ms.
   Also timed: ``observe`` of one report interval of results (every probe, every check), and
   the baseline of the same run, a bare Python loop over the same observations that only
   reads each one (the least any detector must pay).
2. From the last report heard to the webhook delivered, through a collector served on loopback
   (report interval 2 s, so the grace period is 6 s; detector tick 1 s; group_wait 0 s):
   target ≤ grace + 10 s.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import uvicorn

from bench.report import Outcome, check, heading, line, percentile
from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.detector import Detector, DetectorConfig, Observation, ProbeMeta
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.alerts import AlertsConfig
from lomsong.config.collector import CollectorSettings
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import bundled_communes, load_places

NAME = "detector"
TICK_TARGET_MS = 200.0
UPLINKS = {
    "fibre": "fibre",
    "viettel-4g": "viettel",
    "vinaphone-4g": "vinaphone",
    "mobifone-4g": "mobifone",
}
KINDS = ("icmp", "tcp", "http", "dns")


def main() -> list[Outcome]:
    heading("detector: national shape (3,321 probes × 4 uplinks × 4 checks)")
    outcomes = [_national()]
    heading("detector: last report heard → webhook delivered")
    outcomes.append(_to_webhook())
    return outcomes


def _round(probes: list[str], seqs: dict[str, int], at: float) -> list[Observation]:
    out = []
    for pid in probes:
        for uplink in UPLINKS:
            for kind in KINDS:
                seqs[pid] += 1
                out.append(
                    Observation(
                        pid,
                        seqs[pid],
                        at,
                        at,
                        kind,
                        uplink,
                        True,
                        "boot-1",
                        target=kind,
                        duration_seconds=0.04,
                        packets_sent=5 if kind == "icmp" else None,
                        packets_received=5 if kind == "icmp" else None,
                    )
                )
        seqs[pid] += 1
        out.append(
            Observation(
                pid, seqs[pid], at, at, "heartbeat", None, True, "boot-1", uptime_seconds=86_400.0
            )
        )
    return out


def _national() -> Outcome:
    communes = bundled_communes()
    detector = Detector(DetectorConfig())
    probes = []
    for c in communes:
        pid = f"p-{c['code']}"
        probes.append(pid)
        detector.set_probe(ProbeMeta(pid, c["code"], c["province_code"], UPLINKS))
    seqs = dict.fromkeys(probes, 0)
    t0 = 1_800_000_000.0
    observe_ms: list[float] = []
    baseline_ms: list[float] = []
    tick_ms: list[float] = []
    n_obs = 0
    for r in range(12):
        at = t0 + 30 * r
        obs = _round(probes, seqs, at)
        n_obs = len(obs)
        start = time.perf_counter()
        touched = 0
        for o in obs:  # the baseline: read every observation once
            touched += o.seq
        baseline_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        detector.observe(obs)
        observe_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        changes = detector.tick(at + 5)
        tick_ms.append((time.perf_counter() - start) * 1000)
        assert not changes
    # A silent wave: every probe falls quiet at once; the tick that opens all those outages.
    quiet_at = t0 + 30 * 12 + 200
    start = time.perf_counter()
    opened = detector.tick(quiet_at)
    wave_ms = (time.perf_counter() - start) * 1000
    tick_ms.sort()
    line(f"{len(probes)} probes, {n_obs:,} results a round (one report interval)")
    line(
        f"observe a round: median {statistics.median(observe_ms):.0f} ms "
        f"(baseline, reading each result once: {statistics.median(baseline_ms):.1f} ms, "
        f"ratio {statistics.median(observe_ms) / statistics.median(baseline_ms):.0f}×)"
    )
    p95 = percentile(tick_ms, 0.95)
    line(
        f"tick: median {statistics.median(tick_ms):.2f} ms, p95 {p95:.2f} ms; "
        f"the tick that opens {len(opened):,} silent outages: {wave_ms:.1f} ms"
    )
    worst = max(p95, wave_ms)
    return check(
        NAME,
        "tick, national shape",
        f"{worst:.1f} ms (worst of p95 and the wave)",
        f"≤ {TICK_TARGET_MS:.0f} ms",
        worst <= TICK_TARGET_MS,
    )


class _Sink:
    def __init__(self) -> None:
        self.got: list[float] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.got.append(time.monotonic())
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _to_webhook() -> Outcome:
    interval = 2.0
    grace = 3 * interval
    sink = _Sink()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lomsong.db'}"
        engine = open_engine(url)
        migrate(engine)
        load_places(engine)
        register_probe(engine, "cb-bao-lac", "01321", [Uplink("viettel-4g", "viettel")])
        token = create_token(engine, role="probe", probe_id="cb-bao-lac").token
        settings = CollectorSettings(
            database_url=url,
            admin_token="bench-admin-secret-0123456789",
            report_interval_seconds=interval,
            detector={"tick_seconds": 1.0},
        )
        alerts = AlertsConfig.model_validate(
            {
                "receivers": [{"type": "webhook", "name": "sink", "url": sink.url}],
                "routes": [{"name": "all", "receiver": "sink", "group_wait": "0s"}],
            }
        )
        app = create_app(settings, engine=engine, alerts=alerts)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            last = 0.0
            for seq in range(1, 4):
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                doc = {
                    "probe_id": "cb-bao-lac",
                    "boot_id": "b1",
                    "agent_version": "bench",
                    "sent_at": now,
                    "results": [
                        {
                            "seq": seq,
                            "measured_at": now,
                            "kind": "heartbeat",
                            "target": "self",
                            "uplink": None,
                            "ok": True,
                        }
                    ],
                }
                r = httpx.post(
                    f"http://127.0.0.1:{port}/api/v1/reports",
                    content=orjson.dumps(doc),
                    headers={"Authorization": f"Bearer {token}"},
                )
                r.raise_for_status()
                last = time.monotonic()
                time.sleep(interval)
            deadline = last + grace + 30
            while not sink.got and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.should_exit = True
            thread.join(10)
            engine.dispose()
            sink.server.shutdown()
    if not sink.got:
        return check(
            NAME,
            "last heard → webhook",
            "no webhook within grace + 30 s",
            f"≤ grace + 10 s = {grace + 10:.0f} s",
            False,
        )
    delay = sink.got[0] - last
    line(f"grace period {grace:.0f} s (3 × {interval:.0f} s report interval), detector tick 1 s")
    past = delay - grace
    line(f"last report heard → webhook delivered: {delay:.2f} s ({past:+.2f} s past the grace)")
    return check(
        NAME,
        "last heard → webhook",
        f"{delay:.2f} s",
        f"≤ grace + 10 s = {grace + 10:.0f} s",
        delay <= grace + 10,
    )
