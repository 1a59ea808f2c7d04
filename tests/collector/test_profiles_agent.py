"""A real agent (``run_agent`` in this process) following the collector's profiles: the jobs
change while it runs, the spool and its seqs go on, a profile it cannot run is refused, and a
restart without the collector runs the last good profile from its cache.

The end-to-end test with agent processes is ``test_profiles_e2e.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from lomsong.collector.fleet_profiles import served_config_versions
from lomsong.config.probe import load_probe_settings
from lomsong.probes.agent import Runner
from lomsong.probes.profile_sync import CACHE_NAME, ProfileSync
from lomsong.probes.schedule import Schedule
from lomsong.storage.schema import probe_state, results
from tests.collector.test_running_checks import _Agent, agents  # noqa: F401 (a fixture)
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.servers import TcpTarget, closed_port
from tests.waiting import wait_until

PROBE = "cb-thuc-phan"
LOMSONG = str(Path(sys.executable).with_name("lomsong"))


def _config(tmp: Path, url: str, local_port: int, source: str = "collector") -> Path:
    path = tmp / "probe.toml"
    path.write_text(f'''
probe_id = "{PROBE}"
collector_url = "{url}"
spool_path = "{tmp / "spool.db"}"
boot_id_file = "{tmp / "boot_id"}"
checks_source = "{source}"

[upload]
interval_seconds = 0.5
config_interval_seconds = 0.5
batch_deadline_seconds = 0.2
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.5

[[uplinks]]
name = "fibre"

[[checks]]
kind = "tcp"
target = "127.0.0.1:{local_port}"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 0.5

[[checks]]
kind = "heartbeat"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0
''')
    (tmp / "boot_id").write_text("33333333-3333-3333-3333-333333333333\n")
    return path


def _tcp(port: int) -> dict[str, Any]:
    return {
        "kind": "tcp",
        "target": f"127.0.0.1:{port}",
        "interval_seconds": 1.0,
        "jitter_seconds": 0.0,
        "timeout_seconds": 0.5,
    }


HEARTBEAT = {
    "kind": "heartbeat",
    "interval_seconds": 1.0,
    "jitter_seconds": 0.0,
    "timeout_seconds": 1.0,
}


def _put(c: RunningCollector, layer: str, doc: dict[str, Any]) -> str:
    with c.client(ADMIN_SECRET) as admin:
        r = admin.put(f"/api/v1/profiles/{layer}", json=doc)
        assert r.status_code == 200, r.text
    with c.engine.connect() as conn:
        return served_config_versions(conn, [PROBE])[PROBE]


def _state(c: RunningCollector) -> tuple[str | None, str | None, str | None]:
    with c.engine.connect() as conn:
        row = conn.execute(
            select(
                probe_state.c.config_version,
                probe_state.c.config_refused_version,
                probe_state.c.config_error,
            ).where(probe_state.c.probe_id == PROBE)
        ).first()
    return (row[0], row[1], row[2]) if row is not None else (None, None, None)


def _targets_since(c: RunningCollector, since: float) -> set[str]:
    with c.engine.connect() as conn:
        rows = conn.execute(
            select(results.c.target).where(
                results.c.probe_id == PROBE, results.c.kind == "tcp", results.c.measured_at > since
            )
        )
        return {r.target for r in rows}


def _seqs(c: RunningCollector) -> tuple[int, int, int]:
    """(count, min, max) of the probe's stored seqs."""
    with c.engine.connect() as conn:
        n, lo, hi = conn.execute(
            select(func.count(), func.min(results.c.seq), func.max(results.c.seq)).where(
                results.c.probe_id == PROBE
            )
        ).one()
    return int(n), int(lo or 0), int(hi or 0)


def test_the_agent_follows_its_profile_live_and_refuses_what_it_cannot_run(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    tmp_path: Path,
    agents: list[_Agent],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lomsong.probes")
    c = collector_factory(sqlite_url)
    token = c.register(PROBE, uplinks=("fibre:fibre",))
    local, a, b = TcpTarget(), TcpTarget(), TcpTarget()
    agents.append(_Agent(_config(tmp_path, c.url, local.port), token))

    # no profile: the local checks run, and the agent says so
    wait_until(lambda: _state(c)[0] == "local", timeout=15, what="the agent runs its own checks")
    assert _targets_since(c, 0) == {f"127.0.0.1:{local.port}"}

    # a national profile: reaches the agent within an upload interval or two, applied live
    v1 = _put(c, "national", {"checks": [_tcp(a.port), _tcp(b.port), HEARTBEAT]})
    t1 = time.time()
    wait_until(lambda: _state(c)[0] == v1, timeout=10, what="profile v1 applied")
    assert time.time() - t1 < 5.0
    wait_until(
        lambda: (
            _targets_since(c, time.time() - 1.0) == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}
        ),
        timeout=10,
        what="the profile's checks measured, the local one no more",
    )
    assert any(f"config v{v1[:12]} applied: +2 −1" in m for m in caplog.messages), caplog.messages

    # a province removes one check: it stops, the other goes on
    v2 = _put(c, "province/04", {"remove": [{"kind": "tcp", "target": f"127.0.0.1:{a.port}"}]})
    wait_until(lambda: _state(c)[0] == v2, timeout=10, what="profile v2 applied")
    applied = time.time()
    wait_until(
        lambda: _targets_since(c, applied + 0.5) == {f"127.0.0.1:{b.port}"},
        timeout=10,
        what="only b measured",
    )

    # a profile naming an uplink this box does not have: refused, v2 keeps running
    bad = {"checks": [{**_tcp(a.port), "uplinks": ["vnpt-4g"]}]}
    with c.client(ADMIN_SECRET) as admin:
        # the collector knows the probe by its registered uplinks only: it cannot refuse this
        assert admin.put(f"/api/v1/profiles/probe/{PROBE}", json=bad).status_code == 200
    with c.engine.connect() as conn:
        v3 = served_config_versions(conn, [PROBE])[PROBE]
    wait_until(lambda: _state(c)[1] == v3, timeout=10, what="profile v3 refused")
    version, refused, error = _state(c)
    assert (version, refused) == (v2, v3)
    assert error == "checks[2].uplinks[0]: unknown uplink 'vnpt-4g' (uplinks: 'fibre')"
    refused_at = time.time()
    wait_until(
        lambda: _targets_since(c, refused_at) == {f"127.0.0.1:{b.port}"},
        timeout=10,
        what="v2 still measured",
    )
    with c.client() as http:
        assert 'lomsong_probe_config_errors_total{province="04"} 1' in http.get("/metrics").text
    assert any(
        f"config v{v3[:12]} refused: checks[2].uplinks[0]: unknown uplink 'vnpt-4g'" in m
        for m in caplog.messages
    ), caplog.messages

    # the spool went on through every change: every seq stored once, none missing
    agents[-1].stop()
    n, lo, hi = _seqs(c)
    assert n == hi - lo + 1, (n, lo, hi)

    # restarted where the collector cannot be reached, the agent runs the last good profile
    cached = orjson.loads((tmp_path / CACHE_NAME).read_bytes())
    assert cached["version"] == v2
    away = _config(tmp_path, f"http://127.0.0.1:{closed_port()}", local.port)
    again = _Agent(away, token)
    agents.append(again)
    wait_until(
        lambda: any(f"(config v{v2[:12]})" in m for m in caplog.messages),
        timeout=10,
        what="the agent started on its cached profile",
    )
    # `probe once` tries what the agent runs: the cached profile
    once = subprocess.run(
        [LOMSONG, "probe", "once", "--config", str(away)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")},
    )
    assert once.returncode == 0, once.stderr
    assert f"checks of the collector's profile v{v2[:12]} (cached)" in once.stderr
    assert f"127.0.0.1:{b.port}" in once.stdout and f"127.0.0.1:{local.port}" not in once.stdout
    for target in (local, a, b):
        target.close()


def test_a_local_source_never_asks_and_a_bad_cache_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``checks_source = "local"`` keeps the file's checks; a cached profile this box cannot
    run (its uplinks changed since) is left aside, with a warning, for the local checks."""
    path = _config(tmp_path, "http://127.0.0.1:9", 9, source="local")
    settings = load_probe_settings(path, token="t")

    async def start(settings: Any) -> tuple[ProfileSync, Schedule]:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        schedule = Schedule(AsyncIOScheduler(), Runner(settings))
        sync = ProfileSync(settings, schedule)
        sync.start()
        if settings.checks_source == "local":
            await sync.poll(None)  # type: ignore[arg-type]  # a local source never asks
        return sync, schedule

    checks = [{"kind": "tcp", "target": "10.0.0.1:443", "uplinks": ["viettel-4g"]}]
    from lomsong.config.profiles import version_of

    doc = {"probe_id": PROBE, "version": version_of(checks), "layers": ["national"]}
    (tmp_path / CACHE_NAME).write_bytes(orjson.dumps({**doc, "checks": checks}))
    sync, schedule = asyncio.run(start(settings))
    assert sync.version == "local" and sync.polls == 0
    assert sorted(schedule.jobs) == ["heartbeat:self:-", "tcp:127.0.0.1:9:fibre"]

    collector = settings.model_copy(update={"checks_source": "collector"})
    sync, schedule = asyncio.run(start(collector))
    assert sync.version == "local" and sync.status() is None  # nothing said to the collector
    assert sorted(schedule.jobs) == ["heartbeat:self:-", "tcp:127.0.0.1:9:fibre"]
    assert any(
        "not used: checks[0].uplinks[0]: unknown uplink 'viettel-4g'" in m for m in caplog.messages
    ), caplog.messages
