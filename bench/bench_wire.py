"""Bytes on the wire per commune centre per day: the agent's uploads and its checks' own traffic.

The README's example centre: 4 uplinks (fibre and three 4G SIMs), icmp, tcp, http, dns and
modem checks on each every 30 s, and a heartbeat: 21 results a round.

1. Uploads, over TLS. A real collector (uvicorn with a self-signed certificate, SQLite) behind
   a counting TCP relay; the real uploader and spool, fed with result bodies from real runs of
   the checks against loopback targets. An hour of rounds is played on a simulated clock (each
   check starts up to its 2-s jitter late and takes about as long as on 4G), the uploader is
   asked to send whenever the runner would wake it or its deadline comes, and the relay counts
   every byte, TLS handshakes included. When the simulated pause between two requests is longer
   than the keep-alive, the relay closes the connection first, as the server would: the next
   request pays a new handshake. Scaled from the hour to a day. Run in turn, the same results:
   - before: each result sent as it is spooled (``batch_deadline_seconds = 0``), connections
     kept 5 s (httpx's and uvicorn's defaults: the code before batching);
   - batched but 5-s keep-alive: what batching alone gives;
   - after: the defaults now (10-s deadline, connection kept 70 s by the agent, 75 s by
     ``lomsong serve``);
   - after without gzip: what compression saves.
2. Checks: bytes of one run of each check over one uplink, measured through relays against
   loopback servers (TCP payload, UDP payload), ICMP computed from its packets, and a day of
   them. The http check is measured against an HTTPS page of ``PAGE_BYTES`` (a stand-in for the
   portal's home page, whose size is assumed here, not measured): GET of the whole page, GET
   capped by ``max_body_bytes``, and HEAD.

TCP/IP headers are below the relays' sight: they are estimated (52 bytes a packet; see
``wire_relay.header_bytes``) and shown apart.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from bench.ingest_sqlite import commune_codes, migrated
from bench.probe_targets import Targets, serve_targets
from bench.report import Outcome, check, heading, line
from bench.wire_relay import UDP_HEADER, Tally, TcpRelay, UdpRelay, header_bytes
from lomsong import __version__
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
    UploadSettings,
)
from lomsong.probes.agent import Job, Runner, encode_result, plan_jobs, preload
from lomsong.probes.checks.base import Binding
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import KEEPALIVE_SECONDS, Uploader
from lomsong.timefmt import iso
from tests.tls import write_self_signed

NAME = "wire"
UPLINKS = (
    ("fibre", "vnpt"),
    ("viettel-4g", "viettel"),
    ("vinaphone-4g", "vinaphone"),
    ("mobifone-4g", "mobifone"),
)
INTERVAL = 30.0
DAY = 86_400.0
#: Simulated hours of rounds per variant (scaled to a day).
HOURS = float(os.environ.get("LOMSONG_BENCH_WIRE_HOURS", "1"))
#: Real rounds of checks whose bodies the simulation cycles through.
REAL_ROUNDS = 3
#: The stand-in for the portal's home page (assumed size).
PAGE_BYTES = 100_000
CAPPED_BODY = 16_384
MB = 1_000_000
TARGET_UPLOAD_BYTES = 5 * MB
TARGET_EXTRA_WAIT = 10.0
GRACE = 90.0  # the collector's default silence threshold: 3 report intervals of 30 s
#: About how long each kind takes on 4G (icmp: 5 echoes 0.2 s apart).
DURATION = {"icmp": 1.0, "tcp": 0.1, "http": 0.8, "dns": 0.1, "modem": 0.3, "heartbeat": 0.01}
OLD_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
REPLAY = Path(__file__).resolve().parents[1] / "tests" / "probes" / "data"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    deadline: float
    keepalive: float
    gzip_level: int = 6
    #: httpx's default headers, which the uploader sent before it dropped them
    old_headers: bool = False


VARIANTS = (
    Variant("before", "before: each at once, 5-s keep-alive", 0.0, 5.0, old_headers=True),
    Variant("batched", "10-s deadline, 5-s keep-alive", 10.0, 5.0),
    Variant("after", "after: 10-s deadline, 70-s keep-alive", 10.0, KEEPALIVE_SECONDS),
    Variant("plain", "after, without gzip", 10.0, KEEPALIVE_SECONDS, gzip_level=0),
)


@dataclass
class Played:
    variant: Variant
    seconds: float
    tally: Tally
    requests: int
    results: int
    failures: int
    longest_wait: float
    longest_gap: float

    def per_day(self, n: float) -> float:
        return n * DAY / self.seconds


def main() -> list[Outcome]:
    heading(f"{NAME}: bytes on the wire per centre per day (4 uplinks x 5 checks every 30 s)")
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-wire-") as name:
        tmp = Path(name)
        cert, key, _ = write_self_signed(tmp, days=30)
        with serve_targets() as targets, serve_page(cert, key) as page:
            rounds = asyncio.run(real_rounds(tmp, targets, page))
            with tls_collector(tmp, cert, key) as (url, probes):
                host, port = url.removeprefix("https://").split(":")
                relay = TcpRelay((host, int(port)))
                try:
                    played = [
                        asyncio.run(play(v, rounds, relay, *probe, cert, tmp))
                        for v, probe in zip(VARIANTS, probes, strict=True)
                    ]
                finally:
                    relay.close()
            outcomes = report_uploads(played)
            checks = asyncio.run(measure_checks(tmp, targets, page, cert))
    outcomes += report_checks(checks, played)
    return outcomes


# -- the collector, the page, the bodies ----------------------------------------------------


@contextmanager
def tls_collector(tmp: Path, cert: Path, key: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A collector on HTTPS, as ``lomsong serve`` keeps connections; a probe for each variant
    (id and token), so that no variant's seqs meet another's."""
    db = tmp / "collector.db"
    engine = migrated(db)
    probes = []
    for code in commune_codes(engine)[: len(VARIANTS)]:
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


# -- 1. uploads -----------------------------------------------------------------------------


class SimClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule(
    rounds: list[list[tuple[str, bytes]]], start: float, n_rounds: int
) -> list[tuple[float, str, bytes]]:
    """Every result of ``n_rounds`` rounds: when it is spooled, its kind, its body."""
    rng = random.Random(15)
    events = []
    for r in range(n_rounds):
        for kind, body in rounds[r % len(rounds)]:
            at = start + r * INTERVAL + rng.uniform(0.0, 2.0) + DURATION[kind]
            doc = orjson.loads(body)
            doc["measured_at"] = iso(at - DURATION[kind])
            events.append((at, kind, orjson.dumps(doc)))
    events.sort(key=lambda e: e[0])
    return events


async def play(
    v: Variant,
    rounds: list[list[tuple[str, bytes]]],
    relay: TcpRelay,
    probe: str,
    token: str,
    cert: Path,
    tmp: Path,
) -> Played:
    """An hour of rounds through the real uploader, on a simulated clock; see the docstring."""
    n_rounds = int(HOURS * 3_600 / INTERVAL)
    seconds = n_rounds * INTERVAL
    clock = SimClock(time.time() - seconds - 3_600)
    spool = Spool(tmp / f"{v.key}.db")
    upload = UploadSettings(
        batch_deadline_seconds=v.deadline, gzip_level=v.gzip_level, ca_file=cert
    )
    uploader = Uploader(
        AsyncSpool(spool),
        upload,
        collector_url=f"https://127.0.0.1:{relay.port}",
        token=token,
        probe_id=probe,
        boot_id="bench-boot",
        agent_version=__version__,
        clock=clock,
    )
    waits: list[float] = []
    sends: list[float] = []

    async def seen(request: httpx.Request) -> None:
        raw = request.content
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        results = orjson.loads(raw)["results"]
        waits.extend(
            clock.now - datetime.fromisoformat(r["measured_at"]).timestamp() for r in results
        )

    relay.drop()
    before = relay.tally()
    last: float | None = None

    async def attempt(client: httpx.AsyncClient) -> float | None:
        nonlocal last
        if last is not None and clock.now - last > v.keepalive:
            relay.drop()  # the idle connection expired meanwhile
            last = None
            await asyncio.sleep(0.01)
        wait, idle = await uploader.step(client)
        if not idle:
            last = clock.now
            sends.append(clock.now)
            return clock.now
        return clock.now + wait if spool.floor_seq() is not None else None

    events = schedule(rounds, clock.now, n_rounds)
    async with uploader.client() as client:
        client.event_hooks["request"] = [seen]
        if v.old_headers:
            client.headers.update(OLD_HEADERS)
        due: float | None = None
        for at, kind, body in events:
            while due is not None and due <= at:
                clock.now = max(clock.now, due)
                due = await attempt(client)
            clock.now = at
            spool.append([(at - DURATION[kind], kind, body)])
            due = await attempt(client)  # the runner wakes the uploader
        while due is not None:
            clock.now = max(clock.now, due)
            due = await attempt(client)
        await asyncio.sleep(0.1)  # the relay counts the last answer
        tally = relay.tally() - before
    spool.close()
    c = uploader.counters
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    return Played(
        v, seconds, tally, c.batches, c.results, c.failures, max(waits), max(gaps, default=0.0)
    )


def report_uploads(played: list[Played]) -> list[Outcome]:
    heading(f"{NAME}: uploads over TLS, {HOURS:g} h of rounds played, scaled to a day")
    line(
        f"{'variant':<38}{'requests':>9}{'results':>8}{'conns':>7}"
        f"{'up':>8}{'down':>8}{'MB/day':>8}{'+hdrs':>7}"
    )
    for p in played:
        t = p.tally
        hdrs = header_bytes(t, p.requests)
        line(
            f"{p.variant.label:<38}{p.per_day(p.requests):>9,.0f}{p.results / p.requests:>8.1f}"
            f"{p.per_day(t.connections):>7,.0f}{p.per_day(t.up) / MB:>8.2f}"
            f"{p.per_day(t.down) / MB:>8.2f}{p.per_day(t.total) / MB:>8.2f}"
            f"{p.per_day(hdrs) / MB:>7.2f}"
        )
    line("(requests and connections per day; results per request; up/down/MB/day: bytes")
    line(" through the sockets, TLS included; +hdrs: TCP/IP headers on top, estimated)")
    by = {p.variant.key: p for p in played}
    before, after, plain = by["before"], by["after"], by["plain"]
    line(
        f"after / before: {after.tally.total / before.tally.total:.3f} of the bytes "
        f"({before.tally.total / after.tally.total:.1f}x fewer), "
        f"{after.requests / before.requests:.3f} of the requests"
    )
    line(f"gzip saves {1 - after.tally.total / plain.tally.total:.0%} of the bytes after batching")
    failures = sum(p.failures for p in played)
    line(
        f"failed requests: {failures}; longest pause between two requests (after): "
        f"{after.longest_gap:.1f} s"
    )
    per_day = after.per_day(after.tally.total)
    return [
        check(
            NAME,
            "uploads per centre per day (after)",
            f"{per_day / MB:.2f} MB ({before.per_day(before.tally.total) / MB:.2f} before)",
            f"<= {TARGET_UPLOAD_BYTES / MB:g} MB",
            per_day <= TARGET_UPLOAD_BYTES and failures == 0,
        ),
        check(
            NAME,
            "longest wait to be sent; pause",
            f"{after.longest_wait:.1f} s; {after.longest_gap:.1f} s",
            f"<= {TARGET_EXTRA_WAIT:g} s; < {GRACE:g} s",
            after.longest_wait <= TARGET_EXTRA_WAIT + 0.5 and after.longest_gap < GRACE,
        ),
    ]


# -- 2. the checks' own traffic -------------------------------------------------------------


@dataclass
class CheckCost:
    name: str
    payload: float  # bytes a run, seen at the sockets (or computed, for icmp)
    headers: float  # bytes a run of TCP/IP (or IP/UDP) headers, estimated
    how: str

    @property
    def total(self) -> float:
        return self.payload + self.headers


async def measure_checks(tmp: Path, targets: Targets, page: Page, cert: Path) -> list[CheckCost]:
    settings = example_settings(tmp, [])
    runner = Runner(settings)
    uplink = settings.uplinks[1]  # a 4G uplink (on loopback: 127.0.0.2)
    runs = 3
    out: list[CheckCost] = []

    async def run(spec: CheckSettings) -> Any:
        job = Job("bench", spec.kind, spec.target, spec, _binding(uplink))
        return await runner.measure(job)

    icmp = IcmpCheck(kind="icmp", target="127.0.0.1")
    per_packet = 20 + 8 + icmp.payload_size
    out.append(
        CheckCost(
            "icmp (5 echoes, 56-byte payload)",
            icmp.count * 2 * per_packet,
            0,
            "computed: echo and reply, IP headers included",
        )
    )

    tcp_relay = TcpRelay(_host_port(targets.tcp))
    try:
        before = tcp_relay.tally()
        for _ in range(runs):
            await run(TcpCheck(kind="tcp", target=f"127.0.0.1:{tcp_relay.port}"))
        await asyncio.sleep(0.3)  # the relay accepts after the kernel did: let it count
        t = tcp_relay.tally() - before
    finally:
        tcp_relay.close()
    out.append(
        CheckCost(
            "tcp (handshake, close)",
            t.total / runs,
            header_bytes(t, 0) / runs,
            "relay; headers estimated",
        )
    )

    udp = UdpRelay(_host_port(targets.dns))
    try:
        for _ in range(runs):
            await run(
                DnsCheck(kind="dns", target="dichvucong.gov.vn", server=f"127.0.0.1:{udp.port}")
            )
        up, down, grams = udp.tally()
    finally:
        udp.close()
    out.append(
        CheckCost(
            "dns (one A query over udp)",
            (up + down) / runs,
            grams * UDP_HEADER / runs,
            "relay; IP/UDP headers computed",
        )
    )

    page_relay = TcpRelay(("127.0.0.1", page.port))
    url = f"https://127.0.0.1:{page_relay.port}/"
    variants: tuple[tuple[str, dict[str, Any]], ...] = (
        (f"http HEAD (https, {PAGE_BYTES // 1000} kB page)", {"method": "HEAD"}),
        (f"http GET capped at {CAPPED_BODY // 1024} KiB", {"max_body_bytes": CAPPED_BODY}),
        (f"http GET of the whole {PAGE_BYTES // 1000} kB page", {}),
    )
    try:
        for label, extra in variants:
            before = page_relay.tally()
            for _ in range(runs):
                m = await run(HttpCheck(kind="http", target=url, ca_file=cert, **extra))
                assert m.outcome.ok, m.outcome.error
            await asyncio.sleep(0.1)
            t = page_relay.tally() - before
            out.append(
                CheckCost(
                    label,
                    t.total / runs,
                    header_bytes(t, 1) / runs,
                    "relay; TLS handshake included; headers estimated",
                )
            )
    finally:
        page_relay.close()
    return out


def report_checks(costs: list[CheckCost], played: list[Played]) -> list[Outcome]:
    heading(f"{NAME}: the checks' own traffic over one uplink (runs every {INTERVAL:g} s)")
    runs = DAY / INTERVAL
    line(f"{'check':<40}{'bytes/run':>10}{'+hdrs':>7}{'MB/day':>8}")
    for c in costs:
        line(f"{c.name:<40}{c.payload:>10,.0f}{c.headers:>7,.0f}{c.total * runs / MB:>8.2f}")
    notes = {c.name.split()[0]: c.how for c in costs}
    for kind, how in notes.items():
        line(f"{kind}: {how}")
    cheap = [c for c in costs if not c.name.startswith("http GET")]
    per_uplink = sum(c.total for c in cheap) * runs
    after = next(p for p in played if p.variant.key == "after")
    uploads = after.per_day(after.tally.total + header_bytes(after.tally, after.requests))
    line("modem and heartbeat: 0 bytes on the uplinks (D-Bus and local files)")
    line(
        f"icmp, tcp, http HEAD, dns per uplink per day: {per_uplink / MB:.2f} MB; "
        f"x {len(UPLINKS)} uplinks = {len(UPLINKS) * per_uplink / MB:.2f} MB"
    )
    checks = len(UPLINKS) * per_uplink
    line(
        f"per centre per day, headers in: uploads {uploads / MB:.2f} MB + checks "
        f"{checks / MB:.2f} MB = {(uploads + checks) / MB:.2f} MB"
    )
    line(
        f"per 4G SIM: {per_uplink / MB:.2f} MB a day, {30 * per_uplink / MB:.0f} MB a month "
        f"(+ uploads on days it carries them)"
    )
    whole = next(c for c in costs if c.name.startswith("http GET of the whole"))
    line(
        f"http GET of the page instead of HEAD, per uplink: "
        f"{whole.total * runs / MB:.0f} MB a day every {INTERVAL:g} s, "
        f"{whole.total * DAY / 60 / MB:.0f} MB every minute"
    )
    return []


def _host_port(value: str) -> tuple[str, int]:
    host, port = value.rsplit(":", 1)
    return host, int(port)


def _binding(uplink: UplinkSettings) -> Binding:
    return Binding.of(uplink)
