"""Settings of the probe agent (``lomsong probe run``); see ``config/probe.toml``.

A probe has uplinks (fibre, each operator's 4G modem) and checks. Every network check runs over
each uplink it names, bound to that uplink's source address or interface, so the same target is
measured separately over every path. Unknown keys are refused everywhere.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    SettingsConfigDict,
)

from lomsong.config.loading import FileSettings, load_settings
from lomsong.errors import ConfigError
from lomsong.wire import NAME_PATTERN

UplinkName = Annotated[str, Field(pattern=NAME_PATTERN)]
Interval = Annotated[float, Field(ge=1.0, le=86_400.0)]
Timeout = Annotated[float, Field(gt=0.0, le=600.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UplinkSettings(_Section):
    """One network path of the probe; checks over it leave by its address or interface."""

    name: UplinkName
    #: Local address the checks bind to; the policy routing of the box sends it out this path.
    source_address: str | None = None
    #: Network interface the checks bind to (``SO_BINDTODEVICE``; needs CAP_NET_RAW).
    interface: Annotated[str, Field(min_length=1, max_length=15)] | None = None
    #: The operator of a cellular uplink (``viettel``, ``vinaphone`` …), for people reading logs.
    operator: str | None = None

    @field_validator("source_address")
    @classmethod
    def _an_ip_address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)  # ValueError names the value
        return value


class _CheckBase(_Section):
    interval_seconds: Interval = 30.0
    #: Each run starts up to this many seconds late, so checks do not all fire at once.
    jitter_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] = 2.0
    #: A run that takes longer ends as a result with ``ok=false, error="timeout"``.
    timeout_seconds: Timeout = 10.0

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> _CheckBase:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds:g}) exceeds interval_seconds "
                f"({self.interval_seconds:g})"
            )
        return self


class _NetworkCheck(_CheckBase):
    target: Annotated[str, Field(min_length=1, max_length=512)]
    #: Uplinks to measure over; none listed means every uplink of the probe.
    uplinks: list[UplinkName] | None = None


class IcmpCheck(_NetworkCheck):
    """Echo requests: loss, min/avg/max round trip and jitter."""

    kind: Literal["icmp"]
    count: Annotated[int, Field(ge=1, le=100)] = 5
    packet_interval_seconds: Annotated[float, Field(ge=0.01, le=10.0)] = 0.2
    payload_size: Annotated[int, Field(ge=0, le=65_000)] = 56
    #: ``datagram`` (unprivileged ICMP sockets), ``raw`` (CAP_NET_RAW), or ``auto``: try both.
    socket: Literal["auto", "datagram", "raw"] = "auto"
    family: Literal[4, 6] | None = None


class TcpCheck(_NetworkCheck):
    """Time to complete a TCP handshake with ``host:port``."""

    kind: Literal["tcp"]

    @field_validator("target")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value


class HttpCheck(_NetworkCheck):
    """An HTTP(S) request: status, timings and days until the TLS certificate expires."""

    kind: Literal["http"]
    method: Literal["GET", "HEAD"] = "GET"
    #: Status codes that count as success; empty means any 2xx.
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = []
    follow_redirects: bool = True
    verify_tls: bool = True
    #: Extra CA certificates (PEM) to trust, for a server with a private CA.
    ca_file: Path | None = None
    headers: dict[str, str] = {}
    #: At most this much of the body is read; the rest is not waited for.
    max_body_bytes: Annotated[int, Field(ge=0, le=64 * 2**20)] = 2**20

    @field_validator("target")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value


class DnsCheck(_NetworkCheck):
    """Resolve ``target`` through one given server."""

    kind: Literal["dns"]
    #: The server to ask: ``ip`` or ``ip:port`` (``[v6]:port``).
    server: str
    record_type: Literal["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"] = "A"
    transport: Literal["udp", "tcp"] = "udp"
    #: Success needs at least one answer record, not only a NOERROR reply.
    require_answer: bool = True

    @field_validator("server")
    @classmethod
    def _server_address(cls, value: str) -> str:
        host, _ = split_host_port(value, default_port=53)
        ipaddress.ip_address(host)
        return value


class HeartbeatCheck(_CheckBase):
    """The probe itself: boot, uptime, load, free disk, spool depth and drops."""

    kind: Literal["heartbeat"]
    target: Annotated[str, Field(min_length=1, max_length=512)] = "self"
    timeout_seconds: Timeout = 5.0


class ModemCheck(_CheckBase):
    """A cellular modem's radio readings through ModemManager's ``mmcli``."""

    kind: Literal["modem"]
    #: The uplink this modem carries.
    uplink: UplinkName
    #: The modem as ``mmcli -m`` takes it: an index, a D-Bus path or ``any``.
    modem: Annotated[str, Field(min_length=1, max_length=128)] = "0"
    #: Shown as the result's target; defaults to ``modem<modem>``.
    target: Annotated[str, Field(max_length=512)] = ""
    #: The command (and leading arguments) that runs ``mmcli``.
    mmcli_command: Annotated[list[str], Field(min_length=1)] = ["mmcli"]
    #: Asks ModemManager to refresh extended signal readings this often (``--signal-setup``);
    #: 0 leaves its setting alone.
    signal_refresh_seconds: Annotated[int, Field(ge=0, le=3_600)] = 10

    @model_validator(mode="after")
    def _default_target(self) -> ModemCheck:
        if not self.target:
            self.target = f"modem{self.modem}"
        return self


CheckSettings = Annotated[
    IcmpCheck | TcpCheck | HttpCheck | DnsCheck | HeartbeatCheck | ModemCheck,
    Field(discriminator="kind"),
]
NetworkCheck = IcmpCheck | TcpCheck | HttpCheck | DnsCheck


class UploadSettings(_Section):
    """How results travel to the collector."""

    #: Results per request; the collector takes at most 5,000 by default. As many pending
    #: results are sent at once, without waiting for ``batch_deadline_seconds``.
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    #: Results wait in the spool until the oldest pending one is this old (or ``batch_size``
    #: are pending), so a round of checks travels in one request: on metered 4G every request
    #: costs its headers. 0 sends each result as soon as it is spooled. At most 60 s, so a
    #: heartbeat reaches the collector well within its silence threshold (3 × 30 s).
    batch_deadline_seconds: Annotated[float, Field(ge=0.0, le=60.0)] = 10.0
    #: Pause between uploads once the spool is empty.
    interval_seconds: Annotated[float, Field(ge=0.1, le=3_600.0)] = 10.0
    #: How often the agent asks the collector for its check profile (``If-None-Match``: a 304
    #: of about 520 bytes over TLS while nothing changed, 4.5 MB a day at 10 s on a metered
    #: SIM): a change reaches the agent within this.
    config_interval_seconds: Annotated[float, Field(ge=0.1, le=86_400.0)] = 10.0
    timeout_seconds: Timeout = 30.0
    #: Exponential backoff with full jitter between failed attempts: the n-th wait is uniform
    #: in [0, min(backoff_max_seconds, backoff_initial_seconds × 2ⁿ)].
    backoff_initial_seconds: Annotated[float, Field(gt=0.0, le=600.0)] = 1.0
    backoff_max_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] = 300.0
    #: gzip level of request bodies; 0 sends plain JSON.
    gzip_level: Annotated[int, Field(ge=0, le=9)] = 6
    #: Extra CA certificates (PEM) to trust for the collector's HTTPS, for a private CA.
    ca_file: Path | None = None


class ProbeSettings(FileSettings):
    """Everything the agent reads at start; unknown keys are refused."""

    model_config = SettingsConfigDict(
        env_prefix="LOMSONG_PROBE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: The probe's id as registered at the collector (``lomsong probe register --id``).
    probe_id: Annotated[str, Field(pattern=NAME_PATTERN)]
    #: Base URL of the collector, e.g. ``https://lomsong.example.vn``.
    collector_url: str
    #: The probe's bearer token; better given as ``token_file`` or ``LOMSONG_PROBE_TOKEN``.
    token: SecretStr | None = None
    #: A file holding the token (first line), e.g. a systemd credential.
    token_file: Path | None = None
    #: The durable spool of results not yet acknowledged by the collector (SQLite).
    spool_path: Path = Path("/var/lib/lomsong/spool.db")
    #: When the spool holds more than this, the oldest results are dropped (and counted).
    spool_max_bytes: Annotated[int, Field(ge=2**20, le=2**40)] = 256 * 2**20
    #: Results older than this are dropped from the spool (and counted).
    spool_max_age_seconds: Annotated[float, Field(ge=3_600.0, le=366 * 86_400.0)] = 30 * 86_400.0
    #: At most this many checks run at once.
    max_concurrency: Annotated[int, Field(ge=1, le=1_024)] = 16
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``text`` for people, ``json`` for journald and Loki: one object per line.
    log_format: Literal["text", "json"] = "text"
    #: Where the id of this boot is read; a new id tells the collector the box restarted, which
    #: with no results in the gap classifies an outage as a power cut. The kernel's by default.
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    upload: UploadSettings = UploadSettings()
    uplinks: list[UplinkSettings] = []
    #: ``collector``: run the checks of the profile the collector serves this probe (fetched
    #: with the uploads, applied live; the last good one is kept next to the spool), and the
    #: ``checks`` below only while the collector serves none. ``local``: only the ``checks``
    #: below, never a profile.
    checks_source: Literal["collector", "local"] = "collector"
    checks: list[CheckSettings] = []

    @field_validator("collector_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value.rstrip("/")

    def bearer_token(self) -> str:
        """The token from ``token`` or ``token_file``; a ``ConfigError`` when neither gives one."""
        if self.token is not None and self.token.get_secret_value():
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"setting token_file (LOMSONG_PROBE_TOKEN_FILE): cannot read "
                    f"{str(self.token_file)!r}: {exc.strerror}"
                ) from exc
            lines = text.strip().splitlines()
            if lines and lines[0].strip():
                return lines[0].strip()
            raise ConfigError(
                f"setting token_file (LOMSONG_PROBE_TOKEN_FILE): {str(self.token_file)!r} is empty"
            )
        raise ConfigError(
            "setting token (LOMSONG_PROBE_TOKEN): the agent needs the probe's token; "
            "set token, token_file or LOMSONG_PROBE_TOKEN"
        )


def load_probe_settings(path: Path | str | None = None, **overrides: Any) -> ProbeSettings:
    """Load and validate the agent's settings; raise ``ConfigError`` on any problem."""
    settings = load_settings(ProbeSettings, path, **overrides)
    check_references(settings, str(path) if path is not None else "defaults")
    return settings


def check_references(settings: ProbeSettings, source: str) -> None:
    """Uplink names are unique and every check names only uplinks that exist."""
    names = [u.name for u in settings.uplinks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{source}: setting uplinks[{i}].name: duplicate uplink {name!r}")
    known = ", ".join(repr(n) for n in names) or "none"
    for i, check in enumerate(settings.checks):
        if isinstance(check, ModemCheck):
            wanted = [(f"checks[{i}].uplink", check.uplink)]
        elif isinstance(check, HeartbeatCheck) or check.uplinks is None:
            wanted = []
        else:
            wanted = [(f"checks[{i}].uplinks[{j}]", u) for j, u in enumerate(check.uplinks)]
        for where, name in wanted:
            if name not in names:
                raise ConfigError(
                    f"{source}: setting {where}: unknown uplink {name!r} (uplinks: {known})"
                )


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """``"host:443"`` / ``"[::1]:443"`` / ``"::1"`` → host and port; ValueError if malformed."""
    host, port_text = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected host:port or [ipv6]:port")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if not port_text:
        if default_port is None:
            raise ValueError("expected host:port, e.g. dichvucong.gov.vn:443")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise ValueError(f"port {port_text!r} is not in 1..65535")
    if not host:
        raise ValueError("expected host:port with a host")
    return host, int(port_text)
