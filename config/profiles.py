"""Check profiles: the checks of a fleet, defined once at the collector, in layers.

A layer is a small document (TOML for people, JSON on the API)::

    [defaults]                  # optional: fill these in every check that leaves them out
    interval_seconds = 60.0
    [[checks]]                  # as [[checks]] of probe.toml: the same model validates them
    kind = "http"
    target = "https://dichvucong.gov.vn/"
    [[remove]]                  # checks of the layers above to leave out
    kind = "dns"
    target = "dichvucong.gov.vn"

Layers apply in the order national → province → commune → probe. A check's key is its
``(kind, target)``: a later layer's check replaces the one with its key, its ``remove`` drops
keys, and its ``defaults`` override the earlier layers' defaults key by key; the merged
defaults then fill the fields every check left out. The result, the **effective
configuration**, is a list of checks validated by ``CheckSettings``, the model of the
``[[checks]]`` of a local ``probe.toml``; its **version** is the SHA-256 of its canonical JSON,
which the collector serves as a strong ``ETag`` and the agent reports in its heartbeat.

The agent (``lomsong.probes``) imports this module too: the collector and the agent validate
with the same models, so a layer that passes here can be refused by a box only for what is the
box's own (an uplink it does not have, a file missing on it).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from lomsong.config.probe import CheckSettings, Interval, Timeout
from lomsong.errors import ValidationError
from lomsong.wire import LOCAL_CONFIG_VERSION, CheckKind, describe_validation_error

Scope = Literal["national", "province", "commune", "probe"]
SCOPES: tuple[Scope, ...] = ("national", "province", "commune", "probe")
#: a check's identity across layers
CheckKey = tuple[str, str]
#: what a check's fields left out take from the layers' defaults
DEFAULTED = ("interval_seconds", "jitter_seconds", "timeout_seconds")
#: checks in one layer: far more than a commune box runs
MAX_CHECKS = 128
#: the version an agent reports while it runs the checks of its own ``probe.toml``
LOCAL_VERSION = LOCAL_CONFIG_VERSION


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileDefaults(_Section):
    """Values for the checks of this layer and the layers below that leave them out."""

    interval_seconds: Interval | None = None
    jitter_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] | None = None
    timeout_seconds: Timeout | None = None


class CheckRef(_Section):
    """A check of an earlier layer, by its key."""

    kind: CheckKind
    target: Annotated[str, Field(min_length=1, max_length=512)]


class ProfileLayer(_Section):
    """One layer as people write it; the checks are kept as written (validated apart)."""

    defaults: ProfileDefaults = ProfileDefaults()
    checks: Annotated[list[dict[str, Any]], Field(max_length=MAX_CHECKS)] = []
    remove: Annotated[list[CheckRef], Field(max_length=MAX_CHECKS)] = []


class EffectiveConfig(BaseModel):
    """What ``GET /api/v1/probes/{id}/config`` answers: the checks a probe should run.

    Fields a newer collector adds are ignored (the checks themselves stay strict: a check
    option this agent does not know is one it cannot run).
    """

    model_config = ConfigDict(extra="ignore")

    probe_id: str
    version: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    #: the layers merged, e.g. ``["national", "province:04", "probe:cb-thuc-phan"]``
    layers: list[str]
    #: checks as ``[[checks]]`` of probe.toml takes them, defaults filled in
    checks: list[dict[str, Any]]


@cache
def check_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(CheckSettings)


@cache
def checks_adapter() -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[CheckSettings])


def parse_toml(text: str, source: str = "profile") -> ProfileLayer:
    """A layer from TOML text; ``ValidationError`` naming the field and value."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(source, text[:40], f"not valid TOML: {exc}") from None
    return parse_layer(doc)


def parse_layer(doc: object) -> ProfileLayer:
    """Validate a layer: its shape, and each check alone with its layer's defaults filled in.

    A check is checked as the agent will take it, so a target that is not a URL, a timeout
    longer than the interval or an unknown field is refused here, with the check's index.
    """
    try:
        layer = ProfileLayer.model_validate(doc)
    except PydanticValidationError as exc:
        raise _invalid(exc) from None
    if _holds_nul(layer.model_dump()):
        # no check has a use for one, the wire refuses it in a target, and PostgreSQL's text
        # cannot hold one
        raise ValidationError("profile", None, "text may not hold a NUL character")
    seen: dict[CheckKey, int] = {}
    for i, raw in enumerate(layer.checks):
        key = check_key(validate_check(fill_defaults(raw, layer.defaults), f"checks[{i}]"))
        if key in seen:
            raise ValidationError(
                f"checks[{i}]",
                f"{key[0]} {key[1]}",
                f"the same kind and target as checks[{seen[key]}]; a check's key is (kind, target)",
            )
        seen[key] = i
    return layer


def validate_check(raw: dict[str, Any], where: str) -> Any:
    """One check through ``CheckSettings``; ``ValidationError`` at ``where``."""
    try:
        return check_adapter().validate_python(raw)
    except PydanticValidationError as exc:
        raise _invalid(exc, prefix=where) from None


def check_key(check: Any) -> CheckKey:
    return (str(check.kind), str(check.target))


def fill_defaults(raw: dict[str, Any], defaults: ProfileDefaults) -> dict[str, Any]:
    """``raw`` with the defaults it leaves out (a copy)."""
    out = dict(raw)
    for name in DEFAULTED:
        value = getattr(defaults, name)
        if value is not None and name not in out:
            out[name] = value
    return out


@dataclass(frozen=True)
class Merged:
    """The layers merged: the checks as written (defaults filled) and their version."""

    layers: tuple[str, ...]
    checks: tuple[dict[str, Any], ...]
    version: str


def merge(layers: Sequence[tuple[str, ProfileLayer]]) -> Merged:
    """Merge named layers in order (national first); see the module's docstring for the rule.

    The merged checks are validated together: layers that pass alone may still clash (a
    province's defaults shorter than a national check's timeout); ``ValidationError`` then
    names the check and the layer it came from.
    """
    defaults: dict[str, float] = {}
    checks: dict[CheckKey, tuple[str, dict[str, Any]]] = {}
    for name, layer in layers:
        defaults.update(layer.defaults.model_dump(exclude_none=True))
        for ref in layer.remove:
            checks.pop((ref.kind, ref.target), None)
        for raw in layer.checks:
            # the key as the model gives it (a modem's target defaults from its modem)
            key = check_key(validate_check(fill_defaults(raw, layer.defaults), name))
            checks.pop(key, None)  # a replaced check moves to the end, where its layer put it
            checks[key] = (name, raw)
    merged_defaults = ProfileDefaults.model_validate(defaults)
    out: list[dict[str, Any]] = []
    for origin, raw in checks.values():
        full = fill_defaults(raw, merged_defaults)
        validate_check(full, f"{origin}: checks[{len(out)}]")
        out.append(full)
    return Merged(tuple(n for n, _ in layers), tuple(out), version_of(out))


def version_of(checks: Iterable[dict[str, Any]]) -> str:
    """The SHA-256 of the checks' canonical JSON (keys sorted, no spaces)."""
    return hashlib.sha256(canonical({"checks": list(checks)})).hexdigest()


def canonical(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def short(version: str | None) -> str:
    """A version as logs and tables show it: its first 12 hex digits."""
    if version is None:
        return "none"
    return version if version == LOCAL_VERSION else version[:12]


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _invalid(exc: PydanticValidationError, prefix: str = "") -> ValidationError:
    err = exc.errors(include_url=False)[0]
    text = describe_validation_error(exc, limit=1)
    field, _, problem = text.partition(": ")
    if prefix:
        field = prefix if field == "body" else f"{prefix}.{field}"
    # describe_validation_error already says "(got …)": keep its words, name the field once
    cut = problem.rfind(" (got ")
    message = problem[:cut] if cut >= 0 else problem
    return ValidationError(field, err.get("input"), message)
