"""The file formats the coverage commands write, by suffix: one list for the writer and for the
command line, which refuses a wrong ``-o`` before any work (and without the geodata stack)."""

from __future__ import annotations

from pathlib import PurePath

#: suffix → format, for tables with a geometry (per-hamlet status, summaries, dead zones)
FORMATS = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".csv": "csv"}
FORMATS[".xlsx"] = "xlsx"
#: the suffixes of the formats that need no geometry (what-if answers)
PLAIN = (".csv", ".xlsx")


def suffix_problem(name: str, allowed: tuple[str, ...] = tuple(FORMATS)) -> str | None:
    """Why a file name cannot be written (its suffix), or None if it can."""
    suffix = PurePath(name).suffix.lower()
    if suffix in allowed:
        return None
    said = f"suffix {suffix!r}" if suffix else "no suffix"
    return f"{name!r} has {said}; expected one of {', '.join(allowed)}"
