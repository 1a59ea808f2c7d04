"""What the agent does with a refusal: a poison result is set aside and the queue moves on; a
collector that says when to come back is not asked sooner."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from lomsong.config.probe import HeartbeatCheck, ProbeSettings, UploadSettings
from lomsong.probes.agent import run_agent
from lomsong.probes.spool import REFUSED_KEPT, AsyncSpool, Spool
from lomsong.probes.uploader import Uploader
from lomsong.storage.schema import probe_state, results
from tests.conftest import CollectorFactory, RunningCollector
from tests.waiting import wait_until_async

PROBE = "cb-thuc-phan"


def _result(at: float, target: str = "dichvucong.gov.vn") -> tuple[float, str, bytes]:
    doc = {
        "measured_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "kind": "icmp",
        "target": target,
        "uplink": "fibre",
        "ok": True,
    }
    return (at, "icmp", orjson.dumps(doc))


def test_set_aside_results_are_kept_counted_and_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    now = time.time()
    seqs = spool.append([_result(now - 10_000 + i) for i in range(REFUSED_KEPT + 5)])
    assert spool.set_aside(seqs[:3], "422 results[0].target: bad") == 3
    assert spool.set_aside(seqs[3:], "422 results[0].target: worse") == REFUSED_KEPT + 2
    assert spool.set_aside([seqs[0]], "again") == 0  # already out of the queue
    spool.close()

    spool = Spool(tmp_path / "spool.db")  # survives a restart
    stats = spool.stats()
    assert stats.refused == REFUSED_KEPT + 5 and stats.depth == 0 and stats.dropped == 0
    kept = spool.refused(limit=REFUSED_KEPT + 10)
    assert len(kept) == REFUSED_KEPT  # the newest are kept to be read, all are counted
    assert kept[0][0] == seqs[-1] and kept[0][3] == "422 results[0].target: worse"
    assert spool.pending(10) == [] and spool.floor_seq() is None
    spool.close()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_poison_result_in_the_spool_cannot_block_the_agent(
    collector_factory: CollectorFactory, request: pytest.FixtureRequest, tmp_path: Path, db: str
) -> None:
    """A result the collector refuses for good (a NUL in its target, as an older agent could
    spool it) stood first in the queue; the agent sets it aside and everything behind it is
    delivered. On PostgreSQL this once answered 500 for ever, and the spool only grew."""
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    collector: RunningCollector = collector_factory(url)
    token = collector.register(PROBE, uplinks=("fibre:vinaphone",))
    settings = ProbeSettings(
        probe_id=PROBE,
        collector_url=collector.url,
        token=token,
        spool_path=tmp_path / "spool.db",
        upload=UploadSettings(
            interval_seconds=0.2,
            batch_deadline_seconds=0.2,
            backoff_initial_seconds=0.05,
            backoff_max_seconds=0.3,
        ),
        checks=[
            HeartbeatCheck(
                kind="heartbeat", interval_seconds=1, jitter_seconds=0, timeout_seconds=1
            )
        ],
    )
    spool = Spool(settings.spool_path)
    now = time.time()
    before = spool.append([_result(now - 30 + i) for i in range(3)])
    [poison] = spool.append([_result(now - 20, target="dichvu\x00cong")])
    after = spool.append([_result(now - 10 + i) for i in range(3)])
    spool.close()

    def refused_heard() -> bool:
        with collector.engine.connect() as conn:
            through = conn.execute(
                select(probe_state.c.stored_through_seq).where(probe_state.c.probe_id == PROBE)
            ).scalar_one()
            details = conn.execute(
                select(results.c.details).where(
                    results.c.probe_id == PROBE,
                    results.c.kind == "heartbeat",
                    results.c.details.is_not(None),
                )
            ).scalars()
            told = any(orjson.loads(d).get("spool_refused") == 1 for d in details)
        return bool(through > after[-1] and told)

    async def scenario() -> None:
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(settings, stop))

        def moved() -> bool:
            assert not agent.done(), agent
            return refused_heard()

        await wait_until_async(
            moved, timeout=30, what="the queue moving past the poison result", interval=0.1
        )
        stop.set()
        await asyncio.wait_for(agent, 30)

    asyncio.run(scenario())
    with collector.engine.connect() as conn:
        stored = set(
            conn.execute(select(results.c.seq).where(results.c.probe_id == PROBE)).scalars()
        )
    assert set(before) | set(after) <= stored and poison not in stored
    spool = Spool(settings.spool_path)
    [(seq, kind, _at, reason)] = spool.refused()
    assert (seq, kind) == (poison, "icmp")
    assert "results[3].target: text may not hold a NUL character" in reason
    spool.close()
    with collector.client(token) as http:
        view = http.get(f"/api/v1/probes/{PROBE}").json()
    assert view["spool"]["refused"] == 1 and view["spool"]["dropped"] == 0


class _Unavailable(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"detail": "database unavailable"}'
        self.send_response(503)
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def unavailable() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_503_is_not_retried_before_its_retry_after(unavailable: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.append([_result(time.time())])
    upload = UploadSettings(backoff_initial_seconds=0.05, backoff_max_seconds=60)

    async def attempt() -> tuple[float, bool]:
        uploader = Uploader(
            AsyncSpool(spool),
            upload,
            collector_url=unavailable,
            token="t",
            probe_id=PROBE,
            boot_id="boot-1",
            agent_version="0.1.0",
        )
        async with uploader.client() as client:
            return await uploader.step(client)

    delay, idle = asyncio.run(attempt())
    assert delay >= 7.0 and not idle  # the jittered backoff alone would be at most 0.05 s
    assert spool.stats().depth == 1 and spool.stats().refused == 0
