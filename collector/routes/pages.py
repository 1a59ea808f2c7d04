"""The status page ``/`` and browser sign-in: ``/login``, ``/logout``, ``?token=``.

A browser cannot set an ``Authorization`` header from a link, so the pages also take the token
once and keep it in a cookie: HttpOnly, SameSite=Strict, accepted for reading only (GET and
HEAD), on the pages and on the read API, so the exports linked from the pages open in the
browser too. Scripts keep using ``Authorization: Bearer``. Another site must not be able to sign
a browser in or out (``sessions.py`` has the checks):

- ``POST /login`` (the form, ``GET /login``) signs in only when ``Origin`` (else ``Referer``)
  is this collector: the address the request came to, or ``public_url``; otherwise 403. The form
  carries no CSRF token: the origin check alone refuses every cross-site post, and a token
  would need a cookie before sign-in for nothing more.
- ``?token=`` on a page signs in at once when the officer opened the link (``Sec-Fetch-Site:
  none``: typed, a bookmark, a chat or mail application) or a page of this site did; from
  another site, or from a browser that does not say, the token waits in a cookie for
  ``/login`` and the officer confirms it with a button. Either way a 303 takes the token out of
  the address bar and the history.
- ``POST /logout`` signs out, from this site's pages only; ``GET /logout`` shows the button.
- Strict means a link from a webmail arrives without the cookie: a page answers such an arrival
  with a page that reopens it at once from this site (``?reopened=1``, which a 303 then drops),
  and the cookie comes along; only if it still does not come, the sign-in form.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from lomsong.collector import sessions
from lomsong.collector.auth import Principal
from lomsong.collector.deps import Context, Ctx, request_token
from lomsong.collector.probe_markers import current_probes
from lomsong.collector.status_data import (
    RESOLVED_DAYS,
    StatusData,
    pending_enrolments,
    resolved_outages,
)
from lomsong.collector.status_history import availability_bars
from lomsong.maps import pages
from lomsong.maps.status_model import ProvinceStatus
from lomsong.maps.status_page import status_page as status_html
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import communes, provinces, tokens
from lomsong.wire import PROVINCE_CODE

router = APIRouter(tags=["pages"], include_in_schema=False)

FORBIDDEN = ("Không có quyền", "Forbidden")
UNKNOWN_TOKEN = "Mã truy cập không đúng hoặc đã bị thu hồi / Unknown or revoked token"


def page_gate(request: Request, ctx: Context) -> Principal | Response:
    """The caller of a page, or the response to send instead (sign-in, redirect, 403)."""
    here = _relative(request)
    public_url = ctx.settings.public_url
    query_token = request.query_params.get("token")
    if query_token:
        principal = ctx.auth.authenticate(query_token)
        if principal is None:
            return _sign_in(here, UNKNOWN_TOKEN)
        if sessions.started_here(request):
            response: Response = RedirectResponse(here, status_code=303)
            sessions.set_session(response, query_token, request, public_url)
            return response
        # Another site's link (or a browser too old to say): ask on a page of this site first.
        # The token waits in a cookie, not in the address, so that it leaves the history too.
        response = RedirectResponse("/login?" + urlencode({"next": here}), status_code=303)
        sessions.set_pending(response, query_token, request, public_url)
        return response
    token = request_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    reopened = sessions.REOPENED in request.query_params
    if principal is None:
        if token is None and not reopened and sessions.arrived_from_another_site(request):
            return _reopen(here)
        return _sign_in(here, "")
    if reopened:
        return RedirectResponse(here, status_code=303)
    if principal.role == "probe":
        return forbidden(
            "Mã của trạm đo không xem được trang này / A probe token cannot read pages"
        )
    return principal


def who(caller: Principal) -> str:
    if caller.is_admin:
        return "Quản trị / Admin"
    if caller.role == "probe":
        return f"Trạm đo / Probe: {caller.probe_id}"
    return "Xem tỉnh / Viewer of: " + ", ".join(sorted(caller.provinces))


def forbidden(text: str, caller: Principal | None = None) -> HTMLResponse:
    return HTMLResponse(
        pages.message(FORBIDDEN, text, who=who(caller) if caller else ""), status_code=403
    )


@router.get("/", response_class=HTMLResponse, summary="Status page")
def status_page(
    request: Request,
    ctx: Ctx,
    province: Annotated[str | None, Query(pattern=PROVINCE_CODE)] = None,
) -> Response:
    """What is wrong now, worst first; provinces → centres with problems first; maintenance in
    force; the outages of the last days. A viewer of one province sees that province's page."""
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
    statuses = {c: ProvinceStatus(c, names[c], counts.get(c, 0)) for c in shown}
    for m in markers:
        if m.province_code in statuses:
            statuses[m.province_code].probes.append(m)
    data = status_data(ctx)
    open_rows = open_outages(ctx.engine, scope)
    for row in open_rows:
        if row["province_code"] in statuses:
            statuses[row["province_code"]].open_outages += 1
    since = now - RESOLVED_DAYS * 86_400
    resolved = data.views(resolved_outages(ctx.engine, scope, since), names, now, impacts=False)
    # one query for every centre's 90 days, whatever their number
    bars = availability_bars(
        ctx.engine, None if scope is None else [m.id for m in markers], now=now
    )
    html = status_html(
        list(statuses.values()),
        data.views(open_rows, names, now),
        resolved,
        data.maintenance(now, scope),
        now=now,
        who=who(caller),
        expanded=len(shown) <= 3,
        title=names[shown[0]] if len(shown) == 1 else "",
        resolved_days=RESOLVED_DAYS,
        availability=bars,
        enrolments=pending_enrolments(ctx.engine, caller),
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def status_data(ctx: Context) -> StatusData:
    alerts = ctx.pipeline.alerts if ctx.pipeline is not None else None
    return StatusData(ctx.engine, ctx.live, ctx.coverage, alerts)


@router.get("/login", response_class=HTMLResponse, summary="Sign-in form")
def login_page(
    request: Request,
    ctx: Ctx,
    next_url: Annotated[str, Query(alias="next")] = "/",
) -> Response:
    """The sign-in form; or, for a ``?token=`` link from another site, the question whether to
    sign in with it."""
    target = _safe_next(next_url)
    pending = request.cookies.get(sessions.PENDING_COOKIE)
    principal = ctx.auth.authenticate(pending) if pending else None
    if principal is None:
        return _sign_in(target, "", status_code=200)
    return HTMLResponse(
        pages.confirm_sign_in(target, _token_facts(ctx, principal)), headers=sessions.NO_FRAMES
    )


@router.post("/login", response_class=HTMLResponse, summary="Sign in with a token")
async def login(request: Request, ctx: Ctx) -> Response:
    """Signs in with the token typed in the form, or the one a link left waiting (``pending``),
    only when posted from a page of this collector."""
    if not sessions.from_this_site(request, ctx.settings.public_url):
        return _refused()
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    target = _safe_next((form.get("next") or ["/"])[0])
    if form.get("pending"):
        token = request.cookies.get(sessions.PENDING_COOKIE, "")
        unknown = "Liên kết đã hết hạn, hãy mở lại / The link has expired, open it again"
    else:
        token = (form.get("token") or [""])[0].strip()
        unknown = UNKNOWN_TOKEN
    if not token or ctx.auth.authenticate(token) is None:
        response: Response = _sign_in(target, unknown)
    else:
        response = RedirectResponse(target, status_code=303)
        sessions.set_session(response, token, request, ctx.settings.public_url)
    sessions.drop_pending(response, request, ctx.settings.public_url)
    return response


@router.get("/logout", response_class=HTMLResponse, summary="Sign-out button")
def logout_page(request: Request, ctx: Ctx) -> Response:
    """A link cannot sign out (another site could link here): this page has the button."""
    token = request_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    return HTMLResponse(
        pages.sign_out(who(principal) if principal else ""), headers=sessions.NO_FRAMES
    )


@router.post("/logout", summary="Sign out")
def logout(request: Request, ctx: Ctx) -> Response:
    if not sessions.from_this_site(request, ctx.settings.public_url):
        return _refused()
    response = RedirectResponse("/", status_code=303)
    sessions.end_session(response, request, ctx.settings.public_url)
    return response


def _sign_in(next_url: str, message: str, *, status_code: int = 401) -> HTMLResponse:
    return HTMLResponse(
        pages.sign_in(next_url, message),
        status_code=status_code,
        headers={"WWW-Authenticate": "Bearer", **sessions.NO_FRAMES},
    )


def _refused() -> HTMLResponse:
    return HTMLResponse(
        pages.message(
            ("Bị từ chối", "Refused"),
            "Yêu cầu này không gửi từ trang của lomsong / "
            "This request was not sent from a lomsong page",
        ),
        status_code=403,
        headers=sessions.NO_FRAMES,
    )


def _reopen(here: str) -> HTMLResponse:
    url = here + ("&" if "?" in here else "?") + f"{sessions.REOPENED}=1"
    return HTMLResponse(pages.reopen(url), headers={"Cache-Control": "no-store"})


def _token_facts(ctx: Context, principal: Principal) -> list[tuple[str, str]]:
    """Whose token a link carries, for the officer to recognise before signing in."""
    with ctx.engine.connect() as conn:
        names = dict(conn.execute(select(provinces.c.code, provinces.c.name)).all())
        label = (
            conn.execute(select(tokens.c.label).where(tokens.c.id == principal.token_id)).scalar()
            if principal.token_id is not None
            else None
        )
    facts = [("Quyền / Role", ROLES.get(principal.role, principal.role))]
    if principal.role in ("viewer", "province_admin"):
        shown = (f"{names.get(c, '?')} ({c})" for c in sorted(principal.provinces))
        facts.append(("Tỉnh / Provinces", ", ".join(shown)))
    if principal.probe_id:
        facts.append(("Trạm đo / Probe", principal.probe_id))
    if label:
        facts.append(("Nhãn / Label", label))
    return facts


ROLES = {
    "admin": "Quản trị / Admin",
    "viewer": "Xem tỉnh / Viewer",
    "province_admin": "Quản trị tỉnh / Province admin",
    "probe": "Trạm đo / Probe",
}


def _relative(request: Request) -> str:
    """This page's address without the token and without the reopen marker."""
    url = request.url.remove_query_params(["token", sessions.REOPENED])
    return url.path + (f"?{url.query}" if url.query else "")


def _safe_next(target: str) -> str:
    """Only a path of this site: never another host (``//host``, ``https://…``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
