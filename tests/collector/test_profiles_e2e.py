"""End to end (issue #16 §4): ``lomsong serve`` and three ``lomsong probe run`` processes on
loopback. A profile change reaches every agent within one upload interval and shows as applied
in ``probe_state``; a profile naming an uplink the boxes do not have is refused by each of
them, which go on reporting on the old one, and the collector shows and counts the refusals.
Once on a SQLite file and once on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.storage.schema import probe_state, results
from tests.conftest import free_port, ready_engine
from tests.servers import TcpTarget
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
ADMIN = "profiles-e2e-admin-secret-0123456789"
PROBES = [("cb-e2e-1", "01273"), ("cb-e2e-2", "01279"), ("cb-e2e-3", "01288")]
UPLOAD_INTERVAL = 2.0  # the agents' upload (and configuration) interval


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env.update(extra)
    return env


class Processes:
    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(self, argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
        out = log.open("w")
        proc = subprocess.Popen(argv, env=_env(**env), stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, out))
        return proc

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, out in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    p = Processes()
    yield p
    p.stop()


def _agent_config(tmp: Path, probe: str, url: str, port: int) -> Path:
    path = tmp / "probe.toml"
    path.write_text(f'''
probe_id = "{probe}"
collector_url = "{url}"
token_file = "{tmp / "probe.token"}"
spool_path = "{tmp / "spool.db"}"
boot_id_file = "{tmp / "boot_id"}"

[upload]
interval_seconds = {UPLOAD_INTERVAL}
config_interval_seconds = {UPLOAD_INTERVAL}
batch_deadline_seconds = 0.2
backoff_initial_seconds = 0.2
backoff_max_seconds = 1.0

[[uplinks]]
name = "fibre"

# what runs while the collector serves no profile
[[checks]]
kind = "tcp"
target = "127.0.0.1:{port}"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 0.5

# a long interval: a new configuration is told by a heartbeat run at once, not at the next
[[checks]]
kind = "heartbeat"
interval_seconds = 30.0
jitter_seconds = 0.0
timeout_seconds = 1.0
''')
    (tmp / "boot_id").write_text(f"{probe}-boot\n")
    return path


def _states(engine: Engine) -> dict[str, tuple[str | None, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                probe_state.c.probe_id,
                probe_state.c.config_version,
                probe_state.c.config_refused_version,
                probe_state.c.config_error,
            )
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _measured(engine: Engine, target: str, since: float) -> set[str]:
    """The probes that measured ``target`` after ``since`` (and whose results arrived)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(results.c.probe_id)
            .where(results.c.target == target, results.c.measured_at > since)
            .distinct()
        )
        return {r[0] for r in rows}


@pytest.mark.slow
def test_a_profile_reaches_every_agent_and_a_bad_one_is_refused_by_each(
    db_url: str, tmp_path: Path, processes: Processes
) -> None:
    engine = ready_engine(db_url)
    try:
        _run(engine, db_url, tmp_path, processes)
    finally:
        processes.stop()
        engine.dispose()


def _run(engine: Engine, db_url: str, tmp_path: Path, processes: Processes) -> None:
    local, portal = TcpTarget(), TcpTarget()
    tokens = {}
    for probe, commune in PROBES:
        register_probe(engine, probe, commune, [Uplink("fibre", "fibre")])
        tokens[probe] = create_token(engine, role="probe", probe_id=probe).token
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_log = tmp_path / "serve.log"
    serve = processes.start(
        [LOMSONG, "serve", "--host", "127.0.0.1", "--port", str(port)],
        serve_log,
        LOMSONG_DATABASE_URL=db_url,
        LOMSONG_ADMIN_TOKEN=ADMIN,
    )

    def healthy() -> bool:
        if serve.poll() is not None:
            raise RuntimeError(serve_log.read_text()[-2000:])
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=30, what="lomsong serve started")
    logs = {}
    for probe, _ in PROBES:
        box = tmp_path / probe
        box.mkdir()
        (box / "probe.token").write_text(tokens[probe] + "\n")
        logs[probe] = box / "agent.log"
        config = _agent_config(box, probe, url, local.port)
        processes.start([LOMSONG, "probe", "run", "--config", str(config)], logs[probe])
    everyone = {p for p, _ in PROBES}

    def all_at(index: int, value: str | None) -> bool:
        states = _states(engine)
        return all(states.get(p, (None, None, None))[index] == value for p in everyone)

    wait_until(lambda: all_at(0, "local"), timeout=30, what="every agent runs its own checks")

    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    with admin:
        # a national profile: one check of the portal, and the heartbeat
        portal_check = {
            "kind": "tcp",
            "target": f"127.0.0.1:{portal.port}",
            "interval_seconds": 1.0,
            "jitter_seconds": 0.0,
            "timeout_seconds": 0.5,
        }
        heartbeat = {"kind": "heartbeat", "interval_seconds": 30.0, "timeout_seconds": 1.0}
        heartbeat["jitter_seconds"] = 0.0
        set_at = time.time()
        r = admin.put("/api/v1/profiles/national", json={"checks": [portal_check, heartbeat]})
        assert r.status_code == 200, r.text
        v1 = admin.get(f"/api/v1/probes/{PROBES[0][0]}/config").json()["version"]
        wait_until(lambda: all_at(0, v1), timeout=20, what="every agent applied v1")
        took = time.time() - set_at
        # fetched within one upload interval; a heartbeat run at once (not at its 30-s
        # interval) says so within the batch deadline: allow those and a loaded machine's
        assert took < UPLOAD_INTERVAL + 1.0 + 0.2 + 2.0, took
        for probe in everyone:
            text = logs[probe].read_text()
            line = re.search(rf"^(\S+ \S+) INFO .*config v{v1[:12]} applied: \+1 −1", text, re.M)
            assert line, text[-2000:]
            # each agent fetched and applied it within one upload interval (and the request's
            # time on a loaded machine)
            applied = datetime.strptime(line.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            assert applied - set_at <= UPLOAD_INTERVAL + 1.0, (probe, applied - set_at)
        switched = time.time()
        wait_until(
            lambda: _measured(engine, f"127.0.0.1:{portal.port}", switched) == everyone,
            timeout=10,
            what="every agent measures the portal",
        )

        # a province layer that names an uplink these boxes do not have: refused by each
        bad = {**portal_check, "target": "127.0.0.1:9", "uplinks": ["vnpt-4g"]}
        assert admin.put("/api/v1/profiles/province/04", json={"checks": [bad]}).status_code == 200
        v2 = admin.get(f"/api/v1/probes/{PROBES[0][0]}/config").json()["version"]
        wait_until(lambda: all_at(1, v2), timeout=20, what="every agent refused v2")
        refused_at = time.time()
        for probe, (version, refused, error) in _states(engine).items():
            assert (version, refused) == (v1, v2), probe
            assert error == "checks[2].uplinks[0]: unknown uplink 'vnpt-4g' (uplinks: 'fibre')"
        # they go on reporting on v1
        wait_until(
            lambda: _measured(engine, f"127.0.0.1:{portal.port}", refused_at) == everyone,
            timeout=10,
            what="every agent still measures the portal",
        )
        assert _measured(engine, "127.0.0.1:9", 0) == set()
        # the collector shows it and counts it, once per probe and refused version
        view = admin.get(f"/api/v1/probes/{PROBES[0][0]}").json()["config"]
        assert view["version"] == v1 and view["refused_version"] == v2
        assert view["served_version"] == v2 and "vnpt-4g" in view["error"]
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'lomsong_probe_config_errors_total{province="04"} 3' in metrics
        for probe in everyone:
            assert f"config v{v2[:12]} refused:" in logs[probe].read_text()
    local.close()
    portal.close()
