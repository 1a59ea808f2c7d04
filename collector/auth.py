"""Tokens and roles: who may write which probe's reports and read which provinces.

A token is shown once when it is made and stored only as its SHA-256: tokens are long random
strings, so a fast hash is as safe as a slow one and keeps the per-request check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Engine, select, update

from lomsong.errors import NotFoundError, ValidationError
from lomsong.storage.database import unavailable, write_transaction
from lomsong.storage.schema import probes, provinces, tokens

Role = Literal["probe", "viewer", "province_admin", "admin"]
#: roles that read the provinces listed on their token; a province admin may also approve the
#: enrolments of boxes in them (``collector/enrolments.py``)
PROVINCIAL_ROLES = ("viewer", "province_admin")
TOKEN_PREFIX = "lst_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a probe, a viewer or a province admin of some provinces, or an admin."""

    role: Role
    token_id: int | None = None
    probe_id: str | None = None
    provinces: frozenset[str] = frozenset()
    #: a probe's pending token rotation (``collector/token_rotation.py``), and the new token's
    #: id once drawn (``Authenticator`` keeps the pending ones in memory)
    rotation_id: int | None = None
    rotation_token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_read_province(self, code: str) -> bool:
        return self.role == "admin" or (self.role in PROVINCIAL_ROLES and code in self.provinces)

    def may_enrol_in(self, code: str) -> bool:
        """Whether this caller may see and decide the enrolments of boxes in province ``code``."""
        return self.role == "admin" or (self.role == "province_admin" and code in self.provinces)

    def readable_provinces(self) -> frozenset[str] | None:
        """Province codes this principal may read; ``None`` means all of them."""
        return (
            None
            if self.role == "admin"
            else self.provinces
            if self.role in PROVINCIAL_ROLES
            else frozenset()
        )


@dataclass(frozen=True)
class IssuedToken:
    id: int
    token: str
    role: Role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: Engine,
    *,
    role: Role,
    probe_id: str | None = None,
    province_codes: Iterable[str] = (),
    label: str | None = None,
    clock: Callable[[], float] = time.time,
) -> IssuedToken:
    """Make a token for a probe, a viewer or province admin of provinces, or an admin; return it
    (shown once)."""
    codes = sorted(set(province_codes))
    with write_transaction(engine) as conn:
        if role == "probe":
            if probe_id is None:
                raise ValidationError("--probe", None, "a probe token needs the probe id")
            if conn.execute(select(probes.c.id).where(probes.c.id == probe_id)).first() is None:
                raise NotFoundError(f"probe {probe_id!r} is not registered")
        elif role in PROVINCIAL_ROLES:
            if not codes:
                raise ValidationError(
                    "--province", None, f"a {role} token needs at least one province"
                )
            known = set(conn.execute(select(provinces.c.code)).scalars())
            for code in codes:
                if code not in known:
                    raise ValidationError(
                        "--province",
                        code,
                        f"unknown province code; known: {', '.join(sorted(known))}",
                    )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = conn.execute(
            tokens.insert()
            .values(
                token_hash=hash_token(token),
                prefix=token[:10],
                role=role,
                probe_id=probe_id if role == "probe" else None,
                provinces=",".join(codes) if role in PROVINCIAL_ROLES else None,
                label=label,
                created_at=clock(),
            )
            .returning(tokens.c.id)
        ).scalar_one()
    return IssuedToken(id=token_id, token=token, role=role)


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                tokens.c.id,
                tokens.c.prefix,
                tokens.c.role,
                tokens.c.probe_id,
                tokens.c.provinces,
                tokens.c.label,
                tokens.c.created_at,
                tokens.c.revoked_at,
            ).order_by(tokens.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def revoke_token(engine: Engine, token_id: int, clock: Callable[[], float] = time.time) -> None:
    with write_transaction(engine) as conn:
        done = conn.execute(
            update(tokens)
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=clock())
        ).rowcount
        if not done:
            exists = conn.execute(select(tokens.c.id).where(tokens.c.id == token_id)).first()
            if exists is None:
                raise NotFoundError(f"token {token_id} does not exist")


class Authenticator:
    """Turns a bearer token into a :class:`Principal`, with a short cache for the hot path."""

    def __init__(
        self,
        engine: Engine,
        admin_secret: str,
        *,
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._admin_secret = admin_secret
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        # Plain SQL: with thousands of probes each reporting every 30 s, nearly every request
        # misses the cache, and building a Core statement each time costs more than the query.
        p = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._lookup_sql = (
            "SELECT id, role, probe_id, provinces FROM tokens "
            f"WHERE token_hash = {p} AND revoked_at IS NULL"
        )
        # The pending token rotations, read at most once per cache_seconds for every probe
        # together rather than joined to each lookup: a report pays a dict lookup for them.
        self._rotations_sql = (
            "SELECT probe_id, id, new_token_id FROM token_rotations WHERE completed_at IS NULL"
        )
        self._rotations: dict[str, tuple[int, int | None]] = {}
        self._rotations_at: float | None = None

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token stands for, or ``None`` for an unknown or revoked token."""
        if self._admin_secret and hmac.compare_digest(token.encode(), self._admin_secret.encode()):
            return Principal(role="admin")
        digest = hash_token(token)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._cache_seconds:
            principal = hit[1]
        else:
            principal = self._lookup(digest)
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal)
        if principal is None or principal.probe_id is None:
            return principal
        pending = self._pending_rotations(now).get(principal.probe_id)
        if pending is None:
            return principal
        return replace(principal, rotation_id=pending[0], rotation_token_id=pending[1])

    def _lookup(self, digest: str) -> Principal | None:
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql(self._lookup_sql, (digest,)).first()
        if row is None:
            return None
        token_id, role, probe_id, province_codes = row
        codes = frozenset(province_codes.split(",")) if province_codes else frozenset()
        return Principal(role=role, token_id=token_id, probe_id=probe_id, provinces=codes)

    def _pending_rotations(self, now: float) -> dict[str, tuple[int, int | None]]:
        """probe id → (rotation id, new token id) of the pending rotations, at most
        ``cache_seconds`` old. With the database away the last ones read stand: a rotation
        only waits, and a token known from the cache is still served from memory."""
        with self._lock:
            at, known = self._rotations_at, self._rotations
        if at is not None and now - at < self._cache_seconds:
            return known
        try:
            with self._engine.connect() as conn:
                rows = conn.exec_driver_sql(self._rotations_sql).all()
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            return known
        fresh = {probe_id: (rid, new_id) for probe_id, rid, new_id in rows}
        with self._lock:
            self._rotations, self._rotations_at = fresh, now
        return fresh

    def forget(self) -> None:
        """Drop the caches: a rotation moved on here, and this replica should know at once
        (others know within ``cache_seconds``)."""
        with self._lock:
            self._cache.clear()
            self._rotations_at = None
