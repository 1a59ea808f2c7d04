"""How a probe's state is judged from its live results and its open outages."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lomsong.collector.live import Latest, ProbeLive
from lomsong.collector.probe_markers import probe_markers
from lomsong.collector.registry import ProbeInfo, Uplink

NOW = 1_795_000_000.0
SILENT_AFTER = 90.0
INFO = ProbeInfo(
    id="cb-thuc-phan",
    commune_code="01273",
    commune_name="Phường Thục Phán",
    province_code="04",
    province_name="Cao Bằng",
    label=None,
    uplinks=(Uplink("fibre", "fibre"), Uplink("viettel-4g", "viettel")),
)
POINTS = {"01273": (106.2567, 22.6657)}


def live(seen: float | None, **ok: bool) -> ProbeLive:
    p = ProbeLive(last_seen_at=seen)
    for uplink, good in ok.items():
        name = uplink.replace("_", "-")
        p.checks[name] = {("icmp", "portal"): Latest(1, NOW - 10, good, 0.04, None, None)}
    return p


def outage(condition: str, started: float, uplink: str | None = None) -> dict[str, Any]:
    return {
        "probe_id": "cb-thuc-phan",
        "condition": condition,
        "uplink": uplink,
        "operator": {"viettel-4g": "viettel", "fibre": "fibre"}.get(uplink or ""),
        "started_at": started,
        "cause": None,
    }


CASES = [
    # (live state, open outages, probe state, since, uplink states)
    (None, [], "unknown", None, ("unknown", "unknown")),
    (live(NOW - 20, fibre=True, viettel_4g=True), [], "up", None, ("up", "up")),
    # checks failing, not judged yet: the uplink says so, the centre stays up
    (live(NOW - 20, fibre=True, viettel_4g=False), [], "up", None, ("up", "failing")),
    (live(NOW - 20, fibre=False, viettel_4g=False), [], "up", None, ("failing", "failing")),
    # one link of two down: partly down, since that link went
    (
        live(NOW - 20, fibre=True, viettel_4g=False),
        [outage("uplink_down", NOW - 600, "viettel-4g")],
        "partial",
        NOW - 600,
        ("up", "down"),
    ),
    # one down and the other failing: still partly down (the detector has judged only one)
    (
        live(NOW - 20, fibre=False, viettel_4g=False),
        [outage("uplink_down", NOW - 600, "viettel-4g")],
        "partial",
        NOW - 600,
        ("failing", "down"),
    ),
    (
        live(NOW - 20, fibre=False, viettel_4g=False),
        [outage("uplink_down", NOW - 600, "viettel-4g"), outage("uplink_down", NOW - 300, "fibre")],
        "down",
        NOW - 600,
        ("down", "down"),
    ),
    # loss or latency over the thresholds, and only that, is degraded
    (
        live(NOW - 20, fibre=True, viettel_4g=True),
        [outage("degraded", NOW - 120, "fibre")],
        "degraded",
        NOW - 120,
        ("degraded", "up"),
    ),
    # a link down outweighs another degraded; since is when the link went down
    (
        live(NOW - 20, fibre=True, viettel_4g=False),
        [outage("degraded", NOW - 900, "fibre"), outage("uplink_down", NOW - 300, "viettel-4g")],
        "partial",
        NOW - 300,
        ("degraded", "down"),
    ),
    (
        live(NOW - 4000, fibre=True, viettel_4g=True),
        [outage("probe_silent", NOW - 3990)],
        "down",
        NOW - 3990,
        ("up", "up"),
    ),
    # silent longer than the grace, before the detector's tick opened the outage
    (live(NOW - 200, fibre=True, viettel_4g=True), [], "down", NOW - 200, ("up", "up")),
]


@pytest.mark.parametrize(("state", "rows", "expected", "since", "uplinks"), CASES)
def test_probe_state(
    state: ProbeLive | None,
    rows: list[dict[str, Any]],
    expected: str,
    since: float | None,
    uplinks: tuple[str, str],
) -> None:
    lives = {} if state is None else {"cb-thuc-phan": state}
    [m] = probe_markers(
        {"cb-thuc-phan": INFO}, lives, rows, POINTS, now=NOW, silent_after=SILENT_AFTER
    )
    assert (m.state, m.since) == (expected, since)
    assert tuple(u.state for u in m.uplinks) == uplinks
    assert len(m.outages) == len(rows)
    assert (m.lon, m.lat) == POINTS["01273"]


def test_a_probe_whose_commune_has_no_point_is_left_out() -> None:
    assert probe_markers({"cb-thuc-phan": INFO}, {}, [], {}, now=NOW, silent_after=1) == []


def test_the_digest_ignores_the_seconds_of_last_seen_but_not_the_minutes() -> None:
    def digest(seen: float) -> tuple[Any, ...]:
        state = {"cb-thuc-phan": live(seen, fibre=True, viettel_4g=True)}
        [m] = probe_markers({"cb-thuc-phan": INFO}, state, [], POINTS, now=seen, silent_after=90)
        return m.digest()

    base = 1_795_000_020.0  # 20 s into a minute
    assert digest(base) == digest(base + 30)
    assert digest(base) != digest(base + 60)


def test_every_state_has_its_words_and_a_colour_and_others_are_refused() -> None:
    from lomsong.errors import ValidationError
    from lomsong.maps import labels
    from lomsong.maps.probes import LINK_STATES, STATES, UplinkState

    seen = {c[2] for c in CASES}, {u for c in CASES for u in c[4]}
    assert seen == (set(STATES), set(LINK_STATES))
    for state in (*STATES, *LINK_STATES):
        vi, en = labels.STATE_TEXT[state]
        assert vi and en and labels.STATE_COLOURS[state].startswith("#")
    assert labels.PROBE_TEXT["partial"] == ("Mất một phần kết nối", "Partly down")
    assert labels.UPLINK_TEXT["failing"] == ("Kiểm tra lỗi", "Checks failing")
    # one word per meaning: no two states share a word
    words = [w for pair in labels.STATE_TEXT.values() for w in pair]
    assert len(words) == len(set(words))
    colours = [labels.STATE_COLOURS[s] for s in labels.STATE_TEXT]
    assert len(colours) == len(set(colours))
    with pytest.raises(ValidationError, match="uplink.state"):
        UplinkState("fibre", "fibre", "partial")
    [marker] = probe_markers({"cb-thuc-phan": INFO}, {}, [], POINTS, now=NOW, silent_after=1)
    with pytest.raises(ValidationError, match="probe.state"):
        dataclasses.replace(marker, state="failing")
