"""The outages open right now, as every server wing reads them.

The collector's maps, status page and coverage overlay and the coverage command line all ask
the same question of the ``outages`` table, so it is asked in one place.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select

from lomsong.storage.schema import outages


def open_outages(
    engine: Engine, provinces: str | Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Outages with no ``ended_at`` as whole rows, oldest first.

    ``provinces`` is one province code, several, or ``None`` for every province.
    """
    query = select(outages).where(outages.c.ended_at.is_(None))
    if isinstance(provinces, str):
        query = query.where(outages.c.province_code == provinces)
    elif provinces is not None:
        query = query.where(outages.c.province_code.in_(sorted(provinces)))
    # the id breaks ties so that equal start times come back in a stable order
    query = query.order_by(outages.c.started_at, outages.c.id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
