"""``/api/v1/enrolments``: boxes ask to be enrolled, people decide, boxes collect their token.

Three kinds of caller, kept apart: the box asking (``POST``) holds only a provincial enrolment
key, which no other route takes; the box polling (``GET …/{id}``) holds only the poll secret it
was given, which no other route takes; the people deciding hold an admin token or a province
admin token of the box's province.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lomsong.collector import enrolments
from lomsong.collector.deps import Caller, Ctx, authenticate
from lomsong.collector.enrolment_keys import EnrolmentRefused
from lomsong.collector.head import HEAD_MARK
from lomsong.enrolwire import POLL_SECRET_PREFIX, EnrolAnswer, EnrolRequest, PollAnswer
from lomsong.wire import NAME_PATTERN

router = APIRouter(tags=["enrolments"])

_NO_STORE = {"Cache-Control": "no-store"}
EnrolmentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the enrolment's id")]


def _refused(exc: EnrolmentRefused) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return HTTPException(exc.status, detail=str(exc), headers=headers)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@router.post(
    "/api/v1/enrolments",
    status_code=201,
    response_model=EnrolAnswer,
    summary="A box asks to be enrolled (bearer: a provincial enrolment key)",
    responses={
        401: {"description": "no enrolment key, or one the collector does not know"},
        403: {"description": "key revoked, expired or used up; commune outside its province"},
        422: {"description": "invalid description or unknown commune"},
    },
)
async def enrol(request: Request, ctx: Ctx, body: EnrolRequest) -> JSONResponse:
    """Record the box as pending; answer the id and the secret it polls with (shown once)."""
    key = _bearer(request)
    if key is None:
        raise HTTPException(
            401, "Authorization: an enrolment key is needed", {"WWW-Authenticate": "Bearer"}
        )
    try:
        enrolment_id, secret, reused = await run_in_threadpool(
            enrolments.record, ctx.engine, key, body, clock=ctx.clock
        )
    except EnrolmentRefused as exc:
        raise _refused(exc) from None
    answer = EnrolAnswer(
        id=enrolment_id,
        status="pending",
        poll_url=f"/api/v1/enrolments/{enrolment_id}",
        poll_secret=secret,
        reused_machine=reused,
    )
    return JSONResponse(answer.model_dump(), status_code=201, headers=_NO_STORE)


@router.get("/api/v1/enrolments", summary="Enrolments the caller may decide")
def list_enrolments(
    ctx: Ctx,
    caller: Caller,
    status: Annotated[
        Literal["pending", "approved", "delivered", "rejected", "all"],
        Query(description="only enrolments in this state (pending by default)"),
    ] = "pending",
) -> dict[str, Any]:
    """Admins see every province's; a province admin its own provinces'."""
    try:
        rows = enrolments.list_enrolments(ctx.engine, caller, None if status == "all" else status)
    except EnrolmentRefused as exc:
        raise _refused(exc) from None
    return {"enrolments": rows, "count": len(rows)}


@router.get(
    "/api/v1/enrolments/{enrolment_id}",
    summary="One enrolment: for the box (bearer: its poll secret), its state or its token",
    responses={
        200: {"description": "the enrolment; to the box: pending, rejected, or its token"},
        410: {"description": "the box's token was already collected (it is given once)"},
    },
)
def get_enrolment(request: Request, ctx: Ctx, enrolment_id: EnrolmentId) -> Any:
    """With the poll secret, the box's answer (``PollAnswer``); the token is given once, to the
    first GET after approval (never to a HEAD). With an admin or province admin token, the
    enrolment as ``GET /api/v1/enrolments`` lists it."""
    token = _bearer(request)
    try:
        if token is not None and token.startswith(POLL_SECRET_PREFIX):
            answer: PollAnswer = enrolments.collect(
                ctx.engine,
                enrolment_id,
                token,
                clock=ctx.clock,
                deliver=not request.scope.get(HEAD_MARK, False),
            )
            return JSONResponse(answer.model_dump(), headers=_NO_STORE)
        caller = authenticate(request, ctx)
        return enrolments.get_enrolment(ctx.engine, caller, enrolment_id)
    except EnrolmentRefused as exc:
        raise _refused(exc) from None


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probe_id: Annotated[str, Field(pattern=NAME_PATTERN, description="e.g. cb-thuc-phan")]
    #: ``NAME:OPERATOR`` or ``NAME:OPERATOR@INTERFACE``; none: the proposed uplinks
    uplinks: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=16)] = []
    label: Annotated[str, Field(max_length=200)] | None = None
    #: update a probe of that id that is already registered (a box replaced)
    replace: bool = False


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


@router.post(
    "/api/v1/enrolments/{enrolment_id}/approve",
    summary="Approve a pending enrolment: register the probe with its uplinks",
)
def approve(
    ctx: Ctx,
    caller: Caller,
    enrolment_id: EnrolmentId,
    body: Approval,
) -> dict[str, Any]:
    try:
        done = enrolments.approve(
            ctx.engine,
            enrolment_id,
            caller,
            probe_id=body.probe_id,
            uplinks=body.uplinks,
            label=body.label,
            replace=body.replace,
            clock=ctx.clock,
        )
    except EnrolmentRefused as exc:
        raise _refused(exc) from None
    ctx.live.reload(ctx.engine)  # its first report is known at once
    return done


@router.post("/api/v1/enrolments/{enrolment_id}/reject", summary="Reject a pending enrolment")
def reject(
    ctx: Ctx,
    caller: Caller,
    enrolment_id: EnrolmentId,
    body: Rejection | None = None,
) -> dict[str, Any]:
    try:
        return enrolments.reject(
            ctx.engine,
            enrolment_id,
            caller,
            reason=body.reason if body else None,
            clock=ctx.clock,
        )
    except EnrolmentRefused as exc:
        raise _refused(exc) from None
