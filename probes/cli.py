"""The agent's commands: ``lomsong probe run|once|check-config``.

A commune box installs lomsong without the server or geodata stacks, so these commands import
only typer, the kernel, ``lomsong.config.probe`` and ``lomsong.probes``, and those inside each
function: importing this module costs nothing when another command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ProbeConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Probe settings (TOML); LOMSONG_PROBE_* variables win."),
]


LogLevelOpt = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="debug, info, warning or error (setting: log_level).",
        show_default=False,
    ),
]
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="text, or json: one object per line for journald and Loki (setting: log_format).",
        show_default=False,
    ),
]


def probe_run(
    config: ProbeConfigOpt, log_level: LogLevelOpt = None, log_format: LogFormatOpt = None
) -> None:
    """Run the agent: schedule every check over every uplink, spool, upload; stop on SIGTERM."""
    import asyncio

    from lomsong.config.probe import load_probe_settings
    from lomsong.logs import setup_logging
    from lomsong.probes.agent import run_agent

    overrides: dict[str, str] = {}
    if log_level is not None:
        overrides["log_level"] = log_level.upper()
    if log_format is not None:
        overrides["log_format"] = log_format.lower()
    settings = load_probe_settings(config, **overrides)
    settings.bearer_token()  # refuse to start without a token, before opening anything
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(run_agent(settings))


def probe_once(config: ProbeConfigOpt) -> None:
    """Run every check once over every uplink and print a table (exit status 2 if any failed)."""
    import asyncio

    from lomsong.config.probe import load_probe_settings
    from lomsong.probes.agent import once_table, run_once
    from lomsong.tables import console

    settings = load_probe_settings(config)
    measurements = asyncio.run(run_once(settings))
    out = console()
    out.print(once_table(measurements, out.width))
    failed = sum(not m.outcome.ok for m in measurements)
    typer.echo(f"{len(measurements) - failed} of {len(measurements)} checks ok")
    if failed:
        raise typer.Exit(2)


def probe_check_config(
    file: Annotated[Path, typer.Argument(help="The probe's settings file (TOML).")],
) -> None:
    """Validate a probe settings file; a problem is one line naming the setting and the value."""
    from lomsong.config.probe import load_probe_settings
    from lomsong.probes.agent import plan_jobs

    settings = load_probe_settings(file)
    jobs = plan_jobs(settings)
    typer.echo(
        f"{file}: ok: probe {settings.probe_id}, {len(settings.uplinks)} uplinks, "
        f"{len(settings.checks)} checks, {len(jobs)} scheduled jobs"
    )


def add_commands(*, probe: typer.Typer) -> None:
    """Add the agent's half of ``lomsong probe`` (the registry's half comes from the collector)."""
    probe.command("run")(probe_run)
    probe.command("once")(probe_once)
    probe.command("check-config")(probe_check_config)
