"""What a duty officer reads: alert text in Vietnamese and English.

Every message says which commune (name with diacritics, and code), which province, which
operator and uplink, what kind of outage (power, network, unknown), since when in Vietnam's
local time, for how long, how many hamlets and people are left without signal (or that this is
not known) and the largest of those hamlets by name, and where the map is (DESIGN §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lomsong.collector.alerts.model import Status
from lomsong.words import (
    Language,
    cause,
    condition,
    duration,
    local_time,
    number,
    operator_name,
)


@dataclass(frozen=True)
class Facts:
    """Everything a message about one outage (or one regional group) may say."""

    condition: str
    province_code: str
    province_name: str
    started_at: float
    commune_code: str = ""
    commune_name: str = ""
    probe_id: str = ""
    cause: str | None = None
    uplink: str | None = None
    operator: str | None = None
    ended_at: float | None = None
    hamlets: int | None = None
    population: int | None = None
    hamlets_without_power: int | None = None
    #: the largest hamlets left without signal, (name, population), most people first
    hamlet_names: tuple[tuple[str, int], ...] = ()
    map_url: str = ""
    #: for a regional alert: the communes (code, name) that lost the operator
    communes: tuple[tuple[str, str], ...] = ()


def what(f: Facts, lang: Language) -> str:
    """The condition, in the words maps and pages use (``lomsong.words.CONDITIONS``), begun in
    lower case because a message says it mid-sentence: ``…, Cao Bằng: mất kết nối Viettel``."""
    text = condition(f.condition, lang)
    return text[:1].lower() + text[1:]


_STATUS = {
    "vi": {"firing": "CẢNH BÁO", "resolved": "ĐÃ KHẮC PHỤC"},
    "en": {"firing": "FIRING", "resolved": "RESOLVED"},
}


def place(f: Facts) -> str:
    if f.commune_name:
        return f"{f.commune_name} ({f.commune_code}), {f.province_name}"
    return f"{f.province_name} ({f.province_code})"


def link(f: Facts, lang: Language) -> str:
    """``Viettel (viettel-4g)`` or ``cáp quang (fibre)``; empty for a silent centre."""
    if not f.operator and not f.uplink:
        return ""
    op = operator_name(f.operator, lang)
    return f"{op} ({f.uplink})" if f.uplink else op


def summary(f: Facts, status: Status, lang: Language) -> str:
    """One line: what, where, over which link, why, since when."""
    via = link(f, lang)
    since = "từ" if lang == "vi" else "since"
    head = f"{place(f)}: {what(f, lang)}" + (f" {via}" if via else "")
    tail = f"{cause(f.cause, lang)}, {since} {local_time(f.started_at)}"
    if status == "resolved" and f.ended_at is not None:
        until = "đến" if lang == "vi" else "until"
        tail += f" {until} {local_time(f.ended_at)}"
    return f"{head} — {tail}"


def details(f: Facts, status: Status, lang: Language, now: float) -> str:
    """The lines a duty officer reads under the title."""
    vi = lang == "vi"
    end = f.ended_at if (status == "resolved" and f.ended_at is not None) else now
    lines = []
    if f.commune_name:
        lines.append(f"{'Xã/phường' if vi else 'Commune'}: {f.commune_name} ({f.commune_code})")
    lines.append(f"{'Tỉnh' if vi else 'Province'}: {f.province_name} ({f.province_code})")
    if f.communes:
        names = ", ".join(f"{name} ({code})" for code, name in f.communes)
        lines.append(
            f"{'Các xã bị ảnh hưởng' if vi else 'Communes affected'} ({len(f.communes)}): {names}"
        )
    via = link(f, lang)
    if via:
        lines.append(f"{'Nhà mạng / đường truyền' if vi else 'Operator / uplink'}: {via}")
    lines.append(f"{'Sự cố' if vi else 'Outage'}: {what(f, lang)}")
    lines.append(f"{'Nguyên nhân' if vi else 'Kind'}: {cause(f.cause, lang)}")
    zone = "giờ Việt Nam" if vi else "Vietnam time"
    lines.append(f"{'Bắt đầu' if vi else 'Since'}: {local_time(f.started_at)} ({zone})")
    if status == "resolved" and f.ended_at is not None:
        lines.append(f"{'Kết thúc' if vi else 'Ended'}: {local_time(f.ended_at)}")
    lines.append(f"{'Thời gian' if vi else 'Duration'}: {duration(end - f.started_at, lang)}")
    if f.hamlets is None:
        lines.append(
            "Thôn/bản không có sóng: chưa rõ (chưa nạp dữ liệu vùng phủ)"
            if vi
            else "Hamlets without signal: unknown (no coverage data loaded)"
        )
    else:
        people = number(f.population or 0, lang)
        text = (
            f"Thôn/bản không có sóng: {number(f.hamlets, lang)} ({people} người"
            if vi
            else f"Hamlets without signal: {number(f.hamlets, lang)} ({people} people"
        )
        if f.hamlets_without_power:
            text += (
                f", {f.hamlets_without_power} thôn chưa có điện lưới"
                if vi
                else f", {f.hamlets_without_power} without grid power"
            )
        lines.append(text + ")")
        if f.hamlet_names:
            lines.append(affected_hamlets(f, lang))
    if f.map_url:
        lines.append(f"{'Bản đồ' if vi else 'Map'}: {f.map_url}")
    return "\n".join(lines)


#: how many hamlets a message names
NAMED_HAMLETS = 5


def affected_hamlets(f: Facts, lang: Language) -> str:
    """``Thôn/bản bị ảnh hưởng: Xóm Nà Lìn (420 người), … và 3 thôn/bản khác``."""
    vi = lang == "vi"
    named = f.hamlet_names[:NAMED_HAMLETS]
    unit = "người" if vi else "people"
    text = ", ".join(f"{name} ({number(pop, lang)} {unit})" for name, pop in named)
    more = max((f.hamlets or 0) - len(named), 0)
    if more:
        text += f" và {number(more, lang)} thôn/bản khác" if vi else f" and {more:,} more"
    return f"{'Thôn/bản bị ảnh hưởng' if vi else 'Hamlets affected'}: {text}"


def render(
    facts: Sequence[tuple[Facts, Status]], status: Status, lang: Language, now: float
) -> tuple[str, str]:
    """Title and body of a notification about one or several alerts of a group."""
    tag = f"[{_STATUS[lang][status]}]"
    if len(facts) == 1:
        f, s = facts[0]
        return f"{tag} {summary(f, s, lang)}", details(f, s, lang, now)
    firing = sum(1 for _, s in facts if s == "firing")
    provinces = sorted({f.province_name for f, _ in facts})
    where = ", ".join(provinces)
    if lang == "vi":
        title = f"{tag} {len(facts)} sự cố tại {where} ({firing} đang diễn ra)"
    else:
        title = f"{tag} {len(facts)} outages in {where} ({firing} firing)"
    blocks = [f"• {summary(f, s, lang)}\n{details(f, s, lang, now)}" for f, s in facts]
    return title, "\n\n".join(blocks)
