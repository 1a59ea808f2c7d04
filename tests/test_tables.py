"""The CLI's tables (``lomsong.tables``): as wide as the terminal, at most 100 columns; text
wraps and the least important columns go first when it is narrow."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lomsong.tables import Column, table, terminal_width

COLUMNS = [
    Column("id", numeric=True),
    Column("name", wrap=True, min_width=12),
    Column("note", drop=2, wrap=True, min_width=10),
    Column("created", drop=1),
    Column("people", numeric=True),
]
ROWS = [
    [
        "1",
        "Trung tâm hành chính công xã Thục Phán",
        "tủ mạng tầng 2, cạnh phòng một cửa",
        "07:25 06/12/2026",
        "41,157",
    ],
    ["12", "Bản Nà Rị", "", "07:26 06/12/2026", "360"],
]


def draw(width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO())
    console.print(table(COLUMNS, ROWS, width=width, footer=["", "Tổng", "", "", "41,517"]))
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [100, 80, 60, 40])
def test_a_table_fits_its_width(width: int) -> None:
    lines = draw(width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "41,157" in text and "41,517" in text  # numbers never wrap
    assert lines[-1].split()[-1] == "41,517" and "Tổng" in lines[-1]  # the totals row, last


def test_the_least_important_columns_go_first() -> None:
    def headers(width: int) -> list[str]:
        return draw(width)[0].split()

    assert headers(100) == ["id", "name", "note", "created", "people"]
    assert headers(60) == ["id", "name", "note", "created", "people"]  # wrapped, all there
    assert headers(50) == ["id", "name", "created", "people"]  # the note (drop=2) went first
    assert headers(40) == ["id", "name", "people"]
    # and what is left wraps rather than being cut
    words = " ".join(draw(40)).split()
    assert {"Trung", "Thục", "Phán"} <= set(words)


@pytest.mark.parametrize(("columns", "expected"), [("80", 80), ("200", 100), ("60", 60)])
def test_the_terminal_width_is_columns_up_to_100(
    monkeypatch: pytest.MonkeyPatch, columns: str, expected: int
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert terminal_width() == expected
