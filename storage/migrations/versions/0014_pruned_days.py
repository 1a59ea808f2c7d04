"""pruned days: the raw results pruning removed, per local day and province, and their archive

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pruned_days",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("province", sa.String(length=8), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("archived_rows", sa.BigInteger(), nullable=True),
        sa.Column("archive_path", sa.String(length=512), nullable=True),
        sa.Column("first_pruned_at", sa.Float(), nullable=False),
        sa.Column("last_pruned_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "province", name=op.f("pk_pruned_days")),
    )


def downgrade() -> None:
    op.drop_table("pruned_days")
