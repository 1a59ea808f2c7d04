"""``lomsong db prune``: what it would drop, what it dropped, in a table that fits 80 columns."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from lomsong.cli import main
from lomsong.storage.partitions import create_partition, day_of, detached_days
from lomsong.storage.retention import prune
from tests.conftest import ready_engine
from tests.storage.test_retention import PER_DAY, PROBES, digest, fill


def prune_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["db", "prune", *argv])
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


def test_dry_run_prints_and_keeps_then_prune_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    engine = ready_engine(url)
    now = time.time()
    fill(engine, 5, now=now)
    monkeypatch.setenv("LOMSONG_DATABASE_URL", url)
    monkeypatch.setenv("LOMSONG_RETENTION__RAW_DAYS", "2")
    monkeypatch.setenv("COLUMNS", "80")
    before = digest(engine)
    oldest = day_of(now - 4 * 86_400)

    code, out, err = prune_cli(["--dry-run"], capsys)
    assert code == 0, err
    assert "would be pruned (dry run)" in out and "rows to delete" in out
    assert f"{oldest}" in out and f"{PER_DAY * len(PROBES):,}" in out
    assert "2 days" in out and f"{2 * PER_DAY * len(PROBES):,}" in out
    assert "5-minute rollups that would be deleted (before " in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert digest(engine) == before

    code, out, err = prune_cli([], capsys)
    assert code == 0, err
    assert "raw results pruned" in out and "rows deleted" in out and "2 days" in out
    assert f"kept: every result from {day_of(now - 2 * 86_400)} on (raw_days=2)" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert digest(engine)[0] == 3 * PER_DAY * len(PROBES)
    code, out, _ = prune_cli(["--dry-run"], capsys)
    assert code == 0 and f"raw results: none from before {day_of(now - 2 * 86_400)}" in out
    engine.dispose()


def test_prune_refuses_a_database_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOMSONG_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    code, _, err = prune_cli([], capsys)
    assert code == 1 and err.count("\n") == 1 and "run `lomsong db upgrade`" in err
    assert not (tmp_path / "none.db").exists()


def test_prune_on_postgres_drops_what_the_leader_detached(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = ready_engine(pg_url)
    now = time.time()
    first = day_of(now) - timedelta(days=4)
    with engine.begin() as conn:
        for d in range(5):
            create_partition(conn, first + timedelta(days=d))
    fill(engine, 5, now=now)
    # the leader's run: the oldest day detached, left for the next run to count and drop
    leader = prune(engine, now=now, raw_days=3, rollup_5m_days=400, defer_drop=True)
    assert leader.pending_drop == [first]
    monkeypatch.setenv("LOMSONG_DATABASE_URL", pg_url)
    monkeypatch.setenv("LOMSONG_RETENTION__RAW_DAYS", "2")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = prune_cli([], capsys)
    assert code == 0, err
    day_rows = f"{PER_DAY * len(PROBES):,}"
    assert "raw results pruned" in out and "partition dropped" in out
    assert f"{first + timedelta(days=1)}  " in out
    assert "detached by an earlier prune, counted and dropped now:" in out
    assert f"{first}" in out.split("detached by an earlier prune")[1]
    assert out.count(day_rows) >= 2
    assert max(len(line) for line in out.splitlines()) <= 80
    with engine.connect() as conn:
        assert detached_days(conn) == {}
    assert digest(engine)[0] == 3 * PER_DAY * len(PROBES)
    engine.dispose()
