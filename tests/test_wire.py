"""The wire models and the plain-dict validator the collector derives from them must agree."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from lomsong.wire import (
    ReportBatch,
    Result,
    Signal,
    batch_dict_adapter,
    heartbeat_fields_allowed,
    packets_consistent,
)
from tests.collector.test_ingest import INVALID
from tests.factories import batch, result


def _full_batch() -> dict[str, object]:
    doc = batch("cb-1", [])
    doc["spool_floor_seq"] = 1
    doc["results"] = [
        result(
            1,
            kind="icmp",
            packets_sent=5,
            packets_received=4,
            rtt_min_seconds=0.01,
            rtt_max_seconds=0.05,
            jitter_seconds=0.003,
            duration_seconds=0.05,
        ),
        result(2, kind="http", status_code=200, tls_expiry_days=41.5, error=None),
        result(
            3,
            kind="modem",
            signal={
                "rat": "lte",
                "rsrp_dbm": -101.5,
                "rsrq_db": -12.0,
                "snr_db": 3.5,
                "rssi_dbm": -71.0,
                "rscp_dbm": -96.0,  # a UMTS cell's: every field once, not a real reading
                "ecio_db": -3.5,
                "mcc": "452",
                "mnc": "04",
                "tac": 13021,
                "lac": 1,
                "cid": 2795028,
            },
        ),
        result(
            4,
            kind="heartbeat",
            uptime_seconds=3600.0,
            load1=0.4,
            disk_free_bytes=10**9,
            memory_rss_bytes=5 * 10**7,
            spool_depth=12,
            spool_dropped=0,
            spool_refused=1,
            checks=[{"uplink": "viettel-4g", "kind": "icmp", "target": "dichvucong.gov.vn"}],
            config_version="a" * 64,
            config_refused_version="b" * 64,
            config_error="checks[0].uplinks[0]: unknown uplink 'vnpt-4g'",
        ),
    ]
    return doc


def test_every_field_of_the_models_is_in_the_dict_validator() -> None:
    doc = _full_batch()
    raw = orjson.dumps(doc)
    plain = batch_dict_adapter().validate_json(raw)
    model = ReportBatch.model_validate_json(raw)
    # what was sent comes back the same both ways
    assert plain == model.model_dump(exclude_unset=True)
    assert set(plain) == set(ReportBatch.model_fields)
    assert set(plain["results"][2]["signal"]) == set(Signal.model_fields)
    heartbeat_and_checks = set().union(*(set(r) for r in plain["results"]))
    assert heartbeat_and_checks == set(Result.model_fields)


@pytest.mark.parametrize(("name", "doc", "field", "value"), INVALID, ids=[i[0] for i in INVALID])
def test_the_dict_validator_refuses_what_the_model_refuses(
    name: str, doc: dict[str, object], field: str, value: str
) -> None:
    raw = orjson.dumps(doc)
    try:
        ReportBatch.model_validate_json(raw)
        model_refuses = False
    except ValidationError:
        model_refuses = True
    try:
        plain = batch_dict_adapter().validate_json(raw)
    except ValidationError:
        dict_refuses = True
    else:  # the rules across fields are the caller's to check
        dict_refuses = not all(
            packets_consistent(r.get("packets_sent"), r.get("packets_received"))
            and heartbeat_fields_allowed(r)
            for r in plain["results"]
        )
    # the others (clock, repeated seqs) are the collector's checks after validation
    assert dict_refuses == model_refuses
