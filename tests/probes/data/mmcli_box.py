"""Stands in for ``mmcli`` on a box with one Viettel LTE modem, for the enrolment tests.

Usage: ``python mmcli_box.py (-L -J | -m PATH -J | -i PATH -J)``. The modem's document is
trimmed from the ``lte`` fixture (a Quectel EC25) with its IMEI; the SIM's carries a whole
IMSI and ICCID, so a test can check that neither leaves the box. Written for these tests, not
captured.
"""

from __future__ import annotations

import json
import sys

MODEM = "/org/freedesktop/ModemManager1/Modem/0"
SIM = "/org/freedesktop/ModemManager1/SIM/0"
IMEI = "866758041234567"
IMSI = "452041234567890"
ICCID = "8984048000012345678"

DOCS = {
    ("-L", "-J"): {"modem-list": [MODEM]},
    ("-m", MODEM, "-J"): {
        "modem": {
            "3gpp": {
                "imei": IMEI,
                "operator-code": "45204",
                "operator-name": "Viettel",
                "registration-state": "home",
            },
            "dbus-path": MODEM,
            "generic": {
                "access-technologies": ["lte"],
                "equipment-identifier": IMEI,
                "manufacturer": "QUALCOMM INCORPORATED",
                "model": "EC25",
                "ports": ["cdc-wdm0 (qmi)", "ttyUSB2 (at)", "wwan0 (net)"],
                "sim": SIM,
                "state": "connected",
                "state-failed-reason": "--",
                "signal-quality": {"recent": "yes", "value": "58"},
            },
        }
    },
    ("-i", SIM, "-J"): {
        "sim": {
            "dbus-path": SIM,
            "properties": {
                "active": "yes",
                "iccid": ICCID,
                "imsi": IMSI,
                "operator-code": "45204",
                "operator-name": "Viettel",
            },
        }
    },
}


def main(argv: list[str]) -> int:
    doc = DOCS.get(tuple(argv))
    if doc is None:
        sys.stderr.write(f"error: couldn't find modem for {' '.join(argv)!r}\n")
        return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
