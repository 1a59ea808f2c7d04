"""Times: ISO 8601 in UTC on the wire and the API, parsed strictly; Vietnam's zone for people."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import overload
from zoneinfo import ZoneInfo

from lomsong.errors import ValidationError

#: The zone of every time a person reads or writes: alerts, pages, maintenance windows, files.
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: None) -> None: ...
@overload
def iso(ts: float | None) -> str | None: ...
def iso(ts: float | None) -> str | None:
    """Epoch seconds → ``2026-11-23T03:14:30.123Z`` (milliseconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Epoch seconds of 0001-01-01 and 9999-12-31: what a datetime can hold, and so what is asked.
_FIRST, _LAST = -62_135_596_800.0, 253_402_300_799.0


def parse_time(field: str, value: str) -> float:
    """An ISO 8601 time with a zone (or epoch seconds) → epoch seconds."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not (math.isfinite(seconds) and _FIRST <= seconds <= _LAST):
            raise ValidationError(field, value, "epoch seconds out of range")
        return seconds
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            field, value, "expected an ISO 8601 time such as 2026-11-23T03:14:30Z"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationError(field, value, "the time needs a zone, e.g. Z or +07:00")
    return parsed.timestamp()
