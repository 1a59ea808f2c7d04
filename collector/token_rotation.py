"""Rotating a probe's token without a visit to the box and without losing a result.

The path of one rotation (``token_rotations``):

1. ``request`` (``lomsong token rotate --probe ID`` or the API) records that the probe's token
   is to be replaced. Nothing changes for the agent yet.
2. The agent's next accepted report, sent with its current token, draws the new token
   (``answer``): it is stored as a token row by its hash, like every token, and offered in the
   report's answer (``ReportAck.new_token``). The rotation keeps it only *sealed* with the token
   the agent sent: XORed with an HMAC-SHA256 keystream keyed by that token, so that whoever
   reads the database cannot take it, and yet every later report with the old token is
   answered with the same new token again. An agent that crashed between receiving it and
   writing it to its token file is therefore never locked out: its old token still works, and
   it is offered the same new one until it uses it.
3. The first report sent with the new token completes the rotation: the old token is revoked,
   the seal forgotten. Every batch sent with the old token before that was accepted as usual.

An agent that never takes the new token (an older version, or a token given inline rather than
in a file) keeps its old one; ``lomsong token list`` shows the rotation as pending.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from lomsong.collector.auth import TOKEN_PREFIX, Principal, hash_token
from lomsong.errors import ConflictError, NotFoundError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import probes, token_rotations, tokens

log = logging.getLogger(__name__)

_SALT_BYTES = 16
_CONTEXT = b"lomsong token rotation v1"


@dataclass(frozen=True)
class Rotation:
    """One rotation as ``token list``, the API and the fleet view show it."""

    id: int
    probe_id: str
    requested_at: float
    requested_by: str
    old_token_id: int | None
    new_token_id: int | None
    offered_at: float | None
    offers: int
    completed_at: float | None

    @property
    def state(self) -> str:
        """``requested`` (not yet offered), ``offered`` (the agent has not used it) or ``done``."""
        if self.completed_at is not None:
            return "done"
        return "offered" if self.new_token_id is not None else "requested"

    def as_json(self) -> dict[str, Any]:
        from lomsong.timefmt import iso

        return {
            "id": self.id,
            "probe_id": self.probe_id,
            "state": self.state,
            "requested_at": iso(self.requested_at),
            "requested_by": self.requested_by,
            "old_token_id": self.old_token_id,
            "new_token_id": self.new_token_id,
            "offered_at": iso(self.offered_at),
            "offers": self.offers,
            "completed_at": iso(self.completed_at),
        }


def request_rotation(
    engine: Engine,
    probe_id: str,
    *,
    by: str = "admin",
    clock: Callable[[], float] = time.time,
) -> Rotation:
    """Record that ``probe_id``'s token is to be replaced on its next report.

    Who may ask is the caller's business (the CLI holds the database; the API lets the admin
    and a province admin of the probe's province). A probe with a rotation still pending gets
    no second one (``ConflictError``).
    """
    with write_transaction(engine) as conn:
        if conn.execute(select(probes.c.id).where(probes.c.id == probe_id)).first() is None:
            raise NotFoundError(f"probe {probe_id!r} is not registered")
        pending = _pending(conn, probe_id)
        if pending is not None and _dead(conn, pending):
            # its new token was revoked by hand, or the token it replaces: it can never
            # complete, so it is closed and a new one begins
            conn.execute(
                update(token_rotations)
                .where(token_rotations.c.id == pending.id)
                .values(completed_at=clock(), sealed=None)
            )
            pending = None
        if pending is not None:
            waiting = (
                "its next report"
                if pending.state == "requested"
                else "the agent to use its new token"
            )
            raise ConflictError(
                f"probe {probe_id!r}: rotation {pending.id} is still {pending.state}, "
                f"waiting for {waiting}"
            )
        if (
            conn.execute(
                select(tokens.c.id).where(
                    tokens.c.probe_id == probe_id,
                    tokens.c.role == "probe",
                    tokens.c.revoked_at.is_(None),
                )
            ).first()
            is None
        ):
            raise ConflictError(
                f"probe {probe_id!r} has no valid token to rotate; "
                f"give it one with lomsong token create --probe {probe_id}"
            )
        rotation_id = conn.execute(
            token_rotations.insert()
            .values(probe_id=probe_id, requested_at=clock(), requested_by=by[:64], offers=0)
            .returning(token_rotations.c.id)
        ).scalar_one()
        row = conn.execute(select(token_rotations).where(token_rotations.c.id == rotation_id)).one()
    return _rotation(row._mapping)


def list_rotations(engine: Engine, *, pending_only: bool = False) -> list[Rotation]:
    """Every rotation (or the pending ones), oldest first."""
    query = select(token_rotations).order_by(token_rotations.c.id)
    if pending_only:
        query = query.where(token_rotations.c.completed_at.is_(None))
    with engine.connect() as conn:
        return [_rotation(r) for r in conn.execute(query).mappings()]


def rotation_notes(
    token_rows: Sequence[Mapping[str, Any]], pending: Sequence[Rotation]
) -> dict[int, str]:
    """What ``token list`` says beside each token of a pending rotation: ``→ N offered`` on the
    old token (N: the new one), ``← M`` on the new one, ``asked`` on a probe's valid tokens
    while the rotation waits for its next report."""
    notes: dict[int, str] = {}
    by_probe = {r.probe_id: r for r in pending}
    for t in token_rows:
        r = by_probe.get(t["probe_id"]) if t["role"] == "probe" else None
        if r is None:
            continue
        if r.new_token_id is None:
            if t["revoked_at"] is None:
                notes[t["id"]] = f"#{r.id} asked"
        elif t["id"] == r.old_token_id:
            notes[t["id"]] = f"#{r.id} → {r.new_token_id} offered ×{r.offers}"
        elif t["id"] == r.new_token_id:
            notes[t["id"]] = f"#{r.id} ← {r.old_token_id}, unused"
    return notes


def answer(
    engine: Engine, caller: Principal, bearer: str, *, clock: Callable[[], float] = time.time
) -> str | None:
    """What an accepted report's answer carries for its probe: the new token while a rotation
    is pending (drawn now if it was not yet), or nothing. A report sent with the new token
    completes the rotation instead (the old token is revoked).

    ``caller`` is the report's principal as the authenticator found it, with the pending
    rotation of its probe; the hot path costs nothing when there is none.
    """
    if caller.rotation_id is None or caller.role != "probe":
        return None
    if caller.token_id is not None and caller.token_id == caller.rotation_token_id:
        complete(engine, caller.rotation_id, caller.token_id, clock=clock)
        return None
    with write_transaction(engine) as conn:
        row = conn.execute(
            select(token_rotations).where(token_rotations.c.id == caller.rotation_id)
        ).first()
        if row is None or row.completed_at is not None:
            return None
        if caller.token_id is not None and row.new_token_id == caller.token_id:
            # the authenticator's cache did not know yet that this token is the new one
            _complete(conn, row.id, caller.token_id, clock())
            return None
        if row.new_token_id is None:
            return _draw(conn, row.id, row.probe_id, caller, bearer, clock())
        if row.old_token_id != caller.token_id or row.sealed is None:
            # sealed with another of the probe's tokens: only its holder can be given it
            return None
        token = unseal(row.sealed, bearer)
        new_hash = conn.execute(
            select(tokens.c.token_hash).where(
                tokens.c.id == row.new_token_id, tokens.c.revoked_at.is_(None)
            )
        ).scalar()
        if new_hash is None:
            log.warning(
                "rotation %d: its new token %d was revoked; ask for a new rotation",
                row.id,
                row.new_token_id,
            )
            return None
        if not hmac.compare_digest(new_hash, hash_token(token)):
            log.error("rotation %d: the sealed token does not match its hash", row.id)
            return None
        conn.execute(
            update(token_rotations)
            .where(token_rotations.c.id == row.id)
            .values(offers=token_rotations.c.offers + 1)
        )
        return token


def complete(
    engine: Engine, rotation_id: int, new_token_id: int, *, clock: Callable[[], float] = time.time
) -> bool:
    """The new token was used: revoke the old one; False if it was already done."""
    with write_transaction(engine) as conn:
        return _complete(conn, rotation_id, new_token_id, clock())


def seal(token: str, key: str, salt: bytes | None = None) -> str:
    """``token`` XOR a keystream of HMAC-SHA256(key, context ‖ salt ‖ block), as hex of salt ‖
    ciphertext; only the holder of ``key`` (the agent's old token) can open it."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    data = token.encode()
    return (salt + _xor(data, _keystream(key, salt, len(data)))).hex()


def unseal(sealed: str, key: str) -> str:
    raw = bytes.fromhex(sealed)
    salt, body = raw[:_SALT_BYTES], raw[_SALT_BYTES:]
    return _xor(body, _keystream(key, salt, len(body))).decode("utf-8", "replace")


def _keystream(key: str, salt: bytes, length: int) -> bytes:
    blocks = [
        hmac.new(key.encode(), _CONTEXT + salt + i.to_bytes(4, "big"), hashlib.sha256).digest()
        for i in range((length + 31) // 32)
    ]
    return b"".join(blocks)[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _draw(
    conn: Connection, rotation_id: int, probe_id: str, caller: Principal, bearer: str, now: float
) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    new_id = conn.execute(
        tokens.insert()
        .values(
            token_hash=hash_token(token),
            prefix=token[:10],
            role="probe",
            probe_id=probe_id,
            label=f"rotation {rotation_id}",
            created_at=now,
        )
        .returning(tokens.c.id)
    ).scalar_one()
    conn.execute(
        update(token_rotations)
        .where(token_rotations.c.id == rotation_id)
        .values(
            old_token_id=caller.token_id,
            new_token_id=new_id,
            sealed=seal(token, bearer),
            offered_at=now,
            offers=1,
        )
    )
    log.info("probe %s: rotation %d offers token %d", probe_id, rotation_id, new_id)
    return token


def _complete(conn: Connection, rotation_id: int, new_token_id: int, now: float) -> bool:
    row = conn.execute(
        select(token_rotations).where(
            token_rotations.c.id == rotation_id,
            token_rotations.c.new_token_id == new_token_id,
            token_rotations.c.completed_at.is_(None),
        )
    ).first()
    if row is None:
        return False
    if row.old_token_id is not None:
        conn.execute(
            update(tokens)
            .where(tokens.c.id == row.old_token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    conn.execute(
        update(token_rotations)
        .where(token_rotations.c.id == rotation_id)
        .values(completed_at=now, sealed=None)
    )
    log.info(
        "probe %s: rotation %d done; token %s revoked", row.probe_id, rotation_id, row.old_token_id
    )
    return True


def _dead(conn: Connection, r: Rotation) -> bool:
    """Whether a pending rotation can no longer complete: a token it names was revoked."""
    ids = [i for i in (r.old_token_id, r.new_token_id) if i is not None]
    if not ids:
        return False
    revoked = conn.execute(
        select(tokens.c.id).where(tokens.c.id.in_(ids), tokens.c.revoked_at.is_not(None))
    ).first()
    return revoked is not None


def _pending(conn: Connection, probe_id: str) -> Rotation | None:
    row = (
        conn.execute(
            select(token_rotations).where(
                token_rotations.c.probe_id == probe_id, token_rotations.c.completed_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    return _rotation(row) if row is not None else None


def _rotation(row: Any) -> Rotation:
    return Rotation(
        id=row["id"],
        probe_id=row["probe_id"],
        requested_at=row["requested_at"],
        requested_by=row["requested_by"],
        old_token_id=row["old_token_id"],
        new_token_id=row["new_token_id"],
        offered_at=row["offered_at"],
        offers=row["offers"],
        completed_at=row["completed_at"],
    )
