"""outages and notification attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:40:36.539857
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("receiver", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("fingerprints", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_attempts")),
    )
    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_attempts_group_key"), ["group_key"], unique=False
        )

    op.create_table(
        "outages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=False),
        sa.Column("condition", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=True),
        sa.Column("uplink", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("detected_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outages")),
    )
    with op.batch_alter_table("outages", schema=None) as batch_op:
        batch_op.create_index("ix_outages_ended_at", ["ended_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outages_probe_id"), ["probe_id"], unique=False)
        batch_op.create_index(
            "ix_outages_province_code_started_at", ["province_code", "started_at"], unique=False
        )

    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index("ix_results_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_received_at")

    with op.batch_alter_table("outages", schema=None) as batch_op:
        batch_op.drop_index("ix_outages_province_code_started_at")
        batch_op.drop_index(batch_op.f("ix_outages_probe_id"))
        batch_op.drop_index("ix_outages_ended_at")

    op.drop_table("outages")
    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_attempts_group_key"))

    op.drop_table("notification_attempts")
