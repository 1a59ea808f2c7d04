"""The bundled boundaries agree with the bundled commune list, code for code."""

from __future__ import annotations

from lomsong.coverage import boundaries
from lomsong.storage.places import bundled_communes, bundled_provinces


def test_every_commune_polygon_has_a_known_2025_code_and_every_commune_a_polygon() -> None:
    polygons = boundaries.communes()
    listed = {c["code"]: c["province_code"] for c in bundled_communes()}
    assert dict(zip(polygons["code"], polygons["province_code"], strict=True)) == listed
    assert polygons.geometry.is_valid.all() and not polygons.geometry.is_empty.any()
    # Xã Ba Chẽ is 06970 (the polygon layer says 06978)
    assert polygons.loc[polygons["code"] == "06970", "name"].tolist() == ["Ba Chẽ"]


def test_provinces_and_the_population_of_cao_bang() -> None:
    assert set(boundaries.provinces()["code"]) == {p["code"] for p in bundled_provinces()}
    cao_bang = boundaries.communes(province="04")
    assert len(cao_bang) == 56 and int(cao_bang["population"].sum()) == 573_119
