"""The agent's half of token rotation (``probes/uploader.py``), against a real collector on
loopback: the new token is written to the token file before it is used, an agent that could not
write it keeps its old token and is offered the same new one again, and one whose token is
inline refuses rotation."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from lomsong.collector.token_rotation import list_rotations, request_rotation
from lomsong.probes import uploader as uploader_module
from lomsong.probes.agent import rotatable_token_file
from lomsong.probes.spool import Spool
from lomsong.probes.uploader import write_token_file
from lomsong.storage.schema import results, tokens
from tests.conftest import RunningCollector
from tests.probes.test_uploader import PROBE, drain, fill, probe_settings


def revoked(c: RunningCollector) -> list[bool]:
    with c.engine.connect() as conn:
        rows = conn.execute(select(tokens.c.revoked_at).order_by(tokens.c.id)).scalars().all()
    return [r is not None for r in rows]


def stored(c: RunningCollector) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(results).where(results.c.probe_id == PROBE)
            ).scalar_one()
        )


def test_write_token_file_replaces_it_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "probe.token"
    path.write_text("lst_old\n")
    write_token_file(path, "lst_new")
    assert path.read_text() == "lst_new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["probe.token"]  # no temporary file left behind


def test_the_agent_writes_then_uses_the_new_token(
    collector: RunningCollector, tmp_path: Path
) -> None:
    old = collector.register(PROBE)
    token_file = tmp_path / "probe.token"
    token_file.write_text(old + "\n")
    settings = probe_settings(tmp_path, collector.url, old)
    spool = Spool(settings.spool_path)
    fill(spool, 5)
    asyncio.run(drain(settings, spool, token_file=token_file))
    request_rotation(collector.engine, PROBE)
    fill(spool, 5)
    up = asyncio.run(drain(settings, spool, token_file=token_file))
    new = token_file.read_text().strip()
    assert new != old and new.startswith("lst_")
    assert up._token == new  # the client sends with it from now on
    assert revoked(collector) == [False, False]  # not used yet: the old one still works
    fill(spool, 5)
    asyncio.run(drain(settings, spool, token=new, token_file=token_file))
    assert revoked(collector) == [True, False]
    assert list_rotations(collector.engine)[0].state == "done"
    assert stored(collector) == 15 and spool.stats().depth == 0  # nothing lost on the way


def test_a_token_it_could_not_write_is_offered_again_after_a_restart(
    collector: RunningCollector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As a crash between receiving the token and renaming its file over the old one: the old
    token stays in the file and keeps working, and the next run gets the same new token."""
    old = collector.register(PROBE)
    token_file = tmp_path / "probe.token"
    token_file.write_text(old + "\n")
    settings = probe_settings(tmp_path, collector.url, old)
    spool = Spool(settings.spool_path)
    request_rotation(collector.engine, PROBE)

    def full_disk(path: Path, token: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploader_module, "write_token_file", full_disk)
    fill(spool, 5)
    with caplog.at_level(logging.ERROR, "lomsong.probes.uploader"):
        up = asyncio.run(drain(settings, spool, token_file=token_file))
    assert up._token == old and token_file.read_text().strip() == old
    assert "cannot write the rotated token" in caplog.text
    (pending,) = list_rotations(collector.engine, pending_only=True)
    assert pending.offers >= 1 and revoked(collector) == [False, False]

    monkeypatch.undo()  # "restarted" with a disk that has room again
    fill(spool, 5)
    up = asyncio.run(drain(settings, spool, token_file=token_file))
    new = token_file.read_text().strip()
    assert new != old and up._token == new
    (pending,) = list_rotations(collector.engine, pending_only=True)
    assert pending.offers >= 2  # the same token, offered again
    fill(spool, 1)
    asyncio.run(drain(settings, spool, token=new, token_file=token_file))
    assert revoked(collector) == [True, False]
    assert stored(collector) == 11 and spool.stats().depth == 0


def test_an_inline_token_is_not_rotated(
    collector: RunningCollector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = collector.register(PROBE)
    settings = probe_settings(tmp_path, collector.url, old, token_file=tmp_path / "unused")
    assert rotatable_token_file(settings) is None
    spool = Spool(settings.spool_path)
    request_rotation(collector.engine, PROBE)
    fill(spool, 3)
    with caplog.at_level(logging.ERROR, "lomsong.probes.uploader"):
        up = asyncio.run(drain(settings, spool, token_file=None))
    assert up._token == old and "is not read from a file" in caplog.text
    assert list_rotations(collector.engine)[0].state == "offered"
    assert revoked(collector) == [False, False]


def test_the_token_file_is_rotatable_when_no_inline_token(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"token_file": tmp_path / "t"}
    settings = probe_settings(tmp_path, "http://127.0.0.1:1", "", **kw)
    assert rotatable_token_file(settings) == tmp_path / "t"
