"""``POST /api/v1/reports``: the probes' batches come in here (DESIGN §6)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from lomsong.collector.deps import Context, bearer_token
from lomsong.collector.ingest import IngestRejected, decode_body, parse_batch, retry_after_header
from lomsong.wire import ReportAck

router = APIRouter(tags=["ingest"])

_ACK_EXAMPLE = {"accepted": 3, "duplicates": 0, "stored_through_seq": 1043}


@router.post(
    "/api/v1/reports",
    response_model=ReportAck,
    summary="Store a probe's batch of results",
    responses={
        200: {"content": {"application/json": {"example": _ACK_EXAMPLE}}},
        401: {"description": "missing, unknown or revoked token"},
        403: {"description": "the token belongs to another probe"},
        413: {"description": "body, inflated body or result count over the limit"},
        422: {"description": "invalid batch; the message names the field and the value"},
        429: {"description": "rate limit; see Retry-After"},
    },
)
async def post_reports(request: Request) -> Response:
    """Validate the whole batch, then store it idempotently on (probe_id, seq).

    The body is the JSON of a ``ReportBatch``, plain or with ``Content-Encoding: gzip``. The
    batch is stored all or nothing; results already stored are counted as duplicates.
    """
    ctx: Context = request.app.state.ctx
    try:
        ack = await _ingest(request, ctx)
    except IngestRejected as exc:
        ctx.metrics.rejected.labels(exc.reason).inc()
        return Response(
            orjson.dumps({"detail": exc.message}),
            status_code=exc.status,
            media_type="application/json",
            headers=exc.headers,
        )
    ctx.metrics.batches.inc()
    ctx.metrics.results.labels("accepted").inc(ack.accepted)
    if ack.duplicates:
        ctx.metrics.results.labels("duplicate").inc(ack.duplicates)
    return Response(orjson.dumps(ack.model_dump()), media_type="application/json")


async def _ingest(request: Request, ctx: Context) -> ReportAck:
    token = bearer_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    if principal is None:
        raise IngestRejected(
            401,
            "unauthorized",
            "Authorization: missing, unknown or revoked bearer token",
            {"WWW-Authenticate": "Bearer"},
        )
    if principal.role != "probe" or principal.probe_id is None:
        raise IngestRejected(
            403, "forbidden", f"Authorization: a {principal.role} token cannot send reports"
        )
    limits = ctx.settings.ingest
    wait = ctx.limiter.check(principal.probe_id)
    if wait > 0:
        raise IngestRejected(
            429,
            "rate_limited",
            f"probe_id: {principal.probe_id!r} is over {limits.rate_per_probe:g} requests/s",
            retry_after_header(wait),
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise IngestRejected(
            413, "too_large", f"body: {declared} bytes exceeds the limit of {limits.max_body_bytes}"
        )
    body = await _read_capped(request, limits.max_body_bytes)
    raw = decode_body(body, request.headers.get("content-encoding"), limits)
    batch = parse_batch(raw, limits, clock=ctx.clock)
    if batch.probe_id != principal.probe_id:
        raise IngestRejected(
            403,
            "forbidden",
            f"probe_id: the token belongs to probe {principal.probe_id!r}, not {batch.probe_id!r}",
        )
    if batch.probe_id not in ctx.live.probes:
        # Registered after this collector loaded its registry?
        await run_in_threadpool(ctx.live.reload, ctx.engine)
        if batch.probe_id not in ctx.live.probes:
            raise IngestRejected(
                404, "unknown_probe", f"probe_id: {batch.probe_id!r} is not registered"
            )
    return await ctx.store.submit(batch)


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestRejected(413, "too_large", f"body: more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
