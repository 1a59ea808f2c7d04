"""Migration 0012 (``token_rotations``) on SQLite and PostgreSQL: up from 0010 with probes and
tokens in place, down again without touching them, and up once more to the schema."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.collector.token_rotation import request_rotation
from lomsong.storage.database import _alembic_config, current_revision, migrate, open_engine
from lomsong.storage.places import load_places
from lomsong.storage.schema import metadata, tokens


def test_0012_up_down_up_keeps_the_tokens(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine, "0010")
        load_places(engine)
        register_probe(engine, "mig-a", "01273", [Uplink("fibre", "fibre")])
        with engine.begin() as conn:
            conn.execute(
                tokens.insert().values(
                    token_hash="h" * 64,
                    prefix="lst_x",
                    role="probe",
                    probe_id="mig-a",
                    created_at=1.0,
                )
            )
        assert "token_rotations" not in inspect(engine).get_table_names()
        migrate(engine, "0012")
        assert current_revision(engine) == "0012"
        create_token(engine, role="probe", probe_id="mig-a")
        assert request_rotation(engine, "mig-a").state == "requested"
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0010")
        assert "token_rotations" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert len(conn.execute(select(tokens.c.id)).all()) == 2
        migrate(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
