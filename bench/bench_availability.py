"""Availability of the whole country for one month, from the daily table and from raw outages.

A fresh SQLite file holds the national shape: 3,321 centres × 4 uplinks, first heard before
the month, and 30 days (November 2026) of synthetic outages: about one silence a week per
centre (power, network or unknown) and two to four link outages a week per uplink, some over
midnight and some overlapping. The keeper fills ``availability_daily`` (timed, as the leader's
first run would be); then the national monthly report (every centre, uplink, operator and
province) is read from the table, beside the same figures computed from the raw outage rows
with the same arithmetic (``availability.probe_days``), and the two are checked to agree.

Target: the report from the daily table ≤ 1 s.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, insert, or_, select

from bench.report import Outcome, check, heading, line
from lomsong.collector.availability import OutageSpan, Subject, day_start, probe_days
from lomsong.collector.availability_keeper import DOWN_CONDITIONS, AvailabilityKeeper
from lomsong.collector.availability_read import Row, report
from lomsong.collector.registry import load_probes
from lomsong.storage.database import migrate, open_engine, write_transaction
from lomsong.storage.places import load_places
from lomsong.storage.schema import (
    availability_probes,
    communes,
    outages,
    probe_uplinks,
    probes,
)

CENTRES = 3321
UPLINKS = (("viettel-4g", "viettel"), ("vnpt-4g", "vinaphone"), ("mobi-4g", "mobifone"))
UPLINKS += (("fibre", "fibre"),)
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 30)
TARGET_SECONDS = 1.0


def main() -> list[Outcome]:
    heading(f"availability: one month, {CENTRES:,} centres × {len(UPLINKS)} uplinks")
    with tempfile.TemporaryDirectory() as tmp:
        return _run(Path(tmp) / "availability.db")


def _run(path: Path) -> list[Outcome]:
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine)
    load_places(engine)
    lo, hi = day_start(FIRST), day_start(date(2026, 12, 1))
    count = _fill(engine, lo, hi)
    line(f"{count:,} outages stored for the month")
    now = hi + 3600
    keeper = AvailabilityKeeper(engine, clock=lambda: now)  # reads ``now`` when it runs
    t0 = time.perf_counter()
    rows_written = keeper.refresh()
    kept = time.perf_counter() - t0
    line(f"keeper's first run (fills {rows_written:,} daily rows): {kept:.1f} s")
    now += 300  # the next scheduled run: today again, for every centre
    t0 = time.perf_counter()
    again = keeper.refresh()
    line(f"keeper's next run ({again:,} rows of today): {time.perf_counter() - t0:.1f} s")

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = report(engine, FIRST, LAST, by="month")
        times.append(time.perf_counter() - t0)
    from_table = min(times)
    national = _national(rows)

    t0 = time.perf_counter()
    raw = _from_raw(engine, lo, hi, now)
    from_raw = time.perf_counter() - t0
    engine.dispose()
    agree = abs(raw - national) < 1e-9
    line(f"from the daily table: {from_table * 1000:.0f} ms ({len(rows):,} rows; best of 3)")
    line(f"from the raw outage rows: {from_raw * 1000:.0f} ms")
    line(f"table is {from_raw / from_table:.1f}× faster; national availability {national:.5%}")
    line(f"the two agree: {agree} (raw {raw:.9f}, table {national:.9f})")
    return [
        check(
            "availability",
            "national month from the daily table",
            f"{from_table * 1000:.0f} ms (raw outages: {from_raw * 1000:.0f} ms)",
            f"≤ {TARGET_SECONDS * 1000:.0f} ms, same figure",
            from_table <= TARGET_SECONDS and agree,
        )
    ]


def _fill(engine: Engine, lo: float, hi: float) -> int:
    rng = random.Random(14)
    with engine.connect() as conn:
        codes = [
            r[0]
            for r in conn.execute(select(communes.c.code).order_by(communes.c.code).limit(CENTRES))
        ]
        provinces_of = dict(conn.execute(select(communes.c.code, communes.c.province_code)).all())
    created = lo - 3600  # heard just before the month: the first run fills about 31 days
    rows = []
    with write_transaction(engine) as conn:
        conn.execute(
            insert(probes),
            [
                {"id": f"p{c}", "commune_code": c, "label": None, "created_at": created}
                for c in codes
            ],
        )
        conn.execute(
            insert(probe_uplinks),
            [{"probe_id": f"p{c}", "name": n, "operator": o} for c in codes for n, o in UPLINKS],
        )
        conn.execute(
            insert(availability_probes),
            [{"probe_id": f"p{c}", "first_heard_at": created} for c in codes],
        )
        for c in codes:
            base = {"probe_id": f"p{c}", "commune_code": c, "province_code": provinces_of[c]}
            for _ in range(rng.randint(2, 6)):
                start = rng.uniform(lo, hi - 3600)
                end = start + rng.expovariate(1 / 5400)
                cause = rng.choice(["power", "network", "unknown"])
                rows.append(_outage(base, "probe_silent", cause, None, None, start, end))
            for name, operator in UPLINKS:
                for _ in range(rng.randint(8, 16)):
                    start = rng.uniform(lo, hi - 600)
                    end = start + rng.expovariate(1 / 2400)
                    rows.append(_outage(base, "uplink_down", "network", name, operator, start, end))
        conn.execute(insert(outages), rows)
    return len(rows)


def _outage(
    base: dict[str, str],
    condition: str,
    cause: str,
    uplink: str | None,
    operator: str | None,
    start: float,
    end: float,
) -> dict[str, object]:
    return {
        **base,
        "id": f"{base['probe_id']}-{condition}-{uplink}-{start:.3f}",
        "condition": condition,
        "cause": cause,
        "uplink": uplink,
        "operator": operator,
        "started_at": start,
        "ended_at": end,
        "detected_at": start,
        "resolved_at": end,
        "updated_at": end,
    }


def _national(rows: list[Row]) -> float:
    observed = sum(r.figures.observed for r in rows if r.level == "province")
    down = sum(r.figures.down for r in rows if r.level == "province")
    return 1 - down / observed


def _from_raw(engine: Engine, lo: float, hi: float, now: float) -> float:
    """The national centres' availability straight from the outage rows of the month."""
    with engine.connect() as conn:
        registered = load_probes(conn)
        heard = dict(conn.execute(select(availability_probes)).all())
        found = conn.execute(
            select(
                outages.c.probe_id,
                outages.c.condition,
                outages.c.started_at,
                outages.c.ended_at,
                outages.c.cause,
                outages.c.uplink,
            ).where(
                outages.c.condition.in_(DOWN_CONDITIONS),
                outages.c.started_at < hi,
                or_(outages.c.ended_at.is_(None), outages.c.ended_at > lo),
            )
        ).all()
    spans: dict[str, list[OutageSpan]] = defaultdict(list)
    for pid, condition, start, end, cause, uplink in found:
        spans[pid].append(OutageSpan(condition, start, end, cause, uplink))
    observed = down = 0.0
    for pid, info in registered.items():
        subject = Subject(
            pid,
            info.commune_code,
            info.province_code,
            {u.name: u.operator for u in info.uplinks},
            heard[pid],
        )
        for f in probe_days(subject, spans[pid], (), FIRST, LAST, now):
            if f.uplink == "":
                observed += f.observed
                down += f.down
    return 1 - down / observed


if __name__ == "__main__":
    main()
