"""The modem check on recorded ``mmcli -J`` outputs (see data/README.md for their shape)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from lomsong.config.probe import ModemCheck
from lomsong.probes.checks.base import Binding, CheckContext
from lomsong.probes.checks.modem import parse_mmcli, run
from lomsong.wire import Signal

DATA = Path(__file__).parent / "data"
MMCLI = DATA / "mmcli"
REPLAY = DATA / "mmcli_replay.py"


def load(case: str, name: str) -> dict[str, Any] | None:
    path = MMCLI / case / f"{name}.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else None


# case → (ok, error, the Signal it must give)
EXPECTED: dict[str, tuple[bool, str | None, Signal | None]] = {
    "lte": (
        True,
        None,
        Signal(
            rat="lte",
            rsrp_dbm=-104.0,
            rsrq_db=-12.0,
            snr_db=3.5,
            rssi_dbm=-75.0,
            mcc="452",
            mnc="04",
            tac=0x32DD,
            cid=0x2AA60D,
        ),
    ),
    "umts": (
        True,
        None,
        # The MNC printed as "2" gets its width back from the operator code 45202.
        Signal(rat="umts", rssi_dbm=-81.0, mcc="452", mnc="02", lac=0x5A0C, cid=0x0E8F3A21),
    ),
    "gsm": (
        True,
        None,
        Signal(rat="gsm", rssi_dbm=-89.0, mcc="452", mnc="01", lac=0x0C1F, cid=0x4E2B),
    ),
    "5g": (
        True,
        None,
        # NR readings, with RSSI from the LTE anchor (NR reports none).
        Signal(
            rat="nr",
            rsrp_dbm=-92.0,
            rsrq_db=-11.0,
            snr_db=14.5,
            rssi_dbm=-62.0,
            mcc="452",
            mnc="04",
            tac=0x32DD,
            cid=0x1A2B3C4D5,
        ),
    ),
    "no-signal": (False, "not registered (searching)", None),
    "no-sim": (False, "modem failed: no SIM card", None),
}


def test_every_recorded_case_is_checked() -> None:
    assert {p.name for p in MMCLI.iterdir() if p.is_dir()} == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_parse_recorded_outputs(case: str) -> None:
    modem = load(case, "modem")
    assert modem is not None
    reading = parse_mmcli(modem, load(case, "signal"), load(case, "location"))
    ok, error, signal = EXPECTED[case]
    assert (reading.error is None, reading.error) == (ok, error)
    assert reading.signal == signal
    assert reading.dropped == []


def test_unknown_values_are_none_never_zero() -> None:
    modem = load("lte", "modem")
    assert modem is not None
    unknown_signal = load("no-signal", "signal")
    unknown_cell = load("no-signal", "location")
    reading = parse_mmcli(modem, unknown_signal, unknown_cell)
    assert reading.error is None
    assert reading.signal == Signal(rat="lte")


def test_out_of_range_values_are_dropped_and_noted() -> None:
    modem = load("lte", "modem")
    signal = load("lte", "signal")
    assert modem is not None and signal is not None
    signal["modem"]["signal"]["lte"]["rsrp"] = "-250.00"
    reading = parse_mmcli(modem, signal, load("lte", "location"))
    assert reading.signal is not None and reading.signal.rsrp_dbm is None
    assert reading.signal.rsrq_db == -12.0
    assert reading.dropped == ["rsrp_dbm=-250.0"]


def _spec(case: str, log: Path, **extra: Any) -> ModemCheck:
    return ModemCheck(
        kind="modem",
        uplink="viettel-4g",
        mmcli_command=[sys.executable, str(REPLAY), str(MMCLI / case), str(log)],
        **extra,
    )


def _run(spec: ModemCheck) -> Any:
    return asyncio.run(run(spec, CheckContext(Binding("viettel-4g"), 10.0, "test")))


def test_the_check_runs_mmcli_and_reports_the_serving_cell(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    outcome = _run(_spec("lte", log))
    assert outcome.ok and outcome.signal == EXPECTED["lte"][2]
    assert outcome.details["operator"] == "Viettel"
    assert outcome.details["signal_quality_percent"] == 58
    assert log.read_text().splitlines() == [
        "-m 0 -J",
        "-m 0 --signal-get -J",
        "-m 0 --location-get -J",
    ]


def test_the_check_sets_up_signal_polling_when_it_is_off(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    outcome = _run(_spec("no-signal", log, modem="2", signal_refresh_seconds=15))
    assert (outcome.ok, outcome.error) == (False, "not registered (searching)")
    assert outcome.details["signal_setup"] == "ok"
    assert log.read_text().splitlines()[-1] == "-m 2 --signal-setup=15"


def test_no_sim_is_a_failed_result_and_later_calls_may_fail(tmp_path: Path) -> None:
    outcome = _run(_spec("no-sim", tmp_path / "calls.log"))
    assert (outcome.ok, outcome.error, outcome.signal) == (False, "modem failed: no SIM card", None)


def test_mmcli_missing_or_failing(tmp_path: Path) -> None:
    spec = ModemCheck(kind="modem", uplink="viettel-4g", mmcli_command=[str(tmp_path / "no-mmcli")])
    outcome = _run(spec)
    assert not outcome.ok
    assert (
        outcome.error == f"mmcli: cannot run '{tmp_path / 'no-mmcli'}': No such file or directory"
    )
    failing = "import sys; sys.stderr.write('error: couldn\\'t find modem\\n'); sys.exit(1)"
    spec = ModemCheck(
        kind="modem", uplink="viettel-4g", mmcli_command=[sys.executable, "-c", failing]
    )
    outcome = _run(spec)
    assert (outcome.ok, outcome.error) == (False, "mmcli: error: couldn't find modem")
