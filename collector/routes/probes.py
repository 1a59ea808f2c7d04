"""``/api/v1/probes``: registered probes, their last results, and their stored history."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from lomsong.collector.deps import Caller, Ctx, check_may_read_probe
from lomsong.collector.ingest import PLAIN_FIELDS, SIGNAL_DETAILS
from lomsong.collector.live import ProbeLive
from lomsong.collector.registry import ProbeInfo
from lomsong.errors import ValidationError
from lomsong.storage.schema import results
from lomsong.timefmt import iso, parse_time
from lomsong.wire import COMMUNE_CODE, MAX_SEQ, NAME_PATTERN, PROVINCE_CODE, CheckKind

router = APIRouter(tags=["probes"])

MAX_PAGE = 5_000


def probe_view(
    info: ProbeInfo, live: ProbeLive | None, now: float, silent_after: float
) -> dict[str, Any]:
    """One probe as the API shows it."""
    last_seen = live.last_seen_at if live else None
    uplinks = []
    for up in info.uplinks:
        checks = live.checks.get(up.name, {}) if live else {}
        uplinks.append(
            {
                "name": up.name,
                "operator": up.operator,
                "ok": all(c.ok for c in checks.values()) if checks else None,
                "checks": [
                    {
                        "kind": kind,
                        "target": target,
                        "ok": c.ok,
                        "seq": c.seq,
                        "measured_at": iso(c.measured_at),
                        "duration_seconds": c.duration_seconds,
                        "error": c.error,
                        **({"rsrp_dbm": c.rsrp_dbm} if c.rsrp_dbm is not None else {}),
                    }
                    for (kind, target), c in sorted(checks.items())
                ],
            }
        )
    return {
        "id": info.id,
        "label": info.label,
        "commune": {"code": info.commune_code, "name": info.commune_name},
        "province": {"code": info.province_code, "name": info.province_name},
        "status": "never_seen"
        if last_seen is None
        else "silent"
        if now - last_seen > silent_after
        else "reporting",
        "last_seen_at": iso(last_seen),
        "last_measured_at": iso(live.last_measured_at if live else None),
        "boot_id": live.boot_id if live else None,
        "agent_version": live.agent_version if live else None,
        "clock_skew_seconds": live.clock_skew_seconds if live else None,
        "stored_through_seq": live.stored_through_seq if live else 0,
        "uplinks": uplinks,
        # what the agent's newest heartbeat said of its configuration ("local": its own file)
        "config": {
            "version": live.config_version if live else None,
            "refused_version": live.config_refused_version if live else None,
            "error": live.config_error if live else None,
            "reported_at": iso(live.config_reported_at if live else None),
        },
    }


@router.get("/api/v1/probes", summary="Registered probes with their newest results")
def list_probes(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[
        str | None, Query(pattern=PROVINCE_CODE, description="province code, e.g. 04")
    ] = None,
    commune: Annotated[
        str | None, Query(pattern=COMMUNE_CODE, description="commune code, e.g. 01273")
    ] = None,
) -> dict[str, Any]:
    """Probes the caller may read, optionally of one province or commune."""
    if province is not None and caller.role != "probe" and not caller.may_read_province(province):
        raise HTTPException(403, detail=f"province: token may not read province {province!r}")
    allowed = caller.readable_provinces()
    now = ctx.clock()
    silent_after = ctx.settings.silent_after_seconds
    out = []
    with ctx.live.lock:
        for pid, info in ctx.live.probes.items():
            if caller.role == "probe" and pid != caller.probe_id:
                continue
            if caller.role != "probe" and allowed is not None and info.province_code not in allowed:
                continue
            if province is not None and info.province_code != province:
                continue
            if commune is not None and info.commune_code != commune:
                continue
            out.append(probe_view(info, ctx.live.live.get(pid), now, silent_after))
    return {"probes": out, "count": len(out)}


def _find(ctx: Ctx, caller: Caller, probe_id: str) -> ProbeInfo:
    info = ctx.live.probes.get(probe_id)
    if info is None:
        ctx.live.reload(ctx.engine)
        info = ctx.live.probes.get(probe_id)
    if info is None:
        raise HTTPException(404, detail=f"probe_id: {probe_id!r} is not registered")
    check_may_read_probe(caller, info)
    return info


@router.get("/api/v1/probes/{probe_id}", summary="One probe with its newest results")
def get_probe(ctx: Ctx, caller: Caller, probe_id: str) -> dict[str, Any]:
    info = _find(ctx, caller, probe_id)
    with ctx.live.lock:
        view = probe_view(
            info, ctx.live.live.get(probe_id), ctx.clock(), ctx.settings.silent_after_seconds
        )
    view["spool"] = _spool_report(ctx, probe_id)
    view["config"]["served_version"] = _served_version(ctx, info)
    return view


def _served_version(ctx: Ctx, info: ProbeInfo) -> str | None:
    """The version the collector serves the probe now (None: no profile applies, or its
    layers clash)."""
    if ctx.profiles is None:
        return None
    try:
        served = ctx.profiles.served(info)
    except ValidationError:
        return None
    return served.version if served is not None else None


def _spool_report(ctx: Ctx, probe_id: str) -> dict[str, Any] | None:
    """What the newest heartbeat said of the agent's spool: its depth, the results it dropped
    (full or too old) and those it set aside because the collector refused them for good."""
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(results.c.measured_at, results.c.details)
            .where(
                results.c.probe_id == probe_id,
                results.c.kind == "heartbeat",
                results.c.details.is_not(None),
            )
            .order_by(results.c.seq.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    details = orjson.loads(row.details)
    return {
        "measured_at": iso(row.measured_at),
        "depth": details.get("spool_depth"),
        "dropped": details.get("spool_dropped"),
        "refused": details.get("spool_refused"),
    }


@router.get("/api/v1/probes/{probe_id}/results", summary="A probe's stored results, by seq")
async def probe_results(
    ctx: Ctx,
    caller: Caller,
    probe_id: str,
    since: Annotated[str | None, Query(description="measured at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="measured before (ISO 8601)")] = None,
    after_seq: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="page cursor: results with a larger seq")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1_000,
    kind: Annotated[CheckKind | None, Query(description="only this check kind")] = None,
    uplink: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="only this uplink")
    ] = None,
) -> dict[str, Any]:
    """Results in seq order with ``measured_at`` (probe clock) and ``received_at`` (collector).

    Pages: pass the answer's ``next_after_seq`` as ``after_seq`` until it is null.
    """
    info = await run_in_threadpool(_find, ctx, caller, probe_id)
    try:
        t0 = parse_time("since", since) if since else None
        t1 = parse_time("until", until) if until else None
    except ValidationError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    query = select(results).where(results.c.probe_id == info.id, results.c.seq > after_seq)
    if t0 is not None:
        query = query.where(results.c.measured_at >= t0)
    if t1 is not None:
        query = query.where(results.c.measured_at < t1)
    if kind is not None:
        query = query.where(results.c.kind == kind)
    if uplink is not None:
        query = query.where(results.c.uplink == uplink)
    query = query.order_by(results.c.seq).limit(limit + 1)

    def fetch() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    rows = await run_in_threadpool(fetch)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "probe_id": info.id,
        "results": [result_view(r) for r in rows],
        "next_after_seq": rows[-1]["seq"] if more else None,
    }


_SIGNAL = ("rat", "rsrp_dbm", "rsrq_db", "snr_db", "rssi_dbm", "mcc", "mnc", "tac", "lac", "cid")
#: the measured fields shown only when present (the rest of the plain columns always are)
_OPTIONAL = tuple(f for f in PLAIN_FIELDS if f not in ("kind", "target", "uplink", "ok", "error"))


def result_view(r: dict[str, Any]) -> dict[str, Any]:
    """A stored row in the wire protocol's shape, plus ``received_at``."""
    out: dict[str, Any] = {
        "seq": r["seq"],
        "measured_at": iso(r["measured_at"]),
        "received_at": iso(r["received_at"]),
        "kind": r["kind"],
        "target": r["target"],
        "uplink": r["uplink"],
        "ok": bool(r["ok"]),
        "error": r["error"],
        "boot_id": r["boot_id"],
    }
    out.update({k: r[k] for k in _OPTIONAL if r[k] is not None})
    details = orjson.loads(r["details"]) if r["details"] else {}
    if r["kind"] == "modem":
        out["signal"] = {k: r[k] for k in _SIGNAL}
        out["signal"].update({k: details.pop(k, None) for k in SIGNAL_DETAILS})
    out.update(details)
    return out
