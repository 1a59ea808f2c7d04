"""SIGKILL the agent during uploads, again and again: nothing is lost, nothing stored twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from lomsong.config.probe import UploadSettings
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import Uploader
from lomsong.storage.schema import results
from tests.conftest import RunningCollector
from tests.waiting import wait_until, wait_until_async

from .conftest import Server

PROBE = "cb-ha-quang"
KILLS = 10
BACKLOG = 12_000


def agent_config(tmp_path: Path, url: str, token: str, tcp: Server) -> Path:
    path = tmp_path / "probe.toml"
    path.write_text(
        f"""
probe_id = "{PROBE}"
collector_url = "{url}"
token = "{token}"
spool_path = "{tmp_path / "spool.db"}"
log_level = "WARNING"

[upload]
batch_size = 25
interval_seconds = 0.1
batch_deadline_seconds = 0
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.2
gzip_level = 1

[[uplinks]]
name = "fibre"
source_address = "127.0.0.1"

[[checks]]
kind = "tcp"
target = "{tcp.address}"
interval_seconds = 1
jitter_seconds = 0.2
timeout_seconds = 1

[[checks]]
kind = "heartbeat"
interval_seconds = 1
jitter_seconds = 0
timeout_seconds = 1
"""
    )
    return path


def prefill(path: Path, n: int) -> None:
    """A backlog from a long outage, so that every kill lands while batches are in flight."""
    spool = Spool(path)
    now = time.time()
    rows = []
    for i in range(n):
        t = now - n - 60 + i  # one a second, ending a minute ago
        doc = {
            "measured_at": datetime.fromtimestamp(t, UTC).isoformat(),
            "kind": "icmp",
            "target": "dichvucong.gov.vn",
            "uplink": "fibre",
            "ok": False,
            "packets_sent": 5,
            "packets_received": 0,
            "error": "timeout",
        }
        rows.append((t, "icmp", orjson.dumps(doc)))
    spool.append(rows)
    spool.close()


@pytest.mark.slow
def test_sigkill_during_uploads_loses_nothing(
    collector_factory: Any, sqlite_url: str, tcp_server: Server, tmp_path: Path
) -> None:
    collector: RunningCollector = collector_factory(sqlite_url)
    token = collector.register(PROBE, uplinks=("fibre:vinaphone",))
    config = agent_config(tmp_path, collector.url, token, tcp_server)
    spool_path = tmp_path / "spool.db"
    prefill(spool_path, BACKLOG)
    lomsong = Path(sys.executable).with_name("lomsong")
    rng = random.Random(2026)
    stored_before: list[int] = []
    log = (tmp_path / "agent.log").open("w")
    for _ in range(KILLS):
        agent = subprocess.Popen(
            [str(lomsong), "probe", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # Kill once this run has delivered something, at a random moment of its backfill.
        before = len(stored_seqs(collector))
        wait_until(
            lambda n=before: len(stored_seqs(collector)) > n,
            timeout=30,
            what="the agent delivered",
        )
        # Real time on purpose: where the kill lands is the test's (seeded) random input.
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        stored_before.append(len(stored_seqs(collector)))
    log.close()
    assert "spool: dropped" not in (tmp_path / "agent.log").read_text()
    # The kills landed while the backlog was still being delivered.
    # Every kill landed while the backlog was still being delivered: mid-upload.
    assert stored_before[-1] < BACKLOG, stored_before
    assert all(a < b for a, b in zip(stored_before, stored_before[1:], strict=False)), stored_before

    # One last delivery of what is left, then compare the collector with everything recorded.
    spool = Spool(spool_path)
    last_seq = spool.stats().next_seq - 1
    recorded = {r.seq: r.body for r in spool.pending(10**6)}
    asyncio.run(drain(spool, collector.url, token))
    assert spool.stats().depth == 0
    spool.close()
    stored = stored_seqs(collector)
    first = min(stored)
    assert stored == list(range(first, last_seq + 1)), "a recorded result is missing"
    assert len(stored) >= BACKLOG + KILLS  # the backlog and the results measured meanwhile
    # What the spool still held arrived with its own measurement time.
    times = stored_times(collector)
    for seq, body in recorded.items():
        measured = datetime.fromisoformat(orjson.loads(body)["measured_at"]).timestamp()
        assert times[seq] == pytest.approx(measured, abs=1e-3)


def stored_seqs(collector: RunningCollector) -> list[int]:
    with collector.engine.connect() as conn:
        return list(
            conn.execute(
                select(results.c.seq).where(results.c.probe_id == PROBE).order_by(results.c.seq)
            ).scalars()
        )


def stored_times(collector: RunningCollector) -> dict[int, float]:
    with collector.engine.connect() as conn:
        rows = conn.execute(
            select(results.c.seq, results.c.measured_at).where(results.c.probe_id == PROBE)
        )
        return {int(s): float(m) for s, m in rows}


async def drain(spool: Spool, url: str, token: str) -> None:
    uploader = Uploader(
        AsyncSpool(spool),
        UploadSettings(batch_size=500),
        collector_url=url,
        token=token,
        probe_id=PROBE,
        boot_id="boot-final",
        agent_version="0.1.0",
    )
    async with uploader.client() as client:
        await wait_until_async(lambda: uploader.drain(client), timeout=10, what="the spool drained")
