"""The detector's leader prunes on a schedule; a standby replica leaves it to the leader."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lomsong.collector.pipeline import PRUNE_FIRST_AFTER_SECONDS, ReportPipeline
from lomsong.errors import ConfigError
from lomsong.storage.database import open_engine
from tests.conftest import make_settings, ready_engine
from tests.storage.test_retention import NOW, PER_DAY, PROBES, digest, fill


def pipeline(url: str, engine: Engine, **overrides: object) -> ReportPipeline:
    return ReportPipeline(make_settings(url, **overrides), engine, clock=lambda: NOW)


def test_only_the_leader_prunes(pg_url: str) -> None:
    one, two = ready_engine(pg_url), open_engine(pg_url)
    try:
        fill(one, 6)
        leader = pipeline(pg_url, one, retention={"raw_days": 2})
        standby = pipeline(pg_url, two, retention={"raw_days": 2})
        assert leader.feed.tick().leader and not standby.feed.tick().leader
        before = digest(one)
        assert asyncio.run(standby.prune()) is None
        assert digest(one) == before
        report = asyncio.run(leader.prune())
        assert report is not None and len(report.days) == 3
        assert digest(one)[0] == 3 * PER_DAY * len(PROBES)
        leader.feed.stand_down()
        standby.feed.stand_down()
    finally:
        one.dispose()
        two.dispose()


def test_sqlite_always_leads_and_prunes(sqlite_url: str) -> None:
    engine = ready_engine(sqlite_url)
    try:
        fill(engine, 4)
        job = pipeline(sqlite_url, engine, retention={"raw_days": 1})
        job.feed.prepare()
        report = asyncio.run(job.prune())
        assert report is not None and report.rows == 2 * PER_DAY * len(PROBES)
    finally:
        engine.dispose()


def test_an_archive_path_gets_the_archive_writer_or_refuses_to_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = ready_engine(sqlite_url)
    try:
        if importlib.util.find_spec("lomsong.storage.archive") is None:
            with pytest.raises(ConfigError, match=r"archive\.path .*nothing is pruned"):
                pipeline(sqlite_url, engine, archive={"path": tmp_path})
        else:  # built with the archive: pruning hands every day to it first
            assert pipeline(sqlite_url, engine, archive={"path": tmp_path})._archiver
        assert pipeline(sqlite_url, engine)._archiver is None
    finally:
        engine.dispose()


def test_the_leaders_jobs_run_on_their_settings_intervals(sqlite_url: str) -> None:
    engine = ready_engine(sqlite_url)
    job = pipeline(
        sqlite_url,
        engine,
        retention={"prune_every_seconds": 120},
        rollups={"derive_every_seconds": 9},
        availability_refresh_seconds=7,
        live_state_refresh_seconds=3,
        detector={"tick_seconds": 2},
    )

    async def scenario() -> dict[str, tuple[float, float]]:
        await job.start()
        try:
            assert job._scheduler is not None
            now = datetime.now(UTC)
            return {
                j.id: (j.trigger.interval.total_seconds(), (j.next_run_time - now).total_seconds())
                for j in job._scheduler.get_jobs()
            }
        finally:
            await job.stop()

    try:
        jobs = asyncio.run(scenario())
    finally:
        engine.dispose()
    every = {name: interval for name, (interval, _) in jobs.items()}
    assert every == {
        "outage-detector": 2,
        "live-state-refresh": 3,
        "availability": 7,
        "rollups": 9,
        "retention": 120,
    }
    # the availability figures at once; the first prune a minute after start, when the leader
    # is known; the others one interval after start
    assert jobs["availability"][1] < 1
    assert PRUNE_FIRST_AFTER_SECONDS - 5 < jobs["retention"][1] <= PRUNE_FIRST_AFTER_SECONDS
    assert 0 < jobs["rollups"][1] <= 9
