"""rollups: per check and 5-minute, hourly and daily bucket (storage/rollups.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("rollup_5m", "rollup_1h", "rollup_1d")


def _columns() -> list[sa.Column[Any]]:
    cols: list[sa.Column[Any]] = [
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("uplink", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), autoincrement=False, nullable=False),
    ]
    cols += [
        sa.Column(c, sa.BigInteger(), nullable=False, server_default="0")
        for c in ("runs", "successes", "packets_sent", "packets_received")
    ]
    for m in ("rtt", "rsrp", "rsrq", "snr"):
        cols += [
            sa.Column(f"{m}_count", sa.BigInteger(), nullable=False, server_default="0"),
            sa.Column(f"{m}_sum", sa.Float(), nullable=False, server_default="0"),
            sa.Column(f"{m}_min", sa.Float(), nullable=True),
            sa.Column(f"{m}_max", sa.Float(), nullable=True),
        ]
    cols += [
        sa.Column("hist", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("cells", sa.Text(), nullable=False, server_default="{}"),
    ]
    return cols


def upgrade() -> None:
    for name in TABLES:
        op.create_table(
            name,
            *_columns(),
            sa.PrimaryKeyConstraint(
                "probe_id", "uplink", "kind", "target", "bucket_start", name=op.f(f"pk_{name}")
            ),
            sqlite_with_rowid=False,
        )


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
