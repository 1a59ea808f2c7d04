"""The words people read, in Vietnamese and English: times, durations, numbers, operators.

Alerts, status pages and maps all say a time, a length of time, a count or an operator's name;
they say it the same way because they take it from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from lomsong.timefmt import LOCAL_TZ

Language = Literal["vi", "en"]

_OPERATOR = {
    "viettel": "Viettel",
    "vinaphone": "VinaPhone (VNPT)",
    "mobifone": "MobiFone",
    "vietnamobile": "Vietnamobile",
    "gmobile": "Gmobile",
    "fibre": "cáp quang",
}


def local_time(ts: float) -> str:
    """``10:42 23/11/2026``, in Asia/Ho_Chi_Minh."""
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def duration(seconds: float, lang: Language) -> str:
    """``1 giờ 5 phút`` / ``1 h 5 min``: whole minutes, with hours and days when there are any.

    Less than a minute is ``dưới 1 phút`` / ``under a minute``: "0 phút" reads as if nothing
    happened, when an outage has only just opened.
    """
    if seconds < 60:
        return "dưới 1 phút" if lang == "vi" else "under a minute"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if lang == "vi":
        parts = [f"{days} ngày"] * bool(days) + [f"{hours} giờ"] * bool(hours) + [f"{minutes} phút"]
    else:
        parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts)


def number(n: int, lang: Language) -> str:
    """``2.684`` in Vietnamese, ``2,684`` in English."""
    text = f"{n:,}"
    return text.replace(",", ".") if lang == "vi" else text


def operator_name(operator: str | None, lang: Language) -> str:
    """``VinaPhone (VNPT)``; the fibre line is ``cáp quang`` in Vietnamese."""
    if not operator:
        return ""
    name = _OPERATOR.get(operator, operator)
    return "fibre" if operator == "fibre" and lang == "en" else name
