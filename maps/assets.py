"""Leaflet and the maps' own script and style, inlined into every page.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from public CDNs. A provincial office on
a thin link, an air-gapped network, or a map file opened offline gets a blank page that way, so
every map lomsong writes carries what it needs: Leaflet 1.9.4 (BSD-2-Clause, ``static/leaflet``,
unmodified; its two control images become data URIs) and ``lomsong-map.js``/``.css``. Only the
tiles come from outside, and the data layers never wait for them.
"""

from __future__ import annotations

import base64
from functools import cache
from html import escape
from importlib.resources import files
from typing import Any

import folium
from branca.element import Element, Figure
from jinja2 import Template

from lomsong.maps.pages import NO_ICON

STATIC = files("lomsong.maps") / "static"
LEAFLET_VERSION = "1.9.4"


def _text(*parts: str) -> str:
    return STATIC.joinpath(*parts).read_text(encoding="utf-8")


@cache
def leaflet_js() -> str:
    # The source map is not shipped; its comment would send a browser with devtools looking.
    lines = _text("leaflet", "leaflet.js").splitlines()
    return "\n".join(line for line in lines if not line.startswith("//# sourceMappingURL"))


@cache
def leaflet_css() -> str:
    css = _text("leaflet", "leaflet.css")
    for name in ("layers.png", "layers-2x.png"):
        data = STATIC.joinpath("leaflet", "images", name).read_bytes()
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        css = css.replace(f"url(images/{name})", f"url({uri})")
    # The default marker icon is never used (every marker is a circle or a div).
    return css.replace("url(images/marker-icon.png)", "none")


@cache
def runtime_js() -> str:
    return _text("lomsong-map.js")


@cache
def runtime_css() -> str:
    return _text("lomsong-map.css")


def inline_head() -> str:
    """The ``<style>`` and ``<script>`` blocks every map page puts in its head."""
    return (
        f"{NO_ICON}\n<style>{leaflet_css()}</style>\n<style>{runtime_css()}</style>\n"
        f"<script>{leaflet_js()}</script>\n<script>{runtime_js()}</script>\n"
    )


class Raw(Element):
    """HTML put in the page as it is (``branca.Element`` would parse it as a Jinja template)."""

    _template = Template("{{ this.raw }}")

    def __init__(self, raw: str) -> None:
        super().__init__()
        self.raw = raw


class LeanMap(folium.Map):
    """A ``folium.Map`` that links nothing from outside and inlines Leaflet instead."""

    default_js: list[tuple[str, str]] = []
    default_css: list[tuple[str, str]] = []

    def render(self, **kwargs: Any) -> None:  # type: ignore[override]
        figure = self.get_root()
        assert isinstance(figure, Figure)
        figure.header.add_child(Raw(inline_head()), name="lomsong_assets")
        super().render(**kwargs)  # type: ignore[no-untyped-call]


def render_html(fmap: folium.Map, title: str) -> str:
    """The whole page of ``fmap`` as one self-contained HTML document."""
    figure = fmap.get_root()
    assert isinstance(figure, Figure)
    figure.title = escape(title)
    html: str = figure.render()
    return html
