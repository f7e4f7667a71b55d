"""Read: a source file → its header and streams of :class:`~importer.model.Row`.

CSV/TSV/TXT (encoding and delimiter detected) and XLSX/XLSM/XLSB/XLS/ODS (python-calamine). The
header row is found below title and blank rows; blank rows are skipped, and each row keeps the
number a person sees in the source (the Excel row, or the CSV line where the record starts).

:func:`open_source` reads only as far as the header and the first data row; :meth:`Source.rows`
streams the rows, afresh on every call, so a run can pass over the source more than once without
holding it in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import SourceError
from ..model import Row
from ._cache import RowCache
from ._formulas import MOST as MOST_UNSAVED
from ._formulas import Unsaved, likely_sheet, unsaved_formulas
from ._limits import LIMITS, ReadLimits
from ._table import Batch, Layout, column_letter, find_layout, is_blank, sheet_batches
from ._text import (
    NotFast,
    arrow_batches,
    detect_encoding,
    encoding_choices,
    fast_batches,
    sniff_delimiter,
    text_after_quote,
    text_batches,
    text_records,
)
from ._workbook import OLE_MAGIC, ZIP_MAGIC, Spooled, read_workbook, sheets_with_data

#: A workbook of at most this many cells keeps its rows in memory from one full pass to the
#: next (about 150 MB at most): a check reads it twice, and the second read is then free.
KEEP_CELLS = 1_500_000
#: The rows of a pass's batches.
_PASS = 4096
#: Text files from this size on are tried with pandas' reader (smaller ones are read faster than
#: pandas imports).
FAST_FROM = 4 << 20

V = TypeVar("V", bound=Callable[[Batch], None])

__all__ = [
    "LIMITS",
    "WORKBOOK_SUFFIXES",
    "Batch",
    "ReadLimits",
    "RowCache",
    "Source",
    "SourceError",
    "Unsaved",
    "column_letter",
    "detect_encoding",
    "encoding_choices",
    "is_blank",
    "list_sheets",
    "open_source",
]

#: The workbooks whose formulas without a saved value are looked for (SpreadsheetML's).
_FORMULA_SUFFIXES = frozenset({".xlsx", ".xlsm"})
TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".tab", ""})
WORKBOOK_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"})
Kind = Literal["text", "workbook"]


@dataclass
class Source:
    """An opened source: where the table is and how it was read."""

    path: Path
    kind: Kind
    sheet: str | None
    layout: Layout
    encoding: str | None = None
    delimiter: str | None = None
    date1904: bool = False
    #: What a person should know about how the file was read (a guessed encoding…).
    notes: list[str] = field(default_factory=list)
    #: Whether a full pass (:meth:`scan`) found that pandas' C reader reads this text exactly
    #: as the record reader does (then later passes use it, trusted: ``_verified``).
    fast: bool = False
    _verified: bool = field(default=False, repr=False)
    #: Whether a full pass found that pyarrow's reader reads this text exactly as the record
    #: reader does (then later passes use it: it is the fastest).
    arrow: bool = False
    #: A workbook sheet's rows from row 1, in chunks of columns (see :meth:`Spooled.chunks`;
    #: text sources are re-read from the file instead).
    _sheet_chunks: Callable[[], Iterator[tuple[int, list[list[Any]]]]] = field(
        default=lambda: iter(()), repr=False
    )
    #: Applied to every cell read (a results sheet read back gives its cells' own text).
    cell_filter: Callable[[Any], Any] | None = None
    #: Corrections made by a person: row number → {column position: the value to read instead}.
    #: The file itself is never changed.
    patches: dict[int, dict[int, Any]] = field(default_factory=dict)
    #: What must live as long as the source does (a workbook's spooled rows).
    _keep: Any = field(default=None, repr=False)
    #: Where a full pass (:meth:`scan`) keeps the rows it read, and where :meth:`batches` of
    #: given row numbers finds them again (see :class:`RowCache`).
    cache: RowCache | None = field(default=None, repr=False)
    #: A small workbook's rows as its last full pass read them (before any cell filter or
    #: correction), for the next pass to take instead of the spool (see :data:`KEEP_CELLS`).
    _kept: list[Batch] | None = field(default=None, repr=False)

    def reading(
        self,
        *,
        cell_filter: Callable[[Any], Any] | None = None,
        patches: dict[int, dict[int, Any]] | None = None,
    ) -> Source:
        """The same source read another way: every cell through ``cell_filter``, or with a
        person's corrections (``patches``). This source is left as it is."""
        return dataclasses.replace(
            self,
            cell_filter=cell_filter if cell_filter is not None else self.cell_filter,
            patches={**self.patches, **(patches or {})},
        )

    @property
    def headers(self) -> list[str]:
        """The names of the columns kept, in order."""
        return list(self.layout.headers)

    @property
    def header_row(self) -> int:
        """The row number of the header."""
        return self.layout.header_row

    def batches(
        self, size: int = _PASS, *, numbers: Collection[int] | None = None
    ) -> Iterator[Batch]:
        """The data rows in batches: row numbers, and cells aligned to :attr:`headers`.
        SourceError for a row that cannot be read. With ``numbers``, only the rows of those
        numbers: from the :attr:`cache` when it holds this source (the file is not read),
        else from a pass over the file."""
        if numbers is None:
            return self._changed(self._batches(size))
        if self.cache is not None and self.cache.holds(self):
            return self._changed(self.cache.batches_of(numbers))
        wanted = numbers if isinstance(numbers, set | frozenset) else set(numbers)
        return self._changed(_only(self._batches(size), wanted))

    def _changed(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """``batches`` with :attr:`cell_filter` and :attr:`patches` applied."""
        change, patches = self.cell_filter, self.patches
        if change is None and not patches:
            return batches
        return (_changed(b, change, patches) for b in batches)

    def _batches(self, size: int) -> Iterator[Batch]:
        if self._kept is not None and size == _PASS:
            return iter(self._kept)
        if self.kind == "text" and self.arrow:
            return arrow_batches(
                self.path,
                self.encoding or "utf-8",
                self.delimiter or ",",
                self.layout,
                verified=self._verified,
            )
        if self.kind == "text" and self.fast:
            return fast_batches(
                self.path,
                self.encoding or "utf-8",
                self.delimiter or ",",
                self.layout,
                size * 16,
                verified=self._verified,
            )
        if self.kind == "text":
            return text_batches(
                self.path,
                self.encoding or "utf-8",
                self.delimiter or ",",
                self.layout,
                size,
                self.notes,
            )
        return sheet_batches(self._sheet_chunks(), self.layout, path=self.path, sheet=self.sheet)

    def keeps_rows(self) -> bool:
        """Whether a full pass keeps the rows it reads (a workbook of at most
        :data:`KEEP_CELLS` cells, whose spool is read again otherwise)."""
        spooled = self._keep
        return isinstance(spooled, Spooled) and spooled.rows * len(self.headers) <= KEEP_CELLS

    def rows(self) -> Iterator[Row]:
        """Every data row, in source order (see :meth:`batches`)."""
        headers = self.headers
        for batch in self.batches():
            for number, cells in zip(batch.numbers, batch.rows, strict=True):
                yield Row(number, dict(zip(headers, cells, strict=True)))

    def scan(self, visitor: Callable[[], V] | None = None) -> tuple[int, V | None]:
        """One full pass, checking every row as :meth:`batches` does: the number of data rows,
        and the visitor (made by ``visitor()``) after it was given every batch.

        For a big text file the pass tries the fast readers first, pyarrow's then pandas': the
        first that reads the file exactly as the record reader does is used by later passes too
        (then trusted without its checks); when none can, the pass starts again with the record
        reader. Each attempt gets a fresh visitor.
        """

        def walk() -> tuple[int, V | None]:
            count = 0
            seen = visitor() if visitor is not None else None
            recording = self.cache.recording(self) if self.cache is not None else None
            read = self._batches(_PASS)
            kept: list[Batch] | None = [] if self.keeps_rows() else None
            if kept is not None:
                read = _keeping(read, kept)
            for batch in self._changed(recording.passing(read) if recording else read):
                count += len(batch.numbers)
                if seen is not None:
                    seen(batch)
            if recording is not None:
                recording.done()
            if kept is not None:
                self._kept = kept
            return count, seen

        big = self.path.stat().st_size >= FAST_FROM
        if big and self.kind == "text" and text_after_quote(self.path, self.delimiter or ","):
            big = False  # the record reader tells of each cell with text after its quote
        if self.kind == "text" and not (self.fast or self.arrow) and big:
            for reader in ("arrow", "fast"):
                setattr(self, reader, True)
                try:
                    result = walk()
                except NotFast:
                    setattr(self, reader, False)
                else:
                    self._verified = True
                    return result
        return walk()


def _keeping(batches: Iterator[Batch], kept: list[Batch]) -> Iterator[Batch]:
    for batch in batches:
        kept.append(batch)
        yield batch


def open_source(
    path: str | Path,
    *,
    sheet: str | None = None,
    encoding: str | None = None,
    limits: ReadLimits = LIMITS,
    header_row: int | None = None,
) -> Source:
    """Open ``path``: find the sheet, the encoding, the delimiter and the header row (or take
    ``header_row``, the row's number in the sheet, from 1).

    Raises :class:`SourceError` (naming file, sheet, row and column where known) for a missing,
    empty, header-only, binary, corrupt, encrypted or unsupported file, a sheet that does not
    exist, a header that is missing or repeats a name, or a file over ``limits`` (a workbook
    is checked before it is parsed, and parsed in a child process of bounded memory).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError("no such file", path=path)
    with path.open("rb") as handle:
        magic = handle.read(8)
    suffix = path.suffix.lower()
    if magic.startswith(ZIP_MAGIC) or magic.startswith(OLE_MAGIC):
        return _open_workbook(path, sheet, limits, header_row)
    if suffix in WORKBOOK_SUFFIXES:
        if not magic:
            raise SourceError("the file is empty", path=path)
        raise SourceError(
            f"not a {suffix} workbook (it does not begin like one): if it is text, name it .csv",
            path=path,
        )
    if suffix not in TEXT_SUFFIXES:
        raise SourceError(
            f"unsupported file type {suffix!r}: use CSV, TSV, TXT, XLSX, XLSM, XLSB, XLS or ODS",
            path=path,
        )
    if sheet is not None:
        raise SourceError("--sheet applies to workbooks; this is a text file", path=path)
    if not magic:
        raise SourceError("the file is empty", path=path)
    return _open_text(path, encoding, limits, header_row)


def _open_text(
    path: Path, forced_encoding: str | None, limits: ReadLimits, header_row: int | None = None
) -> Source:
    encoding, note = detect_encoding(path, forced_encoding, limits.line_chars)
    delimiter = sniff_delimiter(path, encoding)
    records = text_records(path, encoding, delimiter)
    layout = find_layout(
        records, path=path, sheet=None, max_columns=limits.columns, header_row=header_row
    )
    source = Source(
        path=path,
        kind="text",
        sheet=None,
        layout=layout,
        encoding=encoding,
        delimiter=delimiter,
        notes=[note] if note else [],
    )
    _check_first_rows(source)
    return source


def _open_workbook(
    path: Path, requested: str | None, limits: ReadLimits, header_row: int | None = None
) -> Source:
    # The sheet's formulas are looked for (in the zip's XML) while the child reads the sheet.
    guess = likely_sheet(path, requested) if path.suffix.lower() in _FORMULA_SUFFIXES else None
    with ThreadPoolExecutor(1) as pool:
        early = pool.submit(unsaved_formulas, path, guess) if guess is not None else None
        read = read_workbook(path, requested, limits)
        found = early.result() if early is not None and guess == read.sheet else None
    layout = find_layout(
        enumerate(read.iter_rows(), start=1),
        path=path,
        sheet=read.sheet,
        column_offset=read.column_offset,
        max_columns=limits.columns,
        header_row=header_row,
    )
    source = Source(
        path=path,
        kind="workbook",
        sheet=read.sheet,
        layout=layout,
        date1904=read.date1904,
        _sheet_chunks=read.chunks,
        _keep=read,
    )
    source.notes.extend(read.notes)
    _mark_unsaved_formulas(source, read.column_offset, found)  # (an XLSX/XLSM's alone)
    _check_first_rows(source)
    return source


def _mark_unsaved_formulas(
    source: Source, column_offset: int, found: dict[tuple[int, int], str] | None = None
) -> None:
    """Cells holding a formula and no saved value read as :class:`Unsaved` (their formula's
    text) instead of empty, and the source says how many there are (``found``: those of its
    sheet, looked for already)."""
    if source.sheet is None:
        return
    if found is None:
        found = unsaved_formulas(source.path, source.sheet)
    if not found:
        return
    at = {p: h for h, p in enumerate(source.layout.positions)}
    patches: dict[int, dict[int, Any]] = {}
    for (row, column), formula in found.items():
        header = at.get(column - column_offset)
        if header is not None and row > source.layout.header_row:
            patches.setdefault(row, {})[header] = Unsaved(formula)
    source.patches.update(patches)
    many = f"{len(found):,}" + ("+" if len(found) >= MOST_UNSAVED else "")
    source.notes.append(
        f"{many} cells hold a formula with no saved value (the file was written by a program "
        "that does not compute formulas; they would read as empty): open and save the file in "
        "Excel or LibreOffice"
    )


def _check_first_rows(source: Source) -> None:
    """Fail early on the first rows (the common faults show there), before anything else runs."""
    for _ in islice(source.rows(), 20):
        pass


def _only(batches: Iterator[Batch], numbers: Collection[int]) -> Iterator[Batch]:
    """The rows of ``numbers`` among ``batches``."""
    for batch in batches:
        keep = [i for i, n in enumerate(batch.numbers) if n in numbers]
        if keep:
            rows = batch.rows
            yield Batch([batch.numbers[i] for i in keep], [rows[i] for i in keep])


def _changed(
    batch: Batch, change: Callable[[Any], Any] | None, patches: dict[int, dict[int, Any]]
) -> Batch:
    rows: list[Any] = list(batch.rows)
    if change is not None:
        rows = [[change(c) for c in r] for r in rows]
    if patches:
        for index, number in enumerate(batch.numbers):
            if (fixed := patches.get(number)) is not None:
                row = list(rows[index])
                for position, value in fixed.items():
                    row[position] = value
                rows[index] = row
    return Batch(batch.numbers, rows)


def list_sheets(path: Path, limits: ReadLimits = LIMITS) -> list[str]:
    """The sheets of a workbook a person may choose from: visible, with data. SourceError for
    a file that is not a readable workbook, or one over ``limits``."""
    return sheets_with_data(Path(path), limits)
