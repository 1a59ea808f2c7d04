"""Check kinds against real loopback servers, over a bound uplink, through the runner."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lomsong.config.probe import (
    DnsCheck,
    HeartbeatCheck,
    HttpCheck,
    IcmpCheck,
    TcpCheck,
    UplinkSettings,
)
from lomsong.probes.agent import Job, Measurement, Runner, encode_result
from lomsong.probes.checks.base import KINDS, Binding, check_function
from lomsong.probes.checks.http import certificate_not_after
from lomsong.probes.checks.icmp import NO_SOCKET
from lomsong.wire import Result
from tests.conftest import free_port
from tests.waiting import wait_until

from .conftest import Certificate, Server, probe_settings


def measure(spec: Any, tmp_path: Path, binding: Binding | None = None) -> Measurement:
    binding = binding or Binding("fibre")
    job = Job(f"t:{spec.kind}", spec.kind, spec.target, spec, binding)
    m = asyncio.run(Runner(probe_settings(tmp_path)).measure(job))
    # Every outcome, failed or not, must be a valid wire result.
    Result.model_validate_json(b'{"seq":1,' + encode_result(m)[1:])
    return m


def test_every_kind_is_one_module_in_the_registry() -> None:
    folder = Path(__file__).parents[2] / "probes" / "checks"
    stems = {p.stem for p in folder.glob("*.py")} - {"base"}
    assert stems == set(KINDS)
    for kind in KINDS:
        assert callable(check_function(kind))
    with pytest.raises(ValueError, match="unknown check kind 'ping'"):
        check_function("ping")


# -- tcp ---------------------------------------------------------------------------------------


def test_tcp_connects_from_the_uplinks_source_address(tcp_server: Server, tmp_path: Path) -> None:
    spec = TcpCheck(kind="tcp", target=tcp_server.address)
    m = measure(spec, tmp_path, Binding("viettel-4g", source_address="127.0.0.2"))
    assert m.outcome.ok, m.outcome.error
    # measured within the run (run_seconds is rounded to the microsecond)
    assert 0 < (m.outcome.duration_seconds or 0) <= m.outcome.details["run_seconds"] + 1e-6
    assert m.wire()["uplink"] == "viettel-4g"
    # The server saw the connection come from the uplink's address, not the default one; the
    # kernel completes the handshake before the server's thread accepts, so wait for it.
    wait_until(lambda: tcp_server.peers, timeout=5, what="the server accepts the connection")
    assert tcp_server.peers == ["127.0.0.2"]


def test_tcp_refused_is_a_failed_result(tmp_path: Path) -> None:
    m = measure(TcpCheck(kind="tcp", target=f"127.0.0.1:{free_port()}"), tmp_path)
    assert (m.outcome.ok, m.outcome.error) == (False, "connection refused")


def test_binding_to_an_interface(tcp_server: Server, tmp_path: Path) -> None:
    spec = TcpCheck(kind="tcp", target=tcp_server.address)
    m = measure(spec, tmp_path, Binding("fibre", interface="lo"))
    if os.geteuid() == 0:
        assert m.outcome.ok, m.outcome.error
    else:  # SO_BINDTODEVICE needs CAP_NET_RAW
        assert (
            m.outcome.error == "cannot bind to uplink fibre (interface lo): operation not permitted"
        )


def test_an_uplink_whose_interface_is_gone_says_so(tcp_server: Server, tmp_path: Path) -> None:
    spec = TcpCheck(kind="tcp", target=tcp_server.address)
    m = measure(spec, tmp_path, Binding("vnpt-4g", interface="wwan9"))
    assert not m.outcome.ok
    assert m.outcome.error is not None
    assert m.outcome.error.startswith("cannot bind to uplink vnpt-4g (interface wwan9): ")
    assert tcp_server.peers == []


def test_a_source_address_the_box_does_not_have(tmp_path: Path) -> None:
    spec = TcpCheck(kind="tcp", target="127.0.0.1:9")
    m = measure(spec, tmp_path, Binding("fibre", source_address="192.0.2.77"))
    assert m.outcome.error == (
        "cannot bind to uplink fibre (source 192.0.2.77): cannot assign requested address"
    )


# -- http --------------------------------------------------------------------------------------


def http_spec(url: str, **extra: Any) -> HttpCheck:
    return HttpCheck(kind="http", target=url, **extra)


def test_http_status_and_timings(http_server: Server, tmp_path: Path) -> None:
    m = measure(http_spec(f"http://{http_server.address}/"), tmp_path)
    o = m.outcome
    assert o.ok and o.status_code == 200 and o.error is None
    assert o.tls_expiry_days is None
    assert 0 < (o.duration_seconds or 0) <= o.details["run_seconds"] + 1e-6
    assert {"connect_seconds", "wait_seconds"} <= set(o.details)
    assert o.details["body_bytes"] == len(b"Cong dich vu cong quoc gia\n")


def test_http_unexpected_status_fails_with_the_status(http_server: Server, tmp_path: Path) -> None:
    m = measure(http_spec(f"http://{http_server.address}/status/503"), tmp_path)
    assert (m.outcome.ok, m.outcome.status_code, m.outcome.error) == (
        False,
        503,
        "status 503 not in 2xx",
    )
    m = measure(
        http_spec(f"http://{http_server.address}/status/404", expected_status=[404]), tmp_path
    )
    assert m.outcome.ok


def test_http_follows_redirects_or_not(http_server: Server, tmp_path: Path) -> None:
    url = f"http://{http_server.address}/moved"
    assert measure(http_spec(url), tmp_path).outcome.details["redirects"] == 1
    m = measure(http_spec(url, follow_redirects=False, expected_status=[302]), tmp_path)
    assert (m.outcome.ok, m.outcome.status_code) == (True, 302)


@pytest.mark.parametrize(
    ("path", "body_bytes"), [("/chunked", len(b"Cong dich vu cong\n")), ("/until-close", 5000)]
)
def test_http_bodies_chunked_or_until_close(
    http_server: Server, tmp_path: Path, path: str, body_bytes: int
) -> None:
    m = measure(http_spec(f"http://{http_server.address}{path}"), tmp_path)
    assert m.outcome.ok, m.outcome.error
    assert m.outcome.details["body_bytes"] == body_bytes
    m = measure(http_spec(f"http://{http_server.address}{path}", max_body_bytes=3), tmp_path)
    assert m.outcome.ok and m.outcome.details["body_bytes"] <= 5


def test_http_redirect_loop_is_a_failure(http_server: Server, tmp_path: Path) -> None:
    m = measure(http_spec(f"http://{http_server.address}/loop"), tmp_path)
    assert (m.outcome.ok, m.outcome.error, m.outcome.status_code) == (
        False,
        "more than 10 redirects",
        302,
    )


def test_http_over_the_uplinks_source_address(http_server: Server, tmp_path: Path) -> None:
    m = measure(
        http_spec(f"http://{http_server.address}/"),
        tmp_path,
        Binding("viettel-4g", source_address="127.0.0.5"),
    )
    assert m.outcome.ok and http_server.peers == ["127.0.0.5"]


def test_https_reports_days_until_the_certificate_expires(
    https_server: Server, self_signed: Certificate, tmp_path: Path
) -> None:
    spec = http_spec(f"https://{https_server.address}/", ca_file=self_signed.cert_file)
    m = measure(spec, tmp_path)
    assert m.outcome.ok, m.outcome.error
    expected = (self_signed.not_after - datetime.now(UTC)).total_seconds() / 86_400
    assert m.outcome.tls_expiry_days == pytest.approx(expected, abs=0.01)
    assert "tls_seconds" in m.outcome.details


def test_https_with_an_untrusted_certificate(
    https_server: Server, self_signed: Certificate, tmp_path: Path
) -> None:
    m = measure(http_spec(f"https://{https_server.address}/"), tmp_path)
    assert not m.outcome.ok
    assert m.outcome.error == "tls certificate: self-signed certificate"
    # Without verification the expiry is still read from the certificate itself.
    m = measure(http_spec(f"https://{https_server.address}/", verify_tls=False), tmp_path)
    assert m.outcome.ok and m.outcome.tls_expiry_days is not None
    assert m.outcome.tls_expiry_days == pytest.approx(45, abs=0.01)


def test_certificate_reader_matches_the_ssl_module(self_signed: Certificate) -> None:
    import ssl

    der = ssl.PEM_cert_to_DER_cert(self_signed.cert_file.read_text())
    assert certificate_not_after(der) == self_signed.not_after


def test_a_hung_server_becomes_a_timeout_result(http_server: Server, tmp_path: Path) -> None:
    spec = http_spec(f"http://{http_server.address}/hang", timeout_seconds=0.5)
    m = measure(spec, tmp_path)  # the server answers only once the test is over
    assert (m.outcome.ok, m.outcome.error) == (False, "timeout")
    assert not http_server.release.is_set() and m.outcome.duration_seconds == 0.5


# -- dns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_dns_resolves_through_the_given_server(
    dns_server: Server, tmp_path: Path, transport: str
) -> None:
    spec = DnsCheck(
        kind="dns", target="ubnd.caobang.gov.vn", server=dns_server.address, transport=transport
    )
    m = measure(spec, tmp_path, Binding("fibre", source_address="127.0.0.3"))
    assert m.outcome.ok, m.outcome.error
    assert m.outcome.details["answers"] == ["192.0.2.10"]
    assert dns_server.peers == ["127.0.0.3"]


def test_dns_nxdomain_and_no_answer(dns_server: Server, tmp_path: Path) -> None:
    spec = DnsCheck(kind="dns", target="khong-co.gov.vn", server=dns_server.address)
    m = measure(spec, tmp_path)
    assert (m.outcome.ok, m.outcome.error) == (False, "rcode NXDOMAIN")
    spec = DnsCheck(
        kind="dns", target="dichvucong.gov.vn", server=dns_server.address, record_type="AAAA"
    )
    assert measure(spec, tmp_path).outcome.error == "no AAAA record in the answer"


def test_dns_server_that_never_answers_is_a_timeout(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        spec = DnsCheck(
            kind="dns",
            target="dichvucong.gov.vn",
            server=f"127.0.0.1:{silent.getsockname()[1]}",
            timeout_seconds=0.3,
        )
        m = measure(spec, tmp_path)
    finally:
        silent.close()
    assert (m.outcome.ok, m.outcome.error) == (False, "timeout")


# -- icmp --------------------------------------------------------------------------------------


def _datagram_allowed(gid: int) -> bool:
    low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    return low <= gid <= high


def test_icmp_over_loopback(tmp_path: Path) -> None:
    spec = IcmpCheck(kind="icmp", target="127.0.0.1", count=4, packet_interval_seconds=0.01)
    m = measure(spec, tmp_path, Binding("fibre", source_address="127.0.0.1"))
    o = m.outcome
    if not o.ok:
        assert o.error == NO_SOCKET  # an unprivileged run where ping_group_range excludes us
        return
    assert (o.packets_sent, o.packets_received) == (4, 4)
    assert o.rtt_min_seconds is not None and o.rtt_max_seconds is not None
    assert 0 <= o.rtt_min_seconds <= (o.duration_seconds or 0) <= o.rtt_max_seconds
    assert o.rtt_max_seconds <= o.details["run_seconds"] + 1e-6
    assert o.jitter_seconds is not None and 0 <= o.jitter_seconds <= o.rtt_max_seconds
    assert o.details["loss"] == 0


def test_icmp_datagram_sockets_follow_ping_group_range(tmp_path: Path) -> None:
    spec = IcmpCheck(kind="icmp", target="127.0.0.1", count=2, socket="datagram")
    m = measure(spec, tmp_path)
    if _datagram_allowed(os.getegid()):
        assert m.outcome.ok and m.outcome.details["socket"] == "datagram"
    else:
        assert m.outcome.error == (
            "icmp: unprivileged ICMP datagram sockets are not permitted; "
            "add the agent's group to net.ipv4.ping_group_range"
        )


def test_icmp_says_clearly_when_no_socket_is_allowed(tmp_path: Path) -> None:
    # The child runs without CAP_NET_RAW (setpriv, from util-linux, drops it from the bounding
    # set), so only datagram sockets are left, and ping_group_range decides about those.
    code = (
        "import asyncio, json\n"
        "from lomsong.config.probe import IcmpCheck\n"
        "from lomsong.probes.checks.base import Binding, CheckContext\n"
        "from lomsong.probes.checks.icmp import run\n"
        "spec = IcmpCheck(kind='icmp', target='127.0.0.1', count=1)\n"
        "o = asyncio.run(run(spec, CheckContext(Binding(), 5.0, 'test')))\n"
        "print(json.dumps([o.ok, o.error]))\n"
    )
    out = subprocess.run(
        ["setpriv", "--bounding-set", "-net_raw", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    if _datagram_allowed(os.getegid()):
        assert out.strip() == "[true, null]"
    else:
        assert out.strip() == f'[false, "{NO_SOCKET}"]'


def test_icmp_to_an_unreachable_address_loses_every_packet(tmp_path: Path) -> None:
    # 127.0.0.1 bound as source to a TEST-NET address: the kernel refuses or nothing answers.
    spec = IcmpCheck(
        kind="icmp", target="127.0.0.1", count=2, packet_interval_seconds=0.01, timeout_seconds=1
    )
    m = measure(spec, tmp_path, Binding("fibre", source_address="192.0.2.1"))
    assert not m.outcome.ok
    assert m.outcome.error is not None and m.outcome.error.startswith("cannot bind to uplink fibre")


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_reads_the_box(tmp_path: Path) -> None:
    m = measure(HeartbeatCheck(kind="heartbeat"), tmp_path, Binding())
    o = m.outcome
    assert o.ok
    assert o.uptime_seconds is not None and o.uptime_seconds > 0
    assert o.disk_free_bytes is not None and o.disk_free_bytes > 0
    assert o.memory_rss_bytes is not None and 10 * 2**20 < o.memory_rss_bytes < 2**31
    assert o.details["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert m.wire()["uplink"] is None and m.wire()["target"] == "self"


def test_uplink_settings_validate_the_source_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        UplinkSettings(name="fibre", source_address="10.0.0.300")
