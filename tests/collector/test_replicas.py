"""Two collector replicas on one PostgreSQL: the same batches through both store once."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from lomsong.storage.schema import probe_state, results
from tests.conftest import CollectorFactory
from tests.factories import batch, body
from tests.rollup_checks import check_against_raw, marked
from tests.waiting import wait_until


def test_concurrent_replicas_store_each_result_once(
    collector_factory: CollectorFactory, pg_url: str
) -> None:
    # both derive hourly and daily rollups every second when they lead (one of them does)
    a = collector_factory(pg_url, rollups={"derive_every_seconds": 1})
    b = collector_factory(pg_url, rollups={"derive_every_seconds": 1})
    token = a.register("cb-1")
    answers: list[dict[str, int]] = []
    lock = threading.Lock()

    def send(replica_url: str, start: int) -> None:
        import httpx

        with httpx.Client(
            base_url=replica_url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            # Overlapping windows: every seq is sent several times through both replicas.
            for lo in range(start, 400, 40):
                raw, headers = body(batch("cb-1", range(lo, lo + 60)), gz=True)
                r = http.post("/api/v1/reports", content=raw, headers=headers)
                assert r.status_code == 200, r.text
                with lock:
                    answers.append(r.json())

    threads = [threading.Thread(target=send, args=(c.url, s)) for c in (a, b) for s in (1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with a.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(results)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(results.c.seq)))).scalar_one()
        state = conn.execute(select(probe_state)).mappings().one()
    assert n == distinct == 440  # seqs 1..440
    assert sum(x["accepted"] for x in answers) == 440
    assert sum(x["accepted"] + x["duplicates"] for x in answers) == 60 * len(answers)
    assert state["stored_through_seq"] == 440 and state["results_total"] == 440
    # the rollups count each result once too, whichever replica stored it, and the hourly and
    # daily rows the leader derived agree with them
    wait_until(lambda: not marked(a.engine), timeout=20, what="the leader derived the marks")
    check_against_raw(a.engine, ["cb-1"], derive=False)
