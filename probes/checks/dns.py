"""``dns``: resolve a name through one given server, over one uplink.

dnspython builds and parses the messages; the exchange runs on our own non-blocking socket, so it
is bound to the uplink like every other check and ends cleanly when the runner's timeout cancels
it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from lomsong.config.probe import DnsCheck, split_host_port
from lomsong.probes.checks.base import CheckContext, Outcome, bind_error, describe_os_error


async def run(spec: DnsCheck, ctx: CheckContext) -> Outcome:
    """Ask ``server`` for ``target``'s ``record_type`` records; ok on NOERROR (with answers)."""
    host, port = split_host_port(spec.server, default_port=53)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not ctx.binding.family_allowed(family):
        return Outcome(
            ok=False,
            error=f"server {host} is not in the family of source {ctx.binding.source_address}",
        )
    query = dns.message.make_query(spec.target, spec.record_type)
    kind = socket.SOCK_DGRAM if spec.transport == "udp" else socket.SOCK_STREAM
    start = time.perf_counter()
    with socket.socket(family, kind) as sock:
        sock.setblocking(False)
        try:
            ctx.binding.apply(sock)
        except OSError as exc:
            return Outcome(ok=False, error=bind_error(ctx.binding, exc))
        try:
            if spec.transport == "udp":
                reply = await _exchange_udp(sock, (host, port), query)
            else:
                reply = await _exchange_tcp(sock, (host, port), query)
        except OSError as exc:
            return Outcome(
                ok=False, error=describe_os_error(exc), duration_seconds=time.perf_counter() - start
            )
        except dns.exception.DNSException as exc:
            return Outcome(
                ok=False,
                error=f"malformed reply: {exc}",
                duration_seconds=time.perf_counter() - start,
            )
    duration = time.perf_counter() - start
    rcode = dns.rcode.to_text(reply.rcode())
    wanted = dns.rdatatype.from_text(spec.record_type)
    answers = [
        rdata.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rdata in rrset
    ]
    error: str | None = None
    if rcode != "NOERROR":
        error = f"rcode {rcode}"
    elif spec.require_answer and not answers:
        error = f"no {spec.record_type} record in the answer"
    return Outcome(
        ok=error is None,
        error=error,
        duration_seconds=duration,
        details={"rcode": rcode, "answers": answers[:8], "truncated": bool(reply.flags & 0x0200)},
    )


async def _exchange_udp(
    sock: socket.socket, server: tuple[str, int], query: dns.message.Message
) -> dns.message.Message:
    loop = asyncio.get_running_loop()
    # A connected datagram socket only hears the server it asked.
    await loop.sock_connect(sock, server)
    await loop.sock_sendall(sock, query.to_wire())
    while True:
        data = await loop.sock_recv(sock, 65_535)
        try:
            reply = dns.message.from_wire(data)
        except dns.exception.DNSException:
            continue  # a stray or forged datagram: keep waiting for the real answer
        if query.is_response(reply):
            return reply


async def _exchange_tcp(
    sock: socket.socket, server: tuple[str, int], query: dns.message.Message
) -> dns.message.Message:
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, server)
    wire = query.to_wire()
    await loop.sock_sendall(sock, struct.pack("!H", len(wire)) + wire)
    (length,) = struct.unpack("!H", await _read_exactly(sock, 2))
    reply = dns.message.from_wire(await _read_exactly(sock, length))
    if not query.is_response(reply):
        raise dns.exception.FormError("the reply does not answer the query")  # type: ignore[no-untyped-call]
    return reply


async def _read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while len(buf) < size:
        chunk = await loop.sock_recv(sock, size - len(buf))
        if not chunk:
            raise ConnectionResetError(104, "Connection closed by the server")
        buf += chunk
    return bytes(buf)
