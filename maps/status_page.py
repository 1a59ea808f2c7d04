"""The status page ``/``: what is wrong now, worst first, then the provinces, then last week.

Read on a phone as often as on a desk, so it is one column of cards that reflow, never a wide
table: each open outage says where (commune, province), what (the centre or which link), since
when and for how long, why when known, and which hamlets and how many people it leaves without
signal. Provinces and their centres with problems come next, sorted worst first and coloured;
healthy ones are folded. Maintenance windows in force are named, and so are the outages they
mute. Then the outages resolved in the last days, each linking to its own page
(``outage_page.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from lomsong.maps import labels as lb
from lomsong.maps.availability_bars import BARS_STYLE
from lomsong.maps.pages import both, page
from lomsong.maps.probes import ProbeMarker
from lomsong.maps.status_model import (
    AvailabilityBars,
    Impact,
    MaintenanceView,
    OutageView,
    PendingEnrolment,
    ProvinceStatus,
    state_rank,
    worst_first,
)
from lomsong.words import duration, local_time, number, operator_name

#: The page's own look on top of ``pages.STYLE``: cards, colours, and a dark scheme that
#: follows the reader's system setting.
STATUS_STYLE = """
:root { color-scheme: light dark; --bg: #f6f7f9; --fg: #1d1d1d; --card: #fff; --line: #d9dde3;
  --muted: #5f6368; --head: #123b5c; --link: #0b57d0; --soft: #eef1f5; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171b; --fg: #e4e6e9; --card: #1e2329; --line: #353c45; --muted: #a0a8b2;
    --head: #0b2233; --link: #8ab4f8; --soft: #262c33; }
}
body { background: var(--bg); color: var(--fg); }
a { color: var(--link); }
header { background: var(--head); padding: 8px 12px; }
header h1 { font-size: 18px; }
main { padding: 8px 12px 40px; max-width: 1100px; }
h2 { font-size: 17px; margin: 14px 0 6px; }
.muted { color: var(--muted); }
details, table { background: var(--card); border-color: var(--line); }
th { background: var(--soft); }
th, td { border-color: var(--line); }
.cards { list-style: none; padding: 0; margin: 4px 0 12px; display: grid; gap: 8px; }
@media (min-width: 900px) { .cards.wide { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
.card { background: var(--card); border: 1px solid var(--line); border-left: 6px solid;
  border-radius: 4px; padding: 6px 10px; overflow-wrap: anywhere; }
.card p { margin: 2px 0; }
.card .title { font-weight: 600; font-size: 15px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 13px; }
.for { font-weight: 600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 4px; }
details { border: 1px solid var(--line); border-radius: 4px; margin: 6px 0; padding: 2px 10px; }
details.province[data-problems] { border-left: 6px solid var(--accent); }
summary { font-size: 15px; overflow-wrap: anywhere; }
summary .counts { font-weight: 400; font-size: 13px; color: var(--muted); }
.chips { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap;
  gap: 4px 6px; }
.chips li { border: 1px solid var(--line); border-radius: 10px; padding: 0 8px;
  font-size: 13px; }
.maint { background: var(--soft); border-radius: 3px; padding: 2px 6px; }
.timeline { list-style: none; padding: 0; margin: 4px 0; }
.timeline li { border-left: 3px solid var(--line); padding: 2px 0 6px 10px; }
.timeline time { display: block; font-size: 13px; color: var(--muted); }
"""


def status_page(
    provinces: Sequence[ProvinceStatus],
    open_outages: Sequence[OutageView],
    resolved: Sequence[OutageView],
    maintenance: Sequence[MaintenanceView] = (),
    *,
    now: float,
    who: str,
    expanded: bool,
    title: str = "",
    resolved_days: int = 7,
    availability: AvailabilityBars | None = None,
    refresh: int = 60,
    enrolments: Sequence[PendingEnrolment] = (),
) -> str:
    """The whole status page.

    ``expanded``: the reader sees a few provinces only (a viewer's), so each is shown open,
    healthy or not. ``availability`` draws the 90-day bars (``availability_bars.Bars``).
    ``enrolments``: boxes waiting for the reader's approval (an admin's or a province
    admin's); the section is left out when there are none.
    """
    updated = (
        f'<p class="muted">Cập nhật / Updated: {escape(local_time(now))} '
        f'(giờ Việt Nam / Vietnam time) · <a href="/maps/">{both(lb.FIELDS["map"])}</a> · '
        '<a href="/fleet">Đội trạm đo / Probe fleet</a></p>'
    )
    body = "".join(
        (
            updated,
            outages_section(open_outages, now),
            maintenance_section(maintenance),
            enrolments_section(enrolments),
            provinces_section(provinces, now, expanded, availability),
            resolved_section(resolved, resolved_days),
        )
    )
    heading = "Trạng thái kết nối các trung tâm xã / Commune centre connectivity"
    return page(
        f"{title} — {heading}" if title else heading,
        body,
        refresh=refresh,
        who=who,
        style=STATUS_STYLE + (BARS_STYLE if availability is not None else ""),
    )


# -- pieces both pages use ---------------------------------------------------------------------


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``#rrggbb``; white on any
    other form)."""
    if len(background) != 7 or not background.startswith("#"):
        return "#fff"
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def colour(state: str) -> str:
    return lb.STATE_COLOURS.get(state, lb.STATE_COLOURS["unknown"])


def badge(state: str) -> str:
    """A probe or uplink state, in its colour; a state the labels do not know is shown by its
    key."""
    bg = colour(state)
    text = lb.STATE_TEXT.get(state, (state, state))
    return (
        f'<span class="badge" style="background:{bg};color:{text_colour(bg)}">{both(text)}</span>'
    )


def span(seconds: float) -> str:
    return escape(f"{duration(seconds, 'vi')} / {duration(seconds, 'en')}")


def count(n: int) -> str:
    vi, en = number(n, "vi"), number(n, "en")
    return escape(vi if vi == en else f"{vi} / {en}")


#: an outage's condition → the probe state it stands for, for its colour
CONDITION_STATE = {"probe_silent": "down", "uplink_down": "down", "degraded": "degraded"}


def outage_colour(o: OutageView) -> str:
    return colour(CONDITION_STATE.get(o.condition, "unknown"))


def what(o: OutageView) -> str:
    """``Mất kết nối / Link down: viettel-4g (Viettel) · Nguyên nhân / Cause: …``"""
    kind = both(lb.CONDITION_TEXT.get(o.condition, (o.condition, o.condition)))
    if o.uplink:
        op = o.operator
        link = f"{o.uplink} ({operator_name(op, 'vi')})" if op else o.uplink
        kind += f": {escape(link)}"
    cause = lb.CAUSE_TEXT.get(o.cause, (str(o.cause), str(o.cause)))
    return f"{kind} · {both(lb.FIELDS['cause'])}: {both(cause)}"


def where(o: OutageView, *, link: bool) -> str:
    name = f"{escape(o.commune_name)} ({escape(o.commune_code)})"
    if link:
        name = f'<a href="/outages/{escape(o.id)}">{name}</a>'
    return f"{name}, {escape(o.province_name)}"


def impact_text(o: OutageView) -> str:
    """Which hamlets and how many people the outage leaves without signal, or why that is not
    known: a silent centre's cause, and so its reach, is learnt only once it reports again."""
    i = o.impact or Impact("no_geodata")
    label = (
        ("Có nguy cơ mất sóng", "At risk of losing signal")
        if o.condition == "degraded"
        else ("Mất sóng", "Left without signal")
    )
    head = f"{both(label)}: "
    if i.state == "until_back":
        return head + both(("chưa biết cho đến khi có lại kết nối", "not known until it is back"))
    if i.state == "no_geodata":
        return head + both(
            (
                "không rõ — máy chủ chưa có dữ liệu thôn/bản của xã này",
                "not known — this collector has no hamlet data for this commune",
            )
        )
    if i.state == "failed":
        return head + both(("chưa tính được", "could not be computed"))
    if i.hamlets == 0:
        return head + both(("không thôn/bản nào", "no hamlet"))
    text = (
        f"{count(i.hamlets)} {both(('thôn/bản', 'hamlets'))}, "
        f"{count(i.population)} {both(('người', 'people'))}"
    )
    if i.without_power:
        text += f" ({count(i.without_power)} {both(('không có điện lưới', 'without grid power'))})"
    if i.largest:
        names = ", ".join(f"{escape(n)} ({count(p)})" for n, p in i.largest)
        text += f" — {names}"
    return head + text


def since(o: OutageView, now: float) -> str:
    """When it began, in Vietnam's time, and for how long (until now, or until it ended)."""
    end = now if o.ended_at is None else o.ended_at
    until = (
        ""
        if o.ended_at is None
        else f" → {both(('đến', 'until'))} {escape(local_time(o.ended_at))}"
    )
    return (
        f'<p class="when"><span class="since">{both(lb.FIELDS["since"])} '
        f"{escape(local_time(o.started_at))}</span>{until} · "
        f'<span class="for">{span(end - o.started_at)}</span></p>'
    )


def outage_card(o: OutageView, now: float) -> str:
    accent = outage_colour(o)
    maint = ""
    if o.maintenance:
        maint = (
            f'<p class="maint">{both(("Trong giờ bảo trì", "In a maintenance window"))}: '
            f"{escape(', '.join(o.maintenance))} — "
            f"{both(('không gửi thông báo', 'notifications muted'))}</p>"
        )
    return (
        f'<li class="card outage" data-outage="{escape(o.id)}" '
        f'data-condition="{escape(o.condition)}" style="border-left-color:{accent}">'
        f'<p class="title">{where(o, link=True)}</p>'
        f"<p>{what(o)}</p>{since(o, now)}"
        f'<p class="impact">{impact_text(o)}</p>{maint}</li>'
    )


# -- the sections ------------------------------------------------------------------------------


def outages_section(rows: Sequence[OutageView], now: float) -> str:
    head = f'<h2 id="now">{both(("Sự cố đang diễn ra", "What is wrong now"))} ({len(rows)})</h2>'
    if not rows:
        return head + f'<p class="muted">{both(("Không có sự cố", "No open outage"))}</p>'
    cards = "".join(outage_card(o, now) for o in worst_first(rows))
    return f'{head}<ol class="cards wide" id="outages">{cards}</ol>'


def maintenance_section(windows: Sequence[MaintenanceView]) -> str:
    if not windows:
        return ""
    items = "".join(
        f'<li class="card" style="border-left-color:{colour("unknown")}">'
        f'<p class="title">{escape(w.name)}</p>'
        f"<p>{escape(w.scope) if w.scope else both(('mọi nơi', 'everywhere'))} · "
        f"{both(('đến', 'until'))} {escape(local_time(w.until))}</p></li>"
        for w in windows
    )
    head = both(("Đang bảo trì (không gửi thông báo)", "Maintenance in force (muted)"))
    return f'<h2>{head} ({len(windows)})</h2><ul class="cards" id="maintenance">{items}</ul>'


def enrolments_section(rows: Sequence[PendingEnrolment]) -> str:
    """Boxes waiting for approval: where, which box, the uplinks proposed, and the command
    that approves it (``lomsong probe approve``)."""
    if not rows:
        return ""
    items = []
    for e in rows:
        flag = (
            f'<p class="reused">⚠ {both(("máy đã thấy trước đây", "machine id seen before"))}: '
            f"{escape('; '.join(e.reused))}</p>"
            if e.reused
            else ""
        )
        edge = colour("down" if e.reused else "unknown")
        items.append(
            f'<li class="card" style="border-left-color:{edge}">'
            f'<p class="title">#{e.id} · {escape(e.commune_name)} ({escape(e.commune_code)}), '
            f"{escape(e.province_name)}</p>"
            f"<p>{escape(e.hostname)} · {escape(e.machine_id[:8])}… · "
            f"{escape(local_time(e.created_at))}</p>{flag}"
            f"<p>{both(('Đường truyền đề xuất', 'Proposed uplinks'))}: "
            f"{escape(', '.join(e.proposed)) or '—'}</p>"
            f"<p><code>lomsong probe approve {e.id} --id …</code></p></li>"
        )
    head = both(("Trạm đo chờ duyệt", "Probes waiting for approval"))
    return f'<h2>{head} ({len(rows)})</h2><ul class="cards" id="enrolments">{"".join(items)}</ul>'


def provinces_section(
    provinces: Sequence[ProvinceStatus],
    now: float,
    expanded: bool,
    availability: AvailabilityBars | None,
) -> str:
    """Provinces with problems first, worst first and open; the healthy ones in one fold."""
    f = lb.FIELDS
    head = f"<h2>{both(f['province'])}</h2>"
    if expanded:
        shown = sorted(provinces, key=_province_key)
        return head + "".join(province(p, now, True, availability) for p in shown)
    troubled = sorted((p for p in provinces if p.has_problems), key=_province_key)
    healthy = [p for p in provinces if not p.has_problems]
    parts = [head, *(province(p, now, True, availability) for p in troubled)]
    if healthy:
        parts.append(
            f'<details id="healthy"><summary>{len(healthy)} '
            f"{both(('tỉnh khác: không có sự cố', 'other provinces: nothing wrong'))} "
            f'<span class="counts">{both(("hoặc chưa có trạm đo", "or no probe yet"))}</span>'
            "</summary>"
            + "".join(province(p, now, False, availability) for p in healthy)
            + "</details>"
        )
    return "".join(parts)


def _province_key(p: ProvinceStatus) -> tuple[bool, int, int, str]:
    return (not p.has_problems, state_rank(p.worst), -p.open_outages, p.name)


def province(
    p: ProvinceStatus, now: float, opened: bool, availability: AvailabilityBars | None
) -> str:
    """One province: its problem centres as cards, its healthy ones folded into a line.

    A province shown folded (nothing wrong, on the national page) has its own bar but not its
    centres': 3,321 bars of 90 cells would make a 30 MB page. They are on its province's page
    (``/?province=NN``), where it is open, and on each centre's page."""
    code = escape(p.code)
    troubled = sorted(
        (m for m in p.probes if m.state != "up"),
        key=lambda m: (state_rank(m.state), m.commune_name, m.id),
    )
    up = sorted((m for m in p.probes if m.state == "up"), key=lambda m: (m.commune_name, m.id))
    marks = f' data-problems style="--accent:{colour(p.worst)}"' if p.has_problems else ""
    parts = [
        f'<details class="province" id="p-{code}" data-province="{code}"'
        f"{marks}{' open' if opened else ''}><summary>"
        f'<span class="dot" style="background:{colour(p.worst if p.probes else "unknown")}">'
        f"</span>{escape(p.name)} ({code}) {_counts(p)}</summary>",
        f'<p class="links">{links(p.code)}</p>',
    ]
    if availability is not None:
        parts.append(availability.province(p.code))
    if not p.probes:
        parts.append(f'<p class="muted">{both(("Chưa có trạm đo", "No probe yet"))}</p>')
    if troubled:
        cards = "".join(centre(m, now, availability) for m in troubled)
        parts.append(f'<ul class="cards wide probes">{cards}</ul>')
    if up:
        parts.append(
            f'<details class="up"><summary>{len(up)} '
            f"{both(('trung tâm hoạt động bình thường', 'centres up'))}</summary>"
            f"{up_list(up, availability if opened else None)}</details>"
        )
    missing = p.communes - len({m.commune_code for m in p.probes})
    if missing > 0 and p.probes:
        without = both(("xã/phường chưa có trạm đo", "communes without a probe"))
        parts.append(f'<p class="muted">{missing} {without}</p>')
    parts.append("</details>")
    return "".join(parts)


def _counts(p: ProvinceStatus) -> str:
    """``2 Mất kết nối / Down · 53 Hoạt động / Up · 1 sự cố`` — only what is not zero."""
    states = sorted({m.state for m in p.probes}, key=state_rank)
    parts = [f"{p.count(s)} {both(lb.PROBE_TEXT.get(s, (s, s)))}" for s in states]
    if p.open_outages:
        parts.append(f"{p.open_outages} {both(('sự cố', 'outages'))}")
    reach = f"{len(p.probes)}/{p.communes} {both(('xã có trạm đo', 'communes probed'))}"
    return f'<span class="counts">— {" · ".join([*parts, reach])}</span>'


def centre(m: ProbeMarker, now: float, availability: AvailabilityBars | None) -> str:
    """A commune centre with a problem: its state since when, its links, when last heard."""
    state = badge(m.state)
    when = ""
    if m.since is not None:
        when = (
            f'<p class="when"><span class="since">{both(lb.WORDS["from"])} '
            f'{escape(local_time(m.since))}</span> · <span class="for">{span(now - m.since)}</span>'
            "</p>"
        )
    uplinks = " · ".join(
        f"{escape(u.name)} ({escape(operator_name(u.operator, 'vi'))}): {badge(u.state)}"
        for u in m.uplinks
    )
    seen = "—" if m.last_seen is None else escape(local_time(m.last_seen))
    label = f"{m.id} — {m.label}" if m.label else m.id
    bars = availability.centre(m.id) if availability is not None else ""
    return (
        f'<li class="card probe" data-probe="{escape(m.id)}" data-state="{escape(m.state)}" '
        f'style="border-left-color:{colour(m.state)}">'
        f'<p class="title">{centre_link(m)} {state}</p>'
        f"{when}<p>{uplinks}</p>"
        f'<p class="muted">{escape(label)} · {both(lb.FIELDS["last_seen"])}: {seen}</p>'
        f"{bars}</li>"
    )


def up_list(up: Sequence[ProbeMarker], availability: AvailabilityBars | None) -> str:
    """The healthy centres: names in a line, or with their bars when there are bars."""
    if availability is None:
        chips = "".join(
            f'<li data-probe="{escape(m.id)}" data-state="{escape(m.state)}">'
            f"{escape(m.commune_name)}</li>"
            for m in up
        )
        return f'<ul class="chips">{chips}</ul>'
    rows = "".join(
        f'<li class="card probe" data-probe="{escape(m.id)}" data-state="{escape(m.state)}" '
        f'style="border-left-color:{colour(m.state)}">'
        f'<p class="title">{centre_link(m)}</p>'
        f"{availability.centre(m.id)}</li>"
        for m in up
    )
    return f'<ul class="cards wide probes up-list">{rows}</ul>'


def centre_link(m: ProbeMarker) -> str:
    """The centre's name, linking to its own page (``probe_page.py``)."""
    return (
        f'<a href="/probes/{escape(m.id)}">{escape(m.commune_name)} ({escape(m.commune_code)})</a>'
    )


def links(code: str) -> str:
    c = escape(code)
    return (
        f'<a href="/maps/province/{c}">{both(lb.FIELDS["map"])}</a> · '
        f"{both(lb.FIELDS['exports'])}: "
        f"{both(('Thôn/bản', 'Hamlets'))} {_files(f'/api/v1/hamlets?province={c}')}, "
        f"{both(('Tổng hợp', 'Summary'))} {_files(f'/api/v1/coverage/summary?province={c}')}, "
        f"{both(('Sự cố', 'Outages'))} {_files(f'/api/v1/outages?province={c}')}"
    )


def _files(url: str) -> str:
    """Links that download ``url``'s table as CSV and as an Excel workbook."""
    url = escape(url)
    return (
        "("
        + ", ".join(
            f'<a href="{url}&amp;format={fmt}" download>{fmt.upper()}</a>'
            for fmt in ("csv", "xlsx")
        )
        + ")"
    )


def resolved_section(rows: Sequence[OutageView], days: int) -> str:
    head = (
        f'<h2 id="resolved">{both(("Sự cố đã kết thúc", "Resolved outages"))} — '
        f"{days} {both(('ngày qua', 'days'))} ({len(rows)})</h2>"
    )
    if not rows:
        return head + f'<p class="muted">{both(("Không có", "None"))}</p>'
    items = "".join(
        f'<li class="card outage" data-outage="{escape(o.id)}" '
        f'style="border-left-color:{outage_colour(o)}">'
        f'<p class="title">{where(o, link=True)}</p><p>{what(o)}</p>'
        f"{since(o, o.ended_at or o.started_at)}</li>"
        for o in rows
    )
    return f'{head}<ol class="cards wide" id="resolved-list">{items}</ol>'
