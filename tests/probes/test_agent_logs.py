"""What the agent writes to its journal: no line per check at INFO, a line per state change.

A real ``lomsong probe run`` with ``--log-format json`` runs twelve checks a second against a
loopback target; the target goes away and comes back. Every line must parse as JSON, and the
INFO lines must be the few that say something: the start, the uplink down and up again, the
collector (a closed port here) unreachable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lomsong.probes.activity import Activity
from lomsong.probes.agent import Job, Measurement
from lomsong.probes.checks.base import Binding, Outcome
from tests.servers import TcpTarget, closed_port
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
CHECKS = 11  # tcp checks, plus the heartbeat


def _config(tmp: Path, target: int) -> Path:
    checks = "".join(
        f"""
[[checks]]
kind = "tcp"
target = "127.0.0.1:{target}"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 0.5
"""
        for _ in range(CHECKS)
    )
    path = tmp / "probe.toml"
    path.write_text(f"""
probe_id = "cb-log"
collector_url = "http://127.0.0.1:{closed_port()}"
spool_path = "{tmp / "spool.db"}"
boot_id_file = "{tmp / "boot_id"}"

[upload]
interval_seconds = 0.5
backoff_initial_seconds = 0.2
backoff_max_seconds = 0.5

[[uplinks]]
name = "lo"
source_address = "127.0.0.1"
{checks}
[[checks]]
kind = "heartbeat"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0
""")
    (tmp / "boot_id").write_text("33333333-3333-3333-3333-333333333333\n")
    return path


def _lines(log: Path) -> list[dict[str, Any]]:
    text = log.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def _spooled(spool: Path) -> int:
    if not spool.exists():
        return 0
    con = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()


def _said(log: Path, start: str) -> bool:
    return any(line["message"].startswith(start) for line in _lines(log))


def test_the_agent_logs_state_changes_not_checks(tmp_path: Path) -> None:
    target = TcpTarget()
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_PROBE_TOKEN"] = "a-probe-token"
    cmd = [LOMSONG, "probe", "run", "-c", str(_config(tmp_path, target.port))]
    with log.open("w") as out:
        proc = subprocess.Popen([*cmd, "--log-format", "json"], env=env, stderr=out)
    try:
        # three rounds of every check with the target up
        wait_until(
            lambda: _spooled(tmp_path / "spool.db") >= 3 * (CHECKS + 1),
            timeout=30,
            what="three rounds",
        )
        target.close()
        wait_until(lambda: _said(log, "uplink lo down"), timeout=15, what="the down line")
        target.open()
        wait_until(lambda: _said(log, "uplink lo up again"), timeout=15, what="the up line")
        measured = _spooled(tmp_path / "spool.db")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    lines = _lines(log)  # each line is one JSON object
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert line["time"].endswith("+00:00") and "T" in line["time"], line
    info = [line for line in lines if line["level"] == "INFO"]
    loggers = {line["logger"] for line in lines}
    assert not any(name.startswith(("apscheduler", "httpx")) for name in loggers), loggers
    # many measurements, a handful of lines: start, up again, the closing summary
    assert measured >= 4 * (CHECKS + 1)
    assert len(info) <= 4, [line["message"] for line in info]
    assert len(lines) <= 8, [line["message"] for line in lines]
    (down,) = [line for line in lines if line["message"].startswith("uplink lo down")]
    assert down["level"] == "WARNING" and down["uplink"] == "lo" and down["state"] == "down"
    up = next(line for line in info if line["message"].startswith("uplink lo up again"))
    assert up["uplink"] == "lo" and up["down_seconds"] > 0
    assert any(line["message"].startswith("upload failed") for line in lines)
    summary = info[-1]
    assert summary["measured"] >= measured - 1 and summary["uploaded"] == 0, summary
    assert summary["uplinks"]["lo"]["failed"] > 0


def _m(uplink: str | None, kind: str, ok: bool, at: float, **fields: Any) -> Measurement:
    job = Job(f"0:{kind}:{uplink}", kind, "t", None, Binding(uplink))  # type: ignore[arg-type]
    return Measurement(job, at, Outcome(ok=ok, error=None if ok else "timeout", **fields))


def test_the_summary_counts_per_uplink_and_starts_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lomsong.probes.activity")
    a = Activity()
    a.note(_m("viettel-4g", "icmp", True, 1.0))
    a.note(_m("viettel-4g", "icmp", False, 2.0))
    a.note(_m("vnpt-fibre", "tcp", True, 3.0))
    a.note(_m(None, "heartbeat", True, 4.0, spool_dropped=0, spool_depth=3))
    a.note(_m(None, "heartbeat", True, 5.0, spool_dropped=7, spool_depth=3))
    a.summary(uploaded=4, spool_depth=3)
    a.summary(uploaded=0, spool_depth=3)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "uplink viettel-4g down: every check fails (icmp t: timeout)",
        "spool full: 7 results dropped since the last heartbeat, oldest first "
        "(7 dropped in all, 3 waiting)",
        "5 results measured, 4 uploaded, 3 waiting in the spool; "
        "viettel-4g 1 ok/1 failed (down), vnpt-fibre 1 ok/0 failed",
        "0 results measured, 0 uploaded, 3 waiting in the spool; "
        "viettel-4g 0 ok/0 failed (down), vnpt-fibre 0 ok/0 failed",
    ]
