"""Routing, grouping, inhibition, maintenance and delivery, on a fake clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomsong.collector.alerts.dispatcher import AlertSource, Attempt, Dispatcher
from lomsong.collector.alerts.messages import Facts
from lomsong.collector.alerts.model import DeliveryError, Notification
from lomsong.config.alerts import AlertsConfig, load_alerts_config
from lomsong.errors import ConfigError
from lomsong.timefmt import LOCAL_TZ

T0 = datetime(2026, 11, 23, 10, 42, tzinfo=LOCAL_TZ).timestamp()


class Inbox:
    """A receiver that keeps what it is given (the real ones are tested on real servers)."""

    def __init__(self, name: str, fail_first: int = 0, permanent: bool = False) -> None:
        self.name = name
        self.got: list[Notification] = []
        self.fail_first = fail_first
        self.permanent = permanent

    async def send(self, notification: Notification) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise DeliveryError(self.name, "HTTP 503", retryable=not self.permanent)
        self.got.append(notification)

    async def close(self) -> None:
        return None


def config(**extra: object) -> AlertsConfig:
    doc: dict[str, object] = {
        "receivers": [{"type": "webhook", "name": "sink", "url": "http://127.0.0.1:1/x"}],
        "routes": [
            {
                "name": "all",
                "receiver": "sink",
                "group_by": ["province", "condition"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "1h",
            }
        ],
        "regional": {"min_communes": 3, "window": "10m"},
    }
    doc.update(extra)
    return AlertsConfig.model_validate(doc)


def down(
    commune: str,
    name: str,
    *,
    at: float = T0,
    operator: str = "viettel",
    status: str = "firing",
    ended: float | None = None,
    fp: str | None = None,
) -> AlertSource:
    return AlertSource(
        fingerprint=fp or f"o-{commune}-{operator}",
        status=status,  # type: ignore[arg-type]
        facts=Facts(
            condition="uplink_down",
            province_code="04",
            province_name="Cao Bằng",
            commune_code=commune,
            commune_name=name,
            probe_id=f"cb-{commune}",
            cause="network",
            uplink=f"{operator}-4g",
            operator=operator,
            started_at=at,
            ended_at=ended,
            map_url="http://127.0.0.1:8080/maps/province/04",
        ),
    )


def silent(
    commune: str = "01321",
    *,
    status: str = "firing",
    cause: str | None = None,
    at: float = T0,
    ended: float | None = None,
) -> AlertSource:
    return AlertSource(
        fingerprint=f"s-{commune}",
        status=status,  # type: ignore[arg-type]
        facts=Facts(
            condition="probe_silent",
            province_code="04",
            province_name="Cao Bằng",
            commune_code=commune,
            commune_name="Xã Hà Quảng",
            probe_id="cb-ha-quang",
            cause=cause,
            started_at=at,
            ended_at=ended,
        ),
    )


def test_alerts_that_start_together_go_out_together_after_group_wait() -> None:
    d = Dispatcher(config(), {})
    d.update([down("01321", "Xã Hà Quảng")], T0)
    d.update([down("01273", "Phường Thục Phán")], T0 + 10)
    assert d.due(T0 + 29) == []
    [note] = d.due(T0 + 30)
    assert note.status == "firing" and len(note.alerts) == 2
    assert note.group_labels == {"province": "04", "condition": "uplink_down"}
    assert d.due(T0 + 31) == []


def test_group_interval_and_repeat_interval() -> None:
    d = Dispatcher(config(), {})
    d.update([down("01321", "Xã Hà Quảng")], T0)
    d.due(T0 + 30)
    d.update([down("01273", "Phường Thục Phán")], T0 + 60)
    assert d.due(T0 + 60 + 200) == []  # changed, but within group_interval of the last send
    [update] = d.due(T0 + 30 + 300)
    assert len(update.alerts) == 2
    assert d.due(T0 + 30 + 300 + 3599) == []
    [repeat] = d.due(T0 + 30 + 300 + 3600)  # unchanged and still firing: repeated
    assert repeat.status == "firing"


def test_resolved_is_told_once_and_the_group_ends() -> None:
    d = Dispatcher(config(), {})
    d.update([silent()], T0)
    d.due(T0 + 30)
    d.update([silent(status="resolved", cause="power", ended=T0 + 3900)], T0 + 4000)
    [note] = d.due(T0 + 4000)
    assert note.status == "resolved" and note.alerts[0].ends_at == T0 + 3900
    assert "mất điện" in note.title and "ĐÃ KHẮC PHỤC" in note.title
    assert d.due(T0 + 99_999) == []


def test_an_alert_resolved_before_anyone_was_told_is_never_told() -> None:
    d = Dispatcher(config(), {})
    d.update([silent()], T0)
    d.update([silent(status="resolved", cause="unknown", ended=T0 + 10)], T0 + 10)
    assert d.due(T0 + 30) == []


def test_regional_grouping_inhibits_the_per_commune_alerts() -> None:
    d = Dispatcher(config(), {})
    d.update([down("01321", "Xã Hà Quảng", at=T0)], T0)
    d.update([down("01273", "Phường Thục Phán", at=T0 + 60)], T0 + 60)
    d.update([down("01279", "Phường Nùng Trí Cao", at=T0 + 120)], T0 + 120)
    d.update([down("01288", "Phường Tân Giang", at=T0, operator="mobifone")], T0 + 120)
    notes = d.due(T0 + 200)
    regional = [n for n in notes if n.group_labels["condition"] == "regional"]
    per_commune = [
        a for n in notes if n.group_labels["condition"] == "uplink_down" for a in n.alerts
    ]
    assert len(regional) == 1 and len(regional[0].alerts) == 1
    text = regional[0].text
    assert "Xã Hà Quảng (01321)" in text and "Phường Nùng Trí Cao (01279)" in text
    assert "Viettel" in regional[0].title
    # Only the mobifone outage, which the regional alert does not cover, is told on its own.
    assert [a.labels["operator"] for a in per_commune] == ["mobifone"]


def test_communes_far_apart_in_time_are_not_regional() -> None:
    d = Dispatcher(config(), {})
    for i, (code, name) in enumerate(
        [("01321", "Xã Hà Quảng"), ("01273", "Phường Thục Phán"), ("01279", "Phường Nùng Trí Cao")]
    ):
        d.update([down(code, name, at=T0 + i * 700)], T0 + i * 700)
    conditions = {n.group_labels["condition"] for n in d.due(T0 + 3000)}
    assert conditions == {"uplink_down"}


def test_maintenance_mutes_then_releases() -> None:
    window = {
        "name": "night works",
        "match": {"operator": ["viettel"]},
        "weekdays": [1],
        "from_time": "10:00:00",
        "to_time": "11:30:00",
    }  # Monday 23/11/2026, local time
    d = Dispatcher(config(maintenance=[window]), {})
    d.update([down("01321", "Xã Hà Quảng")], T0)  # 10:42 local: inside the window
    assert d.due(T0 + 30) == []
    assert d.due(T0 + 1800) == []  # 11:12, still inside
    later = datetime(2026, 11, 23, 11, 30, tzinfo=LOCAL_TZ).timestamp()
    [note] = d.due(later + 1)
    assert note.status == "firing"


def test_deliveries_retry_and_a_failing_receiver_does_not_block_the_others() -> None:
    flaky, dead, fine = (
        Inbox("flaky", fail_first=2),
        Inbox("dead", fail_first=99, permanent=True),
        Inbox("fine"),
    )
    cfg = config(
        receivers=[
            {"type": "webhook", "name": n, "url": "http://127.0.0.1:1/"}
            for n in ("flaky", "dead", "fine")
        ],
        routes=[{"name": n, "receiver": n, "continue": True} for n in ("flaky", "dead", "fine")],
        retry_base="1s",
    )
    attempts: list[Attempt] = []
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    d = Dispatcher(
        cfg, {"flaky": flaky, "dead": dead, "fine": fine}, record=attempts.append, sleep=fake_sleep
    )

    async def go() -> None:
        d.update([silent()], T0)
        d.deliver(d.due(T0 + 30), lambda: T0 + 31)
        await d.drain()

    asyncio.run(go())
    assert len(fine.got) == 1 and len(flaky.got) == 1 and dead.got == []
    by = {
        r: [(a.attempt, a.ok) for a in attempts if a.receiver == r]
        for r in ("flaky", "dead", "fine")
    }
    assert by == {
        "flaky": [(1, False), (2, False), (3, True)],
        "dead": [(1, False)],
        "fine": [(1, True)],
    }
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1 and 0 <= sleeps[1] <= 2
    assert all(a.error == "HTTP 503" for a in attempts if not a.ok)


def test_a_takeover_does_not_send_again() -> None:
    d1 = Dispatcher(config(), {})
    d1.update([silent()], T0)
    [note] = d1.due(T0 + 30)
    d2 = Dispatcher(config(), {})
    d2.restore(note.group_key, [a.fingerprint for a in note.alerts], T0 + 30)
    d2.update([silent()], T0 + 40)
    assert d2.due(T0 + 100) == []
    d2.update([silent(status="resolved", cause="power", ended=T0 + 200)], T0 + 400)
    [resolved] = d2.due(T0 + 400)
    assert resolved.status == "resolved"


flips = st.lists(
    st.tuples(st.booleans(), st.floats(min_value=1, max_value=400)), min_size=1, max_size=60
)


@settings(max_examples=100, deadline=None)
@given(flips)
def test_a_flapping_alert_yields_at_most_one_notification_per_group_interval(
    seq: list[tuple[bool, float]],
) -> None:
    d = Dispatcher(config(), {})
    t = T0
    sent: list[float] = []
    for n, (firing, gap) in enumerate(seq):
        src = silent(at=T0) if firing else silent(status="resolved", cause="unknown", ended=t)
        d.update([src], t)
        sent += [t for _ in d.due(t)]
        t += gap
        sent += [t for _ in d.due(t)]
        _ = n
    for a, b in zip(sent, sent[1:], strict=False):
        assert b - a >= 300  # group_interval


def test_messages_say_what_a_duty_officer_needs() -> None:
    d = Dispatcher(config(), {})
    d.update([down("01321", "Xã Hà Quảng")], T0)
    [vi] = d.due(T0 + 3930)
    assert "Xã Hà Quảng (01321), Cao Bằng" in vi.title
    for needle in (
        "Viettel (viettel-4g)",
        "sự cố mạng",
        "10:42 23/11/2026",
        "giờ Việt Nam",
        "1 giờ 5 phút",
        "Thôn/bản không có sóng: chưa rõ",
        "http://127.0.0.1:8080/maps/province/04",
    ):
        assert needle in vi.text, needle
    en_cfg = config(routes=[{"name": "en", "receiver": "sink", "language": "en"}])
    d = Dispatcher(en_cfg, {})
    d.update([silent(status="firing")], T0)
    [en] = d.due(T0 + 30)
    assert en.title.startswith("[FIRING] Xã Hà Quảng (01321), Cao Bằng: centre unreachable")
    assert "being determined" in en.title and "Hamlets without signal: unknown" in en.text


def test_messages_name_the_largest_hamlets_left_without_signal() -> None:
    names = (("Xóm Nà Lìn", 420), ("Bản Khuổi Nặm", 1_250), ("Thôn Pác Bó", 388))
    alert = down("01321", "Xã Bảo Lạc")
    facts = replace(
        alert.facts,
        hamlets=9,
        population=3_912,
        hamlets_without_power=2,
        hamlet_names=tuple(sorted(names, key=lambda n: -n[1])),
    )
    d = Dispatcher(config(), {})
    d.update([AlertSource(alert.fingerprint, "firing", facts)], T0)
    [vi] = d.due(T0 + 60)
    assert "Thôn/bản không có sóng: 9 (3.912 người, 2 thôn chưa có điện lưới)" in vi.text
    assert (
        "Thôn/bản bị ảnh hưởng: Bản Khuổi Nặm (1.250 người), Xóm Nà Lìn (420 người), "
        "Thôn Pác Bó (388 người) và 6 thôn/bản khác"
    ) in vi.text
    en_cfg = config(routes=[{"name": "en", "receiver": "sink", "language": "en"}])
    d = Dispatcher(en_cfg, {})
    d.update([AlertSource(alert.fingerprint, "firing", facts)], T0)
    [en] = d.due(T0 + 60)
    assert "Hamlets without signal: 9 (3,912 people, 2 without grid power)" in en.text
    assert (
        "Hamlets affected: Bản Khuổi Nặm (1,250 people), Xóm Nà Lìn (420 people), "
        "Thôn Pác Bó (388 people) and 6 more"
    ) in en.text


@pytest.mark.parametrize("condition", ["probe_silent", "uplink_down", "degraded", "regional"])
@pytest.mark.parametrize("cause", ["power", "network", "unknown", None])
def test_alerts_say_a_condition_and_a_cause_in_the_words_maps_and_pages_use(
    condition: str, cause: str | None
) -> None:
    from lomsong.collector.alerts.messages import details, summary
    from lomsong.maps import labels

    facts = replace(down("01321", "Xã Bảo Lạc").facts, condition=condition, cause=cause)
    for lang, k in (("vi", 0), ("en", 1)):
        word = labels.CONDITION_TEXT[condition][k]
        told = summary(facts, "firing", lang)  # type: ignore[arg-type]
        assert f"Cao Bằng: {word[:1].lower()}{word[1:]}" in told
        assert labels.CAUSE_TEXT[cause][k] in told
        text = details(facts, "firing", lang, T0)  # type: ignore[arg-type]
        assert f": {word[:1].lower()}{word[1:]}\n" in text


def test_a_regional_alert_sums_its_communes_hamlets() -> None:
    def with_hamlets(a: AlertSource, n: int, people: int, name: str) -> AlertSource:
        facts = replace(a.facts, hamlets=n, population=people, hamlet_names=((name, people // n),))
        return AlertSource(a.fingerprint, a.status, facts)

    d = Dispatcher(config(), {})
    d.update([with_hamlets(down("01321", "Xã Bảo Lạc"), 2, 600, "Xóm Nà Lìn")], T0)
    d.update(
        [with_hamlets(down("01273", "Phường Thục Phán", at=T0 + 60), 3, 1200, "Tổ 5")], T0 + 60
    )
    d.update(
        [with_hamlets(down("01279", "Phường Nùng Trí Cao", at=T0 + 90), 1, 90, "Bản Giốc")], T0 + 90
    )
    [regional] = [n for n in d.due(T0 + 200) if n.group_labels["condition"] == "regional"]
    assert "Thôn/bản không có sóng: 6 (1.890 người)" in regional.text
    assert (
        "Thôn/bản bị ảnh hưởng: Tổ 5 (400 người), Xóm Nà Lìn (300 người), Bản Giốc (90 người) "
        "và 3 thôn/bản khác"
    ) in regional.text


def test_the_example_config_is_valid() -> None:
    cfg = load_alerts_config(Path(__file__).parents[2] / "config" / "alerts.toml")
    assert {r.type for r in cfg.receivers} == {"webhook", "email", "alertmanager"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[routes]]\nname = "a"\nreceiver = "nobody"\n',
            "routes[0].receiver: 'nobody' is not a receiver",
        ),
        ('[[receivers]]\ntype = "pager"\nname = "x"\n', "receivers[0]"),
        (
            '[[receivers]]\ntype = "webhook"\nname = "x"\nurl = "ftp://x"\n',
            "receivers[0].webhook.url",
        ),
        ('[[routes]]\nname = "a"\nreceiver = "x"\ngroup_wait = "soon"\n', "routes[0].group_wait"),
        (
            '[[maintenance]]\nname = "m"\nweekdays = [8]\nfrom_time = 22:00:00\nto_time = 23:00:00\n',
            "maintenance[0].weekdays[0]",
        ),
        (
            '[[maintenance]]\nname = "m"\nstart = 2026-11-28T07:00:00\n',
            "a one-off window needs start before end",
        ),
        ("colour = 1\n", "unknown setting 'colour'"),
    ],
)
def test_bad_alert_configs_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerts.toml"
    if 'receiver = "x"' in text:
        text = '[[receivers]]\ntype = "webhook"\nname = "x"\nurl = "http://127.0.0.1:1/"\n' + text
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_alerts_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)
