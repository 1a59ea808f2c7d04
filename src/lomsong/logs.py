"""How the agent and the collector write their logs: text for people, JSON for journald and Loki.

Both ``lomsong serve`` and ``lomsong probe run`` call :func:`setup_logging` once at start. In
``json`` every record is one object on one line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message`` and the structured fields the code passed in ``extra`` (``probe``,
``uplink``, ``outage`` …), so a log system can filter on them without parsing the message.

The libraries underneath speak at INFO for every job and request (APScheduler runs a job and
says so twice; httpx logs each request): three lines per check on a probe, some 290,000 a day.
They are held at WARNING unless the level asked for is DEBUG. Standard library only: the
kernel is imported by the agent alone.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

#: Loggers that say something for every job run or request; WARNING unless debugging.
CHATTY_LOGGERS = ("apscheduler", "httpx", "httpcore", "uvicorn.access")

#: The attributes every ``LogRecord`` has; anything else came in through ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (what ``extra`` added)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def duration_text(seconds: float) -> str:
    """``75`` → ``1 min 15 s``; ``3700`` → ``1 h 1 min``: how long, in a log line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3_600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3_600} h {s % 3_600 // 60} min"


def setup_logging(
    level: str = "INFO", fmt: str = "text", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every record at ``level`` and above to ``stream`` (stderr) in ``fmt``; hold the
    chatty libraries at WARNING unless ``level`` is DEBUG. Returns the handler installed."""
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {set(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {set(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level)
    return handler


def quiet_libraries(level: str) -> None:
    """APScheduler, httpx and the access log at WARNING, unless ``level`` is DEBUG."""
    debug = level.upper() == "DEBUG"
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
