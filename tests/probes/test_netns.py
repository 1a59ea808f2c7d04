"""The agent in its own network namespace, joined to the collector by a veth pair.

The link goes down for a while and comes back: the gap must be measured as failures, spooled,
and backfilled with the times they were measured. The addresses are in 198.18.0.0/15 (RFC 2544,
benchmarking) and exist only on the veth pair this test makes; no packet leaves the machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.probes.spool import Spool
from lomsong.storage.schema import results
from tests.conftest import free_port, make_settings, ready_engine
from tests.waiting import wait_until

PROBE = "cb-tra-linh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need root and iproute2",
    ),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Link:
    namespace: str
    host_if: str
    host_addr: str
    probe_addr: str

    def down(self) -> None:
        ip("link", "set", self.host_if, "down")

    def up(self) -> None:
        ip("link", "set", self.host_if, "up")


@pytest.fixture
def link() -> Iterator[Link]:
    tag = uuid.uuid4().hex[:6]
    third, fourth = random.randrange(256), random.randrange(0, 256, 4)
    host, probe = f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"
    lk = Link(f"lomsong-{tag}", f"lsh{tag}", host, probe)
    ip("netns", "add", lk.namespace)
    try:
        ip("link", "add", lk.host_if, "type", "veth", "peer", "name", f"lsp{tag}")
        ip("link", "set", f"lsp{tag}", "netns", lk.namespace)
        ip("addr", "add", f"{host}/30", "dev", lk.host_if)
        ip("link", "set", lk.host_if, "up")
        ip("-n", lk.namespace, "addr", "add", f"{probe}/30", "dev", f"lsp{tag}")
        ip("-n", lk.namespace, "link", "set", f"lsp{tag}", "up")
        ip("-n", lk.namespace, "link", "set", "lo", "up")
        yield lk
    finally:
        subprocess.run(["ip", "link", "del", lk.host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", lk.namespace], capture_output=True, timeout=30)


def tcp_target(host: str) -> tuple[socket.socket, threading.Event]:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(64)
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return sock, stop


def test_a_link_outage_is_measured_spooled_and_backfilled(
    link: Link, sqlite_url: str, tmp_path: Path
) -> None:
    engine = ready_engine(sqlite_url)
    register_probe(engine, PROBE, "01273", [Uplink("fibre", "vinaphone")])
    token = create_token(engine, role="probe", probe_id=PROBE).token
    port = free_port()
    app = create_app(make_settings(sqlite_url), engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host=link.host_addr, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    target, stop_target = tcp_target(link.host_addr)
    config = tmp_path / "probe.toml"
    config.write_text(
        f"""
probe_id = "{PROBE}"
collector_url = "http://{link.host_addr}:{port}"
token = "{token}"
spool_path = "{tmp_path / "spool.db"}"
log_level = "WARNING"
[upload]
interval_seconds = 0.2
batch_deadline_seconds = 0.2
timeout_seconds = 2
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.5
[[uplinks]]
name = "fibre"
source_address = "{link.probe_addr}"
[[checks]]
kind = "tcp"
target = "{link.host_addr}:{target.getsockname()[1]}"
interval_seconds = 1
jitter_seconds = 0
timeout_seconds = 0.8
[[checks]]
kind = "heartbeat"
interval_seconds = 1
jitter_seconds = 0
timeout_seconds = 1
"""
    )
    lomsong = Path(sys.executable).with_name("lomsong")
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            link.namespace,
            str(lomsong),
            "probe",
            "run",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    spool_db = tmp_path / "spool.db"
    try:
        # Up: the collector stores a good tcp result measured well before the link goes down.
        wait_until(
            lambda: any(
                r["kind"] == "tcp" and r["ok"] and r["measured_at"] < time.time() - 0.2
                for r in stored_rows(engine)
            ),
            timeout=30,
            what=lambda: f"a good tcp result stored; the agent's log:\n{log_tail(tmp_path)}",
        )
        down_at = time.time()
        link.down()

        def gap_failures() -> list[int]:
            """Down: the spool holds 3 failed tcp results measured well inside the gap."""
            seqs = failures_in(spool_db, down_at + 0.2, time.time() - 1.0)
            return seqs if len(seqs) >= 3 else []

        gap = wait_until(
            gap_failures,
            timeout=30,
            what=lambda: f"3 failures spooled in the gap; the agent's log:\n{log_tail(tmp_path)}",
        )
        up_at = time.time()
        link.up()
        # Back: the gap is backfilled and a good tcp result measured after the return is stored.
        wait_until(
            lambda: recovered(engine, set(gap), up_at + 1.5),
            timeout=30,
            what=lambda: f"the gap backfilled, then a good tcp result; log:\n{log_tail(tmp_path)}",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        log.close()
        server.should_exit = True
        thread.join(10)
        stop_target.set()
        target.close()

    stored = stored_rows(engine)
    tcp = [r for r in stored if r["kind"] == "tcp"]
    before = [r for r in tcp if r["measured_at"] < down_at - 0.2]
    during = [r for r in tcp if down_at + 0.2 < r["measured_at"] < up_at - 1.0]
    assert before and all(r["ok"] for r in before)
    # The gap was measured, as failures, and those arrived only after the link came back.
    assert len(during) >= 3 and not any(r["ok"] for r in during)
    assert {r["error"] for r in during} <= {"timeout", "network is unreachable", "no route to host"}
    assert all(r["received_at"] > up_at for r in during)
    assert any(r["ok"] for r in tcp if r["measured_at"] > up_at + 1.5)
    # Nothing recorded is missing: the collector plus what the spool still holds is every seq.
    spool = Spool(tmp_path / "spool.db")
    left = [r.seq for r in spool.pending(10**6)]
    last = spool.stats().next_seq - 1
    spool.close()
    seqs = sorted({r["seq"] for r in stored} | set(left))
    assert seqs == list(range(seqs[0], last + 1))
    engine.dispose()


def stored_rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                results.c.seq,
                results.c.kind,
                results.c.ok,
                results.c.error,
                results.c.measured_at,
                results.c.received_at,
            )
            .where(results.c.probe_id == PROBE)
            .order_by(results.c.seq)
        )
        return [dict(r._mapping) for r in rows]


def failures_in(spool_db: Path, after: float, before: float) -> list[int]:
    """Seqs of the failed tcp results the agent's spool holds, measured in (after, before)."""
    if not spool_db.exists():
        return []
    con = sqlite3.connect(f"file:{spool_db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT seq, body FROM results WHERE kind = 'tcp' AND measured_at > ? AND measured_at < ?",
            (after, before),
        ).fetchall()
    finally:
        con.close()
    return [seq for seq, body in rows if not json.loads(body)["ok"]]


def recovered(engine: Any, gap: set[int], after: float) -> bool:
    """Whether the collector stored every seq of ``gap`` and a good tcp result measured after."""
    stored = stored_rows(engine)
    return gap <= {r["seq"] for r in stored} and any(
        r["kind"] == "tcp" and r["ok"] and r["measured_at"] > after for r in stored
    )


def log_tail(tmp_path: Path) -> str:
    return (tmp_path / "agent.log").read_text(errors="replace")[-2000:]
