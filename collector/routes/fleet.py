"""The fleet: ``/api/v1/fleet`` (JSON, CSV, XLSX), the page ``/fleet``, and token rotation
``POST /api/v1/probes/{probe_id}/token-rotation``.

Who sees what: as the outages, a viewer (or province admin) reads its provinces, the admin all,
a probe nothing. A rotation is asked by the admin, or by a province admin for a probe of its
provinces: the same people who approve a box into a probe give its token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from lomsong.collector.auth import Principal
from lomsong.collector.deps import Caller, Ctx
from lomsong.collector.downloads import RESPONSES, FormatQuery, LangQuery, Table, download, notes
from lomsong.collector.downloads import stem as file_stem
from lomsong.collector.fleet import fleet_status
from lomsong.collector.routes.pages import forbidden, page_gate, who
from lomsong.collector.token_rotation import request_rotation
from lomsong.maps.fleet_model import Fleet
from lomsong.maps.fleet_page import fleet_page, sheet_header, sheet_rows
from lomsong.wire import NAME_PATTERN, PROVINCE_CODE

router = APIRouter(tags=["fleet"])

ProvinceQuery = Annotated[
    str | None, Query(pattern=PROVINCE_CODE, description="only this province, e.g. 04")
]


def _scope(caller: Principal, province: str | None) -> set[str] | None:
    """The provinces to show, or 403; None: every province (the admin without a filter)."""
    if caller.role == "probe":
        raise HTTPException(403, detail="Authorization: a probe token cannot read the fleet")
    if province is not None and not caller.may_read_province(province):
        raise HTTPException(403, detail=f"province: token may not read province {province!r}")
    allowed = caller.readable_provinces()
    return {province} if province else (None if allowed is None else set(allowed))


def _gather(ctx: Ctx, scope: set[str] | None) -> Fleet:
    return fleet_status(
        ctx.engine, scope, now=ctx.clock(), silent_after=ctx.settings.silent_after_seconds
    )


@router.get(
    "/api/v1/fleet",
    summary="Every probe's agent version, last heard, clock skew, spool and uptime",
    response_model=None,
    responses=RESPONSES,
)
async def get_fleet(
    ctx: Ctx,
    caller: Caller,
    province: ProvinceQuery = None,
    fmt: FormatQuery = "json",
    lang: LangQuery = "vi",
) -> Response:
    """Silent and outdated agents first (``marks`` says why). A viewer sees its provinces.
    With ``format=csv`` or ``xlsx``, a file with local times and headers in ``lang``."""
    scope = _scope(caller, province)
    fleet = await run_in_threadpool(_gather, ctx, scope)
    if fmt == "json":
        return JSONResponse(fleet.as_json(), headers={"Cache-Control": "no-store"})
    vi = lang == "vi"
    table = Table(
        sheet_header(lang),
        sheet_rows(fleet, lang),
        stem=file_stem(("trạm-đo", "fleet"), lang, province),
        sheet="Trạm đo" if vi else "Fleet",
        notes_sheet="Ghi chú" if vi else "Notes",
        notes=notes(
            lang,
            fleet.now,
            **{("Phiên bản mới nhất" if vi else "Newest version"): fleet.newest_version or ""},
        ),
    )
    return await download(table, fmt)


@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False, tags=["pages"])
def fleet_html(request: Request, ctx: Ctx, province: ProvinceQuery = None) -> Response:
    """The fleet page: phone first, the probes that need someone on top."""
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    caller = gate
    if province is not None and not caller.may_read_province(province):
        return forbidden(f"Tỉnh / province {province}: không có quyền / not allowed", caller)
    fleet = _gather(ctx, _scope(caller, province))
    return HTMLResponse(
        fleet_page(fleet, who=who(caller), province=province),
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/api/v1/probes/{probe_id}/token-rotation",
    status_code=201,
    summary="Rotate a probe's token: the agent gets a new one with its next report's answer",
    responses={
        403: {"description": "not the admin, nor a province admin of the probe's province"},
        404: {"description": "no such probe"},
        409: {"description": "a rotation of this probe is still pending, or it has no token"},
    },
)
def rotate_token(
    ctx: Ctx,
    caller: Caller,
    probe_id: Annotated[str, Path(pattern=NAME_PATTERN, description="e.g. cb-thuc-phan")],
) -> dict[str, Any]:
    """Record the rotation; the old token keeps working until the agent has used the new one.
    ``lomsong token list`` and the fleet view show it until then."""
    probe = ctx.live.probes.get(probe_id)
    if probe is None:
        ctx.live.reload(ctx.engine)
        probe = ctx.live.probes.get(probe_id)
    if probe is None:
        raise HTTPException(404, detail=f"probe_id: {probe_id!r} is not registered")
    if not caller.may_enrol_in(probe.province_code):
        raise HTTPException(
            403,
            detail=(
                f"probe_id: a {caller.role} token may not rotate the token of {probe_id!r} "
                f"(province {probe.province_code})"
            ),
        )
    by = caller.role if caller.token_id is None else f"{caller.role} token {caller.token_id}"
    return request_rotation(ctx.engine, probe_id, by=by, clock=ctx.clock).as_json()
