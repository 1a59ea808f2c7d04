"""The fleet's commands: ``fleet status`` and ``token rotate``.

As in ``collector/cli.py``, only typer and the kernel are imported at the top; the server stack
inside each command.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from lomsong.errors import ValidationError
from lomsong.storage.cli import ConfigOpt, database
from lomsong.wire import NAME_PATTERN, PROVINCE_CODE

if TYPE_CHECKING:
    from lomsong.maps.fleet_model import Fleet, FleetProbe

fleet_app = typer.Typer(
    help="The probe agents: versions, health and spools, and the check profiles they fetch.",
    no_args_is_help=True,
)

#: what the marks say on a terminal, worst first
MARK_WORDS = {
    "never_heard": "NEVER HEARD",
    "silent": "SILENT",
    "outdated": "OUTDATED",
    "clock": "clock",
    "dropped": "drops",
    "rotation": "rotating",
    "config_refused": "CONFIG REFUSED",
    "config_pending": "config pending",
}


@fleet_app.command("status")
def fleet_status(
    province: Annotated[
        list[str] | None, typer.Option(help="Only this province (code, e.g. 04); repeat.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Each probe's agent version, last heard, clock skew, spool, drops and uptime.

    Silent agents (not heard for longer than the silence threshold) and outdated ones (older
    than the newer of this collector's version and the fleet's newest) come first.
    """
    from sqlalchemy import select

    from lomsong.collector.fleet import fleet_status as gather
    from lomsong.config.collector import load_collector_settings
    from lomsong.storage.schema import provinces

    for code in province or []:
        if not re.fullmatch(PROVINCE_CODE, code):
            raise ValidationError("--province", code, "expected a 2-digit province code, e.g. 04")
    settings = load_collector_settings(config, check_secrets=False)
    with database(config, upgrade=False) as engine:
        if province:
            with engine.connect() as conn:
                known = set(conn.execute(select(provinces.c.code)).scalars())
            for code in province:
                if code not in known:
                    raise ValidationError("--province", code, "no province has this code")
        fleet = gather(
            engine,
            set(province) if province else None,
            now=time.time(),
            silent_after=settings.silent_after_seconds,
        )
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(fleet.as_json(), option=orjson.OPT_INDENT_2) + b"\n")
        return
    print_fleet(fleet)


def _config_word(p: FleetProbe) -> str:
    """``applied 3f2a9c1b7e0d``, ``pending``, ``REFUSED``, ``local``, ``?``: at most 20 columns."""
    from lomsong.config.profiles import short

    state = p.config_state
    if state == "applied":
        return f"ok {short(p.config_served)}"
    return {"pending": "pending", "refused": "REFUSED", "local": "local", "unknown": "?"}[state]


def print_fleet(fleet: Fleet) -> None:
    from lomsong.tables import Column, console, table

    now = fleet.now
    # on a narrow terminal the boot time goes first, then the skew, the configuration, the
    # province and the drops: the probe, where it is, whether it is heard and its spool are
    # what people act on (a refused configuration is among the marks too)
    columns = [
        Column("probe", wrap=True, min_width=10),
        Column("commune", wrap=True, min_width=12),
        Column("province", wrap=True, min_width=8, drop=2),
        Column("version"),
        Column("heard ago"),
        Column("skew s", numeric=True, drop=4),
        Column("spool", numeric=True),
        Column("drops", numeric=True, drop=1),
        Column("config", drop=3),
        Column("uptime", numeric=True, drop=5),
        Column("marks", wrap=True, min_width=11),
    ]
    rows = []
    for p in fleet.probes:
        quiet = p.silent_for(now)
        booted = p.booted_at
        drops = None if p.spool_dropped is None else p.spool_dropped + (p.spool_refused or 0)
        rows.append(
            [
                p.probe_id,
                f"{p.commune_name} ({p.commune_code})",
                p.province_name,
                p.agent_version or "?",
                "never" if quiet is None else short(quiet),
                "" if p.clock_skew_seconds is None else f"{p.clock_skew_seconds:+.1f}",
                "" if p.spool_depth is None else str(p.spool_depth),
                "" if drops is None else str(drops),
                _config_word(p),
                "" if booted is None else short(max(0.0, now - booted)),
                ", ".join(MARK_WORDS[m] for m in p.marks),
            ]
        )
    out = console()
    out.print(table(columns, rows))
    n = len(fleet.probes)
    out.print(
        f"{n} probe{'' if n == 1 else 's'}: {fleet.silent} silent (nothing for over "
        f"{fleet.silent_after_seconds:g} s), {fleet.outdated} older than "
        f"{fleet.newest_version or '?'} (newest of the fleet and this collector's "
        f"{fleet.collector_version})"
    )


def short(seconds: float) -> str:
    """``<1m``, ``42m``, ``5h 03m``, ``12d 4h``: a duration in at most 7 columns."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1m"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def token_rotate(
    probe: Annotated[str, typer.Option(help="The probe whose token is replaced.")],
    config: ConfigOpt = None,
) -> None:
    """Give a probe a new token with its next report; the old one ends when the new is used.

    `token list` shows the rotation until then. The agent must read its token from a file
    (token_file), which it rewrites.
    """
    from lomsong.collector.token_rotation import request_rotation

    if not re.fullmatch(NAME_PATTERN, probe):
        raise ValidationError("--probe", probe, f"probe id must match {NAME_PATTERN}")
    with database(config, upgrade=True) as engine:
        done = request_rotation(engine, probe, by="admin (CLI)")
    typer.echo(f"rotation {done.id} of {probe}'s token asked: its next report gets the new one")


def add_fleet_commands(root: typer.Typer, *, token: typer.Typer) -> None:
    root.add_typer(fleet_app, name="fleet")
    token.command("rotate")(token_rotate)
