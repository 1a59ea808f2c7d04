"""The collector's journal: outages opened and resolved, notifications sent, and a warning at
start when nobody would be notified."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from lomsong.config.alerts import AlertsConfig
from tests.collector.test_outages import FakeClock, alerts_to
from tests.conftest import CollectorFactory, RunningCollector, WebhookSink, free_port
from tests.factories import iso, result
from tests.waiting import wait_until

PROBE = "cb-thuc-phan"
OUTAGES = "lomsong.collector.outages"
LOMSONG = str(Path(sys.executable).with_name("lomsong"))


def _report(c: RunningCollector, token: str, clock: FakeClock, seqs: tuple[int, int]) -> None:
    at = datetime.fromtimestamp(clock.now, UTC)
    doc = {
        "probe_id": PROBE,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": iso(at),
        "results": [result(seqs[0], at=at), result(seqs[1], at=at, kind="heartbeat")],
    }
    with c.client(token) as http:
        r = http.post("/api/v1/reports", content=orjson.dumps(doc))
    assert r.status_code == 200, r.text


def _lines(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == OUTAGES and r.getMessage().startswith(start)]


def test_an_outage_is_logged_when_opened_notified_and_resolved(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    webhook_sink: WebhookSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    c = collector_factory(
        sqlite_url,
        alerts=alerts_to(webhook_sink, "en"),
        clock=clock,
        report_interval_seconds=10.0,
        detector={"tick_seconds": 0.1},
    )
    assert not _lines(caplog, "no alerts_file")
    token = c.register(PROBE)
    _report(c, token, clock, (1, 2))
    clock.advance(60)  # three report intervals and more: silent
    wait_until(lambda: _lines(caplog, "outage opened"), timeout=10, what="the open line")
    (opened,) = _lines(caplog, "outage opened")
    assert opened.levelno == logging.WARNING
    text = opened.getMessage()
    assert PROBE in text and "01273" in text and "probe_silent" in text, text
    assert opened.probe == PROBE and opened.condition == "probe_silent"  # type: ignore[attr-defined]
    wait_until(lambda: _lines(caplog, "notification sent"), timeout=10, what="the sent line")
    sent = _lines(caplog, "notification sent")[0]
    assert "firing" in sent.getMessage() and sent.receiver == "sink"  # type: ignore[attr-defined]

    _report(c, token, clock, (3, 4))  # back, on the same boot, nothing measured in the gap
    wait_until(lambda: _lines(caplog, "outage resolved"), timeout=10, what="the resolved line")
    (resolved,) = _lines(caplog, "outage resolved")
    text = resolved.getMessage()
    assert "probe_silent, cause unknown" in text and "lasted 1 min" in text, text
    assert resolved.outage == opened.outage  # type: ignore[attr-defined]
    assert resolved.duration_seconds == pytest.approx(60)  # type: ignore[attr-defined]


@pytest.mark.parametrize("routes", [None, []], ids=["no alerts_file", "no route"])
def test_the_collector_warns_at_start_when_nobody_would_be_notified(
    collector_factory: CollectorFactory,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
    routes: list[object] | None,
) -> None:
    caplog.set_level(logging.INFO)
    alerts = (
        None
        if routes is None
        else AlertsConfig.model_validate(
            {"receivers": [{"type": "webhook", "name": "x", "url": "http://127.0.0.1:9/h"}]}
        )
    )
    collector_factory(sqlite_url, alerts=alerts)
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == OUTAGES
        and r.levelno == logging.WARNING
        and "nobody is notified" in r.getMessage()
    ]
    assert len(warned) == 1, caplog.text
    assert ("no alerts_file" in warned[0]) == (routes is None), warned


def test_serve_writes_json_lines_from_start_to_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = f"sqlite:///{tmp_path / 'l.db'}"
    log = tmp_path / "serve.log"
    cmd = [LOMSONG, "serve", "--dev", "--port", str(free_port()), "--log-format", "json"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stderr=err, stdout=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: "Application startup complete" in log.read_text(),
            timeout=60,
            what="the collector started",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines), lines
    warned = [line for line in lines if "nobody is notified" in line["message"]]
    assert [w["level"] for w in warned] == ["WARNING"], lines
    assert any(line["logger"].startswith("uvicorn") for line in lines), lines
