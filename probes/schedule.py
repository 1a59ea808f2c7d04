"""The agent's jobs in its scheduler, changed while it runs.

A new configuration (a profile fetched from the collector, or the local file's checks again)
becomes a new list of jobs; :meth:`Schedule.apply` compares it with the jobs scheduled, by job
id (a check's kind, target and uplink): a job no longer listed is removed, a new one added, one
whose settings changed is rescheduled with them, and the rest keep running untouched, on their
own rhythm. Runs under way finish; nothing touches the spool, so seqs go on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lomsong.probes.agent import Job, Runner, preload


@dataclass(frozen=True)
class Change:
    """What one :meth:`Schedule.apply` did, in jobs (a check over each of its uplinks)."""

    added: int
    removed: int
    changed: int

    def text(self) -> str:
        """``+2 −1 ~1 jobs``, the changed part left out when none."""
        parts = [f"+{self.added}", f"−{self.removed}"]
        if self.changed:
            parts.append(f"~{self.changed}")
        return " ".join(parts)


class Schedule:
    """The jobs of a running agent in its APScheduler ``AsyncIOScheduler``."""

    def __init__(self, scheduler: Any, runner: Runner) -> None:
        self.scheduler = scheduler
        self.runner = runner
        #: job id → job, as scheduled now
        self.jobs: dict[str, Job] = {}
        #: heartbeats run out of turn (``beat_now``), kept until they end
        self._beats: set[asyncio.Task[None]] = set()

    def apply(self, jobs: Sequence[Job]) -> Change:
        """Make the scheduled jobs ``jobs``; return what changed."""
        wanted = {job.id: job for job in jobs}
        preload(jobs)
        removed = [jid for jid in self.jobs if jid not in wanted]
        for jid in removed:
            self._remove(jid)
        added = changed = 0
        now = datetime.now(UTC)
        for jid, job in wanted.items():
            old = self.jobs.get(jid)
            if old == job:
                continue  # same check, same settings: its rhythm is kept
            if old is None:
                added += 1
            else:
                changed += 1
                self._remove(jid)
            self._add(job, now)
        self.runner.set_jobs(list(wanted.values()))
        return Change(added, len(removed), changed)

    def beat_now(self) -> None:
        """Run the heartbeat at once, beside its schedule: it tells the collector which
        configuration runs now (and lists its checks) without waiting for its interval. (Moving
        its next run instead would be skipped while a run is under way.)"""
        loop = asyncio.get_running_loop()
        for job in self.jobs.values():
            if job.kind == "heartbeat":
                task = loop.create_task(self.runner.run_job(job))
                self._beats.add(task)
                task.add_done_callback(self._beats.discard)

    def longest_timeout(self) -> float:
        return max((job.spec.timeout_seconds for job in self.jobs.values()), default=0.0)

    def _remove(self, jid: str) -> None:
        self.jobs.pop(jid, None)
        job = self.scheduler.get_job(jid)
        if job is not None:
            job.remove()

    def _add(self, job: Job, now: datetime) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        spec = job.spec
        self.scheduler.add_job(
            self.runner.run_job,
            IntervalTrigger(seconds=spec.interval_seconds, jitter=spec.jitter_seconds or None),
            args=[job],
            id=job.id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(spec.interval_seconds)),
            # The first round starts at once, spread over the jitter so checks do not collide.
            next_run_time=now + timedelta(seconds=random.uniform(0, spec.jitter_seconds)),
        )
        self.jobs[job.id] = job
