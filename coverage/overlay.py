"""The live overlay's input: which (commune, operator) links the open outages take down.

Plain Python on outage rows (``storage.outages.open_outages``), so that the collector can
weigh an outage without the geo stack; ``compute.with_outages`` lays the links on an area.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: silent probes whose cause says the commune lost its links
SILENT_CAUSES = ("power", "network")


def down_links(rows: Iterable[Mapping[str, Any]], operators: Iterable[str]) -> set[tuple[str, str]]:
    """(commune code, operator) pairs that the open outages take down.

    ``uplink_down`` with an operator → that pair; ``probe_silent`` with cause power or network
    → every operator of that commune. Degraded links, fixed-line uplinks and silences of
    unknown cause take nothing down.
    """
    keys = tuple(operators)
    out: set[tuple[str, str]] = set()
    for r in rows:
        if r["condition"] == "uplink_down" and r["operator"] in keys:
            out.add((r["commune_code"], r["operator"]))
        elif r["condition"] == "probe_silent" and r["cause"] in SILENT_CAUSES:
            out.update((r["commune_code"], op) for op in keys)
    return out
