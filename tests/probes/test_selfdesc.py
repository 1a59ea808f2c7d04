"""What a box says of itself when it asks to be enrolled: its ids, interfaces and modems, and
never its SIM's whole IMSI, its ICCID or its modem's IMEI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from lomsong.errors import ConfigError
from lomsong.probes.selfdesc import describe, imsi_prefix, interfaces, machine_id
from tests.probes.data import mmcli_box

FAKE_MMCLI = [sys.executable, str(Path(mmcli_box.__file__))]


@pytest.fixture
def machine_id_file(tmp_path: Path) -> Path:
    path = tmp_path / "machine-id"
    path.write_text("5f1c0e7a9b2d4c8e8f0a1b2c3d4e5f60\n")
    return path


def test_the_description_names_the_modem_by_operator_and_imsi_prefix_only(
    machine_id_file: Path,
) -> None:
    desc = describe(machine_id_file=machine_id_file, mmcli_command=FAKE_MMCLI)
    assert desc.machine_id == "5f1c0e7a9b2d4c8e8f0a1b2c3d4e5f60"
    assert desc.agent_version and desc.hostname and desc.os
    (modem,) = desc.modems
    assert modem.index == "0"
    assert (modem.operator_name, modem.operator_code, modem.imsi_prefix) == (
        "Viettel",
        "45204",
        "45204",
    )
    assert (modem.interface, modem.model, modem.state) == ("wwan0", "EC25", "connected")
    assert modem.access_technologies == ["lte"]
    sent = desc.model_dump_json()
    for secret in (mmcli_box.IMSI, mmcli_box.ICCID, mmcli_box.IMEI, mmcli_box.IMSI[5:]):
        assert secret not in sent


def test_interfaces_are_listed_with_their_addresses(machine_id_file: Path) -> None:
    desc = describe(machine_id_file=machine_id_file, mmcli_command=FAKE_MMCLI)
    by_name = {i.name: i for i in desc.interfaces}
    assert "lo" in by_name
    if shutil.which("ip"):
        assert by_name["lo"].kind == "loopback"
        assert "127.0.0.1/8" in by_name["lo"].addresses
    # without ip: the kernel's list and /sys/class/net, no addresses
    plain = {i.name: i for i in interfaces(None)}
    assert set(plain) == set(by_name)
    assert plain["lo"].kind == "loopback" and plain["lo"].addresses == []


def test_no_mmcli_means_no_modem_and_no_machine_id_is_one_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "machine-id"
    f.write_text("0123456789abcdef0123456789abcdef\n")
    assert describe(machine_id_file=f, mmcli_command=["no-such-mmcli-here"]).modems == []
    with pytest.raises(ConfigError, match=r"machine id: .*nowhere.* is missing or empty"):
        machine_id(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("imsi", "code", "expected"),
    [
        ("452041234567890", "45204", "45204"),
        ("310410123456789", "310410", "310410"),  # a 3-digit MNC, as the operator code says
        ("452021234567890", "45204", "45202"),  # roaming or a stale code: the first five
        ("452041234567890", None, "45204"),
        ("12345", None, None),
        (None, "45204", None),
    ],
)
def test_the_imsi_prefix_is_mcc_and_mnc(imsi: str | None, code: str | None, expected: str) -> None:
    assert imsi_prefix(imsi, code) == expected
