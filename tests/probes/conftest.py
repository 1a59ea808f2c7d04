"""Real loopback servers for the probe's checks: TCP, HTTP, HTTPS (self-signed) and DNS."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest

from lomsong.config.probe import ProbeSettings
from tests.tls import write_self_signed

#: What the DNS fixture answers: name → A record.
DNS_RECORDS = {"ubnd.caobang.gov.vn.": "192.0.2.10", "dichvucong.gov.vn.": "192.0.2.20"}
CERT_DAYS = 45


@dataclass
class Server:
    host: str
    port: int
    peers: list[str] = field(default_factory=list)
    #: Set when the test is over: until then the HTTP server's ``/hang`` answers nothing.
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture
def tcp_server() -> Iterator[Server]:
    """Accepts connections and remembers who connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server("127.0.0.1", sock.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server.peers.append(peer[0])
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(5)
    sock.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.record.peers.append(self.client_address[0])
        if self.path == "/":
            self._send(200, b"Cong dich vu cong quoc gia\n")
        elif self.path.startswith("/status/"):
            self._send(int(self.path.rsplit("/", 1)[1]), b"status\n")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"Cong ", b"dich vu ", b"cong\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 5000)
            self.close_connection = True
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/hang":
            # Held until the test ends: no check timeout can be long enough to see an answer.
            self.server.record.release.wait(60)
            self._send(200, b"late\n")
        else:
            self._send(404, b"not found\n")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the check gave up first (the /hang case): exactly what was tested

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    record: Server


def _serve_http(context: ssl.SSLContext | None) -> Iterator[Server]:
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.record = Server("127.0.0.1", httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield httpd.record
    httpd.record.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def http_server() -> Iterator[Server]:
    yield from _serve_http(None)


@dataclass
class Certificate:
    cert_file: Path
    key_file: Path
    not_after: dt.datetime


@pytest.fixture
def self_signed(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for CERT_DAYS more days."""
    cert_file, key_file, not_after = write_self_signed(tmp_path, days=CERT_DAYS)
    return Certificate(cert_file, key_file, not_after)


@pytest.fixture
def https_server(self_signed: Certificate) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed.cert_file, self_signed.key_file)
    yield from _serve_http(context)


def _dns_answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    question = query.question[0]
    address = DNS_RECORDS.get(question.name.to_text())
    if address is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype == 1:  # A
        reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", address))
    return reply.to_wire()


def _udp_and_tcp_on_one_port(
    udp_handler: type[socketserver.BaseRequestHandler],
    tcp_handler: type[socketserver.BaseRequestHandler],
) -> tuple[socketserver.ThreadingUDPServer, socketserver.ThreadingTCPServer]:
    """A UDP and a TCP server on the same free port. The kernel picks the UDP port; another
    process may hold that number for TCP, so a few ports are tried, each closed if it fails."""
    for _ in range(20):
        udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), udp_handler)
        port = udp.server_address[1]
        tcp = socketserver.ThreadingTCPServer(
            ("127.0.0.1", port), tcp_handler, bind_and_activate=False
        )
        tcp.allow_reuse_address = True
        try:
            tcp.server_bind()
            tcp.server_activate()
        except OSError:
            tcp.server_close()
            udp.server_close()
            continue
        return udp, tcp
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1 in 20 tries")


@pytest.fixture
def dns_server() -> Iterator[Server]:
    """Answers A queries for DNS_RECORDS over UDP and TCP on one port; NXDOMAIN otherwise."""

    class UDP(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            record.peers.append(self.client_address[0])
            sock.sendto(_dns_answer(data), self.client_address)

    class TCP(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            record.peers.append(self.client_address[0])
            (length,) = struct.unpack("!H", self.rfile.read(2))
            answer = _dns_answer(self.rfile.read(length))
            self.wfile.write(struct.pack("!H", len(answer)) + answer)

    udp, tcp = _udp_and_tcp_on_one_port(UDP, TCP)
    record = Server("127.0.0.1", udp.server_address[1])
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        for s in (udp, tcp)
    ]
    for t in threads:
        t.start()
    yield record
    for s in (udp, tcp):
        s.shutdown()
        s.server_close()


def probe_settings(tmp_path: Path, **extra: Any) -> ProbeSettings:
    """Settings of a probe that reports nowhere, with its spool in ``tmp_path``."""
    return ProbeSettings(
        probe_id="cb-test",
        collector_url="http://127.0.0.1:1",
        spool_path=tmp_path / "spool.db",
        **extra,
    )
