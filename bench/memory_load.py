"""A national fleet on loopback: every commune centre's probe posting its batches on a schedule.

Each probe has a fibre line and three 4G modems and runs five checks on each uplink (icmp, tcp,
http and dns to the National Public Service Portal, icmp to a public resolver) plus a heartbeat
every round: 21 results a round. At the national rate a round is every 30 s and a batch goes
every 10 s; ``rate`` divides the round's interval and leaves the batch's, as turning up the
agents' check interval would: 4× is four times the results (about 9,300 a second), in the same
332 requests a second, each about four times as big. Measurement times are the real ones, so
that what the collector keeps by time (the detector's quality window) holds what it would in
production.

A probe behaves as the agent's uploader does: one request at a time, and a batch that got no
200 answer is kept and sent again with what came since. It is an asyncio task on a bare HTTP/1.1
connection (``ingest_http.Http11``): 3,321 httpx clients would take the load process more CPU
than the collector it loads. Each batch opens its connection afresh: uvicorn closes a
connection idle for 5 s, and batches are 10 s apart.
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert

from bench.bench_metrics import CHECKS as METRICS_CHECKS
from bench.bench_metrics import UPLINKS
from bench.ingest_http import POST_HEADERS, Http11
from lomsong.collector.auth import TOKEN_PREFIX, hash_token
from lomsong.storage.places import bundled_communes
from lomsong.storage.schema import probe_uplinks, probes, tokens

NATIONAL_ROUND_SECONDS = 30.0
NATIONAL_BATCH_SECONDS = 10.0
#: the metrics bench's national shape, and a second ping target as agents usually have
CHECKS = (*METRICS_CHECKS, ("icmp", "8.8.8.8"))
PER_ROUND = len(UPLINKS) * len(CHECKS) + 1
#: A request unanswered for this long is given up and its batch kept, as the agent's timeout.
REQUEST_TIMEOUT = 30.0


def register_fleet(engine: Engine, now: float) -> dict[str, str]:
    """A probe with four uplinks and a token at every bundled commune, in one transaction (the
    CLI's one transaction per probe takes minutes for 3,321); probe id → token."""
    probe_rows: list[dict[str, Any]] = []
    uplink_rows: list[dict[str, Any]] = []
    token_rows: list[dict[str, Any]] = []
    out: dict[str, str] = {}
    rng = random.Random(3321)
    for commune in bundled_communes():
        pid = f"p{commune['code']}"
        probe_rows.append({"id": pid, "commune_code": commune["code"], "created_at": now})
        uplink_rows += [{"probe_id": pid, "name": n, "operator": o} for n, o in UPLINKS]
        token = TOKEN_PREFIX + rng.randbytes(24).hex()
        token_rows.append(
            {
                "token_hash": hash_token(token),
                "prefix": token[:10],
                "role": "probe",
                "probe_id": pid,
                "created_at": now,
            }
        )
        out[pid] = token
    with engine.begin() as conn:
        conn.execute(insert(probes), probe_rows)
        conn.execute(insert(probe_uplinks), uplink_rows)
        conn.execute(insert(tokens), token_rows)
    return out


@dataclass(frozen=True)
class FleetSpec:
    url: str
    probes: tuple[tuple[str, str], ...]  # (probe_id, token)
    rate: float
    seconds: float


@dataclass
class FleetResult:
    requests: int = 0
    answered: int = 0
    results_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    failures: int = 0
    failure_sample: str = ""
    #: requests that had to wait for the previous one past their schedule
    late: int = 0
    latencies: list[float] = field(default_factory=list)
    load_cpu_seconds: float = 0.0


def run_fleet(spec: FleetSpec) -> FleetResult:
    """Drive the fleet in a separate process for ``spec.seconds`` and return what it saw."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_fleet_main, (spec,))


def _fleet_main(spec: FleetSpec) -> FleetResult:
    return asyncio.run(_drive(spec))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class _Probe:
    """One probe's schedule of rounds and what it has not had acknowledged yet."""

    def __init__(self, probe_id: str, token: str, round_s: float, start: float, seed: int):
        self.probe_id = probe_id
        self.head = b"".join(
            f"{k}: {v}\r\n".encode()
            for k, v in {**POST_HEADERS, "Authorization": f"Bearer {token}"}.items()
        )
        self.round_s = round_s
        self.rng = random.Random(seed)
        self.next_round = start
        self.rounds = 0
        self.pending: list[dict[str, Any]] = []

    def measure(self, now: float) -> None:
        """The rounds due by ``now``, added to what is pending."""
        while self.next_round <= now:
            self.pending += self._round(self.next_round)
            self.rounds += 1
            self.next_round += self.round_s

    def _round(self, at: float) -> list[dict[str, Any]]:
        rng = self.rng
        seq = self.rounds * PER_ROUND + 1
        out: list[dict[str, Any]] = []
        for up, _ in UPLINKS:
            for kind, target in CHECKS:
                ok = rng.random() > 0.02
                r: dict[str, Any] = {
                    "seq": seq,
                    "measured_at": _iso(at + rng.uniform(0, 2)),
                    "kind": kind,
                    "target": target,
                    "uplink": up,
                    "ok": ok,
                    "duration_seconds": round(rng.uniform(0.01, 0.4), 4) if ok else 5.0,
                }
                if kind == "icmp":
                    r.update(packets_sent=5, packets_received=5 if ok else 0)
                if not ok:
                    r["error"] = "timeout"
                out.append(r)
                seq += 1
        out.append(
            {
                "seq": seq,
                "measured_at": _iso(at + 2),
                "kind": "heartbeat",
                "target": "self",
                "uplink": None,
                "ok": True,
                "uptime_seconds": 86_000.0 + at % 10_000,
                "load1": 0.3,
                "spool_depth": len(self.pending),
            }
        )
        return out

    def body(self) -> bytes:
        doc = {
            "probe_id": self.probe_id,
            "boot_id": f"boot-{self.probe_id}",
            "agent_version": "0.1.0",
            "sent_at": _iso(time.time()),
            "results": self.pending,
            "spool_floor_seq": self.pending[0]["seq"],
        }
        return gzip.compress(orjson.dumps(doc), 1)


async def _drive(spec: FleetSpec) -> FleetResult:
    out = FleetResult()
    round_s = NATIONAL_ROUND_SECONDS / spec.rate
    batch_s = NATIONAL_BATCH_SECONDS
    start = time.time()
    t_end = time.monotonic() + spec.seconds
    cpu0 = time.process_time()
    rng = random.Random(2025)

    async def probe(i: int, pid: str, token: str) -> None:
        p = _Probe(pid, token, round_s, start + rng.uniform(0, round_s), i)
        # spread over one batch interval, as agents started at different times are
        next_send = time.monotonic() + rng.uniform(0, batch_s)
        while True:
            wait = next_send - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -batch_s:
                out.late += 1
            if time.monotonic() >= t_end:
                return
            next_send += batch_s
            p.measure(time.time())
            if not p.pending:
                continue
            body = p.body()
            n = len(p.pending)
            out.requests += 1
            out.results_sent += n
            t0 = time.monotonic()
            conn = Http11(spec.url)
            try:
                status, answer = await asyncio.wait_for(
                    conn.post("/api/v1/reports", p.head, body), REQUEST_TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                out.failures += 1
                out.failure_sample = out.failure_sample or repr(exc)
                continue
            finally:
                conn.close()
            out.latencies.append(time.monotonic() - t0)
            if status != 200:
                out.failures += 1
                out.failure_sample = out.failure_sample or f"{status} {answer[:200]!r}"
                continue
            out.answered += 1
            ack = orjson.loads(answer)
            out.accepted += ack["accepted"]
            out.duplicates += ack["duplicates"]
            p.pending = []

    await asyncio.gather(*(probe(i, pid, token) for i, (pid, token) in enumerate(spec.probes)))
    out.load_cpu_seconds = time.process_time() - cpu0
    out.latencies.sort()
    return out
