"""``lomsong geodata import KIND FILE``: read, check, and store geodata in one transaction.

Kinds: ``provinces`` and ``communes`` (boundary polygons for the official 2025 codes),
``hamlets``, ``sites`` (one row per sector; operator CSV or OpenCelliD export) and ``field``
(signal readings). The report says how many rows were accepted and why each other row was
rejected; it is stored with the import (``geodata_imports.report``). Either the whole import is
stored or, on any failure, nothing.

Examples
--------
>>> report = import_file(engine, Path("hamlets.gpkg"), Options(kind="hamlets", province="04"))
>>> for r in report.rejected:
...     print(r.row, r.id, r.reason)  # e.g. 7 CB-0012 population: must be ≥ 0 (got -5)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from lomsong.coverage import store
from lomsong.coverage.locate import Geography
from lomsong.coverage.model import CoverageSettings
from lomsong.coverage.readers import read_table
from lomsong.coverage.validate import MAX_REPORTED, Options, Rejection, Validated, validate
from lomsong.errors import ConflictError, GeodataError, MissingFileError, ValidationError
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import geodata_imports, hamlets

#: ``progress(description, total)`` → a function to call with each step's row count
Progress = Callable[[str, int], store.Advance]


@dataclass
class ImportReport:
    """What an import did; ``import_id`` is None for a dry run."""

    import_id: int | None
    kind: str
    source: str
    format: str
    crs: str
    province: str | None
    synthetic: bool
    total: int
    accepted: int
    rejected: list[Rejection]
    skipped: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    changes: store.Changes = field(default_factory=store.Changes)

    def as_json(self, limit: int | None = None) -> dict[str, Any]:
        """The report as JSON; ``limit`` caps the listed rejections (all are counted)."""
        listed = self.rejected if limit is None else self.rejected[:limit]
        return {
            "import_id": self.import_id,
            "kind": self.kind,
            "source": self.source,
            "format": self.format,
            "crs": self.crs,
            "province": self.province,
            "synthetic": self.synthetic,
            "rows_total": self.total,
            "rows_accepted": self.accepted,
            "rows_rejected": len(self.rejected),
            "rows_skipped": self.skipped,
            "reasons": self.reasons,
            "rejected": [{"row": r.row, "id": r.id, "reason": r.reason} for r in listed],
            "rejected_truncated": len(listed) < len(self.rejected),
            "notes": self.notes,
            "changes": self.changes.as_dict(),
        }


class NothingAccepted(GeodataError):
    """Every row was rejected; nothing was stored. The report says why."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        top = ", ".join(f"{reason} ×{n}" for reason, n in list(report.reasons.items())[:3])
        super().__init__(
            f"{report.source}: none of {report.total} rows could be imported as {report.kind}"
            + (f" ({top})" if top else "")
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    if not path.is_file():  # the digest is taken first: say what read_table would say
        raise MissingFileError(f"{path}: no such file")
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(
    engine: Engine,
    path: Path,
    options: Options,
    *,
    layer: str | None = None,
    lat_column: str | None = None,
    lon_column: str | None = None,
    geography: Geography | None = None,
    settings: CoverageSettings | None = None,
) -> Validated:
    """Read and check a file without storing anything."""
    settings = settings or CoverageSettings()
    table = read_table(path, layer=layer, lat_column=lat_column, lon_column=lon_column)
    geo = geography or Geography.load(engine)
    return validate(table, options, geo, settings.operators)


def import_file(
    engine: Engine,
    path: Path,
    options: Options,
    *,
    layer: str | None = None,
    lat_column: str | None = None,
    lon_column: str | None = None,
    replace: bool = False,
    dry_run: bool = False,
    settings: CoverageSettings | None = None,
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> ImportReport:
    """Import ``path`` as ``options.kind``: check every row, then store the accepted ones.

    Parameters
    ----------
    engine
        The collector's database, migrated and with the places loaded.
    path
        GeoJSON, GeoPackage, Shapefile, CSV (lat/lon or WKT columns), Excel, or an
        OpenCelliD export (``.csv`` or ``.csv.gz``).
    options
        Kind, source CRS, province, column names, default operator.
    replace
        Hamlets only, with a province: retire the province's hamlets the file lacks.
    dry_run
        Check and report, store nothing.

    Raises
    ------
    NothingAccepted
        When every row is rejected (nothing is stored; the exception carries the report).
    """
    if replace and (options.kind != "hamlets" or options.province is None):
        raise ValidationError(
            "--replace", True, "only for hamlets, with --province (the set it replaces)"
        )
    source = options.source or path.name
    options = Options(**{**options.__dict__, "source": source})
    digest = sha256_of(path)
    checked = check_file(
        engine,
        path,
        options,
        layer=layer,
        lat_column=lat_column,
        lon_column=lon_column,
        settings=settings,
    )
    report = ImportReport(
        import_id=None,
        kind=options.kind,
        source=source,
        format=checked.format,
        crs=checked.crs,
        province=options.province,
        synthetic=options.synthetic,
        total=checked.total,
        accepted=len(checked.records),
        rejected=checked.rejected,
        skipped=checked.skipped,
        reasons=checked.reason_counts(),
        notes=list(checked.notes),
    )
    if not checked.records:
        raise NothingAccepted(report)
    if dry_run:
        report.notes.append("dry run: nothing stored")
        return report
    advance = progress("writing", len(checked.records)) if progress is not None else None
    now = clock()
    with write_transaction(engine) as conn:
        if options.kind == "field":
            earlier = conn.execute(
                select(geodata_imports.c.id).where(
                    geodata_imports.c.kind == "field", geodata_imports.c.sha256 == digest
                )
            ).scalar()
            if earlier is not None:
                raise ConflictError(
                    f"{source}: these readings were imported already (import {earlier})"
                )
        import_id = store.begin_import(
            conn,
            kind=options.kind,
            source=source,
            sha256=digest,
            crs=checked.crs,
            province=options.province,
            synthetic=options.synthetic,
            now=now,
        )
        report.import_id = import_id
        if options.kind in ("provinces", "communes"):
            report.changes = store.write_boundaries(conn, checked.records, import_id, now, advance)
        elif options.kind == "hamlets":
            report.changes = store.write_hamlets(
                conn,
                checked.records,
                import_id,
                now,
                retire_province=options.province if replace else None,
                keep=checked.ids,
                advance=advance,
            )
            if not replace and options.province is not None:
                n = conn.execute(
                    select(func.count())
                    .select_from(hamlets)
                    .where(
                        hamlets.c.province_code == options.province,
                        hamlets.c.synthetic.is_(True),
                        hamlets.c.retired_at.is_(None),
                    )
                ).scalar_one()
                if n and not options.synthetic:
                    report.notes.append(
                        f"province {options.province} still has {n} synthetic hamlets; "
                        f"import with --replace to retire them"
                    )
        elif options.kind == "sites":
            report.changes = store.write_sites(
                conn, checked.records, import_id, now, advance=advance
            )
        else:
            report.changes = store.write_field(
                conn, checked.records, import_id, now, advance=advance
            )
        store.finish_import(
            conn,
            import_id,
            total=report.total,
            accepted=report.accepted,
            rejected=len(report.rejected),
            report=report.as_json(limit=MAX_REPORTED),
        )
    return report
