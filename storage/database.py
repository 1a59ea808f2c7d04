"""Opening the database: engine, SQLite pragmas, migrations and the readiness check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from lomsong.errors import ConfigError, MigrationError, StorageError

MIGRATIONS = Path(__file__).with_name("migrations")


def open_engine(url: str, *, synchronous: str = "FULL", pool_size: int = 8) -> Engine:
    """Create an engine for ``url``; SQLite files get WAL mode, foreign keys and a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"setting database_url (LOMSONG_DATABASE_URL): {exc} (got {url!r})"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise ConfigError(
                f"setting database_url (LOMSONG_DATABASE_URL): an in-memory SQLite database "
                f"cannot be shared by the collector's threads (got {url!r}); name a file"
            )
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(
                f"setting database_url (LOMSONG_DATABASE_URL): folder {str(parent)!r} "
                f"does not exist (got {url!r})"
            )
        engine = create_engine(
            parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
        )
        _sqlite_pragmas(engine, synchronous)
        enable_immediate_transactions(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
    raise ConfigError(
        f"setting database_url (LOMSONG_DATABASE_URL): backend {backend!r} is not supported; "
        f"expected one of {{'sqlite', 'postgresql'}} (got {url!r})"
    )


def enable_immediate_transactions(engine: Engine) -> None:
    """Let SQLite connections opt into ``BEGIN IMMEDIATE`` (execution option ``sqlite_immediate``).

    pysqlite starts transactions lazily at the first write, so a writer that first reads could
    meet another process's write and fail at once with SQLITE_BUSY instead of waiting; taking
    the write lock at BEGIN makes it wait for busy_timeout like any other lock.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, "_lomsong_immediate", False):
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    engine._lomsong_immediate = True  # type: ignore[attr-defined]


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: on SQLite it takes the write lock at BEGIN, so that a read
    followed by a write waits for another writer instead of failing with SQLITE_BUSY."""
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        yield conn


def _sqlite_pragmas(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _alembic_config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    """The newest migration this code knows."""
    script = ScriptDirectory.from_config(_alembic_config(None))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or ``None`` for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default)."""
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"migrating {engine.url.render_as_string()}: {exc}") from exc


def check_ready(engine: Engine) -> None:
    """Raise unless the database answers and its schema is at this code's head revision."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StorageError(f"database unreachable: {type(exc).__name__}") from exc
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise MigrationError(
            f"database schema is at revision {current!r}, this code expects {head!r}; "
            f"run `lomsong db upgrade`"
        )
