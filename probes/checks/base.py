"""The one interface every check kind implements, and the registry of kinds.

A check kind is one module in this folder, named for its kind (``icmp.py`` …), with an
``async def run(spec, ctx) -> Outcome``. The registry is keyed by file stem and imports a module
only when its kind is first used, so a probe without a modem never loads the modem code.

A check reports failure as data: it returns an ``Outcome`` with ``ok=False`` and an ``error``
text. The runner owns the timeout and turns an exception escaping a check (a bug) into a failed
outcome too, so nothing a check does can stop the agent.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from lomsong.config.probe import UplinkSettings
from lomsong.wire import CHECK_KINDS, Signal

#: Kinds in the order the ``probe once`` table shows them; each is a module in this folder.
KINDS: tuple[str, ...] = CHECK_KINDS


@dataclass(slots=True)
class Outcome:
    """What one run of a check measured: the fields of a wire ``Result`` a check may set."""

    ok: bool
    error: str | None = None
    duration_seconds: float | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    rtt_min_seconds: float | None = None
    rtt_max_seconds: float | None = None
    jitter_seconds: float | None = None
    status_code: int | None = None
    tls_expiry_days: float | None = None
    signal: Signal | None = None
    uptime_seconds: float | None = None
    load1: float | None = None
    disk_free_bytes: int | None = None
    memory_rss_bytes: int | None = None
    spool_depth: int | None = None
    spool_dropped: int | None = None
    spool_refused: int | None = None
    #: The checks the agent runs (heartbeat): wire ``RunningCheck`` documents.
    checks: list[dict[str, str]] | None = None
    #: The configuration the agent runs, refused and why (heartbeat).
    config_version: str | None = None
    config_refused_version: str | None = None
    config_error: str | None = None
    #: Local detail for people (``probe once``, logs); never sent on the wire.
    details: dict[str, Any] = field(default_factory=dict)

    def wire_fields(self) -> dict[str, Any]:
        """The fields that go on the wire, without the ``None`` ones."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "details":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Signal):
                value = value.model_dump(exclude_none=True)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a check's packets leave from: an uplink's source address and/or interface."""

    uplink: str | None = None
    source_address: str | None = None
    interface: str | None = None

    @classmethod
    def of(cls, uplink: UplinkSettings | None) -> Binding:
        if uplink is None:
            return cls()
        return cls(uplink.name, uplink.source_address, uplink.interface)

    def family_allowed(self, family: int) -> bool:
        """A source address pins the address family of the destination."""
        if self.source_address is None:
            return True
        return (":" in self.source_address) == (family == socket.AF_INET6)

    def apply(self, sock: socket.socket) -> None:
        """Bind ``sock`` to the interface and source address; OSError if not permitted."""
        if self.interface is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode() + b"\0"
            )
        if self.source_address is not None:
            sock.bind((self.source_address, 0))


class SpoolStats(Protocol):
    @property
    def depth(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def refused(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a run gets besides its own settings."""

    binding: Binding
    #: The whole run must end within this; checks use it to size their own waits.
    timeout_seconds: float
    agent_version: str
    #: Reads the spool's depth and drop count (the heartbeat reports them).
    spool_stats: Callable[[], Awaitable[SpoolStats]] | None = None
    #: Where the spool lives, for the free disk space the heartbeat reports.
    spool_dir: str = "."
    #: (uplink or None, kind, target) of every check the agent runs (the heartbeat lists them).
    running_checks: tuple[tuple[str | None, str, str], ...] = ()
    #: (applied version, refused version, error) of the configuration (the heartbeat says it)
    config: tuple[str | None, str | None, str | None] | None = None


CheckFunction = Callable[[Any, CheckContext], Awaitable[Outcome]]


def check_function(kind: str) -> CheckFunction:
    """The ``run`` of the module named ``kind``; ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown check kind {kind!r}; expected one of {set(KINDS)}")
    module = importlib.import_module(f"lomsong.probes.checks.{kind}")
    run: CheckFunction = module.run
    return run


def describe_os_error(exc: OSError) -> str:
    """A short error text for a socket failure, the same on every kind: ``connection refused``."""
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    # asyncio puts its own words in strerror ("Connect call failed ('10.0.0.1', 443)"): the
    # errno's standard text is shorter and the same on every kind of check.
    text = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
    return text[0].lower() + text[1:] if text else type(exc).__name__


async def resolve(
    host: str, port: int, binding: Binding, socktype: int, family: int = 0
) -> tuple[int, tuple[str, int]] | Outcome:
    """The first address of ``host`` the uplink can reach, or a failed outcome saying why."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socktype)
    except OSError as exc:
        return Outcome(ok=False, error=describe_os_error(exc))
    for family, _type, _proto, _name, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and binding.family_allowed(family):
            return family, (str(address[0]), int(address[1]))
    return Outcome(
        ok=False,
        error=f"no address of {host!r} in the family of source {binding.source_address}",
    )


def bind_error(binding: Binding, exc: OSError) -> str:
    """Why a socket could not be tied to its uplink, naming the uplink and what was asked."""
    where = ", ".join(
        part
        for part in (
            f"interface {binding.interface}" if binding.interface else "",
            f"source {binding.source_address}" if binding.source_address else "",
        )
        if part
    )
    return f"cannot bind to uplink {binding.uplink} ({where}): {describe_os_error(exc)}"
