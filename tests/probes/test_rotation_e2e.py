"""Token rotation end to end: a real agent process (``lomsong probe run``) and a real
``lomsong serve`` on loopback, the collector stopped and started again on the same database in
between, and every result the agent measured stored once."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.token_rotation import list_rotations
from lomsong.probes.spool import Spool
from lomsong.storage.schema import probe_state, results
from tests.conftest import free_port, ready_engine
from tests.factories import batch, body
from tests.servers import TcpTarget
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
PROBE = "rot-e2e"


class Serve:
    """``lomsong serve`` as a child process, on one port and one database across restarts."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
        self.env.update(
            LOMSONG_DATABASE_URL=db_url,
            LOMSONG_ADMIN_TOKEN=secrets.token_hex(16),
        )
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [LOMSONG, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=40, what=lambda: f"serve healthy:\n{self.tail()}")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = db_url
    return subprocess.run([LOMSONG, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.e2e
@pytest.mark.slow
def test_rotation_across_collector_restarts_loses_no_result(db_url: str, tmp_path: Path) -> None:
    engine = ready_engine(db_url)
    register_probe(engine, PROBE, "01273", [Uplink("viettel-4g", "viettel")])
    old = create_token(engine, role="probe", probe_id=PROBE).token
    token_file = tmp_path / "probe.token"
    token_file.write_text(old + "\n")
    os.chmod(token_file, 0o600)
    target = TcpTarget()
    serve = Serve(db_url, tmp_path)
    (tmp_path / "boot_id").write_text("22222222-2222-2222-2222-222222222222\n")
    config = tmp_path / "probe.toml"
    config.write_text(
        f"""
probe_id = "{PROBE}"
collector_url = "{serve.url}"
token_file = "{token_file}"
spool_path = "{tmp_path / "spool.db"}"
boot_id_file = "{tmp_path / "boot_id"}"

[upload]
interval_seconds = 1.0
batch_deadline_seconds = 0.2
backoff_initial_seconds = 0.2
backoff_max_seconds = 1.0

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
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    agent_log = tmp_path / "agent.log"

    def through() -> int:
        with engine.connect() as conn:
            value = conn.execute(
                select(probe_state.c.stored_through_seq).where(probe_state.c.probe_id == PROBE)
            ).scalar()
        return int(value or 0)

    serve.start()
    with agent_log.open("ab") as out:
        agent = subprocess.Popen(
            [LOMSONG, "probe", "run", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: through() > 0, timeout=40, what="the agent's first results stored")
        # the collector goes away; the rotation is asked while it is down; the agent spools
        serve.stop()
        asked = cli(db_url, "token", "rotate", "--probe", PROBE)
        assert asked.returncode == 0, asked.stderr
        assert "#1 asked" in cli(db_url, "token", "list").stdout
        time.sleep(2)
        serve.start()
        wait_until(
            lambda: token_file.read_text().strip() != old,
            timeout=40,
            what=lambda: f"the new token in the file; agent log:\n{agent_log.read_text()[-2000:]}",
        )
        new = token_file.read_text().strip()
        wait_until(
            lambda: list_rotations(engine)[0].state == "done",
            timeout=40,
            what="the new token used and the old one revoked",
        )
        with httpx.Client(base_url=serve.url, timeout=10) as http:
            sent_old = http.post(
                "/api/v1/reports",
                content=body(batch(PROBE, [1]))[0],
                headers={"Authorization": f"Bearer {old}"},
            )
        assert sent_old.status_code == 401
        listed = cli(db_url, "token", "list").stdout
        assert "#1" not in listed  # nothing pending any more
        # restarted again: the agent keeps going on its new token, from the file
        serve.stop()
        time.sleep(1)
        serve.start()
        mark = through()
        wait_until(lambda: through() >= mark + 5, timeout=40, what="reports after the restart")
        assert token_file.read_text().strip() == new
        assert "token rotated" in agent_log.read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        if serve.proc is not None:
            serve.stop()
        target.close()
    spool = Spool(tmp_path / "spool.db")
    try:
        stats = spool.stats()
        pending = {r.seq for r in spool.pending(10**6)}
    finally:
        spool.close()
    with engine.connect() as conn:
        stored = (
            conn.execute(
                select(results.c.seq).where(results.c.probe_id == PROBE).order_by(results.c.seq)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert stats.dropped == 0 and stats.refused == 0
    assert len(stored) == len(set(stored))
    # every seq the agent numbered is stored or still waits in its spool: none was lost
    assert set(stored) | pending == set(range(stored[0], stats.next_seq)), sorted(
        set(range(stored[0], stats.next_seq)) - set(stored) - pending
    )[:20]
    assert len(stored) > 10
