"""Rollups kept by the store equal a recomputation from the raw rows, whatever the order of
arrival, however often a batch is re-sent; percentiles from the histogram keep their bound."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from lomsong.collector.ingest import PreparedBatch, parse_batch
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.store import ReportStore
from lomsong.config.collector import IngestLimits
from lomsong.storage import latency_bins
from lomsong.storage.rollups import (
    LEVELS,
    Rollup,
    derive_marked,
    fold,
    read_level,
    rebuild,
)
from tests.factories import body, iso, result
from tests.rollup_checks import check_against_raw

LIMITS = IngestLimits()
UPLINKS = (Uplink("viettel-4g", "viettel"), Uplink("fibre", "fibre"))
#: Measured times fall within three days before this: hours, local days and a month's end.
NOW = datetime.now(UTC).replace(microsecond=0)

one_result = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["icmp", "tcp", "modem", "heartbeat"]),
        "uplink": st.sampled_from([u.name for u in UPLINKS]),
        "ok": st.booleans(),
        "ago": st.integers(60, 3 * 86_400),
        "duration": st.floats(1e-5, 20.0),
        "rsrp": st.floats(-140.0, -44.0),
        "cell": st.integers(1, 3),
        "lost": st.integers(0, 5),
    }
)


def wire_result(seq: int, spec: dict[str, Any]) -> dict[str, Any]:
    at = NOW - timedelta(seconds=spec["ago"])
    kind = spec["kind"]
    if kind == "modem":
        signal = {"rat": "lte", "rsrp_dbm": spec["rsrp"], "rsrq_db": -11.0, "snr_db": 3.5}
        signal |= {"mcc": "452", "mnc": "04", "tac": 13021, "cid": 2_795_020 + spec["cell"]}
        return result(seq, at=at, kind="modem", uplink=spec["uplink"], ok=True, signal=signal)
    r = result(seq, at=at, kind=kind, uplink=spec["uplink"], ok=spec["ok"])
    if kind == "heartbeat":
        return r
    r["target"] = "dichvucong.gov.vn:443" if kind == "tcp" else r["target"]
    r["duration_seconds"] = spec["duration"]
    if kind == "icmp":
        r["packets_received"] = 5 - spec["lost"] if spec["ok"] else 0
    return r


def prepared(probe_id: str, results: list[dict[str, Any]]) -> PreparedBatch:
    doc = {
        "probe_id": probe_id,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": iso(datetime.now(UTC)),
        "results": results,
    }
    raw, _ = body(doc)
    return parse_batch(raw, LIMITS, clock=time.time)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[list[int]]]]:
    """A probe's results and how they arrive: batches of seqs, grouped as the writer commits
    them, with re-sends (whole or overlapping), backlogs sent after newer results, and the same
    batch twice in one group."""
    specs = draw(st.lists(one_result, min_size=1, max_size=40))
    n = len(specs)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=6)) | {0, n})
    chunks = [list(range(a + 1, b + 1)) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    order = draw(st.permutations(range(len(chunks))))
    sends: list[list[int]] = []
    for i in order:
        sends.append(chunks[i])
        again = draw(st.sampled_from(["no", "no", "same", "overlap"]))
        if again == "same":
            sends.append(chunks[i])
        elif again == "overlap" and i + 1 < len(chunks):
            sends.append(chunks[i][len(chunks[i]) // 2 :] + chunks[i + 1])
    groups: list[list[list[int]]] = []
    while sends:
        k = draw(st.integers(1, 3))
        groups.append(sends[:k])
        sends = sends[k:]
    if draw(st.booleans()):
        groups.append(groups[0] + groups[0])  # the very same group, twice over
    return specs, groups


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(deliveries(), min_size=1, max_size=2))
def test_rollups_equal_a_recomputation_after_resends_and_backlogs(
    engine: Engine, plan: list[tuple[list[dict[str, Any]], list[list[list[int]]]]]
) -> None:
    store = ReportStore(engine)
    probe_ids = []
    groups: list[list[PreparedBatch]] = []
    for specs, probe_groups in plan:
        probe_id = f"p-{uuid.uuid4().hex[:10]}"
        probe_ids.append(probe_id)
        register_probe(engine, probe_id, "01273", UPLINKS)
        wire = {seq: wire_result(seq, s) for seq, s in enumerate(specs, start=1)}
        groups.extend(
            [prepared(probe_id, [wire[s] for s in seqs]) for seqs in g] for g in probe_groups
        )
    # two probes' groups interleave, as a writer sees them; the leader derives between some of
    # them (hours and days gain what later groups add), a few marks a transaction
    for i, g in enumerate(groups[::2] + groups[1::2]):
        store.write(g)
        if i % 2:
            derive_marked(engine, limit=3)
    check_against_raw(engine, probe_ids)


def test_rollups_off_store_none_and_rebuild_makes_them(sqlite_engine: Engine) -> None:
    register_probe(sqlite_engine, "cb-off", "01273", UPLINKS)
    store = ReportStore(sqlite_engine, rollups=False)
    modem = result(3, kind="modem", target="modem0", signal={"rsrp_dbm": -99.0, "cid": 7})
    store.write([prepared("cb-off", [result(1), result(2), modem])])
    with sqlite_engine.connect() as conn:
        assert all(not read_level(conn, lv.name, ["cb-off"]) for lv in LEVELS)
    with sqlite_engine.begin() as conn:
        assert rebuild(conn) >= 2 * len(LEVELS)  # icmp and modem, a bucket or two each
    ReportStore(sqlite_engine).write([prepared("cb-off", [result(4)])])  # and on from there
    check_against_raw(sqlite_engine, ["cb-off"])


def test_buckets_follow_measured_time_and_the_local_day() -> None:
    # 23:59:59 and 00:00:01 in Hà Nội on 1 December 2026 (16:59:59 and 17:00:01 UTC)
    before = datetime(2026, 11, 30, 16, 59, 59, tzinfo=UTC).timestamp()
    after = before + 2
    rows = [
        {"probe_id": "p", "uplink": "u", "kind": "icmp", "target": "t", "measured_at": t,
         "ok": True, "duration_seconds": 0.05}
        for t in (before, after)
    ]  # fmt: skip
    folded = fold(rows)
    days = sorted(k[4] for k in folded["1d"])
    assert [datetime.fromtimestamp(d, UTC).isoformat() for d in days] == [
        "2026-11-29T17:00:00+00:00",
        "2026-11-30T17:00:00+00:00",
    ]
    assert sorted(k[4] for k in folded["5m"]) == [before - 299, after - 1]
    assert len(folded["1h"]) == 2


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.one_of(st.floats(1e-4, 120.0), st.floats(0.005, 0.3)), min_size=1, max_size=300
    )
)
def test_percentiles_from_the_histogram_are_within_the_stated_error(
    samples: list[float],
) -> None:
    rows = [
        {"probe_id": "p", "uplink": "u", "kind": "icmp", "target": "t", "measured_at": 1e9 + i,
         "ok": True, "duration_seconds": s}
        for i, s in enumerate(samples)
    ]  # fmt: skip
    merged = Rollup()
    for r in fold(rows)["5m"].values():  # several buckets, merged as the pages merge them
        merged.merge(r)
    qs = (0.05, 0.5, 0.95, 0.99)
    got = latency_bins.quantiles(merged.hist, qs, low=merged.rtt.low, high=merged.rtt.high)
    exact = np.percentile(np.array(samples), [q * 100 for q in qs], method="inverted_cdf")
    for q, g, e in zip(qs, got, exact, strict=True):
        assert g is not None
        assert abs(g - e) <= latency_bins.RELATIVE_ERROR * e * (1 + 1e-9), (q, g, e)


def test_bins_cover_a_value_within_the_bound() -> None:
    for v in (1.5e-4, 0.001, 0.0412, 0.25, 3.0, 59.9, 3600.0):
        b = latency_bins.bin_of(v)
        assert abs(latency_bins.value_of(b) - v) <= latency_bins.RELATIVE_ERROR * v
        assert math.isclose(
            latency_bins.value_of(b + 1) / latency_bins.value_of(b), latency_bins.GAMMA
        )
    assert latency_bins.bin_of(0.0) == latency_bins.bin_of(float("nan")) == 0
    assert latency_bins.quantiles({}, [0.5]) == [None]
