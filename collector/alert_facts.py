"""What the alerting side is told about outages, and what it remembers of its messages.

The detector's outages carry codes; a message needs names and consequences. ``AlertFacts``
turns an outage into an ``AlertSource`` for the dispatcher: the province and commune names from
the live state, the hamlets and people left without signal from the coverage (``Impact``), the
link to the province map. It also keeps the dispatcher's memory in the database: every
notification attempt is recorded, and a new leader reads back what each group last said, so it
neither repeats a message nor forgets one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, func, select

from lomsong.collector.alerts.dispatcher import AlertSource, Attempt
from lomsong.collector.alerts.messages import Facts
from lomsong.collector.detector import Change, Detector, Outage
from lomsong.collector.live import LiveState
from lomsong.collector.outage_history import latest
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import notification_attempts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HamletImpact:
    """The hamlets an outage leaves without signal (see ``CoverageService.impact``)."""

    hamlets: int
    population: int
    #: of those, hamlets without grid power
    without_power: int
    #: the largest of them, (name, population), most people first
    largest: tuple[tuple[str, int], ...] = ()


#: The hamlets an outage leaves without signal; ``None`` when that is not known.
Impact = Callable[[Outage], HamletImpact | None]


class AlertFacts:
    """Outages as alerts with their facts; the notification attempts, recorded and read back."""

    def __init__(
        self,
        engine: Engine,
        live: LiveState,
        *,
        public_url: str = "",
        impact: Impact | None = None,
    ) -> None:
        self.engine = engine
        self.live = live
        self.public_url = public_url.rstrip("/")
        self.impact = impact

    # -- outages as alerts ---------------------------------------------------------------------

    def alert_sources(self, changes: Sequence[Change]) -> list[AlertSource]:
        """The changed outages as alerts, with the facts a message needs."""
        return [self.alert_source(o) for o in latest(changes)]

    def active_sources(self, detector: Detector) -> list[AlertSource]:
        """Every outage the detector holds open, as a firing alert."""
        return [self.alert_source(o) for o in detector.active()]

    def alert_source(self, o: Outage) -> AlertSource:
        """One outage as an alert: its names, its hamlets, its map."""
        info = self.live.probes.get(o.probe_id)
        impact = self._impact(o)
        facts = Facts(
            condition=o.condition,
            province_code=o.province_code,
            province_name=info.province_name if info else o.province_code,
            commune_code=o.commune_code,
            commune_name=info.commune_name if info else o.commune_code,
            probe_id=o.probe_id,
            cause=o.cause,
            uplink=o.uplink,
            operator=o.operator,
            started_at=o.started_at,
            ended_at=o.ended_at,
            hamlets=impact.hamlets if impact else None,
            population=impact.population if impact else None,
            hamlets_without_power=impact.without_power if impact else None,
            hamlet_names=impact.largest if impact else (),
            map_url=(
                f"{self.public_url}/maps/province/{o.province_code}" if self.public_url else ""
            ),
        )
        return AlertSource(
            fingerprint=o.id, status="firing" if o.active else "resolved", facts=facts
        )

    def _impact(self, o: Outage) -> HamletImpact | None:
        """The hamlets ``o`` leaves without signal; a failure says "not known", never stops
        the alert."""
        if self.impact is None:
            return None
        try:
            return self.impact(o)
        except ImportError:  # a collector without the geo extra has no coverage
            return None
        except Exception:
            log.exception("the hamlets affected by outage %s could not be computed", o.id)
            return None

    # -- the dispatcher's memory ---------------------------------------------------------------

    def record_attempt(self, a: Attempt) -> None:
        """Write one delivery attempt (the dispatcher calls it after each try)."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                notification_attempts.insert().values(
                    receiver=a.receiver,
                    route=a.route,
                    group_key=a.group_key,
                    status=a.status,
                    fingerprints=orjson.dumps(list(a.fingerprints)).decode(),
                    attempt=a.attempt,
                    ok=a.ok,
                    error=(a.error or "")[:512] or None,
                    at=a.at,
                )
            )

    def sent_groups(self) -> list[tuple[str, list[str], float]]:
        """For each group: the alerts firing in its newest message, and when it was sent."""
        newest = (
            select(
                notification_attempts.c.group_key, func.max(notification_attempts.c.id).label("id")
            )
            .where(notification_attempts.c.attempt == 1)
            .group_by(notification_attempts.c.group_key)
            .subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(notification_attempts).join(
                    newest, newest.c.id == notification_attempts.c.id
                )
            ).mappings()
            return [
                (
                    r["group_key"],
                    orjson.loads(r["fingerprints"]) if r["status"] == "firing" else [],
                    r["at"],
                )
                for r in rows
            ]
