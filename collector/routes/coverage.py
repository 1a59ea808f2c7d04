"""``/api/v1/hamlets``, ``/api/v1/coverage/summary``, ``/api/v1/coverage/whatif`` and
``/api/v1/field-measurements``.

Readers are viewers (their provinces only) and admins; probes and admins post field readings.
A batch of readings is stored whole or, if any reading is bad, not at all; the answer names
each bad reading, field and value.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from lomsong.collector.auth import Principal
from lomsong.collector.deps import Caller, Ctx, coverage_of, readable_provinces
from lomsong.collector.downloads import (
    RESPONSES,
    FormatQuery,
    LangQuery,
    Table,
    download,
    frame_table,
    notes,
    stem,
)
from lomsong.storage.database import write_transaction
from lomsong.wire import COMMUNE_CODE, MAX_SEQ, NAME_PATTERN, PROVINCE_CODE
from lomsong.words import Language

router = APIRouter(tags=["coverage"])

MAX_READINGS = 10_000
MAX_CANDIDATES = 100
MAX_ERRORS = 20


def _readable(caller: Principal, province: str | None) -> list[str | None]:
    """The provinces to answer for: the one asked (if allowed), else all the caller may read."""
    allowed = readable_provinces(caller, province, "coverage")
    if province is not None:
        return [province]
    out: list[str | None] = [None] if allowed is None else [*sorted(allowed)]
    return out


def _clean(value: Any) -> Any:
    """A value fit for JSON: NaN and pandas' NA become null, numpy scalars Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__name__ == "NAType":
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


@router.get(
    "/api/v1/hamlets",
    summary="Hamlets with their coverage status, live (JSON, CSV or XLSX)",
    response_model=None,
    responses=RESPONSES,
)
async def list_hamlets(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[str | None, Query(pattern=PROVINCE_CODE)] = None,
    commune: Annotated[str | None, Query(pattern=COMMUNE_CODE)] = None,
    status: Annotated[str | None, Query(description="covered, weak, none or outage")] = None,
    operator: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="filter on this operator's status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    fmt: FormatQuery = "json",
    lang: LangQuery = "vi",
) -> dict[str, Any] | Response:
    """Hamlets the caller may read, with overall and per-operator status and RSRP; with
    ``format=csv`` or ``xlsx``, the same rows (``offset``, ``limit``) as a file."""
    from lomsong.coverage.results import filter_status, parse_status, status_frame

    provinces = _readable(caller, province)
    service = coverage_of(ctx)
    wanted = parse_status(status) if status is not None else None
    keys = service.settings.operator_keys()
    if operator is not None and operator not in keys:
        raise HTTPException(
            422, detail=f"operator: expected one of {list(keys)} (got {operator!r})"
        )

    def frames() -> list[Any]:
        out = []
        for p in provinces:
            area, classification = service.current(p)
            frame = status_frame(area.details, classification)
            out.append(filter_status(frame, status=wanted, operator=operator, commune=commune))
        return out

    if fmt != "json":

        def table() -> Table:
            frame = _joined(frames()).iloc[offset : offset + limit]
            name = stem(("thôn-bản", "hamlets"), lang, province or _ALL[lang], commune, status)
            return frame_table(
                frame, lang, stem=name, layer="hamlets", notes=_notes(ctx, lang, province)
            )

        return await download(await run_in_threadpool(table), fmt)

    def fetch() -> list[dict[str, Any]]:
        return [_hamlet_view(row, keys) for frame in frames() for row in frame.to_dict("records")]

    rows = await run_in_threadpool(fetch)
    return {"hamlets": rows[offset : offset + limit], "count": len(rows)}


_ALL = {"vi": "toàn-quốc", "en": "all"}


def _joined(frames: list[Any]) -> Any:
    import pandas as pd

    if not frames:
        raise HTTPException(404, detail="province: this token may read no province")
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _notes(ctx: Ctx, lang: Language, province: str | None) -> dict[str, str]:
    label = "Tỉnh" if lang == "vi" else "Province"
    return notes(lang, ctx.clock(), **{label: province or _ALL[lang]})


def _hamlet_view(row: dict[str, Any], operators: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": row["hamlet_id"],
        "name": row["name"],
        "commune": {"code": row["commune_code"], "name": row["commune_name"]},
        "province_code": row["province_code"],
        "lat": row["lat"],
        "lon": row["lon"],
        "population": _clean(row["population"]),
        "no_grid_power": bool(row["no_grid_power"]),
        "synthetic": bool(row["synthetic"]),
        "status": row["status"],
        "best_operator": row["best_operator"],
        "operators": {
            op: {
                "status": row[f"status_{op}"],
                "rsrp_dbm": _clean(row[f"rsrp_{op}_dbm"]),
                "measured": bool(row[f"measured_{op}"]),
            }
            for op in operators
        },
    }


@router.get(
    "/api/v1/coverage/summary",
    summary="Hamlets and population by status (JSON, CSV or XLSX)",
    response_model=None,
    responses=RESPONSES,
)
async def coverage_summary(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[str | None, Query(pattern=PROVINCE_CODE)] = None,
    by: Annotated[Literal["commune", "province"], Query()] = "commune",
    fmt: FormatQuery = "json",
    lang: LangQuery = "vi",
) -> dict[str, Any] | Response:
    """Per commune (or province), per operator and overall: hamlets and population by status,
    and how many of them have no grid power — the figures provinces report."""
    from lomsong.coverage.compute import summarize

    provinces = _readable(caller, province)
    service = coverage_of(ctx)

    def frames() -> list[Any]:
        out = []
        for p in provinces:
            area, classification = service.current(p)
            out.append(summarize(area, classification, by))
        return out

    if fmt != "json":

        def table() -> Table:
            by_word = {"commune": ("xã", "commune"), "province": ("tỉnh", "province")}[by]
            name = stem(
                ("tổng-hợp", "summary"), lang, province or _ALL[lang], by_word[lang != "vi"]
            )
            return frame_table(
                _joined(frames()),
                lang,
                stem=name,
                layer="summary",
                notes=_notes(ctx, lang, province),
            )

        return await download(await run_in_threadpool(table), fmt)

    def fetch() -> list[dict[str, Any]]:
        return [
            {str(k): _clean(v) for k, v in r.items()}
            for frame in frames()
            for r in frame.to_dict("records")
        ]

    rows = await run_in_threadpool(fetch)
    return {"by": by, "rows": rows, "count": len(rows)}


@router.get("/api/v1/coverage/deadzones", summary="Dead-zone polygons of a province's communes")
async def coverage_deadzones(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[str, Query(pattern=PROVINCE_CODE)],
) -> Response:
    """A GeoJSON FeatureCollection: per commune, the part outside every operator's footprint
    (properties commune_code, commune_name, province_code, area_km2, synthetic)."""
    _readable(caller, province)
    service = coverage_of(ctx)

    def fetch() -> bytes:
        zones = service.dead_zones(province)
        return str(zones.to_json(drop_id=True, to_wgs84=True)).encode()

    body = await run_in_threadpool(fetch)
    return Response(body, media_type="application/geo+json")


class FieldBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    readings: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_READINGS)


@router.post("/api/v1/field-measurements", summary="Store signal readings (probe or admin)")
async def post_field_measurements(ctx: Ctx, caller: Caller, body: FieldBatch) -> dict[str, Any]:
    """Each reading: ``lat``, ``lon``, ``operator``, ``rsrp_dbm``, ``measured_at`` (ISO 8601 or
    epoch seconds), optionally ``radio`` and ``id``. All are stored, or none.

    Who wrote them is their ``source`` (``probe:<id>`` or ``admin``), set here and never taken
    from the body; a probe writes readings only inside its own commune's province."""
    if caller.role not in ("probe", "admin"):
        raise HTTPException(403, detail=f"role {caller.role!r}: probe or admin role required")
    from lomsong.coverage.store import write_field
    from lomsong.coverage.validate import check_readings

    for i, reading in enumerate(body.readings):
        if "source" in reading:
            raise HTTPException(
                422,
                detail=f"readings[{i}].source: set by the collector from the token that writes "
                f"(got {reading['source']!r})",
            )
    service = coverage_of(ctx)
    source = "admin" if caller.role == "admin" else f"probe:{caller.probe_id}"

    def store() -> int:
        province = None if caller.role == "admin" else _province_of_probe(ctx, str(caller.probe_id))
        geo = service.geography()
        records, errors = check_readings(
            body.readings, geo, service.settings.operators, source=source, province=province
        )
        if errors:
            more = f"; and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
            raise HTTPException(422, detail="; ".join(errors[:MAX_ERRORS]) + more)
        with write_transaction(ctx.engine) as conn:
            write_field(conn, records, None, ctx.clock())
        return len(records)

    accepted = await run_in_threadpool(store)
    return {"accepted": accepted}


def _province_of_probe(ctx: Ctx, probe_id: str) -> str:
    info = ctx.live.probes.get(probe_id)
    if info is None:  # registered since the live state was last loaded
        ctx.live.reload(ctx.engine)
        info = ctx.live.probes.get(probe_id)
    if info is None:
        raise HTTPException(404, detail=f"probe_id: {probe_id!r} is not registered")
    return info.province_code


class CandidateSite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=8.0, le=24.0)
    lon: float = Field(ge=102.0, le=118.0)
    operator: str
    height_m: float = Field(default=30.0, gt=0, le=1000)
    azimuth_deg: float | None = Field(default=None, ge=0, lt=360)
    # No sector antenna is narrower than a degree; a beam of a tiny fraction of one overflows the
    # link budget's 12 / beamwidth² (the fuzz found 5e-324).
    beamwidth_deg: float | None = Field(default=None, ge=1, le=360)
    band_mhz: float = Field(default=1800.0, gt=0)
    power_dbm: float | None = Field(default=None, ge=0, le=80)
    radio: Literal["gsm", "umts", "lte", "nr"] = "lte"


class WhatIfBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    province: str | None = Field(default=None, pattern=PROVINCE_CODE)
    sites: list[CandidateSite] = Field(min_length=1, max_length=MAX_CANDIDATES)


@router.post("/api/v1/coverage/whatif", summary="Hamlets whose status candidate sites change")
async def post_whatif(ctx: Ctx, caller: Caller, body: WhatIfBody) -> dict[str, Any]:
    """Adds the candidate sites in memory and answers which hamlets change status, and the
    population that gains coverage. The province is the first site's unless given."""
    from lomsong.coverage.compute import whatif
    from lomsong.coverage.results import (
        Candidate,
        candidate_sectors,
        whatif_rows,
        whatif_totals,
    )

    service = coverage_of(ctx)
    candidates = [Candidate(**s.model_dump()) for s in body.sites]
    sectors = candidate_sectors(candidates, service.settings)
    province = body.province
    if province is None:
        province = await run_in_threadpool(_province_at, service, candidates[0])
    _readable(caller, province)

    def run() -> dict[str, Any]:
        area = service.area(province)
        result = whatif(area, sectors, service.settings, now=ctx.clock())
        rows = whatif_rows(result.table())
        return {
            "province": province,
            "synthetic": bool(area.hamlets.synthetic.any()),
            **whatif_totals(rows),
            "changes": [{k: _clean(v) for k, v in r.items()} for r in rows],
        }

    return await run_in_threadpool(run)


def _province_at(service: Any, candidate: Any) -> str:
    import numpy as np
    import shapely

    geo = service.geography()
    (code,) = geo.commune_at(np.array([shapely.Point(candidate.lon, candidate.lat)]), 2000.0)
    if code is None:
        raise HTTPException(
            422,
            detail=f"sites[0]: outside Vietnam (got lat {candidate.lat}, lon {candidate.lon})",
        )
    return str(geo.known[code][2])
