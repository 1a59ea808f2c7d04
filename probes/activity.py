"""What the agent tells its journal: state changes when they happen, a summary now and then.

A probe measures a few hundred times an hour; a line per check would bury the few lines that
matter (an uplink lost, the spool overflowing) under hundreds of thousands a day. So each
measurement is a DEBUG line, an uplink going down or coming back (as the agent sees it: every
reachability check of the uplink failing, then one succeeding) is a WARNING or INFO line, so is
the spool starting to drop results, and every ``SUMMARY_SECONDS`` one INFO line counts what was
measured, uploaded and is waiting. (Whether the collector can be reached is the uploader's to
say: it logs the first failure and the return.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lomsong.logs import duration_text

if TYPE_CHECKING:
    from lomsong.probes.agent import Measurement
    from lomsong.probes.schedule import Change

log = logging.getLogger(__name__)

#: How often the summary line is written.
SUMMARY_SECONDS = 600.0
#: Kinds that say whether an uplink reaches the outside (the modem and heartbeat do not).
REACHABILITY_KINDS = frozenset({"icmp", "tcp", "http", "dns"})


@dataclass
class _Uplink:
    #: (kind, target) → whether its newest run succeeded, and its error
    newest: dict[tuple[str, str], tuple[bool, str | None]] = field(default_factory=dict)
    down_since: float | None = None
    ok: int = 0
    failed: int = 0


class Activity:
    """Follows the agent's measurements and uploads, and logs what changed."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._uplinks: dict[str, _Uplink] = {}
        self.measured = 0
        self._spool_dropped: int | None = None

    def note(self, m: Measurement) -> None:
        """One finished run: a DEBUG line, and a state-change line if the uplink changed."""
        job, o = m.job, m.outcome
        uplink = job.binding.uplink
        self.measured += 1
        log.debug(
            "%s %s%s: %s%s",
            job.kind,
            job.target,
            f" over {uplink}" if uplink else "",
            "ok" if o.ok else "FAILED",
            f" ({o.error})" if o.error else "",
            extra={"uplink": uplink, "kind": job.kind, "target": job.target, "ok": o.ok},
        )
        if job.kind == "heartbeat" and o.spool_dropped is not None:
            self._note_spool(o.spool_dropped, o.spool_depth)
        if uplink is None:
            return
        up = self._uplinks.setdefault(uplink, _Uplink())
        if o.ok:
            up.ok += 1
        else:
            up.failed += 1
        if job.kind not in REACHABILITY_KINDS:
            return
        up.newest[(job.kind, job.target)] = (o.ok, o.error)
        all_failing = not any(ok for ok, _ in up.newest.values())
        if all_failing and up.down_since is None:
            up.down_since = m.measured_at
            log.warning(
                "uplink %s down: every check fails (%s %s: %s)",
                uplink,
                job.kind,
                job.target,
                o.error or "failed",
                extra={"uplink": uplink, "state": "down", "error": o.error},
            )
        elif not all_failing and up.down_since is not None:
            lasted = m.measured_at - up.down_since
            up.down_since = None
            log.info(
                "uplink %s up again after %s (%s %s ok)",
                uplink,
                duration_text(lasted),
                job.kind,
                job.target,
                extra={"uplink": uplink, "state": "up", "down_seconds": round(lasted, 3)},
            )

    def _note_spool(self, dropped: int, depth: int | None) -> None:
        before = self._spool_dropped
        self._spool_dropped = dropped
        if before is not None and dropped > before:
            log.warning(
                "spool full: %d results dropped since the last heartbeat, oldest first "
                "(%d dropped in all, %s waiting)",
                dropped - before,
                dropped,
                depth,
                extra={"spool_dropped": dropped, "spool_depth": depth},
            )

    def config_applied(self, version: str, change: Change) -> None:
        """A configuration now runs: ``config v3f2a9c1b7e0d applied: +2 −1 checks``."""
        log.info(
            "config %s applied: %s checks",
            _version_text(version),
            change.text(),
            extra={
                "config_version": version,
                "added": change.added,
                "removed": change.removed,
                "changed": change.changed,
            },
        )

    def config_refused(self, version: str, error: str) -> None:
        """A configuration this box cannot run; the last good one goes on."""
        log.warning(
            "config %s refused: %s; still running the last good one",
            _version_text(version),
            error,
            extra={"config_refused_version": version, "error": error},
        )

    def summary(self, *, uploaded: int, spool_depth: int) -> None:
        """The INFO line of the last period; the counts start again."""
        parts = [
            f"{name} {u.ok} ok/{u.failed} failed{' (down)' if u.down_since is not None else ''}"
            for name, u in sorted(self._uplinks.items())
        ]
        log.info(
            "%d results measured, %d uploaded, %d waiting in the spool%s",
            self.measured,
            uploaded,
            spool_depth,
            f"; {', '.join(parts)}" if parts else "",
            extra={
                "measured": self.measured,
                "uploaded": uploaded,
                "spool_depth": spool_depth,
                "uplinks": {
                    name: {"ok": u.ok, "failed": u.failed} for name, u in self._uplinks.items()
                },
            },
        )
        self.measured = 0
        for u in self._uplinks.values():
            u.ok = u.failed = 0


def _version_text(version: str) -> str:
    return version if version in ("local", "unknown") else f"v{version[:12]}"
