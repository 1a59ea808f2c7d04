"""The few folium elements lomsong adds: the page's data, boxes on the map, a tile watcher."""

from __future__ import annotations

from typing import Any

import folium
import orjson
from branca.element import MacroElement
from jinja2 import Template


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode().replace("</", "<\\/")


class PageData(MacroElement):
    """The columns a page's popups are drawn from, embedded once as one JS object."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "var {{ this.get_name() }} = {{ this.json }};\n"
        "{% endmacro %}"
    )

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "lomsong_data"
        self.json = script_json(data)


class Box(MacroElement):
    """A box of HTML on the map (legend, title, notice), as a Leaflet control. A ``fold`` box
    (the legend, the province index) folds under its first heading, and starts folded on a
    phone, where it would cover the map."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "lomsong.control({{ this._parent.get_name() }}, {{ this.position_json }}, "
        "{{ this.html_json }}, {{ this.class_json }}, {{ this.fold_json }});\n"
        "{% endmacro %}"
    )

    def __init__(self, html: str, *, position: str, class_name: str, fold: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "lomsong_box"
        self.position_json = script_json(position)
        self.html_json = script_json(html)
        self.class_json = script_json(class_name)
        self.fold_json = script_json(fold)


class TileWatch(MacroElement):
    """Shows a notice once when the base map's tiles fail to load; the data stays."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "lomsong.watchTiles({{ this._parent.get_name() }}, {{ this.tiles.get_name() }}, "
        "{{ this.html_json }});\n"
        "{% endmacro %}"
    )

    def __init__(self, tiles: folium.TileLayer, html: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "lomsong_tile_watch"
        self.tiles = tiles
        self.html_json = script_json(html)


def popup_js(expression: str) -> folium.JsCode:
    """``onEachFeature`` binding a popup built on demand by ``expression`` (of ``f``)."""
    return folium.JsCode(f"lomsong.popup(function (f) {{ return {expression}; }})")


class FastGeoJson(folium.map.Layer):
    """A GeoJSON layer of many features: embedded compact and read with ``JSON.parse`` (V8
    reads a JSON string much faster than the same object as a literal), styled in the browser
    by a function of the feature's properties instead of a switch over every feature's id."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "var {{ this.get_name() }} = L.geoJson(JSON.parse({{ this.data_json }}), "
        "{style: {{ this.style_js }}, onEachFeature: {{ this.each_js }}});\n"
        "{% endmacro %}"
    )

    def __init__(
        self,
        data: dict[str, Any],
        *,
        name: str,
        style_js: str,
        on_each_feature: folium.JsCode,
        show: bool = True,
    ) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "lomsong_geojson"
        self.data_json = script_json(orjson.dumps(data).decode())
        self.style_js = style_js
        self.each_js = on_each_feature.js_code
