"""The probes the maps and the status page show, judged from what the collector knows.

Reads the registry and live state (what each probe said last), the open outages (what the
detector concluded) and where each commune centre is. Imports nothing geospatial, so that the
status page works on a collector installed without the geo extra.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select

from lomsong.collector.live import LiveState, ProbeLive
from lomsong.collector.registry import ProbeInfo
from lomsong.maps.probes import OutageFact, ProbeMarker, UplinkState
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import communes


def load_commune_points(engine: Engine, codes: Collection[str]) -> dict[str, tuple[float, float]]:
    """Commune code → (lon, lat) of its centre, from the collector's places."""
    if not codes:
        return {}
    query = select(communes.c.code, communes.c.lon, communes.c.lat).where(
        communes.c.code.in_(sorted(codes))
    )
    with engine.connect() as conn:
        return {code: (lon, lat) for code, lon, lat in conn.execute(query)}


def current_probes(
    engine: Engine,
    live: LiveState,
    only: Collection[str] | None,
    *,
    now: float,
    silent_after: float,
) -> list[ProbeMarker]:
    """Every registered probe of the provinces ``only`` (all when ``None``), with its state."""
    with live.lock:
        infos = {
            pid: info
            for pid, info in live.probes.items()
            if only is None or info.province_code in only
        }
        state = {pid: live.live[pid] for pid in infos if pid in live.live}
    rows = open_outages(engine, only)
    points = load_commune_points(engine, {i.commune_code for i in infos.values()})
    return probe_markers(infos, state, rows, points, now=now, silent_after=silent_after)


def probe_markers(
    probes: Mapping[str, ProbeInfo],
    live: Mapping[str, ProbeLive],
    open_outages: Sequence[Mapping[str, Any]],
    points: Mapping[str, tuple[float, float]],
    *,
    now: float,
    silent_after: float,
) -> list[ProbeMarker]:
    """Each probe's state: down while silent or every uplink is down, partial (partly down)
    while some uplink is down, degraded while an uplink's loss or latency is over the
    thresholds, up when reporting and well, unknown when never heard from.

    Parameters
    ----------
    probes, live
        The collector's registry and live state (``LiveState.probes`` and ``.live``).
    open_outages
        Rows of the ``outages`` table with ``ended_at`` null.
    points
        Commune code → (lon, lat); a probe whose commune has no point is left out.
    now, silent_after
        A probe not heard from for ``silent_after`` seconds is down even before the
        detector's next tick opens its outage.
    """
    by_probe: dict[str, list[Mapping[str, Any]]] = {}
    for row in open_outages:
        by_probe.setdefault(row["probe_id"], []).append(row)
    out = []
    for pid, info in sorted(probes.items()):
        point = points.get(info.commune_code)
        if point is None:
            continue
        state = live.get(pid)
        rows = sorted(by_probe.get(pid, []), key=lambda r: r["started_at"])
        facts = tuple(
            OutageFact(r["condition"], r["uplink"], r["operator"], r["started_at"], r["cause"])
            for r in rows
        )
        uplinks = tuple(_uplink_state(info, u.name, u.operator, state, rows) for u in info.uplinks)
        overall, since = _probe_state(state, uplinks, rows, now, silent_after)
        out.append(
            ProbeMarker(
                id=pid,
                label=info.label,
                commune_code=info.commune_code,
                commune_name=info.commune_name,
                province_code=info.province_code,
                lon=point[0],
                lat=point[1],
                state=overall,
                since=since,
                last_seen=state.last_seen_at if state else None,
                uplinks=uplinks,
                outages=facts,
            )
        )
    return out


def _uplink_state(
    info: ProbeInfo,
    name: str,
    operator: str,
    live: ProbeLive | None,
    rows: Sequence[Mapping[str, Any]],
) -> UplinkState:
    """What the detector concluded of the uplink, else what its checks say right now.

    Checks that fail before the detector has judged them (it waits for N failed rounds) make
    the uplink ``failing``: not ``down``, which is the detector's word, and not ``degraded``,
    which means loss or latency over the thresholds and nothing else."""
    conditions = {r["condition"] for r in rows if r["uplink"] == name}
    if "uplink_down" in conditions:
        return UplinkState(name, operator, "down")
    if "degraded" in conditions:
        return UplinkState(name, operator, "degraded")
    checks = live.checks.get(name, {}) if live else {}
    if not checks:
        return UplinkState(name, operator, "unknown")
    return UplinkState(name, operator, "up" if all(c.ok for c in checks.values()) else "failing")


def _probe_state(
    live: ProbeLive | None,
    uplinks: Sequence[UplinkState],
    rows: Sequence[Mapping[str, Any]],
    now: float,
    silent_after: float,
) -> tuple[str, float | None]:
    """The centre's state and since when, worst first: ``down`` (silent, or every uplink
    down), ``partial`` (some uplinks down), ``degraded`` (a degraded outage open), ``up``.
    Uplinks merely ``failing`` leave the centre ``up`` until the detector judges them; the
    popup and the status page show them per uplink."""
    silent = [r["started_at"] for r in rows if r["condition"] == "probe_silent"]
    if silent:
        return "down", min(silent)
    last_seen = live.last_seen_at if live else None
    if last_seen is None:
        return "unknown", None
    if now - last_seen > silent_after:
        return "down", last_seen
    down = [r["started_at"] for r in rows if r["condition"] == "uplink_down"]
    states = {u.state for u in uplinks}
    if uplinks and states == {"down"}:
        return "down", min(down, default=None)
    if "down" in states:
        return "partial", min(down, default=None)
    degraded = [r["started_at"] for r in rows if r["condition"] == "degraded"]
    if "degraded" in states:
        return "degraded", min(degraded, default=None)
    return "up", None
