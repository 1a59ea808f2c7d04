"""The runner and the schedule plan: timeouts, isolation of hung checks, jobs per uplink."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson
import psutil

from lomsong.config.probe import (
    HeartbeatCheck,
    HttpCheck,
    IcmpCheck,
    ModemCheck,
    TcpCheck,
    UplinkSettings,
)
from lomsong.probes.agent import Job, Measurement, Runner, encode_result, plan_jobs, run_once
from lomsong.probes.checks.base import Binding, Outcome
from lomsong.probes.spool import AsyncSpool, Spool
from tests.waiting import wait_until_async

from .conftest import Server, probe_settings


def test_plan_runs_each_check_over_each_uplink(tmp_path: Path) -> None:
    s = probe_settings(
        tmp_path,
        uplinks=[
            UplinkSettings(name="fibre", source_address="127.0.0.1"),
            UplinkSettings(name="viettel-4g", interface="wwan0"),
        ],
        checks=[
            IcmpCheck(kind="icmp", target="dichvucong.gov.vn"),
            TcpCheck(kind="tcp", target="dichvucong.gov.vn:443", uplinks=["viettel-4g"]),
            ModemCheck(kind="modem", uplink="viettel-4g"),
        ],
    )
    jobs = plan_jobs(s)
    assert [(j.kind, j.binding.uplink) for j in jobs] == [
        ("icmp", "fibre"),
        ("icmp", "viettel-4g"),
        ("tcp", "viettel-4g"),
        ("modem", "viettel-4g"),
        ("heartbeat", None),  # added: every agent sends heartbeats
    ]
    assert jobs[0].binding == Binding("fibre", "127.0.0.1", None)
    assert jobs[1].binding == Binding("viettel-4g", None, "wwan0")
    assert len({j.id for j in jobs}) == len(jobs)


def test_a_hung_check_does_not_delay_the_others(
    http_server: Server, tcp_server: Server, tmp_path: Path
) -> None:
    s = probe_settings(tmp_path, max_concurrency=4)
    hang = HttpCheck(kind="http", target=f"http://{http_server.address}/hang", timeout_seconds=1.5)
    tcp = TcpCheck(kind="tcp", target=tcp_server.address)

    async def scenario() -> tuple[list[str], Measurement, Measurement]:
        runner = Runner(s)
        events: list[str] = []
        slow = asyncio.create_task(runner.measure(Job("h", "http", hang.target, hang, Binding())))
        slow.add_done_callback(lambda _: events.append("hung check recorded"))
        # the hung check is under way: the server has its request (and never answers it)
        await wait_until_async(lambda: http_server.peers, timeout=10, what="the /hang request")
        fast = await runner.measure(Job("t", "tcp", tcp.target, tcp, Binding()))
        events.append("fast check recorded")
        hung = await slow
        assert not http_server.release.is_set()  # the runner gave up; the server never answered
        return events, fast, hung

    events, fast, hung = asyncio.run(scenario())
    assert events == ["fast check recorded", "hung check recorded"]
    assert fast.outcome.ok
    assert (hung.outcome.ok, hung.outcome.error) == (False, "timeout")
    assert hung.outcome.duration_seconds == hang.timeout_seconds


def test_a_stuck_mmcli_is_killed_at_the_timeout(tmp_path: Path) -> None:
    spec = ModemCheck(
        kind="modem",
        uplink="viettel-4g",
        mmcli_command=[sys.executable, "-c", "import time; time.sleep(60)"],
        timeout_seconds=0.5,
    )

    async def scenario() -> tuple[Measurement, list[psutil.Process]]:
        m = await Runner(probe_settings(tmp_path)).measure(
            Job("m", "modem", spec.target, spec, Binding("viettel-4g"))
        )
        # the cancelled check kills its child: gone, soon after the timeout
        await wait_until_async(
            lambda: not stuck_children(), timeout=10, what=lambda: f"{stuck_children()} killed"
        )
        return m, stuck_children()

    m, children = asyncio.run(scenario())
    assert (m.outcome.ok, m.outcome.error) == (False, "timeout")
    assert not children


def stuck_children() -> list[psutil.Process]:
    """This process's children still running the stuck mmcli stand-in."""
    found = []
    for c in psutil.Process().children(recursive=True):
        try:
            if "time.sleep(60)" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE:
                found.append(c)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_result_the_wire_would_refuse_is_recorded_as_a_failure(tmp_path: Path) -> None:
    job = Job(
        "x", "icmp", "dichvucong.gov.vn", IcmpCheck(kind="icmp", target="x"), Binding("fibre")
    )
    bad = Outcome(ok=True, packets_sent=2, packets_received=3)
    doc = orjson.loads(encode_result(Measurement(job, time.time(), bad)))
    assert doc["ok"] is False
    assert doc["error"].startswith("invalid result: ")
    assert "packets_received (3) exceeds packets_sent (2)" in doc["error"]


def test_recorded_results_go_to_the_spool_with_their_times(
    tcp_server: Server, tmp_path: Path
) -> None:
    s = probe_settings(tmp_path)
    tcp = TcpCheck(kind="tcp", target=tcp_server.address)
    woken: list[bool] = []

    async def scenario() -> list[int]:
        spool = AsyncSpool(Spool(s.spool_path))
        runner = Runner(s, spool, on_recorded=lambda: woken.append(True))
        before = time.time()
        await runner.run_job(Job("t", "tcp", tcp.target, tcp, Binding("fibre")))
        await runner.run_job(
            Job("h", "heartbeat", "self", HeartbeatCheck(kind="heartbeat"), Binding())
        )
        rows = await spool.pending(10)
        await spool.close()
        docs = [orjson.loads(r.body) for r in rows]
        assert docs[0]["kind"] == "tcp" and docs[0]["uplink"] == "fibre" and docs[0]["ok"]
        assert docs[1]["spool_depth"] == 1  # the heartbeat counts what waits before it
        assert docs[1]["spool_dropped"] == 0
        assert docs[0]["measured_at"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before))
        return [r.seq for r in rows]

    seqs = asyncio.run(scenario())
    assert seqs[1] == seqs[0] + 1 and woken == [True, True]


def test_run_once_measures_every_job(tcp_server: Server, tmp_path: Path) -> None:
    s = probe_settings(
        tmp_path,
        uplinks=[UplinkSettings(name="fibre", source_address="127.0.0.1")],
        checks=[TcpCheck(kind="tcp", target=tcp_server.address)],
    )
    measurements = asyncio.run(run_once(s))
    assert [(m.job.kind, m.outcome.ok) for m in measurements] == [
        ("tcp", True),
        ("heartbeat", True),
    ]
