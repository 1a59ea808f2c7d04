"""``/api/v1/profiles``: the layers of check profiles; ``/api/v1/probes/{id}/config``: what a
probe is served.

People manage layers: the admin every layer, a province admin the layers of their provinces
(its province, its communes, its probes), never the national one; viewers read the national
layer and their provinces'. A layer is sent as JSON, or as TOML with ``Content-Type:
application/toml`` (what ``lomsong fleet profile set --file`` reads).

The agent asks for its effective configuration with ``If-None-Match``: a strong ``ETag`` (the
version, a SHA-256 of the canonical JSON) answers 304 while nothing changed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from lomsong.collector import fleet_profiles as fp
from lomsong.collector.deps import Caller, Context, Ctx, authenticate, check_may_read_probe
from lomsong.collector.registry import ProbeInfo
from lomsong.config.profiles import parse_toml
from lomsong.errors import ValidationError
from lomsong.wire import NAME_PATTERN

router = APIRouter(tags=["profiles"])

#: a layer is a few kilobytes; this leaves room for comments
MAX_BODY_BYTES = 256 * 1024
ScopeName = Literal["province", "commune", "probe"]
_NAME = re.compile(NAME_PATTERN)
Key = Annotated[str, Path(min_length=1, max_length=64, description="code or probe id")]


def _forbidden(caller: Any, name: str, writing: bool) -> HTTPException:
    what = "change" if writing else "read"
    return HTTPException(403, detail=f"profile: role {caller.role!r} may not {what} {name}")


def _authorise(ctx: Ctx, caller: Any, scope: str, key: str, *, writing: bool) -> None:
    checked = fp.check_scope(scope, key)
    with ctx.engine.connect() as conn:
        province = fp.province_of(conn, checked, key)
    allowed = fp.may_write(caller, province) if writing else fp.may_read(caller, province)
    if not allowed:
        raise _forbidden(caller, fp.layer_name(scope, key), writing)


async def _layer_body(request: Request) -> tuple[object, str | None]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(413, detail=f"body: {len(raw)} bytes exceeds {MAX_BODY_BYTES}")
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, detail="body: not UTF-8 text") from None
    if kind in ("application/toml", "text/toml", "text/plain"):
        return parse_toml(text, "body").model_dump(exclude_defaults=True), text
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, detail=f"body: malformed JSON ({exc})") from None


@router.get("/api/v1/profiles", summary="Every layer of check profiles the caller may read")
def list_profiles(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    if caller.role == "probe":
        raise _forbidden(caller, "profiles", False)
    with ctx.engine.connect() as conn:
        rows = fp.list_layers(conn, caller.readable_provinces())
    return {"profiles": rows, "count": len(rows)}


def _get(ctx: Ctx, caller: Any, scope: str, key: str) -> dict[str, Any]:
    _authorise(ctx, caller, scope, key, writing=False)
    with ctx.engine.connect() as conn:
        return fp.get_layer(conn, scope, key)


async def _put(request: Request, ctx: Ctx, caller: Any, scope: str, key: str) -> dict[str, Any]:
    await run_in_threadpool(_authorise, ctx, caller, scope, key, writing=True)
    doc, toml = await _layer_body(request)
    who = caller.role if caller.token_id is None else f"{caller.role} token {caller.token_id}"
    view = await run_in_threadpool(
        fp.set_layer, ctx.engine, scope, key, doc, toml=toml, by=who, clock=ctx.clock
    )
    if ctx.profiles is not None:
        ctx.profiles.forget()
    return view


def _delete(ctx: Ctx, caller: Any, scope: str, key: str) -> Response:
    _authorise(ctx, caller, scope, key, writing=True)
    fp.delete_layer(ctx.engine, scope, key, clock=ctx.clock)
    if ctx.profiles is not None:
        ctx.profiles.forget()
    return Response(status_code=204)


@router.get("/api/v1/profiles/national", summary="The national layer")
def get_national(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return _get(ctx, caller, "national", "")


@router.put("/api/v1/profiles/national", summary="Set the national layer (admin)")
async def put_national(request: Request, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return await _put(request, ctx, caller, "national", "")


@router.delete("/api/v1/profiles/national", status_code=204, summary="Remove the national layer")
def delete_national(ctx: Ctx, caller: Caller) -> Response:
    return _delete(ctx, caller, "national", "")


@router.get("/api/v1/profiles/{scope}/{key}", summary="A province's, commune's or probe's layer")
def get_profile(ctx: Ctx, caller: Caller, scope: ScopeName, key: Key) -> dict[str, Any]:
    return _get(ctx, caller, scope, key)


@router.put(
    "/api/v1/profiles/{scope}/{key}", summary="Set a province's, commune's or probe's layer"
)
async def put_profile(
    request: Request, ctx: Ctx, caller: Caller, scope: ScopeName, key: Key
) -> dict[str, Any]:
    return await _put(request, ctx, caller, scope, key)


@router.delete(
    "/api/v1/profiles/{scope}/{key}",
    status_code=204,
    summary="Remove a layer (its probes fall back)",
)
def delete_profile(ctx: Ctx, caller: Caller, scope: ScopeName, key: Key) -> Response:
    return _delete(ctx, caller, scope, key)


@router.get(
    "/api/v1/probes/{probe_id}/config",
    summary="A probe's effective configuration (ETag, If-None-Match → 304)",
    responses={
        304: {"description": "the version named in If-None-Match is still the one served"},
        404: {"description": "no profile applies: the probe runs the checks of its own file"},
        409: {"description": "the layers that apply clash; the message names the check"},
    },
)
async def probe_config(request: Request, probe_id: str) -> Response:
    # No dependencies (the context comes from the app, the id is checked here): 3,321 agents
    # ask every 10 s, and FastAPI's dependency solving costs more than the rest of the answer.
    ctx: Context = request.app.state.ctx
    if not _NAME.match(probe_id):
        raise HTTPException(422, detail=f"probe_id: expected a probe id (got {probe_id!r})")
    caller = authenticate(request, ctx)
    info = ctx.live.probes.get(probe_id)
    if info is None:
        await run_in_threadpool(ctx.live.reload, ctx.engine)
        info = ctx.live.probes.get(probe_id)
    if info is None:
        raise HTTPException(404, detail=f"probe_id: {probe_id!r} is not registered")
    check_may_read_probe(caller, info)
    served = _served(ctx, info)
    if served is None:
        raise HTTPException(
            404, detail=f"probe_id: no profile applies to {probe_id!r}: it runs its local checks"
        )
    headers = {"ETag": served.etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), served.etag):
        return Response(status_code=304, headers=headers)
    return Response(served.body(), media_type="application/json", headers=headers)


def _served(ctx: Context, info: ProbeInfo) -> fp.Served | None:
    assert ctx.profiles is not None
    try:
        return ctx.profiles.served(info)
    except ValidationError as exc:
        raise HTTPException(409, detail=f"profile: the layers clash: {exc}") from None


def _matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` lists the ETag (or ``*``): the agent sends the version it runs and
    the one it refused, so neither comes back until something changes."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags
