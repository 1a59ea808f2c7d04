"""The one open-outages query, on both engines: open only, whole rows, oldest first, scoped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from lomsong.storage.database import write_transaction
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import outages


def _row(oid: str, province: str, started: float, ended: float | None = None) -> dict[str, Any]:
    return {
        "id": oid,
        "probe_id": f"p-{oid}",
        "commune_code": "01273" if province == "04" else "02104",
        "province_code": province,
        "condition": "uplink_down",
        "cause": None,
        "uplink": "viettel-4g",
        "operator": "viettel",
        "started_at": started,
        "ended_at": ended,
        "detected_at": started,
        "resolved_at": ended,
        "updated_at": started,
    }


def test_open_outages_by_province(engine: Engine) -> None:
    rows = [
        _row("late", "04", 30.0),
        _row("early", "04", 10.0),
        _row("closed", "04", 5.0, ended=6.0),
        _row("elsewhere", "08", 20.0),
    ]
    with write_transaction(engine) as conn:
        conn.execute(outages.insert(), rows)
    assert [r["id"] for r in open_outages(engine)] == ["early", "elsewhere", "late"]
    # one code is one province, not a collection of its characters
    assert [r["id"] for r in open_outages(engine, "04")] == ["early", "late"]
    assert [r["id"] for r in open_outages(engine, {"04", "08"})] == ["early", "elsewhere", "late"]
    assert open_outages(engine, set()) == []
    assert open_outages(engine, "01") == []
    assert open_outages(engine, "04")[0] == rows[1]
