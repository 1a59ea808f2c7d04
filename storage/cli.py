"""``lomsong db …``, and how every command that needs the collector's database opens it.

Only typer and the kernel are imported here; SQLAlchemy, Alembic and the settings are imported
inside the functions, so the ``lomsong`` command starts where only the probe agent is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lomsong.errors import MigrationError

if TYPE_CHECKING:
    from sqlalchemy import Engine

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Collector settings (TOML); LOMSONG_* variables win over it."
    ),
]

db_app = typer.Typer(help="The collector's database.", no_args_is_help=True)


def open_database(config: Path | None, *, upgrade: bool) -> Engine:
    """Open the database named by the collector settings (``config`` and LOMSONG_* variables).

    ``upgrade=True`` is for commands that write: the schema is migrated to this code's head and
    the bundled places are loaded, as ``serve`` does. ``upgrade=False`` is for commands that only
    read: they must not change a database that another version of the collector may still be
    serving, so a schema that is not at head (or absent) is a ``MigrationError`` telling the
    user to run ``lomsong db upgrade``, and a missing or empty SQLite file is left as it is.
    """
    from lomsong.config.collector import load_collector_settings
    from lomsong.storage.database import check_ready, migrate, open_engine
    from lomsong.storage.places import load_places

    settings = load_collector_settings(config, check_secrets=False)
    engine = open_engine(
        settings.database_url,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_seconds=settings.sqlite_busy_timeout_seconds,
    )
    try:
        if upgrade:
            migrate(engine)
            load_places(engine)
        else:
            _refuse_missing_file(engine)
            check_ready(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _refuse_missing_file(engine: Engine) -> None:
    # SQLite makes a database of a missing or empty file on the first connection (the WAL
    # pragma writes its header); a read would leave that behind, where `serve` or `db upgrade`
    # should be the one to make it.
    if engine.dialect.name != "sqlite":
        return
    path = Path(engine.url.database or "").expanduser()
    if not path.exists():
        problem = "does not exist"
    elif path.stat().st_size == 0:
        problem = "is empty"
    else:
        return
    raise MigrationError(f"database file {str(path)!r} {problem}; run `lomsong db upgrade`")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Migrate the database to this version's schema and load the bundled places."""
    from lomsong.storage.database import current_revision
    from lomsong.storage.places import count_places

    engine = open_database(config, upgrade=True)
    try:
        with engine.connect() as conn:
            counts = count_places(conn)
        revision = current_revision(engine)
    finally:
        engine.dispose()
    typer.echo(f"schema at {revision}; {counts.provinces} provinces, {counts.communes} communes")


def add_commands(root: typer.Typer) -> None:
    """Mount ``lomsong db``."""
    root.add_typer(db_app, name="db")
