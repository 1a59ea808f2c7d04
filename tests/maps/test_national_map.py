"""The national overview: shading by the share without signal, links to the provinces."""

from __future__ import annotations

import pandas as pd
import pytest

from lomsong.coverage import boundaries
from lomsong.maps import labels as lb
from lomsong.maps.inputs import TileSource, commune_shares
from lomsong.maps.national import national_map, render_national
from tests.maps.conftest import layer_data, layers, page_data
from tests.maps.sample import SampleProvince

TILES = TileSource(url="http://127.0.0.1:9/{z}/{x}/{y}.png", attribution="test tiles")
SHARE_LAYER = "Tỷ lệ dân trong vùng trắng sóng / Share of population in dead zones"


@pytest.fixture(scope="module")
def national(cao_bang: SampleProvince) -> tuple[str, pd.DataFrame]:
    c = cao_bang.coverage
    shares = commune_shares(c.hamlets, c.classification)
    fmap = national_map(
        boundaries.communes(), boundaries.provinces(), shares, tiles=TILES, synthetic=True
    )
    return render_national(fmap), shares


def test_communes_are_shaded_by_their_share_without_signal(
    national: tuple[str, pd.DataFrame],
) -> None:
    html, shares = national
    feats = layer_data(html, layers(html)[SHARE_LAYER])["features"]
    assert len(feats) == 3321
    by_code = {f["properties"]["c"]: f["properties"] for f in feats}
    for code, row in shares.iterrows():
        props = by_code[str(code)]
        assert props["z"] == row["none_population"] and props["h"] == row["hamlets"]
        assert props["s"] == pytest.approx(row["share"], abs=5e-4)
    # communes outside Cao Bằng have no data; the style map gives them the no-data grey
    assert "s" not in by_code["00004"]
    assert lb.NO_DATA_COLOUR in html
    worst = shares["share"].idxmax()
    assert lb.share_colour(float(shares.loc[worst, "share"])) in html


def test_each_province_links_to_its_map(national: tuple[str, pd.DataFrame]) -> None:
    html, _ = national
    for code in ("01", "04", "96"):
        assert f'href=\\"/maps/province/{code}\\"' in html
    assert page_data(html)["link"] == "/maps/province/{code}"
    assert "Cao Bằng (04) —" in html  # the province's share beside its link


def test_the_overview_is_light_enough(national: tuple[str, pd.DataFrame]) -> None:
    html, _ = national
    assert "Dữ liệu mô phỏng: thôn/bản và trạm BTS không phải số liệu thật" in html
    assert len(html.encode()) < 5 * 2**20


def test_a_viewer_gets_only_their_provinces_and_no_data_is_said() -> None:
    fmap = national_map(
        boundaries.communes(), boundaries.provinces(), None, tiles=TILES, only={"04", "08"}
    )
    html = render_national(fmap)
    feats = layer_data(html, layers(html)[SHARE_LAYER])["features"]
    assert {f["properties"]["p"] for f in feats} == {"04", "08"}
    assert "Chưa có dữ liệu vùng phủ: các xã được tô màu xám" in html
    assert 'href=\\"/maps/province/01\\"' not in html
