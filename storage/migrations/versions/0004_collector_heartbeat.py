"""collector heartbeat: the row /readyz writes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collector_heartbeat",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collector_heartbeat")),
    )


def downgrade() -> None:
    op.drop_table("collector_heartbeat")
