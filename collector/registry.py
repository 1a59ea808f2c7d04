"""Registering probes at communes, with their uplinks and the operator behind each."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, delete, select

from lomsong.errors import ConflictError, NotFoundError, ValidationError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import communes, probe_state, probe_uplinks, probes, provinces
from lomsong.wire import NAME_PATTERN

#: Operators known out of the box (DESIGN §3), with their MCC-MNC.
OPERATORS: dict[str, str] = {
    "viettel": "452-04",
    "vinaphone": "452-02",
    "mobifone": "452-01",
    "vietnamobile": "452-05",
    "gmobile": "452-07",
}
#: Uplinks that are not a cellular operator's: fixed lines.
FIXED_OPERATORS = ("fibre", "adsl", "satellite", "other")


@dataclass(frozen=True)
class Uplink:
    name: str
    operator: str


@dataclass(frozen=True)
class ProbeInfo:
    """A registered probe and where it stands."""

    id: str
    commune_code: str
    commune_name: str
    province_code: str
    province_name: str
    label: str | None
    uplinks: tuple[Uplink, ...] = field(default_factory=tuple)

    def operator_of(self, uplink: str | None) -> str:
        for u in self.uplinks:
            if u.name == uplink:
                return u.operator
        return ""


def parse_uplink(spec: str, operators: Sequence[str] = ()) -> Uplink:
    """``"viettel-4g:viettel"`` → ``Uplink("viettel-4g", "viettel")``."""
    allowed = tuple(OPERATORS) + FIXED_OPERATORS + tuple(operators)
    name, sep, operator = spec.partition(":")
    if not sep:
        raise ValidationError("--uplink", spec, "expected NAME:OPERATOR, e.g. viettel-4g:viettel")
    if not re.match(NAME_PATTERN, name):
        raise ValidationError("--uplink", spec, f"uplink name must match {NAME_PATTERN}")
    if operator not in allowed:
        raise ValidationError(
            "--uplink", spec, f"operator {operator!r} is not one of {{{', '.join(allowed)}}}"
        )
    return Uplink(name=name, operator=operator)


def register_probe(
    engine: Engine,
    probe_id: str,
    commune_code: str,
    uplinks: Sequence[Uplink],
    *,
    label: str | None = None,
    replace: bool = False,
    clock: Callable[[], float] = time.time,
) -> ProbeInfo:
    """Register a probe at a commune; with ``replace``, update an existing one."""
    if not re.match(NAME_PATTERN, probe_id):
        raise ValidationError("--id", probe_id, f"probe id must match {NAME_PATTERN}")
    if not uplinks:
        raise ValidationError("--uplink", None, "a probe needs at least one uplink")
    names = [u.name for u in uplinks]
    if len(set(names)) != len(names):
        raise ValidationError("--uplink", names, "uplink names must be unique")
    with write_transaction(engine) as conn:
        if (
            conn.execute(select(communes.c.code).where(communes.c.code == commune_code)).first()
            is None
        ):
            raise ValidationError(
                "--commune", commune_code, "unknown commune code (2025 codes, 5 digits)"
            )
        exists = conn.execute(select(probes.c.id).where(probes.c.id == probe_id)).first()
        if exists and not replace:
            raise ConflictError(
                f"probe {probe_id!r} is already registered; use --replace to update it"
            )
        if exists:
            conn.execute(
                probes.update()
                .where(probes.c.id == probe_id)
                .values(commune_code=commune_code, label=label)
            )
            conn.execute(delete(probe_uplinks).where(probe_uplinks.c.probe_id == probe_id))
        else:
            conn.execute(
                probes.insert().values(
                    id=probe_id, commune_code=commune_code, label=label, created_at=clock()
                )
            )
            conn.execute(
                probe_state.insert().values(
                    probe_id=probe_id, stored_through_seq=0, max_seq=0, results_total=0
                )
            )
        conn.execute(
            probe_uplinks.insert(),
            [{"probe_id": probe_id, "name": u.name, "operator": u.operator} for u in uplinks],
        )
        info = load_probes(conn, probe_id=probe_id)
    return info[probe_id]


def load_probes(conn: Connection, probe_id: str | None = None) -> dict[str, ProbeInfo]:
    """Every registered probe (or one), with commune, province and uplinks."""
    query = (
        select(
            probes.c.id,
            probes.c.commune_code,
            probes.c.label,
            communes.c.name.label("commune_name"),
            communes.c.province_code,
            provinces.c.name.label("province_name"),
        )
        .join(communes, communes.c.code == probes.c.commune_code)
        .join(provinces, provinces.c.code == communes.c.province_code)
    )
    up_query = select(probe_uplinks).order_by(probe_uplinks.c.probe_id, probe_uplinks.c.name)
    if probe_id is not None:
        query = query.where(probes.c.id == probe_id)
        up_query = up_query.where(probe_uplinks.c.probe_id == probe_id)
    links: dict[str, list[Uplink]] = {}
    for row in conn.execute(up_query):
        links.setdefault(row.probe_id, []).append(Uplink(row.name, row.operator))
    out = {
        row.id: ProbeInfo(
            id=row.id,
            commune_code=row.commune_code,
            commune_name=row.commune_name,
            province_code=row.province_code,
            province_name=row.province_name,
            label=row.label,
            uplinks=tuple(links.get(row.id, ())),
        )
        for row in conn.execute(query.order_by(probes.c.id))
    }
    if probe_id is not None and probe_id not in out:
        raise NotFoundError(f"probe {probe_id!r} is not registered")
    return out
