"""``lomsong archive day`` and ``lomsong archive verify`` through the command's own ``main``
(in process: seven runs of a fresh interpreter would cost the suite seconds each): tables
within 80 columns, one-line errors, exit 1 when the archive and the database disagree."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, update

from lomsong.cli import main
from lomsong.storage.schema import archived_files, results
from tests.storage.archive_rows import register, seed

DAY = date(2026, 11, 3)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``lomsong ARGS`` with a database URL, an archive folder (or none) and 80 columns."""
    for name in [k for k in os.environ if k.startswith("LOMSONG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "80")

    def ran(*args: str, url: str, archive: Path | None) -> Ran:
        monkeypatch.setenv("LOMSONG_DATABASE_URL", url)
        if archive is None:
            monkeypatch.delenv("LOMSONG_ARCHIVE__PATH", raising=False)
        else:
            monkeypatch.setenv("LOMSONG_ARCHIVE__PATH", str(archive))
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out = capsys.readouterr()
        return Ran(int(exited.value.code or 0), out.out, out.err)

    return ran


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def test_archive_a_day_verify_it_and_catch_what_differs(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, run: Any
) -> None:
    register(sqlite_engine)
    seed(sqlite_engine, DAY, per_probe=25)
    root = tmp_path / "lưu trữ"  # a Vietnamese folder name

    done = run("archive", "day", "--date", "2026-11-03", url=sqlite_url, archive=root)
    assert done.returncode == 0, done.stderr
    assert "written" in done.stdout and "unknown" in done.stdout and "100" in done.stdout
    assert widest(done.stdout) <= 80

    ok = run("archive", "verify", "--sha256", url=sqlite_url, archive=root)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(" ok") == 3 and widest(ok.stdout) <= 80

    # pruned: the files and records are what is left, and still agree
    with sqlite_engine.begin() as conn:
        conn.execute(delete(results))
    pruned = run("archive", "verify", url=sqlite_url, archive=root)
    assert pruned.returncode == 0 and pruned.stdout.count(" ok") == 3

    # a record that no longer matches its file: exit 1, one line naming the partition
    with sqlite_engine.begin() as conn:
        conn.execute(
            update(archived_files).where(archived_files.c.province == "04").values(rows=49)
        )
    (root / "results/date=2026-11-03/province=01/part-00000.parquet").unlink()
    bad = run("archive", "verify", url=sqlite_url, archive=root)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(
        "lomsong: error: archive verify: 2 of 3 disagree; "
        "results/date=2026-11-03/province=01: file missing"
    )
    assert "file 50 rows, record 49" in bad.stdout
    assert widest(bad.stdout) <= 80


def test_archive_mistakes_are_one_line(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, run: Any
) -> None:
    no_path = run("archive", "verify", url=sqlite_url, archive=None)
    assert no_path.returncode == 1
    assert no_path.stderr == (
        "lomsong: error: setting archive.path (LOMSONG_ARCHIVE__PATH) is not set; "
        "name the archive folder there or with --path\n"
    )
    bad_date = run("archive", "day", "--date", "3/11/2026", url=sqlite_url, archive=tmp_path)
    assert bad_date.returncode == 2 and bad_date.stderr.count("\n") == 1
    assert "'3/11/2026' is not a date; expected YYYY-MM-DD" in bad_date.stderr
    empty = run("archive", "day", "--date", "2026-11-04", url=sqlite_url, archive=tmp_path)
    assert (
        empty.returncode == 0
        and "no results measured on 2026-11-04 (Asia/Ho_Chi_Minh)" in empty.stdout
    )


def test_db_prune_then_verify_shows_what_was_pruned(
    sqlite_engine: Engine,
    sqlite_url: str,
    tmp_path: Path,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(sqlite_engine)
    seed(sqlite_engine, DAY, per_probe=25)
    root = tmp_path / "archive"
    monkeypatch.setenv("LOMSONG_RETENTION__RAW_DAYS", "1")  # DAY is long past: it expires
    pruned = run("db", "prune", url=sqlite_url, archive=root)
    assert pruned.returncode == 0, pruned.stderr
    ok = run("archive", "verify", "--date", "2026-11-03", url=sqlite_url, archive=root)
    assert ok.returncode == 0, ok.stderr
    lines = [ln.split() for ln in ok.stdout.splitlines() if ln.startswith("2026-11-03")]
    # day, province, file, record, pruned, left, state: what the file holds went, none is left
    assert [(p, f, r, g, left, s) for _d, p, f, r, g, left, s in lines] == [
        ("01", "25", "25", "25", "0", "ok"),
        ("04", "50", "50", "50", "0", "ok"),
        ("unknown", "25", "25", "25", "0", "ok"),
    ]
    assert widest(ok.stdout) <= 80

    # a province's file lost: exit 1, the pruned rows named
    (root / "results/date=2026-11-03/province=04/part-00000.parquet").unlink()
    with sqlite_engine.begin() as conn:
        conn.execute(delete(archived_files).where(archived_files.c.province == "04"))
    bad = run("archive", "verify", "--date", "2026-11-03", url=sqlite_url, archive=root)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr == (
        "lomsong: error: archive verify: 1 of 3 disagree; results/date=2026-11-03/province=04: "
        "50 rows pruned, and no archive file\n"
    )
