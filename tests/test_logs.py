"""The shared logging set-up: JSON lines with the structured fields, libraries held quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lomsong.config.probe import load_probe_settings
from lomsong.errors import ConfigError
from lomsong.logs import CHATTY_LOGGERS, duration_text, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def test_json_lines_carry_time_level_logger_message_and_fields(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = logging.getLogger("lomsong.test")
    log.info("uplink %s down", "viettel-4g", extra={"probe": "cb-1", "uplink": "viettel-4g"})
    log.debug("not at INFO")
    logging.getLogger("apscheduler.executors.default").info("Running job …")
    logging.getLogger("httpx").info("HTTP Request: POST …")
    try:
        raise ValueError("xã Thục Phán")
    except ValueError:
        log.exception("failed", extra={"probe": "cb-2"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["uplink viettel-4g down", "failed"]
    first, second = lines
    assert first["level"] == "INFO" and first["logger"] == "lomsong.test"
    assert first["probe"] == "cb-1" and first["uplink"] == "viettel-4g"
    assert first["time"].endswith("+00:00") and first["time"][10] == "T"
    assert "ValueError: xã Thục Phán" in second["exception"] and second["level"] == "ERROR"


def test_debug_lets_the_libraries_speak(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("debug", "text", stream=out)
    logging.getLogger("apscheduler.executors.default").info("Running job x")
    assert "INFO apscheduler.executors.default: Running job x" in out.getvalue()
    with pytest.raises(ValueError, match="log format 'xml'"):
        setup_logging("INFO", "xml")


def test_a_bad_log_format_names_the_setting(tmp_path: Path) -> None:
    """What ``--log-format xml`` becomes: the one-line ``ConfigError`` the CLI prints."""
    config = tmp_path / "probe.toml"
    config.write_text('probe_id = "cb-1"\ncollector_url = "http://127.0.0.1:9"\n')
    with pytest.raises(ConfigError) as caught:
        load_probe_settings(config, log_format="xml")
    message = str(caught.value)
    assert "log_format (LOMSONG_PROBE_LOG_FORMAT)" in message and "'xml'" in message, message
    assert "\n" not in message


def test_durations_read_as_people_say_them() -> None:
    assert [duration_text(s) for s in (0.4, 59, 75, 3_700)] == [
        "0 s",
        "59 s",
        "1 min 15 s",
        "1 h 1 min",
    ]
