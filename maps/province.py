"""The province map: communes, hamlets by coverage status per operator, sites, dead zones, probes.

Thousands of hamlets and sectors make a map heavy if each is a folium ``Marker`` with its own
popup HTML. Here each layer is one ``folium.GeoJson`` whose features carry only an index and a
status code, drawn as circles on a canvas; the facts of every hamlet, sector and probe are
embedded once as columns (``PageData``) and ``lomsong-map.js`` builds a popup when one is opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd

from lomsong.coverage.model import DEFAULT_OPERATORS, Operator
from lomsong.maps import labels as lb
from lomsong.maps.assets import LeanMap, render_html
from lomsong.maps.elements import Box, PageData, TileWatch, popup_js
from lomsong.maps.geometry import feature_collection, light_polygons, point_collection
from lomsong.maps.inputs import ProvinceCoverage, TileSource, commune_names, commune_shares
from lomsong.maps.legend import notice, province_legend, title_box
from lomsong.maps.probes import ProbeMarker
from lomsong.words import local_time, operator_name

#: simplification of commune and dead-zone outlines on a province map (about 50 m)
TOLERANCE_DEG = 5e-4
DECIMALS = 5

Style = Callable[[dict[str, Any]], dict[str, Any]]


def province_map(
    code: str,
    name: str,
    communes: gpd.GeoDataFrame,
    coverage: ProvinceCoverage | None,
    probes: Sequence[ProbeMarker],
    *,
    tiles: TileSource | None = None,
    operators: Sequence[Operator] = DEFAULT_OPERATORS,
    links: Sequence[tuple[str, str]] = (),
    generated_at: float | None = None,
) -> folium.Map:
    """Build the map of one province.

    Parameters
    ----------
    code, name
        The province, e.g. ``"04"``, ``"Cao Bằng"``.
    communes
        Its communes, as ``lomsong.coverage.boundaries.communes(engine, code)`` gives them.
    coverage
        Hamlets, sectors, their classification and the dead zones; ``None`` draws the
        communes and probes with a notice that coverage data is missing.
    probes
        The province's probes with their live state.
    tiles
        The base map; OpenStreetMap by default.
    operators
        Display names of the operators (the classification gives their keys).
    links
        (text, href) pairs shown under the title: the national map, the status page.
    generated_at
        Epoch seconds shown as "updated"; now by default.

    Examples
    --------
    >>> from lomsong.coverage.boundaries import communes
    >>> fmap = province_map("04", "Cao Bằng", communes(province="04"), coverage, probes)
    ... # doctest: +SKIP
    >>> html = render_province(fmap, "Cao Bằng")  # doctest: +SKIP
    """
    tiles = tiles or TileSource()
    names = {op.key: op.name for op in operators}
    shown, extra = _operators(coverage)
    op_keys = shown + extra
    ops = [{"key": k, "name": names.get(k, k.title())} for k in op_keys]
    full_names = dict(zip(communes["code"], commune_names(communes), strict=True))

    west, south, east, north = (float(v) for v in communes.total_bounds)
    fmap = LeanMap(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=9,
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
        font_size="0.8rem",
    )
    tile_layer = folium.TileLayer(
        tiles=tiles.url,
        attr=tiles.attribution,
        max_zoom=tiles.max_zoom,
        name="tiles",
        control=False,
    )
    fmap.add_child(tile_layer)

    data: dict[str, Any] = {
        "text": lb.page_text(),
        "colours": {"status": lb.STATUS_COLOURS, "probe": lb.STATE_COLOURS},
        "communes": full_names,
        "ops": ops,
        "synthetic": {
            "hamlets": bool(coverage and coverage.synthetic_hamlets),
            "sites": bool(coverage and coverage.synthetic_sites),
        },
        "P": _probe_columns(probes),
        "link": None,
        "provinces": {},
    }
    if coverage is not None:
        data["H"] = _hamlet_columns(coverage, shown)
        data["T"], data["S"], site_lonlat = _sector_columns(coverage, op_keys)
    page = PageData(data)
    fmap.add_child(page)
    d = page.get_name()

    fmap.add_child(_commune_layer(communes, coverage, d))
    if coverage is not None:
        fmap.add_child(_dead_zone_layer(coverage.dead_zones, d))
        for k, key in enumerate(op_keys):
            fmap.add_child(_site_layer(data["S"], site_lonlat, k, key, ops[k]["name"], d))
        statuses = coverage.classification
        fmap.add_child(
            _hamlet_layer(coverage, statuses.overall, -1, lb.layer_name("all_operators"), True, d)
        )
        for k, key in enumerate(shown):
            j = statuses.operators.index(key)
            fmap.add_child(
                _hamlet_layer(
                    coverage,
                    statuses.status[:, j],
                    k,
                    lb.layer_name("hamlets_of", name=ops[k]["name"]),
                    False,
                    d,
                )
            )
    fmap.add_child(_probe_layer(probes, d))

    when = local_time(generated_at or time.time())
    subtitle = f"Cập nhật / Updated: {when} (giờ Việt Nam / Vietnam time)"
    fmap.add_child(
        Box(title_box(f"{name} ({code})", subtitle, links), position="topleft", class_name="ls-t")
    )
    legend = province_legend(
        [(o["key"], o["name"]) for o in ops], with_coverage=coverage is not None
    )
    fmap.add_child(Box(legend, position="bottomright", class_name="ls-legend-box", fold=True))
    for text, class_name in _notices(coverage):
        fmap.add_child(Box(text, position="topleft", class_name=class_name))
    fmap.add_child(TileWatch(tile_layer, notice("tiles")))
    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    return fmap


def render_province(fmap: folium.Map, name: str) -> str:
    return render_html(fmap, f"{name} — bản đồ vùng phủ sóng / coverage map — lomsong")


# -- the layers ----------------------------------------------------------------------------------


def _commune_layer(
    communes: gpd.GeoDataFrame, coverage: ProvinceCoverage | None, d: str
) -> folium.GeoJson:
    shares = (
        commune_shares(coverage.hamlets, coverage.classification)
        if coverage is not None
        else pd.DataFrame()
    )
    props = []
    for code, name, population in zip(
        communes["code"], commune_names(communes), communes["population"], strict=True
    ):
        row: dict[str, Any] = {"c": code, "n": name, "pop": _int_or_none(population)}
        if code in shares.index:
            s = shares.loc[code]
            row.update(
                h=int(s["hamlets"]),
                zh=int(s["none_hamlets"]),
                z=int(s["none_population"]),
                s=None if pd.isna(s["share"]) else round(float(s["share"]), 4),
            )
            if row["pop"] is None:
                row["pop"] = int(s["population"])
        props.append(row)
    geoms = light_polygons(
        communes.geometry.to_numpy(), tolerance=TOLERANCE_DEG, decimals=DECIMALS, coverage=True
    )
    style = {"color": lb.COMMUNE_LINE_COLOUR, "weight": 1.2, "fill": False, "opacity": 0.8}
    return folium.GeoJson(
        feature_collection(geoms, props),
        name=lb.layer_name("communes"),
        style_function=lambda _f: style,
        on_each_feature=popup_js(f"lomsong.commune({d}, f)"),
    )


def _dead_zone_layer(zones: gpd.GeoDataFrame, d: str) -> folium.GeoJson:
    props = [
        {"c": str(c), "a": round(float(a), 2)}
        for c, a in zip(zones["code"], zones["area_km2"], strict=True)
    ]
    geoms = light_polygons(
        zones.geometry.to_numpy(), tolerance=TOLERANCE_DEG, decimals=DECIMALS, coverage=False
    )
    style = {
        "color": lb.DEAD_ZONE_COLOUR,
        "weight": 0.5,
        "fillColor": lb.DEAD_ZONE_COLOUR,
        "fillOpacity": 0.28,
    }
    return folium.GeoJson(
        feature_collection(geoms, props),
        name=lb.layer_name("dead_zones"),
        style_function=lambda _f: style,
        on_each_feature=popup_js(f"lomsong.deadZone({d}, f)"),
    )


def _hamlet_layer(
    coverage: ProvinceCoverage,
    codes: np.ndarray[Any, Any],
    op: int,
    name: str,
    show: bool,
    d: str,
) -> folium.GeoJson:
    h = coverage.hamlets
    props = [
        {"s": int(s)} if powered else {"s": int(s), "p": 0}
        for s, powered in zip(codes.tolist(), h.has_grid_power.tolist(), strict=True)
    ]

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        p = feature["properties"]
        if p.get("p") == 0:
            return {
                "fillColor": lb.STATUS_COLOURS[p["s"]],
                "color": lb.NO_POWER_RING,
                "weight": 2.5,
                "radius": 6,
            }
        return {"fillColor": lb.STATUS_COLOURS[p["s"]], "color": "#ffffff", "weight": 1}

    return folium.GeoJson(
        point_collection(h.lon, h.lat, props, decimals=DECIMALS),
        name=name,
        show=show,
        style_function=style,
        marker=folium.CircleMarker(radius=5, fill=True, fill_opacity=0.95),
        on_each_feature=popup_js(f"lomsong.hamlet({d}, f.id, {op})"),
    )


def _site_layer(
    sites: dict[str, list[Any]],
    lonlat: np.ndarray[Any, Any],
    k: int,
    key: str,
    name: str,
    d: str,
) -> folium.FeatureGroup | folium.GeoJson:
    mine = [s for s, op in enumerate(sites["op"]) if op == k]
    colour = lb.operator_colour(key)
    features = [
        {
            "type": "Feature",
            "id": s,
            "geometry": {"type": "Point", "coordinates": lonlat[s].tolist()},
            "properties": {"d": 0 if sites["on"][s] else 1},
        }
        for s in mine
    ]
    layer_name = lb.layer_name("sites_of", name=name)
    if not features:
        return folium.FeatureGroup(name=layer_name, show=False)

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        down = feature["properties"]["d"] == 1
        return {"fillColor": lb.SITE_DOWN_COLOUR if down else colour}

    return folium.GeoJson(
        {"type": "FeatureCollection", "features": features},
        name=layer_name,
        show=False,
        style_function=style,
        marker=folium.CircleMarker(
            radius=3.5, fill=True, fill_opacity=1.0, color="#ffffff", weight=1
        ),
        on_each_feature=popup_js(f"lomsong.site({d}, f.id)"),
    )


def _probe_layer(probes: Sequence[ProbeMarker], d: str) -> folium.FeatureGroup | folium.GeoJson:
    name = lb.layer_name("probes")
    if not probes:
        return folium.FeatureGroup(name=name)
    collection = point_collection(
        np.array([p.lon for p in probes]),
        np.array([p.lat for p in probes]),
        [{"s": p.state} for p in probes],
        decimals=DECIMALS,
    )
    return folium.GeoJson(
        collection,
        name=name,
        style_function=lambda f: {"className": f"ls-probe ls-probe-{f['properties']['s']}"},
        marker=folium.Marker(
            icon=folium.DivIcon(icon_size=(16, 16), icon_anchor=(8, 8), class_name="ls-probe")
        ),
        on_each_feature=popup_js(f"lomsong.probe({d}, f.id)"),
    )


# -- the columns behind the popups ---------------------------------------------------------------


def _operators(coverage: ProvinceCoverage | None) -> tuple[list[str], list[str]]:
    """Operators with a hamlet layer (a sector or a reading in the province), then the other
    operators that have sectors here."""
    if coverage is None:
        return [], []
    c = coverage.classification
    with_sectors = set(coverage.sectors.operator.tolist())
    shown = [
        key for j, key in enumerate(c.operators) if key in with_sectors or c.measured[:, j].any()
    ]
    extra = sorted(with_sectors - set(c.operators))
    return shown, extra


def _hamlet_columns(coverage: ProvinceCoverage, shown: Sequence[str]) -> dict[str, Any]:
    h, c = coverage.hamlets, coverage.classification
    cols = [c.operators.index(k) for k in shown]
    to_shown = np.full(len(c.operators) + 1, -1, dtype=np.int64)
    to_shown[cols] = np.arange(len(cols))
    rsrp = np.round(c.rsrp_dbm[:, cols].astype(np.float64), 0)
    rsrp_rows = [[None if np.isnan(v) else int(v) for v in row] for row in rsrp.tolist()]
    return {
        "id": h.ids.tolist(),
        "name": h.names.tolist(),
        "commune": h.commune_code.tolist(),
        "pop": h.population.astype(np.int64).tolist(),
        "power": h.has_grid_power.astype(np.int8).tolist(),
        "overall": c.overall.astype(np.int64).tolist(),
        # -1 (no best operator) indexes the extra last slot, which stays -1
        "best": to_shown[c.best_operator].tolist(),
        "status": c.status[:, cols].astype(np.int64).tolist(),
        "rsrp": rsrp_rows,
        "measured": c.measured[:, cols].astype(np.int8).tolist(),
        "serving": c.serving[:, cols].astype(np.int64).tolist(),
    }


def _sector_columns(
    coverage: ProvinceCoverage, op_keys: Sequence[str]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], np.ndarray[Any, Any]]:
    """Sectors (T) and the sites they form (S), with each site's position."""
    s = coverage.sectors
    keys = pd.Series(s.operator.astype(str)) + "\x00" + pd.Series(s.site_id.astype(str))
    site_of, uniques = pd.factorize(keys)
    n_sites = len(uniques)
    first = np.full(n_sites, -1, dtype=np.int64)
    first[site_of[::-1]] = np.arange(len(s))[::-1]
    on = np.zeros(n_sites, dtype=bool)
    np.logical_or.at(on, site_of, s.active.astype(bool))
    op_index = {k: i for i, k in enumerate(op_keys)}
    cells = [str(i).rsplit(":", 1)[-1] for i in s.ids.tolist()]
    azimuth = [None if np.isnan(a) else round(a) for a in s.azimuth_deg.tolist()]
    sectors: dict[str, list[Any]] = {
        "site": site_of.tolist(),
        "cell": cells,
        "radio": s.radio.tolist(),
        "band": [round(b) for b in s.band_mhz.tolist()],
        "az": azimuth,
        "on": s.active.astype(np.int8).tolist(),
    }
    sites: dict[str, list[Any]] = {
        "id": [str(s.site_id[i]) for i in first],
        "op": [op_index[str(s.operator[i])] for i in first],
        "on": on.astype(np.int8).tolist(),
    }
    lonlat = np.round(np.column_stack([s.lon[first], s.lat[first]]), DECIMALS)
    return sectors, sites, lonlat


def _probe_columns(probes: Sequence[ProbeMarker]) -> dict[str, list[Any]]:
    return {
        "id": [p.id for p in probes],
        "label": [p.label for p in probes],
        "commune": [f"{p.commune_name} ({p.commune_code})" for p in probes],
        "state": [p.state for p in probes],
        "since": [p.since for p in probes],
        "seen": [p.last_seen for p in probes],
        "uplinks": [[[u.name, _operator(u.operator), u.state] for u in p.uplinks] for p in probes],
        "outages": [
            [[o.condition, o.uplink, o.started_at, o.cause] for o in p.outages] for p in probes
        ],
    }


def _operator(key: str) -> str:
    """``Viettel``, or ``cáp quang / fibre``: the name alerts and the status page use."""
    vi, en = operator_name(key, "vi"), operator_name(key, "en")
    return vi if vi == en else lb.both((vi, en))


def _notices(coverage: ProvinceCoverage | None) -> list[tuple[str, str]]:
    """Notices and their classes: no coverage data, or synthetic data."""
    if coverage is None:
        return [(notice("no_coverage"), "ls-notice ls-no-coverage")]
    what = [
        (vi, en)
        for flag, vi, en in (
            (coverage.synthetic_hamlets, "thôn/bản", "hamlets"),
            (coverage.synthetic_sites, "trạm BTS", "sites"),
        )
        if flag
    ]
    if not what:
        return []
    text = notice(
        "synthetic",
        what=" và ".join(vi for vi, _ in what),
        what_en=" and ".join(en for _, en in what),
    )
    return [(text, "ls-notice ls-synthetic")]


def _int_or_none(value: object) -> int | None:
    return None if pd.isna(value) else int(value)  # type: ignore[call-overload]
