"""``/outages/{outage_id}``: one outage's page, for whoever may read its province.

Answers as the read API does for a probe: 404 for an outage that does not exist, 403 for one in
a province the caller may not read (``/api/v1/outages`` scopes viewers the same way). Signing
in and a probe's token are the status page's business (``pages.page_gate``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from lomsong.collector.deps import Ctx
from lomsong.collector.routes.pages import forbidden, page_gate, status_data, who
from lomsong.collector.status_data import find_outage, notifications_of
from lomsong.maps import pages
from lomsong.maps.outage_page import outage_page
from lomsong.storage.schema import provinces

router = APIRouter(tags=["pages"], include_in_schema=False)

#: the outage ids the detector makes, with room for ids another version made
OUTAGE_ID = r"^[A-Za-z0-9_.:-]{1,32}$"
NOT_FOUND = ("Không tìm thấy", "Not found")


@router.get("/outages/{outage_id}", response_class=HTMLResponse, summary="An outage's page")
def outage(
    request: Request, ctx: Ctx, outage_id: Annotated[str, Path(pattern=OUTAGE_ID)]
) -> Response:
    """Its facts, the hamlets it cuts off, and its timeline with every notification."""
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    caller = gate
    row = find_outage(ctx.engine, outage_id)
    if row is None:
        text = f"Sự cố / outage {outage_id}: không có / does not exist"
        return HTMLResponse(pages.message(NOT_FOUND, text, who=who(caller)), status_code=404)
    if not caller.may_read_province(row["province_code"]):
        code = row["province_code"]
        return forbidden(f"Tỉnh / province {code}: không có quyền / not allowed", caller)
    with ctx.engine.connect() as conn:
        names = dict(conn.execute(select(provinces.c.code, provinces.c.name)).all())
    now = ctx.clock()
    [view] = status_data(ctx).views([row], names, now)
    html = outage_page(view, notifications_of(ctx.engine, outage_id), now=now, who=who(caller))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
