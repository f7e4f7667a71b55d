"""Read: a source file → its header and a lazy stream of :class:`Row`.

This first version reads CSV/TSV text in UTF-8 (with or without a BOM), comma-separated
(tab-separated for ``.tsv``). Row numbers are the line where the record starts, as a person sees
it in a text editor or Excel; blank lines are skipped without renumbering.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .model import Row

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}


@dataclass
class Source:
    """An opened source: its path, sheet (None for text files), header and rows to come."""

    path: Path
    sheet: str | None
    headers: list[str]
    rows: Iterator[Row]


def open_source(path: str | Path) -> Source:
    """Open ``path`` and read its header; rows are read as the returned stream is consumed.

    Raises :class:`SourceError` for a missing, empty, header-only or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError("no such file", path=path)
    delimiter = TEXT_SUFFIXES.get(path.suffix.lower())
    if delimiter is None:
        raise SourceError(
            f"unsupported file type {path.suffix or '(none)'!r}: this version reads "
            f"{', '.join(TEXT_SUFFIXES)}",
            path=path,
        )
    records = _records(path, delimiter)
    header_line, headers = next(records, (0, []))
    if not headers:
        raise SourceError("the file is empty", path=path)
    headers = [h.strip() for h in headers]
    while headers and not headers[-1]:  # trailing separators, as spreadsheet exports leave
        headers.pop()
    _check_headers(path, header_line, headers)
    first = next(records, None)
    if first is None:
        raise SourceError("no data rows below the header", path=path, row=header_line)

    def rows() -> Iterator[Row]:
        for line, cells in _chain(first, records):
            if len(cells) > len(headers):
                extra = cells[len(headers) :]
                if any(c.strip() for c in extra):
                    raise SourceError(
                        f"{len(cells)} cells but the header has {len(headers)} columns",
                        path=path,
                        row=line,
                        column=f"#{len(headers) + 1}",
                    )
                cells = cells[: len(headers)]
            padded = cells + [""] * (len(headers) - len(cells))
            yield Row(number=line, cells=dict(zip(headers, padded, strict=True)))

    return Source(path=path, sheet=None, headers=headers, rows=rows())


def _chain(first, rest):
    yield first
    yield from rest


def _records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(line where the record starts, cells)`` for each non-blank record."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            start = 1
            try:
                for cells in reader:
                    if any(c.strip() for c in cells):
                        yield start, cells
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise SourceError(f"malformed CSV: {exc}", path=path, row=start) from None
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"not UTF-8 text (byte {exc.start} of the file cannot be decoded): save it as "
            "CSV UTF-8",
            path=path,
        ) from None


def _check_headers(path: Path, line: int, headers: list[str]) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(headers, start=1):
        if not name:
            raise SourceError("a column has no header", path=path, row=line, column=f"#{position}")
        key = name.casefold()
        if key in seen:
            raise SourceError(
                f"duplicate header {name!r} (columns #{seen[key]} and #{position})",
                path=path,
                row=line,
                column=name,
            )
        seen[key] = position
