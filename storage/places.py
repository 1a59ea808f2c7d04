"""The 34 provinces and 3,321 communes of 2025, loaded from the bundled reference data."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from lomsong.storage.database import write_transaction
from lomsong.storage.schema import communes, provinces

DATA = files("lomsong") / "data" / "vn"


@dataclass(frozen=True)
class Counts:
    provinces: int
    communes: int


def bundled_provinces() -> list[dict[str, Any]]:
    """Rows of ``vn_provinces_2025.csv``."""
    with (DATA / "vn_provinces_2025.csv").open(encoding="utf-8") as fh:
        return [{**row, "area_km2": float(row["area_km2"])} for row in csv.DictReader(fh)]


def bundled_communes() -> list[dict[str, Any]]:
    """Rows of ``vn_communes_2025_points.csv`` in the ``communes`` table's shape."""
    with (DATA / "vn_communes_2025_points.csv").open(encoding="utf-8") as fh:
        return [
            {
                "code": row["code"],
                "name": row["name"],
                "type": row["type"],
                "province_code": row["province_code"],
                "lat": float(row["lat"]),
                "lon": float(row["lon"]),
                "area_km2": float(row["area_km2"]),
            }
            for row in csv.DictReader(fh)
        ]


def load_places(engine: Engine) -> Counts:
    """Insert the bundled provinces and communes that the database does not have yet."""
    with write_transaction(engine) as conn:
        _insert_missing(conn, provinces, bundled_provinces())
        _insert_missing(conn, communes, bundled_communes())
        return count_places(conn)


def count_places(conn: Connection) -> Counts:
    n_prov = conn.execute(select(func.count()).select_from(provinces)).scalar_one()
    n_comm = conn.execute(select(func.count()).select_from(communes)).scalar_one()
    return Counts(provinces=n_prov, communes=n_comm)


def _insert_missing(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    have = set(conn.execute(select(table.c.code)).scalars())
    fresh = [row for row in rows if row["code"] not in have]
    if fresh:
        conn.execute(table.insert(), fresh)
