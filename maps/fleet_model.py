"""What the fleet view shows of each probe, and the rules that make a probe stand out.

Built by the collector (``collector/fleet.py``) in a fixed number of queries, printed by
``lomsong fleet status``, served by ``/api/v1/fleet`` and drawn by ``maps/fleet_page.py``; it
imports nothing but the kernel.

A probe stands out (and is listed first) when it is **silent**, never heard or not heard for
longer than the collector's silence threshold (``detector.grace_intervals`` report intervals),
or **outdated**: its agent's version is older than the newest version known, which is the
newer of the collector's own version and the newest any probe of the whole fleet reported (a
collector is usually upgraded first; an agent upgraded before it still sets the mark for the
rest). Versions compare by their release numbers (``0.10.2`` > ``0.9.7``); a pre-release or
local suffix is not weighed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lomsong.timefmt import iso
from lomsong.wire import LOCAL_CONFIG_VERSION

#: a clock further off than this is marked (the detector corrects it, people should fix it)
SKEW_MARK_SECONDS = 60.0
_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def release(version: str | None) -> tuple[int, ...]:
    """``"0.10.2rc1"`` → ``(0, 10, 2)``; no digits at the start: ``()`` (older than any)."""
    if not version:
        return ()
    match = _RELEASE.match(version.strip().lstrip("vV"))
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def newest_version(versions: Iterable[str | None]) -> str | None:
    """The newest of ``versions`` by release numbers; None when there is none."""
    known = [v for v in versions if v and release(v)]
    return max(known, key=release) if known else None


def is_outdated(version: str | None, newest: str | None) -> bool:
    """An agent older than ``newest``; one that never said its version is not judged."""
    if not version or not newest:
        return False
    return release(version) < release(newest)


@dataclass
class FleetProbe:
    """One probe as the fleet view shows it; times are epoch seconds on the collector's clock
    (the uptime's boot time is corrected for the probe's clock skew)."""

    probe_id: str
    label: str | None
    commune_code: str
    commune_name: str
    province_code: str
    province_name: str
    agent_version: str | None
    last_seen_at: float | None
    #: received_at − sent_at, smoothed: positive when the probe's clock is behind
    clock_skew_seconds: float | None
    boot_id: str | None
    #: from the newest heartbeat: when it was measured, and what it said
    heartbeat_at: float | None = None
    uptime_seconds: float | None = None
    spool_depth: int | None = None
    spool_dropped: int | None = None
    spool_refused: int | None = None
    #: a pending token rotation: ``requested`` or ``offered``
    rotation: str | None = None
    #: the check profile's version the collector serves the probe now (None: no layer
    #: applies, it runs its local checks); the one its newest heartbeat says it applies
    #: (``local`` for its own file's checks), and the one it refused with its error
    config_served: str | None = None
    config_applied: str | None = None
    config_refused: str | None = None
    config_error: str | None = None
    silent: bool = False
    outdated: bool = False
    marks: list[str] = field(default_factory=list)

    @property
    def config_state(self) -> str:
        """``applied``, ``pending`` (served, not yet applied), ``refused`` (the served version
        refused by the agent), ``local`` (no profile served: its own checks) or ``unknown``
        (a profile served to an agent that never said what it runs: an older agent)."""
        served, applied = self.config_served, self.config_applied
        if served is None:
            return "local" if applied in (None, LOCAL_CONFIG_VERSION) else "pending"
        if applied == served:
            return "applied"
        if self.config_refused == served:
            return "refused"
        return "unknown" if applied is None else "pending"

    @property
    def booted_at(self) -> float | None:
        """When the box booted: the heartbeat's time minus its uptime, skew corrected."""
        if self.heartbeat_at is None or self.uptime_seconds is None:
            return None
        return self.heartbeat_at + (self.clock_skew_seconds or 0.0) - self.uptime_seconds

    @property
    def stands_out(self) -> bool:
        """Someone must act: silent, outdated, or its configuration refused."""
        return self.silent or self.outdated or self.config_state == "refused"

    def silent_for(self, now: float) -> float | None:
        return None if self.last_seen_at is None else max(0.0, now - self.last_seen_at)

    def judge(self, now: float, silent_after: float, newest: str | None) -> None:
        """Set ``silent``, ``outdated`` and the marks shown beside the probe."""
        quiet = self.silent_for(now)
        self.silent = quiet is None or quiet > silent_after
        self.outdated = is_outdated(self.agent_version, newest)
        marks = []
        if quiet is None:
            marks.append("never_heard")
        elif self.silent:
            marks.append("silent")
        if self.outdated:
            marks.append("outdated")
        if self.clock_skew_seconds is not None and abs(self.clock_skew_seconds) > SKEW_MARK_SECONDS:
            marks.append("clock")
        if (self.spool_dropped or 0) + (self.spool_refused or 0) > 0:
            marks.append("dropped")
        if self.rotation is not None:
            marks.append("rotation")
        state = self.config_state
        if state == "refused":
            marks.append("config_refused")
        elif state == "pending" and not self.silent:
            marks.append("config_pending")
        self.marks = marks

    def sort_key(self) -> tuple[Any, ...]:
        """Silent first, then outdated, then a refused configuration, then the rest; each by
        province, commune, id."""
        return (
            not self.silent,
            not self.outdated,
            self.config_state != "refused",
            self.province_code,
            self.commune_name,
            self.probe_id,
        )

    def as_json(self, now: float) -> dict[str, Any]:
        booted = self.booted_at
        return {
            "probe_id": self.probe_id,
            "label": self.label,
            "commune": {"code": self.commune_code, "name": self.commune_name},
            "province": {"code": self.province_code, "name": self.province_name},
            "agent_version": self.agent_version,
            "outdated": self.outdated,
            "last_seen_at": iso(self.last_seen_at),
            "silent_seconds": self.silent_for(now),
            "silent": self.silent,
            "clock_skew_seconds": self.clock_skew_seconds,
            "spool_depth": self.spool_depth,
            "spool_dropped": self.spool_dropped,
            "spool_refused": self.spool_refused,
            "heartbeat_at": iso(self.heartbeat_at),
            "booted_at": iso(booted),
            "uptime_seconds": None if booted is None else max(0.0, now - booted),
            "boot_id": self.boot_id,
            "token_rotation": self.rotation,
            "config": {
                "state": self.config_state,
                "served": self.config_served,
                "applied": self.config_applied,
                "refused": self.config_refused,
                "error": self.config_error,
            },
            "marks": self.marks,
        }


@dataclass
class Fleet:
    """The probes a reader may see, judged and sorted, and the version they are held to."""

    probes: list[FleetProbe]
    newest_version: str | None
    collector_version: str
    silent_after_seconds: float
    now: float

    @property
    def silent(self) -> int:
        return sum(p.silent for p in self.probes)

    @property
    def outdated(self) -> int:
        return sum(p.outdated for p in self.probes)

    @property
    def refused(self) -> int:
        """Probes whose agent refused the configuration served to it."""
        return sum(p.config_state == "refused" for p in self.probes)

    def as_json(self) -> dict[str, Any]:
        return {
            "generated_at": iso(self.now),
            "newest_version": self.newest_version,
            "collector_version": self.collector_version,
            "silent_after_seconds": self.silent_after_seconds,
            "count": len(self.probes),
            "silent": self.silent,
            "outdated": self.outdated,
            "config_refused": self.refused,
            "probes": [p.as_json(self.now) for p in self.probes],
        }
