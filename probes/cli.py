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
    from lomsong.probes.profile_sync import cached_checks
    from lomsong.tables import console

    settings = load_probe_settings(config)
    cached = cached_checks(settings)
    if cached is not None:  # what the agent runs: the collector's profile, as last fetched
        typer.echo(f"checks of the collector's profile v{cached[0][:12]} (cached)", err=True)
        settings = settings.model_copy(update={"checks": cached[1]})
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
    source = (
        "the collector's profile when it serves one, else these"
        if settings.checks_source == "collector"
        else "this file only"
    )
    typer.echo(
        f"{file}: ok: probe {settings.probe_id}, {len(settings.uplinks)} uplinks, "
        f"{len(settings.checks)} checks, {len(jobs)} scheduled jobs; checks from {source}"
    )


def probe_enrol(
    collector: Annotated[str, typer.Option(help="Base URL of the collector.")],
    key: Annotated[
        str,
        typer.Option(
            help="The provincial enrolment key (`lomsong enrolment create`); "
            "LOMSONG_ENROLMENT_KEY keeps it off the command line.",
            envvar="LOMSONG_ENROLMENT_KEY",
        ),
    ],
    commune: Annotated[str, typer.Option(help="2025 commune code of this centre, e.g. 01273.")],
    out: Annotated[Path, typer.Option(help="Where probe.toml and probe.token are written.")] = Path(
        "/etc/lomsong"
    ),
    spool: Annotated[Path, typer.Option(help="The spool path written into probe.toml.")] = Path(
        "/var/lib/lomsong/spool.db"
    ),
    checks: Annotated[
        Path | None,
        typer.Option(help="A TOML file whose [[checks]] replace the example checks."),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="Extra CA (PEM) for the collector's HTTPS.")
    ] = None,
    machine_id_file: Annotated[
        Path | None, typer.Option(help="Read the machine id here (default /etc/machine-id).")
    ] = None,
    mmcli: Annotated[
        str, typer.Option(help="The command that runs ModemManager's mmcli.")
    ] = "mmcli",
    poll_seconds: Annotated[
        float, typer.Option(help="First pause between polls; it doubles up to --poll-max.")
    ] = 5.0,
    poll_max: Annotated[float, typer.Option(help="Longest pause between polls.")] = 300.0,
    force: Annotated[bool, typer.Option(help="Replace an existing probe.toml.")] = False,
    run: Annotated[
        bool, typer.Option("--run", help="Go on running the agent once enrolled.")
    ] = False,
) -> None:
    """Ask the collector to enrol this box, wait for approval, write its token and settings.

    Exits 0 once probe.toml and probe.token are written, so that systemd starts the agent;
    with --run it goes on as `lomsong probe run`.
    """
    import logging
    import re
    import shlex
    import tomllib

    from lomsong.enrolwire import ENROLMENT_KEY_PREFIX
    from lomsong.errors import ConfigError, ValidationError
    from lomsong.probes.enrol import EnrolOptions, enrol
    from lomsong.probes.selfdesc import describe
    from lomsong.wire import COMMUNE_CODE

    if not re.match(COMMUNE_CODE, commune):
        raise ValidationError("--commune", commune, "expected a 5-digit 2025 commune code")
    if not key.startswith(ENROLMENT_KEY_PREFIX):
        raise ValidationError(
            "--key", key[:6] + "…", f"an enrolment key starts with {ENROLMENT_KEY_PREFIX!r}"
        )
    check_tables = None
    if checks is not None:
        try:
            check_tables = tomllib.loads(checks.read_text(encoding="utf-8")).get("checks", [])
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--checks {str(checks)!r}: {exc}") from exc
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll says nothing
    opts = EnrolOptions(
        collector_url=collector,
        key=key,
        commune=commune,
        out_dir=out,
        spool_path=spool,
        checks=check_tables,
        ca_file=ca_file,
        poll_initial_seconds=poll_seconds,
        poll_max_seconds=poll_max,
        force=force,
    )
    description = describe(machine_id_file=machine_id_file, mmcli_command=shlex.split(mmcli))
    config = enrol(opts, description, say=lambda line: typer.echo(line, err=True))
    if run:
        probe_run(config)


def add_commands(*, probe: typer.Typer) -> None:
    """Add the agent's half of ``lomsong probe`` (the registry's half comes from the collector)."""
    probe.command("enrol")(probe_enrol)
    probe.command("run")(probe_run)
    probe.command("once")(probe_once)
    probe.command("check-config")(probe_check_config)
