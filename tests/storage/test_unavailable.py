"""``unavailable``: the database away, locked, full or read-only, told from bugs by real errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg.errors
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from lomsong.errors import StorageError, StorageUnavailable
from lomsong.storage.database import check_writable, open_engine, unavailable
from tests.conftest import free_port, ready_engine


def error_of(engine: Engine, sql: str, *, begin: bool = False) -> SQLAlchemyError:
    with pytest.raises(SQLAlchemyError) as info:
        if begin:
            with engine.begin() as conn:
                conn.execute(text(sql))
        else:
            with engine.connect() as conn:
                conn.execute(text(sql))
    return info.value


def kind_of(exc: BaseException) -> str | None:
    found = unavailable(exc)
    if found is not None:
        assert "\n" not in str(found)
    return None if found is None else found.kind


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    eng = ready_engine(pg_url)
    yield eng
    eng.dispose()


def test_sqlite_locked_beyond_the_busy_timeout_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    engine = open_engine(f"sqlite:///{path}", busy_timeout_seconds=0.2)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("CREATE TABLE t (x INTEGER)")
        locker.execute("BEGIN EXCLUSIVE")
        exc = error_of(engine, "INSERT INTO t VALUES (1)", begin=True)
        found = unavailable(exc)
        assert found is not None and found.kind == "locked"
        assert str(found).endswith("(SQLITE_BUSY)")
    finally:
        locker.close()
        engine.dispose()


def test_sqlite_bugs_are_not_unavailable(sqlite_engine: Engine) -> None:
    assert kind_of(error_of(sqlite_engine, "SELECT * FROM no_such_table")) is None
    assert kind_of(error_of(sqlite_engine, "SELEC 1")) is None
    dup = "INSERT INTO provinces SELECT * FROM provinces LIMIT 1"
    assert kind_of(error_of(sqlite_engine, dup, begin=True)) is None


def test_sqlite_folder_gone_is_unreachable(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    engine = open_engine(f"sqlite:///{folder / 'l.db'}")
    folder.rmdir()
    try:
        assert kind_of(error_of(engine, "SELECT 1")) == "unreachable"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_refused_is_unreachable_and_says_no_host(pg_url: str) -> None:
    url = make_url(pg_url).set(port=free_port(), password="s3cret-pw")
    engine = open_engine(url.render_as_string(hide_password=False))
    try:
        found = unavailable(error_of(engine, "SELECT 1"))
        assert found is not None and found.kind == "unreachable"
        assert str(found) == "database unreachable (connection failed)"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_errors_by_sqlstate(pg_engine: Engine) -> None:
    # bugs
    assert kind_of(error_of(pg_engine, "SELECT * FROM no_such_table")) is None
    dup = "INSERT INTO provinces SELECT * FROM provinces LIMIT 1"
    assert kind_of(error_of(pg_engine, dup, begin=True)) is None
    # a read-only transaction: what a standby answers after a failover
    with pytest.raises(SQLAlchemyError) as info, pg_engine.begin() as conn:
        conn.execute(text("SET TRANSACTION READ ONLY"))
        conn.execute(text("DELETE FROM provinces"))
    assert kind_of(info.value) == "read_only"
    # a lock held beyond lock_timeout
    with pg_engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE provinces IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(SQLAlchemyError) as info, pg_engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '200ms'"))
            conn.execute(text("SELECT count(*) FROM provinces"))
    assert kind_of(info.value) == "locked"
    # the backend terminated under a connection
    with pg_engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with pg_engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(SQLAlchemyError) as info:
            conn.execute(text("SELECT 1"))
    assert kind_of(info.value) == "unreachable"


def test_postgres_disk_full_and_what_wraps_it() -> None:
    # A full disk cannot be made on a shared server; the error it raises is psycopg's.
    full = psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device')
    assert kind_of(full) == "disk_full"
    assert str(unavailable(full)) == "database out of disk space (SQLSTATE 53100)"
    assert kind_of(psycopg.errors.TooManyConnections("too many")) == "overloaded"
    assert kind_of(psycopg.errors.UndefinedTable("no")) is None
    # told through what wraps it, as the store and the coverage raise it
    try:
        try:
            raise full
        except psycopg.Error as exc:
            raise StorageError("storing failed") from exc
    except StorageError as wrapped:
        assert kind_of(wrapped) == "disk_full"
    own = StorageUnavailable("locked", "database locked")
    assert unavailable(own) is own
    assert kind_of(StorageError("a bug")) is None
    assert kind_of(ValueError("nothing to do with it")) is None


def test_check_writable_commits_the_heartbeat(sqlite_engine: Engine) -> None:
    check_writable(sqlite_engine, now=123.0)
    check_writable(sqlite_engine, now=456.0)
    with sqlite_engine.connect() as conn:
        rows = conn.execute(text("SELECT id, written_at FROM collector_heartbeat")).all()
    assert [tuple(r) for r in rows] == [(1, 456.0)]
