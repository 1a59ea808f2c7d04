"""The ``lomsong`` command.

Each wing (collector, probe agent, coverage, maps) is imported only when its subcommand runs, so
``lomsong probe run`` works where only the agent's dependencies are installed. Any
``LomsongError`` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from lomsong import __version__
from lomsong.errors import LomsongError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from lomsong.config.collector import CollectorSettings

app = typer.Typer(
    name="lomsong",
    help="Watch the connectivity of commune service centres and map hamlets without signal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
probe_app = typer.Typer(
    help="Probes: register them (collector side) and run the agent.", no_args_is_help=True
)
token_app = typer.Typer(help="Bearer tokens for probes, viewers and admins.", no_args_is_help=True)
db_app = typer.Typer(help="The collector's database.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")
# the coverage wing's commands import the geodata stack only when they run
from lomsong.coverage.cli import coverage_app, geodata_app  # noqa: E402

app.add_typer(geodata_app, name="geodata")
app.add_typer(coverage_app, name="coverage")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Collector settings (TOML); LOMSONG_* variables win over it."
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lomsong {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """lomsong: commune connectivity and mobile dead zones."""


def _settings(config: Path | None, **overrides: object) -> CollectorSettings:
    from lomsong.config.collector import load_collector_settings

    return load_collector_settings(config, check_secrets=False, **overrides)


def _ready_engine(config: Path | None) -> Engine:
    """Open the configured database, migrated and with the bundled places loaded."""
    from lomsong.storage.database import migrate, open_engine
    from lomsong.storage.places import load_places

    settings = _settings(config)
    engine = open_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    migrate(engine)
    load_places(engine)
    return engine


# -- serve -------------------------------------------------------------------------------------


@app.command()
def serve(
    config: ConfigOpt = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="Development mode: allows a placeholder admin secret.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Listen address (setting: host).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (setting: port).")] = None,
) -> None:
    """Run the collector: migrate the database, load the places, serve the API and /metrics."""
    import uvicorn

    from lomsong.collector.app import create_app
    from lomsong.config.collector import load_collector_settings

    overrides: dict[str, object] = {}
    if dev:
        overrides["dev"] = True
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_collector_settings(config, check_secrets=True, **overrides)
    engine = _ready_engine(config)
    engine.dispose()
    app = create_app(settings)
    # What is loaded by now (modules, models, the app: about 107,000 objects) lives as long as
    # the process. Out of the collector's sight, a full collection no longer walks it: ~47 ms
    # each time otherwise, holding up every request in flight.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def demo(
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Run this long without a terminal, then print a summary; exit status 1 if "
            "the scenario's expectations did not hold. The scenario needs about 3 minutes."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the demo collector.")] = 8080,
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its files (emptied of the last run's).")
    ] = Path("var/demo"),
    alertmanager: Annotated[
        str | None,
        typer.Option(help="Also send the alerts to this Alertmanager, e.g. http://127.0.0.1:9093."),
    ] = None,
) -> None:
    """Run the demo: the collector on SQLite and one real probe agent per Cao Bằng commune,
    with links that fail, agents that stop and a power cut; Ctrl-C stops everything."""
    from lomsong.demo.run import DemoError, run_demo
    from lomsong.errors import ValidationError

    if minutes is not None and minutes <= 0:
        raise ValidationError("--minutes", minutes, "must be more than 0")
    if alertmanager is not None and not alertmanager.startswith(("http://", "https://")):
        raise ValidationError("--alertmanager", alertmanager, "expected an http(s):// URL")
    report = run_demo(workdir, port=port, minutes=minutes, alertmanager=alertmanager)
    if minutes is not None and report.problems:
        raise DemoError(
            f"demo: {len(report.problems)} expectation(s) did not hold: {report.problems[0]}"
            + (" …" if len(report.problems) > 1 else "")
        )


# -- db ----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Migrate the database to this version's schema and load the bundled places."""
    from lomsong.storage.database import current_revision
    from lomsong.storage.places import count_places

    engine = _ready_engine(config)
    with engine.connect() as conn:
        counts = count_places(conn)
    typer.echo(
        f"schema at {current_revision(engine)}; "
        f"{counts.provinces} provinces, {counts.communes} communes"
    )


# -- probe (registration) ----------------------------------------------------------------------


@probe_app.command("register")
def probe_register(
    probe_id: Annotated[str, typer.Option("--id", help="Probe id, e.g. cb-thuc-phan.")],
    commune: Annotated[str, typer.Option(help="2025 commune code, e.g. 01273.")],
    uplink: Annotated[
        list[str], typer.Option(help="NAME:OPERATOR, once per uplink, e.g. viettel-4g:viettel.")
    ],
    label: Annotated[str | None, typer.Option(help="Free text shown beside the id.")] = None,
    replace: Annotated[bool, typer.Option(help="Update the probe if it exists.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Register a probe at a commune centre, with its uplinks."""
    from lomsong.collector.registry import parse_uplink, register_probe

    links = [parse_uplink(u) for u in uplink]
    info = register_probe(
        _ready_engine(config), probe_id, commune, links, label=label, replace=replace
    )
    ups = ", ".join(f"{u.name} ({u.operator})" for u in info.uplinks)
    typer.echo(
        f"probe {info.id} at {info.commune_name} ({info.commune_code}), {info.province_name}: {ups}"
    )


@probe_app.command("list")
def probe_list(config: ConfigOpt = None) -> None:
    """List registered probes."""
    from rich.console import Console
    from rich.table import Table

    from lomsong.collector.registry import load_probes

    engine = _ready_engine(config)
    with engine.connect() as conn:
        probes = load_probes(conn)
    table = Table("id", "commune", "province", "uplinks")
    for p in probes.values():
        table.add_row(
            p.id,
            f"{p.commune_name} ({p.commune_code})",
            f"{p.province_name} ({p.province_code})",
            ", ".join(f"{u.name}:{u.operator}" for u in p.uplinks),
        )
    Console().print(table)


# -- probe agent (issue 3: lomsong.probes) -----------------------------------------------------
# The agent's commands import only lomsong.config.probe and lomsong.probes, inside each function,
# so `lomsong probe run|once|check-config` works where only the base install is present.

ProbeConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Probe settings (TOML); LOMSONG_PROBE_* variables win."),
]


@probe_app.command("run")
def probe_run(config: ProbeConfigOpt) -> None:
    """Run the agent: schedule every check over every uplink, spool, upload; stop on SIGTERM."""
    import asyncio
    import logging

    from lomsong.config.probe import load_probe_settings
    from lomsong.probes.agent import run_agent

    settings = load_probe_settings(config)
    settings.bearer_token()  # refuse to start without a token, before opening anything
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run_agent(settings))


@probe_app.command("once")
def probe_once(config: ProbeConfigOpt) -> None:
    """Run every check once over every uplink and print a table (exit status 2 if any failed)."""
    import asyncio

    from rich.console import Console

    from lomsong.config.probe import load_probe_settings
    from lomsong.probes.agent import once_table, run_once

    settings = load_probe_settings(config)
    measurements = asyncio.run(run_once(settings))
    Console(width=160).print(once_table(measurements))
    failed = sum(not m.outcome.ok for m in measurements)
    typer.echo(f"{len(measurements) - failed} of {len(measurements)} checks ok")
    if failed:
        raise typer.Exit(2)


@probe_app.command("check-config")
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


# -- end of probe agent ------------------------------------------------------------------------


# -- map (issue 6: lomsong.maps) ---------------------------------------------------------------


@app.command("map")
def map_(
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    province: Annotated[
        str | None, typer.Option(help="Province code, e.g. 04: that province's map.")
    ] = None,
    national: Annotated[
        bool, typer.Option("--national", help="The national overview instead.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Write a standalone map (one HTML file with everything inlined but the tiles)."""
    from lomsong.collector.map_files import write_map
    from lomsong.errors import ValidationError

    if (province is None) == (not national):
        raise ValidationError(
            "--province/--national", province, "give exactly one of --province CODE, --national"
        )
    written = write_map(_settings(config), _ready_engine(config), output, province=province)
    typer.echo(f"{output}: {written.size / 2**20:.1f} MiB, {written.what}")


# -- token -------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    probe: Annotated[
        str | None, typer.Option(help="A token for this probe (writes its reports).")
    ] = None,
    viewer: Annotated[
        bool, typer.Option("--viewer", help="A token that reads some provinces.")
    ] = False,
    province: Annotated[
        list[str] | None, typer.Option(help="Province code a viewer may read; repeat.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A token with the admin role.")] = False,
    label: Annotated[str | None, typer.Option(help="Free text to recognise the token by.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Make a token; it is printed once, as the last line, and stored only as a hash."""
    from lomsong.collector.auth import create_token
    from lomsong.errors import ValidationError

    chosen = [
        name
        for name, on in (("--probe", probe is not None), ("--viewer", viewer), ("--admin", admin))
        if on
    ]
    if len(chosen) != 1:
        raise ValidationError(
            "role", chosen or None, "give exactly one of --probe ID, --viewer, --admin"
        )
    if province and not viewer:
        raise ValidationError("--province", province, "only a --viewer token takes provinces")
    engine = _ready_engine(config)
    if probe is not None:
        issued = create_token(engine, role="probe", probe_id=probe, label=label)
    elif viewer:
        issued = create_token(engine, role="viewer", province_codes=province or [], label=label)
    else:
        issued = create_token(engine, role="admin", label=label)
    typer.echo(f"token {issued.id} ({issued.role}) created; it is shown only now:", err=True)
    typer.echo(issued.token)


@token_app.command("list")
def token_list(config: ConfigOpt = None) -> None:
    """List tokens (never their secrets)."""
    from rich.console import Console
    from rich.table import Table

    from lomsong.collector.auth import list_tokens
    from lomsong.timefmt import iso

    table = Table("id", "prefix", "role", "probe", "provinces", "label", "created", "revoked")
    for t in list_tokens(_ready_engine(config)):
        table.add_row(
            str(t["id"]),
            t["prefix"] + "…",
            t["role"],
            t["probe_id"] or "",
            t["provinces"] or "",
            t["label"] or "",
            iso(t["created_at"]) or "",
            iso(t["revoked_at"]) or "",
        )
    Console(width=200).print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id from `token list`.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a token; the collector refuses it within its token cache time (2 s by default)."""
    from lomsong.collector.auth import revoke_token

    revoke_token(_ready_engine(config), token_id)
    typer.echo(f"token {token_id} revoked")


# -- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a ``LomsongError`` is one line on stderr and exit status 1."""
    try:
        result = app(args=argv, standalone_mode=False)
    except LomsongError as exc:
        typer.echo(f"lomsong: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("lomsong: aborted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
