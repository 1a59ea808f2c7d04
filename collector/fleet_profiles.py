"""Check profiles in the database, and the effective configuration each probe is served.

Layers live in ``check_profiles`` (one row per scope and key), so every replica on one
PostgreSQL serves the same, and a province admin manages their province over the API without
a shell on the collector. The merge rule is ``lomsong.config.profiles``'s.

Serving is the hot path: 3,321 agents ask every 10 s, nearly always to hear "not modified".
Each replica keeps every live layer in memory (a few hundred rows at most) and, at most once a
second, asks whether anything changed: every write gives its row the next ``revision`` (a
deleted layer keeps its row, with no document), so one read of ``max(revision)`` says so. The
effective configuration of a probe is then merged in memory, once per combination of layers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select, text

from lomsong.collector.auth import Principal
from lomsong.collector.registry import ProbeInfo
from lomsong.config.profiles import (
    SCOPES,
    EffectiveConfig,
    Merged,
    ProfileLayer,
    Scope,
    merge,
    parse_layer,
)
from lomsong.errors import NotFoundError, ValidationError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import check_profiles, communes, probes, provinces
from lomsong.timefmt import iso
from lomsong.wire import COMMUNE_CODE, NAME_PATTERN, PROVINCE_CODE

#: seconds a replica serves its layers before asking whether they changed
REFRESH_SECONDS = 1.0
_KEY_PATTERNS = {"province": PROVINCE_CODE, "commune": COMMUNE_CODE, "probe": NAME_PATTERN}


@dataclass(frozen=True)
class StoredLayer:
    scope: Scope
    key: str
    province_code: str | None
    layer: ProfileLayer
    revision: int

    @property
    def name(self) -> str:
        return layer_name(self.scope, self.key)


def layer_name(scope: str, key: str) -> str:
    """``national``, ``province:04``, ``commune:01273``, ``probe:cb-thuc-phan``."""
    return scope if scope == "national" else f"{scope}:{key}"


def check_scope(scope: str, key: str) -> Scope:
    """The scope, if it and its key are well formed; ``ValidationError`` naming them."""
    if scope not in SCOPES:
        raise ValidationError("scope", scope, f"expected one of {{{', '.join(SCOPES)}}}")
    if scope == "national":
        if key:
            raise ValidationError("key", key, "the national profile takes no key")
    elif not re.match(_KEY_PATTERNS[scope], key):
        raise ValidationError(scope, key, f"expected a value matching {_KEY_PATTERNS[scope]}")
    return scope


def province_of(conn: Connection, scope: Scope, key: str) -> str | None:
    """The province a layer belongs to; ``NotFoundError`` when its place or probe is unknown."""
    if scope == "national":
        return None
    if scope == "province":
        found = conn.execute(select(provinces.c.code).where(provinces.c.code == key)).first()
        if found is None:
            raise NotFoundError(f"province: {key!r} is not a province code")
        return key
    if scope == "commune":
        code = conn.execute(select(communes.c.province_code).where(communes.c.code == key)).scalar()
        if code is None:
            raise NotFoundError(f"commune: {key!r} is not a commune code")
        return str(code)
    code = conn.execute(
        select(communes.c.province_code)
        .join(probes, probes.c.commune_code == communes.c.code)
        .where(probes.c.id == key)
    ).scalar()
    if code is None:
        raise NotFoundError(f"probe: {key!r} is not registered")
    return str(code)


def chain_of(conn: Connection, scope: Scope, key: str) -> list[tuple[str, str]]:
    """The (scope, key) of the layers that apply above and at this one, national first."""
    chain = [("national", "")]
    if scope == "national":
        return chain
    if scope == "province":
        return [*chain, ("province", key)]
    if scope == "commune":
        return [*chain, ("province", province_of(conn, "commune", key) or ""), ("commune", key)]
    row = conn.execute(
        select(probes.c.commune_code, communes.c.province_code)
        .join(communes, communes.c.code == probes.c.commune_code)
        .where(probes.c.id == key)
    ).first()
    if row is None:
        raise NotFoundError(f"probe: {key!r} is not registered")
    return [*chain, ("province", row[1]), ("commune", row[0]), ("probe", key)]


def _stored(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    wanted = list(pairs)
    if not wanted:
        return {}
    rows = conn.execute(
        select(check_profiles).where(
            check_profiles.c.document.is_not(None),
            check_profiles.c.scope.in_({s for s, _ in wanted}),
            check_profiles.c.scope_key.in_({k for _, k in wanted}),
        )
    ).mappings()
    return {(r["scope"], r["scope_key"]): r for r in rows if (r["scope"], r["scope_key"]) in wanted}


def set_layer(
    engine: Engine,
    scope: str,
    key: str,
    doc: object,
    *,
    toml: str | None = None,
    by: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Validate and store a layer (replacing the one there); return it as the API shows it.

    The layer is merged with the layers above it before it is stored, so a layer that clashes
    with them (a shorter interval than a national check's timeout) is refused by name.
    """
    checked = check_scope(scope, key)
    layer = parse_layer(doc)
    with write_transaction(engine) as conn:
        province = province_of(conn, checked, key)
        chain = chain_of(conn, checked, key)
        above = _stored(conn, chain[:-1])
        layers = [
            (layer_name(s, k), ProfileLayer.model_validate_json(above[(s, k)]["document"]))
            for s, k in chain[:-1]
            if (s, k) in above
        ]
        merged = merge([*layers, (layer_name(checked, key), layer)])
        revision = _next_revision(conn)
        document = orjson.dumps(layer.model_dump(exclude_defaults=True)).decode()
        values = {
            "province_code": province,
            "document": document,
            "toml": toml,
            "revision": revision,
            "updated_at": clock(),
            "updated_by": by,
        }
        done = conn.execute(
            check_profiles.update()
            .where(check_profiles.c.scope == checked, check_profiles.c.scope_key == key)
            .values(**values)
        ).rowcount
        if not done:
            conn.execute(check_profiles.insert().values(scope=checked, scope_key=key, **values))
        row = conn.execute(
            select(check_profiles).where(
                check_profiles.c.scope == checked, check_profiles.c.scope_key == key
            )
        ).mappings()
        view = layer_view(row.one())
    view["merged_checks"] = len(merged.checks)
    return view


def delete_layer(
    engine: Engine, scope: str, key: str, *, clock: Callable[[], float] = time.time
) -> None:
    """Remove a layer; its probes fall back to the layers above (or their local checks)."""
    checked = check_scope(scope, key)
    with write_transaction(engine) as conn:
        revision = _next_revision(conn)
        done = conn.execute(
            check_profiles.update()
            .where(
                check_profiles.c.scope == checked,
                check_profiles.c.scope_key == key,
                check_profiles.c.document.is_not(None),
            )
            .values(document=None, toml=None, revision=revision, updated_at=clock())
        ).rowcount
    if not done:
        raise NotFoundError(f"{layer_name(checked, key)}: no such profile")


def _next_revision(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        # replicas writing at once would take the same number; SQLite's write lock is taken
        # at BEGIN already (write_transaction)
        conn.execute(text("LOCK TABLE check_profiles IN SHARE ROW EXCLUSIVE MODE"))
    top = conn.execute(select(func.max(check_profiles.c.revision))).scalar()
    return int(top or 0) + 1


def get_layer(conn: Connection, scope: str, key: str) -> dict[str, Any]:
    checked = check_scope(scope, key)
    row = (
        conn.execute(
            select(check_profiles).where(
                check_profiles.c.scope == checked,
                check_profiles.c.scope_key == key,
                check_profiles.c.document.is_not(None),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"{layer_name(checked, key)}: no such profile")
    return layer_view(row)


def list_layers(conn: Connection, readable: frozenset[str] | None) -> list[dict[str, Any]]:
    """Every live layer the caller may read (``readable``: provinces, None for all), in merge
    order."""
    rows = conn.execute(
        select(check_profiles).where(check_profiles.c.document.is_not(None))
    ).mappings()
    out = [
        layer_view(r)
        for r in rows
        if readable is None or r["province_code"] is None or r["province_code"] in readable
    ]
    out.sort(key=lambda v: (SCOPES.index(v["scope"]), v["key"]))
    return out


def layer_view(row: Any) -> dict[str, Any]:
    doc = orjson.loads(row["document"])
    return {
        "scope": row["scope"],
        "key": row["scope_key"],
        "name": layer_name(row["scope"], row["scope_key"]),
        "province": row["province_code"],
        "revision": row["revision"],
        "updated_at": iso(row["updated_at"]),
        "updated_by": row["updated_by"],
        "profile": doc,
        "toml": row["toml"],
    }


def may_write(caller: Principal, province: str | None) -> bool:
    """The admin writes every layer; a province admin their provinces' (never the national)."""
    return caller.is_admin or (
        caller.role == "province_admin" and province is not None and province in caller.provinces
    )


def may_read(caller: Principal, province: str | None) -> bool:
    """The national layer is read by every person's token; the others by their province's."""
    if caller.role == "probe":
        return False
    return province is None or caller.may_read_province(province)


# --- the effective configuration ---


def _layers_for(
    live: dict[tuple[str, str], StoredLayer], probe_id: str, commune: str, province: str
) -> list[StoredLayer]:
    keys = [("national", ""), ("province", province), ("commune", commune), ("probe", probe_id)]
    return [live[k] for k in keys if k in live]


def _effective(probe_id: str, chosen: Sequence[StoredLayer], merged: Merged) -> EffectiveConfig:
    return EffectiveConfig(
        probe_id=probe_id,
        version=merged.version,
        layers=[s.name for s in chosen],
        checks=list(merged.checks),
    )


def _load(conn: Connection) -> tuple[int, dict[tuple[str, str], StoredLayer]]:
    top = 0
    live: dict[tuple[str, str], StoredLayer] = {}
    for r in conn.execute(select(check_profiles)).mappings():
        top = max(top, int(r["revision"]))
        if r["document"] is None:
            continue
        live[(r["scope"], r["scope_key"])] = StoredLayer(
            r["scope"],
            r["scope_key"],
            r["province_code"],
            ProfileLayer.model_validate_json(r["document"]),
            int(r["revision"]),
        )
    return top, live


def merge_stored(chosen: Sequence[StoredLayer]) -> Merged:
    return merge([(s.name, s.layer) for s in chosen])


def effective_config(conn: Connection, probe: ProbeInfo) -> EffectiveConfig | None:
    """What ``probe`` is served now, read from the database; None: no layer applies."""
    _, live = _load(conn)
    chosen = _layers_for(live, probe.id, probe.commune_code, probe.province_code)
    if not chosen:
        return None
    return _effective(probe.id, chosen, merge_stored(chosen))


def served_config_versions(conn: Connection, probe_ids: Sequence[str]) -> dict[str, str]:
    """The configuration version the collector serves now to each of ``probe_ids``; a probe no
    layer applies to (it runs its local checks) and an unknown id are left out."""
    if not probe_ids:
        return {}
    rows = conn.execute(
        select(probes.c.id, probes.c.commune_code, communes.c.province_code)
        .join(communes, communes.c.code == probes.c.commune_code)
        .where(probes.c.id.in_(list(probe_ids)))
    )
    return served_versions(conn, ((pid, commune, province) for pid, commune, province in rows))


def served_versions(conn: Connection, places: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """As ``served_config_versions``, for (probe id, commune, province) already at hand: one
    read of the layers whatever their number."""
    _, live = _load(conn)
    if not live:
        return {}
    memo: dict[tuple[int, ...], str] = {}
    out: dict[str, str] = {}
    for pid, commune, province in places:
        chosen = _layers_for(live, pid, commune, province)
        if not chosen:
            continue
        key = tuple(s.revision for s in chosen)
        if key not in memo:
            try:
                memo[key] = merge_stored(chosen).version
            except ValidationError:
                continue  # layers that clash: nothing can be served (see ProfileCache)
        out[pid] = memo[key]
    return out


class ProfileCache:
    """Each replica's copy of the layers, and the effective configurations merged from them."""

    def __init__(
        self,
        engine: Engine,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._revision = -1
        self._live: dict[tuple[str, str], StoredLayer] = {}
        self._merged: dict[tuple[int, ...], Merged | ValidationError] = {}
        self._top_sql = "SELECT max(revision) FROM check_profiles"

    def _fresh(self) -> dict[tuple[str, str], StoredLayer]:
        now = self._clock()
        with self._lock:
            if now - self._checked_at < self._refresh:
                return self._live
        with self._engine.connect() as conn:
            top = int(conn.exec_driver_sql(self._top_sql).scalar() or 0)
            if top != self._revision:
                top, live = _load(conn)
            else:
                live = None
        with self._lock:
            if live is not None:
                self._live, self._revision, self._merged = live, top, {}
            self._checked_at = now
            return self._live

    def forget(self) -> None:
        """Ask the database at the next request (this replica just wrote a layer)."""
        with self._lock:
            self._checked_at = float("-inf")

    def served(self, probe: ProbeInfo) -> Served | None:
        """What ``probe`` is served: None when no layer applies. Layers that clash (a
        province's defaults against a national check) raise ``ValidationError``."""
        live = self._fresh()
        chosen = _layers_for(live, probe.id, probe.commune_code, probe.province_code)
        if not chosen:
            return None
        key = tuple(s.revision for s in chosen)
        with self._lock:
            merged = self._merged.get(key)
        if merged is None:
            try:
                merged = merge_stored(chosen)
            except ValidationError as exc:
                merged = exc
            with self._lock:
                if len(self._merged) > 10_000:
                    self._merged.clear()
                self._merged[key] = merged
        if isinstance(merged, ValidationError):
            raise merged
        return Served(probe.id, merged)


@dataclass(frozen=True)
class Served:
    """A probe's effective configuration, as the route answers it."""

    probe_id: str
    merged: Merged

    @property
    def version(self) -> str:
        return self.merged.version

    @property
    def etag(self) -> str:
        return f'"{self.merged.version}"'

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "probe_id": self.probe_id,
                "version": self.merged.version,
                "layers": list(self.merged.layers),
                "checks": list(self.merged.checks),
            }
        )
