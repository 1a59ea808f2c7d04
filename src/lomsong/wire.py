"""The wire protocol between probe agents and the collector, version 1 (DESIGN §6).

Both sides import these models: the agent to build a batch, the collector to validate one. The
field names are the contract. Every model rejects unknown fields, so a typo in an agent is a
clear 422 at the collector rather than a silently dropped value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

PROTOCOL_VERSION = 1

CheckKind = Literal["icmp", "tcp", "http", "dns", "modem", "heartbeat"]
CHECK_KINDS: tuple[str, ...] = ("icmp", "tcp", "http", "dns", "modem", "heartbeat")
Rat = Literal["gsm", "umts", "lte", "nr"]

#: probe ids and uplink names are short, lower-case and safe in URLs, file names and labels.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ProbeId = Annotated[str, Field(pattern=NAME_PATTERN)]
UplinkName = Annotated[str, Field(pattern=NAME_PATTERN)]

Seconds = Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)]
MAX_SEQ = 2**63 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Signal(_Strict):
    """Radio readings of a modem's serving cell; ``None`` where the modem does not know."""

    rat: Rat | None = None
    rsrp_dbm: Annotated[float, Field(ge=-160.0, le=-20.0)] | None = None
    rsrq_db: Annotated[float, Field(ge=-45.0, le=20.0)] | None = None
    snr_db: Annotated[float, Field(ge=-30.0, le=50.0)] | None = None
    rssi_dbm: Annotated[float, Field(ge=-130.0, le=0.0)] | None = None
    mcc: Annotated[str, Field(pattern=r"^\d{3}$")] | None = None
    mnc: Annotated[str, Field(pattern=r"^\d{2,3}$")] | None = None
    tac: Annotated[int, Field(ge=0, le=0xFFFFFF)] | None = None
    lac: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    cid: Annotated[int, Field(ge=0, le=2**36)] | None = None


class Result(_Strict):
    """One measurement: one check against one target over one uplink, at one time."""

    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    measured_at: AwareDatetime
    kind: CheckKind
    target: Annotated[str, Field(min_length=1, max_length=512)]
    uplink: UplinkName | None = None
    ok: StrictBool
    duration_seconds: Seconds | None = None
    packets_sent: Annotated[int, Field(ge=0, le=65_535)] | None = None
    packets_received: Annotated[int, Field(ge=0, le=65_535)] | None = None
    rtt_min_seconds: Seconds | None = None
    rtt_max_seconds: Seconds | None = None
    jitter_seconds: Seconds | None = None
    status_code: Annotated[int, Field(ge=100, le=599)] | None = None
    tls_expiry_days: Annotated[float, Field(ge=-36_500, le=36_500, allow_inf_nan=False)] | None = (
        None
    )
    error: Annotated[str, Field(max_length=512)] | None = None
    signal: Signal | None = None
    # heartbeat
    uptime_seconds: Annotated[float, Field(ge=0.0, le=3.2e9, allow_inf_nan=False)] | None = None
    load1: Annotated[float, Field(ge=0.0, le=1e5, allow_inf_nan=False)] | None = None
    disk_free_bytes: Annotated[int, Field(ge=0)] | None = None
    memory_rss_bytes: Annotated[int, Field(ge=0)] | None = None
    spool_depth: Annotated[int, Field(ge=0)] | None = None
    spool_dropped: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _packets_consistent(self) -> Result:
        if (
            self.packets_sent is not None
            and self.packets_received is not None
            and self.packets_received > self.packets_sent
        ):
            raise ValueError(
                f"packets_received ({self.packets_received}) exceeds "
                f"packets_sent ({self.packets_sent})"
            )
        return self


class ReportBatch(_Strict):
    """One probe's batch of results, as sent in ``POST /api/v1/reports``."""

    probe_id: ProbeId
    boot_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
    agent_version: Annotated[str, Field(min_length=1, max_length=32)]
    sent_at: AwareDatetime
    results: Annotated[list[Result], Field(min_length=1)]
    #: The lowest seq the agent still holds. Everything below it was acknowledged before or
    #: dropped from a full spool, so the collector may move its contiguous mark past it.
    spool_floor_seq: Annotated[int, Field(ge=1, le=MAX_SEQ)] | None = None


class ReportAck(BaseModel):
    """The collector's answer to a batch it stored."""

    accepted: int
    duplicates: int
    #: The highest seq up to which every result of this probe is stored (0 before the first).
    stored_through_seq: int


def describe_validation_error(exc: PydanticValidationError, limit: int = 3) -> str:
    """Render a pydantic error as short lines that name the field and the value.

    >>> try:
    ...     Signal.model_validate({"rsrp_dbm": -500})
    ... except PydanticValidationError as e:
    ...     print(describe_validation_error(e))
    rsrp_dbm: Input should be greater than or equal to -160 (got -500)
    """
    parts: list[str] = []
    errors = exc.errors(include_url=False)
    for err in errors[:limit]:
        loc = format_location(err["loc"])
        value = err.get("input")
        message = err["msg"]
        if err["type"] == "missing":
            parts.append(f"{loc}: field required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field")
        else:
            parts.append(f"{loc}: {message} (got {_short(value)})")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def format_location(loc: tuple[int | str, ...]) -> str:
    """``("results", 3, "kind")`` → ``results[3].kind``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
