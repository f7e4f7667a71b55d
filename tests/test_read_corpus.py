"""Every file of the third-party corpus (../shared/corpus) is read right or refused clearly."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from importer.errors import SourceError
from importer.read import open_source
from importer.read._workbook import read_workbook

from .conftest import REPOSITORY

#: The shared corpus: ``../shared/corpus`` from the repository's root (or IVVY_TEST_CORPUS).
CORPUS = Path(os.environ.get("IVVY_TEST_CORPUS") or REPOSITORY.parent / "shared" / "corpus")
if not CORPUS.is_dir():
    why = f"the shared corpus is not at {CORPUS} (set IVVY_TEST_CORPUS to where it is)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why, allow_module_level=True)

SPECTRUM = sorted((CORPUS / "csv-spectrum").glob("*.csv"))

#: The verdict for each calamine test file: the rows read, or the words of the refusal.
READ = {
    "header-row.xlsx": (
        9,
        [(10, {"Columns": "put data here", "Column A": 1, "Column B": 2, "Column C": 3})],
    ),
    "temperature-in-middle.xlsx": (
        4,
        [(5, {"label": "celsius", "value": 22.2222}), (6, {"label": "fahrenheit", "value": 72})],
    ),
    "merged_cells.ods": (
        1,
        [(2, {"A": "A", "B": "B", "C": "C"}), (3, {"A": "", "B": "", "C": "C"})],
    ),
    "merged_range.xlsx": (
        1,
        [
            (
                3,
                {
                    "A1": "A3",
                    "B1": "B3",
                    "C1": "C3",
                    "E1": "E3",
                    "F1": "F3",
                    "G1": "G3",
                    "H1": "H3",
                },
            ),
            (
                4,
                {
                    "A1": "A4",
                    "B1": "B4",
                    "C1": "C4",
                    "E1": "E4",
                    "F1": "F4",
                    "G1": "G4",
                    "H1": "H4",
                },
            ),
        ],
    ),
    "number_rows_repeated.ods": (1, [(n, {"A": "C", "B": "D"}) for n in (2, 3, 6, 8)]),
    "hyperlinks.xlsx": (1, None),
    "whitespace_trim.xlsx": (
        1,
        [
            (
                2,
                {
                    "trimmed value": "line1\nline2",
                    "value with tabs": "  line1\nline2  ",
                    "clean text": "",
                },
            ),
            (3, {"trimmed value": "日期 时间", "value with tabs": "", "clean text": ""}),
        ],
    ),
}
REFUSED = {
    "any_sheets.xlsx": "sheet 'Visible', row 1: no header row",
    "any_sheets.ods": "sheet 'Visible', row 1: no header row",
    "date.xlsx": "row 1: no header row: this row holds numbers or dates (2021-01-01, 15)",
    "date.xls": "row 1: no header row: this row holds numbers or dates (2021-01-01, 15)",
    "date_1904.xlsx": "row 1: no header row: this row holds numbers or dates (2021-01-01, 15)",
    "date_iso.xlsx": "row 1: no header row: this row holds numbers or dates (2021-01-01)",
    "date_quoted_format.xlsx": "row 1: no header row",
    "formula.issue.xlsx": "row 1: no header row: this row holds numbers or dates (23, 23)",
    "no-header.xlsx": "sheet 'Feuille 1', row 3: no header row",
    "empty_sheet.xlsx": "no visible sheet has data; the sheets are: 'Sheet1'",
    # python-calamine reports error cells (#DIV/0!, #N/A…) as empty: the sheet reads as blank.
    "errors.xlsx": "no visible sheet has data",
    "empty_shared_string.xlsx": "row 1: no data rows below the header",
    "encoded_entities.xlsx": "row 1: no data rows below the header",
    "has_x000D_.xlsx": "row 1: no data rows below the header",
    "merge_cells.xlsx": "row 2, column 'B': a value in a column with no header",
    "merge_cells.xls": "row 2, column 'B': a value in a column with no header",
    "pass_protected.xlsx": "protected with a password (an encrypted workbook)",
}


@pytest.mark.parametrize("path", SPECTRUM, ids=lambda p: p.name)
def test_csv_spectrum_reads_as_expected(path):
    expected = json.loads((CORPUS / "csv-spectrum-expected" / f"{path.stem}.json").read_text())
    source = open_source(path)
    assert [dict(row.cells) for row in source.rows()] == expected


def test_every_calamine_file_has_a_verdict():
    names = {p.name for p in (CORPUS / "calamine").iterdir()}
    assert names == set(READ) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(READ))
def test_calamine_files_that_read(name):
    header_row, expected = READ[name]
    source = open_source(CORPUS / "calamine" / name)
    assert source.header_row == header_row
    rows = [(row.number, dict(row.cells)) for row in source.rows()]
    if expected is not None:
        assert rows == expected
    else:
        assert rows and all(isinstance(n, int) for n, _ in rows)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_calamine_files_that_are_refused(name):
    path = CORPUS / "calamine" / name
    with pytest.raises(SourceError) as info:
        list(open_source(path).rows())
    message = str(info.value)
    assert message.startswith(str(path))
    assert REFUSED[name] in message


@pytest.mark.parametrize("name", ["date.xlsx", "date.xls", "date_1904.xlsx"])
def test_serial_dates_read_in_either_date_system(name):
    path = CORPUS / "calamine" / name
    cells = [c for row in read_workbook(path, "Sheet1").iter_rows() for c in row]
    assert cells[0] == date(2021, 1, 1)
    assert cells[2] == date(2021, 1, 2)


def test_the_1904_date_system_is_detected():
    assert read_workbook(CORPUS / "calamine" / "date_1904.xlsx", None).date1904
    assert not read_workbook(CORPUS / "calamine" / "date.xlsx", None).date1904


def test_escaped_carriage_returns_are_unescaped():
    path = CORPUS / "calamine" / "has_x000D_.xlsx"
    assert next(read_workbook(path, "Sheet1").iter_rows()) == ["ABC\r\nDEF"]


def test_hidden_sheets_can_be_chosen_and_are_listed():
    path = CORPUS / "calamine" / "any_sheets.xlsx"
    with pytest.raises(SourceError) as info:
        open_source(path, sheet="Nope")
    assert "'Visible', 'Hidden' (hidden), 'VeryHidden' (hidden)" in str(info.value)
    with pytest.raises(SourceError, match="sheet 'Hidden'"):
        open_source(path, sheet="hidden")  # found in any case; it too has no header
