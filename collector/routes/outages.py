"""``/api/v1/outages`` (history, scoped by province) and ``/api/v1/notifications`` (attempts)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from lomsong.collector.deps import Admin, Caller, Ctx, readable_provinces
from lomsong.collector.downloads import (
    RESPONSES,
    FormatQuery,
    LangQuery,
    Table,
    download,
    notes,
    stem,
)
from lomsong.collector.outage_sheet import header, outage_rows
from lomsong.errors import ValidationError
from lomsong.storage.schema import notification_attempts, outages
from lomsong.timefmt import iso, parse_time
from lomsong.wire import COMMUNE_CODE, NAME_PATTERN, PROVINCE_CODE
from lomsong.words import Language

router = APIRouter(tags=["outages"])


@router.get(
    "/api/v1/outages",
    summary="Outage history, newest first (JSON, CSV or XLSX)",
    response_model=None,
    responses=RESPONSES,
)
async def list_outages(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[str | None, Query(pattern=PROVINCE_CODE)] = None,
    commune: Annotated[str | None, Query(pattern=COMMUNE_CODE)] = None,
    operator: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    active: Annotated[
        bool | None, Query(description="only open (true) or closed (false) outages")
    ] = None,
    since: Annotated[str | None, Query(description="started at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    fmt: FormatQuery = "json",
    lang: LangQuery = "vi",
) -> dict[str, Any] | Response:
    """Outages the caller may read: a viewer sees only its provinces. With ``format=csv`` or
    ``xlsx``, a file with times in Vietnam's time and words for the codes."""
    allowed = readable_provinces(caller, province, "outages")
    query = select(outages).order_by(outages.c.started_at.desc()).limit(limit)
    if allowed is not None:
        query = query.where(outages.c.province_code.in_(sorted(allowed)))
    if province is not None:
        query = query.where(outages.c.province_code == province)
    if commune is not None:
        query = query.where(outages.c.commune_code == commune)
    if operator is not None:
        query = query.where(outages.c.operator == operator)
    if active is not None:
        query = query.where(
            outages.c.ended_at.is_(None) if active else outages.c.ended_at.is_not(None)
        )
    if since is not None:
        try:
            query = query.where(outages.c.started_at >= parse_time("since", since))
        except ValidationError as exc:
            raise HTTPException(422, detail=str(exc)) from None

    def fetch() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    rows = await run_in_threadpool(fetch)
    now = ctx.clock()
    if fmt != "json":
        return await download(_table(ctx, rows, now, lang, province, active), fmt)
    out = []
    for r in rows:
        info = ctx.live.probes.get(r["probe_id"])
        end = r["ended_at"] if r["ended_at"] is not None else now
        out.append(
            {
                "id": r["id"],
                "probe_id": r["probe_id"],
                "commune": {"code": r["commune_code"], "name": info.commune_name if info else None},
                "province": {
                    "code": r["province_code"],
                    "name": info.province_name if info else None,
                },
                "condition": r["condition"],
                "cause": r["cause"],
                "uplink": r["uplink"],
                "operator": r["operator"],
                "active": r["ended_at"] is None,
                "started_at": iso(r["started_at"]),
                "ended_at": iso(r["ended_at"]),
                "detected_at": iso(r["detected_at"]),
                "resolved_at": iso(r["resolved_at"]),
                "duration_seconds": round(end - r["started_at"], 3),
            }
        )
    return {"outages": out, "count": len(out)}


def _table(
    ctx: Ctx,
    rows: list[dict[str, Any]],
    now: float,
    lang: Language,
    province: str | None,
    active: bool | None,
) -> Table:
    names = {}
    for r in rows:
        info = ctx.live.probes.get(r["probe_id"])
        names[r["probe_id"]] = (info.commune_name, info.province_name) if info else (None, None)
    vi = lang == "vi"
    which = {None: None, True: ("đang-diễn-ra", "open"), False: ("đã-kết-thúc", "resolved")}
    state = which[active]
    everywhere = "toàn-quốc" if vi else "all"
    return Table(
        header(lang),
        outage_rows(rows, names, now, lang),
        stem=stem(("sự-cố", "outages"), lang, province or everywhere, state and state[not vi]),
        sheet="Sự cố" if vi else "Outages",
        notes_sheet="Ghi chú" if vi else "Notes",
        notes=notes(lang, now, **{("Tỉnh" if vi else "Province"): province or everywhere}),
    )


@router.get("/api/v1/notifications", summary="Every attempt to deliver an alert (admin)")
async def list_notifications(
    ctx: Ctx,
    _admin: Admin,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> dict[str, Any]:
    def fetch() -> list[dict[str, Any]]:
        query = (
            select(notification_attempts).order_by(notification_attempts.c.id.desc()).limit(limit)
        )
        with ctx.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    rows = await run_in_threadpool(fetch)
    return {
        "attempts": [
            {
                **r,
                "fingerprints": orjson.loads(r["fingerprints"]),
                "at": iso(r["at"]),
                "ok": bool(r["ok"]),
            }
            for r in rows
        ]
    }
