"""The rows of a check as the check page shows them, kept in a SQLite file of the upload.

Reading the check's sheet for every view of the check page took seconds at 400,000 rows (6 s),
and a correction is followed by a view. So once a check of every row ends, its sheet is read
once into a table of its own (``number``, ``result``, ``code``, ``field`` indexed, each row's
cells as JSON, in the sheet's order); a re-check after a correction replaces the rows it
checked; a view reads only its page of rows, and counts the rest in SQL.

Each call opens its own connection (calls come from worker threads, one at a time per upload):
nothing is held open between requests. The file lives in the upload's private folder and goes
with it.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

from ..results import RESULT_COLUMNS, read_back, unneutralise, whole

#: The rows written to the table at once.
_CHUNK = 5000


def _cells(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    """A results sheet of ours: its headers, and its rows' cells as stored (see
    :func:`~importer.results.read_back`). A CSV of ours is read by Python's own reader (the
    one that wrote it: four times faster than the importer's reader, which checks each record
    as a stranger's file needs), its header as the importer reads it."""
    headers, table = read_back(path)
    if path.suffix.lower() != ".csv":
        return headers, table

    def rows() -> Iterator[list[Any]]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            records = csv.reader(handle)
            next(records, None)
            yield from records

    return headers, rows()


def verdict_rows(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """A results sheet of ours: its source headers, and each row (streamed) as a dict of those
    headers' cells (as the person wrote them) and of our columns by their own names."""
    headers, cells = _cells(path)
    data = headers[: -len(RESULT_COLUMNS)]
    names = [*data, *RESULT_COLUMNS]
    return data, (dict(zip(names, r, strict=True)) for r in _as_shown(cells, len(data)))


def _as_shown(table: Iterable[list[Any]], width: int) -> Iterator[list[Any]]:
    """Each row's cells as the person wrote them, then our columns' (a float that is a whole
    number as the integer it was: a workbook stores 12 as 12.0)."""
    for cells in table:
        yield [*(unneutralise(whole(c)) for c in cells[:width]), *map(whole, cells[width:])]


class CheckedRows:
    """The check page's rows of one check (see the module)."""

    def __init__(self, path: Path, headers: list[str]) -> None:
        self.path = path
        #: The source's headers (the data columns), in the sheet's order.
        self.headers = headers
        self._names = [*headers, *RESULT_COLUMNS]

    @classmethod
    def build(cls, path: Path, sheet: Path) -> CheckedRows:
        """The rows of the check's ``sheet``, written to a new table at ``path`` (replacing
        any there once whole)."""
        headers, cells = _cells(sheet)
        made = cls(path, headers[: len(headers) - len(RESULT_COLUMNS)])
        partial = path.with_name(path.name + ".part")
        partial.unlink(missing_ok=True)
        with closing(sqlite3.connect(partial)) as db:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute(
                "CREATE TABLE rows (number INTEGER PRIMARY KEY, result TEXT, code TEXT, "
                "field TEXT, cells TEXT NOT NULL)"
            )
            records = made._records(cells)
            while chunk := list(islice(records, _CHUNK)):
                db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", chunk)
            for column in ("result", "code", "field"):
                db.execute(f"CREATE INDEX by_{column} ON rows ({column}, number)")
            db.commit()
        os.replace(partial, path)
        return made

    def _records(self, table: Iterable[list[Any]]) -> Iterator[tuple[Any, ...]]:
        """The table's records of a results sheet's rows, their cells as stored (made as the
        page shows them when read: :func:`_as_shown`)."""
        width = len(self.headers)
        at = [width + RESULT_COLUMNS.index(c) for c in ("row", "result", "error_code", "field")]
        number, result, code, field = at
        encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
        for cells in table:
            given = whole(cells[code])
            yield (int(whole(cells[number])), str(cells[result] or ""),
                   "" if given is None or given == "" else str(given), str(cells[field] or ""),
                   encode(cells))  # fmt: skip

    def replace_from(self, sheet: Path, gone: Iterable[int] = ()) -> None:
        """The rows of a re-check's ``sheet``, as they read now, in place of their own; the
        rows ``gone`` (no row any more: made blank) left out."""
        _, cells = _cells(sheet)
        with closing(sqlite3.connect(self.path)) as db:
            db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                           self._records(cells))  # fmt: skip
            db.executemany("DELETE FROM rows WHERE number = ?", [(n,) for n in gone])
            db.commit()

    def _shown(self, stored: str) -> dict[str, Any]:
        (cells,) = _as_shown([json.loads(stored)], len(self.headers))
        return dict(zip(self._names, cells, strict=True))

    @staticmethod
    def _where(errors: bool, code: str, column: str) -> tuple[str, list[Any]]:
        terms, values = [], []
        if errors:  # (two ranges of the result index, where != would scan every row)
            terms.append("(result < 'valid' OR result > 'valid')")
        if code:
            terms.append("code = ?")
            values.append(code)
        if column:
            terms.append("field = ?")
            values.append(column)
        return (" WHERE " + " AND ".join(terms)) if terms else "", values

    def view(
        self, *, errors: bool, code: str, column: str, offset: int, limit: int
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """How many rows in all, how many the view keeps, and its rows from ``offset`` (at
        most ``limit``), in the sheet's order."""
        where, values = self._where(errors, code, column)
        with closing(sqlite3.connect(self.path)) as db:
            (total,) = db.execute("SELECT count(*) FROM rows").fetchone()
            (kept,) = db.execute(f"SELECT count(*) FROM rows{where}", values).fetchone()
            # A view's numbers from the indexes, sorted (``+number``: else SQLite walks every
            # row in order rather than sort the few the view keeps), then their cells.
            order = "+number" if where else "number"
            found = db.execute(
                f"SELECT cells FROM rows WHERE number IN (SELECT number FROM rows{where} "
                f"ORDER BY {order} LIMIT ? OFFSET ?) ORDER BY number",
                [*values, limit, offset],
            ).fetchall()
        return total, kept, [self._shown(c) for (c,) in found]

    def numbers_reading(self, column: str, find: str) -> set[int]:
        """The rows whose cell of ``column`` reads ``find`` as the page shows it (both
        trimmed)."""
        at = self.headers.index(column)
        wanted = find.strip()
        numbers = set()
        with closing(sqlite3.connect(self.path)) as db:
            for number, cells in db.execute("SELECT number, cells FROM rows"):
                if str(unneutralise(whole(json.loads(cells)[at])) or "").strip() == wanted:
                    numbers.add(number)
        return numbers
