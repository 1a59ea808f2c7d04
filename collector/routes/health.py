"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from lomsong.collector.deps import Ctx
from lomsong.collector.metrics import CONTENT_TYPE
from lomsong.errors import StorageError
from lomsong.storage.database import check_ready, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive; says whether it runs the detector")
def healthz(ctx: Ctx) -> dict[str, str]:
    leader = ctx.outages is not None and ctx.outages.leader
    return {"status": "ok", "detector": "leader" if leader else "standby"}


@router.get("/readyz", summary="The database answers and its schema is current")
async def readyz(ctx: Ctx, response: Response) -> dict[str, str]:
    try:
        await run_in_threadpool(check_ready, ctx.engine)
    except StorageError as exc:
        response.status_code = 503
        return {"status": "not ready", "reason": str(exc)}
    return {"status": "ready", "schema": head_revision()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.renderer.render(), media_type=CONTENT_TYPE)
