"""``create_app(settings)``: assembles the collector; no module-level app, engine or registry."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lomsong import __version__
from lomsong.collector.alerts.model import Receiver
from lomsong.collector.auth import Authenticator
from lomsong.collector.coverage_service import CoverageService
from lomsong.collector.deps import Context
from lomsong.collector.fleet_profiles import ProfileCache
from lomsong.collector.head import HeadAsGet
from lomsong.collector.ingest import IngestRejected, RateLimiter
from lomsong.collector.metrics import Metrics, MetricsRenderer
from lomsong.collector.pipeline import ReportPipeline
from lomsong.collector.routes import (
    availability,
    docs,
    enrolments,
    fleet,
    health,
    maps,
    outage_pages,
    outages,
    pages,
    probe_pages,
    probes,
    profiles,
    reports,
)
from lomsong.collector.routes import coverage as coverage_routes
from lomsong.collector.unavailable import unavailable_response
from lomsong.config.alerts import AlertsConfig
from lomsong.config.collector import CollectorSettings
from lomsong.errors import ConflictError, LomsongError, NotFoundError, ValidationError
from lomsong.storage.database import open_engine, unavailable
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
        engine = open_engine(
            settings.database_url,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_seconds=settings.sqlite_busy_timeout_seconds,
        )
    # one coverage for the API, the maps and the alerts' hamlets
    coverage_service = CoverageService(engine, clock=clock)
    pipeline = ReportPipeline(
        settings,
        engine,
        clock=clock,
        alerts=alerts,
        receivers=receivers,
        impact=coverage_service.impact,
    )
    metrics = Metrics(registry)
    ctx = Context(
        settings=settings,
        engine=engine,
        store=pipeline.store,
        live=pipeline.live,
        metrics=metrics,
        renderer=MetricsRenderer(
            pipeline.live, metrics, silent_after_seconds=settings.silent_after_seconds, clock=clock
        ),
        auth=Authenticator(
            engine,
            settings.admin_token.get_secret_value(),
            cache_seconds=settings.token_cache_seconds,
        ),
        limiter=RateLimiter(settings.ingest.rate_per_probe, settings.ingest.rate_burst),
        clock=clock,
        outages=pipeline.feed,
        pipeline=pipeline,
        coverage_source=coverage,
        coverage=coverage_service,
        profiles=ProfileCache(engine),
    )
    ctx.renderer.extra = pipeline.availability_gauges.render

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pipeline.start()
        try:
            yield
        finally:
            await pipeline.stop()
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
        # served by routes/docs.py from an installed package, not from a CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    for routes in (
        reports,
        probes,
        enrolments,
        fleet,
        profiles,
        outages,
        availability,
        coverage_routes,
        health,
        pages,
        outage_pages,
        probe_pages,
        maps,
        docs,
    ):
        app.include_router(routes.router)
    _install_error_handlers(app)
    app.add_middleware(RequestTiming, metrics=metrics)
    app.add_middleware(HeadAsGet)  # outermost: everything inside sees a GET
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            loc = tuple(p for p in err["loc"] if p not in ("query", "path", "body", "header"))
            parts.append(f"{format_location(loc)}: {err['msg']} (got {err.get('input')!r})")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    # The database away, locked or full is nobody's bug: 503 with Retry-After, wherever the
    # error surfaces (a route's query, the token lookup, the store). Any other database
    # error is a bug: a 500 here, with its traceback in the log (raised on, it would reach
    # the client as a reset connection rather than an answer).
    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> Response:
        away = unavailable(exc)
        if away is None:
            log.error("database error: %s", type(exc).__name__, exc_info=exc)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return unavailable_response(request, away)

    @app.exception_handler(LomsongError)
    async def _lomsong(request: Request, exc: LomsongError) -> Response:
        if isinstance(exc, IngestRejected):
            # POST /api/v1/reports answers its own rejections (and counts them); one raised
            # elsewhere still carries the status it means.
            return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)
        away = unavailable(exc)
        if away is not None:
            return unavailable_response(request, away)
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
