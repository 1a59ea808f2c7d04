"""The agent's jobs changed live (``probes/schedule.py``): after any sequence of configurations
the scheduler holds exactly the last one's jobs, and a job whose check did not change keeps its
place in the scheduler (its APScheduler job and next run untouched)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lomsong.config.probe import ProbeSettings
from lomsong.probes.agent import Runner, plan_jobs
from lomsong.probes.schedule import Schedule

BASE = ProbeSettings(
    probe_id="cb-x",
    collector_url="http://127.0.0.1:8080",
    uplinks=[{"name": "fibre"}, {"name": "viettel-4g"}],  # type: ignore[list-item]
)
check = st.fixed_dictionaries(
    {
        "kind": st.just("tcp"),
        "target": st.sampled_from([f"h{i}.vn:443" for i in range(5)]),
        "interval_seconds": st.sampled_from([30.0, 60.0]),
        "uplinks": st.sampled_from([None, ["fibre"], ["viettel-4g"], ["fibre", "viettel-4g"]]),
    }
)
config = st.lists(check, max_size=5, unique_by=lambda c: c["target"])


def _settings(checks: list[dict[str, Any]]) -> ProbeSettings:
    return ProbeSettings.model_validate({**BASE.model_dump(exclude={"checks"}), "checks": checks})


@settings(max_examples=60, deadline=None)
@given(st.lists(config, min_size=1, max_size=4))
def test_the_scheduler_holds_the_last_configuration_and_keeps_what_did_not_change(
    configs: list[list[dict[str, Any]]],
) -> None:
    async def run() -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler()
        scheduler.start(paused=True)
        try:
            runner = Runner(BASE)
            schedule = Schedule(scheduler, runner)
            before: dict[str, Any] = {}
            for checks in configs:
                jobs = plan_jobs(_settings(checks))
                change = schedule.apply(jobs)
                wanted = {j.id: j for j in jobs}
                held = {j.id: j for j in scheduler.get_jobs()}
                assert set(held) == set(wanted) == set(schedule.jobs)
                kept = [jid for jid in wanted if jid in before and before[jid][0] == wanted[jid]]
                for jid in kept:  # the same APScheduler job, the same next run
                    assert held[jid] is before[jid][1]
                    assert held[jid].next_run_time == before[jid][2]
                assert change.added + change.changed + len(kept) == len(wanted)
                assert change.removed == len(set(before) - set(wanted))
                # the heartbeat lists the checks of this configuration
                assert {(u, k, t) for u, k, t in runner._running} == {
                    (j.binding.uplink, j.kind, j.target) for j in jobs
                }
                before = {jid: (wanted[jid], held[jid], held[jid].next_run_time) for jid in held}
        finally:
            scheduler.shutdown(wait=False)

    asyncio.run(run())


def test_a_new_configuration_is_told_at_once_by_the_heartbeat() -> None:
    async def run() -> list[Any]:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        seen: list[Any] = []
        scheduler = AsyncIOScheduler()
        scheduler.start(paused=True)  # its own runs never come: only the one out of turn
        try:
            schedule = Schedule(scheduler, Runner(BASE, on_measured=seen.append))
            beat = {"kind": "heartbeat", "interval_seconds": 300.0, "jitter_seconds": 0.0}
            schedule.apply(plan_jobs(_settings([beat])))
            schedule.beat_now()
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.05)
        finally:
            scheduler.shutdown(wait=False)
        return seen

    (measured,) = asyncio.run(run())
    assert measured.job.kind == "heartbeat" and measured.outcome.ok
