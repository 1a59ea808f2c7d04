"""The status page ``/`` and browser sign-in: ``/login``, ``/logout``, ``?token=``.

A browser cannot set an ``Authorization`` header from a link, so the pages also take the token
once, from the sign-in form (``POST /login``) or a ``?token=`` link, and keep it in an HttpOnly
cookie (SameSite=Lax); a ``?token=`` link answers 303 to the same address without the token, so
that it leaves the address bar and the history. The cookie is accepted for reading only (GET and
HEAD), on the pages and on the read API, so the exports linked from the pages open in the
browser too. Scripts keep using ``Authorization: Bearer``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from lomsong.collector.auth import Principal
from lomsong.collector.deps import TOKEN_COOKIE, Context, Ctx, request_token
from lomsong.collector.probe_markers import current_probes
from lomsong.maps import pages
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import communes, provinces

router = APIRouter(tags=["pages"], include_in_schema=False)

FORBIDDEN = ("Không có quyền", "Forbidden")


def page_gate(request: Request, ctx: Context) -> Principal | Response:
    """The caller of a page, or the response to send instead (sign-in, redirect, 403)."""
    here = _relative(request, drop_token=True)
    query_token = request.query_params.get("token")
    if query_token:
        principal = ctx.auth.authenticate(query_token)
        if principal is None:
            return _sign_in(
                here, "Mã truy cập không đúng hoặc đã bị thu hồi / Unknown or revoked token"
            )
        response = RedirectResponse(here, status_code=303)
        _set_cookie(response, query_token, request, ctx)
        return response
    token = request_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    if principal is None:
        return _sign_in(here, "")
    if principal.role == "probe":
        return forbidden(
            "Mã của trạm đo không xem được trang này / A probe token cannot read pages"
        )
    return principal


def who(caller: Principal) -> str:
    if caller.is_admin:
        return "Quản trị / Admin"
    return "Xem tỉnh / Viewer of: " + ", ".join(sorted(caller.provinces))


def forbidden(text: str, caller: Principal | None = None) -> HTMLResponse:
    return HTMLResponse(
        pages.message(FORBIDDEN, text, who=who(caller) if caller else ""), status_code=403
    )


@router.get("/", response_class=HTMLResponse, summary="Status page")
def status_page(
    request: Request,
    ctx: Ctx,
    province: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
) -> Response:
    """Provinces → communes with their probes' state, open outages, links to maps and exports."""
    gate = page_gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    caller = gate
    if province is not None and not caller.may_read_province(province):
        return forbidden(f"Tỉnh / province {province}: không có quyền / not allowed", caller)
    allowed = caller.readable_provinces()
    scope = {province} if province else allowed
    with ctx.engine.connect() as conn:
        names = dict(conn.execute(select(provinces.c.code, provinces.c.name)).all())
        counts: dict[str, int] = dict(
            conn.execute(
                select(communes.c.province_code, func.count()).group_by(communes.c.province_code)
            ).all()
        )
    now = ctx.clock()
    silent_after = ctx.settings.silent_after_seconds
    markers = current_probes(ctx.engine, ctx.live, scope, now=now, silent_after=silent_after)
    shown = sorted(names) if scope is None else sorted(c for c in scope if c in names)
    statuses = {c: pages.ProvinceStatus(c, names[c], counts.get(c, 0)) for c in shown}
    for m in markers:
        if m.province_code in statuses:
            statuses[m.province_code].probes.append(m)
    html = pages.status_page(
        list(statuses.values()),
        open_outages(ctx.engine, scope),
        now=now,
        who=who(caller),
        expanded=len(shown) <= 3,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.post("/login", response_class=HTMLResponse, summary="Sign in with a token")
async def login(request: Request, ctx: Ctx) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    if not token or ctx.auth.authenticate(token) is None:
        return _sign_in(
            target, "Mã truy cập không đúng hoặc đã bị thu hồi / Unknown or revoked token"
        )
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, token, request, ctx)
    return response


@router.get("/logout", summary="Sign out")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


def _sign_in(next_url: str, message: str) -> HTMLResponse:
    return HTMLResponse(
        pages.sign_in(next_url, message),
        status_code=401,
        headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
    )


def _set_cookie(response: Response, token: str, request: Request, ctx: Context) -> None:
    secure = request.url.scheme == "https" or ctx.settings.public_url.startswith("https://")
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/")


def _relative(request: Request, *, drop_token: bool) -> str:
    url = request.url.remove_query_params("token") if drop_token else request.url
    return url.path + (f"?{url.query}" if url.query else "")


def _safe_next(target: str) -> str:
    """Only a path of this site: never another host (``//host``, ``https://…``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
