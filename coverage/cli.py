"""``lomsong geodata …`` and ``lomsong coverage …``.

Only typer, the kernel and storage's command helpers are imported here; the geospatial stack is
imported inside each command, so that the ``lomsong`` command starts where only the probe agent
is installed. ``geodata import|synth`` write and bring the database to this code's schema first;
the others only read, and refuse a database whose schema is not at head instead of migrating it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from lomsong.coverage.formats import FORMATS, PLAIN, suffix_problem
from lomsong.errors import MissingFileError, ValidationError
from lomsong.storage.cli import ConfigOpt, open_database

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from lomsong.coverage.importing import ImportReport, Progress
    from lomsong.words import Language

geodata_app = typer.Typer(
    help="Boundaries, hamlets, sites and field readings: import, history, synthetic data.",
    no_args_is_help=True,
)
coverage_app = typer.Typer(
    help="Hamlet coverage: classify, summarise, what-if.", no_args_is_help=True
)

ProvinceOpt = Annotated[
    str | None, typer.Option("--province", help="Province code, e.g. 04 (Cao Bằng).")
]
#: files with more rows than this get a progress bar
PROGRESS_ROWS = 5_000


@contextmanager
def _progress() -> Iterator[Progress]:
    """Rich progress bars for long writes (a no-op for small ones)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bars = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )

    def start(description: str, total: int) -> Any:
        if total < PROGRESS_ROWS:
            return lambda _n: None
        if not bars.live.is_started:
            bars.start()
        task = bars.add_task(description, total=total)
        return lambda n: bars.advance(task, n)

    try:
        yield start
    finally:
        if bars.live.is_started:
            bars.stop()


def _columns(specs: list[str] | None) -> dict[str, str]:
    out = {}
    for spec in specs or []:
        name, sep, header = spec.partition("=")
        if not sep or not name or not header:
            raise ValidationError("--column", spec, "expected FIELD=HEADER, e.g. name=Tên thôn")
        out[name.strip()] = header.strip()
    return out


def print_report(report: ImportReport, *, shown: int = 50) -> None:
    """The import's report as tables: totals, reasons, and the first rejected rows."""
    from lomsong.tables import Column, table
    from lomsong.tables import console as terminal

    console = terminal()
    where = f" in province {report.province}" if report.province else ""
    stored = "checked only" if report.import_id is None else f"import {report.import_id}"
    typer.echo(
        f"{report.source} ({report.format}, {report.crs}) as {report.kind}{where}: {stored}: "
        f"{report.accepted} of {report.total} rows accepted, {len(report.rejected)} rejected"
        + "".join(f", {n} skipped ({why})" for why, n in report.skipped.items())
    )
    changes = report.changes.as_dict()
    if changes:
        typer.echo("changes: " + ", ".join(f"{k} {v}" for k, v in changes.items()))
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.reasons:
        reasons = [
            [reason, f"{n:,}"]
            for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1])
        ]
        console.print(
            table(
                [Column("reason", wrap=True, min_width=30), Column("rows", numeric=True)],
                reasons,
                title="rejected rows by reason",
            )
        )
        rows = [[str(r.row), r.id or "", r.reason] for r in report.rejected[:shown]]
        columns = [
            Column("row", numeric=True),
            Column("id", wrap=True, min_width=10),
            Column("reason", wrap=True, min_width=30),
        ]
        console.print(table(columns, rows, title="rejected rows"))
        if len(report.rejected) > shown:
            typer.echo(f"… and {len(report.rejected) - shown} more (--report FILE lists all)")


def _write_report(report: ImportReport, path: Path | None) -> None:
    if path is None:
        return
    import orjson

    path.write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2))


@geodata_app.command("import")
def geodata_import(
    kind: Annotated[str, typer.Argument(help="provinces, communes, hamlets, sites or field.")],
    file: Annotated[
        Path,
        typer.Argument(help="GeoJSON, GeoPackage, Shapefile, CSV, XLSX or OpenCelliD CSV."),
    ],
    crs: Annotated[
        str | None,
        typer.Option(help="The file's CRS if not WGS 84, e.g. EPSG:9210 (VN-2000 / TM-3)."),
    ] = None,
    province: ProvinceOpt = None,
    layer: Annotated[str | None, typer.Option(help="GeoPackage layer.")] = None,
    lat_column: Annotated[str | None, typer.Option(help="Latitude (or y) column.")] = None,
    lon_column: Annotated[str | None, typer.Option(help="Longitude (or x) column.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Id column.")] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=HEADER for any other field, e.g. population='Dân số'."),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Operator of every row, for a file without that column.")
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Hamlets: retire the province's hamlets the file lacks.")
    ] = False,
    synthetic: Annotated[bool, typer.Option(help="Mark the rows as synthetic data.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Check and report; store nothing.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Also write the full report as JSON here.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Import a geodata file: every row is accepted or rejected with its reason."""
    from lomsong.coverage.importing import NothingAccepted, import_file
    from lomsong.coverage.validate import Options

    if not file.is_file():  # before the database is opened (and made)
        raise MissingFileError(f"{file}: no such file")
    columns = _columns(column)
    if id_column is not None:
        columns["id"] = id_column
    options = Options(
        kind=kind,
        crs=crs,
        province=province,
        columns=columns,
        operator=operator,
        synthetic=synthetic,
    )
    engine = open_database(config, upgrade=True)
    try:
        with _progress() as progress:
            result = import_file(
                engine,
                file,
                options,
                layer=layer,
                lat_column=lat_column,
                lon_column=lon_column,
                replace=replace,
                dry_run=dry_run,
                progress=progress,
            )
    except NothingAccepted as exc:
        print_report(exc.report)
        _write_report(exc.report, report)
        raise
    print_report(result)
    _write_report(result, report)


@geodata_app.command("imports")
def geodata_imports(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    config: ConfigOpt = None,
) -> None:
    """List past imports (times are local, Asia/Ho_Chi_Minh)."""
    from lomsong.coverage.store import list_imports
    from lomsong.tables import Column, console, table
    from lomsong.words import local_time

    columns = [
        Column("id", numeric=True),
        Column("when", drop=2, wrap=True, min_width=10),
        Column("kind"),
        Column("source", wrap=True, min_width=24),
        Column("crs", drop=3),
        Column("province", drop=1),
        Column("synthetic"),
        Column("rows", numeric=True),
        Column("accepted", numeric=True),
        Column("rejected", numeric=True),
    ]
    rows = [
        [
            str(r["id"]),
            local_time(r["created_at"]),
            r["kind"],
            r["source"],
            r["crs"] or "",
            r["province_code"] or "",
            "yes" if r["synthetic"] else "",
            f"{r['rows_total']:,}",
            f"{r['rows_accepted']:,}",
            f"{r['rows_rejected']:,}",
        ]
        for r in list_imports(open_database(config, upgrade=False), limit)
    ]
    console().print(table(columns, rows))


@geodata_app.command("versions")
def geodata_versions(
    hamlet_id: Annotated[str, typer.Argument(help="The hamlet's id.")],
    config: ConfigOpt = None,
) -> None:
    """A hamlet's history: every version, when it was valid, and what it said."""
    from lomsong.coverage.store import hamlet_history
    from lomsong.tables import Column, console, table
    from lomsong.words import local_time

    def when(ts: float | None, missing: str = "") -> str:
        return missing if ts is None else local_time(ts)

    columns = [
        Column("version", numeric=True),
        Column("valid from", wrap=True, min_width=10),
        Column("valid to", wrap=True, min_width=10),
        Column("import", numeric=True, drop=2),
        Column("name", wrap=True, min_width=12),
        Column("commune"),
        Column("population", numeric=True),
        Column("grid power", drop=1),
        Column("lat", numeric=True, drop=3),
        Column("lon", numeric=True, drop=3),
        Column("retired", drop=4, wrap=True, min_width=10),
    ]
    rows = []
    for v in hamlet_history(open_database(config, upgrade=False), hamlet_id):
        power = v["has_grid_power"]
        rows.append(
            [
                str(v["version"]),
                when(v["valid_from"]),
                when(v["valid_to"], "now"),
                str(v["import_id"] or ""),
                v["name"],
                v["commune_code"],
                "" if v["population"] is None else f"{v['population']:,}",
                "?" if power is None else "yes" if power else "no",
                f"{v['lat']:.6f}",
                f"{v['lon']:.6f}",
                when(v["retired_at"]),
            ]
        )
    console().print(table(columns, rows))


@geodata_app.command("synth")
def geodata_synth(
    province: ProvinceOpt = None,
    national: Annotated[
        bool, typer.Option("--national", help="The whole country (benchmark shape).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 1,
    vi: Annotated[bool, typer.Option("--vi", help="Say what was stored in Vietnamese.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Store synthetic hamlets and sites (labelled synthetic everywhere) where no data exists."""
    from lomsong.coverage.compute import generate_and_store
    from lomsong.coverage.terminal import synth_sentence

    if national == (province is not None):
        raise ValidationError(
            "--province/--national", province, "give exactly one of --province CODE, --national"
        )
    engine = open_database(config, upgrade=True)
    with _progress() as progress:
        stored = generate_and_store(engine, province=province, seed=seed, progress=progress)
    typer.echo(synth_sentence(stored, "vi" if vi else "en"))


def _area(engine: Engine, province: str | None) -> Any:
    from lomsong.coverage.compute import classify_area, with_outages
    from lomsong.coverage.model import CoverageSettings
    from lomsong.coverage.overlay import down_links
    from lomsong.storage.outages import open_outages

    settings = CoverageSettings()
    area = classify_area(engine, province, settings, now=time.time())
    links = down_links(open_outages(engine, province), settings.operator_keys())
    return area, with_outages(area, links)


def _writable(value: Path | None, allowed: tuple[str, ...]) -> Path | None:
    """Refuse an output file that cannot be written before any work is done."""
    if value is None:
        return None
    problem = suffix_problem(str(value), allowed)
    if problem is None and not value.parent.is_dir():
        problem = f"folder {str(value.parent)!r} does not exist"
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


def _any_format(value: Path | None) -> Path | None:
    return _writable(value, tuple(FORMATS))


def _plain_format(value: Path | None) -> Path | None:
    return _writable(value, PLAIN)


OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write every column to .geojson, .gpkg, .csv or .xlsx.",
        callback=_any_format,
    ),
]
PlainOutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write every row to .csv or .xlsx.", callback=_plain_format
    ),
]
ViOpt = Annotated[
    bool, typer.Option("--vi", help="In Vietnamese: headers, status words, numbers (1.507).")
]


@coverage_app.command("classify")
def coverage_classify(
    province: ProvinceOpt = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only hamlets with this status: covered, weak, none or outage."),
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option(help="With --status: that operator's status instead of the overall one."),
    ] = None,
    commune: Annotated[str | None, typer.Option(help="Only this commune (code).")] = None,
    output: OutputOpt = None,
    vi: ViOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Per-hamlet status, per operator and overall, with the outages open now.

    ``--status none`` lists the hamlets with no signal from any operator (trắng sóng);
    ``--status none --operator viettel`` those without Viettel's."""
    from lomsong.coverage.export import write_table
    from lomsong.coverage.model import CoverageSettings
    from lomsong.coverage.results import filter_status, parse_status, status_frame
    from lomsong.coverage.terminal import classify_line

    wanted = parse_status(status) if status is not None else None
    keys = CoverageSettings().operator_keys()
    if operator is not None and operator not in keys:
        raise ValidationError("--operator", operator, f"expected one of {{{', '.join(keys)}}}")
    if operator is not None and wanted is None:
        raise ValidationError("--operator", operator, "needs --status")
    engine = open_database(config, upgrade=False)
    area, classification = _area(engine, province)
    frame = status_frame(area.details, classification)
    frame = filter_status(frame, status=wanted, operator=operator, commune=commune)
    typer.echo(classify_line(frame, "vi" if vi else "en"))
    if output is not None:
        write_table(frame, output, vi=vi, notes=_notes(province, vi))
        _written(output, vi)


def _notes(province: str | None, vi: bool) -> dict[str, str]:
    """The workbook's notes: which province, and when it was computed (local time)."""
    from lomsong.words import local_time

    if vi:
        return {"Tỉnh": province or "cả nước", "Thời điểm tính": local_time(time.time())}
    return {"Province": province or "all", "Computed at": local_time(time.time())}


def _written(output: Path, vi: bool) -> None:
    typer.echo(f"{'Đã ghi' if vi else 'Written to'} {output}")


@coverage_app.command("summary")
def coverage_summary(
    province: ProvinceOpt = None,
    by: Annotated[str, typer.Option(help="commune or province.")] = "commune",
    wide: Annotated[
        bool,
        typer.Option("--wide", help="Every column, per operator too, however wide it makes it."),
    ] = False,
    output: OutputOpt = None,
    vi: ViOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Hamlets and people covered, weak, without signal or cut off, per commune (or province)
    with totals; --wide or -o for every operator and the hamlets without grid power."""
    from lomsong.coverage import boundaries
    from lomsong.coverage.compute import summarize, with_shapes
    from lomsong.coverage.export import write_table
    from lomsong.coverage.terminal import summary_table, wide_table
    from lomsong.tables import console

    if by not in ("commune", "province"):
        raise ValidationError("--by", by, "expected one of {commune, province}")
    level: Literal["commune", "province"] = "commune" if by == "commune" else "province"
    engine = open_database(config, upgrade=False)
    area, classification = _area(engine, province)
    frame = summarize(area, classification, level)
    if output is not None:
        if output.suffix.lower() in (".geojson", ".json", ".gpkg"):
            frame = with_shapes(frame, engine, level)
        write_table(frame, output, vi=vi, layer="summary", notes=_notes(province, vi))
        _written(output, vi)
        return
    if wide:
        table, width = wide_table(frame, "vi" if vi else "en")
        console(width).print(table)
        return
    if province is None:
        label = "Cả nước" if vi else "All provinces"
    else:
        names = dict(
            zip(boundaries.provinces()["code"], boundaries.provinces()["name"], strict=True)
        )
        label = names.get(province, province)
    lang: Language = "vi" if vi else "en"
    out = console()
    out.print(summary_table(frame, level, lang, total_label=label, width=out.width))
    if bool(frame["synthetic"].any()):
        out.print(
            "Dữ liệu giả lập."
            if vi
            else "Synthetic data: the hamlets and sites are generated, not real."
        )


@coverage_app.command("whatif")
def coverage_whatif(
    site: Annotated[str, typer.Option(help="LAT,LON of the candidate site.")],
    operator: Annotated[str, typer.Option(help="Operator, e.g. viettel.")],
    height: Annotated[float, typer.Option(help="Antenna height, m.")] = 30.0,
    azimuth: Annotated[
        float | None, typer.Option(help="Sector azimuth, degrees (omni without).")
    ] = None,
    beamwidth: Annotated[float | None, typer.Option(help="Beamwidth, degrees.")] = None,
    band: Annotated[float, typer.Option(help="Band, MHz.")] = 1800.0,
    power: Annotated[float | None, typer.Option(help="Transmit power, dBm.")] = None,
    radio: Annotated[str, typer.Option(help="gsm, umts, lte or nr.")] = "lte",
    province: ProvinceOpt = None,
    output: PlainOutputOpt = None,
    vi: ViOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Which hamlets, and how many people, change status if this site is built."""
    import numpy as np
    import pandas as pd
    import shapely

    from lomsong.coverage.compute import classify_area, whatif
    from lomsong.coverage.export import write_table
    from lomsong.coverage.locate import Geography
    from lomsong.coverage.model import CoverageSettings
    from lomsong.coverage.results import (
        Candidate,
        candidate_sectors,
        parse_site,
        whatif_rows,
        whatif_totals,
    )
    from lomsong.coverage.terminal import whatif_lines

    lat, lon = parse_site(site)
    settings = CoverageSettings()
    candidate = Candidate(
        lat=lat,
        lon=lon,
        operator=operator,
        height_m=height,
        azimuth_deg=azimuth,
        beamwidth_deg=beamwidth,
        band_mhz=band,
        power_dbm=power,
        radio=radio,
    )
    sectors = candidate_sectors([candidate], settings)
    engine = open_database(config, upgrade=False)
    if province is None:
        geo = Geography.load(engine)
        (code,) = geo.commune_at(np.array([shapely.Point(lon, lat)]), 2000.0)
        if code is None:
            raise ValidationError("--site", site, "outside Vietnam")
        province = geo.known[code][2]
    now = time.time()
    area = classify_area(engine, province, settings, now=now)
    rows = whatif_rows(whatif(area, sectors, settings, now=now).table())
    totals = whatif_totals(rows)
    for line in whatif_lines(totals, operator, "vi" if vi else "en"):
        typer.echo(line)
    if output is not None:
        write_table(
            pd.DataFrame(rows),
            output,
            vi=vi,
            synthetic=bool(area.hamlets.synthetic.any()),
            layer="whatif",
            notes=_notes(province, vi),
        )
        _written(output, vi)


@coverage_app.command("deadzones")
def coverage_deadzones(
    province: Annotated[str, typer.Option("--province", help="Province code, e.g. 04.")],
    output: OutputOpt = None,
    vi: ViOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Dead-zone polygons: the part of each commune outside every operator's footprint, km²."""
    from lomsong.coverage.compute import area_dead_zones
    from lomsong.coverage.export import write_table
    from lomsong.coverage.model import CoverageSettings

    engine = open_database(config, upgrade=False)
    zones = area_dead_zones(engine, province, CoverageSettings())
    total = float(zones["area_km2"].sum())
    with_dead = int((zones["area_km2"] > 0).sum())
    typer.echo(
        f"{len(zones)} communes, {with_dead} with a dead zone; {total:.1f} km² in all"
        + (" (synthetic sites)" if bool(zones["synthetic"].any()) else "")
    )
    if output is not None:
        write_table(zones, output, vi=vi, layer="deadzones", notes=_notes(province, vi))
        _written(output, vi)


def add_commands(root: typer.Typer) -> None:
    """Mount ``lomsong geodata`` and ``lomsong coverage``."""
    root.add_typer(geodata_app, name="geodata")
    root.add_typer(coverage_app, name="coverage")
