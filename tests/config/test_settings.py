"""Collector settings: TOML file, LOMSONG_* variables, one-line errors, no placeholder secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from lomsong.config.collector import load_collector_settings
from lomsong.errors import ConfigError

GOOD_SECRET = "a-real-secret-of-32-characters!!"

# (file contents, the one-line message it must give)
BAD_FILES = [
    ('databse_url = "sqlite:///x.db"\n', "unknown setting 'databse_url'"),
    (
        "port = 0\n",
        "setting port (LOMSONG_PORT): Input should be greater than or equal to 1 (got 0)",
    ),
    (
        'port = "eighty"\n',
        "setting port (LOMSONG_PORT): Input should be a valid integer, unable to parse string as an integer (got 'eighty')",
    ),
    (
        'sqlite_synchronous = "OFF"\n',
        "setting sqlite_synchronous (LOMSONG_SQLITE_SYNCHRONOUS): Input should be 'FULL' or 'NORMAL' (got 'OFF')",
    ),
    (
        "[ingest]\nmax_body_bytes = 10\n",
        "setting ingest.max_body_bytes (LOMSONG_INGEST__MAX_BODY_BYTES): Input should be greater than or equal to 1024 (got 10)",
    ),
    (
        "[ingest]\nrate_per_probe = -1\n",
        "setting ingest.rate_per_probe (LOMSONG_INGEST__RATE_PER_PROBE): Input should be greater than 0 (got -1)",
    ),
    ("[ingest]\nburst = 3\n", "unknown setting 'ingest.burst'"),
    ("port = [\n", "not valid TOML"),
    (
        '[maps]\ntile_url = "https://tiles.example/{z}/{x}.png"\n',
        "setting maps.tile_url (LOMSONG_MAPS__TILE_URL): Value error, a tile URL template needs {y} (got 'https://tiles.example/{z}/{x}.png')",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_files_give_one_line_naming_setting_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_collector_settings(path, check_secrets=False)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_the_example_file_is_valid_and_documents_every_setting() -> None:
    example = Path(__file__).parents[2] / "config" / "collector.toml"
    settings = load_collector_settings(example, check_secrets=False)
    assert settings.database_url == "sqlite:///lomsong.db"
    text = example.read_text()
    from lomsong.config.collector import CollectorSettings, IngestLimits

    for name in CollectorSettings.model_fields:
        assert f"\n{name} =" in text or f"[{name}]" in text or f"# {name} =" in text, name
    for name in IngestLimits.model_fields:
        assert f"\n{name} =" in text, name
    from lomsong.config.collector import DetectorSettings

    for name in DetectorSettings.model_fields:
        assert f"\n{name} =" in text, name
    from lomsong.config.collector import MapSettings

    for name in MapSettings.model_fields:
        assert f"\n{name} =" in text, name


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'database_url = "sqlite:///from-file.db"\nport = 9000\n[ingest]\nrate_burst = 7\n'
    )
    monkeypatch.setenv("LOMSONG_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("LOMSONG_INGEST__RATE_BURST", "9")
    s = load_collector_settings(path, check_secrets=False)
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.port == 9000
    assert s.ingest.rate_burst == 9


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOMSONG_PORT", "70000")
    with pytest.raises(ConfigError, match=r"setting port \(LOMSONG_PORT\).*70000"):
        load_collector_settings(check_secrets=False)


def test_five_minute_rollups_must_outlive_the_latest_results_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOMSONG_RETENTION__ROLLUP_5M_DAYS", "7")
    with pytest.raises(
        ConfigError,
        match=r"rollup_5m_days \(LOMSONG_RETENTION__ROLLUP_5M_DAYS\): 7 days .*at least 31 days",
    ):
        load_collector_settings(check_secrets=False)
    monkeypatch.setenv("LOMSONG_INGEST__MAX_PAST_SECONDS", str(5 * 86_400))
    assert load_collector_settings(check_secrets=False).retention.rollup_5m_days == 7


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_collector_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("secret", ["change-me", "admin", "short-secret"])
def test_placeholder_secrets_are_refused_outside_dev(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("LOMSONG_ADMIN_TOKEN", secret)
    with pytest.raises(
        ConfigError, match=r"admin_token \(LOMSONG_ADMIN_TOKEN\).*refused outside --dev"
    ):
        load_collector_settings()
    assert load_collector_settings(dev=True).dev


def test_a_real_secret_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOMSONG_ADMIN_TOKEN", GOOD_SECRET)
    assert load_collector_settings().admin_token.get_secret_value() == GOOD_SECRET


def test_the_readme_reference_lists_every_setting_with_its_variable_and_default() -> None:
    from pydantic import BaseModel

    from lomsong.config.collector import (
        CollectorSettings,
        DetectorSettings,
        IngestLimits,
        MapSettings,
        RetentionSettings,
    )

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, info in CollectorSettings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            continue  # a table of settings: its rows are checked below and in test_docs
        assert f"| `{name}` | `LOMSONG_{name.upper()}` |" in readme, name
    for name in IngestLimits.model_fields:
        assert f"| `ingest.{name}` | `LOMSONG_INGEST__{name.upper()}` |" in readme, name
    for name in MapSettings.model_fields:
        assert f"| `maps.{name}` | `LOMSONG_MAPS__{name.upper()}` |" in readme, name
    for table, model in (
        ("ingest", IngestLimits),
        ("detector", DetectorSettings),
        ("retention", RetentionSettings),
    ):
        defaults = model()
        for name in model.model_fields:
            value = getattr(defaults, name)
            shown = (
                (str(int(value)) if value.is_integer() else f"{value:g}")
                if isinstance(value, float)
                else str(value)
            )
            var = f"LOMSONG_{table.upper()}__{name.upper()}"
            assert f"| `{table}.{name}` | `{var}` | `{shown}` |" in readme, (table, name, shown)
