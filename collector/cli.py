"""The collector's commands: ``serve``, ``map``, ``token …``, ``probe register|list``,
``report availability``.

Only typer and the kernel are imported here (and storage's command helpers, which import nothing
heavy either); the server stack is imported inside each command, so the ``lomsong`` command
starts where only the probe agent is installed. Commands that only read open the database with
``upgrade=False``: they never migrate it or load places into it.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from lomsong.collector import profile_cli
from lomsong.collector.fleet_cli import add_fleet_commands, fleet_app
from lomsong.errors import ValidationError
from lomsong.storage.cli import ConfigOpt, open_database
from lomsong.words import Language

#: Seconds ``lomsong serve`` keeps an idle HTTP connection: longer than a probe's pause between
#: batches (about 30 s), as a reverse proxy's usual 75 s is.
KEEP_ALIVE_SECONDS = 75

token_app = typer.Typer(help="Bearer tokens for probes, viewers and admins.", no_args_is_help=True)
report_app = typer.Typer(help="Reports to send up: monthly availability.", no_args_is_help=True)


def serve(
    config: ConfigOpt = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="Development mode: allows a placeholder admin secret.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Listen address (setting: host).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (setting: port).")] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="debug, info, warning or error (setting: log_level).", show_default=False
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text, or json: one object per line for journald and Loki (setting: log_format).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the collector: migrate the database, load the places, serve the API and /metrics."""
    import uvicorn

    from lomsong.collector.app import create_app
    from lomsong.config.collector import load_collector_settings
    from lomsong.logs import setup_logging

    overrides: dict[str, object] = {}
    if log_level is not None:
        overrides["log_level"] = log_level.upper()
    if log_format is not None:
        overrides["log_format"] = log_format.lower()
    if dev:
        overrides["dev"] = True
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_collector_settings(config, check_secrets=True, **overrides)
    setup_logging(settings.log_level, settings.log_format)
    open_database(config, upgrade=True).dispose()
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
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through the handler set up above
        access_log=False,
        timeout_graceful_shutdown=5,
        # Probes send a batch about every 30 s on metered 4G: an idle connection kept longer
        # than that spares each batch a new TLS handshake (uvicorn closes after 5 s otherwise).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def _html_file(value: Path) -> Path:
    """Refuse an output that is not an .html file before any work (a missing folder is
    ``write_map``'s to say)."""
    if value.suffix.lower() not in (".html", ".htm"):
        said = f"suffix {value.suffix!r}" if value.suffix else "no suffix"
        raise typer.BadParameter(f"{str(value)!r} has {said}; expected .html")
    return value


def map_(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The HTML file to write.", callback=_html_file),
    ],
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
    from lomsong.config.collector import load_collector_settings

    if (province is None) == (not national):
        raise ValidationError(
            "--province/--national", province, "give exactly one of --province CODE, --national"
        )
    settings = load_collector_settings(config, check_secrets=False)
    written = write_map(settings, open_database(config, upgrade=False), output, province=province)
    typer.echo(f"{output}: {written.size / 2**20:.1f} MiB, {written.what}")


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
    engine = open_database(config, upgrade=True)
    info = register_probe(engine, probe_id, commune, links, label=label, replace=replace)
    ups = ", ".join(f"{u.name} ({u.operator})" for u in info.uplinks)
    typer.echo(
        f"probe {info.id} at {info.commune_name} ({info.commune_code}), {info.province_name}: {ups}"
    )


def probe_list(config: ConfigOpt = None) -> None:
    """List registered probes."""
    from lomsong.collector.registry import load_probes
    from lomsong.tables import Column, console, table

    engine = open_database(config, upgrade=False)
    with engine.connect() as conn:
        probes = load_probes(conn)
    columns = [
        Column("id", wrap=True, min_width=12),
        Column("commune", wrap=True, min_width=14),
        Column("province", drop=1, wrap=True, min_width=10),
        Column("uplinks", wrap=True, min_width=14),
    ]
    rows = [
        [
            p.id,
            f"{p.commune_name} ({p.commune_code})",
            f"{p.province_name} ({p.province_code})",
            ", ".join(f"{u.name}:{u.operator}" for u in p.uplinks),
        ]
        for p in probes.values()
    ]
    console().print(table(columns, rows))


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
    province_admin: Annotated[
        bool,
        typer.Option(
            "--province-admin",
            help="A token that reads some provinces and approves their enrolments.",
        ),
    ] = False,
    label: Annotated[str | None, typer.Option(help="Free text to recognise the token by.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Make a token; it is printed once, as the last line, and stored only as a hash."""
    from lomsong.collector.auth import create_token

    chosen = [
        name
        for name, on in (
            ("--probe", probe is not None),
            ("--viewer", viewer),
            ("--province-admin", province_admin),
            ("--admin", admin),
        )
        if on
    ]
    if len(chosen) != 1:
        raise ValidationError(
            "role",
            chosen or None,
            "give exactly one of --probe ID, --viewer, --province-admin, --admin",
        )
    if province and not (viewer or province_admin):
        raise ValidationError(
            "--province", province, "only a --viewer or --province-admin token takes provinces"
        )
    engine = open_database(config, upgrade=True)
    if probe is not None:
        issued = create_token(engine, role="probe", probe_id=probe, label=label)
    elif viewer:
        issued = create_token(engine, role="viewer", province_codes=province or [], label=label)
    elif province_admin:
        issued = create_token(
            engine, role="province_admin", province_codes=province or [], label=label
        )
    else:
        issued = create_token(engine, role="admin", label=label)
    typer.echo(f"token {issued.id} ({issued.role}) created; it is shown only now:", err=True)
    typer.echo(issued.token)


@token_app.command("list")
def token_list(config: ConfigOpt = None) -> None:
    """List tokens (never their secrets), newest last; times are local (Asia/Ho_Chi_Minh).

    A pending rotation shows as `#R asked` on the probe's tokens until its next report, then
    `#R → N offered ×K` on the old token and `#R ← M, unused` on the new one, until it is used.
    """
    from lomsong.collector.auth import list_tokens
    from lomsong.collector.token_rotation import list_rotations, rotation_notes
    from lomsong.tables import Column, console, table
    from lomsong.words import local_time

    # on a narrow terminal the creation time goes first, then the label: the id, prefix, role,
    # probe and whether it is revoked are what a revocation needs
    columns = [
        Column("id", numeric=True),
        Column("prefix"),
        Column("role"),
        Column("probe", wrap=True, min_width=16),
        Column("provinces", wrap=True, min_width=9),
        Column("label", drop=1, wrap=True, min_width=10),
        Column("created", drop=2, wrap=True, min_width=10),
        Column("revoked", wrap=True, min_width=10),
        Column("rotation", wrap=True, min_width=8),
    ]
    engine = open_database(config, upgrade=False)
    tokens = list_tokens(engine)
    notes = rotation_notes(tokens, list_rotations(engine, pending_only=True))
    rows = [
        [
            str(t["id"]),
            t["prefix"] + "…",
            t["role"],
            t["probe_id"] or "",
            t["provinces"] or "",
            t["label"] or "",
            local_time(t["created_at"]),
            local_time(t["revoked_at"]) if t["revoked_at"] is not None else "",
            notes.get(t["id"], ""),
        ]
        for t in tokens
    ]
    console().print(table(columns, rows))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id from `token list`.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a token; the collector refuses it within its token cache time (2 s by default)."""
    from lomsong.collector.auth import revoke_token

    revoke_token(open_database(config, upgrade=True), token_id)
    typer.echo(f"token {token_id} revoked")


def _report_file(value: Path) -> Path:
    """Refuse an output that is not .xlsx, .csv or .json before any work."""
    if value.suffix.lower() not in (".xlsx", ".csv", ".json"):
        said = f"suffix {value.suffix!r}" if value.suffix else "no suffix"
        raise typer.BadParameter(f"{str(value)!r} has {said}; expected .xlsx, .csv or .json")
    return value


@report_app.command("availability")
def report_availability(
    province: Annotated[str, typer.Option(help="Province code, e.g. 04.")],
    month: Annotated[
        str, typer.Option(help="The month, e.g. 2026-11 (local days, Asia/Ho_Chi_Minh).")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The file: .xlsx, .csv or .json.", callback=_report_file
        ),
    ],
    vi: Annotated[
        bool, typer.Option("--vi/--en", help="Vietnamese (the default) or English headers.")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """Write a province's monthly availability: per centre and uplink, per operator and for the
    province, and (in .xlsx) a sheet of the month's outages with cause and duration."""
    import time

    from lomsong.collector.availability_report import parse_month, summary_line, write_monthly

    parse_month(month)  # a bad month is said before the database is opened
    if not output.parent.is_dir():
        raise ValidationError("--output", str(output), "its folder does not exist")
    engine = open_database(config, upgrade=False)
    lang: Language = "vi" if vi else "en"
    try:
        summary = write_monthly(engine, province, month, output, lang, time.time())
    finally:
        engine.dispose()
    typer.echo(summary_line(summary, output, lang))


def add_commands(root: typer.Typer, *, probe: typer.Typer) -> None:
    """Mount ``serve``, ``map`` and ``token`` on the root, and the registry's half of ``probe``
    (the agent's half comes from ``lomsong.probes.cli``)."""
    root.command("serve")(serve)
    root.command("map")(map_)
    root.add_typer(token_app, name="token")
    root.add_typer(report_app, name="report")
    profile_cli.add_commands(fleet_app)
    probe.command("register")(probe_register)
    probe.command("list")(probe_list)
    add_enrolment_commands(root, probe=probe)
    add_fleet_commands(root, token=token_app)


# --- zero-touch enrolment: provincial keys, and the boxes waiting for approval ---

enrolment_app = typer.Typer(
    help="Provincial enrolment keys that let new boxes ask to be enrolled.",
    no_args_is_help=True,
)


@enrolment_app.command("create")
def enrolment_create(
    province: Annotated[str, typer.Option(help="Province code the key enrols in, e.g. 04.")],
    expires: Annotated[
        str | None, typer.Option(help="Valid for this long, e.g. 30d or 12h (default: no end).")
    ] = None,
    max_uses: Annotated[
        int | None, typer.Option(help="At most this many boxes (default: no limit).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Free text to recognise the key by.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Make a provincial enrolment key; it is printed once, as the last line, stored hashed."""
    from lomsong.collector.enrolment_keys import create_key
    from lomsong.config.alerts import parse_duration
    from lomsong.timefmt import iso

    seconds = None
    if expires is not None:
        try:
            seconds = parse_duration(expires)
        except ValueError as exc:
            raise ValidationError("--expires", expires, str(exc)) from None
    issued = create_key(
        open_database(config, upgrade=True),
        province,
        expires_in_seconds=seconds,
        max_uses=max_uses,
        label=label,
    )
    limits = [f"until {iso(issued.expires_at)}" if issued.expires_at else "no expiry"]
    limits.append(f"{issued.max_uses} uses" if issued.max_uses else "no use limit")
    typer.echo(
        f"enrolment key {issued.id} for province {issued.province_code} ({', '.join(limits)}) "
        "created; it is shown only now:",
        err=True,
    )
    typer.echo(issued.key)


@enrolment_app.command("list")
def enrolment_list(config: ConfigOpt = None) -> None:
    """List enrolment keys (never the keys), with their uses; times are local."""
    from lomsong.collector.enrolment_keys import list_keys
    from lomsong.tables import Column, console, table
    from lomsong.words import local_time

    columns = [
        Column("id", numeric=True),
        Column("prefix"),
        Column("prov."),
        Column("uses", numeric=True),
        Column("expires", wrap=True, min_width=10),
        Column("revoked", wrap=True, min_width=10),
        Column("label", drop=1, wrap=True, min_width=10),
        Column("created", drop=2, wrap=True, min_width=10),
    ]
    rows = [
        [
            str(k["id"]),
            k["prefix"] + "…",
            k["province_code"],
            f"{k['uses']}/{k['max_uses']}" if k["max_uses"] is not None else str(k["uses"]),
            local_time(k["expires_at"]) if k["expires_at"] is not None else "never",
            local_time(k["revoked_at"]) if k["revoked_at"] is not None else "",
            k["label"] or "",
            local_time(k["created_at"]),
        ]
        for k in list_keys(open_database(config, upgrade=False))
    ]
    console().print(table(columns, rows))


@enrolment_app.command("revoke")
def enrolment_revoke(
    key_id: Annotated[int, typer.Argument(help="Key id from `enrolment list`.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke an enrolment key: boxes asking with it are refused from now on."""
    from lomsong.collector.enrolment_keys import revoke_key

    revoke_key(open_database(config, upgrade=True), key_id)
    typer.echo(f"enrolment key {key_id} revoked")


def probe_pending(
    all_: Annotated[
        bool, typer.Option("--all", help="Every enrolment, not only the pending ones.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Boxes waiting for approval, what they said of themselves and the uplinks proposed."""
    from lomsong.collector.auth import Principal
    from lomsong.collector.enrolments import list_enrolments
    from lomsong.tables import Column, console, table

    rows = list_enrolments(
        open_database(config, upgrade=False), Principal(role="admin"), None if all_ else "pending"
    )
    columns = [
        Column("id", numeric=True),
        Column("commune", wrap=True, min_width=10),
        Column("box", wrap=True, min_width=12),
        Column("modems", wrap=True, min_width=10),
        Column("proposed uplinks", wrap=True, min_width=24),
    ]
    if all_:
        columns.append(Column("status", drop=1))
    out = []
    for e in rows:
        box = f"{e['hostname']} ({e['machine_id'][:8]}…, {e['agent_version']})"
        if e["reused_machine"]:
            box += "\n⚠ machine id seen before: " + "; ".join(e["reused_machine"])
        modems = "\n".join(
            " ".join(
                v
                for v in (
                    m["operator_name"],
                    m["imsi_prefix"] or m["operator_code"],
                    m["interface"],
                )
                if v
            )
            or "?"
            for m in e["modems"]
        )
        ups = "\n".join(
            f"{u['name']}:{u['operator']}" + (f"@{u['interface']}" if u["interface"] else "")
            for u in e["proposed_uplinks"]
        )
        row = [
            str(e["id"]),
            f"{e['commune']['name']} ({e['commune']['code']})",
            box,
            modems or "none",
            ups or "none",
        ]
        out.append(row + [e["status"]] if all_ else row)
    console().print(table(columns, out))
    if not rows:
        typer.echo("no enrolment is pending" if not all_ else "no enrolment yet", err=True)


def probe_approve(
    enrolment_id: Annotated[int, typer.Argument(help="Enrolment id from `probe pending`.")],
    probe_id: Annotated[str, typer.Option("--id", help="The probe's id, e.g. cb-thuc-phan.")],
    uplink: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME:OPERATOR[@INTERFACE], once per uplink; default: the proposed uplinks."
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Free text shown beside the id.")] = None,
    replace: Annotated[
        bool, typer.Option(help="Update a probe of that id already registered (a new box).")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Approve a pending box: register it as a probe; its next poll receives its token."""
    from lomsong.collector.auth import Principal
    from lomsong.collector.enrolments import approve

    done = approve(
        open_database(config, upgrade=True),
        enrolment_id,
        Principal(role="admin"),
        probe_id=probe_id,
        uplinks=uplink,
        label=label,
        replace=replace,
    )
    ups = ", ".join(
        f"{u['name']} ({u['operator']}{', ' + u['interface'] if u['interface'] else ''})"
        for u in done["uplinks"]
    )
    typer.echo(
        f"enrolment {enrolment_id} approved: probe {probe_id} at {done['commune']['name']} "
        f"({done['commune']['code']}): {ups}"
    )


def probe_reject(
    enrolment_id: Annotated[int, typer.Argument(help="Enrolment id from `probe pending`.")],
    reason: Annotated[str | None, typer.Option(help="Told to the box, which stops.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Reject a pending box; it stops asking."""
    from lomsong.collector.auth import Principal
    from lomsong.collector.enrolments import reject

    reject(
        open_database(config, upgrade=True), enrolment_id, Principal(role="admin"), reason=reason
    )
    typer.echo(f"enrolment {enrolment_id} rejected")


def add_enrolment_commands(root: typer.Typer, *, probe: typer.Typer) -> None:
    """Mount ``enrolment …`` and the collector's ``probe pending|approve|reject``."""
    root.add_typer(enrolment_app, name="enrolment")
    probe.command("pending")(probe_pending)
    probe.command("approve")(probe_approve)
    probe.command("reject")(probe_reject)
