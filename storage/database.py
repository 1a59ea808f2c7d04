"""Opening the database: engine, SQLite pragmas, migrations, the readiness check, and telling
the database being unavailable (away, locked, full) from every other error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    SQLAlchemyError,
)
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lomsong.errors import ConfigError, MigrationError, StorageError, StorageUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")

#: How long a SQLite connection waits for another's write lock before SQLITE_BUSY.
DEFAULT_BUSY_TIMEOUT_SECONDS: Final = 30.0


def open_engine(
    url: str,
    *,
    synchronous: str = "FULL",
    pool_size: int = 8,
    busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
) -> Engine:
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
        _sqlite_pragmas(engine, synchronous, round(busy_timeout_seconds * 1000))
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


def _sqlite_pragmas(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # A new, empty file is made in incremental auto-vacuum mode, so that the pages pruning
        # frees can be given back (``retention``). An existing file is left as it is (the
        # pragma would write to it, and switching needs a VACUUM); its freed pages are still
        # reused from SQLite's free list.
        cursor.execute("PRAGMA page_count")
        if cursor.fetchone()[0] == 0:
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
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
        raise unavailable(exc) or StorageError(
            f"database unreachable: {type(exc).__name__}"
        ) from exc
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise MigrationError(
            f"database schema is at revision {current!r}, this code expects {head!r}; "
            f"run `lomsong db upgrade`"
        )


_HEARTBEAT_UPSERT = text(
    "INSERT INTO collector_heartbeat (id, written_at) VALUES (1, :at) "
    "ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at"
)


def check_writable(engine: Engine, *, now: float) -> None:
    """Raise ``StorageUnavailable`` unless a write would be stored now.

    It commits an upsert of the one row of ``collector_heartbeat``: a rolled-back write proves
    little on SQLite, which keeps it in its page cache and never touches the disk, so a full
    disk passes it. Even a committed row may fit in WAL space the file already holds, while a
    batch needs more, so on SQLite the database's filesystem must also have room for one WAL's
    worth (``wal_autocheckpoint`` pages), what the next checkpoint may add to the file. On
    PostgreSQL the commit proves the server takes writes (not down, not a read-only standby);
    its disk is the server's to watch.
    """
    room = None
    try:
        with write_transaction(engine) as conn:
            conn.execute(_HEARTBEAT_UPSERT, {"at": now})
            if engine.dialect.name == "sqlite":
                page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
                pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
                room = int(page_size) * max(int(pages), 1)
    except SQLAlchemyError as exc:
        raise unavailable(exc) or StorageError(
            f"the probe write failed: {type(exc).__name__}"
        ) from exc
    if room is not None:
        database = engine.url.database or ""
        fs = os.statvfs(Path(database).expanduser().resolve().parent)
        free = fs.f_bavail * fs.f_frsize
        if free < room:
            raise StorageUnavailable(
                "disk_full",
                f"database out of disk space: {free} bytes free on its filesystem, "
                f"less than the {room} a checkpoint may need",
            )


#: The causes of ``StorageUnavailable``, each with what it says in an answer.
UNAVAILABLE_KINDS: Final = {
    "unreachable": "unreachable",
    "locked": "locked by another writer beyond the busy timeout",
    "disk_full": "out of disk space",
    "io_error": "failing to read or write its disk",
    "read_only": "read-only",
    "overloaded": "out of connections or resources",
}

#: SQLite's primary result codes (``sqlite_errorcode & 0xFF``) that mean unavailable.
_SQLITE_KINDS: Final = {
    5: "locked",  # SQLITE_BUSY: another connection's lock outlived busy_timeout
    6: "locked",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY: a file or filesystem that cannot be written
    10: "io_error",  # SQLITE_IOERR: write, fsync, shm (a full disk shows as some of these)
    13: "disk_full",  # SQLITE_FULL
    14: "unreachable",  # SQLITE_CANTOPEN: the file or its folder is gone
}

#: PostgreSQL SQLSTATEs (exact, then their two-character class) that mean unavailable.
_SQLSTATE_KINDS: Final = {
    "53100": "disk_full",  # disk_full: "could not extend file", "could not write"
    "58030": "io_error",
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "25006": "read_only",  # read_only_sql_transaction: a standby after a failover
    "57P01": "unreachable",  # admin_shutdown: the server stops or the backend was terminated
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now: starting up or shutting down
    "08": "unreachable",  # connection_exception
    "53": "overloaded",  # insufficient_resources: memory, too many connections
}


def unavailable(exc: BaseException) -> StorageUnavailable | None:
    """The database being unavailable, if that is what ``exc`` or an error under it says.

    Unavailable means away (connection refused or lost, server shutting down), locked beyond
    the timeout, out of space, failing its disk, read-only, or out of connections: the same
    request may succeed later. Everything else (a wrong statement, a constraint, a missing
    table) is ``None``: a bug stays a bug. Causes and contexts are followed, so an error that
    wraps a driver's error is told by it. The message names the driver's code, never the
    driver's text, which can hold the host or the user.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen or len(seen) > 16:
            continue
        seen.add(id(err))
        found = _classify(err)
        if found is not None:
            return found
        todo.extend(e for e in (err.__cause__, err.__context__) if e is not None)
        orig = getattr(err, "orig", None)
        if isinstance(orig, BaseException):
            todo.insert(0, orig)
    return None


def _classify(err: BaseException) -> StorageUnavailable | None:
    if isinstance(err, StorageUnavailable):
        return err
    if isinstance(err, PoolTimeoutError):
        return _unavailable("overloaded", "every pooled connection is busy")
    if isinstance(err, DisconnectionError):
        return _unavailable("unreachable", "connection lost")
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        kind = _SQLITE_KINDS.get(code & 0xFF)
        name = getattr(err, "sqlite_errorname", None) or f"SQLite code {code}"
        return _unavailable(kind, str(name)) if kind else None
    sqlstate = getattr(err, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        kind = _SQLSTATE_KINDS.get(sqlstate) or _SQLSTATE_KINDS.get(sqlstate[:2])
        return _unavailable(kind, f"SQLSTATE {sqlstate}") if kind else None
    if isinstance(err, DBAPIError):
        orig = err.orig
        told = getattr(orig, "sqlite_errorcode", None) or getattr(orig, "sqlstate", None)
        if err.connection_invalidated:
            return _unavailable("unreachable", "connection lost")
        # No statement and no code from the server: connecting failed (refused, no route,
        # the database refusing connections, a password no longer accepted), or the
        # connection broke under a commit.
        if isinstance(err, SAOperationalError) and err.statement is None and not told:
            return _unavailable("unreachable", "connection failed")
    return None


def _unavailable(kind: str, code: str) -> StorageUnavailable:
    return StorageUnavailable(kind, f"database {UNAVAILABLE_KINDS[kind]} ({code})")
