"""Provincial enrolment keys: made once, shown once, stored hashed, limited and revocable.

A key lets a freshly installed box ask to be enrolled in a commune of one province, and nothing
else: it is not a token (``collector/auth.py`` never finds it), so it can neither send reports
nor read anything. What the box asked stays pending until a person approves it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from lomsong.collector.auth import hash_token
from lomsong.enrolwire import ENROLMENT_KEY_PREFIX
from lomsong.errors import LomsongError, NotFoundError, ValidationError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import enrolment_keys, provinces
from lomsong.timefmt import iso


class EnrolmentRefused(LomsongError):
    """A request of the enrolment routes refused, with the HTTP status that says why: 401 for a
    key or poll secret the collector does not know, 403 for a key it knows that may no longer
    enrol (or a commune outside its province), 410 for a token already collected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class IssuedKey:
    id: int
    key: str
    province_code: str
    expires_at: float | None
    max_uses: int | None


@dataclass(frozen=True)
class KeyInfo:
    """A key as stored (never the key itself)."""

    id: int
    province_code: str
    uses: int


def create_key(
    engine: Engine,
    province_code: str,
    *,
    expires_in_seconds: float | None = None,
    max_uses: int | None = None,
    label: str | None = None,
    clock: Callable[[], float] = time.time,
) -> IssuedKey:
    """Make an enrolment key for a province; return it (shown once)."""
    if expires_in_seconds is not None and expires_in_seconds <= 0:
        raise ValidationError("--expires", expires_in_seconds, "must be a positive duration")
    if max_uses is not None and max_uses < 1:
        raise ValidationError("--max-uses", max_uses, "must be at least 1")
    now = clock()
    key = ENROLMENT_KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + expires_in_seconds if expires_in_seconds is not None else None
    with write_transaction(engine) as conn:
        known = set(conn.execute(select(provinces.c.code)).scalars())
        if province_code not in known:
            raise ValidationError(
                "--province", province_code, "unknown province code (2025 codes, 2 digits)"
            )
        key_id = conn.execute(
            enrolment_keys.insert()
            .values(
                key_hash=hash_token(key),
                prefix=key[:10],
                province_code=province_code,
                label=label,
                created_at=now,
                expires_at=expires_at,
                max_uses=max_uses,
                uses=0,
            )
            .returning(enrolment_keys.c.id)
        ).scalar_one()
    return IssuedKey(key_id, key, province_code, expires_at, max_uses)


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                enrolment_keys.c.id,
                enrolment_keys.c.prefix,
                enrolment_keys.c.province_code,
                enrolment_keys.c.label,
                enrolment_keys.c.created_at,
                enrolment_keys.c.expires_at,
                enrolment_keys.c.max_uses,
                enrolment_keys.c.uses,
                enrolment_keys.c.revoked_at,
            ).order_by(enrolment_keys.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def revoke_key(engine: Engine, key_id: int, clock: Callable[[], float] = time.time) -> None:
    with write_transaction(engine) as conn:
        done = conn.execute(
            update(enrolment_keys)
            .where(enrolment_keys.c.id == key_id, enrolment_keys.c.revoked_at.is_(None))
            .values(revoked_at=clock())
        ).rowcount
        if not done:
            row = conn.execute(
                select(enrolment_keys.c.id).where(enrolment_keys.c.id == key_id)
            ).first()
            if row is None:
                raise NotFoundError(f"enrolment key {key_id} does not exist")


def use_key(conn: Connection, key: str, now: float) -> KeyInfo:
    """Count one use of ``key`` inside the caller's write transaction, or refuse it.

    The count goes up in the same transaction that records the enrolment, so a key with
    ``max_uses = 60`` enrols 60 boxes however many ask at once.
    """
    row = (
        conn.execute(
            select(enrolment_keys)
            .where(enrolment_keys.c.key_hash == hash_token(key))
            .with_for_update()  # PostgreSQL: one use at a time (SQLite's BEGIN IMMEDIATE is)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise EnrolmentRefused(401, "enrolment key: unknown key (check it was copied whole)")
    name = f"enrolment key {row['id']} (province {row['province_code']})"
    if row["revoked_at"] is not None:
        raise EnrolmentRefused(403, f"{name} was revoked at {iso(row['revoked_at'])}")
    if row["expires_at"] is not None and now >= row["expires_at"]:
        raise EnrolmentRefused(403, f"{name} expired at {iso(row['expires_at'])}")
    if row["max_uses"] is not None and row["uses"] >= row["max_uses"]:
        raise EnrolmentRefused(
            403, f"{name} has been used {row['uses']} of {row['max_uses']} times"
        )
    conn.execute(
        update(enrolment_keys)
        .where(enrolment_keys.c.id == row["id"])
        .values(uses=enrolment_keys.c.uses + 1)
    )
    return KeyInfo(id=row["id"], province_code=row["province_code"], uses=row["uses"] + 1)
