"""``/maps/`` (index), ``/maps/province/{code}`` and ``/maps/national``: cached, with ETags.

The geo stack (geopandas, folium) is imported on the first map request, so a collector
installed without the geo extra serves everything else and answers 503 here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from lomsong.collector.deps import Context, Ctx, coverage_of
from lomsong.collector.routes.pages import forbidden, page_gate, who
from lomsong.errors import NotFoundError
from lomsong.maps import pages
from lomsong.storage.schema import provinces
from lomsong.wire import PROVINCE_CODE

if TYPE_CHECKING:
    from lomsong.collector.map_service import MapService, Page

router = APIRouter(tags=["maps"], include_in_schema=False)

NATIONAL = ("Bản đồ toàn quốc / National map", "/maps/national")
STATUS = ("Trang trạng thái / Status page", "/")
INDEX = ("Các bản đồ / All maps", "/maps/")


@router.get("/maps/", response_class=HTMLResponse, summary="Map index")
def index(request: Request, ctx: Ctx) -> Response:
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    allowed = gate.readable_provinces()
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(provinces.c.code, provinces.c.name).order_by(provinces.c.code))
        listed = [(c, n) for c, n in rows if allowed is None or c in allowed]
    return HTMLResponse(pages.map_index(listed, who=who(gate), national=True))


@router.get("/maps/province/{code}", summary="The map of one province")
async def province(
    request: Request,
    ctx: Ctx,
    code: Annotated[str, Path(pattern=PROVINCE_CODE, description="province code, e.g. 04")],
) -> Response:
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    if not gate.may_read_province(code):
        return forbidden(f"Tỉnh / province {code}: không có quyền / not allowed", gate)
    service = await run_in_threadpool(_service, ctx)
    if isinstance(service, Response):
        return service
    links = [NATIONAL, STATUS, INDEX, *_exports(code)]
    try:
        page = await run_in_threadpool(service.province_page, code, links)
    except NotFoundError as exc:
        return HTMLResponse(
            pages.message(("Không tìm thấy", "Not found"), str(exc), who=who(gate)),
            status_code=404,
        )
    return _send(page, request)


@router.get("/maps/national", summary="The national overview")
async def national(request: Request, ctx: Ctx) -> Response:
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    service = await run_in_threadpool(_service, ctx)
    if isinstance(service, Response):
        return service
    page = await run_in_threadpool(
        service.national_page, gate.readable_provinces(), [STATUS, INDEX]
    )
    return _send(page, request)


def _exports(code: str) -> list[tuple[str, str]]:
    """Downloads of the province's tables, as files for Excel (and JSON for programs)."""
    hamlets = f"/api/v1/hamlets?province={code}"
    summary = f"/api/v1/coverage/summary?province={code}"
    return [
        ("Thôn/bản / Hamlets: CSV", f"{hamlets}&format=csv"),
        ("XLSX", f"{hamlets}&format=xlsx"),
        ("Tổng hợp / Summary: CSV", f"{summary}&format=csv"),
        ("XLSX", f"{summary}&format=xlsx"),
    ]


def _send(page: Page, request: Request) -> Response:
    headers = {
        "ETag": page.etag,
        "Cache-Control": "private, no-cache",
        "Vary": "Authorization, Cookie",
    }
    if page.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(page.html, media_type="text/html; charset=utf-8", headers=headers)


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def _service(ctx: Context) -> MapService | Response:
    with ctx.maps_lock:
        if ctx.maps is not None:
            return ctx.maps
        try:
            from lomsong.collector.map_coverage import ServiceCoverageSource
            from lomsong.collector.map_service import MapService
            from lomsong.maps.inputs import TileSource
        except ImportError as exc:
            return HTMLResponse(
                pages.message(
                    ("Bản đồ chưa dùng được", "Maps unavailable"),
                    f"Cần gói geo / the geo extra is needed: pip install 'lomsong[geo]' ({exc})",
                ),
                status_code=503,
            )
        s = ctx.settings
        ctx.maps = MapService(
            ctx.engine,
            ctx.live,
            ctx.coverage_source or ServiceCoverageSource(coverage_of(ctx)),
            tiles=TileSource(s.maps.tile_url, s.maps.tile_attribution, s.maps.tile_max_zoom),
            silent_after=s.silent_after_seconds,
            clock=ctx.clock,
        )
        return ctx.maps
