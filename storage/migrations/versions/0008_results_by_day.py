"""results by day: PostgreSQL partitions ``results`` by the local day of ``measured_at``

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:30:00.000000

The unpartitioned table is renamed aside, a partitioned ``results`` with the same columns is
made with a partition for every day it holds (and the coming days), every row is copied over in
this migration's transaction, and the old table is dropped: either all rows are in the new table
or the migration rolled back and the old one is untouched. The copy needs the table's size
again in free disk space for the time of the migration.

The primary key becomes (probe_id, seq, measured_at): PostgreSQL wants the partition key in
every unique constraint. SQLite keeps its plain table; nothing changes there.
"""

from __future__ import annotations

import time
from datetime import date

from alembic import op

from lomsong.storage.partitions import (
    DEFAULT_PARTITION,
    SCHEMA,
    create_ahead,
    create_partition,
)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    run = conn.exec_driver_sql
    run("ALTER TABLE results RENAME TO results_unpartitioned")
    run("ALTER TABLE results_unpartitioned RENAME CONSTRAINT pk_results TO pk_results_old")
    # every other index of the old table is made again on the new one, by its definition
    indexes = run(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'results_unpartitioned' AND indexname <> 'pk_results_old'"
    ).all()
    for name, _ in indexes:
        run(f'ALTER INDEX "{name}" RENAME TO "{name[:50]}_old"')
    run(
        "CREATE TABLE results (LIKE results_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (measured_at)"
    )
    run("ALTER TABLE results ADD CONSTRAINT pk_results PRIMARY KEY (probe_id, seq, measured_at)")
    for _, definition in indexes:
        run(definition.replace(" ON public.results_unpartitioned ", " ON public.results "))
    run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    run(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF results DEFAULT")
    # one partition for every local day the old table holds (UTC+7: 25,200 s), the days of
    # partitions.day_of
    days = [
        date.fromordinal(int(d) + date(1970, 1, 1).toordinal())
        for (d,) in run(
            "SELECT DISTINCT floor((measured_at + 25200) / 86400) FROM results_unpartitioned"
        )
    ]
    for day in sorted(days):
        create_partition(conn, day)
    create_ahead(conn, time.time())
    run("INSERT INTO results SELECT * FROM results_unpartitioned")
    run("DROP TABLE results_unpartitioned")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    run = conn.exec_driver_sql
    run("ALTER TABLE results RENAME TO results_partitioned")
    indexes = run(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'results_partitioned' AND indexname <> 'pk_results'"
    ).all()
    for name, _ in indexes:
        run(f'ALTER INDEX "{name}" RENAME TO "{name[:50]}_part"')
    run("ALTER TABLE results_partitioned RENAME CONSTRAINT pk_results TO pk_results_part")
    run("CREATE TABLE results (LIKE results_partitioned INCLUDING DEFAULTS)")
    run("ALTER TABLE results ADD CONSTRAINT pk_results PRIMARY KEY (probe_id, seq)")
    for _, definition in indexes:
        run(definition.replace(" ON ONLY public.results_partitioned ", " ON public.results "))
    # the partitioned key would allow one seq on two days (ingest never stores it twice):
    # the earliest row is kept
    run(
        "INSERT INTO results SELECT DISTINCT ON (probe_id, seq) * FROM results_partitioned "
        "ORDER BY probe_id, seq, measured_at"
    )
    run("DROP TABLE results_partitioned")
    run(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
