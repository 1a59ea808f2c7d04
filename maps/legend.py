"""The boxes drawn on the maps: legend, title and notices, as escaped HTML."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from lomsong.maps import labels as lb


def _pair(pair: tuple[str, str]) -> str:
    return escape(lb.both(pair))


def _row(swatch_style: str, swatch_class: str, text: str, key: str) -> str:
    return (
        f'<div class="ls-row" data-key="{escape(key)}">'
        f'<span class="ls-swatch {swatch_class}" style="{swatch_style}"></span>{text}</div>'
    )


def province_legend(operators: Sequence[tuple[str, str]], *, with_coverage: bool) -> str:
    """Statuses, the no-power ring, sites per operator, dead zones and probe states."""
    parts = [f'<div class="ls-legend"><h4>{_pair(lb.WORDS["legend"])}</h4>']
    if with_coverage:
        parts.append(f"<b>{_pair(lb.WORDS['hamlet'])}</b>")
        for code, pair in lb.STATUS_TEXT.items():
            colour = lb.STATUS_COLOURS[code]
            parts.append(_row(f"background:{colour}", "ls-ring", _pair(pair), f"status-{code}"))
        parts.append(
            _row(
                f"border:3px solid {lb.NO_POWER_RING};background:#fff",
                "ls-ring",
                _pair(lb.WORDS["no_power"]),
                "no-power",
            )
        )
        parts.append(
            _row(
                f"background:{lb.DEAD_ZONE_COLOUR}",
                "ls-area",
                _pair(lb.WORDS["dead_zone"]),
                "dead-zone",
            )
        )
        parts.append(f"<b>{_pair(lb.WORDS['site'])}</b>")
        for key, name in operators:
            parts.append(
                _row(
                    f"background:{lb.operator_colour(key)}",
                    "ls-ring",
                    escape(name),
                    f"site-{key}",
                )
            )
        parts.append(
            _row(
                f"background:{lb.SITE_DOWN_COLOUR}",
                "ls-ring",
                _pair(lb.WORDS["site_down_legend"]),
                "site-down",
            )
        )
    parts.append(f"<b>{_pair(lb.WORDS['probe_title'])}</b>")
    for state, pair in lb.PROBE_TEXT.items():
        shape = "ls-square ls-partial" if state == "partial" else "ls-square"
        parts.append(
            _row(f"background:{lb.PROBE_COLOURS[state]}", shape, _pair(pair), f"probe-{state}")
        )
    parts.append("</div>")
    return "".join(parts)


def share_legend() -> str:
    """The classes of the national overview's shading."""
    parts = [
        f'<div class="ls-legend"><h4>{escape(lb.layer_name("share"))}</h4>',
        _row(f"background:{lb.NO_DATA_COLOUR}", "", _pair(lb.WORDS["no_data"]), "share-none"),
    ]
    low = None
    for bound, colour in lb.SHARE_CLASSES:
        text = "0 %" if low is None else f"{low * 100:.0f}–{bound * 100:.0f} %"
        parts.append(_row(f"background:{colour}", "", text, f"share-{bound:g}"))
        low = bound
    parts.append("</div>")
    return "".join(parts)


def title_box(title: str, subtitle: str, links: Sequence[tuple[str, str]]) -> str:
    """The page's title with links (text, href) to the other pages."""
    anchors = " · ".join(f'<a href="{escape(href)}">{escape(text)}</a>' for text, href in links)
    return f'<div class="ls-title">{escape(title)}</div><div>{escape(subtitle)}</div>' + (
        f"<div>{anchors}</div>" if anchors else ""
    )


def notice(kind: str, **values: str) -> str:
    vi, en = lb.NOTICES[kind]
    return escape(f"{vi.format(**values)} / {en.format(**values)}")
