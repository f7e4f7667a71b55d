"""A re-check of a few rows after a correction, as the page does it: the rows come from the
row cache of the full check (the file is not read again) while the cells every row's
decisions depend on read as they did; its verdicts are those of a re-check without the
cache. And the check page's table of rows reads a results sheet as the importer's reader does.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from importer import RunOptions
from importer.pipeline import validate_source
from importer.read import RowCache, Source
from importer.results import RESULT_COLUMNS, read_back, unneutralise, whole
from importer.serve._rows import CheckedRows, verdict_rows

HEADER = "Task,Due date,Contact ID,Priority,Notes\n"


def sheet(rows: int = 300) -> str:
    lines = []
    for n in range(rows):
        number = n + 2
        priority = "urgent" if number % 50 == 0 else ("high", "low", "medium")[n % 3]
        due = "2026-02-31 10:00" if number % 70 == 0 else f"2026-12-{1 + n % 28:02d} 10:00"
        lines.append(f"Task {number},{due},{12 + n % 3},{priority},note {number}\n")
    return HEADER + "".join(lines)


def checked(path: Path, results: Path, numbers=None, **options):
    """``validate_source`` offline: each row's (result, code, message), and the summary."""
    verdicts: dict[int, tuple] = {}

    def collect(row, outcome, verb):
        verdicts[row.number] = (outcome.result, outcome.error_code, outcome.message, verb)

    given = RunOptions(results=results, columns={"Due date": "endDatetime"}, **options)
    summary = asyncio.run(validate_source(path, None, given, numbers=numbers, on_verdict=collect))
    return verdicts, summary


@pytest.fixture
def reads(monkeypatch):
    """How many times the rows of a source were read from its file: passes over every row,
    and passes that look for given rows (opening a source reads its first rows, not counted)."""
    import importer.read

    count = {"n": 0}
    scan, only = Source.scan, importer.read._only

    def counted_scan(self, *args, **kwargs):
        count["n"] += 1
        return scan(self, *args, **kwargs)

    def counted_only(*args, **kwargs):
        count["n"] += 1
        return only(*args, **kwargs)

    monkeypatch.setattr(Source, "scan", counted_scan)
    monkeypatch.setattr(importer.read, "_only", counted_only)
    return count


def test_a_recheck_reads_the_corrected_rows_from_the_cache_not_the_file(tmp_path, reads):
    source = tmp_path / "tasks.csv"
    source.write_text(sheet(), encoding="utf-8")
    cache = RowCache()
    full, _ = checked(source, tmp_path / "full.csv", row_cache=cache)
    assert full[50][:2] == ("invalid", 23016) and full[70][0] == "invalid"
    fixes = {(50, "Priority"): "high", (100, "Notes"): "called"}
    reads["n"] = 0
    cached, summary = checked(source, tmp_path / "again.csv", {50, 100}, fixes=fixes,
                              row_cache=cache)  # fmt: skip
    assert reads["n"] == 0  # nothing read from the file: the rows came from the cache
    plain, plain_summary = checked(source, tmp_path / "plain.csv", {50, 100}, fixes=fixes)
    assert reads["n"] > 0
    assert cached == plain and set(cached) == {50, 100}
    assert cached[50][0] == "valid"
    assert summary.rules == plain_summary.rules and summary.warnings == plain_summary.warnings
    assert [r["Notes"] for r in read_verdicts_of(tmp_path / "again.csv")] == ["note 50", "called"]


def test_a_corrected_due_date_reads_every_row_again(tmp_path, reads):
    """The date order is decided from every due date: a correction of one is no correction
    the cache's findings hold for, so every row is read again."""
    source = tmp_path / "tasks.csv"
    source.write_text(sheet(), encoding="utf-8")
    cache = RowCache()
    checked(source, tmp_path / "full.csv", row_cache=cache)
    reads["n"] = 0
    fixes = {(70, "Due date"): "2026-02-28 10:00"}
    cached, _ = checked(source, tmp_path / "again.csv", {70}, fixes=fixes, row_cache=cache)
    assert reads["n"] > 0  # the first pass over every row again
    plain, _ = checked(source, tmp_path / "plain.csv", {70}, fixes=fixes)
    assert cached == plain and cached[70][0] == "valid"


def test_a_changed_file_is_never_read_from_the_cache(tmp_path, reads):
    source = tmp_path / "tasks.csv"
    source.write_text(sheet(), encoding="utf-8")
    cache = RowCache()
    checked(source, tmp_path / "full.csv", row_cache=cache)
    # The same size, another content (and another time): the cache holds the old file.
    text = source.read_text(encoding="utf-8").replace("Task 50,", "Task 5X,")
    source.write_text(text, encoding="utf-8")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reads["n"] = 0
    checked(source, tmp_path / "again.csv", {50}, row_cache=cache)
    assert reads["n"] > 0
    assert [r["Task"] for r in read_verdicts_of(tmp_path / "again.csv")] == ["Task 5X"]


def read_verdicts_of(path: Path) -> list[dict]:
    return list(verdict_rows(path)[1])


TRICKY = (
    "Task,Due date,Priority,Notes\n"
    'Quote "me",2026-12-01 10:00,high,"a, b"\n'
    'Two lines,2026-12-01 10:00,low,"first\nsecond"\n'
    "=1+2,2026-12-01 10:00,medium,'already quoted\n"
    "Ünïcödé ✓,2026-12-01 10:00,urgent,-5\n"
    "Blank notes,2026-12-01 10:00,high,\n"
    "@sum,not a date,high,+44 20 7946 0000\n"
)


def test_the_check_pages_table_reads_a_results_sheet_as_the_importer_does(tmp_path):
    source = tmp_path / "tricky.csv"
    source.write_text(TRICKY, encoding="utf-8")
    results = tmp_path / "tricky.validation.csv"
    checked(source, results)
    headers, table = read_back(results)
    width = len(headers) - len(RESULT_COLUMNS)
    names = [*headers[:width], *RESULT_COLUMNS]
    expected = [
        dict(zip(names, [*map(unneutralise, r[:width]), *map(whole, r[width:])], strict=True))
        for r in table
    ]
    assert [r["Task"] for r in expected][:3] == ['Quote "me"', "Two lines", "=1+2"]
    data, rows = verdict_rows(results)
    assert data == headers[:width] and list(rows) == expected
    # The table of the check page: every view as filtering those rows would give it.
    built = CheckedRows.build(tmp_path / "check.sqlite", results)
    total, kept, shown = built.view(errors=False, code="", column="", offset=0, limit=500)
    assert (total, kept) == (6, 6) and shown == expected
    _, kept, shown = built.view(errors=True, code="", column="", offset=0, limit=500)
    assert shown == [r for r in expected if r["result"] != "valid"] and kept == len(shown) == 2
    _, _, shown = built.view(errors=True, code="", column="Due date", offset=0, limit=500)
    assert [r["Task"] for r in shown] == ["@sum"]
    _, _, shown = built.view(errors=False, code="", column="", offset=2, limit=2)
    assert shown == expected[2:4]
    assert built.numbers_reading("Notes", "'already quoted") == {5}  # (a row: its first line)
    assert built.numbers_reading("Notes", "first\nsecond") == {3}
    # A row checked again replaces its own; a row made blank leaves the table.
    checked(source, tmp_path / "again.csv", {2}, fixes={(2, "Priority"): "urgent"})
    built.replace_from(tmp_path / "again.csv", gone=[3])
    total, _, shown = built.view(errors=False, code="23016", column="", offset=0, limit=500)
    assert total == 5 and [r["Task"] for r in shown] == ['Quote "me"', "Ünïcödé ✓"]
    assert shown[0]["Priority"] == "urgent" and str(shown[0]["row"]) == "2"


def test_the_library_rechecks_given_rows_from_its_row_cache(tmp_path, reads):
    """``importer.validate(..., rows=...)``: the public call the page makes."""
    import importer

    source = tmp_path / "tasks.csv"
    source.write_text(sheet(), encoding="utf-8")
    cache = importer.RowCache()
    options = importer.RunOptions(columns={"Due date": "endDatetime"}, row_cache=cache,
                                  results=tmp_path / "full.csv")  # fmt: skip
    full = importer.validate(source, offline=True, options=options)
    assert full.counts == {"valid": 290, "invalid": 10}
    reads["n"] = 0
    fixed = options.replace(fixes={(50, "Priority"): "low"}, results=tmp_path / "again.csv")
    again = importer.validate(source, offline=True, options=fixed, rows=[50, 51])
    assert again.counts == {"valid": 2} and reads["n"] == 0


def test_a_workbooks_numbers_are_shown_as_they_were_typed(tmp_path):
    """A workbook stores 12 as 12.0: the check page shows the 12 that was typed (and a fix box
    is filled with it), as Excel does."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Task", "Due date", "Contact ID", "Amount"])
    sheet.append(["Call", "2026-12-01 10:00", 12, 2.5])
    book.save(tmp_path / "tasks.xlsx")
    results = tmp_path / "tasks.validation.xlsx"
    checked(tmp_path / "tasks.xlsx", results)
    (row,) = verdict_rows(results)[1]
    assert (str(row["Contact ID"]), str(row["Amount"]), str(row["row"])) == ("12", "2.5", "2")
    built = CheckedRows.build(tmp_path / "check.sqlite", results)
    assert built.view(errors=False, code="", column="", offset=0, limit=5)[2] == [row]
    assert built.numbers_reading("Contact ID", "12") == {2}  # replace-all finds what is shown
