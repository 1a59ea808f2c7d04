"""Writing a table (a header and rows) as CSV or as an Excel workbook, for people to open.

One writer for the coverage CLI's files and the collector's downloads, so that a table reads
the same whichever way it was fetched. It takes plain rows rather than a data frame: the
collector's outage list comes from SQL and needs no pandas, and the rows are consumed as they
come, so a large export is never held twice.

CSV is UTF-8 with a byte-order mark: without it Excel reads the file as the local code page and
garbles the diacritics. A workbook has the data on one sheet, with a bold frozen header, and a
notes sheet (source, time, thresholds); when the data is synthetic the notes sheet comes first
and says so in red.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

BOM = "\ufeff"
#: bytes gathered before a chunk of CSV is handed on
CHUNK_BYTES = 64 * 1024
#: rows looked at to size the workbook's columns
WIDTH_SAMPLE = 200


def cell(value: Any) -> Any:
    """A value a spreadsheet takes: NaN and pandas' NA become empty, numpy scalars Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return cell(value.item())
    return value


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The table as UTF-8 CSV with a BOM, in chunks of about ``CHUNK_BYTES``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if (v := cell(x)) is None else v for x in row])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def write_xlsx(
    target: str | IO[bytes],
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str,
    notes_sheet: str,
    notes: Mapping[str, str],
    warning: str | None = None,
) -> None:
    """Write a workbook to ``target`` (a path or a binary file), row by row.

    ``warning`` (the synthetic-data note) puts the notes sheet first, opened, its first line
    bold red. Openpyxl's write-only mode keeps only the current row in memory.
    """
    write_xlsx_sheets(
        target, [(sheet, header, rows)], notes_sheet=notes_sheet, notes=notes, warning=warning
    )


def write_xlsx_sheets(
    target: str | IO[bytes] | Path,
    sheets: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]],
    *,
    notes_sheet: str,
    notes: Mapping[str, str],
    warning: str | None = None,
) -> None:
    """A workbook of several data sheets, each ``(name, header, rows)``, then the notes (first
    when there is a ``warning``), as ``write_xlsx`` writes one."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    if warning is not None:
        _notes(book, notes_sheet, notes, warning)
    for sheet, header, rows in sheets:
        _data(book, sheet, header, rows)
    if warning is None:
        _notes(book, notes_sheet, notes, None)
    book.save(target)


def _data(book: Any, sheet: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    data = book.create_sheet(sheet[:31])
    rows = iter(rows)
    sample = [[cell(v) for v in row] for row in itertools.islice(rows, WIDTH_SAMPLE)]
    for i, name in enumerate(header):
        width = max([len(str(name))] + [len(str(r[i] if r[i] is not None else "")) for r in sample])
        data.column_dimensions[_letter(i)].width = min(max(width + 2, 8), 60)
    data.freeze_panes = "A2"
    bold = Font(bold=True)
    data.append([_styled(WriteOnlyCell(data, value=name), bold) for name in header])
    for first in sample:
        data.append(first)
    for row in rows:
        data.append([cell(v) for v in row])


def _notes(book: Any, title: str, notes: Mapping[str, str], warning: str | None) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    sheet = book.create_sheet(title[:31])
    sheet.column_dimensions["A"].width = 30
    sheet.column_dimensions["B"].width = 40
    if warning is not None:
        sheet.append(
            [_styled(WriteOnlyCell(sheet, value=warning), Font(bold=True, color="C00000"))]
        )
    for label, text in notes.items():
        sheet.append([label, text])


def _styled(c: Any, font: Any) -> Any:
    c.font = font
    return c


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index + 1))
