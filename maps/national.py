"""The national overview: every commune shaded by the share of its people left without signal.

3,321 communes are one GeoJSON layer simplified as a coverage to about 500 m and rounded to three
decimals (about 110 m), under a pixel at the zooms the overview is for; each commune and the
list of provinces link to the province maps, which have the detail.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from html import escape
from typing import Any

import folium
import geopandas as gpd
import pandas as pd

from lomsong.maps import labels as lb
from lomsong.maps.assets import LeanMap, render_html
from lomsong.maps.elements import Box, FastGeoJson, PageData, TileWatch, popup_js
from lomsong.maps.geometry import feature_collection, light_polygons
from lomsong.maps.inputs import TileSource, commune_names
from lomsong.maps.legend import notice, share_legend, title_box
from lomsong.words import local_time

TOLERANCE_DEG = 5e-3
DECIMALS = 3
PROVINCE_LINK = "/maps/province/{code}"


def national_map(
    communes: gpd.GeoDataFrame,
    provinces: gpd.GeoDataFrame,
    shares: pd.DataFrame | None,
    *,
    tiles: TileSource | None = None,
    province_link: str = PROVINCE_LINK,
    only: Collection[str] | None = None,
    synthetic: bool = False,
    links: Sequence[tuple[str, str]] = (),
    generated_at: float | None = None,
) -> folium.Map:
    """Build the national overview.

    Parameters
    ----------
    communes
        All communes (``lomsong.coverage.boundaries.communes(engine)``).
    provinces
        All provinces (``lomsong.coverage.boundaries.provinces(engine)``).
    shares
        ``lomsong.maps.inputs.commune_shares`` of the national classification, indexed by
        commune code; communes missing from it are drawn as "no data". ``None``: no data yet.
    tiles
        The base map; OpenStreetMap by default.
    province_link
        Where a province's map is, with ``{code}`` for its code.
    only
        Province codes to draw (a viewer's); all by default.
    synthetic
        The hamlets or sites behind ``shares`` are synthetic: the map says so.
    links
        (text, href) pairs shown under the title.
    generated_at
        Epoch seconds shown as "updated"; now by default.

    Examples
    --------
    >>> from lomsong.coverage import boundaries
    >>> fmap = national_map(boundaries.communes(), boundaries.provinces(), shares)
    ... # doctest: +SKIP
    """
    tiles = tiles or TileSource()
    if only is not None:
        communes = communes[communes["province_code"].isin(list(only))]
        provinces = provinces[provinces["code"].isin(list(only))]
    communes = communes.reset_index(drop=True)
    provinces = provinces.reset_index(drop=True)
    if shares is None:
        shares = pd.DataFrame(
            columns=["hamlets", "population", "none_hamlets", "none_population", "share"]
        )

    west, south, east, north = (float(v) for v in communes.total_bounds)
    fmap = LeanMap(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=6,
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
        font_size="0.8rem",
    )
    tile_layer = folium.TileLayer(
        tiles=tiles.url, attr=tiles.attribution, max_zoom=tiles.max_zoom, control=False
    )
    fmap.add_child(tile_layer)
    province_names = dict(zip(provinces["code"], provinces["name"], strict=True))
    page = PageData(
        {
            "text": lb.page_text(),
            "colours": {"status": lb.STATUS_COLOURS, "probe": lb.STATE_COLOURS},
            "communes": {},
            "provinces": province_names,
            "link": province_link,
            "share": {
                "bounds": [bound for bound, _ in lb.SHARE_CLASSES],
                "colours": [colour for _, colour in lb.SHARE_CLASSES],
                "none": lb.NO_DATA_COLOUR,
            },
        }
    )
    fmap.add_child(page)

    props = [
        _commune_props(row, name, shares)
        for row, name in zip(communes.itertuples(index=False), commune_names(communes), strict=True)
    ]
    geoms = light_polygons(
        communes.geometry.to_numpy(), tolerance=TOLERANCE_DEG, decimals=DECIMALS, coverage=True
    )

    d = page.get_name()
    fmap.add_child(
        FastGeoJson(
            feature_collection(geoms, props),
            name=lb.layer_name("share"),
            style_js=f"lomsong.shareStyle({d})",
            on_each_feature=popup_js(f"lomsong.commune({d}, f)"),
        )
    )
    outlines = light_polygons(
        provinces.geometry.to_numpy(), tolerance=TOLERANCE_DEG, decimals=DECIMALS, coverage=True
    )
    fmap.add_child(
        folium.GeoJson(
            feature_collection(outlines, [{"c": c} for c in provinces["code"]]),
            name=lb.layer_name("provinces"),
            style_function=lambda _f: {"color": "#252525", "weight": 1.4, "fill": False},
            interactive=False,
        )
    )

    when = local_time(generated_at or time.time())
    fmap.add_child(
        Box(
            title_box(
                "Việt Nam — vùng trắng sóng / Vietnam — dead zones",
                f"Cập nhật / Updated: {when} (giờ Việt Nam / Vietnam time)",
                links,
            ),
            position="topleft",
            class_name="ls-t",
        )
    )
    fmap.add_child(
        Box(
            _province_index(provinces, shares, communes, province_link),
            position="topright",
            class_name="ls-index",
            fold=True,
        )
    )
    fmap.add_child(
        Box(share_legend(), position="bottomright", class_name="ls-legend-box", fold=True)
    )
    if shares.empty:
        fmap.add_child(
            Box(notice("no_coverage_national"), position="topleft", class_name="ls-notice")
        )
    elif synthetic:
        fmap.add_child(
            Box(
                notice("synthetic", what="thôn/bản và trạm BTS", what_en="hamlets and sites"),
                position="topleft",
                class_name="ls-notice ls-synthetic",
            )
        )
    fmap.add_child(TileWatch(tile_layer, notice("tiles")))
    folium.LayerControl(collapsed=True).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    return fmap


def render_national(fmap: folium.Map) -> str:
    return render_html(fmap, "Việt Nam — vùng trắng sóng / dead zones — lomsong")


def _commune_props(row: Any, name: str, shares: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "c": row.code,
        "n": name,
        "p": row.province_code,
        "pop": None if pd.isna(row.population) else int(row.population),
    }
    if row.code in shares.index:
        s = shares.loc[row.code]
        out.update(
            h=int(s["hamlets"]),
            zh=int(s["none_hamlets"]),
            z=int(s["none_population"]),
            s=None if pd.isna(s["share"]) else round(float(s["share"]), 3),
        )
        if out["pop"] is None:
            out["pop"] = int(s["population"])
    return out


def _province_index(
    provinces: gpd.GeoDataFrame,
    shares: pd.DataFrame,
    communes: gpd.GeoDataFrame,
    link: str,
) -> str:
    """The provinces, each a link to its map, with the share of its people without signal."""
    by_province = (
        shares.join(communes.set_index("code")["province_code"], how="inner")
        .groupby("province_code")[["population", "none_population"]]
        .sum()
    )
    rows = [f"<h4>{escape(lb.both(lb.WORDS['provinces']))}</h4>"]
    for code, name in sorted(zip(provinces["code"], provinces["name"], strict=True)):
        text = f"{name} ({code})"
        if code in by_province.index and by_province.loc[code, "population"] > 0:
            share = by_province.loc[code, "none_population"] / by_province.loc[code, "population"]
            text += f" — {share * 100:.1f} %"
        href = link.replace("{code}", code)
        rows.append(f'<a href="{escape(href)}" data-province="{escape(code)}">{escape(text)}</a>')
    return "".join(rows)
