"""``modem``: a cellular modem's radio readings, from ModemManager's ``mmcli -J``.

Three calls per run: ``mmcli -m M -J`` (state, registration, access technology, operator),
``--signal-get -J`` (RSRP, RSRQ, SNR, RSSI per technology) and ``--location-get -J`` (the serving
cell: MCC, MNC, LAC/TAC and cell id, printed in hex). mmcli prints ``--`` for every value it does
not know; such a value is ``None`` here, never a zero. A value outside the range the wire allows
(a modem reporting nonsense) is dropped and noted, so one bad reading cannot block a batch.

Every key is optional: the key set changes between ModemManager 1.10 and 1.24, and a missing key
(or one of an unexpected type) only loses what it carried. The parser is tested on real captures
(``tests/probes/data/mmcli/``) with each of their keys deleted in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
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
#: ModemManager's states of a modem that is registered with a network (MMModemState).
_REGISTERED_STATES = frozenset({"registered", "connecting", "connected", "disconnecting"})
_FAILED_REASONS = {
    "sim-missing": "no SIM card",
    "sim-error": "SIM card error",
    "esim-without-profiles": "eSIM without a profile",
}
#: Area codes and cell ids that modems report when they do not know the real one.
_NOT_AN_AREA = frozenset({0, 0xFFFE, 0xFFFF, 0xFFFFFF})
_NOT_A_CELL = frozenset({0, 0xFFFFFFFF, 0xFFFFFFFFF})
#: mmcli calls ``setlocale(LC_ALL, "")`` and prints readings with ``%.2lf``: under a locale with a
#: decimal comma (vi_VN among them) RSRP would read "-92,00". Run it in the C locale, keeping UTF-8
#: so an operator name with diacritics is not mangled.
_MMCLI_LOCALE = {"LC_ALL": "C.UTF-8", "LANGUAGE": ""}


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
    """Turn ``mmcli -J`` documents into a reading; any document or key may be missing."""
    generic = _obj(_dig(modem, "modem", "generic"))
    gpp = _obj(_dig(modem, "modem", "3gpp"))
    sig = _obj(_dig(signal, "modem", "signal"))
    techs = _technologies(generic.get("access-technologies"))
    rat = next((name for name, members in _RATS if members.intersection(techs)), None)
    if rat is None and "access-technologies" not in generic:
        # An mmcli that does not print the key at all: the technology whose readings are filled.
        rat = _rat_from_signal(sig)
    quality = generic.get("signal-quality")
    reading = ModemReading(
        signal=None,
        error=None,
        state=_text(generic.get("state")),
        registration=_text(gpp.get("registration-state")),
        operator_name=_text(gpp.get("operator-name")),
        operator_code=_text(gpp.get("operator-code")),
        quality_percent=_int(quality.get("value") if isinstance(quality, dict) else quality),
        access_technologies=techs,
    )
    reading.error = _judge(
        reading,
        _text(generic.get("state-failed-reason")),
        rat,
        technology_reported="access-technologies" in generic,
    )

    values: dict[str, Any] = {"rat": rat}
    if rat == "nr":
        # Non-standalone 5G reports NR next to its LTE anchor; fall back to the anchor's values.
        nr, lte = _obj(sig.get("5g")), _obj(sig.get("lte"))
        for key, name in (("rsrp", "rsrp_dbm"), ("rsrq", "rsrq_db"), ("snr", "snr_db")):
            values[name] = _float(nr.get(key)) if _known(nr.get(key)) else _float(lte.get(key))
        values["rssi_dbm"] = _float(lte.get("rssi"))
    elif rat == "lte":
        lte = _obj(sig.get("lte"))
        values.update(
            rsrp_dbm=_float(lte.get("rsrp")),
            rsrq_db=_float(lte.get("rsrq")),
            snr_db=_float(lte.get("snr")),
            rssi_dbm=_float(lte.get("rssi")),
        )
    elif rat == "umts":
        umts = _obj(sig.get("umts"))
        values["rssi_dbm"] = _float(umts.get("rssi"))
        # A UMTS cell's own measures; the wire's ranges drop what is out of them, by name.
        values["rscp_dbm"] = _float(umts.get("rscp"))
        values["ecio_db"] = _float(umts.get("ecio"))
    elif rat == "gsm":
        values["rssi_dbm"] = _float(_obj(sig.get("gsm")).get("rssi"))

    cell = _obj(_dig(location, "modem", "location", "3gpp"))
    mcc = _text(cell.get("mcc"))
    if mcc is not None and mcc.isdigit() and len(mcc) <= 3:
        values["mcc"] = mcc.zfill(3)
        values["mnc"] = _mnc(values["mcc"], _text(cell.get("mnc")), reading.operator_code)
    if rat in ("lte", "nr"):
        values["tac"] = _hex(cell.get("tac"), _NOT_AN_AREA)
    elif rat in ("umts", "gsm"):
        values["lac"] = _hex(cell.get("lac"), _NOT_AN_AREA)
    values["cid"] = _hex(cell.get("cid"), _NOT_A_CELL)

    reading.signal = _signal(values, reading.dropped)
    return reading


def _judge(
    reading: ModemReading, failed_reason: str | None, rat: str | None, *, technology_reported: bool
) -> str | None:
    state = reading.state
    if state == "failed" or (state is None and failed_reason is not None):
        # ModemManager gives a failed reason only to a failed modem (a missing SIM among them).
        reason = _FAILED_REASONS.get(failed_reason or "", failed_reason or "reason unknown")
        return f"modem failed: {reason}"
    if state == "locked":
        return "SIM locked (PIN or PUK required)"
    if state in ("disabled", "disabling", "enabling", "initializing"):
        return f"modem {state}"
    registration = reading.registration
    if registration is not None:
        # The 3GPP registration state is the finer word ("idle", "denied", "roaming" …).
        if registration not in _REGISTERED:
            return f"not registered ({registration})"
    elif state in ("enabled", "searching"):
        return f"not registered ({state})"
    elif state not in _REGISTERED_STATES:
        return "modem state unknown"
    if rat is None and technology_reported:
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
    # code ("45204", also spelt "452-04" or "452 04") when it names the same network, since
    # mmcli before 1.18 print the MNC as a plain number ("4"). Only the same network: a real
    # capture shows the serving cell's 262-03 beside the registered operator 26202.
    if mnc is None or not mnc.isdigit() or len(mnc) > 3:
        return None
    code = (operator_code or "").replace("-", "").replace(" ", "")
    if code.isdigit() and code.startswith(mcc):
        rest = code[len(mcc) :]
        if len(rest) in (2, 3) and int(rest) == int(mnc) and len(rest) >= len(mnc):
            return rest
    return mnc.zfill(2)


def _rat_from_signal(sig: dict[str, Any]) -> str | None:
    blocks = (("nr", "5g"), ("lte", "lte"), ("umts", "umts"), ("gsm", "gsm"))
    for rat, key in blocks:
        if any(_float(v) is not None for v in _obj(sig.get(key)).values()):
            return rat
    return None


def _technologies(value: Any) -> list[str]:
    # mmcli splits the access technologies into a list (["hsdpa", "hsupa"]); a single string
    # ("lte, umts") is taken apart the same way, as mmcli does for capabilities.
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out += [t for t in (p.strip().lower() for p in item.split(",")) if _known(t)]
    return out


def _refresh_rate(signal_doc: dict[str, Any]) -> int | None:
    return _int(_dig(signal_doc, "modem", "signal", "refresh", "rate"))


async def _mmcli(argv: list[str]) -> tuple[int, bytes, bytes]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **_MMCLI_LOCALE},
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


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _known(value: Any) -> bool:
    return isinstance(value, str) and value.strip() not in ("", "--", "unknown")


def _text(value: Any) -> str | None:
    return value.strip() if _known(value) else None


def _float(value: Any) -> float | None:
    if not _known(value):
        return None
    text = value.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")  # "-92,00": an mmcli run under a decimal-comma locale
    try:
        return float(text)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    if number is None or not math.isfinite(number) or number != int(number):
        return None
    return int(number)


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
