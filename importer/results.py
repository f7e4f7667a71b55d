"""Write results: every source row once, in source order, with its cells and its outcome.

This first version writes CSV (UTF-8 with a BOM, so Excel shows accents). No cell written can
start a spreadsheet formula. The file appears whole or not at all: it is written beside the
target under a temporary name, then renamed.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO

from .model import Outcome, Row

RESULT_COLUMNS = ("row", "result", "task_id", "error_code", "field", "message", "warnings")
#: Text starting with these is read as a formula (or as a DDE payload) by spreadsheets (OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralise(value: Any) -> Any:
    """``value``, with text that a spreadsheet would run as a formula prefixed by ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def cell_text(value: Any) -> Any:
    """A source cell as it goes into a text results file: dates in ISO form, empty for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # workbooks store every number as a float: 1234.0 was typed 1234
    return value


def default_results_path(source: Path) -> Path:
    """``NAME.results.csv`` beside the source."""
    return source.with_name(f"{source.stem}.results.csv")


def result_headers(source_headers: Sequence[str]) -> list[str]:
    """The source's headers, then ours; ours take an ``import_`` prefix where a source column
    already has that name."""
    taken = {h.casefold() for h in source_headers}
    ours = [f"import_{c}" if c in taken else c for c in RESULT_COLUMNS]
    return [*source_headers, *ours]


@contextmanager
def atomic_write(path: Path, **open_args: Any) -> Iterator[TextIO]:
    """A text file that appears at ``path`` whole when the block ends, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", **open_args) as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_results_csv(
    path: Path, source_headers: Sequence[str], rows: Iterable[tuple[Row, Outcome]]
) -> int:
    """Write the results CSV at ``path``; the number of rows written."""
    count = 0
    with atomic_write(path, encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([neutralise(h) for h in result_headers(source_headers)])
        for row, outcome in rows:
            cells = [row.cells.get(h, "") for h in source_headers]
            ours = [
                row.number,
                outcome.result,
                outcome.task_id,
                outcome.error_code,
                outcome.field,
                outcome.message,
                "; ".join(outcome.warnings),
            ]
            writer.writerow([neutralise(cell_text(v)) for v in (*cells, *ours)])
            count += 1
    return count
