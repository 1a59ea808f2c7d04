"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:17:58.063020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latest_results",
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("uplink", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("measured_at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("rsrp_dbm", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint(
            "probe_id", "uplink", "kind", "target", name=op.f("pk_latest_results")
        ),
    )
    op.create_table(
        "provinces",
        sa.Column("code", sa.String(length=2), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("full_name", sa.String(length=150), nullable=False),
        sa.Column("full_name_en", sa.String(length=150), nullable=False),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_provinces")),
    )
    op.create_table(
        "results",
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("measured_at", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("uplink", sa.String(length=64), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("packets_sent", sa.Integer(), nullable=True),
        sa.Column("packets_received", sa.Integer(), nullable=True),
        sa.Column("rtt_min_seconds", sa.Float(), nullable=True),
        sa.Column("rtt_max_seconds", sa.Float(), nullable=True),
        sa.Column("jitter_seconds", sa.Float(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("tls_expiry_days", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("rat", sa.String(length=8), nullable=True),
        sa.Column("rsrp_dbm", sa.Float(), nullable=True),
        sa.Column("rsrq_db", sa.Float(), nullable=True),
        sa.Column("snr_db", sa.Float(), nullable=True),
        sa.Column("rssi_dbm", sa.Float(), nullable=True),
        sa.Column("mcc", sa.String(length=3), nullable=True),
        sa.Column("mnc", sa.String(length=3), nullable=True),
        sa.Column("tac", sa.Integer(), nullable=True),
        sa.Column("lac", sa.Integer(), nullable=True),
        sa.Column("cid", sa.BigInteger(), nullable=True),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("probe_id", "seq", name=op.f("pk_results")),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_results_probe_id_measured_at", ["probe_id", "measured_at"], unique=False
        )

    op.create_table(
        "communes",
        sa.Column("code", sa.String(length=5), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["province_code"], ["provinces.code"], name=op.f("fk_communes_province_code_provinces")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_communes")),
    )
    with op.batch_alter_table("communes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_communes_province_code"), ["province_code"], unique=False
        )

    op.create_table(
        "probes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["commune_code"], ["communes.code"], name=op.f("fk_probes_commune_code_communes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
    )
    with op.batch_alter_table("probes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_probes_commune_code"), ["commune_code"], unique=False)

    op.create_table(
        "probe_state",
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("agent_version", sa.String(length=32), nullable=True),
        sa.Column("last_seen_at", sa.Float(), nullable=True),
        sa.Column("last_sent_at", sa.Float(), nullable=True),
        sa.Column("last_measured_at", sa.Float(), nullable=True),
        sa.Column("clock_skew_seconds", sa.Float(), nullable=True),
        sa.Column("stored_through_seq", sa.BigInteger(), nullable=False),
        sa.Column("max_seq", sa.BigInteger(), nullable=False),
        sa.Column("results_total", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name=op.f("fk_probe_state_probe_id_probes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("probe_id", name=op.f("pk_probe_state")),
    )
    op.create_table(
        "probe_uplinks",
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name=op.f("fk_probe_uplinks_probe_id_probes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("probe_id", "name", name=op.f("pk_probe_uplinks")),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("probe_id", sa.String(length=64), nullable=True),
        sa.Column("provinces", sa.String(length=200), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["probe_id"], ["probes.id"], name=op.f("fk_tokens_probe_id_probes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("probe_uplinks")
    op.drop_table("probe_state")
    with op.batch_alter_table("probes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probes_commune_code"))

    op.drop_table("probes")
    with op.batch_alter_table("communes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_communes_province_code"))

    op.drop_table("communes")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_probe_id_measured_at")

    op.drop_table("results")
    op.drop_table("provinces")
    op.drop_table("latest_results")
