"""The whole system on one machine: ``lomsong demo --minutes`` as a new user runs it, with a real
Prometheus scraping the demo's collector and a real Alertmanager that receives its alerts
(through the collector's ``alertmanager`` receiver) and routes them to a webhook sink.

Asserted: the demo's own expectations held (exit status 0); Prometheus has the probe series of
all 56 communes and saw the Viettel link of Bảo Lạc go down and come back; Alertmanager showed
the outage alerts while they fired; its webhook sink got firing and resolved notifications with
Vietnamese text, classified power (Hà Quảng) and network (Bảo Lạc, Trùng Khánh), naming the
hamlets left without signal; the served province map showed Bảo Lạc's Viettel-only hamlets as
outage while its link was down; no agent outlived the demo.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from lomsong.coverage.model import OUTAGE
from lomsong.demo.setup import UPLINKS, slug
from lomsong.storage.places import bundled_communes
from tests import servers
from tests.conftest import WebhookSink, free_port
from tests.maps.conftest import page_data
from tests.waiting import wait_until

#: Long enough for the scenario (about 2.9 minutes with the agents' start) and a margin for a
#: machine busy with other tests.
MINUTES = 3.5


def probe_id(code: str) -> str:
    name = next(c["name"] for c in bundled_communes() if c["code"] == code)
    return f"cb-{slug(name)}"


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_sink: WebhookSink) -> Iterator[str]:
    """Debian's Alertmanager on loopback, alone, routing everything to the webhook sink."""
    config = (
        "route:\n"
        "  receiver: sink\n"
        "  group_by: [alertname, probe, uplink, operator]\n"
        "  group_wait: 1s\n"
        "  group_interval: 2s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: sink\n"
        "    webhook_configs:\n"
        f"      - url: {webhook_sink.url}\n"
        "        send_resolved: true\n"
    )
    with servers.alertmanager(tmp_path, config) as url:
        yield url


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]["result"]
    return data


def scalar(prometheus: str, expr: str) -> float:
    result = query(prometheus, expr)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def map_during_outage(output: Path, port: int) -> dict[str, Any] | None:
    """The demo's province map (``/maps/province/04``, with the admin token the demo printed)
    if it shows some of Bảo Lạc's hamlets cut off by the Viettel link; otherwise None."""
    found = re.search(r"admin token (\S+)", output.read_text(encoding="utf-8"))
    if found is None:
        return None
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/maps/province/04",
            headers={"Authorization": f"Bearer {found.group(1)}"},
            timeout=30,
        )
    except httpx.TransportError:
        return None
    if r.status_code != 200 or "lomsong_data_" not in r.text:
        return None
    data = page_data(r.text)
    if "H" not in data:
        return None
    h = data["H"]
    cut = any(c == "01321" and o == OUTAGE for c, o in zip(h["commune"], h["overall"], strict=True))
    return data if cut else None


def sink_alerts(sink: WebhookSink) -> list[dict[str, Any]]:
    with sink.lock:
        return [a for body in sink.bodies for a in body["alerts"]]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.e2e
def test_the_demo_end_to_end_with_prometheus_and_alertmanager(
    tmp_path: Path, alertmanager: str, webhook_sink: WebhookSink
) -> None:
    began = time.monotonic()
    port = free_port()
    prometheus = ExitStack()
    prometheus_url = prometheus.enter_context(servers.prometheus(tmp_path, f"127.0.0.1:{port}"))
    workdir = tmp_path / "demo"
    output = tmp_path / "demo.log"
    bao_lac, ha_quang, trung_khanh = probe_id("01321"), probe_id("01438"), probe_id("01477")
    seen: dict[str, dict[str, Any]] = {}  # Alertmanager's active alerts, by fingerprint
    demo: subprocess.Popen[bytes] | None = None
    outage_map: dict[str, Any] | None = None
    try:
        with output.open("wb") as out:
            demo = subprocess.Popen(
                [sys.executable, "-m", "lomsong", "demo", "--minutes", str(MINUTES)]
                + ["--port", str(port), "--workdir", str(workdir)]
                + ["--alertmanager", alertmanager],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = demo
        next_map = 0.0

        def finished() -> bool:
            """Whether the demo exited; until then, note Alertmanager's alerts and the map."""
            nonlocal next_map, outage_map
            if running.poll() is not None:
                return True
            try:
                r = httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5)
                seen.update({a["fingerprint"]: a for a in r.json()})
            except httpx.TransportError:
                pass
            if outage_map is None and time.monotonic() >= next_map:
                # every 10 s until the map shows Bảo Lạc's Viettel hamlets cut off
                outage_map = map_during_outage(output, port)
                next_map = time.monotonic() + 10
            return False

        # Alertmanager is sampled every 2 s: an alert active for less would go unseen.
        wait_until(
            finished,
            timeout=MINUTES * 60 + 90,
            what=lambda: f"the demo finished; its output ends with:\n{output.read_text()[-3000:]}",
            interval=2,
        )
        text = output.read_text(encoding="utf-8")
        print(text)
        assert demo.returncode == 0, text[-3000:]
        assert "every expectation held" in text
        # The demo's own sink printed the Vietnamese lines as they came.
        assert "webhook ← [CẢNH BÁO] Xã Bảo Lạc (01321), Cao Bằng: mất kết nối Viettel" in text
        assert "webhook ← [ĐÃ KHẮC PHỤC] Xã Hà Quảng (01438), Cao Bằng" in text

        # No agent outlived the demo.
        left = [
            p.info
            for p in psutil.process_iter(["pid", "cmdline"])
            if str(workdir) in " ".join(p.info["cmdline"] or [])
        ]
        assert left == []

        # Prometheus scraped every probe's every uplink, and saw Bảo Lạc's Viettel link fail.
        n_uplinks = 56 * len(UPLINKS)
        window = f"[{int(MINUTES * 60) + 60}s]"
        assert (
            scalar(prometheus_url, f'count(max_over_time(probe_success{{province="04"}}{window}))')
            == n_uplinks
        )
        viettel = f'probe_success{{probe="{bao_lac}",uplink="viettel-4g",operator="viettel"}}'
        assert scalar(prometheus_url, f"min_over_time({viettel}{window})") == 0
        assert scalar(prometheus_url, f"max_over_time({viettel}{window})") == 1
        reporting = 'lomsong_probes{province="04",state="reporting"}'
        assert scalar(prometheus_url, f"max_over_time({reporting}{window})") == 56
        assert scalar(prometheus_url, f'max_over_time(up{{job="lomsong"}}{window})') == 1
    finally:
        if demo is not None and demo.poll() is None:
            demo.kill()
            demo.wait(30)
        prometheus.close()

    # Alertmanager showed the outages while they fired, with the collector's Vietnamese text.
    def shown(alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [
            a
            for a in seen.values()
            if a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
            and a["status"]["state"] == "active"
        ]

    down = shown("LomsongUplinkDown", probe=bao_lac, uplink="viettel-4g", operator="viettel")
    assert down, sorted(a["labels"]["alertname"] for a in seen.values())
    assert "mất kết nối Viettel (viettel-4g)" in down[0]["annotations"]["summary"]
    assert down[0]["labels"]["province"] == "04" and down[0]["labels"]["commune"] == "01321"
    assert shown("LomsongProbeSilent", probe=ha_quang)
    regional = shown("LomsongRegionalOperatorLoss", operator="vinaphone")
    assert regional and "mất sóng diện rộng" in regional[0]["annotations"]["summary"]

    # Alertmanager routed them to its webhook sink, firing and then resolved, classified.
    def resolved(probe: str, condition: str) -> dict[str, Any]:
        found = [
            a
            for a in sink_alerts(webhook_sink)
            if a["status"] == "resolved"
            and a["labels"].get("probe") == probe
            and a["labels"].get("condition") == condition
        ]
        assert found, f"no resolved {condition} of {probe} from Alertmanager"
        return found[0]

    webhook_sink.wait_for(
        lambda _: any(
            a["status"] == "resolved" and a["labels"].get("probe") == trung_khanh
            for a in sink_alerts(webhook_sink)
        ),
        timeout=30,
    )
    firing = [a for a in sink_alerts(webhook_sink) if a["status"] == "firing"]
    assert {a["labels"]["alertname"] for a in firing} >= {
        "LomsongUplinkDown",
        "LomsongProbeSilent",
        "LomsongRegionalOperatorLoss",
    }
    power = resolved(ha_quang, "probe_silent")
    assert power["annotations"]["cause"] == "power"
    assert "trung tâm mất liên lạc — mất điện" in power["annotations"]["summary"]
    assert "Nguyên nhân: mất điện" in power["annotations"]["description"]
    for probe, uplink in ((bao_lac, "viettel-4g"), (trung_khanh, "fibre")):
        network = resolved(probe, "uplink_down")
        assert network["labels"]["uplink"] == uplink
        assert network["annotations"]["cause"] == "network"
        assert "sự cố mạng" in network["annotations"]["summary"]

    # The served map listed Bảo Lạc's hamlets that only Viettel serves as cut off (outage)
    # while its Viettel link was down; the others of Bảo Lạc kept their status.
    assert outage_map is not None, "the map never showed Bảo Lạc's Viettel link down"
    h = outage_map["H"]
    viettel = [o["key"] for o in outage_map["ops"]].index("viettel")
    mine = [i for i, c in enumerate(h["commune"]) if c == "01321"]
    cut = [i for i in mine if h["overall"][i] == OUTAGE]
    assert cut and all(h["status"][i][viettel] == OUTAGE for i in cut)
    assert all(
        h["overall"][i] != OUTAGE
        for i, c in enumerate(h["commune"])
        if c != "01321" and c not in ("01438", "01477", "01726", "01729", "01738", "01273")
    )
    # ... and the alerts named them: the resolved Viettel outage of Bảo Lạc and the power cut
    # of Hà Quảng (known once the cause is)
    names = sorted(((h["pop"][i], h["name"][i]) for i in cut), reverse=True)
    viettel_down = resolved(bao_lac, "uplink_down")["annotations"]["description"]
    assert f"Thôn/bản không có sóng: {len(cut)} (" in viettel_down
    assert names[0][1] in viettel_down.split("Thôn/bản bị ảnh hưởng: ")[1]
    assert "Bản đồ: http://127.0.0.1:" in viettel_down and "/maps/province/04" in viettel_down
    assert "Thôn/bản bị ảnh hưởng: " in power["annotations"]["description"]
    assert "hamlets cut off  " in text

    print(f"end-to-end demo test: {time.monotonic() - began:.0f} s wall")
