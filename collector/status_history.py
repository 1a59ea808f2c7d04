"""The status page's 90-day bars, gathered in one query whatever the number of centres.

``availability_read.daily_availability`` reads every centre's stored days at once (one
``SELECT`` over ``availability_daily``); the bars' uptime figures are summed from the same days,
so the page needs no query per centre and none per window.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from lomsong.collector.availability_read import daily_availability
from lomsong.maps.availability_bars import Bars, Day

#: how many days a bar shows
BAR_DAYS = 90


def availability_bars(
    engine: Engine, probe_ids: Collection[str] | None, *, now: float, days: int = BAR_DAYS
) -> Bars:
    """The bars of ``probe_ids`` (every centre when ``None``) and of their provinces."""
    data = daily_availability(engine, probe_ids, days=days, now=now)
    return Bars(data["days"], _cells(data["probes"]), _cells(data["provinces"]))


def _cells(
    table: Mapping[str, Sequence[Mapping[str, Any] | None]],
) -> dict[str, list[Day | None]]:
    return {
        key: [
            None
            if c is None
            else Day(
                c["day"],
                c["observed_seconds"],
                c["down_seconds"],
                c["maintenance_seconds"],
                c["outages"],
            )
            for c in cells
        ]
        for key, cells in table.items()
    }
