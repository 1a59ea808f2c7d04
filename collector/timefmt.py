"""Times on the API: ISO 8601 in UTC, parsed strictly."""

from __future__ import annotations

from datetime import UTC, datetime

from lomsong.errors import ValidationError


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ``2026-11-23T03:14:30.123Z`` (milliseconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(field: str, value: str) -> float:
    """An ISO 8601 time with a zone (or epoch seconds) → epoch seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            field, value, "expected an ISO 8601 time such as 2026-11-23T03:14:30Z"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationError(field, value, "the time needs a zone, e.g. Z or +07:00")
    return parsed.timestamp()
