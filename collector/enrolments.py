"""Boxes that asked to be enrolled: recorded pending, decided by a person, given a token once.

The path of one box: ``record`` (the box's enrolment key counts one use, its self-description
is stored, a reused machine id is flagged) → ``approve`` by an admin or a province admin of its
province (the probe is registered with the chosen uplinks) or ``reject`` → ``collect``, where the
box, proving itself with the poll secret it was given at ``record``, receives its probe token.
The token is made at that moment and never stored but as its hash, so it is given exactly once.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from lomsong.collector.auth import TOKEN_PREFIX, Principal, hash_token
from lomsong.collector.enrolment_keys import EnrolmentRefused, use_key
from lomsong.collector.registry import OPERATORS, Uplink, parse_uplink, register_probe
from lomsong.enrolwire import (
    POLL_SECRET_PREFIX,
    EnrolRequest,
    PollAnswer,
    ProbeDescription,
    UplinkBinding,
)
from lomsong.errors import ConflictError, NotFoundError, ValidationError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import communes, enrolments, provinces, tokens
from lomsong.timefmt import iso
from lomsong.wire import NAME_PATTERN

STATUSES = ("pending", "approved", "delivered", "rejected")
#: MCC-MNC → operator name as the registry knows it ("45204" → "viettel")
_OPERATOR_OF_CODE = {code.replace("-", ""): name for name, code in OPERATORS.items()}
_RAT_SUFFIX = (("5gnr", "5g"), ("lte", "4g"), ("umts", "3g"), ("hspa", "3g"), ("gsm", "2g"))


def record(
    engine: Engine, key: str, request: EnrolRequest, *, clock: Callable[[], float] = time.time
) -> tuple[int, str, list[str]]:
    """Store a box's request as pending; return its id, its poll secret and what its machine
    id was seen with before (flagged, never merged)."""
    now = clock()
    desc = request.description
    secret = POLL_SECRET_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        used = use_key(conn, key, now)
        commune = conn.execute(
            select(communes.c.name, communes.c.province_code).where(
                communes.c.code == request.commune
            )
        ).first()
        if commune is None:
            raise ValidationError("commune", request.commune, "unknown commune code (2025 codes)")
        if commune.province_code != used.province_code:
            raise EnrolmentRefused(
                403,
                f"commune: {request.commune} ({commune.name}) is in province "
                f"{commune.province_code}; this enrolment key enrols in province "
                f"{used.province_code} only",
            )
        reused = _seen_before(conn, desc.machine_id)
        enrolment_id = conn.execute(
            enrolments.insert()
            .values(
                key_id=used.id,
                commune_code=request.commune,
                province_code=used.province_code,
                machine_id=desc.machine_id,
                hostname=desc.hostname,
                agent_version=desc.agent_version,
                description=desc.model_dump_json(),
                poll_hash=hash_token(secret),
                status="pending",
                reused_machine=orjson.dumps(reused).decode() if reused else None,
                created_at=now,
            )
            .returning(enrolments.c.id)
        ).scalar_one()
    return enrolment_id, secret, reused


def _seen_before(conn: Connection, machine_id: str) -> list[str]:
    rows = conn.execute(
        select(enrolments.c.id, enrolments.c.status, enrolments.c.probe_id)
        .where(enrolments.c.machine_id == machine_id)
        .order_by(enrolments.c.id)
    ).all()
    return [
        f"enrolment {r.id} ({r.status}" + (f", probe {r.probe_id})" if r.probe_id else ")")
        for r in rows
    ]


def propose_uplinks(desc: ProbeDescription) -> list[UplinkBinding]:
    """Uplinks a person would likely choose: one per modem (named after its operator and
    radio, bound to its network interface), and ``fibre`` for each wired interface that has
    an address and is not a modem's."""
    out: list[UplinkBinding] = []
    names: set[str] = set()

    def add(name: str, operator: str, interface: str | None) -> None:
        base, n = name, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        if re.match(NAME_PATTERN, name):
            names.add(name)
            out.append(UplinkBinding(name=name, operator=operator, interface=interface))

    modem_ports = {m.interface for m in desc.modems if m.interface}
    for m in desc.modems:
        code = m.operator_code or m.imsi_prefix
        operator = _OPERATOR_OF_CODE.get(code or "")
        if operator is None:
            continue
        techs = " ".join(m.access_technologies)
        suffix = next((s for t, s in _RAT_SUFFIX if t in techs), "4g")
        add(f"{operator}-{suffix}", operator, m.interface)
    for itf in desc.interfaces:
        if itf.kind != "ether" or itf.name in modem_ports or itf.name.startswith("ww"):
            continue
        if not any(_routable(a) for a in itf.addresses):
            continue
        add("fibre", "fibre", itf.name)
    return out


def _routable(address: str) -> bool:
    host = address.split("/")[0]
    return not (host.startswith(("127.", "169.254.", "fe80:")) or host == "::1")


def parse_bindings(
    specs: Sequence[str] | None, proposed: Sequence[UplinkBinding]
) -> list[UplinkBinding]:
    """``NAME:OPERATOR`` or ``NAME:OPERATOR@INTERFACE`` → bindings; the interface, when not
    given, is the proposed uplink's of that name, else of that operator. None: the proposal."""
    if not specs:
        if not proposed:
            raise ValidationError(
                "uplinks", None, "nothing to propose from this box; give NAME:OPERATOR uplinks"
            )
        return list(proposed)
    out = []
    for i, spec in enumerate(specs):
        head, _, interface = spec.partition("@")
        try:
            up = parse_uplink(head)
        except ValidationError as exc:  # named as the API and the CLI both take it
            raise ValidationError(f"uplinks[{i}]", spec, exc.problem) from None
        if not interface:
            same = [p for p in proposed if p.name == up.name] or [
                p for p in proposed if p.operator == up.operator
            ]
            interface = same[0].interface if same and same[0].interface else ""
        if interface and not re.match(r"^[^\s/]{1,15}$", interface):
            raise ValidationError(f"uplinks[{i}]", spec, "interface names are 1 to 15 characters")
        out.append(UplinkBinding(name=up.name, operator=up.operator, interface=interface or None))
    return out


def _load(conn: Connection, enrolment_id: int) -> dict[str, Any]:
    row = conn.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"enrolment {enrolment_id} does not exist")
    return dict(row)


def _may_decide(caller: Principal, row: dict[str, Any]) -> None:
    if not caller.may_enrol_in(row["province_code"]):
        raise EnrolmentRefused(
            403,
            f"province: role {caller.role!r} may not decide enrolments in province "
            f"{row['province_code']!r} (enrolment {row['id']})",
        )


def _who(caller: Principal) -> str:
    return caller.role if caller.token_id is None else f"{caller.role} token {caller.token_id}"


def approve(
    engine: Engine,
    enrolment_id: int,
    caller: Principal,
    *,
    probe_id: str,
    uplinks: Sequence[str] | None = None,
    label: str | None = None,
    replace: bool = False,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Register the box as probe ``probe_id`` with its uplinks; its next poll gets the token."""
    with engine.connect() as conn:
        row = _load(conn, enrolment_id)
    _may_decide(caller, row)
    if row["status"] != "pending":
        raise ConflictError(f"enrolment {enrolment_id} is {row['status']}, not pending")
    desc = ProbeDescription.model_validate_json(row["description"])
    bindings = parse_bindings(uplinks, propose_uplinks(desc))
    register_probe(
        engine,
        probe_id,
        row["commune_code"],
        [Uplink(b.name, b.operator) for b in bindings],
        label=label or row["hostname"],
        replace=replace,
        clock=clock,
    )
    with write_transaction(engine) as conn:
        done = conn.execute(
            update(enrolments)
            .where(enrolments.c.id == enrolment_id, enrolments.c.status == "pending")
            .values(
                status="approved",
                probe_id=probe_id,
                uplinks=orjson.dumps([b.model_dump() for b in bindings]).decode(),
                decided_at=clock(),
                decided_by=_who(caller),
            )
        ).rowcount
        if not done:
            raise ConflictError(f"enrolment {enrolment_id} was decided meanwhile")
        return view(conn, _load(conn, enrolment_id))


def reject(
    engine: Engine,
    enrolment_id: int,
    caller: Principal,
    *,
    reason: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    with write_transaction(engine) as conn:
        row = _load(conn, enrolment_id)
        _may_decide(caller, row)
        if row["status"] != "pending":
            raise ConflictError(f"enrolment {enrolment_id} is {row['status']}, not pending")
        conn.execute(
            update(enrolments)
            .where(enrolments.c.id == enrolment_id)
            .values(
                status="rejected",
                reason=(reason or "")[:500] or None,
                decided_at=clock(),
                decided_by=_who(caller),
            )
        )
        return view(conn, _load(conn, enrolment_id))


def collect(
    engine: Engine,
    enrolment_id: int,
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
    deliver: bool = True,
) -> PollAnswer:
    """What the box learns when it polls: pending, rejected, or its probe token, made now and
    given once (a later poll is refused with 410). ``deliver=False`` says approved without
    handing the token out."""
    refused = EnrolmentRefused(401, f"enrolment {enrolment_id}: unknown, or wrong poll secret")
    with write_transaction(engine) as conn:
        row = (
            conn.execute(
                select(enrolments).where(enrolments.c.id == enrolment_id).with_for_update()
            )
            .mappings()
            .first()
        )
        if row is None or not hmac.compare_digest(row["poll_hash"], hash_token(secret)):
            raise refused
        status = row["status"]
        if status == "delivered":
            raise EnrolmentRefused(
                410,
                f"enrolment {enrolment_id}: its token was collected at {iso(row['delivered_at'])}"
                f"; a token is given once (at the collector: lomsong token create --probe "
                f"{row['probe_id']})",
            )
        if status in ("pending", "rejected") or not deliver:
            return PollAnswer(id=enrolment_id, status=status, reason=row["reason"])
        now = clock()
        taken = conn.execute(
            update(enrolments)
            .where(enrolments.c.id == enrolment_id, enrolments.c.status == "approved")
            .values(status="delivered", delivered_at=now)
        ).rowcount
        if not taken:  # another poll took it between our read and this write
            raise EnrolmentRefused(410, f"enrolment {enrolment_id}: its token was collected")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        conn.execute(
            tokens.insert().values(
                token_hash=hash_token(token),
                prefix=token[:10],
                role="probe",
                probe_id=row["probe_id"],
                label=f"enrolment {enrolment_id}",
                created_at=now,
            )
        )
        return PollAnswer(
            id=enrolment_id,
            status="approved",
            probe_id=row["probe_id"],
            token=token,
            uplinks=[UplinkBinding(**u) for u in orjson.loads(row["uplinks"] or "[]")],
        )


def list_enrolments(
    engine: Engine, caller: Principal, status: str | None = "pending"
) -> list[dict[str, Any]]:
    """The enrolments the caller may decide (all for an admin), oldest first."""
    if caller.role not in ("admin", "province_admin"):
        raise EnrolmentRefused(403, f"role {caller.role!r}: admin or province_admin role required")
    query = select(enrolments).order_by(enrolments.c.id)
    if status is not None:
        query = query.where(enrolments.c.status == status)
    if caller.role != "admin":
        query = query.where(enrolments.c.province_code.in_(sorted(caller.provinces)))
    with engine.connect() as conn:
        return [view(conn, dict(r)) for r in conn.execute(query).mappings()]


def get_enrolment(engine: Engine, caller: Principal, enrolment_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = _load(conn, enrolment_id)
        _may_decide(caller, row)
        return view(conn, row)


def view(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """One enrolment as the API, the CLI and the status page show it."""
    desc = ProbeDescription.model_validate_json(row["description"])
    names = conn.execute(
        select(communes.c.name, provinces.c.name.label("province_name"))
        .join(provinces, provinces.c.code == communes.c.province_code)
        .where(communes.c.code == row["commune_code"])
    ).first()
    return {
        "id": row["id"],
        "status": row["status"],
        "commune": {"code": row["commune_code"], "name": names[0] if names else None},
        "province": {"code": row["province_code"], "name": names[1] if names else None},
        "machine_id": row["machine_id"],
        "hostname": row["hostname"],
        "agent_version": row["agent_version"],
        "os": desc.os,
        "boot_id": desc.boot_id,
        "interfaces": [i.model_dump() for i in desc.interfaces],
        "modems": [m.model_dump() for m in desc.modems],
        "reused_machine": orjson.loads(row["reused_machine"]) if row["reused_machine"] else [],
        "proposed_uplinks": [u.model_dump() for u in propose_uplinks(desc)],
        "key_id": row["key_id"],
        "created_at": iso(row["created_at"]),
        "decided_at": iso(row["decided_at"]),
        "decided_by": row["decided_by"],
        "reason": row["reason"],
        "probe_id": row["probe_id"],
        "uplinks": orjson.loads(row["uplinks"]) if row["uplinks"] else None,
        "delivered_at": iso(row["delivered_at"]),
    }
