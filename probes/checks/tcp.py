"""``tcp``: the time to complete a TCP handshake with ``host:port`` over one uplink."""

from __future__ import annotations

import asyncio
import socket
import time

from lomsong.config.probe import TcpCheck, split_host_port
from lomsong.probes.checks.base import (
    CheckContext,
    Outcome,
    bind_error,
    describe_os_error,
    resolve,
)


async def run(spec: TcpCheck, ctx: CheckContext) -> Outcome:
    """Resolve, then connect from the uplink's address; the duration covers both."""
    host, port = split_host_port(spec.target)
    start = time.perf_counter()
    resolved = await resolve(host, port, ctx.binding, socket.SOCK_STREAM)
    if isinstance(resolved, Outcome):
        resolved.duration_seconds = time.perf_counter() - start
        return resolved
    family, address = resolved
    resolve_seconds = time.perf_counter() - start
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            ctx.binding.apply(sock)
        except OSError as exc:
            return Outcome(ok=False, error=bind_error(ctx.binding, exc))
        t0 = time.perf_counter()
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            return Outcome(
                ok=False,
                error=describe_os_error(exc),
                duration_seconds=time.perf_counter() - start,
                details={"address": address[0], "resolve_seconds": resolve_seconds},
            )
        connect_seconds = time.perf_counter() - t0
    return Outcome(
        ok=True,
        duration_seconds=resolve_seconds + connect_seconds,
        details={
            "address": address[0],
            "resolve_seconds": resolve_seconds,
            "connect_seconds": connect_seconds,
        },
    )
