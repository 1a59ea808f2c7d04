"""One silent threshold: /metrics, the status page, the read API, the maps and the detector
all judge a probe silent after ``detector.grace_intervals`` report intervals, not before."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_SECRET, Clocked, ClockedFactory, RunningCollector
from tests.factories import iso, result
from tests.maps.conftest import page_data

INTERVAL = 10.0
GRACE_INTERVALS = 5
PROBE = "cb-thuc-phan"
PROVINCE = "04"


@pytest.fixture
def clocked(clocked_factory: ClockedFactory) -> Clocked:
    """A collector whose clock the test moves; its detector ticks only when the test says."""
    return clocked_factory(
        report_interval_seconds=INTERVAL,
        # the scheduled tick would come only after the test: the test ticks by hand
        detector={"grace_intervals": GRACE_INTERVALS, "tick_seconds": 300},
        maps={"tile_url": "http://127.0.0.1:9/{z}/{x}/{y}.png"},
    )


def client(c: RunningCollector) -> httpx.Client:
    """An admin client patient enough for the first build of a map."""
    return httpx.Client(
        base_url=c.url, headers={"Authorization": f"Bearer {ADMIN_SECRET}"}, timeout=120
    )


def heard_at(c: Clocked, token: str) -> float:
    """One good round on the probe's uplink, received now; the time it was heard."""
    at = datetime.fromtimestamp(c.clock.now, UTC)
    doc = {
        "probe_id": PROBE,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": iso(at),
        "results": [result(1, at=at), result(2, at=at, kind="heartbeat", uptime_seconds=600)],
    }
    with c.collector.client(token) as http:
        r = http.post(
            "/api/v1/reports",
            content=orjson.dumps(doc),
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 200, r.text
    return c.clock.now


def metrics_says(http: httpx.Client) -> dict[str, float]:
    """``lomsong_probes`` of the probe's province: state → count."""
    r = http.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "lomsong_probes" and s.labels["province"] == PROVINCE:
                out[s.labels["state"]] = s.value
    return out


def status_page_says(http: httpx.Client) -> str:
    """The probe's ``data-state`` on the status page."""
    r = http.get("/", params={"province": PROVINCE})
    assert r.status_code == 200, r.text
    states = re.findall(rf'data-probe="{PROBE}" data-state="(\w+)"', r.text)
    assert len(states) == 1, r.text
    return states[0]


def read_api_says(http: httpx.Client) -> str:
    """The probe's ``status`` in the read API."""
    r = http.get(f"/api/v1/probes/{PROBE}")
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


def map_says(http: httpx.Client) -> str:
    """The probe's state in the data block of the province map."""
    r = http.get(f"/maps/province/{PROVINCE}")
    assert r.status_code == 200, r.text
    probes = page_data(r.text)["P"]
    state: str = probes["state"][probes["id"].index(PROBE)]
    return state


def silent_outages(http: httpx.Client) -> list[dict[str, object]]:
    """The open ``probe_silent`` outages of the history."""
    r = http.get("/api/v1/outages", params={"active": "true"})
    assert r.status_code == 200, r.text
    return [o for o in r.json()["outages"] if o["condition"] == "probe_silent"]


def detector_tick(c: Clocked) -> None:
    """One tick of the detector at the collector's time, as the scheduler would run it."""
    feed = c.collector.ctx.outages
    assert feed is not None
    assert feed.tick().leader


def test_every_part_calls_a_probe_silent_after_the_same_grace(clocked: Clocked) -> None:
    c = clocked
    token = c.collector.register(PROBE, "01273", ("viettel-4g:viettel",))
    c.collector.ctx.live.reload(c.collector.engine)  # what the periodic refresh does
    detector_tick(c)  # the detector leads before the probe is heard, as in a running collector
    heard = heard_at(c, token)
    assert c.collector.ctx.settings.silent_after_seconds == GRACE_INTERVALS * INTERVAL

    # Four intervals of silence: more than the old three, less than the grace of five.
    c.clock.now = heard + 4 * INTERVAL
    with client(c.collector) as http:
        assert metrics_says(http) == {"reporting": 1.0, "silent": 0.0}
        assert status_page_says(http) == "up"
        assert read_api_says(http) == "reporting"
        assert map_says(http) == "up"
        detector_tick(c)
        assert silent_outages(http) == []

    # Six intervals: every part says silent. The pages and the map are asked before the
    # detector's tick, so that each is judged by its own threshold, not by the outage.
    c.clock.now = heard + 6 * INTERVAL
    with client(c.collector) as http:
        assert metrics_says(http) == {"reporting": 0.0, "silent": 1.0}
        assert status_page_says(http) == "down"
        assert read_api_says(http) == "silent"
        assert map_says(http) == "down"
        detector_tick(c)
        [outage] = silent_outages(http)
        assert outage["probe_id"] == PROBE
        # opened at the last time the probe was heard, when its silence began
        started = datetime.fromisoformat(str(outage["started_at"]))
        assert started.timestamp() == heard
