"""SIGKILL at each step of writing an archive file: the rows stay in the database, the archive
holds no file or a complete one, and the next run leaves the day archived whole."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lomsong.storage.archive import archive_day, inspect_file, recorded_files
from tests.storage.archive_rows import db_rows, duckdb_rows, register, seed

DAY = date(2026, 11, 3)

#: the archiver, killed by its own hook at one step of one province's file
KILLED_ARCHIVER = """
import os, signal, sys
from datetime import date
from pathlib import Path
from lomsong.storage import archive
from lomsong.storage.database import open_engine

url, root, at_step, at_province = sys.argv[1:5]

def kill(step, province):
    if (step, province) == (at_step, at_province):
        os.kill(os.getpid(), signal.SIGKILL)

archive.step_hook = kill
archive.archive_day(open_engine(url), date(2026, 11, 3), Path(root))
sys.exit(3)  # not killed: the step was never reached
"""


@pytest.mark.parametrize(
    ("step", "province"),
    [
        ("temp_written", "01"),
        ("temp_synced", "04"),
        ("renamed", "01"),
        ("dir_synced", "04"),
        ("recorded", "04"),
    ],
)
def test_sigkill_at_each_step_leaves_no_gap(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, step: str, province: str
) -> None:
    register(sqlite_engine)
    seed(sqlite_engine, DAY, per_probe=30)
    before = db_rows(sqlite_engine, DAY)
    root = tmp_path / "archive"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_ARCHIVER, sqlite_url, str(root), step, province],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # the rows are all still there, and every file a reader can see is complete
    assert db_rows(sqlite_engine, DAY) == before
    finals = sorted(root.rglob("*.parquet"))
    assert all(inspect_file(p) is not None for p in finals)
    temps = list(root.rglob(".*.tmp"))
    assert bool(temps) == (step in ("temp_written", "temp_synced"))
    recorded = recorded_files(sqlite_engine, DAY)
    for r in recorded.values():  # a record only ever names a file in place
        assert inspect_file(root / r["path"]) == r["rows"]
    assert (province in recorded) == (step == "recorded")

    again = archive_day(sqlite_engine, DAY, root)
    assert not list(root.rglob(".*.tmp"))
    assert duckdb_rows(root) == before
    actions = {f.province: f.action for f in again.files}
    if step in ("renamed", "dir_synced"):
        assert actions[province] == "recorded"  # checked against the database, not rewritten
    assert {r["rows"] for r in recorded_files(sqlite_engine, DAY).values()} == {30, 60}
