"""What the routes share: the collector's context and the caller's identity."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine

from lomsong.collector.auth import Authenticator, Principal
from lomsong.collector.coverage_service import CoverageService
from lomsong.collector.fleet_profiles import ProfileCache
from lomsong.collector.ingest import RateLimiter
from lomsong.collector.live import LiveState
from lomsong.collector.metrics import Metrics, MetricsRenderer
from lomsong.collector.outage_feed import OutageFeed
from lomsong.collector.registry import ProbeInfo
from lomsong.collector.store import ReportStore
from lomsong.config.collector import CollectorSettings

if TYPE_CHECKING:
    from lomsong.collector.map_coverage import CoverageSource
    from lomsong.collector.map_service import MapService
    from lomsong.collector.pipeline import ReportPipeline

#: The cookie a browser keeps its token in once signed in (``/login`` or ``?token=``). It is
#: accepted only for reading (GET and HEAD), so a page on another site can change nothing.
TOKEN_COOKIE = "lomsong_token"


@dataclass
class Context:
    """Everything one collector instance owns; built by ``create_app``, no globals."""

    settings: CollectorSettings
    engine: Engine
    store: ReportStore
    live: LiveState
    metrics: Metrics
    renderer: MetricsRenderer
    auth: Authenticator
    limiter: RateLimiter
    clock: Callable[[], float] = field(default=time.time)
    #: the detector's feed: leader or standby, the running detector
    outages: OutageFeed | None = None
    #: the path of a report from the store to the notifications (``pipeline.py``)
    pipeline: ReportPipeline | None = None
    #: where the maps get coverage; the collector's ``coverage`` service when None
    coverage_source: CoverageSource | None = None
    #: built on the first map request (it needs the geo extra)
    maps: MapService | None = None
    maps_lock: threading.Lock = field(default_factory=threading.Lock)
    coverage: CoverageService | None = None
    #: the check profiles' layers, and what each probe is served (``fleet_profiles.py``)
    profiles: ProfileCache | None = None


def coverage_of(ctx: Context) -> CoverageService:
    """The collector's coverage service (``create_app`` always makes one)."""
    assert ctx.coverage is not None
    return ctx.coverage


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(get_context)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_token(request: Request) -> str | None:
    """The bearer token; for reading (GET, HEAD) also the sign-in cookie of a browser."""
    token = bearer_token(request)
    if token is None and request.method in ("GET", "HEAD"):
        token = request.cookies.get(TOKEN_COOKIE) or None
    return token


def authenticate(request: Request, ctx: Context) -> Principal:
    """The caller, or 401 for a missing, unknown or revoked token."""
    token = request_token(request)
    principal = ctx.auth.authenticate(token) if token else None
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="Authorization: missing, unknown or revoked bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_principal(request: Request, ctx: Ctx) -> Principal:
    return authenticate(request, ctx)


Caller = Annotated[Principal, Depends(require_principal)]


def require_admin(caller: Caller) -> Principal:
    if not caller.is_admin:
        raise HTTPException(status_code=403, detail=f"role {caller.role!r}: admin role required")
    return caller


Admin = Annotated[Principal, Depends(require_admin)]


def readable_provinces(caller: Principal, province: str | None, what: str) -> frozenset[str] | None:
    """The provinces a read of ``what`` (its name in the error) may cover: 403 for a probe's
    token, and naming the field when ``province`` is asked for and the caller may not read it;
    else every province the caller may read (None: all of them)."""
    if caller.role == "probe":
        raise HTTPException(403, detail=f"Authorization: a probe token cannot read {what}")
    allowed = caller.readable_provinces()
    if province is not None and allowed is not None and province not in allowed:
        raise HTTPException(403, detail=f"province: token may not read province {province!r}")
    return allowed


def check_may_read_probe(caller: Principal, probe: ProbeInfo) -> None:
    """403 unless the caller may read this probe: admin, a viewer of its province, or itself."""
    if caller.role == "probe":
        if caller.probe_id == probe.id:
            return
        raise HTTPException(
            status_code=403,
            detail=f"probe_id: token of probe {caller.probe_id!r} may not read {probe.id!r}",
        )
    if not caller.may_read_province(probe.province_code):
        raise HTTPException(
            status_code=403,
            detail=(
                f"province: token may not read province {probe.province_code!r} "
                f"(probe {probe.id!r})"
            ),
        )
