"""``lomsong db …``, and how every command that needs the collector's database opens it.

Only typer and the kernel are imported here; SQLAlchemy, Alembic and the settings are imported
inside the functions, so the ``lomsong`` command starts where only the probe agent is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from lomsong.errors import ConfigError, MigrationError, StorageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import Engine

    from lomsong.storage.archive import ArchivedDay
    from lomsong.storage.archive_verify import ArchiveCheck
    from lomsong.storage.retention import ExpiredDay

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Collector settings (TOML); LOMSONG_* variables win over it."
    ),
]

db_app = typer.Typer(help="The collector's database.", no_args_is_help=True)
archive_app = typer.Typer(
    help="The open archive: raw results as Parquet under archive.path.", no_args_is_help=True
)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; expected YYYY-MM-DD") from None


PathOpt = Annotated[
    Path | None,
    typer.Option("--path", help="The archive folder; archive.path of the settings by default."),
]


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


@contextmanager
def database(config: Path | None, *, upgrade: bool) -> Iterator[Engine]:
    """``open_database`` for the length of a ``with`` block, its connections closed after."""
    engine = open_database(config, upgrade=upgrade)
    try:
        yield engine
    finally:
        engine.dispose()


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


def _archive_root(config: Path | None, path: Path | None) -> Path:
    from lomsong.config.collector import load_collector_settings

    if path is None:
        path = load_collector_settings(config, check_secrets=False).archive.path
    if path is None:
        raise ConfigError(
            "setting archive.path (LOMSONG_ARCHIVE__PATH) is not set; name the archive folder "
            "there or with --path"
        )
    return path


@archive_app.command("day")
def archive_day_command(
    day: Annotated[
        str,
        typer.Option(
            "--date", help="The day (Asia/Ho_Chi_Minh) of measured_at, YYYY-MM-DD.", callback=_day
        ),
    ],
    config: ConfigOpt = None,
    path: PathOpt = None,
) -> None:
    """Write one day of results to the archive (what the leader does before pruning it)."""
    from lomsong.storage.archive import archive_day

    root = _archive_root(config, path)
    engine = open_database(config, upgrade=False)
    try:
        done = archive_day(engine, cast(date, day), root)  # the callback made it a date
    finally:
        engine.dispose()
    _print_day(done)


def _print_day(done: ArchivedDay) -> None:
    from lomsong.tables import Column, console, table

    columns = [Column("province"), Column("rows", numeric=True), Column("bytes", numeric=True)]
    columns.append(Column("done"))
    rows = [[f.province, f"{f.rows:,}", f"{f.bytes:,}", f.action] for f in done.files]
    footer = ["total", f"{done.rows:,}", f"{sum(f.bytes for f in done.files):,}", ""]
    title = f"results/date={done.day.isoformat()}/ (local day)"
    console().print(table(columns, rows, title=title, footer=footer if rows else None))
    if not rows:
        typer.echo(f"no results measured on {done.day.isoformat()} (Asia/Ho_Chi_Minh)")


@archive_app.command("verify")
def archive_verify_command(
    day: Annotated[
        str | None,
        typer.Option("--date", help="Only this day (Asia/Ho_Chi_Minh), YYYY-MM-DD.", callback=_day),
    ] = None,
    checksums: Annotated[
        bool, typer.Option("--sha256", help="Also read every file and compare its sha256.")
    ] = False,
    config: ConfigOpt = None,
    path: PathOpt = None,
) -> None:
    """Compare each day's files with their records and the database's rows; exit 1 if any differ."""
    from lomsong.storage.archive_verify import describe, verify_archive

    root = _archive_root(config, path)
    engine = open_database(config, upgrade=False)
    try:
        days = [cast(date, day)] if day is not None else None  # the callback made it one
        checks = verify_archive(engine, root, days, checksums=checksums)
    finally:
        engine.dispose()
    _print_checks(checks)
    wrong = [c for c in checks if c.problem is not None]
    if wrong:
        more = f" (and {len(wrong) - 1} more above)" if len(wrong) > 1 else ""
        raise StorageError(
            f"archive verify: {len(wrong)} of {len(checks)} disagree; {describe(wrong[0])}{more}"
        )


def _print_checks(checks: list[ArchiveCheck]) -> None:
    from lomsong.tables import Column, console, table

    def count(n: int | None) -> str:
        return "–" if n is None else f"{n:,}"

    columns = [
        Column("day"),
        Column("province"),
        Column("file", numeric=True),
        Column("recorded", numeric=True),
        Column("pruned", numeric=True),
        Column("database", numeric=True),
        Column("state", wrap=True, min_width=16),
    ]
    rows = [
        [
            c.day.isoformat(),
            c.province,
            count(c.file_rows),
            count(c.recorded_rows),
            count(c.pruned_rows),
            count(c.database_rows),
            c.problem or "ok",
        ]
        for c in checks
    ]
    if not rows:
        typer.echo("the archive is empty")
        return
    console().print(table(columns, rows))


@db_app.command("prune")
def db_prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would go, and change nothing.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Remove the raw results older than retention.raw_days, whole days at a time (archived
    first when archive.path is set), and the 5-minute rollups older than rollup_5m_days."""
    import time

    from lomsong.config.collector import load_collector_settings
    from lomsong.errors import StorageError
    from lomsong.storage.retention import archiver_for, plan_prune, prune
    from lomsong.tables import console

    settings = load_collector_settings(config, check_secrets=False)
    engine = open_database(config, upgrade=False)
    keep = settings.retention
    now = time.time()
    out = console()
    try:
        if dry_run:
            plan = plan_prune(
                engine, now=now, raw_days=keep.raw_days, rollup_5m_days=keep.rollup_5m_days
            )
            if plan.days:
                out.print("raw results that would be pruned (dry run):")
                out.print(prune_table(plan.days, engine.dialect.name, done=False))
            else:
                out.print(f"raw results: none from before {plan.keep_from} (dry run)")
            out.print(rollup_line(plan.rollup_rows, plan.rollup_cutoff, done=False))
            out.print(f"kept: every result from {plan.keep_from} on (raw_days={keep.raw_days})")
            return
        with _progress(out) as advance:
            report = prune(
                engine,
                now=now,
                raw_days=keep.raw_days,
                rollup_5m_days=keep.rollup_5m_days,
                archiver=archiver_for(settings, engine),
                on_progress=advance,
            )
    finally:
        engine.dispose()
    if report.days:
        out.print("raw results pruned:")
        out.print(prune_table(report.days, engine.dialect.name, done=True))
    else:
        out.print(f"raw results: none from before {report.plan.keep_from}")
    earlier = [d for d in report.dropped if d.day not in {e.day for e in report.days}]
    if earlier:
        out.print("detached by an earlier prune, counted and dropped now:")
        out.print(prune_table(earlier, engine.dialect.name, done=True))
    rolled = None if report.plan.rollup_rows is None else report.rollup_rows
    out.print(rollup_line(rolled, 0, done=True))
    out.print(f"kept: every result from {report.plan.keep_from} on (raw_days={keep.raw_days})")
    if report.failed is not None:
        day, why = report.failed
        raise StorageError(
            f"archiving {day} failed ({why}); it and every later day stay in the database"
        )


def prune_table(days: Sequence[ExpiredDay], dialect: str, *, done: bool) -> Table:
    """The days of raw results pruned (or that would be), with their rows and how they go."""
    from lomsong.tables import Column, table

    how = "partition dropped" if dialect == "postgresql" else "rows deleted"
    if not done:
        how = "partition to drop" if dialect == "postgresql" else "rows to delete"
    rows = [[f"{d.day}", f"{d.rows:,}", how] for d in days]
    total = [f"{len(days)} days", f"{sum(d.rows for d in days):,}", ""]
    columns = [Column("day"), Column("results", numeric=True), Column("how", drop=1)]
    return table(columns, rows, footer=total)


def rollup_line(rows: int | None, cutoff: float, *, done: bool) -> str:
    """What went (or would go) of the 5-minute rollups."""
    if rows is None:
        return "5-minute rollups: none kept in this database"
    if done:
        return f"5-minute rollups deleted: {rows:,}"
    from lomsong.storage.partitions import day_of

    return f"5-minute rollups that would be deleted (before {day_of(cutoff)}): {rows:,}"


@contextmanager
def _progress(out: Console) -> Iterator[Callable[[int], None]]:
    """A bar of rows removed, on a terminal only (a pipe or a log gets the table alone)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    if not out.is_terminal:
        yield lambda _n: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("pruning: {task.completed:,} results"), console=out
    ) as bar:
        task = bar.add_task("prune", total=None)
        yield lambda n: bar.advance(task, n)


def add_commands(root: typer.Typer) -> None:
    """Mount ``lomsong db`` and ``lomsong archive``."""
    root.add_typer(db_app, name="db")
    root.add_typer(archive_app, name="archive")
