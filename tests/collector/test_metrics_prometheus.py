"""A real Prometheus server (Debian's package) scrapes a running collector every second and its
query API returns the probe series and the ingest counters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import servers
from tests.collector.test_metrics import post, report
from tests.conftest import RunningCollector
from tests.factories import result
from tests.waiting import wait_until


def _query(http: httpx.Client, expr: str) -> list[dict[str, Any]]:
    r = http.get("/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]["result"]
    return data


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_probe_series(
    collector: RunningCollector, tmp_path: Path
) -> None:
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
    with (
        servers.prometheus(tmp_path, target, interval="1s") as url,
        httpx.Client(base_url=url, timeout=5) as http,
    ):

        def scraped() -> list[dict[str, Any]] | None:
            got = _query(http, "probe_success")
            return got if len(got) >= len(expected) else None

        series = wait_until(
            scraped,
            timeout=60,
            what=lambda: (
                f"probe_success scraped; got {_query(http, 'probe_success')}; "
                f"targets: {http.get('/api/v1/targets').text}"
            ),
            interval=0.25,  # one scrape a second
        )
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
            assert s["metric"]["province"] == {"01273": "04", "00004": "01"}[s["metric"]["commune"]]
        accepted = _query(http, 'lomsong_ingest_results_total{outcome="accepted"}')
        assert [float(s["value"][1]) for s in accepted] == [len(sent)]
        up = _query(http, 'up{job="lomsong"}')
        assert [float(s["value"][1]) for s in up] == [1.0]
