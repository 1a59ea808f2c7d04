"""The detector's feed: what is stored before the detector's first tick is still observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from tests.conftest import ClockedFactory
from tests.factories import iso, result

PROBE = "cb-thuc-phan"


def test_failures_stored_before_the_first_tick_open_an_outage(
    clocked_factory: ClockedFactory,
) -> None:
    """A collector that has just started takes an agent's backlog before its detector first
    ticks. Those results must count: a detector built at that tick would start from marks that
    already cover them, take them as seen, and the link that went down would not be told."""
    c = clocked_factory(detector={"tick_seconds": 300, "down_after_failures": 3})
    token = c.collector.register(PROBE, "01273", ("viettel-4g:viettel",))
    c.collector.ctx.live.reload(c.collector.engine)  # what the periodic refresh does
    at = datetime.fromtimestamp(c.clock.now, UTC)
    rounds = [
        result(i + 1, at=at - timedelta(seconds=30 * (3 - i)), ok=False, error="timeout")
        for i in range(3)
    ]
    doc = {
        "probe_id": PROBE,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": iso(at),
        "results": rounds,
    }
    with c.collector.client(token) as http:
        r = http.post("/api/v1/reports", content=orjson.dumps(doc))
        assert r.status_code == 200, r.text
    feed = c.collector.ctx.outages
    assert feed is not None
    tick = feed.tick()  # the first tick, after the batch was stored
    assert tick.leader and tick.observed == 3
    opened = [ch.outage for ch in tick.changes if ch.outage.active]
    assert [(o.condition, o.uplink) for o in opened] == [("uplink_down", "viettel-4g")]
