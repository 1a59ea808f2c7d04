"""The demo's script: which links fail and which agents stop, when, and what must follow.

The scenario is fixed, so every run tells the same story: a Viettel link fails in Bảo Lạc, the
agent of Thục Phán is stopped for maintenance, Hà Quảng loses power, the fibre of Trùng Khánh is
cut and a VNPT transmission ring leaves three neighbouring communes without VinaPhone; each is
repaired a minute or so later. Times count from the moment every agent is reporting.

From the same incidents follow the expectations a ``--minutes`` run is judged by: the outages
the collector must have recorded, opened and closed, with the right condition, operator and
cause, and the notifications the webhook sink must have received, firing and resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lomsong.demo.world import CHECK_INTERVAL_SECONDS, CHECK_JITTER_SECONDS, Received

IncidentKind = Literal["link", "agent", "power"]
Action = Literal["cut", "restore", "stop", "start", "power_cut", "power_back"]

#: Names people read for the demo's uplinks' operators.
OPERATOR_NAMES = {"fibre": "fibre", "viettel": "Viettel", "vinaphone": "VinaPhone (VNPT)"}


@dataclass(frozen=True)
class Incident:
    """Something that goes wrong at ``start`` seconds into the scenario and is fixed at ``end``."""

    kind: IncidentKind
    communes: tuple[str, ...]
    start: float
    end: float
    #: the uplink that fails, for a ``link`` incident
    uplink: str | None = None


#: The story. Communes by 2025 code: 01321 Xã Bảo Lạc, 01273 Phường Thục Phán, 01438 Xã Hà Quảng,
#: 01477 Xã Trùng Khánh, 01726 Xã Nguyên Bình, 01729 Xã Tĩnh Túc, 01738 Xã Ca Thành.
INCIDENTS: tuple[Incident, ...] = (
    Incident("link", ("01321",), 0, 70, "viettel-4g"),
    Incident("agent", ("01273",), 5, 75),
    Incident("power", ("01438",), 10, 80),
    Incident("link", ("01477",), 15, 85, "fibre"),
    Incident("link", ("01726", "01729", "01738"), 20, 90, "vnpt-4g"),
)

#: After the last repair: M good runs close an uplink outage (two check intervals and their
#: jitter), then the group's next message waits up to its group_interval; plus a margin.
SETTLE_SECONDS = 2 * (CHECK_INTERVAL_SECONDS + CHECK_JITTER_SECONDS) + 25.0


@dataclass(frozen=True)
class Step:
    at: float
    action: Action
    incident: Incident


@dataclass(frozen=True)
class Place:
    code: str
    name: str
    probe_id: str

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


@dataclass(frozen=True)
class OutageRecord:
    """An outage as the collector stored it."""

    probe_id: str
    commune_code: str
    condition: str
    cause: str | None
    uplink: str | None
    operator: str | None
    ended_at: float | None


def steps(incidents: Sequence[Incident] = INCIDENTS) -> list[Step]:
    """Every break and every repair, in time order."""
    begin: dict[IncidentKind, Action] = {"link": "cut", "agent": "stop", "power": "power_cut"}
    end: dict[IncidentKind, Action] = {"link": "restore", "agent": "start", "power": "power_back"}
    out = [Step(i.start, begin[i.kind], i) for i in incidents]
    out += [Step(i.end, end[i.kind], i) for i in incidents]
    return sorted(out, key=lambda s: s.at)


def duration(incidents: Sequence[Incident] = INCIDENTS) -> float:
    """Seconds from the scenario's start until everything should be resolved and told."""
    return max(i.end for i in incidents) + SETTLE_SECONDS


def describe(step: Step, places: Mapping[str, Place], operators: Mapping[str, str]) -> str:
    """What happens, for people watching: Vietnamese place names, and what the collector should
    make of it."""
    where = ", ".join(str(places[c]) for c in step.incident.communes)
    uplink = step.incident.uplink or ""
    operator = OPERATOR_NAMES.get(operators.get(uplink, ""), operators.get(uplink, ""))
    many = len(step.incident.communes) > 1
    if step.action in ("cut", "restore"):
        links = f"the {operator} link{'s' if many else ''} ({uplink})"
        if step.action == "cut":
            regional = "; one regional alert" if many else ""
            verb = "fail" if many else "fails"
            text = f"{links} {verb} (expect: uplink down, network{regional})"
        else:
            text = f"{links} {'work' if many else 'works'} again"
    else:
        text = {
            "stop": "the agent is stopped for maintenance, the box stays on "
            "(expect: centre silent, cause unknown)",
            "start": "the agent runs again on the same boot",
            "power_cut": "power cut: the centre goes dark and its agent dies "
            "(expect: centre silent, cause power)",
            "power_back": "power is back: the box boots with a new boot id",
        }[step.action]
    return f"{where}: {text}"


def check(
    outages: Sequence[OutageRecord],
    received: Sequence[Received],
    places: Mapping[str, Place],
    operators: Mapping[str, str],
    *,
    regional_min_communes: int,
    incidents: Sequence[Incident] = INCIDENTS,
) -> list[str]:
    """What did not happen as the incidents say it must; empty when the scenario held."""
    problems: list[str] = []
    expected: set[tuple[str, str, str | None]] = set()

    def told(where: str, what: str, **labels: str) -> None:
        problems.extend(
            f"{where}: no {status} notification of {what} at the webhook sink"
            for status in ("firing", "resolved")
            if not any(
                r.status == status and all(r.labels.get(k) == v for k, v in labels.items())
                for r in received
            )
        )

    for inc in incidents:
        for code in inc.communes:
            place = places[code]
            if inc.kind == "link":
                assert inc.uplink is not None
                operator = operators[inc.uplink]
                expected.add((place.probe_id, "uplink_down", inc.uplink))
                found = [
                    o
                    for o in outages
                    if o.probe_id == place.probe_id
                    and o.condition == "uplink_down"
                    and o.uplink == inc.uplink
                ]
                what = f"uplink_down on {inc.uplink}"
                if not found:
                    problems.append(f"{place}: no {what} outage was recorded")
                    continue
                if all(o.ended_at is None for o in found):
                    problems.append(f"{place}: the {what} outage is still open")
                bad = [o for o in found if (o.cause, o.operator) != ("network", operator)]
                if bad:
                    problems.append(
                        f"{place}: {what} recorded as cause {bad[0].cause!r}, operator "
                        f"{bad[0].operator!r}; expected 'network', {operator!r}"
                    )
                if len(inc.communes) < regional_min_communes:
                    told(
                        str(place),
                        what,
                        probe=place.probe_id,
                        condition="uplink_down",
                        uplink=inc.uplink,
                    )
            else:
                cause = "power" if inc.kind == "power" else "unknown"
                expected.add((place.probe_id, "probe_silent", None))
                found = [
                    o
                    for o in outages
                    if o.probe_id == place.probe_id and o.condition == "probe_silent"
                ]
                if not found:
                    problems.append(f"{place}: no probe_silent outage was recorded")
                    continue
                closed = [o for o in found if o.ended_at is not None]
                if not closed:
                    problems.append(f"{place}: the probe_silent outage is still open")
                elif closed[0].cause != cause:
                    problems.append(
                        f"{place}: probe_silent classified {closed[0].cause!r}, expected {cause!r}"
                    )
                told(str(place), "probe_silent", probe=place.probe_id, condition="probe_silent")
                if not any(
                    r.status == "resolved"
                    and r.labels.get("probe") == place.probe_id
                    and r.labels.get("cause") == cause
                    for r in received
                ):
                    problems.append(
                        f"{place}: no resolved notification with cause {cause!r} at the sink"
                    )
        if inc.kind == "link" and len(inc.communes) >= regional_min_communes:
            assert inc.uplink is not None
            operator = operators[inc.uplink]
            told(
                ", ".join(str(places[c]) for c in inc.communes),
                f"the regional loss of {operator}",
                condition="regional",
                operator=operator,
            )
    for o in outages:
        if (o.probe_id, o.condition, o.uplink) not in expected:
            place_name = next((str(p) for p in places.values() if p.probe_id == o.probe_id), "")
            problems.append(
                f"unexpected outage: {place_name or o.probe_id} {o.condition}"
                + (f" on {o.uplink}" if o.uplink else "")
                + f" (cause {o.cause})"
            )
    return problems
