"""Migration 0011 (check profiles) on both engines: a probe's state is kept whole, its new
config columns start empty, and the way back drops them without touching the rest."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from lomsong.storage.database import _alembic_config, migrate, open_engine
from lomsong.storage.places import load_places


def test_0011_keeps_probe_state_and_goes_back(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine, "0010")
        load_places(engine)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO probes (id, commune_code, created_at) "
                    "VALUES ('cb-m', '01273', 1.0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO probe_state (probe_id, boot_id, stored_through_seq, max_seq, "
                    "results_total, running_checks, running_checks_at) "
                    "VALUES ('cb-m', 'b1', 41, 42, 42, '[]', 7.5)"
                )
            )
        migrate(engine)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM probe_state")).mappings().one()
            assert (row["boot_id"], row["stored_through_seq"], row["max_seq"]) == ("b1", 41, 42)
            assert (row["running_checks"], row["running_checks_at"]) == ("[]", 7.5)
            config = ("config_version", "config_refused_version", "config_error")
            assert [row[c] for c in (*config, "config_reported_at")] == [None] * 4
            assert conn.execute(text("SELECT count(*) FROM check_profiles")).scalar() == 0
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0010")
        columns = {c["name"] for c in inspect(engine).get_columns("probe_state")}
        assert "config_version" not in columns and "running_checks" in columns
        assert "check_profiles" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT max_seq FROM probe_state")).scalar() == 42
    finally:
        engine.dispose()
