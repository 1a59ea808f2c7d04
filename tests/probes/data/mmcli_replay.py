"""Stands in for ``mmcli`` in tests, replaying the outputs recorded under one ``mmcli/<case>/`` folder.

Usage: ``python mmcli_replay.py FOLDER LOG -m MODEM (-J | --signal-get -J | --location-get -J |
--signal-setup=N)``. Each call is appended to LOG, so a test can see what the agent asked.
The output of a call is ``<command>.json`` found anywhere under FOLDER (the real captures of one
case come from several sources, ``lte/orb-software/modem.json`` beside ``lte/openwisp/signal.json``);
two such files under one FOLDER are refused as ambiguous. A call whose output is not recorded
fails as mmcli does: its ``.stderr`` text and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    folder, log, rest = Path(argv[0]), Path(argv[1]), argv[2:]
    with log.open("a") as fh:
        fh.write(" ".join(rest) + "\n")
    if len(rest) < 2 or rest[0] != "-m":
        sys.stderr.write("error: no modem given\n")
        return 1
    flags = set(rest[2:])
    if any(f.startswith("--signal-setup=") for f in flags):
        sys.stdout.write("successfully setup extended signal information retrieval\n")
        return 0
    name = (
        "signal"
        if "--signal-get" in flags
        else "location"
        if "--location-get" in flags
        else "modem"
    )
    recorded = sorted(folder.rglob(f"{name}.json"))
    if len(recorded) > 1:
        sys.stderr.write(f"error: {len(recorded)} recordings of {name}.json under {folder}\n")
        return 1
    if recorded:
        sys.stdout.write(recorded[0].read_text())
        return 0
    stderr = sorted(folder.rglob(f"{name}.stderr"))
    sys.stderr.write(stderr[0].read_text() if stderr else "error: not recorded\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
