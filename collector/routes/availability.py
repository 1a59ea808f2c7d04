"""``/api/v1/availability``: availability per day or month, from ``availability_daily``.

Rows per province total, per operator total, per centre and per uplink (README "Availability"
has the definition). Viewers see their provinces, never a probe token; JSON by default,
``format=csv`` or ``xlsx`` for a file with Vietnamese (or English) headers.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from lomsong.collector.availability import local_day
from lomsong.collector.availability_read import report
from lomsong.collector.availability_report import header, table_rows
from lomsong.collector.deps import Caller, Ctx, readable_provinces
from lomsong.collector.downloads import (
    RESPONSES,
    FormatQuery,
    LangQuery,
    Table,
    download,
    notes,
    stem,
)
from lomsong.wire import COMMUNE_CODE, NAME_PATTERN, PROVINCE_CODE

router = APIRouter(tags=["availability"])

#: the longest span one request may ask for, in days
MAX_DAYS = 731
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def _day(field: str, value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            422, detail=f"{field}: not a date (got {value!r}); expected YYYY-MM-DD"
        ) from None


@router.get(
    "/api/v1/availability",
    summary="Availability per day or month: provinces, operators, centres, uplinks",
    response_model=None,
    responses=RESPONSES,
)
async def get_availability(
    ctx: Ctx,
    caller: Caller,
    province: Annotated[str | None, Query(pattern=PROVINCE_CODE)] = None,
    commune: Annotated[str | None, Query(pattern=COMMUNE_CODE)] = None,
    operator: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            pattern=DATE_PATTERN,
            description="first local day (Asia/Ho_Chi_Minh), YYYY-MM-DD; this month's first",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(pattern=DATE_PATTERN, description="last local day, YYYY-MM-DD; today by default"),
    ] = None,
    by: Annotated[Literal["day", "month"], Query(description="one row per day or month")] = (
        "month"
    ),
    fmt: FormatQuery = "json",
    lang: LangQuery = "vi",
) -> dict[str, Any] | Response:
    """Availability = 1 − down time ÷ observed time, maintenance left out; down time by cause,
    outage count, MTTR and the longest outage. Read from the daily table, never raw rows."""
    allowed = readable_provinces(caller, province, "availability")
    now = ctx.clock()
    today = local_day(now)
    last = _day("to", to, today)
    first = _day("from", from_, last.replace(day=1))
    if first > last:
        raise HTTPException(422, detail=f"from: {first} is after to ({last})")
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(
            422, detail=f"from: at most {MAX_DAYS} days at once (got {first} to {last})"
        )
    scope = [province] if province is not None else allowed
    rows = await run_in_threadpool(
        report,
        ctx.engine,
        first,
        last,
        by=by,
        provinces=scope,
        commune=commune,
        operator=operator,
    )
    if fmt != "json":
        vi = lang == "vi"
        everywhere = "toàn-quốc" if vi else "all"
        span = f"{first.isoformat()}_{last.isoformat()}"
        facts = {("Tỉnh" if vi else "Province"): province or everywhere}
        facts[("Từ ngày" if vi else "From")] = first.isoformat()
        facts[("Đến ngày" if vi else "To")] = last.isoformat()
        table = Table(
            header(lang),
            table_rows(rows, lang),
            stem=stem(("khả-dụng", "availability"), lang, province or everywhere, span),
            sheet="Khả dụng" if vi else "Availability",
            notes_sheet="Ghi chú" if vi else "Notes",
            notes=notes(lang, now, **facts),
        )
        return await download(table, fmt)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "by": by,
        "rows": [r.as_json() for r in rows],
        "count": len(rows),
    }
