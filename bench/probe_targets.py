"""Loopback targets for the probe benchmarks: a TCP listener, an HTTP server and a DNS server.

They run in threads of the benchmark's own process, so their CPU time is never counted against
the agent or blackbox_exporter, which run in processes of their own.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.rrset

ANSWER = "192.0.2.10"


@dataclass(frozen=True)
class Targets:
    tcp: str  # host:port
    http: str  # URL
    dns: str  # host:port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"Cong dich vu cong quoc gia\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _DNS(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == 1:
            reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", ANSWER))
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(reply.to_wire(), self.client_address)


@contextmanager
def serve_targets() -> Iterator[Targets]:
    """Start the three targets on 127.0.0.1; stop them when the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _DNS)
    udp.daemon_threads = True
    threads = [
        threading.Thread(target=accept, daemon=True),
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
        threading.Thread(target=udp.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield Targets(
            tcp=f"127.0.0.1:{listener.getsockname()[1]}",
            http=f"http://127.0.0.1:{httpd.server_address[1]}/",
            dns=f"127.0.0.1:{udp.server_address[1]}",
        )
    finally:
        stop.set()
        httpd.shutdown()
        udp.shutdown()
        httpd.server_close()
        udp.server_close()
        listener.close()
