"""Write results: every source row once, in source order, with its cells and its outcome.

XLSX (streamed by :mod:`._xlsx`: rows go to disk as they come, strings inline, so a million
rows are never held) with a Summary and an Errors sheet, or CSV (UTF-8 with a BOM,
so Excel shows accents), chosen by the extension. No cell written can start a spreadsheet
formula. The file appears whole or not at all: it is written beside the target under a
temporary name, then renamed.

A results sheet is itself a source: :func:`earlier_columns` recognises one, and
:func:`unneutralise` gives back the text a person wrote.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import compress, repeat, takewhile
from operator import is_not, itemgetter
from pathlib import Path
from typing import IO, Any

from ._xlsx import BarChart, XlsxWriter, by_kind
from .errors import UsageError
from .fields import describe_code
from .model import Outcome, Row
from .read import open_source

RESULT_COLUMNS = (
    "row", "result", "task_id", "error_code", "field", "message", "warnings", "run_ref"
)  # fmt: skip
#: Results sheets of earlier versions end with these (no ``run_ref``).
_OLDER_COLUMNS = RESULT_COLUMNS[:-1]
#: Source suffixes, for the results' names.
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", "")
_SOURCE_SUFFIXES = (*_TEXT_SUFFIXES[:-1], ".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
#: Text starting with these is read as a formula (or as a DDE payload) by spreadsheets (OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
#: Text that :func:`neutralise` prefixes: a formula start, after any quotes already there (so
#: that a cell a person wrote as ``'=x`` comes back as itself, too).
_NEUTRALISED = re.compile(r"'*[=+\-@\t\r\0]")
FORMATS = (".csv", ".xlsx")


_FIRST = frozenset("=+-@\t\r\0'")


#: A plain number, which a spreadsheet reads as that number, never as a formula (``-1.00``).
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(value: Any) -> Any:
    """``value``, with text that a spreadsheet would run as a formula prefixed by ``'`` (a
    plain number such as ``-1.00`` is not: it reads as itself)."""
    if (
        isinstance(value, str)
        and value
        and value[0] in _FIRST  # most text starts otherwise: no pattern to match
        and _NEUTRALISED.match(value)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def unneutralise(value: Any) -> Any:
    """The text :func:`neutralise` was given (for a results sheet read back as a source)."""
    if isinstance(value, str) and value.startswith("'") and _NEUTRALISED.match(value, 1):
        return value[1:]
    return value


def cell_text(value: Any) -> Any:
    """A source cell as it goes into a text results file: dates in ISO form, empty for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return whole(value)


def whole(value: Any) -> Any:
    """Workbooks store every number as a float: 1234.0 was typed 1234."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def default_results_path(source: Path, kind: str = "results", *, numbered: bool = False) -> Path:
    """``NAME.results.xlsx`` beside a workbook, ``NAME.results.csv`` beside a text file
    (``validate`` writes ``NAME.validation…``). Where another source of the same name sits
    beside it (``X.xls`` and ``X.xlsx``), its extension joins the name: ``X.xls.results.xlsx``.
    ``numbered`` (a results sheet read back, whose own name or an earlier round's this would
    be): the first free ``NAME.results.N.xlsx`` from 2."""
    suffix = ".csv" if source.suffix.lower() in _TEXT_SUFFIXES else ".xlsx"
    stem = re.sub(r"\.(results|validation)(\.\d+)?$", "", source.stem)
    siblings = [
        source.with_name(stem + other)
        for other in _SOURCE_SUFFIXES
        if other != source.suffix.lower() and (suffix == ".csv") == (other in _TEXT_SUFFIXES)
    ]
    if any(s.exists() for s in siblings):
        stem = f"{stem}{source.suffix.lower()}"
    plain = source.with_name(f"{stem}.{kind}{suffix}")
    if not numbered and not _same_file(plain, source):
        return plain
    number = 2
    while (path := source.with_name(f"{stem}.{kind}.{number}{suffix}")).exists() or _same_file(
        path, source
    ):
        number += 1
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_results_path(path: Path, source: Path | None = None) -> None:
    """UsageError unless the results can be written as ``path`` says (checked before a run):
    a .xlsx or .csv file, not the source, in a folder that exists and can be written."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(
            f"--results {path}: the results are written as .xlsx or .csv, not {path.suffix!r}"
        )
    if path.is_dir():
        raise UsageError(f"--results {path} is a folder: give a file name ending .xlsx or .csv")
    if source is not None and _same_file(path, source):
        raise UsageError(
            f"--results {path} is the source itself: the results would overwrite it; give "
            "another file name"
        )
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"--results {path}: the folder {folder} does not exist (it is not created: check "
            "the path, or create the folder first)"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise UsageError(
            f"--results {path}: cannot write in {folder} ({exc.strerror or exc}); nothing was sent"
        ) from None
    os.close(fd)
    os.unlink(probe)


def result_headers(source_headers: Sequence[str]) -> list[str]:
    """The source's headers, then ours; ours take an ``import_`` prefix where a source column
    already has that name."""
    taken = {h.casefold() for h in source_headers}
    ours = [f"import_{c}" if c in taken else c for c in RESULT_COLUMNS]
    return [*source_headers, *ours]


def earlier_columns(headers: Sequence[str]) -> dict[str, str] | None:
    """For a results sheet read as a source: our column name → its header; ``None`` for any
    other source. Ours are the last eight (seven in earlier versions, without ``run_ref``),
    each possibly ``import_``-prefixed."""
    for ours in (RESULT_COLUMNS, _OLDER_COLUMNS):
        if len(headers) < len(ours):
            continue
        tail = headers[-len(ours) :]
        if all(h in (c, f"import_{c}") for h, c in zip(tail, ours, strict=True)):
            return dict(zip(ours, tail, strict=True))
    return None


def outcome_cells(
    row: Row, outcome: Outcome, origin: tuple[int | None, str] | None = None
) -> list[Any]:
    """Our cells for a row: ``origin`` is its number in the file first imported and the
    reference of the run that imported it (default: its own number, no reference)."""
    line, ref = origin or (row.number, "")
    return [
        line,
        outcome.result,
        outcome.task_id,
        outcome.error_code,
        outcome.field,
        outcome.message,
        "; ".join(outcome.warnings),
        ref,
    ]


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to it when the block ends well, else removed
    (the folder must exist: it is not created)."""
    # Made as any file the user makes (mode 0o666 less their umask, which the system applies),
    # not owner-only as mkstemp's: no process-wide umask is read or changed.
    while True:
        temporary = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: Path, **open_args: Any) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` whole when the block ends, or not at all."""
    with _atomic_path(path) as temporary, temporary.open("w", **open_args) as handle:
        yield handle


@dataclass
class Block:
    """Consecutive rows' results, a column at a time (the rows of a check that went through
    :mod:`importer.blocks` were never made one by one): their numbers, the source's cells and
    ours (:data:`RESULT_COLUMNS`), each a column, and what :func:`~importer.summary.write_results`
    counts of them."""

    numbers: Sequence[int]
    #: The source's columns, in the order of its headers.
    cells: Sequence[Sequence[Any]]
    #: Our columns: row, result, task_id, error_code, field, message, warnings, run_ref.
    ours: Sequence[Sequence[Any]]
    results: Counter[str]
    codes: Counter[str]
    #: The rows identical to an earlier row.
    identical: list[int]


class ResultsWriter:
    """Rows appended one by one (:meth:`add`) or a block at a time (:meth:`add_block`), then
    :meth:`close` with the run's summary."""

    def __init__(self, path: Path, source_headers: Sequence[str]) -> None:
        self.path = path
        self.headers = list(source_headers)
        self.rows = 0

    def add(self, row: Row, outcome: Outcome, origin: tuple[int | None, str] | None = None) -> None:
        raise NotImplementedError

    def add_block(self, block: Block) -> None:
        raise NotImplementedError

    def close(self, summary: Sequence[tuple[str, Any]], codes: Mapping[str, int]) -> None:
        raise NotImplementedError


class CsvResults(ResultsWriter):
    def __init__(self, path: Path, source_headers: Sequence[str], handle: IO[str]) -> None:
        super().__init__(path, source_headers)
        self._handle = handle
        self._writer = csv.writer(handle)
        self._writer.writerow([neutralise(h) for h in result_headers(source_headers)])

    def add(self, row: Row, outcome: Outcome, origin: tuple[int | None, str] | None = None) -> None:
        cells = row.cells
        values = [cells.get(h, "") for h in self.headers]
        values += outcome_cells(row, outcome, origin)
        self._writer.writerow(_csv_cells(values))
        self.rows += 1

    def add_block(self, block: Block) -> None:
        # The lines as the csv module writes them (a test holds the two together), made a
        # column at a time: most columns need no quotes at all.
        columns = [_csv_texts(c) for c in (*block.cells, *block.ours)]
        if len(columns) < 2:  # (a line of one empty cell is written "": not one of ours)
            raise ValueError("a results line has our eight cells")
        if block.numbers:
            self._handle.write("\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n")
        self.rows += len(block.numbers)

    def close(self, summary: Sequence[tuple[str, Any]], codes: Mapping[str, int]) -> None:
        """A CSV has one sheet: the summary is the caller's to print."""


#: What makes the csv module quote a cell (the excel dialect's delimiter, quote and line end).
_QUOTED = ',"\r\n'
_FIRST_CHARACTER = itemgetter(slice(None, 1))
_FORMULA_CHARACTERS = tuple(sorted(_FIRST - {"\0"}))


def _csv_texts(values: Sequence[Any]) -> Sequence[str]:
    """A column's cells as :meth:`CsvResults.add` has the csv module write them (neutralised;
    the excel dialect, minimal quoting), made a column at a time: most columns are text that
    starts with no formula start and holds nothing to quote, or whole numbers, and are taken
    as they are. A test holds the two ways together."""
    kinds = set(map(type, values))
    if kinds == {str}:
        # One search of the column for each character, not one per cell.
        together = "\0".join(values)
        # No formula start anywhere (no cell holds a NUL), or none at a cell's start.
        if (
            together.count("\0") == len(values) - 1
            and not any(c in together for c in _FORMULA_CHARACTERS)
        ) or _FIRST.isdisjoint(map(_FIRST_CHARACTER, values)):
            if not any(c in together for c in _QUOTED):
                return values
            return _quoted_texts(values)
    elif kinds == {int}:
        return list(map(str, values))
    elif kinds <= _WHOLE_OR_NONE:
        return ["" if v is None else str(v) for v in values]
    neutral = _csv_cells(values)
    return _quoted_texts([v if v.__class__ is str else str(v) for v in neutral])


def _csv_cells(values: Sequence[Any]) -> list[Any]:
    """Cells as a CSV results file holds them: neutralised, dates in ISO form, "" for None."""
    first = _FIRST  # most cells are text that starts with no formula start: kept as they are
    return [
        v
        if (v.__class__ is str and v[:1] not in first) or v.__class__ is int
        else ""
        if v is None
        else _csv_cell(v)
        for v in values
    ]


_WHOLE_OR_NONE = frozenset({int, type(None)})


def _quoted(text: str) -> str:
    if any(c in text for c in _QUOTED):
        return '"' + text.replace('"', '""') + '"'
    return text


def _quoted_texts(texts: Sequence[str]) -> list[str]:
    """Texts in quotes where they hold a comma, a quote or a line end (their quotes doubled),
    each distinct text quoted once."""
    quoted = {text: _quoted(text) for text in set(texts)}
    return list(map(quoted.__getitem__, texts))


def _csv_cell(value: Any) -> Any:
    if value.__class__ is str:  # the common case, first
        return neutralise(value)
    return neutralise(cell_text(value))


def _xlsx_text(text: str) -> str:
    """Text as an XLSX results cell holds it. A text cell is never evaluated (every text is an
    inline string: see :mod:`._xlsx`), so nothing is prefixed, except text already starting
    with ``'`` before a formula start (so that it reads back as itself)."""
    return neutralise(text) if text[:1] == "'" else text


def _xlsx_value(value: Any) -> Any:
    kind = value.__class__
    if kind is str:
        return neutralise(value) if value[:1] == "'" else value
    if kind is float:
        return whole(value)
    if value is None or isinstance(value, time | date | datetime | bool | int):
        return value
    if isinstance(value, float):  # a float's subclass (numpy's)
        return whole(value)
    return _xlsx_text(str(value))


def _xlsx_values(values: Sequence[Any]) -> Sequence[Any]:
    """:func:`_xlsx_value` of each value of a column: most columns are text that starts with
    no quote, or whole numbers and blanks, and are taken as they are."""
    kinds = set(map(type, values))
    if kinds == {str} or kinds == _TEXT_OR_NONE:
        texts = values if len(kinds) == 1 else list(compress(values, map(is_not, values,
                                                                        repeat(None))))  # fmt: skip
        if "'" not in "".join(texts) or "'" not in set(map(_FIRST_CHARACTER, texts)):
            return values
        if len(kinds) > 1:
            return by_kind(values, _xlsx_values)
    elif kinds <= _WHOLE_OR_NONE:
        return values
    elif kinds == {float}:
        if all(map(float.is_integer, values)) and max(map(abs, values)) < 2**53:
            return list(map(int, values))  # a workbook's whole numbers (stored as floats)
    elif kinds <= _AS_THEY_ARE:
        return values
    elif len(kinds) > 1:
        return by_kind(values, _xlsx_values)
    return list(map(_xlsx_value, values))


_TEXT_OR_NONE = frozenset({str, type(None)})
#: Cells an XLSX results sheet takes as they are (see _xlsx_value).
_AS_THEY_ARE = frozenset({int, type(None), bool, datetime, date, time})


def _bar_chart(title: str, sheet: str, count: int) -> BarChart:
    """A bar chart of the ``count`` rows below the header of ``sheet``: the names in its column
    A, the numbers in its column B (with Excel's axes shown, and each bar's number)."""
    numbers = f"'{sheet}'!$B$2" + (f":$B${count + 1}" if count > 1 else "")  # (as openpyxl's)
    return BarChart(title, f"'{sheet}'!$A$2:$A${count + 1}", numbers)


class XlsxResults(ResultsWriter):
    def __init__(self, path: Path, source_headers: Sequence[str], temporary: Path) -> None:
        super().__init__(path, source_headers)
        self._book = XlsxWriter(temporary)
        self._book.sheet("Results", frozen_header=True)
        self._book.header([_xlsx_value(h) for h in result_headers(source_headers)])
        self._pending: list[list[Any]] = []

    def add(self, row: Row, outcome: Outcome, origin: tuple[int | None, str] | None = None) -> None:
        cells = row.cells
        values = [cells.get(h) for h in self.headers]
        values += outcome_cells(row, outcome, origin)
        self._pending.append([_xlsx_value(v) for v in values])
        self.rows += 1
        if len(self._pending) >= 2000:
            self._flush()

    def add_block(self, block: Block) -> None:
        self._flush()
        self._book.columns([_xlsx_values(c) for c in (*block.cells, *block.ours)])
        self.rows += len(block.numbers)

    def _flush(self) -> None:
        self._book.rows(self._pending)
        self._pending = []

    def close(self, summary: Sequence[tuple[str, Any]], codes: Mapping[str, int]) -> None:
        self._flush()
        self._book.sheet("Summary")
        self._book.header(["what", "value"])
        self._book.rows([[_xlsx_value(name), _xlsx_value(value)] for name, value in summary])
        # The rows by result lead the summary ("rows created", …): a chart of them, and one
        # of the rows by error code (the Errors sheet's), beside the table.
        results = len(list(takewhile(lambda line: line[0].startswith("rows "), summary)))
        if results:
            self._book.chart(_bar_chart("Rows by result", "Summary", results), "D2")
        if codes:
            self._book.chart(_bar_chart("Rows by error code", "Errors", len(codes)), "D18")
        self._book.sheet("Errors")
        self._book.header(["error_code", "rows", "meaning"])
        self._book.rows(
            [
                [_xlsx_value(int(code) if str(code).isdigit() else code), n,
                 _xlsx_value(describe_code(code))]
                for code, n in sorted(codes.items(), key=lambda item: (-item[1], str(item[0])))
            ]
        )  # fmt: skip
        self._book.close()

    def discard(self) -> None:
        """Stop writing (the results will not be saved: the caller removes the file)."""
        with suppress(Exception):
            self._book.discard()


@contextmanager
def open_results(path: Path, source_headers: Sequence[str]) -> Iterator[ResultsWriter]:
    """A results writer for ``path`` (its extension says the format), committed atomically."""
    check_results_path(path)
    if path.suffix.lower() == ".csv":
        with atomic_write(path, encoding="utf-8-sig", newline="") as handle:
            yield CsvResults(path, source_headers, handle)
        return
    with _atomic_path(path) as temporary:
        writer = XlsxResults(path, source_headers, temporary)
        try:
            yield writer
        except BaseException:
            writer.discard()
            raise


def read_back(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    """A results sheet of ours, read by the importer's own reader (bounded, as every file is):
    its headers (the source's, then ours), and its rows' cells as stored, streamed (text a
    spreadsheet would evaluate still prefixed; blanks as "")."""
    source = open_source(path, sheet="Results" if path.suffix.lower() == ".xlsx" else None)
    headers = source.headers
    rows = (["" if c is None else c for c in (r.cells[h] for h in headers)] for r in source.rows())
    return headers, rows
