"""Zero-touch enrolment (issue #16 §1): a box asks with a provincial key, waits pending, is
approved by an admin or its province's admin, collects its token once and reports.

The end-to-end test runs the real agent commands (``probe enrol``, then ``probe run``) as
processes against a collector on loopback, with a stand-in ``mmcli`` (tests/probes/data/
mmcli_box.py); the collector's commands run in this process, as ``lomsong`` runs them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from lomsong.cli import main
from lomsong.collector.auth import create_token
from lomsong.collector.enrolment_keys import create_key, revoke_key
from lomsong.collector.enrolments import propose_uplinks
from lomsong.config.probe import load_probe_settings
from lomsong.enrolwire import Interface, Modem, ProbeDescription
from lomsong.probes.enrol import EnrolmentError, EnrolOptions, enrol
from lomsong.storage.schema import enrolment_keys, tokens
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import batch, body
from tests.probes.data import mmcli_box
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
FAKE_MMCLI = f"{sys.executable} {Path(mmcli_box.__file__)}"
BOX = {"machine_id": "5f1c0e7a9b2d4c8e8f0a1b2c3d4e5f60", "hostname": "ubnd-thuc-phan"}


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str, str]:
    """``lomsong ARGV`` in this process against the database at ``url``, 80 columns wide."""
    monkeypatch.setenv("LOMSONG_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def ask(c: RunningCollector, key: str, commune: str = "01273", **box: str) -> httpx.Response:
    desc = {**BOX, "agent_version": "0.1.0", **box}
    with c.client(key) as http:
        return http.post("/api/v1/enrolments", json={"commune": commune, "description": desc})


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}


def test_a_box_enrols_is_approved_collects_its_token_once_and_reports(
    tmp_path: Path,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = collector_factory(sqlite_url)
    code, out, err = cli(
        monkeypatch, capsys, sqlite_url, "enrolment", "create", "--province", "04",
        "--expires", "30d", "--max-uses", "60", "--label", "Cao Bằng, đợt 1",
    )  # fmt: skip
    assert code == 0 and "shown only now" in err, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("lse_")

    etc, port = tmp_path / "etc", c.url.rsplit(":", 1)[1]
    (tmp_path / "machine-id").write_text(BOX["machine_id"] + "\n")
    (tmp_path / "checks.toml").write_text(f"""
[[checks]]
kind = "tcp"
target = "127.0.0.1:{port}"
uplinks = ["fibre"]
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0

[[checks]]
kind = "heartbeat"
interval_seconds = 1.0
jitter_seconds = 0.0
timeout_seconds = 1.0
""")
    box_log = tmp_path / "enrol.log"
    with box_log.open("w") as log:
        box = subprocess.Popen(
            [
                LOMSONG, "probe", "enrol", "--collector", c.url, "--key", key,
                "--commune", "01273", "--out", str(etc), "--spool", str(tmp_path / "spool.db"),
                "--checks", str(tmp_path / "checks.toml"),
                "--machine-id-file", str(tmp_path / "machine-id"), "--mmcli", FAKE_MMCLI,
                "--poll-seconds", "0.2", "--poll-max", "0.5",
            ],
            env=agent_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with c.client(ADMIN_SECRET) as admin:

            def pending() -> list[dict] | None:
                rows = admin.get("/api/v1/enrolments").json()["enrolments"]
                return rows or None

            (entry,) = wait_until(pending, timeout=30, what="the box's enrolment pending")
            assert entry["commune"] == {"code": "01273", "name": "Phường Thục Phán"}
            assert entry["machine_id"] == BOX["machine_id"] and entry["reused_machine"] == []
            (modem,) = entry["modems"]
            assert (modem["operator_code"], modem["imsi_prefix"]) == ("45204", "45204")
            assert {"name": "viettel-4g", "operator": "viettel", "interface": "wwan0"} in entry[
                "proposed_uplinks"
            ]
            assert "lo" in [i["name"] for i in entry["interfaces"]]
            raw = admin.get(f"/api/v1/enrolments/{entry['id']}").text
            assert mmcli_box.IMSI not in raw and mmcli_box.IMEI not in raw

        code, out, _ = cli(monkeypatch, capsys, sqlite_url, "probe", "pending")
        assert code == 0 and "Thục" in out and " viettel-4g:viettel@wwan0" in out, out
        assert max(len(line) for line in out.splitlines()) <= 80, out
        secret = wait_until(
            lambda: (etc / "enrolment.json").is_file() and (etc / "enrolment.json").read_text(),
            timeout=10,
            what="the box keeps its poll secret",
        )
        code, out, err = cli(
            monkeypatch, capsys, sqlite_url, "probe", "approve", str(entry["id"]),
            "--id", "cb-enrolled", "--uplink", "fibre:fibre@lo", "--uplink", "viettel-4g:viettel",
        )  # fmt: skip
        assert code == 0 and "approved: probe cb-enrolled at Phường Thục Phán" in out, err
        assert box.wait(30) == 0, box_log.read_text()
    finally:
        if box.poll() is None:
            box.kill()
            box.wait()
    assert "approved as probe cb-enrolled" in box_log.read_text()

    token_file, config = etc / "probe.token", etc / "probe.toml"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not (etc / "enrolment.json").exists()
    settings = load_probe_settings(config)
    assert settings.probe_id == "cb-enrolled" and settings.collector_url == c.url
    assert [(u.name, u.operator, u.interface) for u in settings.uplinks] == [
        ("fibre", "fibre", "lo"),
        ("viettel-4g", "viettel", "wwan0"),  # the interface proposed for the operator
    ]
    assert [ch.kind for ch in settings.checks] == ["tcp", "heartbeat"]
    assert settings.bearer_token().startswith("lst_")

    # the token was given once: the same secret is told so afterwards
    import json

    poll = json.loads(secret)
    with c.client(poll["poll_secret"]) as http:
        r = http.get(f"/api/v1/enrolments/{entry['id']}")
    assert r.status_code == 410 and "collected" in r.json()["detail"], r.text

    # and the agent runs with what it wrote: its reports arrive
    with (tmp_path / "run.log").open("w") as log:
        agent = subprocess.Popen(
            [LOMSONG, "probe", "run", "--config", str(config)],
            env=agent_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with c.client(ADMIN_SECRET) as admin:

            def reporting() -> dict | None:
                view = admin.get("/api/v1/probes/cb-enrolled").json()
                return view if view["status"] == "reporting" else None

            view = wait_until(reporting, timeout=30, what="the enrolled probe reports")
            assert view["agent_version"]
    finally:
        agent.terminate()
        agent.wait(15)


def test_keys_refused_with_clear_errors(
    any_collector: RunningCollector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    c = any_collector
    key = create_key(c.engine, "04", max_uses=2)
    # a key of province 04 cannot enrol a commune of province 12; the refusal costs no use
    r = ask(c, key.key, commune="03388")
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == (
        "commune: 03388 (Phường Đoàn Kết) is in province 12; this enrolment key enrols in "
        "province 04 only"
    )
    assert ask(c, key.key).status_code == 201
    assert ask(c, key.key).status_code == 201
    r = ask(c, key.key)
    assert r.status_code == 403 and "has been used 2 of 2 times" in r.json()["detail"], r.text

    expired = create_key(c.engine, "04", expires_in_seconds=60, clock=lambda: time.time() - 120)
    r = ask(c, expired.key)
    assert (
        r.status_code == 403
        and f"enrolment key {expired.id} (province 04) expired at" in (r.json()["detail"])
    )
    revoked = create_key(c.engine, "04")
    revoke_key(c.engine, revoked.id)
    r = ask(c, revoked.key)
    assert r.status_code == 403 and "was revoked at" in r.json()["detail"], r.text
    r = ask(c, "lse_" + "x" * 43)
    assert r.status_code == 401 and "unknown key" in r.json()["detail"], r.text
    r = ask(c, create_key(c.engine, "04").key, commune="99999")
    assert r.status_code == 422 and "99999" in r.json()["detail"], r.text
    with c.engine.connect() as conn:
        uses = dict(conn.execute(enrolment_keys.select().with_only_columns(
            enrolment_keys.c.id, enrolment_keys.c.uses)).all())  # fmt: skip
    assert uses[key.id] == 2 and uses[revoked.id] == 0

    # on the box: one line, exit 1, as the collector said it
    (tmp_path / "machine-id").write_text(BOX["machine_id"] + "\n")
    code, out, err = cli(
        monkeypatch, capsys, "sqlite:///unused.db", "probe", "enrol", "--collector", c.url,
        "--key", revoked.key, "--commune", "01273", "--out", str(tmp_path / "etc"),
        "--machine-id-file", str(tmp_path / "machine-id"), "--mmcli", "no-such-mmcli",
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("lomsong: error: collector said 403: enrolment key") and "revoked" in err
    assert not (tmp_path / "etc" / "probe.toml").exists()


def test_a_reused_machine_id_is_flagged_not_merged(
    collector: RunningCollector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = collector
    key = create_key(c.engine, "04").key
    first = ask(c, key).json()
    assert first["reused_machine"] == []
    with c.client(ADMIN_SECRET) as admin:
        url = f"/api/v1/enrolments/{first['id']}/approve"
        r = admin.post(url, json={"probe_id": "cb-a"})
        assert r.status_code == 422 and "nothing to propose" in r.json()["detail"], r.text
        r = admin.post(url, json={"probe_id": "cb-a", "uplinks": ["fibre:fibre"]})
        assert r.status_code == 200, r.text
        assert r.json()["uplinks"] == [{"name": "fibre", "operator": "fibre", "interface": None}]
        second = ask(c, key, hostname="cloned-box").json()
        assert second["reused_machine"] == [f"enrolment {first['id']} (approved, probe cb-a)"]
        rows = admin.get("/api/v1/enrolments", params={"status": "all"}).json()["enrolments"]
    assert [(e["id"], e["status"], e["hostname"]) for e in rows] == [
        (first["id"], "approved", BOX["hostname"]),
        (second["id"], "pending", "cloned-box"),
    ]
    code, out, _ = cli(monkeypatch, capsys, c.ctx.settings.database_url, "probe", "pending")
    assert code == 0 and "seen before" in out and "cloned-box" in out, out


def test_the_token_is_given_once_to_the_poll_secret_only(collector: RunningCollector) -> None:
    c = collector
    answer = ask(c, create_key(c.engine, "04").key).json()
    url = answer["poll_url"]
    with c.client(answer["poll_secret"]) as box, c.client(ADMIN_SECRET) as admin:
        assert box.get(url).json() == {
            "id": answer["id"], "status": "pending", "probe_id": None, "token": None,
            "uplinks": [], "reason": None,
        }  # fmt: skip
        with c.client("lsp_" + "y" * 43) as other:
            assert other.get(url).status_code == 401
        r = admin.post(
            f"{url}/approve",
            json={"probe_id": "cb-once", "uplinks": ["viettel-4g:viettel@wwan0"]},
        )
        assert r.status_code == 200, r.text
        assert admin.post(f"{url}/reject", json={}).status_code == 409  # decided already
        assert box.head(url).status_code == 200  # a HEAD never takes the token away
        got = box.get(url)
        assert got.headers["cache-control"] == "no-store"
        poll = got.json()
        assert poll["status"] == "approved" and poll["probe_id"] == "cb-once"
        assert poll["uplinks"] == [
            {"name": "viettel-4g", "operator": "viettel", "interface": "wwan0"}
        ]
        again = box.get(url)
        assert again.status_code == 410, again.text
    content, headers = body(batch("cb-once", [1]))
    headers["Authorization"] = f"Bearer {poll['token']}"
    r = httpx.post(f"{c.url}/api/v1/reports", content=content, headers=headers, timeout=10)
    assert r.status_code == 200, r.text


def test_a_rejected_box_is_told_why(collector: RunningCollector) -> None:
    c = collector
    answer = ask(c, create_key(c.engine, "04").key).json()
    with c.client(ADMIN_SECRET) as admin:
        r = admin.post(f"{answer['poll_url']}/reject", json={"reason": "không phải máy của UBND"})
        assert r.status_code == 200 and r.json()["status"] == "rejected"
    with c.client(answer["poll_secret"]) as box:
        poll = box.get(answer["poll_url"]).json()
    assert (poll["status"], poll["reason"], poll["token"]) == (
        "rejected",
        "không phải máy của UBND",
        None,
    )


def test_a_province_admin_decides_only_in_its_provinces(collector: RunningCollector) -> None:
    c = collector
    ours = ask(c, create_key(c.engine, "04").key).json()
    theirs = ask(c, create_key(c.engine, "12").key, commune="03388").json()
    prov = create_token(c.engine, role="province_admin", province_codes=["04"]).token
    with c.client(prov) as http:
        listed = http.get("/api/v1/enrolments").json()["enrolments"]
        assert [e["id"] for e in listed] == [ours["id"]]
        r = http.get(theirs["poll_url"])
        assert r.status_code == 403 and "province '12'" in r.json()["detail"], r.text
        approval = {"probe_id": "cb-prov", "uplinks": ["fibre:fibre"]}
        r = http.post(f"{theirs['poll_url']}/approve", json=approval)
        assert r.status_code == 403, r.text
        r = http.post(f"{ours['poll_url']}/approve", json=approval)
        assert r.status_code == 200 and r.json()["decided_by"].startswith("province_admin"), r.text
        # it reads its provinces as a viewer does, and nothing else
        c.ctx.live.reload(c.engine)
        assert http.get("/api/v1/probes/cb-prov").status_code == 200
        assert http.get("/api/v1/outages", params={"province": "12"}).status_code == 403
        assert http.get("/api/v1/notifications").status_code == 403
    with c.client(c.viewer("04")) as viewer:
        assert viewer.get("/api/v1/enrolments").status_code == 403


def test_uplinks_are_proposed_from_modems_and_wired_interfaces() -> None:
    desc = ProbeDescription(
        machine_id="0123456789abcdef",
        hostname="cb-box",
        agent_version="0.1.0",
        interfaces=[
            Interface(name="lo", kind="loopback", up=True, addresses=["127.0.0.1/8"]),
            Interface(name="eth0", kind="ether", up=True, addresses=["192.168.1.10/24"]),
            Interface(name="eth1", kind="ether", up=False, addresses=["fe80::1/64"]),
            Interface(name="wwan0", kind="none", up=True, addresses=["10.64.3.2/30"]),
            Interface(name="wwan1", kind="none", up=True, addresses=["10.70.1.2/30"]),
        ],
        modems=[
            Modem(index="0", interface="wwan0", operator_code="45204", access_technologies=["lte"]),
            Modem(index="1", interface="wwan1", imsi_prefix="45202", access_technologies=["umts"]),
            Modem(index="2", interface="wwan2", operator_code="99999"),  # unknown: not proposed
        ],
    )
    proposed = [(u.name, u.operator, u.interface) for u in propose_uplinks(desc)]
    assert proposed == [
        ("viettel-4g", "viettel", "wwan0"),
        ("vinaphone-3g", "vinaphone", "wwan1"),
        ("fibre", "fibre", "eth0"),
    ]


class Stop(Exception):
    """Raised by the test's sleep: the box is switched off while it waits."""


def test_a_box_restarted_while_waiting_goes_on_with_the_same_enrolment(
    collector: RunningCollector, tmp_path: Path
) -> None:
    c = collector
    key = create_key(c.engine, "04")
    desc = ProbeDescription.model_validate({**BOX, "agent_version": "0.1.0"})
    opts = EnrolOptions(
        collector_url=c.url, key=key.key, commune="01273", out_dir=tmp_path / "etc",
        spool_path=tmp_path / "spool.db", poll_initial_seconds=0.01,
    )  # fmt: skip
    said: list[str] = []

    def switched_off(_seconds: float) -> None:
        raise Stop

    with pytest.raises(Stop):
        enrol(opts, desc, sleep=switched_off, say=said.append)
    assert said == [
        f"enrolment 1 is pending at {c.url}; approve it there: lomsong probe approve 1 "
        "--id PROBE_ID"
    ]
    with c.client(ADMIN_SECRET) as admin:
        r = admin.post("/api/v1/enrolments/1/approve", json={"probe_id": "cb-restarted",
                       "uplinks": ["fibre:fibre@eth0", "viettel-4g:viettel@wwan0"]})  # fmt: skip
        assert r.status_code == 200, r.text
        bad = admin.post("/api/v1/enrolments/1/approve", json={"probe_id": "x"})
        assert bad.status_code == 409 and "approved, not pending" in bad.json()["detail"]
    config = enrol(opts, desc, sleep=switched_off, say=said.append)
    assert said[1] == f"enrolment 1: waiting for its approval at {c.url} again"
    with c.engine.connect() as conn:
        uses = conn.execute(
            enrolment_keys.select().with_only_columns(enrolment_keys.c.uses)
        ).scalar_one()
    assert uses == 1  # asked once, not twice
    settings = load_probe_settings(config)
    assert [u.interface for u in settings.uplinks] == ["eth0", "wwan0"]
    # the example checks, and no modem check: this description has no modem on wwan0
    assert [(ch.kind, getattr(ch, "target", "")) for ch in settings.checks] == [
        ("icmp", "dichvucong.gov.vn"),
        ("tcp", "dichvucong.gov.vn:443"),
        ("http", "https://dichvucong.gov.vn/"),
        ("dns", "dichvucong.gov.vn"),
        ("heartbeat", "self"),
    ]
    with pytest.raises(EnrolmentError, match=r"probe.toml exists: this box is set up already"):
        enrol(opts, desc, sleep=switched_off, say=said.append)


def test_an_uplink_that_is_not_name_and_operator_is_refused_by_name(
    collector: RunningCollector,
) -> None:
    c = collector
    ask(c, create_key(c.engine, "04").key)
    with c.client(ADMIN_SECRET) as admin:
        r = admin.post(
            "/api/v1/enrolments/1/approve",
            json={"probe_id": "cb-x", "uplinks": ["viettel-4g:telstra"]},
        )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("uplinks[0]: operator 'telstra' is not one of")


def test_polls_at_once_get_the_token_once(any_collector: RunningCollector) -> None:
    """The same box polling from two processes (a unit restarted mid-poll) gets one token."""
    from concurrent.futures import ThreadPoolExecutor

    c = any_collector
    answer = ask(c, create_key(c.engine, "04").key).json()
    with c.client(ADMIN_SECRET) as admin:
        r = admin.post(
            f"{answer['poll_url']}/approve",
            json={"probe_id": "cb-race", "uplinks": ["fibre:fibre"]},
        )
        assert r.status_code == 200, r.text

    def poll(_: int) -> tuple[int, str | None]:
        with c.client(answer["poll_secret"]) as box:
            got = box.get(answer["poll_url"])
        return got.status_code, got.json().get("token")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(poll, range(6)))
    assert sorted(status for status, _ in answers) == [200, 410, 410, 410, 410, 410], answers
    with c.engine.connect() as conn:
        made = conn.execute(
            select(func.count()).select_from(tokens).where(tokens.c.probe_id == "cb-race")
        ).scalar_one()
    assert made == 1
