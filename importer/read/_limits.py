"""Bounded reading: the limits a source must keep to, and the checks a workbook's zip passes
before any parser sees it.

A workbook is a zip of XML parts: a few kilobytes can claim a sheet of 17 billion cells (one cell
at ``XFD1048576``), expand to gigabytes (a decompression bomb), or declare XML entities that
expand without end. So before a workbook is parsed, its zip's directory is read (part names,
sizes, ratios), the head of each XML part is read, bounded (a DTD, a sheet's declared
dimension), and a file over a limit is refused naming the limit. What the zip's directory
claims may be a lie: the parse itself then runs in a child process that cannot take more than
``memory_mb`` (see :mod:`._child`), and its failure is a refusal too.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import SourceError

MB = 1 << 20


@dataclass(frozen=True)
class ReadLimits:
    """What a source may hold; a file over any of them is refused, saying which."""

    #: Rows and columns of a sheet: Excel's own limits.
    rows: int = 1_048_576
    columns: int = 16_384
    #: Cells in a sheet's used area (first to last used cell): a million rows of 40 columns.
    cells: int = 40_000_000
    #: Characters in a cell: Excel's own limit.
    cell_chars: int = 32_767
    #: The workbook's parts, uncompressed, together.
    uncompressed: int = 1024 * MB
    #: How many times larger than its compressed bytes a part of over ``ratio_from`` may be.
    ratio: int = 100
    ratio_from: int = 4 * MB
    #: The memory the child process that parses a workbook may take, and its CPU seconds.
    memory_mb: int = 3072
    seconds: int = 300
    #: A text line (a CSV record) at most this long.
    line_chars: int = 16 * MB


LIMITS = ReadLimits()

#: The head of an XML part read for its DTD and its declared dimension.
_HEAD = 64 * 1024
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DIMENSION = re.compile(
    rb"<(?:\w+:)?dimension\b[^>]*\bref=\"([A-Z]{1,3})?(\d+)?(?::([A-Z]{1,3})(\d+))?\""
)
_WORKSHEET = re.compile(r"^xl/(?:worksheets|dialogsheets|macrosheets)/[^/]+\.xml$", re.IGNORECASE)


def column_number(letters: str) -> int:
    """``A`` → 1, ``XFD`` → 16384."""
    number = 0
    for char in letters:
        number = number * 26 + ord(char) - 64
    return number


def check_zip(path: Path, limits: ReadLimits = LIMITS) -> None:
    """Refuse a zip workbook (XLSX, XLSM, XLSB, ODS) over the limits, or built to harm: a
    damaged or truncated zip, a part named outside the workbook, a decompression bomb, a DTD,
    a sheet whose declared size is beyond Excel's or the cell limit."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SourceError(
            "cannot read the workbook: it is damaged, truncated or not a spreadsheet "
            f"(its zip: {exc})",
            path=path,
        ) from None
    with archive:
        infos = archive.infolist()
        total = 0
        for info in infos:
            _check_name(path, info.filename)
            total += info.file_size
            if info.file_size > limits.ratio_from:
                ratio = info.file_size / max(1, info.compress_size)
                if ratio > limits.ratio:
                    raise SourceError(
                        f"refused: the workbook's part {info.filename!r} expands "
                        f"{ratio:,.0f} times ({info.compress_size:,} bytes to "
                        f"{info.file_size:,}), more than the {limits.ratio} times a workbook "
                        "ever needs: it looks built to exhaust memory (a zip bomb)",
                        path=path,
                    )
        if total > limits.uncompressed:
            raise SourceError(
                f"refused: the workbook holds {total / MB:,.0f} MB uncompressed, over the limit "
                f"of {limits.uncompressed // MB:,} MB: save the table as CSV (the command line "
                "streams a CSV of any size)",
                path=path,
            )
        for info in infos:
            name = info.filename
            if not name.lower().endswith((".xml", ".rels", ".vml")) or info.is_dir():
                continue
            head = _head(archive, info, path)
            if _DTD.search(head):
                raise SourceError(
                    f"refused: the workbook's part {name!r} declares XML entities (a DTD), "
                    "which no spreadsheet program writes: they can expand without end or "
                    "read other files",
                    path=path,
                )
            if _WORKSHEET.match(name):
                _check_dimension(path, name, head, limits)


def _check_name(path: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise SourceError(
            f"refused: the workbook's zip holds a part named {name!r}, outside the workbook "
            "(no spreadsheet program writes such a name)",
            path=path,
        )


def _head(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    try:
        with archive.open(info) as part:
            return part.read(_HEAD)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
            NotImplementedError) as exc:  # fmt: skip
        raise SourceError(
            f"cannot read the workbook: its part {info.filename!r} is damaged ({exc})",
            path=path,
        ) from None


def _check_dimension(path: Path, name: str, head: bytes, limits: ReadLimits) -> None:
    found = _DIMENSION.search(head)
    if found is None:
        return
    first_col, first_row, last_col, last_row = (
        g.decode() if g is not None else None for g in found.groups()
    )
    last_col, last_row = last_col or first_col, last_row or first_row
    if last_col is None or last_row is None:
        return
    rows = int(last_row) - int(first_row or 1) + 1
    columns = column_number(last_col) - column_number(first_col or "A") + 1
    corner = f"{last_col}{last_row}"
    sheet = PurePosixPath(name).stem
    if int(last_row) > limits.rows or column_number(last_col) > limits.columns:
        raise SourceError(
            f"refused: the sheet part {sheet!r} says it reaches cell {corner}, beyond the "
            f"{limits.rows:,} rows and {limits.columns:,} columns a sheet may have",
            path=path,
        )
    if rows * columns > limits.cells:
        raise SourceError(
            f"refused: the sheet part {sheet!r} spans {rows:,} rows by {columns:,} columns "
            f"(to cell {corner}): {rows * columns:,} cells, over the limit of {limits.cells:,}. "
            "A cell far from the table does this: delete the rows and columns beyond the "
            "table and save again",
            path=path,
        )
