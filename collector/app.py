"""``create_app(settings)``: assembles the collector; no module-level app, engine or registry."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lomsong import __version__
from lomsong.collector.alerts.dispatcher import Dispatcher
from lomsong.collector.alerts.model import Receiver
from lomsong.collector.auth import Authenticator
from lomsong.collector.coverage_service import CoverageService
from lomsong.collector.deps import Context
from lomsong.collector.detector import DetectorConfig
from lomsong.collector.ingest import RateLimiter
from lomsong.collector.live import LiveState
from lomsong.collector.metrics import Metrics, MetricsRenderer
from lomsong.collector.outages import OutageService
from lomsong.collector.routes import coverage as coverage_routes
from lomsong.collector.routes import health, maps, outages, pages, probes, reports
from lomsong.collector.store import ReportStore, StoredBatch
from lomsong.config.alerts import AlertsConfig, load_alerts_config
from lomsong.config.collector import CollectorSettings
from lomsong.errors import ConflictError, LomsongError, NotFoundError, ValidationError
from lomsong.storage.database import check_ready, open_engine
from lomsong.wire import format_location

if TYPE_CHECKING:
    from lomsong.collector.map_coverage import CoverageSource

log = logging.getLogger(__name__)


def create_app(
    settings: CollectorSettings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
    alerts: AlertsConfig | None = None,
    receivers: Mapping[str, Receiver] | None = None,
    coverage: CoverageSource | None = None,
) -> FastAPI:
    """Build a collector app for ``settings``; the database must be migrated already.

    Parameters
    ----------
    settings
        Validated settings (see ``load_collector_settings``).
    engine
        An engine to use instead of opening ``settings.database_url``; the caller disposes it.
    clock
        Wall clock in epoch seconds; tests pass a fake one.
    registry
        Prometheus registry for the counters; a fresh one by default.
    alerts
        Alert routes and receivers; read from ``settings.alerts_file`` by default.
    receivers
        Receivers to use instead of those the alerts configuration describes.
    coverage
        Where the maps get coverage; the collector's ``CoverageService`` by default.
    """
    owns_engine = engine is None
    if engine is None:
        engine = open_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    live = LiveState()
    metrics = Metrics(registry)
    ctx = Context(
        settings=settings,
        engine=engine,
        store=ReportStore(engine, on_commit=lambda stored: _committed(stored), on_heard=live.heard),
        live=live,
        metrics=metrics,
        renderer=MetricsRenderer(
            live, metrics, silent_after_seconds=settings.silent_after_seconds, clock=clock
        ),
        auth=Authenticator(
            engine,
            settings.admin_token.get_secret_value(),
            cache_seconds=settings.token_cache_seconds,
        ),
        limiter=RateLimiter(settings.ingest.rate_per_probe, settings.ingest.rate_burst),
        clock=clock,
        coverage_source=coverage,
    )

    if alerts is None and settings.alerts_file is not None:
        alerts = load_alerts_config(settings.alerts_file)
    if alerts is not None and receivers is None:
        from lomsong.collector.alerts.factory import build_receivers

        receivers = build_receivers(alerts)
    d = settings.detector
    # one coverage for the API, the maps and the alerts' hamlets
    coverage_service = ctx.coverage = CoverageService(engine, clock=clock)
    service = OutageService(
        engine,
        live,
        DetectorConfig(report_interval_seconds=settings.report_interval_seconds, **d.model_dump()),
        clock=clock,
        public_url=settings.public_url,
        impact=coverage_service.impact,
    )
    ctx.outages = service

    def _committed(stored: Sequence[StoredBatch]) -> None:
        live.apply(stored)
        service.accept(stored)

    alerting = _Alerting(service, alerts, dict(receivers or {}), clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(check_ready, engine)
        await run_in_threadpool(live.reload, engine)
        ctx.store.start()
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(
            alerting.tick,
            "interval",
            seconds=d.tick_seconds,
            id="outage-detector",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            run_in_threadpool,
            "interval",
            args=[live.reload, engine],
            seconds=settings.live_state_refresh_seconds,
            id="live-state-refresh",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            await alerting.close()
            ctx.store.stop()
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="lomsong collector",
        version=__version__,
        description=(
            "Receives probe reports from commune Public Administration Service Centres, "
            "keeps their history and exposes it to Prometheus, maps and alerts."
        ),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.include_router(reports.router)
    app.include_router(probes.router)
    app.include_router(outages.router)
    app.include_router(coverage_routes.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.include_router(maps.router)
    _install_error_handlers(app)
    app.add_middleware(RequestTiming, metrics=metrics)
    return app


class _Alerting:
    """The detector's tick and, on the leader, the dispatcher that turns changes into messages."""

    def __init__(
        self,
        service: OutageService,
        config: AlertsConfig | None,
        receivers: dict[str, Receiver],
        clock: Callable[[], float],
    ) -> None:
        self.service = service
        self.config = config
        self.receivers = receivers
        self.clock = clock
        self.dispatcher: Dispatcher | None = None

    async def tick(self) -> None:
        try:
            result = await run_in_threadpool(self.service.tick)
        except Exception:  # a failed tick must not stop the next ones
            log.exception("outage detector tick failed")
            return
        if not result.leader:
            self.dispatcher = None
            return
        if self.config is None:
            return
        now = self.clock()
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(
                self.config, self.receivers, record=self.service.record_attempt
            )
            # A new leader: what was sent before stays sent; open outages go on firing.
            for key, fingerprints, at in await run_in_threadpool(self.service.sent_groups):
                self.dispatcher.restore(key, fingerprints, at)
            self.dispatcher.update(self.service.active_sources(), now)
        self.dispatcher.update(self.service.alert_sources(result.changes), now)
        self.dispatcher.deliver(self.dispatcher.due(now), self.clock)

    async def close(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.drain()
        for receiver in self.receivers.values():
            await receiver.close()
        await run_in_threadpool(self.service.close)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            loc = tuple(p for p in err["loc"] if p not in ("query", "path", "body", "header"))
            parts.append(f"{format_location(loc)}: {err['msg']} (got {err.get('input')!r})")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(LomsongError)
    async def _lomsong(_request: Request, exc: LomsongError) -> JSONResponse:
        status = (
            404
            if isinstance(exc, NotFoundError)
            else 409
            if isinstance(exc, ConflictError)
            else 422
            if isinstance(exc, ValidationError)
            else 500
        )
        if status == 500:
            log.error("unhandled %s: %s", type(exc).__name__, exc)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return JSONResponse({"detail": str(exc)}, status_code=status)


class RequestTiming:
    """Pure ASGI middleware timing each request into the histogram, by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                route: Any = scope.get("route")
                path = getattr(route, "path", "unmatched")
                self.metrics.observe_request(path, scope["method"], time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, send_wrapper)
