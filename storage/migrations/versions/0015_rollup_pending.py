"""rollup pending: the rowid ranges of raw results not yet folded into 5-minute rollups (SQLite)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_pending",
        sa.Column("after_rowid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_rowid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("after_rowid", name=op.f("pk_rollup_pending")),
    )


def downgrade() -> None:
    op.drop_table("rollup_pending")
