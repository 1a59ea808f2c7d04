"""Servers on loopback for tests: real Prometheus and Alertmanager (Debian's packages), and a
TCP port a check connects to."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.waiting import wait_until


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    """Until ``url``/-/ready answers 200; fails with the server's log if it exits first."""

    def ready() -> bool:
        assert proc.poll() is None, f"{what} exited: {log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=30, what=f"{what} ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def _server(package: str, tmp_path: Path, config: str, args: list[str]) -> Iterator[str]:
    binary = shutil.which(package)
    if binary is None:
        pytest.fail(f"{package} is not installed; run `make system-deps`")
    (tmp_path / f"{package}.yml").write_text(config)
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / f"{package}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / f'{package}.yml'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(proc, url, log, package)
        yield url
    finally:
        stop(proc)


@contextmanager
def prometheus(tmp_path: Path, target: str, interval: str = "2s") -> Iterator[str]:
    """A Prometheus scraping ``target`` (host:port) every ``interval``; yields its URL."""
    config = (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: lomsong\n"
        f"    scrape_timeout: {interval}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    with _server(
        "prometheus", tmp_path, config, [f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    ) as url:
        yield url


@contextmanager
def alertmanager(tmp_path: Path, config: str) -> Iterator[str]:
    """An Alertmanager alone (no cluster) with this configuration; yields its URL."""
    args = [f"--storage.path={tmp_path / 'am-data'}", "--cluster.listen-address="]
    with _server("prometheus-alertmanager", tmp_path, config, args) as url:
        yield url


class TcpTarget:
    """A TCP port on loopback that accepts and closes connections: what a tcp check reaches.
    It can be closed and opened again on the same number, as a link that goes and comes back."""

    def __init__(self) -> None:
        self.port = 0
        self.sock: socket.socket | None = None
        self.open()

    def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.sock = sock
        threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])
