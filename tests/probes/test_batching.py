"""The uploader batches by size and by deadline, against a real collector on loopback.

Time is a fake clock the test moves (the uploader's and, where alerts are judged, the
collector's), so the deadlines are the real defaults and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lomsong.config.probe import ProbeSettings, TcpCheck, UploadSettings
from lomsong.probes.agent import Job, Measurement, encode_result
from lomsong.probes.checks.base import Binding, Outcome
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import Uploader
from tests.conftest import ClockedFactory, FakeClock, RunningCollector

PROBE = "cb-thuc-phan"
UPLINKS = ("fibre", "viettel-4g", "vnpt-4g", "mobifone-4g")
KINDS = ("icmp", "tcp", "http", "dns")


def body(at: float, kind: str, uplink: str = "fibre", ok: bool = True) -> bytes:
    doc: dict[str, Any] = {
        "measured_at": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "kind": kind,
        "target": "self" if kind == "heartbeat" else "dichvucong.gov.vn",
        "ok": ok,
    }
    if kind != "heartbeat":
        doc["uplink"] = uplink
    return orjson.dumps(doc)


def spool_at(spool: Spool, at: float, n: int = 1, kind: str = "icmp") -> list[int]:
    return spool.append([(at, kind, body(at, kind)) for _ in range(n)])


class Sent:
    """Every request the uploader made: how many results each carried."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.kinds: list[list[str]] = []

    async def hook(self, request: httpx.Request) -> None:
        raw = request.content
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        results = orjson.loads(raw)["results"]
        self.sizes.append(len(results))
        self.kinds.append([r["kind"] for r in results])


def uploader_for(
    spool: Spool,
    url: str,
    token: str,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **upload: Any,
) -> Uploader:
    settings = ProbeSettings(
        probe_id=PROBE,
        collector_url=url,
        token=token,
        spool_path=spool.path,
        upload=UploadSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.3, **upload),
    )
    return Uploader(
        AsyncSpool(spool),
        settings.upload,
        collector_url=url,
        token=token,
        probe_id=PROBE,
        boot_id="boot-1",
        agent_version="0.1.0",
        rng=random.Random(7),
        clock=clock,
        sleep=sleep,
    )


def client_of(uploader: Uploader, sent: Sent) -> httpx.AsyncClient:
    client = uploader.client()
    client.event_hooks["request"] = [sent.hook]
    return client


@pytest.fixture
def collector(collector_factory: Any, sqlite_url: str) -> RunningCollector:
    running: RunningCollector = collector_factory(sqlite_url)
    return running


def test_a_round_waits_for_the_deadline_then_goes_in_one_request(
    collector: RunningCollector, tmp_path: Path
) -> None:
    token = collector.register(PROBE, "01273", ("fibre:vnpt",))
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db")
    uploader = uploader_for(spool, collector.url, token, clock)
    assert uploader.settings.batch_deadline_seconds == 10.0  # the default is what is tested
    uploader.connected = True  # past the start: the heartbeat-first rule is not in play
    sent = Sent()
    t0 = clock.now

    async def scenario() -> list[tuple[float, bool]]:
        steps = []
        async with client_of(uploader, sent) as client:
            for i in range(21):  # a round: its results arrive over 3 s
                clock.now = t0 + i * 0.15
                spool_at(spool, clock.now)
                steps.append(await uploader.step(client))
            clock.now = t0 + 9.9
            steps.append(await uploader.step(client))
            clock.now = t0 + 10.0
            steps.append(await uploader.step(client))
        return steps

    steps = asyncio.run(scenario())
    assert all(idle and wait > 0 for wait, idle in steps[:-1])  # nothing sent before the deadline
    assert steps[0][0] == pytest.approx(10.0)
    assert steps[-2][0] == pytest.approx(0.1)  # the wait counts from the oldest result
    assert steps[-1] == (0.0, False)
    assert sent.sizes == [21]  # one request for the whole round
    assert spool.stats().depth == 0
    with collector.client(token) as http:
        assert http.get(f"/api/v1/probes/{PROBE}").json()["stored_through_seq"] > 0


def test_a_full_batch_goes_at_once_and_the_rest_waits(
    collector: RunningCollector, tmp_path: Path
) -> None:
    token = collector.register(PROBE, "01273", ("fibre:vnpt",))
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db")
    uploader = uploader_for(spool, collector.url, token, clock, batch_size=8)
    uploader.connected = True
    sent = Sent()
    spool_at(spool, clock.now, 19)

    async def scenario() -> list[tuple[float, bool]]:
        async with client_of(uploader, sent) as client:
            return [await uploader.step(client) for _ in range(3)]

    assert asyncio.run(scenario()) == [(0.0, False), (0.0, False), (10.0, True)]
    assert sent.sizes == [8, 8]
    assert spool.stats().depth == 3


def test_batching_off_sends_each_result_as_it_comes(
    collector: RunningCollector, tmp_path: Path
) -> None:
    token = collector.register(PROBE, "01273", ("fibre:vnpt",))
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db")
    uploader = uploader_for(spool, collector.url, token, clock, batch_deadline_seconds=0)
    uploader.connected = True
    sent = Sent()

    async def scenario() -> None:
        async with client_of(uploader, sent) as client:
            for _ in range(3):
                spool_at(spool, clock.now)
                assert await uploader.step(client) == (0.0, False)

    asyncio.run(scenario())
    assert sent.sizes == [1, 1, 1]


def test_the_run_loop_sends_a_lone_heartbeat_by_the_deadline(
    collector: RunningCollector, tmp_path: Path
) -> None:
    token = collector.register(PROBE, "01273", ("fibre:vnpt",))
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db")
    slept: list[float] = []
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the loop's waits, on the fake clock
        slept.append(seconds)
        clock.now += seconds
        if clock.now >= t0 + 20 and len(slept) == 2:
            spool_at(spool, clock.now, kind="heartbeat")  # the next heartbeat, 20 s on
        if uploader.counters.batches >= 2 or len(slept) > 20:
            stop.set()

    uploader = uploader_for(spool, collector.url, token, clock, sleep)
    uploader.connected = True
    t0 = clock.now
    spool_at(spool, t0, kind="heartbeat")
    sent = Sent()
    sent_at: list[float] = []

    async def scenario() -> None:
        async def note(request: httpx.Request) -> None:
            sent_at.append(clock.now)

        real_client = uploader.client

        def client() -> httpx.AsyncClient:
            c = real_client()
            c.event_hooks["request"] = [sent.hook, note]
            return c

        uploader.client = client  # type: ignore[method-assign]
        await uploader.run(stop)

    asyncio.run(scenario())
    # each heartbeat goes alone, 10 s after it was measured: never near the collector's
    # silence threshold (90 s)
    assert sent.kinds == [["heartbeat"], ["heartbeat"]]
    assert [t - t0 for t in sent_at] == [10.0, 30.0]
    assert slept[:3] == [10.0, 10.0, 10.0]  # the deadline, the empty spool, the deadline
    assert spool.stats().depth == 0


def test_a_backlog_drains_in_full_batches_after_an_outage(
    collector: RunningCollector, tmp_path: Path
) -> None:
    token = collector.register(PROBE, "01273", ("fibre:vnpt",))
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db")
    uploader = uploader_for(spool, collector.url, token, clock, batch_size=100)
    sent = Sent()
    # an hour away: 250 results measured then, the newest heartbeat last
    for i in range(250):
        spool_at(spool, clock.now - 3_600 + i * 14)
    spool_at(spool, clock.now - 1, kind="heartbeat")

    async def scenario() -> list[tuple[float, bool]]:
        async with client_of(uploader, sent) as client:
            return [await uploader.step(client) for _ in range(5)]

    steps = asyncio.run(scenario())
    assert steps[:4] == [(0.0, False)] * 4  # no deadline waited for anywhere
    assert steps[4][1]  # then idle
    assert sent.kinds[0] == ["heartbeat"]  # the collector learns at once that the probe is back
    assert sent.sizes == [1, 100, 100, 50]
    assert spool.stats().depth == 0


def round_offsets(rng: random.Random) -> list[tuple[float, str, str]]:
    """When each result of a round is spooled, after the round starts: 4 uplinks x 4 checks
    and a heartbeat, each started up to 2 s late (jitter) and taking up to 3 s."""
    jobs = [(kind, uplink) for kind in KINDS for uplink in UPLINKS] + [("heartbeat", "")]
    return sorted((rng.uniform(0, 2) + rng.uniform(0, 3), k, u) for k, u in jobs)


def test_alerts_come_within_grace_plus_10_s_with_batching(
    clocked_factory: ClockedFactory, tmp_path: Path
) -> None:
    """Twenty rounds every 30 s, batched by the default deadline: from round 10 the fibre
    fails, after round 20 the centre goes dark. While it lives the detector never calls it
    silent; the uplink-down and the probe-silent outages each open within grace + 10 s."""
    c = clocked_factory(detector={"tick_seconds": 300})  # the test ticks by hand
    uplinks = ("fibre:vnpt", "viettel-4g:viettel", "vnpt-4g:vinaphone", "mobifone-4g:mobifone")
    token = c.collector.register(PROBE, "01273", uplinks)
    c.collector.ctx.live.reload(c.collector.engine)
    feed = c.collector.ctx.outages
    assert feed is not None
    grace = c.collector.ctx.settings.silent_after_seconds
    assert grace == 90.0
    clock: FakeClock = c.clock
    spool = Spool(tmp_path / "spool.db")
    uploader = uploader_for(spool, c.collector.url, token, clock)
    deadline = uploader.settings.batch_deadline_seconds
    rng = random.Random(3)
    sent = Sent()
    sends: list[float] = []
    opened: dict[str, float] = {}
    t0 = clock.now
    fibre_fails_at = t0 + 10 * 30

    def tick() -> None:
        result = feed.tick()
        assert result.leader
        for ch in result.changes:
            if ch.action == "open":
                opened.setdefault(ch.outage.condition, clock.now)

    def tick_until(t: float) -> None:
        """Tick the detector every second up to ``t``: no silent outage while the centre lives."""
        while clock.now < t:
            clock.now = min(t, clock.now + 1.0)
            tick()
            assert "probe_silent" not in opened, f"silent while alive at t0 + {clock.now - t0} s"

    async def step(client: httpx.AsyncClient) -> float | None:
        """One uploader attempt now; when it wants to be asked again (None: nothing left)."""
        wait, idle = await uploader.step(client)
        if not idle:
            sends.append(clock.now)
            return clock.now
        return clock.now + wait if spool.stats().depth else None

    async def live(rounds: int) -> float:
        events = [
            (t0 + r * 30 + dt, kind, uplink)
            for r in range(rounds)
            for dt, kind, uplink in round_offsets(rng)
        ]
        due: float | None = None
        async with client_of(uploader, sent) as client:
            for at, kind, uplink in events:
                while due is not None and due <= at:
                    tick_until(due)
                    due = await step(client)
                tick_until(at)
                ok = not (uplink == "fibre" and at >= fibre_fails_at)
                spool.append([(at, kind, body(at, kind, uplink or "fibre", ok))])
                due = await step(client)  # the runner wakes the uploader
            while due is not None:  # the last batch
                tick_until(due)
                due = await step(client)
        return events[-1][0]

    last_measured = asyncio.run(live(20))
    assert spool.stats().depth == 0
    assert len(sent.sizes) <= 22  # about one request per round (and the first heartbeat)
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert max(gaps) < grace
    assert opened["uplink_down"] - fibre_fails_at <= grace + 10

    # Dark right after its last batch went out: the worst moment, the longest silence.
    dark = sends[-1]
    for _ in range(200):
        clock.now += 1.0
        tick()
        if "probe_silent" in opened:
            break
    assert opened["probe_silent"] - dark <= grace + 10
    # counted from its last result instead, the deadline adds to the grace at most
    assert opened["probe_silent"] - last_measured <= grace + deadline + 1


def test_timings_go_on_the_wire_to_the_microsecond() -> None:
    spec = TcpCheck(kind="tcp", target="127.0.0.1:443")
    job = Job("0:tcp:fibre", "tcp", spec.target, spec, Binding("fibre"))
    outcome = Outcome(ok=True, duration_seconds=0.015055656433105469)
    doc = orjson.loads(encode_result(Measurement(job, 1_796_000_000.5, outcome)))
    assert doc["duration_seconds"] == 0.015056
    assert doc["measured_at"] == "2026-11-30T00:53:20.500Z"
