"""Geodata in the database: upserts for imports and synthetic data, loaders for the engine.

Writes take an open connection so that one import is one transaction (the caller opens it with
``write_transaction``): a failure half-way stores nothing. Hamlets are versioned: a hamlet whose
data changes gets ``version + 1`` and its previous row goes to ``hamlet_versions`` with the time
it was valid; a hamlet missing from a replacing set is retired (``retired_at``), never deleted.

The loaders (in ``loaders``, re-exported here) build the engine's columns (``Hamlets``,
``Sectors``, ``Readings``) and :func:`data_version` says when any of it changed, so that callers
can cache classifications.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, Table, delete, func, select, update

from lomsong.coverage.loaders import (
    HAMLET_DATA,
    data_version,
    hamlet_frame,
    hamlet_history,
    hamlets_from_frame,
    list_imports,
    load_hamlets,
    load_readings,
    load_sectors,
    near_province,
)
from lomsong.errors import ConflictError, GeodataError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import (
    boundaries,
    field_measurements,
    geodata_imports,
    hamlet_versions,
    hamlets,
    sites,
)

__all__ = [
    "CHUNK",
    "HAMLET_DATA",
    "Changes",
    "begin_import",
    "data_version",
    "finish_import",
    "hamlet_frame",
    "hamlet_history",
    "hamlets_from_frame",
    "list_imports",
    "load_hamlets",
    "load_readings",
    "load_sectors",
    "near_province",
    "store_synthetic",
    "upsert",
    "write_boundaries",
    "write_field",
    "write_hamlets",
    "write_sites",
]

#: rows per statement, and per step of a progress bar
CHUNK = 2_000

#: above this many ids, existing rows are read in one pass over the table
BULK = 5_000

#: called with the number of rows just written
Advance = Callable[[int], None]

SITE_DATA = tuple(c.name for c in sites.columns if c.name not in ("id", "import_id", "updated_at"))


@dataclass
class Changes:
    """What one write did to its table."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update`` on both engines."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    advance: Advance | None = None,
) -> None:
    """Insert ``rows``, replacing those whose ``keys`` exist (every row has every column)."""
    if not rows:
        return
    stmt = _insert(conn)(table)
    names = [c for c in rows[0] if c not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in names}
    )
    for chunk in _chunks(rows):
        conn.execute(stmt, list(chunk))
        if advance is not None:
            advance(len(chunk))


def _existing(
    conn: Connection, table: Table, key: str, ids: Sequence[Any]
) -> dict[Any, dict[str, Any]]:
    """The rows of ``table`` whose ``key`` is in ``ids``."""
    wanted = set(ids)
    column = table.c[key]
    out: dict[Any, dict[str, Any]] = {}
    if len(wanted) > BULK:
        # one pass over the table beats thousands of IN lists (slow on PostgreSQL)
        for row in conn.execute(select(table)).mappings():
            if row[key] in wanted:
                out[row[key]] = dict(row)
        return out
    for chunk in _chunks(sorted(wanted), 500):
        for row in conn.execute(select(table).where(column.in_(list(chunk)))).mappings():
            out[row[key]] = dict(row)
    return out


# -- imports -----------------------------------------------------------------------------------


def begin_import(
    conn: Connection,
    *,
    kind: str,
    source: str,
    sha256: str | None,
    crs: str | None,
    province: str | None,
    synthetic: bool,
    now: float,
) -> int:
    """The import's row, filled in by :func:`finish_import`; its id tags every row written."""
    return int(
        conn.execute(
            geodata_imports.insert()
            .values(
                kind=kind,
                source=source[:512],
                sha256=sha256,
                crs=None if crs is None else crs[:64],
                province_code=province,
                synthetic=synthetic,
                rows_total=0,
                rows_accepted=0,
                rows_rejected=0,
                report=None,
                created_at=now,
            )
            .returning(geodata_imports.c.id)
        ).scalar_one()
    )


def finish_import(
    conn: Connection, import_id: int, *, total: int, accepted: int, rejected: int, report: Any
) -> None:
    conn.execute(
        update(geodata_imports)
        .where(geodata_imports.c.id == import_id)
        .values(
            rows_total=total,
            rows_accepted=accepted,
            rows_rejected=rejected,
            report=orjson.dumps(report).decode(),
        )
    )


def write_boundaries(
    conn: Connection,
    records: Sequence[dict[str, Any]],
    import_id: int,
    now: float,
    advance: Advance | None = None,
) -> Changes:
    changes = Changes()
    if not records:
        return changes
    level = records[0]["level"]
    have = {
        code: (geom, pop)
        for code, geom, pop in conn.execute(
            select(boundaries.c.code, boundaries.c.geometry, boundaries.c.population).where(
                boundaries.c.level == level
            )
        )
    }
    fresh = []
    for r in records:
        old = have.get(r["code"])
        if old is not None and (bytes(old[0]), old[1]) == (r["geometry"], r["population"]):
            changes.unchanged += 1
            continue
        changes.inserted += old is None
        changes.updated += old is not None
        fresh.append({**r, "import_id": import_id, "updated_at": now})
    upsert(conn, boundaries, fresh, ("level", "code"), advance)
    return changes


def _values(row: dict[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    """A row's values to compare; WKB may come back as a memoryview."""
    return tuple(
        bytes(v) if isinstance(v, memoryview) else v for v in map(row.__getitem__, columns)
    )


def _version_data(row: dict[str, Any]) -> str:
    data = {k: row[k] for k in (*HAMLET_DATA, "version", "retired_at")}
    if data["geometry"] is not None:
        data["geometry"] = shapely.to_wkt(shapely.from_wkb(bytes(data["geometry"])))
    return orjson.dumps(data).decode()


def _archive(conn: Connection, old: Sequence[dict[str, Any]], now: float) -> None:
    rows = [
        {
            "hamlet_id": o["id"],
            "version": o["version"],
            "import_id": o["import_id"],
            "data": _version_data(o),
            "valid_from": o["updated_at"],
            "valid_to": now,
        }
        for o in old
    ]
    for chunk in _chunks(rows):
        conn.execute(hamlet_versions.insert(), list(chunk))


def write_hamlets(
    conn: Connection,
    records: Sequence[dict[str, Any]],
    import_id: int,
    now: float,
    *,
    retire_province: str | None = None,
    keep: frozenset[str] = frozenset(),
    retire_all: bool = False,
    retire_synthetic_only: bool = False,
    advance: Advance | None = None,
) -> Changes:
    """Upsert hamlets with versions; retire the scope's hamlets that ``records`` lack.

    The scope is ``retire_province`` (or every hamlet with ``retire_all``), limited to synthetic
    hamlets with ``retire_synthetic_only``; ids in ``keep`` (rows of the set that were rejected)
    are not retired.
    """
    changes = Changes()
    old = _existing(conn, hamlets, "id", [r["id"] for r in records])
    superseded: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for r in records:
        prev = old.get(r["id"])
        if prev is None:
            changes.inserted += 1
            version = 1
        elif prev["retired_at"] is None and _values(prev, HAMLET_DATA) == _values(r, HAMLET_DATA):
            changes.unchanged += 1
            continue
        else:
            changes.updated += 1
            superseded.append(prev)
            version = prev["version"] + 1
        rows.append(
            {
                **{k: r[k] for k in ("id", *HAMLET_DATA)},
                "version": version,
                "import_id": import_id,
                "retired_at": None,
                "updated_at": now,
            }
        )
    _archive(conn, superseded, now)
    upsert(conn, hamlets, rows, ("id",), advance)
    if retire_province is not None or retire_all:
        keep = keep | {r["id"] for r in records}
        scope = select(hamlets).where(hamlets.c.retired_at.is_(None))
        if retire_province is not None:
            scope = scope.where(hamlets.c.province_code == retire_province)
        if retire_synthetic_only:
            scope = scope.where(hamlets.c.synthetic.is_(True))
        gone = [dict(r) for r in conn.execute(scope).mappings() if r["id"] not in keep]
        _archive(conn, gone, now)
        for chunk in _chunks([g["id"] for g in gone], 500):
            conn.execute(
                update(hamlets)
                .where(hamlets.c.id.in_(list(chunk)))
                .values(
                    version=hamlets.c.version + 1,
                    retired_at=now,
                    import_id=import_id,
                    updated_at=now,
                )
            )
        changes.retired = len(gone)
    return changes


def write_sites(
    conn: Connection,
    records: Sequence[dict[str, Any]],
    import_id: int,
    now: float,
    *,
    advance: Advance | None = None,
) -> Changes:
    """Upsert sectors by id; an unchanged one keeps its import and time."""
    changes = Changes()
    old = _existing(conn, sites, "id", [r["id"] for r in records])
    rows = []
    for r in records:
        prev = old.get(r["id"])
        if prev is not None and _values(prev, SITE_DATA) == _values(r, SITE_DATA):
            changes.unchanged += 1
            continue
        changes.inserted += prev is None
        changes.updated += prev is not None
        rows.append(
            {**{k: r[k] for k in ("id", *SITE_DATA)}, "import_id": import_id, "updated_at": now}
        )
    upsert(conn, sites, rows, ("id",), advance)
    return changes


def write_field(
    conn: Connection,
    records: Sequence[dict[str, Any]],
    import_id: int | None,
    now: float,
    *,
    advance: Advance | None = None,
) -> Changes:
    rows = [{**r, "import_id": import_id, "received_at": now} for r in records]
    for chunk in _chunks(rows):
        conn.execute(field_measurements.insert(), list(chunk))
        if advance is not None:
            advance(len(chunk))
    return Changes(inserted=len(rows))


# -- synthetic data ----------------------------------------------------------------------------


def _frame_records(
    frame: pd.DataFrame, columns: Sequence[str], what: str, **fixed: Any
) -> list[dict[str, Any]]:
    """The frame's ``columns`` as rows (NaN → None), plus the ``fixed`` values on every row."""
    frame = pd.DataFrame(frame)
    if ("lat" not in frame or "lon" not in frame) and "geometry" in frame:
        frame = frame.assign(
            lat=shapely.get_y(frame["geometry"]), lon=shapely.get_x(frame["geometry"])
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GeodataError(f"synthetic {what} lack the columns {missing}")
    values = []
    for c in columns:
        column = frame[c]
        # Python scalars, None where missing (NaN, NA, NaT)
        values.append(column.astype(object).where(column.notna(), None).tolist())
    names = list(columns)
    return [{**dict(zip(names, row, strict=True)), **fixed} for row in zip(*values, strict=True)]


def store_synthetic(
    engine: Engine,
    hamlet_frame: pd.DataFrame,
    site_frame: pd.DataFrame,
    *,
    label: str,
    province: str | None,
    clock: Callable[[], float] = time.time,
    advance: Advance | None = None,
) -> tuple[int, Changes, int, Changes]:
    """Store the synthetic generator's frames for a province (or, with None, the whole country).

    They replace the scope's earlier synthetic hamlets (retired) and sectors (deleted); a scope
    that holds real hamlets is refused, so that synthetic ones never mix into real counts.
    Returns (hamlet import id, hamlet changes, site import id, site changes).
    """
    now = clock()
    # the generator's geometry is the hamlet's point, which lat and lon hold
    hamlet_columns = [c for c in ("id", *HAMLET_DATA) if c not in ("geometry", "synthetic")]
    hamlet_rows = _frame_records(
        hamlet_frame, hamlet_columns, "hamlets", geometry=None, synthetic=True
    )
    site_columns = [c for c in ("id", *SITE_DATA) if c != "synthetic"]
    site_rows = _frame_records(site_frame, site_columns, "sites", synthetic=True)
    with write_transaction(engine) as conn:
        real = (
            select(func.count())
            .select_from(hamlets)
            .where(hamlets.c.retired_at.is_(None), hamlets.c.synthetic.is_(False))
        )
        if province is not None:
            real = real.where(hamlets.c.province_code == province)
        n_real = conn.execute(real).scalar_one()
        if n_real:
            where = f"province {province}" if province else "the country"
            raise ConflictError(
                f"{where} has {n_real} real hamlets; synthetic hamlets would mix into their "
                f"counts (retire them with `geodata import hamlets … --replace` first)"
            )
        source = f"synthetic: {label}"
        h_id = begin_import(
            conn,
            kind="hamlets",
            source=source,
            sha256=None,
            crs="EPSG:4326",
            province=province,
            synthetic=True,
            now=now,
        )
        h_changes = write_hamlets(
            conn,
            hamlet_rows,
            h_id,
            now,
            retire_province=province,
            retire_all=province is None,
            retire_synthetic_only=True,
            advance=advance,
        )
        s_id = begin_import(
            conn,
            kind="sites",
            source=source,
            sha256=None,
            crs="EPSG:4326",
            province=province,
            synthetic=True,
            now=now,
        )
        keep = {r["id"] for r in site_rows}
        scope = select(sites.c.id).where(sites.c.synthetic.is_(True))
        if province is not None:
            scope = scope.where(sites.c.province_code == province)
        gone = [i for i in conn.execute(scope).scalars() if i not in keep]
        for chunk in _chunks(gone, 500):
            conn.execute(delete(sites).where(sites.c.id.in_(list(chunk))))
        s_changes = write_sites(conn, site_rows, s_id, now, advance=advance)
        s_changes.deleted = len(gone)
        for import_id, n, changes in (
            (h_id, len(hamlet_rows), h_changes),
            (s_id, len(site_rows), s_changes),
        ):
            finish_import(
                conn,
                import_id,
                total=n,
                accepted=n,
                rejected=0,
                report={"synthetic": True, "source": source, "changes": changes.as_dict()},
            )
    return h_id, h_changes, s_id, s_changes
