"""HTTP ingest under load: the collector in its own process, 16 uploaders in another.

The collector is the real thing, ``lomsong serve`` on a loopback port with one worker, on a
fresh SQLite file. The load process pre-builds its gzip bodies, then every uploader posts its
probe's next batch as soon as the previous one is answered (one connection per probe, like an
agent draining its spool), first for a warm-up and then for the measured window.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psutil

from bench.workload import BATCH, batch_doc, gzip_body

POST_HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def serve(
    db_path: Path, log_path: Path, command: list[str] | None = None, **env: str
) -> Iterator[Server]:
    """Run ``lomsong serve`` (or ``command``, which serves the same way) on ``db_path`` until the
    block ends; ``env`` adds LOMSONG_ settings."""
    port = free_port()
    environ = {
        **os.environ,
        "LOMSONG_DATABASE_URL": f"sqlite:///{db_path}",
        "LOMSONG_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "LOMSONG_HOST": "127.0.0.1",
        "LOMSONG_PORT": str(port),
        **env,
    }
    lomsong = Path(sys.executable).with_name("lomsong")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command or [str(lomsong), "serve"], env=environ, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the collector exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not answer in 60 s; see {log_path}")
            time.sleep(0.1)
        yield Server(url=url, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class LoadSpec:
    """What the load process does; ``resend`` re-posts stored batches, from seq 1 on."""

    url: str
    server_pid: int
    probes: tuple[tuple[str, str], ...]  # (probe_id, token)
    warmup_seconds: float
    seconds: float
    resend: bool = False
    #: per probe: the seq after the last batch already sent (fresh) or stored (resend)
    next_seq: tuple[int, ...] = ()
    prebuilt_batches: int = 300


@dataclass
class LoadResult:
    requests: int = 0
    results: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: int = 0
    error_sample: str = ""
    latencies: list[float] = field(default_factory=list)
    window_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    #: the collector's main thread, which runs the event loop (HTTP, validation)
    server_loop_cpu_seconds: float = 0.0
    #: CPU time of the whole machine (both cores) in the window, busy in any process
    machine_busy_seconds: float = 0.0
    load_cpu_seconds: float = 0.0
    build_seconds: float = 0.0
    built_during_run: int = 0
    next_seq: tuple[int, ...] = ()


def run_load(spec: LoadSpec) -> LoadResult:
    """Drive the load in a separate process and return what it measured."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_load_main, (spec,))


def _load_main(spec: LoadSpec) -> LoadResult:
    return asyncio.run(_drive(spec))


class _Bodies:
    """One probe's gzip bodies, pre-built; built on the fly (and counted) if they run out.

    For a re-send (``cycle``) the pre-built bodies, all of them already stored, are posted
    again and again.
    """

    def __init__(self, probe_id: str, first_seq: int, prebuilt: int, cycle: bool) -> None:
        self.probe_id = probe_id
        self.first_seq = first_seq
        self.next_seq = first_seq
        self.built_late = 0
        self.ready = [self._build() for _ in range(prebuilt)]
        self.ready.reverse()
        self.cycle = list(self.ready) if cycle else []

    def _build(self) -> tuple[bytes, int]:
        body = gzip_body(batch_doc(self.probe_id, self.next_seq))
        self.next_seq += BATCH
        return body, self.next_seq

    def take(self) -> tuple[bytes, int]:
        if not self.ready and self.cycle:
            self.ready = list(self.cycle)
        if self.ready:
            return self.ready.pop()
        self.built_late += 1
        return self._build()


async def _drive(spec: LoadSpec) -> LoadResult:
    out = LoadResult()
    t_build = time.perf_counter()
    n_probes = len(spec.probes)
    if spec.resend:
        # Only whole batches that were answered, hence stored.
        stored = min((s - 1) // BATCH for s in spec.next_seq)
        bodies = [
            _Bodies(pid, 1, min(spec.prebuilt_batches, stored), cycle=True)
            for pid, _ in spec.probes
        ]
    else:
        bodies = [
            _Bodies(pid, spec.next_seq[i] if spec.next_seq else 1, spec.prebuilt_batches, False)
            for i, (pid, _) in enumerate(spec.probes)
        ]
    out.build_seconds = time.perf_counter() - t_build
    sent_through = [b.first_seq for b in bodies]
    server = psutil.Process(spec.server_pid)
    start = time.perf_counter()
    t_measure = start + spec.warmup_seconds
    t_end = t_measure + spec.seconds
    marks: dict[str, float] = {}

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        marks["server"] = sum(server.cpu_times()[:2])
        marks["loop"] = _thread_cpu(server)
        marks["load"] = time.process_time()
        marks["machine"] = _busy()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        out.server_cpu_seconds = sum(server.cpu_times()[:2]) - marks["server"]
        out.server_loop_cpu_seconds = _thread_cpu(server) - marks["loop"]
        out.load_cpu_seconds = time.process_time() - marks["load"]
        out.machine_busy_seconds = _busy() - marks["machine"]

    async def uploader(i: int, token: str) -> None:
        head = b"".join(
            f"{k}: {v}\r\n".encode()
            for k, v in {**POST_HEADERS, "Authorization": f"Bearer {token}"}.items()
        )
        conn = Http11(spec.url)
        try:
            while time.perf_counter() < t_end:
                body, after = bodies[i].take()
                t0 = time.perf_counter()
                status, answer = await conn.post("/api/v1/reports", head, body)
                t1 = time.perf_counter()
                ok = status == 200
                if ok:
                    sent_through[i] = max(sent_through[i], after)
                if not t_measure <= t1 <= t_end:
                    continue
                out.requests += 1
                out.latencies.append(t1 - t0)
                if not ok:
                    out.errors += 1
                    out.error_sample = out.error_sample or f"{status} {answer[:200]!r}"
                    continue
                ack = orjson.loads(answer)
                out.accepted += ack["accepted"]
                out.duplicates += ack["duplicates"]
                out.results += ack["accepted"] + ack["duplicates"]
        finally:
            conn.close()

    await asyncio.gather(
        mark_window(), *(uploader(i, token) for i, (_, token) in enumerate(spec.probes))
    )
    out.window_seconds = spec.seconds
    out.built_during_run = sum(b.built_late for b in bodies)
    out.next_seq = tuple(sent_through) if not spec.resend else spec.next_seq
    assert len(out.next_seq) == n_probes
    out.latencies.sort()
    return out


class Http11:
    """A keep-alive HTTP/1.1 connection that posts and reads the answer, and nothing more.

    A probe agent would use httpx; here the load generator shares two cores with the
    collector it measures, and httpx spends about 2.5 ms of CPU per request, ten times this.
    """

    def __init__(self, url: str) -> None:
        hostport = url.removeprefix("http://").rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self.host_header = f"Host: {hostport}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: bytes, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host_header, headers, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        answer = await self._chunked() if chunked else await self.reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    async def get(self, path: str, headers: bytes) -> tuple[int, dict[str, str], bytes]:
        """A GET (``bench/bench_fleet.py``'s agents): status, headers by lower-case name, body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"GET %s HTTP/1.1\r\n%s%s\r\n" % (path.encode(), self.host_header, headers)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        fields: dict[str, str] = {}
        for raw in head.split(b"\r\n")[1:]:
            name, _, value = raw.partition(b":")
            if name:
                fields[name.strip().lower().decode()] = value.strip().decode()
        length = int(fields.get("content-length", "0"))
        body = await self.reader.readexactly(length) if length else b""
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(head[9:12]), fields, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _thread_cpu(proc: psutil.Process) -> float:
    """CPU seconds of the process's main thread (its id is the process id)."""
    for t in proc.threads():
        if t.id == proc.pid:
            return float(t.user_time + t.system_time)
    return 0.0


def _busy() -> float:
    t = psutil.cpu_times()
    return sum(float(getattr(t, k, 0.0)) for k in ("user", "nice", "system", "irq", "softirq"))
