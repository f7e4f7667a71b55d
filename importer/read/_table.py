"""From raw records (row number, cells) to a table: the header row found, the columns kept,
rows checked and turned into :class:`Row`. Shared by the text and the workbook readers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ..model import Row

Record = tuple[int, list[Any]]
#: How many non-blank rows may stand above the header (titles, notes), and how many rows below a
#: candidate are looked at to judge it.
HEADER_SCAN = 30
LOOKAHEAD = 10


def column_letter(index: int) -> str:
    """Spreadsheet column letters of a 0-based position: 0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _filled(cells: list[Any]) -> list[Any]:
    return [c for c in cells if not is_blank(c)]


@dataclass(frozen=True)
class Layout:
    """Where the table is: its header row, and the position and name of each column kept."""

    header_row: int
    positions: tuple[int, ...]
    headers: tuple[str, ...]
    #: Added to a cell's position to get its spreadsheet column (a sheet's used range may start
    #: to the right of column A).
    column_offset: int = 0

    def column_name(self, position: int) -> str:
        return column_letter(position + self.column_offset)


def find_layout(
    records: Iterable[Record], *, path: Path, sheet: str | None, column_offset: int = 0
) -> Layout:
    """The table's layout. The header is the first row whose filled cells are all text and are at
    least half as many as in the widest of the rows just below it: title and note rows above a
    table are passed over, but a row of numbers or dates before any header means the table has
    none. SourceError when the source is empty, has no header, has duplicate header names, or has
    no data rows."""
    buffered = list(islice((r for r in records if _filled(r[1])), HEADER_SCAN + LOOKAHEAD))
    if not buffered:
        raise SourceError(
            "the file is empty" if sheet is None else "the sheet is empty", path=path, sheet=sheet
        )
    for index, (number, cells) in enumerate(buffered[:HEADER_SCAN]):
        filled = _filled(cells)
        if not all(isinstance(c, str) for c in filled):
            shown = ", ".join(_show(c) for c in filled[:6])
            raise SourceError(
                f"no header row: this row holds numbers or dates ({shown}) and no row of column "
                "names stands above it; add one",
                path=path,
                sheet=sheet,
                row=number,
            )
        below = buffered[index + 1 : index + 1 + LOOKAHEAD]
        widest = max((len(_filled(r[1])) for r in below), default=0)
        if 2 * len(filled) >= widest:
            layout = _layout(number, cells, path=path, sheet=sheet, column_offset=column_offset)
            if not below:
                raise SourceError(
                    "no data rows below the header", path=path, sheet=sheet, row=number
                )
            return layout
    raise SourceError(
        f"no header row found in the first {HEADER_SCAN} rows with text",
        path=path,
        sheet=sheet,
        row=buffered[0][0],
    )


def _show(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


def _layout(
    number: int, cells: list[Any], *, path: Path, sheet: str | None, column_offset: int
) -> Layout:
    positions: list[int] = []
    headers: list[str] = []
    seen: dict[str, int] = {}
    for position, cell in enumerate(cells):
        if is_blank(cell):
            continue
        name = " ".join(str(cell).split())  # one line, single spaces: "Due\nDate" → "Due Date"
        key = name.casefold()
        if key in seen:
            first = column_letter(seen[key] + column_offset)
            here = column_letter(position + column_offset)
            raise SourceError(
                f"duplicate header {name!r} (columns {first} and {here}): rename one of them",
                path=path,
                sheet=sheet,
                row=number,
                column=here,
            )
        seen[key] = position
        positions.append(position)
        headers.append(name)
    return Layout(number, tuple(positions), tuple(headers), column_offset)


def checked_records(
    records: Iterable[Record], layout: Layout, *, path: Path, sheet: str | None
) -> Iterator[Record]:
    """The records below the header that hold data; a value in a column without a header is
    refused (it would otherwise be lost)."""
    kept = set(layout.positions)
    count = len(layout.headers)
    # The common table: columns side by side from the first position (every CSV, most sheets).
    dense = layout.positions == tuple(range(count))
    header_row = layout.header_row
    for record in records:
        number, cells = record
        if number <= header_row or _blank_row(cells):
            continue
        if len(cells) > count or not dense:
            _refuse_stray(cells, kept, layout, number, path=path, sheet=sheet)
        yield record


def table_rows(
    records: Iterable[Record], layout: Layout, *, path: Path, sheet: str | None
) -> Iterator[Row]:
    """The data rows below the header as :class:`Row` (see :func:`checked_records`)."""
    headers, positions = layout.headers, layout.positions
    count = len(headers)
    dense = positions == tuple(range(count))
    for number, cells in checked_records(records, layout, path=path, sheet=sheet):
        width = len(cells)
        if dense and width == count:
            values = dict(zip(headers, cells, strict=True))
        else:
            values = {
                h: cells[p] if p < width else "" for h, p in zip(headers, positions, strict=True)
            }
        yield Row(number, values)


def column_values(
    records: Iterable[Record],
    layout: Layout,
    header: str | None,
    *,
    path: Path,
    sheet: str | None,
) -> Iterator[tuple[int, Any]]:
    """``(row number, value of one column)`` for every data row, with the same checks as
    :func:`table_rows` but without building rows: for a pass that only needs one column."""
    position = layout.positions[layout.headers.index(header)] if header is not None else None
    for number, cells in checked_records(records, layout, path=path, sheet=sheet):
        value = cells[position] if position is not None and position < len(cells) else None
        yield number, value


def _blank_row(cells: list[Any]) -> bool:
    """Whether a row holds nothing but empty or whitespace cells (C-level checks first)."""
    empty = cells.count("")
    if empty == len(cells):
        return True
    try:
        return not "".join(cells).strip()  # all text
    except TypeError:  # typed workbook cells: stops at the first one with data
        return all(c is None or (c.__class__ is str and not c.strip()) for c in cells)


def _refuse_stray(
    cells: list[Any], kept: set[int], layout: Layout, number: int, *, path: Path, sheet: str | None
) -> None:
    for position, value in enumerate(cells):
        if position in kept or is_blank(value):
            continue
        column = layout.column_name(position)
        beyond = position > layout.positions[-1]
        why = "more cells than headers" if beyond else "a value in a column with no header"
        raise SourceError(
            f"{why}: {value!r} in column {column}; add a header for it or remove it",
            path=path,
            sheet=sheet,
            row=number,
            column=column,
        )
