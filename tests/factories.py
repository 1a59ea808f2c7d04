"""Builders of wire-protocol batches for tests and benchmarks."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

#: measured times start six hours ago, so a batch of a few thousand seqs stays in the past
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def result(
    seq: int,
    *,
    at: datetime | None = None,
    kind: str = "icmp",
    uplink: str | None = "viettel-4g",
    ok: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "seq": seq,
        "measured_at": iso(at or T0 + timedelta(seconds=seq)),
        "kind": kind,
        "target": "dichvucong.gov.vn" if kind != "heartbeat" else "self",
        "uplink": uplink if kind != "heartbeat" else None,
        "ok": ok,
    }
    if kind == "icmp":
        r.update(
            duration_seconds=0.0412,
            packets_sent=5,
            packets_received=5 if ok else 0,
            error=None if ok else "timeout",
        )
    r.update(extra)
    return r


def batch(
    probe_id: str,
    seqs: range | list[int],
    *,
    sent_at: datetime | None = None,
    boot_id: str = "boot-1",
    **extra: Any,
) -> dict[str, Any]:
    results = [result(s) for s in seqs]
    return {
        "probe_id": probe_id,
        "boot_id": boot_id,
        "agent_version": "0.1.0",
        "sent_at": iso(sent_at or datetime.now(UTC)),
        "results": results,
        **extra,
    }


def body(doc: dict[str, Any], *, gz: bool = False) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(doc)
    headers = {"Content-Type": "application/json"}
    if gz:
        raw = gzip.compress(raw, 5)
        headers["Content-Encoding"] = "gzip"
    return raw, headers


def store_synth(url: str, province: str = "04", seed: int = 7) -> None:
    """Store ``lomsong geodata synth --province`` data (hamlets and sites) in a migrated DB."""
    from lomsong.coverage.compute import generate_and_store
    from tests.conftest import ready_engine

    engine = ready_engine(url)
    try:
        generate_and_store(engine, province=province, seed=seed)
    finally:
        engine.dispose()
