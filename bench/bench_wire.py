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
import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import orjson

from bench.probe_targets import serve_targets
from bench.report import Outcome, check, heading, line
from bench.wire_checks import CheckCost, measure_checks
from bench.wire_relay import Tally, TcpRelay, header_bytes
from bench.wire_setup import UPLINKS, real_rounds, serve_page, tls_collector
from lomsong import __version__
from lomsong.config.probe import UploadSettings
from lomsong.probes.spool import AsyncSpool, Spool
from lomsong.probes.uploader import KEEPALIVE_SECONDS, Uploader
from lomsong.timefmt import iso
from tests.tls import write_self_signed

NAME = "wire"
INTERVAL = 30.0
DAY = 86_400.0
#: Simulated hours of rounds per variant (scaled to a day).
HOURS = float(os.environ.get("LOMSONG_BENCH_WIRE_HOURS", "1"))
MB = 1_000_000
TARGET_UPLOAD_BYTES = 5 * MB
TARGET_EXTRA_WAIT = 10.0
GRACE = 90.0  # the collector's default silence threshold: 3 report intervals of 30 s
#: About how long each kind takes on 4G (icmp: 5 echoes 0.2 s apart).
DURATION = {"icmp": 1.0, "tcp": 0.1, "http": 0.8, "dns": 0.1, "modem": 0.3, "heartbeat": 0.01}
OLD_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


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
            with tls_collector(tmp, cert, key, len(VARIANTS)) as (url, probes):
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
