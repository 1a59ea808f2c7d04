"""The uploader: moves spooled results to the collector, and frees them once it has them.

It is the only reader of the spool's pending rows and the only writer of acknowledgements. One
request at a time, in batches of ``upload.batch_size``:

- Results wait in the spool, where they are already durable, until ``batch_size`` are pending or
  the oldest has waited ``batch_deadline_seconds`` (as Prometheus remote-write's
  ``batch_send_deadline``): a round of checks travels in one request, since on metered 4G every
  request costs its headers, and the keep-alive connection is kept between rounds so no TLS
  handshake is paid again. A backlog, and everything after a reconnect, goes at once.
- On (re)connect — at start and after any failed attempt — the newest heartbeat goes alone
  first, so the collector learns at once that the probe is back; then the backlog follows,
  oldest first, so the collector's contiguous mark advances batch by batch.
- A 200 answer means the whole batch is stored (the collector is all-or-nothing): its rows are
  marked sent, and every row up to ``stored_through_seq`` is freed. A row is never freed before
  the collector says so.
- Every batch carries ``spool_floor_seq``, the oldest seq not yet sent, so the collector can
  move its mark past seqs the spool dropped. A batch never spans a hole in the seqs (a dropped
  result, or the heartbeat that went first): it ends before the hole, so the next batch's floor
  carries the collector over it at once instead of waiting for newer results.
- Failures: a network error or 5xx backs off exponentially with full jitter, 503 and 429 no
  sooner than their ``Retry-After``; 413 halves the batch. A refusal that is the result's own
  fault (a single result too large, a 422 naming one result) is permanent: that result is set
  aside in the spool (kept, counted in the heartbeat's ``spool_refused``) and the rest go on,
  so one poison result can never block the queue behind it. Other refusals (401, 403, 404, a
  batch-level 422) need people: they back off at the cap, keep everything and log why.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from lomsong.config.probe import UploadSettings
from lomsong.probes.spool import AsyncSpool, SpooledResult
from lomsong.wire import ReportAck

log = logging.getLogger(__name__)

_RESULT_INDEX = re.compile(r"^results\[(\d+)\]")
#: Seconds an idle connection to the collector is kept: longer than the pause between rounds
#: (a 30-s check interval), so the next batch does not pay a new TLS handshake. The collector
#: (``lomsong serve``) keeps it 75 s; a server that closes sooner only costs a reconnect.
KEEPALIVE_SECONDS = 70.0
_UNNEEDED_HEADERS = ("Accept", "Accept-Encoding", "Connection")
#: A wait shorter than this is not worth a wake-up: the batch goes now.
_MIN_WAIT = 0.01


@dataclass
class UploadCounters:
    batches: int = 0
    results: int = 0
    duplicates: int = 0
    failures: int = 0
    refused: int = 0
    stored_through_seq: int = 0


class Uploader:
    """Sends the spool to ``POST /api/v1/reports``; see the module's docstring for the rules."""

    def __init__(
        self,
        spool: AsyncSpool,
        settings: UploadSettings,
        *,
        collector_url: str,
        token: str,
        probe_id: str,
        boot_id: str,
        agent_version: str,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        token_file: Path | None = None,
        on_cycle: Callable[[httpx.AsyncClient], Awaitable[None]] | None = None,
    ) -> None:
        self.spool = spool
        #: called with the client every ``config_interval_seconds`` (the agent fetches its
        #: configuration there: ``probes/profile_sync.py``)
        self.on_cycle = on_cycle
        self.settings = settings
        self.collector_url = collector_url.rstrip("/")
        self.probe_id = probe_id
        self.boot_id = boot_id
        self.agent_version = agent_version
        self.counters = UploadCounters()
        #: Set by the runner when a result was spooled, so an idle uploader sends it soon.
        self.wake = asyncio.Event()
        self.connected = False
        self.batch_size = settings.batch_size
        self._failures = 0
        self._token = token
        #: where a rotated token is written; None: the token is not the agent's to change
        self.token_file = token_file
        self._refused_rotation = False
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock

    def client(self) -> httpx.AsyncClient:
        """The HTTP client the uploader sends with (one keep-alive connection)."""
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.settings.ca_file))
        client = httpx.AsyncClient(
            base_url=self.collector_url,
            transport=self._transport,
            verify=verify,
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            limits=httpx.Limits(max_connections=1, keepalive_expiry=KEEPALIVE_SECONDS),
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": f"lomsong-probe/{self.agent_version}",
                "Content-Type": "application/json",
            },
        )
        # httpx's defaults say nothing HTTP/1.1 does not already mean (keep-alive, any type)
        # and ask for compressed answers of 60 bytes: on 4G each request would pay for them.
        for name in _UNNEEDED_HEADERS:
            del client.headers[name]
        return client

    async def run(self, stop: asyncio.Event) -> None:
        """Upload until ``stop`` is set; never raises for a passing failure."""
        async with self.client() as client:
            next_cycle = 0.0
            while not stop.is_set():
                if self.on_cycle is not None and time.monotonic() >= next_cycle:
                    next_cycle = time.monotonic() + self.settings.config_interval_seconds
                    try:
                        await self.on_cycle(client)
                    except Exception:  # a bug there must not stop the uploads
                        log.exception("upload cycle hook failed unexpectedly")
                try:
                    delay, idle = await self.step(client)
                except Exception:  # a bug or a failing spool: never let uploads stop for good
                    log.exception("upload attempt failed unexpectedly")
                    self._failures += 1
                    self.connected = False
                    delay, idle = self.backoff(self._failures), False
                if idle and self.on_cycle is not None:
                    # an idle wait ends when the next cycle is due
                    delay = min(delay, max(0.0, next_cycle - time.monotonic()))
                if delay > 0:
                    await self._wait(delay, stop, wake_early=idle)

    async def drain(self, client: httpx.AsyncClient, *, max_attempts: int = 1_000) -> bool:
        """Send until nothing is pending; False if an attempt failed (no waiting on backoff)."""
        for _ in range(max_attempts):
            delay, idle = await self.step(client, flush=True)
            if idle:
                return True
            if delay > 0:
                return False
        return False

    async def step(self, client: httpx.AsyncClient, *, flush: bool = False) -> tuple[float, bool]:
        """One attempt. Returns the seconds to wait before the next, and whether idle.

        A batch not yet due (see :meth:`due_in`) is not sent unless ``flush``: the answer is
        then the wait until it is due, as idle, so a newly spooled result wakes the uploader to
        count again.
        """
        batch, more = await self._next_batch()
        if not batch:
            return self.settings.interval_seconds, True
        if not flush:
            wait = self.due_in(batch, more)
            if wait > 0:
                return wait, True
        floor = await self.spool.floor_seq()
        body = encode_batch(
            self.probe_id,
            self.boot_id,
            self.agent_version,
            datetime.fromtimestamp(self._clock(), UTC),
            batch,
            floor,
        )
        headers = {}
        if self.settings.gzip_level:
            body = gzip.compress(body, self.settings.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            response = await client.post("/api/v1/reports", content=body, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return await self._answer(response, batch, client)

    def due_in(self, batch: list[SpooledResult], more: bool) -> float:
        """Seconds until ``batch`` is due; 0 when it goes now.

        Due at once: batching is off (deadline 0), the uploader is (re)connecting (the heartbeat
        first, then the backlog without delay), a full batch or more results wait behind this
        one. Otherwise when its oldest result has waited the deadline.
        """
        deadline = self.settings.batch_deadline_seconds
        if deadline <= 0 or not self.connected or more or len(batch) >= self.batch_size:
            return 0.0
        oldest = min(r.measured_at for r in batch)
        wait = oldest + deadline - self._clock()
        # A clock stepped back would make a result look newer than it is: never wait longer
        # than the deadline itself.
        wait = min(wait, deadline)
        return wait if wait >= _MIN_WAIT else 0.0

    async def _next_batch(self) -> tuple[list[SpooledResult], bool]:
        """The next batch, and whether more results wait behind it (a backlog or a hole)."""
        if not self.connected:
            heartbeat = await self.spool.newest("heartbeat")
            if heartbeat is not None:
                return [heartbeat], True
        batch = await self.spool.pending(self.batch_size)
        for i in range(1, len(batch)):
            if batch[i].seq != batch[i - 1].seq + 1:
                return batch[:i], True
        return batch, len(batch) >= self.batch_size

    async def _answer(
        self, response: httpx.Response, batch: list[SpooledResult], client: httpx.AsyncClient
    ) -> tuple[float, bool]:
        status = response.status_code
        if status == 200:
            ack = ReportAck.model_validate_json(response.content)
            await self.spool.acknowledge(ack.stored_through_seq, [r.seq for r in batch])
            if ack.new_token and ack.new_token != self._token:
                await self._take_token(ack.new_token, client)
            if not self.connected and self._failures:
                log.info("collector reachable again after %d failed attempts", self._failures)
            self.connected = True
            self._failures = 0
            c = self.counters
            c.batches += 1
            c.results += ack.accepted
            c.duplicates += ack.duplicates
            c.stored_through_seq = ack.stored_through_seq
            return 0.0, False
        detail = _detail(response)
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
            # The collector knows its load: honour its wait, only guarding against a silly one.
            wait = min(3_600.0, wait if wait is not None else self.settings.backoff_max_seconds)
            log.info("collector asks to slow down: waiting %.1f s", wait)
            return wait, False
        if status == 413:
            if len(batch) > 1:
                self.batch_size = max(1, len(batch) // 2)
                log.warning("collector: batch too large (%s); now %d", detail, self.batch_size)
                return 0.0, False
            self.counters.refused += await self.spool.set_aside([batch[0].seq], f"413 {detail}")
            return 0.0, False
        if status == 422:
            match = _RESULT_INDEX.match(detail)
            if match and int(match.group(1)) < len(batch):
                bad = batch[int(match.group(1))]
                self.counters.refused += await self.spool.set_aside([bad.seq], f"422 {detail}")
                return 0.0, False
        if status >= 500:
            delay, idle = self._failed(f"HTTP {status}: {detail}")
            # A collector that says when to come back (503 with Retry-After: its database is
            # away or full) is not asked sooner; the jitter still spreads the returning fleet.
            wait = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
            if wait is not None:
                delay = max(delay, min(wait, float(self.settings.backoff_max_seconds)))
            return delay, idle
        # 401, 403, 404 (unregistered probe), a clock refusal: people must act; keep trying
        # slowly, keep every result, and say why at every attempt.
        self.connected = False
        self._failures += 1
        self.counters.failures += 1
        log.error("collector refuses the batch: HTTP %d: %s", status, detail)
        return self.settings.backoff_max_seconds, False

    async def _take_token(self, token: str, client: httpx.AsyncClient) -> None:
        """Keep the rotated token on disk first, then send with it (module docstring)."""
        if self.token_file is None:
            if not self._refused_rotation:
                log.error(
                    "the collector rotates this probe's token, but the token is not read from "
                    "a file (token_file), so a new one could not outlive a restart; keeping "
                    "the old one"
                )
                self._refused_rotation = True
            return
        try:
            await asyncio.to_thread(write_token_file, self.token_file, token)
        except OSError as exc:
            if not self._refused_rotation:
                log.error(
                    "cannot write the rotated token to %s (%s); keeping the old one",
                    self.token_file,
                    exc.strerror or exc,
                )
                self._refused_rotation = True
            return
        self._token = token
        client.headers["Authorization"] = f"Bearer {token}"
        log.info("token rotated: the new token is in %s and in use", self.token_file)

    def _failed(self, why: str) -> tuple[float, bool]:
        self._failures += 1
        self.counters.failures += 1
        if self.connected or self._failures == 1:
            log.warning("upload failed (%s); backing off and keeping the spool", why)
        self.connected = False
        return self.backoff(self._failures), False

    def backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(cap, initial × 2^(failures-1))]."""
        s = self.settings
        ceiling = min(
            s.backoff_max_seconds, s.backoff_initial_seconds * 2.0 ** min(failures - 1, 60)
        )
        return self._rng.uniform(0.0, ceiling)

    async def _wait(self, delay: float, stop: asyncio.Event, *, wake_early: bool) -> None:
        if self._sleep is not None:
            await self._sleep(delay)
            return
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake_early:
            self.wake.clear()
            waiters.append(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waiters, return_exceptions=True)


def write_token_file(path: Path, token: str) -> None:
    """Replace ``path`` with ``token`` atomically and durably: a temporary file in the same
    folder, readable by its owner only, fsynced, renamed over ``path``, the folder fsynced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def encode_batch(
    probe_id: str,
    boot_id: str,
    agent_version: str,
    sent_at: datetime,
    results: list[SpooledResult],
    spool_floor_seq: int | None,
) -> bytes:
    """The JSON body of a ``ReportBatch``, spliced from the spooled JSON without re-parsing it."""
    head: dict[str, object] = {
        "probe_id": probe_id,
        "boot_id": boot_id,
        "agent_version": agent_version,
        "sent_at": sent_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if spool_floor_seq is not None:
        head["spool_floor_seq"] = spool_floor_seq
    # Each spooled body is a JSON object without its seq: insert the seq as the first member.
    items = b",".join(b'{"seq":%d,%s' % (r.seq, r.body[1:]) for r in results)
    return orjson.dumps(head)[:-1] + b',"results":[' + items + b"]}"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _detail(response: httpx.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200]
    if isinstance(doc, dict) and isinstance(doc.get("detail"), str):
        return str(doc["detail"])
    return response.text[:200]
