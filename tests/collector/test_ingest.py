"""POST /api/v1/reports against a real collector on loopback."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select

from lomsong.collector.store import MAX_INSERT_SHAPES, _Sql
from lomsong.storage.schema import results
from tests.conftest import CollectorFactory, RunningCollector
from tests.factories import batch, body, iso, result
from tests.waiting import wait_until


def _count(c: RunningCollector) -> int:
    with c.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(results)).scalar_one())


@pytest.mark.parametrize("gz", [False, True])
def test_a_batch_is_stored_and_acknowledged(any_collector: RunningCollector, gz: bool) -> None:
    token = any_collector.register("cb-thuc-phan")
    raw, headers = body(batch("cb-thuc-phan", range(1, 101)), gz=gz)
    with any_collector.client(token) as http:
        r = http.post("/api/v1/reports", content=raw, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 100, "duplicates": 0, "stored_through_seq": 100}
        again = http.post("/api/v1/reports", content=raw, headers=headers)
        assert again.json() == {"accepted": 0, "duplicates": 100, "stored_through_seq": 100}
    assert _count(any_collector) == 100


def test_the_example_body_of_the_design_is_accepted(collector: RunningCollector) -> None:
    token = collector.register("cb-thuc-phan")
    now = datetime.now(UTC)
    doc = {
        "probe_id": "cb-thuc-phan",
        "boot_id": "5f0c1d2e",
        "agent_version": "0.1.0",
        "sent_at": iso(now),
        "results": [
            {
                "seq": 1041,
                "measured_at": iso(now - timedelta(seconds=32)),
                "kind": "icmp",
                "target": "dichvucong.gov.vn",
                "uplink": "viettel-4g",
                "ok": True,
                "duration_seconds": 0.0412,
                "packets_sent": 5,
                "packets_received": 5,
                "error": None,
            },
            {
                "seq": 1042,
                "measured_at": iso(now - timedelta(seconds=31)),
                "kind": "modem",
                "target": "modem0",
                "uplink": "viettel-4g",
                "ok": True,
                "signal": {
                    "rat": "lte",
                    "rsrp_dbm": -104.0,
                    "rsrq_db": -12.0,
                    "snr_db": 3.5,
                    "rssi_dbm": -75.0,
                    "mcc": "452",
                    "mnc": "04",
                    "tac": 13021,
                    "cid": 2795021,
                },
            },
            {
                "seq": 1043,
                "measured_at": iso(now - timedelta(seconds=30)),
                "kind": "heartbeat",
                "target": "self",
                "uplink": None,
                "ok": True,
                "uptime_seconds": 86012,
            },
        ],
    }
    with collector.client(token) as http:
        r = http.post("/api/v1/reports", json=doc)
        assert r.json() == {"accepted": 3, "duplicates": 0, "stored_through_seq": 0}
        page = http.get("/api/v1/probes/cb-thuc-phan/results").json()["results"]
    assert [x["seq"] for x in page] == [1041, 1042, 1043]
    assert page[1]["signal"]["rsrp_dbm"] == -104.0 and page[1]["signal"]["cid"] == 2795021
    assert page[2]["uptime_seconds"] == 86012


def _post(c: RunningCollector, token: str, raw: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    with c.client(token) as http:
        return http.post(
            "/api/v1/reports", content=raw, headers=headers or {"Content-Type": "application/json"}
        )


BAD = [
    ("malformed", b'{"probe_id": "cb-1", ', 400, "body: malformed JSON"),
    ("nan", b'{"probe_id": "cb-1", "x": NaN}', 400, "malformed JSON"),
    ("array", b"[1, 2]", 422, "expected a JSON object"),
]


@pytest.mark.parametrize(("name", "raw", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_undecodable_bodies_get_a_4xx(
    collector: RunningCollector, name: str, raw: bytes, status: int, message: str
) -> None:
    token = collector.register("cb-1")
    r = _post(collector, token, raw)
    assert r.status_code == status
    assert message in r.json()["detail"]


def _doc_with(**changes: object) -> dict[str, object]:
    doc = batch("cb-1", range(1, 4))
    results_ = doc["results"]
    assert isinstance(results_, list)
    for key, value in changes.items():
        if key.startswith("r1_"):
            results_[1][key[3:]] = value
        else:
            doc[key] = value
    return doc


INVALID = [
    ("wrong kind", _doc_with(r1_kind="ping"), "results[1].kind", "'ping'"),
    (
        "rsrp out of range",
        _doc_with(r1_signal={"rsrp_dbm": -500}),
        "results[1].signal.rsrp_dbm",
        "-500",
    ),
    (
        "negative duration",
        _doc_with(r1_duration_seconds=-1.0),
        "results[1].duration_seconds",
        "-1.0",
    ),
    ("huge float", _doc_with(r1_duration_seconds=1e308), "results[1].duration_seconds", "1e+308"),
    ("ok not bool", _doc_with(r1_ok="yes"), "results[1].ok", "'yes'"),
    ("unknown field", _doc_with(r1_colour="red"), "results[1].colour", "unknown field"),
    ("bad seq", _doc_with(r1_seq=0), "results[1].seq", "0"),
    (
        "naive time",
        _doc_with(r1_measured_at="2026-11-23T03:14:30"),
        "results[1].measured_at",
        "2026-11-23T03:14:30",
    ),
    ("bad probe id", _doc_with(probe_id="CB 1!"), "probe_id", "'CB 1!'"),
    ("no results", _doc_with(results=[]), "results", "[]"),
    (
        "future",
        _doc_with(r1_measured_at=iso(datetime.now(UTC) + timedelta(days=2))),
        "results[1].measured_at",
        "after the batch's sent_at",
    ),
    ("clock", _doc_with(sent_at="2020-01-01T00:00:00Z"), "sent_at", "2020-01-01"),
    (
        "past",
        _doc_with(r1_measured_at=iso(datetime.now(UTC) - timedelta(days=31))),
        "results[1].measured_at",
        "ingest.max_past_seconds",
    ),
    ("dup seq", _doc_with(r1_seq=1), "results[1].seq", "appears twice"),
    ("packets", _doc_with(r1_packets_received=9), "results[1]", "exceeds packets_sent"),
    (
        "checks on a check",
        _doc_with(r1_checks=[{"kind": "icmp", "target": "x"}]),
        "results[1]",
        "only a heartbeat lists the checks",
    ),
    (
        "too many checks",
        _doc_with(r1_kind="heartbeat", r1_checks=[{"kind": "tcp", "target": "x"}] * 257),
        "results[1].checks",
        "at most 256 items",
    ),
    (
        "bad running check",
        _doc_with(r1_kind="heartbeat", r1_checks=[{"kind": "tcp", "target": "", "x": 1}]),
        "results[1].checks[0].target",
        "''",
    ),
    (
        "config version on a check",
        _doc_with(r1_config_version="local"),
        "results[1]",
        "config_version: only a heartbeat says which configuration",
    ),
    (
        "config error on a check",
        _doc_with(r1_config_error="uplink 'x' unknown"),
        "results[1]",
        "config_error: only a heartbeat says which configuration",
    ),
    (
        "bad config version",
        _doc_with(r1_kind="heartbeat", r1_config_version="V1!"),
        "results[1].config_version",
        "'V1!'",
    ),
    (
        "nul in config error",
        _doc_with(r1_kind="heartbeat", r1_config_refused_version="a" * 64, r1_config_error="\x00"),
        "results[1].config_error",
        "NUL",
    ),
    ("nul in target", _doc_with(r1_target="a\x00b"), "results[1].target", "NUL"),
    ("nul in error", _doc_with(r1_error="x\x00"), "results[1].error", "NUL"),
    ("nul in version", _doc_with(agent_version="0.1\x00"), "agent_version", "NUL"),
    (
        "year one",
        _doc_with(r1_measured_at="0001-01-01T00:00:00+14:00"),
        "results[1].measured_at",
        "0001-01-01T00:00:00+14:00",
    ),
]


@pytest.mark.parametrize(("name", "doc", "field", "value"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_batches_name_the_field_and_value_and_store_nothing(
    collector: RunningCollector, name: str, doc: dict[str, object], field: str, value: str
) -> None:
    token = collector.register("cb-1")
    r = _post(collector, token, orjson.dumps(doc))
    assert 400 <= r.status_code < 500, r.text
    detail = r.json()["detail"]
    assert field in detail and value in detail, detail
    assert _count(collector) == 0


@pytest.mark.parametrize("field", ["target", "error"])
def test_a_nul_byte_is_refused_by_name_on_both_engines(
    any_collector: RunningCollector, field: str
) -> None:
    """PostgreSQL's text cannot hold NUL: refused at the edge with the field named, on SQLite
    too, so both engines answer alike and the batch after it is stored."""
    token = any_collector.register("cb-1")
    r = _post(any_collector, token, orjson.dumps(_doc_with(**{f"r1_{field}": "a\x00b"})))
    assert r.status_code == 422, r.text
    assert f"results[1].{field}: text may not hold a NUL character" in r.json()["detail"]
    assert _count(any_collector) == 0
    assert _post(any_collector, token, orjson.dumps(_doc_with())).status_code == 200
    assert _count(any_collector) == 3


def test_tokens_decide_who_writes(collector: RunningCollector) -> None:
    t1 = collector.register("cb-1")
    collector.register("cb-2", commune="01279")
    raw = orjson.dumps(batch("cb-2", [1]))
    assert _post(collector, "lst_wrong", raw).status_code == 401
    with collector.client() as http:
        assert http.post("/api/v1/reports", content=raw).status_code == 401
    r = _post(collector, t1, raw)
    assert r.status_code == 403 and "cb-2" in r.json()["detail"]
    viewer = collector.viewer("04")
    assert _post(collector, viewer, raw).status_code == 403
    assert _count(collector) == 0


def test_a_revoked_token_is_refused(collector: RunningCollector) -> None:
    from lomsong.collector.auth import list_tokens, revoke_token

    token = collector.register("cb-1")
    raw = orjson.dumps(batch("cb-1", [1]))
    assert _post(collector, token, raw).status_code == 200
    [row] = list_tokens(collector.engine)
    revoke_token(collector.engine, row["id"])
    assert _post(collector, token, raw).status_code == 401


def test_a_gzip_bomb_is_refused_without_inflating_it(
    collector_factory: CollectorFactory, sqlite_url: str
) -> None:
    c = collector_factory(sqlite_url)
    token = c.register("cb-1")
    bomb = gzip.compress(b"{" + b" " * (200 * 2**20) + b"}", 9)  # 200 MiB of spaces, ~200 KB
    assert len(bomb) < c.ctx.settings.ingest.max_body_bytes
    r = _post(c, token, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "inflates to more than" in r.json()["detail"]
    junk = _post(c, token, b"not gzip", {"Content-Encoding": "gzip"})
    assert junk.status_code == 400 and "not valid gzip" in junk.json()["detail"]
    truncated = gzip.compress(orjson.dumps(batch("cb-1", [1])))[:-12]
    t = _post(c, token, truncated, {"Content-Encoding": "gzip"})
    assert t.status_code == 400 and "truncated" in t.json()["detail"]
    br = _post(c, token, b"x", {"Content-Encoding": "br"})
    assert br.status_code == 415 and "'br'" in br.json()["detail"]


def test_size_and_count_limits(collector_factory: CollectorFactory, sqlite_url: str) -> None:
    c = collector_factory(sqlite_url, ingest={"max_body_bytes": 4096, "max_results_per_batch": 10})
    token = c.register("cb-1")
    big = orjson.dumps(batch("cb-1", range(1, 200)))
    r = _post(c, token, big)
    assert r.status_code == 413 and "exceeds the limit of 4096" in r.json()["detail"]
    many = orjson.dumps(batch("cb-1", range(1, 12)))
    r = _post(c, token, many)
    assert r.status_code == 413 and "11 results exceed the limit of 10" in r.json()["detail"]


def test_rate_limit_answers_429_with_retry_after(
    collector_factory: CollectorFactory, sqlite_url: str
) -> None:
    c = collector_factory(sqlite_url, ingest={"rate_per_probe": 0.5, "rate_burst": 3})
    token = c.register("cb-1")
    codes = [_post(c, token, orjson.dumps(batch("cb-1", [i]))) for i in range(1, 6)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert int(codes[3].headers["Retry-After"]) >= 1
    assert "cb-1" in codes[3].json()["detail"]


def test_rejections_are_counted_by_reason(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    _post(collector, token, b"{")
    _post(collector, "nope", b"{}")
    with collector.client() as http:
        text = http.get("/metrics").text
    assert 'lomsong_ingest_rejected_total{reason="malformed_json"} 1.0' in text
    assert 'lomsong_ingest_rejected_total{reason="unauthorized"} 1.0' in text


def test_clock_skew_is_estimated_from_sent_at(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    behind = datetime.now(UTC) - timedelta(minutes=10)
    doc = batch("cb-1", [1], sent_at=behind)
    doc["results"][0]["measured_at"] = iso(behind - timedelta(seconds=5))  # type: ignore[index]
    assert _post(collector, token, orjson.dumps(doc)).status_code == 200
    with collector.client(token) as http:
        probe = http.get("/api/v1/probes/cb-1").json()
    assert 595 < probe["clock_skew_seconds"] < 610


def test_deflate_is_not_confused_with_gzip(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    raw = zlib.compress(orjson.dumps(batch("cb-1", [1])))
    r = _post(collector, token, raw, {"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert _count(collector) == 0


def test_kinds_are_stored_with_their_fields(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    doc = batch("cb-1", [1])
    doc["results"] = [  # type: ignore[index]
        result(1, kind="http", status_code=200, tls_expiry_days=41.5, duration_seconds=0.2),
        result(2, kind="heartbeat", spool_depth=12, spool_dropped=3, load1=0.4),
    ]
    assert _post(collector, token, orjson.dumps(doc)).status_code == 200
    with collector.client(token) as http:
        page = http.get("/api/v1/probes/cb-1/results").json()["results"]
    assert page[0]["status_code"] == 200 and page[0]["tls_expiry_days"] == 41.5
    assert page[1]["spool_dropped"] == 3 and page[1]["uplink"] is None


def test_a_umts_cell_keeps_its_rscp_and_ecio(any_collector: RunningCollector) -> None:
    # RSCP and Ec/Io have no column: kept in the row's details, answered inside ``signal``.
    token = any_collector.register("cb-1")
    doc = batch("cb-1", [1])
    umts = {"rat": "umts", "rscp_dbm": -96.0, "ecio_db": -3.5, "mcc": "452", "lac": 4242}
    doc["results"] = [result(1, kind="modem", target="modem0", signal=umts)]  # type: ignore[index]
    assert _post(any_collector, token, orjson.dumps(doc)).status_code == 200
    with any_collector.client(token) as http:
        (row,) = http.get("/api/v1/probes/cb-1/results").json()["results"]
    assert {k: v for k, v in row["signal"].items() if v is not None} == umts
    assert "rscp_dbm" not in row
    doc["results"] = [result(2, kind="modem", target="modem0", signal={"ecio_db": 3.0})]  # type: ignore[index]
    refused = _post(any_collector, token, orjson.dumps(doc))
    assert refused.status_code == 422
    assert "results[0].signal.ecio_db" in refused.json()["detail"]
    assert "3.0" in refused.json()["detail"]


def test_a_counter_beyond_64_bits_is_refused_by_name(collector: RunningCollector) -> None:
    import json

    token = collector.register("cb-1")
    doc = batch("cb-1", [1])
    doc["results"] = [result(1, kind="heartbeat", spool_depth=2**64 + 7)]  # type: ignore[index]
    r = _post(collector, token, json.dumps(doc).encode())  # orjson stops at 64 bits itself
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "results[0].spool_depth" in detail and str(2**64 + 7) in detail, detail
    assert _count(collector) == 0


def _state(c: RunningCollector, probe_id: str) -> tuple[float, float]:
    from lomsong.storage.schema import probe_state

    with c.engine.connect() as conn:
        row = conn.execute(
            select(probe_state.c.last_seen_at, probe_state.c.clock_skew_seconds).where(
                probe_state.c.probe_id == probe_id
            )
        ).one()
    return float(row[0]), float(row[1])


def test_a_resend_is_answered_from_memory_and_still_heard(any_collector: RunningCollector) -> None:
    c = any_collector
    token = c.register("cb-1")
    first = batch("cb-1", range(1, 11))
    assert _post(c, token, orjson.dumps(first)).json()["accepted"] == 10
    seen_before, skew_before = _state(c, "cb-1")
    stored = c.ctx.store  # the writer has nothing to do for a re-send
    groups_before = stored.groups_written

    later = datetime.now(UTC) - timedelta(minutes=3)  # the probe's clock now runs 3 min late
    again = batch("cb-1", range(1, 11), sent_at=later)
    again["results"] = first["results"]
    r = _post(c, token, orjson.dumps(again))
    assert r.json() == {"accepted": 0, "duplicates": 10, "stored_through_seq": 10}
    assert stored.groups_written == groups_before
    assert _count(c) == 10
    # the writer records it within a second, in the database and then the live state
    seen_after, skew_after = _heard_after(c, "cb-1", seen_before)
    assert skew_after > skew_before + 30  # smoothed towards +180 s
    with c.client(token) as http:
        probe = http.get("/api/v1/probes/cb-1").json()
    assert probe["clock_skew_seconds"] == pytest.approx(skew_after)
    assert c.ctx.live.live["cb-1"].last_seen_at == seen_after

    # an invalid re-send is refused like any invalid batch
    bad = orjson.loads(orjson.dumps(again))
    bad["results"][3]["duration_seconds"] = -2.0
    r = _post(c, token, orjson.dumps(bad))
    assert r.status_code == 422 and "results[3].duration_seconds" in r.json()["detail"]
    dup = orjson.loads(orjson.dumps(again))
    dup["results"][4]["seq"] = 3
    r = _post(c, token, orjson.dumps(dup))
    assert r.status_code == 422 and "results[4].seq: 3 appears twice" in r.json()["detail"]

    # partly stored: the writer stores what is new
    r = _post(c, token, orjson.dumps(batch("cb-1", range(6, 16))))
    assert r.json() == {"accepted": 5, "duplicates": 5, "stored_through_seq": 15}
    assert stored.groups_written == groups_before + 1
    assert _count(c) == 15


def _heard_after(c: RunningCollector, probe_id: str, seen_before: float) -> tuple[float, float]:
    """``probe_state``'s last seen and clock skew once the writer has recorded a newer visit.

    The writer does so within a second; the deadline is generous for a loaded machine."""
    state = wait_until(
        lambda: (got := _state(c, probe_id))[0] != seen_before and got,
        timeout=5,
        what="the writer recorded the re-send",
    )
    # the live state learns it just after the commit
    wait_until(
        lambda: c.ctx.live.live[probe_id].last_seen_at == state[0],
        timeout=5,
        what="the live state learnt of the re-send",
    )
    return state


def test_the_probes_heard_are_written_by_the_writer_on_its_own(
    collector: RunningCollector,
) -> None:
    token = collector.register("cb-1")
    raw = orjson.dumps(batch("cb-1", [1, 2]))
    assert _post(collector, token, raw).json()["accepted"] == 2
    seen_before, _ = _state(collector, "cb-1")
    assert _post(collector, token, raw).json()["duplicates"] == 2
    seen_after, _ = _heard_after(collector, "cb-1", seen_before)
    assert seen_after > seen_before


def test_a_heartbeat_sent_first_on_reconnect_leaves_the_resends_in_memory(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    token = c.register("cb-1")
    lost = orjson.dumps(batch("cb-1", range(1, 11)))  # stored, but its answer was lost
    assert _post(c, token, lost).json()["accepted"] == 10
    # back, the agent sends its newest heartbeat alone, then its backlog from the oldest
    beat = batch("cb-1", [15])
    beat["results"] = [result(15, kind="heartbeat", uptime_seconds=60.0)]
    assert _post(c, token, orjson.dumps(beat)).json() == {
        "accepted": 1,
        "duplicates": 0,
        "stored_through_seq": 10,
    }
    groups = c.ctx.store.groups_written
    assert _post(c, token, lost).json() == {
        "accepted": 0,
        "duplicates": 10,
        "stored_through_seq": 10,
    }
    assert c.ctx.store.groups_written == groups
    r = _post(c, token, orjson.dumps(batch("cb-1", range(11, 15))))
    assert r.json() == {"accepted": 4, "duplicates": 0, "stored_through_seq": 15}


def test_a_resend_that_raises_the_spool_floor_moves_the_mark(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    token = c.register("cb-1")
    assert _post(c, token, orjson.dumps(batch("cb-1", range(1, 11)))).json()["accepted"] == 10
    # the spool shed 11 to 13 before the re-send: the mark moves past them
    groups = c.ctx.store.groups_written
    again = batch("cb-1", range(1, 11), spool_floor_seq=14)
    r = _post(c, token, orjson.dumps(again))
    assert r.json() == {"accepted": 0, "duplicates": 10, "stored_through_seq": 13}
    assert c.ctx.store.groups_written == groups + 1
    assert _count(c) == 10


def test_a_resend_smooths_the_clock_skew_the_database_holds(collector: RunningCollector) -> None:
    from lomsong.collector.store import SKEW_SMOOTHING
    from lomsong.storage.schema import probe_state

    token = collector.register("cb-1")
    first = batch("cb-1", range(1, 6))
    assert _post(collector, token, orjson.dumps(first)).json()["accepted"] == 5
    seen_before, _ = _state(collector, "cb-1")
    # another replica's batch moved the estimate; this collector has not reloaded since
    with collector.engine.begin() as conn:
        conn.execute(probe_state.update().values(clock_skew_seconds=-500.0))
    again = batch("cb-1", range(1, 6), sent_at=datetime.now(UTC) - timedelta(minutes=3))
    again["results"] = first["results"]
    assert _post(collector, token, orjson.dumps(again)).json()["duplicates"] == 5
    _, skew = _heard_after(collector, "cb-1", seen_before)
    assert skew == pytest.approx(-500.0 + SKEW_SMOOTHING * (180.0 + 500.0), abs=1.0)
    assert collector.ctx.live.live["cb-1"].clock_skew_seconds == skew


def test_a_database_gone_back_in_time_gets_the_resends_stored_again(
    collector: RunningCollector,
) -> None:
    from lomsong.storage.schema import latest_results, probe_state

    token = collector.register("cb-1")
    raw = orjson.dumps(batch("cb-1", range(1, 21)))
    assert _post(collector, token, raw).json()["accepted"] == 20
    # restored from a backup taken before the batch: neither its rows nor its marks are there
    with collector.engine.begin() as conn:
        conn.execute(results.delete())
        conn.execute(latest_results.delete())
        conn.execute(probe_state.update().values(stored_through_seq=0, max_seq=0))
    collector.ctx.live.reload(collector.engine)
    r = _post(collector, token, raw)
    assert r.json() == {"accepted": 20, "duplicates": 0, "stored_through_seq": 20}
    assert _count(collector) == 20


def test_only_what_was_stored_is_answered_from_memory(any_collector: RunningCollector) -> None:
    c = any_collector
    token = c.register("cb-1")
    # a spool that starts at a clock-based seq moves the mark past every lower seq...
    first = batch("cb-1", range(1000, 1010), spool_floor_seq=1000)
    assert _post(c, token, orjson.dumps(first)).json()["stored_through_seq"] == 1009
    # ...but seqs below it that were never stored are stored when they come
    late = batch("cb-1", range(5, 10))
    assert _post(c, token, orjson.dumps(late)).json()["accepted"] == 5
    assert _count(c) == 15
    # and, stored now, they are answered from memory when they come again
    groups = c.ctx.store.groups_written
    assert _post(c, token, orjson.dumps(late)).json()["duplicates"] == 5
    assert c.ctx.store.groups_written == groups
    # a re-send across the gap between the two runs goes to the database, which knows
    r = _post(c, token, orjson.dumps(batch("cb-1", [9, 1000])))
    assert r.json() == {"accepted": 0, "duplicates": 2, "stored_through_seq": 1009}
    assert c.ctx.store.groups_written == groups + 1


def test_a_resend_is_refused_for_what_any_batch_is_refused_for(
    collector: RunningCollector,
) -> None:
    import json

    token = collector.register("cb-1")
    assert _post(collector, token, orjson.dumps(batch("cb-1", [1, 2]))).json()["accepted"] == 2
    doc = batch("cb-1", [1])
    doc["results"] = [result(1, kind="heartbeat", spool_depth=2**64 + 7)]  # type: ignore[index]
    r = _post(collector, token, json.dumps(doc).encode())
    assert r.status_code == 422 and "results[0].spool_depth" in r.json()["detail"]


def test_the_first_wrong_result_is_the_one_named(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    doc = batch("cb-1", [1, 2, 3, 4])
    results_ = doc["results"]
    assert isinstance(results_, list)
    results_[1]["measured_at"] = iso(datetime.now(UTC) + timedelta(hours=2))
    results_[3]["seq"] = 1
    r = _post(collector, token, orjson.dumps(doc))
    assert r.status_code == 422 and r.json()["detail"].startswith("results[1].measured_at")
    results_[1]["seq"] = 3  # now results[2] repeats it, before results[3] does
    r = _post(collector, token, orjson.dumps(doc))
    assert r.status_code == 422 and r.json()["detail"].startswith("results[1].measured_at")
    results_[1]["measured_at"] = results_[0]["measured_at"]
    r = _post(collector, token, orjson.dumps(doc))
    assert r.status_code == 422 and r.json()["detail"].startswith("results[2].seq: 3 appears")


def test_what_was_stored_stays_known_across_a_reload(collector: RunningCollector) -> None:
    token = collector.register("cb-1")
    raw = orjson.dumps(batch("cb-1", range(1, 21)))
    assert _post(collector, token, raw).json()["accepted"] == 20
    collector.ctx.live.reload(collector.engine)  # as the periodic refresh does
    groups = collector.ctx.store.groups_written
    assert _post(collector, token, raw).json()["duplicates"] == 20
    assert collector.ctx.store.groups_written == groups


def test_the_runs_of_stored_seqs_merge_and_keep_the_newest() -> None:
    from lomsong.collector.live import MAX_RUNS, _extended

    runs = _extended((), [1, 2, 3])
    assert runs == ((1, 3),)
    assert _extended(runs, [4, 5]) == ((1, 5),)  # touching
    assert _extended(runs, [2, 3, 4]) == ((1, 4),)  # overlapping
    assert _extended(runs, [7, 9]) == runs  # with a gap: 8 is not known to be stored
    for k in range(1, MAX_RUNS + 1):
        runs = _extended(runs, [10 * k])
    assert runs == tuple((10 * k, 10 * k) for k in range(1, MAX_RUNS + 1))  # (1, 3) dropped
    assert _extended(runs, list(range(4, 10 * MAX_RUNS + 1))) == ((4, 10 * MAX_RUNS),)


def test_the_insert_statements_kept_per_row_shape_are_capped() -> None:
    sql = _Sql("sqlite")
    for i in range(3 * MAX_INSERT_SHAPES):
        text = sql.insert_results(("probe_id", "seq", f"column_{i}"))
        assert f"column_{i}" in text
        assert len(sql._inserts) <= MAX_INSERT_SHAPES
