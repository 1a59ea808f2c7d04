"""The demo's small world on loopback: link services, a webhook sink and real probe agents.

Each commune centre of the demo has three uplinks (fibre, Viettel 4G, VNPT 4G). What each uplink
reaches is stood in for by one tiny HTTP service on 127.0.0.1, its own port per commune and
uplink: the public service portal as seen over that link. Cutting a link closes its service's
listening socket (the agent's check gets "connection refused"), restoring it listens again on
the same port; meanwhile a bound socket that does not listen keeps the port, so that no other
connection on the machine is given it as its own port. The agents are real ``lomsong probe
run`` processes, one per commune, each with a generated settings file, token file, spool and
boot-id file under the demo's work directory; a power cut kills one with SIGKILL and gives it
a new boot id before it starts again. The webhook
sink is the duty officer's phone: it prints the Vietnamese summary line of every notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lomsong.errors import LomsongError

#: Seconds between two runs of each check of a demo agent, and its report cadence.
CHECK_INTERVAL_SECONDS = 10.0
#: Each run starts up to this late, so 56 agents do not fire in step.
CHECK_JITTER_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 5.0
#: A request head larger than this is refused; the agents send a few hundred bytes.
_MAX_HEAD = 16 * 1024


# -- HTTP on asyncio streams ---------------------------------------------------------------------


async def _read_request(
    reader: asyncio.StreamReader, idle_seconds: float = 10.0
) -> tuple[str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (request line, headers, body by Content-Length), or None at EOF or
    when the peer is silent for ``idle_seconds``."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_seconds)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        return None
    if len(head) > _MAX_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    try:
        body = await asyncio.wait_for(reader.readexactly(length), idle_seconds) if length else b""
    except (asyncio.IncompleteReadError, TimeoutError, OSError):
        return None
    return lines[0], headers, body


def _response(status: str, body: bytes, *, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode("ascii") + body


# -- link services -------------------------------------------------------------------------------


@dataclass
class _Link:
    port: int
    server: asyncio.Server | None = None
    #: while the link is cut: bound, not listening (connections to it are refused)
    keeper: socket.socket | None = None


class LinkServices:
    """One HTTP service per (commune, uplink) on 127.0.0.1: what the agent reaches over a link."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._links: dict[tuple[str, str], _Link] = {}

    async def start(self, keys: Iterable[tuple[str, str]]) -> None:
        """Start a service for every (commune code, uplink name), each on a free port."""
        for key in keys:
            link = _Link(port=0)
            self._links[key] = link
            await self._listen(key, link)

    def url(self, commune: str, uplink: str) -> str:
        return f"http://{self.host}:{self._links[(commune, uplink)].port}/dichvucong"

    def is_up(self, commune: str, uplink: str) -> bool:
        return self._links[(commune, uplink)].server is not None

    async def cut(self, commune: str, uplink: str) -> None:
        """The link fails: nothing listens on its port any more."""
        link = self._links[(commune, uplink)]
        if link.server is not None:
            link.keeper = _keep_port(self.host, link.port)
            server, link.server = link.server, None
            server.close()
            await server.wait_closed()

    async def restore(self, commune: str, uplink: str) -> None:
        """The link works again: its service listens on the same port."""
        key = (commune, uplink)
        if self._links[key].server is None:
            await self._listen(key, self._links[key])

    async def close(self) -> None:
        for commune, uplink in list(self._links):
            await self.cut(commune, uplink)
        for link in self._links.values():
            if link.keeper is not None:
                link.keeper.close()
                link.keeper = None

    async def _listen(self, key: tuple[str, str], link: _Link) -> None:
        commune, uplink = key
        body = f"Cổng dịch vụ công (lomsong demo): {commune} qua {uplink}\n".encode()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                if await _read_request(reader, idle_seconds=CHECK_TIMEOUT_SECONDS) is not None:
                    writer.write(_response("200 OK", body, close=True))
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        try:
            link.server = await asyncio.start_server(
                handle, self.host, link.port, reuse_address=True, reuse_port=True, backlog=64
            )
        except OSError as exc:
            raise LomsongError(
                f"demo: cannot listen for the {uplink} service of commune {commune} on "
                f"{self.host}:{link.port}: {exc.strerror or exc}"
            ) from exc
        link.port = int(link.server.sockets[0].getsockname()[1])
        if link.keeper is not None:
            link.keeper.close()
            link.keeper = None


def _keep_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``port`` beside its listener, never listening: while it is open the
    port stays taken (an outgoing connection is never given it) and connections are refused."""
    keeper = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        keeper.bind((host, port))
    except OSError:
        keeper.close()
        raise
    return keeper


# -- the webhook sink ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One alert of one notification, as the webhook sink received it."""

    at: float
    status: str
    labels: dict[str, str]
    summary: str


class WebhookSink:
    """An HTTP server on loopback that takes Alertmanager-style webhook posts and prints them."""

    def __init__(self, say: Callable[[str], None], host: str = "127.0.0.1") -> None:
        self.say = say
        self.host = host
        self.port = 0
        self.received: list[Received] = []
        self.notifications = {"firing": 0, "resolved": 0}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/lomsong"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_request(reader, idle_seconds=60.0)) is not None:
                line, headers, body = request
                ok = line.startswith("POST ") and self._take(body)
                close = headers.get("connection", "").lower() == "close"
                status = "200 OK" if ok else "400 Bad Request"
                writer.write(_response(status, b"" if ok else b"expected a JSON body", close=close))
                await writer.drain()
                if close:
                    break
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _take(self, body: bytes) -> bool:
        try:
            doc = json.loads(body)
            status = str(doc["status"])
            alerts: list[dict[str, Any]] = list(doc["alerts"])
        except (ValueError, KeyError, TypeError):
            return False
        now = time.time()
        self.notifications[status] = self.notifications.get(status, 0) + 1
        for a in alerts:
            self.received.append(
                Received(
                    now,
                    str(a.get("status", status)),
                    {str(k): str(v) for k, v in dict(a.get("labels", {})).items()},
                    str(dict(a.get("annotations", {})).get("summary", "")),
                )
            )
        title = str(dict(doc.get("commonAnnotations", {})).get("summary", ""))
        self.say(f"  webhook ← {title}")
        return True


# -- agents --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentUplink:
    name: str
    operator: str
    target: str


@dataclass
class AgentProcess:
    """One real ``lomsong probe run`` process with its own files under ``home``."""

    probe_id: str
    home: Path
    collector_url: str
    token: str
    uplinks: tuple[AgentUplink, ...]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.home / "probe.toml"

    @property
    def boot_id_file(self) -> Path:
        return self.home / "boot_id"

    @property
    def log(self) -> Path:
        return self.home / "agent.log"

    def write_files(self) -> None:
        """The agent's settings, token (mode 0600) and first boot id."""
        self.home.mkdir(parents=True, exist_ok=True)
        token_file = self.home / "token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        self.new_boot()
        self.config.write_text(
            probe_toml(
                self.probe_id,
                self.collector_url,
                token_file=token_file,
                spool_path=self.home / "spool.db",
                boot_id_file=self.boot_id_file,
                uplinks=self.uplinks,
            ),
            encoding="utf-8",
        )

    def new_boot(self) -> None:
        """A new boot id: the box started again after losing power."""
        self.boot_id_file.write_text(f"{uuid.uuid4()}\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        # The user's LOMSONG_* variables must not override the demo's settings files.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            # Its own session: a Ctrl-C at the terminal reaches the demo alone, which then
            # stops every agent in order.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lomsong", "probe", "run", "--config", str(self.config)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    async def stop(self, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        """Signal the agent and wait for it; SIGKILL if it has not gone within ``grace`` s."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self.exits.append(int(proc.returncode))
        self.proc = None


def probe_toml(
    probe_id: str,
    collector_url: str,
    *,
    token_file: Path,
    spool_path: Path,
    boot_id_file: Path,
    uplinks: Sequence[AgentUplink],
) -> str:
    """A demo agent's settings: one HTTP check per uplink to its own service, and a heartbeat."""

    def q(value: object) -> str:
        # A JSON string is a valid TOML basic string (the same escapes).
        return json.dumps(str(value), ensure_ascii=False)

    timing = (
        f"interval_seconds = {CHECK_INTERVAL_SECONDS}\n"
        f"jitter_seconds = {CHECK_JITTER_SECONDS}\n"
        f"timeout_seconds = {CHECK_TIMEOUT_SECONDS}\n"
    )
    parts = [
        "# Written by `lomsong demo`; rewritten at every start of the demo.\n"
        f"probe_id = {q(probe_id)}\n"
        f"collector_url = {q(collector_url)}\n"
        f"token_file = {q(token_file)}\n"
        f"spool_path = {q(spool_path)}\n"
        f"boot_id_file = {q(boot_id_file)}\n"
        'log_level = "WARNING"\n'
        "max_concurrency = 4\n\n"
        "[upload]\n"
        f"interval_seconds = {CHECK_INTERVAL_SECONDS}\n"
        # a demo round shows at once; a real probe batches for 10 s (metered 4G)
        "batch_deadline_seconds = 1.0\n"
        "timeout_seconds = 5.0\n"
        "backoff_initial_seconds = 1.0\n"
        "backoff_max_seconds = 10.0\n"
    ]
    parts.extend(
        f'\n[[uplinks]]\nname = {q(u.name)}\nsource_address = "127.0.0.1"\n'
        f"operator = {q(u.operator)}\n"
        for u in uplinks
    )
    parts.extend(
        f'\n[[checks]]\nkind = "http"\ntarget = {q(u.target)}\nuplinks = [{q(u.name)}]\n{timing}'
        for u in uplinks
    )
    parts.append('\n[[checks]]\nkind = "heartbeat"\n' + timing)
    return "".join(parts)
