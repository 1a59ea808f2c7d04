"""availability: daily and monthly figures per centre and uplink; when each probe was first heard

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _figures_table(name: str, period: str, length: int) -> None:
    """One level of figures (``day`` or ``month``): the same columns at both levels. Kept here,
    not taken from ``storage/schema.py``, so that this revision builds what it built."""
    op.create_table(
        name,
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("uplink", sa.String(64), nullable=False),
        sa.Column(period, sa.String(length), nullable=False),
        sa.Column("commune_code", sa.String(5), nullable=False),
        sa.Column("province_code", sa.String(2), nullable=False),
        sa.Column("operator", sa.String(32), nullable=True),
        sa.Column("observed_seconds", sa.Float(), nullable=False),
        sa.Column("down_seconds", sa.Float(), nullable=False),
        sa.Column("maintenance_seconds", sa.Float(), nullable=False),
        sa.Column("power_seconds", sa.Float(), nullable=False),
        sa.Column("network_seconds", sa.Float(), nullable=False),
        sa.Column("unknown_seconds", sa.Float(), nullable=False),
        sa.Column("outages", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("repair_seconds", sa.Float(), nullable=False),
        sa.Column("longest_seconds", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("probe_id", "uplink", period, name=f"pk_{name}"),
        # SQLite: the rows live in the key's order, so a report's sums read them in order
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    _figures_table("availability_daily", "day", 10)
    op.create_index(
        "ix_availability_daily_province_code_day",
        "availability_daily",
        ["province_code", "day"],
    )
    op.create_index("ix_availability_daily_day", "availability_daily", ["day"])
    _figures_table("availability_monthly", "month", 7)
    op.create_index(
        "ix_availability_monthly_province_code_month",
        "availability_monthly",
        ["province_code", "month"],
    )
    op.create_table(
        "availability_probes",
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("first_heard_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("probe_id", name="pk_availability_probes"),
    )


def downgrade() -> None:
    op.drop_table("availability_probes")
    op.drop_index("ix_availability_monthly_province_code_month", table_name="availability_monthly")
    op.drop_table("availability_monthly")
    op.drop_index("ix_availability_daily_day", table_name="availability_daily")
    op.drop_index("ix_availability_daily_province_code_day", table_name="availability_daily")
    op.drop_table("availability_daily")
