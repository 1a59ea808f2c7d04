"""An outage's own page ``/outages/{id}``: what happened, in order, and whom it cut off.

The status page says what is wrong; this page answers the questions that follow, by phone from
the province office or afterwards in a report: when it began and when the collector saw it,
when its cause was known, who was told and whether the message arrived, when it ended, and which
hamlets and how many people lost signal. One column that reflows at any width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from lomsong.maps import labels as lb
from lomsong.maps.pages import both, page
from lomsong.maps.status_model import NotificationView, OutageView
from lomsong.maps.status_page import STATUS_STYLE, impact_text, outage_colour, since, what, where
from lomsong.words import local_time


@dataclass(frozen=True)
class Step:
    """One line of the timeline: when, what kind (``data-step``), and what to say."""

    at: float
    kind: str
    html: str


def timeline(o: OutageView, notes: Sequence[NotificationView]) -> list[Step]:
    """The outage's steps in time order; a step not reached yet is left out.

    The cause of an uplink's outage is known when it opens (the centre still reports over its
    other links); a silent centre's only when it reports again, at resolution.
    """
    steps = [
        Step(o.started_at, "started", both(("Bắt đầu (theo trạm đo)", "Began (as measured)"))),
        Step(o.detected_at, "opened", both(("Phát hiện, mở sự cố", "Detected, outage opened"))),
    ]
    if o.cause is not None:
        known_at = o.resolved_at if o.condition == "probe_silent" else o.detected_at
        if known_at is not None:
            cause = both(lb.CAUSE_TEXT.get(o.cause, (o.cause, o.cause)))
            steps.append(
                Step(known_at, "classified", f"{both(('Xác định nguyên nhân', 'Cause'))}: {cause}")
            )
    steps.extend(Step(n.at, "notified", _notified(n)) for n in notes)
    if o.ended_at is not None:
        steps.append(Step(o.ended_at, "ended", both(("Kết thúc", "Ended"))))
    if o.resolved_at is not None:
        steps.append(
            Step(o.resolved_at, "resolved", both(("Ghi nhận đã khắc phục", "Resolved (recorded)")))
        )
    order = {"started": 0, "opened": 1, "classified": 2, "notified": 3, "ended": 4, "resolved": 5}
    return sorted(steps, key=lambda s: (s.at, order[s.kind]))


def _notified(n: NotificationView) -> str:
    kind = (
        ("Báo sự cố", "Alert sent")
        if n.status == "firing"
        else ("Báo đã khắc phục", "Resolution sent")
    )
    result = (
        both(("đã gửi", "delivered"))
        if n.ok
        else f"{both(('không gửi được', 'failed'))}: {escape(n.error or '?')}"
    )
    retry = f" ({both(('lần thử', 'attempt'))} {n.attempt})" if n.attempt > 1 else ""
    return (
        f"{both(kind)} → <b>{escape(n.receiver)}</b> "
        f'<span class="muted">({escape(n.route)})</span>: {result}{retry}'
    )


def outage_page(o: OutageView, notes: Sequence[NotificationView], *, now: float, who: str) -> str:
    """The page of one outage: its facts, the hamlets it cuts off and its timeline."""
    state = both(("Đang diễn ra", "Open")) if o.open else both(("Đã kết thúc", "Resolved"))
    steps = "".join(
        f'<li data-step="{s.kind}"><time>{escape(local_time(s.at))}</time>{s.html}</li>'
        for s in timeline(o, notes)
    )
    told = (
        ""
        if notes
        else (f'<p class="muted">{both(("Chưa gửi thông báo nào", "No notification sent"))}</p>')
    )
    maint = ""
    if o.maintenance:
        maint = (
            f'<p class="maint">{both(("Trong giờ bảo trì", "In a maintenance window"))}: '
            f"{escape(', '.join(o.maintenance))}</p>"
        )
    body = (
        f'<div class="card outage" id="outage" data-outage="{escape(o.id)}" '
        f'style="border-left-color:{outage_colour(o)}">'
        f'<p class="title">{where(o, link=False)} — {state}</p>'
        f"<p>{what(o)}</p>{since(o, now)}"
        f'<p class="impact">{impact_text(o)}</p>{maint}'
        f'<p class="muted">{both(lb.FIELDS["probes"])}: {escape(o.probe_id)} · '
        f'<a href="/maps/province/{escape(o.province_code)}">{both(lb.FIELDS["map"])}</a> · '
        f'<a href="/">{both(("Trang trạng thái", "Status page"))}</a></p></div>'
        f"<h2>{both(('Diễn biến', 'Timeline'))}</h2>"
        f'<ol class="timeline" id="timeline">{steps}</ol>{told}'
        f'<p class="muted">{both(("Giờ Việt Nam", "Vietnam time"))}</p>'
    )
    title = f"{o.commune_name} — {lb.both(('Sự cố', 'Outage'))}"
    return page(title, body, who=who, style=STATUS_STYLE)
