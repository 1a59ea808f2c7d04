"""The read API, scoped by role: probes, results with pages, health and readiness."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import batch, body, result


def _send(c: RunningCollector, token: str, doc: dict[str, object]) -> None:
    raw, headers = body(doc, gz=True)
    with c.client(token) as http:
        r = http.post("/api/v1/reports", content=raw, headers=headers)
        assert r.status_code == 200, r.text


def _setup(c: RunningCollector) -> dict[str, str]:
    tokens = {
        "cb": c.register("cb-thuc-phan", "01273", ("viettel-4g:viettel", "fibre:fibre")),
        "tq": c.register("tq-minh-xuan", "02509", ("mobifone-4g:mobifone",)),
    }
    doc = batch("cb-thuc-phan", [])
    doc["results"] = [
        result(1),
        result(2, uplink="fibre", ok=False),
        result(
            3, kind="modem", signal={"rat": "lte", "rsrp_dbm": -104.0, "mcc": "452", "mnc": "04"}
        ),
    ]
    _send(c, tokens["cb"], doc)
    _send(c, tokens["tq"], batch("tq-minh-xuan", range(1, 11)))
    return tokens


def test_viewers_see_only_their_provinces(any_collector: RunningCollector) -> None:
    c = any_collector
    _setup(c)
    with c.client(c.viewer("04")) as http:
        listed = http.get("/api/v1/probes").json()
        assert [p["id"] for p in listed["probes"]] == ["cb-thuc-phan"]
        p = listed["probes"][0]
        assert p["commune"] == {"code": "01273", "name": "Phường Thục Phán"}
        assert p["province"] == {"code": "04", "name": "Cao Bằng"}
        assert p["status"] == "reporting"
        ups = {u["name"]: u for u in p["uplinks"]}
        assert ups["fibre"]["ok"] is False and ups["viettel-4g"]["ok"] is True
        modem = [k for k in ups["viettel-4g"]["checks"] if k["kind"] == "modem"][0]
        assert modem["rsrp_dbm"] == -104.0
        assert http.get("/api/v1/probes", params={"province": "08"}).status_code == 403
        assert http.get("/api/v1/probes/tq-minh-xuan").status_code == 403
        assert http.get("/api/v1/probes/tq-minh-xuan/results").status_code == 403
        assert http.get("/api/v1/probes/cb-thuc-phan/results").status_code == 200
        assert http.get("/api/v1/probes/nope").status_code == 404
    with c.client(ADMIN_SECRET) as http:
        assert http.get("/api/v1/probes").json()["count"] == 2
        assert [
            p["id"] for p in http.get("/api/v1/probes", params={"province": "08"}).json()["probes"]
        ] == ["tq-minh-xuan"]
    with c.client("lst_not_a_token") as http:
        assert http.get("/api/v1/probes").status_code == 401


def test_a_probe_token_reads_only_its_own_probe(collector: RunningCollector) -> None:
    tokens = _setup(collector)
    with collector.client(tokens["tq"]) as http:
        assert [p["id"] for p in http.get("/api/v1/probes").json()["probes"]] == ["tq-minh-xuan"]
        assert http.get("/api/v1/probes/cb-thuc-phan").status_code == 403
        assert http.get("/api/v1/probes/tq-minh-xuan").status_code == 200


def test_results_are_paged_by_seq_and_filtered_by_time(collector: RunningCollector) -> None:
    tokens = _setup(collector)
    _send(collector, tokens["tq"], batch("tq-minh-xuan", range(11, 251)))
    seen: list[int] = []
    after = 0
    with collector.client(ADMIN_SECRET) as http:
        while True:
            page = http.get(
                "/api/v1/probes/tq-minh-xuan/results", params={"after_seq": after, "limit": 100}
            ).json()
            seen += [r["seq"] for r in page["results"]]
            if page["next_after_seq"] is None:
                break
            after = page["next_after_seq"]
        assert seen == list(range(1, 251))
        # measured times are T0 + seq seconds: a window picks seqs 100..149
        first = http.get("/api/v1/probes/tq-minh-xuan/results", params={"limit": 1}).json()[
            "results"
        ][0]
        from datetime import datetime, timedelta

        t1 = datetime.fromisoformat(first["measured_at"].replace("Z", "+00:00"))
        window = http.get(
            "/api/v1/probes/tq-minh-xuan/results",
            params={
                "since": (t1 + timedelta(seconds=99)).isoformat(),
                "until": (t1 + timedelta(seconds=149)).isoformat(),
            },
        ).json()["results"]
        assert [r["seq"] for r in window] == list(range(100, 150))
        assert all(r["received_at"] > r["measured_at"] for r in window)
        bad = http.get("/api/v1/probes/tq-minh-xuan/results", params={"since": "yesterday"})
        assert (
            bad.status_code == 422
            and "since" in bad.json()["detail"]
            and "yesterday" in bad.json()["detail"]
        )
        bad = http.get("/api/v1/probes/tq-minh-xuan/results", params={"limit": 0})
        assert bad.status_code == 422 and "limit" in bad.json()["detail"]


def test_health_readiness_and_docs(collector_factory: CollectorFactory, db_url: str) -> None:
    c = collector_factory(db_url)
    with c.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        spec = http.get("/openapi.json").json()
        assert (
            "/api/v1/reports" in spec["paths"]
            and "/api/v1/probes/{probe_id}/results" in spec["paths"]
        )
        assert http.get("/docs").status_code == 200


def test_readiness_fails_when_the_schema_is_behind(collector: RunningCollector) -> None:
    from sqlalchemy import text

    with collector.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    with collector.client() as http:
        r = http.get("/readyz")
    assert r.status_code == 503
    assert "lomsong db upgrade" in r.json()["reason"]


@pytest.mark.parametrize("path", ["/api/v1/probes", "/api/v1/probes/x/results"])
def test_reads_need_a_token(collector: RunningCollector, path: str) -> None:
    with collector.client() as http:
        r = http.get(path)
    assert r.status_code == 401 and orjson.loads(r.content)["detail"].startswith("Authorization")


BAD_QUERIES = [
    ("/api/v1/probes/cb-thuc-phan/results?after_seq=9223372036854775808", "after_seq"),
    ("/api/v1/probes/cb-thuc-phan/results?kind=a%00b", "kind"),
    ("/api/v1/probes/cb-thuc-phan/results?uplink=a%00b", "uplink"),
    ("/api/v1/probes/cb-thuc-phan/results?since=1e400", "since"),
    ("/api/v1/probes/cb-thuc-phan/results?until=-1e300", "until"),
    ("/api/v1/outages?operator=a%00b", "operator"),
    ("/api/v1/outages?since=nan", "since"),
    ("/api/v1/outages?province=%E0%BC%A90", "province"),  # a Tibetan nine: a digit, not a code
    ("/api/v1/probes?commune=0127%D9%A3", "commune"),  # an Arabic-Indic three
]


@pytest.mark.parametrize(("path", "field"), BAD_QUERIES, ids=[q[1] for q in BAD_QUERIES])
def test_bad_query_values_get_a_4xx_that_names_them(
    any_collector: RunningCollector, path: str, field: str
) -> None:
    """On PostgreSQL a NUL in a text parameter or a seq beyond 64 bits used to answer 500."""
    _setup(any_collector)
    with any_collector.client(ADMIN_SECRET) as http:
        r = http.get(path)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"], r.text
