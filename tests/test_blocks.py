"""``validate``'s fast path (:mod:`importer.blocks`) against the row path, byte for byte.

The block path checks, plans and writes a batch of rows a column at a time; every row it does
not find plain goes the row path's way in its place. Whatever the rows, the two must write the
same results sheet and the same summary: these tests run both on the same sources (tricky
cells of every kind, keys given twice, identical rows, ids with and without a journal that
knows them, rows spread over several batches) and compare what they wrote.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import zipfile
from collections import Counter
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import importer
from importer._xlsx import cell, cells
from importer.journal import Journal, fingerprint
from importer.model import Outcome, Row
from importer.pipeline import validate_source
from importer.results import Block, CsvResults, _csv_cells, _csv_texts
from importer.validate import check_params, plain_rows

HEADERS = ["Task Name", "Due Date", "Priority", "Status", "Contact ID", "Company ID", "Lead ID",
           "Assigned To", "Description", "Legacy Ref"]  # fmt: skip
#: Each column's cells that read well, on their own (a row of these alone may still fail
#: a check across cells: two parents, an update with nothing to change).
GOOD: dict[str, list[str]] = {
    "Task Name": ["Call Bob", "  spaced  ", "=HYPERLINK(1)", "-1.00", "'quoted", "a,b",
                  'say "hi"', "line\nbreak", "Ünïcode ✓", "+61 400", "@home"],
    "Due Date": ["2026-03-12 10:15", "2026-03-12", "25/03/2026 9:00", "2026-04-05 02:30",
                 "2026-03-12 10:15"],
    "Priority": ["High", "normal", "LOW", "", "High"],
    "Status": ["Done", "In Progress", "", "0", "2", "Done"],
    "Contact ID": ["12", "", "12", " 7 ", "12.0"],
    "Company ID": ["", "", "5"],
    "Lead ID": ["", "", "9"],
    "Assigned To": ["", "3", "3"],
    "Description": ["", "  keep  ", "Call, now", "=SUM(A1)", "\tx", " ", "a\r\nb", ""],
    "Legacy Ref": ["L1", "L2", "", "L1 ", "L3", "=L4", "L5", "L6"],
    "Task ID": ["", "", "", "123", " 123 ", "456"],
}  # fmt: skip
#: And cells that do not.
BAD: dict[str, list[str]] = {
    "Task Name": ["", "   "],
    "Due Date": ["31/02/2026", "", "tomorrow", "45000", "12/03/2026 10:15"],
    "Priority": ["urgent", "1"],
    "Status": ["7"],
    "Contact ID": ["0", "-3", "x@y.com", "1e3"],
    "Company ID": ["abc"],
    "Lead ID": ["9"],
    "Assigned To": ["user@x.com", "2.5"],
    "Description": [""],
    "Legacy Ref": ["L1"],
    "Task ID": ["0", "12a"],
}  # fmt: skip
CELLS = {h: GOOD[h] + BAD[h] for h in GOOD}


def write_csv(path: Path, rows: list[list[str]], headers: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def journal_knowing(
    path: Path, target: str, source: Path, what: str, sheet: str | None = None
) -> Path:
    """A journal (SQLite) for ``target`` that knows nothing (``empty``), task 123 from another
    file (``task``), row 2 of ``source`` (``place``) or the legacy id L1 (``key``)."""
    journal = path / "journal.sqlite"
    Journal(journal).close()
    rows = {
        "empty": [],
        "task": [("lineage", (target, "another file", 7, 123, "x", 1, None))],
        "place": [("lineage", (target, fingerprint(source, sheet), 2, 77, "x", 1, None))],
        "key": [("keys", (target, "Legacy Ref", "L1", 88, "x", 1, None, None, None))],
    }[what]
    with sqlite3.connect(journal) as db:
        for table, values in rows:
            marks = ", ".join("?" * len(values))
            db.execute(f"INSERT INTO {table} VALUES ({marks})", values)
    return journal


def checked(source: Path, out: Path, *, blocks: bool, **given: Any) -> Any:
    target = given.pop("target", None)
    options = importer.RunOptions(timezone="Australia/Sydney", results=out, **given)
    return asyncio.run(validate_source(source, None, options, target=target, blocks=blocks))


def written(path: Path) -> dict[str, bytes]:
    """A results file's content: a CSV's bytes, an XLSX's parts (its zip's dates aside, and its
    Summary sheet, whose times differ: :func:`said` compares what it says)."""
    if path.suffix == ".csv":
        return {"": path.read_bytes()}
    with zipfile.ZipFile(path) as book:
        return {n: book.read(n) for n in book.namelist() if n != "xl/worksheets/sheet2.xml"}


def said(summary: Any) -> tuple[Any, ...]:
    """A summary, as the terminal and the Summary sheet say it (the times aside)."""
    timed = ("second", "rows/s", "started", "finished")
    lines = [(k, v) for k, v in summary.sheet_lines() if not any(t in k for t in timed)]
    return (summary.counts, summary.codes, summary.plan, summary.warnings, summary.refusal, lines)


def both_ways(tmp: Path, source: Path, suffix: str = ".csv", **given: Any) -> tuple[Any, Any]:
    """The results and summary of the block path and of the row path, asserted the same."""
    fast = checked(source, tmp / f"fast{suffix}", blocks=True, **dict(given))
    slow = checked(source, tmp / f"slow{suffix}", blocks=False, **dict(given))
    assert written(tmp / f"fast{suffix}") == written(tmp / f"slow{suffix}")
    assert said(fast) == said(slow)
    return fast, slow


COLUMNS = [*HEADERS, "Task ID"]
good_row = st.tuples(*(st.sampled_from(GOOD[h]) for h in COLUMNS))
any_row = st.tuples(*(st.sampled_from(CELLS[h]) for h in COLUMNS))
#: Rows, two in three of them made of good cells.
rows_of = st.lists(st.one_of(good_row, good_row, any_row), min_size=1, max_size=30)


@settings(
    max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=rows_of,
    key=st.sampled_from([None, "Legacy Ref"]),
    ids=st.booleans(),
    suffix=st.sampled_from([".csv", ".xlsx"]),
    journal=st.sampled_from([None, "empty", "task", "place", "key"]),
    order=st.sampled_from([None, "dmy"]),
)
def test_the_block_path_writes_what_the_row_path_writes(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, ...]],
    key: str | None,
    ids: bool,
    suffix: str,
    journal: str | None,
    order: str | None,
) -> None:
    tmp = tmp_path_factory.mktemp("blocks")
    headers = [*HEADERS, "Task ID"] if ids else HEADERS
    cells = [list(r) if ids else list(r[:-1]) for r in rows]
    source = write_csv(tmp / "tasks.csv", cells, headers)
    given: dict[str, Any] = {"key": key, "date_order": order}
    if journal is not None:
        target = "https://api.sandbox.example/acct"
        state = journal_knowing(tmp, target, source, journal)
        given.update(target=target, journal=importer.JournalOptions(state=state))
    both_ways(tmp, source, suffix, **given)


def test_many_batches_of_every_kind_of_row(tmp_path: Path) -> None:
    """A file big enough for pyarrow's reader, in many batches: the checks across rows (a key
    given twice, identical rows) reach across batches, and each way counts the same."""
    rows = []
    for n in range(14_000):
        row = [CELLS[h][(n * (i + 3)) % len(CELLS[h])] if n % 7 == 0 else "" for i, h in
               enumerate(HEADERS)]  # fmt: skip
        if n % 7:
            notes = "Notes, with a comma; " * (n % 2) * 30
            row = [f"Task {n % 9_000}", f"{1 + n % 28}/03/2026 10:{n % 4 * 15:02d}", "High",
                   "Done", str(1 + n % 200), "", "", "3", notes, f"K{n}"]  # fmt: skip
        rows.append(row)
    source = write_csv(tmp_path / "big.csv", rows, HEADERS)
    assert source.stat().st_size > 4 << 20  # read by pyarrow, a batch a megabyte
    fast, _ = both_ways(tmp_path, source)
    assert fast.counts["valid"] > 10_000 and fast.counts["invalid"] > 500
    assert any("identical to an earlier row" in w for w in fast.warnings)
    keyed, _ = both_ways(tmp_path, source, key="Legacy Ref")
    assert keyed.codes["DUPLICATE_KEY"] > 0


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
cells_of = st.one_of(
    texts,
    st.sampled_from(["", "=1+1", "-1.00", "+3", "@x", "'=x", "\tx", "\rx", "\0x", 'a"b', "a,b",
                     "a\nb", " "]),
    st.integers(-(2**60), 2**60),
    st.none(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(min_value=datetime(1900, 1, 1)),
    st.dates(),
    st.times(),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda width: st.lists(st.lists(cells_of, min_size=width, max_size=width), min_size=1,
                               max_size=6)
    )
)  # fmt: skip
def test_a_block_of_cells_is_written_as_the_csv_module_writes_them_row_by_row(
    rows: list[list[Any]],
) -> None:
    """A column at a time (:meth:`CsvResults.add_block`), each cell is written as the csv module
    writes it in its row, neutralised as :meth:`CsvResults.add` does."""
    width = len(rows[0])
    columns = [[r[c] for r in rows] for c in range(width)]
    expected = io.StringIO()
    writer = csv.writer(expected)
    for r in rows:
        writer.writerow(_csv_cells(r))  # as CsvResults.add writes a row
    ours = ["\r\n".join(map(",".join, zip(*map(_csv_texts, columns), strict=True))) + "\r\n"]
    assert ours[0] == expected.getvalue()


NORMALISED = {
    "id": [None, 123, 0, -1, "12", True],
    "venueId": [None, 4, 0],
    "leadId": [None, 9, None, None],
    "contactId": [None, 12, 0, "x@y.z", None],
    "companyId": [None, None, 5],
    "name": ["Call", "", " ", "x"],
    "endDatetime": ["2026-03-12 10:15:00", None, "2026-02-31 10:00:00", "soon", ""],
    "priority": ["high", None, "urgent", "", "low"],
    "assignedUserId": [None, 3, "u@x.y", 1.0],
    "status": [None, 0, 4, 7, "2", False],
    "description": ["", "  keep ", "x"],
}


@settings(max_examples=400, deadline=None)
@given(
    st.sets(st.sampled_from(sorted(NORMALISED)), min_size=1).flatmap(
        lambda fields: st.lists(
            st.fixed_dictionaries({f: st.sampled_from(NORMALISED[f]) for f in sorted(fields)}),
            min_size=1,
            max_size=8,
        )
    )
)
def test_a_plain_row_is_one_check_params_passes_as_it_is(rows: list[dict[str, Any]]) -> None:
    """:func:`plain_rows` marks a row plain only when :func:`check_params` (offline) passes it
    with no warning and sends its values as they are."""
    columns = {f: [r[f] for r in rows] for f in rows[0]}
    for row, plain in zip(rows, plain_rows(columns, len(rows)), strict=True):
        params = {f: v for f, v in row.items() if v is not None and v != ""}
        verdict = check_params(params)
        if plain:
            assert verdict.error is None and not verdict.warnings, (row, verdict)
            assert verdict.params == params and all(
                type(verdict.params[f]) is type(v) for f, v in params.items()
            )


def test_a_block_of_a_workbooks_cells_is_written_as_the_rows_would_be(tmp_path: Path) -> None:
    """A workbook's cells (numbers, dates, times, booleans) in a CSV results sheet, a block at a
    time and row by row."""
    cells = [[1.0, 2.5, True, None, datetime(2026, 3, 12, 10, 15), date(2026, 3, 12),
              time(9, 30), "=x", "-2", 7]]  # fmt: skip
    columns = [list(c) for c in zip(*cells, strict=True)]
    headers = [f"c{i}" for i in range(len(columns))]
    ours = [[2], ["valid"], [None], [None], [None], ["plan: create"], [""], [""]]
    by_block, by_row = io.StringIO(), io.StringIO()
    CsvResults(tmp_path / "a.csv", headers, by_block).add_block(
        Block([2], columns, ours, Counter(), Counter(), [])
    )
    row = Row(2, dict(zip(headers, cells[0], strict=True)))
    CsvResults(tmp_path / "b.csv", headers, by_row).add(
        row, Outcome("valid", message="plan: create")
    )
    assert by_block.getvalue() == by_row.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(cells_of, min_size=1, max_size=8),
        st.lists(texts, min_size=1, max_size=8),
        st.lists(st.sampled_from(["", " a", "b ", "a&b", "<x>", "ok", " "]), max_size=8),
        st.lists(st.integers(), max_size=5),
        st.lists(st.datetimes(min_value=datetime(1900, 1, 1)), max_size=5),
        st.lists(
            st.one_of(
                st.datetimes(min_value=datetime(1900, 1, 1)),
                st.dates(),
                st.sampled_from([date(2026, 3, 1), datetime(2026, 3, 1)]),
            ),
            max_size=9,
        ),
        st.lists(
            st.one_of(
                st.dates(),
                st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC)),
            ),
            max_size=6,
        ),
        st.lists(st.sampled_from([0.0, -0.0, 1.5, 2.0]), min_size=4, max_size=9),
    )
)
def test_a_column_of_xlsx_cells_is_each_cell_as_it_is_made_alone(values: list[Any]) -> None:
    """:func:`importer._xlsx.cells` (a column at a time) makes what :func:`cell` makes of
    each value."""
    assert cells(values) == [cell(v) for v in values]


def test_a_workbooks_typed_cells_come_out_as_the_row_path_writes_them(tmp_path: Path) -> None:
    """A workbook's cells are numbers, dates, booleans and text: both ways write the same of
    them, into an XLSX results sheet and into a CSV one."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Task Name", "Due Date", "Priority", "Status", "Contact ID", "Assigned To",
                  "Description", "Legacy Ref", "Amount"])  # fmt: skip
    for n in range(300):
        sheet.append([
            f"Task {n % 40}" if n % 11 else "=x" if n % 2 else None,
            datetime(2026, 3, 1 + n % 28, 9 + n % 8, 15 * (n % 4)) if n % 13 else "soon",
            ["High", "Low", 1, None][n % 4],
            ["Done", 2, 2.0, "Open", True][n % 5],
            float(1 + n % 9) if n % 17 else 2.5,
            [3, 3.0, None, "u@x.y"][n % 4],
            [None, "  kept  ", "a & <b>", "'=quoted", 12.5, date(2026, 1, 2), time(9, 30)][n % 7],
            n % 50,
            -1.5 * n,
        ])  # fmt: skip
    source = tmp_path / "typed.xlsx"
    book.save(source)
    for suffix in (".xlsx", ".csv"):
        fast, _ = both_ways(tmp_path, source, suffix)
        assert fast.counts["valid"] > 50 and fast.counts["invalid"] > 10


def dated_workbook(path: Path, dues: list[Any]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Task Name", "Due Date", "Priority"])
    for n, due in enumerate(dues):
        sheet.append([f"Task {n}", due, "High"])
    book.save(path)
    return path


def test_rows_normalised_by_the_first_pass_are_taken_only_under_the_rules_made_by(
    tmp_path: Path,
) -> None:
    """A kept workbook's rows are normalised while the first pass reads them, by the date rules
    known before it; that pass may find the date order (a day past 12 first), and then the rows
    are normalised again by it: ``03/04/2026`` is the 3rd of April, as the row path reads it."""
    source = dated_workbook(tmp_path / "texts.xlsx", ["03/04/2026 10:00", "25/04/2026 10:00"])
    for suffix in (".csv", ".xlsx"):
        fast, _ = both_ways(tmp_path, source, suffix)
        assert fast.counts == {"valid": 2}
    importer.validate(source, options=importer.RunOptions(results=tmp_path / "r.csv"),
                      offline=True)  # fmt: skip
    assert "valid" in (tmp_path / "r.csv").read_text(encoding="utf-8").splitlines()[1]


def test_a_kept_workbooks_rows_are_normalised_once(tmp_path: Path, monkeypatch: Any) -> None:
    """A check of every row of a kept workbook normalises each batch once, in the first pass
    (the block path takes them from it), and writes what the row path writes."""
    from importer.normalise import Normaliser

    made: list[int] = []
    batch = Normaliser.batch

    def counted(self: Normaliser, rows: Any, headers: Any = None) -> Any:
        made.append(len(rows.numbers))
        return batch(self, rows, headers)

    monkeypatch.setattr(Normaliser, "batch", counted)
    dues = [datetime(2026, 3, 1 + n % 28, 9 + n % 8) for n in range(5000)]
    source = dated_workbook(tmp_path / "dates.xlsx", dues)
    fast = checked(source, tmp_path / "fast.xlsx", blocks=True)
    assert fast.counts == {"valid": 5000} and sum(made) == 5000
    made.clear()
    checked(source, tmp_path / "slow.xlsx", blocks=False)
    assert sum(made) == 5000
    assert written(tmp_path / "fast.xlsx") == written(tmp_path / "slow.xlsx")


def test_rows_normalised_early_are_let_go_when_the_check_goes_row_by_row(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A check the block path does not take (a journal knows the file's rows) normalises them
    again, row by row: the batches the first pass normalised are let go, even by a row cache
    that keeps what the pass found for later checks of a few rows."""
    import gc
    import weakref

    from importer.prepare import Early
    from importer.read import RowCache

    made: list[weakref.ref[Early]] = []
    init = Early.__init__

    def recorded(self: Early, *args: Any) -> None:
        init(self, *args)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Early, "__init__", recorded)
    source = dated_workbook(tmp_path / "d.xlsx", [datetime(2026, 3, 2, 9)] * 50)
    target = "https://api.sandbox.example/acct"
    known = journal_knowing(tmp_path, target, source, "place", sheet="Sheet")
    journal = importer.JournalOptions(state=known)
    cache = RowCache()
    summary = checked(source, tmp_path / "r.csv", blocks=True, target=target, journal=journal,
                      row_cache=cache)  # fmt: skip
    assert summary.counts["valid"] == 50 and summary.plan["create"] == 49
    gc.collect()
    assert len(made) == 1 and made[0]() is None
    assert cache.facts is not None


def test_a_failed_write_of_the_xlsx_sheet_is_raised_not_lost() -> None:
    """The sheet's part is deflated and written by a thread of its own: a write that fails there
    (a full disk) is raised to the writer's caller, by a later write or at the latest by
    ``close``, never left behind (the results file would otherwise look whole)."""
    from importer._xlsx import XlsxWriter

    class Full(io.BytesIO):
        """A disk full for one write (a part of the sheet lost: the rest would still fit)."""

        failed = False

        def write(self, data: Any) -> int:
            if self.tell() > 50_000 and not self.failed:
                self.failed = True
                raise OSError(28, "No space left on device")
            return super().write(data)

    book = XlsxWriter(Full())
    book.sheet("Results", frozen_header=True)
    with pytest.raises(OSError, match="No space left"):
        for n in range(200):
            book.columns([[f"row {n} cell {i} {'x' * 40}" for i in range(500)], list(range(500))])
        book.close()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(cells_of, min_size=1, max_size=8),
        st.lists(st.one_of(st.none(), st.sampled_from(["'=x", "'a", "a'", "x", ""])), max_size=8),
        st.lists(st.sampled_from([0.0, -0.0, 1.5, 2.0, 2.0**60, None]), min_size=1, max_size=9),
    )
)
def test_a_column_of_results_values_is_each_value_as_it_is_kept_alone(values: list[Any]) -> None:
    """An XLSX results sheet's column of source values (taken whole) is what each value
    becomes alone: a text that starts with a quote kept as itself, a whole float as typed."""
    from importer.results import _xlsx_value, _xlsx_values

    made = list(_xlsx_values(values))
    alone = [_xlsx_value(v) for v in values]
    assert [(type(v), repr(v)) for v in made] == [(type(v), repr(v)) for v in alone]
