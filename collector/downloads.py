"""The read API's tables as files to open in Excel: ``?format=csv`` or ``?format=xlsx``.

An officer who clicks "Exports" expects a file, not 900 KB of JSON in the browser. JSON stays
the default so that scripts keep working; ``csv`` and ``xlsx`` answer an attachment whose
headers and words are in the ``lang`` asked (Vietnamese by default: the readers are provincial
officers), written by the same writer as the coverage CLI's files (``coverage/sheets.py``).

The file's name is given twice in ``Content-Disposition``: ASCII for old clients and, per
RFC 5987, in UTF-8 with its diacritics (``thôn-bản_04.csv``).
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from lomsong.coverage.sheets import csv_chunks, write_xlsx
from lomsong.timefmt import LOCAL_TZ
from lomsong.words import Language, local_time, operator_name

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["json", "csv", "xlsx"]
FormatQuery = Annotated[
    Format,
    Query(alias="format", description="json (the default), or a file: csv (UTF-8) or xlsx"),
]
LangQuery = Annotated[
    Language, Query(description="the language of a csv or xlsx file's headers and words")
]

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: what a route with a ``format`` answers, for the OpenAPI schema (and so for /docs)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or with format=csv or xlsx a file to download",
        "content": {"application/json": {}, "text/csv": {}, XLSX_TYPE: {}},
    }
}
#: a workbook bigger than this goes to a temporary file rather than staying in memory
SPOOL_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


@dataclass
class Table:
    """A table to send as a file: its header, its rows (consumed once) and what to call it."""

    header: Sequence[str]
    rows: Iterable[Sequence[Any]]
    stem: str  # the file's name without extension, e.g. ``thôn-bản_04``
    sheet: str
    notes_sheet: str
    notes: Mapping[str, str] = field(default_factory=dict)
    warning: str | None = None  # the synthetic-data note, if it is


def stem(kind: tuple[str, str], lang: Language, *parts: str | None) -> str:
    """``thôn-bản_04`` / ``hamlets_04``: the kind of table in ``lang``, then the filters."""
    words = [kind[0] if lang == "vi" else kind[1], *(p for p in parts if p)]
    return "_".join(words)


def ascii_name(name: str) -> str:
    """``thôn-bản_04.csv`` → ``thon-ban_04.csv``: diacritics dropped, anything else odd a dash."""
    plain = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in plain)


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` that every browser saves under ``filename``."""
    return f"attachment; filename=\"{ascii_name(filename)}\"; filename*=UTF-8''{quote(filename)}"


def notes(lang: Language, now: float, **facts: str) -> dict[str, str]:
    """The workbook's notes: what it is, when it was made (local time) and the filters."""
    vi = lang == "vi"
    out = {
        ("Nguồn" if vi else "Source"): "lomsong collector",
        ("Thời điểm xuất" if vi else "Exported at"): f"{local_time(now)} ({LOCAL_TZ})",
    }
    out.update(facts)
    return out


async def download(table: Table, fmt: Format) -> Response:
    """The table as an attachment in ``fmt`` (``csv`` or ``xlsx``)."""
    if fmt == "csv":
        return StreamingResponse(
            csv_chunks(table.header, table.rows),
            media_type=CSV_TYPE,
            headers={"Content-Disposition": attachment(table.stem + ".csv")},
        )
    if fmt != "xlsx":
        raise ValueError(f"format: not a file format (got {fmt!r})")
    book = await run_in_threadpool(_workbook, table)
    size = book.seek(0, 2)
    book.seek(0)
    return StreamingResponse(
        _chunks(book),
        media_type=XLSX_TYPE,
        headers={
            "Content-Disposition": attachment(table.stem + ".xlsx"),
            "Content-Length": str(size),
        },
    )


def _workbook(table: Table) -> IO[bytes]:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    write_xlsx(
        spool,
        table.header,
        table.rows,
        sheet=table.sheet,
        notes_sheet=table.notes_sheet,
        notes=table.notes,
        warning=table.warning,
    )
    return spool


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def frame_table(
    frame: pd.DataFrame,
    lang: Language,
    *,
    stem: str,
    layer: str,
    notes: Mapping[str, str],
) -> Table:
    """A hamlet or summary frame as the coverage CLI writes it: the same columns and headers;
    operators by their names, statuses in Vietnamese for ``vi``."""
    from lomsong.coverage.export import SYNTHETIC_NOTE, prepared, rows_of, sheet_names

    frame, synthetic = prepared(frame)
    for column in ("best_operator", "operator"):
        if column in frame.columns:
            frame = frame.assign(**{column: [operator_name(o, lang) for o in frame[column]]})
    header, rows = rows_of(frame, vi=lang == "vi")
    sheet, notes_sheet = sheet_names(vi=lang == "vi", layer=layer)
    return Table(
        header,
        rows,
        stem=stem,
        sheet=sheet,
        notes_sheet=notes_sheet,
        notes=notes,
        warning=SYNTHETIC_NOTE if synthetic else None,
    )
