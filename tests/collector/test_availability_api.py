"""The daily availability table kept from real outages, read by the API (SQLite and
PostgreSQL), the monthly report command, the 90-day figures for the pages and ``/metrics``."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date, datetime
from pathlib import Path

import httpx
import openpyxl
import orjson
import pytest

from lomsong.cli import main
from lomsong.collector.availability_read import daily_availability, report, uptime
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import availability_probes, outages
from lomsong.timefmt import LOCAL_TZ
from tests.conftest import ADMIN_SECRET, CollectorFactory, FakeClock, RunningCollector

PROBE = "av-thuc-phan"  # commune 01273, province 04
HOUR = 3600.0


def at(day: int, hour: float, month: int = 11) -> float:
    """A local time in 2026."""
    return datetime(2026, month, day, tzinfo=LOCAL_TZ).timestamp() + hour * HOUR


def outage(oid: str, condition: str, start: float, end: float, cause: str, uplink: str | None):
    operator = {"viettel-4g": "viettel", "vnpt-4g": "vinaphone", None: None}[uplink]
    return {
        "id": oid,
        "probe_id": PROBE,
        "commune_code": "01273",
        "province_code": "04",
        "condition": condition,
        "cause": cause,
        "uplink": uplink,
        "operator": operator,
        "started_at": start,
        "ended_at": end,
        "detected_at": start,
        "resolved_at": end,
        "updated_at": end,
    }


@pytest.fixture
def clock() -> FakeClock:
    c = FakeClock()
    c.now = at(2, 12, month=12)
    return c


def seeded(c: RunningCollector) -> RunningCollector:
    """One centre observed from 1 November with three outages that month, the table kept."""
    c.register(PROBE, "01273", ("viettel-4g:viettel", "vnpt-4g:vinaphone"))
    with write_transaction(c.engine) as conn:
        conn.execute(availability_probes.insert(), {"probe_id": PROBE, "first_heard_at": at(1, 0)})
        conn.execute(
            outages.insert(),
            [
                # 2 h silent, a power cut
                outage("o1", "probe_silent", at(10, 8), at(10, 10), "power", None),
                # Viettel down 23:00 → 01:00 over midnight; VinaPhone 00:00 → 00:30: the
                # centre is down for the half hour both are
                outage("o2", "uplink_down", at(20, 23), at(21, 1), "network", "viettel-4g"),
                outage("o3", "uplink_down", at(21, 0), at(21, 0.5), "network", "vnpt-4g"),
            ],
        )
    assert c.ctx.pipeline is not None
    c.ctx.pipeline.availability.refresh()
    c.ctx.live.reload(c.engine)
    return c


@pytest.fixture
def kept(collector_factory: CollectorFactory, db_url: str, clock: FakeClock) -> RunningCollector:
    return seeded(collector_factory(db_url, clock=clock))


def test_the_month_per_centre_uplink_operator_and_province(kept: RunningCollector) -> None:
    with kept.client(ADMIN_SECRET) as admin, kept.client(kept.viewer("12")) as v12:
        check_month(admin, v12)


def check_month(admin: httpx.Client, v12: httpx.Client) -> None:
    r = admin.get("/api/v1/availability?province=04&from=2026-11-01&to=2026-11-30&by=month")
    assert r.status_code == 200, r.text
    rows = {(x["level"], x["uplink"] or x["operator"]): x for x in r.json()["rows"]}
    month = 30 * 24 * HOUR
    centre = rows[("centre", None)]
    assert centre["observed_seconds"] == month
    assert centre["down_seconds"] == 2.5 * HOUR
    assert centre["down_by_cause_seconds"] == {
        "power": 2 * HOUR,
        "network": 0.5 * HOUR,
        "unknown": 0,
    }
    assert centre["availability"] == pytest.approx(1 - 2.5 / 720, abs=1e-6)
    assert centre["outages"] == 2 and centre["longest_outage_seconds"] == 2 * HOUR
    assert centre["mttr_seconds"] == 1.25 * HOUR
    # while the centre was silent nobody knew the links' state: not observed for them
    viettel = rows[("uplink", "viettel-4g")]
    assert viettel["observed_seconds"] == month - 2 * HOUR
    assert viettel["availability"] == pytest.approx(1 - 2 / 718, abs=1e-6)
    assert rows[("operator", "viettel")]["down_seconds"] == 2 * HOUR
    assert rows[("province", None)]["down_seconds"] == 2.5 * HOUR
    assert [x["level"] for x in r.json()["rows"]][:3] == ["province", "operator", "operator"]

    # per day: the Viettel outage over midnight is split between the two days
    r = admin.get("/api/v1/availability?province=04&from=2026-11-20&to=2026-11-21&by=day")
    days = {(x["period"], x["uplink"]): x for x in r.json()["rows"] if x["level"] == "uplink"}
    assert days[("2026-11-20", "viettel-4g")]["down_seconds"] == HOUR
    assert days[("2026-11-21", "viettel-4g")]["down_seconds"] == HOUR
    assert days[("2026-11-20", "viettel-4g")]["outages"] == 1
    assert days[("2026-11-21", "viettel-4g")]["outages"] == 0

    # the file an officer downloads: Vietnamese headers, figures in per cent
    r = admin.get("/api/v1/availability?province=04&from=2026-11-01&to=2026-11-30&format=xlsx")
    assert r.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    head = [c.value for c in sheet[1]]
    assert "Khả dụng (%)" in head and "Do mất điện (phút)" in head
    second = [c.value for c in sheet[2]]
    assert second[head.index("Cấp")] == "Nhà mạng" or second[head.index("Cấp")] == "Toàn tỉnh"

    # viewers see their provinces; bad dates are the caller's mistake
    assert v12.get("/api/v1/availability?province=04").status_code == 403
    assert v12.get("/api/v1/availability?from=2026-11-01&to=2026-11-30").json()["rows"] == []
    bad = admin.get("/api/v1/availability?from=2026-11-30&to=2026-11-01")
    assert bad.status_code == 422 and "from" in bad.json()["detail"]
    assert admin.get("/api/v1/availability?from=2026-02-30").status_code == 422
    # the ends of the calendar are answered, not crashed on
    for query in ("to=9999-12-31", "from=0001-01-01&to=0001-01-31&format=xlsx", "to=0001-01-01"):
        assert admin.get(f"/api/v1/availability?{query}").status_code == 200, query


def test_a_changed_outage_recomputes_its_closed_day(
    kept: RunningCollector, clock: FakeClock
) -> None:
    clock.now += 600
    with write_transaction(kept.engine) as conn:
        conn.execute(
            outages.update()
            .where(outages.c.id == "o3")
            .values(ended_at=at(21, 1.5), updated_at=clock.now)
        )
    assert kept.ctx.pipeline is not None
    kept.ctx.pipeline.availability.refresh()
    figures = daily_availability(kept.engine, [PROBE], days=90, now=clock.now)
    by_day = {d["day"]: d for d in figures["probes"][PROBE] if d is not None}
    # both links down 00:00 → 01:00 now
    assert by_day["2026-11-21"]["down_seconds"] == HOUR
    assert by_day["2026-11-10"]["down_seconds"] == 2 * HOUR
    # the month's stored sums follow its days
    month = report(kept.engine, date(2026, 11, 1), date(2026, 11, 30), provinces=["04"])
    assert next(r for r in month if r.level == "centre").figures.down == 3 * HOUR
    assert figures["probes"][PROBE][0] is None  # before the probe was first heard
    assert figures["provinces"]["04"][-1]["ratio"] == 1.0  # today, so far
    ups = uptime(kept.engine, [PROBE], now=clock.now)[PROBE]
    assert ups["1d"] == 1.0 and ups["30d"] is not None and ups["30d"] < 1.0

    # /metrics: the gauges from the stored figures, accepted by promtool
    kept.ctx.pipeline.availability_gauges.reload()
    with kept.client() as anyone:
        text = anyone.get("/metrics").text
    assert f'lomsong_probe_availability_ratio{{probe="{PROBE}"' in text
    assert 'uplink="viettel-4g",operator="viettel",window="30d"}' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run `make system-deps`")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_monthly_report_command(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded(collector_factory(sqlite_url, clock=clock))
    monkeypatch.setenv("LOMSONG_DATABASE_URL", sqlite_url)
    out = tmp_path / "bao_cao.xlsx"
    with pytest.raises(SystemExit) as exited:
        main(["report", "availability", "--province", "04", "--month", "2026-11", "-o", str(out)])
    assert exited.value.code == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "1 trung tâm xã, 2 đường truyền, 3 sự cố" in said and "99.653 %" in said
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["Khả dụng", "Sự cố trong tháng", "Ghi chú"]
    outs = list(book["Sự cố trong tháng"].iter_rows(values_only=True))
    assert len(outs) == 4 and "mất điện" in [row[7] for row in outs]

    as_json = tmp_path / "report.json"
    with pytest.raises(SystemExit):
        main(
            [
                "report",
                "availability",
                "--province",
                "04",
                "--month",
                "2026-11",
                "-o",
                str(as_json),
                "--en",
            ]
        )
    doc = orjson.loads(as_json.read_bytes())
    assert doc["month"] == "2026-11" and len(doc["outages"]) == 3
    assert date.fromisoformat(doc["rows"][0]["period"] + "-01").month == 11
