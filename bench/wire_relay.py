"""Counting relays for the wire benchmark: every byte between a client and a server, each way.

A relay sits on loopback between the agent and what it talks to and counts what crosses the
sockets (TLS records, handshakes included), so the figures are what a link carries above TCP.
TCP/IP headers are not seen at this level; :func:`header_bytes` estimates them.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: IPv4 + TCP with the timestamp option, as Linux sends it.
TCP_HEADER = 52
#: IPv4 + UDP.
UDP_HEADER = 28
#: A 4G link's usual MSS.
MSS = 1_400


@dataclass(frozen=True)
class Tally:
    """Bytes each way and connections opened, at one moment."""

    up: int = 0  # client → server
    down: int = 0  # server → client
    connections: int = 0

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.up - other.up, self.down - other.down, self.connections - other.connections
        )

    @property
    def total(self) -> int:
        return self.up + self.down


def header_bytes(t: Tally, exchanges: int) -> int:
    """TCP/IP headers for ``t``: a handshake and close of 7 packets per connection, one data
    packet per MSS each way and per ``exchanges`` (request/answer pairs) two bare ACKs."""
    packets = (
        7 * t.connections + math.ceil(t.up / MSS) + math.ceil(t.down / MSS) + max(exchanges, 0) * 2
    )
    return packets * TCP_HEADER


class TcpRelay:
    """Accepts on 127.0.0.1, connects each client to ``upstream``, counts both ways."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._up = self._down = self._connections = 0
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def tally(self) -> Tally:
        with self._lock:
            return Tally(self._up, self._down, self._connections)

    def drop(self) -> None:
        """Close every open connection, as a server does with one idle past its keep-alive."""
        with self._lock:
            socks, self._open = self._open, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.drop()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections += 1
                self._open += [client, server]
            for src, dst, up in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65_536):
                dst.sendall(data)
                with self._lock:
                    if up:
                        self._up += len(data)
                    else:
                        self._down += len(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class UdpRelay:
    """One UDP exchange at a time: client datagrams to ``upstream`` and its answers back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._up = self._down = self._datagrams = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def tally(self) -> tuple[int, int, int]:
        """Payload bytes up, down, and datagrams each way counted together."""
        with self._lock:
            return self._up, self._down, self._datagrams

    def close(self) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                data, client = self._sock.recvfrom(65_536)
            except OSError:
                return
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                out.settimeout(2.0)
                out.sendto(data, self.upstream)
                try:
                    answer = out.recv(65_536)
                except OSError:
                    answer = b""
            with self._lock:
                self._up += len(data)
                self._down += len(answer)
                self._datagrams += 1 + bool(answer)
            if answer:
                self._sock.sendto(answer, client)


@contextmanager
def relay(upstream: tuple[str, int]) -> Iterator[TcpRelay]:
    r = TcpRelay(upstream)
    try:
        yield r
    finally:
        r.close()
