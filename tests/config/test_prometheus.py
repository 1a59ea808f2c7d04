"""The Prometheus side: rules, their unit tests, the example config, the dashboard.

Everything runs the real promtool and prometheus from Debian (``make system-deps``). Which metric
names the rules and the dashboard may use is read from a real collector's ``/metrics``, so a
renamed family breaks these tests instead of a dashboard in production.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningCollector, free_port
from tests.factories import body, iso, result
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "config" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULES_TEST = PROM_DIR / "rules_test.yml"
CONFIG = PROM_DIR / "prometheus.yml"
DASHBOARD = PROM_DIR / "grafana-dashboard.json"

#: PromQL words that look like metric names but are not.
PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # installed by scripts/system-deps.sh: a missing tool fails, never skips
        pytest.fail(f"{name} is not on PATH; run `make system-deps` (Debian package prometheus)")
    return path


def run(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


# -- reading the rules without a YAML library: the patterns below are how rules.yml is written


def recording_rules(text: str) -> list[str]:
    return re.findall(r"^\s*- record:\s*(\S+)\s*$", text, flags=re.MULTILINE)


def alerting_rules(text: str) -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", text, flags=re.MULTILINE)


def rule_exprs(text: str) -> list[str]:
    """Every `expr:`, one line or a `|` block."""
    exprs = []
    for m in re.finditer(r"^(\s*)expr:\s*(\|[-+]?)?\s*(.*)$", text, flags=re.MULTILINE):
        if not m.group(2):
            exprs.append(m.group(3))
            continue
        indent = len(m.group(1))
        lines = []
        for line in text[m.end() + 1 :].splitlines():
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            lines.append(line)
        exprs.append("\n".join(lines))
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\boffset\s+-?\w+|@\s*[\w.()]+", " ", s)  # offset and @ modifiers
    s = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s
    )  # label lists
    s = re.sub(r"(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", " ", s)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", s):
        following = s[m.end() :].lstrip()
        if following.startswith("(") or m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'sum by (job, reason) (rate(lomsong_ingest_rejected_total{reason=~"a|b"}[5m])) > 0.02 '
        "and on (job) job:x:ratio_rate5m > 5e-2 or vector(1) unless up offset 5m"
    )
    assert metric_names(expr) == {"lomsong_ingest_rejected_total", "job:x:ratio_rate5m", "up"}


# -- the collector's names, read from a real one


def feed(collector: RunningCollector) -> str:
    """Two probes of one commune with one uplink up and one down, a modem reading and a
    refused batch; returns the collector's /metrics text."""
    now = datetime.now(UTC).replace(microsecond=0)
    tokens = {
        "pm-up": collector.register("pm-up", "01273", ("viettel-4g:viettel", "fibre:fibre")),
        "pm-down": collector.register("pm-down", "01273", ("viettel-4g:viettel",)),
    }
    signal = {"rat": "lte", "rsrp_dbm": -104.0, "mcc": "452", "mnc": "04"}
    rows = {
        "pm-up": [
            result(1, at=now - timedelta(seconds=3)),
            result(2, at=now - timedelta(seconds=2), uplink="fibre"),
            result(3, at=now - timedelta(seconds=1), kind="modem", signal=signal),
        ],
        "pm-down": [result(1, at=now - timedelta(seconds=2), ok=False)],
    }
    for probe, results in rows.items():
        doc = {
            "probe_id": probe,
            "boot_id": "boot-1",
            "agent_version": "0.1.0",
            "sent_at": iso(now),
            "results": results,
        }
        raw, headers = body(doc)
        with collector.client(tokens[probe]) as http:
            r = http.post("/api/v1/reports", content=raw, headers=headers)
            assert r.status_code == 200, r.text
    with collector.client("not-a-token") as http:
        assert http.post("/api/v1/reports", content=b"{}").status_code == 401
    with collector.client() as http:
        r = http.get("/metrics")
        assert r.status_code == 200
        return r.text


def exposed_names(metrics_text: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }


@pytest.fixture
def collector_names(collector: RunningCollector) -> set[str]:
    names = exposed_names(feed(collector))
    # The families the rules are written against must all be there, or the feed is too thin.
    assert {"probe_success", "lomsong_uplink_rsrp_dbm", "lomsong_ingest_rejected_total"} <= names
    return names


# -- promtool


def test_promtool_checks_the_rules() -> None:
    text = RULES.read_text()
    count = len(recording_rules(text)) + len(alerting_rules(text))
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    out = run(tool("promtool"), "test", "rules", RULES_TEST.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    tests = RULES_TEST.read_text()
    cases = re.findall(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:(.*)", tests)
    for alert in alerting_rules(RULES.read_text()):
        kinds = {
            "quiet" if rest.strip() == "[]" else "firing" for name, rest in cases if name == alert
        }
        assert kinds == {"quiet", "firing"}, f"{alert}: rules_test.yml has only {kinds or 'none'}"


@pytest.mark.parametrize("alert", alerting_rules(RULES.read_text()))
def test_the_unit_tests_notice_an_alert_that_fires_early(alert: str, tmp_path: Path) -> None:
    # Without its `for:`, every alert must fire at one of the times its tests expect quiet,
    # which proves those tests run the rule rather than pass whatever it says.
    text = RULES.read_text()
    block = re.search(rf"- alert: {alert}\n.*?(?=\n\s*- alert:|\Z)", text, flags=re.DOTALL)
    assert block is not None
    without_for, n = re.subn(r"\n\s*for:.*", "", block.group(0), count=1)
    assert n == 1, f"{alert} has no for:"
    (tmp_path / "rules.yml").write_text(text.replace(block.group(0), without_for))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    out = run(tool("promtool"), "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert out.returncode != 0, f"rules_test.yml still passes with {alert} firing at once"
    assert f"alertname: {alert}" in out.stderr, out.stdout + out.stderr


def test_promtool_checks_the_example_config_from_any_directory(tmp_path: Path) -> None:
    # rule_files is relative to the config file, not to the working directory.
    out = run(tool("promtool"), "check", "config", str(CONFIG), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    text = RULES.read_text()
    assert "SUCCESS: 1 rule files found" in out.stdout
    assert (
        f"SUCCESS: {len(recording_rules(text)) + len(alerting_rules(text))} rules found"
        in out.stdout
    )


def test_the_example_config_scrapes_the_collector_and_alerts_locally() -> None:
    text = CONFIG.read_text()
    assert re.search(r"^\s*- job_name: lomsong\s*$", text, flags=re.MULTILINE)
    assert '- targets: ["127.0.0.1:8080"]' in text
    assert '- targets: ["127.0.0.1:9093"]' in text
    assert re.search(r"^rule_files:\n\s*- rules\.yml$", text, flags=re.MULTILINE)


def test_rules_use_only_names_the_collector_exposes(collector_names: set[str]) -> None:
    text = RULES.read_text()
    allowed = collector_names | set(recording_rules(text)) | {"up"}
    for expr in rule_exprs(text):
        unknown = metric_names(expr) - allowed
        assert not unknown, f"rules.yml uses {sorted(unknown)} in {expr.strip()!r}"


# -- the Grafana dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"] and dashboard["id"] is None
    [ds_input] = dashboard["__inputs"]
    assert (ds_input["name"], ds_input["type"], ds_input["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in panels(dashboard):
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == ds, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ds and t["expr"].strip(), p["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"province", "operator"} <= set(variables)
    for name in ("province", "operator"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"] == ds
        assert re.fullmatch(rf"label_values\(.+, {name}\)", v["query"]["query"]), v["query"]
        assert v["includeAll"] and v["allValue"] == ".*"
    # The panels the operations team asked for are there.
    used = set().union(*(metric_names(e) for e in dashboard_exprs(dashboard)))
    assert {"probe_success", "probe_duration_seconds", "lomsong_uplink_rsrp_dbm"} <= used


def test_the_dashboard_uses_only_names_the_collector_or_the_rules_define(
    collector_names: set[str],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    allowed = collector_names | set(recording_rules(RULES.read_text()))
    # label_values(selector, label): the selector is PromQL, the label is not a metric.
    variables = [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])
        for v in dashboard["templating"]["list"]
    ]
    for expr in dashboard_exprs(dashboard) + variables:
        unknown = metric_names(expr) - allowed
        assert not unknown, f"the dashboard uses {sorted(unknown)} in {expr!r}"
    # Every panel filters on the variables it offers, except the collector's own panels.
    for p in panels(dashboard):
        for t in p.get("targets", []):
            if "lomsong_ingest" not in t["expr"] and "lomsong_http" not in t["expr"]:
                assert '$province"' in t["expr"], f"{p['title']!r} ignores $province"


# -- a real Prometheus scraping a real collector with these rules


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, f"{expr!r}: {r.text}"
        data = r.json()
        assert data["status"] == "success", f"{expr!r}: {data}"
        return list(data["data"]["result"])

    def rule_groups(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/rules", timeout=10)
        r.raise_for_status()
        return list(r.json()["data"]["groups"])


@pytest.fixture
def prometheus(collector: RunningCollector, tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    target = collector.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    # Second-long intervals so rates have two points within a few seconds; no Alertmanager.
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES}\n"
        "scrape_configs:\n  - job_name: lomsong\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus did not start: {log_path.read_text()}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30, what=lambda: f"prometheus ready ({log_path.read_text()})")
        prom = Prometheus(url)
        # One scrape before the test feeds the collector, so its counters are seen to move.
        wait_for(lambda: prom.query('up{job="lomsong"} == 1'), "a first scrape of the collector")
        yield prom
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for(check: Any, what: Any) -> Any:
    """Polls Prometheus: scrapes and rules run once a second, so 4 asks a second are plenty."""
    return wait_until(check, timeout=20, what=what, interval=0.25)


@pytest.mark.slow
def test_prometheus_evaluates_the_rules_and_dashboard_on_a_real_collector(
    collector: RunningCollector, prometheus: Prometheus
) -> None:
    metrics_text = feed(collector)
    # The share the rules must record, from what the collector itself exposes.
    success = [
        s
        for f in text_string_to_metric_families(metrics_text)
        for s in f.samples
        if s.name == "probe_success"
    ]
    expected: dict[tuple[str, str], list[float]] = {}
    for s in success:
        expected.setdefault((s.labels["province"], s.labels["operator"]), []).append(s.value)
    assert any(0 < sum(v) < len(v) for v in expected.values()), "the feed needs a mixed share"

    want = {k: sum(v) / len(v) for k, v in expected.items()}

    def recorded() -> dict[tuple[str, str], float]:
        rows = prometheus.query("province_operator:lomsong_uplinks_up:ratio")
        return {
            (r["metric"]["province"], r["metric"]["operator"]): float(r["value"][1]) for r in rows
        }

    wait_for(lambda: recorded() == want, lambda: f"recorded {recorded()} == {want}")
    assert recorded() == want

    # Rate rules need two scrapes after the counters moved; by then every group has run.
    wait_for(lambda: prometheus.query("job:lomsong_ingest_rejected:rate5m > 0"), "a rate rule")
    names = [rule["name"] for group in prometheus.rule_groups() for rule in group["rules"]]
    text = RULES.read_text()
    assert sorted(names) == sorted(recording_rules(text) + alerting_rules(text))
    for group in prometheus.rule_groups():
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"

    dashboard = json.loads(DASHBOARD.read_text())

    def empty_queries() -> list[str]:
        return [
            expr
            for expr in dashboard_exprs(dashboard)
            if not prometheus.query(expr.replace("$province", ".*").replace("$operator", ".*"))
        ]

    # The feed has an uplink down and a refused batch, so even the panels filtered on "> 0"
    # have something to show. Series born during the feed (the request histogram's) need two
    # scrapes after it for a rate, one more than the counters that existed before it.
    wait_for(lambda: not empty_queries(), lambda: f"data for every query; none: {empty_queries()}")
    empty = empty_queries()
    assert not empty, f"dashboard queries without data on a fed collector: {empty}"
