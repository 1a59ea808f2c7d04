"""The outage history as a table for people: local times, words instead of codes.

The JSON list says ``uplink_down``, ``mobifone`` and epoch-based ISO times for programs; the
file an officer opens says "Mất kết nối", "MobiFone" and ``10:42 23/11/2026`` in Vietnam's time,
with the length of each outage both in words and in seconds (to add up in a spreadsheet).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lomsong.maps.labels import CAUSE_TEXT, CONDITION_TEXT
from lomsong.words import Language, duration, local_time, operator_name

#: (Vietnamese, English) header of each column, in order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("Mã sự cố", "Outage"),
    ("Trạm đo", "Probe"),
    ("Mã xã", "Commune code"),
    ("Tên xã", "Commune"),
    ("Mã tỉnh", "Province code"),
    ("Tên tỉnh", "Province"),
    ("Loại", "Kind"),
    ("Nguyên nhân", "Cause"),
    ("Đường truyền", "Uplink"),
    ("Nhà mạng", "Operator"),
    ("Đang diễn ra", "Open"),
    ("Bắt đầu", "Started"),
    ("Kết thúc", "Ended"),
    ("Thời gian", "Duration"),
    ("Thời gian (giây)", "Duration (s)"),
)
YES_NO = {True: ("Có", "Yes"), False: ("Không", "No")}


def header(lang: Language) -> list[str]:
    i = 0 if lang == "vi" else 1
    return [c[i] for c in COLUMNS]


def outage_rows(
    outages: Sequence[Mapping[str, Any]],
    names: Mapping[str, tuple[str | None, str | None]],
    now: float,
    lang: Language,
) -> Iterator[tuple[Any, ...]]:
    """One row per outage (rows of the ``outages`` table), in ``lang``; ``names`` gives each
    probe's commune and province names."""
    i = 0 if lang == "vi" else 1
    for o in outages:
        commune, province = names.get(o["probe_id"], (None, None))
        condition = CONDITION_TEXT.get(o["condition"], (o["condition"],) * 2)[i]
        cause = CAUSE_TEXT.get(o["cause"], (o["cause"],) * 2)[i] if o["cause"] else ""
        ended = o["ended_at"]
        length = round((now if ended is None else ended) - o["started_at"], 3)
        yield (
            o["id"],
            o["probe_id"],
            o["commune_code"],
            commune,
            o["province_code"],
            province,
            condition,
            cause,
            o["uplink"],
            operator_name(o["operator"], lang),
            YES_NO[ended is None][i],
            local_time(o["started_at"]),
            "" if ended is None else local_time(ended),
            duration(length, lang),
            length,
        )
