"""``icmp``: N echo requests over one uplink: loss, min/avg/max round trip and jitter.

icmplib builds and matches the packets. Unprivileged ICMP datagram sockets are used where the
kernel allows them (``net.ipv4.ping_group_range`` covers our group), raw sockets (CAP_NET_RAW)
otherwise; when neither is possible the result says so, with what to change.
"""

from __future__ import annotations

import asyncio
import socket
import statistics

from icmplib import AsyncSocket, ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import (
    ICMPError,
    ICMPLibError,
    SocketAddressError,
    SocketPermissionError,
    TimeoutExceeded,
)
from icmplib.utils import unique_identifier

from lomsong.config.probe import IcmpCheck
from lomsong.probes.checks.base import CheckContext, Outcome, bind_error, resolve

NO_SOCKET = (
    "icmp: neither unprivileged ICMP datagram sockets nor raw sockets are permitted; "
    "add the agent's group to net.ipv4.ping_group_range or give it CAP_NET_RAW"
)
#: Part of the run's timeout kept free, so the runner's own timeout never has to cut a round.
_MARGIN = 0.9


async def run(spec: IcmpCheck, ctx: CheckContext) -> Outcome:
    """Send ``count`` echo requests ``packet_interval_seconds`` apart, one at a time."""
    wanted_family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(spec.family or 0, 0)
    resolved = await resolve(spec.target, 0, ctx.binding, socket.SOCK_DGRAM, wanted_family)
    if isinstance(resolved, Outcome):
        return resolved
    family, (address, _) = resolved
    try:
        icmp_socket, mode = _open(family, ctx, spec.socket)
    except SocketPermissionError:
        return Outcome(ok=False, error=NO_SOCKET if spec.socket == "auto" else _denied(spec.socket))
    except (SocketAddressError, OSError) as exc:
        cause = exc if isinstance(exc, OSError) else OSError(99, str(exc))
        return Outcome(ok=False, error=bind_error(ctx.binding, cause))
    budget = ctx.timeout_seconds * _MARGIN - spec.packet_interval_seconds * (spec.count - 1)
    per_packet = max(0.01, budget / spec.count)
    ident = unique_identifier()
    rtts: list[float] = []
    sent = 0
    last_error: str | None = None
    with AsyncSocket(icmp_socket) as sock:
        for sequence in range(spec.count):
            if sequence:
                await asyncio.sleep(spec.packet_interval_seconds)
            request = ICMPRequest(
                destination=address, id=ident, sequence=sequence, payload_size=spec.payload_size
            )
            try:
                sock.send(request)
                sent += 1
                reply = await sock.receive(request, per_packet)
                reply.raise_for_status()
            except TimeoutExceeded:
                continue
            except ICMPError as exc:
                last_error = _first_lower(str(exc))
                continue
            except ICMPLibError as exc:
                last_error = _first_lower(str(exc))
                break
            rtts.append(max(0.0, reply.time - request.time))
    outcome = Outcome(
        ok=bool(rtts),
        packets_sent=sent,
        packets_received=len(rtts),
        details={"address": address, "socket": mode, "loss": 1 - len(rtts) / sent if sent else 1},
    )
    if rtts:
        outcome.duration_seconds = statistics.fmean(rtts)
        outcome.rtt_min_seconds = min(rtts)
        outcome.rtt_max_seconds = max(rtts)
        # Mean difference between successive round trips (RFC 3550's idea, without smoothing).
        diffs = [abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False)]
        outcome.jitter_seconds = statistics.fmean(diffs) if diffs else 0.0
    else:
        outcome.error = last_error or "timeout"
    return outcome


def _open(family: int, ctx: CheckContext, wanted: str) -> tuple[ICMPv4Socket | ICMPv6Socket, str]:
    cls = ICMPv6Socket if family == socket.AF_INET6 else ICMPv4Socket
    modes = {"auto": ("datagram", "raw"), "datagram": ("datagram",), "raw": ("raw",)}[wanted]
    for mode in modes:
        try:
            icmp_socket = cls(ctx.binding.source_address, privileged=mode == "raw")
        except SocketPermissionError:
            if mode == modes[-1]:
                raise
            continue
        if ctx.binding.interface is not None:
            try:
                icmp_socket.sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_BINDTODEVICE,
                    ctx.binding.interface.encode() + b"\0",
                )
            except OSError:
                icmp_socket.close()
                raise
        return icmp_socket, mode
    raise SocketPermissionError(True)  # pragma: no cover - the loop always returns or raises


def _denied(mode: str) -> str:
    if mode == "raw":
        return "icmp: raw sockets are not permitted; give the agent CAP_NET_RAW"
    return (
        "icmp: unprivileged ICMP datagram sockets are not permitted; "
        "add the agent's group to net.ipv4.ping_group_range"
    )


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:200] if text else "icmp error"
