"""Results to archive: probes in two provinces, a realistic mix of checks, and rows that read back."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from lomsong.storage.archive import RESULTS_SCHEMA
from lomsong.storage.partitions import day_bounds, day_of
from lomsong.storage.schema import probes, results

#: probe → commune: two in Cao Bằng (04), one in Hà Nội (01)
PROBES = {"cb-thuc-phan": "01273", "cb-nung-tri-cao": "01279", "hn-ba-dinh": "00004"}
PROVINCE = {"cb-thuc-phan": "04", "cb-nung-tri-cao": "04", "hn-ba-dinh": "01"}
#: a probe whose results stayed after it was unregistered: its province is "unknown"
ORPHAN = "da-go-bo"
UPLINKS = ("viettel-4g", "vnpt-fibre")


def register(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            probes.insert(),
            [
                {"id": p, "commune_code": c, "label": f"Điểm {p}", "created_at": 0.0}
                for p, c in PROBES.items()
            ],
        )


def result_row(probe_id: str, seq: int, at: float, rng: random.Random) -> dict[str, Any]:
    """One result of any kind, with every column set as that kind sets it."""
    kind = rng.choice(("icmp", "icmp", "tcp", "http", "dns", "modem", "heartbeat"))
    ok = rng.random() > 0.15
    row: dict[str, Any] = {c.name: None for c in results.columns}
    row.update(
        probe_id=probe_id,
        seq=seq,
        measured_at=at,
        received_at=at + rng.uniform(0.5, 40.0),
        kind=kind,
        target={"icmp": "8.8.8.8", "tcp": "dichvucong.gov.vn:443", "heartbeat": "self"}.get(
            kind, "https://dichvucong.gov.vn/"
        ),
        uplink=None if kind == "heartbeat" else rng.choice(UPLINKS),
        ok=ok,
        duration_seconds=round(rng.uniform(0.01, 0.9), 4),
        boot_id="boot-7f3a",
        error=None if ok else rng.choice(("timeout", "connection refused", "lỗi DNS")),
    )
    if kind == "icmp":
        row.update(
            packets_sent=5,
            packets_received=5 if ok else rng.randint(0, 4),
            rtt_min_seconds=0.02,
            rtt_max_seconds=0.09,
            jitter_seconds=0.004,
        )
    elif kind == "http":
        row.update(status_code=200 if ok else 503, tls_expiry_days=87.5)
    elif kind == "modem":
        row.update(
            rat="lte",
            rsrp_dbm=float(rng.randint(-120, -70)),
            rsrq_db=-11.0,
            snr_db=7.5,
            rssi_dbm=-75.0,
            mcc="452",
            mnc="04",
            tac=12045,
            cid=rng.choice((27_000_001, 27_000_002, 5_000_000_123)),
        )
    elif kind == "heartbeat":
        row.update(details='{"load": 0.12, "uptime_seconds": 86400}')
    return row


def seed(engine: Engine, day: date, *, per_probe: int = 60, seed: int = 14) -> None:
    """``per_probe`` results a probe within the local ``day``, including its first and last instants,
    and results just outside it, which the day's archive must leave out."""
    rng = random.Random(seed)
    start, end = day_bounds(day)
    rows = []
    for i, probe_id in enumerate([*PROBES, ORPHAN]):
        times = [start, end - 0.001, *(rng.uniform(start, end) for _ in range(per_probe - 2))]
        times += [start - 0.001, end]  # the day before, the day after
        for seq, at in enumerate(sorted(times), start=1 + 1000 * i):
            rows.append(result_row(probe_id, seq, at, rng))
    with engine.begin() as conn:
        conn.execute(results.insert(), rows)


def db_rows(engine: Engine, day: date) -> list[tuple[Any, ...]]:
    """The day's rows as the database has them, sorted, in the table's column order."""
    start, end = day_bounds(day)
    with engine.connect() as conn:
        found = conn.execute(
            select(*results.columns).where(
                results.c.measured_at >= start, results.c.measured_at < end
            )
        )
        return sorted(tuple(r) for r in found)


def duckdb_rows(root: Path) -> list[tuple[Any, ...]]:
    """Every row of the archive through DuckDB's hive partitioning, sorted; the partition
    columns (date, province) checked against the probe and the time on the way."""
    import duckdb

    names = ", ".join(f'"{n}"' for n in RESULTS_SCHEMA.names)
    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT {names}, province, CAST(date AS VARCHAR) "
            f"FROM read_parquet('{root}/results/*/*/*.parquet', hive_partitioning = true, "
            f"hive_types = {{'date': DATE, 'province': VARCHAR}})"
        ).fetchall()
    out = []
    for *row, province, day in found:
        assert province == PROVINCE.get(row[0], "unknown"), (row[0], province)
        assert date.fromisoformat(day) == _local_day(row[2]), row
        out.append(tuple(row))
    return sorted(out)


def pyarrow_rows(root: Path) -> list[tuple[Any, ...]]:
    """Every row of the archive through pyarrow's dataset reader, sorted."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    part = ds.partitioning(
        pa.schema([("date", pa.string()), ("province", pa.string())]), flavor="hive"
    )
    table = ds.dataset(root / "results", format="parquet", partitioning=part).to_table()
    assert (
        table.schema.remove(table.schema.get_field_index("date")).remove(
            table.schema.get_field_index("province") - 1
        )
        == RESULTS_SCHEMA.remove_metadata()
    )
    columns = [table.column(n).to_pylist() for n in RESULTS_SCHEMA.names]
    return sorted(zip(*columns, strict=True))


def _local_day(at: float) -> date:
    """The archive's day of a time: the Asia/Ho_Chi_Minh day."""
    return day_of(at)
