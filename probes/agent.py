"""The probe agent: schedules every check over every uplink, spools results, runs the uploader.

APScheduler 3 (``AsyncIOScheduler``) starts each job on its own interval with its own jitter;
every run is its own task, so a slow check never holds up another. A semaphore bounds how many
run at once, and the runner — not the check — owns the timeout: when it passes, the run is
cancelled and recorded as ``ok=false, error="timeout"`` without waiting for the check to notice.

This module imports only the agent's own dependencies (DESIGN §4): never the collector's web
stack nor the geodata libraries, so ``pip install lomsong`` without extras can run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError as PydanticValidationError

from lomsong import __version__
from lomsong.config.probe import (
    CheckSettings,
    HeartbeatCheck,
    ModemCheck,
    ProbeSettings,
    UplinkSettings,
)
from lomsong.errors import SpoolError
from lomsong.probes.activity import SUMMARY_SECONDS, Activity
from lomsong.probes.checks.base import Binding, CheckContext, Outcome, SpoolStats, check_function
from lomsong.probes.checks.heartbeat import boot_id
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import Uploader
from lomsong.timefmt import iso
from lomsong.wire import MAX_RUNNING_CHECKS, Result, describe_validation_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One check over one uplink: the unit the scheduler runs."""

    id: str
    kind: str
    target: str
    spec: CheckSettings
    binding: Binding


@dataclass(slots=True)
class Measurement:
    """A finished run: its job, when it started (the probe's clock), and what it found."""

    job: Job
    measured_at: float
    outcome: Outcome

    def wire(self) -> dict[str, Any]:
        """The wire ``Result`` without its seq (the spool gives that)."""
        doc: dict[str, Any] = {
            "measured_at": iso(self.measured_at),
            "kind": self.job.kind,
            "target": self.job.target,
            "uplink": self.job.binding.uplink,
            "ok": self.outcome.ok,
        }
        doc.update(self.outcome.wire_fields())
        # Timings to the microsecond: the 17 digits of a raw float are noise that gzip cannot
        # shrink, and each one costs bytes on a metered uplink.
        for key, value in doc.items():
            if isinstance(value, float) and key.endswith("_seconds"):
                doc[key] = round(value, 6)
        return doc


def plan_jobs(settings: ProbeSettings) -> list[Job]:
    """Every (check, uplink) pair; a heartbeat is added when none is configured.

    A job's id is its check's kind, target and uplink, so that the same check keeps its id in
    a new configuration (``probes/schedule.py`` leaves it running); a check listed twice gets
    ``#2`` after its id.
    """
    checks: list[CheckSettings] = list(settings.checks)
    if not any(isinstance(c, HeartbeatCheck) for c in checks):
        checks.append(HeartbeatCheck(kind="heartbeat"))
    uplinks = {u.name: u for u in settings.uplinks}
    jobs: list[Job] = []
    seen: dict[str, int] = {}

    def job_id(kind: str, target: str, uplink: str | None) -> str:
        base = f"{kind}:{target}:{uplink or '-'}"
        seen[base] = seen.get(base, 0) + 1
        return base if seen[base] == 1 else f"{base}#{seen[base]}"

    for spec in checks:
        chosen: list[UplinkSettings | None]
        if isinstance(spec, HeartbeatCheck):
            chosen = [None]
        elif isinstance(spec, ModemCheck):
            # The modem is read over D-Bus, not over the uplink: only its name goes along.
            jobs.append(
                Job(
                    job_id("modem", spec.target, spec.uplink),
                    "modem",
                    spec.target,
                    spec,
                    Binding(spec.uplink),
                )
            )
            continue
        elif spec.uplinks is not None:
            chosen = [uplinks[name] for name in spec.uplinks]
        else:
            chosen = list(uplinks.values()) or [None]
        for uplink in chosen:
            binding = Binding.of(uplink)
            jobs.append(
                Job(
                    job_id(spec.kind, spec.target, binding.uplink),
                    spec.kind,
                    spec.target,
                    spec,
                    binding,
                )
            )
    return jobs


def running_checks(jobs: Sequence[Job]) -> tuple[tuple[str | None, str, str], ...]:
    """(uplink, kind, target) of every job, once each, at most as many as the wire allows."""
    keys = {(job.binding.uplink, job.kind, job.target) for job in jobs}
    ordered = sorted(keys, key=lambda k: (k[0] or "", k[1], k[2]))
    if len(ordered) > MAX_RUNNING_CHECKS:
        # The list would be refused: without it the collector keeps every last result, as it
        # does for agents that never send one.
        log.warning(
            "%d checks are more than a heartbeat can list (%d): not listed",
            len(ordered),
            MAX_RUNNING_CHECKS,
        )
        return ()
    return tuple(ordered)


class Runner:
    """Runs one job at a time per call, within the concurrency bound and the job's timeout."""

    def __init__(
        self,
        settings: ProbeSettings,
        spool: AsyncSpool | None = None,
        *,
        on_recorded: Callable[[], None] | None = None,
        on_measured: Callable[[Measurement], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self._on_recorded = on_recorded
        self._on_measured = on_measured
        self._clock = clock
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self.spool_errors = 0
        self._running = running_checks(plan_jobs(settings))
        #: what the heartbeat says of the configuration: (applied version, refused version,
        #: error); None says nothing (``probes/profile_sync.py`` sets it)
        self.config_status: tuple[str | None, str | None, str | None] | None = None
        #: runs under way: the agent lets them finish when it stops, rather than cancel them
        self.in_flight: set[asyncio.Task[Any]] = set()

    async def measure(self, job: Job) -> Measurement:
        """Run ``job`` once; whatever happens, a measurement comes back."""
        async with self._limit:
            timeout = job.spec.timeout_seconds
            ctx = CheckContext(
                binding=job.binding,
                timeout_seconds=timeout,
                agent_version=__version__,
                spool_stats=self._spool_stats if self.spool is not None else None,
                spool_dir=str(self.settings.spool_path.parent),
                running_checks=self._running if job.kind == "heartbeat" else (),
                config=self.config_status if job.kind == "heartbeat" else None,
            )
            measured_at = self._clock()
            started = time.perf_counter()
            try:
                task = asyncio.ensure_future(check_function(job.kind)(job.spec, ctx))
            except Exception as exc:  # the kind's module cannot load: a broken install
                log.exception("check %s cannot start", job.id)
                failed = Outcome(ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
                return Measurement(job, measured_at, failed)
            try:
                done, _ = await asyncio.wait({task}, timeout=timeout)
            except asyncio.CancelledError:
                task.cancel()
                task.add_done_callback(_swallow)
                raise
            if task in done:
                outcome = _outcome_of(task, job)
            else:
                # Do not wait for the check to notice the cancellation: a check stuck in a
                # blocking call must not hold up this slot past its timeout.
                task.cancel()
                task.add_done_callback(_swallow)
                outcome = Outcome(ok=False, error="timeout", duration_seconds=timeout)
            outcome.details.setdefault("run_seconds", round(time.perf_counter() - started, 6))
        return Measurement(job, measured_at, outcome)

    def set_jobs(self, jobs: Sequence[Job]) -> None:
        """The jobs scheduled now: the next heartbeat lists their checks."""
        self._running = running_checks(jobs)

    async def run_job(self, job: Job) -> None:
        """Measure and spool; the scheduler's entry point."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            measurement = await self.measure(job)
            if self._on_measured is not None:
                self._on_measured(measurement)
            await self.record([measurement])
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def record(self, measurements: Sequence[Measurement]) -> list[int]:
        """Spool measurements durably; a spool failure is logged loudly, never raised."""
        if self.spool is None:
            return []
        rows = [(m.measured_at, m.job.kind, encode_result(m)) for m in measurements]
        try:
            seqs = await self.spool.append(rows)
        except SpoolError as exc:
            self.spool_errors += 1
            log.error("result not recorded: %s", exc)
            return []
        if self._on_recorded is not None:
            self._on_recorded()
        return seqs

    async def _spool_stats(self) -> SpoolStats:
        assert self.spool is not None
        return await self.spool.stats()


def encode_result(m: Measurement) -> bytes:
    """The spooled JSON of a measurement, checked against the wire model first.

    A result the collector would refuse must never reach the spool: it would block every batch
    it is part of. Such a result (a bug in a check) is recorded as a failure that says so.
    """
    doc = m.wire()
    try:
        Result.model_validate({"seq": 1, **doc})
    except PydanticValidationError as exc:
        problem = describe_validation_error(exc)
        log.error("check %s produced an invalid result: %s", m.job.id, problem)
        doc = Measurement(
            m.job, m.measured_at, Outcome(ok=False, error=f"invalid result: {problem}"[:512])
        ).wire()
    return orjson.dumps(doc)


def preload(jobs: Sequence[Job]) -> None:
    """Import every kind the jobs use now, so no import ever runs inside a timed check."""
    for kind in sorted({job.kind for job in jobs}):
        try:
            check_function(kind)
        except Exception:  # measure() records the same failure for each run
            log.exception("check kind %s cannot be loaded", kind)


async def run_once(settings: ProbeSettings) -> list[Measurement]:
    """Run every job once, all at once within the concurrency bound; nothing is spooled."""
    runner = Runner(settings)
    jobs = plan_jobs(settings)
    preload(jobs)
    return list(await asyncio.gather(*(runner.measure(job) for job in jobs)))


def rotatable_token_file(settings: ProbeSettings) -> Path | None:
    """The file a rotated token is written to: the token file, unless an inline token (which
    wins over it) is set; then rotation is refused (``uploader.py``)."""
    if settings.token is not None and settings.token.get_secret_value():
        return None
    return settings.token_file


async def run_agent(settings: ProbeSettings, stop: asyncio.Event | None = None) -> None:
    """The agent's life: open the spool, schedule the checks, upload, until ``stop`` or SIGTERM."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from lomsong.probes.profile_sync import ProfileSync, describe
    from lomsong.probes.schedule import Schedule

    token = settings.bearer_token()
    stop = stop or asyncio.Event()
    spool = AsyncSpool(
        Spool(
            settings.spool_path,
            max_bytes=settings.spool_max_bytes,
            max_age_seconds=settings.spool_max_age_seconds,
        )
    )
    uploader = Uploader(
        spool,
        settings.upload,
        collector_url=settings.collector_url,
        token=token,
        probe_id=settings.probe_id,
        boot_id=boot_id(settings.boot_id_file),
        agent_version=__version__,
        token_file=rotatable_token_file(settings),
    )
    activity = Activity()
    runner = Runner(settings, spool, on_recorded=uploader.wake.set, on_measured=activity.note)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
    schedule = Schedule(scheduler, runner)
    sync = ProfileSync(
        settings, schedule, on_applied=activity.config_applied, on_refused=activity.config_refused
    )
    sync.start()
    uploader.on_cycle = sync.poll
    stats = await spool.stats()
    log.info(
        "probe %s: %d jobs over %d uplinks (config %s); spool %s holds %d results "
        "(next seq %d, %d dropped, %d refused and set aside)",
        settings.probe_id,
        len(schedule.jobs),
        len(settings.uplinks),
        describe(sync.version),
        settings.spool_path,
        stats.depth,
        stats.next_seq,
        stats.dropped,
        stats.refused,
    )
    scheduler.start()
    upload = asyncio.create_task(uploader.run(stop), name="lomsong-uploader")
    summaries = _Summaries(activity, uploader, spool)
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=SUMMARY_SECONDS)
            if not stop.is_set():
                await summaries.write()
    finally:
        stop.set()
        scheduler.pause()
        if runner.in_flight:
            # APScheduler's shutdown cancels the runs under way: each would be lost and logged
            # as an error with its traceback. Each ends within its own timeout.
            longest = schedule.longest_timeout()
            await asyncio.wait(set(runner.in_flight), timeout=longest + 1.0)
        scheduler.shutdown(wait=False)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(upload, timeout=settings.upload.timeout_seconds)
        with contextlib.suppress(SpoolError):
            await summaries.write()  # what the last period did, before the agent goes
        await spool.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


class _Summaries:
    """The summary line's figures: uploads since the last one, the spool's depth now."""

    def __init__(self, activity: Activity, uploader: Uploader, spool: AsyncSpool) -> None:
        self.activity = activity
        self.uploader = uploader
        self.spool = spool
        self._uploaded = 0

    async def write(self) -> None:
        total = self.uploader.counters.results
        stats = await self.spool.stats()
        self.activity.summary(uploaded=total - self._uploaded, spool_depth=stats.depth)
        self._uploaded = total


def once_table(measurements: Sequence[Measurement], width: int | None = None) -> Any:
    """A table of one round that fits the installer's terminal (80 columns on a serial
    console): the target and the detail wrap, the uplink is left out first when it is narrow."""
    from rich.text import Text

    from lomsong.tables import Column, table

    columns = [
        Column("kind"),
        Column("target", wrap=True, min_width=18),
        Column("uplink", drop=1, wrap=True, min_width=8),
        Column("ok"),
        Column("time", numeric=True),
        Column("detail", wrap=True, min_width=16),
    ]
    rows: list[list[str | Text]] = []
    for m in measurements:
        o = m.outcome
        rows.append(
            [
                m.job.kind,
                m.job.target,
                m.job.binding.uplink or "",
                Text("ok", style="green") if o.ok else Text("FAIL", style="red"),
                f"{o.duration_seconds * 1000:.1f} ms" if o.duration_seconds is not None else "",
                _detail_text(o),
            ]
        )
    return table(columns, rows, width=width, title="lomsong probe once")


def _detail_text(o: Outcome) -> str:
    parts: list[str] = []
    if o.error:
        parts.append(o.error)
    if o.packets_sent is not None:
        parts.append(f"{o.packets_received}/{o.packets_sent} replies")
    if o.rtt_min_seconds is not None and o.rtt_max_seconds is not None:
        parts.append(f"min/max {o.rtt_min_seconds * 1000:.1f}/{o.rtt_max_seconds * 1000:.1f} ms")
    if o.jitter_seconds is not None:
        parts.append(f"jitter {o.jitter_seconds * 1000:.1f} ms")
    if o.status_code is not None:
        parts.append(f"HTTP {o.status_code}")
    if o.tls_expiry_days is not None:
        parts.append(f"cert expires in {o.tls_expiry_days:.0f} d")
    if o.signal is not None:
        parts.append(
            " ".join(f"{k}={v}" for k, v in o.signal.model_dump(exclude_none=True).items())
        )
    if o.uptime_seconds is not None:
        parts.append(f"up {o.uptime_seconds / 3600:.1f} h, load {o.load1}")
    if o.spool_depth is not None:
        parts.append(
            f"spool {o.spool_depth} ({o.spool_dropped} dropped, {o.spool_refused} refused)"
        )
    parts.extend(
        f"{key}: {o.details[key]}"
        for key in ("answers", "socket", "operator")
        if o.details.get(key)
    )
    return "; ".join(parts)


def _outcome_of(task: asyncio.Future[Outcome], job: Job) -> Outcome:
    try:
        return task.result()
    except Exception as exc:  # a bug in a check: record it as a failure, keep the agent alive
        log.exception("check %s raised", job.id)
        return Outcome(ok=False, error=f"internal error: {type(exc).__name__}: {exc}"[:512])


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
