"""The collector's server-rendered pages: the frame, the map index, sign-in and errors.

Plain HTML with a little CSS and no script: a duty officer opens the status page in the morning
on whatever browser the office has, and it reloads itself every minute. Every text is in
Vietnamese and English. Imports nothing geospatial.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from lomsong.maps import labels as lb

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


def both(pair: tuple[str, str]) -> str:
    return escape(lb.both(pair))


#: A button, not a link: signing out changes the session, so it is a POST (which the collector
#: takes only from its own pages), and a link or a prefetch cannot sign anyone out.
SIGN_OUT = (
    '<form class="signout" method="post" action="/logout">'
    '<button type="submit">Đăng xuất / Sign out</button></form>'
)


def page(
    title: str, body: str, *, refresh: int | None = None, who: str = "", style: str = ""
) -> str:
    """A whole page: header with the title and who is signed in, then ``body``; ``style`` is
    added after the common one."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    signed = f"<div>{escape(who)} · {SIGN_OUT}</div>" if who else ""
    return (
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{NO_ICON}"
        f"{meta}<title>{escape(title)} — lomsong</title><style>{STYLE}{style}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>{signed}</header><main>{body}</main></body></html>"
    )


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
