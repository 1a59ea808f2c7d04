"""A province gets its dead-zone hamlet table, with the counts it reports, from its own files:
its hamlet list (some rows without a commune code) and an operator's site list, imported with
``geodata import``, then ``coverage classify --status none`` and ``coverage summary --vi``.

One Viettel site stands in Phường Thục Phán with three hamlets within 400 m of it; three other
hamlets are in Bảo Lạc, about 60 km from it and from any other site. So the first three are
covered (by Viettel only), the last three have no signal from anyone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import shapely
from pyproj import Geod

from lomsong.coverage import boundaries
from tests.coverage.test_glue_cli import ok, read

SITE = (22.6777, 106.1890)  # lat, lon
# id, name, commune code as the file gives it ("" = none), population, grid power, lat, lon
HAMLETS = [
    ("TP-01", "Tổ dân phố Sông Hiến", "01273", 420, "có", 22.6790, 106.1900),
    ("TP-02", "Tổ dân phố Đề Thám", "", 380, "có", 22.6765, 106.1875),
    ("TP-03", "Tổ dân phố Hợp Giang", "01273", 510, "có", 22.6800, 106.1880),
    ("BL-01", "Bản Nà Lũng", "", 215, "không", 22.9455, 105.6335),
    ("BL-02", "Thôn Khuổi Khon", "", 180, "có", 22.9480, 105.6380),
    ("BL-03", "Bản Pác Rằng", "", 96, "không", 22.9420, 105.6300),
]


def commune_at(lat: float, lon: float) -> str:
    communes = boundaries.communes(province="04")
    [code] = communes.loc[communes.contains(shapely.Point(lon, lat)), "code"]
    return str(code)


def test_a_province_counts_its_dead_zone_hamlets_from_its_own_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tinh.db'}"
    geod = Geod(ellps="WGS84")
    for h in HAMLETS:
        _, _, metres = geod.inv(SITE[1], SITE[0], h[6], h[5])
        assert metres < 400 if h[0].startswith("TP") else metres > 40_000, (h[0], metres)
    thon = tmp_path / "thon.csv"
    thon.write_text(
        "ma_thon,ten_thon,ma_xa,dan_so,co_dien_luoi,lat,lon\n"
        + "".join(f"{i},{n},{c},{p},{g},{la},{lo}\n" for i, n, c, p, g, la, lo in HAMLETS),
        encoding="utf-8",
    )
    tram = tmp_path / "tram.csv"
    tram.write_text(
        "Mã trạm,Cell,Nhà mạng,Công nghệ,Băng tần,Vĩ độ,Kinh độ,Độ cao anten,Góc phương vị,"
        "Độ rộng búp sóng,Công suất,Trạng thái\n"
        f"CBG-TP1,1,Viettel,4G,1800,{SITE[0]},{SITE[1]},30,,,43,Hoạt động\n",
        encoding="utf-8",
    )
    said = ok("geodata", "import", "hamlets", str(thon), "--province", "04", url=url)
    assert "6 of 6 rows accepted, 0 rejected" in said
    said = ok("geodata", "import", "sites", str(tram), url=url)
    assert "1 of 1 rows accepted" in said

    communes = {h[0]: commune_at(h[5], h[6]) for h in HAMLETS}
    town, bao_lac = communes["TP-01"], communes["BL-01"]
    assert {communes[h[0]] for h in HAMLETS[:3]} == {town} == {"01273"}
    assert {communes[h[0]] for h in HAMLETS[3:]} == {bao_lac} != {town}

    dead_file = tmp_path / "trang_song.csv"
    said = ok(
        "coverage",
        "classify",
        "--province",
        "04",
        "--status",
        "none",
        "-o",
        str(dead_file),
        url=url,
    )
    assert "3 hamlets (491 people): covered 0, weak 0, no signal 3, outage 0" in said
    dead = read(dead_file)
    assert sorted(zip(dead["hamlet_id"], dead["name"], dead["commune_code"], strict=True)) == [
        ("BL-01", "Bản Nà Lũng", bao_lac),
        ("BL-02", "Thôn Khuổi Khon", bao_lac),
        ("BL-03", "Bản Pác Rằng", bao_lac),
    ]
    assert set(dead["synthetic"]) == {"False"}
    viettel_dead = tmp_path / "viettel.csv"
    ok(
        "coverage", "classify", "--province", "04", "--status", "covered",
        "--operator", "viettel", "-o", str(viettel_dead), url=url,
    )  # fmt: skip
    assert sorted(read(viettel_dead)["hamlet_id"]) == ["TP-01", "TP-02", "TP-03"]

    book = tmp_path / "tong_hop.xlsx"
    ok("coverage", "summary", "--province", "04", "-o", str(book), "--vi", url=url)
    sheets = pd.read_excel(book, sheet_name=None, dtype={"Mã xã": str})
    table = sheets["Dữ liệu"]
    assert not table["Dữ liệu giả lập"].any()  # the province's own files: not synthetic
    rows = table.set_index(["Mã xã", "Nhà mạng"])
    assert sorted(set(table["Mã xã"])) == sorted({town, bao_lac})
    far = rows.loc[(bao_lac, "Chung")]
    assert far["Tên xã"] == "Xã Bảo Lạc"
    assert (far["Số thôn"], far["Dân số"]) == (3, 491)
    assert (far["Số thôn trắng sóng"], far["Dân số trắng sóng"]) == (3, 491)
    assert (
        far["Số thôn trắng sóng không có điện lưới"],
        far["Dân số trắng sóng không có điện lưới"],
    ) == (2, 311)
    assert far["Số thôn phủ sóng"] == 0 and far["Số thôn lõm sóng"] == 0
    near = rows.loc[(town, "Chung")]
    assert (near["Số thôn phủ sóng"], near["Dân số phủ sóng"]) == (3, 1310)
    assert near["Số thôn trắng sóng"] == 0 and near["Số thôn không có điện lưới"] == 0
    assert rows.loc[(town, "Viettel"), "Số thôn phủ sóng"] == 3
    assert rows.loc[(town, "MobiFone"), "Số thôn trắng sóng"] == 3
