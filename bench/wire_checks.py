"""The wire benchmark's second part: the bytes of one run of each check over one uplink.

Counted by relays in front of loopback servers (TCP payload with TLS handshakes, UDP payload);
ICMP is computed from its packets, and TCP/IP headers are estimated (``wire_relay``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.probe_targets import Targets
from bench.wire_relay import UDP_HEADER, TcpRelay, UdpRelay, header_bytes
from bench.wire_setup import PAGE_BYTES, Page, example_settings
from lomsong.config.probe import (
    CheckSettings,
    DnsCheck,
    HttpCheck,
    IcmpCheck,
    TcpCheck,
    UplinkSettings,
)
from lomsong.probes.agent import Job, Runner
from lomsong.probes.checks.base import Binding

CAPPED_BODY = 16_384


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


def _host_port(value: str) -> tuple[str, int]:
    host, port = value.rsplit(":", 1)
    return host, int(port)


def _binding(uplink: UplinkSettings) -> Binding:
    return Binding.of(uplink)
