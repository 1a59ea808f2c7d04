"""Alert routing configuration (``config/alerts.toml``): receivers, routes, grouping, maintenance.

Durations are written as ``"30s"``, ``"5m"``, ``"4h"``; times of maintenance windows are local
time in Asia/Ho_Chi_Minh. Every problem is a one-line :class:`~lomsong.errors.ConfigError` that
names the setting and the value.
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from lomsong.errors import ConfigError
from lomsong.timefmt import LOCAL_TZ
from lomsong.wire import format_location

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """``"90s"``, ``"5m"``, ``"1h30m"`` or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '30s', '5m' or '4h'")
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        raise ValueError("expected a duration such as '30s', '5m' or '4h'")
    return sum(float(n) * _UNITS[u] for n, u in parts)


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Condition = Literal["probe_silent", "uplink_down", "degraded", "regional"]
Severity = Literal["critical", "warning", "info"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookConfig(_Model):
    type: Literal["webhook"]
    name: str
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout: Duration = 10.0


class EmailConfig(_Model):
    type: Literal["email"]
    name: str
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    sender: str
    to: Annotated[list[str], Field(min_length=1)]
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    #: CA bundle that signs the server's certificate, when it is not a public one
    ca_file: Path | None = None
    timeout: Duration = 10.0


class AlertmanagerConfig(_Model):
    type: Literal["alertmanager"]
    name: str
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout: Duration = 10.0
    #: while firing, alerts are re-sent and expire this long after the last send
    resend_ttl: Duration = 900.0


ReceiverConfig = Annotated[
    WebhookConfig | EmailConfig | AlertmanagerConfig, Field(discriminator="type")
]


class Match(_Model):
    """What a route or a maintenance window applies to; an empty list matches everything."""

    province: list[str] = []
    commune: list[str] = []
    operator: list[str] = []
    condition: list[Condition] = []
    severity: list[Severity] = []

    def matches(self, labels: dict[str, str]) -> bool:
        for key in ("province", "commune", "operator", "condition", "severity"):
            allowed: list[str] = getattr(self, key)
            if allowed and labels.get(key) not in allowed:
                return False
        return True


class RouteConfig(_Model):
    name: str
    receiver: str
    match: Match = Match()
    language: Literal["vi", "en"] = "vi"
    group_by: list[str] = ["province", "condition"]
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0
    send_resolved: bool = True
    #: keep matching later routes after this one
    continue_: Annotated[bool, Field(alias="continue")] = False


class RegionalConfig(_Model):
    """At least ``min_communes`` communes of one province losing one operator within ``window``
    become one regional alert, which inhibits their per-commune alerts."""

    enabled: bool = True
    min_communes: Annotated[int, Field(ge=2)] = 3
    window: Duration = 600.0


class MaintenanceConfig(_Model):
    """A window that mutes notifications (outages are still recorded), in local time."""

    name: str
    match: Match = Match()
    #: one-off: local date-times "2026-11-25T22:00"
    start: datetime | None = None
    end: datetime | None = None
    #: recurring: ISO weekdays 1 (Monday) … 7 (Sunday) and local times "22:00"
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = []
    from_time: time | None = None
    to_time: time | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceConfig:
        one_off = self.start is not None or self.end is not None
        recurring = bool(self.weekdays) or self.from_time is not None or self.to_time is not None
        if one_off == recurring:
            raise ValueError("give either start and end, or weekdays, from_time and to_time")
        if one_off and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a one-off window needs start before end")
        if recurring and (not self.weekdays or self.from_time is None or self.to_time is None):
            raise ValueError("a recurring window needs weekdays, from_time and to_time")
        return self

    def active(self, at: float) -> bool:
        """Whether the window covers the instant ``at`` (epoch seconds)."""
        local = datetime.fromtimestamp(at, LOCAL_TZ)
        if self.start is not None and self.end is not None:
            start = self.start if self.start.tzinfo else self.start.replace(tzinfo=LOCAL_TZ)
            end = self.end if self.end.tzinfo else self.end.replace(tzinfo=LOCAL_TZ)
            return start <= local < end
        assert self.from_time is not None and self.to_time is not None
        now_t = local.time().replace(tzinfo=None)
        if self.from_time <= self.to_time:
            return local.isoweekday() in self.weekdays and self.from_time <= now_t < self.to_time
        # Over midnight: the window belongs to the weekday it starts on.
        if now_t >= self.from_time:
            return local.isoweekday() in self.weekdays
        yesterday = (local - timedelta(days=1)).isoweekday()
        return now_t < self.to_time and yesterday in self.weekdays


class AlertsConfig(_Model):
    """The whole ``alerts.toml``."""

    #: base URL of the collector, for links to maps in messages
    external_url: str = "http://127.0.0.1:8080"
    receivers: list[ReceiverConfig] = []
    routes: list[RouteConfig] = []
    regional: RegionalConfig = RegionalConfig()
    maintenance: list[MaintenanceConfig] = []
    #: delivery retries per notification, with exponential backoff from retry_base
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 6
    retry_base: Duration = 2.0

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> AlertsConfig:
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique, got {names}")
        for i, route in enumerate(self.routes):
            if route.receiver not in names:
                raise ValueError(
                    f"routes[{i}].receiver: {route.receiver!r} is not a receiver; known: {names}"
                )
        return self


def load_alerts_config(path: Path | str) -> AlertsConfig:
    """Read and validate an ``alerts.toml``; raise a one-line ``ConfigError`` on any problem."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"alerts config {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return AlertsConfig.model_validate(data)
    except PydanticValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = format_location(err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{path}: unknown setting {where!r}") from exc
        raise ConfigError(
            f"{path}: setting {where}: {err['msg']} (got {err.get('input')!r})"
        ) from exc
