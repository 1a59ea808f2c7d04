"""The outage history in the ``outages`` table: what the detector changed, and the open ones.

The detector keeps its outages in memory; each tick writes the ones it opened, updated or
closed here, one upsert per outage, so that the history API, the pages and the maps read them
and a new leader starts from the open ones. Rows and ``Outage`` objects convert both ways with
``outage_row`` and ``outage_from_row``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from lomsong.collector.detector import Change, Outage
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import outages

#: The columns a later change of an outage may move; the rest is fixed when it opens.
_CHANGING = ("cause", "started_at", "ended_at", "resolved_at", "updated_at")


class OutageHistory:
    """Writes the detector's changes to the ``outages`` table and reads the open outages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = postgresql if engine.dialect.name == "postgresql" else sqlite

    def persist(self, changes: Sequence[Change], now: float) -> None:
        """Upsert the newest state of every outage the changes touch, in one transaction."""
        if not changes:
            return
        ins = self._dialect.insert(outages)
        stmt = ins.on_conflict_do_update(
            index_elements=["id"], set_={c: ins.excluded[c] for c in _CHANGING}
        )
        with write_transaction(self.engine) as conn:
            conn.execute(stmt, [outage_row(o, now) for o in latest(changes)])

    def open_outages(self) -> list[Outage]:
        """The outages not ended yet, as a new leader's detector restores them."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outages).where(outages.c.ended_at.is_(None))).mappings()
            return [outage_from_row(r) for r in rows]


def latest(changes: Sequence[Change]) -> list[Outage]:
    """Each outage the changes touch once, in its newest state, in order of first change."""
    out: dict[str, Outage] = {}
    for ch in changes:
        out[ch.outage.id] = ch.outage
    return list(out.values())


def outage_row(o: Outage, now: float) -> dict[str, object]:
    """The ``outages`` row of ``o``, written at ``now``."""
    return {
        "id": o.id,
        "probe_id": o.probe_id,
        "commune_code": o.commune_code,
        "province_code": o.province_code,
        "condition": o.condition,
        "cause": o.cause,
        "uplink": o.uplink,
        "operator": o.operator,
        "started_at": o.started_at,
        "ended_at": o.ended_at,
        "detected_at": o.detected_at,
        "resolved_at": o.resolved_at,
        "updated_at": now,
    }


def outage_from_row(m: Mapping[Any, Any]) -> Outage:
    """The ``Outage`` an ``outages`` row holds."""
    return Outage(
        id=m["id"],
        probe_id=m["probe_id"],
        commune_code=m["commune_code"],
        province_code=m["province_code"],
        condition=m["condition"],
        cause=m["cause"],
        started_at=m["started_at"],
        detected_at=m["detected_at"],
        uplink=m["uplink"],
        operator=m["operator"],
        ended_at=m["ended_at"],
        resolved_at=m["resolved_at"],
    )
