"""``/probes/{probe_id}``: a commune centre's page, for whoever may read its province.

Answers as ``/api/v1/probes/{probe_id}`` does: 404 for a probe that is not registered, 403 for
one in a province the caller may not read. Signing in, and refusing a probe's token, are the
status page's business (``pages.page_gate``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from lomsong.collector.deps import Ctx
from lomsong.collector.probe_history import probe_history, probe_outages
from lomsong.collector.probe_markers import current_probes
from lomsong.collector.routes.pages import forbidden, page_gate, status_data, who
from lomsong.collector.status_history import BAR_DAYS, availability_bars
from lomsong.maps import pages
from lomsong.maps.probe_page import probe_page
from lomsong.storage.schema import provinces
from lomsong.wire import NAME_PATTERN

router = APIRouter(tags=["pages"], include_in_schema=False)

NOT_FOUND = ("Không tìm thấy", "Not found")
Range = Literal["24h", "7d", "30d", "1y"]


@router.get("/probes/{probe_id}", response_class=HTMLResponse, summary="A centre's page")
def probe(
    request: Request,
    ctx: Ctx,
    probe_id: Annotated[str, Path(pattern=NAME_PATTERN)],
    range_key: Annotated[Range, Query(alias="range")] = "24h",
) -> Response:
    """Its state and links, 90-day bar and uptime, latency and signal charts, outages."""
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    caller = gate
    info = ctx.live.probes.get(probe_id)
    if info is None:
        ctx.live.reload(ctx.engine)
        info = ctx.live.probes.get(probe_id)
    if info is None:
        text = f"Trạm đo / probe {probe_id}: chưa đăng ký / not registered"
        return HTMLResponse(pages.message(NOT_FOUND, text, who=who(caller)), status_code=404)
    if not caller.may_read_province(info.province_code):
        code = info.province_code
        return forbidden(f"Tỉnh / province {code}: không có quyền / not allowed", caller)
    now = ctx.clock()
    silent_after = ctx.settings.silent_after_seconds
    [marker] = [
        m
        for m in current_probes(
            ctx.engine, ctx.live, {info.province_code}, now=now, silent_after=silent_after
        )
        if m.id == probe_id
    ]
    with ctx.engine.connect() as conn:
        names = dict(conn.execute(select(provinces.c.code, provinces.c.name)).all())
    operators = {u.name: u.operator for u in info.uplinks}
    history = probe_history(ctx.engine, probe_id, operators, range_key, now)
    rows = probe_outages(ctx.engine, probe_id, now - BAR_DAYS * 86_400)
    views = status_data(ctx).views(rows, names, now, impacts=False)
    bars = availability_bars(ctx.engine, [probe_id], now=now).centre(probe_id)
    html = probe_page(
        marker,
        names.get(info.province_code, info.province_code),
        bars,
        history,
        views,
        now=now,
        who=who(caller),
        outage_days=BAR_DAYS,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
