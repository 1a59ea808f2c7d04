"""The collector's server-rendered pages: the status page, the map index, sign-in and errors.

Plain HTML with a little CSS and no script: a duty officer opens the status page in the morning
on whatever browser the office has, and it reloads itself every minute. Every text is in
Vietnamese and English. Imports nothing geospatial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from lomsong.maps import labels as lb
from lomsong.maps.probes import ProbeMarker
from lomsong.words import duration, local_time, operator_name

#: no icon, said in the page, so that a browser does not ask the server for /favicon.ico
NO_ICON = '<link rel="icon" href="data:,">'

STYLE = """
body { font: 14px/1.45 system-ui, "Segoe UI", Roboto, "Noto Sans", sans-serif; margin: 0;
  color: #1d1d1d; background: #f6f7f9; }
header { background: #123b5c; color: #fff; padding: 10px 18px; }
header a { color: #cfe6ff; }
header h1 { margin: 0; font-size: 20px; }
main { padding: 12px 18px 40px; max-width: 1200px; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 14px; width: 100%; }
th, td { border: 1px solid #d9dde3; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; }
.state { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; }
.state-up { background: #1a7f43; } .state-degraded { background: #b07d00; }
.state-down { background: #c62828; } .state-unknown { background: #757575; }
.state-partial { background: #b85300; } .state-failing { background: #f5c08a; color: #222; }
details { background: #fff; border: 1px solid #d9dde3; margin: 8px 0; padding: 4px 10px; }
summary { cursor: pointer; font-weight: 600; font-size: 15px; padding: 4px 0; }
.muted { color: #666; }
.box { background: #fff; border: 1px solid #d9dde3; padding: 16px; max-width: 520px; }
input[type=password] { width: 100%; padding: 6px; font: inherit; box-sizing: border-box; }
.box button { font: inherit; padding: 6px 16px; border: 0; border-radius: 3px; cursor: pointer;
  background: #123b5c; color: #fff; }
.box dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 10px 0; }
.box dt { font-weight: 600; } .box dd { margin: 0; }
.box .warn { color: #8a5a00; }
form.signout { display: inline; margin: 0; }
form.signout button { font: inherit; padding: 0; border: 0; background: none; cursor: pointer;
  color: #cfe6ff; text-decoration: underline; }
"""


@dataclass
class ProvinceStatus:
    code: str
    name: str
    communes: int
    probes: list[ProbeMarker] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(p.state == state for p in self.probes)


def both(pair: tuple[str, str]) -> str:
    return escape(lb.both(pair))


def _state(state: str) -> str:
    return f'<span class="state state-{escape(state)}">{both(lb.STATE_TEXT[state])}</span>'


def _duration(seconds: float) -> str:
    return escape(f"{duration(seconds, 'vi')} / {duration(seconds, 'en')}")


#: A button, not a link: signing out changes the session, so it is a POST (which the collector
#: takes only from its own pages), and a link or a prefetch cannot sign anyone out.
SIGN_OUT = (
    '<form class="signout" method="post" action="/logout">'
    '<button type="submit">Đăng xuất / Sign out</button></form>'
)


def page(title: str, body: str, *, refresh: int | None = None, who: str = "") -> str:
    """A whole page: header with the title and who is signed in, then ``body``."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    signed = f"<div>{escape(who)} · {SIGN_OUT}</div>" if who else ""
    return (
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{NO_ICON}"
        f"{meta}<title>{escape(title)} — lomsong</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>{signed}</header><main>{body}</main></body></html>"
    )


def status_page(
    provinces: Sequence[ProvinceStatus],
    open_outages: Sequence[Mapping[str, Any]],
    *,
    now: float,
    who: str,
    expanded: bool,
    refresh: int = 60,
) -> str:
    """Provinces → communes with their probes' state; the open outages; links to maps and
    exports."""
    f = lb.FIELDS
    parts = [
        f'<p class="muted">Cập nhật / Updated: {escape(local_time(now))} '
        f'(giờ Việt Nam / Vietnam time) · <a href="/maps/">{both(f["map"])}</a></p>',
        f"<h2>{both(f['province'])}</h2>",
        '<table id="provinces"><tr>'
        f"<th>{both(f['province'])}</th><th>{both(f['probes'])}</th>"
        + "".join(
            f"<th>{both(lb.PROBE_TEXT[s])}</th>" for s in ("up", "degraded", "partial", "down")
        )
        + f"<th>{both(f['outages'])}</th><th>{both(f['links'])}</th></tr>",
    ]
    by_province: dict[str, int] = {}
    for row in open_outages:
        by_province[row["province_code"]] = by_province.get(row["province_code"], 0) + 1
    parts.extend(
        f'<tr data-province="{escape(p.code)}"><td><a href="#p-{escape(p.code)}">'
        f"{escape(p.name)} ({escape(p.code)})</a></td>"
        f'<td class="num">{len(p.probes)} / {p.communes}</td>'
        + "".join(
            f'<td class="num">{p.count(s)}</td>' for s in ("up", "degraded", "partial", "down")
        )
        + f'<td class="num">{by_province.get(p.code, 0)}</td><td>{_links(p.code)}</td></tr>'
        for p in provinces
    )
    parts.append("</table>")
    parts.append(_outage_table(open_outages, provinces, now))
    parts.extend(_province_section(p, now, expanded) for p in provinces)
    return page(
        "Trạng thái kết nối các trung tâm xã / Commune centre connectivity",
        "".join(parts),
        refresh=refresh,
        who=who,
    )


def _links(code: str) -> str:
    c = escape(code)
    return (
        f'<a href="/maps/province/{c}">{both(lb.FIELDS["map"])}</a> · '
        f"{both(lb.FIELDS['exports'])}: "
        f'<a href="/api/v1/hamlets?province={c}">{both(("Thôn/bản", "Hamlets"))}</a>, '
        f'<a href="/api/v1/coverage/summary?province={c}">{both(("Tổng hợp", "Summary"))}</a>'
    )


def _outage_table(
    rows: Sequence[Mapping[str, Any]], provinces: Sequence[ProvinceStatus], now: float
) -> str:
    f = lb.FIELDS
    head = f"<h2>{both(f['outages'])} ({len(rows)})</h2>"
    if not rows:
        return head + f'<p class="muted">{both(("Không có sự cố", "No open outage"))}</p>'
    names = {p.code: p.name for p in provinces}
    communes = {m.commune_code: m.commune_name for p in provinces for m in p.probes}
    out = [
        head,
        '<table id="outages"><tr>'
        f"<th>{both(f['commune'])}</th><th>{both(f['province'])}</th><th>{both(f['probes'])}</th>"
        f"<th>{both(f['kind'])}</th><th>{both(f['uplink'])}</th><th>{both(f['cause'])}</th>"
        f"<th>{both(f['since'])}</th><th>{both(f['duration'])}</th></tr>",
    ]
    for r in rows:
        uplink = ""
        if r["uplink"]:
            op = r["operator"]
            uplink = f"{r['uplink']} ({operator_name(op, 'vi')})" if op else str(r["uplink"])
        commune = communes.get(r["commune_code"], "")
        out.append(
            f'<tr data-outage="{escape(str(r["id"]))}">'
            f"<td>{escape(commune)} ({escape(r['commune_code'])})</td>"
            f"<td>{escape(names.get(r['province_code'], r['province_code']))}</td>"
            f"<td>{escape(r['probe_id'])}</td>"
            f"<td>{both(lb.CONDITION_TEXT.get(r['condition'], (r['condition'],) * 2))}</td>"
            f"<td>{escape(uplink)}</td><td>{both(lb.CAUSE_TEXT.get(r['cause'], ('?', '?')))}</td>"
            f"<td>{escape(local_time(r['started_at']))}</td>"
            f"<td>{_duration(now - r['started_at'])}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _province_section(p: ProvinceStatus, now: float, expanded: bool) -> str:
    f = lb.FIELDS
    opened = " open" if expanded else ""
    communes_with = {m.commune_code for m in p.probes}
    head = (
        f'<details id="p-{escape(p.code)}"{opened}><summary>{escape(p.name)} ({escape(p.code)})'
        f" — {len(p.probes)} {both(('trạm đo', 'probes'))}</summary><p>{_links(p.code)}</p>"
    )
    if not p.probes:
        return head + f'<p class="muted">{both(("Chưa có trạm đo", "No probe yet"))}</p></details>'
    rows = [
        '<table class="communes"><tr>'
        f"<th>{both(f['commune'])}</th><th>{both(f['probes'])}</th><th>{both(f['status'])}</th>"
        f"<th>{both(f['uplink'])}</th><th>{both(f['last_seen'])}</th></tr>"
    ]
    for m in sorted(p.probes, key=lambda m: (m.commune_name, m.id)):
        state = _state(m.state)
        if m.since is not None and m.state != "up":
            state += f" {both(lb.WORDS['from'])} {escape(local_time(m.since))}"
            state += f" ({_duration(now - m.since)})"
        uplinks = "<br>".join(
            f"{escape(u.name)} ({escape(operator_name(u.operator, 'vi'))}): {_state(u.state)}"
            for u in m.uplinks
        )
        seen = "—" if m.last_seen is None else escape(local_time(m.last_seen))
        label = f"{m.id} — {m.label}" if m.label else m.id
        rows.append(
            f'<tr data-probe="{escape(m.id)}" data-state="{escape(m.state)}">'
            f"<td>{escape(m.commune_name)} ({escape(m.commune_code)})</td>"
            f"<td>{escape(label)}</td><td>{state}</td><td>{uplinks}</td><td>{seen}</td></tr>"
        )
    rows.append("</table>")
    missing = p.communes - len(communes_with)
    without = both(("xã/phường chưa có trạm đo", "communes without a probe"))
    tail = f'<p class="muted">{missing} {without}</p>' if missing > 0 else ""
    return head + "".join(rows) + tail + "</details>"


def map_index(provinces: Sequence[tuple[str, str]], *, who: str, national: bool) -> str:
    """Links to the maps of the provinces the caller may read, and to the national overview."""
    items = "".join(
        f'<li><a href="/maps/province/{escape(code)}">{escape(name)} ({escape(code)})</a></li>'
        for code, name in provinces
    )
    nat = (
        f'<p><a href="/maps/national">{both(("Bản đồ toàn quốc", "National overview"))}</a></p>'
        if national
        else ""
    )
    body = (
        f'{nat}<h2>{both(lb.WORDS["provinces"])}</h2><ul id="maps">{items}</ul>'
        f'<p><a href="/">{both(("Trang trạng thái", "Status page"))}</a></p>'
    )
    return page("Bản đồ vùng phủ sóng / Coverage maps", body, who=who)


def sign_in(next_url: str, message: str = "") -> str:
    """The form that turns a token into the sign-in cookie."""
    note = f'<p style="color:#c62828">{escape(message)}</p>' if message else ""
    body = (
        f'<div class="box">{note}'
        "<p>Nhập mã truy cập (token) do quản trị viên cấp. / "
        "Enter the access token your administrator gave you.</p>"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{escape(next_url)}">'
        '<p><input type="password" name="token" autocomplete="current-password" '
        'placeholder="lst_…" required></p>'
        '<p><button type="submit">Đăng nhập / Sign in</button></p></form></div>'
    )
    return page("Đăng nhập / Sign in", body)


def confirm_sign_in(next_url: str, facts: Sequence[tuple[str, str]]) -> str:
    """Asks before a ``?token=`` link from another site signs this browser in: ``facts`` says
    whose token it is (role, provinces, label). The button posts from this site's own page."""
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    body = (
        '<div class="box" id="confirm">'
        "<p><strong>Đăng nhập với mã này? / Sign in with this token?</strong></p>"
        '<p class="warn">Liên kết này đến từ một trang khác. Chỉ đăng nhập nếu bạn vừa mở liên '
        "kết do quản trị viên gửi. / This link came from another site. Sign in only if you "
        "just opened a link your administrator sent you.</p>"
        f"<dl>{rows}</dl>"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{escape(next_url)}">'
        '<input type="hidden" name="pending" value="1">'
        '<p><button type="submit">Đăng nhập / Sign in</button></p></form>'
        f'<p><a href="{escape(next_url)}">Không, bỏ qua / No, skip this</a></p></div>'
    )
    return page("Đăng nhập / Sign in", body)


def sign_out(who: str) -> str:
    """What ``GET /logout`` shows: a link cannot sign out, a button on this page can."""
    text = (
        f"Đang đăng nhập / Signed in: {who}"
        if who
        else "Trình duyệt này chưa đăng nhập. / This browser is not signed in."
    )
    body = (
        f'<div class="box" id="signout"><p>{escape(text)}</p>'
        '<form method="post" action="/logout">'
        '<p><button type="submit">Đăng xuất / Sign out</button></p></form>'
        f'<p><a href="/">{both(("Trang trạng thái", "Status page"))}</a></p></div>'
    )
    return page("Đăng xuất / Sign out", body)


def reopen(url: str) -> str:
    """Opens ``url`` again at once, from this site: a browser arriving from another site's
    link leaves its SameSite=Strict cookie behind, and sends it on this second navigation."""
    u = escape(url)
    return (
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
        f'{NO_ICON}<meta http-equiv="refresh" content="0; url={u}">'
        "<title>lomsong</title></head>"
        f'<body><p><a href="{u}">Mở trang / Open the page</a></p></body></html>'
    )


def message(title: tuple[str, str], text: str, *, who: str = "") -> str:
    """A page that says one thing (forbidden, not found, maps unavailable)."""
    return page(lb.both(title), f'<div class="box"><p>{escape(text)}</p></div>', who=who)
