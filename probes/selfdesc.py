"""What a box knows of itself, for its enrolment: ids, OS, interfaces, addresses and modems.

Only the standard library and the system's own tools (``ip -j addr`` when present, else
``/sys/class/net``; ModemManager's ``mmcli``): a freshly installed box has nothing else. Nothing
secret leaves the box: of the SIM's IMSI only its MCC-MNC prefix is kept (it names the
operator); the modem's IMEI and the SIM's ICCID are never read into the description.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lomsong import __version__
from lomsong.enrolwire import Interface, Modem, ProbeDescription
from lomsong.errors import ConfigError
from lomsong.probes.checks.modem import parse_mmcli

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
SYS_NET = Path("/sys/class/net")
#: ARPHRD_* numbers of /sys/class/net/<if>/type, as ``ip`` names them
_LINK_TYPES = {"1": "ether", "772": "loopback", "65534": "none", "801": "wlan", "519": "ipip"}
_TOOL_SECONDS = 10.0


def describe(
    *,
    machine_id_file: Path | None = None,
    boot_id_file: Path = BOOT_ID_FILE,
    mmcli_command: Sequence[str] = ("mmcli",),
    ip_command: Sequence[str] | None = ("ip",),
    sys_net: Path = SYS_NET,
) -> ProbeDescription:
    """The whole self-description; ``ip_command=None`` reads ``/sys/class/net`` instead."""
    return ProbeDescription(
        machine_id=machine_id(machine_id_file),
        hostname=socket.gethostname()[:255],
        agent_version=__version__,
        os=os_text(),
        boot_id=_first_line(boot_id_file)[:64],
        interfaces=interfaces(ip_command, sys_net),
        modems=modems(mmcli_command),
    )


def machine_id(path: Path | None = None) -> str:
    """systemd's machine id: stable across reboots, new on a reinstalled or cloned box."""
    for candidate in (path,) if path is not None else MACHINE_ID_FILES:
        value = _first_line(candidate)
        if value:
            return value
    shown = path or " or ".join(str(p) for p in MACHINE_ID_FILES)
    raise ConfigError(f"machine id: {shown} is missing or empty (systemd-machine-id-setup)")


def os_text() -> str:
    """``Debian GNU/Linux 12 (bookworm); Linux 6.1.0-18-arm64 aarch64``."""
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        name = ""
    kernel = f"{platform.system()} {platform.release()} {platform.machine()}".strip()
    return "; ".join(p for p in (name, kernel) if p)[:255]


def interfaces(ip_command: Sequence[str] | None, sys_net: Path = SYS_NET) -> list[Interface]:
    """Every interface with its addresses: from ``ip -j addr`` when the tool runs, else from
    the kernel's own list and ``/sys/class/net`` (without addresses)."""
    if ip_command is not None and shutil.which(ip_command[0]):
        doc = _run_json([*ip_command, "-j", "addr"])
        if isinstance(doc, list):
            return [i for i in (_from_ip(entry) for entry in doc[:64]) if i is not None]
    out = []
    for _, name in socket.if_nameindex()[:64]:
        base = sys_net / name
        out.append(
            Interface(
                name=name[:15],
                kind=_LINK_TYPES.get(_first_line(base / "type"), "other"),
                up=_first_line(base / "operstate") in ("up", "unknown"),
                mac=_first_line(base / "address")[:64] or None,
            )
        )
    return out


def _from_ip(entry: Any) -> Interface | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("ifname"), str):
        return None
    addresses = [
        f"{a['local']}/{a.get('prefixlen', '')}".rstrip("/")
        for a in entry.get("addr_info") or []
        if isinstance(a, dict) and isinstance(a.get("local"), str)
    ]
    flags = entry.get("flags") or []
    return Interface(
        name=entry["ifname"][:15],
        kind=str(entry.get("link_type") or "other")[:64],
        up="UP" in flags and "LOWER_UP" in flags,
        mac=str(entry["address"])[:64] if entry.get("address") else None,
        addresses=[a[:64] for a in addresses[:64]],
    )


def modems(mmcli_command: Sequence[str]) -> list[Modem]:
    """The modems ModemManager lists (``mmcli -L -J``), each read with ``mmcli -m PATH -J`` and
    its SIM's IMSI prefix with ``mmcli -i PATH -J``; none when mmcli is absent or fails."""
    listing = _run_json([*mmcli_command, "-L", "-J"])
    paths = listing.get("modem-list") if isinstance(listing, dict) else None
    out = []
    for path in (paths or [])[:16]:
        if not isinstance(path, str):
            continue
        doc = _run_json([*mmcli_command, "-m", path, "-J"])
        if isinstance(doc, dict):
            out.append(modem_of(path, doc, _sim_doc(mmcli_command, doc)))
    return out


def _sim_doc(mmcli_command: Sequence[str], modem_doc: dict[str, Any]) -> dict[str, Any] | None:
    sim = _dig(modem_doc, "modem", "generic", "sim")
    if not isinstance(sim, str) or not sim.startswith("/"):
        return None
    doc = _run_json([*mmcli_command, "-i", sim, "-J"])
    return doc if isinstance(doc, dict) else None


def modem_of(path: str, modem_doc: dict[str, Any], sim_doc: dict[str, Any] | None) -> Modem:
    """One modem from its ``mmcli -m -J`` document (parsed as the modem check parses it) and
    its SIM's ``mmcli -i -J`` document, keeping of the IMSI only the MCC-MNC."""
    reading = parse_mmcli(modem_doc, None, None)
    generic = _dig(modem_doc, "modem", "generic") or {}
    net = next(
        (
            p.split(" ")[0]
            for p in generic.get("ports") or []
            if isinstance(p, str) and p.endswith("(net)")
        ),
        None,
    )
    sim = _dig(sim_doc, "sim", "properties") or {}
    code = reading.operator_code or _text(sim.get("operator-code"))
    return Modem(
        index=path.rstrip("/").rsplit("/", 1)[-1][:64],
        manufacturer=_text(generic.get("manufacturer")),
        model=_text(generic.get("model")),
        interface=net[:15] if net else None,
        state=reading.state,
        operator_name=reading.operator_name,
        operator_code=code if code and code.isdigit() and len(code) in (5, 6) else None,
        imsi_prefix=imsi_prefix(_text(sim.get("imsi")), code),
        access_technologies=reading.access_technologies[:16],
    )


def imsi_prefix(imsi: str | None, operator_code: str | None) -> str | None:
    """The MCC-MNC an IMSI starts with, never more: the operator code's width when the IMSI
    starts with it (MNCs are 2 or 3 digits), else the first five digits."""
    if not imsi or not imsi.isdigit() or len(imsi) < 6:
        return None
    if operator_code and operator_code.isdigit() and len(operator_code) in (5, 6):
        if imsi.startswith(operator_code):
            return operator_code
    return imsi[:5]


def _run_json(argv: list[str]) -> Any:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=_TOOL_SECONDS, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None


def _first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _dig(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value not in ("", "--", "unknown") else None
