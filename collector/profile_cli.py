"""``lomsong fleet profile …``: the layers of check profiles, at the collector's database.

Like the rest of the collector's commands, it imports only typer and the kernel at its top; the
database and the profiles' code are imported inside each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lomsong.errors import MissingFileError, ValidationError
from lomsong.storage.cli import ConfigOpt, database

profile_app = typer.Typer(
    help="Check profiles: the checks of every probe, in layers (national, province, commune, "
    "probe).",
    no_args_is_help=True,
)

NationalOpt = Annotated[bool, typer.Option("--national", help="The national layer (every probe).")]
ProvinceOpt = Annotated[str | None, typer.Option(help="A province's layer, e.g. 04.")]
CommuneOpt = Annotated[str | None, typer.Option(help="A commune's layer, e.g. 01273.")]
ProbeOpt = Annotated[str | None, typer.Option(help="One probe's override, e.g. cb-thuc-phan.")]


def _scope(national: bool, province: str | None, commune: str | None, probe: str | None) -> Any:
    chosen = [
        (scope, key)
        for scope, key in (
            ("national", "" if national else None),
            ("province", province),
            ("commune", commune),
            ("probe", probe),
        )
        if key is not None
    ]
    if len(chosen) != 1:
        raise ValidationError(
            "layer",
            [f"--{s}" for s, _ in chosen] or None,
            "give exactly one of --national, --province CODE, --commune CODE, --probe ID",
        )
    return chosen[0]


@profile_app.command("set")
def profile_set(
    file: Annotated[Path, typer.Option("--file", help="The layer, as TOML.")],
    national: NationalOpt = False,
    province: ProvinceOpt = None,
    commune: CommuneOpt = None,
    probe: ProbeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a layer from a TOML file (replacing the one there); its probes fetch it within
    their next upload interval."""
    from lomsong.collector.fleet_profiles import set_layer
    from lomsong.config.profiles import parse_toml

    scope, key = _scope(national, province, commune, probe)
    if not file.is_file():
        raise MissingFileError(f"--file: {str(file)!r} does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("--file", str(file), f"cannot be read as UTF-8 text: {exc}") from None
    layer = parse_toml(text, str(file))
    with database(config, upgrade=True) as engine:
        view = set_layer(
            engine, scope, key, layer.model_dump(exclude_defaults=True), toml=text, by="cli"
        )
    typer.echo(
        f"profile {view['name']} set (revision {view['revision']}): "
        f"{len(layer.checks)} checks, {len(layer.remove)} removed; "
        f"{view['merged_checks']} checks with the layers above"
    )


@profile_app.command("show")
def profile_show(
    national: NationalOpt = False,
    province: ProvinceOpt = None,
    commune: CommuneOpt = None,
    probe: ProbeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a layer as it was set (TOML; JSON when it was set over the API as JSON)."""
    from lomsong.collector.fleet_profiles import get_layer

    scope, key = _scope(national, province, commune, probe)
    with database(config, upgrade=False) as engine:
        with engine.connect() as conn:
            view = get_layer(conn, scope, key)
    typer.echo(f"# {view['name']}, revision {view['revision']}, set {view['updated_at']}", err=True)
    if view["toml"]:
        typer.echo(view["toml"].rstrip("\n"))
    else:
        typer.echo(json.dumps(view["profile"], ensure_ascii=False, indent=2))


@profile_app.command("list")
def profile_list(config: ConfigOpt = None) -> None:
    """List the layers in the order they merge, with their checks; times are local."""
    from lomsong.collector.fleet_profiles import list_layers
    from lomsong.tables import Column, console, table
    from lomsong.timefmt import parse_time
    from lomsong.words import local_time

    with database(config, upgrade=False) as engine:
        with engine.connect() as conn:
            layers = list_layers(conn, None)
    columns = [
        Column("layer", wrap=True, min_width=14),
        Column("rev.", numeric=True),
        Column("checks", wrap=True, min_width=24),
        Column("removes", drop=1, wrap=True, min_width=12),
        Column("set", drop=2, wrap=True, min_width=10),
    ]
    rows = []
    for v in layers:
        doc = v["profile"]
        rows.append(
            [
                v["name"],
                str(v["revision"]),
                "\n".join(
                    f"{c['kind']} {c.get('target', '')}".strip() for c in doc.get("checks", [])
                )
                or "—",
                "\n".join(f"{r['kind']} {r['target']}" for r in doc.get("remove", [])) or "—",
                local_time(parse_time("updated_at", v["updated_at"])),
            ]
        )
    console().print(table(columns, rows))
    if not layers:
        typer.echo("no profile: every probe runs the checks of its own probe.toml", err=True)


@profile_app.command("delete")
def profile_delete(
    national: NationalOpt = False,
    province: ProvinceOpt = None,
    commune: CommuneOpt = None,
    probe: ProbeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a layer; its probes fall back to the layers above (or to their local checks)."""
    from lomsong.collector.fleet_profiles import delete_layer, layer_name

    scope, key = _scope(national, province, commune, probe)
    with database(config, upgrade=True) as engine:
        delete_layer(engine, scope, key)
    typer.echo(f"profile {layer_name(scope, key)} deleted")


@profile_app.command("effective")
def profile_effective(
    probe: Annotated[str, typer.Option(help="The probe, e.g. cb-thuc-phan.")],
    config: ConfigOpt = None,
) -> None:
    """Print what a probe is served: the layers merged, as JSON with its version."""
    from lomsong.collector.fleet_profiles import effective_config
    from lomsong.collector.registry import load_probes

    with database(config, upgrade=False) as engine:
        with engine.connect() as conn:
            info = load_probes(conn, probe)[probe]
            served = effective_config(conn, info)
    if served is None:
        typer.echo(f"no profile applies to {probe}: it runs the checks of its own probe.toml")
        return
    typer.echo(json.dumps(served.model_dump(), ensure_ascii=False, indent=2))


def add_commands(fleet: typer.Typer) -> None:
    """Mount ``profile`` on the ``fleet`` group."""
    fleet.add_typer(profile_app, name="profile")
