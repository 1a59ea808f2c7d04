"""``http``: one HTTP(S) request over one uplink: status, timings, TLS certificate expiry.

The request is spoken over a plain asyncio connection on a socket bound to the uplink, one new
connection per run (no keep-alive), so the resolve, connect, TLS, wait and transfer phases are
each timed as a person opening the portal would pay them, with as little of our own work inside
the timed span as an HTTP/1.1 exchange allows. Redirects are followed on new connections.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from lomsong.config.probe import HttpCheck
from lomsong.errors import LomsongError
from lomsong.probes.checks.base import (
    CheckContext,
    Outcome,
    bind_error,
    describe_os_error,
    resolve,
)

MAX_REDIRECTS = 10
MAX_HEADER_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _BadResponse(LomsongError):
    """The server's answer is not HTTP/1.x as we can read it."""


async def run(spec: HttpCheck, ctx: CheckContext) -> Outcome:
    """Send the request, read at most ``max_body_bytes`` of the body, judge the status."""
    try:
        context = _ssl_context(spec.verify_tls, str(spec.ca_file) if spec.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        return Outcome(ok=False, error=f"ca_file {spec.ca_file}: {describe_os_error(exc)}")
    phases: dict[str, float] = {}
    url, method = spec.target, spec.method
    start = time.perf_counter()
    redirects = 0
    while True:
        try:
            answer = await _exchange(url, method, spec, ctx, context, phases)
        except _Failed as failed:
            return Outcome(
                ok=False,
                error=failed.error,
                duration_seconds=time.perf_counter() - start,
                details=_phase_details(phases),
            )
        status, location, expiry_days, body_bytes = answer
        if not (spec.follow_redirects and status in _REDIRECTS and location):
            break
        if redirects == MAX_REDIRECTS:
            return Outcome(
                ok=False,
                error=f"more than {MAX_REDIRECTS} redirects",
                duration_seconds=time.perf_counter() - start,
                status_code=status,
            )
        redirects += 1
        url = urljoin(url, location)
        if status == 303:
            method = "GET"
    duration = time.perf_counter() - start
    wanted = spec.expected_status
    ok = status in wanted if wanted else 200 <= status < 300
    details = _phase_details(phases)
    details.update(body_bytes=body_bytes, redirects=redirects)
    return Outcome(
        ok=ok,
        error=None if ok else f"status {status} not in {_expected_text(wanted)}",
        duration_seconds=duration,
        status_code=status if 100 <= status <= 599 else None,
        tls_expiry_days=expiry_days,
        details=details,
    )


class _Failed(LomsongError):
    """The exchange failed; ``error`` is the text the result carries (failure is data)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def _exchange(
    url: str,
    method: str,
    spec: HttpCheck,
    ctx: CheckContext,
    context: ssl.SSLContext,
    phases: dict[str, float],
) -> tuple[int, str | None, float | None, int]:
    """One request on one new connection: status, Location, certificate days, body bytes."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    t = time.perf_counter()
    resolved = await resolve(host, port, ctx.binding, socket.SOCK_STREAM)
    _add(phases, "resolve", t)
    if isinstance(resolved, Outcome):
        raise _Failed(resolved.error or "name resolution failed")
    family, address = resolved
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            ctx.binding.apply(sock)
        except OSError as exc:
            raise _Failed(bind_error(ctx.binding, exc)) from exc
        loop = asyncio.get_running_loop()
        t = time.perf_counter()
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            raise _Failed(describe_os_error(exc)) from exc
        _add(phases, "connect", t)
        t = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=context if https else None,
                server_hostname=host if https else None,
                limit=MAX_HEADER_BYTES,
            )
        except ssl.SSLCertVerificationError as exc:
            raise _Failed(f"tls certificate: {exc.verify_message}") from exc
        except ssl.SSLError as exc:
            raise _Failed(f"tls: {exc.reason or exc}") from exc
        except OSError as exc:
            raise _Failed(describe_os_error(exc)) from exc
        if https:
            _add(phases, "tls", t)
        expiry_days = _tls_expiry_days(writer.get_extra_info("ssl_object"))
        t = time.perf_counter()
        writer.write(_request(method, parts, port, https, spec, ctx))
        try:
            await writer.drain()
            status_line = await reader.readline()
            _add(phases, "wait", t)  # request sent, until the first line of the answer
            t = time.perf_counter()
            status, headers = await _read_head(status_line, reader)
            body_bytes = await _read_body(reader, method, status, headers, spec.max_body_bytes)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _Failed("connection closed before the response ended") from exc
        except (ValueError, _BadResponse, asyncio.LimitOverrunError) as exc:
            raise _Failed(f"malformed HTTP response: {str(exc)[:120]}") from exc
        except OSError as exc:
            raise _Failed(describe_os_error(exc)) from exc
        _add(phases, "transfer", t)
        return status, headers.get("location"), expiry_days, body_bytes
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


def _request(
    method: str, parts: Any, port: int, https: bool, spec: HttpCheck, ctx: CheckContext
) -> bytes:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port != (443 if https else 80):
        host = f"{host}:{port}"
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = {k.lower() for k in spec.headers}
    defaults = {
        "user-agent": f"User-Agent: lomsong-probe/{ctx.agent_version}",
        "accept": "Accept: */*",
        "connection": "Connection: close",
    }
    lines += [line for key, line in defaults.items() if key not in given]
    lines += [f"{k}: {v}" for k, v in spec.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(
    status_line: bytes, reader: asyncio.StreamReader
) -> tuple[int, dict[str, str]]:
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _BadResponse(f"status line {status_line[:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    size = len(status_line)
    while True:
        line = await reader.readline()
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise _BadResponse("headers longer than 64 KiB")
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:  # an interim answer: the real one follows
        return await _read_head(await reader.readline(), reader)
    return status, headers


async def _read_body(
    reader: asyncio.StreamReader, method: str, status: int, headers: dict[str, str], limit: int
) -> int:
    """Read the body up to ``limit`` bytes; return how much was read."""
    if method == "HEAD" or status in (204, 304):
        return 0
    got = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while got < limit:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            got += len(await reader.readexactly(size))
            await reader.readline()
        return got
    length = headers.get("content-length")
    if length is not None:
        want = min(int(length), limit)
        return len(await reader.readexactly(want)) if want else 0
    while got < limit:  # delimited by the end of the connection
        chunk = await reader.read(min(65_536, limit - got))
        if not chunk:
            break
        got += len(chunk)
    return got


def _add(phases: dict[str, float], name: str, since: float) -> None:
    phases[name] = phases.get(name, 0.0) + time.perf_counter() - since


def _phase_details(phases: dict[str, float]) -> dict[str, Any]:
    return {f"{k}_seconds": round(v, 6) for k, v in phases.items()}


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    # Loading the system's CA bundle blocks for tens of milliseconds: done once per setting,
    # not per run, so it never stalls the event loop while other checks are timing.
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def _tls_expiry_days(ssl_object: Any) -> float | None:
    if ssl_object is None:
        return None
    # The binary form is there even when verification is off, unlike the parsed dict.
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        not_after = certificate_not_after(der)
    except (ValueError, IndexError):
        return None
    return (not_after - datetime.now(UTC)).total_seconds() / 86_400.0


def certificate_not_after(der: bytes) -> datetime:
    """The ``notAfter`` time of a DER X.509 certificate (RFC 5280 §4.1), read without a library.

    The walk goes Certificate → tbsCertificate → [version] serial signature issuer → validity.
    """

    def element(pos: int) -> tuple[int, int, int]:
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(der[pos : pos + size], "big")
            pos += size
        return tag, pos, pos + length

    _, cert_body, _ = element(0)
    _, tbs_body, _ = element(cert_body)
    tag, _, end = element(tbs_body)
    pos = end if tag == 0xA0 else tbs_body  # the explicit [0] version is optional
    for _skip in ("serial", "signature", "issuer"):
        pos = element(pos)[2]
    tag, validity, _ = element(pos)
    not_before_end = element(validity)[2]
    tag, start, end = element(not_before_end)
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; years 50–99 are 19xx (RFC 5280 §4.1.2.5.1)
        moment = datetime.strptime(text, "%y%m%d%H%M%SZ")
    elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        moment = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"unexpected time tag 0x{tag:02x} in the certificate's validity")
    return moment.replace(tzinfo=UTC)


def _expected_text(wanted: list[int]) -> str:
    return "2xx" if not wanted else "{" + ", ".join(str(s) for s in wanted) + "}"
