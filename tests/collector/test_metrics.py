"""``GET /metrics`` of a real collector: values, bounded labels, promtool (a real Prometheus
scraping it: test_metrics_prometheus.py)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lomsong.collector.ingest import REJECT_REASONS
from lomsong.collector.metrics import HTTP_METHODS, PRIMARY_KINDS
from lomsong.collector.registry import FIXED_OPERATORS, OPERATORS, Uplink, register_probe
from tests.conftest import Clocked, ClockedFactory, RunningCollector
from tests.factories import T0, iso, result

#: Every label name the collector may use; anything else could be unbounded.
ALLOWED_LABELS = set(
    "probe commune province uplink operator state outcome reason route method le".split()
)
LIVE_FAMILIES = (
    "probe_success",
    "probe_duration_seconds",
    "lomsong_uplink_rsrp_dbm",
    "lomsong_probe_last_seen_timestamp_seconds",
    "lomsong_probe_clock_skew_seconds",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(c: RunningCollector) -> str:
    with c.client() as http:
        r = http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def of(all_samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in all_samples.items() if n == name}


def lab(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def report(pid: str, results: list[dict[str, Any]], sent_at: float) -> bytes:
    """A batch body as the probe's agent sends it, ``sent_at`` on the probe's clock."""
    return orjson.dumps(
        {
            "probe_id": pid,
            "boot_id": "boot-1",
            "agent_version": "0.1.0",
            "sent_at": iso(datetime.fromtimestamp(sent_at, UTC)),
            "results": results,
        }
    )


def post(c: RunningCollector, token: str, raw: bytes) -> httpx.Response:
    with c.client(token) as http:
        return http.post(
            "/api/v1/reports", content=raw, headers={"Content-Type": "application/json"}
        )


# -- what the test sends, and what it must turn into ---------------------------------------


@dataclass(frozen=True)
class Probe:
    id: str
    commune: str
    province: str
    uplinks: tuple[tuple[str, str], ...]  # (name, operator)
    skew: float  # collector clock minus the probe's clock, in every batch it sends


PROBES = (
    # Cao Bằng (04): Phường Thục Phán and Phường Nùng Trí Cao
    Probe("cb-thuc-phan", "01273", "04", (("fibre", "fibre"), ("viettel-4g", "viettel")), 2.0),
    Probe(
        "cb-nung-tri-cao",
        "01279",
        "04",
        (("viettel-4g", "viettel"), ("vina-4g", "vinaphone")),
        -1.5,
    ),
    # Hà Nội (01): Phường Ba Đình, one probe that reports and one that never does
    Probe("hn-ba-dinh", "00004", "01", (("mobi-4g", "mobifone"), ("fibre", "fibre")), 0.0),
    Probe("hn-silent", "00004", "01", (("viettel-4g", "viettel"),), 0.0),
)
PORTAL_URL = "https://dichvucong.gov.vn/"


def modem(seq: int, uplink: str, ok: bool, rsrp: float | None) -> dict[str, Any]:
    signal: dict[str, Any] = {"rat": "lte", "mcc": "452", "mnc": "04"}
    if rsrp is not None:
        signal["rsrp_dbm"] = rsrp
    return result(seq, kind="modem", uplink=uplink, ok=ok, target="modem0", signal=signal)


def timed(
    seq: int, kind: str, uplink: str, ok: bool, seconds: float, target: str
) -> dict[str, Any]:
    extra: dict[str, Any] = {"target": target, "duration_seconds": seconds}
    if not ok:
        extra["error"] = "connection refused" if kind != "icmp" else "timeout"
    return result(seq, kind=kind, uplink=uplink, ok=ok, **extra)


def batches() -> dict[str, list[list[dict[str, Any]]]]:
    """The results each probe sends, batch by batch (``hn-silent`` sends nothing)."""
    late_but_old = timed(10, "icmp", "viettel-4g", False, 3.0, "dichvucong.gov.vn")
    # seq 10 arrives last but was measured before seq 3: it must not become the newest
    late_but_old["measured_at"] = iso(T0 + timedelta(seconds=2))
    return {
        "cb-thuc-phan": [
            [
                timed(1, "icmp", "fibre", True, 0.012, "dichvucong.gov.vn"),
                timed(2, "http", "fibre", True, 0.25, PORTAL_URL),
                timed(3, "icmp", "viettel-4g", True, 0.061, "dichvucong.gov.vn"),
                modem(4, "viettel-4g", True, -97.0),
                result(5, kind="heartbeat", uptime_seconds=3600.0),
                timed(6, "tcp", "viettel-4g", True, 0.08, "dichvucong.gov.vn:443"),
            ],
            [
                timed(7, "icmp", "fibre", False, 2.0, "dichvucong.gov.vn"),
                modem(8, "viettel-4g", True, -104.5),
                timed(9, "icmp", "viettel-4g", True, 0.055, "dichvucong.gov.vn"),
                late_but_old,
            ],
        ],
        "cb-nung-tri-cao": [
            [
                timed(1, "icmp", "viettel-4g", True, 0.07, "dichvucong.gov.vn"),
                timed(2, "dns", "vina-4g", True, 0.03, "dichvucong.gov.vn"),
                timed(3, "http", "vina-4g", False, 5.0, PORTAL_URL),
                modem(4, "vina-4g", False, None),
            ]
        ],
        "hn-ba-dinh": [
            [
                timed(1, "icmp", "mobi-4g", True, 0.09, "dichvucong.gov.vn"),
                modem(2, "mobi-4g", True, -88.0),
                result(3, kind="heartbeat", uptime_seconds=60.0),
            ]
        ],
    }


@dataclass
class Expected:
    success: dict[tuple[str, str], float]
    duration: dict[tuple[str, str], float]
    rsrp: dict[tuple[str, str], float]


def expected_from(sent: dict[str, list[list[dict[str, Any]]]]) -> Expected:
    """The blackbox-style reading of what was sent: per probe and uplink, the newest result of
    each check (kind and target) by ``measured_at``; success when all of them are ok; the
    round-trip of the first kind of PRIMARY_KINDS present; the modem's newest RSRP."""
    newest: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for pid, probe_batches in sent.items():
        for b in probe_batches:
            for r in b:
                if r["uplink"] is None:
                    continue
                checks = newest.setdefault((pid, r["uplink"]), {})
                key = (r["kind"], r["target"])
                if key not in checks or r["measured_at"] >= checks[key]["measured_at"]:
                    checks[key] = r
    out = Expected({}, {}, {})
    for key, checks in newest.items():
        out.success[key] = float(all(r["ok"] for r in checks.values()))
        for kind in PRIMARY_KINDS:
            found = [r for (k, _), r in checks.items() if k == kind]
            if found:
                out.duration[key] = found[0]["duration_seconds"]
                break
        for (kind, _), r in checks.items():
            if kind == "modem" and "rsrp_dbm" in r["signal"]:
                out.rsrp[key] = r["signal"]["rsrp_dbm"]
    return out


def uplink_labels(p: Probe, uplink: str) -> frozenset[tuple[str, str]]:
    operator = dict(p.uplinks)[uplink]
    return lab(probe=p.id, commune=p.commune, province=p.province, uplink=uplink, operator=operator)


def send_everything(c: Clocked) -> dict[str, Any]:
    """Register the probes, send their batches (one re-sent) and some refused ones; return the
    tokens, when each probe was last heard, and the counts the ingest counters must show."""
    tokens = {
        p.id: c.collector.register(p.id, p.commune, tuple(":".join(u) for u in p.uplinks))
        for p in PROBES
    }
    by_id = {p.id: p for p in PROBES}
    sent = batches()
    last_heard: dict[str, float] = {}
    accepted = duplicates = stored_batches = 0
    for pid, probe_batches in sent.items():
        for b in probe_batches:
            c.clock.now += 1.0
            r = post(c.collector, tokens[pid], report(pid, b, c.clock.now - by_id[pid].skew))
            assert r.status_code == 200, r.text
            accepted += len(b)
            stored_batches += 1
            last_heard[pid] = c.clock.now
    # The agent re-sends its last batch (its answer was lost): all duplicates, still heard.
    c.clock.now += 1.0
    resend = sent["cb-thuc-phan"][-1]
    r = post(c.collector, tokens["cb-thuc-phan"], report("cb-thuc-phan", resend, c.clock.now - 2))
    assert r.json()["duplicates"] == len(resend)
    duplicates += len(resend)
    stored_batches += 1
    last_heard["cb-thuc-phan"] = c.clock.now
    c.collector.ctx.store.write_heard()  # what the writer does within a second

    rejected = dict.fromkeys(REJECT_REASONS, 0)
    assert post(c.collector, tokens["cb-thuc-phan"], b"{").status_code == 400
    rejected["malformed_json"] += 1
    for _ in range(2):
        assert post(c.collector, "not-a-token", b"{}").status_code == 401
        rejected["unauthorized"] += 1
    other = report("cb-nung-tri-cao", resend, c.clock.now)
    assert post(c.collector, tokens["cb-thuc-phan"], other).status_code == 403
    rejected["forbidden"] += 1
    empty = report("hn-ba-dinh", [], c.clock.now)
    assert post(c.collector, tokens["hn-ba-dinh"], empty).status_code == 422
    rejected["invalid"] += 1
    month_behind = report("hn-ba-dinh", resend, c.clock.now - 30 * 86_400)
    assert post(c.collector, tokens["hn-ba-dinh"], month_behind).status_code == 422
    rejected["clock"] += 1
    return {
        "sent": sent,
        "last_heard": last_heard,
        "accepted": accepted,
        "duplicates": duplicates,
        "batches": stored_batches,
        "rejected": rejected,
        "posts": stored_batches + sum(rejected.values()),
    }


def expected_states(
    exp: Expected, last_heard: dict[str, float], now: float, silent_after: float
) -> tuple[Samples, Samples]:
    """``lomsong_probes`` and ``lomsong_uplinks`` as they must read at ``now``: every state of
    every province (and operator) with a registered probe, zeros included."""
    probes: dict[frozenset[tuple[str, str]], float] = {}
    uplinks: dict[frozenset[tuple[str, str]], float] = {}
    for p in PROBES:
        for state in ("reporting", "silent"):
            probes.setdefault(lab(province=p.province, state=state), 0.0)
        reporting = p.id in last_heard and now - last_heard[p.id] <= silent_after
        probes[lab(province=p.province, state="reporting" if reporting else "silent")] += 1
        for name, operator in p.uplinks:
            for state in ("up", "down", "unknown"):
                uplinks.setdefault(lab(province=p.province, operator=operator, state=state), 0.0)
            success = exp.success.get((p.id, name))
            state = "unknown" if success is None or not reporting else "up" if success else "down"
            uplinks[lab(province=p.province, operator=operator, state=state)] += 1
    return (
        {("lomsong_probes", k): v for k, v in probes.items()},
        {("lomsong_uplinks", k): v for k, v in uplinks.items()},
    )


def test_metrics_follow_what_the_probes_sent(clocked_factory: ClockedFactory) -> None:
    c = clocked_factory()
    did = send_everything(c)
    c.clock.now += 10.0
    got = samples(scrape(c.collector))
    by_id = {p.id: p for p in PROBES}
    exp = expected_from(did["sent"])
    # The reading of what was sent, spot-checked by hand: the newest fibre ping failed; the
    # failed ping that arrived last was measured before a good one; http outranks dns.
    assert exp.success[("cb-thuc-phan", "fibre")] == 0.0
    assert exp.success[("cb-thuc-phan", "viettel-4g")] == 1.0
    assert exp.duration[("cb-nung-tri-cao", "vina-4g")] == 5.0
    assert exp.rsrp[("cb-thuc-phan", "viettel-4g")] == -104.5

    def per_uplink(values: dict[tuple[str, str], float]) -> dict[frozenset[tuple[str, str]], float]:
        return {uplink_labels(by_id[pid], up): v for (pid, up), v in values.items()}

    assert of(got, "probe_success") == per_uplink(exp.success)
    assert of(got, "probe_duration_seconds") == per_uplink(exp.duration)
    assert of(got, "lomsong_uplink_rsrp_dbm") == per_uplink(exp.rsrp)

    def per_probe(values: dict[str, float]) -> dict[frozenset[tuple[str, str]], float]:
        return {
            lab(probe=pid, commune=by_id[pid].commune, province=by_id[pid].province): v
            for pid, v in values.items()
        }

    assert of(got, "lomsong_probe_last_seen_timestamp_seconds") == per_probe(did["last_heard"])
    skews = {pid: by_id[pid].skew for pid in did["last_heard"]}
    assert of(got, "lomsong_probe_clock_skew_seconds") == per_probe(skews)

    silent_after = 3 * c.collector.ctx.settings.report_interval_seconds
    probes, uplinks = expected_states(exp, did["last_heard"], c.clock.now, silent_after)
    assert {k: v for k, v in got.items() if k[0] == "lomsong_probes"} == probes
    assert {k: v for k, v in got.items() if k[0] == "lomsong_uplinks"} == uplinks

    results = of(got, "lomsong_ingest_results_total")
    assert results == {
        lab(outcome="accepted"): did["accepted"],
        lab(outcome="duplicate"): did["duplicates"],
    }
    assert of(got, "lomsong_ingest_batches_total") == {lab(): did["batches"]}
    assert of(got, "lomsong_ingest_rejected_total") == {
        lab(reason=reason): n for reason, n in did["rejected"].items()
    }
    route = lab(route="/api/v1/reports", method="POST")
    assert of(got, "lomsong_http_request_duration_seconds_count")[route] == did["posts"]
    buckets = of(got, "lomsong_http_request_duration_seconds_bucket")
    assert buckets[route | {("le", "+Inf")}] == did["posts"]


def test_labels_are_bounded_and_promtool_accepts_the_output(
    clocked_factory: ClockedFactory,
) -> None:
    c = clocked_factory()
    did = send_everything(c)
    with c.collector.client() as http:
        # A made-up method and a made-up path must not become label values of their own.
        assert http.request("BREW", "/metrics").status_code == 405
        assert http.get("/no/such/path/12345").status_code == 404
        assert http.get("/healthz").status_code == 200
    text = scrape(c.collector)
    got = samples(text)

    # Route templates: the API's (as documented) and the documentation's own.
    routes = set(c.app.openapi()["paths"]) | {"unmatched"}
    routes |= {path for r in c.app.routes if isinstance(path := getattr(r, "path", None), str)}
    allowed_values: dict[str, set[str]] = {
        "probe": {p.id for p in PROBES},
        "commune": {p.commune for p in PROBES},
        "province": {p.province for p in PROBES},
        "uplink": {name for p in PROBES for name, _ in p.uplinks},
        "operator": set(OPERATORS) | set(FIXED_OPERATORS),
        "state": {"up", "down", "unknown", "reporting", "silent"},
        "outcome": {"accepted", "duplicate"},
        "reason": set(REJECT_REASONS),
        "route": routes,
        "method": set(HTTP_METHODS) | {"other"},
    }
    free_text = {
        str(r[k])
        for b in (x for bs in did["sent"].values() for x in bs)
        for r in b
        for k in ("seq", "target", "error", "measured_at")
        if r.get(k) is not None
    } | {"boot-1", "BREW", "/no/such/path/12345"}
    for name, labels in got:
        for label, value in labels:
            assert label in ALLOWED_LABELS, f"{name}: label {label!r} is not in the bounded set"
            assert value not in free_text, f"{name}: {label}={value!r} is free text or a seq"
            if label == "le":
                float(value)
            else:
                assert value in allowed_values[label], f"{name}: {label}={value!r}"
    methods = of(got, "lomsong_http_request_duration_seconds_count")
    assert methods[lab(route="/metrics", method="other")] == 1
    assert methods[lab(route="unmatched", method="GET")] == 1

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run `make system-deps`")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    complaints = (check.stdout + check.stderr).decode()
    assert check.returncode == 0, complaints
    assert complaints.strip() == ""


def test_a_silent_probe_and_its_uplinks_are_counted_apart(
    clocked_factory: ClockedFactory,
) -> None:
    interval = 10.0
    c = clocked_factory(report_interval_seconds=interval)
    token = c.collector.register("cb-1", "01273", ("viettel-4g:viettel", "fibre:fibre"))
    results = [result(1, uplink="viettel-4g"), result(2, uplink="fibre", ok=False)]
    assert post(c.collector, token, report("cb-1", results, c.clock.now)).status_code == 200
    heard = c.clock.now

    def states() -> tuple[dict[str, float], dict[tuple[str, str], float]]:
        got = samples(scrape(c.collector))
        probes = {dict(k)["state"]: v for k, v in of(got, "lomsong_probes").items()}
        uplinks = {
            (dict(k)["operator"], dict(k)["state"]): v
            for k, v in of(got, "lomsong_uplinks").items()
        }
        last = of(got, "lomsong_probe_last_seen_timestamp_seconds")
        assert list(last.values()) == [heard]
        return probes, {k: v for k, v in uplinks.items() if v}

    # Exactly three report intervals of silence is still reporting ...
    c.clock.now = heard + 3 * interval
    assert states() == (
        {"reporting": 1.0, "silent": 0.0},
        {("viettel", "up"): 1.0, ("fibre", "down"): 1.0},
    )
    # ... a moment more is silent, and nothing is known of its uplinks any more.
    c.clock.now = heard + 3 * interval + 0.5
    assert states() == (
        {"reporting": 0.0, "silent": 1.0},
        {("viettel", "unknown"): 1.0, ("fibre", "unknown"): 1.0},
    )


def test_scrapes_follow_new_results_reloads_and_registrations(
    clocked_factory: ClockedFactory,
) -> None:
    c = clocked_factory()
    token = c.collector.register("cb-1", "01273", ("viettel-4g:viettel",))
    seq = 0

    def send(ok: bool, seconds: float, rsrp: float) -> float:
        nonlocal seq
        c.clock.now += 5.0
        results = [
            timed(seq + 1, "icmp", "viettel-4g", ok, seconds, "dichvucong.gov.vn"),
            modem(seq + 2, "viettel-4g", True, rsrp),
        ]
        seq += 2
        assert post(c.collector, token, report("cb-1", results, c.clock.now)).status_code == 200
        return c.clock.now

    def live_families() -> Samples:
        got = samples(scrape(c.collector))
        return {k: v for k, v in got.items() if k[0] in LIVE_FAMILIES}

    def reading(commune: str = "01273") -> dict[str, float]:
        fams = live_families()
        uplink = uplink_labels(
            Probe("cb-1", commune, "04", (("viettel-4g", "viettel"),), 0), "viettel-4g"
        )
        probe = lab(probe="cb-1", commune=commune, province="04")
        return {
            "success": fams[("probe_success", uplink)],
            "duration": fams[("probe_duration_seconds", uplink)],
            "rsrp": fams[("lomsong_uplink_rsrp_dbm", uplink)],
            "seen": fams[("lomsong_probe_last_seen_timestamp_seconds", probe)],
        }

    heard = send(True, 0.05, -90.0)
    assert reading() == {"success": 1.0, "duration": 0.05, "rsrp": -90.0, "seen": heard}
    assert reading() == {"success": 1.0, "duration": 0.05, "rsrp": -90.0, "seen": heard}
    heard = send(False, 0.75, -101.5)
    assert reading() == {"success": 0.0, "duration": 0.75, "rsrp": -101.5, "seen": heard}
    before = live_families()
    c.collector.ctx.live.reload(c.collector.engine)
    assert live_families() == before

    # Moved to another commune with a second uplink: the labels follow after a reload.
    register_probe(
        c.collector.engine,
        "cb-1",
        "01279",
        [Uplink("viettel-4g", "viettel"), Uplink("fibre", "fibre")],
        replace=True,
    )
    c.collector.ctx.live.reload(c.collector.engine)
    assert reading("01279") == {"success": 0.0, "duration": 0.75, "rsrp": -101.5, "seen": heard}
    got = samples(scrape(c.collector))
    assert not [k for k in got if ("commune", "01273") in k[1]]
    assert of(got, "lomsong_uplinks")[lab(province="04", operator="fibre", state="unknown")] == 1
    assert of(got, "lomsong_uplinks")[lab(province="04", operator="viettel", state="down")] == 1
