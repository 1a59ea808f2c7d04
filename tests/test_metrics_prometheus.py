"""A real Prometheus server (Debian's package) scrapes a running collector every second and its
query API returns the probe series and the ingest counters."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCollector, free_port
from tests.factories import result
from tests.test_metrics import post, report


def _query(http: httpx.Client, expr: str) -> list[dict[str, Any]]:
    r = http.get("/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]["result"]
    return data


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_probe_series(
    collector: RunningCollector, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed; run `make system-deps`")
    sent = {
        # probe id: (commune, uplink:operator, ok)
        "cb-thuc-phan": ("01273", "viettel-4g:viettel", True),
        "hn-ba-dinh": ("00004", "mobi-4g:mobifone", False),
    }
    for pid, (commune, uplink, ok) in sent.items():
        token = collector.register(pid, commune, (uplink,))
        results = [result(1, uplink=uplink.split(":")[0], ok=ok)]
        assert post(collector, token, report(pid, results, time.time())).status_code == 200
    expected = {
        (pid, commune, uplink.split(":")[0], uplink.split(":")[1]): float(ok)
        for pid, (commune, uplink, ok) in sent.items()
    }

    target = collector.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: lomsong\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    web = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://{web}", timeout=5) as http:
            deadline = time.monotonic() + 30
            ready = False
            while not ready:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "Prometheus not ready in 30 s"
                try:
                    ready = http.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            series: list[dict[str, Any]] = []
            while len(series) < len(expected):
                assert time.monotonic() < deadline + 30, (
                    f"probe_success not scraped in time; got {series}; "
                    f"targets: {http.get('/api/v1/targets').text}"
                )
                time.sleep(0.5)
                series = _query(http, "probe_success")
            got = {
                (
                    s["metric"]["probe"],
                    s["metric"]["commune"],
                    s["metric"]["uplink"],
                    s["metric"]["operator"],
                ): float(s["value"][1])
                for s in series
            }
            assert got == expected
            for s in series:
                assert s["metric"]["job"] == "lomsong"
                assert s["metric"]["instance"] == target
                assert (
                    s["metric"]["province"]
                    == {"01273": "04", "00004": "01"}[s["metric"]["commune"]]
                )
            accepted = _query(http, 'lomsong_ingest_results_total{outcome="accepted"}')
            assert [float(s["value"][1]) for s in accepted] == [len(sent)]
            up = _query(http, 'up{job="lomsong"}')
            assert [float(s["value"][1]) for s in up] == [1.0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
