"""Two collector processes on one PostgreSQL: one detector, taken over when it dies."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from tests.conftest import WebhookSink, free_port, ready_engine
from tests.factories import body, iso
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
ADMIN = "failover-admin-secret-0123456789"
PROBES = [("cb-p1", "01273"), ("cb-p2", "01279"), ("cb-p3", "01288"), ("cb-p4", "01321")]
TICK = 0.5  # the detector's tick
GROUP_INTERVAL = 1.0  # the route's group_interval: a group's next message waits this long
BEAT = 0.5  # how often the probes that are up send a heartbeat


class Collector:
    def __init__(self, pg_url: str, alerts: Path, log: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
        env.update(
            LOMSONG_DATABASE_URL=pg_url,
            LOMSONG_ADMIN_TOKEN=ADMIN,
            LOMSONG_ALERTS_FILE=str(alerts),
            LOMSONG_REPORT_INTERVAL_SECONDS="2",
            LOMSONG_DETECTOR__TICK_SECONDS=str(TICK),
        )
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [LOMSONG, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector did not start: {log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(
            healthy, timeout=30, what=lambda: f"collector started: {log.read_text()[-2000:]}"
        )

    def role(self) -> str:
        return str(httpx.get(f"{self.url}/healthz", timeout=2).json()["detector"])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def send(url: str, probe: str, token: str, seq: int, boot: str = "boot-1") -> None:
    now = datetime.now(UTC)
    doc = {
        "probe_id": probe,
        "boot_id": boot,
        "agent_version": "0.1.0",
        "sent_at": iso(now),
        "results": [
            {
                "seq": seq,
                "measured_at": iso(now),
                "kind": "heartbeat",
                "target": "self",
                "uplink": None,
                "ok": True,
                "uptime_seconds": 5.0,
            }
        ],
    }
    raw, headers = body(doc)
    r = httpx.post(
        f"{url}/api/v1/reports",
        content=raw,
        headers={**headers, "Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert r.status_code == 200, r.text


def alerted(sink: WebhookSink) -> Counter[tuple[str, str]]:
    """(status, probe) → how many notifications told of it."""
    count: Counter[tuple[str, str]] = Counter()
    with sink.lock:
        for b in sink.bodies:
            for a in b["alerts"]:  # type: ignore[attr-defined]
                count[(a["status"], a["labels"]["probe"])] += 1
    return count


@pytest.mark.slow
def test_the_standby_takes_over_and_nothing_is_alerted_twice_or_lost(
    pg_url: str, tmp_path: Path, webhook_sink: WebhookSink
) -> None:
    engine = ready_engine(pg_url)
    tokens = {}
    for pid, commune in PROBES:
        register_probe(engine, pid, commune, [Uplink("viettel-4g", "viettel")])
        tokens[pid] = create_token(engine, role="probe", probe_id=pid).token
    engine.dispose()
    alerts = tmp_path / "alerts.toml"
    alerts.write_text(
        f'[[receivers]]\ntype = "webhook"\nname = "sink"\nurl = "{webhook_sink.url}"\n'
        '[[routes]]\nname = "all"\nreceiver = "sink"\ngroup_by = ["probe"]\n'
        f'group_wait = "0s"\ngroup_interval = "{GROUP_INTERVAL:g}s"\nrepeat_interval = "1h"\n'
    )
    a = Collector(pg_url, alerts, tmp_path / "a.log")
    b = Collector(pg_url, alerts, tmp_path / "b.log")
    try:
        wait_until(
            lambda: sorted([a.role(), b.role()]) == ["leader", "standby"],
            timeout=10,
            what=lambda: f"one leader, one standby (roles {a.role()}, {b.role()})",
        )
        leader, standby = (a, b) if a.role() == "leader" else (b, a)
        seq = dict.fromkeys(tokens, 0)

        def beat(pids: list[str], url: str, boot: str = "boot-1") -> None:
            for pid in pids:
                seq[pid] += 1
                send(url, pid, tokens[pid], seq[pid], boot)

        # Everyone reports (through both replicas); then p1 and p2 fall silent.
        for _ in range(3):
            beat(list(tokens), a.url)
            beat(list(tokens), b.url)
            time.sleep(BEAT)  # the test's input: three rounds of every probe, a beat apart

        def p1_p2_firing() -> bool:  # p3 and p4 beat meanwhile
            beat(["cb-p3", "cb-p4"], standby.url)
            counts = alerted(webhook_sink)
            return bool(counts[("firing", "cb-p2")] and counts[("firing", "cb-p1")])

        wait_until(p1_p2_firing, timeout=30, what="p1 and p2 alerted", interval=BEAT)

        def attempts() -> list[dict[str, object]]:
            got: list[dict[str, object]] = httpx.get(
                f"{standby.url}/api/v1/notifications", headers={"Authorization": f"Bearer {ADMIN}"}
            ).json()["attempts"]
            return got

        def both_recorded() -> bool:  # p3 and p4 beat meanwhile
            if sum(1 for x in attempts() if x["ok"]) >= 2:
                return True
            beat(["cb-p3", "cb-p4"], standby.url)
            return False

        # both firing attempts recorded, then the leader is killed
        wait_until(
            both_recorded,
            timeout=10,
            what=lambda: f"both firing attempts recorded (got {attempts()})",
            interval=0.3,
        )
        leader.kill()

        # After the death: p3 falls silent, p1 comes back from a power cut.
        def taken_over() -> bool:
            beat(["cb-p4"], standby.url)
            beat(["cb-p1"], standby.url, boot="boot-2")
            counts = alerted(webhook_sink)
            return bool(
                counts[("firing", "cb-p3")]
                and counts[("resolved", "cb-p1")]
                and standby.role() == "leader"
            )

        wait_until(
            taken_over,
            timeout=25,
            what=lambda: f"the standby leading, p3 fired, p1 resolved ({alerted(webhook_sink)})",
            interval=BEAT,
        )
        # Room for a duplicate to show up: it would come a group_interval after the last
        # message, at a detector tick. p1 and p4 keep beating meanwhile.
        for _ in range(math.ceil((GROUP_INTERVAL + TICK) / BEAT)):
            beat(["cb-p1", "cb-p4"], standby.url, boot="boot-2")
            time.sleep(BEAT)  # deliberate: nothing more may happen in this time
        counts = alerted(webhook_sink)
        history = [
            (
                b["status"],
                [(a["labels"]["probe"], a["status"], a["fingerprint"][:6]) for a in b["alerts"]],
            )
            for b in webhook_sink.bodies
        ]  # type: ignore[attr-defined,index]
        assert counts[("firing", "cb-p1")] == 1, history
        assert counts[("firing", "cb-p2")] == 1, history
        assert counts[("firing", "cb-p3")] == 1, history  # nothing lost at failover
        assert counts[("resolved", "cb-p1")] == 1, history
        assert counts[("firing", "cb-p4")] == 0, history
        assert standby.role() == "leader"
    finally:
        a.stop()
        b.stop()
