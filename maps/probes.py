"""Probes as the maps and the status page show them: where, up or down, since when.

Plain values; the collector judges them from its registry, live state and open outages.
Imports nothing geospatial, so that the status page works on a collector installed without
the geo extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lomsong.errors import ValidationError
from lomsong.words import PROBE_STATES, UPLINK_STATES

#: a centre's states and an uplink's, as ``lomsong.words`` names them (README, *Words*)
STATES = tuple(PROBE_STATES)
LINK_STATES = tuple(UPLINK_STATES)


@dataclass(frozen=True)
class UplinkState:
    name: str
    operator: str
    #: up, degraded, failing (checks fail, not judged yet), down or unknown
    state: str

    def __post_init__(self) -> None:
        if self.state not in LINK_STATES:
            raise ValidationError("uplink.state", self.state, f"expected one of {LINK_STATES}")


@dataclass(frozen=True)
class OutageFact:
    """An open outage of a probe, as the popup and the status page show it."""

    condition: str
    uplink: str | None
    operator: str | None
    started_at: float
    cause: str | None


@dataclass(frozen=True)
class ProbeMarker:
    """A probe where its commune centre is, with what the collector knows of it right now."""

    id: str
    label: str | None
    commune_code: str
    commune_name: str
    province_code: str
    lon: float
    lat: float
    #: up, degraded, partial (some uplinks down), down or unknown (never heard from)
    state: str
    #: when the present down, partial or degraded state began
    since: float | None
    last_seen: float | None
    uplinks: tuple[UplinkState, ...] = ()
    outages: tuple[OutageFact, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValidationError("probe.state", self.state, f"expected one of {STATES}")

    def digest(self) -> tuple[Any, ...]:
        """What the pages show of this probe, with the last-seen time to the minute: two
        probes with equal digests draw the same (durations are computed in the browser)."""
        seen = None if self.last_seen is None else int(self.last_seen // 60)
        return (self.id, self.label, self.state, self.since, seen, self.uplinks, self.outages)
