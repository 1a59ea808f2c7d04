"""The loaders that build the engine's columns from the database, the data version the caches
key on, and the storing of synthetic sets; on SQLite and PostgreSQL."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from sqlalchemy import Engine, select

from lomsong.coverage import boundaries, store
from lomsong.coverage.importing import import_file
from lomsong.coverage.model import RURAL, SUBURBAN, URBAN, CoverageSettings
from lomsong.coverage.validate import Options
from lomsong.errors import ConflictError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import geodata_imports, hamlets, sites
from tests.coverage.geodata_helpers import DATA


def test_load_hamlets_environment_power_population(engine: Engine, tmp_path: object) -> None:
    import_file(engine, DATA / "hamlets_caobang.geojson", Options(kind="hamlets"))
    import_file(engine, DATA / "vn2000_tm3_caobang.csv", Options(kind="hamlets", crs="9210"))
    h = store.load_hamlets(engine, "04")
    got = {
        i: (c, env, pwr)
        for i, c, env, pwr in zip(
            h.ids, h.commune_code, h.environment, h.has_grid_power, strict=True
        )
    }
    # 01279 is a ward (phường) outside the six centrally run cities: suburban, as the engine
    # and the dead zones class it; the rest are rural communes (xã)
    assert got["CB-TM3-1"] == ("01279", SUBURBAN, True)
    assert got["CB-TM3-2"] == ("01321", RURAL, False)  # "không": no grid power
    assert got["CB-003"] == ("01324", RURAL, True)  # unknown power counts as on
    assert h.population[list(h.ids).index("CB-TM3-1")] == 640
    assert len(store.load_hamlets(engine, "11")) == 0
    # without --province the file's Hà Nội hamlet was accepted too
    ha_noi = store.load_hamlets(engine, "01")
    assert list(ha_noi.ids) == ["CB-008"]
    # (105.85, 21.03) is in a ward of Hà Nội, a centrally run city: urban
    assert list(ha_noi.environment) == [URBAN]
    assert len(store.load_hamlets(engine)) == 6


def _point_across_border(inside: str, outside: str, km: float) -> shapely.Point:
    """A point of province ``outside`` between ``km`` and ``km + 5`` km from ``inside``."""
    prov = boundaries.provinces().set_index("code").geometry
    west, south, east, north = prov[outside].bounds
    xs, ys = np.meshgrid(np.arange(west, east, 0.01), np.arange(south, north, 0.01))
    grid = shapely.points(xs.ravel(), ys.ravel())
    grid = grid[shapely.contains(prov[outside], grid)]
    dist = shapely.distance(prov[inside], grid) * 111.32
    ok = np.flatnonzero((dist > km) & (dist < km + 5))
    assert ok.size, f"no point of {outside} {km} km from {inside}"
    return shapely.Point(grid[ok[0]])


def _site(sid: str, p: shapely.Point, status: str = "active") -> dict[str, object]:
    return {
        "id": f"viettel:{sid}:1",
        "site_id": sid,
        "cell_id": "1",
        "operator": "viettel",
        "radio": "lte",
        "band_mhz": 1800.0,
        "lat": p.y,
        "lon": p.x,
        "province_code": None,
        "commune_code": None,
        "height_m": None,
        "azimuth_deg": 90.0,
        "beamwidth_deg": None,
        "power_dbm": None,
        "range_m": None,
        "status": status,
        "source": "operator",
        "synthetic": False,
    }


def test_load_sectors_reaches_across_the_border(engine: Engine) -> None:
    near = _point_across_border("04", "20", 10.0)  # Lạng Sơn, 10 km from Cao Bằng
    far = _point_across_border("04", "20", 60.0)
    hanoi = shapely.Point(105.85, 21.03)
    rows = [
        _site("NEAR", near),
        _site("FAR", far),
        _site("HN", hanoi),
        _site("PLAN", near, "planned"),
    ]
    with write_transaction(engine) as conn:
        store.write_sites(conn, rows, None, 1.0)  # type: ignore[arg-type]
    settings = CoverageSettings(default_height_m=25.0, default_beamwidth_deg=60.0)
    sectors = store.load_sectors(engine, "04", margin_km=35.0, settings=settings)
    assert list(sectors.ids) == ["viettel:NEAR:1"]
    assert (sectors.height_m[0], sectors.beamwidth_deg[0]) == (25.0, 60.0)
    assert np.isnan(sectors.power_dbm[0]) and np.isnan(sectors.range_m[0])
    assert sorted(store.load_sectors(engine).ids) == [
        "viettel:FAR:1",
        "viettel:HN:1",
        "viettel:NEAR:1",
    ]
    assert list(store.load_sectors(engine, "04", margin_km=80.0).ids) == [
        "viettel:FAR:1",
        "viettel:NEAR:1",
    ]


def test_data_version_moves_with_every_change(engine: Engine) -> None:
    v0 = store.data_version(engine)
    import_file(engine, DATA / "operator_sites.csv", Options(kind="sites"))
    v1 = store.data_version(engine)
    assert v1 != v0
    import_file(engine, DATA / "hamlets_caobang.geojson", Options(kind="hamlets"))
    v2 = store.data_version(engine)
    assert v2 != v1
    with write_transaction(engine) as conn:
        store.write_field(
            conn,
            [
                {
                    "lat": 22.9,
                    "lon": 105.6,
                    "operator": "viettel",
                    "radio": None,
                    "rsrp_dbm": -99.0,
                    "measured_at": 1.0,
                    "source": "t",
                }
            ],
            None,
            2.0,
        )
    v3 = store.data_version(engine)
    assert v3 != v2 and store.data_version(engine) == v3


def _synthetic(commune: str, n: int, seed: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Frames in the synthetic generator's shape (the hamlets and sites tables' columns)."""
    rng = np.random.default_rng(seed)
    lon = 105.635 + rng.uniform(-0.01, 0.01, n)
    lat = 22.94 + rng.uniform(-0.01, 0.01, n)
    h = gpd.GeoDataFrame(
        {
            "id": [f"SYN-04-{commune}-{i:03d}" for i in range(n)],
            "name": [f"Thôn Giả Lập {i} (synthetic)" for i in range(n)],
            "commune_code": commune,
            "province_code": "04",
            "lat": lat,
            "lon": lon,
            "population": rng.integers(50, 500, n),
            "households": rng.integers(10, 100, n),
            "has_grid_power": rng.random(n) > 0.2,
            "synthetic": True,
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    s = gpd.GeoDataFrame(
        [
            {
                **_site(f"SYN-{seed}-{i}", shapely.Point(lon[i], lat[i])),
                "province_code": "04",
                "commune_code": commune,
                "source": "synthetic",
                "synthetic": True,
            }
            for i in range(n)
        ],
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    return h, s


def test_synthetic_sets_replace_each_other_and_never_mix_with_real(engine: Engine) -> None:
    h1, s1 = _synthetic("01321", 5, seed=1)
    h_id, h_changes, s_id, s_changes = store.store_synthetic(
        engine, h1, s1, label="province 04, seed 1", province="04"
    )
    assert (h_changes.inserted, s_changes.inserted) == (5, 5)
    h2, s2 = _synthetic("01321", 3, seed=2)
    _, h_changes, _, s_changes = store.store_synthetic(
        engine, h2, s2, label="province 04, seed 2", province="04"
    )
    assert (h_changes.updated, h_changes.retired) == (3, 2)
    assert (s_changes.inserted, s_changes.deleted) == (3, 5)
    loaded = store.load_hamlets(engine, "04")
    assert len(loaded) == 3 and loaded.synthetic.all()
    with engine.connect() as conn:
        imports = conn.execute(
            select(geodata_imports.c.kind, geodata_imports.c.synthetic, geodata_imports.c.source)
        ).all()
        assert {(k, bool(syn)) for k, syn, _ in imports} == {("hamlets", True), ("sites", True)}
        assert all(src.startswith("synthetic: province 04") for _, _, src in imports)
        assert conn.execute(select(sites.c.synthetic).distinct()).scalars().all() == [True]
    # a real hamlet set for the province retires the synthetic one…
    import_file(
        engine,
        DATA / "hamlets_caobang.geojson",
        Options(kind="hamlets", province="04"),
        replace=True,
    )
    assert not store.load_hamlets(engine, "04").synthetic.any()
    # …and synthetic data is then refused there
    with pytest.raises(ConflictError, match=r"province 04 has 3 real hamlets"):
        store.store_synthetic(engine, h1, s1, label="again", province="04")
    with engine.connect() as conn:
        n = conn.execute(select(hamlets.c.id).where(hamlets.c.retired_at.is_(None))).all()
    assert len(n) == 3
