"""The fleet polling its configuration: 3,321 agents asking every 10 s with ETags.

``lomsong serve`` (one worker, SQLite) holds 3,321 registered probes, each with its own token,
and a national profile. A load process (its own, as in ``bench/ingest_http.py``) runs 3,321
simulated agents, each on its own keep-alive connection, each asking
``GET /api/v1/probes/{id}/config`` with ``If-None-Match`` every 10 s, spread over the interval.

1. Steady state: nearly every answer is a 304. The collector's CPU time (user + system, from
   /proc through psutil) over the window, per 304.
2. One change: the national profile is set anew; each agent's next poll brings a 200 with the
   new configuration. The time until every one of them has it (target ≤ 2 upload intervals,
   20 s) and the collector's CPU per changed configuration sent.
3. Beside them, in the same run: the plain HTTP ingest figure (``bench/ingest_http.py``, 16
   uploaders for a short window), what the same collector does with reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sqlalchemy import insert

from bench.ingest_http import Http11, LoadSpec, run_load, serve
from bench.ingest_sqlite import commune_codes, fresh_database, migrated, probe_id
from bench.report import Outcome, check, heading, line, percentile
from lomsong.collector.auth import TOKEN_PREFIX, hash_token
from lomsong.collector.fleet_profiles import set_layer
from lomsong.storage.schema import probe_uplinks, probes, tokens

NAME = "profiles"
N_AGENTS = 3_321
INTERVAL = 10.0
#: the first round fetches every configuration (200s); the steady window follows it
WARMUP_SECONDS = 12.0
STEADY_SECONDS = 20.0
#: how long the change may take before the run gives up on it
CHANGE_LIMIT_SECONDS = 60.0
TARGET_PROPAGATION = 2 * INTERVAL
INGEST_SECONDS = 6.0
INGEST_PROBES = 16
INGEST_ENV = {"LOMSONG_INGEST__RATE_PER_PROBE": "10000", "LOMSONG_INGEST__RATE_BURST": "100000"}

NATIONAL = {
    "defaults": {"interval_seconds": 30.0},
    "checks": [
        {"kind": "icmp", "target": "dichvucong.gov.vn"},
        {"kind": "tcp", "target": "dichvucong.gov.vn:443"},
        {"kind": "http", "target": "https://dichvucong.gov.vn/", "method": "HEAD"},
        {"kind": "dns", "target": "dichvucong.gov.vn", "server": "8.8.8.8"},
        {"kind": "heartbeat"},
    ],
}


def main() -> list[Outcome]:
    heading(f"{NAME}: {N_AGENTS} agents polling their configuration every {INTERVAL:g} s")
    line(f"load average before: {_load()} on {os.cpu_count()} cores")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "fleet.db"
        t0 = time.perf_counter()
        agents = _fleet_database(db)
        line(f"{len(agents)} probes, tokens and a national profile stored in "
             f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        with serve(db, tmp / "serve.log") as server:
            result = _run_polls(server.url, server.pid, agents, db)
        outcomes += _report(result)
        outcomes += _ingest(tmp)
    line(f"load average after: {_load()}")
    return outcomes


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _fleet_database(db: Path) -> list[tuple[str, str]]:
    """3,321 probes, one per commune, each with its token, in one transaction each table."""
    engine = migrated(db)
    try:
        codes = commune_codes(engine)[:N_AGENTS]
        out = [(probe_id(code), TOKEN_PREFIX + secrets.token_urlsafe(32)) for code in codes]
        now = time.time()
        with engine.begin() as conn:
            conn.execute(
                insert(probes),
                [{"id": pid, "commune_code": c, "created_at": now} for (pid, _), c in
                 zip(out, codes, strict=True)],
            )  # fmt: skip
            conn.execute(
                insert(probe_uplinks),
                [{"probe_id": pid, "name": "fibre", "operator": "fibre"} for pid, _ in out],
            )
            conn.execute(
                insert(tokens),
                [
                    {
                        "token_hash": hash_token(tok),
                        "prefix": tok[:10],
                        "role": "probe",
                        "probe_id": pid,
                        "created_at": now,
                    }
                    for pid, tok in out
                ],
            )
        set_layer(engine, "national", "", NATIONAL)
        return out
    finally:
        engine.dispose()


@dataclass
class PollSpec:
    url: str
    server_pid: int
    agents: list[tuple[str, str]]
    db: str


@dataclass
class PollResult:
    steady_304: int = 0
    steady_200: int = 0
    steady_other: int = 0
    steady_cpu: float = 0.0
    steady_seconds: float = 0.0
    steady_latencies: list[float] = field(default_factory=list)
    change_200: int = 0
    change_304: int = 0
    change_cpu: float = 0.0
    #: seconds from the change to each agent's fetch of it
    fetched_after: list[float] = field(default_factory=list)
    connections: int = 0
    errors: int = 0
    error_sample: str = ""


def _run_polls(url: str, pid: int, agents: list[tuple[str, str]], db: Path) -> PollResult:
    ctx = multiprocessing.get_context("spawn")
    spec = PollSpec(url, pid, agents, str(db))
    with ctx.Pool(1) as pool:
        return pool.apply(_poll_main, (spec,))


def _poll_main(spec: PollSpec) -> PollResult:
    return asyncio.run(_drive(spec))


async def _drive(spec: PollSpec) -> PollResult:
    out = PollResult()
    server = psutil.Process(spec.server_pid)
    rng = random.Random(16)
    offsets = [rng.uniform(0, INTERVAL) for _ in spec.agents]
    start = time.perf_counter()
    steady_from = start + WARMUP_SECONDS
    steady_to = steady_from + STEADY_SECONDS
    state: dict[str, float] = {}
    changed_at: list[float] = []
    new_version: list[str] = []
    stop = asyncio.Event()
    everyone = asyncio.Event()

    def cpu() -> float:
        return float(sum(server.cpu_times()[:2]))

    async def agent(i: int, pid: str, token: str) -> None:
        conn = Http11(spec.url)
        etag = ""
        path = f"/api/v1/probes/{pid}/config"
        auth = f"Authorization: Bearer {token}\r\n"
        await asyncio.sleep(offsets[i])
        next_at = time.perf_counter()
        try:
            while not stop.is_set():
                headers = auth + (f"If-None-Match: {etag}\r\n" if etag else "")
                t0 = time.perf_counter()
                try:
                    status, head, _ = await conn.get(path, headers.encode())
                except (OSError, asyncio.IncompleteReadError) as exc:
                    out.errors += 1
                    out.error_sample = out.error_sample or repr(exc)
                    conn.close()
                    status, head = 0, {}
                t1 = time.perf_counter()
                if status == 200:
                    etag = head.get("etag", "")
                    if new_version and etag == f'"{new_version[0]}"' and pid not in state:
                        state[pid] = t1 - changed_at[0]
                        if len(state) == len(spec.agents):
                            everyone.set()
                elif status not in (200, 304):
                    out.errors += 1
                    out.error_sample = out.error_sample or f"HTTP {status}"
                if steady_from <= t1 <= steady_to:
                    if status == 304:
                        out.steady_304 += 1
                        out.steady_latencies.append(t1 - t0)
                    elif status == 200:
                        out.steady_200 += 1
                    else:
                        out.steady_other += 1
                elif changed_at and t1 >= changed_at[0]:
                    if status == 200:
                        out.change_200 += 1
                    elif status == 304:
                        out.change_304 += 1
                next_at += INTERVAL
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        finally:
            conn.close()

    async def conductor() -> None:
        await asyncio.sleep(max(0.0, steady_from - time.perf_counter()))
        c0 = cpu()
        await asyncio.sleep(max(0.0, steady_to - time.perf_counter()))
        out.steady_cpu = cpu() - c0
        out.steady_seconds = STEADY_SECONDS
        # one change of the national profile, as an admin would make it
        version = await asyncio.to_thread(_change, spec.db, spec.agents[0][0])
        new_version.append(version)
        c0 = cpu()
        changed_at.append(time.perf_counter())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), CHANGE_LIMIT_SECONDS)
        out.change_cpu = cpu() - c0
        out.fetched_after = sorted(state.values())
        conns = getattr(server, "net_connections", None) or server.connections
        out.connections = len(conns(kind="tcp"))
        stop.set()

    tasks = [asyncio.create_task(agent(i, p, t)) for i, (p, t) in enumerate(spec.agents)]
    await conductor()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.steady_latencies.sort()
    return out


def _change(db: str, probe: str) -> str:
    """Set the national profile anew (the collector sees it within its refresh second), as
    ``lomsong fleet profile set`` does from another process; return the new version."""
    from lomsong.collector.fleet_profiles import served_config_versions
    from lomsong.storage.database import open_engine

    engine = open_engine(f"sqlite:///{db}")
    try:
        doc = {**NATIONAL, "defaults": {"interval_seconds": 60.0}}
        set_layer(engine, "national", "", doc, by="bench")
        with engine.connect() as conn:
            return served_config_versions(conn, [probe])[probe]
    finally:
        engine.dispose()


def _report(r: PollResult) -> list[Outcome]:
    heading("1. steady state: every agent asks every 10 s, nearly all answers 304")
    rate = r.steady_304 / r.steady_seconds if r.steady_seconds else 0.0
    per_304 = r.steady_cpu / r.steady_304 if r.steady_304 else float("nan")
    line(
        f"{r.steady_304} answers 304 in {r.steady_seconds:.0f} s ({rate:.0f}/s), "
        f"{r.steady_200} 200, {r.steady_other} other; {r.errors} errors {r.error_sample}"
    )
    lat = r.steady_latencies
    line(f"latency of a 304: p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
         f"p99 {percentile(lat, 0.99) * 1000:.1f} ms")  # fmt: skip
    line(
        f"collector CPU: {r.steady_cpu:.2f} s over {r.steady_seconds:.0f} s "
        f"({r.steady_cpu / r.steady_seconds:.1%} of a core), {per_304 * 1e6:.0f} µs per 304"
    )
    heading("2. one change of the national profile")
    done = len(r.fetched_after)
    last = r.fetched_after[-1] if r.fetched_after else float("nan")
    per_200 = r.change_cpu / r.change_200 if r.change_200 else float("nan")
    line(
        f"{done} of {N_AGENTS} agents fetched it; the last after {last:.1f} s "
        f"(median {percentile(r.fetched_after, 0.5):.1f} s)"
    )
    line(
        f"collector CPU until then: {r.change_cpu:.2f} s for {r.change_200} changed "
        f"configurations and {r.change_304} 304s: {per_200 * 1e6:.0f} µs per changed one"
    )
    line(f"collector connections open: {r.connections}")
    return [
        check(NAME, "CPU per 304", f"{per_304 * 1e6:.0f} µs", "print", True),
        check(NAME, "CPU per changed config", f"{per_200 * 1e6:.0f} µs", "print", True),
        check(
            NAME,
            "change fetched by every agent",
            f"{last:.1f} s ({done}/{N_AGENTS})",
            f"<= {TARGET_PROPAGATION:.0f} s",
            done == N_AGENTS and last <= TARGET_PROPAGATION,
        ),
    ]


def _ingest(tmp: Path) -> list[Outcome]:
    heading(f"3. beside it: plain HTTP ingest, {INGEST_PROBES} uploaders ({INGEST_SECONDS:g} s)")
    db = tmp / "ingest.db"
    tokens_ = fresh_database(db, INGEST_PROBES)
    with serve(db, tmp / "ingest.log", **INGEST_ENV) as server:
        r = run_load(LoadSpec(server.url, server.pid, tuple(tokens_.items()), 2.0, INGEST_SECONDS))
    rate = r.results / r.window_seconds
    per_batch = r.server_cpu_seconds / r.requests if r.requests else float("nan")
    line(
        f"{rate:,.0f} results/s in {r.requests} batches; collector CPU "
        f"{per_batch * 1e6:.0f} µs per 100-result batch; {r.errors} errors"
    )
    return [check(NAME, "ingest beside it", f"{rate:,.0f} results/s", "print", True)]
