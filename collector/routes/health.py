"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from lomsong.collector.deps import Ctx
from lomsong.collector.metrics import CONTENT_TYPE
from lomsong.collector.unavailable import DEFAULT_RETRY_AFTER_SECONDS, retry_after
from lomsong.errors import StorageError, StorageUnavailable
from lomsong.storage.database import check_ready, check_writable, head_revision

router = APIRouter(tags=["operations"])


# Liveness touches no database: a collector waiting out its database is alive, and
# restarting it would not bring the database back.
@router.get("/healthz", summary="The process is alive; says whether it runs the detector")
def healthz(ctx: Ctx) -> dict[str, str]:
    leader = ctx.outages is not None and ctx.outages.leader
    return {"status": "ok", "detector": "leader" if leader else "standby"}


@router.get("/readyz", summary="The database answers, its schema is current and it takes a write")
async def readyz(ctx: Ctx, response: Response) -> dict[str, str]:
    """Ready while a report would be stored: the same database, schema and disk.

    A probe write (``check_writable``) commits one heartbeat row; 503 with ``Retry-After``
    while it fails, so a balancer stops sending reports that would be refused anyway.
    """
    try:
        await run_in_threadpool(check_ready, ctx.engine)
        await run_in_threadpool(lambda: check_writable(ctx.engine, now=ctx.clock()))
    except StorageError as exc:
        wait = (
            retry_after(exc.kind)
            if isinstance(exc, StorageUnavailable)
            else DEFAULT_RETRY_AFTER_SECONDS
        )
        response.status_code = 503
        response.headers["Retry-After"] = str(wait)
        return {"status": "not ready", "reason": str(exc)}
    return {"status": "ready", "schema": head_revision()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.renderer.render(), media_type=CONTENT_TYPE)
