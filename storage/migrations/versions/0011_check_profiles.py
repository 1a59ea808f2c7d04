"""check profiles: checks defined at the collector, and what each agent says it applies

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "check_profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_key", sa.String(64), nullable=False),
        sa.Column("province_code", sa.String(2), nullable=True),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("toml", sa.Text(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_profiles")),
        sa.UniqueConstraint("scope", "scope_key", name=op.f("uq_check_profiles_scope_scope_key")),
        sa.UniqueConstraint("revision", name=op.f("uq_check_profiles_revision")),
    )
    # plain ADD COLUMN (nullable): no copy of the table on SQLite
    op.add_column("probe_state", sa.Column("config_version", sa.String(64), nullable=True))
    op.add_column("probe_state", sa.Column("config_refused_version", sa.String(64), nullable=True))
    op.add_column("probe_state", sa.Column("config_error", sa.String(512), nullable=True))
    op.add_column("probe_state", sa.Column("config_reported_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("probe_state") as batch:
        batch.drop_column("config_reported_at")
        batch.drop_column("config_error")
        batch.drop_column("config_refused_version")
        batch.drop_column("config_version")
    op.drop_table("check_profiles")
