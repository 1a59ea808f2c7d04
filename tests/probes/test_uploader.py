"""The uploader and the agent against a real collector on loopback."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import Engine, select

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.ingest import RateLimiter
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.probe import (
    HeartbeatCheck,
    ProbeSettings,
    TcpCheck,
    UplinkSettings,
    UploadSettings,
)
from lomsong.probes.agent import Job, Runner, run_agent
from lomsong.probes.checks.base import Binding
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import Uploader, encode_batch, retry_after_seconds
from lomsong.storage.schema import probe_state, results
from tests.conftest import RunningCollector, free_port, make_settings, ready_engine, serve_in_thread
from tests.waiting import wait_until_async

from .conftest import Server

PROBE = "cb-thuc-phan"


class LateCollector:
    """A collector whose port is chosen now and which starts (and stops) when told."""

    def __init__(self, url: str, **overrides: Any) -> None:
        self.db_url = url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine: Engine = ready_engine(url)
        self.overrides = overrides
        self._server: tuple[uvicorn.Server, threading.Thread] | None = None

    def register(self) -> str:
        register_probe(self.engine, PROBE, "01273", [Uplink("fibre", "vinaphone")])
        return create_token(self.engine, role="probe", probe_id=PROBE).token

    def start(self) -> None:
        app = create_app(make_settings(self.db_url, **self.overrides), engine=self.engine)
        self._server = serve_in_thread(app, self.port)

    def stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.should_exit = True
            thread.join(10)
            self._server = None

    def stored(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(results.c.seq, results.c.kind, results.c.measured_at, results.c.received_at)
                .where(results.c.probe_id == PROBE)
                .order_by(results.c.seq)
            )
            return [dict(r._mapping) for r in rows]

    def stored_through(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(probe_state.c.stored_through_seq).where(probe_state.c.probe_id == PROBE)
            ).scalar()
        return int(value or 0)


@pytest.fixture
def late_collector(sqlite_url: str) -> Iterator[LateCollector]:
    collector = LateCollector(sqlite_url)
    yield collector
    collector.stop()
    collector.engine.dispose()


def probe_settings(tmp_path: Path, url: str, token: str = "t", **extra: Any) -> ProbeSettings:
    upload = extra.pop("upload", {})
    return ProbeSettings(
        probe_id=PROBE,
        collector_url=url,
        token=token,
        spool_path=tmp_path / "spool.db",
        upload=UploadSettings(
            **{"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.3, **upload}
        ),
        **extra,
    )


def make_uploader(
    settings: ProbeSettings, spool: AsyncSpool, *, token: str | None = None, **kw: Any
) -> Uploader:
    """An uploader of ``settings`` (their token unless ``token`` is given)."""
    if token is None:
        token = settings.token.get_secret_value() if settings.token else ""
    return Uploader(
        spool,
        settings.upload,
        collector_url=settings.collector_url,
        token=token,
        probe_id=PROBE,
        boot_id="boot-1",
        agent_version="0.1.0",
        rng=random.Random(7),
        **kw,
    )


def spooled_times(path: Path) -> dict[int, float]:
    """seq → measured_at of every row in the spool, as the agent recorded it."""
    spool = Spool(path)
    try:
        return {
            r.seq: datetime.fromisoformat(orjson.loads(r.body)["measured_at"]).timestamp()
            for r in spool.pending(10**6)
        }
    finally:
        spool.close()


def test_backfill_after_the_collector_was_down(
    late_collector: LateCollector, tcp_server: Server, tmp_path: Path
) -> None:
    token = late_collector.register()
    settings = probe_settings(tmp_path, late_collector.url, token, upload={"batch_size": 7})
    tcp = TcpCheck(kind="tcp", target=tcp_server.address)
    jobs = [
        Job("tcp", "tcp", tcp.target, tcp, Binding("fibre", source_address="127.0.0.1")),
        Job("hb", "heartbeat", "self", HeartbeatCheck(kind="heartbeat"), Binding()),
    ]

    async def scenario() -> Uploader:
        spool = AsyncSpool(Spool(settings.spool_path))
        uploader = make_uploader(settings, spool)
        runner = Runner(settings, spool, on_recorded=uploader.wake.set)
        stop = asyncio.Event()
        task = asyncio.create_task(uploader.run(stop))
        for _ in range(12):  # the link is down: results pile up in the spool
            for job in jobs:
                await runner.run_job(job)
        await wait_until_async(
            lambda: uploader.counters.failures, timeout=20, what="an upload tried and failed"
        )
        assert uploader.counters.batches == 0
        expected = await asyncio.to_thread(spooled_times, settings.spool_path)
        await asyncio.to_thread(late_collector.start)  # the link is back

        async def backfilled() -> bool:
            stats = await spool.stats()
            return stats.depth + stats.sent_waiting == 0

        await wait_until_async(backfilled, timeout=20, what="backfill finished")
        stop.set()
        await task
        await spool.close()
        uploader.expected = expected  # type: ignore[attr-defined]
        return uploader

    uploader = asyncio.run(scenario())
    expected: dict[int, float] = uploader.expected  # type: ignore[attr-defined]
    stored = late_collector.stored()
    # Every result exactly once, with the time it was measured, not the time it arrived.
    assert [r["seq"] for r in stored] == sorted(expected)
    for r in stored:
        assert r["measured_at"] == pytest.approx(expected[r["seq"]], abs=1e-3)
        assert r["received_at"] > r["measured_at"]
    assert uploader.counters.duplicates == 0
    assert late_collector.stored_through() == max(expected)
    # The newest heartbeat went first, alone; the backlog followed oldest first.
    first_received = min(r["received_at"] for r in stored)
    first = [r for r in stored if r["received_at"] == first_received]
    newest_heartbeat = max(r["seq"] for r in stored if r["kind"] == "heartbeat")
    assert [r["seq"] for r in first] == [newest_heartbeat]
    rest = sorted((r for r in stored if r not in first), key=lambda r: (r["received_at"], r["seq"]))
    assert [r["seq"] for r in rest] == sorted(r["seq"] for r in rest)


def fill(spool: Spool, n: int, kind: str = "icmp") -> list[int]:
    now = time.time()
    body = {"target": "dichvucong.gov.vn", "uplink": "fibre", "ok": True}
    return spool.append(
        [
            (
                now - n + i,
                kind,
                orjson.dumps(
                    {
                        "measured_at": datetime.fromtimestamp(now - n + i, UTC).isoformat(),
                        "kind": kind,
                    }
                    | (body if kind != "heartbeat" else {"target": "self", "ok": True})
                ),
            )
            for i in range(n)
        ]
    )


async def drain(settings: ProbeSettings, spool: Spool, **kw: Any) -> Uploader:
    aspool = AsyncSpool(spool)
    uploader = make_uploader(settings, aspool, **kw)
    async with uploader.client() as client:
        await wait_until_async(lambda: uploader.drain(client), timeout=10, what="spool drained")
    return uploader


def test_413_halves_the_batch_until_it_fits(
    collector_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    collector: RunningCollector = collector_factory(
        sqlite_url, ingest={"max_results_per_batch": 10}
    )
    token = collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, token, upload={"batch_size": 64})
    spool = Spool(settings.spool_path)
    seqs = fill(spool, 50)
    uploader = asyncio.run(drain(settings, spool))
    assert uploader.batch_size <= 10
    assert uploader.counters.results == 50 and uploader.counters.refused == 0
    assert spool.stats().depth == 0
    with collector.client(token) as client:
        assert client.get(f"/api/v1/probes/{PROBE}").json()["stored_through_seq"] == seqs[-1]


def test_429_waits_for_retry_after(collector_factory: Any, sqlite_url: str, tmp_path: Path) -> None:
    collector: RunningCollector = collector_factory(sqlite_url)
    now = [1_000.0]  # the collector's rate limiter on a fake clock: the test moves time on
    collector.ctx.limiter = RateLimiter(0.5, 1, clock=lambda: now[0])
    token = collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, token, upload={"batch_size": 5})
    spool = Spool(settings.spool_path)
    fill(spool, 10)

    async def steps() -> list[tuple[float, bool]]:
        uploader = make_uploader(settings, AsyncSpool(spool))
        uploader.connected = True
        async with uploader.client() as client:
            first = await uploader.step(client)
            second = await uploader.step(client)  # at once: over the rate
            now[0] += second[0]  # as long as Retry-After said
            third = await uploader.step(client)
        return [first, second, third]

    first, second, third = asyncio.run(steps())
    assert first == (0.0, False)
    assert second == (2.0, False)  # Retry-After: 2 (one request per 2 s)
    assert third == (0.0, False)
    assert spool.stats().depth == 0


def test_a_result_the_collector_refuses_is_set_aside_and_counted(
    collector_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    collector: RunningCollector = collector_factory(sqlite_url)
    token = collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, token)
    spool = Spool(settings.spool_path)
    good = fill(spool, 3)
    now = datetime.now(UTC).isoformat()
    bad = spool.append(
        [
            (
                time.time(),
                "icmp",
                orjson.dumps(
                    {
                        "measured_at": now,
                        "kind": "icmp",
                        "target": "x",
                        "ok": True,
                        "packets_sent": 1,
                        "packets_received": 2,
                    }
                ),
            )
        ]
    )
    good += fill(spool, 2)
    uploader = asyncio.run(drain(settings, spool))
    assert uploader.counters.refused == 1
    stats = spool.stats()
    assert stats.refused == 1 and stats.dropped == 0 and stats.depth == 0
    # set aside, not lost: kept with the collector's reason
    [(seq, kind, _at, reason)] = spool.refused()
    assert (seq, kind) == (bad[0], "icmp") and reason.startswith(
        "422 results[3]: Value error, packets_received"
    )
    assert collector.ctx is not None
    with collector.client(token) as client:
        body = client.get(f"/api/v1/probes/{PROBE}").json()
    # The collector moved past the refused seq thanks to spool_floor_seq.
    assert body["stored_through_seq"] == good[-1] and bad[0] < good[-1]


def test_dropped_seqs_do_not_stall_the_contiguous_mark(
    collector_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    collector: RunningCollector = collector_factory(sqlite_url)
    token = collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, token)
    spool = Spool(settings.spool_path)
    seqs = fill(spool, 20)
    spool.set_aside(seqs[:5], "test: refused")
    asyncio.run(drain(settings, spool))
    with collector.client(token) as client:
        assert client.get(f"/api/v1/probes/{PROBE}").json()["stored_through_seq"] == seqs[-1]


def test_unauthorised_probe_keeps_its_spool(
    collector_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    collector: RunningCollector = collector_factory(sqlite_url)
    collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, "wrong-token")
    spool = Spool(settings.spool_path)
    fill(spool, 5)

    async def one() -> tuple[float, bool]:
        uploader = make_uploader(settings, AsyncSpool(spool))
        async with uploader.client() as client:
            return await uploader.step(client)

    assert asyncio.run(one()) == (settings.upload.backoff_max_seconds, False)
    assert spool.stats().depth == 5


def test_backoff_is_full_jitter_under_the_cap(tmp_path: Path) -> None:
    settings = probe_settings(tmp_path, "http://127.0.0.1:1")
    up = make_uploader(settings, AsyncSpool(Spool(settings.spool_path)))
    waits = [up.backoff(n) for n in range(1, 12) for _ in range(50)]
    assert all(0 <= w <= 0.3 for w in waits)
    assert max(up.backoff(1) for _ in range(200)) <= 0.05
    assert len({round(w, 6) for w in waits}) > 400  # spread, not a fixed ladder


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3", 0) == 3.0
    when = "Wed, 21 Oct 2026 07:28:00 GMT"
    at = datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()
    assert retry_after_seconds(when, at) == 30.0
    assert retry_after_seconds("soon", 0) is None


def test_encoded_batch_is_valid_json_with_seqs(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 3)
    batch = spool.pending(10)
    doc = orjson.loads(encode_batch(PROBE, "b", "0.1.0", datetime.now(UTC), batch, 5))
    assert [r["seq"] for r in doc["results"]] == [r.seq for r in batch]
    assert doc["spool_floor_seq"] == 5 and doc["results"][0]["kind"] == "icmp"


@pytest.mark.slow
def test_the_agent_measures_spools_and_delivers(
    late_collector: LateCollector, tcp_server: Server, tmp_path: Path
) -> None:
    token = late_collector.register()
    late_collector.start()
    settings = probe_settings(
        tmp_path,
        late_collector.url,
        token,
        upload={"interval_seconds": 0.2, "batch_deadline_seconds": 0.5},
        uplinks=[UplinkSettings(name="fibre", source_address="127.0.0.1")],
        checks=[
            TcpCheck(
                kind="tcp",
                target=tcp_server.address,
                interval_seconds=1,
                jitter_seconds=0.1,
                timeout_seconds=1,
            ),
            HeartbeatCheck(
                kind="heartbeat", interval_seconds=1, jitter_seconds=0, timeout_seconds=1
            ),
        ],
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(settings, stop))

        def delivered() -> bool:  # three runs of each check (they run every second)
            kinds = [r["kind"] for r in late_collector.stored()]
            return kinds.count("tcp") >= 3 and kinds.count("heartbeat") >= 3

        await wait_until_async(
            lambda: asyncio.to_thread(delivered), timeout=30, what="three runs of each delivered"
        )
        stop.set()
        await asyncio.wait_for(agent, 30)

    asyncio.run(scenario())
    stored = late_collector.stored()
    left = spooled_times(settings.spool_path)
    kinds = [r["kind"] for r in stored]
    assert kinds.count("tcp") >= 3 and kinds.count("heartbeat") >= 3
    assert not set(left) & {r["seq"] for r in stored}  # delivered rows were freed
    seqs = sorted([r["seq"] for r in stored] + list(left))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no hole, no duplicate
    assert tcp_server.peers and set(tcp_server.peers) == {"127.0.0.1"}
    assert httpx.get(f"{late_collector.url}/healthz").status_code == 200
