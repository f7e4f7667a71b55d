"""From raw records (row number, cells) to a table: the header row found, the columns kept,
rows checked and turned into :class:`Row`. Shared by the text and the workbook readers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from ..errors import EmptySource, SourceError
from ._limits import LIMITS

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
    """Whether a cell holds nothing: None, empty or spaces."""
    return value is None or value == "" or (value.__class__ is str and value.isspace())


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


#: The most columns a table may have, by default: Excel's own limit (:class:`~._limits.ReadLimits`).
MAX_COLUMNS = LIMITS.columns


def find_layout(
    records: Iterable[Record],
    *,
    path: Path,
    sheet: str | None,
    column_offset: int = 0,
    max_columns: int = MAX_COLUMNS,
    header_row: int | None = None,
) -> Layout:
    """The table's layout. The header is the first row whose filled cells are all text and are at
    least half as many as in the widest of the rows just below it: title and note rows above a
    table are passed over, but a row of numbers or dates before any header means the table has
    none. ``header_row`` (the row's number in the sheet, from 1) says which row it is instead.
    SourceError when the source is empty, has no header, has duplicate header names, or has
    no data rows."""
    if header_row is not None:
        records = (r for r in records if r[0] >= header_row)
    buffered = list(islice((r for r in records if _filled(r[1])), HEADER_SCAN + LOOKAHEAD))
    for number, cells in buffered:
        if len(cells) > max_columns:
            raise SourceError(
                f"{len(cells):,} cells in a row, more than the {max_columns:,} columns a sheet "
                "may have: this is not a table of tasks (or its delimiter was misread)",
                path=path,
                sheet=sheet,
                row=number,
            )
    if header_row is not None and (not buffered or buffered[0][0] != header_row):
        where = "the file" if sheet is None else "the sheet"
        raise SourceError(
            f"the header row was given as row {header_row}, which is blank"
            if buffered
            else f"the header row was given as row {header_row}: {where} holds nothing there "
            "or below",
            path=path,
            sheet=sheet,
            row=header_row,
        )
    if not buffered:
        raise SourceError(
            "the file is empty" if sheet is None else "the sheet is empty", path=path, sheet=sheet
        )
    if header_row is not None:
        number, cells = buffered[0]
        layout = _layout(number, cells, path=path, sheet=sheet, column_offset=column_offset)
        if len(buffered) == 1:
            raise EmptySource("no data rows below the header", path=path, sheet=sheet, row=number)
        return layout
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
        if len(filled) == 1 < widest and len(below) > 1 and _spans(below[0][1], widest):
            # One cell, right above a row of names as wide as the table (with rows below it):
            # a title, even over two columns (a header names every column that holds values).
            continue
        if 2 * len(filled) >= widest:
            layout = _layout(number, cells, path=path, sheet=sheet, column_offset=column_offset)
            if not below:
                raise EmptySource(
                    "no data rows below the header", path=path, sheet=sheet, row=number
                )
            return layout
    raise SourceError(
        f"no header row found in the first {HEADER_SCAN} rows with text",
        path=path,
        sheet=sheet,
        row=buffered[0][0],
    )


#: Text that reads as a number, a date or a time: a value, never a column's name.
_VALUE_LIKE = re.compile(r"[\d\s.,:/+\-]*\d[\d\s.,:/+\-]*")


def _spans(cells: list[Any], widest: int) -> bool:
    """Whether a row reads as a table's header: names (text, none of them a number or a date)
    in as many cells as the table's widest row."""
    filled = _filled(cells)
    return len(filled) >= widest and all(
        isinstance(c, str) and not _VALUE_LIKE.fullmatch(c.strip()) for c in filled
    )


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


class Batch:
    """Consecutive data rows: their row numbers, and their cells aligned to the header, by row
    (``rows``) or by column (``columns``): a reader gives one, the other is made when asked."""

    __slots__ = ("_columns", "_rows", "numbers")

    def __init__(
        self,
        numbers: list[int],
        rows: Sequence[Sequence[Any]] | None = None,
        *,
        columns: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        self.numbers = numbers
        self._rows = rows
        self._columns = columns

    @property
    def rows(self) -> Sequence[Sequence[Any]]:
        if self._rows is None:
            self._rows = list(zip(*self._columns, strict=True)) if self._columns else []
        return self._rows

    @property
    def columns(self) -> Sequence[Sequence[Any]]:
        if self._columns is None:
            self._columns = list(zip(*self._rows, strict=True)) if self._rows else []
        return self._columns

    def column(self, index: int) -> Sequence[Any]:
        """One column, without making the others when the batch came by rows."""
        if self._columns is not None or not self._rows:
            return self.columns[index]
        return list(map(itemgetter(index), self._rows))


def batch_of(
    numbers: list[int], chunk: list[list[Any]], layout: Layout, *, path: Path, sheet: str | None
) -> Batch:
    """The data rows among consecutive records: blank ones left out, cells aligned to the
    header, and a value in a column without a header refused (it would otherwise be lost)."""
    positions = layout.positions
    count = len(positions)
    dense = positions == tuple(range(count))
    if dense and _plain(chunk, count):
        return Batch(numbers, chunk)  # the common case: nothing to skip or fix
    kept = set(positions)
    kept_numbers, rows = [], []
    for number, cells in zip(numbers, chunk, strict=True):
        if blank_row(cells):
            continue
        if len(cells) != count or not dense:
            refuse_stray(cells, kept, layout, number, path=path, sheet=sheet)
            cells = fit(cells, positions, dense)
        kept_numbers.append(number)
        rows.append(cells)
    return Batch(kept_numbers, rows)


def _plain(chunk: list[list[Any]], count: int) -> bool:
    """Whether every record has exactly ``count`` cells and a filled first cell (so none is
    blank): tested with C-level loops, since every row of a file passes here."""
    if not all(map(count.__eq__, map(len, chunk))):
        return False
    return _no_blank([cells[0] for cells in chunk] if count else [])


def sheet_batches(
    chunks: Iterable[tuple[int, list[list[Any]]]],
    layout: Layout,
    *,
    path: Path,
    sheet: str | None,
) -> Iterator[Batch]:
    """The data rows of a sheet read by columns (as a workbook's spool gives them: each chunk
    its number of rows and its columns, from row 1), a batch per chunk, as
    :func:`batch_of` makes them. A chunk whose first column is filled in every row (then
    no row is blank), and whose columns beyond the header's are blank, is taken by its columns
    as they are; any other goes row by row."""
    count = len(layout.positions)
    dense = layout.positions == tuple(range(count))
    first = 1
    for size, columns in chunks:
        numbers = list(range(first, first + size))
        first += size
        skip = max(0, layout.header_row - numbers[0] + 1)  # the header and the rows above it
        if skip >= size:
            continue
        if skip:
            numbers = numbers[skip:]
            columns = [c[skip:] for c in columns]
        whole = dense and count > 0 and len(columns) >= count
        if whole and _no_blank(columns[0]) and all(map(_blank_column, columns[count:])):
            yield Batch(numbers, columns=columns[:count])
            continue
        rows = list(map(list, zip(*columns, strict=True))) if columns else [[] for _ in numbers]
        batch = batch_of(numbers, rows, layout, path=path, sheet=sheet)
        if batch.numbers:
            yield batch


def _no_blank(column: list[Any]) -> bool:
    """Whether no cell of ``column`` is blank (then no row of its batch is)."""
    if "" in column or None in column:
        return False
    try:
        return not any(map(str.isspace, column))
    except TypeError:  # typed workbook cells
        return not any(v.__class__ is str and v.isspace() for v in column)


def _blank_column(column: list[Any]) -> bool:
    """Whether every cell of ``column`` is blank."""
    texts = [c for c in column if c is not None] if None in column else column
    try:
        return not "".join(texts).strip()
    except TypeError:  # a typed cell: not blank
        return False


def fit(cells: list[Any], positions: tuple[int, ...], dense: bool) -> list[Any]:
    """The cells of the kept columns, in header order, padded with empty cells. (Cells past the
    header are blank here: :func:`refuse_stray` refused any other.)"""
    count = len(positions)
    if dense:
        return cells[:count] if len(cells) > count else cells + [""] * (count - len(cells))
    return [cells[p] if p < len(cells) else "" for p in positions]


def blank_row(cells: list[Any]) -> bool:
    """Whether a row holds nothing but empty or whitespace cells (C-level checks first)."""
    empty = cells.count("")
    if empty == len(cells):
        return True
    try:
        return not "".join(cells).strip()  # all text
    except TypeError:  # typed workbook cells: stops at the first one with data
        return all(c is None or (c.__class__ is str and not c.strip()) for c in cells)


def refuse_stray(
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
