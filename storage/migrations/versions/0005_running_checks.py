"""running checks: the checks an agent runs, from its newest heartbeat

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("probe_state", sa.Column("running_checks", sa.Text(), nullable=True))
    op.add_column("probe_state", sa.Column("running_checks_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("probe_state") as batch:
        batch.drop_column("running_checks_at")
        batch.drop_column("running_checks")
