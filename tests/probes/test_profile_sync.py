"""What a box refuses of a served configuration, each with the one line its heartbeat sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lomsong.config.probe import ProbeSettings
from lomsong.config.profiles import version_of
from lomsong.probes.profile_sync import Refused, validate_for_box

SETTINGS = ProbeSettings(
    probe_id="cb-x",
    collector_url="http://127.0.0.1:8080",
    uplinks=[{"name": "fibre"}, {"name": "viettel-4g"}],  # type: ignore[list-item]
)


def served(checks: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    doc = {"probe_id": "cb-x", "version": version_of(checks), "layers": ["national"]}
    return {**doc, "checks": checks, **changes}


TCP = {"kind": "tcp", "target": "dichvucong.gov.vn:443"}
REFUSED = [
    (served([{**TCP, "uplinks": ["vnpt-4g"]}]),
     "checks[0].uplinks[0]: unknown uplink 'vnpt-4g' (uplinks: 'fibre', 'viettel-4g')"),
    (served([{"kind": "modem", "uplink": "mobifone-4g"}]),
     "checks[0].uplink: unknown uplink 'mobifone-4g' (uplinks: 'fibre', 'viettel-4g')"),
    (served([{**TCP, "retries": 3}]), "checks[0].tcp.retries: unknown field"),
    (served([{"kind": "tcp", "target": "x"}]),
     "checks[0].tcp.target: Value error, expected host:port, e.g. dichvucong.gov.vn:443 "
     "(got 'x')"),
    (served([{"kind": "http", "target": "https://a.vn/", "ca_file": "/nonexistent/ca.pem"}]),
     "checks[0].ca_file: no such file on this box (/nonexistent/ca.pem)"),
    (served([TCP], probe_id="cb-y"), "probe_id: 'cb-y' is not this probe ('cb-x')"),
    (served([TCP], version="0" * 64), "version: 000000000000… is not the hash of its checks"),
    ({"checks": []}, "probe_id: field required; and 2 more"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "message"), REFUSED)
def test_what_a_box_refuses(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(Refused) as info:
        validate_for_box(SETTINGS, doc)
    assert str(info.value) == message


def test_what_a_box_runs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    checks = [
        {**TCP, "uplinks": ["viettel-4g"]},
        {"kind": "http", "target": "https://a.vn/", "ca_file": str(ca)},
        {"kind": "modem", "uplink": "viettel-4g"},
    ]
    # a newer collector's extra field is ignored; the checks stay strict
    version, got = validate_for_box(SETTINGS, served(checks, served_at="2026-12-06T04:00:00Z"))
    assert version == version_of(checks)
    assert [c.kind for c in got] == ["tcp", "http", "modem"]
