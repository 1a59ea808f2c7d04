"""What the coverage commands say on the terminal: sentences and tables that fit 80–100 columns.

Files (``-o``) carry every column; the terminal gets what a person reads first: per commune (or
province) how many hamlets and people are covered, weak, without signal or cut off by an outage,
with a totals row, numbers written the Vietnamese (``1.507``) or English (``1,507``) way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from rich.table import Table

from lomsong.coverage.model import STATUS_LABELS_VI, Status
from lomsong.tables import Column, table, width_of
from lomsong.words import Language, number, operator_name

if TYPE_CHECKING:
    from lomsong.coverage.compute import Synthesized

STATUSES = [s.value for s in Status]
_STATUS_EN = {"covered": "covered", "weak": "weak", "none": "no signal", "outage": "outage"}


def status_word(status: str, lang: Language) -> str:
    """``no signal`` / ``trắng sóng``."""
    if lang == "vi":
        return {str(s.value): label for s, label in STATUS_LABELS_VI.items()}.get(status, status)
    return _STATUS_EN.get(status, status)


def counted(n: int, one: str, many: str, lang: Language) -> str:
    """``1 hamlet``, ``2 hamlets``, ``1.507 thôn``: Vietnamese nouns have no plural."""
    return f"{number(n, lang)} {one if n == 1 or lang == 'vi' else many}"


def hamlets(n: int, lang: Language) -> str:
    return counted(n, "hamlet", "hamlets", lang) if lang == "en" else f"{number(n, lang)} thôn"


def people(n: int, lang: Language) -> str:
    return counted(n, "person", "people", lang) if lang == "en" else f"{number(n, lang)} người"


def summary_table(
    frame: pd.DataFrame,
    level: Literal["commune", "province"],
    lang: Language,
    *,
    total_label: str,
    width: int | None = None,
) -> Table:
    """Per commune (or province) the hamlets and people of each status, overall, and a totals
    row: one row of two lines (hamlets, people) each, so that it fits 80 columns."""
    overall = frame[frame["operator"] == "overall"]
    vi = lang == "vi"
    place = {"commune": ("Commune", "Xã"), "province": ("Province", "Tỉnh")}[level][vi]
    columns = [
        Column(place, wrap=True, min_width=20),
        Column("Mã" if vi else "Code", drop=1),
        Column(""),
        Column("Tổng" if vi else "Total", numeric=True),
        *(Column(_header(s, lang), numeric=True) for s in STATUSES),
    ]
    measure = f"{'thôn' if vi else 'hamlets'}\n{'người' if vi else 'people'}"

    def cells(h: Mapping[str, Any]) -> list[str]:
        pairs = [("hamlets", "population")] + [
            (f"hamlets_{s}", f"population_{s}") for s in STATUSES
        ]
        return [f"{number(int(h[a]), lang)}\n{number(int(h[b]), lang)}" for a, b in pairs]

    rows = [
        [str(r[f"{level}_name"] or ""), str(r[f"{level}_code"]), measure, *cells(r)]
        for r in overall.to_dict("records")
    ]
    sums = overall.select_dtypes("number").sum().to_dict()
    footer = [total_label, "", measure, *cells(sums)] if len(rows) > 1 else None
    return table(columns, rows, width=width, footer=footer)


def _header(status: str, lang: Language) -> str:
    word = (
        "mất sóng\ndo sự cố" if lang == "vi" and status == "outage" else status_word(status, lang)
    )
    return word[:1].upper() + word[1:]


def wide_table(frame: pd.DataFrame, lang: Language) -> tuple[Table, int]:
    """Every column of the summary, as many columns wide as that takes (``--wide``)."""
    columns = [Column(str(c), numeric=pd.api.types.is_numeric_dtype(frame[c])) for c in frame]

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
            return number(int(v), lang)
        return str(v)

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    width = width_of(columns, rows)
    return table(columns, rows, width=width), width


def whatif_lines(totals: Mapping[str, Any], operator: str, lang: Language) -> list[str]:
    """The what-if answer: how many hamlets and people change and improve, then each change of
    status once (an operator's change that is also the overall one is said once, for both)."""
    vi = lang == "vi"
    changed = (
        f"{hamlets(totals['hamlets_changed'], lang)} ({people(totals['population_changed'], lang)})"
    )
    improved = (
        f"{hamlets(totals['hamlets_improved'], lang)} "
        f"({people(totals['population_improved'], lang)})"
    )
    if vi:
        head = (
            f"Trạm mới của {operator_name(operator, lang)}: {changed} đổi trạng thái, "
            f"{improved} được cải thiện"
        )
    else:
        verb = "changes" if totals["hamlets_changed"] == 1 else "change"
        better = "improves" if totals["hamlets_improved"] == 1 else "improve"
        head = (
            f"A new {operator_name(operator, lang)} site: {changed} {verb} status, "
            f"{improved} {better}"
        )
    lines = [head]
    seen: dict[tuple[str, str, int, int], list[str]] = {}
    # the overall change first, then the operator's
    ordered = sorted(totals["transitions"].items(), key=lambda kv: not kv[0].startswith("overall"))
    for key, t in ordered:
        scope, _, change = key.partition(": ")
        before, _, after = change.partition("→")
        seen.setdefault((before, after, t["hamlets"], t["population"]), []).append(scope)
    for (before, after, n, pop), scopes in seen.items():
        names = [operator_name(s, lang) for s in scopes]
        joined = f" {'và' if vi else 'and'} ".join(names)
        lines.append(
            f"  {joined}: {status_word(before, lang)} → {status_word(after, lang)}: "
            f"{hamlets(n, lang)}, {people(pop, lang)}"
        )
    return lines


def classify_line(frame: pd.DataFrame, lang: Language) -> str:
    """``1,507 hamlets (573,119 people): covered 1,202, weak 287, no signal 18, outage 0``."""
    counts = frame["status"].value_counts().to_dict()
    total = int(frame["population"].fillna(0).sum())
    parts = ", ".join(
        f"{status_word(s, lang)} {number(int(counts.get(s, 0)), lang)}" for s in STATUSES
    )
    return f"{hamlets(len(frame), lang)} ({people(total, lang)}): {parts}"


_CHANGES = {
    "inserted": ("new", "mới"),
    "updated": ("changed", "cập nhật"),
    "unchanged": ("unchanged", "không đổi"),
    "retired": ("retired", "ngừng dùng"),
    "deleted": ("removed", "xoá"),
}


def synth_sentence(result: Synthesized, lang: Language) -> str:
    """What ``geodata synth`` stored, in a sentence: counts, imports and what changed."""
    vi = lang == "vi"

    def changes(found: Mapping[str, int]) -> str:
        return ", ".join(
            f"{number(n, lang)} {_CHANGES.get(k, (k, k))[vi]}" for k, n in found.items() if n
        )

    where = (
        ("cả nước" if vi else "the whole country")
        if result.province is None
        else f"{'tỉnh' if vi else 'province'} {result.province}"
    )
    if vi:
        return (
            f"Đã tạo {number(result.hamlets, lang)} thôn/bản và {number(result.sectors, lang)} "
            f"cell trạm BTS (dữ liệu mô phỏng) cho {where}, seed {result.seed}: "
            f"lần nhập {result.hamlet_import} ({changes(result.hamlet_changes)}), "
            f"lần nhập {result.site_import} ({changes(result.site_changes)})"
        )
    return (
        f"Stored {number(result.hamlets, lang)} synthetic hamlets and "
        f"{number(result.sectors, lang)} synthetic BTS sectors for {where}, seed {result.seed}: "
        f"import {result.hamlet_import} ({changes(result.hamlet_changes)}), "
        f"import {result.site_import} ({changes(result.site_changes)})"
    )
