"""A check's history read from the rollups: buckets, percentiles, loss, signal, resolution."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from lomsong.collector.history import (
    point,
    point_of_values,
    probe_series,
    resolution_for,
    series,
)
from lomsong.collector.ingest import parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.storage.latency_bins import RELATIVE_ERROR
from lomsong.storage.rollups import derive_marked, fold
from tests.factories import body, iso, result

#: the start of a 5-minute bucket two hours ago
T = datetime.fromtimestamp((time.time() // 300) * 300 - 7200, UTC)


def send(engine: Engine, store: ReportStore, results: list[dict[str, Any]]) -> None:
    doc = {
        "probe_id": "cb-h",
        "boot_id": "b",
        "agent_version": "0.1.0",
        "sent_at": iso(datetime.now(UTC)),
        "results": results,
    }
    store.write([parse_batch(body(doc)[0], IngestLimits(), clock=time.time)])
    derive_marked(engine)  # the leader's next derivation: the hourly and daily rows


def test_points_per_bucket_with_percentiles_loss_and_signal(engine: Engine) -> None:
    register_probe(engine, "cb-h", "01273", [Uplink("viettel-4g", "viettel")])
    store = ReportStore(engine)
    at = [T + timedelta(seconds=10 * i) for i in range(20)]  # within one 5-minute bucket
    icmp = [
        result(i + 1, at=at[i], duration_seconds=0.010 * (i + 1), packets_received=4)
        for i in range(10)
    ]
    to_resolver = [
        result(11, at=at[0], duration_seconds=0.5, packets_received=5) | {"target": "8.8.8.8"}
    ]
    modem = [
        result(
            20 + i,
            at=at[i],
            kind="modem",
            target="modem0",
            signal={
                "rsrp_dbm": -100.0 + i,
                "mcc": "452",
                "mnc": "04",
                "tac": 7,
                "cid": 91 if i == 7 else 90,
            },
        )
        for i in range(8)
    ]
    send(engine, store, icmp + to_resolver + modem)
    # a backlog measured earlier arrives later: it lands in its own past bucket
    late = T - timedelta(minutes=30)
    send(engine, store, [result(40, at=late, duration_seconds=0.2, ok=True)])

    since, until = (T - timedelta(hours=1)).timestamp(), (T + timedelta(hours=1)).timestamp()
    points = series(engine, "cb-h", "viettel-4g", "icmp", since, until)
    assert [p.start for p in points] == [int(late.timestamp()) // 300 * 300, int(T.timestamp())]
    first, now = points
    assert (first.runs, first.success_ratio, first.p50) == (1, 1.0, pytest.approx(0.2))
    assert now.seconds == 300 and now.runs == 11 and now.success_ratio == 1.0
    assert now.loss_ratio == pytest.approx(10 / 55)  # 10 runs lost 1 of 5; the resolver none
    # nearest rank of 0.01 … 0.10 and 0.5: p50 is the 6th (0.06), p99 the largest
    assert now.p50 == pytest.approx(0.06, rel=RELATIVE_ERROR)
    assert now.p99 == pytest.approx(0.5, rel=RELATIVE_ERROR)
    assert now.p5 == pytest.approx(0.01, rel=RELATIVE_ERROR)
    assert (now.rtt_min, now.rtt_max) == (pytest.approx(0.01), pytest.approx(0.5))
    only_portal = series(
        engine, "cb-h", "viettel-4g", "icmp", since, until, target="dichvucong.gov.vn"
    )
    assert only_portal[-1].runs == 10 and only_portal[-1].p99 == pytest.approx(0.1, rel=0.02)

    charts = probe_series(engine, "cb-h", since, until)
    assert sorted(charts) == [("viettel-4g", "icmp"), ("viettel-4g", "modem")]
    [radio] = charts[("viettel-4g", "modem")]
    assert (radio.rsrp_min, radio.rsrp_max) == (-100.0, -93.0)
    assert radio.rsrp_mean == pytest.approx(-96.5)
    assert radio.top_cell == "452-04-7-90" and radio.p50 is None and radio.loss_ratio is None

    hourly = series(engine, "cb-h", "viettel-4g", "icmp", since, until, "1h")
    assert sum(p.runs for p in hourly) == 12 and all(p.seconds == 3600 for p in hourly)
    [day] = series(engine, "cb-h", "viettel-4g", "icmp", T.timestamp(), until, "1d")
    assert day.seconds == 86_400 and day.as_dict()["runs"] >= 11


def test_resolution_follows_the_span() -> None:
    day = 86_400.0
    assert [resolution_for(0, d * day) for d in (1, 7, 30, 90, 365)] == [
        "5m",
        "1h",
        "1h",
        "1d",
        "1d",
    ]
    with pytest.raises(ValueError, match=r"resolution: '1w' is not a rollup level"):
        series(None, "p", "u", "icmp", 0, 1, "1w")  # type: ignore[arg-type]


def test_a_point_read_from_a_rows_values_equals_the_rollups() -> None:
    rows = [
        {"probe_id": "p", "uplink": "u", "kind": kind, "target": "t",
         "measured_at": 1_800_000_000 + 7 * i, "ok": i % 5 != 0,
         "duration_seconds": None if kind == "modem" else 0.01 * (1 + i % 13),
         "packets_sent": 5 if kind == "icmp" else None,
         "packets_received": (i % 6) if kind == "icmp" else None,
         "rsrp_dbm": -90.0 - i % 7 if kind == "modem" else None,
         "rsrq_db": -11.0 if kind == "modem" else None,
         "snr_db": 3.0 + i % 3 if kind == "modem" else None,
         "mcc": "452", "mnc": "04", "tac": 7, "cid": 90 + i % 3 if kind == "modem" else None}
        for i in range(40)
        for kind in ("icmp", "tcp", "modem", "heartbeat")
    ]  # fmt: skip
    for key, r in fold(rows)["1h"].items():
        values = r.params()
        assert point_of_values(key[4], 3600, values) == point(key[4], 3600, r), key
