"""What the status page and an outage's page need from the collector, in a few queries.

The status page reloads every minute in many offices, so it is gathered in a fixed number of
queries whatever the number of communes: the open and recently resolved outages of the reader's
provinces, the names of their communes in one query, which of their provinces have hamlets in
one more, then the hamlets each outage cuts off from the coverage service's cached
classification (the same figures the alerts give, ``CoverageService.impact``). The maintenance
windows are the dispatcher's own configuration (``alerts.toml``), judged with its own rule.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from lomsong.collector.alerts.dispatcher import SEVERITY
from lomsong.collector.auth import Principal
from lomsong.collector.coverage_service import CoverageService
from lomsong.collector.enrolments import list_enrolments
from lomsong.collector.live import LiveState
from lomsong.collector.outage_history import outage_from_row
from lomsong.config.alerts import AlertsConfig, MaintenanceConfig
from lomsong.coverage.overlay import SILENT_CAUSES
from lomsong.maps.status_model import (
    Impact,
    MaintenanceView,
    NotificationView,
    OutageView,
    PendingEnrolment,
)
from lomsong.storage.schema import communes, hamlets, notification_attempts, outages
from lomsong.timefmt import LOCAL_TZ, parse_time

log = logging.getLogger(__name__)

#: how far back the status page lists resolved outages
RESOLVED_DAYS = 7
#: and at most how many of them
RESOLVED_LIMIT = 200


def resolved_outages(
    engine: Engine, provinces: Collection[str] | None, since: float
) -> list[dict[str, Any]]:
    """Outages that ended at or after ``since``, the latest end first."""
    query = (
        select(outages)
        .where(outages.c.ended_at >= since)
        .order_by(outages.c.ended_at.desc(), outages.c.id)
        .limit(RESOLVED_LIMIT)
    )
    if provinces is not None:
        query = query.where(outages.c.province_code.in_(sorted(provinces)))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def find_outage(engine: Engine, outage_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(outages).where(outages.c.id == outage_id)).mappings().first()
    return dict(row) if row is not None else None


def notifications_of(engine: Engine, outage_id: str) -> list[NotificationView]:
    """Every attempt to deliver a message that named the outage, oldest first.

    ``fingerprints`` is a JSON list of outage ids; a quoted id matches only itself.
    """
    needle = f'"{outage_id}"'
    query = (
        select(notification_attempts)
        .where(notification_attempts.c.fingerprints.contains(needle, autoescape=True))
        .order_by(notification_attempts.c.at, notification_attempts.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        NotificationView(
            at=r["at"],
            receiver=r["receiver"],
            route=r["route"],
            status=r["status"],
            attempt=r["attempt"],
            ok=bool(r["ok"]),
            error=r["error"],
        )
        for r in rows
    ]


class StatusData:
    """Turns ``outages`` rows into what the pages show: names, hamlets cut off, maintenance."""

    def __init__(
        self,
        engine: Engine,
        live: LiveState,
        coverage: CoverageService | None,
        alerts: AlertsConfig | None,
    ) -> None:
        self.engine = engine
        self.live = live
        self.coverage = coverage
        self.windows: Sequence[MaintenanceConfig] = alerts.maintenance if alerts else ()

    def views(
        self,
        rows: Sequence[Mapping[str, Any]],
        province_names: Mapping[str, str],
        now: float,
        *,
        impacts: bool = True,
    ) -> list[OutageView]:
        """The rows with their names, the hamlets they cut off (``impacts``) and the
        maintenance windows covering them now."""
        names = self._commune_names({r["commune_code"] for r in rows})
        mapped = self._with_hamlets({r["province_code"] for r in rows}) if impacts else set()
        version = self._version() if mapped else None
        active = [w for w in self.windows if w.active(now)]
        return [
            OutageView(
                id=r["id"],
                probe_id=r["probe_id"],
                commune_code=r["commune_code"],
                commune_name=names.get(r["commune_code"], r["commune_code"]),
                province_code=r["province_code"],
                province_name=province_names.get(r["province_code"], r["province_code"]),
                condition=r["condition"],
                cause=r["cause"],
                uplink=r["uplink"],
                operator=r["operator"],
                started_at=r["started_at"],
                detected_at=r["detected_at"],
                ended_at=r["ended_at"],
                resolved_at=r["resolved_at"],
                impact=self.impact(r, mapped, version) if impacts else None,
                maintenance=tuple(w.name for w in active if w.match.matches(labels(r))),
            )
            for r in rows
        ]

    def impact(
        self,
        row: Mapping[str, Any],
        mapped: Collection[str],
        version: tuple[Any, ...] | None = None,
    ) -> Impact:
        """The hamlets an outage cuts off, as its alert counts them, or why that is unknown.

        ``mapped``: the provinces with hamlets; ``version``: the geodata's, read once a page.
        """
        if row["condition"] == "probe_silent" and row["cause"] not in SILENT_CAUSES:
            return Impact("until_back")
        if self.coverage is None or row["province_code"] not in mapped:
            return Impact("no_geodata")
        try:
            found = self.coverage.impact(outage_from_row(row), version)
        except ImportError:  # a collector without the geo extra has no coverage
            return Impact("no_geodata")
        except Exception:
            log.exception("the hamlets affected by outage %s could not be computed", row["id"])
            return Impact("failed")
        if found is None:
            return Impact("no_geodata")
        return Impact("known", found.hamlets, found.population, found.without_power, found.largest)

    def maintenance(self, now: float, provinces: Collection[str] | None) -> list[MaintenanceView]:
        """The windows in force now that touch the reader's provinces, ending soonest first."""
        active = [w for w in self.windows if w.active(now)]
        if provinces is not None:
            wanted = set(provinces)
            homes = self._commune_provinces({c for w in active for c in w.match.commune})
            active = [
                w
                for w in active
                if (not w.match.province and not w.match.commune)
                or wanted & set(w.match.province)
                or wanted & {homes.get(c, "") for c in w.match.commune}
            ]
        views = [MaintenanceView(w.name, _scope(w), window_end(w, now)) for w in active]
        return sorted(views, key=lambda v: (v.until, v.name))

    def _version(self) -> tuple[Any, ...] | None:
        """The geodata's version, once for every outage of a page (``None``: ask each time)."""
        if self.coverage is None:
            return None
        try:
            return self.coverage.version()
        except ImportError:  # without the geo extra; ``impact`` says so for each outage
            return None

    def _commune_names(self, codes: Collection[str]) -> dict[str, str]:
        with self.live.lock:
            known = {i.commune_code: i.commune_name for i in self.live.probes.values()}
        missing = sorted(set(codes) - set(known))
        if missing:
            query = select(communes.c.code, communes.c.name).where(communes.c.code.in_(missing))
            with self.engine.connect() as conn:
                known.update(dict(conn.execute(query).all()))
        return known

    def _commune_provinces(self, codes: Collection[str]) -> dict[str, str]:
        if not codes:
            return {}
        query = select(communes.c.code, communes.c.province_code).where(
            communes.c.code.in_(sorted(codes))
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def _with_hamlets(self, provinces: Collection[str]) -> set[str]:
        """Which of ``provinces`` have hamlets loaded: the others need no coverage at all."""
        if not provinces:
            return set()
        query = (
            select(hamlets.c.province_code)
            .where(hamlets.c.province_code.in_(sorted(provinces)))
            .distinct()
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())


def labels(row: Mapping[str, Any]) -> dict[str, str]:
    """The labels the dispatcher matches maintenance windows against (``AlertSource.labels``)."""
    out = {
        "condition": row["condition"],
        "severity": SEVERITY.get(row["condition"], "warning"),
        "province": row["province_code"],
        "commune": row["commune_code"],
    }
    if row["operator"]:
        out["operator"] = row["operator"]
    return out


def window_end(w: MaintenanceConfig, now: float) -> float:
    """When a window in force at ``now`` ends."""
    if w.end is not None:
        end = w.end if w.end.tzinfo else w.end.replace(tzinfo=LOCAL_TZ)
        return end.timestamp()
    assert w.to_time is not None
    local = datetime.fromtimestamp(now, LOCAL_TZ)
    end = datetime.combine(local.date(), w.to_time, LOCAL_TZ)
    if end <= local:
        end += timedelta(days=1)
    return end.timestamp()


def _scope(w: MaintenanceConfig) -> str:
    m = w.match
    parts = [
        f"{vi} / {en} {', '.join(values)}"
        for vi, en, values in (
            ("tỉnh", "province", m.province),
            ("xã", "commune", m.commune),
            ("nhà mạng", "operator", m.operator),
            ("loại", "condition", m.condition),
        )
        if values
    ]
    return " · ".join(parts)


def pending_enrolments(engine: Engine, caller: Principal) -> list[PendingEnrolment]:
    """The boxes waiting for this caller's approval: none unless it may decide some."""
    if caller.role not in ("admin", "province_admin"):
        return []
    return [
        PendingEnrolment(
            id=e["id"],
            commune_code=e["commune"]["code"],
            commune_name=e["commune"]["name"] or e["commune"]["code"],
            province_name=e["province"]["name"] or e["province"]["code"],
            hostname=e["hostname"],
            machine_id=e["machine_id"],
            created_at=parse_time("created_at", e["created_at"]),
            proposed=tuple(
                f"{u['name']}:{u['operator']}" + (f"@{u['interface']}" if u["interface"] else "")
                for u in e["proposed_uplinks"]
            ),
            reused=tuple(e["reused_machine"]),
        )
        for e in list_enrolments(engine, caller, "pending")
    ]
