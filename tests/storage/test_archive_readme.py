"""The README's DuckDB query, its very text, run on a small archive: the availability of each
uplink per province for a local month equals the same figures computed from the database."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Engine

from lomsong.storage.archive import archive_day
from lomsong.storage.partitions import day_of
from lomsong.storage.schema import results
from lomsong.timefmt import LOCAL_TZ
from tests.storage.archive_rows import PROBES, PROVINCE, register, result_row

README = Path(__file__).resolve().parents[2] / "README.md"
README_PATH = "'archive/results/*/*/*.parquet'"


def readme_query() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if "read_parquet(" in b and "availability_pct" in b]
    assert len(found) == 1, "the README's archive query"
    assert README_PATH in found[0]
    return found[0]


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


#: the month's edges in local time (UTC+7), each side of them, and days inside
EDGES = [
    _utc(2026, 10, 31, 16, 59, 59),  # 23:59:59 on 31 October, local: out
    _utc(2026, 10, 31, 17, 0, 0),  # 00:00 on 1 November, local: in
    _utc(2026, 11, 30, 16, 59, 59),  # in
    _utc(2026, 11, 30, 17, 0, 0),  # 00:00 on 1 December, local: out
]
DAYS_INSIDE = [date(2026, 11, 1), date(2026, 11, 15), date(2026, 11, 30)]


def seed_month(engine: Engine) -> list[dict[str, Any]]:
    rng = random.Random(11)
    rows = []
    for i, probe_id in enumerate(PROBES):
        times = list(EDGES)
        for day in DAYS_INSIDE:
            start = _utc(day.year, day.month, day.day)
            # runs bunched into a few slots, so that slots hold several results of an uplink
            slots = [start + 300 * rng.randrange(288) for _ in range(12)]
            times += [rng.choice(slots) + rng.uniform(0, 299) for _ in range(40)]
        for seq, at in enumerate(sorted(times), start=1 + 10_000 * i):
            rows.append(result_row(probe_id, seq, at, rng))
    with engine.begin() as conn:
        conn.execute(results.insert(), rows)
    return rows


def expected(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The README's definition, by hand: 5-minute slots with a run, up if any run was ok."""
    slots: dict[tuple[str, str, str, int], bool] = {}
    for r in rows:
        local = datetime.fromtimestamp(r["measured_at"], LOCAL_TZ)
        if (local.year, local.month) != (2026, 11) or r["uplink"] is None:
            continue
        key = (PROVINCE[r["probe_id"]], r["probe_id"], r["uplink"], int(r["measured_at"] // 300))
        slots[key] = slots.get(key, False) or r["ok"]
    per: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [set(), 0, 0])
    for (province, probe_id, uplink, _slot), up in slots.items():
        acc = per[(province, uplink)]
        acc[0].add(probe_id)
        acc[1] += 1
        acc[2] += int(up)
    return [
        (p, u, len(c), n, k, round(100.0 * k / n, 3)) for (p, u), (c, n, k) in sorted(per.items())
    ]


def test_the_readmes_duckdb_query_gives_the_months_availability(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    register(sqlite_engine)
    rows = seed_month(sqlite_engine)
    root = tmp_path / "archive"
    for day in {day_of(r["measured_at"]) for r in rows}:
        archive_day(sqlite_engine, day, root)
    # the folders are local days: results of the evening of 31 October (local) sit in their own
    # folder, which the query leaves out, and 1 November's early hours in November's
    assert (root / "results" / "date=2026-10-31").is_dir()

    query = readme_query().replace(README_PATH, f"'{root}/results/*/*/*.parquet'")
    with duckdb.connect() as con:
        got = con.execute(query).fetchall()
    want = expected(rows)
    assert {p for p, *_ in want} == {"01", "04"} and len(want) == 4
    assert [tuple(float(x) if isinstance(x, float) else x for x in g) for g in got] == want
    assert any(pct < 100 for *_, pct in want)  # failures show
