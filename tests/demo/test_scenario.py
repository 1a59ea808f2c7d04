"""The demo's parts on their own: its scenario's judgement, its loopback world, its safety with
directories, and its command's one-line errors. The whole demo runs in ``test_e2e_demo.py``."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lomsong.collector.alerts.model import Alert, Notification
from lomsong.collector.alerts.webhook import WebhookReceiver
from lomsong.config.probe import HttpCheck, load_probe_settings
from lomsong.demo.scenario import INCIDENTS, OutageRecord, Place, check, duration, steps
from lomsong.demo.setup import (
    DEMO_MARKER,
    PROVINCE,
    REGIONAL_MIN_COMMUNES,
    UPLINKS,
    claim_workdir,
    demo_alerts,
    slug,
)
from lomsong.demo.world import (
    AgentUplink,
    LinkServices,
    Received,
    WebhookSink,
    probe_toml,
)
from lomsong.errors import ValidationError
from lomsong.probes.agent import plan_jobs
from lomsong.probes.checks.base import Binding, CheckContext
from lomsong.probes.checks.http import run as http_check
from lomsong.storage.places import bundled_communes

OPERATORS = {u.name: u.operator for u in UPLINKS}
PLACES = {
    c["code"]: Place(c["code"], c["name"], f"cb-{slug(c['name'])}")
    for c in bundled_communes()
    if c["province_code"] == PROVINCE
}


def as_told() -> tuple[list[OutageRecord], list[Received]]:
    """The outages and notifications the scenario must produce, as a good run produces them."""
    outages: list[OutageRecord] = []
    received: list[Received] = []
    for inc in INCIDENTS:
        for code in inc.communes:
            pid = PLACES[code].probe_id
            if inc.kind == "link":
                assert inc.uplink is not None
                op = OPERATORS[inc.uplink]
                outages.append(
                    OutageRecord(pid, code, "uplink_down", "network", inc.uplink, op, 1.0)
                )
                labels = {"probe": pid, "condition": "uplink_down", "uplink": inc.uplink}
                if len(inc.communes) < REGIONAL_MIN_COMMUNES:
                    received += [Received(0, s, labels, "") for s in ("firing", "resolved")]
            else:
                cause = "power" if inc.kind == "power" else "unknown"
                outages.append(OutageRecord(pid, code, "probe_silent", cause, None, None, 1.0))
                labels = {"probe": pid, "condition": "probe_silent"}
                received.append(Received(0, "firing", labels, ""))
                received.append(Received(0, "resolved", {**labels, "cause": cause}, ""))
        if inc.kind == "link" and len(inc.communes) >= REGIONAL_MIN_COMMUNES:
            assert inc.uplink is not None
            labels = {"condition": "regional", "operator": OPERATORS[inc.uplink]}
            received += [Received(0, s, labels, "") for s in ("firing", "resolved")]
    return outages, received


def judge(outages: list[OutageRecord], received: list[Received]) -> list[str]:
    return check(outages, received, PLACES, OPERATORS, regional_min_communes=REGIONAL_MIN_COMMUNES)


def test_the_scenario_covers_power_network_silence_and_a_regional_loss() -> None:
    kinds = {i.kind for i in INCIDENTS}
    assert kinds == {"link", "agent", "power"}
    assert any(len(i.communes) >= REGIONAL_MIN_COMMUNES for i in INCIDENTS if i.kind == "link")
    assert all(c in PLACES for i in INCIDENTS for c in i.communes)
    assert len(PLACES) == 56 and len({p.probe_id for p in PLACES.values()}) == 56
    # Every break comes before its repair; the whole story stays within three minutes.
    order = [(s.action, s.incident) for s in steps()]
    for inc in INCIDENTS:
        starts = [
            i for i, (a, x) in enumerate(order) if x is inc and a in ("cut", "stop", "power_cut")
        ]
        ends = [
            i
            for i, (a, x) in enumerate(order)
            if x is inc and a in ("restore", "start", "power_back")
        ]
        assert starts[0] < ends[0]
    assert duration() < 150


def test_a_run_as_told_meets_every_expectation() -> None:
    assert judge(*as_told()) == []


def test_each_missing_or_wrong_outcome_is_named() -> None:
    outages, received = as_told()
    bao_lac = PLACES["01321"]
    ha_quang = PLACES["01438"]
    problems = judge([o for o in outages if o.probe_id != bao_lac.probe_id], received)
    assert problems == [f"{bao_lac}: no uplink_down on viettel-4g outage was recorded"]

    wrong = [
        OutageRecord(o.probe_id, o.commune_code, o.condition, "unknown", o.uplink, o.operator, 1.0)
        if o.probe_id == ha_quang.probe_id
        else o
        for o in outages
    ]
    assert f"{ha_quang}: probe_silent classified 'unknown', expected 'power'" in judge(
        wrong, received
    )

    still_open = [
        OutageRecord(o.probe_id, o.commune_code, o.condition, o.cause, o.uplink, o.operator, None)
        if o.probe_id == bao_lac.probe_id
        else o
        for o in outages
    ]
    assert judge(still_open, received) == [
        f"{bao_lac}: the uplink_down on viettel-4g outage is still open"
    ]

    unresolved = [
        r for r in received if not (r.status == "resolved" and "regional" in str(r.labels))
    ]
    assert judge(outages, unresolved) == [
        "Xã Nguyên Bình (01726), Xã Tĩnh Túc (01729), Xã Ca Thành (01738): no resolved "
        "notification of the regional loss of vinaphone at the webhook sink"
    ]

    stray = OutageRecord(
        PLACES["01807"].probe_id, "01807", "uplink_down", "network", "fibre", "fibre", 1.0
    )
    assert judge([*outages, stray], received) == [
        f"unexpected outage: {PLACES['01807']} uplink_down on fibre (cause network)"
    ]


def test_the_link_services_fail_and_recover_for_a_real_http_check() -> None:
    async def scenario() -> list[tuple[bool, str | None]]:
        links = LinkServices()
        await links.start([("01321", "viettel-4g"), ("01321", "fibre")])
        spec = HttpCheck(kind="http", target=links.url("01321", "viettel-4g"), timeout_seconds=2)
        ctx = CheckContext(
            binding=Binding("viettel-4g", "127.0.0.1"), timeout_seconds=2, agent_version="t"
        )
        seen = []
        try:
            for action in (None, links.cut, links.restore):
                if action is not None:
                    await action("01321", "viettel-4g")
                outcome = await http_check(spec, ctx)
                seen.append((outcome.ok, outcome.error))
                if action == links.cut:
                    # the port stays taken while the link is cut: nobody else gets it
                    port = int(links.url("01321", "viettel-4g").split(":")[2].split("/")[0])
                    with socket.socket() as other, pytest.raises(OSError):
                        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        other.bind(("127.0.0.1", port))
            other = HttpCheck(kind="http", target=links.url("01321", "fibre"), timeout_seconds=2)
            seen.append(((await http_check(other, ctx)).ok, None))
        finally:
            await links.close()
        return seen

    assert asyncio.run(scenario()) == [
        (True, None),
        (False, "connection refused"),
        (True, None),
        (True, None),
    ]


def test_the_webhook_sink_prints_each_notification_s_vietnamese_line() -> None:
    lines: list[str] = []
    title = "[CẢNH BÁO] Xã Hà Quảng (01438), Cao Bằng: trung tâm mất liên lạc — mất điện"

    async def send() -> WebhookSink:
        sink = WebhookSink(lines.append)
        await sink.start()
        alert = Alert(
            "o-1",
            "firing",
            {"probe": "cb-ha-quang", "condition": "probe_silent"},
            {"summary": title[11:]},
            1.7e9,
        )
        note = Notification("demo-sink", "g", {}, "firing", (alert,), "vi", title, "…")
        receiver = WebhookReceiver("demo-sink", sink.url, timeout=5)
        try:
            await receiver.send(note)
            await receiver.send(note)  # the same keep-alive connection
        finally:
            await receiver.close()
            await sink.close()
        return sink

    sink = asyncio.run(send())
    assert lines == [f"  webhook ← {title}"] * 2
    assert sink.notifications["firing"] == 2
    assert sink.received[0].labels["probe"] == "cb-ha-quang"
    assert sink.received[0].summary == title[11:]


def test_a_demo_agent_s_settings_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "probe.toml"
    uplinks = tuple(
        AgentUplink(u.name, u.operator, f"http://127.0.0.1:{9000 + i}/x")
        for i, u in enumerate(UPLINKS)
    )
    path.write_text(
        probe_toml(
            "cb-bao-lac",
            "http://127.0.0.1:8080",
            token_file=tmp_path / "Thư mục" / "token",
            spool_path=tmp_path / "spool.db",
            boot_id_file=tmp_path / "boot_id",
            uplinks=uplinks,
        )
    )
    settings = load_probe_settings(path)
    assert [u.name for u in settings.uplinks] == ["fibre", "viettel-4g", "vnpt-4g"]
    assert settings.token_file == tmp_path / "Thư mục" / "token"
    jobs = plan_jobs(settings)
    # a job is named by its check's kind, target and uplink
    assert sorted(j.id for j in jobs) == [
        "heartbeat:self:-",
        "http:http://127.0.0.1:9000/x:fibre",
        "http:http://127.0.0.1:9001/x:viettel-4g",
        "http:http://127.0.0.1:9002/x:vnpt-4g",
    ]


def test_demo_alerts_route_to_the_sink_and_optionally_alertmanager() -> None:
    plain = demo_alerts("http://127.0.0.1:8080", "http://127.0.0.1:1/h", None)
    assert [r.name for r in plain.receivers] == ["demo-sink"]
    both = demo_alerts("http://127.0.0.1:8080", "http://127.0.0.1:1/h", "http://127.0.0.1:9093")
    assert [(r.name, r.receiver, r.language) for r in both.routes] == [
        ("cao-bang", "demo-sink", "vi"),
        ("alertmanager", "alertmanager", "vi"),
    ]
    assert both.routes[0].continue_


def test_the_demo_claims_only_empty_or_its_own_directories(tmp_path: Path) -> None:
    mine = tmp_path / "new"
    claim_workdir(mine)
    assert (mine / DEMO_MARKER).exists()
    claim_workdir(mine)  # again: it is the demo's
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "lomsong.db").write_bytes(b"")
    (legacy / "tokens.json").write_text("{}")
    claim_workdir(legacy)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("…")
    with pytest.raises(
        ValidationError, match=r"--workdir: holds files that are not the demo's \(thesis.tex\)"
    ):
        claim_workdir(theirs)
    assert (theirs / "thesis.tex").exists()


def lomsong(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    return subprocess.run(
        [sys.executable, "-m", "lomsong", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--minutes", "0"], "lomsong: error: --minutes: must be more than 0 (got 0.0)"),
        (
            ["--alertmanager", "ftp://127.0.0.1"],
            "lomsong: error: --alertmanager: expected an http(s):// URL (got 'ftp://127.0.0.1')",
        ),
    ],
)
def test_bad_demo_options_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path
) -> None:
    out = lomsong("demo", "--workdir", str(tmp_path / "d"), *args)
    assert out.returncode == 1
    assert out.stderr.strip() == f"{message} (see 'lomsong demo --help')"


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = lomsong(
            "demo", "--minutes", "1", "--port", str(port), "--workdir", str(tmp_path / "d")
        )
    assert out.returncode == 1
    assert out.stderr.strip().startswith(f"lomsong: error: demo: port {port} on 127.0.0.1 is taken")
    assert out.stderr.strip().endswith("pass --port")
