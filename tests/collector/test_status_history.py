"""The status page's bars: every centre's 90 days in one statement, whatever their number, and
the same uptime figures as the availability API's own reading (``availability_read.uptime``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from lomsong.collector.availability import CENTRE, day_start
from lomsong.collector.availability_read import uptime
from lomsong.collector.status_history import availability_bars
from lomsong.maps.availability_bars import uptime as bar_uptime
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import availability_daily

TODAY = date(2026, 11, 30)
#: noon of TODAY in Vietnam
NOW = day_start(TODAY) + 12 * 3600


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def row(
    pid: str, province: str, day: date, down: float, observed: float = 86_400.0
) -> dict[str, Any]:
    return {
        "probe_id": pid,
        "uplink": CENTRE,
        "day": day.isoformat(),
        "commune_code": "01273" if province == "04" else "02509",
        "province_code": province,
        "operator": None,
        "observed_seconds": observed,
        "down_seconds": down,
        "maintenance_seconds": 86_400.0 - observed,
        "power_seconds": down,
        "network_seconds": 0.0,
        "unknown_seconds": 0.0,
        "outages": int(down > 0),
        "resolved": int(down > 0),
        "repair_seconds": down,
        "longest_seconds": down,
        "computed_at": NOW,
    }


@pytest.mark.parametrize("centres", [3, 40])
def test_one_statement_for_every_centre_and_the_apis_figures(engine: Engine, centres: int) -> None:
    rows = []
    ids = [f"c-{i:03d}" for i in range(centres)]
    for i, pid in enumerate(ids):
        province = "04" if i % 2 else "08"
        for back in range(0, 60 + i % 30):  # heard for 60 to 89 days
            day = TODAY - timedelta(days=back)
            down = 3600.0 * ((i + back) % 7 == 0) + 60.0 * (back % 11 == 0)
            observed = 43_200.0 if back == 0 else 86_400.0 - 1800 * (back % 13 == 0)
            rows.append(row(pid, province, day, down, observed))
    with write_transaction(engine) as conn:
        conn.execute(availability_daily.insert(), rows)
    with statements(engine) as seen:
        bars = availability_bars(engine, ids, now=NOW)
    assert [s for s in seen if s.startswith("SELECT")] == seen[-1:], seen
    assert len(bars.calendar) == 90 and bars.calendar[-1] == TODAY.isoformat()
    expected = uptime(engine, ids, now=NOW)
    for pid in ids:
        cells = bars.probes[pid]
        assert len(cells) == 90 and cells[0] is None  # heard for fewer than 90 days
        for n in (1, 7, 30, 90):
            assert bar_uptime(cells, n) == pytest.approx(expected[pid][f"{n}d"]), (pid, n)
    # a province's cells sum its centres' seconds
    assert bars.provinces["04"][-1] is not None
    today_04 = bars.provinces["04"][-1]
    assert today_04.observed_seconds == pytest.approx(43_200.0 * (centres // 2))
    assert 'data-probe="c-000"' in bars.centre("c-000")
    assert bars.province("12") == ""  # no centre observed there
