"""Loading settings from a TOML file and ``LOMSONG_*`` environment variables.

Environment variables win over the file, the file wins over the defaults. Every problem becomes a
one-line :class:`~lomsong.errors.ConfigError` that names the setting, the value and what is
allowed; unknown keys in the file are refused rather than ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lomsong.errors import ConfigError
from lomsong.wire import format_location

S = TypeVar("S", bound=BaseSettings)


class FileSettings(BaseSettings):
    """Settings read from init arguments, then the environment, then a TOML file, in that order
    of precedence (the file is the one :func:`load_settings` names)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(cls: type[S], path: Path | str | None = None, **overrides: Any) -> S:
    """Build ``cls`` from ``path`` (TOML), the environment and ``overrides`` (highest first)."""
    target: type[S] = cls
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
        config = SettingsConfigDict(**{**cls.model_config, "toml_file": path})
        target = type(cls.__name__, (cls,), {"model_config": config})
        source = str(path)
    try:
        return target(**overrides)
    except PydanticValidationError as exc:
        raise ConfigError(describe_config_error(exc, cls, source)) from exc


def describe_config_error(
    exc: PydanticValidationError, cls: type[BaseSettings], source: str
) -> str:
    """One line naming the first bad setting, its environment variable, value and problem."""
    err = exc.errors(include_url=False)[0]
    name = format_location(err["loc"])
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    env_name = prefix + delimiter.join(str(p) for p in err["loc"]).upper()
    more = len(exc.errors()) - 1
    tail = f" (and {more} more)" if more else ""
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown setting {name!r}{tail}"
    return f"{source}: setting {name} ({env_name}): {err['msg']} (got {err.get('input')!r}){tail}"
