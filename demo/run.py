"""``lomsong demo``: the whole system on one machine, with Cao Bằng's 56 communes.

The demo starts from a fresh SQLite file under its work directory (``var/demo/`` by default;
the database, the directory and the collector's settings are set up by ``setup``):
it registers one probe per Cao Bằng commune with a fibre line and two operators' 4G links,
starts a webhook sink and one small HTTP service per commune and uplink on loopback (what
each link reaches, see ``world``), serves the collector with alerts routed to the sink
(and to an Alertmanager with ``--alertmanager``), and starts one real ``lomsong probe run``
agent per commune. Once every agent reports, a fixed scenario (``scenario``) cuts and
repairs links and stops, kills and restarts agents, so that outages open, are told to the sink
and resolve within the first three minutes. Ctrl-C stops everything in order: agents first,
then the collector, then the services. ``--minutes N`` runs that long and ends with a summary;
the CLI exits non-zero when the scenario's expectations did not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from lomsong.collector.app import create_app
from lomsong.demo.scenario import (
    INCIDENTS,
    OutageRecord,
    Place,
    check,
    describe,
    duration,
    steps,
)
from lomsong.demo.setup import (
    AGENTS_DIR,
    PROVINCE,
    REGIONAL_MIN_COMMUNES,
    UPLINKS,
    demo_alerts,
    demo_settings,
    prepare,
)
from lomsong.demo.world import (
    AgentProcess,
    AgentUplink,
    LinkServices,
    WebhookSink,
)
from lomsong.errors import LomsongError
from lomsong.storage.database import open_engine
from lomsong.storage.schema import notification_attempts, outages, probe_state, results


class DemoError(LomsongError):
    """``lomsong demo --minutes`` ran, but its scenario's expectations did not hold."""


#: Agents are started this far apart, so their start-up (imports, spool) is spread out.
AGENT_START_SPACING_SECONDS = 0.25
#: How long the demo waits for every agent's first report before it starts the scenario anyway.
READY_TIMEOUT_SECONDS = 120.0


@dataclass
class DemoReport:
    """What a run did; printed at the end and judged by the CLI."""

    url: str
    seconds: float
    probes: int = 0
    reported: int = 0
    results: int = 0
    #: (condition, cause) → [opened, resolved]
    outages: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: notifications the webhook sink received, by status
    notifications: dict[str, int] = field(default_factory=dict)
    #: deliveries the collector recorded: (receiver, status, ok) → count
    deliveries: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    #: distinct synthetic hamlets and their people left without signal by the outages
    #: (``None``: no coverage data), and how many outages that was known for
    affected_hamlets: int | None = None
    affected_people: int = 0
    affected_outages: int = 0
    cpu_collector_seconds: float = 0.0
    cpu_agents_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def run_demo(
    workdir: Path,
    *,
    port: int = 8080,
    minutes: float | None = None,
    alertmanager: str | None = None,
    write: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo until Ctrl-C (or SIGTERM), or for ``minutes``; return what it did."""
    demo = _Demo(workdir.resolve(), port, minutes, alertmanager, write or _write_line)
    return asyncio.run(demo.run())


def format_report(report: DemoReport) -> list[str]:
    """The summary's lines."""
    lines = [f"lomsong demo: summary after {report.seconds / 60:.1f} min"]
    lines.append(f"  probes           {report.probes} registered, {report.reported} reported")
    lines.append(f"  results stored   {report.results:,}")
    opened = sum(v[0] for v in report.outages.values())
    resolved = sum(v[1] for v in report.outages.values())
    lines.append(f"  outages          {opened} opened, {resolved} resolved")
    for (condition, cause), (o, r) in sorted(report.outages.items()):
        lines.append(f"    {condition:<13} {cause:<8} {o} opened, {r} resolved")
    if report.affected_hamlets is not None:
        lines.append(
            f"  hamlets cut off  {report.affected_hamlets:,} synthetic hamlets, "
            f"{report.affected_people:,} people, by {report.affected_outages} of those outages"
        )
    n = report.notifications
    lines.append(
        f"  notifications    webhook sink got {n.get('firing', 0)} firing, "
        f"{n.get('resolved', 0)} resolved"
    )
    for receiver in sorted({k[0] for k in report.deliveries}):
        parts = []
        for status in ("firing", "resolved"):
            ok = report.deliveries.get((receiver, status, True), 0)
            failed = report.deliveries.get((receiver, status, False), 0)
            parts.append(f"{ok} {status}" + (f" ({failed} failed attempts)" if failed else ""))
        lines.append(f"    delivered to {receiver}: {', '.join(parts)}")
    total = report.cpu_collector_seconds + report.cpu_agents_seconds
    lines.append(
        f"  CPU              {total:.0f} s in {report.seconds:.0f} s "
        f"({100 * total / max(report.seconds, 1):.0f} % of one core): collector and demo "
        f"{report.cpu_collector_seconds:.0f} s, {report.probes} agents "
        f"{report.cpu_agents_seconds:.0f} s"
    )
    if report.problems:
        lines.append("  scenario         NOT as expected:")
        lines += [f"    - {p}" for p in report.problems]
    else:
        lines.append("  scenario         every expectation held")
    return lines


# -- the run ---------------------------------------------------------------------------------


class _Demo:
    def __init__(
        self,
        workdir: Path,
        port: int,
        minutes: float | None,
        alertmanager: str | None,
        write: Callable[[str], None],
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.minutes = minutes
        self.alertmanager = alertmanager
        self.write = write
        self.base = f"http://127.0.0.1:{port}"
        self.began = time.monotonic()
        self.stop = asyncio.Event()
        self.sink = WebhookSink(self.say)
        self.links = LinkServices()
        self.agents: dict[str, AgentProcess] = {}
        self.places: dict[str, Place] = {}
        self.operators = {u.name: u.operator for u in UPLINKS}
        self.collector: _CollectorThread | None = None
        self.scenario_started: float | None = None
        self.scenario_done = False

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.began)
        self.write(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}")

    async def run(self) -> DemoReport:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.stop.set)
        cpu_start = os.times()
        url = ""
        admin = secrets.token_urlsafe(24)
        try:
            _check_port_free(self.port)
            await self.sink.start()
            ready = await asyncio.to_thread(prepare, self.workdir)
            url, places = ready.url, ready.places
            self.places = {p.code: p for p in places}
            await self.links.start((p.code, u.name) for p in places for u in UPLINKS)
            alerts = demo_alerts(self.base, self.sink.url, self.alertmanager)
            app = create_app(demo_settings(url, self.port, admin), alerts=alerts)
            self.collector = _CollectorThread(app, self.port)
            await asyncio.to_thread(self.collector.start)
            self._print_addresses(admin, len(places), ready.map_path)
            await self._start_agents(ready.tokens)
            task = asyncio.create_task(self._scenario(app, url))
            try:
                if self.minutes is None:
                    await self.stop.wait()
                else:
                    left = self.minutes * 60 - self._elapsed()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), timeout=max(left, 0.0))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await self._shutdown()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        report = await asyncio.to_thread(self._report, url, cpu_start)
        for line in format_report(report):
            self.write(line)
        return report

    def _elapsed(self) -> float:
        return time.monotonic() - self.began

    def _print_addresses(self, admin: str, probes: int, map_path: str | None) -> None:
        self.say(f"lomsong demo: {probes} commune centres of Cao Bằng, files in {self.workdir}")
        self.write(f"  API docs    {self.base}/docs")
        # a browser signs in once with the ?token= link and keeps a cookie
        self.write(f"  status page {self.base}/?token={admin}")
        if map_path is not None:
            self.write(f"  map         {self.base}{map_path}   (synthetic hamlets and sites)")
        self.write(f"  outages     {self.base}/api/v1/outages")
        self.write(f"  metrics     {self.base}/metrics")
        self.write(f"  admin token {admin}   (Authorization: Bearer …)")
        self.write(f"  webhook     {self.sink.url}   (the duty officer's phone: lines below)")
        if self.alertmanager:
            self.write(f"  alerts also go to the Alertmanager at {self.alertmanager}")
        ends = self.minutes is not None
        self.write(f"Runs for {self.minutes:g} minutes." if ends else "Ctrl-C stops the demo.")

    async def _start_agents(self, tokens: dict[str, str]) -> None:
        self.say(f"starting {len(self.places)} probe agents (`lomsong probe run`)")
        for place in self.places.values():
            agent = AgentProcess(
                probe_id=place.probe_id,
                home=self.workdir / AGENTS_DIR / place.probe_id,
                collector_url=self.base,
                token=tokens[place.probe_id],
                uplinks=tuple(
                    AgentUplink(u.name, u.operator, self.links.url(place.code, u.name))
                    for u in UPLINKS
                ),
            )
            agent.write_files()
            self.agents[place.code] = agent
        for agent in self.agents.values():
            if self.stop.is_set():
                return
            agent.start()
            await asyncio.sleep(AGENT_START_SPACING_SECONDS)

    async def _scenario(self, app: FastAPI, url: str) -> None:
        live = app.state.ctx.live
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        ids = {p.probe_id for p in self.places.values()}
        heard: set[str] = set()
        while time.monotonic() < deadline:
            with live.lock:
                heard = {pid for pid in ids if (p := live.live.get(pid)) and p.last_seen_at}
            if heard == ids:
                break
            await asyncio.sleep(0.5)
        self.say(f"{len(heard)} of {len(ids)} agents are reporting; the scenario starts")
        self.scenario_started = time.monotonic()
        self.say(
            f"  it ends {duration() / 60:.1f} minutes from now, once every outage is resolved "
            "and told"
        )
        for step in steps():
            await asyncio.sleep(max(0.0, self.scenario_started + step.at - time.monotonic()))
            self.say(describe(step, self.places, self.operators))
            await self._act(step.action, step.incident.communes, step.incident.uplink)
        await asyncio.sleep(max(0.0, self.scenario_started + duration() - time.monotonic()))
        self.scenario_done = True
        state = await asyncio.to_thread(_read_state, url)
        problems = self._problems(state)
        if problems:
            self.say("the scenario is over, NOT as expected:")
            for p in problems:
                self.write(f"  - {p}")
        else:
            self.say("the scenario is over and every expectation held; the probes go on")

    async def _act(self, action: str, codes: tuple[str, ...], uplink: str | None) -> None:
        for code in codes:
            agent = self.agents[code]
            if action == "cut":
                assert uplink is not None
                await self.links.cut(code, uplink)
            elif action == "restore":
                assert uplink is not None
                await self.links.restore(code, uplink)
            elif action == "stop":
                await agent.stop(signal.SIGTERM)
            elif action == "power_cut":
                await agent.stop(signal.SIGKILL)
                agent.new_boot()
            elif action in ("start", "power_back"):
                agent.start()

    async def _shutdown(self) -> None:
        if self.agents:
            self.say("stopping the agents")
            await asyncio.gather(*(a.stop() for a in self.agents.values()))
        if self.collector is not None:
            self.say("stopping the collector")
            await asyncio.to_thread(self.collector.stop)
        await self.links.close()
        await self.sink.close()

    def _report(self, url: str, cpu_start: os.times_result) -> DemoReport:
        cpu = os.times()
        # Every agent has been waited for, so their CPU time is in the children's usage.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = DemoReport(
            url=self.base,
            seconds=self._elapsed(),
            probes=len(self.places),
            notifications=dict(self.sink.notifications),
            cpu_collector_seconds=(cpu.user - cpu_start.user) + (cpu.system - cpu_start.system),
            cpu_agents_seconds=children.ru_utime + children.ru_stime,
        )
        if not url:
            report.problems.append("the demo stopped before its collector started")
            return report
        state = _read_state(url)
        report.reported, report.results = state.reported, state.results
        affected = _affected(url, state.outages)
        if affected is not None:
            report.affected_hamlets, report.affected_people, report.affected_outages = affected
        report.deliveries = dict(state.deliveries)
        for o in state.outages:
            counts = report.outages.setdefault((o.condition, o.cause or "-"), [0, 0])
            counts[0] += 1
            counts[1] += o.ended_at is not None
        killed = {
            self.places[c].probe_id for i in INCIDENTS if i.kind == "power" for c in i.communes
        }
        for code, agent in self.agents.items():
            bad = [
                x
                for x in agent.exits
                if x != 0 and not (x == -signal.SIGKILL and agent.probe_id in killed)
            ]
            if bad:
                report.problems.append(
                    f"the agent of {self.places[code]} exited with status {bad[0]} "
                    f"(see {agent.log})"
                )
        problems = self._problems(state)
        for receiver in sorted({k[0] for k in state.deliveries}):
            ok = sum(n for (r, _, good), n in state.deliveries.items() if r == receiver and good)
            if not ok:
                problems.append(f"no notification reached the receiver {receiver!r}")
        if problems and not self.scenario_done:
            # Judged all the same: what had to happen may have happened before the margin ran out.
            start = (self.scenario_started or time.monotonic()) - self.began
            problems.insert(
                0,
                "the run ended before the scenario did; it needs about "
                f"{(start + duration()) / 60 + 0.25:.1f} minutes (--minutes)",
            )
        report.problems += problems
        return report

    def _problems(self, state: _State) -> list[str]:
        problems: list[str] = []
        if state.reported < len(self.places):
            problems.append(f"only {state.reported} of {len(self.places)} probes reported")
        return problems + check(
            state.outages,
            self.sink.received,
            self.places,
            self.operators,
            regional_min_communes=REGIONAL_MIN_COMMUNES,
            incidents=INCIDENTS,
        )


@dataclass(frozen=True)
class _State:
    """What the demo's database says, for the summary and the expectations."""

    reported: int
    results: int
    outages: list[OutageRecord]
    deliveries: Counter[tuple[str, str, bool]]


def _read_state(url: str) -> _State:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            count = select(func.count())
            n_results = conn.execute(count.select_from(results)).scalar_one()
            reported = conn.execute(
                count.select_from(probe_state).where(probe_state.c.last_seen_at.is_not(None))
            ).scalar_one()
            rows = [
                OutageRecord(
                    r.probe_id,
                    r.commune_code,
                    r.condition,
                    r.cause,
                    r.uplink,
                    r.operator,
                    r.ended_at,
                )
                for r in conn.execute(select(outages))
            ]
            attempts = select(
                notification_attempts.c.receiver,
                notification_attempts.c.status,
                notification_attempts.c.ok,
            )
            deliveries = Counter((r.receiver, r.status, bool(r.ok)) for r in conn.execute(attempts))
    finally:
        engine.dispose()
    return _State(int(reported), int(n_results), rows, deliveries)


def _affected(url: str, records: list[OutageRecord]) -> tuple[int, int, int] | None:
    """Distinct hamlets and people the outages left without signal, and how many outages said
    (as their alerts do: ``CoverageService.affected``); ``None`` without coverage data."""
    import numpy as np

    from lomsong.collector.coverage_service import CoverageService

    engine = open_engine(url)
    try:
        service = CoverageService(engine)
        found: list[Any] = []
        for o in records:
            hit = service.affected(PROVINCE, o.commune_code, o.condition, o.cause, o.operator)
            if hit is not None:
                found.append(hit)
    except ImportError:  # without the geo extra
        return None
    finally:
        engine.dispose()
    if not found:
        return None
    area = found[-1][0]
    lost = np.unique(np.concatenate([idx for _, idx in found]))
    return int(lost.size), int(area.hamlets.population[lost].sum()), len(found)


class _CollectorThread:
    """The collector served by uvicorn in a thread of the demo's process."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="lomsong-collector")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LomsongError(
                    f"demo: the collector did not start on 127.0.0.1:{self.server.config.port}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=30)


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LomsongError(
                f"demo: port {port} on 127.0.0.1 is taken ({exc.strerror}); pass --port"
            ) from None


def _write_line(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:  # a terminal that cannot show Vietnamese still gets the story
        sys.stdout.write(text.encode("ascii", "backslashreplace").decode("ascii") + "\n")
    sys.stdout.flush()
