"""How a probe's state is judged from its live results and its open outages."""

from __future__ import annotations

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
    (live(NOW - 20, fibre=True, viettel_4g=False), [], "degraded", None, ("up", "degraded")),
    (
        live(NOW - 20, fibre=True, viettel_4g=False),
        [outage("uplink_down", NOW - 600, "viettel-4g")],
        "degraded",
        NOW - 600,
        ("up", "down"),
    ),
    (
        live(NOW - 20, fibre=False, viettel_4g=False),
        [outage("uplink_down", NOW - 600, "viettel-4g"), outage("uplink_down", NOW - 300, "fibre")],
        "down",
        NOW - 600,
        ("down", "down"),
    ),
    (
        live(NOW - 20, fibre=True, viettel_4g=True),
        [outage("degraded", NOW - 120, "fibre")],
        "degraded",
        NOW - 120,
        ("degraded", "up"),
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
