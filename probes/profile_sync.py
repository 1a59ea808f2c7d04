"""The agent's side of check profiles: fetch, validate, apply live, keep the last good one.

On each upload cycle (at most every ``upload.interval_seconds``) the uploader lets
:meth:`ProfileSync.poll` ask ``GET /api/v1/probes/{id}/config`` with ``If-None-Match`` naming
the version it runs and the one it refused, so that nothing comes back (304) until something
changes. A new configuration is validated with the model of a local file's ``[[checks]]``
(``CheckSettings``) and against what is the box's own (its uplinks, files it names); then:

- **applied** without a restart (``probes/schedule.py``), written to ``profile.json`` next to
  the spool (atomically), so that an agent restarted while the collector is out of reach runs
  it again; or
- **refused**: the agent keeps running what it ran, and says which version it refused and why.

Either way the heartbeat carries ``config_version`` (``"local"`` while the local file's checks
run), ``config_refused_version`` and ``config_error``. It says so only to a collector that
serves profiles (one that answered the config route as such, or one whose profile is cached),
as an older collector would refuse a heartbeat with fields it does not know.

A collector that serves no profile for this probe (404) puts the local file's checks back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError as PydanticValidationError

from lomsong.config.probe import CheckSettings, HttpCheck, ProbeSettings, check_references
from lomsong.config.profiles import (
    LOCAL_VERSION,
    EffectiveConfig,
    checks_adapter,
    short,
    version_of,
)
from lomsong.errors import ConfigError
from lomsong.probes.agent import plan_jobs
from lomsong.probes.schedule import Change, Schedule
from lomsong.wire import describe_validation_error

log = logging.getLogger(__name__)

CACHE_NAME = "profile.json"
#: the start of the collector's 404 when it serves profiles but none applies to this probe
NO_PROFILE = "probe_id: no profile applies"


class Refused(Exception):
    """A configuration this box cannot apply; the message names the field and the value."""


def validate_for_box(settings: ProbeSettings, doc: object) -> tuple[str, list[CheckSettings]]:
    """The version and checks of a served configuration, if this box can run them."""
    try:
        config = EffectiveConfig.model_validate(doc)
    except PydanticValidationError as exc:
        raise Refused(describe_validation_error(exc, limit=1)) from None
    if config.probe_id != settings.probe_id:
        raise Refused(f"probe_id: {config.probe_id!r} is not this probe ({settings.probe_id!r})")
    if version_of(config.checks) != config.version:
        raise Refused(f"version: {config.version[:12]}… is not the hash of its checks")
    try:
        checks: list[CheckSettings] = checks_adapter().validate_python(config.checks)
    except PydanticValidationError as exc:
        text = describe_validation_error(exc, limit=1)
        raise Refused(f"checks{text}" if text.startswith("[") else text) from None
    try:
        check_references(settings.model_copy(update={"checks": checks}), "profile")
    except ConfigError as exc:
        raise Refused(str(exc).removeprefix("profile: setting ")) from None
    for i, check in enumerate(checks):
        if isinstance(check, HttpCheck) and check.ca_file is not None:
            if not check.ca_file.is_file():
                raise Refused(f"checks[{i}].ca_file: no such file on this box ({check.ca_file})")
    return config.version, checks


def cached_checks(settings: ProbeSettings) -> tuple[str, list[CheckSettings]] | None:
    """The cached profile's version and checks, if the source is the collector and this box
    can run them (``probe once`` tries what the agent would run)."""
    if settings.checks_source != "collector":
        return None
    try:
        doc = orjson.loads((settings.spool_path.parent / CACHE_NAME).read_bytes())
        return validate_for_box(settings, doc)
    except (OSError, orjson.JSONDecodeError, Refused):
        return None


class ProfileSync:
    """Keeps the agent's checks those of the collector's profile, or of its own file."""

    def __init__(
        self,
        settings: ProbeSettings,
        schedule: Schedule,
        *,
        on_applied: Callable[[str, Change], None] | None = None,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.schedule = schedule
        self.cache_path = settings.spool_path.parent / CACHE_NAME
        self._on_applied = on_applied
        self._on_refused = on_refused
        #: the version running: a profile's, or LOCAL_VERSION
        self.version = LOCAL_VERSION
        self.refused: str | None = None
        self.error: str | None = None
        #: the collector serves profiles (so it knows the heartbeat's config fields)
        self.aware = False
        self.polls = 0

    def start(self) -> Change:
        """Schedule the cached profile if there is a good one (and the source is the
        collector), else the local file's checks."""
        if self.settings.checks_source == "collector":
            cached = self._read_cache()
            if cached is not None:
                try:
                    version, checks = validate_for_box(self.settings, cached)
                except Refused as exc:
                    log.warning("cached profile %s not used: %s", self.cache_path, exc)
                else:
                    self.aware = True
                    return self._apply(version, checks, announce=False)
        return self._apply(LOCAL_VERSION, list(self.settings.checks), announce=False)

    def status(self) -> tuple[str | None, str | None, str | None] | None:
        """What the heartbeat says: nothing to a collector that serves no profiles."""
        if not self.aware:
            return None
        return self.version, self.refused, self.error

    async def poll(self, client: httpx.AsyncClient) -> None:
        """Ask for the probe's configuration once; apply it, refuse it or fall back."""
        if self.settings.checks_source != "collector":
            return
        self.polls += 1
        tags = [f'"{v}"' for v in (self.version, self.refused) if v and v != LOCAL_VERSION]
        headers = {"If-None-Match": ", ".join(tags)} if tags else {}
        try:
            response = await client.get(
                f"/api/v1/probes/{self.settings.probe_id}/config", headers=headers
            )
        except httpx.HTTPError as exc:
            log.debug("config not fetched: %s", type(exc).__name__)
            return
        status = response.status_code
        no_profile = status == 404 and _detail(response).startswith(NO_PROFILE)
        if status in (200, 304) or no_profile:
            if not self.aware:
                self.aware = True
                self._tell()  # the heartbeat may say it from now on: at once
                self.schedule.beat_now()
        if status == 200:
            self._offered(response.content)
        elif no_profile:
            if self.version != LOCAL_VERSION:
                log.info("the collector serves no profile now: back to the local checks")
                with contextlib.suppress(FileNotFoundError):
                    self.cache_path.unlink()
                self.refused = self.error = None
                self._apply(LOCAL_VERSION, list(self.settings.checks))
        elif status != 304:
            log.debug("config not fetched: HTTP %d: %s", status, _detail(response))

    def _offered(self, body: bytes) -> None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self._refuse("unknown", f"body: malformed JSON ({exc})")
            return
        try:
            version, checks = validate_for_box(self.settings, doc)
        except Refused as exc:
            offered = doc.get("version") if isinstance(doc, dict) else None
            self._refuse(offered if isinstance(offered, str) else "unknown", str(exc))
            return
        if version == self.version:
            return
        self._write_cache(body)
        self.refused = self.error = None
        self._apply(version, checks)

    def _refuse(self, version: str, why: str) -> None:
        version = version if re.fullmatch(r"[0-9a-f]{64}", version) else "unknown"
        if version == self.refused and why[:512] == self.error:
            return
        self.refused, self.error = version, why[:512]
        self._tell()
        self.schedule.beat_now()
        if self._on_refused is not None:
            self._on_refused(version, why)

    def _apply(self, version: str, checks: list[Any], *, announce: bool = True) -> Change:
        settings = self.settings.model_copy(update={"checks": checks})
        change = self.schedule.apply(plan_jobs(settings))
        self.version = version
        self._tell()
        if announce:
            self.schedule.beat_now()
            if self._on_applied is not None:
                self._on_applied(version, change)
        return change

    def _tell(self) -> None:
        self.schedule.runner.config_status = self.status()

    def _read_cache(self) -> object | None:
        try:
            doc: object = orjson.loads(self.cache_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("cached profile %s unreadable: %s", self.cache_path, exc)
            return None
        return doc

    def _write_cache(self, body: bytes) -> None:
        """Atomically: a crash leaves the old file or the new one, never half of one."""
        tmp = self.cache_path.with_name(f".{CACHE_NAME}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.cache_path)
            _fsync_dir(self.cache_path.parent)
        except OSError as exc:
            log.warning("profile not cached in %s: %s", self.cache_path, exc)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _detail(response: httpx.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get("detail", "")) if isinstance(doc, dict) else ""


def describe(version: str) -> str:
    """``v3f2a9c1b7e0d`` for logs; ``local`` for the local file's checks."""
    return version if version == LOCAL_VERSION else f"v{short(version)}"
