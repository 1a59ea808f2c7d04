"""token_rotations: a probe's new token, offered on its next report; the old one revoked on use

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_rotations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("old_token_id", sa.Integer(), nullable=True),
        sa.Column("new_token_id", sa.Integer(), nullable=True),
        sa.Column("sealed", sa.String(256), nullable=True),
        sa.Column("offered_at", sa.Float(), nullable=True),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name=op.f("fk_token_rotations_probe_id_probes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["old_token_id"],
            ["tokens.id"],
            name=op.f("fk_token_rotations_old_token_id_tokens"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["new_token_id"],
            ["tokens.id"],
            name=op.f("fk_token_rotations_new_token_id_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_rotations")),
    )
    op.create_index(op.f("ix_token_rotations_probe_id"), "token_rotations", ["probe_id"])


def downgrade() -> None:
    op.drop_table("token_rotations")
