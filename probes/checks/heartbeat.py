"""``heartbeat``: the probe itself: boot, uptime, load, free disk, memory, spool depth and drops,
and the checks it runs.

The collector learns from heartbeats that the box is alive; a new ``boot_id`` after a silence
tells it the centre lost power rather than its network (DESIGN §7). Everything is read from
``/proc`` and the standard library, so the heartbeat works on the smallest box.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from lomsong.config.probe import HeartbeatCheck
from lomsong.probes.checks.base import CheckContext, Outcome

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


async def run(spec: HeartbeatCheck, ctx: CheckContext) -> Outcome:
    """Read the box's state; a part that cannot be read is left out, never a failure."""
    outcome = Outcome(ok=True, details={"agent_version": ctx.agent_version, "boot_id": boot_id()})
    outcome.uptime_seconds = uptime_seconds()
    try:
        outcome.load1 = round(os.getloadavg()[0], 3)
    except OSError:
        pass
    try:
        outcome.disk_free_bytes = shutil.disk_usage(ctx.spool_dir).free
    except OSError as exc:
        outcome.details["disk_error"] = str(exc)
    outcome.memory_rss_bytes = memory_rss_bytes()
    if ctx.running_checks:
        # The collector forgets the last result of a check left out of this list.
        outcome.checks = [
            {"kind": kind, "target": target} | ({"uplink": uplink} if uplink else {})
            for uplink, kind, target in ctx.running_checks
        ]
    if ctx.config is not None:
        outcome.config_version, outcome.config_refused_version, outcome.config_error = ctx.config
    if ctx.spool_stats is not None:
        stats = await ctx.spool_stats()
        outcome.spool_depth = stats.depth
        outcome.spool_dropped = stats.dropped
        outcome.spool_refused = stats.refused
    return outcome


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    """The kernel's id of this boot; a new one means the box restarted (power cut, reboot)."""
    try:
        return path.read_text().strip()
    except OSError:
        # No /proc (not Linux): the agent's own start stands in for the boot.
        return f"agent-{int(time.time() - time.monotonic())}"


def uptime_seconds() -> float:
    """Seconds since boot, counting time asleep."""
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return round(time.clock_gettime(clock), 3)


def memory_rss_bytes() -> int | None:
    """The agent's resident memory now (not its peak), from ``/proc/self/statm``."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
