"""The availability report as a table for people, and the monthly file a Sở KH&CN sends up.

One table shape for the API's CSV and XLSX downloads and for ``lomsong report availability``:
a row per province total, per operator total, per centre and per uplink, with availability in
per cent and times in minutes (hours for observed time), headers in Vietnamese or English.
The monthly file adds a sheet of the month's outages (``outage_sheet``: cause and duration).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, or_, select

from lomsong.collector.availability import day_start
from lomsong.collector.availability_keeper import DOWN_CONDITIONS
from lomsong.collector.availability_read import Row, report
from lomsong.collector.outage_sheet import header as outage_header
from lomsong.collector.outage_sheet import outage_rows
from lomsong.errors import ValidationError
from lomsong.storage.schema import communes, outages, provinces
from lomsong.timefmt import LOCAL_TZ, iso
from lomsong.words import Language, local_time, operator_name

#: (Vietnamese, English) header of each column, in order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("Kỳ", "Period"),
    ("Cấp", "Level"),
    ("Mã tỉnh", "Province code"),
    ("Tên tỉnh", "Province"),
    ("Mã xã", "Commune code"),
    ("Tên xã", "Commune"),
    ("Trạm đo", "Probe"),
    ("Đường truyền", "Uplink"),
    ("Nhà mạng", "Operator"),
    ("Khả dụng (%)", "Availability (%)"),
    ("Thời gian theo dõi (giờ)", "Observed (h)"),
    ("Gián đoạn (phút)", "Down (min)"),
    ("Do mất điện (phút)", "Power cut (min)"),
    ("Do sự cố mạng (phút)", "Network failure (min)"),
    ("Chưa rõ nguyên nhân (phút)", "Unknown cause (min)"),
    ("Bảo trì (phút)", "Maintenance (min)"),
    ("Số lần gián đoạn", "Outages"),
    ("Thời gian khắc phục TB (phút)", "MTTR (min)"),
    ("Lần dài nhất (phút)", "Longest (min)"),
)
LEVELS = {
    "province": ("Toàn tỉnh", "Province"),
    "operator": ("Nhà mạng", "Operator"),
    "centre": ("Trung tâm xã", "Centre"),
    "uplink": ("Đường truyền", "Uplink"),
}
#: the suffixes ``lomsong report availability`` writes
SUFFIXES = (".xlsx", ".csv", ".json")


def header(lang: Language) -> list[str]:
    i = 0 if lang == "vi" else 1
    return [c[i] for c in COLUMNS]


def table_rows(rows: Sequence[Row], lang: Language) -> Iterator[tuple[Any, ...]]:
    """One line per row of ``availability_read.report``, in ``lang``."""
    i = 0 if lang == "vi" else 1
    for r in rows:
        f = r.figures
        ratio, mttr = f.ratio, f.mttr
        yield (
            r.period,
            LEVELS[r.level][i],
            r.province_code,
            r.province_name,
            r.commune_code,
            r.commune_name,
            r.probe_id,
            r.uplink,
            operator_name(r.operator, lang) if r.level != "province" else "",
            None if ratio is None else round(100 * ratio, 3),
            round(f.observed / 3600, 2),
            round(f.down / 60, 1),
            round(f.power / 60, 1),
            round(f.network / 60, 1),
            round(f.unknown / 60, 1),
            round(f.maintenance / 60, 1),
            f.outages,
            None if mttr is None else round(mttr / 60, 1),
            round(f.longest / 60, 1),
        )


def parse_month(value: str) -> tuple[date, date]:
    """``2026-11`` → its first and last day."""
    try:
        year, month = (int(p) for p in value.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise ValidationError("--month", value, "expected a month such as 2026-11") from None
    return first, date(year, month, calendar.monthrange(year, month)[1])


def month_outages(engine: Engine, province: str, first: date, last: date) -> list[dict[str, Any]]:
    """The province's outages (silent or link down) overlapping the local month, oldest first."""
    lo, hi = day_start(first), day_start(date.fromordinal(last.toordinal() + 1))
    query = (
        select(outages)
        .where(
            outages.c.province_code == province,
            outages.c.condition.in_(DOWN_CONDITIONS),
            outages.c.started_at < hi,
            or_(outages.c.ended_at.is_(None), outages.c.ended_at >= lo),
        )
        .order_by(outages.c.started_at, outages.c.id)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def write_monthly(
    engine: Engine, province: str, month: str, output: Path, lang: Language, now: float
) -> dict[str, Any]:
    """Write the month's report for ``province`` to ``output`` (.xlsx, .csv or .json) and
    answer what it holds (for the command's summary line)."""
    from lomsong.coverage.sheets import csv_chunks, write_xlsx_sheets

    suffix = output.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValidationError("--output", str(output), "expected a .xlsx, .csv or .json file")
    first, last = parse_month(month)
    with engine.connect() as conn:
        name = conn.execute(select(provinces.c.name).where(provinces.c.code == province)).scalar()
        if name is None:
            raise ValidationError("--province", province, "not a province code")
        names = dict(conn.execute(select(communes.c.code, communes.c.name)).all())
    rows = report(engine, first, last, by="month", provinces=[province])
    down = month_outages(engine, province, first, last)
    total = next((r for r in rows if r.level == "province"), None)
    vi = lang == "vi"
    notes = {
        ("Nguồn" if vi else "Source"): "lomsong collector",
        ("Tỉnh" if vi else "Province"): f"{name} ({province})",
        ("Tháng" if vi else "Month"): month,
        ("Múi giờ" if vi else "Time zone"): str(LOCAL_TZ),
        ("Thời điểm lập" if vi else "Made at"): local_time(now),
        ("Định nghĩa" if vi else "Definition"): (
            "Khả dụng = 1 − thời gian gián đoạn ÷ thời gian theo dõi; thời gian bảo trì tính "
            "riêng, không vào tỷ lệ"
            if vi
            else "Availability = 1 − down time ÷ observed time; maintenance counted apart"
        ),
    }
    summary = {
        "province": province,
        "month": month,
        "centres": sum(r.level == "centre" for r in rows),
        "uplinks": sum(r.level == "uplink" for r in rows),
        "outages": len(down),
        "availability": None if total is None else total.figures.ratio,
    }
    if suffix == ".json":
        doc = {
            **summary,
            "rows": [r.as_json() for r in rows],
            "outages": [
                {
                    **{k: o[k] for k in ("id", "probe_id", "commune_code", "condition")},
                    **{k: o[k] for k in ("cause", "uplink", "operator")},
                    "started_at": iso(o["started_at"]),
                    "ended_at": iso(o["ended_at"]),
                    "duration_seconds": round((o["ended_at"] or now) - o["started_at"], 3),
                }
                for o in down
            ],
        }
        output.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    elif suffix == ".csv":
        with output.open("wb") as fh:
            for chunk in csv_chunks(header(lang), table_rows(rows, lang)):
                fh.write(chunk)
    else:
        probe_names = {o["probe_id"]: (names.get(o["commune_code"]), name) for o in down}
        write_xlsx_sheets(
            output,
            [
                ("Khả dụng" if vi else "Availability", header(lang), table_rows(rows, lang)),
                (
                    "Sự cố trong tháng" if vi else "Outages",
                    outage_header(lang),
                    outage_rows(down, probe_names, now, lang),
                ),
            ],
            notes_sheet="Ghi chú" if vi else "Notes",
            notes=notes,
        )
    return summary


def summary_line(summary: Mapping[str, Any], output: Path, lang: Language) -> str:
    ratio = summary["availability"]
    share = "—" if ratio is None else f"{100 * ratio:.3f} %"
    if lang == "vi":
        return (
            f"đã ghi {output}: tỉnh {summary['province']}, tháng {summary['month']}, "
            f"{summary['centres']} trung tâm xã, {summary['uplinks']} đường truyền, "
            f"{summary['outages']} sự cố; khả dụng toàn tỉnh {share}"
        )
    return (
        f"wrote {output}: province {summary['province']}, month {summary['month']}, "
        f"{summary['centres']} centres, {summary['uplinks']} uplinks, "
        f"{summary['outages']} outages; province availability {share}"
    )
