"""The wire protocol between probe agents and the collector, version 1 (DESIGN §6).

Both sides import these models: the agent to build a batch, the collector to validate one. The
field names are the contract. Every model rejects unknown fields, so a typo in an agent is a
clear 422 at the collector rather than a silently dropped value.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal, NotRequired, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

PROTOCOL_VERSION = 1

CheckKind = Literal["icmp", "tcp", "http", "dns", "modem", "heartbeat"]
CHECK_KINDS: tuple[str, ...] = ("icmp", "tcp", "http", "dns", "modem", "heartbeat")
Rat = Literal["gsm", "umts", "lte", "nr"]

#: probe ids and uplink names are short, lower-case and safe in URLs, file names and labels.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ProbeId = Annotated[str, Field(pattern=NAME_PATTERN)]
#: 2025 codes are ASCII digits (``\d`` would take any script's digits, e.g. Tibetan ``༩``)
PROVINCE_CODE = r"^[0-9]{2}$"
COMMUNE_CODE = r"^[0-9]{5}$"
UplinkName = Annotated[str, Field(pattern=NAME_PATTERN)]

#: Text may hold any character but NUL: PostgreSQL's text cannot store it, and no check has a
#: reason to send one. (Lone surrogates never get this far: the JSON parser refuses them.)
NO_NUL = r"^[^\x00]*$"
#: Times on the wire lie in this era; anything outside is a broken clock, not a measurement.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
Moment = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]

Seconds = Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)]
MAX_SEQ = 2**63 - 1
#: byte and item counters are unsigned 64-bit numbers (what JSON numbers carry exactly here)
Counter = Annotated[int, Field(ge=0, le=2**64 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Signal(_Strict):
    """Radio readings of a modem's serving cell; ``None`` where the modem does not know."""

    rat: Rat | None = None
    rsrp_dbm: Annotated[float, Field(ge=-160.0, le=-20.0)] | None = None
    rsrq_db: Annotated[float, Field(ge=-45.0, le=20.0)] | None = None
    snr_db: Annotated[float, Field(ge=-30.0, le=50.0)] | None = None
    rssi_dbm: Annotated[float, Field(ge=-130.0, le=0.0)] | None = None
    #: UMTS only: received signal code power and Ec/Io of the serving cell (3GPP TS 25.133)
    rscp_dbm: Annotated[float, Field(ge=-130.0, le=-20.0)] | None = None
    ecio_db: Annotated[float, Field(ge=-40.0, le=0.0)] | None = None
    mcc: Annotated[str, Field(pattern=r"^[0-9]{3}$")] | None = None
    mnc: Annotated[str, Field(pattern=r"^[0-9]{2,3}$")] | None = None
    tac: Annotated[int, Field(ge=0, le=0xFFFFFF)] | None = None
    lac: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    cid: Annotated[int, Field(ge=0, le=2**36)] | None = None


#: A heartbeat lists at most this many checks: far more than a commune box runs (a few uplinks
#: times a dozen checks), few enough that a hostile list costs the collector nothing.
MAX_RUNNING_CHECKS = 256


class RunningCheck(_Strict):
    """One check the agent runs now: its kind and target over one uplink (none: heartbeat)."""

    uplink: UplinkName | None = None
    kind: CheckKind
    target: Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL)]


#: a configuration's version: the SHA-256 of the collector's profile (64 hex digits), "local"
ConfigVersion = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-z]+$")]
#: the fields only a heartbeat carries, besides ``checks``
#: the ``config_version`` of an agent that runs the checks of its own ``probe.toml``
LOCAL_CONFIG_VERSION = "local"
HEARTBEAT_CONFIG_FIELDS = ("config_version", "config_refused_version", "config_error")


class Result(_Strict):
    """One measurement: one check against one target over one uplink, at one time."""

    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    measured_at: Moment
    kind: CheckKind
    target: Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL)]
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
    error: Annotated[str, Field(max_length=512, pattern=NO_NUL)] | None = None
    signal: Signal | None = None
    # heartbeat
    uptime_seconds: Annotated[float, Field(ge=0.0, le=3.2e9, allow_inf_nan=False)] | None = None
    load1: Annotated[float, Field(ge=0.0, le=1e5, allow_inf_nan=False)] | None = None
    disk_free_bytes: Counter | None = None
    memory_rss_bytes: Counter | None = None
    spool_depth: Counter | None = None
    spool_dropped: Counter | None = None
    #: results the collector refused for good, set aside in the spool and never sent again
    spool_refused: Counter | None = None
    #: Every check the agent runs now (heartbeat only; optional: older agents leave it out).
    #: The collector forgets the newest result of a check no longer listed, so a check removed
    #: from ``probe.toml`` stops showing its last failure.
    checks: Annotated[list[RunningCheck], Field(max_length=MAX_RUNNING_CHECKS)] | None = None
    #: The configuration the agent runs (heartbeat only; optional: older agents leave it out):
    #: the version of the collector's profile it applied, or ``"local"`` for its own file's
    #: checks; the version it refused, and why (it keeps running the one it applied).
    config_version: ConfigVersion | None = None
    config_refused_version: ConfigVersion | None = None
    config_error: Annotated[str, Field(max_length=512, pattern=NO_NUL)] | None = None

    @model_validator(mode="after")
    def _packets_consistent(self) -> Result:
        if not packets_consistent(self.packets_sent, self.packets_received):
            raise ValueError(
                f"packets_received ({self.packets_received}) exceeds "
                f"packets_sent ({self.packets_sent})"
            )
        if not checks_allowed(self.kind, self.checks):
            raise ValueError(
                f"checks: only a heartbeat lists the checks the agent runs (kind is {self.kind!r})"
            )
        for name in HEARTBEAT_CONFIG_FIELDS:
            if getattr(self, name) is not None and self.kind != "heartbeat":
                raise ValueError(
                    f"{name}: only a heartbeat says which configuration the agent runs "
                    f"(kind is {self.kind!r})"
                )
        return self


class ReportBatch(_Strict):
    """One probe's batch of results, as sent in ``POST /api/v1/reports``."""

    probe_id: ProbeId
    boot_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
    agent_version: Annotated[str, Field(min_length=1, max_length=32, pattern=NO_NUL)]
    sent_at: Moment
    results: Annotated[list[Result], Field(min_length=1)]
    #: The lowest seq the agent still holds. Everything below it was acknowledged before or
    #: dropped from a full spool, so the collector may move its contiguous mark past it.
    spool_floor_seq: Annotated[int, Field(ge=1, le=MAX_SEQ)] | None = None


def checks_allowed(kind: str, checks: object) -> bool:
    """Only a heartbeat carries the list of running checks."""
    return checks is None or kind == "heartbeat"


def heartbeat_fields_allowed(result: Mapping[str, Any]) -> bool:
    """Only a heartbeat carries the running checks and the configuration's version."""
    if result["kind"] == "heartbeat":
        return True
    return result.get("checks") is None and all(
        result.get(name) is None for name in HEARTBEAT_CONFIG_FIELDS
    )


def packets_consistent(sent: int | None, received: int | None) -> bool:
    """A result never receives more packets than it sent."""
    return sent is None or received is None or received <= sent


@cache
def batch_dict_adapter() -> TypeAdapter[dict[str, Any]]:
    """Validates a batch's JSON into plain dicts, with every constraint of ``ReportBatch``
    except ``packets_consistent`` and ``heartbeat_fields_allowed`` (the caller checks them):
    30 % less time than building the models, for the collector's ingest. A field left out or
    sent as null is absent or ``None``.
    """
    signal = _typed_dict(Signal, {})
    running = _typed_dict(RunningCheck, {})
    result = _typed_dict(Result, {Signal: signal, RunningCheck: running})
    return TypeAdapter(_typed_dict(ReportBatch, {Result: result}))


def _typed_dict(model: type[BaseModel], swap: Mapping[type, Any]) -> Any:
    """A TypedDict with the fields and constraints of ``model``, its nested models swapped for
    their TypedDicts; the fields that have a default may be left out."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        tp = _swapped(info.annotation, swap)
        if info.metadata:
            tp = Annotated[(tp, *info.metadata)]
        fields[name] = tp if info.is_required() else NotRequired[tp]
    make: Any = TypedDict  # built at run time from the model: opaque to type checkers
    typed = make(f"{model.__name__}Dict", fields)
    typed.__pydantic_config__ = ConfigDict(
        extra=model.model_config.get("extra"),
        allow_inf_nan=model.model_config.get("allow_inf_nan", True),
    )
    return typed


def _swapped(tp: Any, swap: Mapping[type, Any]) -> Any:
    if isinstance(tp, type) and tp in swap:
        return swap[tp]
    origin = get_origin(tp)
    if origin is Annotated:
        return Annotated[(_swapped(get_args(tp)[0], swap), *tp.__metadata__)]
    if origin is Union or origin is types.UnionType:
        return Union[tuple(_swapped(a, swap) for a in get_args(tp))]  # noqa: UP007
    if origin is list:
        return list[_swapped(get_args(tp)[0], swap)]  # type: ignore[misc]
    return tp


class ReportAck(BaseModel):
    """The collector's answer to a batch it stored."""

    accepted: int
    duplicates: int
    #: The highest seq up to which every result of this probe is stored (0 before the first).
    stored_through_seq: int
    #: A new token for this probe while its token is being rotated: the agent writes it to
    #: its token file and sends with it from then on; the old one is revoked once it is used.
    #: Left out of the answer when there is none (older agents ignore it).
    new_token: str | None = None


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
        elif (
            err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NO_NUL
        ):
            parts.append(f"{loc}: text may not hold a NUL character (got {_short(value)})")
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
