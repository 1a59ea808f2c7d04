"""Shared fixtures: real SQLite files, a real PostgreSQL database, a real collector on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.deps import Context
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.collector import CollectorSettings
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from tests.waiting import wait_until

#: The PostgreSQL server the tests use (``make test`` starts one where none runs).
PG_ADMIN_URL = os.environ.get(
    "LOMSONG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_SECRET = "test-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lomsong.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"lomsong_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is part of the test set-up: fail, never skip
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); run `make system-deps`")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on a SQLite file and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


def ready_engine(url: str) -> Engine:
    engine = open_engine(url)
    migrate(engine)
    load_places(engine)
    return engine


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = ready_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    eng = ready_engine(sqlite_url)
    yield eng
    eng.dispose()


def make_settings(url: str, **overrides: object) -> CollectorSettings:
    values: dict[str, object] = {
        "database_url": url,
        "admin_token": ADMIN_SECRET,
        "token_cache_seconds": 0.0,
    }
    values.update(overrides)
    return CollectorSettings(**values)  # type: ignore[arg-type]


@dataclass
class RunningCollector:
    """A collector served by uvicorn on a loopback port, in a thread of the test process."""

    url: str
    ctx: Context
    engine: Engine

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def register(
        self,
        probe_id: str,
        commune: str = "01273",
        uplinks: tuple[str, ...] = ("viettel-4g:viettel",),
    ) -> str:
        """Register a probe and return a new token for it."""
        links = [Uplink(*u.split(":")) for u in uplinks]
        register_probe(self.engine, probe_id, commune, links)
        return create_token(self.engine, role="probe", probe_id=probe_id).token

    def viewer(self, *provinces: str) -> str:
        return create_token(self.engine, role="viewer", province_codes=provinces).token


def serve_in_thread(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(
        lambda: server.started or not thread.is_alive(), timeout=15, what="collector started"
    )
    if not server.started:
        raise RuntimeError("collector did not start")
    return server, thread


CollectorFactory = Callable[..., "RunningCollector"]


@pytest.fixture
def collector_factory() -> Iterator[CollectorFactory]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    engines: list[Engine] = []

    def start(
        url: str,
        *,
        alerts: object = None,
        coverage: object = None,
        clock: Callable[[], float] = time.time,
        **overrides: object,
    ) -> RunningCollector:
        """A collector on ``url``; ``clock`` is its wall clock (a test may pass a fake one)."""
        engine = ready_engine(url)
        engines.append(engine)
        settings = make_settings(url, **overrides)
        app = create_app(settings, engine=engine, alerts=alerts, coverage=coverage, clock=clock)  # type: ignore[arg-type]
        port = free_port()
        servers.append(serve_in_thread(app, port))
        return RunningCollector(url=f"http://127.0.0.1:{port}", ctx=app.state.ctx, engine=engine)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
    for engine in engines:
        engine.dispose()


@pytest.fixture
def collector(collector_factory: CollectorFactory, sqlite_url: str) -> RunningCollector:
    """A running collector on a fresh SQLite file."""
    return collector_factory(sqlite_url)


@pytest.fixture
def any_collector(collector_factory: CollectorFactory, db_url: str) -> RunningCollector:
    """A running collector, once on SQLite and once on PostgreSQL."""
    return collector_factory(db_url)


class WebhookSink:
    """A real HTTP server on loopback that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.bodies: list[dict[str, object]] = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with sink.lock:
                    sink.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(
        self, predicate: Callable[[list[dict[str, object]]], bool], timeout: float = 20
    ) -> list[dict[str, object]]:
        def met() -> tuple[list[dict[str, object]]] | None:
            with self.lock:
                bodies = list(self.bodies)
            return (bodies,) if predicate(bodies) else None  # a tuple: true even when empty

        (bodies,) = wait_until(
            met, timeout=timeout, what=lambda: f"webhook sink: condition (got {self.bodies})"
        )
        return bodies

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


class FakeClock:
    """The collector's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@dataclass
class Clocked:
    collector: RunningCollector
    clock: FakeClock
    app: FastAPI


ClockedFactory = Callable[..., Clocked]


@pytest.fixture
def clocked_factory(sqlite_url: str) -> Iterator[ClockedFactory]:
    """Collectors on one SQLite file whose clock the test moves (``create_app(clock=...)``)."""
    stops: list[Callable[[], None]] = []

    def start(**overrides: object) -> Clocked:
        engine = ready_engine(sqlite_url)
        clock = FakeClock()
        app = create_app(make_settings(sqlite_url, **overrides), engine=engine, clock=clock)
        port = free_port()
        server, thread = serve_in_thread(app, port)

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=10)
            engine.dispose()

        stops.append(stop)
        running = RunningCollector(f"http://127.0.0.1:{port}", app.state.ctx, engine)
        return Clocked(running, clock, app)

    yield start
    for stop in stops:
        stop()
