"""The fleet page ``/fleet``, and the fleet as rows of a CSV or XLSX file.

Phone first, as the status page: the probes that need someone (silent, outdated, their
configuration refused) come first as a list of their own, then each province folded with its
probes. Each probe is a table row on a desk and a card on a phone (below 700 px the cells
stack, each with its header beside it; the value is one element, so the grid keeps it in its
column), so the page never scrolls sideways. 3,321 probes make one page of about 2 MB of
plain HTML and no script.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from html import escape
from typing import Any

from lomsong.config.profiles import short
from lomsong.maps.fleet_model import Fleet, FleetProbe
from lomsong.maps.pages import page
from lomsong.maps.status_page import STATUS_STYLE
from lomsong.wire import LOCAL_CONFIG_VERSION
from lomsong.words import Language, duration, local_time, number

#: at most this many probes in the list on top; the others that stand out head their provinces
ATTENTION_LIMIT = 200
#: (Vietnamese, English) of each mark
MARKS: dict[str, tuple[str, str]] = {
    "never_heard": ("Chưa từng liên lạc", "Never heard"),
    "silent": ("Mất liên lạc", "Silent"),
    "outdated": ("Phiên bản cũ", "Outdated"),
    "clock": ("Lệch giờ", "Clock off"),
    "dropped": ("Mất kết quả", "Results dropped"),
    "rotation": ("Đang đổi mã", "Token rotating"),
    "config_refused": ("Cấu hình bị từ chối", "Config refused"),
    "config_pending": ("Cấu hình chưa áp dụng", "Config pending"),
}
#: (Vietnamese, English) of each configuration state (``FleetProbe.config_state``)
CONFIG_STATES: dict[str, tuple[str, str]] = {
    "applied": ("Đã áp dụng", "Applied"),
    "pending": ("Chưa áp dụng", "Pending"),
    "refused": ("Bị từ chối", "Refused"),
    "local": ("Cấu hình tại chỗ", "Local file"),
    "unknown": ("Không rõ", "Not reported"),
}
_MARK_CLASS = {
    "never_heard": "bad",
    "silent": "bad",
    "outdated": "warn",
    "clock": "warn",
    "dropped": "warn",
    "rotation": "info",
    "config_refused": "bad",
    "config_pending": "info",
}
#: (Vietnamese, English) headers of the page's table, in order
HEADERS = (
    ("Trạm đo", "Probe"),
    ("Xã / phường", "Commune"),
    ("Phiên bản", "Version"),
    ("Liên lạc cuối", "Last heard"),
    ("Lệch giờ", "Clock skew"),
    ("Hàng đợi", "Spool"),
    ("Bỏ / từ chối", "Dropped / refused"),
    ("Cấu hình", "Config"),
    ("Khởi động", "Up since"),
    ("Đánh dấu", "Marks"),
)

FLEET_STYLE = """
table.fleet { font-size: 13px; }
table.fleet td { overflow-wrap: anywhere; }
table.fleet tr.bad td:first-child { border-left: 6px solid #c62828; }
table.fleet tr.warn td:first-child { border-left: 6px solid #b07d00; }
.mark { display: inline-block; padding: 0 6px; margin: 1px 2px 1px 0; border-radius: 3px;
  font-size: 12px; color: #fff; white-space: nowrap; }
.mark.bad { background: #c62828; } .mark.warn { background: #8a5a00; }
.mark.info { background: #3b5b7a; }
.summary b { font-size: 15px; }
@media (max-width: 700px) {
  table.fleet, table.fleet tbody, table.fleet tr, table.fleet td { display: block; width: auto; }
  table.fleet thead { display: none; }
  table.fleet { border: 0; background: none; }
  table.fleet tr { background: var(--card); border: 1px solid var(--line); border-radius: 4px;
    margin: 0 0 8px; padding: 4px 8px; }
  table.fleet tr.bad { border-left: 6px solid #c62828; }
  table.fleet tr.warn { border-left: 6px solid #b07d00; }
  table.fleet tr.bad td:first-child, table.fleet tr.warn td:first-child { border-left: 0; }
  table.fleet td { border: 0; padding: 1px 0; display: grid;
    grid-template-columns: 8.5em minmax(0, 1fr); gap: 6px; }
  table.fleet td::before { content: attr(data-h); color: var(--muted); }
  table.fleet td.empty { display: none; }
}
"""


def fleet_page(fleet: Fleet, *, who: str, province: str | None = None, refresh: int = 60) -> str:
    """The whole page: a summary, the probes that stand out, then every province folded."""
    now = fleet.now
    standing_out = [p for p in fleet.probes if p.stands_out]
    # After a collector upgrade every agent is outdated: the list on top stays short enough to
    # read and to load on a phone, and the rest wait in their provinces, first and marked.
    attention = standing_out[:ATTENTION_LIMIT]
    listed = {p.probe_id for p in attention}
    calm = [p for p in fleet.probes if p.probe_id not in listed]
    by_province: dict[str, list[FleetProbe]] = {}
    for p in calm:
        by_province.setdefault(p.province_code, []).append(p)
    names = {p.province_code: p.province_name for p in fleet.probes}
    few = len({p.province_code for p in fleet.probes}) <= 3
    parts = [
        f'<p class="muted">Cập nhật / Updated: {escape(local_time(now))} (giờ Việt Nam / '
        'Vietnam time) · <a href="/">Trạng thái / Status</a></p>',
        _summary(fleet),
        '<h2 id="attention">Cần xử lý / Needs attention</h2>',
        _table(attention, now, "attention")
        + (
            f'<p class="muted">{ATTENTION_LIMIT} / {len(standing_out)}: các trạm còn lại ở '
            "tỉnh của chúng, xếp trước / the others are under their provinces, first.</p>"
            if len(standing_out) > ATTENTION_LIMIT
            else ""
        )
        if attention
        else '<p class="muted">Không có / None: mọi trạm đều liên lạc, đúng phiên bản và chạy '
        "cấu hình được giao / every probe is heard, up to date and runs the configuration "
        "it is served.</p>",
        '<h2 id="provinces">Theo tỉnh / By province</h2>',
    ]
    for code in sorted(by_province):
        probes = by_province[code]
        marked = sum(bool(p.marks) for p in probes)
        note = f", {marked} đánh dấu / marked" if marked else ""
        parts.append(
            f'<details class="province" id="p-{escape(code)}"{" open" if few else ""}>'
            f"<summary>{escape(names[code])} ({escape(code)}) "
            f'<span class="counts">{len(probes)} trạm / probes{note}</span></summary>'
            f"{_table(probes, now, code)}</details>"
        )
    title = "Đội trạm đo / Probe fleet"
    if province is not None and fleet.probes:
        title = f"{fleet.probes[0].province_name} — {title}"
    return page(title, "".join(parts), refresh=refresh, who=who, style=STATUS_STYLE + FLEET_STYLE)


def _summary(fleet: Fleet) -> str:
    n = len(fleet.probes)
    return (
        '<p class="summary">'
        f"<b>{number(n, 'vi')}</b> trạm / probes · "
        f"<b>{fleet.silent}</b> mất liên lạc / silent "
        f"(&gt; {fleet.silent_after_seconds:g} s) · "
        f"<b>{fleet.outdated}</b> phiên bản cũ / outdated "
        f"(&lt; {escape(fleet.newest_version or '?')}; "
        f"máy chủ / collector {escape(fleet.collector_version)}) · "
        f"<b>{fleet.refused}</b> cấu hình bị từ chối / configuration refused</p>"
    )


def _table(probes: Sequence[FleetProbe], now: float, key: str) -> str:
    head = "".join(f"<th>{escape(vi)} / {escape(en)}</th>" for vi, en in HEADERS)
    rows = "".join(_row(p, now) for p in probes)
    return (
        f'<table class="fleet" data-section="{escape(key)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


_EMPTY = ' class="empty"'


def _row(p: FleetProbe, now: float) -> str:
    quiet = p.silent_for(now)
    booted = p.booted_at
    cells = [
        f'<a href="/probes/{escape(p.probe_id)}">{escape(p.probe_id)}</a>'
        + (f'<br><span class="muted">{escape(p.label)}</span>' if p.label else ""),
        f"{escape(p.commune_name)} ({escape(p.commune_code)})"
        f'<br><span class="muted">{escape(p.province_name)}</span>',
        escape(p.agent_version or "?"),
        "chưa bao giờ / never"
        if quiet is None
        else f"{escape(duration(quiet, 'vi'))} trước / ago"
        f'<br><span class="muted">{escape(local_time(p.last_seen_at or now))}</span>',
        "" if p.clock_skew_seconds is None else f"{p.clock_skew_seconds:+.1f} s",
        "" if p.spool_depth is None else number(p.spool_depth, "vi"),
        ""
        if p.spool_dropped is None and p.spool_refused is None
        else f"{p.spool_dropped or 0} / {p.spool_refused or 0}",
        _config_cell(p),
        ""
        if booted is None
        else f"{escape(local_time(booted))}"
        f'<br><span class="muted">{escape(duration(max(0.0, now - booted), "vi"))}</span>',
        "".join(
            f'<span class="mark {_MARK_CLASS[m]}">{escape(MARKS[m][0])} / {escape(MARKS[m][1])}'
            "</span>"
            for m in p.marks
        ),
    ]
    tds = "".join(
        f'<td data-h="{escape(vi)} / {escape(en)}"{"" if c else _EMPTY}><div>{c}</div></td>'
        for (vi, en), c in zip(HEADERS, cells, strict=True)
    )
    level = "bad" if p.silent or p.config_state == "refused" else "warn" if p.outdated else ""
    cls = f' class="{level}"' if level else ""
    return f'<tr id="f-{escape(p.probe_id)}" data-marks="{" ".join(p.marks)}"{cls}>{tds}</tr>'


def _config_cell(p: FleetProbe) -> str:
    state = p.config_state
    vi, en = CONFIG_STATES[state]
    shown = p.config_served if state in ("applied", "pending", "refused") else p.config_applied
    text = f"{escape(vi)} / {escape(en)}"
    if shown and shown != LOCAL_CONFIG_VERSION:
        text += f'<br><span class="muted">v{escape(short(shown))}</span>'
    if state == "refused" and p.config_error:
        text += f'<br><span class="muted">{escape(p.config_error)}</span>'
    return text


def sheet_header(lang: Language) -> list[str]:
    """The columns of the fleet's CSV and XLSX, in ``lang``."""
    vi = lang == "vi"
    return [
        "Mã trạm đo" if vi else "Probe",
        "Mã xã" if vi else "Commune code",
        "Xã / phường" if vi else "Commune",
        "Mã tỉnh" if vi else "Province code",
        "Tỉnh / thành phố" if vi else "Province",
        "Phiên bản" if vi else "Agent version",
        "Phiên bản cũ" if vi else "Outdated",
        "Liên lạc cuối" if vi else "Last heard",
        "Im lặng (giây)" if vi else "Silent for (s)",
        "Lệch giờ (giây)" if vi else "Clock skew (s)",
        "Hàng đợi" if vi else "Spool depth",
        "Bị bỏ" if vi else "Dropped",
        "Bị từ chối" if vi else "Refused",
        "Cấu hình" if vi else "Config",
        "Phiên bản cấu hình phục vụ" if vi else "Config served",
        "Phiên bản cấu hình áp dụng" if vi else "Config applied",
        "Lỗi cấu hình" if vi else "Config error",
        "Khởi động lúc" if vi else "Booted at",
        "Đánh dấu" if vi else "Marks",
    ]


def sheet_rows(fleet: Fleet, lang: Language) -> Iterator[list[Any]]:
    """One row per probe, local times, marks as words in ``lang``."""
    pick = 0 if lang == "vi" else 1
    yes, no = ("có", "không") if lang == "vi" else ("yes", "no")
    for p in fleet.probes:
        quiet = p.silent_for(fleet.now)
        booted = p.booted_at
        yield [
            p.probe_id,
            p.commune_code,
            p.commune_name,
            p.province_code,
            p.province_name,
            p.agent_version or "",
            yes if p.outdated else no,
            local_time(p.last_seen_at) if p.last_seen_at is not None else "",
            None if quiet is None else round(quiet),
            p.clock_skew_seconds,
            p.spool_depth,
            p.spool_dropped,
            p.spool_refused,
            CONFIG_STATES[p.config_state][pick],
            p.config_served or "",
            p.config_applied or "",
            p.config_error or "",
            local_time(booted) if booted is not None else "",
            "; ".join(MARKS[m][pick] for m in p.marks),
        ]
