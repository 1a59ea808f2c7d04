"""What the status page takes from the collector: maintenance windows in force with their end,
shown to the readers of the provinces they touch; outages matched as the dispatcher does."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Engine

from lomsong.collector.live import LiveState
from lomsong.collector.status_data import StatusData, labels, window_end
from lomsong.config.alerts import AlertsConfig, MaintenanceConfig, Match
from lomsong.timefmt import LOCAL_TZ

#: a Tuesday, 23:30 in Vietnam
TUESDAY_NIGHT = datetime(2026, 11, 24, 23, 30, tzinfo=LOCAL_TZ).timestamp()

NIGHT_WORKS = MaintenanceConfig(
    name="Viettel night works, Cao Bằng",
    match=Match(province=["04"], operator=["viettel"]),
    weekdays=[2, 4],
    from_time=time(23, 0),
    to_time=time(4, 0),
)
POWER_CUT = MaintenanceConfig(
    name="EVN power cut, Bảo Lạc",
    match=Match(commune=["01321"]),
    start=datetime(2026, 11, 24, 22, 0),
    end=datetime(2026, 11, 25, 6, 0),
)
EVERYWHERE = MaintenanceConfig(
    name="Collector upgrade",
    start=datetime(2026, 11, 24, 23, 0),
    end=datetime(2026, 11, 24, 23, 45),
)
LATER = MaintenanceConfig(
    name="Next week",
    start=datetime(2026, 12, 1, 22, 0),
    end=datetime(2026, 12, 1, 23, 0),
)


def data(engine: Engine) -> StatusData:
    alerts = AlertsConfig(maintenance=[NIGHT_WORKS, POWER_CUT, EVERYWHERE, LATER])
    return StatusData(engine, LiveState(), None, alerts)


def test_a_window_over_midnight_ends_the_next_morning() -> None:
    assert window_end(NIGHT_WORKS, TUESDAY_NIGHT) == (
        datetime(2026, 11, 25, 4, 0, tzinfo=LOCAL_TZ).timestamp()
    )
    after_midnight = datetime(2026, 11, 25, 1, 0, tzinfo=LOCAL_TZ).timestamp()
    assert window_end(NIGHT_WORKS, after_midnight) == window_end(NIGHT_WORKS, TUESDAY_NIGHT)
    assert window_end(POWER_CUT, TUESDAY_NIGHT) == (
        datetime(2026, 11, 25, 6, 0, tzinfo=LOCAL_TZ).timestamp()
    )


def test_windows_in_force_are_shown_to_the_provinces_they_touch(sqlite_engine: Engine) -> None:
    d = data(sqlite_engine)
    everyone = [w.name for w in d.maintenance(TUESDAY_NIGHT, None)]
    # ending soonest first; next week's is not in force
    assert everyone == [EVERYWHERE.name, NIGHT_WORKS.name, POWER_CUT.name]
    cao_bang = d.maintenance(TUESDAY_NIGHT, {"04"})
    assert [w.name for w in cao_bang] == everyone  # 01321 is a commune of Cao Bằng
    assert cao_bang[1].scope == "tỉnh / province 04 · nhà mạng / operator viettel"
    assert [w.name for w in d.maintenance(TUESDAY_NIGHT, {"12"})] == [EVERYWHERE.name]


def test_an_outage_is_in_the_windows_the_dispatcher_would_mute_it_for(
    sqlite_engine: Engine,
) -> None:
    row = {
        "id": "o1",
        "probe_id": "cb-bao-lac",
        "commune_code": "01321",
        "province_code": "04",
        "condition": "uplink_down",
        "cause": "network",
        "uplink": "viettel-4g",
        "operator": "viettel",
        "started_at": TUESDAY_NIGHT - 600,
        "detected_at": TUESDAY_NIGHT - 540,
        "ended_at": None,
        "resolved_at": None,
    }
    assert labels(row)["severity"] == "warning"
    [view] = data(sqlite_engine).views([row], {"04": "Cao Bằng"}, TUESDAY_NIGHT)
    assert view.maintenance == (NIGHT_WORKS.name, POWER_CUT.name, EVERYWHERE.name)
    assert view.commune_name == "Xã Bảo Lạc" and view.province_name == "Cao Bằng"
    # no coverage service: the page says the hamlets are not known, it does not guess
    assert view.impact is not None and view.impact.state == "no_geodata"
    mobifone = {**row, "operator": "mobifone", "uplink": "mobifone-4g"}
    [other] = data(sqlite_engine).views([mobifone], {}, TUESDAY_NIGHT)
    assert other.maintenance == (POWER_CUT.name, EVERYWHERE.name)
    silent = {**row, "condition": "probe_silent", "cause": None, "operator": None}
    [cut_off] = data(sqlite_engine).views([silent], {}, TUESDAY_NIGHT)
    assert cut_off.impact is not None and cut_off.impact.state == "until_back"
