"""``lomsong db prune``: what it would drop, what it dropped, in a table that fits 80 columns."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lomsong.cli import main
from lomsong.storage.partitions import day_of
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
