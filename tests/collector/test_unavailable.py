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
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from starlette.routing import Route

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.storage.schema import results
from tests.conftest import (
    ADMIN_SECRET,
    PG_ADMIN_URL,
    CollectorFactory,
    RunningCollector,
    free_port,
    make_settings,
)
from tests.factories import batch
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
    "/logout": 303,
    "/openapi.json": 200,
    "/docs": 200,
    "/docs/oauth2-redirect": 200,
    "/redoc": 200,
}
#: Routes whose answers are pages: 503 is a short HTML page there.
PAGES = {"/", "/maps/", "/maps/province/{code}", "/maps/national", "/login"}
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
    url = path.format(probe_id=PROBE, code="04")
    params = QUERIES.get(path, {})
    headers = {"Authorization": f"Bearer {token}"}
    if (method, path) == ("POST", "/api/v1/reports"):
        headers["Authorization"] = f"Bearer {probe_token}"
        return client.post(url, json=batch(PROBE, seqs), headers=headers)
    if (method, path) == ("POST", "/login"):
        return client.post(url, data={"token": token, "next": "/"})
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
    assert method == "GET", (method, path)
    return client.get(url, params=params, headers=headers)


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
    collector_factory: CollectorFactory, pg_url: str, gate: Gate, how: str
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
            if path in NO_DATABASE:
                assert r.status_code == NO_DATABASE[path], (method, path, r.status_code)
            else:
                assert_unavailable(r, path, "unreachable")
        assert 500 not in seen
        assert rejected(c, "unavailable") == 1.0

        # With the admin secret no token is looked up: what a route serves from memory still
        # answers; whatever reads or writes the database answers 503.
        from_memory = set()
        for method, path in routes:
            if path in NO_DATABASE or path in ("/api/v1/reports", "/login"):
                continue
            r = call(client, method, path, ADMIN_SECRET, probe_token, range(11, 21))
            if r.status_code == 200:
                from_memory.add(path)
            else:
                assert_unavailable(r, path, "unreachable")
        assert from_memory == {"/api/v1/probes"}

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
