"""The outage detector with a fake clock, and hypothesis properties of its invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lomsong.collector.detector import (
    WINDOW_MAX_SAMPLES,
    Change,
    Detector,
    DetectorConfig,
    Observation,
    ProbeMeta,
    _Window,
)

META = ProbeMeta("cb-1", "01273", "04", {"viettel-4g": "viettel", "fibre": "fibre"})
CFG = DetectorConfig(report_interval_seconds=30, down_after_failures=3, up_after_successes=2)
T0 = 1_800_000_000.0


class Probe:
    """Drives a detector the way an agent and a collector would."""

    def __init__(self, detector: Detector, boot: str = "boot-a") -> None:
        self.d = detector
        self.seq = 0
        self.boot = boot
        self.boot_at = T0 - 3600
        self.changes: list[Change] = []

    def round(
        self, at: float, *, ok: dict[str, bool] | None = None, loss: float = 0.0, rtt: float = 0.04
    ) -> list[Observation]:
        """One round of checks measured at ``at``: icmp and dns on each uplink, a heartbeat."""
        ok = ok or {}
        out = []
        for uplink in ("viettel-4g", "fibre"):
            good = ok.get(uplink, True)
            for kind in ("icmp", "dns"):
                self.seq += 1
                out.append(
                    Observation(
                        "cb-1",
                        self.seq,
                        at,
                        at,
                        kind,
                        uplink,
                        good,
                        self.boot,
                        target=kind,
                        duration_seconds=rtt if good else None,
                        packets_sent=10 if kind == "icmp" else None,
                        packets_received=(round(10 * (1 - loss)) if good else 0)
                        if kind == "icmp"
                        else None,
                    )
                )
        self.seq += 1
        out.append(
            Observation(
                "cb-1",
                self.seq,
                at,
                at,
                "heartbeat",
                None,
                True,
                self.boot,
                target="self",
                uptime_seconds=at - self.boot_at,
            )
        )
        return out

    def deliver(self, obs: list[Observation], received: float) -> list[Change]:
        obs = [_with_received(o, received) for o in obs]
        ch = self.d.observe(obs)
        self.changes += ch
        return ch

    def tick(self, now: float) -> list[Change]:
        ch = self.d.tick(now)
        self.changes += ch
        return ch

    def live(self, start: float, rounds: int, **kw: object) -> float:
        """Report every 30 s, delivered at once; return the time after the last round."""
        t = start
        for _ in range(rounds):
            self.deliver(self.round(t, **kw), t)  # type: ignore[arg-type]
            self.tick(t)
            t += 30
        return t


def _with_received(o: Observation, received: float) -> Observation:

    return o._replace(received_at=received)


def new() -> Probe:
    d = Detector(CFG)
    d.set_probe(META)
    return Probe(d)


def opened(ch: list[Change]) -> list[str]:
    return [c.outage.condition for c in ch if c.action == "open"]


def test_regular_reports_open_nothing() -> None:
    p = new()
    p.live(T0, 50)
    assert p.changes == [] and p.d.active() == []


def test_a_silent_probe_opens_after_the_grace_period_at_the_last_time_heard() -> None:
    p = new()
    t = p.live(T0, 5)  # last heard at T0 + 120
    assert p.tick(T0 + 120 + 90) == []  # exactly the grace: not yet
    [ch] = p.tick(T0 + 120 + 91)
    assert ch.action == "open" and ch.outage.condition == "probe_silent"
    assert ch.outage.started_at == T0 + 120 and ch.outage.cause is None
    assert p.tick(t + 600) == []  # opened once


def test_power_cut_new_boot_and_no_results_in_the_gap() -> None:
    p = new()
    p.live(T0, 5)
    p.tick(T0 + 1000)
    # The centre was dark from T0+120 until it booted again at T0+1900.
    p.boot, p.boot_at = "boot-b", T0 + 1900
    ch = p.deliver(p.round(T0 + 1960), T0 + 1961)
    [close] = [c for c in ch if c.action == "close"]
    assert close.outage.cause == "power"
    assert close.outage.started_at == T0 + 120  # last measurement before the gap
    assert close.outage.ended_at == T0 + 1900  # boot time from the heartbeat's uptime
    assert p.d.active() == []


def test_network_gap_measured_by_the_probe_is_backfilled_and_classified() -> None:
    p = new()
    p.live(T0, 5)  # up to T0+120
    p.tick(T0 + 400)
    assert opened(p.changes) == ["probe_silent"]
    # During the gap both uplinks failed from T0+150 to T0+570, then came back at T0+600.
    backlog = []
    for i in range(15):
        t = T0 + 150 + 30 * i
        backlog += p.round(t, ok={"viettel-4g": False, "fibre": False})
    back = []
    for i in range(3):
        back += p.round(T0 + 600 + 30 * i)
    heartbeat = back[-1]
    # Reconnect: the newest heartbeat first, then the backlog oldest first.
    first = p.deliver([heartbeat], T0 + 700)
    assert [c.action for c in first] == ["update"]  # back, but awaiting the backfill
    p.deliver(backlog[:30], T0 + 701)
    assert p.d.active()[0].condition == "probe_silent"
    rest = p.deliver(backlog[30:] + back[:-1], T0 + 702)
    closes = [
        c.outage for c in rest if c.action == "close" and c.outage.condition == "probe_silent"
    ]
    assert len(closes) == 1
    assert closes[0].cause == "network"
    assert closes[0].started_at == T0 + 150  # first failure measured in the gap
    assert closes[0].ended_at == T0 + 600  # first success after the last failure
    # The uplink streams saw the failures too: uplink outages opened and closed in history.
    assert sorted(opened(p.changes)) == ["probe_silent", "uplink_down", "uplink_down"]
    assert p.d.active() == []


def test_same_boot_and_no_results_in_the_gap_is_unknown() -> None:
    p = new()
    p.live(T0, 5)
    p.tick(T0 + 500)
    [close] = [c for c in p.deliver(p.round(T0 + 900), T0 + 901) if c.action == "close"]
    assert close.outage.cause == "unknown"


def test_a_backfill_that_never_completes_is_closed_after_the_timeout() -> None:
    p = new()
    p.live(T0, 5)
    p.tick(T0 + 500)
    p.seq += 100  # a hole of lost seqs: the backfill can never be contiguous
    p.deliver(p.round(T0 + 900), T0 + 901)
    assert p.d.active()
    assert p.tick(T0 + 901 + 899) == []
    [close] = p.tick(T0 + 901 + 901)
    assert close.action == "close" and close.outage.cause == "unknown"


def test_uplink_down_after_n_failures_and_up_after_m_successes() -> None:
    p = new()
    t = p.live(T0, 3)
    t = p.live(t, 2, ok={"viettel-4g": False})
    assert opened(p.changes) == []
    t = p.live(t, 1, ok={"viettel-4g": False})
    [down] = p.d.active()
    assert (down.condition, down.uplink, down.operator, down.cause) == (
        "uplink_down",
        "viettel-4g",
        "viettel",
        "network",
    )
    assert down.started_at == T0 + 90  # first of the three failures
    t = p.live(t, 1)
    assert p.d.active()  # one success is not enough (M = 2)
    p.live(t, 1)
    assert p.d.active() == []
    [closed] = [c.outage for c in p.changes if c.action == "close"]
    assert closed.ended_at == T0 + 180  # first success of the closing run


def test_one_failing_check_does_not_take_the_uplink_down() -> None:
    p = new()
    t = T0
    for _ in range(10):
        obs = p.round(t)
        obs = [o if o.kind != "dns" else _bad(o) for o in obs]
        p.deliver(obs, t)
        t += 30
    assert opened(p.changes) == []


def _bad(o: Observation) -> Observation:

    return o._replace(ok=False)


def test_degraded_on_loss_closes_when_clear() -> None:
    p = new()
    t = p.live(T0, 6, loss=0.4)
    [deg, deg2] = sorted(p.d.active(), key=lambda o: o.uplink or "")
    assert deg.condition == deg2.condition == "degraded"
    p.live(t, 12, loss=0.0)
    assert p.d.active() == []


def test_the_quality_window_keeps_its_time_span_and_its_cap() -> None:
    w = _Window()
    for i in range(10):
        w.append(T0 + i, 0.2 if i % 2 else 0.0, None if i == 3 else 0.01 * i)
    w.drop_before(T0 + 4)
    assert len(w) == 6 and w.first_measured() == T0 + 4
    assert abs(w.mean_loss() - 0.1) < 1e-12
    assert w.median_rtt() == 0.065
    for i in range(3 * WINDOW_MAX_SAMPLES):  # a gap-free stream of 1-second pings
        w.append(T0 + 10 + i, 0.0, None)
    assert len(w) == WINDOW_MAX_SAMPLES
    assert w.first_measured() == T0 + 10 + 2 * WINDOW_MAX_SAMPLES
    assert w.median_rtt() is None
    w.clear()
    assert len(w) == 0


def test_degraded_on_latency() -> None:
    p = new()
    p.live(T0, 6, rtt=0.9)
    assert {o.condition for o in p.d.active()} == {"degraded"}


# -- properties -------------------------------------------------------------------------------

gaps = st.lists(st.floats(min_value=1, max_value=89), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(gaps)
def test_no_outage_without_a_failing_condition(intervals: list[float]) -> None:
    p = new()
    t = T0
    for gap in intervals:
        p.deliver(p.round(t), t)
        p.tick(t + gap * 0.99)
        t += gap
    assert p.changes == []


rounds = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.floats(min_value=0, max_value=1)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(rounds, st.lists(st.integers(min_value=0, max_value=29), max_size=3))
def test_every_opened_outage_closes_once_conditions_clear(
    spec: list[tuple[bool, bool, float]], silences: list[int]
) -> None:
    p = new()
    t = T0
    for i, (a, b, loss) in enumerate(spec):
        if i in silences:
            t += 400  # silent for a while
            p.tick(t)
        p.deliver(p.round(t, ok={"viettel-4g": a, "fibre": b}, loss=loss), t)
        p.tick(t)
        t += 30
    p.live(t, 15)  # conditions clear: regular good rounds
    assert p.d.active() == []
    opens = [c.outage.id for c in p.changes if c.action == "open"]
    closes = [c.outage.id for c in p.changes if c.action == "close"]
    assert sorted(opens) == sorted(closes)
    assert len(set(opens)) == len(opens)


@settings(max_examples=60, deadline=None)
@given(rounds)
def test_at_most_one_open_outage_per_condition_and_uplink(
    spec: list[tuple[bool, bool, float]],
) -> None:
    p = new()
    t = T0
    for a, b, loss in spec:
        p.deliver(p.round(t, ok={"viettel-4g": a, "fibre": b}, loss=loss), t)
        t += 30
        keys = [(o.condition, o.uplink) for o in p.d.active()]
        assert len(keys) == len(set(keys))
        for o in p.d.active():
            if o.condition == "degraded":
                assert ("uplink_down", o.uplink) not in keys


def test_power_cut_with_results_the_agent_could_not_send_before_it() -> None:
    p = new()
    p.live(T0, 5)  # delivered up to T0+120
    unsent = p.round(T0 + 150) + p.round(T0 + 180)  # measured, then the power went out
    p.tick(T0 + 1000)
    p.boot, p.boot_at = "boot-b", T0 + 1900
    back = p.round(T0 + 1960)
    p.deliver([back[-1]], T0 + 1961)
    [close] = [c for c in p.deliver(unsent + back[:-1], T0 + 1962) if c.action == "close"]
    assert close.outage.cause == "power"
    assert close.outage.started_at == T0 + 180  # its last measurement, sent after the return
    assert close.outage.ended_at == T0 + 1900


# -- checks removed from the agent's config ---------------------------------------------------


def _obs(p: Probe, at: float, uplink: str, kind: str, target: str, ok: bool) -> Observation:
    p.seq += 1
    sent = 10 if kind == "icmp" else None
    return Observation(
        "cb-1",
        p.seq,
        at,
        at,
        kind,
        uplink,
        ok,
        p.boot,
        target=target,
        duration_seconds=0.04 if ok else None,
        packets_sent=sent,
        packets_received=(10 if ok else 0) if sent else None,
    )


FIBRE = [("fibre", "icmp", "icmp"), ("fibre", "dns", "dns"), ("", "heartbeat", "self")]


def _closes(ch: list[Change]) -> list[Change]:
    return [c for c in ch if c.action == "close"]


def test_a_removed_check_that_took_its_uplink_down_ends_the_outage() -> None:
    p = new()
    t = T0
    for _ in range(3):  # the 4G uplink has one check, and it fails
        p.deliver([_obs(p, t, "viettel-4g", "tcp", "gone:443", False)], t)
        t += 30
    [down] = p.d.active()
    assert (down.condition, down.uplink) == ("uplink_down", "viettel-4g")

    # The agent restarted without it: the uplink has no check left to watch it.
    [close] = p.d.set_running("cb-1", FIBRE, t, t + 1)
    assert close.reason == "checks_removed" and close.outage.id == down.id
    assert (close.outage.ended_at, close.outage.resolved_at) == (t, t + 1)
    assert p.d.active() == []
    # A backfill of the removed check measured before the list is not judged again, and an
    # older list changes nothing.
    back = [_obs(p, t - 5 + i, "viettel-4g", "tcp", "gone:443", False) for i in range(3)]
    assert p.deliver(back, t + 2) == []
    assert p.d.set_running("cb-1", [], t - 1, t + 3) == []
    assert p.d.active() == []


def test_a_removed_failing_check_leaves_the_uplink_to_the_checks_that_remain() -> None:
    p = new()
    t = T0
    for _ in range(3):
        p.deliver([_obs(p, t, "viettel-4g", "tcp", "gone:443", False)], t)
        t += 30
    # A check added with the new config already succeeds; the removed one held the outage.
    p.deliver([_obs(p, t, "viettel-4g", "icmp", "8.8.8.8", True)], t)
    [close] = p.d.set_running("cb-1", [("viettel-4g", "icmp", "8.8.8.8")], t, t)
    assert close.reason == "checks_removed" and p.d.active() == []

    # Listed checks that have not reported yet close it the usual way, after M successes.
    q = new()
    t = T0
    for _ in range(3):
        q.deliver([_obs(q, t, "viettel-4g", "tcp", "gone:443", False)], t)
        t += 30
    assert q.d.set_running("cb-1", [("viettel-4g", "icmp", "8.8.8.8")], t, t) == []
    assert q.deliver([_obs(q, t + 1, "viettel-4g", "icmp", "8.8.8.8", True)], t + 1) == []
    [close] = q.deliver([_obs(q, t + 31, "viettel-4g", "icmp", "8.8.8.8", True)], t + 31)
    assert close.reason is None and close.outage.ended_at == t + 1
    assert q.d.active() == []


def test_a_removed_succeeding_check_no_longer_keeps_the_uplink_up() -> None:
    p = new()
    t = T0
    for _ in range(5):  # dns fails, icmp answers: not every check fails, the uplink is up
        p.deliver(
            [
                _obs(p, t, "viettel-4g", "icmp", "8.8.8.8", True),
                _obs(p, t, "viettel-4g", "dns", "vnnic", False),
            ],
            t,
        )
        t += 30
    assert p.d.active() == []
    [opened_] = p.d.set_running("cb-1", [("viettel-4g", "dns", "vnnic")], t, t + 1)
    down = opened_.outage
    assert opened_.action == "open" and down.condition == "uplink_down"
    # Down since the removed check's last success (the dns failures began before it).
    assert (down.started_at, down.detected_at) == (t - 30, t + 1)
    # It then closes as any other, when the remaining check succeeds M times.
    p.deliver([_obs(p, t + 30, "viettel-4g", "dns", "vnnic", True)], t + 30)
    [close] = p.deliver([_obs(p, t + 60, "viettel-4g", "dns", "vnnic", True)], t + 60)
    assert close.reason is None and p.d.active() == []


def test_degraded_ends_when_its_icmp_checks_are_removed() -> None:
    p = new()
    t = p.live(T0, 6, loss=0.4)
    assert {(o.condition, o.uplink) for o in p.d.active()} == {
        ("degraded", "viettel-4g"),
        ("degraded", "fibre"),
    }
    # 4G keeps only its dns check: its window has nothing left to judge; fibre is unchanged.
    running = [*FIBRE, ("viettel-4g", "dns", "dns")]
    [close] = p.d.set_running("cb-1", running, t, t)
    assert close.reason == "checks_removed" and close.outage.uplink == "viettel-4g"
    assert [(o.condition, o.uplink) for o in p.d.active()] == [("degraded", "fibre")]


def test_a_restarted_detector_ends_outages_whose_checks_were_removed_meanwhile() -> None:
    p = new()
    t = T0
    for _ in range(3):
        p.deliver(
            [
                _obs(p, t, "viettel-4g", "tcp", "gone:443", False),
                _obs(p, t, "fibre", "tcp", "x:443", False),
            ],
            t,
        )
        t += 30
    open_ = p.d.active()
    assert len(open_) == 2
    # A new leader: the outages come back from the history, the list from probe_state.
    d = Detector(CFG)
    d.set_probe(META)
    for o in open_:
        d.restore(o)
    [close] = d.set_running("cb-1", [("fibre", "tcp", "x:443")], t, t + 5)
    assert close.reason == "checks_removed" and close.outage.uplink == "viettel-4g"
    # The fibre check is still run: its outage stays until it succeeds.
    assert [o.uplink for o in d.active()] == ["fibre"]
