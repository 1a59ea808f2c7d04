"""archived files: the Parquet files of the open archive, recorded after their rename

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_files",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("province", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "province", name=op.f("pk_archived_files")),
    )


def downgrade() -> None:
    op.drop_table("archived_files")
