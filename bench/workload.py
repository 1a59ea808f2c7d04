"""What the benchmarks send: realistic batches of a commune centre's probe, and their table rows.

A probe with a 4G modem and a fibre line measures, every round, ICMP, TCP and HTTP towards the
National Public Service Portal over both uplinks, ICMP to a public resolver, the modem's serving
cell and a heartbeat: ten results whose seqs increase by one. The values vary with the seq, so
that rows and gzip bodies are not artificially uniform.
"""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from lomsong.collector.ingest import PreparedBatch, parse_batch
from lomsong.collector.registry import Uplink
from lomsong.config.collector import IngestLimits
from lomsong.storage.schema import results

BATCH = 100
ROUND = 10
UPLINKS = (Uplink("viettel-4g", "viettel"), Uplink("fibre", "fibre"))
PORTAL = "dichvucong.gov.vn"
#: The column order of the ``results`` table, for raw ``executemany``.
COLUMNS: tuple[str, ...] = tuple(results.c.keys())
#: Measured times start two days ago, one second per seq: 170,000 seqs stay in the past.
BASE = time.time() - 2 * 86_400.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def result(seq: int) -> dict[str, Any]:
    """The result with this seq of the ten-check round."""
    slot = seq % ROUND
    jitter = (seq * 7919) % 97
    up = UPLINKS[slot % 2].name
    r: dict[str, Any] = {"seq": seq, "measured_at": iso(BASE + seq), "ok": True}
    if slot in (0, 1):
        ok = jitter != 13
        r.update(
            kind="icmp",
            target=PORTAL,
            uplink=up,
            ok=ok,
            duration_seconds=0.02 + jitter / 1000,
            packets_sent=5,
            packets_received=5 if ok else 0,
            rtt_min_seconds=0.018,
            rtt_max_seconds=0.03 + jitter / 1000,
            jitter_seconds=0.002,
            error=None if ok else "timeout",
        )
    elif slot in (2, 3):
        r.update(kind="tcp", target=f"{PORTAL}:443", uplink=up, duration_seconds=0.03)
    elif slot in (4, 5):
        r.update(
            kind="http",
            target=f"https://{PORTAL}/",
            uplink=up,
            duration_seconds=0.2 + jitter / 500,
            status_code=200,
            tls_expiry_days=41.5,
        )
    elif slot == 6:
        r.update(kind="icmp", target="8.8.8.8", uplink="viettel-4g", duration_seconds=0.05)
        r.update(packets_sent=5, packets_received=5)
    elif slot in (7, 8):
        r.update(
            kind="modem",
            target="modem0",
            uplink="viettel-4g",
            signal={
                "rat": "lte",
                "rsrp_dbm": -95.0 - jitter / 10,
                "rsrq_db": -11.0,
                "snr_db": 4.5,
                "rssi_dbm": -70.0,
                "mcc": "452",
                "mnc": "04",
                "tac": 13021,
                "cid": 2795021 + slot,
            },
        )
    else:
        r.update(
            kind="heartbeat",
            target="self",
            uplink=None,
            uptime_seconds=86_000.0 + seq,
            load1=0.3,
            disk_free_bytes=8 * 2**30,
            memory_rss_bytes=40 * 2**20,
            spool_depth=jitter,
            spool_dropped=0,
        )
    return r


def batch_doc(probe_id: str, first_seq: int, n: int = BATCH) -> dict[str, Any]:
    """One probe's batch of ``n`` results from ``first_seq``, sent now."""
    return {
        "probe_id": probe_id,
        "boot_id": f"boot-{probe_id}",
        "agent_version": "0.1.0",
        "sent_at": iso(time.time()),
        "results": [result(s) for s in range(first_seq, first_seq + n)],
    }


def gzip_body(doc: dict[str, Any]) -> bytes:
    return gzip.compress(orjson.dumps(doc), 6)


def prepared(probe_id: str, first_seq: int, n: int = BATCH) -> PreparedBatch:
    """The batch as the collector's ingest turns it into rows (the same code, the same rows)."""
    return parse_batch(orjson.dumps(batch_doc(probe_id, first_seq, n)), IngestLimits())


def row_tuples(batch: PreparedBatch) -> list[tuple[Any, ...]]:
    """The rows of a prepared batch in ``COLUMNS`` order."""
    return [tuple(r.get(c) for c in COLUMNS) for r in batch.rows]


def interleaved(probe_ids: list[str], batches_each: int, first_seq: int = 1) -> list[PreparedBatch]:
    """Batches in the order a collector sees them: each probe's next batch in turn."""
    return [prepared(pid, first_seq + k * BATCH) for k in range(batches_each) for pid in probe_ids]
