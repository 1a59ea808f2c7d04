"""Outages end to end with real agents: `lomsong probe run` processes reporting to a collector.

An agent stopped → a firing notification at a local webhook sink within 3 report intervals;
started again → resolved and classified. A restart with a new boot id and nothing measured in
the gap → power. A gap the agent measured with its uplink failing (the collector and the check's
target both cut off) → network.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.test_outages import alerts_to
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector, WebhookSink
from tests.servers import TcpTarget
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
INTERVAL = 1.0  # collector's report interval: silent after 3 s


class Relay:
    """A TCP relay on loopback that can be cut and restored: the agent's link to the world."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.open = threading.Event()
        self.open.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self.open.clear()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


class Agent:
    def __init__(
        self,
        tmp: Path,
        c: RunningCollector,
        probe_id: str,
        commune: str,
        target: TcpTarget,
        collector_url: str,
        *,
        timeout_seconds: float = 2.0,
        backoff_max_seconds: float = 1.0,
    ) -> None:
        self.token = c.register(probe_id, commune, ("viettel-4g:viettel",))
        self.boot = tmp / f"{probe_id}.boot_id"
        self.boot.write_text("11111111-1111-1111-1111-111111111111\n")
        self.spool = tmp / f"{probe_id}.spool.db"
        self.config = tmp / f"{probe_id}.toml"
        self.config.write_text(f'''
probe_id = "{probe_id}"
collector_url = "{collector_url}"
spool_path = "{self.spool}"
boot_id_file = "{self.boot}"

[upload]
interval_seconds = 1.0
batch_deadline_seconds = 0.2
timeout_seconds = {timeout_seconds}
backoff_initial_seconds = 0.2
backoff_max_seconds = {backoff_max_seconds}

[[uplinks]]
name = "viettel-4g"
source_address = "127.0.0.1"
operator = "viettel"

[[checks]]
kind = "tcp"
target = "127.0.0.1:{target.port}"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0

[[checks]]
kind = "heartbeat"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0
''')
        self.log = tmp / f"{probe_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
        env["LOMSONG_PROBE_TOKEN"] = self.token
        with self.log.open("a") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [LOMSONG, "probe", "run", "--config", str(self.config)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(15)
        self.proc = None

    def spooled_failures(self, kind: str) -> int:
        """How many failed ``kind`` results the agent's spool holds (read-only, beside it)."""
        con = sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT body FROM results WHERE kind = ?", (kind,)).fetchall()
        finally:
            con.close()
        return sum(1 for (body,) in rows if not json.loads(body)["ok"])


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for a in started:
        if a.proc is not None:
            a.proc.kill()
            a.proc.wait(10)


def outage_alerts(sink: WebhookSink, status: str, probe: str) -> list[dict[str, object]]:
    with sink.lock:
        return [
            a
            for b in sink.bodies
            for a in b["alerts"]  # type: ignore[attr-defined]
            if a["status"] == status
            and a["labels"]["probe"] == probe
            and a["labels"]["condition"] == "probe_silent"
        ]


def wait_alert(sink: WebhookSink, status: str, probe: str, timeout: float) -> dict[str, object]:
    sink.wait_for(lambda _: bool(outage_alerts(sink, status, probe)), timeout=timeout)
    return outage_alerts(sink, status, probe)[0]


def start_collector(factory: CollectorFactory, url: str, sink: WebhookSink) -> RunningCollector:
    return factory(
        url,
        alerts=alerts_to(sink, "en"),
        report_interval_seconds=INTERVAL,
        detector={"tick_seconds": 0.2},
    )


def test_stopped_and_restarted_agents_are_alerted_and_classified(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    webhook_sink: WebhookSink,
    tmp_path: Path,
    agents: list[Agent],
) -> None:
    c = start_collector(collector_factory, sqlite_url, webhook_sink)
    target = TcpTarget()
    a = Agent(tmp_path, c, "cb-bao-lac", "01321", target, c.url)
    agents.append(a)
    a.start()
    with c.client(ADMIN_SECRET) as http:
        wait_until(
            lambda: http.get("/api/v1/probes/cb-bao-lac").json()["status"] == "reporting",
            timeout=20,
            what="the agent reporting",
        )
    # 1. Stopped: firing within 3 report intervals (plus the detector's tick and delivery).
    a.stop()
    wait_alert(webhook_sink, "firing", "cb-bao-lac", timeout=3 * INTERVAL + 10)
    # Started again on the same boot with nothing measured in the gap: resolved, unknown.
    a.start()
    first = wait_alert(webhook_sink, "resolved", "cb-bao-lac", timeout=20)
    assert first["labels"]["cause"] == "unknown"  # type: ignore[index]
    with c.client(ADMIN_SECRET) as http:  # the agent reports again before the power cut

        def last_seen() -> str:
            return str(http.get("/api/v1/probes/cb-bao-lac").json()["last_seen_at"])

        back = last_seen()
        wait_until(lambda: last_seen() != back, timeout=20, what="the agent reporting again")
    # 2. A power cut: killed, and it comes back with a new boot id.
    a.stop(signal.SIGKILL)
    webhook_sink.wait_for(  # down long enough: the outage is open
        lambda _: len(outage_alerts(webhook_sink, "firing", "cb-bao-lac")) >= 2,
        timeout=3 * INTERVAL + 10,
    )
    a.boot.write_text("22222222-2222-2222-2222-222222222222\n")
    a.start()
    webhook_sink.wait_for(
        lambda _: len(outage_alerts(webhook_sink, "resolved", "cb-bao-lac")) >= 2, timeout=20
    )
    second = outage_alerts(webhook_sink, "resolved", "cb-bao-lac")[1]
    assert second["labels"]["cause"] == "power", second  # type: ignore[index]
    assert "power cut" in second["annotations"]["summary"]  # type: ignore[index]


def test_a_gap_measured_with_a_failing_uplink_is_network(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    webhook_sink: WebhookSink,
    tmp_path: Path,
    agents: list[Agent],
) -> None:
    c = start_collector(collector_factory, sqlite_url, webhook_sink)
    port = int(c.url.rsplit(":", 1)[1])
    relay = Relay(port)
    target = TcpTarget()
    a = Agent(tmp_path, c, "cb-thuc-phan", "01273", target, f"http://127.0.0.1:{relay.port}")
    agents.append(a)
    a.start()
    try:
        with c.client(ADMIN_SECRET) as http:
            wait_until(
                lambda: http.get("/api/v1/probes/cb-thuc-phan").json()["status"] == "reporting",
                timeout=20,
                what="the agent reporting",
            )
        # The commune's link fails: the collector is unreachable and so is the check's target.
        relay.cut()
        target.close()
        wait_alert(webhook_sink, "firing", "cb-thuc-phan", timeout=3 * INTERVAL + 15)
        wait_until(  # the agent measured its failing uplink in the gap (3: asserted below)
            lambda: a.spooled_failures("tcp") >= 3,
            timeout=20,
            what="3 failed tcp results in the agent's spool",
        )
        target.open()
        relay.restore()
        alert = wait_alert(webhook_sink, "resolved", "cb-thuc-phan", timeout=30)
        assert alert["labels"]["cause"] == "network", alert  # type: ignore[index]
        with c.client(ADMIN_SECRET) as http:
            outages = http.get("/api/v1/outages", params={"commune": "01273"}).json()["outages"]
            results = http.get(
                "/api/v1/probes/cb-thuc-phan/results", params={"kind": "tcp", "limit": 5000}
            ).json()["results"]
        silent = [o for o in outages if o["condition"] == "probe_silent"]
        assert [o["cause"] for o in silent] == ["network"]
        # The failures measured during the gap were backfilled with their true times.
        failed = [r for r in results if not r["ok"]]
        assert len(failed) >= 3
        assert all(r["received_at"] > r["measured_at"] for r in failed)
    finally:
        relay.close()
