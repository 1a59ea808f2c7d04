"""The modem check on real ``mmcli`` captures (data/mmcli/, sources in its SOURCES.md).

LTE and UMTS are real ``mmcli -J`` output and are checked value for value. The missing SIM and
the unregistered modem exist only as plain-text captures: the agent always runs ``mmcli -J`` and
never meets that text, so their fields are carried over to the JSON keys mmcli uses for them
(``mmcli_text.py``) and the state mapping is tested on that. GSM and 5G have no public capture:
their fixtures are written from mmcli's source and say so in a ``_comment`` key.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lomsong.config.probe import ModemCheck
from lomsong.probes.agent import _detail_text
from lomsong.probes.checks.base import Binding, CheckContext, Outcome
from lomsong.probes.checks.modem import ModemReading, parse_mmcli, run
from lomsong.wire import Signal
from tests.probes.mmcli_text import modem_json_from_text

DATA = Path(__file__).parent / "data"
MMCLI = DATA / "mmcli"
REPLAY = DATA / "mmcli_replay.py"

# The real captures, by what they are.
LTE_MODEM = "lte/orb-software/modem.json"  # Telit LE910C4, MM 1.20, roaming on vodafone.de
LTE_LOCATION = "lte/orb-software/location.json"  # same setup, another moment (MNC 03)
LTE_SIGNAL = "lte/openwisp/signal.json"  # another modem, MM <= 1.14
UMTS_MODEM = "umts/openwisp-pr26/modem.json"  # Quectel EM12-G on HSPA, MM 1.16-1.18
UMTS_SIGNAL = "umts/openwisp-pr26/signal.json"
NO_SIM_TEXT = "no-sim/openwrt-luci-3586/modem.txt"  # state failed, sim-missing, MM 1.10-1.14
NO_SIM_LIST = "no-sim/openwrt-luci-3586/list.txt"  # `mmcli -L` of the same box
NO_SIGNAL_TEXT = "no-signal/pi-router-1/modem.txt"  # state enabled, registration idle
# Written from mmcli's source, not captured (no public capture exists).
FROM_SOURCE = ("gsm/from-mmcli-source", "5g/from-mmcli-source")


def load(rel: str) -> dict[str, Any]:
    doc = orjson.loads((MMCLI / rel).read_bytes())
    assert isinstance(doc, dict)
    return doc


def from_text(rel: str) -> dict[str, Any]:
    return modem_json_from_text((MMCLI / rel).read_text())


def test_every_file_is_tested_and_every_capture_attributed() -> None:
    on_disk = {
        str(p.relative_to(MMCLI)) for p in MMCLI.rglob("*") if p.is_file() and p.suffix != ".md"
    }
    captures = {
        LTE_MODEM,
        LTE_LOCATION,
        LTE_SIGNAL,
        UMTS_MODEM,
        UMTS_SIGNAL,
        NO_SIM_TEXT,
        NO_SIM_LIST,
        NO_SIGNAL_TEXT,
    }
    written = {f"{folder}/{name}.json" for folder in FROM_SOURCE for name in _COMMANDS}
    assert on_disk == captures | written
    sources = (MMCLI / "SOURCES.md").read_text()
    for rel in captures:
        assert rel.rsplit("/", 1)[0] + "/" in sources, f"{rel} has no source in SOURCES.md"
    # `mmcli -L` of the no-SIM box lists the modem its `mmcli -m 0` capture shows.
    assert from_text(NO_SIM_TEXT)["modem"]["dbus-path"] in (MMCLI / NO_SIM_LIST).read_text().split()


# -- real JSON captures: value for value ---------------------------------------------------------


def test_lte_capture_modem_state_operator_and_technology() -> None:
    reading = parse_mmcli(load(LTE_MODEM), None, None)
    assert (reading.error, reading.state, reading.registration) == (None, "connected", "roaming")
    assert (reading.operator_code, reading.operator_name) == ("26202", "vodafone.de")
    assert (reading.access_technologies, reading.quality_percent) == (["lte"], 75)
    assert reading.signal == Signal(rat="lte")


def test_lte_capture_signal_rsrp_rsrq_snr_in_dbm_and_db() -> None:
    reading = parse_mmcli(load(LTE_MODEM), load(LTE_SIGNAL), None)
    assert reading.signal == Signal(
        rat="lte", rsrp_dbm=-92.0, rsrq_db=-9.0, snr_db=19.2, rssi_dbm=-64.0
    )
    assert reading.dropped == []


def test_lte_capture_location_cell_ids_from_hex() -> None:
    reading = parse_mmcli(load(LTE_MODEM), None, load(LTE_LOCATION))
    # TAC "00C945", cell id "0197763E"; LAC "0000" is LTE's unused field, not an area.
    # The MNC stays the cell's "03": the operator code 26202 names another network.
    assert reading.signal == Signal(rat="lte", mcc="262", mnc="03", tac=51525, cid=26703422)
    assert (0xC945, 0x0197763E) == (51525, 26703422)


def test_umts_capture_rscp_and_ecio() -> None:
    reading = parse_mmcli(load(UMTS_MODEM), load(UMTS_SIGNAL), None)
    assert (reading.error, reading.state, reading.registration) == (None, "connected", "home")
    # The poster replaced operator code and name with placeholders; they are kept as printed.
    assert (reading.operator_code, reading.operator_name) == ("00000", "OperatorName")
    assert (reading.access_technologies, reading.quality_percent) == (["hsdpa", "hsupa"], 29)
    # RSCP and Ec/Io go on the wire; its RSSI is "--".
    assert reading.signal == Signal(rat="umts", rscp_dbm=-96.0, ecio_db=-3.5)


# -- plain-text captures: the state mapping --------------------------------------------------------


def test_no_sim_text_capture_is_no_sim_card() -> None:
    doc = from_text(NO_SIM_TEXT)
    generic = doc["modem"]["generic"]
    assert (generic["state"], generic["state-failed-reason"]) == ("failed", "sim-missing")
    assert generic["signal-quality"] == {"recent": "no", "value": "0"}
    assert "3gpp" not in doc["modem"]  # the capture shows none
    reading = parse_mmcli(doc, None, None)
    assert (reading.error, reading.signal, reading.quality_percent) == (
        "modem failed: no SIM card",
        None,
        0,
    )


def test_no_signal_text_capture_is_not_registered() -> None:
    doc = from_text(NO_SIGNAL_TEXT)
    assert doc["modem"]["generic"]["state"] == "enabled"
    assert doc["modem"]["3gpp"] == {
        "imei": "001027009999999",
        "enabled-locks": ["fixed-dialing"],
        "registration-state": "idle",
    }
    reading = parse_mmcli(doc, None, None)
    assert (reading.error, reading.signal) == ("not registered (idle)", None)
    # The poster saw "searching" for a few minutes before "idle": the same modem then.
    doc["modem"]["3gpp"]["registration-state"] = "searching"
    assert parse_mmcli(doc, None, None).error == "not registered (searching)"
    # Without the 3GPP registration, the modem state alone says it.
    del doc["modem"]["3gpp"]
    assert parse_mmcli(doc, None, None).error == "not registered (enabled)"
    doc["modem"]["generic"]["state"] = "searching"
    assert parse_mmcli(doc, None, None).error == "not registered (searching)"


def test_a_failed_reason_without_a_state_still_names_the_missing_sim() -> None:
    doc = from_text(NO_SIM_TEXT)
    del doc["modem"]["generic"]["state"]
    assert parse_mmcli(doc, None, None).error == "modem failed: no SIM card"
    doc = from_text(NO_SIM_TEXT)
    del doc["modem"]["generic"]["state-failed-reason"]
    assert parse_mmcli(doc, None, None).error == "modem failed: reason unknown"


def test_a_connected_modem_without_a_3gpp_registration_key_is_registered() -> None:
    doc = load(LTE_MODEM)
    del doc["modem"]["3gpp"]["registration-state"]
    assert parse_mmcli(doc, None, None).error is None  # "connected" says it is registered
    del doc["modem"]["3gpp"]
    reading = parse_mmcli(doc, None, None)
    assert (reading.error, reading.operator_code, reading.signal) == (None, None, Signal(rat="lte"))
    del doc["modem"]["generic"]["state"]
    assert parse_mmcli(doc, None, None).error == "modem state unknown"


# -- written from mmcli's source (no public capture): GSM and 5G ----------------------------------

_COMMANDS = ("modem", "signal", "location")
FROM_SOURCE_EXPECTED = {
    "gsm/from-mmcli-source": Signal(
        rat="gsm", rssi_dbm=-89.0, mcc="452", mnc="01", lac=0x0C1F, cid=0x4E2B
    ),
    # NR readings, with RSSI from the LTE anchor (NR reports none); a 36-bit NR cell id.
    "5g/from-mmcli-source": Signal(
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
}


@pytest.mark.parametrize("folder", FROM_SOURCE)
def test_fixtures_written_from_mmcli_source_not_captured(folder: str) -> None:
    docs = [load(f"{folder}/{name}.json") for name in _COMMANDS]
    for doc in docs:
        assert str(doc["_comment"]).startswith("NOT A CAPTURE: written by hand")
    reading = parse_mmcli(*docs)
    assert (reading.error, reading.dropped) == (None, [])
    assert reading.signal == FROM_SOURCE_EXPECTED[folder]


# -- every key optional: each key of the real captures deleted in turn ----------------------------

# What each key feeds; deleting it may change these fields of the reading, and only to "unknown"
# (None or []) except the error text. A key not listed feeds nothing.
_READING = {
    ("generic", "state"): {"state", "error"},
    ("generic", "state-failed-reason"): {"error"},
    ("generic", "access-technologies"): {"access_technologies"},
    ("generic", "signal-quality", "value"): {"quality_percent"},
    ("3gpp", "registration-state"): {"registration", "error"},
    ("3gpp", "operator-code"): {"operator_code"},
    ("3gpp", "operator-name"): {"operator_name"},
}
_SIGNAL_KEYS = {
    "rsrp": "signal.rsrp_dbm",
    "rsrq": "signal.rsrq_db",
    "snr": "signal.snr_db",
    "rssi": "signal.rssi_dbm",
    "rscp": "signal.rscp_dbm",
    "ecio": "signal.ecio_db",
}
_LOCATION_KEYS = {
    "mcc": {"signal.mcc", "signal.mnc"},
    "mnc": {"signal.mnc"},
    "tac": {"signal.tac"},
    "lac": {"signal.lac"},
    "cid": {"signal.cid"},
}


def _fed_by(doc: int, path: tuple[str, ...]) -> set[str]:
    """The fields a key of document ``doc`` (0 modem, 1 signal, 2 location) may feed."""
    if doc == 0:
        if path == ("modem",):  # no state and no registration left: the state is unknown
            return {"error"} | set().union(*_READING.values())
        return set().union(*(v for k, v in _READING.items() if k[: len(path) - 1] == path[1:]))
    keys = path[3:4] if len(path) > 3 else None
    table = _LOCATION_KEYS if doc == 2 else {k: {v} for k, v in _SIGNAL_KEYS.items()}
    return set().union(*(v for k, v in table.items() if keys is None or k == keys[0]))


def _flat(reading: ModemReading) -> dict[str, Any]:
    flat = {k: getattr(reading, k) for k in ModemReading.__slots__ if k != "signal"}
    signal = reading.signal or Signal()
    flat |= {f"signal.{k}": v for k, v in signal.model_dump().items()}
    return flat


def _paths(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _paths(value, (*path, key))


def _edited(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()
REAL = {
    "lte": (LTE_MODEM, LTE_SIGNAL, LTE_LOCATION),
    "umts": (UMTS_MODEM, UMTS_SIGNAL, None),
    "no-sim": (NO_SIM_TEXT, None, None),
    "no-signal": (NO_SIGNAL_TEXT, None, None),
}


@pytest.mark.parametrize("case", sorted(REAL))
def test_any_key_deleted_or_unknown_loses_only_what_it_carried(case: str) -> None:
    docs: list[dict[str, Any] | None] = [
        None if rel is None else from_text(rel) if rel.endswith(".txt") else load(rel)
        for rel in REAL[case]
    ]
    full = _flat(parse_mmcli(docs[0] or {}, docs[1], docs[2]))
    problems: list[str] = []
    tried = 0
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        for path in _paths(doc):
            leaf = _dig(doc, path)
            edits = [_DELETE] + (["--"] if isinstance(leaf, str) else [])
            for value in edits:
                changed = docs.copy()
                changed[i] = _edited(doc, path, value)
                got = _flat(parse_mmcli(changed[0] or {}, changed[1], changed[2]))
                tried += 1
                allowed = _fed_by(i, path)
                for name in full:
                    if got[name] == full[name]:
                        continue
                    if name not in allowed or (name != "error" and got[name] not in (None, [])):
                        what = "deleted" if value is _DELETE else "set to --"
                        problems.append(f"{'.'.join(path)} {what}: {name} {full[name]!r} → ")
                        problems[-1] += repr(got[name])
    assert tried >= 10  # the smallest capture (no-signal) has 9 keys
    assert problems == []


@pytest.mark.parametrize("case", sorted(REAL))
def test_keys_of_an_unexpected_type_do_not_crash_the_parser(case: str) -> None:
    docs = [
        None if rel is None else from_text(rel) if rel.endswith(".txt") else load(rel)
        for rel in REAL[case]
    ]
    for i, doc in enumerate(docs):
        for path in _paths(doc):
            for odd in ("--", [], {}, 7, None, ["lte, umts"], [None, {}]):
                changed = docs.copy()
                changed[i] = _edited(doc or {}, path, odd)
                reading = parse_mmcli(changed[0] or {}, changed[1], changed[2])
                assert reading.error is None or isinstance(reading.error, str)


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path:
        node = node[key]
    return node


# -- what the real captures revealed ---------------------------------------------------------------


def test_access_technologies_as_one_string_or_a_joined_entry() -> None:
    doc = load(UMTS_MODEM)
    for spelt in ("hsdpa, hsupa", ["hsdpa, hsupa"], ["HSDPA", "hsupa"]):
        doc["modem"]["generic"]["access-technologies"] = spelt
        reading = parse_mmcli(doc, load(UMTS_SIGNAL), None)
        assert reading.access_technologies == ["hsdpa", "hsupa"]
        assert reading.signal == Signal(rat="umts", rscp_dbm=-96.0, ecio_db=-3.5)
    doc = load(LTE_MODEM)
    doc["modem"]["generic"]["access-technologies"] = "lte"
    assert parse_mmcli(doc, None, None).signal == Signal(rat="lte")


def test_without_access_technologies_the_filled_signal_block_names_the_radio() -> None:
    doc = load(UMTS_MODEM)
    del doc["modem"]["generic"]["access-technologies"]
    reading = parse_mmcli(doc, load(UMTS_SIGNAL), None)
    assert (reading.error, reading.signal) == (
        None,
        Signal(rat="umts", rscp_dbm=-96.0, ecio_db=-3.5),
    )
    # An explicit "unknown" (mmcli's empty list) while registered is still a finding.
    doc["modem"]["generic"]["access-technologies"] = []
    assert parse_mmcli(doc, load(UMTS_SIGNAL), None).error == "no radio access technology"


def test_mnc_width_comes_from_the_operator_code_only_for_the_same_network() -> None:
    modem, location = load(LTE_MODEM), load(LTE_LOCATION)
    cell = location["modem"]["location"]["3gpp"]
    cell["mnc"] = "3"  # as mmcli before 1.18 printed it: a plain number
    assert _mnc_of(modem, location) == "03"  # no operator code for 262-03: two digits
    for code in ("262003", "262-003", "262 003"):
        modem["modem"]["3gpp"]["operator-code"] = code
        assert _mnc_of(modem, location) == "003"
    del cell["mnc"]
    assert _mnc_of(modem, location) is None  # never borrowed from the registered operator


def _mnc_of(modem: dict[str, Any], location: dict[str, Any]) -> str | None:
    signal = parse_mmcli(modem, None, location).signal
    assert signal is not None
    return signal.mnc


def test_readings_printed_with_a_decimal_comma_are_read() -> None:
    signal = load(LTE_SIGNAL)
    signal["modem"]["signal"]["lte"] |= {"rsrp": "-92,00", "snr": "19,20"}
    reading = parse_mmcli(load(LTE_MODEM), signal, None)
    assert reading.signal is not None
    assert (reading.signal.rsrp_dbm, reading.signal.snr_db) == (-92.0, 19.2)


def test_out_of_range_values_are_dropped_and_noted() -> None:
    signal = load(LTE_SIGNAL)
    signal["modem"]["signal"]["lte"]["rsrp"] = "-250.00"
    reading = parse_mmcli(load(LTE_MODEM), signal, load(LTE_LOCATION))
    assert reading.signal is not None and reading.signal.rsrp_dbm is None
    assert reading.signal.rsrq_db == -9.0
    assert reading.dropped == ["rsrp_dbm=-250.0"]
    umts = load(UMTS_SIGNAL)
    umts["modem"]["signal"]["umts"] |= {"rscp": "-3.00", "ecio": "nan"}
    reading = parse_mmcli(load(UMTS_MODEM), umts, None)
    assert reading.signal == Signal(rat="umts")
    assert reading.dropped == ["rscp_dbm=-3.0", "ecio_db=nan"]


def test_unknown_values_are_none_never_zero() -> None:
    signal = load(UMTS_SIGNAL)  # its LTE block is all "--"
    location = load(LTE_LOCATION)
    location["modem"]["location"]["3gpp"] = dict.fromkeys(("cid", "lac", "mcc", "mnc", "tac"), "--")
    assert parse_mmcli(load(LTE_MODEM), signal, location).signal == Signal(rat="lte")


# -- the check itself, running a stand-in mmcli that prints the captures ----------------------------


def _spec(folder: Path, log: Path, **extra: Any) -> ModemCheck:
    return ModemCheck(
        kind="modem",
        uplink="viettel-4g",
        mmcli_command=[sys.executable, str(REPLAY), str(folder), str(log)],
        **extra,
    )


def _run(spec: ModemCheck) -> Outcome:
    return asyncio.run(run(spec, CheckContext(Binding("viettel-4g"), 10.0, "test")))


def test_the_check_runs_mmcli_and_reports_the_serving_cell(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    outcome = _run(_spec(MMCLI / "lte", log))  # modem, signal and location of lte/*/
    assert outcome.ok and outcome.signal == Signal(
        rat="lte",
        rsrp_dbm=-92.0,
        rsrq_db=-9.0,
        snr_db=19.2,
        rssi_dbm=-64.0,
        mcc="262",
        mnc="03",
        tac=0xC945,
        cid=0x0197763E,
    )
    assert outcome.details["operator"] == "vodafone.de"
    assert outcome.details["operator_code"] == "26202"
    assert outcome.details["signal_quality_percent"] == 75
    assert log.read_text().splitlines() == [
        "-m 0 -J",
        "-m 0 --signal-get -J",
        "-m 0 --location-get -J",
    ]


def test_the_check_sends_umts_rscp_and_ecio_in_its_signal(tmp_path: Path) -> None:
    outcome = _run(_spec(MMCLI / "umts", tmp_path / "calls.log"))  # no location recorded
    assert (outcome.ok, outcome.signal) == (True, Signal(rat="umts", rscp_dbm=-96.0, ecio_db=-3.5))
    assert outcome.wire_fields()["signal"] == {"rat": "umts", "rscp_dbm": -96.0, "ecio_db": -3.5}
    assert "rscp_dbm" not in outcome.details
    assert _detail_text(outcome) == "rat=umts rscp_dbm=-96.0 ecio_db=-3.5; operator: OperatorName"


def test_the_check_sets_up_signal_polling_when_it_is_off(tmp_path: Path) -> None:
    folder = tmp_path / "no-signal"
    folder.mkdir()
    (folder / "modem.json").write_bytes(orjson.dumps(from_text(NO_SIGNAL_TEXT)))
    # The real UMTS signal output with polling off, as ModemManager reports it ("rate": "0").
    signal = load(UMTS_SIGNAL)
    signal["modem"]["signal"]["refresh"]["rate"] = "0"
    (folder / "signal.json").write_bytes(orjson.dumps(signal))
    log = tmp_path / "calls.log"
    outcome = _run(_spec(folder, log, modem="2", signal_refresh_seconds=15))
    assert (outcome.ok, outcome.error) == (False, "not registered (idle)")
    assert outcome.details["signal_setup"] == "ok"
    assert log.read_text().splitlines()[-1] == "-m 2 --signal-setup=15"


def test_no_sim_is_a_failed_result_and_later_calls_may_fail(tmp_path: Path) -> None:
    folder = tmp_path / "no-sim"
    folder.mkdir()
    (folder / "modem.json").write_bytes(orjson.dumps(from_text(NO_SIM_TEXT)))
    (folder / "signal.stderr").write_text("error: modem has no extended signal capabilities\n")
    outcome = _run(_spec(folder, tmp_path / "calls.log"))
    assert (outcome.ok, outcome.error, outcome.signal) == (False, "modem failed: no SIM card", None)


def test_mmcli_runs_in_the_c_locale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mmcli calls setlocale(LC_ALL, ""): under vi_VN it would print "-92,00".
    monkeypatch.setenv("LC_ALL", "vi_VN.UTF-8")
    seen = tmp_path / "env"
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ['LC_ALL']); sys.exit(1)"
    spec = ModemCheck(
        kind="modem", uplink="viettel-4g", mmcli_command=[sys.executable, "-c", script, str(seen)]
    )
    assert not _run(spec).ok
    assert seen.read_text() == "C.UTF-8"


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
