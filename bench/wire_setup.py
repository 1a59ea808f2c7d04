"""The wire benchmark's stage: a collector on HTTPS, the portal page, real result bodies.

The centre is the README's example: 4 uplinks, icmp, tcp, http, dns and modem checks on each
and a heartbeat, pointed at loopback targets (``mmcli`` replayed from the tests' recordings).
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from bench.ingest_sqlite import commune_codes, migrated
from bench.probe_targets import Targets
from bench.report import line
from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.cli import KEEP_ALIVE_SECONDS
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.collector import CollectorSettings
from lomsong.config.probe import (
    CheckSettings,
    DnsCheck,
    HttpCheck,
    IcmpCheck,
    ModemCheck,
    ProbeSettings,
    TcpCheck,
    UplinkSettings,
)
from lomsong.probes.agent import Runner, encode_result, plan_jobs, preload
from lomsong.probes.spool import AsyncSpool, Spool

UPLINKS = (
    ("fibre", "vnpt"),
    ("viettel-4g", "viettel"),
    ("vinaphone-4g", "vinaphone"),
    ("mobifone-4g", "mobifone"),
)
#: Real rounds of checks whose bodies the simulation cycles through.
REAL_ROUNDS = 3
#: The stand-in for the portal's home page (assumed size).
PAGE_BYTES = 100_000
REPLAY = Path(__file__).resolve().parents[1] / "tests" / "probes" / "data"


@contextmanager
def tls_collector(
    tmp: Path, cert: Path, key: Path, n_probes: int
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A collector on HTTPS, as ``lomsong serve`` keeps connections, and ``n_probes`` probes
    (id and token): one for each variant, so that no variant's seqs meet another's."""
    db = tmp / "collector.db"
    engine = migrated(db)
    probes = []
    for code in commune_codes(engine)[:n_probes]:
        probe = f"p-{code}"
        register_probe(engine, probe, code, [Uplink(n, op) for n, op in UPLINKS])
        probes.append((probe, create_token(engine, role="probe", probe_id=probe).token))
    settings = CollectorSettings(
        database_url=f"sqlite:///{db}",
        dev=True,
        ingest={"rate_per_probe": 10_000, "rate_burst": 100_000},
    )
    app = create_app(settings, engine=engine)
    sock = _bound_socket()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}", probes
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass(frozen=True)
class Page:
    url: str  # https://127.0.0.1:port/ (the server itself, not a relay)
    port: int


class _PageHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = (b"<!doctype html><title>Cong dich vu cong quoc gia</title>" + b"x" * PAGE_BYTES)[
        :PAGE_BYTES
    ]

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        self._head()
        try:
            self.wfile.write(self.body)
        except OSError:
            pass  # the check stopped reading

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_page(cert: Path, key: Path) -> Iterator[Page]:
    """An HTTPS server of a ``PAGE_BYTES`` page, on GET and HEAD."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    httpd.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    port = httpd.server_address[1]
    try:
        yield Page(f"https://127.0.0.1:{port}/", int(port))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def example_checks(tmp: Path, targets: Targets, http_target: str) -> list[CheckSettings]:
    """The README's example centre, pointed at loopback targets (``mmcli`` replayed)."""
    replay = [
        sys.executable,
        str(REPLAY / "mmcli_replay.py"),
        str(REPLAY / "mmcli" / "lte"),
        str(tmp / "mmcli.log"),
    ]
    checks: list[CheckSettings] = [
        IcmpCheck(kind="icmp", target="127.0.0.1"),
        TcpCheck(kind="tcp", target=targets.tcp),
        HttpCheck(kind="http", target=http_target, method="HEAD", ca_file=tmp / "cert.pem"),
        DnsCheck(kind="dns", target="dichvucong.gov.vn", server=targets.dns),
    ]
    checks += [
        ModemCheck(kind="modem", uplink=name, modem=str(i), mmcli_command=replay)
        for i, (name, _) in enumerate(UPLINKS)
    ]
    return checks


def example_settings(tmp: Path, checks: list[CheckSettings]) -> ProbeSettings:
    return ProbeSettings(
        probe_id="p-bench",
        collector_url="https://127.0.0.1",
        spool_path=tmp / "rounds.db",
        uplinks=[
            UplinkSettings(name=n, source_address=f"127.0.0.{i + 1}", operator=op)
            for i, (n, op) in enumerate(UPLINKS)
        ],
        checks=checks,
    )


async def real_rounds(tmp: Path, targets: Targets, page: Page) -> list[list[tuple[str, bytes]]]:
    """Result bodies of ``REAL_ROUNDS`` real runs of every job (heartbeat included)."""
    settings = example_settings(tmp, example_checks(tmp, targets, page.url))
    spool = AsyncSpool(Spool(settings.spool_path))
    runner = Runner(settings, spool)
    jobs = plan_jobs(settings)
    preload(jobs)
    rounds = []
    for _ in range(REAL_ROUNDS):
        measured = await asyncio.gather(*(runner.measure(job) for job in jobs))
        rounds.append([(m.job.kind, encode_result(m)) for m in measured])
    await spool.close()
    failed = sorted({kind for kind, body in rounds[0] if b'"ok":false' in body})
    line(
        f"result bodies: {len(jobs)} a round from {REAL_ROUNDS} real rounds on loopback; "
        f"mean {sum(len(b) for _, b in rounds[0]) / len(jobs):.0f} bytes of JSON"
        + (f"; failing here: {', '.join(failed)}" if failed else "")
    )
    return rounds
