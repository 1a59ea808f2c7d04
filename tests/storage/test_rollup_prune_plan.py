"""Pruning ``rollup_5m`` goes through the table's key, never a scan of it: the statements
``prune`` runs, explained by each database on a table of realistic shape."""

from __future__ import annotations

from sqlalchemy import Engine, text

from lomsong.storage.retention import bucket_cutoff, expiring_series, plan_prune, prune, rollup_sql
from tests.storage.test_retention import NOW

SERIES = [(f"p-{i:03d}", up, "icmp", "8.8.8.8") for i in range(30) for up in ("4g", "fibre")]
#: seven days of 5-minute buckets a series, ending at NOW: 2,016 a series, 120,960 in all
BUCKETS = 7 * 288


def _fill(engine: Engine) -> None:
    end = int(NOW) // 300 * 300
    rows = [
        {"p": p, "u": u, "k": k, "t": t, "b": end - i * 300}
        for p, u, k, t in SERIES
        for i in range(BUCKETS)
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rollup_5m (probe_id, uplink, kind, target, bucket_start, runs) "
                "VALUES (:p, :u, :k, :t, :b, 1)"
            ),
            rows,
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def _plan(engine: Engine, sql: str, params: tuple[object, ...]) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            return "\n".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql(f"EXPLAIN {sql}", params).all()
        return "\n".join(str(r[0]) for r in rows)


def test_rollup_prune_statements_use_the_key(engine: Engine) -> None:
    _fill(engine)
    sql = rollup_sql(engine.dialect.name)
    cutoff = plan_prune(engine, now=NOW, raw_days=3, rollup_5m_days=5).rollup_cutoff
    bound = bucket_cutoff(cutoff)
    key = SERIES[7]
    plans = {
        "first": _plan(engine, sql["first"], ()),
        "next": _plan(engine, sql["next"], key),
        "count": _plan(engine, sql["count"], (*key, bound)),
        "delete": _plan(engine, sql["delete"], (*key, bound, *key, bound, 500)),
    }
    if engine.dialect.name == "postgresql":  # the skip scan in one statement
        plans["series"] = _plan(engine, sql["series"], (bound,))
    for name, plan in plans.items():
        if engine.dialect.name == "sqlite":
            # WITHOUT ROWID: the table is its key; a search of it, never a full scan
            assert "SEARCH rollup_5m USING PRIMARY KEY" in plan or (
                name == "first" and "SCAN rollup_5m" in plan and "LIMIT" not in plan
            ), (name, plan)
            if name != "first":
                assert "SCAN rollup_5m" not in plan, (name, plan)
            if name in ("count", "delete"):
                assert "bucket_start<?" in plan.replace(" ", ""), (name, plan)
        else:
            assert "pk_rollup_5m" in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
            if name in ("count", "delete"):
                # the cutoff bounds the key's range: not a filter over the series' rows
                cond = [ln for ln in plan.splitlines() if "Index Cond" in ln]
                assert all("bucket_start <" in ln for ln in cond), (name, plan)
                assert "Filter" not in plan, (name, plan)

    with engine.connect() as conn:
        assert expiring_series(conn, cutoff) == sorted(SERIES)
        assert expiring_series(conn, cutoff - 20 * 86_400) == []
    expired = sum(1 for i in range(BUCKETS) if int(NOW) // 300 * 300 - i * 300 < cutoff)
    plan = plan_prune(engine, now=NOW, raw_days=3, rollup_5m_days=5)
    assert plan.rollup_rows == expired * len(SERIES)
    report = prune(engine, now=NOW, raw_days=3, rollup_5m_days=5)
    assert report.rollup_rows == plan.rollup_rows and report.chunks > 1
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*), min(bucket_start) FROM rollup_5m")).one()
    assert left[0] == (BUCKETS - expired) * len(SERIES) and left[1] >= plan.rollup_cutoff
