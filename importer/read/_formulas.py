"""Formula cells without a saved value in an XLSX/XLSM sheet.

A workbook written by a program that does not compute formulas (openpyxl, most libraries)
holds a formula's text and no result: every reader, python-calamine among them, reads such a
cell as empty, and a row whose name is one would be refused as "name is required". The sheet's
XML says which cells they are: a ``<c>`` with an ``<f>`` and an empty or missing ``<v>`` (a
text result of Excel's own is marked ``t="str"``, and may be empty). The XML is read as a
stream, a megabyte at a time.
"""

from __future__ import annotations

import html
import posixpath
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree


class Unsaved(str):
    """A cell holding a formula and no saved value, read as its formula's text (``=A1&"x"``):
    never a value to send (see :mod:`importer.normalise`), and shown as text in the results."""


#: The most such cells kept (each is told on its row; past that, the count is enough).
MOST = 10_000

_CHUNK = 1 << 20
_CELL = re.compile(rb"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_REF = re.compile(rb'\br="([A-Z]+)([0-9]+)"')
_TYPE = re.compile(rb'\bt="([a-zA-Z]+)"')
_FORMULA = re.compile(rb"<f\b[^>]*?(?:/>|>(.*?)</f>)", re.S)
_VALUE = re.compile(rb"<v\b[^>]*?(?:/>|>(.*?)</v>)", re.S)
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def unsaved_formulas(path: Path, sheet: str) -> dict[tuple[int, int], str]:
    """``(row, column from 0) → the formula's text`` (``=…``) for the cells of ``sheet`` that
    hold a formula and no saved value; empty for a file that is not an XLSX/XLSM workbook or
    whose parts cannot be found (the reader has read it already: nothing here refuses it)."""
    try:
        with zipfile.ZipFile(path) as book:
            part = _sheet_part(book, sheet)
            if part is None:
                return {}
            with book.open(part) as stream:
                return _scan(stream)
    except (OSError, KeyError, zipfile.BadZipFile, ElementTree.ParseError, RuntimeError):
        return {}


def likely_sheet(path: Path, requested: str | None) -> str | None:
    """The sheet the reader will most likely pick (the one asked for by its name, else the
    first in the workbook), to look for formulas in while the reader reads; None when there
    is no telling."""
    try:
        with zipfile.ZipFile(path) as book:
            workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
    except (OSError, KeyError, zipfile.BadZipFile, ElementTree.ParseError, RuntimeError):
        return None
    names = [s.get("name") for s in workbook.iter(f"{_MAIN}sheet")]
    if requested is not None:
        return requested if requested in names else None
    return names[0] if names else None


def _sheet_part(book: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding ``sheet``'s XML, from the workbook's sheet list and its
    relationships."""
    names = set(book.namelist())
    if "xl/workbook.xml" not in names or "xl/_rels/workbook.xml.rels" not in names:
        return None
    workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
    wanted = next(
        (s.get(_REL_ID) for s in workbook.iter(f"{_MAIN}sheet") if s.get("name") == sheet), None
    )
    if wanted is None:
        return None
    rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    for rel in rels.iter(f"{_RELS}Relationship"):
        if rel.get("Id") == wanted:
            target = rel.get("Target") or ""
            part = target.lstrip("/") if target.startswith("/") else posixpath.join("xl", target)
            part = posixpath.normpath(part)
            return part if part in names else None
    return None


def _scan(stream: object) -> dict[tuple[int, int], str]:
    found: dict[tuple[int, int], str] = {}
    carry = b""
    read = stream.read  # type: ignore[attr-defined]
    while True:
        chunk = read(_CHUNK)
        buffer = carry + chunk
        if not chunk:
            _cells(buffer, found)
            return found
        cut = buffer.rfind(b"</c>") + 4 if b"</c>" in buffer else 0
        whole, carry = buffer[:cut], buffer[cut:]
        if len(carry) > 16 * _CHUNK:  # no cell ends here: not a sheet this reads
            return found
        if b"<f" in whole:
            _cells(whole, found)
        if len(found) >= MOST:
            return found


def _cells(text: bytes, found: dict[tuple[int, int], str]) -> None:
    for cell in _CELL.finditer(text):
        body = cell.group(2)
        if not body or b"<f" not in body:
            continue
        formula = _FORMULA.search(body)
        if formula is None:
            continue
        value = _VALUE.search(body)
        if value is not None and value.group(1):
            continue  # a saved value
        attributes = cell.group(1)
        kind = _TYPE.search(attributes)
        if kind is not None and kind.group(1) == b"str" and value is not None:
            continue  # Excel's own empty text result
        ref = _REF.search(attributes)
        if ref is None:
            continue
        letters, row = ref.group(1).decode(), int(ref.group(2))
        column = 0
        for letter in letters:
            column = column * 26 + ord(letter) - 64
        text_of = formula.group(1)
        shown = "=" + html.unescape(text_of.decode("utf-8", "replace")) if text_of else "a formula"
        found[(row, column - 1)] = shown
        if len(found) >= MOST:
            return
