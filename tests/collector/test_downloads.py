"""The read API's tables as files (``?format=csv|xlsx&lang=vi|en``) on a real collector: the
same rows as the JSON, headers in the language asked, a byte-order mark for Excel, a file name
with and without diacritics, the viewer's provinces only, and a clear 422 for a bad format."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest

from lomsong.coverage.compute import generate_and_store
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import outages
from lomsong.words import operator_name
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: 10:42 on 23 November 2026 in Hà Nội (03:42 UTC)
STARTED = 1795405320.0


@pytest.fixture
def seeded(collector_factory: CollectorFactory, sqlite_url: str) -> RunningCollector:
    c = collector_factory(sqlite_url)
    generate_and_store(c.engine, province="04", seed=5)
    return c


def read_csv(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), content[:20]  # BOM: Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def read_xlsx(content: bytes, sheet: str) -> list[tuple[Any, ...]]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    return list(book[sheet].iter_rows(values_only=True))


def filenames(disposition: str) -> tuple[str, str]:
    """The ASCII ``filename`` and the RFC 5987 ``filename*`` of an attachment."""
    kind, plain, utf8 = (p.strip() for p in disposition.split(";"))
    assert kind == "attachment" and plain.startswith('filename="') and plain.endswith('"')
    assert utf8.startswith("filename*=UTF-8''")
    return plain[len('filename="') : -1], unquote(utf8.removeprefix("filename*=UTF-8''"))


def test_hamlets_and_summary_as_csv_and_xlsx(seeded: RunningCollector) -> None:
    c = seeded
    query = {"province": "04", "limit": "100000"}
    with c.client(ADMIN_SECRET) as http:
        doc = http.get("/api/v1/hamlets", params=query).json()
        count = doc["count"]
        assert count == len(doc["hamlets"]) > 1000

        r = http.get("/api/v1/hamlets", params={**query, "format": "csv", "lang": "vi"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert filenames(r.headers["content-disposition"]) == ("thon-ban_04.csv", "thôn-bản_04.csv")
        header, *rows = read_csv(r.content)
        for name in ("Mã thôn", "Tên thôn", "Mã xã", "Tên xã", "Dân số", "Trạng thái"):
            assert name in header, header
        assert "Nhà mạng tốt nhất" in header and "Trạng thái Viettel" in header
        assert len(rows) == count
        by_id = {h["id"]: h for h in doc["hamlets"]}
        first = dict(zip(header, rows[0], strict=True))
        hamlet = by_id[first["Mã thôn"]]
        assert first["Tên thôn"] == hamlet["name"] and first["Mã xã"] == hamlet["commune"]["code"]
        assert first["Nhà mạng tốt nhất"] == operator_name(hamlet["best_operator"], "vi")
        statuses = {dict(zip(header, row, strict=True))["Trạng thái"] for row in rows}
        assert statuses <= {"phủ sóng", "lõm sóng", "trắng sóng", "mất sóng do sự cố"}

        r = http.get("/api/v1/hamlets", params={**query, "format": "xlsx", "lang": "en"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == XLSX
        assert int(r.headers["content-length"]) == len(r.content)
        assert filenames(r.headers["content-disposition"]) == ("hamlets_04.xlsx",) * 2
        book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
        # generated hamlets: the notes sheet comes first and says so
        assert book.sheetnames == ["Notes", "hamlets"]
        header, *rows = read_xlsx(r.content, "hamlets")
        assert header[:3] == ("hamlet_id", "name", "commune_code") and len(rows) == count
        assert "SYNTHETIC DATA" in str(read_xlsx(r.content, "Notes")[0][0])

        # the JSON's own page, in a file
        paged = {"province": "04", "limit": "7", "offset": "3", "format": "csv"}
        _, *rows = read_csv(http.get("/api/v1/hamlets", params=paged).content)
        assert [row[0] for row in rows] == [h["id"] for h in doc["hamlets"][3:10]]

        summary = http.get("/api/v1/coverage/summary", params={"province": "04"}).json()
        r = http.get(
            "/api/v1/coverage/summary", params={"province": "04", "format": "xlsx", "lang": "vi"}
        )
        assert r.status_code == 200, r.text
        assert filenames(r.headers["content-disposition"]) == (
            "tong-hop_04_xa.xlsx",
            "tổng-hợp_04_xã.xlsx",
        )
        header, *rows = read_xlsx(r.content, "Dữ liệu")
        assert header[0] == "Mã xã" and "Nhà mạng" in header and len(rows) == summary["count"]
        operators = {row[header.index("Nhà mạng")] for row in rows}
        assert {"Chung", "Viettel", "VinaPhone (VNPT)"} <= operators

        bad = http.get("/api/v1/hamlets", params={"format": "pdf"})
        assert bad.status_code == 422
        assert bad.json()["detail"].startswith("format: ") and "'pdf'" in bad.json()["detail"]
        bad = http.get("/api/v1/outages", params={"format": "csv", "lang": "fr"})
        assert bad.status_code == 422 and "lang" in bad.json()["detail"]

    # a viewer downloads its own province and nothing else
    with c.client(c.viewer("04")) as http:
        mine = http.get("/api/v1/hamlets", params={"format": "csv", "limit": "100000"})
        assert mine.status_code == 200 and len(read_csv(mine.content)) == count + 1
        for path in ("/api/v1/hamlets", "/api/v1/coverage/summary", "/api/v1/outages"):
            other = http.get(path, params={"province": "06", "format": "xlsx"})
            assert other.status_code == 403 and "province" in other.json()["detail"], path


def _outage(n: int, province: str, commune: str, **kw: Any) -> dict[str, Any]:
    row = {
        "id": f"o{n}",
        "probe_id": f"p{n}",
        "commune_code": commune,
        "province_code": province,
        "condition": "uplink_down",
        "cause": None,
        "uplink": "viettel-4g",
        "operator": "viettel",
        "started_at": STARTED,
        "ended_at": None,
        "detected_at": STARTED,
        "resolved_at": None,
        "updated_at": STARTED,
    }
    return {**row, **kw}


def test_outages_open_and_resolved_as_files(collector: RunningCollector) -> None:
    c = collector
    c.register("p1", "01273", ("viettel-4g:viettel",))
    c.ctx.live.reload(c.engine)
    rows = [
        _outage(1, "04", "01273", ended_at=STARTED + 3900),
        _outage(2, "04", "01321", condition="probe_silent", cause="power", uplink=None,
                operator=None, started_at=STARTED + 60),
        _outage(3, "12", "03388", operator="mobifone", uplink="mobifone-4g"),
    ]  # fmt: skip
    with write_transaction(c.engine) as conn:
        conn.execute(outages.insert(), rows)
    with c.client(ADMIN_SECRET) as http:
        r = http.get("/api/v1/outages", params={"province": "04", "format": "csv"})
        assert r.status_code == 200, r.text
        assert filenames(r.headers["content-disposition"]) == ("su-co_04.csv", "sự-cố_04.csv")
        header, *body = read_csv(r.content)
        assert header[:4] == ["Mã sự cố", "Trạm đo", "Mã xã", "Tên xã"]
        assert "Nhà mạng" in header and "Bắt đầu" in header
        got = {row[0]: dict(zip(header, row, strict=True)) for row in body}
        assert sorted(got) == ["o1", "o2"]  # newest first, province 04 only
        assert got["o1"]["Tên xã"] == "Phường Thục Phán" and got["o1"]["Nhà mạng"] == "Viettel"
        assert got["o1"]["Bắt đầu"] == "10:42 23/11/2026"  # Asia/Ho_Chi_Minh, not UTC
        assert got["o1"]["Kết thúc"] == "11:47 23/11/2026"
        assert got["o1"]["Thời gian"] == "1 giờ 5 phút" and got["o1"]["Đang diễn ra"] == "Không"
        assert (
            got["o2"]["Loại"] == "Trung tâm mất liên lạc" and got["o2"]["Nguyên nhân"] == "mất điện"
        )
        assert got["o2"]["Kết thúc"] == "" and got["o2"]["Đang diễn ra"] == "Có"

        resolved = {"active": "false", "format": "xlsx", "lang": "en"}
        r = http.get("/api/v1/outages", params=resolved)
        assert r.status_code == 200 and r.headers["content-type"] == XLSX
        assert filenames(r.headers["content-disposition"]) == ("outages_all_resolved.xlsx",) * 2
        header, *body = read_xlsx(r.content, "Outages")
        assert header[:2] == ("Outage", "Probe") and [row[0] for row in body] == ["o1"]
        row = dict(zip(header, body[0], strict=True))
        assert row["Kind"] == "Link down" and row["Duration (s)"] == 3900
        json_open = http.get("/api/v1/outages", params={"active": "true"}).json()
        r = http.get("/api/v1/outages", params={"active": "true", "format": "xlsx"})
        assert len(read_xlsx(r.content, "Sự cố")) - 1 == json_open["count"] == 2
    with c.client(c.viewer("12")) as http:
        _, *body = read_csv(http.get("/api/v1/outages", params={"format": "csv"}).content)
        assert [row[0] for row in body] == ["o3"]
