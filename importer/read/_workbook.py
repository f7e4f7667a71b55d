"""XLSX/XLSM/XLSB, XLS and ODS through python-calamine: sheets, typed cells, the date system."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import python_calamine as calamine

from ..errors import SourceError
from ._table import is_blank

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DATE1904 = re.compile(rb"<(?:\w+:)?workbookPr\b[^>]*\bdate1904=\"(?:1|true)\"")


def open_workbook(path: Path) -> calamine.CalamineWorkbook:
    """The workbook; SourceError for an encrypted, truncated or corrupt file."""
    try:
        return calamine.CalamineWorkbook.from_path(str(path))
    except calamine.PasswordError:
        raise SourceError(
            "the workbook is password-protected: save an unprotected copy", path=path
        ) from None
    except (calamine.CalamineError, OSError, ValueError) as exc:
        raise SourceError(
            f"cannot read the workbook: it is damaged, truncated or not a spreadsheet ({exc})",
            path=path,
        ) from None


def sheet_list(workbook: calamine.CalamineWorkbook) -> list[tuple[str, bool]]:
    """``(name, visible)`` for every worksheet (chart sheets have no cells and are left out)."""
    return [
        (m.name, m.visible == calamine.SheetVisibleEnum.Visible)
        for m in workbook.sheets_metadata
        if m.typ == calamine.SheetTypeEnum.WorkSheet
    ]


def sheets_with_data(path: Path) -> list[str]:
    """The visible sheets of the workbook at ``path`` that hold data, in order."""
    workbook = open_workbook(path)
    return [
        name
        for name, visible in sheet_list(workbook)
        if visible and _has_data(load_sheet(workbook, name, path))
    ]


def describe_sheets(sheets: list[tuple[str, bool]]) -> str:
    return ", ".join(repr(n) + ("" if visible else " (hidden)") for n, visible in sheets)


def pick_sheet(
    workbook: calamine.CalamineWorkbook, requested: str | None, path: Path
) -> tuple[str, Any]:
    """The sheet to read, by name and loaded: by name (any case) or 1-based position, else the
    first visible sheet that has data. SourceError listing the sheets when there is no such
    sheet."""
    sheets = sheet_list(workbook)
    if requested is not None:
        wanted = requested.strip()
        names = [n for n, _ in sheets]
        found = next((n for n in names if n == wanted), None)
        found = found or next((n for n in names if n.casefold() == wanted.casefold()), None)
        if found is None and wanted.isdigit() and 1 <= int(wanted) <= len(sheets):
            found = names[int(wanted) - 1]
        if found is not None:
            return found, load_sheet(workbook, found, path)
        raise SourceError(
            f"no sheet {requested!r}; the sheets are: {describe_sheets(sheets)} "
            "(give --sheet a name or a position from 1)",
            path=path,
        )
    for name, visible in sheets:
        if visible:
            sheet = load_sheet(workbook, name, path)
            if _has_data(sheet):
                return name, sheet
    raise SourceError(
        f"no visible sheet has data; the sheets are: {describe_sheets(sheets) or 'none'}",
        path=path,
    )


def load_sheet(workbook: calamine.CalamineWorkbook, name: str, path: Path) -> Any:
    try:
        return workbook.get_sheet_by_name(name)
    except calamine.CalamineError as exc:
        raise SourceError(f"cannot read the sheet ({exc})", path=path, sheet=name) from None


def _has_data(sheet: Any) -> bool:
    if sheet.height == 0:
        return False
    return any(not is_blank(c) for row in sheet.iter_rows() for c in row)


def sheet_column_offset(workbook: calamine.CalamineWorkbook, name: str, path: Path) -> int:
    start = load_sheet(workbook, name, path).start
    return start[1] if start else 0


def column_offset(sheet: Any) -> int:
    """The position of the sheet's first used column: calamine's cells start there."""
    return sheet.start[1] if sheet.start else 0


def sheet_rows(sheet: Any) -> Iterator[list[Any]]:
    """Every row of a loaded sheet from row 1, blank ones included, cells from its first used
    column: text as written, numbers as ``float`` (or ``int`` for XLS), ``bool``, and dates and
    times as ``datetime``/``date``/``time``/``timedelta`` (python-calamine applies the date
    system). Whole numbers are read as such by normalise and written as such in the results."""
    return sheet.iter_rows()


def uses_1904_dates(path: Path) -> bool:
    """Whether an XLSX workbook counts its serial dates from 1904 (old Mac Excel)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(_DATE1904.search(archive.read("xl/workbook.xml")))
    except (zipfile.BadZipFile, KeyError, OSError):
        return False
