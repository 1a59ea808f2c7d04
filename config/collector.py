"""Settings of the collector service (``lomsong serve``); see ``config/collector.toml``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    SettingsConfigDict,
)

from lomsong.config.loading import FileSettings, load_settings
from lomsong.errors import ConfigError

#: Secrets that ship in examples and must never guard a real collector.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "admin", "secret", "password"})
MIN_SECRET_LENGTH = 16


class IngestLimits(BaseModel):
    """Limits on ``POST /api/v1/reports``; each has a clear 4xx answer when exceeded."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: Annotated[int, Field(ge=1024, le=256 * 2**20)] = 2 * 2**20
    max_decompressed_bytes: Annotated[int, Field(ge=1024, le=1024 * 2**20)] = 32 * 2**20
    max_results_per_batch: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    #: Requests per second each probe may make on average, and the burst it may make at once.
    rate_per_probe: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    rate_burst: Annotated[int, Field(ge=1, le=100_000)] = 60
    #: A result measured more than this after its batch's ``sent_at`` is refused.
    max_future_seconds: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    #: A result measured more than this before its batch's ``sent_at`` is refused: the agent's
    #: spool drops results at this age (``spool_max_age_seconds``), so an older one is a
    #: broken clock, not a backlog.
    max_past_seconds: Annotated[float, Field(ge=3_600, le=366 * 86_400)] = 30 * 86_400.0
    #: A batch whose ``sent_at`` is this far from the collector's clock is refused.
    max_clock_skew_seconds: Annotated[float, Field(ge=60, le=30 * 86_400)] = 7 * 86_400.0


class DetectorSettings(BaseModel):
    """Thresholds of the outage detector (DESIGN §7)."""

    model_config = ConfigDict(extra="forbid")

    #: How often the detector runs.
    tick_seconds: Annotated[float, Field(gt=0, le=300)] = 1.0
    #: A probe is silent after this many report intervals without a batch.
    grace_intervals: Annotated[float, Field(ge=1, le=100)] = 3.0
    #: Failed runs of every check of an uplink that open an uplink outage (N).
    down_after_failures: Annotated[int, Field(ge=1, le=100)] = 3
    #: Successful runs in a row of one check that close it (M).
    up_after_successes: Annotated[int, Field(ge=1, le=100)] = 2
    degraded_loss_ratio: Annotated[float, Field(gt=0, le=1)] = 0.2
    degraded_latency_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    degraded_window_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    degraded_min_samples: Annotated[int, Field(ge=1, le=10_000)] = 5
    #: A returning probe's backfill is awaited this long before it is classified as it stands.
    backfill_timeout_seconds: Annotated[float, Field(gt=0, le=86_400)] = 900.0

    def silent_after(self, report_interval_seconds: float) -> float:
        """Seconds without a batch after which a probe is silent: the one threshold that the
        detector, ``/metrics``, the status page, the read API and the maps all use."""
        return self.grace_intervals * report_interval_seconds


class MapSettings(BaseModel):
    """The base map under the maps (``/maps/…`` and ``lomsong map``)."""

    model_config = ConfigDict(extra="forbid")

    #: XYZ tile URL template with {z}, {x} and {y}; a provincial tile server, or OpenStreetMap.
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    #: Attribution shown in the map's corner (HTML allowed); required by most tile servers.
    tile_attribution: str = (
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
    )
    tile_max_zoom: Annotated[int, Field(ge=1, le=24)] = 19

    @field_validator("tile_url")
    @classmethod
    def _xyz_template(cls, value: str) -> str:
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in value]
        if missing:
            raise ValueError(f"a tile URL template needs {', '.join(missing)}")
        if not value.startswith(("http://", "https://", "/")):
            raise ValueError("a tile URL starts with http://, https:// or /")
        return value


class RetentionSettings(BaseModel):
    """How long results are kept: raw rows for weeks, 5-minute rollups for a year or so; the
    hourly and daily rollups are kept for ever (they are small)."""

    model_config = ConfigDict(extra="forbid")

    #: Days of raw results kept (whole Asia/Ho_Chi_Minh days); older days are pruned, after
    #: being archived when ``archive.path`` is set.
    raw_days: Annotated[int, Field(ge=1, le=3_660)] = 35
    #: Days of 5-minute rollups kept.
    rollup_5m_days: Annotated[int, Field(ge=1, le=36_600)] = 400
    #: How often the detector's leader prunes what expired.
    prune_every_seconds: Annotated[float, Field(ge=60, le=7 * 86_400)] = 3_600.0


class ArchiveSettings(BaseModel):
    """The open archive: raw results written as Parquet before they expire (``lomsong archive``)."""

    model_config = ConfigDict(extra="forbid")

    #: A folder; ``results/date=YYYY-MM-DD/province=NN/*.parquet`` is laid out under it. None:
    #: no archive, and expired results are dropped without one.
    path: Path | None = None


class RollupSettings(BaseModel):
    """The rollups kept as results arrive (``storage/rollups.py``)."""

    model_config = ConfigDict(extra="forbid")

    #: Fold every stored result into the 5-minute rollups in the same transaction (and the
    #: hourly and daily ones derived from them). Off only to measure what they cost; turned on
    #: again, ``rebuild`` them.
    enabled: bool = True
    #: How often the detector's leader derives the hourly and daily rollups of the hours whose
    #: 5-minute rollups changed: how far those rows may trail the 5-minute ones.
    derive_every_seconds: Annotated[float, Field(ge=1, le=3_600)] = 60.0


class CollectorSettings(FileSettings):
    """Everything the collector reads at start; unknown keys are refused."""

    model_config = SettingsConfigDict(
        env_prefix="LOMSONG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: SQLAlchemy URL. The embedded default is a SQLite file in the working directory;
    #: ``postgresql+psycopg://user@host/db`` selects PostgreSQL.
    database_url: str = "sqlite:///lomsong.db"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8080
    #: Bearer secret with the admin role. Placeholders are refused outside development.
    admin_token: SecretStr = SecretStr("change-me")
    #: Development mode: allows a placeholder admin secret.
    dev: bool = False
    #: Public base URL, used for links in alerts and pages.
    public_url: str = "http://127.0.0.1:8080"
    #: ``FULL`` makes every acknowledged batch survive a power cut; ``NORMAL`` only a crash.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: How long a SQLite write waits for another connection's lock; past it the request is
    #: answered 503 (the database is locked) with Retry-After.
    sqlite_busy_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: How often the in-memory live state is reloaded from the database (several replicas).
    live_state_refresh_seconds: Annotated[float, Field(gt=0, le=3_600)] = 15.0
    #: How often the leader recomputes today's availability (``availability_daily``) and every
    #: replica reloads the availability gauges of ``/metrics``.
    availability_refresh_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    #: Expected report interval of the probes; silence is judged in multiples of it.
    report_interval_seconds: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    #: Seconds a token lookup is cached; a revoked token stops working after at most this.
    token_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 2.0
    #: Alert routes and receivers (``config/alerts.toml``); without it outages are recorded
    #: and served but nobody is notified.
    alerts_file: Path | None = None
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``text`` for people, ``json`` for journald and Loki: one object per line.
    log_format: Literal["text", "json"] = "text"
    ingest: IngestLimits = IngestLimits()
    detector: DetectorSettings = DetectorSettings()
    maps: MapSettings = MapSettings()
    retention: RetentionSettings = RetentionSettings()
    archive: ArchiveSettings = ArchiveSettings()
    rollups: RollupSettings = RollupSettings()

    def check_secrets(self) -> None:
        """Refuse a placeholder or short admin secret unless running in development mode."""
        secret = self.admin_token.get_secret_value()
        if self.dev:
            return
        if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"setting admin_token (LOMSONG_ADMIN_TOKEN): placeholder or short secret "
                f"{secret!r} is refused outside --dev; use a random string of at least "
                f"{MIN_SECRET_LENGTH} characters"
            )

    def check_rollup_retention(self) -> None:
        """Refuse 5-minute rollups kept for less time than results may arrive late: the
        hourly and daily rollups are rebuilt from the 5-minute ones of their hour, so a late
        result must find them still kept."""
        days = self.retention.rollup_5m_days
        need = math.ceil(self.ingest.max_past_seconds / 86_400) + 1
        if days < need:
            raise ConfigError(
                f"setting retention.rollup_5m_days (LOMSONG_RETENTION__ROLLUP_5M_DAYS): {days} "
                f"days is too short for ingest.max_past_seconds "
                f"{self.ingest.max_past_seconds:.0f} s; the hourly rollups are rebuilt from "
                f"the 5-minute ones of their hour, so at least {need} days are needed"
            )

    @property
    def silent_after_seconds(self) -> float:
        """A probe is silent after this long without a batch (``detector.grace_intervals``)."""
        return self.detector.silent_after(self.report_interval_seconds)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_collector_settings(
    path: Path | str | None = None, *, check_secrets: bool = True, **overrides: Any
) -> CollectorSettings:
    """Load and validate the collector's settings; raise ``ConfigError`` on any problem."""
    settings = load_settings(CollectorSettings, path, **overrides)
    settings.check_rollup_retention()
    if check_secrets:
        settings.check_secrets()
    return settings
