"""``POST /api/v1/reports``: the probes' batches come in here (DESIGN §6)."""

from __future__ import annotations

import logging

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from lomsong.collector import token_rotation
from lomsong.collector.auth import Principal
from lomsong.collector.deps import Context, bearer_token
from lomsong.collector.ingest import (
    IngestRejected,
    check_batch,
    decode_body,
    prepare,
    retry_after_header,
    validate_batch,
)
from lomsong.collector.store import Heard
from lomsong.collector.unavailable import unavailable_response
from lomsong.storage.database import unavailable
from lomsong.wire import ReportAck

router = APIRouter(tags=["ingest"])
log = logging.getLogger(__name__)
#: an answer that carries a new token is kept by no cache on the way
_NO_STORE = {"Cache-Control": "no-store"}

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
        503: {"description": "the database is away, locked or full; see Retry-After"},
    },
)
async def post_reports(request: Request) -> Response:
    """Validate the whole batch, then store it idempotently on (probe_id, seq).

    The body is the JSON of a ``ReportBatch``, plain or with ``Content-Encoding: gzip``. The
    batch is stored all or nothing; results already stored are counted as duplicates.
    """
    ctx: Context = request.app.state.ctx
    try:
        ack, principal, token = await _ingest(request, ctx)
    except IngestRejected as exc:
        ctx.metrics.rejected.labels(exc.reason).inc()
        return Response(
            orjson.dumps({"detail": exc.message}),
            status_code=exc.status,
            media_type="application/json",
            headers=exc.headers,
        )
    except Exception as exc:
        away = unavailable(exc)
        if away is None:
            raise
        # The token lookup, the registry reload or the store met the database away: refused
        # and counted like any other batch, and the agent keeps it until Retry-After.
        ctx.metrics.rejected.labels("unavailable").inc()
        return unavailable_response(request, away)
    ctx.metrics.batches.inc()
    ctx.metrics.results.labels("accepted").inc(ack.accepted)
    if ack.duplicates:
        ctx.metrics.results.labels("duplicate").inc(ack.duplicates)
    if principal.rotation_id is not None:
        ack.new_token = await _rotation(ctx, principal, token)
    return Response(
        orjson.dumps(ack.model_dump(exclude_none=True)),
        media_type="application/json",
        headers=_NO_STORE if ack.new_token else None,
    )


async def _rotation(ctx: Context, principal: Principal, token: str) -> str | None:
    """The new token to hand over, or None; a rotation the database cannot move now waits for
    the next report (the batch is stored: its answer must not fail for this)."""
    try:
        new = await run_in_threadpool(
            token_rotation.answer, ctx.engine, principal, token, clock=ctx.clock
        )
    except Exception as exc:
        if unavailable(exc) is None:
            log.exception("token rotation %s failed; the batch is stored", principal.rotation_id)
        else:
            log.warning("token rotation %s waits: the database is away", principal.rotation_id)
        return None
    if new is None:
        # completed (or nothing to give): the cached principals of the old and new tokens
        # must not outlive it on this replica
        ctx.auth.forget()
    return new


async def _ingest(request: Request, ctx: Context) -> tuple[ReportAck, Principal, str]:
    token = bearer_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    if principal is None or token is None:
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
    checked = check_batch(validate_batch(raw, limits), limits, received_at=ctx.clock())
    batch = checked.batch
    probe_id = batch["probe_id"]
    if probe_id != principal.probe_id:
        raise IngestRejected(
            403,
            "forbidden",
            f"probe_id: the token belongs to probe {principal.probe_id!r}, not {probe_id!r}",
        )
    if probe_id not in ctx.live.probes:
        # Registered after this collector loaded its registry?
        await run_in_threadpool(ctx.live.reload, ctx.engine)
        if probe_id not in ctx.live.probes:
            raise IngestRejected(404, "unknown_probe", f"probe_id: {probe_id!r} is not registered")
    through = ctx.live.known_stored(probe_id, checked.min_seq, checked.max_seq)
    floor = batch.get("spool_floor_seq")
    if through is not None and (floor is None or floor - 1 <= through):
        # Everything in it is stored (a re-send after a lost answer), and it moves no mark:
        # answered from memory, so that a probe retrying its backlog costs the collector no
        # transaction. That it was heard is written within a second.
        ctx.store.heard(
            Heard(
                probe_id,
                batch["boot_id"],
                batch["agent_version"],
                checked.received_at,
                checked.sent_at,
            )
        )
        ack = ReportAck(accepted=0, duplicates=len(checked.seqs), stored_through_seq=through)
        return ack, principal, token
    return await ctx.store.submit(prepare(checked)), principal, token


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestRejected(413, "too_large", f"body: more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
