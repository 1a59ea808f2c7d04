"""The fleet as ``lomsong fleet status``, ``/api/v1/fleet`` and ``/fleet`` show it, in five
queries whatever the number of probes.

1. The probes of the provinces asked, with their commune, province and ``probe_state`` (agent
   version, last heard, clock skew, boot id).
2. Each probe's newest heartbeat: ``latest_results`` has its seq and time, and the stored
   result its details (uptime, spool depth, dropped and refused results); one join, keyed on
   the result's primary key (and on ``measured_at``, by which PostgreSQL partitions results,
   so each lookup touches one partition).
3. The versions the whole fleet reports, for the mark an agent is held to
   (``maps/fleet_model.py``).
4. The pending token rotations.
5. The layers of the check profiles, from which the version served to each probe is merged
   (``collector/fleet_profiles.py``); what the agent applied or refused is in its
   ``probe_state`` row, read by the first query.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from sqlalchemy import Engine, and_, select

from lomsong import __version__
from lomsong.collector.fleet_profiles import served_versions
from lomsong.maps.fleet_model import Fleet, FleetProbe, newest_version
from lomsong.storage.schema import (
    communes,
    latest_results,
    probe_state,
    probes,
    provinces,
    results,
    token_rotations,
)

#: the heartbeat details the fleet view reads (the ingest stores them in ``results.details``)
_COUNTS = ("spool_depth", "spool_dropped", "spool_refused")


def fleet_status(
    engine: Engine,
    scope: Collection[str] | None,
    *,
    now: float,
    silent_after: float,
    collector_version: str = __version__,
) -> Fleet:
    """The probes of the provinces in ``scope`` (None: every province), judged and sorted."""
    probe_query = (
        select(
            probes.c.id,
            probes.c.label,
            probes.c.commune_code,
            communes.c.name.label("commune_name"),
            communes.c.province_code,
            provinces.c.name.label("province_name"),
            probe_state.c.agent_version,
            probe_state.c.last_seen_at,
            probe_state.c.clock_skew_seconds,
            probe_state.c.boot_id,
            probe_state.c.config_version,
            probe_state.c.config_refused_version,
            probe_state.c.config_error,
        )
        .join(communes, communes.c.code == probes.c.commune_code)
        .join(provinces, provinces.c.code == communes.c.province_code)
        .outerjoin(probe_state, probe_state.c.probe_id == probes.c.id)
    )
    heartbeat_query = select(
        latest_results.c.probe_id, latest_results.c.measured_at, results.c.details
    ).join(
        results,
        and_(
            results.c.probe_id == latest_results.c.probe_id,
            results.c.seq == latest_results.c.seq,
            results.c.measured_at == latest_results.c.measured_at,
        ),
    )
    heartbeat_query = heartbeat_query.where(
        latest_results.c.kind == "heartbeat", latest_results.c.uplink == ""
    )
    if scope is not None:
        codes = sorted(scope)
        probe_query = probe_query.where(communes.c.province_code.in_(codes))
        in_scope = (
            select(probes.c.id)
            .join(communes, communes.c.code == probes.c.commune_code)
            .where(communes.c.province_code.in_(codes))
        )
        heartbeat_query = heartbeat_query.where(latest_results.c.probe_id.in_(in_scope))
    with engine.connect() as conn:
        fleet = {row.id: _probe(row) for row in conn.execute(probe_query)}
        for probe_id, measured_at, details in conn.execute(heartbeat_query):
            p = fleet.get(probe_id)
            if p is not None and (p.heartbeat_at is None or measured_at > p.heartbeat_at):
                _take_heartbeat(p, measured_at, details)
        versions = conn.execute(select(probe_state.c.agent_version).distinct()).scalars().all()
        for probe_id, new_token_id in conn.execute(
            select(token_rotations.c.probe_id, token_rotations.c.new_token_id).where(
                token_rotations.c.completed_at.is_(None)
            )
        ):
            if probe_id in fleet:
                fleet[probe_id].rotation = "offered" if new_token_id is not None else "requested"
        served = served_versions(
            conn, ((p.probe_id, p.commune_code, p.province_code) for p in fleet.values())
        )
        for probe_id, version in served.items():
            fleet[probe_id].config_served = version
    newest = newest_version([*versions, collector_version])
    for p in fleet.values():
        p.judge(now, silent_after, newest)
    return Fleet(
        probes=sorted(fleet.values(), key=FleetProbe.sort_key),
        newest_version=newest,
        collector_version=collector_version,
        silent_after_seconds=silent_after,
        now=now,
    )


def _probe(row: Any) -> FleetProbe:
    return FleetProbe(
        probe_id=row.id,
        label=row.label,
        commune_code=row.commune_code,
        commune_name=row.commune_name,
        province_code=row.province_code,
        province_name=row.province_name,
        agent_version=row.agent_version,
        last_seen_at=row.last_seen_at,
        clock_skew_seconds=row.clock_skew_seconds,
        boot_id=row.boot_id,
        config_applied=row.config_version,
        config_refused=row.config_refused_version,
        config_error=row.config_error,
    )


def _take_heartbeat(p: FleetProbe, measured_at: float, details: str | None) -> None:
    p.heartbeat_at = measured_at
    doc = orjson.loads(details) if details else {}
    uptime = doc.get("uptime_seconds")
    p.uptime_seconds = float(uptime) if isinstance(uptime, int | float) else None
    for name in _COUNTS:
        value = doc.get(name)
        setattr(p, name, int(value) if isinstance(value, int | float) else None)
