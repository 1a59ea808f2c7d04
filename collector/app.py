"""``create_app(settings)``: assembles the collector; no module-level app, engine or registry."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lomsong import __version__
from lomsong.collector.auth import Authenticator
from lomsong.collector.database import check_ready, open_engine
from lomsong.collector.deps import Context
from lomsong.collector.ingest import RateLimiter
from lomsong.collector.live import LiveState
from lomsong.collector.metrics import Metrics, MetricsRenderer
from lomsong.collector.routes import health, probes, reports
from lomsong.collector.store import ReportStore
from lomsong.config.collector import CollectorSettings
from lomsong.errors import ConflictError, LomsongError, NotFoundError, ValidationError
from lomsong.wire import format_location

log = logging.getLogger(__name__)


def create_app(
    settings: CollectorSettings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
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
    """
    owns_engine = engine is None
    if engine is None:
        engine = open_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    live = LiveState()
    metrics = Metrics(registry)
    ctx = Context(
        settings=settings,
        engine=engine,
        store=ReportStore(engine, on_commit=live.apply),
        live=live,
        metrics=metrics,
        renderer=MetricsRenderer(
            live, metrics, report_interval_seconds=settings.report_interval_seconds, clock=clock
        ),
        auth=Authenticator(
            engine,
            settings.admin_token.get_secret_value(),
            cache_seconds=settings.token_cache_seconds,
        ),
        limiter=RateLimiter(settings.ingest.rate_per_probe, settings.ingest.rate_burst),
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(check_ready, engine)
        await run_in_threadpool(live.reload, engine)
        ctx.store.start()
        scheduler = AsyncIOScheduler(timezone="UTC")
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
    app.include_router(health.router)
    _install_error_handlers(app)
    app.add_middleware(RequestTiming, metrics=metrics)
    return app


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
                self.metrics.request_seconds.labels(path, scope["method"]).observe(
                    time.perf_counter() - start
                )
            await send(message)

        await self.app(scope, receive, send_wrapper)
