"""The database away, locked or full: 503 with Retry-After on every route, never a 500.

PostgreSQL behind a port that is shut (connections refused) or a database refusing connections:
every route of the app, listed from ``app.routes``, answers 503 with Retry-After, then works
again. SQLite on a small tmpfs filled up: ingest answers 503, ``/readyz`` fails while writes
fail, and once space is freed the refused batch is stored and nothing acknowledged is lost.
SQLite locked by another connection beyond the busy timeout: 503, then stored. A real agent
against a collector whose database is away waits Retry-After between attempts and loses
nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from starlette.routing import Route

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from lomsong.storage.schema import results
from tests.collector.test_outages_agents import Agent
from tests.conftest import (
    ADMIN_SECRET,
    PG_ADMIN_URL,
    CollectorFactory,
    RunningCollector,
    free_port,
    make_settings,
    serve_in_thread,
)
from tests.factories import batch
from tests.servers import TcpTarget
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
PROBE = "cb-thuc-phan"
COMMUNE = "01273"  # Phường Thục Phán, province 04 (Cao Bằng)

# -- a port in front of PostgreSQL that can be shut ---------------------------------------------


class Gate:
    """A TCP relay on loopback to PostgreSQL. Shut, nothing listens on its port: a connect is
    refused, as when the server is down; every relayed connection is cut."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def shut(self) -> None:
        if self.listener is not None:
            # shutdown first: a plain close leaves the thread blocked in accept() holding the
            # socket, which then goes on listening
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate(make_url(PG_ADMIN_URL).port or 5432)
    yield g
    g.shut()


def through(url: str, g: Gate) -> str:
    return make_url(url).set(port=g.port).render_as_string(hide_password=False)


# -- every route of the app, with a sample request ----------------------------------------------

#: Routes that never touch the database: they answer as usual while it is away. Liveness must
#: not fail with the database (restarting the collector would not bring it back), and /metrics
#: is computed from the live state so that Prometheus still sees the probes and the refusals.
NO_DATABASE = {
    "/healthz": 200,
    "/metrics": 200,
    "/openapi.json": 200,
    "/docs": 200,
    "/docs/oauth2-redirect": 200,
    "/redoc": 200,
    "/static/docs/{asset}": 200,
}
#: Calls of pages that need no database either: the sign-in form and signing out (the sign-out
#: page itself says who is signed in, which needs the token looked up).
NO_DATABASE_CALLS = {("GET", "/login"): 200, ("POST", "/logout"): 303}
#: Routes whose answers are pages: 503 is a short HTML page there.
PAGES = {
    "/",
    "/maps/",
    "/maps/province/{code}",
    "/maps/national",
    "/login",
    "/logout",
    "/outages/{outage_id}",
    "/probes/{probe_id}",
    "/fleet",
}
QUERIES = {
    "/api/v1/hamlets": {"province": "04"},
    "/api/v1/coverage/summary": {"province": "04"},
    "/api/v1/coverage/deadzones": {"province": "04"},
}


def app_routes(c: RunningCollector) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, HEAD aside (it is GET's)."""
    app = create_app(make_settings("sqlite:///unused.db"), engine=c.engine)  # same routes
    try:  # FastAPI ≥ 0.120 keeps included routers whole in app.routes
        from fastapi.routing import iter_route_contexts
    except ImportError:
        flat = [(r, getattr(r, "path", None)) for r in app.routes]
    else:
        flat = [(rc.original_route, rc.path) for rc in iter_route_contexts(app.routes)]
    out: list[tuple[str, str]] = []
    for route, path in flat:
        assert isinstance(route, Route) and path, route
        out.extend((m, path) for m in sorted(route.methods or ()) if m != "HEAD")
    assert len(out) > 20, out
    return out


def call(
    client: httpx.Client, method: str, path: str, token: str, probe_token: str, seqs: range
) -> httpx.Response:
    url = path.format(
        probe_id=PROBE,
        code="04",
        outage_id="any-outage",
        asset="swagger-ui.css",
        enrolment_id=1,
        scope="province",
        key="04",
    )
    params = QUERIES.get(path, {})
    headers = {"Authorization": f"Bearer {token}"}
    if (method, path) == ("POST", "/api/v1/reports"):
        headers["Authorization"] = f"Bearer {probe_token}"
        return client.post(url, json=batch(PROBE, seqs), headers=headers)
    origin = {"Origin": str(client.base_url).rstrip("/")}  # as the collector's own form sends
    if (method, path) == ("POST", "/login"):
        return client.post(url, data={"token": token, "next": "/"}, headers=origin)
    if (method, path) == ("POST", "/logout"):
        return client.post(url, headers=origin)
    if (method, path) == ("POST", "/api/v1/field-measurements"):
        reading = {
            "lat": 22.68,
            "lon": 106.19,
            "operator": "viettel",
            "rsrp_dbm": -95.0,
            "measured_at": time.time() - 60,
        }
        return client.post(url, json={"readings": [reading]}, headers=headers)
    if (method, path) == ("POST", "/api/v1/coverage/whatif"):
        site = {"lat": 22.68, "lon": 106.19, "operator": "viettel"}
        return client.post(url, json={"province": "04", "sites": [site]}, headers=headers)
    if (method, path) == ("POST", "/api/v1/probes/{probe_id}/token-rotation"):
        return client.post(url, headers=headers)
    if method == "POST" and path.startswith("/api/v1/enrolments"):
        return client.post(url, json=ENROLMENT_BODIES[path], headers=headers)
    if method in ("PUT", "DELETE") and path.startswith("/api/v1/profiles"):
        layer = {"checks": [{"kind": "tcp", "target": "dichvucong.gov.vn:443"}]}
        return client.request(method, url, json=layer if method == "PUT" else None, headers=headers)
    assert method == "GET", (method, path)
    return client.get(url, params=params, headers=headers)


#: valid bodies of the enrolment routes: whatever they need is in the database
ENROLMENT_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/enrolments": {
        "commune": COMMUNE,
        "description": {"machine_id": "0123456789abcdef", "hostname": "box", "agent_version": "1"},
    },
    "/api/v1/enrolments/{enrolment_id}/approve": {"probe_id": "enrolled", "uplinks": []},
    "/api/v1/enrolments/{enrolment_id}/reject": {},
}


def assert_unavailable(r: httpx.Response, route: str, cause: str) -> None:
    assert r.status_code == 503, (route, r.status_code, r.text[:300])
    wait = r.headers.get("retry-after", "")
    assert wait.isdigit() and 5 <= int(wait) <= 30, (route, wait)
    if route in PAGES:
        assert r.headers["content-type"].startswith("text/html"), route
        assert "Database unavailable" in r.text, route
    elif route != "/readyz":
        assert r.json()["cause"] == cause, (route, r.text)
        assert "\n" not in r.json()["detail"]
    # no stack trace, no connection string
    assert "Traceback" not in r.text and "postgres" not in r.text, (route, r.text[:300])


def rejected(c: RunningCollector, reason: str) -> float:
    text_ = httpx.get(f"{c.url}/metrics", timeout=10).text
    m = re.search(rf'^lomsong_ingest_rejected_total\{{reason="{reason}"\}} (\S+)$', text_, re.M)
    assert m, text_[-2000:]
    return float(m.group(1))


# -- PostgreSQL away ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("how", ["refused", "not_accepting"])
def test_postgres_away_every_route_answers_503_then_recovers(
    pg_url: str, gate: Gate, collector_factory: CollectorFactory, how: str
) -> None:
    name = make_url(pg_url).database
    url = through(pg_url, gate) if how == "refused" else pg_url
    c = collector_factory(url)
    routes = app_routes(c)
    probe_token = c.register(PROBE, COMMUNE)
    admin_token = create_token(c.engine, role="admin").token
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    client = httpx.Client(base_url=c.url, timeout=60)
    try:
        assert (
            client.post(
                "/api/v1/reports", json=batch(PROBE, range(1, 11)), headers=bearer(probe_token)
            ).json()["accepted"]
            == 10
        )
        assert client.get("/readyz").status_code == 200

        if how == "refused":
            gate.shut()
        else:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

        # Every route, with a token the database knows: the database is needed to answer.
        seen: dict[int, int] = {}
        for method, path in routes:
            r = call(client, method, path, admin_token, probe_token, range(11, 21))
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            expected = NO_DATABASE.get(path, NO_DATABASE_CALLS.get((method, path)))
            if expected is not None:
                assert r.status_code == expected, (method, path, r.status_code)
            else:
                assert_unavailable(r, path, "unreachable")
        assert 500 not in seen
        assert rejected(c, "unavailable") == 1.0

        # With the admin secret no token is looked up: what a route serves from memory still
        # answers; whatever reads or writes the database answers 503.
        from_memory = set()
        for method, path in routes:
            if path in NO_DATABASE or (method, path) in NO_DATABASE_CALLS:
                continue
            if path in ("/api/v1/reports", "/login"):
                continue
            r = call(client, method, path, ADMIN_SECRET, probe_token, range(11, 21))
            if r.status_code == 200:
                from_memory.add(path)
            else:
                assert_unavailable(r, path, "unreachable")
        assert from_memory == {"/api/v1/probes", "/logout"}  # the sign-out page: who, no query

        if how == "refused":
            gate.open()
        else:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=20, what="ready again")
        for method, path in routes:
            r = call(client, method, path, admin_token, probe_token, range(11, 21))
            assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
        with c.engine.connect() as conn:
            stored = conn.execute(
                select(func.count()).select_from(results).where(results.c.probe_id == PROBE)
            ).scalar_one()
        assert stored == 20  # the batch refused while away, stored once back
    finally:
        client.close()
        if how == "not_accepting":
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_database_error_that_is_a_bug_stays_a_500(collector: RunningCollector) -> None:
    with collector.engine.begin() as conn:
        conn.execute(text("DROP TABLE notification_attempts"))
    with collector.client(ADMIN_SECRET) as admin:
        r = admin.get("/api/v1/notifications")
        assert r.status_code == 500 and "retry-after" not in r.headers
        assert admin.get("/readyz").status_code == 200


# -- SQLite out of space ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs of the test's own; unmounted afterwards. Mounting needs root: without it
    the test is skipped, except in CI (``CI=true``), which runs as root and must run it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            check=False,
        )
        why = done.stderr.strip() if done.returncode else ""
    except OSError as exc:
        why = str(exc)
    if why:
        message = f"cannot mount a tmpfs at {mnt}: {why}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI runs as root: the disk-full test must run there)")
        pytest.skip(message)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_disk(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem has no byte left; return how many."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            while True:
                try:
                    written += f.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def stored_rows(c: RunningCollector) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(results).where(results.c.probe_id == PROBE)
            ).scalar_one()
        )


@pytest.mark.slow
@pytest.mark.parametrize("wal", ["growing", "checkpointed"])
def test_sqlite_disk_full_answers_503_readyz_fails_then_nothing_is_lost(
    small_disk: Path, collector_factory: CollectorFactory, wal: str
) -> None:
    """``growing``: every write must grow the WAL, so the first one after the disk is full
    fails. ``checkpointed``: the WAL was checkpointed and its file is reused from the start,
    so small writes still fit after the disk is full and a few batches may be stored; /readyz
    fails from the moment the disk is full, on the room it asks for."""
    c = collector_factory(f"sqlite:///{small_disk / 'lomsong.db'}")
    with c.client(c.register(PROBE, COMMUNE)) as probe, c.client(ADMIN_SECRET) as admin:
        run_disk_full(c, small_disk, probe, admin, checkpoint=wal == "checkpointed")


def run_disk_full(
    c: RunningCollector,
    small_disk: Path,
    probe: httpx.Client,
    admin: httpx.Client,
    *,
    checkpoint: bool,
) -> None:
    acked = 0
    seq = 1
    r = probe.post("/api/v1/reports", json=batch(PROBE, range(seq, seq + 100)))
    assert r.status_code == 200
    acked, seq = acked + r.json()["accepted"], seq + 100
    assert admin.get("/readyz").status_code == 200
    if checkpoint:
        with c.engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            assert busy == 0

    fill = small_disk / "fill"
    assert fill_disk(fill) > 16 * 2**20
    # not ready from the moment the disk is full, whether or not a small write still fits
    ready = admin.get("/readyz")
    assert ready.status_code == 503 and ready.headers["retry-after"] == "30", ready.text
    assert "out of disk space" in ready.json()["reason"]

    # Batches go on until one does not fit: the WAL may still hold room for a few.
    statuses: Counter[int] = Counter()
    refused: dict[str, Any] | None = None
    for _ in range(120):
        doc = batch(PROBE, range(seq, seq + 100))
        r = probe.post("/api/v1/reports", json=doc)
        statuses[r.status_code] += 1
        if r.status_code != 200:
            refused = doc
            break
        acked, seq = acked + r.json()["accepted"], seq + 100
    assert refused is not None, statuses
    # measured: growing, the first batch is refused; checkpointed, 7 fit in the WAL first
    assert (statuses[200] > 0) == checkpoint, statuses
    assert_unavailable(r, "/api/v1/reports", "disk_full")
    assert r.headers["retry-after"] == "30"
    assert "out of disk space (SQLITE_FULL)" in r.json()["detail"]
    # while the disk stays full, the same batch is refused the same way, never a 500
    for _ in range(3):
        r = probe.post("/api/v1/reports", json=refused)
        statuses[r.status_code] += 1
        assert_unavailable(r, "/api/v1/reports", "disk_full")
    assert rejected(c, "unavailable") == statuses[503] == 4
    assert 500 not in statuses

    ready = admin.get("/readyz")
    assert ready.status_code == 503 and ready.headers["retry-after"] == "30", ready.text
    assert "disk space" in ready.json()["reason"]
    # Reads need no room: what was acknowledged can still be read.
    r = admin.get(f"/api/v1/probes/{PROBE}/results", params={"limit": 5000})
    assert r.status_code == 200 and len(r.json()["results"]) == acked
    assert admin.get("/api/v1/outages").status_code == 200

    fill.unlink()
    wait_until(lambda: admin.get("/readyz").status_code == 200, timeout=10, what="ready")
    r = probe.post("/api/v1/reports", json=refused)
    assert r.status_code == 200 and r.json()["accepted"] == 100, r.text
    assert r.json()["stored_through_seq"] == seq + 99
    assert stored_rows(c) == acked + 100


# -- SQLite locked ------------------------------------------------------------------------------


def test_sqlite_locked_beyond_the_busy_timeout_answers_503_then_stores(tmp_path: Path) -> None:
    path = tmp_path / "lomsong.db"
    url = f"sqlite:///{path}"
    engine = open_engine(url, busy_timeout_seconds=0.5)
    migrate(engine)
    load_places(engine)
    register_probe(engine, PROBE, COMMUNE, [Uplink("viettel-4g", "viettel")])
    token = create_token(engine, role="probe", probe_id=PROBE).token
    app = create_app(make_settings(url, sqlite_busy_timeout_seconds=0.5), engine=engine)
    port = free_port()
    server, thread = serve_in_thread(app, port)
    probe = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(token), timeout=30)
    admin = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(ADMIN_SECRET))
    locker = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        assert probe.post("/api/v1/reports", json=batch(PROBE, range(1, 11))).status_code == 200

        locker.execute("BEGIN EXCLUSIVE")
        doc = batch(PROBE, range(11, 21))
        started = time.monotonic()
        r = probe.post("/api/v1/reports", json=doc)
        assert time.monotonic() - started >= 0.5  # it waited the busy timeout first
        assert_unavailable(r, "/api/v1/reports", "locked")
        assert r.headers["retry-after"] == "5"
        assert "SQLITE_BUSY" in r.json()["detail"]
        ready = admin.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "5", ready.text
        # WAL readers do not wait for the writer's lock
        assert admin.get(f"/api/v1/probes/{PROBE}/results").status_code == 200

        locker.execute("ROLLBACK")
        r = probe.post("/api/v1/reports", json=doc)
        assert r.status_code == 200 and r.json()["stored_through_seq"] == 20, r.text
        assert admin.get("/readyz").status_code == 200
        metrics = admin.get("/metrics").text
        assert 'lomsong_ingest_rejected_total{reason="unavailable"} 1.0' in metrics
    finally:
        locker.close()
        probe.close()
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


# -- a real agent while PostgreSQL is away ------------------------------------------------------


def report_posts(c: RunningCollector) -> float:
    text_ = httpx.get(f"{c.url}/metrics", timeout=10).text
    m = re.search(
        r'^lomsong_http_request_duration_seconds_count\{method="POST",route="/api/v1/reports"\}'
        r" (\S+)$|^lomsong_http_request_duration_seconds_count"
        r'\{route="/api/v1/reports",method="POST"\} (\S+)$',
        text_,
        re.M,
    )
    assert m, text_[-3000:]
    return float(m.group(1) or m.group(2))


@pytest.mark.postgres
@pytest.mark.slow
def test_a_real_agent_waits_retry_after_while_postgres_is_away_and_loses_nothing(
    pg_url: str, gate: Gate, collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    c = collector_factory(through(pg_url, gate))
    target = TcpTarget()
    # backoff_max_seconds well above the collector's Retry-After, so the wait seen is its
    agent = Agent(
        tmp_path, c, PROBE, COMMUNE, target, c.url, timeout_seconds=5.0, backoff_max_seconds=60.0
    )
    agent.start()
    log = agent.log

    def through_seq() -> int:
        live = c.ctx.live.live.get(PROBE)
        return live.stored_through_seq if live is not None else 0

    try:
        wait_until(lambda: through_seq() >= 4, timeout=30, what="the agent reporting")
        gate.shut()
        cut_at = through_seq()
        wait_until(
            lambda: rejected(c, "unavailable") >= 1, timeout=30, what="a batch refused with 503"
        )
        first, refused = report_posts(c), rejected(c, "unavailable")
        time.sleep(15)
        # Retry-After 10 s: one more attempt in 15 s, two at most. Without it the agent's
        # backoff (0.2 s doubling) would have come back about six times.
        again = report_posts(c) - first
        assert 1 <= again <= 2, again
        # and each was refused as unavailable: none was a 500
        assert rejected(c, "unavailable") - refused == again
        text_ = log.read_text()
        assert "HTTP 503" in text_ and "HTTP 500" not in text_, text_[-3000:]

        gate.open()
        # what was measured while the database was away arrives, with no gap
        wait_until(lambda: through_seq() >= cut_at + 20, timeout=40, what="the backlog stored")
        mark = through_seq()
        with c.engine.connect() as conn:
            seqs = (
                conn.execute(
                    select(results.c.seq).where(results.c.probe_id == PROBE).order_by(results.c.seq)
                )
                .scalars()
                .all()
            )
        # the spool numbers from the clock: contiguous from the first seq up to the mark
        assert [s for s in seqs if s <= mark] == list(range(seqs[0], mark + 1))
    finally:
        agent.stop(signal.SIGKILL)
        target.close()
