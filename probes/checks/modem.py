"""``modem``: a cellular modem's radio readings, from ModemManager's ``mmcli -J``.

Three calls per run: ``mmcli -m M -J`` (state, registration, access technology, operator),
``--signal-get -J`` (RSRP, RSRQ, SNR, RSSI per technology) and ``--location-get -J`` (the serving
cell: MCC, MNC, LAC/TAC and cell id, printed in hex). mmcli prints ``--`` for every value it does
not know; such a value is ``None`` here, never a zero. A value outside the range the wire allows
(a modem reporting nonsense) is dropped and noted, so one bad reading cannot block a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError as PydanticValidationError

from lomsong.config.probe import ModemCheck
from lomsong.probes.checks.base import CheckContext, Outcome
from lomsong.wire import Signal

# ModemManager's access technologies, by the radio they belong to (MMModemAccessTechnology).
_RATS: tuple[tuple[str, frozenset[str]], ...] = (
    ("nr", frozenset({"5gnr"})),
    ("lte", frozenset({"lte", "lte-cat-m", "lte-nb-iot"})),
    ("umts", frozenset({"umts", "hsdpa", "hsupa", "hspa", "hspa-plus"})),
    ("gsm", frozenset({"gsm", "gsm-compact", "gprs", "edge"})),
)
_REGISTERED = frozenset(
    {
        "home",
        "roaming",
        "home-sms-only",
        "roaming-sms-only",
        "home-csfb-not-preferred",
        "roaming-csfb-not-preferred",
    }
)
_FAILED_REASONS = {
    "sim-missing": "no SIM card",
    "sim-error": "SIM card error",
    "esim-without-profiles": "eSIM without a profile",
}
#: Area codes and cell ids that modems report when they do not know the real one.
_NOT_AN_AREA = frozenset({0, 0xFFFE, 0xFFFF, 0xFFFFFF})
_NOT_A_CELL = frozenset({0, 0xFFFFFFFF, 0xFFFFFFFFF})


@dataclass(slots=True)
class ModemReading:
    """What the three mmcli outputs say about the modem and its serving cell."""

    signal: Signal | None
    error: str | None
    state: str | None = None
    registration: str | None = None
    operator_name: str | None = None
    operator_code: str | None = None
    quality_percent: int | None = None
    access_technologies: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


async def run(spec: ModemCheck, ctx: CheckContext) -> Outcome:
    """Run mmcli three times and parse; only the first call must succeed."""
    base = [*spec.mmcli_command, "-m", spec.modem]
    status, modem_out, modem_err = await _mmcli([*base, "-J"])
    if status != 0:
        return Outcome(ok=False, error=f"mmcli: {_first_line(modem_err) or f'exit {status}'}")
    try:
        modem_doc = orjson.loads(modem_out)
    except orjson.JSONDecodeError:
        return Outcome(ok=False, error="mmcli: output is not JSON")
    status, signal_out, _ = await _mmcli([*base, "--signal-get", "-J"])
    signal_doc = _json_or_none(signal_out) if status == 0 else None
    status, location_out, _ = await _mmcli([*base, "--location-get", "-J"])
    location_doc = _json_or_none(location_out) if status == 0 else None
    reading = parse_mmcli(modem_doc, signal_doc, location_doc)
    details: dict[str, Any] = {
        "state": reading.state,
        "registration": reading.registration,
        "operator": reading.operator_name,
        "operator_code": reading.operator_code,
        "signal_quality_percent": reading.quality_percent,
        "access_technologies": reading.access_technologies,
    }
    if reading.dropped:
        details["dropped_values"] = reading.dropped
    if spec.signal_refresh_seconds and signal_doc is not None and _refresh_rate(signal_doc) == 0:
        # Extended readings are not being polled: ask ModemManager to, for the next run.
        status, _, err = await _mmcli([*base, f"--signal-setup={spec.signal_refresh_seconds}"])
        details["signal_setup"] = "ok" if status == 0 else _first_line(err)
    return Outcome(
        ok=reading.error is None, error=reading.error, signal=reading.signal, details=details
    )


def parse_mmcli(
    modem: dict[str, Any], signal: dict[str, Any] | None, location: dict[str, Any] | None
) -> ModemReading:
    """Turn ``mmcli -J`` documents into a reading; ``signal``/``location`` may be missing."""
    generic = _dig(modem, "modem", "generic") or {}
    gpp = _dig(modem, "modem", "3gpp") or {}
    techs = [t for t in generic.get("access-technologies") or [] if _known(t)]
    rat = next((name for name, members in _RATS if members.intersection(techs)), None)
    reading = ModemReading(
        signal=None,
        error=None,
        state=_text(generic.get("state")),
        registration=_text(gpp.get("registration-state")),
        operator_name=_text(gpp.get("operator-name")),
        operator_code=_text(gpp.get("operator-code")),
        quality_percent=_int(_dig(generic, "signal-quality", "value")),
        access_technologies=techs,
    )
    reading.error = _judge(reading, _text(generic.get("state-failed-reason")), rat)

    values: dict[str, Any] = {"rat": rat}
    sig = _dig(signal, "modem", "signal") or {}
    if rat == "nr":
        # Non-standalone 5G reports NR next to its LTE anchor; fall back to the anchor's values.
        nr, lte = sig.get("5g") or {}, sig.get("lte") or {}
        for key, name in (("rsrp", "rsrp_dbm"), ("rsrq", "rsrq_db"), ("snr", "snr_db")):
            values[name] = _float(nr.get(key)) if _known(nr.get(key)) else _float(lte.get(key))
        values["rssi_dbm"] = _float(lte.get("rssi"))
    elif rat == "lte":
        lte = sig.get("lte") or {}
        values.update(
            rsrp_dbm=_float(lte.get("rsrp")),
            rsrq_db=_float(lte.get("rsrq")),
            snr_db=_float(lte.get("snr")),
            rssi_dbm=_float(lte.get("rssi")),
        )
    elif rat in ("umts", "gsm"):
        values["rssi_dbm"] = _float((sig.get(rat) or {}).get("rssi"))

    cell = _dig(location, "modem", "location", "3gpp") or {}
    mcc = _text(cell.get("mcc"))
    if mcc is not None and mcc.isdigit():
        values["mcc"] = mcc.zfill(3)
        values["mnc"] = _mnc(values["mcc"], _text(cell.get("mnc")), reading.operator_code)
    if rat in ("lte", "nr"):
        values["tac"] = _hex(cell.get("tac"), _NOT_AN_AREA)
    elif rat in ("umts", "gsm"):
        values["lac"] = _hex(cell.get("lac"), _NOT_AN_AREA)
    values["cid"] = _hex(cell.get("cid"), _NOT_A_CELL)

    reading.signal = _signal(values, reading.dropped)
    return reading


def _judge(reading: ModemReading, failed_reason: str | None, rat: str | None) -> str | None:
    state = reading.state
    if state == "failed":
        return f"modem failed: {_FAILED_REASONS.get(failed_reason or '', failed_reason or '?')}"
    if state == "locked":
        return "SIM locked (PIN or PUK required)"
    if state in ("disabled", "disabling", "enabling", "initializing", "unknown", None):
        return f"modem {state or 'state unknown'}"
    if reading.registration not in _REGISTERED:
        return f"not registered ({reading.registration or 'unknown'})"
    if rat is None:
        return "no radio access technology"
    return None


def _signal(values: dict[str, Any], dropped: list[str]) -> Signal | None:
    kept: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        try:
            Signal.model_validate({name: value})
        except PydanticValidationError:
            dropped.append(f"{name}={value!r}")
            continue
        kept[name] = value
    return Signal(**kept) if kept else None


def _mnc(mcc: str, mnc: str | None, operator_code: str | None) -> str | None:
    # The MNC's width (2 or 3 digits) is part of its value: take it from the 3GPP operator
    # code ("45204") when it belongs to the same MCC, since older mmcli print the MNC as a
    # plain number ("4").
    if operator_code and operator_code.isdigit() and operator_code.startswith(mcc):
        rest = operator_code[len(mcc) :]
        if len(rest) in (2, 3) and (mnc is None or not mnc.isdigit() or int(rest) == int(mnc)):
            return rest
    if mnc is None or not mnc.isdigit():
        return None
    return mnc.zfill(2)


def _refresh_rate(signal_doc: dict[str, Any]) -> int | None:
    return _int(_dig(signal_doc, "modem", "signal", "refresh", "rate"))


async def _mmcli(argv: list[str]) -> tuple[int, bytes, bytes]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return 127, b"", f"cannot run {argv[0]!r}: {exc.strerror}".encode()
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        # The runner's timeout: never leave an mmcli behind.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, out, err


def _dig(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _known(value: Any) -> bool:
    return isinstance(value, str) and value not in ("", "--", "unknown")


def _text(value: Any) -> str | None:
    return value if _known(value) else None


def _float(value: Any) -> float | None:
    if not _known(value):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if not _known(value):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _hex(value: Any, unknown: frozenset[int]) -> int | None:
    if not _known(value):
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return None if number in unknown else number


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _first_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else ""
