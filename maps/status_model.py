"""What the status page and an outage's page are built from, and the order they show it in.

The collector gathers these from its database and live state; the builders in
``status_page.py`` and ``outage_page.py`` only arrange them, so they can be tested without a
server. Plain values only: this module imports nothing geospatial and nothing of the collector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from lomsong.maps.probes import ProbeMarker

#: Worst first. A state this table does not know yet (a newer ``labels.PROBE_TEXT``) sorts
#: with "unknown": visible above the healthy ones, never hidden among them.
STATE_ORDER: dict[str, int] = {"down": 0, "partial": 1, "degraded": 2, "unknown": 3, "up": 4}
UNLISTED_STATE = STATE_ORDER["unknown"]

#: Outages worst first: a whole centre cut off, then a link down, then a link degraded.
CONDITION_ORDER: dict[str, int] = {"probe_silent": 0, "uplink_down": 1, "degraded": 2}


def state_rank(state: str) -> int:
    return STATE_ORDER.get(state, UNLISTED_STATE)


#: known: counted from the hamlets; until_back: a silent centre, whose cause (power or network)
#: and so whose hamlets are known only once it reports again; no_geodata: the collector has no
#: hamlets for this commune; failed: the count could not be made (logged on the collector)
ImpactState = Literal["known", "until_back", "no_geodata", "failed"]


@dataclass(frozen=True)
class Impact:
    """The hamlets and people an outage leaves without signal, or why that is not known."""

    state: ImpactState
    hamlets: int = 0
    population: int = 0
    without_power: int = 0
    #: the largest of them, (name, population), most people first
    largest: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class OutageView:
    """One row of the ``outages`` table with the names and consequences a reader needs."""

    id: str
    probe_id: str
    commune_code: str
    commune_name: str
    province_code: str
    province_name: str
    condition: str
    cause: str | None
    uplink: str | None
    operator: str | None
    started_at: float
    detected_at: float
    ended_at: float | None = None
    resolved_at: float | None = None
    impact: Impact | None = None
    #: names of the maintenance windows in force that cover it (its notifications are muted)
    maintenance: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        return self.ended_at is None


def worst_first(rows: Sequence[OutageView]) -> list[OutageView]:
    """Open outages in the order a duty officer should read them: the condition's gravity,
    outside maintenance before inside, most people cut off, then the oldest."""

    def key(o: OutageView) -> tuple[int, bool, int, float, str]:
        people = o.impact.population if o.impact and o.impact.state == "known" else 0
        rank = CONDITION_ORDER.get(o.condition, len(CONDITION_ORDER))
        return (rank, bool(o.maintenance), -people, o.started_at, o.id)

    return sorted(rows, key=key)


@dataclass(frozen=True)
class MaintenanceView:
    """A maintenance window in force now: what it covers and until when."""

    name: str
    #: what it applies to, in words ("province 04 · operator viettel"; "" for everything)
    scope: str
    until: float


@dataclass(frozen=True)
class NotificationView:
    """One attempt to deliver a message about an outage (``notification_attempts``)."""

    at: float
    receiver: str
    route: str
    #: firing or resolved
    status: str
    attempt: int
    ok: bool
    error: str | None = None


@dataclass
class ProvinceStatus:
    """A province on the status page: its probes with their state, its communes counted."""

    code: str
    name: str
    communes: int
    probes: list[ProbeMarker] = field(default_factory=list)
    open_outages: int = 0

    def count(self, state: str) -> int:
        return sum(p.state == state for p in self.probes)

    @property
    def worst(self) -> str:
        """The worst state of its probes; "up" when it has none (nothing to report)."""
        return min((p.state for p in self.probes), key=state_rank, default="up")

    @property
    def has_problems(self) -> bool:
        return self.open_outages > 0 or any(p.state != "up" for p in self.probes)


class AvailabilityBars(Protocol):
    """The 90-day availability bars per centre and per province, as HTML
    (``availability_bars.Bars``; without it the page draws none)."""

    def province(self, code: str) -> str: ...

    def centre(self, probe_id: str) -> str: ...


@dataclass(frozen=True)
class PendingEnrolment:
    """A box waiting for approval, as an admin or its province's admin sees it on the page."""

    id: int
    commune_code: str
    commune_name: str
    province_name: str
    hostname: str
    machine_id: str
    created_at: float
    #: ``name:operator@interface`` of each uplink proposed
    proposed: tuple[str, ...] = ()
    #: what the machine id was seen with before (flagged, never merged)
    reused: tuple[str, ...] = ()
