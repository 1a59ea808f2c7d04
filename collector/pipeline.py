"""The path of a report through the collector, from accepted to told.

::

    POST /api/v1/reports            routes/reports.py: authenticated, checked, accepted
        │
        ▼
    ReportStore.submit              store.py: one writer, many batches per commit
        │ committed group (on_commit)                 │ re-sends heard (on_heard)
        ├──► LiveState.apply                          └──► LiveState.heard
        │      live.py: /metrics, status page, read API, maps
        └──► OutageFeed.accept
               outage_feed.py: the detector's inbox (SQLite; PostgreSQL reads ``results``)
                   │
    every ``detector.tick_seconds`` ("outage-detector"):
                   ▼
    Leadership.hold                 leadership.py: one replica runs the detector
        ▼
    OutageFeed.tick                 sync probes, observe, Detector.tick (detector.py, pure)
        ▼
    OutageHistory.persist           outage_history.py: the ``outages`` table
        ▼
    AlertFacts.alert_sources        alert_facts.py: names, hamlets, map link
        ▼
    Dispatcher.update/due/deliver   alerts/dispatcher.py: group, wait, repeat, inhibit, retry
        ▼
    Receiver.send ──► AlertFacts.record_attempt      webhook, email, Alertmanager

    every ``live_state_refresh_seconds`` ("live-state-refresh"): LiveState.reload, for what
    other replicas stored.

    every ``availability_refresh_seconds`` ("availability", first at start): on the leader
    AvailabilityKeeper.refresh (availability_daily from the outages), then on every replica
    AvailabilityGauges.reload (the /metrics availability families).
    every ``rollups.derive_every_seconds`` ("rollups"), on the leader only: the hourly and
    daily rollups of the hours the writer marked (storage/rollups.py), and once more at stop.
    every ``retention.prune_every_seconds`` ("retention"), on the leader only: prune, which
    archives and removes the expired days and, on PostgreSQL, makes the coming days' partitions
    (storage/retention.py).

``start`` checks the database, loads the live state, builds the detector where this process
always leads (SQLite), starts the store's writer and then the scheduler; ``stop`` undoes it in
reverse: the scheduler, the deliveries under way, the receivers, the lock, and the store's
writer last, so that nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from lomsong.collector.alert_facts import AlertFacts, Impact
from lomsong.collector.alerts.dispatcher import Attempt, Dispatcher
from lomsong.collector.alerts.model import Receiver
from lomsong.collector.availability_keeper import AvailabilityKeeper
from lomsong.collector.availability_metrics import AvailabilityGauges
from lomsong.collector.detector import DetectorConfig
from lomsong.collector.leadership import Leadership
from lomsong.collector.live import LiveState
from lomsong.collector.outage_feed import OutageFeed
from lomsong.collector.outage_history import OutageHistory
from lomsong.collector.outage_log import log_attempt, log_changes, warn_if_nobody_notified
from lomsong.collector.store import ReportStore, StoredBatch
from lomsong.config.alerts import AlertsConfig, load_alerts_config
from lomsong.config.collector import CollectorSettings
from lomsong.storage.database import check_ready, unavailable
from lomsong.storage.retention import PruneReport, archiver_for, prune
from lomsong.storage.rollups import derive_marked

log = logging.getLogger(__name__)

#: The first prune runs this long after start (the next ones every prune_every_seconds).
PRUNE_FIRST_AFTER_SECONDS = 60.0


class ReportPipeline:
    """Store, live state, detector and dispatcher of one collector, wired in report order."""

    def __init__(
        self,
        settings: CollectorSettings,
        engine: Engine,
        *,
        clock: Callable[[], float],
        alerts: AlertsConfig | None = None,
        receivers: Mapping[str, Receiver] | None = None,
        impact: Impact | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        # stored → live state and outage feed
        self.live = LiveState()
        self.store = ReportStore(
            engine,
            on_commit=self._committed,
            on_heard=self.live.heard,
            rollups=settings.rollups.enabled,
        )
        # feed → detector tick → history
        self.feed = OutageFeed(
            engine,
            self.live,
            detector_config(settings),
            OutageHistory(engine),
            Leadership(engine),
            clock=clock,
        )
        # history → alert facts → notifications
        self.facts = AlertFacts(engine, self.live, public_url=settings.public_url, impact=impact)
        if alerts is None and settings.alerts_file is not None:
            alerts = load_alerts_config(settings.alerts_file)
        if alerts is not None and receivers is None:
            from lomsong.collector.alerts.factory import build_receivers

            receivers = build_receivers(alerts)
        self.alerts = alerts
        self.receivers = dict(receivers or {})
        # outages → the daily availability table (leader) → the /metrics gauges (every replica)
        self.availability = AvailabilityKeeper(
            engine, alerts.maintenance if alerts else (), clock=clock
        )
        self.availability_gauges = AvailabilityGauges(engine, self.live, clock=clock)
        #: refuses to start where archive.path is set and no archive writer is built in
        self._archiver = archiver_for(settings, engine)
        #: built when this process takes the lead, dropped when it stands by
        self.dispatcher: Dispatcher | None = None
        self._scheduler: AsyncIOScheduler | None = None

    def _committed(self, stored: Sequence[StoredBatch]) -> None:
        """A committed group, told to the live state first and then the detector's inbox."""
        self.live.apply(stored)
        self.feed.accept(stored)

    async def tick(self) -> None:
        """One detector tick and, on the leader, the notifications its changes call for."""
        try:
            result = await run_in_threadpool(self.feed.tick)
        except Exception as exc:  # a failed tick must not stop the next ones
            away = unavailable(exc)
            if away is None:
                log.exception("outage detector tick failed")
            else:  # one line a tick while the database is away, not a traceback
                log.warning("outage detector tick: %s", away)
            return
        if not result.leader:
            self.dispatcher = None
            return
        if result.changes:
            log_changes(result.changes, self.live.probes)
        if self.alerts is None:
            return
        now = self.clock()
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(self.alerts, self.receivers, record=self._record_attempt)
            # A new leader: what was sent before stays sent; open outages go on firing.
            for key, fingerprints, at in await run_in_threadpool(self.facts.sent_groups):
                self.dispatcher.restore(key, fingerprints, at)
            assert self.feed.detector is not None
            self.dispatcher.update(self.facts.active_sources(self.feed.detector), now)
        self.dispatcher.update(self.facts.alert_sources(result.changes), now)
        self.dispatcher.deliver(self.dispatcher.due(now), self.clock)

    def _record_attempt(self, attempt: Attempt) -> None:
        log_attempt(attempt)
        self.facts.record_attempt(attempt)

    async def refresh_availability(self) -> None:
        """The leader recomputes the days that need it; every replica reloads its gauges."""
        try:
            if self.feed.leader:
                await run_in_threadpool(self.availability.refresh)
            await run_in_threadpool(self.availability_gauges.reload)
        except Exception as exc:  # a failed run must not stop the next ones
            away = unavailable(exc)
            if away is None:
                log.exception("availability refresh failed")
            else:
                log.warning("availability refresh: %s", away)

    async def refresh_live(self) -> None:
        """Reload the live state from the database: other replicas store reports too."""
        await run_in_threadpool(self.live.reload, self.engine)

    async def derive_rollups(self) -> int:
        """Derive the marked hours' hourly and daily rollups, on the detector's leader only."""
        if not self.feed.leader:
            return 0
        try:
            return await run_in_threadpool(derive_marked, self.engine)
        except Exception as exc:  # the marks stay: the next run takes them
            away = unavailable(exc)
            if away is None:
                log.exception("deriving the hourly and daily rollups failed")
            else:
                log.warning("deriving the hourly and daily rollups: %s", away)
            return 0

    async def prune(self) -> PruneReport | None:
        """Prune what expired, on the detector's leader only (one replica prunes at a time)."""
        if not self.feed.leader:
            return None
        keep = self.settings.retention
        try:
            report = await run_in_threadpool(
                partial(
                    prune,
                    self.engine,
                    now=self.clock(),
                    raw_days=keep.raw_days,
                    rollup_5m_days=keep.rollup_5m_days,
                    archiver=self._archiver,
                    # the detached days are dropped at the next run, off the prune's path
                    defer_drop=True,
                )
            )
        except Exception as exc:  # the next run tries again
            away = unavailable(exc)
            if away is None:
                log.exception("pruning expired results failed")
            else:
                log.warning("pruning expired results: %s", away)
            return None
        if report.days or report.rollup_rows:
            log.info(
                "pruned %d days of raw results (%d results) and %d 5-minute rollups; kept from %s",
                len(report.days),
                report.rows,
                report.rollup_rows,
                report.plan.keep_from,
            )
        for gone in report.dropped:
            log.info("dropped the detached day %s (%d results)", gone.day, gone.rows)
        if report.pending_drop:
            log.info(
                "detached %d days, counted and dropped at the next prune: %s",
                len(report.pending_drop),
                ", ".join(str(d) for d in report.pending_drop),
            )
        if report.failed is not None:
            log.error("archiving %s failed, so it is kept: %s", *report.failed)
        return report

    async def start(self) -> None:
        """Check the database, load the live state, start the writer, then the scheduled jobs."""
        warn_if_nobody_notified(self.settings.alerts_file, self.alerts)
        await run_in_threadpool(check_ready, self.engine)
        await self.refresh_live()
        await run_in_threadpool(self.feed.prepare)
        self.store.start()
        scheduler = AsyncIOScheduler(timezone="UTC")
        now = datetime.now(UTC)
        jobs: list[tuple[str, Callable[[], Awaitable[object]], float, datetime | None]] = [
            ("outage-detector", self.tick, self.settings.detector.tick_seconds, None),
            (
                "live-state-refresh",
                self.refresh_live,
                self.settings.live_state_refresh_seconds,
                None,
            ),
            (
                "availability",
                self.refresh_availability,
                self.settings.availability_refresh_seconds,
                now,
            ),
            ("rollups", self.derive_rollups, self.settings.rollups.derive_every_seconds, None),
            # a minute after start, when the leader is known, and then on the interval
            (
                "retention",
                self.prune,
                self.settings.retention.prune_every_seconds,
                now + timedelta(seconds=PRUNE_FIRST_AFTER_SECONDS),
            ),
        ]
        for job_id, run, every, first in jobs:
            # one run at a time, and a run missed while the last one ran is not made up for
            options: dict[str, Any] = {"next_run_time": first} if first is not None else {}
            scheduler.add_job(
                run, "interval", seconds=every, id=job_id, max_instances=1, coalesce=True, **options
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Stop the jobs, finish deliveries, close the receivers, stand down, stop the writer."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        leader = self.feed.leader
        if self.dispatcher is not None:
            await self.dispatcher.drain()
        for receiver in self.receivers.values():
            await receiver.close()
        await run_in_threadpool(self.feed.stand_down)
        self.store.stop()
        if leader:  # what the writer marked last, so that a clean stop leaves no marks
            await run_in_threadpool(self._derive_at_stop)

    def _derive_at_stop(self) -> None:
        try:
            derive_marked(self.engine)
        except Exception as exc:  # kept: the next leader derives them
            log.warning("deriving the hourly and daily rollups at stop: %s", exc)


def detector_config(settings: CollectorSettings) -> DetectorConfig:
    """The detector's thresholds: the ``detector`` settings and the probes' report interval."""
    return DetectorConfig(
        report_interval_seconds=settings.report_interval_seconds,
        **settings.detector.model_dump(),
    )
