"""The workbook reader's child process: python-calamine parses the workbook here, inside a
memory and CPU limit, so that a file built to exhaust memory ends this process, not the one
that asked (the command line, or the page with every import it runs).

Run as a script (``python -I _child.py JOB``), it imports nothing of the importer: only the
standard library and python-calamine. JOB is JSON: ``mode`` ("sheets" or "read"), ``path``,
``sheet`` (a name, a 1-based position or null), ``spool`` (where "read" writes the rows) and
``limits``. Its answers are lines of JSON: ``{"error": …}`` naming the sheet, row and column
where known, at any point; else for "sheets" one line, the sheets with data; for "read" the
sheet picked (once the sheet is parsed and within its limits), then a line ``+`` for each batch
written whole to the spool, then the number of rows. The rows go to the spool as pickled
batches of at most 4,096 rows, each its columns, each cell as calamine gives it (text, numbers,
booleans, dates and times): the parent reads them while the child writes the next.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import re
import resource
import shutil
import signal
import sys
import zipfile
from datetime import datetime
from itertools import compress, islice, repeat
from operator import is_
from typing import Any

BATCH = 4096
#: The most characters python-calamine gives of a workbook's text cell: it cuts a longer one to
#: this, silently (an XLSX written by a program other than Excel may hold more).
CUT = 32_767
#: The cells whose equal values are the same value (unlike 0.0 and -0.0, or True and 1).
_SHARED = frozenset({str, datetime, type(None)})
_DATE1904 = re.compile(rb"<(?:\w+:)?workbookPr\b[^>]*\bdate1904=\"(?:1|true)\"")


class Refused(Exception):
    def __init__(self, message: str, **where: Any) -> None:
        super().__init__(message)
        self.where = where


def confine(limits: dict[str, Any]) -> None:
    """This process may take ``memory_mb`` of memory and ``seconds`` of CPU, and dies with
    the process that started it."""
    memory = int(limits["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    seconds = int(limits["seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: gone with its parent


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


#: A compound file (an .xls, or an encrypted .xlsx).
_CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: The workbook globals' BOF record (BIFF8: version 0x0600, or BIFF5: 0x0500, type 0x0005),
#: then perhaps WRITEPROT, then FILEPASS ([MS-XLS] 2.1.7.20.2): the file is obfuscated or
#: encrypted, and its type (0: XOR, 1: RC4) follows.
_FILEPASS = re.compile(
    rb"\x09\x08(?:(?P<biff8>\x10\x00\x00\x06\x05\x00.{12})|\x08\x00\x00\x05\x05\x00.{4})"
    rb"(?:\x86\x00\x00\x00)?\x2f\x00..(?P<kind>..)",
    re.DOTALL,
)
_PROTECTED = (
    "the workbook is protected with a password ({how}): open it in Excel with its password, "
    "remove the password (File > Info > Protect Workbook > Encrypt with Password, then an "
    "empty password) and save it, or save it as CSV"
)
#: An Excel 4 macro sheet, which calamine cannot read (and the tool never runs).
_MACRO_SHEET = re.compile(
    rb'<sheet\b[^>]*\bname="([^"]*)"[^>]*\br:id="([^"]+)"[^>]*/>', re.IGNORECASE
)
_MACRO_TYPE = "relationships/xlMacrosheet"


def protection(path: str) -> str | None:
    """How an .xls is protected with a password, if it is: its FILEPASS record says. (An .xls
    obfuscated by Excel's XOR method is read by calamine as if it were not, into scrambled
    cells: it is refused before, never read.)"""
    with open(path, "rb") as handle:
        if handle.read(8) != _CFB:
            return None
        handle.seek(0)
        data = handle.read(64 << 20)
    found = _FILEPASS.search(data)
    if found is None:
        return None
    if found.group("biff8") is None or found.group("kind") == b"\x00\x00":  # BIFF5: XOR only
        return "an .xls obfuscated by Excel's XOR method"
    return "an encrypted .xls"


def without_macro_sheets(path: str, folder: str) -> tuple[str, list[str]] | None:
    """A copy of the workbook at ``path`` without its Excel 4 macro sheets (in ``folder``),
    and their names; None when it has none."""
    with zipfile.ZipFile(path) as archive:
        try:
            links = archive.read("xl/_rels/workbook.xml.rels")
            book = archive.read("xl/workbook.xml")
        except KeyError:
            return None
        macro_ids = set(
            re.findall(rb'<Relationship\b[^>]*\bId="([^"]+)"[^>]*\bType="[^"]*'
                       + _MACRO_TYPE.encode() + rb'"', links)
            + re.findall(rb'<Relationship\b[^>]*\bType="[^"]*' + _MACRO_TYPE.encode()
                         + rb'"[^>]*\bId="([^"]+)"', links)
        )  # fmt: skip
        if not macro_ids:
            return None
        names: list[str] = []

        def drop(found: re.Match[bytes]) -> bytes:
            if found.group(2) not in macro_ids:
                return found.group(0)
            names.append(found.group(1).decode("utf-8", "replace"))
            return b""

        book = _MACRO_SHEET.sub(drop, book)
        copy = os.path.join(folder, "without-macro-sheets.xlsx")
        with zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
            for item in archive.infolist():
                if item.filename.lower().startswith("xl/macrosheets/"):
                    continue
                if item.filename == "xl/workbook.xml":
                    out.writestr(item.filename, book)
                    continue
                with archive.open(item) as part, out.open(item.filename, "w") as copied:
                    shutil.copyfileobj(part, copied, 1 << 20)  # streamed: memory stays bounded
    return copy, names


def open_book(calamine: Any, path: str, folder: str | None = None) -> tuple[Any, list[str]]:
    """The workbook, and what to tell of how it was read."""
    if (how := protection(path)) is not None:
        raise Refused(_PROTECTED.format(how=how))
    try:
        return calamine.CalamineWorkbook.from_path(path), []
    except calamine.PasswordError:
        raise Refused(_PROTECTED.format(how="an encrypted workbook")) from None
    except (calamine.CalamineError, OSError, ValueError) as exc:
        if "macrosheets" in str(exc) and folder is not None:
            with contextlib.suppress(zipfile.BadZipFile, OSError, ValueError):
                copied = without_macro_sheets(path, folder)
                if copied is not None:
                    book, _ = open_book(calamine, copied[0])
                    said = ", ".join(map(repr, copied[1])) or "a sheet"
                    return book, [f"{said}: an Excel 4 macro sheet, not read (macros never run)"]
        raise Refused(
            f"cannot read the workbook: it is damaged, truncated or not a spreadsheet ({exc})"
        ) from None


def worksheets(calamine: Any, book: Any) -> list[tuple[str, bool]]:
    return [
        (m.name, m.visible == calamine.SheetVisibleEnum.Visible)
        for m in book.sheets_metadata
        if m.typ == calamine.SheetTypeEnum.WorkSheet
    ]


def load(calamine: Any, book: Any, name: str) -> Any:
    try:
        return book.get_sheet_by_name(name)
    except calamine.CalamineError as exc:
        raise Refused(f"cannot read the sheet ({exc})", sheet=name) from None


def has_data(sheet: Any) -> bool:
    if sheet.height == 0:
        return False
    return any(not is_blank(c) for row in sheet.iter_rows() for c in row)


def describe(sheets: list[tuple[str, bool]]) -> str:
    return ", ".join(repr(n) + ("" if visible else " (hidden)") for n, visible in sheets)


def pick(calamine: Any, book: Any, requested: str | None) -> tuple[str, Any]:
    """As the reader picks a sheet: by name (any case) or 1-based position, else the first
    visible sheet that has data."""
    sheets = worksheets(calamine, book)
    if requested is not None:
        wanted = requested.strip()
        names = [n for n, _ in sheets]
        found = next((n for n in names if n == wanted), None)
        found = found or next((n for n in names if n.casefold() == wanted.casefold()), None)
        if found is None and wanted.isdigit() and 1 <= int(wanted) <= len(sheets):
            found = names[int(wanted) - 1]
        if found is not None:
            return found, load(calamine, book, found)
        raise Refused(
            f"no sheet {requested!r}; the sheets are: {describe(sheets)} "
            "(give --sheet a name or a position from 1)"
        )
    for name, visible in sheets:
        if visible:
            sheet = load(calamine, book, name)
            if has_data(sheet):
                return name, sheet
    raise Refused(f"no visible sheet has data; the sheets are: {describe(sheets) or 'none'}")


def check_size(name: str, sheet: Any, limits: dict[str, Any]) -> None:
    start = sheet.start or (0, 0)
    end = sheet.end or (0, 0)
    rows, columns = end[0] + 1, end[1] + 1
    corner = f"{column_letter(end[1])}{end[0] + 1}"
    if rows > limits["rows"] or columns > limits["columns"]:
        raise Refused(
            f"refused: the sheet reaches cell {corner}, beyond the {limits['rows']:,} rows and "
            f"{limits['columns']:,} columns a sheet may have",
            sheet=name,
        )
    area = (end[0] - start[0] + 1) * (end[1] - start[1] + 1)
    if area > limits["cells"]:
        raise Refused(
            f"refused: the sheet's used area reaches cell {corner}: {area:,} cells, over the "
            f"limit of {limits['cells']:,}. A cell far from the table does this: delete the "
            "rows and columns beyond the table and save again",
            sheet=name,
        )


def spool(name: str, sheet: Any, out: Any, limits: dict[str, Any], written: Any = None) -> int:
    """Every row of the sheet from row 1, in pickled batches of at most :data:`BATCH` rows,
    each as its count and its columns (of equal length: a short row padded with empty cells,
    as a sheet's are); the number of rows. Equal texts and dates of a column are written
    once (the spool is smaller, and read back sooner)."""
    start = sheet.start or (0, 0)
    longest = limits["cell_chars"]
    count = 0
    rows = sheet.iter_rows()  # from row 1 (blank rows above the table included)

    def where(column: list[Any], position: int, first: int, long: Any) -> dict[str, Any]:
        """The first cell of ``column`` (at ``position``, its batch from row ``first``) whose
        text's length is ``long``."""
        row = next(i for i, c in enumerate(column) if isinstance(c, str) and long(len(c)))
        return {"sheet": name, "row": first + row, "column": column_letter(start[1] + position)}

    while batch := list(islice(rows, BATCH)):
        first = count + 1
        count += len(batch)
        width = max(map(len, batch))
        if min(map(len, batch)) < width:
            batch = [r + [""] * (width - len(r)) if len(r) < width else r for r in batch]
        columns = list(map(list, zip(*batch, strict=True)))
        for position, column in enumerate(columns):
            kinds = set(map(type, column))
            texts = column if kinds == {str} else compress(column, map(is_, map(type, column),
                                                                       repeat(str)))  # fmt: skip
            lengths = list(map(len, texts))  # (in C; a cell is looked for only if one is long)
            most = max(lengths, default=0)
            if most > longest:
                raise Refused(
                    f"a cell of {most:,} characters, over the limit of {longest:,} (Excel's own)",
                    **where(column, position, first, lambda n: n > longest),
                )
            if most >= CUT and CUT in lengths:
                raise Refused(
                    f"a cell of {CUT:,} characters or more: the workbook reader reads no more "
                    "than that of a cell (Excel's own limit), so a longer text would be cut "
                    "short, silently. Shorten the cell, or save the sheet as CSV (a CSV cell may "
                    "hold 131,072 characters)",
                    **where(column, position, first, CUT.__eq__),
                )
            if kinds <= _SHARED:
                same = dict(zip(column, column, strict=True))
                if len(same) < len(column):
                    columns[position] = list(map(same.__getitem__, column))
        pickle.dump((len(batch), columns), out, protocol=pickle.HIGHEST_PROTOCOL)
        if written is not None:  # the batch is whole in the file: the parent may read it
            out.flush()
            written()
    return count


def uses_1904_dates(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive, archive.open("xl/workbook.xml") as part:
            return bool(_DATE1904.search(part.read(1 << 20)))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return False


def run(job: dict[str, Any]) -> dict[str, Any]:
    import python_calamine as calamine

    limits = job["limits"]
    book, notes = open_book(calamine, job["path"], job.get("folder"))
    if job["mode"] == "sheets":
        found = []
        for name, visible in worksheets(calamine, book):
            if visible:
                sheet = load(calamine, book, name)
                check_size(name, sheet, limits)
                if has_data(sheet):
                    found.append(name)
        return {"sheets": found, "notes": notes}
    name, sheet = pick(calamine, book, job["sheet"])
    check_size(name, sheet, limits)
    start = sheet.start or (0, 0)
    end = sheet.end or (0, 0)
    with open(job["spool"], "wb") as out:  # (there before the parent is told of the sheet)
        say({
            "sheet": name,
            "rows": end[0] + 1,  # (from row 1: the rows above the used range too)
            "column_offset": start[1],
            "date1904": uses_1904_dates(job["path"]),
            "notes": notes,
        })  # fmt: skip
        rows = spool(name, sheet, out, limits, written=lambda: say_line("+"))
    return {"rows": rows}


def say(answer: dict[str, Any]) -> None:
    say_line(json.dumps(answer))


def say_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    job = json.loads(sys.argv[1])
    confine(job["limits"])
    try:
        answer = run(job)
    except Refused as refused:
        answer = {"error": str(refused), **refused.where}
    except MemoryError:
        answer = {"error": "memory"}
    say(answer)
    os._exit(0)  # no clean-up of what calamine holds: the process ends


if __name__ == "__main__":
    main()
