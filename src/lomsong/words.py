"""The words people read, in Vietnamese and English: times, durations, numbers, operators, and
what state a centre or a link is in.

Alerts, status pages and maps all say a time, a length of time, a count, an operator's name or
a state; they say it the same way because they take it from here. One meaning has one word:
**degraded** is loss or latency over the detector's thresholds and nothing else; a centre with
some of its links down is **partly down**; a link whose checks fail before the detector has
judged it is **checks failing**, neither degraded nor down.
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


#: the state of a commune centre (a probe), as maps, the status page and alerts name it
PROBE_STATES: dict[str, tuple[str, str]] = {
    "up": ("Hoạt động", "Up"),
    "degraded": ("Suy giảm", "Degraded"),
    "partial": ("Mất một phần kết nối", "Partly down"),
    "down": ("Mất kết nối", "Down"),
    "unknown": ("Chưa có dữ liệu", "No data yet"),
}

#: the state of one uplink: a probe's states, less "partial", plus "failing" (checks fail,
#: the detector has not judged yet)
UPLINK_STATES: dict[str, tuple[str, str]] = {
    "up": PROBE_STATES["up"],
    "degraded": PROBE_STATES["degraded"],
    "failing": ("Kiểm tra lỗi", "Checks failing"),
    "down": PROBE_STATES["down"],
    "unknown": PROBE_STATES["unknown"],
}

#: the condition of an outage (the detector's, plus the dispatcher's regional group)
CONDITIONS: dict[str, tuple[str, str]] = {
    "probe_silent": ("Trung tâm mất liên lạc", "Centre unreachable"),
    "uplink_down": ("Mất kết nối", "Link down"),
    "degraded": ("Kết nối suy giảm", "Link degraded"),
    "regional": ("Mất sóng diện rộng", "Operator lost across the province"),
}

#: the cause of an outage; ``None`` while it is not classified yet
CAUSES: dict[str | None, tuple[str, str]] = {
    "power": ("mất điện", "power cut"),
    "network": ("sự cố mạng", "network failure"),
    "unknown": ("chưa rõ nguyên nhân", "unknown cause"),
    None: ("đang xác định", "being determined"),
}


def _pick(pair: tuple[str, str], lang: Language) -> str:
    return pair[0] if lang == "vi" else pair[1]


def condition(name: str, lang: Language) -> str:
    """``Mất kết nối`` / ``Link down``; an unknown condition is said as it is."""
    pair = CONDITIONS.get(name)
    return name if pair is None else _pick(pair, lang)


def cause(name: str | None, lang: Language) -> str:
    """``mất điện`` / ``power cut``; an unknown cause is said as it is."""
    pair = CAUSES.get(name)
    return str(name) if pair is None else _pick(pair, lang)


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
    """``VinaPhone (VNPT)``; the fibre line is ``cáp quang`` in Vietnamese; a summary's
    ``overall`` row, which counts every operator, is ``Chung`` / ``Overall``."""
    if not operator:
        return ""
    if operator == "overall":
        return "Chung" if lang == "vi" else "Overall"
    name = _OPERATOR.get(operator, operator)
    return "fibre" if operator == "fibre" and lang == "en" else name
