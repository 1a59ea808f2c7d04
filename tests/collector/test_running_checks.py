"""Checks removed from an agent's config are forgotten: the heartbeat lists the checks it runs.

Without the list, the last result of a removed check stayed in the live state for good: the
uplink showed ``ok=false``, ``probe_success`` stayed 0 and the marker said degraded forever.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lomsong.collector.outage_log import log_changes
from lomsong.collector.probe_markers import current_probes
from lomsong.config.probe import load_probe_settings
from lomsong.probes.agent import run_agent
from lomsong.storage.schema import latest_results, outages
from tests.conftest import ADMIN_SECRET, CollectorFactory, FakeClock, RunningCollector
from tests.factories import T0, batch, body, result
from tests.servers import TcpTarget, closed_port
from tests.waiting import wait_until

PROBE = "cb-nguyen-binh"
GOOD, BAD = "ok.example.vn", "gone.example.vn"


def _post(c: RunningCollector, token: str, doc: dict[str, Any]) -> dict[str, Any]:
    raw, headers = body(doc)
    with c.client(token) as http:
        r = http.post("/api/v1/reports", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _stored(c: RunningCollector) -> set[tuple[str, str, str]]:
    with c.engine.connect() as conn:
        rows = conn.execute(
            select(latest_results.c.uplink, latest_results.c.kind, latest_results.c.target)
        )
        return {tuple(r) for r in rows}  # type: ignore[misc]


def _uplink(c: RunningCollector) -> dict[str, Any]:
    with c.client(ADMIN_SECRET) as http:
        view = http.get(f"/api/v1/probes/{PROBE}").json()
    up: dict[str, Any] = view["uplinks"][0]
    return up


def _success(c: RunningCollector) -> str | None:
    with c.client() as http:
        text = http.get("/metrics").text
    m = re.search(r'^probe_success\{[^}]*probe="' + PROBE + r'"[^}]*\} (\S+)$', text, re.M)
    return m.group(1) if m else None


def _marker(c: RunningCollector) -> str:
    """The probe's state and its uplinks', as the status page and the maps show them."""
    ctx = c.ctx
    (m,) = [
        p
        for p in current_probes(c.engine, ctx.live, None, now=time.time(), silent_after=600)
        if p.id == PROBE
    ]
    return " ".join([m.state] + [u.state for u in m.uplinks])


def _heartbeat(seq: int, at_s: float, checks: list[dict[str, str]] | None) -> dict[str, Any]:
    extra = {} if checks is None else {"checks": checks}
    return result(seq, kind="heartbeat", at=T0 + timedelta(seconds=at_s), **extra)


def _check(seq: int, at_s: float, target: str, ok: bool) -> dict[str, Any]:
    return result(seq, target=target, ok=ok, at=T0 + timedelta(seconds=at_s))


RUNNING = [
    {"uplink": "viettel-4g", "kind": "icmp", "target": GOOD},
    {"kind": "heartbeat", "target": "self"},
]


def test_a_check_left_out_of_the_heartbeat_is_forgotten(
    any_collector: RunningCollector, collector_factory: CollectorFactory, db_url: str
) -> None:
    c = any_collector
    token = c.register(PROBE)
    doc = batch(PROBE, [])
    doc["results"] = [_check(1, 1, GOOD, True), _check(2, 2, BAD, False)]
    _post(c, token, doc)
    assert _uplink(c)["ok"] is False and _success(c) == "0"

    # An agent that does not list its checks (older versions): nothing is forgotten.
    doc["results"] = [_heartbeat(3, 3, None)]
    _post(c, token, doc)
    assert ("viettel-4g", "icmp", BAD) in _stored(c) and _success(c) == "0"

    # The heartbeat of the agent restarted without the failing check.
    doc["results"] = [_heartbeat(4, 10, RUNNING), _check(5, 11, GOOD, True)]
    _post(c, token, doc)
    assert _stored(c) == {("viettel-4g", "icmp", GOOD), ("", "heartbeat", "self")}
    assert _uplink(c)["ok"] is True and _success(c) == "1"
    assert _marker(c) == "up up"

    # A backfill of the removed check measured before the list does not bring it back; an
    # older heartbeat (without the list, or with an older one) changes nothing.
    doc["results"] = [_check(6, 5, BAD, False), _heartbeat(7, 6, [RUNNING[1]])]
    _post(c, token, doc)
    assert ("viettel-4g", "icmp", BAD) not in _stored(c)
    assert ("viettel-4g", "icmp", GOOD) in _stored(c)
    assert _uplink(c)["ok"] is True and _success(c) == "1"

    # A result measured after the list is from a newer config whose heartbeat is on its way.
    doc["results"] = [_check(8, 20, "new.example.vn", False)]
    _post(c, token, doc)
    assert ("viettel-4g", "icmp", "new.example.vn") in _stored(c) and _success(c) == "0"
    doc["results"] = [_heartbeat(9, 21, RUNNING)]
    _post(c, token, doc)
    assert ("viettel-4g", "icmp", "new.example.vn") not in _stored(c) and _success(c) == "1"

    # A collector started afresh on the database (a restart, a replica) knows the same.
    again = collector_factory(db_url)
    assert _uplink(again)["ok"] is True and _success(again) == "1"
    assert [ch["target"] for ch in _uplink(again)["checks"]] == [GOOD]


def _rows(c: RunningCollector) -> list[tuple[str, str | None, float | None]]:
    with c.engine.connect() as conn:
        rows = conn.execute(
            select(outages.c.condition, outages.c.uplink, outages.c.ended_at).order_by(
                outages.c.started_at
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _success_of(c: RunningCollector, uplink: str) -> str | None:
    with c.client() as http:
        text = http.get("/metrics").text
    labels = f'probe="{PROBE}",[^}}]*uplink="{uplink}"'
    m = re.search(r"^probe_success\{" + labels + r"[^}]*\} (\S+)$", text, re.M)
    return m.group(1) if m else None


def test_an_uplink_down_held_by_a_removed_check_is_resolved(
    collector_factory: CollectorFactory, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The detector forgets removed checks too: an uplink's outage that only they held ends,
    on the running detector and on one built afresh (a new leader, a restart)."""
    c = collector_factory(
        db_url, clock=FakeClock(), detector={"tick_seconds": 300, "down_after_failures": 3}
    )
    token = c.register(PROBE, uplinks=("viettel-4g:viettel", "fibre:vnpt"))
    c.ctx.live.reload(c.engine)  # what the periodic refresh does
    feed = c.ctx.outages
    assert feed is not None
    feed.tick()  # leads (PostgreSQL: from this tick on, what is stored is observed)
    doc = batch(PROBE, [])
    bad = {"uplink": "viettel-4g", "kind": "icmp", "target": BAD}
    first = [bad, {"uplink": "fibre", "kind": "icmp", "target": GOOD}, RUNNING[1]]
    doc["results"] = [_heartbeat(1, 1, first)] + [
        _check(2 + i, 2 + i, BAD, False) for i in range(3)
    ]
    _post(c, token, doc)
    feed.tick()
    assert _rows(c) == [("uplink_down", "viettel-4g", None)]
    assert _success_of(c, "viettel-4g") == "0"

    # Restarted without the failing check, with one that answers: the uplink is back.
    doc["results"] = [_heartbeat(5, 10, RUNNING), _check(6, 11, GOOD, True)]
    doc["results"] += [_check(7, 12, GOOD, True)]
    _post(c, token, doc)
    feed.tick()
    assert _rows(c) == [("uplink_down", "viettel-4g", _epoch(11))]
    assert _success_of(c, "viettel-4g") == "1"

    # The fibre's only check fails and takes it down; then the detector stops leading and
    # the agent drops the fibre's checks. The new leader ends the outage from probe_state.
    doc["results"] = [
        result(8 + i, uplink="fibre", target=GOOD, ok=False, at=T0 + timedelta(seconds=20 + i))
        for i in range(3)
    ]
    _post(c, token, doc)
    feed.tick()
    assert _rows(c)[1:] == [("uplink_down", "fibre", None)] and _success_of(c, "fibre") == "0"
    feed.stand_down()
    doc["results"] = [_heartbeat(11, 30, RUNNING)]
    _post(c, token, doc)
    tick = feed.tick()
    [close] = [ch for ch in tick.changes if ch.action == "close"]
    assert close.reason == "checks_removed" and close.outage.uplink == "fibre"
    with caplog.at_level(logging.INFO, "lomsong.collector.outages"):
        log_changes(tick.changes, c.ctx.live.probes)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("outage ")]
    assert line.startswith("outage ended:") and "no recovery was seen" in line
    assert _rows(c)[1:] == [("uplink_down", "fibre", _epoch(30))]
    assert _success_of(c, "fibre") is None  # no check left: nothing to say
    assert _success_of(c, "viettel-4g") == "1"


def _epoch(at_s: float) -> float:
    return (T0 + timedelta(seconds=at_s)).timestamp()


# --- a real agent, in this process, against a real collector ----------------------------------


class _Agent:
    """``run_agent`` on its own event loop in a thread; ``stop`` ends it as SIGTERM would."""

    def __init__(self, config: Path, token: str) -> None:
        self.settings = load_probe_settings(config, token=token)
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.loop.run_until_complete(run_agent(self.settings, self.stop_event))
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the agent did not stop"


@pytest.fixture
def agents() -> Iterator[list[_Agent]]:
    started: list[_Agent] = []
    yield started
    for a in started:
        if a.thread.is_alive():
            a.stop()


def _config(tmp: Path, url: str, ports: list[int]) -> Path:
    checks = "".join(
        f"""
[[checks]]
kind = "tcp"
target = "127.0.0.1:{port}"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 0.5
"""
        for port in ports
    )
    path = tmp / "probe.toml"
    path.write_text(f'''
probe_id = "{PROBE}"
collector_url = "{url}"
spool_path = "{tmp / "spool.db"}"
boot_id_file = "{tmp / "boot_id"}"

[upload]
interval_seconds = 0.2
# each round at once: the new heartbeat's list must not wait for the 10-s batch deadline
batch_deadline_seconds = 0.2
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.5

[[uplinks]]
name = "viettel-4g"
operator = "viettel"
{checks}
[[checks]]
kind = "heartbeat"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0
''')
    return path


def test_an_agent_restarted_without_its_failing_check_recovers(
    collector_factory: CollectorFactory, sqlite_url: str, tmp_path: Path, agents: list[_Agent]
) -> None:
    c = collector_factory(sqlite_url)
    token = c.register(PROBE)
    (tmp_path / "boot_id").write_text("22222222-2222-2222-2222-222222222222\n")
    good, bad = TcpTarget(), closed_port()
    agents.append(_Agent(_config(tmp_path, c.url, [good.port, bad]), token))
    wait_until(lambda: _success(c) == "0", timeout=15, what="the failing check reported")
    # failing, not yet judged by the detector: the centre is up, its link "checks failing"
    assert _marker(c) == "up failing"
    agents[-1].stop()

    agents.append(_Agent(_config(tmp_path, c.url, [good.port]), token))
    # Within one report interval of the new heartbeat (a second here), not minutes later.
    wait_until(lambda: _success(c) == "1", timeout=10, what="probe_success back to 1")
    assert _marker(c) == "up up"
    assert [ch["target"] for ch in _uplink(c)["checks"]] == [f"127.0.0.1:{good.port}"]
    agents[-1].stop()
    good.close()

    # Restarted, the collector loads the same from the database.
    again = collector_factory(sqlite_url)
    assert _success(again) == "1" and _marker(again) == "up up"
    with again.engine.connect() as conn:
        row = conn.execute(select(latest_results.c.target).where(latest_results.c.kind == "tcp"))
        assert [r.target for r in row] == [f"127.0.0.1:{good.port}"]
