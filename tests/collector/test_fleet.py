"""The fleet view's data (``collector/fleet.py``) on SQLite and PostgreSQL, its API with the
CSV download, and ``lomsong fleet status`` / ``token rotate`` / ``token list`` as a user runs
them."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, event, update

from lomsong.collector.fleet import fleet_status
from lomsong.collector.fleet_profiles import served_config_versions, set_layer
from lomsong.collector.token_rotation import request_rotation
from lomsong.maps.fleet_model import is_outdated, newest_version, release
from lomsong.maps.fleet_page import fleet_page, sheet_header, sheet_rows
from lomsong.storage.schema import probe_state
from tests.conftest import ADMIN_SECRET, RunningCollector
from tests.factories import batch, body, result

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
SILENT_AFTER = 90.0


def heartbeat_batch(probe_id: str, seq: int, version: str, **beat: Any) -> dict[str, Any]:
    doc = batch(probe_id, [], agent_version=version)
    doc["results"] = [
        result(seq - 1),
        result(seq, kind="heartbeat", ok=True, **beat),
    ]
    return doc


def send(c: RunningCollector, token: str, doc: dict[str, Any]) -> None:
    with c.client(token) as client:
        r = client.post("/api/v1/reports", content=body(doc)[0])
    assert r.status_code == 200, r.text


def seed(c: RunningCollector) -> dict[str, str]:
    """Four probes: old agent heard now (04), new agent heard now (12), one silent for an hour
    (04), one never heard (04)."""
    tokens = {
        "fl-old": c.register("fl-old", "01273"),
        "fl-new": c.register("fl-new", "03388", ("mobifone-4g:mobifone",)),
        "fl-quiet": c.register("fl-quiet", "01321"),
        "fl-never": c.register("fl-never", "01321"),
    }
    send(
        c,
        tokens["fl-old"],
        heartbeat_batch(
            "fl-old",
            2,
            "0.1.0",
            uptime_seconds=7200.0,
            spool_depth=42,
            spool_dropped=3,
            spool_refused=1,
        ),
    )
    send(c, tokens["fl-new"], heartbeat_batch("fl-new", 2, "0.10.0", uptime_seconds=60.0))
    send(c, tokens["fl-quiet"], heartbeat_batch("fl-quiet", 2, "0.10.0", spool_depth=0))
    with c.engine.begin() as conn:
        conn.execute(
            update(probe_state)
            .where(probe_state.c.probe_id == "fl-quiet")
            .values(last_seen_at=time.time() - 3600)
        )
    return tokens


def count_queries(engine: Engine) -> list[str]:
    seen: list[str] = []

    def note(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith("SELECT"):
            seen.append(str(args[2])[:60])

    event.listen(engine, "before_cursor_execute", note)
    return seen


def test_versions_compare_by_release_numbers() -> None:
    assert release("0.10.2rc1") == (0, 10, 2) and release("v1.2") == (1, 2)
    assert release(None) == () and release("dev") == ()
    assert newest_version(["0.9.7", "0.10.0", None, "x"]) == "0.10.0"
    assert is_outdated("0.9.7", "0.10.0") and not is_outdated("0.10.0", "0.10.0")
    assert not is_outdated(None, "0.10.0")  # an agent that never said is not judged


def test_fleet_status_marks_and_sorts_in_five_queries(any_collector: RunningCollector) -> None:
    c = any_collector
    seed(c)
    now = time.time()
    queries = count_queries(c.engine)
    fleet = fleet_status(c.engine, None, now=now, silent_after=SILENT_AFTER)
    assert len(queries) == 5, queries
    order = [p.probe_id for p in fleet.probes]
    # silent first (the never heard and the quiet, both outdated or unjudged), then outdated
    assert order == ["fl-never", "fl-quiet", "fl-old", "fl-new"]
    by_id = {p.probe_id: p for p in fleet.probes}
    assert fleet.newest_version == "0.10.0" and fleet.silent == 2 and fleet.outdated == 1
    never, quiet, old, new = (by_id[i] for i in order)
    assert never.marks == ["never_heard"] and never.agent_version is None
    assert quiet.marks == ["silent"] and 3590 < (quiet.silent_for(now) or 0) < 3700
    assert old.marks == ["outdated", "dropped"]
    assert (old.spool_depth, old.spool_dropped, old.spool_refused) == (42, 3, 1)
    assert old.commune_name == "Xã Thục Phán" or "Thục" in old.commune_name
    assert old.province_name == "Cao Bằng"
    assert old.booted_at is not None and abs(now - old.booted_at - 7200) < 6 * 3600 + 600
    assert new.marks == [] and new.province_code == "12"
    # a viewer's scope: its provinces only, still judged against the whole fleet's newest
    only04 = fleet_status(c.engine, {"04"}, now=now, silent_after=SILENT_AFTER)
    assert [p.probe_id for p in only04.probes] == ["fl-never", "fl-quiet", "fl-old"]
    assert only04.newest_version == "0.10.0"
    # a pending rotation shows
    request_rotation(c.engine, "fl-new")
    again = fleet_status(c.engine, {"12"}, now=now, silent_after=SILENT_AFTER)
    assert again.probes[0].rotation == "requested" and again.probes[0].marks == ["rotation"]


def test_the_configuration_served_applied_pending_or_refused(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    tokens = seed(c)
    now = time.time()
    # no layer: every probe runs its own file's checks
    fleet = fleet_status(c.engine, None, now=now, silent_after=SILENT_AFTER)
    assert {p.config_state for p in fleet.probes} == {"local"}
    national = {"checks": [{"kind": "tcp", "target": "dichvucong.gov.vn:443"}]}
    set_layer(c.engine, "national", "", national)
    set_layer(
        c.engine, "province", "12", {"checks": [{"kind": "icmp", "target": "quangtri.gov.vn"}]}
    )
    with c.engine.connect() as conn:
        served = served_config_versions(conn, ["fl-old", "fl-new", "fl-quiet", "nobody"])
    assert set(served) == {"fl-old", "fl-new", "fl-quiet"}
    assert served["fl-old"] == served["fl-quiet"] != served["fl-new"]
    # fl-old applies what is served; fl-new refused it; fl-quiet still runs its file
    send(
        c,
        tokens["fl-old"],
        heartbeat_batch("fl-old", 4, "0.10.0", config_version=served["fl-old"]),
    )
    send(
        c,
        tokens["fl-new"],
        heartbeat_batch(
            "fl-new",
            4,
            "0.10.0",
            config_version="local",
            config_refused_version=served["fl-new"],
            config_error="checks[0].uplinks: no uplink 'viettel-4g' on this box",
        ),
    )
    send(c, tokens["fl-quiet"], heartbeat_batch("fl-quiet", 4, "0.10.0", config_version="local"))
    queries = count_queries(c.engine)
    fleet = fleet_status(c.engine, None, now=time.time(), silent_after=SILENT_AFTER)
    assert len(queries) == 5, queries
    by_id = {p.probe_id: p for p in fleet.probes}
    states = {i: p.config_state for i, p in by_id.items()}
    assert states == {
        "fl-old": "applied",
        "fl-new": "refused",
        "fl-quiet": "pending",
        "fl-never": "unknown",  # served a profile, never said what it runs
    }
    assert by_id["fl-new"].marks == ["config_refused"]
    assert by_id["fl-quiet"].marks == ["config_pending"]  # heard again: no longer silent
    assert by_id["fl-old"].marks == []
    # a refused configuration comes before the probes that are well
    assert [p.probe_id for p in fleet.probes] == ["fl-never", "fl-new", "fl-old", "fl-quiet"]
    doc = by_id["fl-new"].as_json(fleet.now)["config"]
    assert doc["state"] == "refused" and doc["served"] == served["fl-new"]
    assert doc["error"] == "checks[0].uplinks: no uplink 'viettel-4g' on this box"
    # the page and the sheet say it in both languages
    html = fleet_page(fleet, who="admin")
    assert "Bị từ chối / Refused" in html and "no uplink &#x27;viettel-4g&#x27;" in html
    assert f"v{served['fl-old'][:12]}" in html
    rows = {r[0]: r for r in sheet_rows(fleet, "en")}
    header = sheet_header("en")
    assert rows["fl-new"][header.index("Config")] == "Refused"
    assert rows["fl-old"][header.index("Config applied")] == served["fl-old"]


def test_fleet_api_json_csv_and_scope(any_collector: RunningCollector) -> None:
    c = any_collector
    seed(c)
    viewer = c.viewer("12")
    with c.client(viewer) as client:
        doc = client.get("/api/v1/fleet").json()
        assert [p["probe_id"] for p in doc["probes"]] == ["fl-new"]
        assert client.get("/api/v1/fleet?province=04").status_code == 403
    with c.client(ADMIN_SECRET) as client:
        doc = client.get("/api/v1/fleet?province=04").json()
        assert doc["count"] == 3 and doc["silent"] == 2 and doc["outdated"] == 1
        old = next(p for p in doc["probes"] if p["probe_id"] == "fl-old")
        assert old["province"] == {"code": "04", "name": "Cao Bằng"}
        assert old["spool_dropped"] == 3 and old["agent_version"] == "0.1.0"
        assert old["outdated"] is True and old["uptime_seconds"] > 7000
        r = client.get("/api/v1/fleet?province=04&format=csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "tr%E1%BA%A1m-%C4%91o_04.csv" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert rows[0][:3] == ["Mã trạm đo", "Mã xã", "Xã / phường"]
        assert [row[0] for row in rows[1:]] == ["fl-never", "fl-quiet", "fl-old"]
        assert rows[3][6] == "có" and "Phiên bản cũ" in rows[3][-1]
        r = client.get("/api/v1/fleet?province=04&format=xlsx&lang=en")
        assert r.status_code == 200 and r.content[:2] == b"PK"
        assert client.get("/api/v1/fleet?province=4").status_code == 422


def cli(db: Path, *args: str, columns: int = 100) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env.update(LOMSONG_DATABASE_URL=f"sqlite:///{db}", COLUMNS=str(columns))
    return subprocess.run([LOMSONG, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("columns", [100, 80])
def test_fleet_status_cli_fits_and_refuses_in_one_line(
    collector: RunningCollector, sqlite_url: str, columns: int
) -> None:
    seed(collector)
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    out = cli(db, "fleet", "status", columns=columns)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, out.stdout
    text = out.stdout
    assert text.index("fl-never") < text.index("fl-quiet") < text.index("fl-old")
    assert "NEVER HEARD" in text and "OUTDATED" in text and "Cao Bằng" in text
    assert "4 probes: 2 silent" in text
    one = cli(db, "fleet", "status", "--province", "12", "--json")
    assert one.returncode == 0, one.stderr
    assert [p["probe_id"] for p in orjson.loads(one.stdout)["probes"]] == ["fl-new"]
    for bad, said in (("99", "(got '99')"), ("4", "(got '4')")):
        r = cli(db, "fleet", "status", "--province", bad)
        assert r.returncode != 0 and r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1 and said in r.stderr, r.stderr


def test_token_rotate_and_list_cli(collector: RunningCollector, sqlite_url: str) -> None:
    seed(collector)
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    r = cli(db, "token", "rotate", "--probe", "fl-old")
    assert r.returncode == 0 and "rotation 1 of fl-old's token asked" in r.stdout, r.stderr
    again = cli(db, "token", "rotate", "--probe", "fl-old")
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "rotation 1 is still requested" in again.stderr
    for bad in ("nobody", "bad id"):
        r = cli(db, "token", "rotate", "--probe", bad)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    listed = cli(db, "token", "list", columns=100)
    assert listed.returncode == 0, listed.stderr
    assert max(len(line) for line in listed.stdout.splitlines()) <= 100
    assert "#1 asked" in listed.stdout
