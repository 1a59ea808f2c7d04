"""Outages end to end in a real collector: detection, classification, history, a webhook."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson

from lomsong.config.alerts import AlertsConfig
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector, WebhookSink
from tests.factories import body, iso
from tests.waiting import wait_until

INTERVAL = 1.0  # report interval of these tests: silent after 3 s
#: Moved past the grace (3 intervals without a batch): the next detector tick opens the outage.
PAST_GRACE = 4 * INTERVAL


def alerts_to(sink: WebhookSink, language: str = "vi") -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "external_url": "http://127.0.0.1:8080",
            "receivers": [{"type": "webhook", "name": "sink", "url": sink.url}],
            "routes": [
                {
                    "name": "all",
                    "receiver": "sink",
                    "language": language,
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                }
            ],
        }
    )


class FakeClock:
    """The collector's wall clock, moved by the test; the agents read it too."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Agent:
    """Sends what a probe agent would, with explicit times, on the collector's clock."""

    def __init__(self, c: RunningCollector, clock: FakeClock, probe_id: str, commune: str) -> None:
        self.c = c
        self.clock = clock
        self.id = probe_id
        self.token = c.register(probe_id, commune, ("viettel-4g:viettel", "fibre:fibre"))
        self.seq = 0
        self.boot = "boot-1"
        self.boot_at = clock.now - 3600

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now, UTC)

    def round(self, at: datetime, ok: bool = True) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for uplink in ("viettel-4g", "fibre"):
            self.seq += 1
            out.append(
                {
                    "seq": self.seq,
                    "measured_at": iso(at),
                    "kind": "icmp",
                    "target": "dichvucong.gov.vn",
                    "uplink": uplink,
                    "ok": ok,
                    "duration_seconds": 0.04 if ok else None,
                    "packets_sent": 5,
                    "packets_received": 5 if ok else 0,
                    "error": None if ok else "timeout",
                }
            )
        self.seq += 1
        out.append(
            {
                "seq": self.seq,
                "measured_at": iso(at),
                "kind": "heartbeat",
                "target": "self",
                "uplink": None,
                "ok": True,
                "uptime_seconds": at.timestamp() - self.boot_at,
            }
        )
        return out

    def send(self, results: list[dict[str, object]]) -> dict[str, int]:
        doc = {
            "probe_id": self.id,
            "boot_id": self.boot,
            "agent_version": "0.1.0",
            "sent_at": iso(self.now()),
            "results": results,
        }
        raw, headers = body(doc, gz=True)
        with self.c.client(self.token) as http:
            r = http.post("/api/v1/reports", content=raw, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def report(self, rounds: int = 1) -> None:
        """``rounds`` rounds at a probe's cadence: one round, then an interval passes."""
        for _ in range(rounds):
            self.send(self.round(self.now()))
            self.clock.advance(INTERVAL)


def start(
    factory: CollectorFactory,
    url: str,
    sink: WebhookSink,
    clock: FakeClock,
    language: str = "vi",
) -> RunningCollector:
    """A collector on ``clock``, its detector running: the ticks (real time) judge at the clock's
    time, and observe every batch sent from now on (those stored before it ran are its past)."""
    c = factory(
        url,
        alerts=alerts_to(sink, language),
        clock=clock,
        report_interval_seconds=INTERVAL,
        detector={"tick_seconds": 0.2},
    )
    with c.client() as http:
        wait_until(
            lambda: http.get("/healthz").json()["detector"] == "leader",
            timeout=15,
            what="the collector's detector running",
        )
    return c


def firing(bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    return [b for b in bodies if b["status"] == "firing"]


def resolved(bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    return [b for b in bodies if b["status"] == "resolved"]


def test_a_power_cut_is_alerted_then_resolved_as_power(
    collector_factory: CollectorFactory, sqlite_url: str, webhook_sink: WebhookSink
) -> None:
    clock = FakeClock()
    c = start(collector_factory, sqlite_url, webhook_sink, clock)
    agent = Agent(c, clock, "cb-bao-lac", "01321")
    agent.report(2)
    clock.advance(PAST_GRACE - INTERVAL)  # silent: the next tick opens the outage
    bodies = webhook_sink.wait_for(lambda b: len(firing(b)) >= 1, timeout=10)
    [fire] = firing(bodies)
    assert fire["version"] == "4"
    [alert] = fire["alerts"]  # type: ignore[misc]
    assert alert["labels"]["condition"] == "probe_silent" and alert["labels"]["commune"] == "01321"
    assert "Xã Bảo Lạc (01321), Cao Bằng" in alert["annotations"]["summary"]
    assert "đang xác định" in alert["annotations"]["summary"]
    # Power back: a new boot, no results measured in the gap. The round's interval passing is
    # also the route's group_interval, after which the resolved message may follow the firing.
    agent.boot, agent.boot_at = "boot-2", clock.now - 1
    agent.report(1)
    bodies = webhook_sink.wait_for(lambda b: len(resolved(b)) >= 1)
    [res] = resolved(bodies)
    [ralert] = res["alerts"]  # type: ignore[misc]
    assert ralert["labels"]["cause"] == "power"
    assert "mất điện" in ralert["annotations"]["summary"]
    with c.client(ADMIN_SECRET) as http:
        [outage] = http.get("/api/v1/outages", params={"commune": "01321"}).json()["outages"]
        attempts = http.get("/api/v1/notifications").json()["attempts"]
    assert outage["cause"] == "power" and outage["active"] is False
    assert outage["commune"]["name"] == "Xã Bảo Lạc"
    # corrected from the probe's own measurements: ends at the boot, 1 s before the return
    ended = datetime.fromisoformat(outage["ended_at"].replace("Z", "+00:00")).timestamp()
    assert abs(ended - agent.boot_at) < 1.5
    assert [(a["status"], a["ok"]) for a in reversed(attempts)] == [
        ("firing", True),
        ("resolved", True),
    ]


def test_a_network_gap_backfilled_is_classified_network(
    collector_factory: CollectorFactory, sqlite_url: str, webhook_sink: WebhookSink
) -> None:
    clock = FakeClock()
    c = start(collector_factory, sqlite_url, webhook_sink, clock, language="en")
    agent = Agent(c, clock, "cb-thuc-phan", "01273")
    agent.report(2)
    clock.advance(PAST_GRACE - INTERVAL)  # silent: the next tick opens the outage
    webhook_sink.wait_for(lambda b: len(firing(b)) >= 1, timeout=10)
    # The probe measured its uplinks failing during the gap and kept the results.
    now = agent.now()
    gap = [r for i in range(4, 0, -1) for r in agent.round(now - timedelta(seconds=i), ok=False)]
    back = agent.round(now)
    heartbeat = back[-1]
    agent.send([heartbeat])  # newest heartbeat first, then the backlog oldest first
    agent.send(gap + back[:-1])
    clock.advance(INTERVAL)  # the route's group_interval: the resolved message may follow
    bodies = webhook_sink.wait_for(
        lambda b: any(
            a["labels"].get("cause") == "network" and a["labels"]["condition"] == "probe_silent"  # type: ignore[index]
            for x in resolved(b)
            for a in x["alerts"]
        )
    )  # type: ignore[attr-defined]
    text = [a["annotations"]["description"] for x in resolved(bodies) for a in x["alerts"]]  # type: ignore[attr-defined]
    assert any("Kind: network failure" in t for t in text)


def test_outages_are_scoped_by_province(
    collector_factory: CollectorFactory, sqlite_url: str, webhook_sink: WebhookSink
) -> None:
    clock = FakeClock()
    c = start(collector_factory, sqlite_url, webhook_sink, clock)
    a = Agent(c, clock, "cb-bao-lac", "01321")
    b = Agent(c, clock, "tq-minh-xuan", "02509")
    a.send(a.round(a.now()))
    b.send(b.round(b.now()))
    clock.advance(PAST_GRACE)  # both silent: the next tick opens their outages
    webhook_sink.wait_for(lambda x: sum(len(f["alerts"]) for f in firing(x)) >= 2, timeout=10)  # type: ignore[arg-type,misc]
    with c.client(c.viewer("04")) as http:
        mine = http.get("/api/v1/outages").json()["outages"]
        assert [o["probe_id"] for o in mine] == ["cb-bao-lac"]
        assert http.get("/api/v1/outages", params={"province": "08"}).status_code == 403
        assert http.get("/api/v1/notifications").status_code == 403
    with c.client(ADMIN_SECRET) as http:
        both = http.get("/api/v1/outages", params={"active": "true"}).json()["outages"]
        assert sorted(o["probe_id"] for o in both) == ["cb-bao-lac", "tq-minh-xuan"]
        bad = http.get("/api/v1/outages", params={"since": "last week"})
        assert bad.status_code == 422 and "last week" in bad.json()["detail"]
    assert orjson.loads(orjson.dumps(mine))


def test_a_link_down_alert_names_the_hamlets_left_without_signal(
    collector_factory: CollectorFactory, sqlite_url: str, webhook_sink: WebhookSink
) -> None:
    import numpy as np

    from lomsong.collector.deps import coverage_of
    from lomsong.coverage.compute import classify_area
    from lomsong.coverage.model import COVERED, WEAK
    from tests.factories import store_synth

    store_synth(sqlite_url)
    clock = FakeClock()
    c = start(collector_factory, sqlite_url, webhook_sink, clock)
    agent = Agent(c, clock, "cb-bao-lac", "01321")
    agent.report(1)
    for _ in range(4):  # Viettel's link fails, the fibre line works
        rows = agent.round(agent.now())
        for r in rows:
            if r.get("uplink") == "viettel-4g":
                r.update(ok=False, duration_seconds=None, packets_received=0, error="timeout")
        agent.send(rows)
        clock.advance(INTERVAL)  # a probe's cadence
    bodies = webhook_sink.wait_for(lambda b: len(firing(b)) >= 1, timeout=15)
    [alert] = [a for b in firing(bodies) for a in b["alerts"]]  # type: ignore[attr-defined]
    assert alert["labels"]["condition"] == "uplink_down"
    assert alert["labels"]["operator"] == "viettel"
    text = alert["annotations"]["description"]

    # the hamlets of Bảo Lạc that Viettel serves and no other operator does
    area = classify_area(c.engine, "04", coverage_of(c.ctx).settings, now=clock.now)
    h, status = area.hamlets, area.base.status
    serves = np.isin(status, (COVERED, WEAK))
    v = area.base.operators.index("viettel")
    lost = np.flatnonzero((h.commune_code == "01321") & serves[:, v] & (serves.sum(axis=1) == 1))
    assert lost.size >= 2
    people = int(h.population[lost].sum())
    assert f"Thôn/bản không có sóng: {lost.size} ({people:,} người".replace(",", ".") in text
    largest = sorted(lost, key=lambda i: -int(h.population[i]))[:5]
    named = ", ".join(
        f"{h.names[i]} ({int(h.population[i]):,} người)".replace(",", ".") for i in largest
    )
    more = f" và {lost.size - 5} thôn/bản khác" if lost.size > 5 else ""
    assert f"Thôn/bản bị ảnh hưởng: {named}{more}\n" in text
    assert "Bản đồ: http://127.0.0.1:8080/maps/province/04" in text
