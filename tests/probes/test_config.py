"""Probe settings: the example documents every option; bad files give one exact line each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lomsong.config.probe import (
    DnsCheck,
    HeartbeatCheck,
    HttpCheck,
    IcmpCheck,
    ModemCheck,
    ProbeSettings,
    TcpCheck,
    UplinkSettings,
    UploadSettings,
    load_probe_settings,
    split_host_port,
)
from lomsong.config.profiles import (
    ProfileDefaults,
    ProfileLayer,
    check_adapter,
    merge,
    parse_toml,
)
from lomsong.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "probe.toml"
#: the example layers, in the order they merge
PROFILES = [
    ROOT / "config" / f"profile-{name}.toml" for name in ("national", "province-04", "probe")
]
HEAD = 'probe_id = "cb-x"\ncollector_url = "http://127.0.0.1:8080"\n'

# (file contents, the exact one-line message after "<file>: ")
BAD_FILES = [
    (
        'probe_id = "cb-x"\n',
        "setting collector_url (LOMSONG_PROBE_COLLECTOR_URL): Field required (got {'probe_id': 'cb-x'})",
    ),
    (
        HEAD.replace("cb-x", "Cb X"),
        "setting probe_id (LOMSONG_PROBE_PROBE_ID): String should match pattern '^[a-z0-9][a-z0-9._-]{0,63}$' (got 'Cb X')",
    ),
    (
        HEAD.replace("http://127.0.0.1:8080", "ftp://x"),
        "setting collector_url (LOMSONG_PROBE_COLLECTOR_URL): Value error, expected an http:// or https:// URL with a host (got 'ftp://x')",
    ),
    (
        HEAD + "spool_max_bytes = 10\n",
        "setting spool_max_bytes (LOMSONG_PROBE_SPOOL_MAX_BYTES): Input should be greater than or equal to 1048576 (got 10)",
    ),
    (HEAD + 'colector_url = "x"\n', "unknown setting 'colector_url'"),
    (
        HEAD + "[upload]\nbatch_size = 0\n",
        "setting upload.batch_size (LOMSONG_PROBE_UPLOAD__BATCH_SIZE): Input should be greater than or equal to 1 (got 0)",
    ),
    (HEAD + "[upload]\nbatchsize = 10\n", "unknown setting 'upload.batchsize'"),
    (
        HEAD + '[[uplinks]]\nname = "fibre"\nsource_address = "10.0.0.300"\n',
        "setting uplinks[0].source_address (LOMSONG_PROBE_UPLINKS__0__SOURCE_ADDRESS): Value error, '10.0.0.300' does not appear to be an IPv4 or IPv6 address (got '10.0.0.300')",
    ),
    (
        HEAD + '[[uplinks]]\nname = "fibre"\n[[uplinks]]\nname = "fibre"\n',
        "setting uplinks[1].name: duplicate uplink 'fibre'",
    ),
    (
        HEAD + '[[checks]]\nkind = "ping"\ntarget = "x"\n',
        "setting checks[0] (LOMSONG_PROBE_CHECKS__0): Input tag 'ping' found using 'kind' does not match any of the expected tags: 'icmp', 'tcp', 'http', 'dns', 'heartbeat', 'modem' (got {'kind': 'ping', 'target': 'x'})",
    ),
    (
        HEAD + '[[checks]]\nkind = "icmp"\ntarget = "x"\ncount = 0\n',
        "setting checks[0].icmp.count (LOMSONG_PROBE_CHECKS__0__ICMP__COUNT): Input should be greater than or equal to 1 (got 0)",
    ),
    (
        HEAD
        + '[[checks]]\nkind = "icmp"\ntarget = "x"\ninterval_seconds = 5\ntimeout_seconds = 10\n',
        "setting checks[0].icmp (LOMSONG_PROBE_CHECKS__0__ICMP): Value error, timeout_seconds (10) exceeds interval_seconds (5) (got {'kind': 'icmp', 'target': 'x', 'interval_seconds': 5, 'timeout_seconds': 10})",
    ),
    (
        HEAD + '[[checks]]\nkind = "tcp"\ntarget = "dichvucong.gov.vn"\n',
        "setting checks[0].tcp.target (LOMSONG_PROBE_CHECKS__0__TCP__TARGET): Value error, expected host:port, e.g. dichvucong.gov.vn:443 (got 'dichvucong.gov.vn')",
    ),
    (
        HEAD + '[[checks]]\nkind = "http"\ntarget = "dichvucong.gov.vn"\n',
        "setting checks[0].http.target (LOMSONG_PROBE_CHECKS__0__HTTP__TARGET): Value error, expected an http:// or https:// URL with a host (got 'dichvucong.gov.vn')",
    ),
    (
        HEAD + '[[checks]]\nkind = "dns"\ntarget = "x.vn"\nserver = "resolver.local"\n',
        "setting checks[0].dns.server (LOMSONG_PROBE_CHECKS__0__DNS__SERVER): Value error, 'resolver.local' does not appear to be an IPv4 or IPv6 address (got 'resolver.local')",
    ),
    (
        HEAD
        + '[[uplinks]]\nname = "fibre"\n[[checks]]\nkind = "tcp"\ntarget = "a:1"\nuplinks = ["viettel-4g"]\n',
        "setting checks[0].uplinks[0]: unknown uplink 'viettel-4g' (uplinks: 'fibre')",
    ),
    (
        HEAD + '[[checks]]\nkind = "modem"\nuplink = "viettel-4g"\n',
        "setting checks[0].uplink: unknown uplink 'viettel-4g' (uplinks: none)",
    ),
    (
        HEAD + '[[checks]]\nkind = "tcp"\ntarget = "a:1"\nretries = 3\n',
        "unknown setting 'checks[0].tcp.retries'",
    ),
    (HEAD + "max_concurrency = [\n", "not valid TOML: Invalid value (at end of document)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_files_give_one_exact_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "probe.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_probe_settings(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*nowhere.toml' does not exist"):
        load_probe_settings(tmp_path / "nowhere.toml")


def test_the_example_is_valid_and_documents_every_option() -> None:
    """probe.toml shows the box's own settings; the example profiles every check option."""
    settings = load_probe_settings(EXAMPLE)
    assert settings.probe_id == "cb-thuc-phan"
    assert settings.checks == [] and settings.checks_source == "collector"
    layers = [parse_toml(p.read_text(), str(p)) for p in PROFILES]
    merged = merge([(p.stem, layer) for p, layer in zip(PROFILES, layers, strict=True)])
    checks = [check_adapter().validate_python(c) for c in merged.checks]
    assert {type(c) for c in checks} == {
        IcmpCheck,
        TcpCheck,
        HttpCheck,
        DnsCheck,
        ModemCheck,
        HeartbeatCheck,
    }
    text = "\n".join(p.read_text() for p in (EXAMPLE, *PROFILES))
    models = [
        ProbeSettings,
        UploadSettings,
        UplinkSettings,
        IcmpCheck,
        TcpCheck,
        HttpCheck,
        DnsCheck,
        ModemCheck,
        HeartbeatCheck,
        ProfileLayer,
        ProfileDefaults,
    ]
    for model in models:
        for name in model.model_fields:
            documented = (
                f"\n{name} =" in text
                or f"\n# {name} =" in text
                or f"[{name}]" in text
                or f"[[{name}]]" in text
                or f"{name} (default" in text
            )
            assert documented, f"{model.__name__}.{name} is in no example (config/*.toml)"
    # the box's own file names no check option
    assert "\nkind =" not in EXAMPLE.read_text()


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "probe.toml"
    path.write_text(HEAD + "[upload]\nbatch_size = 100\n")
    monkeypatch.setenv("LOMSONG_PROBE_UPLOAD__BATCH_SIZE", "250")
    monkeypatch.setenv("LOMSONG_PROBE_TOKEN", "s3cret-token")
    settings = load_probe_settings(path)
    assert settings.upload.batch_size == 250
    assert settings.bearer_token() == "s3cret-token"


def test_the_token_comes_from_a_file_or_is_demanded(tmp_path: Path) -> None:
    path = tmp_path / "probe.toml"
    path.write_text(HEAD)
    with pytest.raises(ConfigError, match=r"^setting token \(LOMSONG_PROBE_TOKEN\): the agent"):
        load_probe_settings(path).bearer_token()
    token_file = tmp_path / "probe.token"
    token_file.write_text("tok-123\n")
    path.write_text(HEAD + f'token_file = "{token_file}"\n')
    assert load_probe_settings(path).bearer_token() == "tok-123"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a.vn:443", ("a.vn", 443)), ("[::1]:53", ("::1", 53)), ("::1", ("::1", 53))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, default_port=53) == expected


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from lomsong.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_command(tmp_path: Path) -> None:
    ok = run_cli("probe", "check-config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == (
        f"{EXAMPLE}: ok: probe cb-thuc-phan, 2 uplinks, 0 checks, 1 scheduled jobs; "
        "checks from the collector's profile when it serves one, else these"
    )
    bad = tmp_path / "probe.toml"
    bad.write_text(HEAD + "[upload]\nbatch_size = 0\n")
    out = run_cli("probe", "check-config", str(bad))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"lomsong: error: {bad}: setting upload.batch_size (LOMSONG_PROBE_UPLOAD__BATCH_SIZE): "
        "Input should be greater than or equal to 1 (got 0)"
    ]
