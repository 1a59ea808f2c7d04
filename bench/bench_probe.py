"""The probe agent in figures.

1. Backfill: a 24-hour backlog (4 uplinks × 5 checks × 2 a minute × 1,440 minutes = 57,600
   results) from the spool into ``lomsong serve`` on SQLite, through the uploader, with the
   collector's default rate limit. Baseline of the same run: the same batches, prebuilt and
   gzipped, POSTed back to back by a bare client (no spool, no acknowledgements).
2. Footprint: ``lomsong probe run`` with 4 uplinks × 5 checks every 30 s (icmp, tcp, http, dns,
   modem) against loopback targets, for a window of ``LOMSONG_BENCH_PROBE_SECONDS`` (70 s):
   peak resident memory, and the agent's own CPU as a share of one core.
3. Accuracy and cost beside Prometheus blackbox_exporter (Debian package), same loopback ICMP,
   TCP and HTTP targets, probes one at a time: median latency of each, and CPU per check of
   each process as a ratio.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.ingest_http import free_port, serve
from bench.ingest_sqlite import fresh_database
from bench.probe_targets import Targets, serve_targets
from bench.report import Outcome, check, heading, line
from lomsong.config.probe import UploadSettings
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import Uploader, encode_batch

NAME = "probe"
UPLINKS = ("fibre", "viettel-4g", "vnpt-4g", "mobifone-4g")
KINDS = ("icmp", "tcp", "http", "dns", "modem")
BACKLOG = len(UPLINKS) * len(KINDS) * 2 * 1_440
BATCH = 500
TARGET_BACKFILL_SECONDS = 30.0
TARGET_RSS_BYTES = 80 * 2**20
TARGET_CPU_SHARE = 0.01
TARGET_LATENCY_GAP = 0.001
WINDOW = float(os.environ.get("LOMSONG_BENCH_PROBE_SECONDS", "70"))
SETTLE = 10.0  # start-up and the first round are not the steady state
BLACKBOX_PROBES = 200
REPLAY = Path(__file__).resolve().parents[1] / "tests" / "probes" / "data"


def main() -> list[Outcome]:
    heading(f"{NAME}: spool backfill, agent footprint, beside blackbox_exporter")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-probe-") as name:
        tmp = Path(name)
        db = tmp / "collector.db"
        tokens = list(fresh_database(db, 3).items())
        with serve(db, tmp / "collector.log") as server, serve_targets() as targets:
            outcomes += _backfill(tmp, server.url, tokens[0], tokens[1])
            outcomes += _footprint(tmp, server.url, tokens[2], targets)
        with serve_targets() as targets:
            outcomes += _beside_blackbox(tmp, targets)
    return outcomes


# -- 1. backfill -------------------------------------------------------------------------------


def _backlog(path: Path) -> None:
    spool = Spool(path)
    start = time.time() - 86_400 - 60
    rows: list[tuple[float, str, bytes]] = []
    for minute in range(1_440):
        for half in range(2):
            for uplink in UPLINKS:
                for kind in KINDS:
                    t = start + minute * 60 + half * 30
                    rows.append((t, kind, orjson.dumps(_result(t, kind, uplink))))
    spool.append(rows)
    spool.close()


def _result(t: float, kind: str, uplink: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "measured_at": datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds"),
        "kind": kind,
        "target": "modem0" if kind == "modem" else "dichvucong.gov.vn",
        "uplink": uplink,
        "ok": True,
        "duration_seconds": 0.0412,
    }
    if kind == "icmp":
        doc.update(packets_sent=5, packets_received=5, rtt_min_seconds=0.039, jitter_seconds=0.002)
    elif kind == "http":
        doc.update(status_code=200, tls_expiry_days=61.5)
    elif kind == "modem":
        del doc["duration_seconds"]
        doc["signal"] = {"rat": "lte", "rsrp_dbm": -104.0, "rsrq_db": -12.0, "mcc": "452"}
    return doc


def _backfill(tmp: Path, url: str, base: tuple[str, str], agent: tuple[str, str]) -> list[Outcome]:
    line(f"backfill: {BACKLOG:,} results in batches of {BATCH}, default rate limit")
    base_spool, agent_spool = tmp / "base.db", tmp / "agent.db"
    _backlog(base_spool)
    _backlog(agent_spool)
    spool = Spool(base_spool)
    rows = spool.pending(BACKLOG + 1)
    spool.close()
    bodies = [
        gzip.compress(
            encode_batch(base[0], "bench", "0.1.0", datetime.now(UTC), rows[i : i + BATCH], None),
            6,
        )
        for i in range(0, len(rows), BATCH)
    ]
    baseline = _post_all(url, base[1], bodies)
    line(f"baseline (prebuilt bodies, bare client): {baseline:.2f} s")
    took, counters = asyncio.run(_drain(agent_spool, url, agent))
    line(
        f"agent uploader: {took:.2f} s, {counters.results:,} accepted, "
        f"{counters.duplicates} duplicates, {counters.batches} batches "
        f"({BACKLOG / took:,.0f} results/s); {took / baseline:.2f}x the baseline"
    )
    return [
        check(
            NAME,
            "24 h backlog backfill",
            f"{took:.1f} s ({took / baseline:.2f}x baseline)",
            f"<= {TARGET_BACKFILL_SECONDS:.0f} s",
            took <= TARGET_BACKFILL_SECONDS and counters.results == BACKLOG,
        )
    ]


def _post_all(url: str, token: str, bodies: list[bytes]) -> float:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    start = time.perf_counter()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for body in bodies:
            while True:
                r = client.post("/api/v1/reports", content=body)
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                r.raise_for_status()
                break
    return time.perf_counter() - start


async def _drain(path: Path, url: str, probe: tuple[str, str]) -> tuple[float, Any]:
    spool = AsyncSpool(Spool(path))
    uploader = Uploader(
        spool,
        UploadSettings(batch_size=BATCH),
        collector_url=url,
        token=probe[1],
        probe_id=probe[0],
        boot_id="bench",
        agent_version="0.1.0",
    )
    uploader.connected = True
    start = time.perf_counter()
    async with uploader.client() as client:
        while True:
            delay, idle = await uploader.step(client)
            if idle:
                break
            if delay:
                await asyncio.sleep(delay)
    took = time.perf_counter() - start
    await spool.close()
    return took, uploader.counters


# -- 2. footprint ------------------------------------------------------------------------------


def _agent_config(tmp: Path, url: str, probe: tuple[str, str], targets: Targets) -> Path:
    uplinks = "".join(
        f'[[uplinks]]\nname = "{name}"\nsource_address = "127.0.0.{i + 1}"\n\n'
        for i, name in enumerate(UPLINKS)
    )
    replay = [sys.executable, str(REPLAY / "mmcli_replay.py"), str(REPLAY / "mmcli" / "lte")]
    modems = "".join(
        f'[[checks]]\nkind = "modem"\nuplink = "{name}"\nmodem = "{i}"\n'
        f"mmcli_command = {json.dumps([*replay, str(tmp / 'mmcli.log')])}\n\n"
        for i, name in enumerate(UPLINKS)
    )
    path = tmp / "probe.toml"
    path.write_text(
        f"""probe_id = "{probe[0]}"
collector_url = "{url}"
token = "{probe[1]}"
spool_path = "{tmp / "footprint-spool.db"}"
log_level = "WARNING"

{uplinks}
[[checks]]
kind = "icmp"
target = "127.0.0.1"

[[checks]]
kind = "tcp"
target = "{targets.tcp}"

[[checks]]
kind = "http"
target = "{targets.http}"

[[checks]]
kind = "dns"
target = "dichvucong.gov.vn"
server = "{targets.dns}"

{modems}"""
    )
    return path


def _footprint(tmp: Path, url: str, probe: tuple[str, str], targets: Targets) -> list[Outcome]:
    line(f"footprint: 4 uplinks x 5 checks every 30 s for {WINDOW:.0f} s")
    config = _agent_config(tmp, url, probe, targets)
    lomsong = Path(sys.executable).with_name("lomsong")
    with (tmp / "agent.log").open("w") as log:
        agent = subprocess.Popen(
            [str(lomsong), "probe", "run", "--config", str(config)], stdout=log, stderr=log
        )
    proc = psutil.Process(agent.pid)
    peak = 0
    try:
        started = time.monotonic()
        first: tuple[float, float] | None = None
        while (now := time.monotonic()) - started < WINDOW:
            peak = max(peak, proc.memory_info().rss)
            if first is None and now - started >= SETTLE:
                cpu = proc.cpu_times()
                first = (now, cpu.user + cpu.system)
            time.sleep(0.5)
        cpu = proc.cpu_times()
        end = (time.monotonic(), cpu.user + cpu.system)
    finally:
        agent.terminate()
        agent.wait(30)
    assert first is not None
    share = (end[1] - first[1]) / (end[0] - first[0])
    line(
        f"peak RSS {peak / 2**20:.1f} MiB; CPU {share:.3%} of one core "
        f"({share * 3600:.1f} CPU-s per hour), mmcli stand-ins not counted"
    )
    return [
        check(
            NAME, "agent peak RSS", f"{peak / 2**20:.1f} MiB", "<= 80 MiB", peak <= TARGET_RSS_BYTES
        ),
        check(NAME, "agent CPU", f"{share:.3%} of a core", "<= 1%", share <= TARGET_CPU_SHARE),
    ]


# -- 3. beside blackbox_exporter --------------------------------------------------------------

_OURS = """
import asyncio, json, sys, time
from lomsong.config.probe import HttpCheck, IcmpCheck, ProbeSettings, TcpCheck
from lomsong.probes.agent import Job, Runner, preload
from lomsong.probes.checks.base import Binding
kind, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = {"icmp": lambda: IcmpCheck(kind="icmp", target=target, count=1),
        "tcp": lambda: TcpCheck(kind="tcp", target=target),
        "http": lambda: HttpCheck(kind="http", target=target)}[kind]()
settings = ProbeSettings(
    probe_id="bench", collector_url="http://127.0.0.1:1", spool_path=sys.argv[4]
)
async def main():
    runner, job = Runner(settings), Job("b", kind, target, spec, Binding())
    preload([job])
    await runner.measure(job)
    cpu, out = time.process_time(), []
    for _ in range(n):
        m = await runner.measure(job)
        out.append(m.outcome.duration_seconds)
    print(json.dumps({"durations": out, "cpu": time.process_time() - cpu}))
asyncio.run(main())
"""

_BLACKBOX_CONFIG = """modules:
  icmp: {prober: icmp, timeout: 5s, icmp: {preferred_ip_protocol: ip4}}
  tcp: {prober: tcp, timeout: 5s, tcp: {preferred_ip_protocol: ip4}}
  http: {prober: http, timeout: 5s, http: {preferred_ip_protocol: ip4}}
"""


def _beside_blackbox(tmp: Path, targets: Targets) -> list[Outcome]:
    line(f"beside blackbox_exporter: {BLACKBOX_PROBES} probes of each kind, one at a time")
    config = tmp / "blackbox.yml"
    config.write_text(_BLACKBOX_CONFIG)
    port = free_port()
    exporter = subprocess.Popen(
        [
            "prometheus-blackbox-exporter",
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outcomes: list[Outcome] = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/metrics")
        for kind, target in (("icmp", "127.0.0.1"), ("tcp", targets.tcp), ("http", targets.http)):
            bb_median, bb_cpu = _blackbox_probes(port, exporter.pid, kind, target)
            ours = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _OURS,
                    kind,
                    target,
                    str(BLACKBOX_PROBES),
                    str(tmp / "s.db"),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            doc = json.loads(ours.stdout)
            our_median = statistics.median(d for d in doc["durations"] if d is not None)
            our_cpu = doc["cpu"] / BLACKBOX_PROBES
            gap = abs(our_median - bb_median)
            line(
                f"{kind}: median ours {our_median * 1e3:.3f} ms, "
                f"blackbox {bb_median * 1e3:.3f} ms; "
                f"CPU per check ours {our_cpu * 1e3:.3f} ms, blackbox {bb_cpu * 1e3:.3f} ms "
                f"(ratio {our_cpu / bb_cpu:.2f})"
            )
            outcomes.append(
                check(
                    NAME,
                    f"{kind} median vs blackbox",
                    f"{gap * 1e3:.3f} ms apart; CPU {our_cpu / bb_cpu:.2f}x",
                    "<= 1 ms apart",
                    gap <= TARGET_LATENCY_GAP,
                )
            )
    finally:
        exporter.terminate()
        exporter.wait(30)
    return outcomes


def _blackbox_probes(port: int, pid: int, kind: str, target: str) -> tuple[float, float]:
    metric = (
        'probe_icmp_duration_seconds{phase="rtt"}' if kind == "icmp" else "probe_duration_seconds"
    )
    proc = psutil.Process(pid)
    values: list[float] = []
    with httpx.Client(timeout=30) as client:
        url = f"http://127.0.0.1:{port}/probe"
        client.get(url, params={"module": kind, "target": target})  # warm up
        before = proc.cpu_times()
        for _ in range(BLACKBOX_PROBES):
            text = client.get(url, params={"module": kind, "target": target}).text
            values.extend(
                float(row.rsplit(" ", 1)[1])
                for row in text.splitlines()
                if row.startswith(metric + " ")
            )
        after = proc.cpu_times()
    cpu = (after.user + after.system - before.user - before.system) / BLACKBOX_PROBES
    return statistics.median(values), cpu


def _wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in 30 s")
