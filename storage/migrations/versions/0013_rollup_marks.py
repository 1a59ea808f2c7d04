"""rollup marks: the hours whose hourly and daily rollups the leader derives next

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_marks",
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("uplink", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("hour_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint(
            "probe_id", "uplink", "kind", "target", "hour_start", name=op.f("pk_rollup_marks")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rollup_marks")
